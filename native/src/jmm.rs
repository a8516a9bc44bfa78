//! The monitor's cheap read of a collector's last collection, through HotSpot's management
//! interface (JMM, `jmm.h`), the table behind `libmanagement`.
//!
//! `GarbageCollectorMXBean.getLastGcInfo()` ends in the same VM function, `GetLastGCStat`, but
//! its native half (`GcInfoBuilder.getLastGcInfo0`) then builds the GC-thread-count attribute
//! and the `GcInfo` with `JNU_NewObjectByName`, a class lookup and a method lookup each time,
//! and the `GcInfo` constructor fills two maps. A perf profile of the monitor thread at 60
//! collections a second put 34 % of its CPU in `getLastGcInfo()`, 21 % in those two lookups
//! (bench/README.md, "Issue 11, fifth round"). Here the monitor asks `GetLastGCStat` itself,
//! with no extension attributes, and reads the `used` field of the heap pools' `MemoryUsage`s.
//!
//! JMM is a private interface: `JVM_GetManagement(version)` hands out its function table only
//! for the exact version the VM was built with, and the table's layout changed between
//! versions. Only the two layouts checked here are used: version 3 (JDK 14–20, checked on 17)
//! and version 4 (JDK 21 on, checked on 25, where `GetTotalThreadAllocatedMemory` moved every
//! later slot down by one). Any other VM gets `None`: the monitor keeps `getLastGcInfo()` and
//! the sampler its Java probe.
//!
//! The sampler reads its per-interval figures (heap, pools, collectors, classes, threads)
//! through the same table: the very VM functions the MXBean getters end in, without the Java
//! frames around them, which ran in the interpreter (a 10 Hz caller never gets them
//! compiled) and took about a third of the sampler thread's CPU (bench/README.md, "Issue 11,
//! seventh round").
//!
//! Not for GC callbacks: every call here is a JNI or JMM call, made from the monitor thread
//! (or the VM-death flush) in a native method, or from the sampler's agent thread.

use std::ffi::c_void;
use std::ptr;
use std::sync::OnceLock;

use crate::bindings as sys;
use crate::jvmti::{clear_exception, jni};

/// `jmmGCStat` (jmm.h).
#[repr(C)]
struct GcStat {
    gc_index: sys::jlong,
    start_time: sys::jlong,
    end_time: sys::jlong,
    usage_before_gc: sys::jobjectArray,
    usage_after_gc: sys::jobjectArray,
    gc_ext_attribute_values_size: sys::jint,
    gc_ext_attribute_values: *mut sys::jvalue,
    num_gc_ext_attributes: sys::jint,
}

type GetVersion = unsafe extern "system" fn(*mut sys::JNIEnv) -> sys::jint;
type GetMemoryPools = unsafe extern "system" fn(*mut sys::JNIEnv, sys::jobject) -> sys::jobjectArray;
type GetUsage = unsafe extern "system" fn(*mut sys::JNIEnv, sys::jobject) -> sys::jobject;
type GetMemoryUsage = unsafe extern "system" fn(*mut sys::JNIEnv, sys::jboolean) -> sys::jobject;
type GetLongAttributes =
    unsafe extern "system" fn(*mut sys::JNIEnv, sys::jobject, *mut sys::jint, sys::jint, *mut sys::jlong) -> sys::jint;
type GetLastGcStat = unsafe extern "system" fn(*mut sys::JNIEnv, sys::jobject, *mut GcStat);

/// Where one JMM version keeps the functions used here (slots, in pointers from the start of
/// the table). Slots 0–8 are the same in every version since 3; version 4 (JDK 21) added
/// `GetTotalThreadAllocatedMemory` at slot 9, which moved every later slot down by one.
struct Layout {
    version: sys::jint,
    memory_usage: usize,
    long_attributes: usize,
    pool_collection_usage: usize,
    last_gc_stat: usize,
}

/// The JMM versions whose table layout is known (jmm.h of JDK 17 and of JDK 21+).
const LAYOUTS: [Layout; 2] = [
    Layout { version: 0x2004_0000, memory_usage: 12, long_attributes: 16, pool_collection_usage: 25, last_gc_stat: 27 },
    Layout { version: 0x2003_0000, memory_usage: 11, long_attributes: 15, pool_collection_usage: 24, last_gc_stat: 26 },
];
const GET_VERSION_SLOT: usize = 2;
const GET_MEMORY_POOLS_SLOT: usize = 5;
const GET_MEMORY_POOL_USAGE_SLOT: usize = 7;

struct Jmm {
    get_memory_pools: GetMemoryPools,
    get_memory_pool_usage: GetUsage,
    get_memory_usage: GetMemoryUsage,
    get_long_attributes: GetLongAttributes,
    get_pool_collection_usage: GetUsage,
    get_last_gc_stat: GetLastGcStat,
}

static JMM: OnceLock<Option<Jmm>> = OnceLock::new();
/// The `used`, `committed` and `max` fields of `java.lang.management.MemoryUsage`, looked up
/// once (a class of the boot loader: never unloaded, so the IDs stay valid); `None` if the
/// lookup failed.
static USAGE_FIELDS: OnceLock<Option<[usize; 3]>> = OnceLock::new();

/// Finds the table, or `None` on a VM whose JMM version is not one of [`LAYOUTS`].
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, in native state.
unsafe fn lookup(jni: *mut sys::JNIEnv) -> Option<Jmm> {
    // SAFETY: dlsym with a NUL-terminated name; the launcher loads libjvm RTLD_GLOBAL.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"JVM_GetManagement".as_ptr()) };
    if sym.is_null() {
        return None;
    }
    // SAFETY: `JVM_GetManagement` is `void* JNICALL JVM_GetManagement(jint version)` (jvm.h).
    let get_management: unsafe extern "system" fn(sys::jint) -> *mut c_void = unsafe { std::mem::transmute(sym) };
    for layout in LAYOUTS {
        // SAFETY: as above; it returns null for any version but the VM's own.
        let table = unsafe { get_management(layout.version) }.cast::<*const c_void>();
        if table.is_null() {
            continue;
        }
        // SAFETY: a non-null table is the VM's `JmmInterface` of exactly `layout.version`,
        // whose slots are those `layout` names (jmm.h of that version), all in the table.
        let slot = |i: usize| unsafe { *table.add(i) };
        let slots = [
            GET_VERSION_SLOT,
            GET_MEMORY_POOLS_SLOT,
            GET_MEMORY_POOL_USAGE_SLOT,
            layout.memory_usage,
            layout.long_attributes,
            layout.pool_collection_usage,
            layout.last_gc_stat,
        ]
        .map(slot);
        if slots.iter().any(|p| p.is_null()) {
            return None;
        }
        // SAFETY: slot 2 holds `jint GetVersion(JNIEnv*)`.
        let get_version: GetVersion = unsafe { std::mem::transmute(slots[0]) };
        // SAFETY: `jni` is the current thread's JNIEnv (our contract).
        if unsafe { get_version(jni) } != layout.version {
            return None;
        }
        // SAFETY: each slot holds the function of that signature in this version's jmm.h:
        // `GetMemoryPools(JNIEnv*, jobject)`, `GetMemoryPoolUsage(JNIEnv*, jobject)`,
        // `GetMemoryUsage(JNIEnv*, jboolean)`, `GetLongAttributes(JNIEnv*, jobject,
        // jmmLongAttribute*, jint, jlong*)` (the enum is an int), `GetPoolCollectionUsage(
        // JNIEnv*, jobject)` and `GetLastGCStat(JNIEnv*, jobject, jmmGCStat*)`.
        return Some(unsafe {
            Jmm {
                get_memory_pools: std::mem::transmute::<*const c_void, GetMemoryPools>(slots[1]),
                get_memory_pool_usage: std::mem::transmute::<*const c_void, GetUsage>(slots[2]),
                get_memory_usage: std::mem::transmute::<*const c_void, GetMemoryUsage>(slots[3]),
                get_long_attributes: std::mem::transmute::<*const c_void, GetLongAttributes>(slots[4]),
                get_pool_collection_usage: std::mem::transmute::<*const c_void, GetUsage>(slots[5]),
                get_last_gc_stat: std::mem::transmute::<*const c_void, GetLastGcStat>(slots[6]),
            }
        });
    }
    None
}

/// The table, looked up on first use.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, in a native method.
unsafe fn jmm(jni: *mut sys::JNIEnv) -> Option<&'static Jmm> {
    // SAFETY: forwarded.
    JMM.get_or_init(|| unsafe { lookup(jni) }).as_ref()
}

/// The VM's memory pools (`MemoryPoolMXBean`s) in the VM's own order, the order of the arrays
/// `GetLastGCStat` fills; a local reference, or null where JMM is not usable. (The public
/// `ManagementFactory.getMemoryPoolMXBeans()` lists them in another order: the platform
/// MBean registry's.)
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, in a native method.
pub unsafe fn memory_pools(jni: *mut sys::JNIEnv) -> sys::jobjectArray {
    // SAFETY: forwarded.
    let Some(jmm) = (unsafe { jmm(jni) }) else {
        return ptr::null_mut();
    };
    // SAFETY: a valid JNIEnv in native state; a null manager asks for every pool.
    let pools = unsafe { (jmm.get_memory_pools)(jni, ptr::null_mut()) };
    // SAFETY: forwarded.
    if unsafe { clear_exception(jni) } {
        return ptr::null_mut();
    }
    pools
}

/// What [`last_gc`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum LastGc {
    /// The collector has not collected yet.
    None,
    /// Read: `out` holds the collection.
    Read,
    /// This VM's JMM is not usable here (an unknown version): use `getLastGcInfo()`.
    Unavailable,
    /// The VM threw (an `OutOfMemoryError` building the `MemoryUsage`s, or an
    /// `IllegalArgumentException` for arrays it did not expect); the exception is left pending
    /// for the Java caller.
    Threw,
}

/// Reads collector `bean`'s last collection into `out`: `[id, start ms, end ms]`, then the
/// `used` bytes before and after it of each pool in `heap` (indexes into [`memory_pools`]),
/// `-1` where not known.
/// `before` and `after` are `MemoryUsage[]`s as long as that list; they are overwritten.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, in a native method; the references must be
/// valid local or global references (or null, which gives [`LastGc::Unavailable`]).
pub unsafe fn last_gc(
    jni: *mut sys::JNIEnv,
    bean: sys::jobject,
    before: sys::jobjectArray,
    after: sys::jobjectArray,
    heap: &[sys::jint],
    out: &mut [sys::jlong],
) -> LastGc {
    if bean.is_null() || before.is_null() || after.is_null() || out.len() < 3 + 2 * heap.len() {
        return LastGc::Unavailable;
    }
    // SAFETY: forwarded.
    let Some(jmm) = (unsafe { jmm(jni) }) else {
        return LastGc::Unavailable;
    };
    let mut stat = GcStat {
        gc_index: 0,
        start_time: 0,
        end_time: 0,
        usage_before_gc: before,
        usage_after_gc: after,
        // No extension attributes: building them is the cost avoided here.
        gc_ext_attribute_values_size: 0,
        gc_ext_attribute_values: ptr::null_mut(),
        num_gc_ext_attributes: 0,
    };
    // SAFETY: a valid JNIEnv in native state, a GarbageCollectorMXBean reference (the VM
    // throws IllegalArgumentException for anything else) and a filled-in jmmGCStat whose
    // arrays the VM checks (type and length) before it writes them.
    unsafe { (jmm.get_last_gc_stat)(jni, bean, &mut stat) };
    if check(jni).is_err() {
        return LastGc::Threw;
    }
    if stat.gc_index == 0 {
        return LastGc::None;
    }
    out[..3].copy_from_slice(&[stat.gc_index, stat.start_time, stat.end_time]);
    for (k, &pool) in heap.iter().enumerate() {
        // SAFETY: forwarded.
        out[3 + 2 * k] = unsafe { used(jni, before, pool) };
        // SAFETY: forwarded.
        out[4 + 2 * k] = unsafe { used(jni, after, pool) };
    }
    LastGc::Read
}

/// `array[index].getUsed()` through the field, -1 when it cannot be read.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv; `array` a valid `MemoryUsage[]` reference.
unsafe fn used(jni: *mut sys::JNIEnv, array: sys::jobjectArray, index: sys::jint) -> sys::jlong {
    let usage = jni!(jni, GetObjectArrayElement, array, index).unwrap_or(ptr::null_mut());
    // SAFETY: forwarded (an index out of bounds throws, cleared here).
    if unsafe { clear_exception(jni) } || usage.is_null() {
        return -1;
    }
    // SAFETY: forwarded; `usage` is a live local reference to a MemoryUsage.
    let value = unsafe { read_usage(jni, usage) }[0];
    let _ = jni!(jni, DeleteLocalRef, usage);
    value
}

/// `[used, committed, max]` of a `MemoryUsage`, -1 where the fields cannot be read.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv with no exception pending; `usage` a valid
/// reference to a `java.lang.management.MemoryUsage`.
unsafe fn read_usage(jni: *mut sys::JNIEnv, usage: sys::jobject) -> [sys::jlong; 3] {
    let fields = USAGE_FIELDS.get_or_init(|| {
        let cls = jni!(jni, GetObjectClass, usage).unwrap_or(ptr::null_mut());
        if cls.is_null() {
            return None;
        }
        // One at a time: a missing field throws NoSuchFieldError, and no JNI call may follow
        // with it pending.
        let mut ids = [0usize; 3];
        let mut found = true;
        for (id, name) in ids.iter_mut().zip([c"used", c"committed", c"max"]) {
            *id = jni!(jni, GetFieldID, cls, name.as_ptr(), c"J".as_ptr()).unwrap_or(ptr::null_mut()) as usize;
            // SAFETY: forwarded (clears the NoSuchFieldError, if any).
            if unsafe { clear_exception(jni) } || *id == 0 {
                found = false;
                break;
            }
        }
        let _ = jni!(jni, DeleteLocalRef, cls);
        found.then_some(ids)
    });
    match fields {
        Some(ids) => ids.map(|f| jni!(jni, GetLongField, usage, f as sys::jfieldID).unwrap_or(-1)),
        None => [-1; 3],
    }
}

/// The VM threw inside a JMM call (an `OutOfMemoryError` building a `MemoryUsage`, say); the
/// exception is left pending for the caller to clear.
#[derive(Debug)]
pub struct Threw;

/// Checks for a pending exception after a JMM call.
fn check(jni: *mut sys::JNIEnv) -> Result<(), Threw> {
    match jni!(jni, ExceptionCheck) {
        Some(0) => Ok(()),
        _ => Err(Threw),
    }
}

/// Reads a `MemoryUsage` a JMM call returned (null: the VM has none, `None`) and deletes the
/// local reference.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv; `usage` null or a fresh local reference to a
/// `MemoryUsage`.
unsafe fn take_usage(jni: *mut sys::JNIEnv, usage: sys::jobject) -> Result<Option<[sys::jlong; 3]>, Threw> {
    check(jni)?;
    if usage.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded; no exception is pending (checked).
    let values = unsafe { read_usage(jni, usage) };
    let _ = jni!(jni, DeleteLocalRef, usage);
    Ok(Some(values))
}

/// Whether this VM's JMM is one the functions below can use (they return `Ok(None)` or
/// `Ok(())` with nothing read otherwise, so check first).
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, in native state.
pub unsafe fn usable(jni: *mut sys::JNIEnv) -> bool {
    // SAFETY: forwarded.
    unsafe { jmm(jni) }.is_some()
}

/// `MemoryMXBean.getHeapMemoryUsage()` (or the non-heap one) as `[used, committed, max]`:
/// the same VM function (`jmm_GetMemoryUsage`), without the Java frames around it.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, in native state, with no exception pending.
pub unsafe fn memory_usage(jni: *mut sys::JNIEnv, heap: bool) -> Result<Option<[sys::jlong; 3]>, Threw> {
    // SAFETY: forwarded.
    let Some(jmm) = (unsafe { jmm(jni) }) else { return Ok(None) };
    // SAFETY: a valid JNIEnv in native state.
    let usage = unsafe { (jmm.get_memory_usage)(jni, heap as sys::jboolean) };
    // SAFETY: forwarded; the call's fresh local reference.
    unsafe { take_usage(jni, usage) }
}

/// `pool.getUsage()` (or, with `after_gc`, `pool.getCollectionUsage()`) as `[used,
/// committed, max]`; `None` where the pool has none (an invalid pool, or no collection usage).
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, in native state, with no exception pending;
/// `pool` a valid reference to one of the VM's `MemoryPoolMXBean`s.
pub unsafe fn pool_usage(
    jni: *mut sys::JNIEnv,
    pool: sys::jobject,
    after_gc: bool,
) -> Result<Option<[sys::jlong; 3]>, Threw> {
    // SAFETY: forwarded.
    let Some(jmm) = (unsafe { jmm(jni) }) else { return Ok(None) };
    let get = if after_gc { jmm.get_pool_collection_usage } else { jmm.get_memory_pool_usage };
    // SAFETY: a valid JNIEnv in native state and a pool reference (the VM throws
    // IllegalArgumentException for anything else).
    let usage = unsafe { get(jni, pool) };
    // SAFETY: forwarded; the call's fresh local reference.
    unsafe { take_usage(jni, usage) }
}

/// `jmmLongAttribute`s (jmm.h), as the `GetLongAttributes` call takes them.
pub mod attr {
    use crate::bindings::jint;
    /// Classes loaded since start (`ClassLoadingMXBean.getTotalLoadedClassCount()`).
    pub const CLASS_LOADED_COUNT: jint = 1;
    /// Classes unloaded since start.
    pub const CLASS_UNLOADED_COUNT: jint = 2;
    /// Live threads (`ThreadMXBean.getThreadCount()`).
    pub const THREAD_LIVE_COUNT: jint = 4;
    /// Live daemon threads.
    pub const THREAD_DAEMON_COUNT: jint = 6;
    /// A collector's accumulated collection time, ms (`getCollectionTime()`).
    pub const GC_TIME_MS: jint = 9;
    /// A collector's collections (`getCollectionCount()`).
    pub const GC_COUNT: jint = 10;
}

/// Reads `atts` of `obj` (a `GarbageCollectorMXBean` for the GC attributes, null for the
/// VM-wide ones) in one VM call: what the MXBean getters read one call each. All -1 where
/// JMM is not usable.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, in native state, with no exception pending;
/// `obj` null or a valid reference to one of the VM's memory managers.
pub unsafe fn long_attributes<const N: usize>(
    jni: *mut sys::JNIEnv,
    obj: sys::jobject,
    mut atts: [sys::jint; N],
) -> Result<[sys::jlong; N], Threw> {
    let mut out = [-1 as sys::jlong; N];
    // SAFETY: forwarded.
    let Some(jmm) = (unsafe { jmm(jni) }) else { return Ok(out) };
    // SAFETY: a valid JNIEnv in native state; `atts` and `out` hold N elements each, the
    // count the VM reads and writes (it only reads `atts`; the C signature is not const).
    unsafe { (jmm.get_long_attributes)(jni, obj, atts.as_mut_ptr(), N as sys::jint, out.as_mut_ptr()) };
    check(jni).map(|()| out)
}

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
//! later slot down by one). Any other VM gets `None`, and the monitor keeps
//! `getLastGcInfo()`.
//!
//! Not for GC callbacks: every call here is a JNI or JMM call, made from the monitor thread
//! (or the VM-death flush) in a native method.

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
type GetLastGcStat = unsafe extern "system" fn(*mut sys::JNIEnv, sys::jobject, *mut GcStat);

/// The JMM versions whose table layout is known, with the slot (in pointers from the start of
/// the table) of `GetLastGCStat`. Slots 2 (`GetVersion`) and 5 (`GetMemoryPools`) are the
/// same in both.
const LAYOUTS: [(sys::jint, usize); 2] = [(0x2004_0000, 27), (0x2003_0000, 26)];
const GET_VERSION_SLOT: usize = 2;
const GET_MEMORY_POOLS_SLOT: usize = 5;

struct Jmm {
    get_memory_pools: GetMemoryPools,
    get_last_gc_stat: GetLastGcStat,
}

static JMM: OnceLock<Option<Jmm>> = OnceLock::new();
/// `java.lang.management.MemoryUsage.used`, looked up once (a bootstrap class: never
/// unloaded, so the ID stays valid).
static USED_FIELD: OnceLock<usize> = OnceLock::new();

/// Finds the table, or `None` on a VM whose JMM version is not one of [`LAYOUTS`].
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, in a native method.
unsafe fn lookup(jni: *mut sys::JNIEnv) -> Option<Jmm> {
    // SAFETY: dlsym with a NUL-terminated name; the launcher loads libjvm RTLD_GLOBAL.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"JVM_GetManagement".as_ptr()) };
    if sym.is_null() {
        return None;
    }
    // SAFETY: `JVM_GetManagement` is `void* JNICALL JVM_GetManagement(jint version)` (jvm.h).
    let get_management: unsafe extern "system" fn(sys::jint) -> *mut c_void = unsafe { std::mem::transmute(sym) };
    for (version, slot) in LAYOUTS {
        // SAFETY: as above; it returns null for any version but the VM's own.
        let table = unsafe { get_management(version) }.cast::<*const c_void>();
        if table.is_null() {
            continue;
        }
        // SAFETY: a non-null table is the VM's `JmmInterface` of exactly `version`, whose
        // layout has `GetVersion` at slot 2 and `GetLastGCStat` at `slot`.
        let (get_version, get_pools, get_last) =
            unsafe { (*table.add(GET_VERSION_SLOT), *table.add(GET_MEMORY_POOLS_SLOT), *table.add(slot)) };
        if get_version.is_null() || get_pools.is_null() || get_last.is_null() {
            return None;
        }
        // SAFETY: slot 2 holds `jint GetVersion(JNIEnv*)`.
        let get_version: GetVersion = unsafe { std::mem::transmute(get_version) };
        // SAFETY: `jni` is the current thread's JNIEnv (our contract).
        if unsafe { get_version(jni) } != version {
            return None;
        }
        // SAFETY: slot 5 holds `jobjectArray GetMemoryPools(JNIEnv*, jobject)`, `slot` holds
        // `void GetLastGCStat(JNIEnv*, jobject, jmmGCStat*)`.
        return Some(unsafe {
            Jmm {
                get_memory_pools: std::mem::transmute::<*const c_void, GetMemoryPools>(get_pools),
                get_last_gc_stat: std::mem::transmute::<*const c_void, GetLastGcStat>(get_last),
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
    if jni!(jni, ExceptionCheck) != Some(0) {
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
    let field = *USED_FIELD.get_or_init(|| {
        let cls = jni!(jni, GetObjectClass, usage).unwrap_or(ptr::null_mut());
        let id = if cls.is_null() {
            ptr::null_mut()
        } else {
            jni!(jni, GetFieldID, cls, c"used".as_ptr(), c"J".as_ptr()).unwrap_or(ptr::null_mut())
        };
        // SAFETY: forwarded.
        unsafe { clear_exception(jni) };
        id as usize
    });
    let value = if field == 0 { -1 } else { jni!(jni, GetLongField, usage, field as sys::jfieldID).unwrap_or(-1) };
    let _ = jni!(jni, DeleteLocalRef, usage);
    value
}

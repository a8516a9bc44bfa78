//! The natives behind `io.jvmwatch.internal.Bridge` and the in-VM monitor.
//!
//! At VM init the agent defines three embedded classes in the bootstrap loader: `Bridge`
//! (whose natives are registered here with RegisterNatives), `Monitor` (the in-VM monitoring
//! program, started on its own daemon thread) and `Probe` (read by the sampler). The
//! `io.jvmwatch` API finds `Bridge` through the bootstrap loader; without the agent it runs as
//! a no-op.
//!
//! These natives run on ordinary Java threads (application threads, the monitor thread, the
//! GC notification thread), never inside a GC pause: they may allocate and take the writer's
//! registration lock. Every one runs under `catch_unwind`.

use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Mutex;

use jvmwatch_ring::metrics::Kind;
use jvmwatch_ring::{Event, Text};

use crate::agent::{self, Agent};
use crate::bindings as sys;
use crate::jvmti::{clear_exception, jni};

static BRIDGE_CLASS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agent-classes/io/jvmwatch/internal/Bridge.class"));
static MONITOR_CLASS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agent-classes/io/jvmwatch/internal/Monitor.class"));

/// Defines a class from embedded bytes in the bootstrap loader; returns a local ref.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv.
pub unsafe fn define(jni: *mut sys::JNIEnv, name: &CStr, bytes: &[u8]) -> Result<sys::jclass, String> {
    let cls = jni!(jni, DefineClass, name.as_ptr(), ptr::null_mut(), bytes.as_ptr().cast(), bytes.len() as sys::jsize)
        .unwrap_or(ptr::null_mut());
    // SAFETY: forwarded.
    let threw = unsafe { clear_exception(jni) };
    if cls.is_null() || threw {
        return Err(format!("cannot define {}", name.to_string_lossy()));
    }
    Ok(cls)
}

/// Defines `Bridge` with its natives and, when `monitor` is true, starts `Monitor`. Called from
/// the VMInit callback.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv.
pub unsafe fn install(jni: *mut sys::JNIEnv, monitor: bool) -> Result<(), String> {
    // SAFETY: forwarded.
    let bridge = unsafe { define(jni, c"io/jvmwatch/internal/Bridge", BRIDGE_CLASS) }?;
    macro_rules! native {
        ($name:literal, $sig:literal, $f:expr) => {
            sys::JNINativeMethod {
                name: $name.as_ptr().cast_mut(),
                signature: $sig.as_ptr().cast_mut(),
                fnPtr: $f as *mut c_void,
            }
        };
    }
    let methods = [
        native!(c"metrics", c"()Ljava/nio/ByteBuffer;", metrics as extern "system" fn(_, _) -> _),
        native!(c"register", c"(ILjava/lang/String;)I", register as extern "system" fn(_, _, _, _) -> _),
        native!(c"intern", c"(Ljava/lang/String;)I", intern as extern "system" fn(_, _, _) -> _),
        native!(c"event", c"(Ljava/lang/String;Ljava/lang/String;)V", app_event as extern "system" fn(_, _, _, _)),
        native!(c"app", c"(Ljava/lang/String;)V", app as extern "system" fn(_, _, _)),
        native!(c"gcCycle", c"(IJIIIZJJ)V", gc_cycle as extern "system" fn(_, _, _, _, _, _, _, _, _, _)),
        native!(c"gcPool", c"(IIJJ)V", gc_pool as extern "system" fn(_, _, _, _, _, _)),
        native!(c"deadlock", c"(IILjava/lang/String;)V", deadlock as extern "system" fn(_, _, _, _, _)),
        native!(c"warn", c"(Ljava/lang/String;)V", warn as extern "system" fn(_, _, _)),
        native!(c"gaugeSet", c"(IJ)V", gauge_set as extern "system" fn(_, _, _, _)),
        native!(c"gcMode", c"()I", gc_mode as extern "system" fn(_, _) -> _),
        native!(c"blockedThreads", c"()I", blocked_threads as extern "system" fn(_, _) -> _),
        native!(c"awaitGc", c"(II)I", await_gc as extern "system" fn(_, _, _, _) -> _),
        native!(c"gcCause", c"(I)I", gc_cause as extern "system" fn(_, _, _) -> _),
        native!(c"memoryPools", c"()[Ljava/lang/Object;", memory_pools as extern "system" fn(_, _) -> _),
        native!(
            c"lastGc",
            c"(Ljava/lang/Object;[Ljava/lang/Object;[Ljava/lang/Object;[I[J)I",
            last_gc as extern "system" fn(_, _, _, _, _, _, _) -> _
        ),
    ];
    let rc = jni!(jni, RegisterNatives, bridge, methods.as_ptr(), methods.len() as sys::jint).unwrap_or(-1);
    // SAFETY: forwarded.
    if rc != 0 || unsafe { clear_exception(jni) } {
        return Err("cannot register natives".into());
    }
    if !monitor {
        return Ok(());
    }
    // SAFETY: forwarded.
    let monitor = unsafe { define(jni, c"io/jvmwatch/internal/Monitor", MONITOR_CLASS) }?;
    let start = jni!(jni, GetStaticMethodID, monitor, c"start".as_ptr(), c"()V".as_ptr()).unwrap_or(ptr::null_mut());
    if start.is_null() {
        // SAFETY: forwarded.
        unsafe { clear_exception(jni) };
        return Err("Monitor.start missing".into());
    }
    // The monitor's flush at VM death, which also ends its loop: a global reference keeps the
    // class. Without it, no monitor (its loop would spin once `gcwake::stop` ends its waits).
    let global = jni!(jni, NewGlobalRef, monitor).unwrap_or(ptr::null_mut());
    if global.is_null() {
        // SAFETY: forwarded.
        unsafe { clear_exception(jni) };
        return Err("no global reference to the monitor class".into());
    }
    MONITOR_CLASS_REF.store(global.cast(), std::sync::atomic::Ordering::Release);
    let _ = jni!(jni, CallStaticVoidMethodA, monitor, start, ptr::null());
    // SAFETY: forwarded.
    if unsafe { clear_exception(jni) } {
        return Err("monitor did not start".into());
    }
    Ok(())
}

/// The Monitor class (a JNI global reference), or null without a monitor.
static MONITOR_CLASS_REF: std::sync::atomic::AtomicPtr<c_void> = std::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// At VM death: lets the monitor write the collections that finished since it last looked
/// (`Monitor.flush`), so a JVM that collects and exits at once still tells its last
/// collections. Exceptions are cleared.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv (VMDeath callback).
pub unsafe fn flush_monitor(jni: *mut sys::JNIEnv) {
    let cls: sys::jclass = MONITOR_CLASS_REF.load(std::sync::atomic::Ordering::Acquire).cast();
    if cls.is_null() {
        return;
    }
    let flush = jni!(jni, GetStaticMethodID, cls, c"flush".as_ptr(), c"()V".as_ptr()).unwrap_or(ptr::null_mut());
    if !flush.is_null() {
        let _ = jni!(jni, CallStaticVoidMethodA, cls, flush, ptr::null());
    }
    // SAFETY: forwarded.
    unsafe { clear_exception(jni) };
}

/// Runs a native body with the agent, swallowing panics; `default` if there is no agent.
fn with_agent<T>(default: T, f: impl FnOnce(&'static Agent) -> T) -> T {
    match agent::get() {
        Some(a) => catch_unwind(AssertUnwindSafe(|| f(a))).unwrap_or(default),
        None => default,
    }
}

/// Longest Java string copied, in UTF-16 units: every place a string goes is shorter (names
/// ≤ 120 bytes, details ≤ 40, string table entries ≤ 63), so nothing useful is lost.
const MAX_JAVA_STRING: sys::jsize = 1024;

/// Copies a Java string as UTF-16 (`GetStringRegion`) and converts it properly:
/// `GetStringUTFChars` hands over *modified* UTF-8, in which a supplementary character (an
/// emoji) is two 3-byte surrogates that are not UTF-8, so distinct names would decode to the
/// same replacement characters. An unpaired surrogate becomes U+FFFD. At most
/// [`MAX_JAVA_STRING`] units are copied.
pub(crate) fn java_string(jni: *mut sys::JNIEnv, s: sys::jstring) -> String {
    if s.is_null() {
        return String::new();
    }
    let len = jni!(jni, GetStringLength, s).unwrap_or(0).clamp(0, MAX_JAVA_STRING);
    let mut units = vec![0u16; len as usize];
    let _ = jni!(jni, GetStringRegion, s, 0, len, units.as_mut_ptr());
    // SAFETY: `jni` is the current thread's JNIEnv (every caller is a native method or the
    // sampler thread); the range is within the string, so this only clears a stray error.
    if unsafe { clear_exception(jni) } {
        return String::new();
    }
    String::from_utf16_lossy(&units)
}

/// `s` with control characters replaced by `?`, for a warning text.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Why a full instrument name (`name` or `name{k=v,...}`) is refused, if it is: a control
/// character (a newline would end a line of the Prometheus text), or no name at all. The
/// Java API checks more (tag syntax, tag keys that collide as Prometheus labels); this is the
/// check every caller of the native gets.
pub fn refuse_instrument(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.starts_with('{') {
        Some("no name")
    } else if name.chars().any(char::is_control) {
        Some("control character")
    } else {
        None
    }
}

extern "system" fn metrics(jni: *mut sys::JNIEnv, _cls: sys::jclass) -> sys::jobject {
    with_agent(ptr::null_mut(), |a| {
        let (p, len) = a.writer.metrics_region();
        jni!(jni, NewDirectByteBuffer, p.cast(), len as sys::jlong).unwrap_or(ptr::null_mut())
    })
}

extern "system" fn register(
    jni: *mut sys::JNIEnv,
    _cls: sys::jclass,
    kind: sys::jint,
    name: sys::jstring,
) -> sys::jint {
    with_agent(-1, |a| {
        let name = java_string(jni, name);
        let Some(kind) = instrument_kind(kind) else {
            // A timer from an io.jvmwatch API older than ring format 3 would record into the
            // old one-slot layout: refuse it rather than let it write over its own stripes.
            let text = format!("metric refused: old API jar: {}", printable(&name));
            a.writer.emit(&Event::AgentWarning { text: Text::new(&text, 40) });
            return -1;
        };
        if let Some(why) = refuse_instrument(&name) {
            let text = format!("metric refused: {why}: {}", printable(&name));
            a.writer.emit(&Event::AgentWarning { text: Text::new(&text, 40) });
            return -1;
        }
        match a.writer.register(kind, &name) {
            Some(i) => i as sys::jint,
            None => {
                a.writer.emit(&Event::AgentWarning {
                    text: Text::new(&format!("metric dropped: {}", printable(&name)), 40),
                });
                -1
            }
        }
    })
}

/// The kind a `Bridge.register` call asks for: 1 counter, 2 gauge, and a timer only as
/// `3 | 1 << 8` (the API's `STRIPED_TIMER`: it records into the per-stripe layout of ring format
/// 3). Anything else, plain 3 from an older API jar included, is `None`.
fn instrument_kind(code: sys::jint) -> Option<Kind> {
    match code {
        1 => Some(Kind::Counter),
        2 => Some(Kind::Gauge),
        0x103 => Some(Kind::Timer),
        _ => None,
    }
}

extern "system" fn intern(jni: *mut sys::JNIEnv, _cls: sys::jclass, s: sys::jstring) -> sys::jint {
    with_agent(u16::MAX as sys::jint, |a| a.writer.intern(&java_string(jni, s)) as sys::jint)
}

/// How many entries of the ring's string table (63) application event names may take,
/// [`OVERFLOW_EVENT_NAME`] included. The rest stays for the in-VM monitor's collector, cause,
/// action and pool names, which compact GC events refer to.
pub const APP_EVENT_NAMES: usize = 16;
/// The name an application event gets once the application's share of the table is used up;
/// its real name then goes inline, in front of the detail (`name: detail`).
pub const OVERFLOW_EVENT_NAME: &str = "event";

/// The application event names interned so far (at most [`APP_EVENT_NAMES`]).
static APP_NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The string id for an application event name, and whether the name must go inline in the
/// detail because the application's share of the string table is used up.
fn app_event_name(a: &Agent, name: &str) -> (u16, bool) {
    // The table keeps at most 63 bytes of a string: compare what it would keep.
    let mut end = name.len().min(jvmwatch_ring::metrics::STRING_SIZE - 1);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let name = &name[..end];
    let mut names = APP_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let known = names.iter().any(|n| n == name);
    // One entry of the share is kept for the overflow name itself.
    let room = names.len() + 1 < APP_EVENT_NAMES || (name == OVERFLOW_EVENT_NAME && names.len() < APP_EVENT_NAMES);
    if known || room {
        let id = a.writer.intern(name);
        if id != u16::MAX {
            if !known {
                names.push(name.to_string());
            }
            return (id, false);
        }
    }
    let id = a.writer.intern(OVERFLOW_EVENT_NAME);
    if id != u16::MAX && !names.iter().any(|n| n == OVERFLOW_EVENT_NAME) {
        names.push(OVERFLOW_EVENT_NAME.to_string());
    }
    (id, name != OVERFLOW_EVENT_NAME)
}

extern "system" fn app_event(jni: *mut sys::JNIEnv, _cls: sys::jclass, name: sys::jstring, detail: sys::jstring) {
    with_agent((), |a| {
        let name = java_string(jni, name);
        let detail = java_string(jni, detail);
        let (id, inline) = app_event_name(a, &name);
        let detail = if inline { Text::new(&format!("{name}: {detail}"), 38) } else { Text::new(&detail, 38) };
        a.writer.emit(&Event::AppEvent { name: id, detail });
    })
}

/// Serialises [`jvmwatch_ring::Writer::set_app_name`]: it checks that the name is still
/// empty and then writes it word by word, so two threads naming the app at once (the monitor
/// reading `-Djvmwatch.app` and the application calling `Jvmwatch.setApp`) could both pass
/// the check and interleave their words into a torn name. Under this lock the second caller
/// sees the first one's complete name and leaves it (first call wins). Readers need no lock:
/// the first word is stored last with Release, so a reader sees either no name or a whole one.
static APP_NAME_LOCK: Mutex<()> = Mutex::new(());

/// Sets the application name once, safely against concurrent callers (see [`APP_NAME_LOCK`]).
pub fn set_app_name(writer: &jvmwatch_ring::Writer, name: &str) -> bool {
    let _guard = APP_NAME_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    writer.set_app_name(name)
}

extern "system" fn app(jni: *mut sys::JNIEnv, _cls: sys::jclass, name: sys::jstring) {
    with_agent((), |a| {
        set_app_name(&a.writer, &java_string(jni, name));
    })
}

#[allow(clippy::too_many_arguments)]
extern "system" fn gc_cycle(
    _jni: *mut sys::JNIEnv,
    _cls: sys::jclass,
    gc_number: sys::jint,
    duration_us: sys::jlong,
    collector: sys::jint,
    cause: sys::jint,
    action: sys::jint,
    concurrent: sys::jboolean,
    before: sys::jlong,
    after: sys::jlong,
) {
    with_agent((), |a| {
        // Only a whole collection tells the heap after it: the pause-only beans of ZGC and
        // Shenandoah ("... Pauses") and G1's "G1 Concurrent GC" (remark and cleanup pauses)
        // report the heap in the middle of a cycle, garbage included, or nothing at all.
        let whole = a
            .writer
            .interned(collector.clamp(0, u16::MAX as i32) as u16)
            .is_none_or(|n| !n.ends_with(b"Pauses") && n != b"G1 Concurrent GC");
        if after > 0 && whole {
            a.heap_after_gc.store(after as u64, std::sync::atomic::Ordering::Relaxed);
        }
        a.writer.emit(&Event::GcCycle {
            gc_number: gc_number as u32,
            duration_us: duration_us.clamp(0, u32::MAX as i64) as u32,
            collector: collector as u16,
            cause: cause as u16,
            action: action as u16,
            concurrent: concurrent != 0,
            before: before.max(0) as u64,
            after: after.max(0) as u64,
        });
    })
}

/// Threads blocked on a monitor at the sampler's latest tick; -1 when not known yet.
extern "system" fn blocked_threads(_jni: *mut sys::JNIEnv, _cls: sys::jclass) -> sys::jint {
    with_agent(-1, |a| match a.blocked_threads.load(std::sync::atomic::Ordering::Relaxed) {
        u32::MAX => -1,
        n => n.min(i32::MAX as u32) as sys::jint,
    })
}

/// `gc=`: 0 poll, 1 notify.
extern "system" fn gc_mode(_jni: *mut sys::JNIEnv, _cls: sys::jclass) -> sys::jint {
    with_agent(1, |a| match a.config.gc {
        crate::options::GcSource::Poll => 0,
        crate::options::GcSource::Notify => 1,
    })
}

/// For `gc=poll`, before the monitor starts: sets the monitor's nap (`gc-poll=`) and maps
/// hsperfdata's `sun.gc.cause` and `sun.gc.lastCause` for the GC-finish callback (at VM init,
/// so the first collection already has its cause). Without hsperfdata causes stay unknown, and
/// one agent warning says so.
pub fn prepare_gc_poll(a: &Agent) {
    crate::gcwake::set_fixed_nap(a.config.gc_poll);
    if let Some([cause, last]) = crate::perfdata::map_own(["sun.gc.cause", "sun.gc.lastCause"]) {
        // SAFETY: map_own's mappings are never unmapped.
        unsafe { crate::gcwake::set_cause_source(cause, last) };
    } else {
        a.writer.emit(&Event::AgentWarning { text: Text::new("gc=poll: no hsperfdata, causes unknown", 40) });
    }
}

/// Blocks the monitor thread until a stop-the-world collection finishes after `seen` (the
/// count it last saw) or `timeout_ms` passes; returns the count (see [`crate::gcwake`]).
extern "system" fn await_gc(
    _jni: *mut sys::JNIEnv,
    _cls: sys::jclass,
    seen: sys::jint,
    timeout_ms: sys::jint,
) -> sys::jint {
    let timeout = std::time::Duration::from_millis(timeout_ms.clamp(0, 60_000) as u64);
    std::panic::catch_unwind(|| crate::gcwake::wait(seen as u32, timeout) as sys::jint).unwrap_or(seen)
}

/// The interned cause of finish number `n`, or -1 when unknown (no hsperfdata, or no longer
/// kept).
extern "system" fn gc_cause(_jni: *mut sys::JNIEnv, _cls: sys::jclass, n: sys::jint) -> sys::jint {
    with_agent(-1, |a| match crate::gcwake::cause(n as u32) {
        Some(c) if !c.is_empty() && c != "No GC" => a.writer.intern(&c) as sys::jint,
        _ => -1,
    })
}

/// `Bridge.memoryPools`: the VM's memory pools in its own order (see
/// [`crate::jmm::memory_pools`]), or null.
extern "system" fn memory_pools(jni: *mut sys::JNIEnv, _cls: sys::jclass) -> sys::jobjectArray {
    // SAFETY: the current thread's JNIEnv (a native method).
    catch_unwind(|| unsafe { crate::jmm::memory_pools(jni) }).unwrap_or(ptr::null_mut())
}

/// Most heap pools [`last_gc`] reads (HotSpot's collectors have 2–3).
const MAX_HEAP_POOLS: usize = 16;

/// `Bridge.lastGc`: collector `bean`'s last collection through JMM (see [`crate::jmm`]) into
/// `out`; 1 read, 0 no collection yet, -1 unavailable (the monitor then uses
/// `getLastGcInfo()`). What the VM throws reaches the caller.
extern "system" fn last_gc(
    jni: *mut sys::JNIEnv,
    _cls: sys::jclass,
    bean: sys::jobject,
    before: sys::jobjectArray,
    after: sys::jobjectArray,
    heap: sys::jintArray,
    out: sys::jlongArray,
) -> sys::jint {
    let read = || {
        let n = if heap.is_null() { -1 } else { jni!(jni, GetArrayLength, heap).unwrap_or(-1) };
        let Ok(n @ 0..=MAX_HEAP_POOLS) = usize::try_from(n) else {
            return -1;
        };
        let mut pools = [0 as sys::jint; MAX_HEAP_POOLS];
        let mut values = [-1 as sys::jlong; 3 + 2 * MAX_HEAP_POOLS];
        let len = 3 + 2 * n;
        let _ = jni!(jni, GetIntArrayRegion, heap, 0, n as sys::jsize, pools.as_mut_ptr());
        // SAFETY: the current thread's JNIEnv (a native method); the references are the
        // method's arguments.
        let read = unsafe { crate::jmm::last_gc(jni, bean, before, after, &pools[..n], &mut values[..len]) };
        match read {
            crate::jmm::LastGc::Read => {
                let _ = jni!(jni, SetLongArrayRegion, out, 0, len as sys::jsize, values.as_ptr());
                // SAFETY: as above (a short `out` throws; cleared).
                if unsafe { clear_exception(jni) } {
                    -1
                } else {
                    1
                }
            }
            crate::jmm::LastGc::None => 0,
            // Threw: the exception is pending and reaches the Java caller.
            crate::jmm::LastGc::Unavailable | crate::jmm::LastGc::Threw => -1,
        }
    };
    catch_unwind(AssertUnwindSafe(read)).unwrap_or(-1)
}

extern "system" fn gc_pool(
    _jni: *mut sys::JNIEnv,
    _cls: sys::jclass,
    gc_number: sys::jint,
    pool: sys::jint,
    before: sys::jlong,
    after: sys::jlong,
) {
    with_agent((), |a| {
        a.writer.emit(&Event::GcPool {
            gc_number: gc_number as u32,
            pool: pool as u16,
            before: before.max(0) as u64,
            after: after.max(0) as u64,
        });
    })
}

extern "system" fn deadlock(
    jni: *mut sys::JNIEnv,
    _cls: sys::jclass,
    threads: sys::jint,
    index: sys::jint,
    text: sys::jstring,
) {
    with_agent((), |a| {
        let text = Text::new(&java_string(jni, text), 38);
        a.writer.emit(&Event::Deadlock {
            threads: threads.clamp(0, 255) as u8,
            index: index.clamp(0, 255) as u8,
            text,
        });
        // A deadlock is when the stacks matter most: capture them at the sampler's next tick.
        a.stacks_requested.store(true, std::sync::atomic::Ordering::Relaxed);
    })
}

extern "system" fn warn(jni: *mut sys::JNIEnv, _cls: sys::jclass, text: sys::jstring) {
    with_agent((), |a| {
        a.writer.emit(&Event::AgentWarning { text: Text::new(&java_string(jni, text), 40) });
    })
}

extern "system" fn gauge_set(_jni: *mut sys::JNIEnv, _cls: sys::jclass, index: sys::jint, value: sys::jlong) {
    with_agent((), |a| {
        if index >= 0 && (index as usize) < jvmwatch_ring::metrics::MAX_INSTRUMENTS {
            a.writer.gauge_set(index as usize, value);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jvmwatch_ring::{Identity, Ring, Writer};
    use std::sync::Barrier;

    const ROUNDS: usize = 2000;

    /// A timer is registered only with the per-stripe layout bit: an older API jar's plain 3
    /// would record into the one-slot layout of ring formats 1 and 2.
    #[test]
    fn timers_need_the_striped_layout_code() {
        assert_eq!(instrument_kind(1), Some(Kind::Counter));
        assert_eq!(instrument_kind(2), Some(Kind::Gauge));
        assert_eq!(instrument_kind(0x103), Some(Kind::Timer));
        for refused in [0, 3, 4, 0x101, 0x203, -1] {
            assert_eq!(instrument_kind(refused), None, "{refused:#x}");
        }
    }

    /// Without the lock, 4 threads racing on a fresh ring tore the name about once in a
    /// thousand rounds ("DDDD…DDDBBBBBBB").
    #[test]
    fn concurrent_app_names_are_never_torn() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (b'A'..=b'D').map(|c| char::from(c).to_string().repeat(31)).collect();
        for round in 0..ROUNDS {
            let path = dir.path().join(format!("{round}.ring"));
            let w = Writer::create(&path, 1024, &Identity::default()).unwrap();
            let barrier = Barrier::new(names.len());
            std::thread::scope(|s| {
                for n in &names {
                    let (w, barrier) = (&w, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        set_app_name(w, n)
                    });
                }
            });
            let got = Ring::open(&path).unwrap().live().unwrap().app_name;
            assert!(names.contains(&got), "round {round}: torn name {got:?}");
            drop(w);
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn instrument_names_with_control_characters_are_refused() {
        assert_eq!(refuse_instrument("a\nb"), Some("control character"));
        assert_eq!(refuse_instrument("a{k=v\r}"), Some("control character"));
        assert_eq!(refuse_instrument(""), Some("no name"));
        assert_eq!(refuse_instrument("{k=v}"), Some("no name"));
        assert_eq!(refuse_instrument("http.requests{route=/x}"), None);
        assert_eq!(refuse_instrument("emoji.\u{1F600}"), None);
    }
}

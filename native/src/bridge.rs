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
        native!(c"event", c"(ILjava/lang/String;)V", app_event as extern "system" fn(_, _, _, _)),
        native!(c"app", c"(Ljava/lang/String;)V", app as extern "system" fn(_, _, _)),
        native!(c"gcCycle", c"(IJIIIZJJ)V", gc_cycle as extern "system" fn(_, _, _, _, _, _, _, _, _, _)),
        native!(c"gcPool", c"(IIJJ)V", gc_pool as extern "system" fn(_, _, _, _, _, _)),
        native!(c"deadlock", c"(IILjava/lang/String;)V", deadlock as extern "system" fn(_, _, _, _, _)),
        native!(c"warn", c"(Ljava/lang/String;)V", warn as extern "system" fn(_, _, _)),
        native!(c"gaugeSet", c"(IJ)V", gauge_set as extern "system" fn(_, _, _, _)),
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
    let _ = jni!(jni, CallStaticVoidMethodA, monitor, start, ptr::null());
    // SAFETY: forwarded.
    if unsafe { clear_exception(jni) } {
        return Err("monitor did not start".into());
    }
    Ok(())
}

/// Runs a native body with the agent, swallowing panics; `default` if there is no agent.
fn with_agent<T>(default: T, f: impl FnOnce(&'static Agent) -> T) -> T {
    match agent::get() {
        Some(a) => catch_unwind(AssertUnwindSafe(|| f(a))).unwrap_or(default),
        None => default,
    }
}

/// Copies a Java string (modified UTF-8; fine for names and details).
fn string(jni: *mut sys::JNIEnv, s: sys::jstring) -> String {
    if s.is_null() {
        return String::new();
    }
    let chars = jni!(jni, GetStringUTFChars, s, ptr::null_mut()).unwrap_or(ptr::null());
    if chars.is_null() {
        return String::new();
    }
    // SAFETY: GetStringUTFChars returned a NUL-terminated string valid until released.
    let out = unsafe { CStr::from_ptr(chars) }.to_string_lossy().into_owned();
    let _ = jni!(jni, ReleaseStringUTFChars, s, chars);
    out
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
        let Some(kind) = Kind::from_u32(kind as u32) else { return -1 };
        let name = string(jni, name);
        match a.writer.register(kind, &name) {
            Some(i) => i as sys::jint,
            None => {
                a.writer.emit(&Event::AgentWarning { text: Text::new(&format!("metric dropped: {name}"), 40) });
                -1
            }
        }
    })
}

extern "system" fn intern(jni: *mut sys::JNIEnv, _cls: sys::jclass, s: sys::jstring) -> sys::jint {
    with_agent(u16::MAX as sys::jint, |a| a.writer.intern(&string(jni, s)) as sys::jint)
}

extern "system" fn app_event(jni: *mut sys::JNIEnv, _cls: sys::jclass, name: sys::jint, detail: sys::jstring) {
    with_agent((), |a| {
        let detail = Text::new(&string(jni, detail), 38);
        a.writer.emit(&Event::AppEvent { name: name as u16, detail });
    })
}

extern "system" fn app(jni: *mut sys::JNIEnv, _cls: sys::jclass, name: sys::jstring) {
    with_agent((), |a| {
        a.writer.set_app_name(&string(jni, name));
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
        let text = Text::new(&string(jni, text), 38);
        a.writer.emit(&Event::Deadlock {
            threads: threads.clamp(0, 255) as u8,
            index: index.clamp(0, 255) as u8,
            text,
        });
    })
}

extern "system" fn warn(jni: *mut sys::JNIEnv, _cls: sys::jclass, text: sys::jstring) {
    with_agent((), |a| {
        a.writer.emit(&Event::AgentWarning { text: Text::new(&string(jni, text), 40) });
    })
}

extern "system" fn gauge_set(_jni: *mut sys::JNIEnv, _cls: sys::jclass, index: sys::jint, value: sys::jlong) {
    with_agent((), |a| {
        if index >= 0 && (index as usize) < jvmwatch_ring::metrics::MAX_INSTRUMENTS {
            a.writer.gauge_set(index as usize, value);
        }
    })
}

//! Every JVMTI callback of the agent, wired in one place.
//!
//! | callback                   | thread            | may do                                    |
//! |----------------------------|-------------------|-------------------------------------------|
//! | `VMInit`                   | main              | JNI, allocate, start the sampler          |
//! | `VMDeath`                  | exiting thread    | record the clean exit, wake agent threads |
//! | `GarbageCollectionStart`   | VM thread, in GC  | atomics on the mapped ring ONLY           |
//! | `GarbageCollectionFinish`  | VM thread, in GC  | atomics on the mapped ring ONLY           |
//! | `ThreadStart`/`ThreadEnd`  | the thread itself | JVMTI GetThreadInfo, allocate             |
//! | `ResourceExhausted`        | failing thread    | no allocation (memory may be short)       |
//! | `DataDumpRequest`          | signal dispatcher | atomics (asks the sampler for stacks)     |
//!
//! GC callbacks run with the world stopped: no JNI, no allocation, no locks, no syscalls
//! (JVMTI spec, GarbageCollectionStart). They use only `Writer::emit_at`,
//! `Writer::gc_pause_*`, the cost recorders, `Writer::prefetch_gc_lines` and the vDSO clock. Every callback body runs under `catch_unwind`
//! so that a panic never unwinds into the JVM.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use jvmwatch_ring::{now_ns, Event, OomKind, State, Text};

use crate::agent;
use crate::bindings as sys;
use crate::jvmti::{self, Jvmti};

/// Runs `f`, swallowing a panic: nothing may unwind into the JVM.
fn guard(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// Requests the capabilities for GC and resource-exhaustion events.
pub fn add_capabilities(jvmti: &Jvmti) -> Result<(), jvmti::Error> {
    // SAFETY: jvmtiCapabilities is a plain bitfield struct; all-zero means "none".
    let mut caps: sys::jvmtiCapabilities = unsafe { std::mem::zeroed() };
    caps.set_can_generate_garbage_collection_events(1);
    caps.set_can_generate_resource_exhaustion_heap_events(1);
    caps.set_can_generate_resource_exhaustion_threads_events(1);
    jvmti.add_capabilities(&caps)?;
    add_stack_capabilities(jvmti);
    Ok(())
}

/// For the stacks capture: optional, so a VM that refuses them still runs the agent
/// (captures then lack locks, owners or line numbers).
fn add_stack_capabilities(jvmti: &Jvmti) {
    for set in [
        sys::jvmtiCapabilities::set_can_get_current_contended_monitor,
        sys::jvmtiCapabilities::set_can_get_monitor_info,
        sys::jvmtiCapabilities::set_can_get_line_numbers,
    ] {
        // SAFETY: jvmtiCapabilities is a plain bitfield struct; all-zero means "none".
        let mut one: sys::jvmtiCapabilities = unsafe { std::mem::zeroed() };
        set(&mut one, 1);
        let _ = jvmti.add_capabilities(&one);
    }
}

/// In the live phase (attach): requests the same capabilities one by one and returns the
/// names of those the JVM refused, whose events will be missing. HotSpot grants all three at
/// any time (they are among its "always" capabilities); another JVM may not.
pub fn add_capabilities_live(jvmti: &Jvmti) -> Vec<&'static str> {
    type Set = fn(&mut sys::jvmtiCapabilities);
    let each: [(&str, Set); 3] = [
        ("GC pause events", |c| c.set_can_generate_garbage_collection_events(1)),
        ("heap exhaustion events", |c| c.set_can_generate_resource_exhaustion_heap_events(1)),
        ("thread exhaustion events", |c| c.set_can_generate_resource_exhaustion_threads_events(1)),
    ];
    if add_capabilities(jvmti).is_ok() {
        return Vec::new();
    }
    let mut missing = Vec::new();
    for (name, set) in each {
        // SAFETY: as in `add_capabilities`.
        let mut caps: sys::jvmtiCapabilities = unsafe { std::mem::zeroed() };
        set(&mut caps);
        if jvmti.add_capabilities(&caps).is_err() {
            missing.push(name);
        }
    }
    add_stack_capabilities(jvmti);
    missing
}

/// Installs the callbacks and enables their events. An attached agent (`mode` = `Attach`)
/// leaves out VM init (long past) and the events whose capability the JVM refused.
pub fn install(jvmti: &Jvmti, mode: agent::Mode) -> Result<(), jvmti::Error> {
    // SAFETY: jvmtiEventCallbacks is a struct of nullable function pointers; zero = none.
    let mut cb: sys::jvmtiEventCallbacks = unsafe { std::mem::zeroed() };
    cb.VMInit = Some(vm_init);
    cb.VMDeath = Some(vm_death);
    cb.GarbageCollectionStart = Some(gc_start);
    cb.GarbageCollectionFinish = Some(gc_finish);
    cb.ThreadStart = Some(thread_start);
    cb.ThreadEnd = Some(thread_end);
    cb.ResourceExhausted = Some(resource_exhausted);
    cb.DataDumpRequest = Some(data_dump);
    jvmti.set_event_callbacks(&cb)?;
    for ev in [
        sys::JVMTI_EVENT_VM_INIT,
        sys::JVMTI_EVENT_VM_DEATH,
        sys::JVMTI_EVENT_GARBAGE_COLLECTION_START,
        sys::JVMTI_EVENT_GARBAGE_COLLECTION_FINISH,
        sys::JVMTI_EVENT_THREAD_START,
        sys::JVMTI_EVENT_THREAD_END,
        sys::JVMTI_EVENT_RESOURCE_EXHAUSTED,
        sys::JVMTI_EVENT_DATA_DUMP_REQUEST,
    ] {
        match jvmti.enable(ev) {
            Ok(()) => {}
            Err(_) if mode == agent::Mode::Attach && ev == sys::JVMTI_EVENT_VM_INIT => {}
            // Attached without the capability (see `add_capabilities_live`): that event is
            // missing, the rest work.
            Err(e) if mode == agent::Mode::Attach && e.0 == sys::JVMTI_ERROR_MUST_POSSESS_CAPABILITY => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

unsafe extern "C" fn vm_init(_jvmti: *mut sys::jvmtiEnv, jni: *mut sys::JNIEnv, _thread: sys::jthread) {
    guard(|| {
        let Some(a) = agent::get() else { return };
        let now = now_ns();
        a.writer.set_vm_init_ns(now);
        a.writer.emit_at(now, &Event::VmInit);
        a.writer.set_state(State::Running);
        if a.config.monitor && a.config.gc == crate::options::GcSource::Poll {
            crate::bridge::prepare_gc_poll(a);
        }
        // SAFETY: `jni` is the VMInit thread's JNIEnv, valid for this callback.
        if let Err(e) = unsafe { crate::bridge::install(jni, a.config.monitor) } {
            a.writer.emit(&Event::AgentWarning { text: Text::new(&format!("no in-VM monitor: {e}"), 40) });
        }
        // SAFETY: `jni` is the VMInit thread's JNIEnv, valid for this callback.
        if let Err(e) = unsafe { crate::sampler::start(a, jni) } {
            a.writer.emit(&Event::AgentWarning { text: Text::new(&format!("sampler: {e}"), 40) });
        }
    });
}

unsafe extern "C" fn vm_death(_jvmti: *mut sys::jvmtiEnv, jni: *mut sys::JNIEnv) {
    guard(|| {
        let Some(a) = agent::get() else { return };
        // SAFETY: `jni` is this thread's JNIEnv in the VMDeath callback.
        unsafe { crate::bridge::flush_monitor(jni) };
        a.stopping.store(true, Ordering::Relaxed);
        let now = now_ns();
        a.writer.emit_at(now, &Event::VmDeath);
        a.writer.set_exit_ns(now);
        a.writer.set_state(State::Exited);
        // Out of their sleeps in native code, which the JVM's exit would wait for (up to
        // 300 ms: see `gcwake::stop`); the monitor thread then ends (Monitor.flush told it).
        crate::sampler::wake();
        crate::gcwake::stop();
    });
}

// GC callback: atomics only (see the module table). Measures its own cost.
unsafe extern "C" fn gc_start(_jvmti: *mut sys::jvmtiEnv) {
    guard(|| {
        let Some(a) = agent::get() else { return };
        a.writer.prefetch_gc_lines(false);
        let now = now_ns();
        let gc_id = a.writer.gc_pause_begin(now);
        a.writer.emit_at(now, &Event::GcPauseStart { gc_id, collector: a.writer.collector() });
        crate::gcwake::started();
        a.writer.record_start_callback_cost(now_ns().saturating_sub(now));
    });
}

// GC callback: atomics only (see the module table). Measures its own cost.
unsafe extern "C" fn gc_finish(_jvmti: *mut sys::jvmtiEnv) {
    guard(|| {
        let Some(a) = agent::get() else { return };
        a.writer.prefetch_gc_lines(true);
        let now = now_ns();
        if let Some((gc_id, duration_ns)) = a.writer.gc_pause_end(now) {
            a.writer.emit_at(now, &Event::GcPauseEnd { gc_id, collector: a.writer.collector(), duration_ns });
        }
        crate::gcwake::finished();
        a.writer.record_callback_cost(now_ns().saturating_sub(now));
    });
}

fn thread_event(jni: *mut sys::JNIEnv, thread: sys::jthread, start: bool) {
    let Some(a) = agent::get() else { return };
    // Release: pairs with the sampler's census (see `Agent::thread_changes`).
    a.thread_changes.fetch_add(1, Ordering::Release);
    let mut name = [0u8; 64];
    // SAFETY: called from a ThreadStart/ThreadEnd callback with that thread's JNIEnv and a
    // valid thread reference.
    let n = unsafe { a.jvmti.thread_name(jni, thread, &mut name) };
    // SAFETY: gettid has no preconditions; the callback runs on the thread itself.
    let tid = unsafe { libc::gettid() } as u32;
    // Modified UTF-8 (an emoji is two 3-byte surrogates): decode it, then cut at a character.
    let name = Text::new(&jvmti::from_modified_utf8(&name[..n]), 36);
    let ev = if start { Event::ThreadStart { tid, name } } else { Event::ThreadEnd { tid, name } };
    a.writer.emit(&ev);
}

unsafe extern "C" fn thread_start(_jvmti: *mut sys::jvmtiEnv, jni: *mut sys::JNIEnv, thread: sys::jthread) {
    guard(|| thread_event(jni, thread, true));
}

unsafe extern "C" fn thread_end(_jvmti: *mut sys::jvmtiEnv, jni: *mut sys::JNIEnv, thread: sys::jthread) {
    guard(|| thread_event(jni, thread, false));
}

unsafe extern "C" fn resource_exhausted(
    _jvmti: *mut sys::jvmtiEnv,
    _jni: *mut sys::JNIEnv,
    flags: sys::jint,
    _reserved: *const std::ffi::c_void,
    description: *const c_char,
) {
    guard(|| {
        let Some(a) = agent::get() else { return };
        let desc: &[u8] = if description.is_null() {
            b""
        } else {
            // SAFETY: JVMTI passes a NUL-terminated description valid for this callback.
            unsafe { CStr::from_ptr(description) }.to_bytes()
        };
        let kind = OomKind::classify(flags as u32, std::str::from_utf8(desc).unwrap_or(""));
        a.writer.emit(&Event::ResourceExhausted {
            kind,
            flags: flags as u32,
            detail: Text::from_bytes(&desc[..desc.len().min(35)]),
        });
    });
}

unsafe extern "C" fn data_dump(_jvmti: *mut sys::jvmtiEnv) {
    guard(|| {
        if let Some(a) = agent::get() {
            a.writer.emit(&Event::DataDump);
            // The sampler thread captures the stacks (JNI and allocation are fine there).
            a.stacks_requested.store(true, Ordering::Relaxed);
        }
    });
}

//! libjvmwatch.so — the jvmwatch JVMTI agent.
//!
//! Load with `-agentpath:/path/libjvmwatch.so[=options]` (see docs/agent-options.md). The agent
//! writes lifecycle, GC, thread and resource events and a periodic status snapshot into a
//! ring file (see the `jvmwatch-ring` crate) that outlives the JVM.
//!
//! Layout: [`agent`] (start-up and the global state), [`callbacks`] (every JVMTI callback, in
//! one place), [`sampler`] (the agent's own daemon thread), [`options`], [`identity`],
//! [`jvmti`] (wrappers over the generated [`bindings`]).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod agent;
#[allow(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]
#[rustfmt::skip]
pub mod bindings;
pub mod bridge;
pub mod callbacks;
pub mod facts;
pub mod gcwake;
pub mod identity;
pub mod jmm;
pub mod jvmti;
pub mod options;
pub mod perfdata;
pub mod sampler;
pub mod stacks;

use std::ffi::{c_char, c_void, CStr};
use std::io::Write;

/// Writes one line to stderr and ignores any error. Every line the agent prints goes through
/// here: `eprintln!` panics when stderr is gone (a closed pipe gives EPIPE), and a panic
/// outside `catch_unwind` in an `extern "C"` entry point aborts the JVM.
pub fn say_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.write_all(b"\n");
}

/// `say!("...", args)`: [`say_line`] with `format!` arguments.
macro_rules! say {
    ($($t:tt)*) => { $crate::say_line(format_args!($($t)*)) };
}
pub(crate) use say;

/// Entry point for `-agentpath:`. Never fails the JVM unless the user asked for `strict=true`.
///
/// # Safety
/// Called by the JVM with a valid `JavaVM` pointer and a NUL-terminated options string (or
/// NULL).
#[no_mangle]
pub unsafe extern "C" fn Agent_OnLoad(
    vm: *mut bindings::JavaVM,
    options: *mut c_char,
    _reserved: *mut c_void,
) -> bindings::jint {
    let options = if options.is_null() {
        String::new()
    } else {
        // SAFETY: the JVM passes a NUL-terminated string that lives for this call.
        unsafe { CStr::from_ptr(options) }.to_string_lossy().into_owned()
    };
    // A panic must never cross into the JVM: treat it like any other start-up failure.
    let result = std::panic::catch_unwind(|| {
        // SAFETY: `vm` is the JavaVM the JVM passed to this entry point.
        unsafe { agent::on_load(vm, &options) }
    });
    match result {
        Ok(code) => code,
        Err(_) => {
            say!("jvmwatch: internal error during start-up; the JVM continues without jvmwatch");
            bindings::JNI_OK as bindings::jint
        }
    }
}

/// Entry point for loading into a running JVM (`jvmwatch attach PID`, or
/// `jcmd PID JVMTI.agent_load`). Starts what VM init starts at once; never fails the JVM.
/// Returns 0 when the agent started, or one of [`agent::attach_code`] (a second attach gets
/// `ALREADY_LOADED`).
///
/// # Safety
/// Called by the JVM's attach listener with a valid `JavaVM` pointer and a NUL-terminated
/// options string (or NULL).
#[no_mangle]
pub unsafe extern "C" fn Agent_OnAttach(
    vm: *mut bindings::JavaVM,
    options: *mut c_char,
    _reserved: *mut c_void,
) -> bindings::jint {
    let options = if options.is_null() {
        String::new()
    } else {
        // SAFETY: the JVM passes a NUL-terminated string that lives for this call.
        unsafe { CStr::from_ptr(options) }.to_string_lossy().into_owned()
    };
    let result = std::panic::catch_unwind(|| {
        // SAFETY: `vm` is the JavaVM the JVM passed to this entry point, on its thread.
        unsafe { agent::on_attach(vm, &options) }
    });
    result.unwrap_or_else(|_| {
        say!("jvmwatch: internal error while attaching; the JVM continues as it was");
        agent::attach_code::INTERNAL
    })
}

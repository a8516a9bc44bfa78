//! The stacks capture: every thread's name, state, the monitor it waits to enter (and that
//! monitor's owner) and its top 32 frames, written into the ring's stacks region
//! (`jvmwatch_ring::stacks`), so the file alone shows what a hung JVM's threads were doing.
//!
//! Runs on the sampler thread only — periodically (`stacks=`, default 60 s) and at the next
//! tick after a data dump request (SIGQUIT). Not a GC callback: it calls JVMTI and JNI and
//! allocates. `GetAllStackTraces` is a VM operation (a safepoint); its cost at 40, 400 and
//! 4,000 threads is in `bench/` (section `stacks`).

use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::ptr;

use jvmwatch_ring::now_ns;
use jvmwatch_ring::stacks::{Builder, Reason, MAX_FRAMES};

use crate::agent::Agent;
use crate::bindings as sys;
use crate::jvmti::{from_modified_utf8, jni, Jvmti};

/// What the method and line lookups learned, kept across captures: a `jmethodID` stays
/// valid (and never names another method) for the life of the VM.
#[derive(Default)]
pub struct Names {
    methods: HashMap<usize, (String, Vec<(i64, i32)>)>,
}

/// Takes one capture and publishes it. Returns the threads kept and the total.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv (the sampler thread's).
pub unsafe fn capture(
    a: &Agent,
    jni: *mut sys::JNIEnv,
    names: &mut Names,
    reason: Reason,
) -> Result<(u32, u32), String> {
    let t0 = now_ns();
    let j = a.jvmti;
    let mut info: *mut sys::jvmtiStackInfo = ptr::null_mut();
    let mut count: sys::jint = 0;
    jvmti_call(j, |env| {
        // SAFETY: out-pointers are valid; the table is the live env's.
        unsafe { (**env).GetAllStackTraces.map(|f| f(env, MAX_FRAMES as sys::jint, &mut info, &mut count)) }
    })?;
    let mut b = Builder::new(a.writer.stacks_budget());
    let n = count.max(0) as usize;
    for i in 0..n {
        // SAFETY: JVMTI returned `count` entries at `info`, valid until deallocated below.
        let si = unsafe { &*info.add(i) };
        if jni!(jni, PushLocalFrame, 16) != Some(0) {
            break;
        }
        let mut name_buf = [0u8; 64];
        // SAFETY: `jni` is ours; `si.thread` is a live thread reference from JVMTI.
        let len = unsafe { j.thread_name(jni, si.thread, &mut name_buf) };
        let name = from_modified_utf8(&name_buf[..len]);
        // SAFETY: as above.
        let (lock, owner) = unsafe { contended(j, jni, si.thread) };
        let frames: Vec<(String, i32)> = (0..si.frame_count.max(0) as usize)
            .map(|f| {
                // SAFETY: `frame_count` frames at `frame_buffer`, inside the JVMTI allocation.
                let fi = unsafe { *si.frame_buffer.add(f) };
                // SAFETY: a method id JVMTI just handed out.
                unsafe { names.frame(j, jni, fi.method, fi.location) }
            })
            .collect();
        b.thread(
            &name,
            state_index(si.state),
            lock.as_deref(),
            owner.as_deref(),
            frames.iter().map(|(m, l)| (m.as_str(), *l)),
        );
        let _ = jni!(jni, PopLocalFrame, ptr::null_mut());
        let _ = jni!(jni, DeleteLocalRef, si.thread);
    }
    j.deallocate(info.cast());
    let total = n as u32;
    let body = b.finish(t0, now_ns().saturating_sub(t0), reason);
    let kept = jvmwatch_ring::stacks::Capture::decode(&body).map(|c| c.threads.len() as u32).unwrap_or(0);
    if !a.writer.write_stacks(&body) {
        return Err("the ring has no stacks region".into());
    }
    Ok((kept, total))
}

fn jvmti_call(j: Jvmti, f: impl FnOnce(*mut sys::jvmtiEnv) -> Option<sys::jvmtiError>) -> Result<(), String> {
    match f(j.0) {
        Some(sys::JVMTI_ERROR_NONE) => Ok(()),
        Some(e) => Err(format!("JVMTI error {e}")),
        None => Err("JVMTI function missing".into()),
    }
}

/// `java.lang.Thread.State` index of a JVMTI thread state (as `ring::THREAD_STATES`).
pub fn state_index(st: sys::jint) -> u16 {
    match st as u32 & sys::JVMTI_JAVA_LANG_THREAD_STATE_MASK {
        sys::JVMTI_JAVA_LANG_THREAD_STATE_NEW => 0,
        sys::JVMTI_JAVA_LANG_THREAD_STATE_RUNNABLE => 1,
        sys::JVMTI_JAVA_LANG_THREAD_STATE_BLOCKED => 2,
        sys::JVMTI_JAVA_LANG_THREAD_STATE_WAITING => 3,
        sys::JVMTI_JAVA_LANG_THREAD_STATE_TIMED_WAITING => 4,
        _ => 5,
    }
}

/// `Lpkg/Name;` → `pkg.Name`.
fn class_name(sig: &str) -> String {
    sig.strip_prefix('L').and_then(|s| s.strip_suffix(';')).unwrap_or(sig).replace('/', ".")
}

/// Takes a JVMTI-allocated C string: copies it (modified UTF-8 decoded) and frees it.
fn take_string(j: Jvmti, p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: JVMTI returned a NUL-terminated string it allocated.
    let s = from_modified_utf8(unsafe { CStr::from_ptr(p) }.to_bytes());
    j.deallocate(p.cast());
    Some(s)
}

/// Class signature of `cls`, as a dotted name.
fn class_of(j: Jvmti, cls: sys::jclass) -> Option<String> {
    let mut sig: *mut c_char = ptr::null_mut();
    jvmti_call(j, |env| {
        // SAFETY: `cls` is a valid class reference; out-pointers are valid.
        unsafe { (**env).GetClassSignature.map(|f| f(env, cls, &mut sig, ptr::null_mut())) }
    })
    .ok()?;
    take_string(j, sig).map(|s| class_name(&s))
}

/// The monitor `thread` waits to enter (its class) and its owner's name, if any.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv inside a local frame; `thread` a live reference.
unsafe fn contended(j: Jvmti, jni: *mut sys::JNIEnv, thread: sys::jthread) -> (Option<String>, Option<String>) {
    let mut mon: sys::jobject = ptr::null_mut();
    let ok = jvmti_call(j, |env| {
        // SAFETY: valid thread reference and out-pointer.
        unsafe { (**env).GetCurrentContendedMonitor.map(|f| f(env, thread, &mut mon)) }
    });
    if ok.is_err() || mon.is_null() {
        return (None, None);
    }
    let cls = jni!(jni, GetObjectClass, mon).unwrap_or(ptr::null_mut());
    let lock = if cls.is_null() { None } else { class_of(j, cls) };
    // SAFETY: jvmtiMonitorUsage is a plain C struct; all-zero is a valid initial value.
    let mut usage: sys::jvmtiMonitorUsage = unsafe { std::mem::zeroed() };
    let owner = match jvmti_call(j, |env| {
        // SAFETY: valid object reference and out-pointer.
        unsafe { (**env).GetObjectMonitorUsage.map(|f| f(env, mon, &mut usage)) }
    }) {
        Ok(()) => {
            j.deallocate(usage.waiters.cast());
            j.deallocate(usage.notify_waiters.cast());
            (!usage.owner.is_null()).then(|| {
                let mut buf = [0u8; 64];
                // SAFETY: `usage.owner` is a live thread reference (a local ref of our frame).
                let n = unsafe { j.thread_name(jni, usage.owner, &mut buf) };
                from_modified_utf8(&buf[..n])
            })
        }
        Err(_) => None,
    };
    (lock, owner)
}

impl Names {
    /// `pkg.Class.method` and the source line of one frame.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv inside a local frame; `method` a method id
    /// JVMTI handed out.
    unsafe fn frame(
        &mut self,
        j: Jvmti,
        jni: *mut sys::JNIEnv,
        method: sys::jmethodID,
        at: sys::jlocation,
    ) -> (String, i32) {
        let (name, lines) = self.methods.entry(method as usize).or_insert_with(|| {
            let mut cls: sys::jclass = ptr::null_mut();
            let class = jvmti_call(j, |env| {
                // SAFETY: valid method id and out-pointer.
                unsafe { (**env).GetMethodDeclaringClass.map(|f| f(env, method, &mut cls)) }
            })
            .ok()
            .and_then(|_| class_of(j, cls))
            .unwrap_or_else(|| "?".into());
            if !cls.is_null() {
                let _ = jni!(jni, DeleteLocalRef, cls);
            }
            let mut mname: *mut c_char = ptr::null_mut();
            let _ = jvmti_call(j, |env| {
                // SAFETY: valid method id and out-pointers.
                unsafe { (**env).GetMethodName.map(|f| f(env, method, &mut mname, ptr::null_mut(), ptr::null_mut())) }
            });
            let m = take_string(j, mname).unwrap_or_else(|| "?".into());
            let mut n: sys::jint = 0;
            let mut table: *mut sys::jvmtiLineNumberEntry = ptr::null_mut();
            let mut lines = Vec::new();
            if jvmti_call(j, |env| {
                // SAFETY: valid method id and out-pointers.
                unsafe { (**env).GetLineNumberTable.map(|f| f(env, method, &mut n, &mut table)) }
            })
            .is_ok()
            {
                for k in 0..n.max(0) as usize {
                    // SAFETY: JVMTI returned `n` entries at `table`.
                    let e = unsafe { *table.add(k) };
                    lines.push((e.start_location, e.line_number));
                }
                j.deallocate(table.cast());
                lines.sort_unstable();
            }
            (format!("{class}.{m}"), lines)
        });
        let line = if at < 0 {
            -1
        } else {
            match lines.partition_point(|(start, _)| *start <= at) {
                0 => -1,
                k => lines[k - 1].1,
            }
        };
        (name.clone(), line)
    }
}

#[cfg(test)]
mod tests {
    use super::class_name;

    #[test]
    fn class_signatures_become_dotted_names() {
        assert_eq!(class_name("Ljava/lang/Object;"), "java.lang.Object");
        assert_eq!(class_name("[I"), "[I");
    }
}

//! Thin wrappers over the JVMTI and JNI function tables from the generated bindings.
//!
//! Every wrapper returns `Result<_, Error>` instead of trusting the VM's codes: JVMTI errors
//! are plain integers here (never a Rust enum, so an unknown code is not undefined
//! behaviour), and a missing function pointer becomes an error rather than a crash.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use crate::bindings as sys;

/// A JVMTI error code, or a missing function in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error(pub sys::jvmtiError);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            sys::JVMTI_ERROR_NOT_AVAILABLE => "JVMTI_ERROR_NOT_AVAILABLE",
            sys::JVMTI_ERROR_WRONG_PHASE => "JVMTI_ERROR_WRONG_PHASE",
            sys::JVMTI_ERROR_ILLEGAL_ARGUMENT => "JVMTI_ERROR_ILLEGAL_ARGUMENT",
            sys::JVMTI_ERROR_OUT_OF_MEMORY => "JVMTI_ERROR_OUT_OF_MEMORY",
            sys::JVMTI_ERROR_UNSUPPORTED_VERSION => "JVMTI_ERROR_UNSUPPORTED_VERSION",
            _ => "JVMTI error",
        };
        write!(f, "{name} ({})", self.0)
    }
}

fn check(code: sys::jvmtiError) -> Result<(), Error> {
    if code == sys::JVMTI_ERROR_NONE {
        Ok(())
    } else {
        Err(Error(code))
    }
}

/// Calls a JVMTI function by name: `jvmti!(env, Fn, args...)` → `Result<(), Error>`.
macro_rules! jvmti {
    ($env:expr, $f:ident $(, $arg:expr)*) => {{
        let env: *mut sys::jvmtiEnv = $env;
        // SAFETY: `env` is a live jvmtiEnv obtained from GetEnv; its function table is valid
        // for the life of the VM.
        match unsafe { (**env).$f } {
            // SAFETY: the arguments match the JVMTI signature (checked by the compiler against
            // the generated bindings); pointer arguments are valid for the call.
            Some(f) => check(unsafe { f(env $(, $arg)*) }),
            None => Err(Error(sys::JVMTI_ERROR_NOT_AVAILABLE)),
        }
    }};
}

/// Calls a JNI function by name: `jni!(env, Fn, args...)` → `Option<return value>`.
macro_rules! jni {
    ($env:expr, $f:ident $(, $arg:expr)*) => {{
        let env: *mut sys::JNIEnv = $env;
        // SAFETY: callers pass the current thread's JNIEnv, whose table is valid.
        match unsafe { (**env).$f } {
            // SAFETY: the arguments match the JNI signature (checked by the compiler against
            // the generated bindings); references and pointers are valid for the call.
            Some(f) => Some(unsafe { f(env $(, $arg)*) }),
            None => None,
        }
    }};
}
pub(crate) use jni;

/// A JVMTI environment. Valid for the life of the VM; usable from any thread.
#[derive(Clone, Copy, Debug)]
pub struct Jvmti(pub *mut sys::jvmtiEnv);

// SAFETY: a jvmtiEnv may be used from any thread (JVMTI spec, "JVM TI Environments"); the
// pointer itself is never freed while the VM lives.
unsafe impl Send for Jvmti {}
// SAFETY: as above; JVMTI functions are thread-safe unless documented otherwise.
unsafe impl Sync for Jvmti {}

impl Jvmti {
    /// Gets a JVMTI environment of `version` from the VM.
    ///
    /// # Safety
    /// `vm` must be the `JavaVM` pointer the VM passed to `Agent_OnLoad`.
    pub unsafe fn from_vm(vm: *mut sys::JavaVM, version: u32) -> Result<Jvmti, Error> {
        let mut env: *mut c_void = ptr::null_mut();
        // SAFETY: per the contract, `vm` and its function table are valid.
        let get_env = unsafe { (**vm).GetEnv }.ok_or(Error(sys::JVMTI_ERROR_NOT_AVAILABLE))?;
        // SAFETY: GetEnv writes one pointer into `env`.
        let rc = unsafe { get_env(vm, &mut env, version as sys::jint) };
        if rc != sys::JNI_OK as sys::jint || env.is_null() {
            return Err(Error(sys::JVMTI_ERROR_UNSUPPORTED_VERSION));
        }
        Ok(Jvmti(env.cast()))
    }

    /// Reads a VM system property (available from the OnLoad phase).
    pub fn system_property(&self, name: &CStr) -> Option<String> {
        let mut value: *mut c_char = ptr::null_mut();
        jvmti!(self.0, GetSystemProperty, name.as_ptr(), &mut value).ok()?;
        if value.is_null() {
            return None;
        }
        // SAFETY: JVMTI returned a NUL-terminated string it allocated; we copy it and free it.
        let s = unsafe { CStr::from_ptr(value) }.to_string_lossy().into_owned();
        self.deallocate(value.cast());
        Some(s)
    }

    /// Frees memory JVMTI allocated for us.
    pub fn deallocate(&self, mem: *mut u8) {
        if !mem.is_null() {
            let _ = jvmti!(self.0, Deallocate, mem.cast());
        }
    }

    /// Adds the capabilities the agent needs.
    pub fn add_capabilities(&self, caps: &sys::jvmtiCapabilities) -> Result<(), Error> {
        jvmti!(self.0, AddCapabilities, caps)
    }

    /// Installs the callback table.
    pub fn set_event_callbacks(&self, cb: &sys::jvmtiEventCallbacks) -> Result<(), Error> {
        let size = std::mem::size_of::<sys::jvmtiEventCallbacks>() as sys::jint;
        jvmti!(self.0, SetEventCallbacks, cb, size)
    }

    /// Enables one event globally.
    pub fn enable(&self, event: sys::jvmtiEvent) -> Result<(), Error> {
        jvmti!(self.0, SetEventNotificationMode, sys::JVMTI_ENABLE, event, ptr::null_mut())
    }

    /// Name of a thread (copied), deleting the local refs GetThreadInfo hands out.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv and `thread` a valid reference.
    pub unsafe fn thread_name(&self, jni: *mut sys::JNIEnv, thread: sys::jthread, out: &mut [u8; 64]) -> usize {
        // SAFETY: jvmtiThreadInfo is a plain C struct; all-zero is a valid initial value.
        let mut info: sys::jvmtiThreadInfo = unsafe { std::mem::zeroed() };
        if jvmti!(self.0, GetThreadInfo, thread, &mut info).is_err() {
            return 0;
        }
        let mut n = 0;
        if !info.name.is_null() {
            // SAFETY: JVMTI gives a NUL-terminated string (modified UTF-8: decode it with
            // `from_modified_utf8`).
            let b = unsafe { CStr::from_ptr(info.name) }.to_bytes();
            n = b.len().min(out.len());
            out[..n].copy_from_slice(&b[..n]);
            self.deallocate(info.name.cast());
        }
        for r in [info.thread_group, info.context_class_loader] {
            if !r.is_null() {
                let _ = jni!(jni, DeleteLocalRef, r);
            }
        }
        n
    }

    /// The live threads (`GetAllThreads`) as local references, handed to `each` one by one
    /// and deleted after it.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv; call inside a local frame.
    unsafe fn each_thread(&self, jni: *mut sys::JNIEnv, mut each: impl FnMut(sys::jthread)) -> Option<()> {
        let mut count: sys::jint = 0;
        let mut threads: *mut sys::jthread = ptr::null_mut();
        jvmti!(self.0, GetAllThreads, &mut count, &mut threads).ok()?;
        for i in 0..count.max(0) as usize {
            // SAFETY: JVMTI returned `count` thread references at `threads`.
            let t = unsafe { *threads.add(i) };
            each(t);
            let _ = jni!(jni, DeleteLocalRef, t);
        }
        self.deallocate(threads.cast());
        Some(())
    }

    /// The JVMTI state bits of thread `t`, from its `threadStatus` field where found, else
    /// from `GetThreadState`.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv and `t` a live reference to a Thread.
    unsafe fn state(&self, jni: *mut sys::JNIEnv, status: Option<ThreadStatus>, t: sys::jthread) -> Option<sys::jint> {
        // SAFETY: forwarded.
        match status.and_then(|s| unsafe { s.read(jni, t) }) {
            Some(st) => Some(st),
            None => {
                let mut st: sys::jint = 0;
                jvmti!(self.0, GetThreadState, t, &mut st).is_ok().then_some(st)
            }
        }
    }

    /// Starts `proc` on a new JVMTI agent thread (a daemon thread; the JVM's exit still waits,
    /// up to 300 ms, while it is in native code: see `gcwake::stop` and `sampler::wake`).
    ///
    /// # Safety
    /// `thread` must be a new, unstarted `java.lang.Thread` reference.
    pub unsafe fn run_agent_thread(&self, thread: sys::jthread, proc: sys::jvmtiStartFunction) -> Result<(), Error> {
        jvmti!(self.0, RunAgentThread, thread, proc, ptr::null(), sys::JVMTI_THREAD_NORM_PRIORITY as sys::jint)
    }
}

/// Counts the live threads by `java.lang.Thread.State` at each sample, indexed like
/// `ring::THREAD_STATES`.
///
/// Listing the threads (`GetAllThreads`: a walk of the VM's thread list and a new local
/// reference per thread) was the larger part of a census, and the list rarely changes: a
/// server's pools keep their threads. So the census keeps the list as global references
/// while no thread starts or ends, and only reads each kept thread's state. `changes` (the
/// agent's count of `ThreadStart` and `ThreadEnd` events) tells when the list may be stale:
/// then the census lists afresh, and keeps that list only once `changes` stood still for a
/// whole interval, so an application that starts threads all the time does not also pay for
/// making and dropping global references at every sample.
///
/// Why a kept list is complete: a thread is on the VM's list before it posts `ThreadStart`,
/// and the census reads `changes` (acquire, pairing with the callbacks' release) before it
/// lists; a thread it missed bumps `changes` after that read, so the next sample lists
/// afresh. A thread that posted `ThreadEnd` may still be listed while it exits; once it reads
/// as terminated the census drops it (`GetAllThreads` leaves exiting threads out too).
#[derive(Default)]
pub struct ThreadCensus {
    /// Global references to the threads of the kept list.
    kept: Vec<sys::jthread>,
    /// The `changes` value the kept list was made at; `None`: no list kept.
    kept_at: Option<u64>,
    /// The `changes` value the previous sample saw.
    seen: Option<u64>,
}

impl ThreadCensus {
    /// Counts the threads by state; `changes` is the agent's count of thread starts and ends,
    /// read with acquire ordering just before this call.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv, always the same thread (the sampler's);
    /// call inside a local frame.
    pub unsafe fn count(&mut self, jvmti: &Jvmti, jni: *mut sys::JNIEnv, changes: u64) -> Option<[u32; 6]> {
        // SAFETY: forwarded.
        let status = unsafe { ThreadStatus::get(jni) };
        let mut states = [0u32; 6];
        if self.kept_at == Some(changes) {
            self.kept.retain(|&t| {
                // SAFETY: forwarded; `t` is a global reference to a Thread.
                let index = unsafe { jvmti.state(jni, status, t) }.map(crate::stacks::state_index);
                if index == Some(TERMINATED) {
                    let _ = jni!(jni, DeleteGlobalRef, t);
                    return false;
                }
                if let Some(i) = index {
                    states[i as usize] += 1;
                }
                true
            });
            return Some(states);
        }
        self.release(jni);
        let keep = self.seen == Some(changes);
        self.seen = Some(changes);
        let mut kept = Vec::new();
        let each = |t| {
            // SAFETY: forwarded; `t` is a live local reference to a Thread.
            if let Some(st) = unsafe { jvmti.state(jni, status, t) } {
                states[crate::stacks::state_index(st) as usize] += 1;
            }
            if keep {
                kept.push(jni!(jni, NewGlobalRef, t).unwrap_or(ptr::null_mut()));
            }
        };
        // SAFETY: forwarded.
        unsafe { jvmti.each_thread(jni, each) }?;
        if keep && kept.iter().all(|t| !t.is_null()) {
            self.kept = kept;
            self.kept_at = Some(changes);
        } else {
            for t in kept.into_iter().filter(|t| !t.is_null()) {
                let _ = jni!(jni, DeleteGlobalRef, t);
            }
        }
        Some(states)
    }

    /// Drops the kept list.
    fn release(&mut self, jni: *mut sys::JNIEnv) {
        for t in self.kept.drain(..) {
            let _ = jni!(jni, DeleteGlobalRef, t);
        }
        self.kept_at = None;
    }
}

/// `ThreadCensus` index of `java.lang.Thread.State.TERMINATED` (see `stacks::state_index`).
const TERMINATED: u16 = 5;

/// Where a `java.lang.Thread` keeps its status: the `threadStatus` int, whose values are the
/// JVMTI thread-state bits (HotSpot's `java_lang_Thread::ThreadStatus`), on the Thread itself
/// (JDK 11-18) or on its `holder` (`Thread$FieldHolder`, JDK 19+). Reading it is one field
/// load per thread; `GetThreadState` instead builds a ThreadsListHandle and searches the
/// thread list on every call, which made a sample O(threads²): 10 ms at 4,000 threads. Field
/// IDs stay valid: java.lang.Thread is never unloaded.
#[derive(Clone, Copy)]
struct ThreadStatus {
    holder: Option<usize>,
    status: usize,
}

/// `None` inside: the fields were not found (another JVM); use GetThreadState.
static THREAD_STATUS: std::sync::OnceLock<Option<ThreadStatus>> = std::sync::OnceLock::new();

impl ThreadStatus {
    /// The field IDs, looked up once.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv.
    unsafe fn get(jni: *mut sys::JNIEnv) -> Option<ThreadStatus> {
        *THREAD_STATUS.get_or_init(|| {
            // SAFETY: forwarded.
            let r = unsafe { ThreadStatus::lookup(jni) };
            // SAFETY: forwarded; a failed GetFieldID leaves a NoSuchFieldError pending.
            unsafe { clear_exception(jni) };
            r
        })
    }

    /// # Safety
    /// `jni` must be the current thread's JNIEnv.
    unsafe fn lookup(jni: *mut sys::JNIEnv) -> Option<ThreadStatus> {
        let thread = jni!(jni, FindClass, c"java/lang/Thread".as_ptr())?;
        if thread.is_null() {
            return None;
        }
        let own = jni!(jni, GetFieldID, thread, c"threadStatus".as_ptr(), c"I".as_ptr()).unwrap_or(ptr::null_mut());
        let r = if !own.is_null() {
            Some(ThreadStatus { holder: None, status: own as usize })
        } else {
            // SAFETY: forwarded; clears the NoSuchFieldError of the first lookup.
            unsafe { clear_exception(jni) };
            let holder = jni!(jni, GetFieldID, thread, c"holder".as_ptr(), c"Ljava/lang/Thread$FieldHolder;".as_ptr())
                .unwrap_or(ptr::null_mut());
            let fh = jni!(jni, FindClass, c"java/lang/Thread$FieldHolder".as_ptr()).unwrap_or(ptr::null_mut());
            let status = if fh.is_null() {
                ptr::null_mut()
            } else {
                jni!(jni, GetFieldID, fh, c"threadStatus".as_ptr(), c"I".as_ptr()).unwrap_or(ptr::null_mut())
            };
            if !fh.is_null() {
                let _ = jni!(jni, DeleteLocalRef, fh);
            }
            (!holder.is_null() && !status.is_null())
                .then_some(ThreadStatus { holder: Some(holder as usize), status: status as usize })
        };
        let _ = jni!(jni, DeleteLocalRef, thread);
        r
    }

    /// The JVMTI state bits of thread `t`; `None` when it cannot be read.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv and `t` a live reference to a Thread.
    unsafe fn read(self, jni: *mut sys::JNIEnv, t: sys::jthread) -> Option<sys::jint> {
        let obj = match self.holder {
            None => t,
            Some(h) => jni!(jni, GetObjectField, t, h as sys::jfieldID)?,
        };
        if obj.is_null() {
            return None;
        }
        let st = jni!(jni, GetIntField, obj, self.status as sys::jfieldID);
        if self.holder.is_some() {
            let _ = jni!(jni, DeleteLocalRef, obj);
        }
        st
    }
}

/// The current thread's JNIEnv, from the JavaVM (for `Agent_OnAttach`, which gets no JNIEnv).
///
/// # Safety
/// `vm` must be a JavaVM pointer the JVM passed to an agent entry point; call on a thread
/// attached to the VM.
pub unsafe fn jni_env(vm: *mut sys::JavaVM) -> Option<*mut sys::JNIEnv> {
    let mut env: *mut c_void = ptr::null_mut();
    // SAFETY: per the contract, `vm` and its function table are valid.
    let get_env = unsafe { (**vm).GetEnv }?;
    // SAFETY: GetEnv writes one pointer into `env`.
    let rc = unsafe { get_env(vm, &mut env, sys::JNI_VERSION_1_8 as sys::jint) };
    (rc == sys::JNI_OK as sys::jint && !env.is_null()).then_some(env.cast())
}

/// Clears a pending Java exception; returns true if there was one.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv.
pub unsafe fn clear_exception(jni: *mut sys::JNIEnv) -> bool {
    if jni!(jni, ExceptionCheck) == Some(sys::JNI_TRUE as sys::jboolean) {
        let _ = jni!(jni, ExceptionClear);
        return true;
    }
    false
}

/// Decodes the *modified* UTF-8 that JNI and JVMTI hand over (NUL as `C0 80`, a
/// supplementary character as two 3-byte surrogates) into a proper string. Plain UTF-8
/// 4-byte sequences are accepted too; anything malformed becomes U+FFFD.
pub fn from_modified_utf8(b: &[u8]) -> String {
    let cont = |i: usize| b.get(i).is_some_and(|c| c & 0xC0 == 0x80);
    let low = |i: usize| (b[i] & 0x3F) as u32;
    let mut units: Vec<u16> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            units.push(c as u16);
            i += 1;
        } else if c & 0xE0 == 0xC0 && cont(i + 1) {
            units.push(((c as u32 & 0x1F) << 6 | low(i + 1)) as u16);
            i += 2;
        } else if c & 0xF0 == 0xE0 && cont(i + 1) && cont(i + 2) {
            units.push(((c as u32 & 0x0F) << 12 | low(i + 1) << 6 | low(i + 2)) as u16);
            i += 3;
        } else if c & 0xF8 == 0xF0 && cont(i + 1) && cont(i + 2) && cont(i + 3) {
            let cp = (c as u32 & 0x07) << 18 | low(i + 1) << 12 | low(i + 2) << 6 | low(i + 3);
            match char::from_u32(cp) {
                Some(ch) => units.extend_from_slice(ch.encode_utf16(&mut [0; 2])),
                None => units.push(0xFFFD),
            }
            i += 4;
        } else {
            units.push(0xFFFD);
            i += 1;
        }
    }
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::from_modified_utf8;

    #[test]
    fn modified_utf8_decodes_surrogate_pairs_and_nul() {
        // U+1F600 as a surrogate pair D83D DE00, each as 3 bytes; NUL as C0 80.
        let b = [b'a', 0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80, 0xC0, 0x80, 0xC3, 0xA9];
        assert_eq!(from_modified_utf8(&b), "a\u{1F600}\u{0}\u{E9}");
        assert_eq!(from_modified_utf8("plain \u{1F603}".as_bytes()), "plain \u{1F603}");
        // Cut in the middle of a pair: a replacement character, never a panic.
        assert_eq!(from_modified_utf8(&b[..5]), "a\u{FFFD}\u{FFFD}");
        assert_eq!(from_modified_utf8(&[0xFF, b'x']), "\u{FFFD}x");
    }
}

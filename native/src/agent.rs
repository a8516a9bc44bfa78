//! Start-up (`Agent_OnLoad` at JVM start, `Agent_OnAttach` in a running JVM) and the agent's
//! global state.
//!
//! The global [`Agent`] lives in a `OnceLock` set once, before any event is enabled; callbacks
//! read it with an atomic load (no lock), so reading it is safe in a GC callback.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::OnceLock;

use jvmwatch_ring::layout::FLAG_ATTACHED;
use jvmwatch_ring::{default_dir, Event, State, Text, Writer};

use crate::bindings as sys;
use crate::jvmti::{clear_exception, jni, Jvmti};
use crate::options::{self, Config};
use crate::{callbacks, identity, say};

/// Everything the callbacks and the sampler share.
pub struct Agent {
    /// The JVMTI environment.
    pub jvmti: Jvmti,
    /// The ring file.
    pub writer: Writer,
    /// Parsed options.
    pub config: Config,
    /// Set at VM death: the sampler stops.
    pub stopping: AtomicBool,
    /// Heap in use right after the latest collection (all pools), from the in-VM monitor's
    /// GC notifications; `UNKNOWN` until the first. Relaxed: a statistic the sampler copies.
    pub heap_after_gc: AtomicU64,
    /// Threads blocked on a monitor at the sampler's latest tick; `u32::MAX` before the first.
    /// Relaxed: a statistic the monitor reads to decide whether a deadlock check is worth a
    /// safepoint.
    pub blocked_threads: AtomicU32,
    /// Set by a data dump request (SIGQUIT): the sampler captures the stacks at its next
    /// tick. Relaxed: a flag; the capture reads nothing the setter wrote.
    pub stacks_requested: AtomicBool,
    /// `ThreadStart` and `ThreadEnd` events so far: the sampler's thread census lists the
    /// threads afresh when it moved (see `jvmti::ThreadCensus`). Release in the callbacks,
    /// acquire in the census: a census that sees a start also sees that thread listed.
    pub thread_changes: AtomicU64,
    /// Loaded at start or attached to the running JVM.
    pub mode: Mode,
}

static AGENT: OnceLock<Agent> = OnceLock::new();

/// The running agent, if start-up succeeded. Lock-free.
pub fn get() -> Option<&'static Agent> {
    AGENT.get()
}

/// How start-up failed: `Bad` is the user's input, `Failed` the environment, `TooOld` a
/// JDK before 11, `Already` a second load into the same JVM.
enum StartError {
    Bad(String),
    Failed(String),
    TooOld(String),
    Already,
}

/// How the agent came into the JVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `-agentpath:` at JVM start (`Agent_OnLoad`): events from VM init on.
    OnLoad,
    /// Loaded into the running JVM (`Agent_OnAttach`, `jvmwatch attach`).
    Attach,
}

/// Codes `Agent_OnAttach` returns; `jvmwatch attach` reads them back from the attach
/// listener's reply and turns them into a message. 0 is `JNI_OK`.
pub mod attach_code {
    /// The agent started.
    pub const OK: i32 = 0;
    /// jvmwatch was already loaded into this JVM; nothing changed.
    pub const ALREADY_LOADED: i32 = 101;
    /// An agent option is wrong (the JVM's stderr has the line).
    pub const BAD_OPTION: i32 = 102;
    /// The JVM is older than JDK 11.
    pub const JDK_TOO_OLD: i32 = 103;
    /// Anything else (the JVM's stderr has the line).
    pub const FAILED: i32 = 104;
    /// An internal error (a caught panic).
    pub const INTERNAL: i32 = 105;
}

/// The oldest JDK the agent supports: JVMTI 11 (GetEnv with `JVMTI_VERSION_11`) and class
/// files of version 55.
pub const MIN_JDK: u32 = 11;

/// Whether the agent can run on a JVM: `jvmti11` is whether GetEnv gave a JVMTI 11
/// environment; `spec_version` is `java.specification.version` when it could be read
/// ("1.8" for JDK 8, "11", "17", ...). Returns the one line to print when it cannot.
pub fn jdk_refusal(jvmti11: bool, spec_version: Option<&str>) -> Option<String> {
    let feature = spec_version.and_then(|v| {
        let v = v.trim();
        let major = v.strip_prefix("1.").unwrap_or(v);
        major.split(['.', '-', '+']).next()?.parse::<u32>().ok()
    });
    let too_old = match feature {
        Some(f) => f < MIN_JDK,
        None => !jvmti11,
    };
    if !too_old && jvmti11 {
        return None;
    }
    let this = match spec_version {
        Some(v) if !v.trim().is_empty() => format!("this JVM is Java {}", v.trim()),
        _ => "this JVM has no JVMTI 11".to_string(),
    };
    Some(format!("jvmwatch needs JDK 11 or newer ({this})"))
}

/// `Agent_OnLoad` body. Returns the code for the JVM: JNI_OK unless `strict=true` and the
/// agent could not start.
///
/// # Safety
/// `vm` must be the JavaVM pointer passed to `Agent_OnLoad`.
pub unsafe fn on_load(vm: *mut sys::JavaVM, options: &str) -> sys::jint {
    let raw = options::split(options);
    let strict = options::wants_strict(&raw);
    // SAFETY: forwarded from our caller.
    match unsafe { start(vm, &raw, Mode::OnLoad) } {
        Ok(()) => sys::JNI_OK as sys::jint,
        Err(e) => {
            let (kind, msg) = e.describe();
            if matches!(e, StartError::TooOld(_)) {
                // One line, and the JVM runs: there is nothing strict could protect here.
                say!("jvmwatch: {msg}; the JVM continues without jvmwatch");
                return sys::JNI_OK as sys::jint;
            }
            if strict {
                say!("jvmwatch: {kind}: {msg}; strict=true, so the JVM will not start");
                sys::JNI_ERR
            } else {
                say!("jvmwatch: {kind}: {msg}; the JVM continues without jvmwatch");
                sys::JNI_OK as sys::jint
            }
        }
    }
}

/// `Agent_OnAttach` body: the JVM is live (VM init happened long ago), so what the VMInit
/// callback does at start happens here, on the attach listener thread. Returns an
/// [`attach_code`]; the JVM goes on whatever it is (`strict=` has no effect when attaching).
///
/// # Safety
/// `vm` must be the JavaVM pointer passed to `Agent_OnAttach`, called on that thread.
pub unsafe fn on_attach(vm: *mut sys::JavaVM, options: &str) -> sys::jint {
    let raw = options::split(options);
    // SAFETY: forwarded from our caller.
    match unsafe { start(vm, &raw, Mode::Attach) } {
        Ok(()) => match AGENT.get() {
            Some(a) => {
                say!("jvmwatch: attached; ring file {}", a.writer.path().display());
                // SAFETY: forwarded from our caller.
                unsafe { attach_live(vm, a) };
                attach_code::OK
            }
            // `start` returns Ok only after setting the agent.
            None => attach_code::INTERNAL,
        },
        Err(e) => {
            let (kind, msg) = e.describe();
            say!("jvmwatch: attach: {kind}: {msg}; the JVM continues as it was");
            match e {
                StartError::Already => attach_code::ALREADY_LOADED,
                StartError::Bad(_) => attach_code::BAD_OPTION,
                StartError::TooOld(_) => attach_code::JDK_TOO_OLD,
                StartError::Failed(_) => attach_code::FAILED,
            }
        }
    }
}

/// What the VMInit callback does at start, done at attach: the state, the bridge and
/// monitor, the sampler thread.
///
/// # Safety
/// `vm` must be the JavaVM pointer passed to `Agent_OnAttach`, called on that thread.
unsafe fn attach_live(vm: *mut sys::JavaVM, a: &'static Agent) {
    a.writer.set_state(State::Running);
    // SAFETY: forwarded from our caller.
    let jni = match unsafe { crate::jvmti::jni_env(vm) } {
        Some(j) => j,
        None => {
            a.writer.emit(&Event::AgentWarning { text: Text::new("attach: no JNI environment", 40) });
            return;
        }
    };
    // The attach listener thread lives on: keep its local references bounded.
    if jni!(jni, PushLocalFrame, 64) != Some(0) {
        // SAFETY: `jni` is this thread's JNIEnv.
        unsafe { clear_exception(jni) };
        a.writer.emit(&Event::AgentWarning { text: Text::new("attach: no local frame", 40) });
        return;
    }
    if a.config.monitor && a.config.gc == crate::options::GcSource::Poll {
        crate::bridge::prepare_gc_poll(a);
    }
    // SAFETY: `jni` is this thread's JNIEnv, inside the frame pushed above.
    if let Err(e) = unsafe { crate::bridge::install(jni, a.config.monitor) } {
        a.writer.emit(&Event::AgentWarning { text: Text::new(&format!("no in-VM monitor: {e}"), 40) });
    }
    // SAFETY: as above.
    if let Err(e) = unsafe { crate::sampler::start(a, jni) } {
        a.writer.emit(&Event::AgentWarning { text: Text::new(&format!("sampler: {e}"), 40) });
    }
    let _ = jni!(jni, PopLocalFrame, std::ptr::null_mut());
}

impl StartError {
    fn describe(&self) -> (&'static str, String) {
        match self {
            StartError::Bad(m) => ("bad agent option", m.clone()),
            StartError::Failed(m) => ("cannot start", m.clone()),
            StartError::TooOld(m) => ("unsupported JDK", m.clone()),
            StartError::Already => ("cannot start", "jvmwatch is already loaded in this JVM".into()),
        }
    }
}

/// The JVMTI environment, or why there is none: an old JDK gets the one clear line of
/// [`jdk_refusal`].
///
/// # Safety
/// `vm` must be a JavaVM pointer the JVM passed to an agent entry point.
unsafe fn jvmti_env(vm: *mut sys::JavaVM) -> Result<Jvmti, StartError> {
    // JVMTI_VERSION_11: the newest constant of a newer header makes JDK 17 refuse GetEnv.
    // SAFETY: forwarded from our caller.
    let env11 = unsafe { Jvmti::from_vm(vm, sys::JVMTI_VERSION_11) };
    let spec = match &env11 {
        Ok(env) => env.system_property(c"java.specification.version"),
        // JDK 8 and older: any JVMTI 1.x environment can still tell the version.
        // SAFETY: forwarded from our caller.
        Err(_) => unsafe { Jvmti::from_vm(vm, sys::JVMTI_VERSION_1_2) }
            .ok()
            .and_then(|e| e.system_property(c"java.specification.version")),
    };
    if let Some(why) = jdk_refusal(env11.is_ok(), spec.as_deref()) {
        return Err(StartError::TooOld(why));
    }
    env11.map_err(|e| StartError::Failed(format!("no JVMTI 11 environment ({e})")))
}

/// # Safety
/// `vm` must be the JavaVM pointer passed to `Agent_OnLoad` or `Agent_OnAttach`.
unsafe fn start(vm: *mut sys::JavaVM, raw: &[options::RawOption<'_>], mode: Mode) -> Result<(), StartError> {
    // The agent is set only by a load that started; loads are serialised (Agent_OnLoad runs
    // before any attach, and the JVM's attach listener is one thread), so a second load into
    // this process (a second `jvmwatch attach`, or an attach to a JVM started with
    // -agentpath:) sees it here and leaves the running agent alone.
    if AGENT.get().is_some() {
        return Err(StartError::Already);
    }
    // The JDK first: on JDK 8 the one line says so, whatever the options.
    // SAFETY: forwarded from our caller.
    let jvmti = unsafe { jvmti_env(vm) }?;
    let config = options::parse(raw).map_err(StartError::Bad)?;
    let missing = match mode {
        Mode::OnLoad => {
            callbacks::add_capabilities(&jvmti)
                .map_err(|e| StartError::Failed(format!("JVMTI capabilities refused ({e})")))?;
            Vec::new()
        }
        // In the live phase a JVM may refuse capabilities it grants only at start: go on
        // without those (their events are simply missing) and say which in the ring.
        Mode::Attach => callbacks::add_capabilities_live(&jvmti),
    };

    let mut id = identity::gather(&jvmti, config.interval.as_nanos() as u64);
    id.geometry = config.geometry();
    if mode == Mode::Attach {
        id.flags |= FLAG_ATTACHED;
    }
    let slots = config.size / jvmwatch_ring::layout::SLOT_SIZE as u64;
    let writer = match &config.path {
        Some(p) => Writer::create(p, slots, &id),
        None => Writer::create_in(&config.dir.clone().unwrap_or_else(default_dir), slots, &id),
    }
    .map_err(|e| StartError::Failed(format!("cannot create the ring file: {e}")))?;
    writer.set_collector(identity::collector_from_flags(&identity::command_line()));
    if !writer.on_tmpfs() {
        say!(
            "jvmwatch: note: {} is not on tmpfs; writes to a mapped file on disk can stall on writeback (use a tmpfs directory)",
            writer.path().display()
        );
    }
    for cap in &missing {
        writer.emit(&Event::AgentWarning { text: Text::new(&format!("attach: no {cap}"), 40) });
    }
    let path = writer.path().to_path_buf();
    let agent = Agent {
        jvmti,
        writer,
        config,
        stopping: AtomicBool::new(false),
        heap_after_gc: AtomicU64::new(jvmwatch_ring::UNKNOWN),
        blocked_threads: AtomicU32::new(u32::MAX),
        thread_changes: AtomicU64::new(0),
        stacks_requested: AtomicBool::new(false),
        mode,
    };
    if AGENT.set(agent).is_err() {
        let _ = std::fs::remove_file(&path);
        return Err(StartError::Already);
    }
    if let Err(e) = callbacks::install(&jvmti, mode) {
        // The ring exists but no events will come: say so in the file and on stderr.
        return Err(StartError::Failed(format!("JVMTI events refused ({e})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdk_8_and_older_are_refused_with_one_clear_line() {
        let line = jdk_refusal(false, Some("1.8")).unwrap();
        assert_eq!(line, "jvmwatch needs JDK 11 or newer (this JVM is Java 1.8)");
        assert!(jdk_refusal(false, Some("1.7")).is_some());
        assert!(jdk_refusal(false, Some("9")).is_some());
        assert!(jdk_refusal(true, Some("10")).is_some());
        assert_eq!(jdk_refusal(false, None).unwrap(), "jvmwatch needs JDK 11 or newer (this JVM has no JVMTI 11)");
    }

    #[test]
    fn jdk_11_and_newer_run() {
        for v in ["11", "17", "21", "25", "26-ea", "11.0.2"] {
            assert_eq!(jdk_refusal(true, Some(v)), None, "{v}");
        }
        assert_eq!(jdk_refusal(true, None), None);
        // A JVM that says it is 17 but gives no JVMTI 11: not an old JDK, an odd one.
        assert!(jdk_refusal(false, Some("17")).unwrap().contains("Java 17"));
    }
}

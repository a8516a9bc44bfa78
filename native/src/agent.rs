//! Start-up (`Agent_OnLoad`) and the agent's global state.
//!
//! The global [`Agent`] lives in a `OnceLock` set once, before any event is enabled; callbacks
//! read it with an atomic load (no lock), so reading it is safe in a GC callback.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::OnceLock;

use jvmwatch_ring::{default_dir, Writer};

use crate::bindings as sys;
use crate::jvmti::Jvmti;
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
    /// Set by a data dump request (SIGQUIT): the sampler captures the stacks at its next
    /// tick. Relaxed: a flag; the capture reads nothing the setter wrote.
    pub stacks_requested: AtomicBool,
}

static AGENT: OnceLock<Agent> = OnceLock::new();

/// The running agent, if start-up succeeded. Lock-free.
pub fn get() -> Option<&'static Agent> {
    AGENT.get()
}

/// How start-up failed: `Bad` is the user's input, `Failed` the environment.
enum StartError {
    Bad(String),
    Failed(String),
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
    match unsafe { start(vm, &raw) } {
        Ok(()) => sys::JNI_OK as sys::jint,
        Err(e) => {
            let (kind, msg) = match e {
                StartError::Bad(m) => ("bad agent option", m),
                StartError::Failed(m) => ("cannot start", m),
            };
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

/// # Safety
/// `vm` must be the JavaVM pointer passed to `Agent_OnLoad`.
unsafe fn start(vm: *mut sys::JavaVM, raw: &[options::RawOption<'_>]) -> Result<(), StartError> {
    let config = options::parse(raw).map_err(StartError::Bad)?;
    if AGENT.get().is_some() {
        return Err(StartError::Failed("jvmwatch is already loaded in this JVM".into()));
    }
    // JVMTI_VERSION_11: the newest constant of a newer header makes JDK 17 refuse GetEnv.
    // SAFETY: forwarded from our caller.
    let jvmti = unsafe { Jvmti::from_vm(vm, sys::JVMTI_VERSION_11) }
        .map_err(|e| StartError::Failed(format!("no JVMTI 11 environment ({e})")))?;
    callbacks::add_capabilities(&jvmti).map_err(|e| StartError::Failed(format!("JVMTI capabilities refused ({e})")))?;

    let mut id = identity::gather(&jvmti, config.interval.as_nanos() as u64);
    id.geometry = config.geometry();
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
    let path = writer.path().to_path_buf();
    let agent = Agent {
        jvmti,
        writer,
        config,
        stopping: AtomicBool::new(false),
        heap_after_gc: AtomicU64::new(jvmwatch_ring::UNKNOWN),
        stacks_requested: AtomicBool::new(false),
    };
    if AGENT.set(agent).is_err() {
        let _ = std::fs::remove_file(&path);
        return Err(StartError::Failed("jvmwatch is already loaded in this JVM".into()));
    }
    if let Err(e) = callbacks::install(&jvmti) {
        // The ring exists but no events will come: say so in the file and on stderr.
        return Err(StartError::Failed(format!("JVMTI events refused ({e})")));
    }
    Ok(())
}

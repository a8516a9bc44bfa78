//! Host facts: the processor (vendor, model, family/model/stepping, class, hypervisor, host
//! cores) and what the JVM was given (cores told, `-XX:ActiveProcessorCount`, affinity,
//! cgroup CPU quota and memory limit), written into the ring as `processor` and `resources`
//! events by the sampler thread: first thing when it starts (at VM init, or at attach), then
//! re-checked every [`RECHECK`]; a change writes both again. They are also written again, changed
//! or not, once [`REFRESH_EVENTS`] events went by, so the newest events always hold them.
//!
//! Not a GC callback: reads `/proc` and `/sys`, takes the string-table lock, and calls
//! `Runtime.availableProcessors()` through JNI.

use std::ptr;
use std::time::{Duration, Instant};

use jvmwatch_hostfacts as host;
use jvmwatch_ring::facts::{cpuset_text, REFRESH_EVENTS};
use jvmwatch_ring::Event;

use crate::agent::Agent;
use crate::bindings as sys;
use crate::jvmti::{clear_exception, jni};

/// How often the facts are read again.
pub const RECHECK: Duration = Duration::from_secs(10);

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    cpu: host::Cpu,
    hypervisor: String,
    resources: Event,
}

/// The sampler's view of the facts it wrote.
#[derive(Default)]
pub struct Tracker {
    last: Option<Seen>,
    /// The processor event of `last` (string ids resolved once per change).
    processor: Option<Event>,
    checked: Option<Instant>,
    /// The cursor after the facts were last written.
    written_at: u64,
    /// `-XX:ActiveProcessorCount` from the command line and the environment (fixed for the
    /// life of the process: read once).
    active_processor_count: Option<i64>,
}

impl Tracker {
    /// Called every sampler tick: re-reads the facts when [`RECHECK`] has passed (or never
    /// read), writes them when they changed or when [`REFRESH_EVENTS`] events went by.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv.
    pub unsafe fn tick(&mut self, a: &Agent, jni: *mut sys::JNIEnv) {
        if self.checked.is_none_or(|t| t.elapsed() >= RECHECK) {
            self.checked = Some(Instant::now());
            let apc = *self.active_processor_count.get_or_insert_with(|| {
                let (env, args) = (crate::identity::env_jvm_options(), crate::identity::command_line());
                host::active_processor_count(env.iter().chain(args.iter()).map(String::as_str))
            });
            // SAFETY: forwarded.
            let now = unsafe { gather(jni, apc) };
            if self.last.as_ref() != Some(&now) {
                if self.last.as_ref().is_none_or(|l| l.cpu != now.cpu || l.hypervisor != now.hypervisor) {
                    self.processor = Some(processor_event(a, &now));
                }
                self.last = Some(now);
                self.write(a);
                return;
            }
        }
        if self.last.is_some() && a.writer.cursor().wrapping_sub(self.written_at) >= REFRESH_EVENTS {
            self.write(a);
        }
    }

    fn write(&mut self, a: &Agent) {
        let (Some(p), Some(seen)) = (&self.processor, &self.last) else { return };
        a.writer.emit(p);
        a.writer.emit(&seen.resources);
        self.written_at = a.writer.cursor();
    }
}

fn processor_event(a: &Agent, s: &Seen) -> Event {
    let n = |v: Option<u32>| v.unwrap_or(u32::MAX);
    Event::Processor {
        vendor: a.writer.intern(&s.cpu.vendor),
        model_name: a.writer.intern(&s.cpu.model_name),
        class: a.writer.intern(&s.cpu.class),
        hypervisor: a.writer.intern(&s.hypervisor),
        family: n(s.cpu.family),
        model: n(s.cpu.model),
        stepping: n(s.cpu.stepping),
        host_cores: s.cpu.cores.clamp(0, u32::MAX as i64) as u32,
        hypervisor_flag: s.cpu.hypervisor_flag,
    }
}

/// Reads the facts now; `apc` is `-XX:ActiveProcessorCount` (0: not set).
///
/// # Safety
/// `jni` must be the current thread's JNIEnv.
unsafe fn gather(jni: *mut sys::JNIEnv, apc: i64) -> Seen {
    let cpu = host::cpu();
    let hypervisor = host::hypervisor(cpu.hypervisor_flag);
    let mut given = host::given_self().unwrap_or_default();
    given.active_processor_count = apc;
    // What the JVM itself says; HotSpot's rule from the same facts if the call fails.
    // SAFETY: forwarded.
    let told = unsafe { available_processors(jni) }.map_or_else(|| given.cores_told(), i64::from);
    let c = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
    let resources = Event::Resources {
        cores_told: c(told),
        active_processor_count: c(given.active_processor_count),
        affinity: c(given.affinity),
        cpu_quota_milli: given.quota_milli.clamp(-1, i32::MAX as i64) as i32,
        mem_limit: given.mem_limit,
        cpuset: cpuset_text(&given.cpuset),
    };
    Seen { cpu, hypervisor, resources }
}

/// `Runtime.getRuntime().availableProcessors()`.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv.
unsafe fn available_processors(jni: *mut sys::JNIEnv) -> Option<i32> {
    if jni!(jni, PushLocalFrame, 8) != Some(0) {
        // SAFETY: forwarded.
        unsafe { clear_exception(jni) };
        return None;
    }
    let n = (|| {
        let cls = jni!(jni, FindClass, c"java/lang/Runtime".as_ptr()).unwrap_or(ptr::null_mut());
        if cls.is_null() {
            return None;
        }
        let get = jni!(jni, GetStaticMethodID, cls, c"getRuntime".as_ptr(), c"()Ljava/lang/Runtime;".as_ptr())
            .unwrap_or(ptr::null_mut());
        let count =
            jni!(jni, GetMethodID, cls, c"availableProcessors".as_ptr(), c"()I".as_ptr()).unwrap_or(ptr::null_mut());
        if get.is_null() || count.is_null() {
            return None;
        }
        let rt = jni!(jni, CallStaticObjectMethodA, cls, get, ptr::null()).unwrap_or(ptr::null_mut());
        if rt.is_null() {
            return None;
        }
        jni!(jni, CallIntMethodA, rt, count, ptr::null())
    })();
    // SAFETY: forwarded.
    let threw = unsafe { clear_exception(jni) };
    let _ = jni!(jni, PopLocalFrame, ptr::null_mut());
    n.filter(|&n| !threw && n > 0)
}

//! The sampler: the agent's own daemon thread (JVMTI `RunAgentThread`), started at VM init.
//!
//! Every `interval` it writes a snapshot (heap per pool, GC counts and times per collector,
//! thread counts by state, process CPU time, loaded classes) and a heartbeat. Heap and GC
//! figures come from a small Java class (`io.jvmwatch.internal.Probe`, compiled by build.rs and
//! embedded here) that reads the platform MXBeans; thread states come from JVMTI; CPU time
//! from the kernel. If the class cannot be defined (e.g. a runtime without
//! `java.management`), the sampler goes on with the JVMTI and kernel figures and writes an
//! `agent_warning` event. If one sample of the probe fails (an `OutOfMemoryError` while the
//! application has filled the heap, typically), the previous snapshot stays as it is (a
//! snapshot is never published half filled), the exception is cleared and the next interval
//! tries again; one `agent_warning` per run of failures (at most one a minute) says so. The
//! heartbeat goes on either way.
//!
//! Not a GC callback: this thread may allocate and call JNI. It is a daemon agent thread, and
//! it stops at VM death: [`wake`] ends its sleep between ticks, because HotSpot's exit waits
//! for threads in native code (see `gcwake::stop`), and a sampler asleep in native code held
//! every JVM's exit back by about 45 ms (up to its interval).

use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jvmwatch_ring::history::{Cell, Downsampler, Sample, Tier};
use jvmwatch_ring::layout::HISTORY_CELLS;
use jvmwatch_ring::metrics::{self, Kind, BUCKET_COUNT};
use jvmwatch_ring::stacks::Reason;
use jvmwatch_ring::{now_ns, Collector, Event, GcCollector, Name, Pool, Snapshot, Text, UNKNOWN};

use crate::agent::{self, Agent};
use crate::bindings as sys;
use crate::jvmti::{clear_exception, jni, ThreadCensus};

static PROBE_CLASS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agent-classes/io/jvmwatch/internal/Probe.class"));

/// Values before the per-pool part of `Probe.sample()` (Probe.FIXED).
const FIXED: usize = 8;
/// Values per pool (Probe.POOL_FIELDS).
const POOL_FIELDS: usize = 5;
/// Values per collector (Probe.GC_FIELDS).
const GC_FIELDS: usize = 2;

/// The sampler thread, for [`wake`]; set when it starts.
static SAMPLER: OnceLock<std::thread::Thread> = OnceLock::new();

/// At VM death, after `Agent::stopping` is set: ends the sampler's sleep, so that it stops now
/// rather than at its next tick.
pub fn wake() {
    if let Some(t) = SAMPLER.get() {
        t.unpark();
    }
}

/// Sleeps until `until`, or until [`wake`] once `a.stopping` is set.
fn sleep_until(a: &Agent, until: Instant) {
    loop {
        // Relaxed: `vm_death` stores `stopping` before it calls `wake`, and a `park` that
        // returns on that `unpark` synchronizes with it; a spurious return just loops.
        if a.stopping.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::park_timeout(until - now);
    }
}

/// Starts the sampler thread.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv (VMInit callback).
pub unsafe fn start(a: &Agent, jni: *mut sys::JNIEnv) -> Result<(), String> {
    let cls = jni!(jni, FindClass, c"java/lang/Thread".as_ptr()).unwrap_or(ptr::null_mut());
    // SAFETY: `jni` is valid per the contract.
    if cls.is_null() || unsafe { clear_exception(jni) } {
        return Err("java.lang.Thread not found".into());
    }
    let ctor =
        jni!(jni, GetMethodID, cls, c"<init>".as_ptr(), c"(Ljava/lang/String;)V".as_ptr()).unwrap_or(ptr::null_mut());
    let name = jni!(jni, NewStringUTF, c"jvmwatch-sampler".as_ptr()).unwrap_or(ptr::null_mut());
    if ctor.is_null() || name.is_null() {
        // SAFETY: as above.
        unsafe { clear_exception(jni) };
        return Err("cannot make the sampler thread".into());
    }
    let args = [sys::jvalue { l: name }];
    let thread = jni!(jni, NewObjectA, cls, ctor, args.as_ptr()).unwrap_or(ptr::null_mut());
    // SAFETY: as above.
    if thread.is_null() || unsafe { clear_exception(jni) } {
        return Err("cannot make the sampler thread".into());
    }
    // SAFETY: `thread` is a fresh, unstarted java.lang.Thread.
    unsafe { a.jvmti.run_agent_thread(thread, Some(sampler_main)) }.map_err(|e| format!("RunAgentThread: {e}"))
}

unsafe extern "C" fn sampler_main(_jvmti: *mut sys::jvmtiEnv, jni: *mut sys::JNIEnv, _arg: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        let Some(a) = agent::get() else { return };
        // SAFETY: `jni` is this agent thread's JNIEnv, valid for the thread's life.
        unsafe { run(a, jni) }
    });
}

/// # Safety
/// `jni` must be the current thread's JNIEnv.
unsafe fn run(a: &Agent, jni: *mut sys::JNIEnv) {
    let _ = SAMPLER.set(std::thread::current());
    // The host facts first: they describe the whole run.
    let mut facts = crate::facts::Tracker::default();
    // SAFETY: forwarded.
    unsafe { facts.tick(a, jni) };
    // SAFETY: forwarded.
    let mut probe = match unsafe { Probe::load(jni) } {
        Ok(p) => Some(p),
        Err(e) => {
            a.writer.emit(&Event::AgentWarning { text: Text::new(&format!("no heap data: {e}"), 40) });
            None
        }
    };
    if let Some(p) = &probe {
        if let Some(c) = p.collectors.iter().map(|n| Collector::from_bean_name(&n.as_str())).next() {
            a.writer.set_collector(c);
        }
    }
    let interval = a.config.interval;
    let mut history = History::new(a);
    let mut names = crate::stacks::Names::default();
    // None: the first capture happens at the first tick (a JVM that hangs in its first
    // minute still leaves its stacks).
    let mut last_stacks: Option<Instant> = None;
    let mut next = Instant::now();
    let mut warned_behind = false;
    let mut failing = Failing::default();
    let mut census = ThreadCensus::default();
    while !a.stopping.load(Ordering::Relaxed) {
        // SAFETY: forwarded; the frame bounds the local refs made by one sample.
        if jni!(jni, PushLocalFrame, 64) == Some(0) {
            // SAFETY: forwarded; inside the local frame.
            let snap = unsafe { sample(a, jni, &mut census, probe.as_mut()) };
            let _ = jni!(jni, PopLocalFrame, ptr::null_mut());
            match snap {
                Ok(snap) => {
                    failing.ok();
                    a.writer.write_snapshot(&snap);
                    history.record(a, &snap);
                }
                // Keep the previous snapshot (never publish one with the heap half filled)
                // and try again next interval: an OutOfMemoryError in the probe is exactly
                // when the heap figures matter.
                Err(e) => failing.failed(a, &e),
            }
        } else {
            // Out of memory for the frame itself: clear the OutOfMemoryError, retry later.
            // SAFETY: forwarded.
            unsafe { clear_exception(jni) };
            failing.failed(a, "no local frame");
        }
        if let Some(period) = a.config.stacks {
            let asked = a.stacks_requested.swap(false, Ordering::Relaxed);
            if asked || last_stacks.is_none_or(|t| t.elapsed() >= period) {
                last_stacks = Some(Instant::now());
                // A capture of thousands of threads takes a while: beat first, so it never
                // looks like a hang.
                a.writer.heartbeat(now_ns());
                let reason = if asked { Reason::DumpRequest } else { Reason::Periodic };
                // SAFETY: forwarded; the capture manages its own local frames.
                if let Err(e) = unsafe { crate::stacks::capture(a, jni, &mut names, reason) } {
                    failing.failed(a, &format!("stacks: {e}"));
                }
            }
        }
        // SAFETY: forwarded.
        unsafe { facts.tick(a, jni) };
        a.writer.heartbeat(now_ns());
        next += interval;
        let now = Instant::now();
        if next > now {
            sleep_until(a, next);
        } else {
            if now - next > interval * 10 && !warned_behind {
                a.writer.emit(&Event::AgentWarning { text: Text::new("sampler fell behind", 40) });
                warned_behind = true;
            }
            next = now;
        }
    }
}

/// One snapshot: JVMTI thread states, process CPU time and, with a probe, its figures.
///
/// # Safety
/// `jni` must be the current thread's JNIEnv, inside a local frame.
unsafe fn sample(
    a: &Agent,
    jni: *mut sys::JNIEnv,
    census: &mut ThreadCensus,
    probe: Option<&mut Probe>,
) -> Result<Snapshot, String> {
    let mut snap = Snapshot::default();
    snap.time_ns = now_ns();
    snap.cpu_time_ns = process_cpu_ns();
    snap.heap_after_gc = a.heap_after_gc.load(Ordering::Relaxed);
    // Acquire: see `Agent::thread_changes`.
    let changes = a.thread_changes.load(Ordering::Acquire);
    // SAFETY: forwarded; always the sampler thread.
    if let Some(states) = unsafe { census.count(&a.jvmti, jni, changes) } {
        snap.thread_states = states;
        a.blocked_threads.store(states[2], Ordering::Relaxed);
        snap.threads_live = states[1..5].iter().sum();
    }
    if let Some(p) = probe {
        // SAFETY: forwarded.
        unsafe { p.sample(jni, &mut snap) }?;
    }
    Ok(snap)
}

/// Turns snapshots into history records: the fine tier gets every one, the coarse tier one
/// per step. Keeps the previous timer buckets of each cell to give per-interval figures.
struct History {
    coarse: Downsampler,
    prev: Vec<(u64, [u64; BUCKET_COUNT])>,
    scratch: [u64; BUCKET_COUNT],
}

impl History {
    fn new(a: &Agent) -> History {
        History {
            coarse: Downsampler::new(a.config.geometry().coarse_step_ns),
            prev: vec![(0, [0; BUCKET_COUNT]); HISTORY_CELLS],
            scratch: [0; BUCKET_COUNT],
        }
    }

    fn record(&mut self, a: &Agent, snap: &Snapshot) {
        if a.config.geometry().fine_slots == 0 {
            return;
        }
        let heap_pools: Vec<&Pool> = snap.pools().iter().filter(|p| p.heap).collect();
        let old = match heap_pools.as_slice() {
            [only] => Some(*only),
            pools => pools.iter().copied().find(|p| {
                let n = p.name.as_str();
                n.contains("Old") || n.contains("Tenured")
            }),
        };
        let mut s = Sample {
            time_ns: snap.time_ns,
            heap_used: snap.heap_used,
            heap_committed: snap.heap_committed,
            heap_max: snap.heap_max,
            // The whole heap right after the latest collection (GC notifications): UNKNOWN
            // before the first one and with monitor=off, never the per-pool fallback, which
            // reads 0 before any collection and misses old-gen under G1.
            heap_after_gc: snap.heap_after_gc,
            old_used: old.map_or(UNKNOWN, |p| p.used),
            old_max: old.map_or(UNKNOWN, |p| p.max),
            nonheap_used: snap.nonheap_used,
            gc_count: snap.gc_count(),
            gc_time_ms: snap.gc_time_ms(),
            cpu_ns: snap.cpu_time_ns,
            gc_pause_ns: a.writer.gc_pause_total_ns(),
            classes: snap.loaded_classes.min(u32::MAX as u64) as u32,
            threads_live: snap.threads_live,
            thread_states: snap.thread_states,
            ..Sample::default()
        };
        let mut timers = 0u32;
        let app = (0..a.writer.instrument_count()).filter(|&k| !a.writer.instrument_is_agents(k));
        for (i, index) in app.take(HISTORY_CELLS).enumerate() {
            let Some((kind, value, sum, max)) = a.writer.read_instrument(index, &mut self.scratch) else { break };
            s.cells_used = i as u32 + 1;
            s.cells[i] = match kind {
                Kind::Counter | Kind::Gauge => Cell { a: value, ..Cell::default() },
                Kind::Timer => {
                    timers |= 1 << i;
                    let (prev_sum, prev) = &mut self.prev[i];
                    let mut delta = [0u64; BUCKET_COUNT];
                    for (d, (now, before)) in delta.iter_mut().zip(self.scratch.iter().zip(prev.iter())) {
                        *d = now.wrapping_sub(*before).min(1 << 48);
                    }
                    let count = delta.iter().sum::<u64>();
                    let us = |ns: u64| (ns / 1000).min(u32::MAX as u64) as u32;
                    let top = delta.iter().rposition(|&n| n > 0).map_or(0, |b| metrics::bucket_upper(b).min(max));
                    let cell = Cell {
                        a: count,
                        b: sum.wrapping_sub(*prev_sum),
                        c: us(metrics::quantile(&delta, 0.99, max).unwrap_or(0)),
                        d: us(top),
                    };
                    *prev = self.scratch;
                    *prev_sum = sum;
                    cell
                }
            };
        }
        a.writer.history_append(Tier::Fine, &s);
        if let Some(done) = self.coarse.push(&s, timers) {
            a.writer.history_append(Tier::Coarse, &done);
        }
    }
}

/// Failed samples in a row, and when the sampler last warned about one.
#[derive(Default)]
struct Failing {
    streak: u64,
    warned: Option<Instant>,
}

impl Failing {
    /// At most one warning per failure streak, and at most one a minute.
    const QUIET: Duration = Duration::from_secs(60);

    fn failed(&mut self, a: &Agent, why: &str) {
        self.streak += 1;
        if a.stopping.load(Ordering::Relaxed) {
            return; // the VM is shutting down: a failing probe is expected, not news
        }
        if self.streak == 1 && !matches!(self.warned, Some(t) if t.elapsed() < Self::QUIET) {
            self.warned = Some(Instant::now());
            a.writer.emit(&Event::AgentWarning { text: Text::new(&format!("probe: {why}; retrying"), 40) });
        }
    }

    fn ok(&mut self) {
        self.streak = 0;
    }
}

/// CPU time of the whole process (all threads), ns.
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The embedded `io.jvmwatch.internal.Probe` class, defined and resolved.
struct Probe {
    class: sys::jclass,
    sample: sys::jmethodID,
    pools: Vec<Name>,
    collectors: Vec<Name>,
    buf: Vec<i64>,
    /// The MXBeans, read through JMM; `None` where JMM is not usable (then `Probe.sample()`).
    direct: Option<Direct>,
}

/// The probe's MXBeans, for reading the same figures through JMM (see [`crate::jmm`]) and
/// filling the same `long[]` layout `Probe.sample()` returns.
struct Direct {
    /// Global references to the pools' MXBeans, in [`Probe::pools`] order, and whether each
    /// is a heap pool.
    pools: Vec<(sys::jobject, bool)>,
    /// Global references to the collectors' MXBeans, in [`Probe::collectors`] order.
    collectors: Vec<sys::jobject>,
    /// Each pool's used bytes after the latest collection (-1: unknown), read again only
    /// when the collectors' total count moves, as `Probe.sample()` does.
    after_gc: Vec<i64>,
    /// The collectors' total count `after_gc` was read at.
    after_gc_at: i64,
}

impl Probe {
    /// # Safety
    /// `jni` must be the current thread's JNIEnv.
    unsafe fn load(jni: *mut sys::JNIEnv) -> Result<Probe, String> {
        // SAFETY: forwarded.
        let local = unsafe { crate::bridge::define(jni, c"io/jvmwatch/internal/Probe", PROBE_CLASS) }?;
        let class = jni!(jni, NewGlobalRef, local).unwrap_or(ptr::null_mut());
        let mid = |name: &CStr, sig: &CStr| {
            jni!(jni, GetStaticMethodID, class, name.as_ptr(), sig.as_ptr()).unwrap_or(ptr::null_mut())
        };
        let sample = mid(c"sample", c"()[J");
        let pool_names = mid(c"poolNames", c"()[Ljava/lang/String;");
        let gc_names = mid(c"collectorNames", c"()[Ljava/lang/String;");
        // SAFETY: forwarded.
        let threw = unsafe { clear_exception(jni) };
        if threw || [class, pool_names.cast(), gc_names.cast(), sample.cast()].iter().any(|p| p.is_null()) {
            return Err("probe methods missing".into());
        }
        let mut p = Probe { class, sample, pools: Vec::new(), collectors: Vec::new(), buf: Vec::new(), direct: None };
        // SAFETY: forwarded; the method ids belong to `class` and return String[].
        unsafe {
            p.pools = p.names(jni, pool_names)?;
            p.collectors = p.names(jni, gc_names)?;
        }
        // SAFETY: forwarded.
        p.direct = unsafe { p.direct(jni) };
        Ok(p)
    }

    /// The MXBeans for reading through JMM, or `None` (JMM not usable, or the probe's lists
    /// do not match its names): then every sample calls `Probe.sample()`.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv.
    unsafe fn direct(&self, jni: *mut sys::JNIEnv) -> Option<Direct> {
        // SAFETY: forwarded.
        if !unsafe { crate::jmm::usable(jni) } {
            return None;
        }
        // SAFETY: forwarded; each is a static method of `class` returning the type named.
        let (pools, heap, collectors) = unsafe {
            (
                self.objects(jni, c"poolBeans", self.pools.len()),
                self.heap_flags(jni),
                self.objects(jni, c"collectorBeans", self.collectors.len()),
            )
        };
        // SAFETY: forwarded.
        unsafe { clear_exception(jni) };
        let (pools, heap, collectors) = match (pools, heap, collectors) {
            (Some(p), Some(h), Some(c)) => (p, h, c),
            (p, _, c) => {
                for r in p.into_iter().flatten().chain(c.into_iter().flatten()) {
                    let _ = jni!(jni, DeleteGlobalRef, r);
                }
                return None;
            }
        };
        let after_gc = vec![-1; pools.len()];
        Some(Direct { pools: pools.into_iter().zip(heap).collect(), collectors, after_gc, after_gc_at: -1 })
    }

    /// Global references to the elements of the `Object[]` that static method `name`
    /// returns, if it has exactly `want` non-null elements.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv; `name` a static `()[Ljava/lang/Object;` of
    /// the probe class.
    unsafe fn objects(&self, jni: *mut sys::JNIEnv, name: &CStr, want: usize) -> Option<Vec<sys::jobject>> {
        let mid = jni!(jni, GetStaticMethodID, self.class, name.as_ptr(), c"()[Ljava/lang/Object;".as_ptr())?;
        // SAFETY: forwarded.
        if mid.is_null() || unsafe { clear_exception(jni) } {
            return None;
        }
        let arr = jni!(jni, CallStaticObjectMethodA, self.class, mid, ptr::null()).unwrap_or(ptr::null_mut());
        // SAFETY: forwarded.
        if arr.is_null() || unsafe { clear_exception(jni) } {
            return None;
        }
        let mut out = Vec::with_capacity(want);
        if jni!(jni, GetArrayLength, arr) == Some(want as sys::jsize) {
            for i in 0..want as sys::jsize {
                let local = jni!(jni, GetObjectArrayElement, arr, i).unwrap_or(ptr::null_mut());
                if local.is_null() {
                    break;
                }
                let global = jni!(jni, NewGlobalRef, local).unwrap_or(ptr::null_mut());
                let _ = jni!(jni, DeleteLocalRef, local);
                if global.is_null() {
                    break;
                }
                out.push(global);
            }
        }
        let _ = jni!(jni, DeleteLocalRef, arr);
        if out.len() != want {
            for r in out {
                let _ = jni!(jni, DeleteGlobalRef, r);
            }
            return None;
        }
        Some(out)
    }

    /// `Probe.poolIsHeap()`, if it has one flag per pool.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv.
    unsafe fn heap_flags(&self, jni: *mut sys::JNIEnv) -> Option<Vec<bool>> {
        let mid = jni!(jni, GetStaticMethodID, self.class, c"poolIsHeap".as_ptr(), c"()[Z".as_ptr())?;
        // SAFETY: forwarded.
        if mid.is_null() || unsafe { clear_exception(jni) } {
            return None;
        }
        let arr = jni!(jni, CallStaticObjectMethodA, self.class, mid, ptr::null())?;
        // SAFETY: forwarded.
        if arr.is_null() || unsafe { clear_exception(jni) } {
            return None;
        }
        let n = jni!(jni, GetArrayLength, arr).unwrap_or(0).max(0) as usize;
        let mut flags = vec![0 as sys::jboolean; n];
        let _ = jni!(jni, GetBooleanArrayRegion, arr, 0, n as sys::jsize, flags.as_mut_ptr());
        let _ = jni!(jni, DeleteLocalRef, arr);
        (n == self.pools.len()).then(|| flags.iter().map(|&f| f != 0).collect())
    }

    /// # Safety
    /// `jni` must be the current thread's JNIEnv; `mid` a static `()[Ljava/lang/String;` of
    /// the probe class.
    unsafe fn names(&self, jni: *mut sys::JNIEnv, mid: sys::jmethodID) -> Result<Vec<Name>, String> {
        let arr = jni!(jni, CallStaticObjectMethodA, self.class, mid, ptr::null()).unwrap_or(ptr::null_mut());
        // SAFETY: forwarded.
        if arr.is_null() || unsafe { clear_exception(jni) } {
            return Err("probe failed to start (java.management missing?)".into());
        }
        let n = jni!(jni, GetArrayLength, arr).unwrap_or(0);
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            let s = jni!(jni, GetObjectArrayElement, arr, i).unwrap_or(ptr::null_mut());
            if s.is_null() {
                out.push(Name::new("?"));
                continue;
            }
            out.push(Name::new(&crate::bridge::java_string(jni, s)));
            let _ = jni!(jni, DeleteLocalRef, s);
        }
        let _ = jni!(jni, DeleteLocalRef, arr);
        Ok(out)
    }

    /// Fills heap, pool, collector, class and daemon figures into `snap`.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv, inside a local frame.
    unsafe fn sample(&mut self, jni: *mut sys::JNIEnv, snap: &mut Snapshot) -> Result<(), String> {
        let want = FIXED + POOL_FIELDS * self.pools.len() + GC_FIELDS * self.collectors.len();
        self.buf.resize(want, -1);
        if let Some(direct) = &mut self.direct {
            // SAFETY: forwarded.
            if unsafe { direct.fill(jni, &mut self.buf) }.is_err() {
                // SAFETY: forwarded.
                unsafe { clear_exception(jni) };
                return Err("a JMM read threw".into());
            }
        } else {
            let arr =
                jni!(jni, CallStaticObjectMethodA, self.class, self.sample, ptr::null()).unwrap_or(ptr::null_mut());
            // SAFETY: forwarded.
            if arr.is_null() || unsafe { clear_exception(jni) } {
                return Err("sample() threw".into());
            }
            let n = jni!(jni, GetArrayLength, arr).unwrap_or(0).max(0) as usize;
            if n != want {
                return Err(format!("sample() gave {n} values, want {want}"));
            }
            let _ = jni!(jni, GetLongArrayRegion, arr, 0, n as sys::jsize, self.buf.as_mut_ptr());
        }
        let v = |x: i64| if x < 0 { UNKNOWN } else { x as u64 };
        let b = &self.buf;
        snap.heap_used = v(b[0]);
        snap.heap_committed = v(b[1]);
        snap.heap_max = v(b[2]);
        snap.nonheap_used = v(b[3]);
        snap.nonheap_committed = v(b[4]);
        snap.loaded_classes = v(b[5]);
        snap.threads_daemon = b[6].clamp(0, u32::MAX as i64) as u32;
        snap.threads_live = b[7].clamp(0, u32::MAX as i64) as u32;
        for (i, name) in self.pools.iter().enumerate() {
            let f = &b[FIXED + i * POOL_FIELDS..];
            snap.push_pool(Pool {
                name: *name,
                heap: f[0] == 1,
                used: v(f[1]),
                committed: v(f[2]),
                max: v(f[3]),
                used_after_gc: v(f[4]),
            });
        }
        let base = FIXED + POOL_FIELDS * self.pools.len();
        for (i, name) in self.collectors.iter().enumerate() {
            let f = &b[base + i * GC_FIELDS..];
            snap.push_collector(GcCollector { name: *name, count: v(f[0]), time_ms: v(f[1]) });
        }
        Ok(())
    }
}

impl Direct {
    /// Fills `out` with what `Probe.sample()` returns (the same layout and the same VM
    /// functions: see `Probe.java`), reading through JMM.
    ///
    /// # Safety
    /// `jni` must be the current thread's JNIEnv, in native state, with no exception pending,
    /// inside a local frame; JMM must be usable (checked when `Direct` was made).
    unsafe fn fill(&mut self, jni: *mut sys::JNIEnv, out: &mut [i64]) -> Result<(), crate::jmm::Threw> {
        use crate::jmm::{self, attr};
        let mut at = FIXED + POOL_FIELDS * self.pools.len();
        let mut collections = 0;
        for &gc in &self.collectors {
            // SAFETY: forwarded; `gc` is a global reference to a GarbageCollectorMXBean.
            let [count, time] = unsafe { jmm::long_attributes(jni, gc, [attr::GC_COUNT, attr::GC_TIME_MS]) }?;
            out[at..at + GC_FIELDS].copy_from_slice(&[count, time]);
            collections += count.max(0);
            at += GC_FIELDS;
        }
        let read_after_gc = collections != self.after_gc_at;
        self.after_gc_at = collections;
        // SAFETY: forwarded.
        let heap = unsafe { jmm::memory_usage(jni, true) }?.unwrap_or([-1; 3]);
        out[..3].copy_from_slice(&heap);
        // SAFETY: forwarded; null asks for the VM-wide attributes.
        let [loaded, unloaded, live, daemon] = unsafe {
            jmm::long_attributes(
                jni,
                ptr::null_mut(),
                [
                    attr::CLASS_LOADED_COUNT,
                    attr::CLASS_UNLOADED_COUNT,
                    attr::THREAD_LIVE_COUNT,
                    attr::THREAD_DAEMON_COUNT,
                ],
            )
        }?;
        // ClassLoadingMXBean.getLoadedClassCount(): loaded minus unloaded.
        out[5] = if loaded < 0 || unloaded < 0 { -1 } else { loaded - unloaded };
        out[6] = daemon;
        out[7] = live;
        // Non-heap used and committed: the sums over the non-heap pools (see Probe.java).
        let (mut nonheap_used, mut nonheap_committed) = (0, 0);
        at = FIXED;
        for (i, &(pool, heap)) in self.pools.iter().enumerate() {
            // SAFETY: forwarded; `pool` is a global reference to a MemoryPoolMXBean.
            let usage = unsafe { jmm::pool_usage(jni, pool, false) }?;
            if read_after_gc {
                // SAFETY: as above.
                self.after_gc[i] = unsafe { jmm::pool_usage(jni, pool, true) }?.map_or(-1, |[used, ..]| used);
            }
            let [used, committed, max] = usage.unwrap_or([-1; 3]);
            out[at..at + POOL_FIELDS].copy_from_slice(&[heap as i64, used, committed, max, self.after_gc[i]]);
            if !heap && usage.is_some() {
                nonheap_used += used;
                nonheap_committed += committed;
            }
            at += POOL_FIELDS;
        }
        out[3] = nonheap_used;
        out[4] = nonheap_committed;
        Ok(())
    }
}

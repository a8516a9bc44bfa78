//! Section 2: micro costs. Ring writes (with their timestamp) from one and two threads, the
//! snapshot update, a full scan of a 64 MiB ring and `jvmwatch inspect` of it, the sidecar's
//! leak check on a full history (the full read before, the lean one now, side by side), all
//! through the real `jvmwatch_ring` code on tmpfs; and the GC-finish callback as the agent
//! measures it inside real JVMs.

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use jvmwatch_ring::{now_ns, Collector, Event, GcCollector, Identity, Name, Pool, Ring, Snapshot, Writer};
use serde::Serialize;

use crate::jvm::{self, AgentStats, GcResult};
use crate::plan::Plan;
use crate::process::Proc;
use crate::stats::{round, summarize, Summary};
use crate::tools::{Scratch, Tools};

/// The full scan of one ring.
#[derive(Clone, Debug, Serialize)]
pub struct ScanResult {
    /// Size of the event area, MiB.
    pub ring_mib: u64,
    /// Events read per scan (the whole ring).
    pub events: u64,
    /// `Ring::open` + `scan(0)` wall time, ms.
    pub scan_ms: Summary,
    /// Events per second at the median.
    pub events_per_s: f64,
    /// `jvmwatch inspect --json` of the same file (a process start included), ms.
    pub inspect_ms: Summary,
}

/// The service's periodic leak check (`Jvm::judge`, every 60 s per JVM, under the registry
/// lock) on a full history at the default geometry: the full read it did before and the lean
/// read it does now, timed alternately in the same run on the same open ring.
#[derive(Clone, Debug, Serialize)]
pub struct LeakCheck {
    /// Records in the history (both tiers full and wrapped).
    pub records: u64,
    /// Bytes of the history region.
    pub history_bytes: u64,
    /// Checks of each kind per repetition.
    pub checks: usize,
    /// `Ring::history` + `history::leaks`, µs per check (mean over a repetition).
    pub full_us: Summary,
    /// `Ring::leak_series` + `history::leaks_of_series`, µs per check.
    pub lean_us: Summary,
    /// full / lean, medians.
    pub ratio: f64,
    /// Whether the leak findings fire on this history (a heap and a thread leak, the same
    /// both ways: checked).
    pub heap_leak: bool,
    /// See `heap_leak`.
    pub thread_leak: bool,
}

/// The agent's GC-finish callback cost, self-measured inside real JVMs.
#[derive(Clone, Debug, Serialize)]
pub struct GcCallback {
    /// How it was measured and what is not there.
    pub note: &'static str,
    /// Callbacks timed over all runs.
    pub callbacks: u64,
    /// Mean per run, ns.
    pub mean_ns: Summary,
    /// Longest per run, ns.
    pub max_ns: Summary,
    /// Collections per second of the workload (GC beans).
    pub gc_per_s: Summary,
    /// Every GC-finish callback of every run, from the agent's histograms added up.
    pub finish: Distribution,
    /// Every GC-start callback of every run.
    pub start: Distribution,
    /// Each run's figures from the ring.
    pub runs: Vec<AgentStats>,
}

/// Per-callback distribution pooled over runs: percentiles are bucket upper bounds (≤ 25 %
/// above the truth) capped by the max (`None` when the agent kept no histogram).
#[derive(Clone, Debug, Serialize)]
pub struct Distribution {
    /// Callbacks.
    pub count: u64,
    /// Mean, ns.
    pub mean_ns: Option<f64>,
    /// Median, ns.
    pub p50_ns: Option<u64>,
    /// 99th percentile, ns.
    pub p99_ns: Option<u64>,
    /// Longest, ns.
    pub max_ns: u64,
    /// The histogram: (bucket lower bound ns, callbacks), non-empty buckets only.
    pub buckets: Vec<(u64, u64)>,
}

impl Distribution {
    fn pooled(runs: impl Iterator<Item = jvmwatch_ring::cbcost::CallbackCost>) -> Distribution {
        let mut all = jvmwatch_ring::cbcost::CallbackCost::default();
        for r in runs {
            all.count += r.count;
            all.total_ns += r.total_ns;
            all.max_ns = all.max_ns.max(r.max_ns);
            for (a, b) in all.buckets.iter_mut().zip(r.buckets) {
                *a += b;
            }
        }
        Distribution {
            count: all.count,
            mean_ns: all.mean_ns().map(|m| crate::stats::round(m, 0)),
            p50_ns: all.quantile(0.5),
            p99_ns: all.quantile(0.99),
            max_ns: all.max_ns,
            buckets: (all.buckets.iter().enumerate())
                .filter(|(_, &n)| n > 0)
                .map(|(i, &n)| (jvmwatch_ring::cbcost::bucket_lower(i), n))
                .collect(),
        }
    }
}

/// The section's results; durations per operation in ns unless named otherwise.
#[derive(Clone, Debug, Serialize)]
pub struct Micro {
    /// Repetitions of each figure.
    pub reps: usize,
    /// `now_ns()` alone (CLOCK_REALTIME through the vDSO), the timestamp in every event.
    pub clock_read_ns: Summary,
    /// `Writer::emit` of a gc_pause_end, timestamp included, one writer thread.
    pub event_write_1_writer_ns: Summary,
    /// The same with two threads writing the same ring at once (per event, per writer).
    pub event_write_2_writers_ns: Summary,
    /// `Writer::write_snapshot` of a snapshot with 6 pools and 2 collectors.
    pub snapshot_update_ns: Summary,
    /// The agent's host-facts re-check without its JNI call (`Runtime.availableProcessors()`,
    /// a few µs): `/proc/cpuinfo` (first 8 KiB), the online CPUs, the hypervisor, this
    /// process's affinity and cgroup limits, as `jvmwatch_hostfacts` reads them. Calling
    /// thread's CPU time per re-check.
    pub host_facts_recheck_us: Summary,
    /// Full scan of a full ring.
    pub scan: ScanResult,
    /// The sidecar's leak check on a full history, before and now.
    pub leak_check: LeakCheck,
    /// The agent's GC callback.
    pub gc_callback: GcCallback,
}

fn identity() -> Identity {
    Identity {
        pid: std::process::id(),
        start_ns: now_ns(),
        interval_ns: 100_000_000,
        agent_version: "bench".into(),
        hostname: "bench".into(),
        jvm_version: "none".into(),
        jvm_vendor: "jvmwatch-bench".into(),
        cwd: "/".into(),
        error_file: String::new(),
        command: "jvmwatch-bench micro".into(),
        geometry: Default::default(),
        flags: 0,
    }
}

fn gc_end(i: u64) -> Event {
    Event::GcPauseEnd { gc_id: i, collector: Collector::G1, duration_ns: 1_000_000 + (i & 0xffff) }
}

fn per_op(elapsed: Duration, n: u64) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

fn sum(v: &[f64]) -> Summary {
    let s = summarize(v).expect("at least one repetition");
    Summary { n: s.n, min: round(s.min, 2), median: round(s.median, 2), max: round(s.max, 2) }
}

/// Runs the section.
pub fn run(plan: &Plan, tools: &Tools, scratch: &Scratch) -> Result<Micro> {
    let dir = scratch.shm_dir("micro")?;
    let n = plan.micro_events;
    let (mut clock, mut one, mut two, mut snap) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut facts = Vec::new();
    for rep in 0..plan.micro_reps {
        facts.push(time_facts_recheck(50));
        clock.push(time_clock(n));
        let w = Writer::create(&dir.join(format!("w1-{rep}.ring")), 65_536, &identity())?;
        one.push(time_writes(&w, n, 1));
        drop(w);
        let w = Writer::create(&dir.join(format!("w2-{rep}.ring")), 65_536, &identity())?;
        two.push(time_writes(&w, n, 2));
        snap.push(time_snapshots(&w, plan.snapshot_writes));
        drop(w);
        eprintln!(
            "[micro] rep {}: clock {:.1} ns, write 1 writer {:.1} ns, 2 writers {:.1} ns, snapshot {:.0} ns, host facts re-check {:.0} µs",
            rep + 1,
            clock[rep],
            one[rep],
            two[rep],
            snap[rep],
            facts[rep]
        );
        for f in ["w1", "w2"] {
            let _ = std::fs::remove_file(dir.join(format!("{f}-{rep}.ring")));
        }
    }
    let scan = scan_full_ring(plan, tools, &dir)?;
    let leak_check = leak_check(plan, &dir)?;
    let gc_callback = gc_callback(plan, tools, scratch)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Micro {
        reps: plan.micro_reps,
        clock_read_ns: sum(&clock),
        event_write_1_writer_ns: sum(&one),
        event_write_2_writers_ns: sum(&two),
        snapshot_update_ns: sum(&snap),
        host_facts_recheck_us: sum(&facts),
        scan,
        leak_check,
        gc_callback,
    })
}

/// The calling thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// µs of this thread's CPU per host-facts re-check, over `n` of them.
fn time_facts_recheck(n: u64) -> f64 {
    use jvmwatch_hostfacts as host;
    let t = thread_cpu_ns();
    for _ in 0..n {
        let cpu = host::cpu();
        black_box(host::hypervisor(cpu.hypervisor_flag));
        black_box(host::given_self());
        black_box(cpu);
    }
    (thread_cpu_ns() - t) as f64 / n as f64 / 1e3
}

fn time_clock(n: u64) -> f64 {
    let t = Instant::now();
    let mut acc = 0u64;
    for _ in 0..n {
        acc = acc.wrapping_add(black_box(now_ns()));
    }
    black_box(acc);
    per_op(t.elapsed(), n)
}

/// ns per event per writer with `threads` writers emitting `n` events each at once.
fn time_writes(w: &Writer, n: u64, threads: usize) -> f64 {
    let start = Barrier::new(threads);
    let per_thread: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let t = Instant::now();
                    for i in 0..n {
                        black_box(w.emit(black_box(&gc_end(i))));
                    }
                    per_op(t.elapsed(), n)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("writer thread")).collect()
    });
    per_thread.iter().sum::<f64>() / per_thread.len() as f64
}

fn sample_snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.time_ns = now_ns();
    s.heap_used = 300 << 20;
    s.heap_committed = 512 << 20;
    s.heap_max = 512 << 20;
    s.nonheap_used = 40 << 20;
    s.nonheap_committed = 48 << 20;
    s.cpu_time_ns = 12_345_678_900;
    s.loaded_classes = 4321;
    s.threads_live = 20;
    s.threads_daemon = 10;
    s.thread_states = [0, 12, 1, 4, 3, 0];
    for (name, heap) in [
        ("G1 Eden Space", true),
        ("G1 Old Gen", true),
        ("G1 Survivor Space", true),
        ("Metaspace", false),
        ("CodeHeap 'non-nmethods'", false),
        ("Compressed Class Space", false),
    ] {
        s.push_pool(Pool {
            name: Name::new(name),
            heap,
            used: 1 << 20,
            committed: 2 << 20,
            max: 4 << 20,
            used_after_gc: 1 << 19,
        });
    }
    for name in ["G1 Young Generation", "G1 Old Generation"] {
        s.push_collector(GcCollector { name: Name::new(name), count: 1234, time_ms: 5678 });
    }
    s
}

fn time_snapshots(w: &Writer, n: u64) -> f64 {
    let mut s = sample_snapshot();
    let t = Instant::now();
    for i in 0..n {
        s.time_ns = i;
        black_box(w.write_snapshot(black_box(&s)));
    }
    per_op(t.elapsed(), n)
}

fn scan_full_ring(plan: &Plan, tools: &Tools, dir: &Path) -> Result<ScanResult> {
    let path = dir.join("full.ring");
    let slots = plan.scan_slots;
    {
        let w = Writer::create(&path, slots, &identity())?;
        ensure!(w.capacity() == slots, "ring capacity {} != {slots}", w.capacity());
        for i in 0..slots {
            w.emit(&gc_end(i));
        }
    } // the writer closes: the ring is a dead JVM's full ring
    let (mut scan_ms, mut inspect_ms) = (Vec::new(), Vec::new());
    for rep in 0..plan.micro_reps {
        let t = Instant::now();
        let ring = Ring::open(&path)?;
        let scan = ring.scan(0, false)?;
        let el = t.elapsed();
        ensure!(scan.records.len() as u64 == slots && scan.lost() == 0, "scan read {} of {slots}", scan.records.len());
        black_box(&scan);
        scan_ms.push(el.as_secs_f64() * 1e3);
        let t = Instant::now();
        let st = Command::new(&tools.jvmwatch)
            .args(["inspect", "--json", "--events", "50"])
            .arg(&path)
            .stdout(Stdio::null())
            .status()
            .context("run jvmwatch inspect")?;
        ensure!(st.success(), "jvmwatch inspect failed on the full ring: {st}");
        inspect_ms.push(t.elapsed().as_secs_f64() * 1e3);
        eprintln!(
            "[micro] full {} MiB ring rep {}: scan {:.1} ms, inspect {:.1} ms",
            (slots * 64) >> 20,
            rep + 1,
            scan_ms[rep],
            inspect_ms[rep]
        );
    }
    let _ = std::fs::remove_file(&path);
    let scan_ms = sum(&scan_ms);
    Ok(ScanResult {
        ring_mib: (slots * 64) >> 20,
        events: slots,
        events_per_s: round(slots as f64 / (scan_ms.median / 1e3), 0),
        scan_ms,
        inspect_ms: sum(&inspect_ms),
    })
}

/// Times the leak check both ways on a full history at the agent's default geometry.
fn leak_check(plan: &Plan, dir: &Path) -> Result<LeakCheck> {
    use jvmwatch_ring::history::{Cell, Sample, Tier};
    use jvmwatch_sidecar::history::{leaks, leaks_of_series};
    let g = jvmwatch_ring::Geometry {
        fine_slots: 9_000,
        coarse_slots: 720,
        coarse_step_ns: 10_000_000_000,
        stacks_size: 262_144,
    };
    let path = dir.join("history.ring");
    {
        let w = Writer::create(&path, 16_384, &Identity { geometry: g, ..identity() })?;
        // A JVM two and a half hours old (both tiers wrapped) whose heap after GC and threads
        // climb over the last 30 minutes, with eight instruments in every record.
        const S: u64 = 1_000_000_000;
        let t0 = now_ns() - 9_000 * S;
        let sample = |t: u64| {
            let climb = t.saturating_sub(7_200 * S) / S;
            let gc = climb / 5 * 5;
            let mut s = Sample {
                time_ns: t0 + t,
                heap_used: 600 << 20,
                heap_committed: 1 << 30,
                heap_max: 1 << 30,
                heap_after_gc: (200 << 20) + (gc << 18) + ((gc * 7919 % 13) << 20),
                threads_live: 20 + (climb / 4) as u32,
                cells_used: 8,
                ..Sample::default()
            };
            for c in s.cells.iter_mut() {
                *c = Cell { a: t, b: t / 7, c: 1500, d: 9000 };
            }
            s
        };
        for k in 0..900u64 {
            w.history_append(Tier::Coarse, &sample(k * 10 * S));
        }
        for k in 0..9_500u64 {
            w.history_append(Tier::Fine, &sample(9_000 * S - (9_500 - k) * S / 10));
        }
    }
    let ring = Ring::open(&path)?;
    let history = ring.history()?.context("the ring has a history")?;
    ensure!(history.fine.len() == 9_000 && history.coarse.len() == 720, "the history is not full");
    let full = leaks(&history);
    let lean = leaks_of_series(&ring.leak_series()?.context("the ring has a history")?);
    ensure!(full == lean, "the lean leak check disagrees with the full one: {lean:?} against {full:?}");
    let checks = if plan.smoke { 20 } else { 200 };
    let (mut full_us, mut lean_us) = (Vec::new(), Vec::new());
    for rep in 0..plan.micro_reps {
        // Alternately, so that drift and the cache's state hit both alike.
        let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..checks {
            let t = Instant::now();
            black_box(leaks(&ring.history()?.context("history")?));
            a += t.elapsed();
            let t = Instant::now();
            black_box(leaks_of_series(&ring.leak_series()?.context("history")?));
            b += t.elapsed();
        }
        full_us.push(a.as_secs_f64() * 1e6 / checks as f64);
        lean_us.push(b.as_secs_f64() * 1e6 / checks as f64);
        eprintln!(
            "[micro] leak check on a full history, rep {}: full {:.0} µs, lean {:.0} µs ({:.1}×)",
            rep + 1,
            full_us[rep],
            lean_us[rep],
            full_us[rep] / lean_us[rep]
        );
    }
    let _ = std::fs::remove_file(&path);
    let (full_us, lean_us) = (sum(&full_us), sum(&lean_us));
    Ok(LeakCheck {
        records: 9_720,
        history_bytes: g.history_bytes(),
        checks,
        ratio: round(full_us.median / lean_us.median, 1),
        full_us,
        lean_us,
        heap_leak: full.0.is_some(),
        thread_leak: full.1.is_some(),
    })
}

fn gc_callback(plan: &Plan, tools: &Tools, scratch: &Scratch) -> Result<GcCallback> {
    let mut runs = Vec::new();
    let mut gc_rates = Vec::new();
    for rep in 0..plan.callback_runs {
        let dir = scratch.shm_dir(&format!("callback-{rep}"))?;
        let flags = vec![
            "-XX:-UsePerfData".to_string(),
            format!("-Xms{}", plan.gc_heap),
            format!("-Xmx{}", plan.gc_heap),
            jvm::agent_flag(tools, &format!("dir={}", dir.display())),
        ];
        let args = [plan.gc_threads.to_string(), "500".into(), plan.callback_run.as_millis().to_string()];
        let max = plan.callback_run + Duration::from_secs(60);
        let mut p = Proc::spawn(jvm::command(tools, &flags, "GcWork", &args, max), "GcWork", &dir.join("java.stderr"))?;
        let r = GcResult::parse(&p.expect_line("RESULT", max)?)?;
        p.wait(Duration::from_secs(30))?;
        let a = jvm::agent_stats(&dir)?;
        ensure!(a.callbacks > 0, "the agent timed no GC callback");
        eprintln!(
            "[micro] GC callback run {}: {} callbacks, mean {:.0} ns, max {} ns",
            rep + 1,
            a.callbacks,
            a.callback_mean_ns,
            a.callback_max_ns
        );
        gc_rates.push(r.gcs as f64 * 1e9 / r.nanos as f64);
        runs.push(a);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let cost = |a: &AgentStats, start: bool| {
        let (count, total_ns, max_ns, buckets) =
            if start { a.start } else { (a.callbacks, a.callback_total_ns, a.callback_max_ns, a.finish_hist) };
        jvmwatch_ring::cbcost::CallbackCost { count, total_ns, max_ns, buckets }
    };
    Ok(GcCallback {
        note: "The agent times its own GarbageCollectionStart and GarbageCollectionFinish callbacks (vDSO clock \
               reads, pause accounting, one ring write each) into the ring header: count, total, max and a \
               32-bucket log-linear histogram per callback (4 buckets per power of two from 128 ns). \
               Percentiles pool every callback of every run; a percentile is its bucket's upper bound \
               (at most 25 % above the truth), capped by the max.",
        finish: Distribution::pooled(runs.iter().map(|a| cost(a, false))),
        start: Distribution::pooled(runs.iter().map(|a| cost(a, true))),
        callbacks: runs.iter().map(|a| a.callbacks).sum(),
        mean_ns: sum(&runs.iter().map(|a| a.callback_mean_ns).collect::<Vec<_>>()),
        max_ns: sum(&runs.iter().map(|a| a.callback_max_ns as f64).collect::<Vec<_>>()),
        gc_per_s: sum(&gc_rates),
        runs,
    })
}

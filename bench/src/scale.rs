//! The sidecar's scale curve: `jvmwatch serve` following 10, 50, 100 and 1,000 rings written by
//! synthetic writer processes (this harness run as `scale-writer`, using the ring crate's
//! `Writer` as the agent does), with one SSE client connected.
//!
//! Per size: the sidecar's CPU (% of one core, `/proc/<pid>/stat` over the window), its RSS,
//! GC→SSE latency (a writer's `gc_pause_end` time to its arrival on the stream over
//! 127.0.0.1), `/metrics` response time and size; and how each grows per 10× rings. With
//! `--before BIN`, every size is measured with that sidecar too, against the same writers, so
//! before and after are side by side.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use jvmwatch_ring::metrics::Kind;
use jvmwatch_ring::snapshot::{GcCollector, Name, Pool};
use jvmwatch_ring::{Collector, Event, Geometry, Identity, Snapshot, State, Writer};
use serde::Serialize;

use crate::http::Conn;
use crate::process::Proc;
use crate::rng::Rng;
use crate::sidecar::{Serve, Subscriber};
use crate::stats::{percentiles, round, Percentiles};
use crate::tools::{Scratch, Tools};

/// Rings driven by one writer process (one thread).
pub const RINGS_PER_WRITER: usize = 100;
/// Event slots per synthetic ring (1 MiB of events; the history has the agent's default size).
const SLOTS: u64 = 16_384;
/// Sampler interval of the synthetic writers (the agent's default).
const INTERVAL: Duration = Duration::from_millis(100);
/// Events per synthetic collection: pause start, pause end, cycle, one pool.
const EVENTS_PER_GC: f64 = 4.0;

/// The event mix, for the results.
pub const MIX: &str = "per ring: GC events at 1/s (80 % of rings), 10/s (15 %) or 100/s (5 %; ring 0 is one), \
     4 events per collection (pause start, pause end, GC cycle, one pool); an app event every 2 s; a counter, a \
     gauge and a timer updated every 100 ms; snapshot, heartbeat and fine history every 100 ms, coarse history \
     every 10 s (the agent's default history geometry); 16,384 event slots";

/// The command line a synthetic ring carries, before its number.
const WRITER_COMMAND: &str = "ScaleWriter ring ";

/// GC events per second of ring `i` (the mix above).
fn gc_events_per_s(i: usize) -> f64 {
    match i % 20 {
        0 => 100.0,
        1..=3 => 10.0,
        _ => 1.0,
    }
}

/// Events per second the writers of `rings` rings produce together.
pub fn events_per_s(rings: usize) -> f64 {
    (0..rings).map(|i| gc_events_per_s(i) + 0.5).sum()
}

/// One synthetic JVM.
struct Sim {
    w: Writer,
    gc_every: Duration,
    next_gc: Instant,
    next_sample: Instant,
    next_app: Instant,
    samples: u64,
    gcs: u32,
    heap: u64,
    ids: [u16; 5],
    instruments: [Option<usize>; 3],
}

/// `scale-writer`: creates `rings` rings in `dir` (ring numbers `first..first + rings` for the
/// mix) and writes the mix into them until killed or `max` passes; prints `ready` once all
/// exist.
pub fn writer_main(dir: &Path, rings: usize, first: usize, max: Duration) -> Result<()> {
    let end = Instant::now() + max;
    let mut rng = Rng::new(first as u64 + 1);
    let geometry = Geometry { fine_slots: 9000, coarse_slots: 720, coarse_step_ns: 10_000_000_000, stacks_size: 0 };
    let mut sims = Vec::with_capacity(rings);
    let now = Instant::now();
    for i in first..first + rings {
        let id = Identity {
            pid: std::process::id(),
            start_ns: jvmwatch_ring::now_ns(),
            interval_ns: INTERVAL.as_nanos() as u64,
            agent_version: "scale-writer".into(),
            hostname: "bench".into(),
            jvm_version: "17.0.0".into(),
            jvm_vendor: "synthetic".into(),
            cwd: "/nonexistent".into(),
            command: format!("{WRITER_COMMAND}{i}"),
            geometry,
            ..Identity::default()
        };
        let w = Writer::create_in(dir, SLOTS, &id).with_context(|| format!("cannot create ring {i}"))?;
        w.set_collector(Collector::G1);
        w.set_vm_init_ns(jvmwatch_ring::now_ns());
        w.set_app_name(&format!("app{}", i % 7));
        w.emit(&Event::VmInit);
        w.set_state(State::Running);
        let ids = ["G1 Young Generation", "G1 Evacuation Pause", "end of minor GC", "G1 Eden Space", "order"]
            .map(|s| w.intern(s));
        let instruments = [
            w.register(Kind::Counter, "requests"),
            w.register(Kind::Gauge, "queue.depth"),
            w.register(Kind::Timer, "request.latency"),
        ];
        let gc_every = Duration::from_secs_f64(EVENTS_PER_GC / gc_events_per_s(i));
        let jitter = |r: &mut Rng, d: Duration| d.mul_f64(r.range(0, 1000) as f64 / 1000.0);
        sims.push(Sim {
            next_gc: now + jitter(&mut rng, gc_every),
            next_sample: now + jitter(&mut rng, INTERVAL),
            next_app: now + jitter(&mut rng, Duration::from_secs(2)),
            gc_every,
            w,
            samples: 0,
            gcs: 0,
            heap: 64 << 20,
            ids,
            instruments,
        });
    }
    println!("ready");
    while Instant::now() < end {
        let now = Instant::now();
        let mut soonest = now + Duration::from_millis(50);
        for s in &mut sims {
            if now >= s.next_gc {
                gc(s, &mut rng);
                let f = 0.5 + rng.range(0, 1000) as f64 / 1000.0;
                s.next_gc += s.gc_every.mul_f64(f);
                if s.next_gc < now {
                    s.next_gc = now + s.gc_every.mul_f64(f);
                }
            }
            if now >= s.next_sample {
                sample(s, &mut rng);
                s.next_sample += INTERVAL;
                if s.next_sample < now {
                    s.next_sample = now + INTERVAL;
                }
            }
            if now >= s.next_app {
                let detail = jvmwatch_ring::Text::new(&format!("order {}", rng.range(1, 99_999)), 38);
                s.w.emit(&Event::AppEvent { name: s.ids[4], detail });
                s.next_app = now + Duration::from_secs(2);
            }
            soonest = soonest.min(s.next_gc).min(s.next_sample).min(s.next_app);
        }
        let left = soonest.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            std::thread::sleep(left);
        }
    }
    Ok(())
}

/// One young collection, as the agent records it.
fn gc(s: &mut Sim, rng: &mut Rng) {
    let start = jvmwatch_ring::now_ns();
    let n = s.w.gc_pause_begin(start);
    s.w.emit_at(start, &Event::GcPauseStart { gc_id: n, collector: Collector::G1 });
    let pause = rng.range(500_000, 5_000_000);
    let Some((n, _)) = s.w.gc_pause_end(start + pause) else { return };
    s.w.emit(&Event::GcPauseEnd { gc_id: n, collector: Collector::G1, duration_ns: pause });
    s.gcs += 1;
    let before = s.heap;
    let after = before / 3 + rng.range(0, 8 << 20);
    s.heap = after;
    let [collector, cause, action, pool, _] = s.ids;
    s.w.emit(&Event::GcCycle {
        gc_number: s.gcs,
        duration_us: (pause / 1000) as u32,
        collector,
        cause,
        action,
        concurrent: false,
        before,
        after,
    });
    s.w.emit(&Event::GcPool { gc_number: s.gcs, pool, before: before / 2, after: 0 });
}

/// One sampler tick: instruments, snapshot, heartbeat, history.
fn sample(s: &mut Sim, rng: &mut Rng) {
    let now = jvmwatch_ring::now_ns();
    s.samples += 1;
    s.heap = (s.heap + rng.range(1 << 20, 8 << 20)).min(480 << 20);
    if let Some(c) = s.instruments[0] {
        s.w.counter_add(c, 0, rng.range(1, 50));
    }
    if let Some(g) = s.instruments[1] {
        s.w.gauge_set(g, rng.range(0, 20) as i64);
    }
    if let Some(t) = s.instruments[2] {
        for _ in 0..4 {
            s.w.timer_record(t, 0, rng.range(100_000, 20_000_000));
        }
    }
    let mut snap = Snapshot::default();
    snap.time_ns = now;
    snap.heap_used = s.heap;
    snap.heap_committed = 512 << 20;
    snap.heap_max = 512 << 20;
    snap.nonheap_used = 40 << 20;
    snap.nonheap_committed = 48 << 20;
    snap.cpu_time_ns = s.samples * 3_000_000;
    snap.loaded_classes = 5000;
    snap.threads_live = 24;
    snap.threads_daemon = 20;
    snap.thread_states = [0, 6, 0, 10, 8, 0];
    snap.heap_after_gc = s.heap / 3;
    snap.push_pool(Pool {
        name: Name::new("G1 Eden Space"),
        heap: true,
        used: s.heap / 2,
        committed: 256 << 20,
        max: u64::MAX,
        used_after_gc: 0,
    });
    snap.push_pool(Pool {
        name: Name::new("G1 Old Gen"),
        heap: true,
        used: s.heap / 2,
        committed: 256 << 20,
        max: 512 << 20,
        used_after_gc: s.heap / 3,
    });
    snap.push_collector(GcCollector { name: Name::new("G1 Young Generation"), count: s.gcs as u64, time_ms: 0 });
    s.w.write_snapshot(&snap);
    s.w.heartbeat(now);
    let h = jvmwatch_ring::history::Sample {
        time_ns: now,
        heap_used: s.heap,
        heap_committed: 512 << 20,
        heap_max: 512 << 20,
        heap_after_gc: s.heap / 3,
        old_used: s.heap / 2,
        old_max: 512 << 20,
        nonheap_used: 40 << 20,
        gc_count: s.gcs as u64,
        cpu_ns: s.samples * 3_000_000,
        gc_pause_ns: s.w.gc_pause_total_ns(),
        classes: 5000,
        threads_live: 24,
        thread_states: [0, 6, 0, 10, 8, 0],
        ..Default::default()
    };
    s.w.history_append(jvmwatch_ring::history::Tier::Fine, &h);
    if s.samples.is_multiple_of(100) {
        s.w.history_append(jvmwatch_ring::history::Tier::Coarse, &h);
    }
}

/// One sidecar at one size.
#[derive(Debug, Serialize)]
pub struct Point {
    /// `current` (this build's sidecar) or `before` (the `--before` binary).
    pub sidecar: String,
    /// Rings followed.
    pub rings: usize,
    /// Its place in this size's run order (1: first). The sidecar run second has paid more in
    /// every run at 1,000 rings so far (`--abba` runs each in both places).
    pub ran: usize,
    /// Events the writers produce per second, together (from the mix).
    pub events_per_s: f64,
    /// From start until `/api/v1/jvms` lists every ring running, s.
    pub discover_s: f64,
    /// Length of the window with the SSE client, s.
    pub measured_s: f64,
    /// Sidecar CPU over that window, % of one core.
    pub cpu_pct: f64,
    /// Sidecar CPU over a window without any SSE client (a third as long), % of one core.
    pub cpu_pct_no_client: f64,
    /// Sidecar CPU over a window (a third as long) with one client on one JVM's stream
    /// (`/api/v1/jvms/{id}/stream`, as the console has it), % of one core.
    pub cpu_pct_one_jvm: f64,
    /// Events that client received per second (its JVM's share of the mix).
    pub one_jvm_events_per_s: f64,
    /// Its JVM's `gc_pause_end` time → arrival on that stream, ms.
    pub one_jvm_gc_to_sse_ms: Option<Percentiles>,
    /// Why that stream ended early, if it did.
    pub one_jvm_sse_error: Option<String>,
    /// Resident memory at the end of the window, MiB.
    pub rss_mib: f64,
    /// Events the SSE client received per second.
    pub sse_events_per_s: f64,
    /// `gc_pause_end` time → arrival on the stream, ms.
    pub gc_to_sse_ms: Option<Percentiles>,
    /// Why the stream ended early, if it did.
    pub sse_error: Option<String>,
    /// `/metrics` response time (keep-alive GETs 10 ms apart), ms.
    pub metrics_ms: Percentiles,
    /// `/metrics` size, bytes.
    pub metrics_bytes: usize,
}

/// How a figure grows from one size to the next: the factor per 10× rings
/// (`(b / a) ^ (1 / log10(rings_b / rings_a))`; 10 is linear).
#[derive(Debug, Serialize)]
pub struct Growth {
    /// Which sidecar.
    pub sidecar: String,
    /// From this many rings.
    pub from: usize,
    /// To this many.
    pub to: usize,
    /// CPU (with the SSE client).
    pub cpu: f64,
    /// RSS.
    pub rss: f64,
    /// GC→SSE p99.
    pub gc_to_sse_p99: Option<f64>,
    /// `/metrics` p50 time.
    pub metrics_p50: f64,
    /// `/metrics` size.
    pub metrics_bytes: f64,
}

/// The section's results.
#[derive(Debug, Serialize)]
pub struct Scale {
    /// `quick` or `full`.
    pub mode: &'static str,
    /// What the synthetic writers write.
    pub mix: &'static str,
    /// Rings per writer process.
    pub rings_per_writer: usize,
    /// Every sidecar at every size.
    pub points: Vec<Point>,
    /// Growth per 10× rings between consecutive sizes, and from the smallest to the largest.
    pub growth: Vec<Growth>,
}

/// Runs the section: `sizes` rings, windows of `measure` with the SSE client.
pub fn run(
    tools: &Tools,
    scratch: &Scratch,
    quick: bool,
    sizes: &[usize],
    before: Option<&Path>,
    abba: bool,
) -> Result<Scale> {
    let measure = Duration::from_secs(if quick { 10 } else { 60 });
    let mut sidecars: Vec<(String, PathBuf)> = Vec::new();
    if let Some(b) = before {
        sidecars.push(("before".into(), b.to_path_buf()));
    }
    sidecars.push(("current".into(), tools.jvmwatch.clone()));
    let exe = std::env::current_exe().context("cannot locate the harness executable")?;
    let mut points = Vec::new();
    for &rings in sizes {
        let dir = scratch.shm_dir(&format!("scale-{rings}"))?;
        let logs = scratch.disk_dir(&format!("scale-{rings}-logs"))?;
        eprintln!("  scale: {rings} rings ({:.0} events/s)", events_per_s(rings));
        // Which sidecar runs when: each once, or before, current, current, before.
        let order: Vec<usize> =
            if abba && sidecars.len() == 2 { vec![0, 1, 1, 0] } else { (0..sidecars.len()).collect() };
        let max = Duration::from_secs(600) + measure * 4 * order.len() as u32;
        let mut writers = Vec::new();
        for (k, first) in (0..rings).step_by(RINGS_PER_WRITER).enumerate() {
            let n = RINGS_PER_WRITER.min(rings - first);
            let mut cmd = Command::new(&exe);
            cmd.arg("scale-writer").arg("--dir").arg(&dir);
            cmd.args(["--rings", &n.to_string(), "--first", &first.to_string(), "--max-s", &max.as_secs().to_string()]);
            let mut p = Proc::spawn(cmd, "scale-writer", &logs.join(format!("writer-{k}.err")))?;
            p.expect_line("ready", Duration::from_secs(120))?;
            writers.push(p);
        }
        // The JVM of the one-JVM stream: ring 0, the busiest (100 collections a second),
        // found by the command line its writer gave it.
        let ring0 = (std::fs::read_dir(&dir)?.flatten())
            .map(|e| e.path())
            .find(|p| jvmwatch_ring::Ring::open(p).is_ok_and(|r| r.header().command == format!("{WRITER_COMMAND}0")))
            .and_then(|p| Some(p.file_stem()?.to_str()?.to_string()))
            .context("no ring 0 among the rings")?;
        for (k, &i) in order.iter().enumerate() {
            let (name, bin) = &sidecars[i];
            let t = Tools { jvmwatch: bin.clone(), ..tools.clone() };
            let mut p = measure_one(&t, name, &dir, &logs, rings, &ring0, measure)?;
            p.ran = k + 1;
            points.push(p);
        }
        drop(writers);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut growth = Vec::new();
    for (name, _) in &sidecars {
        let mine = means(points.iter().filter(|p| &p.sidecar == name));
        let mut pairs: Vec<(&Mean, &Mean)> = mine.windows(2).map(|w| (&w[0], &w[1])).collect();
        if mine.len() > 2 {
            pairs.push((&mine[0], &mine[mine.len() - 1]));
        }
        for (a, b) in pairs {
            let per10 = |x: f64, y: f64| round((y / x).powf(1.0 / (b.rings as f64 / a.rings as f64).log10()), 3);
            growth.push(Growth {
                sidecar: name.clone(),
                from: a.rings,
                to: b.rings,
                cpu: per10(a.cpu_pct, b.cpu_pct),
                rss: per10(a.rss_mib, b.rss_mib),
                gc_to_sse_p99: a.p99.zip(b.p99).map(|(x, y)| per10(x, y)),
                metrics_p50: per10(a.metrics_p50, b.metrics_p50),
                metrics_bytes: per10(a.metrics_bytes, b.metrics_bytes),
            });
        }
    }
    Ok(Scale {
        mode: if quick { "quick" } else { "full" },
        mix: MIX,
        rings_per_writer: RINGS_PER_WRITER,
        points,
        growth,
    })
}

/// One sidecar's figures at one size: the mean of its runs there (one, or two with `--abba`).
struct Mean {
    rings: usize,
    cpu_pct: f64,
    rss_mib: f64,
    /// `None` when a run saw no GC on the stream.
    p99: Option<f64>,
    metrics_p50: f64,
    metrics_bytes: f64,
}

/// The mean per size of one sidecar's points, in the order the sizes ran.
fn means<'a>(points: impl Iterator<Item = &'a Point>) -> Vec<Mean> {
    let mut by_size: Vec<(usize, Vec<&Point>)> = Vec::new();
    for p in points {
        match by_size.iter_mut().find(|(r, _)| *r == p.rings) {
            Some((_, v)) => v.push(p),
            None => by_size.push((p.rings, vec![p])),
        }
    }
    (by_size.into_iter())
        .map(|(rings, ps)| {
            let mean = |f: &dyn Fn(&Point) -> f64| ps.iter().map(|p| f(p)).sum::<f64>() / ps.len() as f64;
            let p99s: Option<Vec<f64>> = ps.iter().map(|p| p.gc_to_sse_ms.as_ref().map(|l| l.p99)).collect();
            Mean {
                rings,
                cpu_pct: mean(&|p| p.cpu_pct),
                rss_mib: mean(&|p| p.rss_mib),
                p99: p99s.map(|v| v.iter().sum::<f64>() / v.len() as f64),
                metrics_p50: mean(&|p| p.metrics_ms.p50),
                metrics_bytes: mean(&|p| p.metrics_bytes as f64),
            }
        })
        .collect()
}

/// Starts one sidecar on `dir`, measures it (without a client, with one on every JVM's
/// stream, with one on JVM `one_jvm`'s), stops it.
fn measure_one(
    tools: &Tools,
    name: &str,
    dir: &Path,
    logs: &Path,
    rings: usize,
    one_jvm: &str,
    measure: Duration,
) -> Result<Point> {
    let t0 = Instant::now();
    let serve = Serve::start(tools, dir, &logs.join(format!("serve-{name}.err")))?;
    let end = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, body) = crate::http::get_once(serve.addr, "/api/v1/jvms", Duration::from_secs(30))?;
        let listed = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.iter().filter(|j| j["verdict"] == "running").count()))
            .unwrap_or(0);
        if status == 200 && listed == rings {
            break;
        }
        if Instant::now() > end {
            bail!("the {name} sidecar lists {listed} running rings, not {rings}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let discover_s = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let cpu_window = |d: Duration| -> Result<f64> {
        let c0 = serve.proc.cpu_ns().context("sidecar CPU time")?;
        let w0 = Instant::now();
        std::thread::sleep(d);
        let c1 = serve.proc.cpu_ns().context("sidecar CPU time")?;
        Ok((c1 - c0) as f64 / 1e9 / w0.elapsed().as_secs_f64() * 100.0)
    };
    eprintln!("  scale: {name} sidecar, {rings} rings: {:.0} s without a client", measure.as_secs_f64() / 3.0);
    let cpu_pct_no_client = cpu_window(measure / 3)?;
    eprintln!("  scale: {name} sidecar, {rings} rings: {:.0} s with an SSE client", measure.as_secs_f64());
    let sub = Subscriber::connect(serve.addr)?;
    let w0 = Instant::now();
    let cpu_pct = cpu_window(measure)?;
    let rss_mib = serve.proc.rss_kib().unwrap_or(0) as f64 / 1024.0;
    let seen = sub.finish();
    let measured_s = w0.elapsed().as_secs_f64();
    eprintln!("  scale: {name} sidecar, {rings} rings: {:.0} s with one JVM's stream", measure.as_secs_f64() / 3.0);
    let one = Subscriber::connect_to(serve.addr, &format!("/api/v1/jvms/{one_jvm}/stream"))?;
    let w1 = Instant::now();
    let cpu_pct_one_jvm = cpu_window(measure / 3)?;
    let one_seen = one.finish();
    let one_s = w1.elapsed().as_secs_f64();
    let mut conn = Conn::connect(serve.addr, "/metrics", Duration::from_secs(30))?;
    let (mut times, mut metrics_bytes) = (Vec::new(), 0);
    for _ in 0..200 {
        let t = Instant::now();
        let (status, n) = conn.get()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        metrics_bytes = n;
        std::thread::sleep(Duration::from_millis(10));
    }
    serve.stop();
    let p = Point {
        sidecar: name.to_string(),
        rings,
        ran: 1, // set by the caller
        events_per_s: events_per_s(rings),
        discover_s: round(discover_s, 2),
        measured_s: round(measured_s, 1),
        cpu_pct: round(cpu_pct, 3),
        cpu_pct_no_client: round(cpu_pct_no_client, 3),
        cpu_pct_one_jvm: round(cpu_pct_one_jvm, 3),
        one_jvm_events_per_s: round(one_seen.events as f64 / one_s, 1),
        one_jvm_gc_to_sse_ms: percentiles(&one_seen.gc_to_sse_ms()),
        one_jvm_sse_error: one_seen.error,
        rss_mib: round(rss_mib, 1),
        sse_events_per_s: round(seen.events as f64 / measured_s, 1),
        gc_to_sse_ms: percentiles(&seen.gc_to_sse_ms()),
        sse_error: seen.error,
        metrics_ms: percentiles(&times).context("no /metrics requests")?,
        metrics_bytes,
    };
    eprintln!(
        "  scale: {name} {rings} rings: CPU {:.2} % ({:.2} % without client, {:.2} % with one JVM's stream), RSS {:.1} MiB, GC→SSE p99 {} ms, /metrics p50 {:.3} ms, {} B",
        p.cpu_pct,
        p.cpu_pct_no_client,
        p.cpu_pct_one_jvm,
        p.rss_mib,
        p.gc_to_sse_ms.map_or("-".into(), |l| format!("{:.2}", l.p99)),
        p.metrics_ms.p50,
        p.metrics_bytes
    );
    Ok(p)
}

//! Section 8, flight history: what the history region and the stacks capture cost.
//!
//! - the added cost per sample in the agent: one fine history record (`history_append`) and
//!   the eight instrument reads that fill its cells, next to the snapshot write the sampler
//!   already did (the baseline, timed side by side in the same loop);
//! - the ring file's size at the default options, measured on a real JVM's file, and with
//!   `history=off,stacks=off`;
//! - `jvmwatch inspect --history --json` and plain `inspect` on a full history (9,720 records);
//! - one stacks capture at 40, 400 and 4,000 threads: the agent's own timing of the capture
//!   (wall time, which includes the safepoint) and the `GetAllStackTraces` safepoint from
//!   `-Xlog:safepoint`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use jvmwatch_ring::history::{Cell, Sample, Tier};
use jvmwatch_ring::metrics::{Kind, BUCKET_COUNT};
use jvmwatch_ring::{now_ns, Geometry, Identity, Ring, Snapshot, Writer};
use serde::Serialize;

use crate::process::Proc;
use crate::stats::{percentiles, round, Percentiles};
use crate::tools::{Scratch, Tools};

/// One stacks capture size.
#[derive(Debug, Serialize)]
pub struct Capture {
    /// Threads started by the workload (the JVM has ~10 more).
    pub threads: usize,
    /// Threads the capture kept / the JVM had.
    pub kept: u64,
    /// See `kept`.
    pub total: u64,
    /// Captures timed.
    pub captures: usize,
    /// The agent's own timing of one capture, µs (wall time, safepoint included).
    pub capture_us: Percentiles,
    /// The `GetAllStackTraces` safepoints, µs (`-Xlog:safepoint` "Total").
    pub safepoint_us: Option<Percentiles>,
}

/// The section's result.
#[derive(Debug, Serialize)]
pub struct HistoryBench {
    /// Snapshot write (the baseline the sampler already pays), ns per call.
    pub snapshot_write_ns: Percentiles,
    /// One fine history record, ns per call.
    pub history_append_ns: Percentiles,
    /// Reading eight timers' buckets for the record's cells, ns per sample.
    pub cell_reads_ns: Percentiles,
    /// (history append + cell reads) / snapshot write, medians.
    pub added_ratio_to_snapshot: f64,
    /// Ring file of a real JVM with the default options, bytes.
    pub file_bytes_default: u64,
    /// ... with `history=off,stacks=off`.
    pub file_bytes_without: u64,
    /// Records in the full history read below.
    pub full_history_records: usize,
    /// `inspect --history --json` on it, ms per run.
    pub inspect_history_ms: Percentiles,
    /// `inspect` (report with timeline and leak findings) on it, ms per run.
    pub inspect_ms: Percentiles,
    /// Stacks capture cost by thread count.
    pub stacks: Vec<Capture>,
}

fn identity(g: Geometry) -> Identity {
    Identity {
        pid: std::process::id(),
        start_ns: now_ns(),
        interval_ns: 100_000_000,
        geometry: g,
        ..Identity::default()
    }
}

const DEFAULT: Geometry =
    Geometry { fine_slots: 9000, coarse_slots: 720, coarse_step_ns: 10_000_000_000, stacks_size: 262_144 };

/// Per-call ns of `f` over `batches` batches of `per` calls.
fn timed(batches: usize, per: usize, mut f: impl FnMut(u64)) -> Percentiles {
    let mut v = Vec::with_capacity(batches);
    let mut k = 0u64;
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..per {
            f(k);
            k += 1;
        }
        v.push(t.elapsed().as_nanos() as f64 / per as f64);
    }
    let p = percentiles(&v).expect("batches");
    Percentiles { p50: round(p.p50, 1), p99: round(p.p99, 1), max: round(p.max, 1), ..p }
}

fn sample(t: u64) -> Sample {
    let mut s = Sample {
        time_ns: t,
        heap_used: 200 << 20,
        heap_committed: 512 << 20,
        heap_max: 1 << 30,
        heap_after_gc: 100 << 20,
        threads_live: 40,
        cells_used: 8,
        ..Sample::default()
    };
    for c in s.cells.iter_mut() {
        *c = Cell { a: t, b: t * 1000, c: 1500, d: 9000 };
    }
    s
}

fn run_ms(cmd: &mut Command, runs: usize) -> Result<Percentiles> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = cmd.output().context("run jvmwatch")?;
        if !out.status.success() {
            bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let p = percentiles(&v).expect("runs");
    Ok(Percentiles { p50: round(p.p50, 2), p99: round(p.p99, 2), max: round(p.max, 2), ..p })
}

fn file_of_real_jvm(tools: &Tools, dir: &Path, opts: &str) -> Result<u64> {
    let ring = dir.join(format!("size-{}.ring", opts.len()));
    let _ = std::fs::remove_file(&ring);
    let mut opts = format!("path={}", ring.display()) + if opts.is_empty() { "" } else { "," } + opts;
    if opts.ends_with(',') {
        opts.pop();
    }
    let out = Command::new(&tools.java)
        .arg(format!("-agentpath:{}={opts}", tools.agent.display()))
        .args(["-cp"])
        .arg(&tools.classes)
        .args(["Threads", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start java")
        .and_then(|mut c| {
            // Ready once the file exists; its size is fixed at creation.
            let end = Instant::now() + Duration::from_secs(60);
            while !ring.exists() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            c.wait().context("reap java")
        })?;
    let _ = out;
    Ok(std::fs::metadata(&ring).with_context(|| format!("{} was not created", ring.display()))?.len())
}

fn capture(tools: &Tools, scratch: &Scratch, threads: usize, captures: usize) -> Result<Capture> {
    let dir = scratch.shm_dir(&format!("stacks-{threads}"))?;
    let ring = dir.join("stacks.ring");
    let log = dir.join("safepoint.log");
    let mut cmd = Command::new(&tools.java);
    cmd.arg(format!("-agentpath:{}=path={},stacks=1s", tools.agent.display(), ring.display()))
        .arg(format!("-Xlog:safepoint:file={}", log.display()))
        .arg("-Xss256k")
        .arg("-cp")
        .arg(&tools.classes)
        .args(["Threads", &threads.to_string()]);
    let mut p = Proc::spawn(cmd, "Threads", &dir.join("stderr"))?;
    p.expect_line("ready", Duration::from_secs(120))?;
    let mut seen = std::collections::BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(30 + captures as u64 * 3);
    while seen.len() < captures + 1 && Instant::now() < end {
        if let Ok(r) = Ring::open(&ring) {
            if let Ok(Some(c)) = r.stacks() {
                seen.entry(c.time_ns).or_insert((c.duration_ns, c.threads.len() as u64, c.total_threads as u64));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(p);
    // The first capture may predate the workload's threads: keep the captures after "ready".
    let all: Vec<(u64, u64, u64)> = seen.values().skip(1).copied().collect();
    if all.is_empty() {
        bail!("no stacks capture at {threads} threads");
    }
    let us: Vec<f64> = all.iter().map(|c| c.0 as f64 / 1e3).collect();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let sp: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("\"GetAllStackTraces\""))
        .filter_map(|l| l.split("Total: ").nth(1)?.split(' ').next()?.parse::<f64>().ok())
        .map(|ns| ns / 1e3)
        .collect();
    let r = |p: Percentiles| Percentiles { p50: round(p.p50, 1), p99: round(p.p99, 1), max: round(p.max, 1), ..p };
    Ok(Capture {
        threads,
        kept: all.last().map_or(0, |c| c.1),
        total: all.last().map_or(0, |c| c.2),
        captures: all.len(),
        capture_us: r(percentiles(&us).expect("captures")),
        safepoint_us: percentiles(&sp).map(r),
    })
}

/// Runs the section (`smoke`: fewer iterations, 40 and 400 threads only).
pub fn run(tools: &Tools, scratch: &Scratch, smoke: bool) -> Result<HistoryBench> {
    let dir = scratch.shm_dir("history")?;
    let (batches, per) = if smoke { (50, 100) } else { (500, 1000) };
    eprintln!("history: append / snapshot / cell reads, {batches} × {per} calls each");
    let w = Writer::create(&dir.join("micro.ring"), 1024, &identity(DEFAULT))?;
    let timers: Vec<usize> = (0..8).filter_map(|i| w.register(Kind::Timer, &format!("t{i}"))).collect();
    for (k, &i) in timers.iter().enumerate() {
        w.timer_record(i, k, 1_000_000);
    }
    let snap = Snapshot::default();
    let mut buckets = [0u64; BUCKET_COUNT];
    // Interleaved: each batch of each kind in turn, so drift hits all three alike.
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..batches {
        a.push(timed(1, per, |_| {
            w.write_snapshot(&snap);
        }));
        b.push(timed(1, per, |k| {
            w.history_append(Tier::Fine, &sample(k));
        }));
        c.push(timed(1, per, |_| {
            for &i in &timers {
                std::hint::black_box(w.read_instrument(i, &mut buckets));
            }
        }));
    }
    let pct = |v: Vec<Percentiles>| {
        let p = percentiles(&v.iter().map(|p| p.p50).collect::<Vec<_>>()).expect("batches");
        Percentiles { p50: round(p.p50, 1), p99: round(p.p99, 1), max: round(p.max, 1), ..p }
    };
    let (snapshot_write_ns, history_append_ns, cell_reads_ns) = (pct(a), pct(b), pct(c));
    let added_ratio_to_snapshot =
        round((history_append_ns.p50 + cell_reads_ns.p50) / snapshot_write_ns.p50.max(f64::MIN_POSITIVE), 2);

    eprintln!("history: file sizes of a real JVM's ring");
    let file_bytes_default = file_of_real_jvm(tools, &dir, "")?;
    let file_bytes_without = file_of_real_jvm(tools, &dir, "history=off,stacks=off")?;

    eprintln!("history: inspect on a full history");
    let full = dir.join("full.ring");
    let fw = Writer::create(&full, 65_536, &identity(DEFAULT))?;
    let t0 = now_ns() - 9_000 * 100_000_000;
    for k in 0..9_000u64 {
        fw.history_append(Tier::Fine, &sample(t0 + k * 100_000_000));
    }
    for k in 0..720u64 {
        fw.history_append(Tier::Coarse, &sample(t0 - (720 - k) * 10_000_000_000));
    }
    drop(fw);
    let runs = if smoke { 2 } else { 10 };
    let inspect_history_ms = run_ms(
        Command::new(&tools.jvmwatch)
            .args(["inspect", "--history", "--json"])
            .arg(&full)
            .stdout(std::process::Stdio::null()),
        runs,
    )?;
    let inspect_ms =
        run_ms(Command::new(&tools.jvmwatch).arg("inspect").arg(&full).stdout(std::process::Stdio::null()), runs)?;

    let sizes: &[usize] = if smoke { &[40, 400] } else { &[40, 400, 4000] };
    let mut stacks = Vec::new();
    for &n in sizes {
        eprintln!("history: stacks capture at {n} threads");
        stacks.push(capture(tools, scratch, n, if smoke { 2 } else { 8 })?);
    }
    Ok(HistoryBench {
        snapshot_write_ns,
        history_append_ns,
        cell_reads_ns,
        added_ratio_to_snapshot,
        file_bytes_default,
        file_bytes_without,
        full_history_records: 9_720,
        inspect_history_ms,
        inspect_ms,
        stacks,
    })
}

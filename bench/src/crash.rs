//! Section 4: crash-survival accounting. A GC-heavy workload with thread churn runs under the
//! agent and is killed with SIGKILL at a random moment, many times. While it runs, a reader in
//! this harness tails the ring and notes every event it saw committed. After the kill the ring
//! is read post mortem and each slot classified from its raw bytes:
//!
//! - committed: stamp 2s+2 and the check matches;
//! - torn: stamp 2s+2 but the check fails (a committed event damaged: a loss);
//! - in flight: reserved or being written at the kill (never committed: not a loss);
//! - overwritten: lapped by the writer (a ring too small for the run).
//!
//! "Committed events lost" = events the live reader saw committed that are missing or different
//! post mortem, plus torn slots. Also: how old the newest record and the heartbeat were at the
//! moment of the kill, and what `jvmwatch inspect` says about each file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use jvmwatch_ring::event::check;
use jvmwatch_ring::layout::{EVENTS_OFFSET, SLOT_SIZE};
use jvmwatch_ring::{now_ns, Record, Ring};
use serde::Serialize;

use crate::jvm;
use crate::plan::Plan;
use crate::process::Proc;
use crate::rng::Rng;
use crate::stats::{percentiles, round, Percentiles};
use crate::tools::{Scratch, Tools};

/// The section's results.
#[derive(Clone, Debug, Serialize)]
pub struct Crash {
    /// What ran and how it was killed.
    pub workload: String,
    /// Runs.
    pub runs: usize,
    /// Seed of the kill moments.
    pub seed: u64,
    /// Runs whose ring file existed at the kill (the rest were killed before the agent loaded).
    pub rings: usize,
    /// Committed events found post mortem, all runs.
    pub events_committed: u64,
    /// Events a concurrent reader saw committed in scans begun before the kills, all runs.
    pub events_seen_live: u64,
    /// Committed events lost (goal 0): seen live but missing or changed post mortem, plus torn.
    pub committed_lost: u64,
    /// Slots with a committed stamp whose check failed (included in `committed_lost`).
    pub torn_committed: u64,
    /// Slots reserved or being written at the kill: never committed, not losses.
    pub in_flight: u64,
    /// Runs with at least one such slot.
    pub runs_with_in_flight: usize,
    /// Events lapped by the writer (0 unless the ring was too small).
    pub overwritten: u64,
    /// Kill time − time of the newest committed record, ms.
    pub last_record_age_ms: Option<Percentiles>,
    /// Kill time − last sampler heartbeat, ms.
    pub heartbeat_age_ms: Option<Percentiles>,
    /// `jvmwatch inspect` verdicts of the files.
    pub verdicts: BTreeMap<String, usize>,
    /// Runs that failed to run or to be read.
    pub errors: Vec<String>,
}

#[derive(Default)]
struct Outcome {
    ring: bool,
    committed: u64,
    seen_live: u64,
    lost: u64,
    torn: u64,
    in_flight: u64,
    overwritten: u64,
    last_age_ms: Option<f64>,
    heartbeat_age_ms: Option<f64>,
    verdict: Option<String>,
}

/// Runs the section.
pub fn run(plan: &Plan, tools: &Tools, scratch: &Scratch) -> Result<Crash> {
    let dir = scratch.shm_dir("crash")?;
    let mut rng = Rng::new(plan.seed ^ 0x6b69_6c6c);
    let (lo, hi) = plan.crash_kill_ms;
    let mut c = Crash {
        workload: format!(
            "GcWork: 2 allocating threads plus a short-lived thread every 5 ms (thread start/end events), \
             G1, -Xms128m -Xmx128m, -XX:-UsePerfData, agent with path=<tmpfs>/run-N.ring (4 MiB ring); SIGKILL at a uniformly \
             random moment {lo}..{hi} ms after the JVM process starts; a reader in this harness tails the ring \
             every 2 ms meanwhile"
        ),
        runs: plan.crash_runs,
        seed: plan.seed,
        rings: 0,
        events_committed: 0,
        events_seen_live: 0,
        committed_lost: 0,
        torn_committed: 0,
        in_flight: 0,
        runs_with_in_flight: 0,
        overwritten: 0,
        last_record_age_ms: None,
        heartbeat_age_ms: None,
        verdicts: BTreeMap::new(),
        errors: Vec::new(),
    };
    let (mut ages, mut hb_ages) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for i in 0..plan.crash_runs {
        let delay = Duration::from_millis(rng.range(lo, hi));
        match one(tools, &dir, i, delay) {
            Ok(o) => {
                if o.ring {
                    c.rings += 1;
                }
                c.events_committed += o.committed;
                c.events_seen_live += o.seen_live;
                c.committed_lost += o.lost;
                c.torn_committed += o.torn;
                c.in_flight += o.in_flight;
                c.runs_with_in_flight += usize::from(o.in_flight > 0);
                c.overwritten += o.overwritten;
                ages.extend(o.last_age_ms);
                hb_ages.extend(o.heartbeat_age_ms);
                *c.verdicts.entry(o.verdict.unwrap_or_else(|| "no ring".into())).or_default() += 1;
                if o.lost > 0 {
                    eprintln!("[crash] run {}: {} committed events LOST", i + 1, o.lost);
                }
            }
            Err(e) => {
                eprintln!("[crash] run {}: FAILED: {e:#}", i + 1);
                c.errors.push(format!("run {i}: {e:#}"));
            }
        }
        if (i + 1) % 20 == 0 || i + 1 == plan.crash_runs {
            eprintln!(
                "[crash] {}/{} runs ({:.0} s): {} committed events, {} lost, {} in flight",
                i + 1,
                plan.crash_runs,
                started.elapsed().as_secs_f64(),
                c.events_committed,
                c.committed_lost,
                c.in_flight
            );
        }
    }
    let r3 = |p: Percentiles| Percentiles { n: p.n, p50: round(p.p50, 3), p99: round(p.p99, 3), max: round(p.max, 3) };
    c.last_record_age_ms = percentiles(&ages).map(r3);
    c.heartbeat_age_ms = percentiles(&hb_ages).map(r3);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(c)
}

fn one(tools: &Tools, dir: &Path, i: usize, delay: Duration) -> Result<Outcome> {
    let path = dir.join(format!("run-{i}.ring"));
    let flags =
        vec!["-Xms128m".to_string(), "-Xmx128m".into(), jvm::agent_flag(tools, &format!("path={}", path.display()))];
    let args = ["2", "0", "0", "5", "2048"].map(String::from);
    let stderr = dir.join(format!("run-{i}.stderr"));
    let mut p = Proc::spawn(jvm::command(tools, &flags, "GcWork", &args, Duration::from_secs(30)), "GcWork", &stderr)?;
    let t0 = Instant::now();
    let stop = AtomicBool::new(false);
    let (kill_ns, seen) = std::thread::scope(|s| {
        let tailer = s.spawn(|| tail(&path, &stop));
        std::thread::sleep(delay.saturating_sub(t0.elapsed()));
        let kill_ns = now_ns();
        let killed = p.kill();
        stop.store(true, Ordering::Relaxed);
        (killed.map(|_| kill_ns), tailer.join().unwrap_or_default())
    });
    let kill_ns = kill_ns?;
    // Only what scans begun before the kill saw counts as "seen live".
    let seen: Vec<Record> = seen.into_iter().filter(|(t, _)| *t < kill_ns).map(|(_, r)| r).collect();
    let _ = std::fs::remove_file(&stderr);
    if !path.exists() {
        return Ok(Outcome::default());
    }
    let o = analyse(tools, &path, kill_ns, &seen);
    let _ = std::fs::remove_file(&path);
    o
}

/// Tails the ring until told to stop; returns every record seen committed, with the time the
/// scan that saw it started.
fn tail(path: &Path, stop: &AtomicBool) -> Vec<(u64, Record)> {
    let mut seen = Vec::new();
    let mut ring = None;
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        if ring.is_none() {
            ring = Ring::open(path).ok();
        }
        if let Some(r) = &ring {
            let t = now_ns();
            if let Ok(scan) = r.scan(next, true) {
                seen.extend(scan.records.iter().map(|rec| (t, *rec)));
                next = scan.next;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    seen
}

fn analyse(tools: &Tools, path: &Path, kill_ns: u64, seen: &[Record]) -> Result<Outcome> {
    let ring = Ring::open(path).with_context(|| format!("post mortem: cannot open {}", path.display()))?;
    ensure!(!ring.writer_alive(), "the writer still holds its lock after SIGKILL and wait");
    let live = ring.live()?;
    let bytes = std::fs::read(path)?;
    let cap = ring.header().capacity;
    let mut o = Outcome { ring: true, seen_live: seen.len() as u64, ..Outcome::default() };
    let start = live.cursor.saturating_sub(cap);
    o.overwritten = start;
    for s in start..live.cursor {
        let off = EVENTS_OFFSET + (s & (cap - 1)) as usize * SLOT_SIZE;
        let slot = &bytes[off..off + SLOT_SIZE];
        let word = |i: usize| u64::from_le_bytes(slot[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        let stamp = word(0);
        let words: [u64; 7] = std::array::from_fn(|i| word(i + 1));
        match stamp.cmp(&(2 * s + 2)) {
            std::cmp::Ordering::Equal if check(s, &words) == (words[1] >> 32) as u32 => o.committed += 1,
            std::cmp::Ordering::Equal => o.torn += 1,
            std::cmp::Ordering::Greater => o.overwritten += 1,
            std::cmp::Ordering::Less => o.in_flight += 1,
        }
    }
    let scan = ring.scan(0, false)?;
    ensure!(
        scan.records.len() as u64 == o.committed,
        "Ring::scan found {} committed events, the raw slots {}",
        scan.records.len(),
        o.committed
    );
    let after: HashMap<u64, &Record> = scan.records.iter().map(|r| (r.seq, r)).collect();
    let missing = seen.iter().filter(|r| after.get(&r.seq).copied() != Some(*r)).count() as u64;
    o.lost = missing + o.torn;
    if let Some(last) = scan.records.iter().map(|r| r.time_ns).max() {
        o.last_age_ms = Some(kill_ns.saturating_sub(last) as f64 / 1e6);
    }
    if live.heartbeat_ns > 0 {
        o.heartbeat_age_ms = Some(kill_ns.saturating_sub(live.heartbeat_ns) as f64 / 1e6);
    }
    let out = Command::new(&tools.jvmwatch).args(["inspect", "--json", "--events", "1"]).arg(path).output()?;
    o.verdict = Some(if out.status.success() {
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["verdict"].as_str().map(String::from))
            .unwrap_or_else(|| "unreadable report".into())
    } else {
        format!("inspect failed: {}", String::from_utf8_lossy(&out.stderr).trim())
    });
    Ok(o)
}

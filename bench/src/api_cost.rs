//! Cost of the Java API from Java: `Counter.increment()` and `Timer.record(nanos)` against
//! `LongAdder.increment()` in the same JVM, 1 and 8 threads. The measuring program is
//! `java/apibench/ApiBench.java` (warm-up, interleaved rounds, several forked JVMs, a side
//! effect per operation that the JIT cannot remove); this section runs it under the agent and
//! turns its ops/s into ns per operation and ratios.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::process::Proc;
use crate::tools::{Scratch, Tools};

include!(concat!(env!("OUT_DIR"), "/api_classes.rs"));

/// One variant at one thread count.
#[derive(Debug, Serialize)]
pub struct Row {
    /// `longadder`, `counter`, `timer` or `bytebuffer` (the counter's one atomic add on a direct
    /// ByteBuffer alone: its floor on JDK 17).
    pub variant: String,
    /// Threads recording at once.
    pub threads: u32,
    /// Operations per second over all threads (median over forks).
    pub ops_per_s: f64,
    /// Smallest and largest fork.
    pub ops_per_s_min: f64,
    /// See `ops_per_s_min`.
    pub ops_per_s_max: f64,
    /// CPU ns per operation: min(threads, cores) × 1e9 / ops_per_s.
    pub ns_per_op: f64,
    /// ns_per_op / LongAdder's ns_per_op at the same thread count.
    pub ratio_to_longadder: f64,
    /// Median over forks and rounds of this variant's CPU ns per op (the recording threads'
    /// own CPU time) over LongAdder's in the same JVM and round: other processes on the
    /// machine steal wall time, not the threads' CPU time, so this is the figure they hurt least.
    pub paired_ratio: f64,
}

/// The section's result.
#[derive(Debug, Serialize)]
pub struct ApiCost {
    /// Forked JVMs.
    pub forks: u32,
    /// Seconds per measurement.
    pub seconds: f64,
    /// The agent was loaded (the API recorded into the ring).
    pub agent_active: bool,
    /// Rows.
    pub rows: Vec<Row>,
}

/// Variants ApiBench measures: LongAdder, counter, timer and the counter's bare access.
pub const VARIANTS: usize = 4;

/// Runs ApiBench with `forks` forks of `seconds` per measurement.
pub fn run(tools: &Tools, scratch: &Scratch, cores: usize, forks: u32, seconds: f64) -> Result<ApiCost> {
    let classes = scratch.disk.join("api-classes");
    for (rel, bytes) in API_CLASSES {
        let p = classes.join(rel);
        std::fs::create_dir_all(p.parent().unwrap_or(&classes))?;
        std::fs::write(p, bytes)?;
    }
    let rings = scratch.shm_dir("api-cost")?;
    let mut cmd = std::process::Command::new(&tools.java);
    cmd.arg(format!("-agentpath:{}=dir={}", tools.agent.display(), rings.display()))
        .args(["-XX:-CreateCoredumpOnCrash", "-XX:+UseG1GC", "-cp"])
        .arg(&classes)
        .arg("ApiBench")
        .arg(forks.to_string())
        .arg(seconds.to_string());
    eprintln!("  api cost: {forks} forks × ({VARIANTS} variants × 2 thread counts × 3 rounds)");
    let mut p = Proc::spawn(cmd, "ApiBench", &scratch.disk.join("apibench.err"))?;
    let limit = Duration::from_secs_f64(60.0 + forks as f64 * (seconds * (VARIANTS * 6) as f64 + 10.0) * 2.0);
    let active = p.expect_line("active ", limit)?.trim() == "true";
    let mut raw = Vec::new();
    for _ in 0..VARIANTS * 2 {
        let line = p.expect_line("result ", limit)?;
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() != 5 {
            bail!("bad ApiBench line {line:?}");
        }
        let n = |i: usize| w[i].parse::<f64>().with_context(|| format!("bad number in {line:?}"));
        raw.push((w[0].to_string(), w[1].parse::<u32>()?, n(2)?, n(3)?, n(4)?));
    }
    let mut paired = Vec::new();
    for _ in 0..(VARIANTS - 1) * 2 {
        let line = p.expect_line("paired ", limit)?;
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() != 5 {
            bail!("bad ApiBench line {line:?}");
        }
        paired.push((w[0].to_string(), w[1].parse::<u32>()?, w[2].parse::<f64>()?));
    }
    p.wait(limit)?;
    let pair = |v: &str, t: u32| {
        if v == "longadder" {
            return 1.0;
        }
        paired.iter().find(|r| r.0 == v && r.1 == t).map_or(f64::NAN, |r| crate::stats::round(r.2, 3))
    };
    let ns = |threads: u32, ops: f64| (threads as usize).min(cores) as f64 * 1e9 / ops.max(1.0);
    let base = |threads: u32| raw.iter().find(|r| r.0 == "longadder" && r.1 == threads).map(|r| ns(threads, r.2));
    let rows = raw
        .iter()
        .map(|(variant, threads, med, min, max)| Row {
            variant: variant.clone(),
            threads: *threads,
            ops_per_s: *med,
            ops_per_s_min: *min,
            ops_per_s_max: *max,
            ns_per_op: crate::stats::round(ns(*threads, *med), 2),
            ratio_to_longadder: crate::stats::round(ns(*threads, *med) / base(*threads).unwrap_or(f64::NAN), 3),
            paired_ratio: pair(variant, *threads),
        })
        .collect();
    let _ = std::fs::remove_dir_all(&rings);
    Ok(ApiCost { forks, seconds, agent_active: active, rows })
}

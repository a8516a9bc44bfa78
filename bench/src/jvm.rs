//! Launching the Java workloads (java/bench) with the flags of a configuration.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use jvmwatch_ring::Ring;
use serde::Serialize;

use crate::tools::Tools;

/// `java <common flags> <flags> -Dbench.maxMs=<max> -cp <classes> <main> <args>`. The workload
/// halts itself after `max`, so nothing outlives a harness that died.
pub fn command(tools: &Tools, flags: &[String], main: &str, args: &[String], max: Duration) -> Command {
    let mut c = Command::new(&tools.java);
    c.args(["-XX:-CreateCoredumpOnCrash", "-XX:+UseG1GC"])
        .args(flags)
        .arg(format!("-Dbench.maxMs={}", max.as_millis()))
        .arg("-cp")
        .arg(&tools.classes)
        .arg(main)
        .args(args);
    c
}

/// `-agentpath:<libjvmwatch.so>=<opts>`.
pub fn agent_flag(tools: &Tools, opts: &str) -> String {
    format!("-agentpath:{}={opts}", tools.agent.display())
}

/// The `RESULT ops=N nanos=N gcs=N gc_ms=N` line of GcWork.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GcResult {
    /// Ops in the measured window.
    pub ops: u64,
    /// Window length, ns.
    pub nanos: u64,
    /// Collections over the whole run (GC beans).
    pub gcs: u64,
    /// Collection time over the whole run, ms (GC beans).
    pub gc_ms: u64,
}

impl GcResult {
    /// Parses the text after `RESULT`.
    pub fn parse(s: &str) -> Result<GcResult> {
        let mut r = GcResult::default();
        for kv in s.split_whitespace() {
            let (k, v) = kv.split_once('=').with_context(|| format!("bad RESULT field {kv:?}"))?;
            let v: u64 = v.parse().with_context(|| format!("bad RESULT value {kv:?}"))?;
            match k {
                "ops" => r.ops = v,
                "nanos" => r.nanos = v,
                "gcs" => r.gcs = v,
                "gc_ms" => r.gc_ms = v,
                _ => {}
            }
        }
        anyhow::ensure!(r.nanos > 0, "RESULT without a measured window: {s:?}");
        Ok(r)
    }
}

/// What the agent's ring says about one run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AgentStats {
    /// Events written.
    pub events: u64,
    /// Stop-the-world pauses seen.
    pub gc_pauses: u64,
    /// Events lost (overwritten or torn) in a full scan.
    pub lost: u64,
    /// GC-finish callbacks the agent timed.
    pub callbacks: u64,
    /// Their mean duration, ns.
    pub callback_mean_ns: f64,
    /// The longest, ns.
    pub callback_max_ns: u64,
    /// Their total, ns.
    #[serde(skip)]
    pub callback_total_ns: u64,
    /// The GC-finish callback's histogram (ring format 3; see `jvmwatch_ring::cbcost`).
    #[serde(skip)]
    pub finish_hist: [u64; jvmwatch_ring::cbcost::BUCKETS],
    /// The GC-start callback's: count, total, max and histogram.
    #[serde(skip)]
    pub start: (u64, u64, u64, [u64; jvmwatch_ring::cbcost::BUCKETS]),
}

/// Reads the stats of the only `.ring` file in `dir` (after the JVM ended).
pub fn agent_stats(dir: &Path) -> Result<AgentStats> {
    let path = ring_in(dir)?.with_context(|| format!("the agent wrote no ring file in {}", dir.display()))?;
    let ring = Ring::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let live = ring.live()?;
    let scan = ring.scan(0, ring.writer_alive())?;
    let (f, st) = (&live.gc_finish_cost, &live.gc_start_cost);
    Ok(AgentStats {
        events: live.cursor,
        gc_pauses: live.gc_pauses,
        lost: scan.lost(),
        callbacks: f.count,
        callback_mean_ns: f.mean_ns().unwrap_or(0.0),
        callback_max_ns: f.max_ns,
        callback_total_ns: f.total_ns,
        finish_hist: f.buckets,
        start: (st.count, st.total_ns, st.max_ns, st.buckets),
    })
}

/// The first `*.ring` file in `dir`, if any.
pub fn ring_in(dir: &Path) -> Result<Option<std::path::PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ring") && !p.to_string_lossy().contains("/.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line() {
        let r = GcResult::parse("ops=3000 nanos=1500000000 gcs=12 gc_ms=30").unwrap();
        assert_eq!(r, GcResult { ops: 3000, nanos: 1_500_000_000, gcs: 12, gc_ms: 30 });
        assert!(GcResult::parse("ops=1").is_err());
    }
}

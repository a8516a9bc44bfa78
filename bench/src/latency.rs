//! Section 3: visibility latency — from the end of a GC pause (the time the agent stamps on
//! the `gc_pause_end` event, CLOCK_REALTIME) to the moment a consumer has it (its own
//! CLOCK_REALTIME on receipt). Three consumers, interleaved over rounds:
//!
//! - `jvmwatch-sse`: `jvmwatch serve` → an SSE client in this harness;
//! - `ring-poll-1ms`: this harness reading the ring file itself every millisecond (the floor
//!   of any file reader, the sidecar included);
//! - `jfr-stream`: the anchor — `jdk.jfr.consumer.RecordingStream` on `jdk.GarbageCollection`
//!   inside the JVM (callback time minus event end time).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use jvmwatch_ring::{now_ns, Event, Ring};
use serde::Serialize;

use crate::jvm::{self, GcResult};
use crate::plan::Plan;
use crate::process::Proc;
use crate::sidecar::{Serve, Subscriber};
use crate::stats::{percentiles, round, summarize, Percentiles, Summary};
use crate::tools::{Scratch, Tools};

/// A consumer of GC events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Sse,
    RingPoll,
    Jfr,
}

impl Method {
    const ALL: [Method; 3] = [Method::Sse, Method::RingPoll, Method::Jfr];

    fn name(self) -> &'static str {
        match self {
            Method::Sse => "jvmwatch-sse",
            Method::RingPoll => "ring-poll-1ms",
            Method::Jfr => "jfr-stream",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Method::Sse => {
                "agent → ring file → jvmwatch serve → GET /api/v1/stream (SSE) client in this harness; \
                 receive time − event time_ns"
            }
            Method::RingPoll => {
                "agent → ring file → this harness polling Ring::scan every 1 ms; read time − event time_ns"
            }
            Method::Jfr => {
                "in-process jdk.jfr.consumer.RecordingStream on jdk.GarbageCollection (JFR defaults, flush \
                 about every 1 s); Instant.now() in the callback − event end time"
            }
        }
    }
}

/// One consumer's results.
#[derive(Clone, Debug, Serialize)]
pub struct MethodResult {
    /// Name.
    pub name: &'static str,
    /// The path measured.
    pub description: &'static str,
    /// `ok`, `skipped: ...` or `failed: ...`.
    pub status: String,
    /// All samples of all runs, ms.
    pub latency_ms: Option<Percentiles>,
    /// The p50 of each run, ms.
    pub per_run_p50_ms: Option<Summary>,
    /// The p99 of each run, ms.
    pub per_run_p99_ms: Option<Summary>,
    /// GC events received in the counted part of the runs.
    pub delivered: u64,
    /// gc_pause_end events the rings hold for the same part (jvmwatch methods).
    pub expected: Option<u64>,
    /// Of those, not delivered and older than the first delivered one (e.g. written before
    /// `jvmwatch serve` discovered the new ring file).
    pub missed_before_first: Option<u64>,
    /// Not delivered although a later event was (a gap in the stream).
    pub missed_later: Option<u64>,
    /// Failed runs.
    pub errors: Vec<String>,
}

/// The section's results.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// The JVM workload every consumer watched.
    pub workload: String,
    /// Rounds.
    pub rounds: usize,
    /// Per consumer.
    pub methods: Vec<MethodResult>,
}

struct RunSamples {
    lat_ms: Vec<f64>,
    /// (in ring, missed before the first delivered, missed later), for jvmwatch methods.
    accounting: Option<(u64, u64, u64)>,
}

/// Compares the gc_pause_end times delivered with those in the ring (both ≥ the warm-up).
fn account(delivered: &[u64], in_ring: &[u64]) -> (u64, u64, u64) {
    let set: std::collections::HashSet<u64> = delivered.iter().copied().collect();
    let first = delivered.iter().copied().min().unwrap_or(u64::MAX);
    let missing = in_ring.iter().filter(|t| !set.contains(t));
    let (early, later) = missing.fold((0, 0), |(e, l), &t| if t < first { (e + 1, l) } else { (e, l + 1) });
    (in_ring.len() as u64, early, later)
}

/// Runs the section.
pub fn run(plan: &Plan, tools: &Tools, scratch: &Scratch, serve: &std::result::Result<(), String>) -> Result<Latency> {
    let mut per: Vec<(Vec<RunSamples>, Vec<String>)> = Method::ALL.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for round in 0..plan.latency_rounds {
        for k in 0..Method::ALL.len() {
            let i = (k + round) % Method::ALL.len();
            let m = Method::ALL[i];
            if m == Method::Sse && serve.is_err() {
                continue;
            }
            let r = match m {
                Method::Sse => run_sse(plan, tools, scratch, round),
                Method::RingPoll => run_ring_poll(plan, tools, scratch, round),
                Method::Jfr => run_jfr(plan, tools, scratch, round),
            };
            match r {
                Ok(s) => {
                    let p = percentiles(&s.lat_ms);
                    eprintln!(
                        "[latency] round {} {:<14} {} events, p50 {:.2} ms, p99 {:.2} ms",
                        round + 1,
                        m.name(),
                        s.lat_ms.len(),
                        p.map_or(f64::NAN, |p| p.p50),
                        p.map_or(f64::NAN, |p| p.p99)
                    );
                    per[i].0.push(s);
                }
                Err(e) => {
                    eprintln!("[latency] round {} {}: FAILED: {e:#}", round + 1, m.name());
                    per[i].1.push(format!("round {round}: {e:#}"));
                }
            }
        }
    }
    let methods = Method::ALL
        .into_iter()
        .zip(per)
        .map(|(m, (runs, errors))| {
            let all: Vec<f64> = runs.iter().flat_map(|r| r.lat_ms.iter().copied()).collect();
            let per_run: Vec<Percentiles> = runs.iter().filter_map(|r| percentiles(&r.lat_ms)).collect();
            let status = match (m, serve) {
                (Method::Sse, Err(why)) => format!("skipped: {why}"),
                _ if all.is_empty() => {
                    format!("failed: {}", errors.first().map_or("no event received", |s| s.as_str()))
                }
                _ => "ok".to_string(),
            };
            let acc: Vec<(u64, u64, u64)> = runs.iter().filter_map(|r| r.accounting).collect();
            let total = |f: fn(&(u64, u64, u64)) -> u64| (!acc.is_empty()).then(|| acc.iter().map(f).sum());
            MethodResult {
                name: m.name(),
                description: m.describe(),
                status,
                latency_ms: percentiles(&all).map(round_p),
                per_run_p50_ms: summarize(&per_run.iter().map(|p| p.p50).collect::<Vec<_>>()),
                per_run_p99_ms: summarize(&per_run.iter().map(|p| p.p99).collect::<Vec<_>>()),
                delivered: all.len() as u64,
                expected: total(|a| a.0),
                missed_before_first: total(|a| a.1),
                missed_later: total(|a| a.2),
                errors,
            }
        })
        .collect();
    Ok(Latency {
        workload: format!(
            "GcWork with 1 allocating thread (the other core free for the consumer), G1, -Xms256m -Xmx256m, \
             {} ms per run; GC events of the first {} ms are not counted",
            plan.latency_run.as_millis(),
            plan.latency_warmup.as_millis()
        ),
        rounds: plan.latency_rounds,
        methods,
    })
}

fn round_p(p: Percentiles) -> Percentiles {
    Percentiles { n: p.n, p50: round(p.p50, 3), p99: round(p.p99, 3), max: round(p.max, 3) }
}

fn workload_flags(agent_opts: Option<String>) -> Vec<String> {
    let mut f = vec!["-XX:-UsePerfData".to_string(), "-Xms256m".into(), "-Xmx256m".into()];
    f.extend(agent_opts);
    f
}

/// Runs GcWork (1 thread, `latency_run` long) to its end.
fn run_gc_workload(plan: &Plan, tools: &Tools, flags: &[String], stderr: &Path) -> Result<GcResult> {
    let args = ["1".to_string(), "0".into(), plan.latency_run.as_millis().to_string()];
    let max = plan.latency_run + Duration::from_secs(60);
    let mut p = Proc::spawn(jvm::command(tools, flags, "GcWork", &args, max), "GcWork", stderr)?;
    let r = GcResult::parse(&p.expect_line("RESULT", max)?)?;
    p.wait(Duration::from_secs(30))?;
    Ok(r)
}

/// Times of the gc_pause_end events in the ring at `path` stamped at or after `from`.
fn gc_ends_in(path: &Path, from: u64) -> Result<Vec<u64>> {
    let ring = Ring::open(path)?;
    let scan = ring.scan(0, false)?;
    Ok(scan
        .records
        .iter()
        .filter(|r| matches!(r.event, Event::GcPauseEnd { .. }) && r.time_ns >= from)
        .map(|r| r.time_ns)
        .collect())
}

fn run_ring_poll(plan: &Plan, tools: &Tools, scratch: &Scratch, round: usize) -> Result<RunSamples> {
    let dir = scratch.shm_dir(&format!("lat-poll-{round}"))?;
    let path = dir.join("lat.ring");
    let flags = workload_flags(Some(jvm::agent_flag(tools, &format!("path={}", path.display()))));
    let from = now_ns() + plan.latency_warmup.as_nanos() as u64;
    let stop = AtomicBool::new(false);
    let (result, seen) = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut lat: Vec<(u64, u64)> = Vec::new();
            let mut ring = None;
            let mut next = 0;
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                if ring.is_none() {
                    ring = Ring::open(&path).ok();
                }
                if let Some(r) = &ring {
                    if let Ok(scan) = r.scan(next, !stopping) {
                        let now = now_ns();
                        for rec in &scan.records {
                            if matches!(rec.event, Event::GcPauseEnd { .. }) && rec.time_ns >= from {
                                lat.push((rec.time_ns, now));
                            }
                        }
                        next = scan.next;
                    }
                }
                if stopping {
                    return lat;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let result = run_gc_workload(plan, tools, &flags, &dir.join("java.stderr"));
        stop.store(true, Ordering::Relaxed);
        (result, poller.join().unwrap_or_default())
    });
    result?;
    let in_ring = gc_ends_in(&path, from).context("reading the ring after the run")?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(samples(&seen, &in_ring))
}

fn run_sse(plan: &Plan, tools: &Tools, scratch: &Scratch, round: usize) -> Result<RunSamples> {
    let dir = scratch.shm_dir(&format!("lat-sse-{round}"))?;
    let serve = Serve::start(tools, &dir, &scratch.disk.join(format!("lat-serve-{round}.stderr")))?;
    let sub = Subscriber::connect(serve.addr)?;
    let flags = workload_flags(Some(jvm::agent_flag(tools, &format!("dir={}", dir.display()))));
    let from = now_ns() + plan.latency_warmup.as_nanos() as u64;
    let result = run_gc_workload(plan, tools, &flags, &scratch.disk.join(format!("lat-sse-{round}.stderr")));
    // The ring outlives the JVM: give the sidecar time to deliver the last events.
    std::thread::sleep(Duration::from_secs(2));
    let seen = sub.finish();
    serve.stop();
    result?;
    let ring = jvm::ring_in(&dir)?.context("the agent wrote no ring file")?;
    let in_ring = gc_ends_in(&ring, from)?;
    ensure!(
        seen.events > 0,
        "the SSE stream delivered no event{}",
        seen.error.map(|e| format!(" ({e})")).unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let delivered: Vec<(u64, u64)> = seen.gc_ends.into_iter().filter(|(t, _)| *t >= from).collect();
    Ok(samples(&delivered, &in_ring))
}

/// Latencies of `(event time, receive time)` pairs, accounted against the ring's events.
fn samples(delivered: &[(u64, u64)], in_ring: &[u64]) -> RunSamples {
    let times: Vec<u64> = delivered.iter().map(|(t, _)| *t).collect();
    RunSamples {
        lat_ms: delivered.iter().map(|(t, recv)| recv.saturating_sub(*t) as f64 / 1e6).collect(),
        accounting: Some(account(&times, in_ring)),
    }
}

fn run_jfr(plan: &Plan, tools: &Tools, scratch: &Scratch, round: usize) -> Result<RunSamples> {
    let flags = workload_flags(None);
    let grace_ms = 2500;
    let args = [
        "1".to_string(),
        plan.latency_run.as_millis().to_string(),
        plan.latency_warmup.as_millis().to_string(),
        grace_ms.to_string(),
    ];
    let max = plan.latency_run + Duration::from_secs(60);
    let stderr = scratch.disk.join(format!("lat-jfr-{round}.stderr"));
    let mut p = Proc::spawn(jvm::command(tools, &flags, "JfrLatency", &args, max), "JfrLatency", &stderr)?;
    let line = p.expect_line("LAT_US", max)?;
    p.wait(Duration::from_secs(30))?;
    let lat_ms = line
        .split_whitespace()
        .map(|v| v.parse::<f64>().map(|us| us / 1e3))
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("bad LAT_US line")?;
    Ok(RunSamples { lat_ms, accounting: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_events_are_split_at_the_first_delivery() {
        assert_eq!(account(&[30, 40, 60], &[10, 20, 30, 40, 50, 60]), (6, 2, 1));
        assert_eq!(account(&[], &[10]), (1, 1, 0));
    }
}

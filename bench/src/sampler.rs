//! Section 11: the agent's sampler thread's own cost. An idle JVM (java/bench/Threads.java: N
//! parked threads, a few frames deep) under the agent with default options; the CPU of the
//! thread named `jvmwatch-sampler` (`jvmwatch-sample` in /proc: names are cut to 15 bytes) over
//! a window, from /proc/<pid>/task/<tid>/schedstat, divided by the samples the window holds at
//! the default 100 ms interval. 40, 400 and 4,000 threads, interleaved.
//!
//! Beside it, over the same window, two floors: the CPU per wake-up of a Java thread
//! (`floor-wakeups`, in Threads.java, in the same JVM) that wakes every 100 ms and does nothing
//! else, and the same of a native thread (in this harness) that only sleeps 100 ms at a time
//! (a futex wait with a timeout, `std::thread::park_timeout`, as the agent's sampler sleeps).
//! The native one is what the sampler pays before doing any work; a Java thread's
//! `Thread.sleep` costs several times more.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use crate::jvm;
use crate::plan::Plan;
use crate::process::{self, Proc};
use crate::stats::{round, summarize, Summary};
use crate::tools::{Scratch, Tools};

/// The sampler thread's name in /proc.
pub const SAMPLER_THREAD: &str = "jvmwatch-sample";
/// The do-nothing thread that wakes at the same interval (java/bench/Threads.java).
pub const FLOOR_THREAD: &str = "floor-wakeups";
/// The agent's default sampling interval, ms.
pub const INTERVAL_MS: f64 = 100.0;
/// The goal at 40 threads, µs per sample.
pub const GOAL_US_AT_40: f64 = 20.0;

/// One thread count.
#[derive(Clone, Debug, Serialize)]
pub struct SamplerRow {
    /// Parked threads the workload started (the JVM has ~10–20 of its own besides).
    pub threads: usize,
    /// Live threads in the JVM during the window (/proc/<pid>/task).
    pub jvm_threads: usize,
    /// µs of sampler CPU per sample, per JVM.
    pub runs_us: Vec<f64>,
    /// min/median/max of those.
    pub us_per_sample: Option<Summary>,
    /// The median as a share of one core, %.
    pub pct_of_core: Option<f64>,
    /// µs of CPU per wake-up of the do-nothing thread in the same JVM and window, per JVM.
    pub floor_runs_us: Vec<f64>,
    /// min/median/max of those: the floor under a Java thread that sleeps 100 ms at a time.
    pub floor_us: Option<Summary>,
    /// µs of CPU per wake-up of a native thread that only sleeps 100 ms at a time, over the
    /// same window, per JVM.
    pub native_floor_runs_us: Vec<f64>,
    /// min/median/max of those: the floor under the agent's sampler (a native sleeper).
    pub native_floor_us: Option<Summary>,
}

/// The section's results.
#[derive(Clone, Debug, Serialize)]
pub struct SamplerBench {
    /// The sampling interval assumed, ms (the agent's default).
    pub interval_ms: f64,
    /// The window, ms.
    pub window_ms: u64,
    /// Per thread count, ascending.
    pub rows: Vec<SamplerRow>,
    /// (from threads, to threads, median µs ratio) for consecutive counts: growth per step.
    pub growth: Vec<(usize, usize, f64)>,
    /// The goal at 40 threads, µs per sample.
    pub goal_us_at_40: f64,
    /// Median at 40 threads ≤ the goal, and no step grew faster than the thread count.
    pub within_goal: Option<bool>,
    /// Runs that failed.
    pub errors: Vec<String>,
}

/// One JVM's figures.
struct One {
    /// µs of sampler CPU per sample.
    us: f64,
    /// µs of CPU per wake-up of the do-nothing thread.
    floor_us: f64,
    /// µs of CPU per wake-up of the native sleeper.
    native_floor_us: f64,
    /// Live threads.
    live: usize,
}

/// The figures of one JVM with `n` parked threads.
fn one(plan: &Plan, tools: &Tools, scratch: &Scratch, n: usize, rep: usize) -> Result<One> {
    let tag = format!("sampler-{n}-{rep}");
    let ring_dir = scratch.shm_dir(&tag)?;
    let disk_dir = scratch.disk_dir(&tag)?;
    let flags = ["-XX:-UsePerfData".to_string(), jvm::agent_flag(tools, &format!("dir={}", ring_dir.display()))];
    let max = plan.sampler_settle + plan.sampler_window + Duration::from_secs(60);
    let cmd = jvm::command(tools, &flags, "Threads", &[n.to_string()], max);
    let mut p = Proc::spawn(cmd, "Threads", &disk_dir.join("java.stderr"))?;
    p.expect_line("ready", Duration::from_secs(60))?;
    std::thread::sleep(plan.sampler_settle);
    let t0 = process::threads_cpu_ns(p.pid(), &[SAMPLER_THREAD]);
    let f0 = process::threads_cpu_ns(p.pid(), &[FLOOR_THREAD]);
    ensure!(!t0.is_empty(), "no {SAMPLER_THREAD:?} thread in the JVM: did the agent load?{}", p.stderr_tail());
    ensure!(!f0.is_empty(), "no {FLOOR_THREAD:?} thread in the JVM{}", p.stderr_tail());
    let w0 = std::time::Instant::now();
    let native = native_floor(plan.sampler_window);
    let t1 = process::threads_cpu_ns(p.pid(), &[SAMPLER_THREAD]);
    let f1 = process::threads_cpu_ns(p.pid(), &[FLOOR_THREAD]);
    let wall = w0.elapsed().as_secs_f64();
    let native_floor_us = native?;
    let live = std::fs::read_dir(format!("/proc/{}/task", p.pid())).map_or(0, |d| d.count());
    let _ = p.kill();
    let _ = std::fs::remove_dir_all(&ring_dir);
    let _ = std::fs::remove_dir_all(&disk_dir);
    let samples = wall * 1000.0 / INTERVAL_MS;
    let per = |before, after| process::threads_cpu_delta(before, after) as f64 / 1000.0 / samples;
    Ok(One { us: per(&t0, &t1), floor_us: per(&f0, &f1), native_floor_us, live })
}

/// Sleeps 100 ms at a time on this thread for `window`, and gives its own CPU per wake-up, µs
/// (`/proc/thread-self/schedstat`: run time in ns).
fn native_floor(window: Duration) -> Result<f64> {
    let run_ns = || {
        process::schedstat_run_ns(std::path::Path::new("/proc/thread-self/schedstat"))
            .context("cannot read /proc/thread-self/schedstat")
    };
    let interval = Duration::from_secs_f64(INTERVAL_MS / 1000.0);
    let end = std::time::Instant::now() + window;
    let c0 = run_ns()?;
    let mut wakeups = 0u64;
    while std::time::Instant::now() < end {
        // As the agent's sampler sleeps (`sleep_until` in native/src/sampler.rs); a spurious
        // return counts as a wake-up, as it would there.
        std::thread::park_timeout(interval);
        wakeups += 1;
    }
    let c1 = run_ns()?;
    Ok(c1.saturating_sub(c0) as f64 / 1000.0 / wakeups.max(1) as f64)
}

/// One thread count's figures over the repetitions.
#[derive(Default)]
struct Runs {
    us: Vec<f64>,
    floor_us: Vec<f64>,
    native_floor_us: Vec<f64>,
    /// Live threads in the JVM (the last run's).
    live: usize,
}

/// Runs the section.
pub fn run(plan: &Plan, tools: &Tools, scratch: &Scratch) -> Result<SamplerBench> {
    let counts = &plan.sampler_threads;
    let mut runs: Vec<Runs> = counts.iter().map(|_| Runs::default()).collect();
    let mut errors = Vec::new();
    for rep in 0..plan.sampler_reps {
        for (i, &n) in counts.iter().enumerate() {
            match one(plan, tools, scratch, n, rep) {
                Ok(o) => {
                    eprintln!(
                        "[sampler] {n:>5} threads: {:.1} µs per sample, floor {:.1} µs per wake-up (Java), {:.1} (native) ({} threads in the JVM)",
                        o.us, o.floor_us, o.native_floor_us, o.live
                    );
                    let r = &mut runs[i];
                    r.us.push(round(o.us, 2));
                    r.floor_us.push(round(o.floor_us, 2));
                    r.native_floor_us.push(round(o.native_floor_us, 2));
                    r.live = o.live;
                }
                Err(e) => {
                    eprintln!("[sampler] {n:>5} threads FAILED: {e:#}");
                    errors.push(format!("{n} threads, rep {rep}: {e:#}"));
                }
            }
        }
    }
    let rows: Vec<SamplerRow> = counts
        .iter()
        .zip(runs)
        .map(|(&threads, r)| {
            let s = summarize(&r.us);
            SamplerRow {
                threads,
                jvm_threads: r.live,
                pct_of_core: s.map(|s| round(s.median / (INTERVAL_MS * 1000.0) * 100.0, 4)),
                us_per_sample: s,
                runs_us: r.us,
                floor_us: summarize(&r.floor_us),
                floor_runs_us: r.floor_us,
                native_floor_us: summarize(&r.native_floor_us),
                native_floor_runs_us: r.native_floor_us,
            }
        })
        .collect();
    let med = |r: &SamplerRow| r.us_per_sample.map(|s| s.median).filter(|m| *m > 0.0);
    let growth: Vec<(usize, usize, f64)> = rows
        .windows(2)
        .filter_map(|w| med(&w[0]).zip(med(&w[1])).map(|(a, b)| (w[0].threads, w[1].threads, round(b / a, 2))))
        .collect();
    let at40 = rows.iter().find(|r| r.threads == 40).and_then(med);
    let linear = growth.iter().all(|(a, b, g)| *g <= *b as f64 / *a as f64);
    Ok(SamplerBench {
        interval_ms: INTERVAL_MS,
        window_ms: plan.sampler_window.as_millis() as u64,
        rows,
        growth,
        goal_us_at_40: GOAL_US_AT_40,
        within_goal: at40.map(|m| m <= GOAL_US_AT_40 && linear),
        errors,
    })
}

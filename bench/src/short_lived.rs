//! Section 13: a short-lived JVM. What a tool adds to a JVM that lives briefly (a
//! command-line tool, a batch step, a test JVM): `java/bench/ShortLived.java` prints `started`,
//! sleeps its life, prints `done` and returns. Two lives: 0 ms (the JVM ends before the
//! agent's monitor has set up JMX) and 1,500 ms (after the monitor's first tick, with the
//! agent's threads asleep between their ticks). Per run, timed from the spawn: start-up (to
//! `started`), exit (from `done` to the process's end, as `wait4` reaps it), the process's CPU
//! (user + system, from `wait4`) and its peak RSS up to `done` (VmHWM, which the program reads
//! just before it prints `done`: `wait4`'s would include the harness's own size at the fork).
//! The configurations of section 1 that matter here ([`CONFIGS`]) run interleaved, in an order
//! that rotates each round; "added" is the median over rounds of each round's difference to
//! `none`.
//!
//! HotSpot's exit waits, in 10 ms steps and for up to 300 ms, for threads in native code
//! (`VM_Exit::wait_for_threads_in_native_to_block`): an agent thread asleep in native code at
//! exit shows here as 300 ms of exit.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::jvm;
use crate::plan::Plan;
use crate::stats::{round, summarize};
use crate::throughput::Monitor;
use crate::tools::{Scratch, Tools};

/// The configurations compared.
pub const CONFIGS: [Monitor; 4] = [Monitor::None, Monitor::Jvmwatch, Monitor::JvmwatchMonitorOff, Monitor::JfrDefault];

/// One run's figures.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Run {
    /// Spawn → `started`, ms.
    pub start_ms: f64,
    /// `done` → the process reaped, ms.
    pub exit_ms: f64,
    /// User + system CPU of the process, ms.
    pub cpu_ms: f64,
    /// Peak resident set, MiB.
    pub rss_mib: f64,
}

/// Medians of one configuration's runs, and of its per-round differences to `none`.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Configuration name.
    pub config: &'static str,
    /// Every run, in round order.
    pub runs: Vec<Run>,
    /// Medians.
    pub median: Run,
    /// Median of (this run − `none`'s run) over the rounds; zero for `none`.
    pub added: Run,
}

/// One life.
#[derive(Clone, Debug, Serialize)]
pub struct Life {
    /// How long the program sleeps between `started` and `done`, ms.
    pub life_ms: u64,
    /// Per configuration, in [`CONFIGS`] order.
    pub rows: Vec<Row>,
}

/// The section's results.
#[derive(Clone, Debug, Serialize)]
pub struct ShortLivedBench {
    /// Rounds (each runs every configuration once per life).
    pub rounds: usize,
    /// Per life.
    pub lives: Vec<Life>,
    /// Runs that failed.
    pub errors: Vec<String>,
}

/// One JVM of `config` that lives `life_ms`.
fn one(tools: &Tools, scratch: &Scratch, config: Monitor, life_ms: u64, tag: &str) -> Result<Run> {
    let ring_dir = scratch.shm_dir(tag)?;
    let disk_dir = scratch.disk_dir(tag)?;
    let flags = config.flags(tools, &ring_dir, &disk_dir);
    let max = Duration::from_millis(life_ms) + Duration::from_secs(60);
    let mut cmd = jvm::command(tools, &flags, "ShortLived", &[life_ms.to_string()], max);
    let stderr = std::fs::File::create(disk_dir.join("java.stderr")).context("cannot create java.stderr")?;
    let spawned = Instant::now();
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr).spawn().context("cannot start java")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    // The line that is `want` or starts with `want `: when it came, and the rest of it. The
    // JVM halts itself after `max` (bench.maxMs), so these reads end.
    let mut line_at = |want: &str| -> Result<(Duration, String)> {
        for line in lines.by_ref() {
            let line = line.context("reading the JVM's output")?;
            if let Some(rest) = line.strip_prefix(want).filter(|r| r.is_empty() || r.starts_with(' ')) {
                return Ok((spawned.elapsed(), rest.trim().to_string()));
            }
        }
        bail!("the JVM ended without printing {want:?}")
    };
    let started = line_at("started");
    let done = started.as_ref().ok().map(|_| line_at("done"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: `pid` is our child, not yet reaped (std's Child never waited on it); `status`
        // and `usage` are valid and writable.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break r;
        }
    };
    let ended = spawned.elapsed();
    let _ = std::fs::remove_dir_all(&ring_dir);
    let _ = std::fs::remove_dir_all(&disk_dir);
    ensure!(reaped == pid, "wait4: {}", std::io::Error::last_os_error());
    ensure!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the JVM failed (wait status {status})");
    let ((started, _), (done, hwm)) = (started?, done.context("no done")??);
    let hwm_kib: f64 = hwm.parse().with_context(|| format!("peak RSS {hwm:?}"))?;
    let tv_ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    Ok(Run {
        start_ms: started.as_secs_f64() * 1e3,
        exit_ms: (ended - done).as_secs_f64() * 1e3,
        cpu_ms: tv_ms(usage.ru_utime) + tv_ms(usage.ru_stime),
        rss_mib: hwm_kib / 1024.0,
    })
}

/// Medians of each field over `runs`, rounded (NaN when there are none).
fn medians(runs: &[Run]) -> Run {
    let m = |f: fn(&Run) -> f64| {
        let values: Vec<f64> = runs.iter().map(f).collect();
        summarize(&values).map_or(f64::NAN, |s| round(s.median, 2))
    };
    Run { start_ms: m(|r| r.start_ms), exit_ms: m(|r| r.exit_ms), cpu_ms: m(|r| r.cpu_ms), rss_mib: m(|r| r.rss_mib) }
}

/// Runs the section.
pub fn run(plan: &Plan, tools: &Tools, scratch: &Scratch) -> Result<ShortLivedBench> {
    let mut errors = Vec::new();
    let mut lives = Vec::new();
    for &life_ms in &plan.short_lived_lives_ms {
        // runs[round][config]; a round with a failed run is left out whole, so rounds pair.
        let mut rounds: Vec<Vec<Run>> = Vec::new();
        for r in 0..plan.short_lived_rounds {
            let mut got: Vec<Option<Run>> = vec![None; CONFIGS.len()];
            for k in 0..CONFIGS.len() {
                let i = (k + r) % CONFIGS.len();
                let config = CONFIGS[i];
                match one(tools, scratch, config, life_ms, &format!("life-{life_ms}-{r}-{i}")) {
                    Ok(run) => got[i] = Some(run),
                    Err(e) => {
                        eprintln!("[short-lived] {life_ms} ms, {} FAILED: {e:#}", config.name());
                        errors.push(format!("{life_ms} ms, round {r}, {}: {e:#}", config.name()));
                    }
                }
            }
            if let Some(all) = got.into_iter().collect::<Option<Vec<Run>>>() {
                eprintln!(
                    "[short-lived] {life_ms:>4} ms life, round {}: exit {} ms",
                    r + 1,
                    all.iter().map(|x| format!("{:.1}", x.exit_ms)).collect::<Vec<_>>().join(" / ")
                );
                rounds.push(all);
            }
        }
        let rows = CONFIGS
            .iter()
            .enumerate()
            .map(|(i, config)| {
                let runs: Vec<Run> = rounds.iter().map(|r| r[i]).collect();
                let diffs: Vec<Run> = rounds
                    .iter()
                    .map(|r| Run {
                        start_ms: r[i].start_ms - r[0].start_ms,
                        exit_ms: r[i].exit_ms - r[0].exit_ms,
                        cpu_ms: r[i].cpu_ms - r[0].cpu_ms,
                        rss_mib: r[i].rss_mib - r[0].rss_mib,
                    })
                    .collect();
                Row { config: config.name(), median: medians(&runs), added: medians(&diffs), runs }
            })
            .collect();
        lives.push(Life { life_ms, rows });
    }
    ensure!(lives.iter().any(|l| !l.rows[0].runs.is_empty()), "no round completed: {}", errors.join("; "));
    Ok(ShortLivedBench { rounds: plan.short_lived_rounds, lives, errors })
}

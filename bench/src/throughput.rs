//! Section 1: throughput overhead. Two workloads, each under every monitoring configuration,
//! in interleaved rounds (a shuffled order, then the same order reversed: AB/BA pairs, so drift
//! on the machine hits every configuration alike); ops/s (or requests/s) as min/median/max, as a
//! ratio to the median of the unmonitored baseline, and as a paired overhead (each round
//! against its own baseline run) with a 95 % bootstrap interval; the JVM's CPU per operation
//! likewise. The HTTP workload's JVM and its load generator run on separate cores.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use crate::jvm::{self, AgentStats, GcResult};
use crate::loadgen::Load;
use crate::noise::CpuMeter;
use crate::plan::Plan;
use crate::process::{self, Proc};
use crate::rng::Rng;
use crate::sidecar::{Serve, Subscriber};
use crate::stats::{bootstrap_mean, round, summarize, Ci, Summary, RESAMPLES};
use crate::tools::{Scratch, Tools};
use crate::waker::Waker;
use crate::window::{self, Mark, Warmup};

/// The threads whose CPU is the in-VM monitor's cost per GC: the agent's monitor thread, the
/// JVM's Notification Thread (which delivers the GC notifications the monitor listens to) and
/// its Service Thread (which delivered them before JDK 14 added the Notification Thread, and
/// still does other deferred VM work). Names as in /proc (`comm`, 15 bytes at most).
pub const MONITOR_THREADS: [&str; 3] = ["jvmwatch-monito", "Notification Th", "Service Thread"];

/// The agent's own threads: its monitor (Java, GC details, deadlocks, classes, buffer pools)
/// and its sampler (JVMTI agent thread, snapshots and heartbeat). Their CPU over the JVM's is
/// the agent's direct cost, a figure that other load on the machine hardly moves.
pub const AGENT_THREADS: [&str; 2] = ["jvmwatch-monito", "jvmwatch-sample"];

/// What watches the JVM in one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitor {
    /// `-XX:-UsePerfData`: nothing at all (the baseline).
    None,
    /// The JVM as it comes: hsperfdata on.
    Hsperfdata,
    /// The jvmwatch agent with default options.
    Jvmwatch,
    /// The agent with `monitor=off` (no in-VM monitor: no GC notifications).
    JvmwatchMonitorOff,
    /// The agent with `gc=notify`: a JMX GC notification per collection (the default before
    /// `gc=poll`), to show what polling saves.
    JvmwatchGcNotify,
    /// The agent with `gc-poll=100ms`: the monitor reads collections at most every 100 ms.
    JvmwatchGcPoll100,
    /// The agent plus `jvmwatch serve` on its directory with one SSE client.
    JvmwatchSidecar,
    /// JFR, `settings=default`.
    JfrDefault,
    /// JFR, `settings=profile`.
    JfrProfile,
    /// Unified GC logging to a file.
    GcLog,
    /// An in-process MXBean poller at 10 Hz (what Prometheus JVM exporters read per scrape).
    MxBean,
    /// The baseline plus [`Waker`] threads on the JVM's CPUs: no tool, only wake-ups, to show
    /// what waking the VM's idle cores alone does to a figure (see `waker.rs`).
    Waker,
}

impl Monitor {
    /// The configurations that load the jvmwatch agent.
    pub fn is_jvmwatch(self) -> bool {
        matches!(
            self,
            Monitor::Jvmwatch
                | Monitor::JvmwatchMonitorOff
                | Monitor::JvmwatchGcNotify
                | Monitor::JvmwatchGcPoll100
                | Monitor::JvmwatchSidecar
        )
    }

    /// Every configuration, baseline first.
    pub const ALL: [Monitor; 12] = [
        Monitor::None,
        Monitor::Hsperfdata,
        Monitor::Jvmwatch,
        Monitor::JvmwatchMonitorOff,
        Monitor::JvmwatchGcNotify,
        Monitor::JvmwatchGcPoll100,
        Monitor::JvmwatchSidecar,
        Monitor::JfrDefault,
        Monitor::JfrProfile,
        Monitor::GcLog,
        Monitor::MxBean,
        Monitor::Waker,
    ];

    /// Name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::None => "none",
            Monitor::Hsperfdata => "hsperfdata",
            Monitor::Jvmwatch => "jvmwatch",
            Monitor::JvmwatchMonitorOff => "jvmwatch-monitor-off",
            Monitor::JvmwatchGcNotify => "jvmwatch-gc-notify",
            Monitor::JvmwatchGcPoll100 => "jvmwatch-gc-poll-100ms",
            Monitor::JvmwatchSidecar => "jvmwatch+sidecar",
            Monitor::JfrDefault => "jfr-default",
            Monitor::JfrProfile => "jfr-profile",
            Monitor::GcLog => "gc-log",
            Monitor::MxBean => "mxbean-10hz",
            Monitor::Waker => "none+waker",
        }
    }

    /// The JVM flags (and what runs beside the JVM), for the results.
    pub fn describe(self) -> &'static str {
        match self {
            Monitor::None => "-XX:-UsePerfData",
            Monitor::Hsperfdata => "(JVM defaults: hsperfdata in /tmp/hsperfdata_<user>)",
            Monitor::Jvmwatch => "-XX:-UsePerfData -agentpath:libjvmwatch.so=dir=<tmpfs dir> (default size and interval)",
            Monitor::JvmwatchMonitorOff => "-XX:-UsePerfData -agentpath:libjvmwatch.so=dir=<tmpfs dir>,monitor=off",
            Monitor::JvmwatchGcNotify => "-XX:-UsePerfData -agentpath:libjvmwatch.so=dir=<tmpfs dir>,gc=notify",
            Monitor::JvmwatchGcPoll100 => "-XX:-UsePerfData -agentpath:libjvmwatch.so=dir=<tmpfs dir>,gc-poll=100ms",
            Monitor::JvmwatchSidecar => {
                "-XX:-UsePerfData -agentpath:libjvmwatch.so=dir=<tmpfs dir>; jvmwatch serve --dir <that dir> with one SSE client"
            }
            Monitor::JfrDefault => "-XX:-UsePerfData -XX:StartFlightRecording=settings=default,filename=<tmp>/rec.jfr",
            Monitor::JfrProfile => "-XX:-UsePerfData -XX:StartFlightRecording=settings=profile,filename=<tmp>/rec.jfr",
            Monitor::GcLog => "-XX:-UsePerfData -Xlog:gc*:file=<tmp>/gc.log",
            Monitor::MxBean => "-XX:-UsePerfData -Dbench.mxpoll=100 (in-process MXBean poller, 10 Hz)",
            Monitor::Waker => {
                "-XX:-UsePerfData; a harness thread pinned to each CPU the JVM runs on sleeps 5 ms at a time (no tool: \
                 the wake-ups alone)"
            }
        }
    }

    /// The configuration of that name.
    pub fn from_name(s: &str) -> Option<Monitor> {
        Monitor::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Its JVM flags: ring files go to `ring_dir`, recordings and logs to `disk_dir`.
    pub fn flags(self, tools: &Tools, ring_dir: &Path, disk_dir: &Path) -> Vec<String> {
        let mut f = Vec::new();
        if self != Monitor::Hsperfdata {
            f.push("-XX:-UsePerfData".to_string());
        }
        let jfr = |settings: &str| {
            format!("-XX:StartFlightRecording=settings={settings},filename={}", disk_dir.join("rec.jfr").display())
        };
        match self {
            Monitor::None | Monitor::Hsperfdata | Monitor::Waker => {}
            Monitor::Jvmwatch | Monitor::JvmwatchSidecar => {
                f.push(jvm::agent_flag(tools, &format!("dir={}", ring_dir.display())));
            }
            Monitor::JvmwatchMonitorOff => {
                f.push(jvm::agent_flag(tools, &format!("dir={},monitor=off", ring_dir.display())));
            }
            Monitor::JvmwatchGcNotify => {
                f.push(jvm::agent_flag(tools, &format!("dir={},gc=notify", ring_dir.display())));
            }
            Monitor::JvmwatchGcPoll100 => {
                f.push(jvm::agent_flag(tools, &format!("dir={},gc-poll=100ms", ring_dir.display())));
            }
            Monitor::JfrDefault => f.push(jfr("default")),
            Monitor::JfrProfile => f.push(jfr("profile")),
            Monitor::GcLog => f.push(format!("-Xlog:gc*:file={}", disk_dir.join("gc.log").display())),
            Monitor::MxBean => f.push("-Dbench.mxpoll=100".to_string()),
        }
        f
    }
}

/// A workload whose throughput is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// GcWork: G1, fixed heap, 8 allocating threads.
    Gc,
    /// HttpWork: com.sun.net.httpserver driven over loopback by [`loadgen`].
    Http,
}

impl Workload {
    /// Both.
    pub const ALL: [Workload; 2] = [Workload::Gc, Workload::Http];

    /// Name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Gc => "gc-alloc",
            Workload::Http => "http-server",
        }
    }

    /// Unit of the figures.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Gc => "ops/s",
            Workload::Http => "requests/s",
        }
    }

    fn describe(self, plan: &Plan) -> String {
        match self {
            Workload::Gc => format!(
                "GcWork: G1, -Xms{h} -Xmx{h}, {} threads allocating short-lived lists and replacing a retained \
                 set (~150 MB); op = 16 small objects + every 8th op one 256..4096-byte array kept",
                plan.gc_threads,
                h = plan.gc_heap
            ),
            Workload::Http => format!(
                "HttpWork: com.sun.net.httpserver on 127.0.0.1 (-Dsun.net.httpserver.nodelay=true), G1, \
                 -Xms{h} -Xmx{h}, {} handler threads; \
                 GET /work?n=40 builds, sorts and renders 40 records as JSON (~3 KB); {} keep-alive client \
                 connections in a closed loop from this harness",
                plan.http_pool,
                plan.http_conns,
                h = plan.http_heap
            ),
        }
    }

    fn flags(self, plan: &Plan) -> Vec<String> {
        let heap = match self {
            Workload::Gc => plan.gc_heap,
            Workload::Http => plan.http_heap,
        };
        let mut f = vec![format!("-Xms{heap}"), format!("-Xmx{heap}"), "-XX:+AlwaysPreTouch".to_string()];
        if self == Workload::Http {
            // The server writes headers and body separately: without TCP_NODELAY every
            // response waits for the client's delayed ACK (~40 ms).
            f.push("-Dsun.net.httpserver.nodelay=true".to_string());
        }
        f
    }
}

/// The sidecar's cost during one run.
#[derive(Clone, Debug, Serialize)]
pub struct SidecarStats {
    /// CPU used by `jvmwatch serve` over the run, % of one core.
    pub cpu_pct: f64,
    /// Its resident memory at the end, KiB.
    pub rss_kib: Option<u64>,
    /// Events the SSE client received.
    pub sse_events: u64,
    /// Why the stream ended early, if it did.
    pub stream_error: Option<String>,
}

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// Round (0-based).
    pub round: usize,
    /// ops/s or requests/s.
    pub value: f64,
    /// How long the warm-up lasted, ms.
    pub warmup_ms: u64,
    /// `settled` (the per-second rate stopped rising) or `cap`.
    pub warmup_end: &'static str,
    /// The JVM process's CPU (utime + stime) in the window per operation, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_per_op_ns: Option<f64>,
    /// CPU of the monitor's threads ([`MONITOR_THREADS`]) in the window per GC, ns (gc-alloc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor_cpu_ns_per_gc: Option<f64>,
    /// CPU of the agent's own threads ([`AGENT_THREADS`]) in the window, % of the JVM's CPU
    /// (jvmwatch configurations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_cpu_pct: Option<f64>,
    /// Collections per second in the window (GC workload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc_per_s: Option<f64>,
    /// Share of the window spent in collections, % (GC workload, from the GC beans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc_time_pct: Option<f64>,
    /// Failed requests (HTTP workload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_errors: Option<u64>,
    /// The agent's ring after the run (jvmwatch configurations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStats>,
    /// The sidecar's cost (jvmwatch+sidecar).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarStats>,
    /// CPU other processes used during the run, % of one core (see `noise.rs`).
    pub foreign_cpu_pct: f64,
}

/// One configuration of one workload over all rounds.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigResult {
    /// Configuration name.
    pub name: &'static str,
    /// Its flags.
    pub flags: &'static str,
    /// `ok`, `skipped: ...` or `failed: ...`.
    pub status: String,
    /// Every successful run.
    pub runs: Vec<Run>,
    /// Every failed run's error.
    pub errors: Vec<String>,
    /// Runs discarded (and repeated) because other processes used too much CPU meanwhile.
    pub discarded: Vec<Run>,
    /// min/median/max of the runs' values.
    pub summary: Option<Summary>,
    /// median / baseline median.
    pub ratio: Option<f64>,
    /// (1 − ratio) × 100: throughput lost to the monitor, %.
    pub overhead_pct: Option<f64>,
    /// min/median/max over rounds of (this run / the baseline run of the same round).
    pub paired_ratio: Option<Summary>,
    /// Mean over rounds of (1 − this run / that round's baseline run) × 100, with its 95 %
    /// bootstrap interval: throughput lost, %.
    pub paired_overhead_pct: Option<Ci>,
    /// min/median/max of the JVM's CPU per operation, ns.
    pub cpu_per_op_ns: Option<Summary>,
    /// Mean over rounds of (CPU per op / that round's baseline CPU per op − 1) × 100, with its
    /// 95 % bootstrap interval: CPU added per operation, %.
    pub cpu_cost_pct: Option<Ci>,
    /// min/median/max of the monitor threads' CPU per GC, ns (gc-alloc).
    pub monitor_cpu_ns_per_gc: Option<Summary>,
    /// min/median/max of the agent's own threads' CPU, % of the JVM's CPU.
    pub agent_cpu_pct: Option<Summary>,
}

/// The section's goal: jvmwatch ≤ 0.5 % and below JFR default.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    /// The target overhead, %.
    pub target_overhead_pct: f64,
    /// jvmwatch's overhead, %.
    pub jvmwatch_overhead_pct: Option<f64>,
    /// JFR default's overhead, %.
    pub jfr_default_overhead_pct: Option<f64>,
    /// (max − min) / median of the baseline, %: differences smaller than this are noise.
    pub baseline_spread_pct: Option<f64>,
    /// jvmwatch's overhead ≤ target.
    pub within_target: Option<bool>,
    /// jvmwatch's overhead < JFR default's.
    pub below_jfr_default: Option<bool>,
    /// jvmwatch's paired overhead with its 95 % interval, % (the headline figure).
    pub jvmwatch_paired_overhead_pct: Option<Ci>,
    /// jvmwatch's CPU added per operation with its 95 % interval, %.
    pub jvmwatch_cpu_cost_pct: Option<Ci>,
    /// The bench's own goals: baseline spread ≤ this, %...
    pub spread_goal_pct: f64,
    /// ... and the headline interval's half-width ≤ this, %.
    pub ci_half_width_goal_pct: f64,
    /// Half-width of jvmwatch's paired-overhead interval, %.
    pub ci_half_width_pct: Option<f64>,
    /// Both of the bench's own goals met.
    pub resolves_goal: Option<bool>,
}

/// One workload's results.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    /// Name.
    pub name: &'static str,
    /// What it does.
    pub description: String,
    /// Unit of the values.
    pub unit: &'static str,
    /// Every configuration, baseline first.
    pub configs: Vec<ConfigResult>,
    /// The goal, evaluated.
    pub goal: Goal,
}

/// The section's results.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// The configuration the ratios divide by.
    pub baseline: &'static str,
    /// The order configurations ran in, per round.
    pub orders: Vec<Vec<&'static str>>,
    /// A run during which other processes used more CPU than this (% of one core) was repeated.
    pub noise_limit_pct: f64,
    /// Attempts per run at most.
    pub max_attempts: usize,
    /// Runs repeated for that reason, all workloads.
    pub repeated_runs: usize,
    /// CPU used by other processes during the kept runs, % of one core.
    pub foreign_cpu_pct: Option<Summary>,
    /// Which CPU each process ran on.
    pub pinning: String,
    /// How the warm-up ends.
    pub warmup_rule: String,
    /// Per workload.
    pub workloads: Vec<WorkloadResult>,
}

/// The CPUs the JVM and the load generator run on: (JVM, client), when there are two.
pub fn cpu_split() -> Option<(usize, usize)> {
    let cpus = process::allowed_cpus();
    (cpus.len() >= 2).then(|| (cpus[0], cpus[1]))
}

/// Round `round`'s order of `n` configurations: a seeded shuffle for even rounds, the previous
/// round's order reversed for odd ones (AB/BA pairs).
pub fn round_order(seed: u64, salt: u64, round: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ (salt + (round - round % 2) as u64)).shuffle(&mut order);
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// The per-round values `f(run, baseline run of that round)` over the rounds both have.
fn paired<R>(runs: &[R], base: &[R], round_of: impl Fn(&R) -> usize, f: impl Fn(&R, &R) -> Option<f64>) -> Vec<f64> {
    runs.iter().filter_map(|r| base.iter().find(|b| round_of(b) == round_of(r)).and_then(|b| f(r, b))).collect()
}

/// (1 − x / base) × 100: what a run lost against its baseline run, %.
pub fn loss_pct(x: f64, base: f64) -> f64 {
    (1.0 - x / base) * 100.0
}

/// (x / base − 1) × 100: what a run added over its baseline run, %.
pub fn gain_pct(x: f64, base: f64) -> f64 {
    (x / base - 1.0) * 100.0
}

/// [`loss_pct`] per round, mean and 95 % interval: what a configuration loses.
pub fn paired_loss<R>(
    runs: &[R],
    base: &[R],
    seed: u64,
    round_of: impl Fn(&R) -> usize,
    value: impl Fn(&R) -> Option<f64>,
) -> Option<Ci> {
    let v =
        paired(runs, base, round_of, |r, b| value(r).zip(value(b).filter(|x| *x > 0.0)).map(|(x, y)| loss_pct(x, y)));
    bootstrap_mean(&v, seed, RESAMPLES).map(|c| c.rounded(3))
}

/// [`gain_pct`] per round, mean and 95 % interval: what a configuration adds.
pub fn paired_gain<R>(
    runs: &[R],
    base: &[R],
    seed: u64,
    round_of: impl Fn(&R) -> usize,
    value: impl Fn(&R) -> Option<f64>,
) -> Option<Ci> {
    let v =
        paired(runs, base, round_of, |r, b| value(r).zip(value(b).filter(|x| *x > 0.0)).map(|(x, y)| gain_pct(x, y)));
    bootstrap_mean(&v, seed, RESAMPLES).map(|c| c.rounded(3))
}

struct Ctx<'a> {
    plan: &'a Plan,
    tools: &'a Tools,
    scratch: &'a Scratch,
    split: Option<(usize, usize)>,
}

/// Runs the section. `only`: configuration names to run (the baseline always runs);
/// `workloads`: workload names to run (default both).
pub fn run(
    plan: &Plan,
    tools: &Tools,
    scratch: &Scratch,
    serve: &std::result::Result<(), String>,
    only: Option<&[String]>,
    workloads: Option<&[String]>,
) -> Result<Throughput> {
    let mut monitors: Vec<Monitor> = Monitor::ALL.to_vec();
    if let Some(names) = only {
        for n in names {
            ensure!(Monitor::from_name(n).is_some(), "unknown configuration {n:?}");
        }
        monitors.retain(|m| *m == Monitor::None || names.iter().any(|n| n == m.name()));
    }
    // Each workload keeps its index in `Workload::ALL`: the bootstrap seeds derive from it.
    let mut chosen: Vec<(usize, Workload)> = Workload::ALL.into_iter().enumerate().collect();
    if let Some(names) = workloads {
        for n in names {
            ensure!(Workload::ALL.iter().any(|w| w.name() == n), "unknown workload {n:?} (gc-alloc, http-server)");
        }
        chosen.retain(|(_, w)| names.iter().any(|n| n == w.name()));
    }
    let split = cpu_split();
    let ctx = Ctx { plan, tools, scratch, split };
    let mut results: Vec<Vec<Outcomes>> =
        chosen.iter().map(|_| monitors.iter().map(|_| Outcomes::default()).collect()).collect();
    let mut repeated_runs = 0;
    let mut orders = Vec::new();
    let runnable = monitors.iter().filter(|m| **m != Monitor::JvmwatchSidecar || serve.is_ok()).count();
    let total = plan.rounds * chosen.len() * runnable;
    let mut done = 0;
    for round in 0..plan.rounds {
        let order = round_order(plan.seed, 0x7468_726f_7567_6800, round, monitors.len());
        orders.push(order.iter().map(|&i| monitors[i].name()).collect());
        for (wi, &(_, w)) in chosen.iter().enumerate() {
            for &mi in &order {
                let m = monitors[mi];
                if m == Monitor::JvmwatchSidecar && serve.is_err() {
                    continue;
                }
                done += 1;
                for attempt in 1..=plan.max_attempts {
                    let started = Instant::now();
                    let tag = format!("[throughput {done}/{total}] round {} {} {:<17}", round + 1, w.name(), m.name());
                    match run_one(&ctx, w, m, round) {
                        Ok(r) => {
                            eprintln!(
                                "{tag} {:>12.0} {} ({:.1} s, other processes {:.0} % of a core)",
                                r.value,
                                w.unit(),
                                started.elapsed().as_secs_f64(),
                                r.foreign_cpu_pct
                            );
                            if r.foreign_cpu_pct > plan.noise_limit_pct && attempt < plan.max_attempts {
                                eprintln!("{tag} discarded: other processes were busy; repeating");
                                repeated_runs += 1;
                                results[wi][mi].discarded.push(r);
                                continue;
                            }
                            results[wi][mi].runs.push(r);
                        }
                        Err(e) => {
                            eprintln!("{tag} FAILED: {e:#}");
                            results[wi][mi].errors.push(format!("round {round}: {e:#}"));
                        }
                    }
                    break;
                }
            }
        }
    }
    let foreign: Vec<f64> = results.iter().flatten().flat_map(|o| o.runs.iter().map(|r| r.foreign_cpu_pct)).collect();
    let workloads = chosen
        .into_iter()
        .zip(results)
        .map(|((wi, w), per_monitor)| summarize_workload(plan, wi, w, &monitors, per_monitor, serve))
        .collect();
    Ok(Throughput {
        pinning: match split {
            Some((jvm, client)) => format!(
                "http-server: the JVM on CPU {jvm}, the harness's HTTP client threads on CPU {client}; gc-alloc: \
                 not pinned (the JVM uses both cores: it has no load generator beside it, and the harness only \
                 reads a counter once a second); the sidecar (jvmwatch+sidecar) is not pinned"
            ),
            None => "none: fewer than 2 CPUs available".to_string(),
        },
        warmup_rule: format!(
            "at least {} s, then until the mean of the last 5 one-second rates is no more than {} % above the mean \
             of the 5 before, at most {} s",
            plan.warmup.as_secs_f64(),
            window::RISING_PCT,
            plan.warmup_max.as_secs_f64()
        ),
        baseline: Monitor::None.name(),
        orders,
        noise_limit_pct: plan.noise_limit_pct,
        max_attempts: plan.max_attempts,
        repeated_runs,
        foreign_cpu_pct: summarize(&foreign),
        workloads,
    })
}

/// The runs of one configuration of one workload.
#[derive(Default)]
struct Outcomes {
    runs: Vec<Run>,
    errors: Vec<String>,
    discarded: Vec<Run>,
}

fn summarize_workload(
    plan: &Plan,
    wi: usize,
    w: Workload,
    monitors: &[Monitor],
    per_monitor: Vec<Outcomes>,
    serve: &std::result::Result<(), String>,
) -> WorkloadResult {
    let base_runs = per_monitor[0].runs.clone();
    let base = summarize(&base_runs.iter().map(|r| r.value).collect::<Vec<_>>());
    let configs: Vec<ConfigResult> = monitors
        .iter()
        .zip(per_monitor)
        .enumerate()
        .map(|(mi, (&m, Outcomes { runs, errors, discarded }))| {
            let seed = plan.seed ^ ((wi as u64) << 32 | mi as u64);
            let paired_overhead_pct = paired_loss(&runs, &base_runs, seed, |r| r.round, |r| Some(r.value));
            let cpu_cost_pct = paired_gain(&runs, &base_runs, seed ^ 1, |r| r.round, |r| r.cpu_per_op_ns);
            let cpu_per_op_ns = summarize(&runs.iter().filter_map(|r| r.cpu_per_op_ns).collect::<Vec<_>>());
            let monitor_cpu_ns_per_gc =
                summarize(&runs.iter().filter_map(|r| r.monitor_cpu_ns_per_gc).collect::<Vec<_>>());
            let agent_cpu_pct = summarize(&runs.iter().filter_map(|r| r.agent_cpu_pct).collect::<Vec<_>>());
            let summary = summarize(&runs.iter().map(|r| r.value).collect::<Vec<_>>());
            let ratio = match (summary, base) {
                (Some(s), Some(b)) if b.median > 0.0 => Some(round(s.median / b.median, 4)),
                _ => None,
            };
            let paired: Vec<f64> = runs
                .iter()
                .filter_map(|r| base_runs.iter().find(|b| b.round == r.round).map(|b| r.value / b.value))
                .collect();
            let status = if m == Monitor::JvmwatchSidecar && serve.is_err() {
                format!("skipped: {}", serve.as_ref().err().map_or("", |s| s.as_str()))
            } else if runs.is_empty() {
                format!("failed: {}", errors.first().map_or("no run", |s| s.as_str()))
            } else {
                "ok".to_string()
            };
            ConfigResult {
                name: m.name(),
                flags: m.describe(),
                status,
                runs,
                errors,
                discarded,
                summary,
                ratio,
                overhead_pct: ratio.map(|r| round((1.0 - r) * 100.0, 2)),
                paired_ratio: summarize(&paired),
                paired_overhead_pct,
                cpu_per_op_ns,
                cpu_cost_pct,
                monitor_cpu_ns_per_gc,
                agent_cpu_pct,
            }
        })
        .collect();
    let overhead = |name: &str| configs.iter().find(|c| c.name == name).and_then(|c| c.overhead_pct);
    let (jw, jfr) = (overhead(Monitor::Jvmwatch.name()), overhead(Monitor::JfrDefault.name()));
    let jwc = configs.iter().find(|c| c.name == Monitor::Jvmwatch.name());
    let headline = jwc.and_then(|c| c.paired_overhead_pct);
    let spread = base.map(|b| b.spread_pct());
    let half = headline.map(|c| round(c.half_width(), 3));
    let goal = Goal {
        jvmwatch_paired_overhead_pct: headline,
        jvmwatch_cpu_cost_pct: jwc.and_then(|c| c.cpu_cost_pct),
        spread_goal_pct: 3.0,
        ci_half_width_goal_pct: 1.0,
        ci_half_width_pct: half,
        // One round has no spread and no interval: nothing is resolved.
        resolves_goal: spread.zip(half).filter(|_| base.is_some_and(|b| b.n >= 2)).map(|(s, h)| s <= 3.0 && h <= 1.0),
        target_overhead_pct: 0.5,
        jvmwatch_overhead_pct: jw,
        jfr_default_overhead_pct: jfr,
        baseline_spread_pct: spread,
        within_target: jw.map(|o| o <= 0.5),
        below_jfr_default: jw.zip(jfr).map(|(a, b)| a < b),
    };
    WorkloadResult { name: w.name(), description: w.describe(plan), unit: w.unit(), configs, goal }
}

fn run_one(ctx: &Ctx<'_>, w: Workload, m: Monitor, round_no: usize) -> Result<Run> {
    let (plan, tools) = (ctx.plan, ctx.tools);
    let meter = CpuMeter::start();
    let tag = format!("tp-{}-{}-r{round_no}", w.name(), m.name().replace('+', "-"));
    let ring_dir = ctx.scratch.shm_dir(&tag)?;
    let disk_dir = ctx.scratch.disk_dir(&tag)?;
    let mut flags = m.flags(tools, &ring_dir, &disk_dir);
    flags.extend(w.flags(plan));
    let sidecar = if m == Monitor::JvmwatchSidecar {
        let serve = Serve::start(tools, &ring_dir, &disk_dir.join("serve.stderr"))?;
        let sub = Subscriber::connect(serve.addr)?;
        let cpu0 = serve.proc.cpu_ns().unwrap_or(0);
        Some((serve, sub, cpu0, Instant::now()))
    } else {
        None
    };
    let max = plan.warmup_max + plan.measure + Duration::from_secs(90);
    let stderr = disk_dir.join("java.stderr");
    let rule = Warmup { min: plan.warmup, max: plan.warmup_max };
    let mut run = Run {
        round: round_no,
        value: 0.0,
        warmup_ms: 0,
        warmup_end: "",
        cpu_per_op_ns: None,
        monitor_cpu_ns_per_gc: None,
        agent_cpu_pct: None,
        gc_per_s: None,
        gc_time_pct: None,
        http_errors: None,
        agent: None,
        sidecar: None,
        foreign_cpu_pct: 0.0,
    };
    // http-server's JVM is pinned to one CPU; gc-alloc's runs on all.
    let pinned = ctx.split.filter(|_| w == Workload::Http).map(|(jvm_cpu, _)| jvm_cpu);
    let _waker = (m == Monitor::Waker).then(|| Waker::on_jvm_cpus(pinned)).transpose()?;
    let win = match w {
        Workload::Gc => {
            // Not pinned: the JVM has both cores (see `Throughput::pinning`).
            let args = [plan.gc_threads.to_string(), "marks".to_string()];
            let mut p = Proc::spawn(jvm::command(tools, &flags, "GcWork", &args, max), "GcWork", &stderr)?;
            p.expect_line("STARTED", Duration::from_secs(60))?;
            let pid = p.pid();
            let mut mark = || -> Result<Mark> {
                use std::io::Write;
                let stdin = p.stdin.as_mut().context("GcWork's stdin is closed")?;
                writeln!(stdin, "mark").and_then(|()| stdin.flush()).context("cannot write to GcWork")?;
                let r = GcResult::parse(&p.expect_line("MARK", Duration::from_secs(10))?)?;
                Ok(Mark { ops: r.ops, nanos: Some(r.nanos), gcs: Some(r.gcs), gc_ms: Some(r.gc_ms) })
            };
            let win = window::run(&mut mark, pid, rule, plan.measure, &[&MONITOR_THREADS, &AGENT_THREADS])?;
            drop(p.stdin.take()); // GcWork exits when its stdin closes
            p.wait(Duration::from_secs(60))?;
            let gcs = win.gcs.unwrap_or(0);
            run.gc_per_s = Some(round(gcs as f64 * 1e9 / win.nanos as f64, 1));
            run.gc_time_pct = Some(round(win.gc_ms.unwrap_or(0) as f64 * 1e8 / win.nanos as f64, 2));
            run.monitor_cpu_ns_per_gc = (gcs > 0).then(|| round(win.threads_cpu_ns[0] as f64 / gcs as f64, 0));
            win
        }
        Workload::Http => {
            let args = [plan.http_pool.to_string()];
            let mut cmd = jvm::command(tools, &flags, "HttpWork", &args, max);
            if let Some((jvm_cpu, _)) = ctx.split {
                process::pin(&mut cmd, jvm_cpu);
            }
            let mut p = Proc::spawn(cmd, "HttpWork", &stderr)?;
            let port: u16 = p.expect_line("PORT", Duration::from_secs(60))?.parse().context("bad PORT line")?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let load = Load::start(addr, "/work?n=40", plan.http_conns, ctx.split.map(|s| s.1), max);
            // The warm-up starts at the first response: a cold JVM on one busy core can take
            // more than a smoke run's whole warm-up to answer at all.
            let first = Instant::now() + Duration::from_secs(60);
            while load.done() == 0 && Instant::now() < first {
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut mark = || Ok(Mark { ops: load.done(), ..Mark::default() });
            let win = window::run(&mut mark, p.pid(), rule, plan.measure, &[&AGENT_THREADS]);
            let errors = load.stop();
            drop(p.stdin.take()); // HttpWork exits when its stdin closes
            p.wait(Duration::from_secs(60))?;
            let win = win?;
            ensure!(win.ops > 0, "no request succeeded in the measured window ({errors} errors)");
            run.http_errors = Some(errors);
            win
        }
    };
    run.value = win.per_s();
    run.warmup_ms = win.warmup_ms;
    run.warmup_end = win.warmup_end;
    run.cpu_per_op_ns = win.cpu_per_op_ns();
    if m.is_jvmwatch() {
        // AGENT_THREADS is the last group of both workloads' windows.
        let agent = win.threads_cpu_ns.last().copied().unwrap_or(0);
        run.agent_cpu_pct = win.jvm_cpu_ns.filter(|&c| c > 0).map(|c| round(agent as f64 * 100.0 / c as f64, 3));
    }
    if let Some((serve, sub, cpu0, t0)) = sidecar {
        let wall = t0.elapsed().as_nanos() as f64;
        let cpu = serve.proc.cpu_ns().unwrap_or(0).saturating_sub(cpu0) as f64;
        let rss_kib = serve.proc.rss_kib();
        let seen = sub.finish();
        serve.stop();
        run.sidecar = Some(SidecarStats {
            cpu_pct: round(cpu / wall * 100.0, 2),
            rss_kib,
            sse_events: seen.events,
            stream_error: seen.error,
        });
    }
    match m {
        m if m.is_jvmwatch() => {
            let a = jvm::agent_stats(&ring_dir)?;
            ensure!(a.events > 0, "the agent's ring has no events: did the agent load?");
            run.agent = Some(a);
        }
        Monitor::GcLog => {
            let n = std::fs::metadata(disk_dir.join("gc.log")).map(|m| m.len()).unwrap_or(0);
            ensure!(n > 0, "the GC log is missing or empty");
        }
        Monitor::JfrDefault | Monitor::JfrProfile => {
            ensure!(disk_dir.join("rec.jfr").exists(), "JFR wrote no recording");
        }
        _ => {}
    }
    let _ = std::fs::remove_dir_all(&ring_dir);
    let _ = std::fs::remove_dir_all(&disk_dir);
    // Every child of this run (the JVM, the sidecar) has been waited for by now.
    run.foreign_cpu_pct = round(meter.foreign_pct(), 1);
    Ok(run)
}

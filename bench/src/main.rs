//! `jvmwatch-bench`: what jvmwatch costs a Java service, measured side by side with the tools
//! users would pick instead, in one run on one machine. See bench/README.md.
//!
//! Sections: `throughput` (overhead on two workloads under twelve configurations), `micro` (ring
//! writes, snapshot, full scan, leak check, GC callback), `latency` (GC end → consumer),
//! `crash` (SIGKILL survival), `serve`, `api`, `controller`, `history`, `sampler` (the agent's
//! sampler thread per sample), `short-lived` (a JVM's start-up, exit, CPU and memory when it
//! lives briefly), `tomcat` (a real servlet server under wrk), `usage`. `all` runs them in that
//! order.

mod api_cost;
mod controller;
mod crash;
mod history;
mod http;
mod jvm;
mod latency;
mod loadgen;
mod micro;
mod noise;
mod plan;
mod pool;
mod process;
mod report;
mod rng;
mod sampler;
mod scale;
mod serve_load;
mod short_lived;
mod sidecar;
mod sse;
mod stats;
mod throughput;
mod timefmt;
mod tomcat;
mod tools;
mod usage;
mod waker;
mod window;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use jvmwatch_ring::now_ns;
use serde::Serialize;

use crate::plan::Plan;
use crate::tools::{Build, Machine, Scratch, Tools};

/// Measures jvmwatch's overhead and latency against the tools users would pick instead.
#[derive(Parser, Debug)]
#[command(name = "jvmwatch-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Tiny sizes, one run each (seconds per section): for CI.
    #[arg(long, global = true)]
    smoke: bool,
    /// Short throughput, Tomcat and sampler sections (one AB/BA pair of rounds, 5 s warm-ups and
    /// windows); the other sections full size. A check that they work, not figures to quote.
    #[arg(long, global = true, conflicts_with = "smoke")]
    quick: bool,
    /// Print the results as JSON on stdout (progress goes to stderr either way).
    #[arg(long, global = true)]
    json: bool,
    /// Throughput rounds (default 6, in AB/BA pairs; quick 2; smoke 1).
    #[arg(long, global = true, value_name = "N")]
    rounds: Option<usize>,
    /// Throughput: measured window per run, seconds (default 10; quick 5).
    #[arg(long, global = true, value_name = "SECONDS")]
    measure: Option<f64>,
    /// Throughput: shortest warm-up per run, seconds (default 20; quick 5); it goes on until the
    /// rate stops rising, up to --warmup-max.
    #[arg(long, global = true, value_name = "SECONDS")]
    warmup: Option<f64>,
    /// Throughput: longest warm-up per run, seconds (default 30; quick 8).
    #[arg(long, global = true, value_name = "SECONDS")]
    warmup_max: Option<f64>,
    /// Throughput: GcWork's allocating threads (default 8).
    #[arg(long, global = true, value_name = "N")]
    gc_threads: Option<usize>,
    /// Throughput: HttpWork's handler threads (default 4).
    #[arg(long, global = true, value_name = "N")]
    http_pool: Option<usize>,
    /// Tomcat rounds (default 8, in AB/BA pairs; quick 2).
    #[arg(long, global = true, value_name = "N")]
    tomcat_rounds: Option<usize>,
    /// Throughput and Tomcat: only these configurations (comma-separated; the baseline `none`
    /// always runs; Tomcat's default is none,jvmwatch,jfr-default).
    #[arg(long, global = true, value_delimiter = ',', value_name = "NAMES")]
    configs: Option<Vec<String>>,
    /// Throughput: only these workloads (comma-separated: gc-alloc, http-server; default both).
    #[arg(long, global = true, value_delimiter = ',', value_name = "NAMES")]
    workloads: Option<Vec<String>>,
    /// Latency rounds (default 5; smoke 1).
    #[arg(long, global = true, value_name = "N")]
    latency_rounds: Option<usize>,
    /// Crash-survival runs (default 200; smoke 5).
    #[arg(long, global = true, value_name = "N")]
    crash_runs: Option<usize>,
    /// Controller: JVM deaths to time (default 60; smoke 3; 0 skips that part).
    #[arg(long, global = true, value_name = "N")]
    deaths: Option<usize>,
    /// Seed for run orders and kill moments (default: from the clock; recorded in the results).
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// Write the results JSON here (default: bench/results/<date>.json for full runs; smoke runs
    /// save nothing unless this is given).
    #[arg(long, global = true, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Do not save the results file.
    #[arg(long, global = true)]
    no_save: bool,
    /// Also write the Markdown tables into the Results section of bench/README.md.
    #[arg(long, global = true)]
    readme: bool,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
enum Cmd {
    /// Every section: throughput, micro, latency, crash, serve, api, controller, history, sampler,
    /// short-lived, tomcat, usage.
    All,
    /// 1. Throughput overhead on the GC and HTTP workloads under every configuration.
    Throughput,
    /// 2. Micro costs: ring writes, snapshot update, full scan, leak check, GC callback.
    Micro,
    /// 3. Visibility latency: GC pause end → SSE client, ring reader, JFR stream.
    Latency,
    /// 4. Crash survival: SIGKILL at random moments, committed events lost.
    Crash,
    /// 5. The sidecar following 50 JVMs: its CPU, memory and /metrics latency.
    Serve,
    /// 6. The Java API from Java: Counter/Timer against LongAdder, 1 and 8 threads.
    Api,
    /// 7. The controller: death → decision → restart under `supervise`; rule evaluation cost.
    Controller,
    /// 8. Flight history: cost per sample, file size, inspect on a full history, stacks capture.
    History,
    /// 9. Usage records: append cost, store growth, report and verify over a large store.
    Usage {
        /// JVMs.
        #[arg(long, default_value_t = 100)]
        jvms: u64,
        /// Minutes of 1-minute records per JVM (43200 = 30 days, the 4.32 M-record goal).
        #[arg(long, default_value_t = 43_200)]
        minutes: u64,
    },
    /// 10. Tomcat 10 (Debian's) under wrk: req/s, p99, p99.9 per configuration, paired.
    Tomcat,
    /// 11. The agent's sampler thread: CPU per sample at 40, 400 and 4,000 threads.
    Sampler,
    /// 13. A short-lived JVM: what each tool adds to start-up, exit, CPU and memory.
    ShortLived,
    /// 12. The sidecar's scale curve: 10 to 1,000 synthetic rings (on its own, not in `all`).
    Scale {
        /// Short windows (10 s instead of 60 s) and sizes 10, 100, 1,000.
        #[arg(long)]
        quick: bool,
        /// Also measure this `jvmwatch` binary at every size, against the same writers.
        #[arg(long, value_name = "BIN")]
        before: Option<PathBuf>,
        /// With --before: run the two sidecars in the order before, current, current, before at
        /// every size (twice the time), so that the run order, which weighs on the figures at
        /// 1,000 rings, weighs on both alike; growth is then taken from each one's mean.
        #[arg(long, requires = "before")]
        abba: bool,
        /// Ring counts (default 10,50,100,1000; quick 10,100,1000).
        #[arg(long, value_delimiter = ',', value_name = "N")]
        sizes: Option<Vec<usize>>,
    },
    /// A synthetic writer for `scale` (internal).
    #[command(hide = true)]
    ScaleWriter {
        /// Directory for the rings.
        #[arg(long)]
        dir: PathBuf,
        /// Rings to write.
        #[arg(long)]
        rings: usize,
        /// Number of the first ring (picks its place in the event mix).
        #[arg(long)]
        first: usize,
        /// Exit after this many seconds.
        #[arg(long)]
        max_s: u64,
    },
    /// Render a saved results file as Markdown (with --readme: into bench/README.md).
    Report {
        /// A results JSON file.
        file: PathBuf,
    },
    /// One interval over the throughput rounds of several saved runs of the same build: each
    /// file's rounds are paired within it, then one bootstrap over all pairs. The files must
    /// describe the workloads, flags and warm-up rule identically, and those that record their
    /// agent build must record the same one (for files that do not, the caller vouches).
    Pool {
        /// Two or more results JSON files.
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
    },
}

/// Everything one invocation measured.
#[derive(Serialize)]
struct Results {
    harness: &'static str,
    version: &'static str,
    date: String,
    started_at: String,
    duration_s: f64,
    mode: &'static str,
    command: String,
    machine: Machine,
    /// The agent and sidecar measured.
    build: Build,
    loadavg_end: String,
    plan: Plan,
    /// How long the timed sections take by the plan, seconds.
    estimate: plan::Estimate,
    sidecar_serve: String,
    results_file: Option<String>,
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    throughput: Option<throughput::Throughput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    micro: Option<micro::Micro>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<latency::Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crash: Option<crash::Crash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serve_load: Option<serve_load::ServeLoad>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_cost: Option<api_cost::ApiCost>,
    #[serde(skip_serializing_if = "Option::is_none")]
    controller: Option<controller::ControllerBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<history::HistoryBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<usage::UsageBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sampler: Option<sampler::SamplerBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    short_lived: Option<short_lived::ShortLivedBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tomcat: Option<tomcat::TomcatBench>,
    scale: Option<scale::Scale>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.05))
}

fn plan_of(cli: &Cli) -> Plan {
    let seed = cli.seed.unwrap_or_else(|| now_ns() % 1_000_000_007);
    let mut p = Plan::new(cli.smoke, seed);
    if cli.quick {
        p = p.quick();
    }
    if let Some(n) = cli.rounds {
        p.rounds = n.max(1);
    }
    if let Some(s) = cli.measure {
        p.measure = secs(s);
    }
    if let Some(s) = cli.warmup {
        p.warmup = secs(s);
    }
    if let Some(s) = cli.warmup_max {
        p.warmup_max = secs(s);
    }
    p.warmup_max = p.warmup_max.max(p.warmup);
    if let Some(n) = cli.gc_threads {
        p.gc_threads = n.max(1);
    }
    if let Some(n) = cli.http_pool {
        p.http_pool = n.max(1);
    }
    if let Some(n) = cli.tomcat_rounds {
        p.tomcat_rounds = n.max(1);
    }
    if let Some(n) = cli.latency_rounds {
        p.latency_rounds = n.max(1);
    }
    if let Some(n) = cli.crash_runs {
        p.crash_runs = n.max(1);
    }
    p
}

fn bench_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// bench/results/<date><suffix>.json, or <date>-2<suffix>.json, ... when taken.
fn default_results_path(date: &str, suffix: &str) -> PathBuf {
    let dir = bench_dir().join("results");
    (1..)
        .map(|i| dir.join(if i == 1 { format!("{date}{suffix}.json") } else { format!("{date}-{i}{suffix}.json") }))
        .find(|p| !p.exists())
        .expect("some free name")
}

/// Runs one section when it is `wanted`. Under `all` a failure is told, added to `failed` and
/// read as "no result", so the run goes on; otherwise it is returned.
fn section<T>(
    all: bool,
    failed: &mut Vec<String>,
    name: &str,
    wanted: bool,
    f: impl FnOnce() -> Result<T>,
) -> Result<Option<T>> {
    if !wanted {
        return Ok(None);
    }
    match f() {
        Ok(v) => Ok(Some(v)),
        Err(e) if all => {
            eprintln!("[{name}] the section failed; the run goes on without it: {e:#}");
            failed.push(format!("{name} failed: {e:#}"));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn save(path: &Path, json: &str) -> Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}

fn mode(plan: &Plan) -> &'static str {
    if plan.smoke {
        "smoke"
    } else if plan.quick {
        "quick"
    } else {
        "full"
    }
}

fn run(cli: &Cli) -> Result<()> {
    if let Cmd::Report { file } = &cli.cmd {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(file)?).context("not a results JSON file")?;
        let md = report::markdown(&v);
        if cli.readme {
            report::update_readme(&bench_dir().join("README.md"), &md)?;
        }
        print!("{md}");
        return Ok(());
    }
    if let Cmd::Pool { files } = &cli.cmd {
        let runs = files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let v = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{}: not a results JSON file", f.display()))?;
                Ok((f.clone(), v))
            })
            .collect::<Result<Vec<_>>>()?;
        print!("{}", pool::markdown(files, &pool::pool(&runs)?));
        return Ok(());
    }
    if let Cmd::ScaleWriter { dir, rings, first, max_s } = &cli.cmd {
        return scale::writer_main(dir, *rings, *first, Duration::from_secs(*max_s));
    }
    let plan = plan_of(cli);
    let started = Instant::now();
    let start_ns = now_ns();
    let scratch = Scratch::new()?;
    let tools = Tools::find(&scratch)?;
    let machine = Machine::describe(&tools);
    // Read before the sections run: the files measured, even if they are rebuilt meanwhile.
    let build = Build::of(&tools);
    let serve = sidecar::available(&tools);
    let tp_configs = match &cli.configs {
        Some(names) => 1 + names.iter().filter(|n| *n != "none").count(),
        None => throughput::Monitor::ALL.len() - usize::from(serve.is_err()),
    };
    let tc_configs = match &cli.configs {
        Some(names) => 1 + names.iter().filter(|n| *n != "none").count(),
        None => tomcat::DEFAULT_CONFIGS.len(),
    };
    let tp_workloads = cli.workloads.as_ref().map_or(throughput::Workload::ALL.len(), Vec::len);
    let estimate = plan.estimate(tp_configs, tp_workloads, tc_configs);
    eprintln!(
        "jvmwatch-bench {}: {} on {} ({} cores); agent {}, sidecar {}; jvmwatch serve: {}",
        mode(&plan),
        format!("{:?}", cli.cmd).to_lowercase(),
        machine.cpu,
        machine.cpus,
        tools.agent.display(),
        tools.jvmwatch.display(),
        serve.as_ref().map_or_else(|e| e.as_str(), |_| "available")
    );
    eprintln!(
        "by the plan: throughput {:.0}–{:.0} min, tomcat {:.0} min, sampler {:.1} min, short-lived {:.1} min (when run)",
        estimate.throughput_s.0 / 60.0,
        estimate.throughput_s.1 / 60.0,
        estimate.tomcat_s / 60.0,
        estimate.sampler_s / 60.0,
        estimate.short_lived_s / 60.0
    );
    let wants = |c: Cmd| cli.cmd == Cmd::All || cli.cmd == c;
    let mut notes = vec![
        "Every monitored configuration adds its tool to the baseline flags (-XX:-UsePerfData), so each ratio is \
         that tool's own cost; `hsperfdata` is the JVM as it comes."
            .to_string(),
        "Figures are from one run on a shared 2-core machine; other processes (e.g. compiles) may have run at the \
         same time. Interleaving spreads such noise over all configurations; the baseline spread says how much \
         there was."
            .to_string(),
    ];
    if let Err(why) = &serve {
        notes.push(format!("jvmwatch+sidecar and jvmwatch-sse were skipped: {why}."));
    }
    // Under `all`, a section that fails is told and recorded, the others still run, and what
    // ran is saved: a long run must not lose its finished sections to a later one. The command
    // still fails at the end. A single section's command fails at once.
    let all = cli.cmd == Cmd::All;
    let mut failed: Vec<String> = Vec::new();
    let throughput = section(all, &mut failed, "throughput", wants(Cmd::Throughput), || {
        throughput::run(&plan, &tools, &scratch, &serve, cli.configs.as_deref(), cli.workloads.as_deref())
    })?;
    let micro = section(all, &mut failed, "micro", wants(Cmd::Micro), || micro::run(&plan, &tools, &scratch))?;
    let latency =
        section(all, &mut failed, "latency", wants(Cmd::Latency), || latency::run(&plan, &tools, &scratch, &serve))?;
    let crash = section(all, &mut failed, "crash", wants(Cmd::Crash), || crash::run(&plan, &tools, &scratch))?;
    let serve_load = section(all, &mut failed, "serve", serve.is_ok() && wants(Cmd::Serve), || {
        let (jvms, measure, requests) = if plan.smoke { (3, 2.0, 50) } else { (50, 30.0, 1000) };
        serve_load::run(&tools, &scratch, jvms, secs(measure), requests)
    })?;
    let api_cost = section(all, &mut failed, "api", wants(Cmd::Api), || {
        let (forks, seconds) = if plan.smoke { (1, 0.1) } else { (3, 1.0) };
        api_cost::run(&tools, &scratch, machine.cpus, forks, seconds)
    })?;
    let controller = section(all, &mut failed, "controller", wants(Cmd::Controller), || {
        let (deaths, jvms, ticks) = if plan.smoke { (3, 50, 10) } else { (60, 1000, 200) };
        let deaths = cli.deaths.unwrap_or(deaths);
        controller::run(&tools, &scratch, deaths, jvms, ticks)
    })?;
    let history =
        section(all, &mut failed, "history", wants(Cmd::History), || history::run(&tools, &scratch, plan.smoke))?;
    let sampler = section(all, &mut failed, "sampler", wants(Cmd::Sampler), || sampler::run(&plan, &tools, &scratch))?;
    let short_lived =
        section(all, &mut failed, "short-lived", wants(Cmd::ShortLived), || short_lived::run(&plan, &tools, &scratch))?;
    let tomcat = section(all, &mut failed, "tomcat", wants(Cmd::Tomcat), || {
        tomcat::run(&plan, &tools, &scratch, cli.configs.as_deref())
    })?;
    let usage = section(all, &mut failed, "usage", all || matches!(cli.cmd, Cmd::Usage { .. }), || match &cli.cmd {
        Cmd::Usage { jvms, minutes } => usage::run(&tools, &scratch, *jvms, *minutes as f64 / 1440.0),
        _ => usage::run(&tools, &scratch, 100, if plan.smoke { 0.1 } else { 30.0 }),
    })?;
    notes.extend(failed.iter().map(|f| format!("Section {f} (the run went on without it).")));
    let scale = match &cli.cmd {
        Cmd::Scale { quick, before, sizes, abba } => {
            if let Err(why) = &serve {
                anyhow::bail!("the scale section needs jvmwatch serve: {why}");
            }
            let default: &[usize] = if *quick { &[10, 100, 1000] } else { &[10, 50, 100, 1000] };
            let sizes = sizes.as_deref().unwrap_or(default);
            Some(scale::run(&tools, &scratch, *quick, sizes, before.as_deref(), *abba)?)
        }
        _ => None,
    };
    let date = timefmt::date(start_ns);
    let out = match &cli.out {
        _ if cli.no_save => None,
        Some(p) => Some(p.clone()),
        None if matches!(cli.cmd, Cmd::Scale { .. }) => Some(default_results_path(&date, "-scale")),
        None if !cli.smoke => Some(default_results_path(&date, "")),
        None => None,
    };
    let results = Results {
        harness: "jvmwatch-bench",
        version: env!("CARGO_PKG_VERSION"),
        date,
        started_at: timefmt::rfc3339(start_ns),
        duration_s: stats::round(started.elapsed().as_secs_f64(), 1),
        mode: mode(&plan),
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        machine,
        build,
        loadavg_end: tools::loadavg(),
        plan,
        estimate,
        sidecar_serve: serve.as_ref().map_or_else(|e| format!("skipped: {e}"), |_| "available".into()),
        results_file: out.as_ref().map(|p| {
            let root = bench_dir().parent().unwrap_or(bench_dir());
            p.strip_prefix(root).unwrap_or(p).display().to_string()
        }),
        notes,
        throughput,
        micro,
        latency,
        crash,
        serve_load,
        api_cost,
        controller,
        history,
        usage,
        sampler,
        short_lived,
        tomcat,
        scale,
    };
    let json = serde_json::to_string_pretty(&results)?;
    if let Some(p) = &out {
        save(p, &json)?;
        eprintln!("results: {}", p.display());
    }
    let value: serde_json::Value = serde_json::from_str(&json)?;
    let md = report::markdown(&value);
    if cli.readme {
        report::update_readme(&bench_dir().join("README.md"), &md)?;
        eprintln!("updated {}", bench_dir().join("README.md").display());
    }
    if cli.json {
        println!("{json}");
    } else {
        print!("{md}");
    }
    if !failed.is_empty() {
        anyhow::bail!("{} section(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jvmwatch-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::section;

    #[test]
    fn under_all_a_failing_section_is_recorded_and_the_run_goes_on() {
        let mut failed = Vec::new();
        let r: anyhow::Result<Option<u32>> =
            section(true, &mut failed, "micro", true, || Err(anyhow::anyhow!("no java")));
        assert_eq!(r.unwrap(), None);
        assert_eq!(failed, ["micro failed: no java"]);
        let ok = section(true, &mut failed, "crash", true, || Ok(7));
        assert_eq!(ok.unwrap(), Some(7));
        assert_eq!(failed.len(), 1, "a section that worked is not recorded");
    }

    #[test]
    fn a_section_run_alone_fails_at_once_and_one_not_wanted_does_not_run() {
        let mut failed = Vec::new();
        let r: anyhow::Result<Option<u32>> =
            section(false, &mut failed, "micro", true, || Err(anyhow::anyhow!("no java")));
        assert_eq!(r.unwrap_err().to_string(), "no java");
        assert!(failed.is_empty());
        let skipped: anyhow::Result<Option<u32>> =
            section(true, &mut failed, "tomcat", false, || panic!("a section not wanted must not run"));
        assert_eq!(skipped.unwrap(), None);
    }
}

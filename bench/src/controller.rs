//! Section 7, the controller, in two parts: JVM death → restart decision → new JVM started under
//! `jvmwatch supervise`, over many SIGKILLed JVMs; and the cost of one rule evaluation for
//! 1,000 simulated JVMs × 20 rules, next to the controller's 100 ms tick.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use jvmwatch_controller::{evaluate, Config, EvalState, History, Instance, World};
use jvmwatch_ring::now_ns;
use serde::Serialize;
use serde_json::Value;

use crate::http::get_once;
use crate::process::Proc;
use crate::stats::{percentiles, round, Percentiles};
use crate::tools::{Scratch, Tools};

/// Death to decision and to the replacement's start.
#[derive(Debug, Serialize)]
pub struct Restarts {
    /// JVMs killed.
    pub deaths: usize,
    /// SIGKILL → `process_exit` decision recorded, ms (1 ms resolution: decisions carry ms).
    pub decision_ms: Percentiles,
    /// SIGKILL → replacement JVM spawned, ms.
    pub restart_ms: Percentiles,
    /// What Kubernetes' liveness probe defaults give for the same (10 s period × 3 failures).
    pub kubernetes_liveness_default_ms: f64,
}

/// One evaluation of the rules.
#[derive(Debug, Serialize)]
pub struct Eval {
    /// Simulated JVMs.
    pub jvms: usize,
    /// Rules.
    pub rules: usize,
    /// Points of history per series (15 min at 1 s).
    pub points_per_series: usize,
    /// Evaluations timed.
    pub ticks: usize,
    /// Wall time of one evaluation, ms.
    pub eval_ms: Percentiles,
    /// p99 evaluation over the 100 ms tick.
    pub share_of_tick_p99: f64,
    /// Each rule evaluated alone: (name, condition, median ms over 20 ticks).
    pub per_rule_ms: Vec<(String, String, f64)>,
}

/// The section's result.
#[derive(Debug, Serialize)]
pub struct ControllerBench {
    /// Death → decision → restart (None with `--deaths 0`).
    pub restarts: Option<Restarts>,
    /// Rule evaluation cost.
    pub eval: Eval,
}

/// Runs both parts: `deaths` SIGKILLs, `jvms` simulated JVMs.
pub fn run(tools: &Tools, scratch: &Scratch, deaths: usize, jvms: usize, ticks: usize) -> Result<ControllerBench> {
    let restarts = (deaths > 0).then(|| restarts(tools, scratch, deaths)).transpose()?;
    eprintln!("controller: evaluating 20 rules over {jvms} simulated JVMs");
    let eval = eval(jvms, ticks)?;
    Ok(ControllerBench { restarts, eval })
}

fn get_json(addr: SocketAddr, path: &str) -> Result<Value> {
    let (status, body) = get_once(addr, path, Duration::from_secs(10))?;
    if status != 200 {
        bail!("GET {path}: {status} {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// The running instance of app `bench` once its JVM is up: (id, pid).
fn instance(addr: SocketAddr, not: Option<&str>, limit: Duration) -> Result<(String, u32)> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let apps = get_json(addr, "/api/v1/apps")?;
        if let Some(i) = apps[0]["instances"].as_array().and_then(|a| a.first()) {
            let id = i["id"].as_str().unwrap_or_default().to_string();
            if Some(id.as_str()) != not {
                return Ok((id, i["pid"].as_u64().unwrap_or(0) as u32));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("no new instance within {limit:?}")
}

fn restarts(tools: &Tools, scratch: &Scratch, deaths: usize) -> Result<Restarts> {
    let rings = scratch.shm_dir("controller-rings")?;
    let state = scratch.disk_dir("controller-state")?;
    let cfg = state.join("bench.toml");
    std::fs::write(
        &cfg,
        format!(
            "[supervisor]\nbackoff_initial = \"1ms\"\nbackoff_max = \"1ms\"\nmax_restarts = {}\nrestart_window = \"1h\"\n\
             [[app]]\nname = \"bench\"\ncommand = [{:?}, \"-Xmx32m\", \"-XX:+UseSerialGC\", \"-XX:TieredStopAtLevel=1\", \
             \"-XX:-CreateCoredumpOnCrash\", \"-cp\", {:?}, \"IdleService\"]\n",
            deaths + 10,
            tools.java.display().to_string(),
            tools.classes.display().to_string()
        ),
    )?;
    let err = state.join("supervise.err");
    let mut cmd = Command::new(&tools.jvmwatch);
    cmd.arg("supervise").arg(&cfg).arg("--dir").arg(&rings).arg("--state-dir").arg(&state);
    cmd.args(["--listen", "127.0.0.1:0"]);
    let mut sup = Proc::spawn(cmd, "jvmwatch supervise", &err)?;
    let addr = wait_addr(&err)?;
    let (mut id, mut pid) = instance(addr, None, Duration::from_secs(60))?;
    let (mut decision, mut restart) = (Vec::new(), Vec::new());
    for n in 0..deaths {
        // Let the JVM come up (its ring live) so each death is a running JVM's.
        wait_running(addr, &id)?;
        let t0 = now_ns() as f64 / 1e6;
        // SAFETY: kill(2) on a JVM the supervisor we started launched.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let (next, next_pid) = instance(addr, Some(&id), Duration::from_secs(30))?;
        let started: f64 = next.rsplit('-').next().and_then(|s| s.parse().ok()).context("instance id")?;
        restart.push(started - t0);
        let ds = get_json(addr, &format!("/api/v1/decisions?since={}", t0 as u64))?;
        let at = ds["decisions"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["instance"] == id.as_str() && d["rule"] == "process_exit"))
            .and_then(|d| d["at_ms"].as_f64())
            .context("no process_exit decision")?;
        decision.push((at - t0).max(0.0));
        (id, pid) = (next, next_pid);
        if n % 10 == 9 {
            eprintln!("controller: {} deaths", n + 1);
        }
    }
    sup.terminate(Duration::from_secs(15));
    let r3 = |v: &[f64]| {
        let mut p = percentiles(v).expect("deaths > 0");
        (p.p50, p.p99, p.max) = (round(p.p50, 1), round(p.p99, 1), round(p.max, 1));
        p
    };
    Ok(Restarts {
        deaths,
        decision_ms: r3(&decision),
        restart_ms: r3(&restart),
        kubernetes_liveness_default_ms: 30_000.0,
    })
}

fn wait_addr(err: &Path) -> Result<SocketAddr> {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let text = std::fs::read_to_string(err).unwrap_or_default();
        if let Some(a) = text.split("http://").nth(1).and_then(|r| r.split('/').next()) {
            return Ok(a.parse()?);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("jvmwatch supervise printed no address: {}", std::fs::read_to_string(err).unwrap_or_default())
}

fn wait_running(addr: SocketAddr, id: &str) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if get_json(addr, &format!("/api/v1/jvms/{id}/live")).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("{id} never came up")
}

/// 20 rules of every kind: windows up to 15 min, app and JVM scope, histograms, z-scores.
const RULES: &str = r#"
[controller]
history = "15m"
sample_every = "1s"
[[rule]]
name = "r1"
scope = "app"
when = "mean(app.latency, 5m) > 100"
then = ["scale_up"]
[[rule]]
name = "r2"
scope = "app"
when = "rate(app.requests, 10m) < 1"
then = ["scale_down"]
[[rule]]
name = "r3"
when = "rate(app.errors, 1m) > 5% * rate(app.requests, 1m)"
then = ["restart"]
[[rule]]
name = "r4"
when = "rate(gc.time_s, 30s) > 0.5 or min_last(gc.heap_after_ratio, 3) > 0.9"
then = ["restart"]
[[rule]]
name = "r5"
when = "alive and heartbeat.age_s > 10"
then = ["thread_dump", "restart"]
[[rule]]
name = "r6"
when = "verdict(crashed, killed) or finding(oom)"
then = ["restart"]
[[rule]]
name = "r7"
when = "zscore(mean(app.latency, 1m)) > 3"
then = ["flag"]
[[rule]]
name = "r8"
when = "p99(app.latency, 1m) > 500"
then = ["flag"]
[[rule]]
name = "r9"
when = "avg(heap.used, 5m) > 0.95 * heap.max"
then = ["flag"]
[[rule]]
name = "r10"
when = "max(threads.blocked, 1m) > 50"
then = ["flag"]
[[rule]]
name = "r11"
when = "rate(cpu.time_s, 1m) > 1.5"
then = ["flag"]
[[rule]]
name = "r12"
scope = "app"
when = "p95(app.latency, 5m) > 250"
then = ["flag"]
[[rule]]
name = "r13"
when = "increase(app.errors, 5m) > 1000"
then = ["flag"]
[[rule]]
name = "r14"
when = "min(heap.used, 15m) > 0.8 * heap.max"
then = ["flag"]
[[rule]]
name = "r15"
scope = "app"
when = "rate(app.requests, 1m) > 100000"
then = ["flag"]
[[rule]]
name = "r16"
when = "count(app.latency, 1m) < 1 and alive"
then = ["flag"]
[[rule]]
name = "r17"
when = "last(threads.blocked) > 100"
then = ["flag"]
[[rule]]
name = "r18"
when = "rate(gc.time_s, 5m) > 0.2"
then = ["flag"]
[[rule]]
name = "r19"
when = "not alive"
then = ["flag"]
[[rule]]
name = "r20"
scope = "app"
when = "mean(app.latency, 1m) > 2 * mean(app.latency, 15m)"
then = ["flag"]
"#;

/// Pushes one second of synthetic figures for instance `i` at second `s`.
fn push(h: &mut History, i: usize, s: u64) {
    let t = s * 1000;
    let x = (i as f64 * 7.0 + s as f64).sin().abs();
    h.push("heap.used", t, 100e6 + 50e6 * x);
    h.push("heap.max", t, 512e6);
    h.push("gc.time_s", t, s as f64 * 0.01);
    h.push("cpu.time_s", t, s as f64 * 0.3);
    h.push("heartbeat.age_s", t, 0.1);
    h.push("threads.blocked", t, (x * 3.0).floor());
    h.push("app.requests", t, s as f64 * 200.0);
    h.push("app.errors", t, s as f64 * 2.0);
    h.push("app.latency.count", t, s as f64 * 200.0);
    // Three busy buckets, cumulative.
    let mut b = vec![0u64; jvmwatch_ring::metrics::BUCKET_COUNT];
    (b[40], b[41], b[44]) = (s * 150, s * 45, s * 5);
    h.push_hist("app.latency", t, s * 200, s as f64 * 200.0 * 3.0, &b);
    if s.is_multiple_of(5) {
        h.push("gc.heap_after_ratio", t, 0.3 + 0.1 * x);
    }
}

fn eval(jvms: usize, ticks: usize) -> Result<Eval> {
    let cfg = Config::parse(RULES, Path::new("bench-rules.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let points = 900u64;
    let mut world = World {
        bucket_bounds_ms: (0..jvmwatch_ring::metrics::BUCKET_COUNT)
            .map(|i| jvmwatch_ring::metrics::bucket_upper(i) as f64 / 1e6)
            .collect(),
        apps: BTreeMap::new(),
        instances: Vec::with_capacity(jvms),
    };
    for i in 0..jvms {
        let mut h = History::for_config(&cfg.controller);
        for s in 0..points {
            push(&mut h, i, s);
        }
        world.instances.push(Instance {
            id: format!("app{}-{i}", i % 10),
            app: format!("app{}", i % 10),
            alive: true,
            verdict: "running".into(),
            findings: vec![],
            history: h,
        });
    }
    let mut state = EvalState::default();
    let mut now = points * 1000;
    let mut times = Vec::with_capacity(ticks);
    for n in 0..ticks {
        now += 100;
        if n % 10 == 9 {
            let s = now / 1000;
            for (i, inst) in world.instances.iter_mut().enumerate() {
                push(&mut inst.history, i, s);
            }
        }
        let t = Instant::now();
        let d = evaluate(&cfg, &world, &mut state, now);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(d);
    }
    let mut p = percentiles(&times).context("ticks > 0")?;
    (p.p50, p.p99, p.max) = (round(p.p50, 3), round(p.p99, 3), round(p.max, 3));
    let share = round(p.p99 / 100.0, 4);
    // Each rule alone, over the same world.
    let head = RULES.split("[[rule]]").next().unwrap_or_default();
    let mut per_rule_ms = Vec::new();
    for (n, rule) in RULES.split("[[rule]]").skip(1).enumerate() {
        let one = Config::parse(&format!("{head}[[rule]]{rule}"), Path::new("one.toml"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut st = EvalState::default();
        let mut times = Vec::new();
        for k in 0..20 {
            let t = Instant::now();
            std::hint::black_box(evaluate(&one, &world, &mut st, now + k));
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let med = percentiles(&times).map_or(0.0, |p| round(p.p50, 3));
        per_rule_ms.push((format!("r{}", n + 1), one.rules[0].when_src.clone(), med));
    }
    Ok(Eval {
        jvms,
        rules: cfg.rules.len(),
        points_per_series: points as usize,
        ticks,
        eval_ms: p,
        share_of_tick_p99: share,
        per_rule_ms,
    })
}

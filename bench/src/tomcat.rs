//! Section 10: a real servlet server. Debian's Tomcat 10 (package `tomcat10-common`: the server's
//! files without the system service) with one tiny servlet (java/benchservlet, compiled here
//! against the servlet API jar the package ships), in a private CATALINA_BASE on a free
//! 127.0.0.1 port, its JVM started by this harness with each configuration's flags and pinned to
//! one core; `wrk` (Debian package `wrk`) on the other core drives it: a warm-up run, then a
//! measured run whose req/s, p99 and p99.9 are compared with the same round's baseline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::http;
use crate::jvm::{self, AgentStats};
use crate::noise::CpuMeter;
use crate::plan::Plan;
use crate::process::{self, Proc};
use crate::sidecar::free_port;
use crate::stats::{round, summarize, Ci, Summary};
use crate::throughput::{cpu_split, paired_gain, paired_loss, round_order, Monitor};
use crate::tools::{Scratch, Tools};

/// Where Debian's Tomcat 10 lives (CATALINA_HOME).
pub const HOME: &str = "/usr/share/tomcat10";
/// The Debian packages this section needs, installed when missing and root.
pub const PACKAGES: [&str; 2] = ["tomcat10-common", "wrk"];
/// The configurations run unless `--configs` names others.
pub const DEFAULT_CONFIGS: [Monitor; 3] = [Monitor::None, Monitor::Jvmwatch, Monitor::JfrDefault];
/// Configurations that make sense for Tomcat (mxbean-10hz needs the bench's own classes, the
/// sidecar is measured in section 1).
const ALLOWED: [Monitor; 10] = [
    Monitor::None,
    Monitor::Hsperfdata,
    Monitor::Jvmwatch,
    Monitor::JvmwatchMonitorOff,
    Monitor::JvmwatchGcNotify,
    Monitor::JvmwatchGcPoll100,
    Monitor::JfrDefault,
    Monitor::JfrProfile,
    Monitor::GcLog,
    Monitor::Waker,
];

const SERVLET: &str = include_str!("../../java/benchservlet/WorkServlet.java");
const PATH: &str = "/work?n=40";

/// The wrk script: one `WRK ...` line with the figures after the run (latencies in µs).
const WRK_LUA: &str = r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"#;

/// One measured wrk run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WrkResult {
    /// Requests completed.
    pub requests: u64,
    /// Run length, µs.
    pub duration_us: u64,
    /// Socket errors, timeouts and non-2xx/3xx responses.
    pub errors: u64,
    /// Latency percentiles, µs.
    pub p50_us: u64,
    /// 99th.
    pub p99_us: u64,
    /// 99.9th.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl WrkResult {
    /// Parses wrk's output (the `WRK` line the script prints).
    pub fn parse(out: &str) -> Result<WrkResult> {
        let line =
            out.lines().find_map(|l| l.strip_prefix("WRK ")).with_context(|| format!("no WRK line in {out:?}"))?;
        let mut r = WrkResult::default();
        for kv in line.split_whitespace() {
            let (k, v) = kv.split_once('=').with_context(|| format!("bad WRK field {kv:?}"))?;
            let v: u64 = v.parse().with_context(|| format!("bad WRK value {kv:?}"))?;
            match k {
                "requests" => r.requests = v,
                "duration_us" => r.duration_us = v,
                "errors" => r.errors = v,
                "p50_us" => r.p50_us = v,
                "p99_us" => r.p99_us = v,
                "p999_us" => r.p999_us = v,
                "max_us" => r.max_us = v,
                _ => {}
            }
        }
        ensure!(r.duration_us > 0 && r.requests > 0, "wrk completed no request: {line:?}");
        Ok(r)
    }

    /// Requests per second.
    pub fn per_s(&self) -> f64 {
        self.requests as f64 * 1e6 / self.duration_us as f64
    }
}

/// One round of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct TomcatRun {
    /// Round (0-based).
    pub round: usize,
    /// Requests per second in the measured run.
    pub req_per_s: f64,
    /// Latency percentiles in the measured run, ms.
    pub p50_ms: f64,
    /// 99th.
    pub p99_ms: f64,
    /// 99.9th.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// wrk's error count in the measured run.
    pub errors: u64,
    /// Requests per second in the warm-up run.
    pub warmup_req_per_s: f64,
    /// Tomcat's process CPU (utime + stime) per request in the measured run, ns.
    pub cpu_per_req_ns: Option<f64>,
    /// The agent's ring afterwards (jvmwatch configurations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStats>,
    /// CPU other processes used during the run, % of one core.
    pub foreign_cpu_pct: f64,
}

/// One configuration over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct TomcatConfig {
    /// Configuration name (as in section 1).
    pub name: &'static str,
    /// Its flags.
    pub flags: &'static str,
    /// `ok` or `failed: ...`.
    pub status: String,
    /// Every successful run.
    pub runs: Vec<TomcatRun>,
    /// Every failed run's error.
    pub errors: Vec<String>,
    /// min/median/max of req/s.
    pub req_per_s: Option<Summary>,
    /// min/median/max of p99, ms.
    pub p99_ms: Option<Summary>,
    /// min/median/max of p99.9, ms.
    pub p999_ms: Option<Summary>,
    /// min/median/max of CPU per request, ns.
    pub cpu_per_req_ns: Option<Summary>,
    /// Paired req/s lost against the baseline, %, with its 95 % bootstrap interval.
    pub req_loss_pct: Option<Ci>,
    /// Paired p99 added, %, with its interval.
    pub p99_gain_pct: Option<Ci>,
    /// Paired p99.9 added, %, with its interval.
    pub p999_gain_pct: Option<Ci>,
    /// Paired CPU per request added, %, with its interval.
    pub cpu_cost_pct: Option<Ci>,
}

/// The section's results.
#[derive(Clone, Debug, Serialize)]
pub struct TomcatBench {
    /// `ok` or `skipped: ...`.
    pub status: String,
    /// What was installed, and versions.
    pub software: Vec<String>,
    /// What runs.
    pub description: String,
    /// Which CPU each process ran on.
    pub pinning: String,
    /// The order configurations ran in, per round.
    pub orders: Vec<Vec<&'static str>>,
    /// Per configuration, baseline first.
    pub configs: Vec<TomcatConfig>,
}

fn skipped(why: String) -> TomcatBench {
    TomcatBench {
        status: format!("skipped: {why}"),
        software: Vec::new(),
        description: String::new(),
        pinning: String::new(),
        orders: Vec::new(),
        configs: Vec::new(),
    }
}

fn have_wrk() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

fn have_tomcat() -> bool {
    Path::new(HOME).join("bin/bootstrap.jar").exists() && Path::new(HOME).join("lib/servlet-api.jar").exists()
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    let install = || {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
    };
    let out = install().context("cannot run apt-get")?;
    if out.status.success() {
        return Ok(());
    }
    // Perhaps the package lists are missing or stale.
    let _ = Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=300", "update"]).output();
    let out = install().context("cannot run apt-get")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("apt-get install {} failed: {}", pkgs.join(" "), err.lines().last().unwrap_or("").trim());
    }
    Ok(())
}

/// Installs what is missing when root; else says why the section cannot run.
fn ensure_software() -> std::result::Result<Vec<String>, String> {
    let missing: Vec<&str> =
        PACKAGES.into_iter().filter(|p| if *p == "wrk" { !have_wrk() } else { !have_tomcat() }).collect();
    let mut notes = Vec::new();
    if !missing.is_empty() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(format!("{} not installed and not root (apt-get install -y {0})", missing.join(" ")));
        }
        eprintln!("[tomcat] apt-get install -y {}", missing.join(" "));
        apt_install(&missing).map_err(|e| format!("{e:#}"))?;
        notes.push(format!("installed by this run: {}", missing.join(" ")));
    }
    if !have_tomcat() || !have_wrk() {
        return Err(format!("{} and wrk must be present after installing {}", HOME, PACKAGES.join(" ")));
    }
    for p in PACKAGES {
        let v = Command::new("dpkg-query").args(["-W", "-f=${Version}", p]).output();
        let v = v.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
        notes.push(format!("{p} {}", if v.is_empty() { "(version unknown)" } else { &v }));
    }
    Ok(notes)
}

/// `javac` beside `java`, else from PATH.
fn javac(tools: &Tools) -> PathBuf {
    tools.java.parent().map(|d| d.join("javac")).filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("javac"))
}

/// Compiles the servlet into `dir` (a WEB-INF/classes tree).
fn compile_servlet(tools: &Tools, src_dir: &Path, dir: &Path) -> Result<()> {
    let src = src_dir.join("WorkServlet.java");
    std::fs::write(&src, SERVLET)?;
    let out = Command::new(javac(tools))
        .args(["--release", "17", "-nowarn", "-cp"])
        .arg(Path::new(HOME).join("lib/servlet-api.jar"))
        .arg("-d")
        .arg(dir)
        .arg(&src)
        .output()
        .context("cannot run javac")?;
    ensure!(out.status.success(), "javac WorkServlet.java failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Writes a CATALINA_BASE in `base` listening on 127.0.0.1:`port` with the servlet at
/// /work, its classes copied from `classes`.
fn write_base(base: &Path, port: u16, classes: &Path) -> Result<()> {
    for d in ["conf", "logs", "temp", "work", "webapps/ROOT/WEB-INF/classes/bench", "webapps/ROOT/META-INF"] {
        std::fs::create_dir_all(base.join(d))?;
    }
    std::fs::write(
        base.join("conf/server.xml"),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"#
        ),
    )?;
    std::fs::write(
        base.join("webapps/ROOT/WEB-INF/web.xml"),
        r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">
  <servlet><servlet-name>work</servlet-name><servlet-class>bench.WorkServlet</servlet-class></servlet>
  <servlet-mapping><servlet-name>work</servlet-name><url-pattern>/work</url-pattern></servlet-mapping>
</web-app>
"#,
    )?;
    std::fs::write(
        base.join("webapps/ROOT/META-INF/context.xml"),
        "<Context><JarScanner scanClassPath=\"false\" scanManifest=\"false\"/></Context>\n",
    )?;
    for e in std::fs::read_dir(classes.join("bench"))?.flatten() {
        std::fs::copy(e.path(), base.join("webapps/ROOT/WEB-INF/classes/bench").join(e.file_name()))?;
    }
    Ok(())
}

struct Ctx<'a> {
    plan: &'a Plan,
    tools: &'a Tools,
    scratch: &'a Scratch,
    classes: PathBuf,
    lua: PathBuf,
    split: Option<(usize, usize)>,
}

/// Runs the section: `only` names configurations (the baseline always runs).
pub fn run(plan: &Plan, tools: &Tools, scratch: &Scratch, only: Option<&[String]>) -> Result<TomcatBench> {
    if plan.smoke {
        return Ok(skipped("--smoke (the Tomcat section runs in full and --quick runs)".into()));
    }
    let software = match ensure_software() {
        Ok(s) => s,
        Err(why) => return Ok(skipped(why)),
    };
    let monitors: Vec<Monitor> = match only {
        Some(names) => {
            ALLOWED.into_iter().filter(|m| *m == Monitor::None || names.iter().any(|n| n == m.name())).collect()
        }
        None => DEFAULT_CONFIGS.to_vec(),
    };
    let classes = scratch.disk_dir("tomcat-classes")?;
    compile_servlet(tools, &scratch.disk, &classes)?;
    let lua = scratch.disk.join("wrk-report.lua");
    std::fs::write(&lua, WRK_LUA)?;
    let split = cpu_split();
    let ctx = Ctx { plan, tools, scratch, classes, lua, split };
    let mut outcomes: Vec<(Vec<TomcatRun>, Vec<String>)> = monitors.iter().map(|_| Default::default()).collect();
    let mut orders = Vec::new();
    let total = plan.tomcat_rounds * monitors.len();
    let mut done = 0;
    for round_no in 0..plan.tomcat_rounds {
        let order = round_order(plan.seed, 0x746f_6d63_6174_0000, round_no, monitors.len());
        orders.push(order.iter().map(|&i| monitors[i].name()).collect());
        for &mi in &order {
            done += 1;
            let tag = format!("[tomcat {done}/{total}] round {} {:<12}", round_no + 1, monitors[mi].name());
            let started = Instant::now();
            match run_one(&ctx, monitors[mi], round_no) {
                Ok(r) => {
                    eprintln!(
                        "{tag} {:>9.0} req/s, p99 {:.2} ms, p99.9 {:.2} ms ({:.1} s, other processes {:.0} % of a core)",
                        r.req_per_s,
                        r.p99_ms,
                        r.p999_ms,
                        started.elapsed().as_secs_f64(),
                        r.foreign_cpu_pct
                    );
                    outcomes[mi].0.push(r);
                }
                Err(e) => {
                    eprintln!("{tag} FAILED: {e:#}");
                    outcomes[mi].1.push(format!("round {round_no}: {e:#}"));
                }
            }
        }
    }
    let base = outcomes[0].0.clone();
    let configs = monitors
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(mi, (&m, (runs, errors)))| {
            let seed = plan.seed ^ (0x746f_6d00 + mi as u64);
            let sum = |f: fn(&TomcatRun) -> Option<f64>| summarize(&runs.iter().filter_map(f).collect::<Vec<_>>());
            TomcatConfig {
                name: m.name(),
                flags: m.describe(),
                status: if runs.is_empty() {
                    format!("failed: {}", errors.first().map_or("no run", |s| s.as_str()))
                } else {
                    "ok".into()
                },
                req_per_s: sum(|r| Some(r.req_per_s)),
                p99_ms: sum(|r| Some(r.p99_ms)),
                p999_ms: sum(|r| Some(r.p999_ms)),
                cpu_per_req_ns: sum(|r| r.cpu_per_req_ns),
                req_loss_pct: paired_loss(&runs, &base, seed, |r| r.round, |r| Some(r.req_per_s)),
                p99_gain_pct: paired_gain(&runs, &base, seed ^ 1, |r| r.round, |r| Some(r.p99_ms)),
                p999_gain_pct: paired_gain(&runs, &base, seed ^ 2, |r| r.round, |r| Some(r.p999_ms)),
                cpu_cost_pct: paired_gain(&runs, &base, seed ^ 3, |r| r.round, |r| r.cpu_per_req_ns),
                runs,
                errors,
            }
        })
        .collect();
    Ok(TomcatBench {
        status: "ok".into(),
        software,
        description: format!(
            "Tomcat {HOME} (Bootstrap with a private CATALINA_BASE, one HTTP/1.1 connector on 127.0.0.1, default \
             thread pool), G1, -Xms{h} -Xmx{h}; one servlet: GET {PATH} builds, sorts and renders 40 records as JSON \
             (~3 KB), as HttpWork does. wrk -t1 -c{c} (keep-alive, closed loop): a {w} s warm-up run, then a {m} s \
             measured run; latencies are wrk's (µs histogram).",
            h = plan.tomcat_heap,
            c = plan.tomcat_conns,
            w = plan.tomcat_warmup.as_secs(),
            m = plan.tomcat_measure.as_secs(),
        ),
        pinning: match split {
            Some((j, c)) => format!("Tomcat's JVM on CPU {j}, wrk on CPU {c}"),
            None => "none: fewer than 2 CPUs available".into(),
        },
        orders,
        configs,
    })
}

/// Runs wrk for `d` (whole seconds, at least 1) against `addr`.
fn wrk(ctx: &Ctx<'_>, addr: SocketAddr, d: Duration) -> Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{}", ctx.plan.tomcat_conns),
        &format!("-d{}s", d.as_secs().max(1)),
        "--timeout",
        "5s",
    ])
    .arg("-s")
    .arg(&ctx.lua)
    .arg(format!("http://{addr}{PATH}"));
    if let Some((_, client)) = ctx.split {
        process::pin(&mut cmd, client);
    }
    let out = cmd.output().context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "wrk failed: {} {}", text, String::from_utf8_lossy(&out.stderr));
    WrkResult::parse(&text)
}

fn run_one(ctx: &Ctx<'_>, m: Monitor, round_no: usize) -> Result<TomcatRun> {
    let meter = CpuMeter::start();
    let tag = format!("tc-{}-r{round_no}", m.name().replace('+', "-"));
    let ring_dir = ctx.scratch.shm_dir(&tag)?;
    let disk_dir = ctx.scratch.disk_dir(&tag)?;
    let base = disk_dir.join("base");
    let port = free_port()?;
    write_base(&base, port, &ctx.classes)?;
    let home = Path::new(HOME);
    let mut cmd = Command::new(&ctx.tools.java);
    cmd.args(["-XX:-CreateCoredumpOnCrash", "-XX:+UseG1GC"])
        .args(m.flags(ctx.tools, &ring_dir, &disk_dir))
        .args([format!("-Xms{}", ctx.plan.tomcat_heap), format!("-Xmx{}", ctx.plan.tomcat_heap)])
        .arg("-XX:+AlwaysPreTouch")
        // As Debian's catalina.sh does for Java 9+.
        .args([
            "--add-opens=java.base/java.lang=ALL-UNNAMED",
            "--add-opens=java.base/java.io=ALL-UNNAMED",
            "--add-opens=java.base/java.util=ALL-UNNAMED",
            "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
            "--add-opens=java.rmi/sun.rmi.transport=ALL-UNNAMED",
        ])
        .arg(format!("-Dcatalina.home={HOME}"))
        .arg(format!("-Dcatalina.base={}", base.display()))
        .arg(format!("-Djava.io.tmpdir={}", base.join("temp").display()))
        .arg("-cp")
        .arg(format!("{}:{}", home.join("bin/bootstrap.jar").display(), home.join("bin/tomcat-juli.jar").display()))
        .args(["org.apache.catalina.startup.Bootstrap", "start"]);
    if let Some((jvm_cpu, _)) = ctx.split {
        process::pin(&mut cmd, jvm_cpu);
    }
    let pinned = ctx.split.map(|(jvm_cpu, _)| jvm_cpu);
    let _waker = (m == Monitor::Waker).then(|| crate::waker::Waker::on_jvm_cpus(pinned)).transpose()?;
    let mut p = Proc::spawn(cmd, "Tomcat", &disk_dir.join("tomcat.stderr"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok((200, _)) = http::get_once(addr, PATH, Duration::from_secs(2)) {
            break;
        }
        if Instant::now() > end {
            bail!("Tomcat did not answer {PATH} on {addr} within 90 s{}", p.stderr_tail());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let warm = wrk(ctx, addr, ctx.plan.tomcat_warmup)?;
    let cpu0 = p.cpu_ns();
    let meas = wrk(ctx, addr, ctx.plan.tomcat_measure)?;
    let cpu1 = p.cpu_ns();
    p.terminate(Duration::from_secs(20));
    let mut run = TomcatRun {
        round: round_no,
        req_per_s: round(meas.per_s(), 1),
        p50_ms: meas.p50_us as f64 / 1000.0,
        p99_ms: meas.p99_us as f64 / 1000.0,
        p999_ms: meas.p999_us as f64 / 1000.0,
        max_ms: meas.max_us as f64 / 1000.0,
        errors: meas.errors,
        warmup_req_per_s: round(warm.per_s(), 1),
        cpu_per_req_ns: cpu0.zip(cpu1).map(|(a, b)| round(b.saturating_sub(a) as f64 / meas.requests as f64, 1)),
        agent: None,
        foreign_cpu_pct: 0.0,
    };
    match m {
        m if m.is_jvmwatch() => {
            let a = jvm::agent_stats(&ring_dir)?;
            ensure!(a.events > 0, "the agent's ring has no events: did the agent load?");
            run.agent = Some(a);
        }
        Monitor::JfrDefault | Monitor::JfrProfile => {
            ensure!(disk_dir.join("rec.jfr").exists(), "JFR wrote no recording");
        }
        _ => {}
    }
    let _ = std::fs::remove_dir_all(&ring_dir);
    let _ = std::fs::remove_dir_all(&disk_dir);
    run.foreign_cpu_pct = round(meter.foreign_pct(), 1);
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_line() {
        let out = "Running 1s test\n  1 threads\nWRK requests=2000 duration_us=1000000 errors=0 p50_us=300 p99_us=900 \
                   p999_us=2000 max_us=5000\n";
        let r = WrkResult::parse(out).unwrap();
        assert_eq!((r.requests, r.p99_us, r.p999_us), (2000, 900, 2000));
        assert_eq!(r.per_s(), 2000.0);
        assert!(WrkResult::parse("nothing").is_err());
    }
}

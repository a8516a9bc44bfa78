//! The sidecar under load: `jvmwatch serve` following N real JVMs (default 50, each running the
//! mostly idle `IdleService` under the agent). Measures the sidecar's CPU share and RSS while
//! it follows them, and the latency of `/metrics` (keep-alive GETs, one every 2 ms, like a
//! scraper that never stops) with all N JVMs in the exposition.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::http::Conn;
use crate::jvm;
use crate::process::Proc;
use crate::sidecar::Serve;
use crate::stats::{percentiles, Percentiles};
use crate::tools::{Scratch, Tools};

/// What the load test measured.
#[derive(Debug, Serialize)]
pub struct ServeLoad {
    /// JVMs followed.
    pub jvms: usize,
    /// Length of the CPU measurement, s.
    pub measured_s: f64,
    /// Sidecar CPU time over the measurement / wall time, in % of one core.
    pub cpu_percent_of_core: f64,
    /// Sidecar resident memory at the end, MiB.
    pub rss_mib: f64,
    /// `/metrics` response time, ms.
    pub metrics_latency_ms: Percentiles,
    /// Size of one `/metrics` response, bytes.
    pub metrics_bytes: usize,
}

/// Runs the load test.
pub fn run(tools: &Tools, scratch: &Scratch, jvms: usize, measure: Duration, requests: usize) -> Result<ServeLoad> {
    let dir = scratch.shm_dir("serve-load")?;
    let logs = scratch.disk_dir("serve-load-logs")?;
    eprintln!("  serve load: starting {jvms} JVMs under the agent");
    let max = measure + Duration::from_secs(120 + jvms as u64);
    let mut procs: Vec<Proc> = Vec::with_capacity(jvms);
    for i in 0..jvms {
        let flags = vec![
            jvm::agent_flag(tools, &format!("dir={}", dir.display())),
            "-Xmx32m".to_string(),
            "-XX:TieredStopAtLevel=1".to_string(),
            "-XX:CICompilerCount=1".to_string(),
            "-Xss256k".to_string(),
        ];
        let cmd = jvm::command(tools, &flags, "IdleService", &[], max);
        let mut p = Proc::spawn(cmd, "IdleService", &logs.join(format!("jvm-{i}.err")))?;
        p.expect_line("ready", Duration::from_secs(60))?;
        procs.push(p);
    }
    let serve = Serve::start(tools, &dir, &logs.join("serve.err"))?;
    // Wait until every JVM is listed, then let the service settle.
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = crate::http::get_once(serve.addr, "/api/v1/jvms", Duration::from_secs(5))?;
        let listed = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.iter().filter(|j| j["verdict"] == "running").count()))
            .unwrap_or(0);
        if status == 200 && listed == jvms {
            break;
        }
        if Instant::now() > end {
            bail!("the service lists {listed} running JVMs, not {jvms}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("  serve load: measuring the sidecar's CPU for {:.0} s", measure.as_secs_f64());
    let cpu0 = serve.proc.cpu_ns().context("sidecar CPU time")?;
    let t0 = Instant::now();
    std::thread::sleep(measure);
    let cpu1 = serve.proc.cpu_ns().context("sidecar CPU time")?;
    let wall = t0.elapsed().as_secs_f64();
    let rss = serve.proc.rss_kib().unwrap_or(0) as f64 / 1024.0;
    eprintln!("  serve load: {requests} GET /metrics");
    let mut conn = Conn::connect(serve.addr, "/metrics", Duration::from_secs(10))?;
    let mut lat = Vec::with_capacity(requests);
    let mut bytes = 0;
    for _ in 0..requests {
        let t = Instant::now();
        let (status, n) = conn.get()?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        bytes = n;
        std::thread::sleep(Duration::from_millis(2));
    }
    serve.stop();
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ServeLoad {
        jvms,
        measured_s: wall,
        cpu_percent_of_core: (cpu1 - cpu0) as f64 / 1e9 / wall * 100.0,
        rss_mib: rss,
        metrics_latency_ms: percentiles(&lat).context("no requests")?,
        metrics_bytes: bytes,
    })
}

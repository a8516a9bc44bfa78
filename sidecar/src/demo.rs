//! `jvmwatch demo`: runs the bundled demo workload under the agent, shows progress while it
//! runs, then prints the inspect report of its ring.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use jvmwatch_ring::Ring;

use crate::report;

static DEMO_CLASS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo-classes/JvmwatchDemo.class"));

/// The `java` to launch: `$JAVA_HOME/bin/java` if it exists, else `java` from `PATH`.
pub fn java_command() -> PathBuf {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let p = Path::new(&home).join("bin/java");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("java")
}

/// The agent library: `$JVMWATCH_AGENT`, else `libjvmwatch.so` beside this executable.
pub fn agent_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("JVMWATCH_AGENT") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot locate the jvmwatch executable")?;
    let p = exe.with_file_name("libjvmwatch.so");
    if !p.exists() {
        bail!("cannot find {} (build it with `cargo build --release`, or set JVMWATCH_AGENT)", p.display());
    }
    Ok(p)
}

/// Runs the demo for `seconds`, writing its ring into `dir`; returns the ring's path.
pub fn run(seconds: u64, dir: &Path) -> Result<PathBuf> {
    let agent = agent_path()?;
    let classes = std::env::temp_dir().join(format!("jvmwatch-demo-{}", std::process::id()));
    std::fs::create_dir_all(&classes)?;
    std::fs::write(classes.join("JvmwatchDemo.class"), DEMO_CLASS)?;
    jvmwatch_ring::ensure_dir(dir)?;
    let mut child = Command::new(java_command())
        .arg(format!("-agentpath:{}=dir={}", agent.display(), dir.display()))
        .args(["-Xmx256m", "-XX:+UseG1GC", "-cp"])
        .arg(&classes)
        .arg("JvmwatchDemo")
        .arg(seconds.to_string())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {} (install JDK 17+ or set JAVA_HOME)", java_command().display()))?;
    let prefix = format!("{}-", child.id());
    let started = Instant::now();
    let mut ring_path = None;
    eprintln!("jvmwatch demo: running a {seconds} s workload (pid {}) under the agent", child.id());
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(500));
        if ring_path.is_none() {
            ring_path = find_ring(dir, &prefix);
        }
        if let Some(p) = &ring_path {
            if let Ok(line) = progress(p) {
                eprint!("\r  [{:>4.1} s / {seconds} s] {line}    ", started.elapsed().as_secs_f64());
                let _ = std::io::stderr().flush();
            }
        }
    };
    eprintln!();
    let _ = std::fs::remove_dir_all(&classes);
    let path = ring_path
        .or_else(|| find_ring(dir, &prefix))
        .context("the demo JVM wrote no ring file (see the agent's message above)")?;
    if !status.success() {
        eprintln!("jvmwatch demo: the workload exited with {status}");
    }
    Ok(path)
}

fn find_ring(dir: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".ring")))
}

fn progress(path: &Path) -> Result<String> {
    let ring = Ring::open(path)?;
    let live = ring.live()?;
    let heap = ring.snapshot()?.map(|s| crate::text::bytes(&s.heap_used.into())).unwrap_or_else(|| "-".into());
    Ok(format!("heap {heap}, {} GC pauses, {} events", live.gc_pauses, live.cursor))
}

/// Runs the demo and prints its report.
pub fn main(seconds: u64, dir: &Path) -> Result<()> {
    let path = run(seconds, dir)?;
    let r = report::inspect(&path, 15)?;
    println!("{}", crate::text::render(&r));
    println!("Inspect it again any time: jvmwatch inspect {}", path.display());
    Ok(())
}

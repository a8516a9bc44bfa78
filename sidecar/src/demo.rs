//! `jvmwatch demo`: runs the bundled demo workload under the agent together with the service,
//! prints the console URL and progress, and on Ctrl-C (or after `--seconds`) stops both and
//! prints the inspect report of the demo JVM's ring.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jvmwatch_ring::Ring;

use crate::report;
use crate::serve::{self, Server};

include!(concat!(env!("OUT_DIR"), "/demo_classes.rs"));

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

/// The agent library: see [`crate::agentpath`].
pub fn agent_path() -> Result<PathBuf> {
    Ok(crate::agentpath::agent_path()?)
}

/// A fresh private directory (mode 0700, unpredictable name) holding the demo's classes.
/// Every file is created new (`O_EXCL`), so nothing planted beforehand is followed.
pub fn private_class_dir() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("jvmwatch-demo-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .context("cannot make a temporary directory")?;
    for (rel, bytes) in DEMO_CLASSES {
        let p = dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .and_then(|mut f| f.write_all(bytes))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(dir)
}

/// Starts the demo workload (classes in `classes`) under the agent; it writes its ring into
/// `dir`. `seconds` = 0 runs until stopped.
pub fn spawn_workload(dir: &Path, seconds: u64, classes: &Path) -> Result<Child> {
    let agent = agent_path()?;
    jvmwatch_ring::ensure_dir(dir)?;
    Command::new(java_command())
        .arg(format!("-agentpath:{}=dir={}", agent.display(), dir.display()))
        .args(["-Xmx256m", "-XX:+UseG1GC", "-Djvmwatch.app=demo-shop", "-cp"])
        .arg(classes)
        .arg("JvmwatchDemo")
        .arg(seconds.to_string())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {} (install JDK 17+ or set JAVA_HOME)", java_command().display()))
}

/// The ring written by process `pid` in `dir`, once it exists.
pub fn find_ring(dir: &Path, pid: u32) -> Option<PathBuf> {
    let prefix = format!("{pid}-");
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".ring"))
    })
}

fn progress(path: &Path) -> Result<String> {
    let ring = Ring::open(path)?;
    let live = ring.live()?;
    let heap = ring.snapshot()?.map(|s| crate::text::bytes(&s.heap_used.into())).unwrap_or_else(|| "-".into());
    Ok(format!("heap {heap}, {} GC pauses, {} events", live.gc_pauses, live.cursor))
}

fn stop_child(child: &mut Child) {
    // SIGTERM lets the JVM shut down cleanly, so its ring records the exit.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `jvmwatch demo`.
pub fn main(seconds: u64, dir: &Path, listen: &str) -> Result<()> {
    let cfg = serve::Config::new(dir.to_path_buf(), listen, None)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let classes = private_class_dir()?;
    let path = rt.block_on(async {
        jvmwatch_ring::ensure_dir(dir)?;
        let server = Server::start(cfg).await.context("cannot start the service (try --listen 127.0.0.1:0)")?;
        let mut child = spawn_workload(dir, seconds, classes.path())?;
        let pid = child.id();
        eprintln!(
            "jvmwatch demo: workload pid {pid} runs under the agent; {}",
            match seconds {
                0 => "Ctrl-C stops it".to_string(),
                s => format!("stops after {s} s (Ctrl-C stops it sooner)"),
            }
        );
        let started = Instant::now();
        let mut ring = None;
        let stop = serve::wait_for_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => { eprintln!(); break; }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("\njvmwatch demo: the workload ended ({status})");
                break;
            }
            if ring.is_none() {
                ring = find_ring(dir, pid);
                if let Some(p) = &ring {
                    let id = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    println!("console: http://{}/?jvm={id}", server.addr);
                    println!("ring:    {}", p.display());
                }
            }
            if let Some(line) = ring.as_deref().and_then(|p| progress(p).ok()) {
                eprint!("\r  [{:>5.1} s] {line}    ", started.elapsed().as_secs_f64());
                let _ = std::io::stderr().flush();
            }
        }
        let mut child = child;
        tokio::task::spawn_blocking(move || stop_child(&mut child)).await?;
        server.stop().await;
        ring.or_else(|| find_ring(dir, pid)).context("the demo JVM wrote no ring file (see the agent's message above)")
    });
    drop(classes);
    let path = path?;
    let r = report::inspect(&path, 15)?;
    println!("{}", crate::text::render(&r));
    println!("Inspect it again any time: jvmwatch inspect {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::PermissionsExt;

    #[test]
    fn class_dir_is_private_and_fresh() {
        let a = super::private_class_dir().unwrap();
        let b = super::private_class_dir().unwrap();
        assert_ne!(a.path(), b.path());
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(a.path().join("JvmwatchDemo.class").is_file());
    }
}

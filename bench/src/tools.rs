//! What the harness runs: the JDK, the built agent and sidecar, the Java workloads (embedded,
//! written to a scratch directory), and facts about the machine for the results.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

mod classes {
    include!(concat!(env!("OUT_DIR"), "/classes.rs"));
}

/// Scratch directories for one harness run, removed when dropped: `shm` on tmpfs (ring files,
/// as the agent's default directory is), `disk` on the temp directory's file system (JFR
/// recordings and GC logs, where users keep them; the workload classes).
#[derive(Debug)]
pub struct Scratch {
    /// On tmpfs (`/dev/shm`), or the temp dir where there is none.
    pub shm: PathBuf,
    /// Under the temp directory.
    pub disk: PathBuf,
}

impl Scratch {
    /// Creates both directories (mode 0700).
    pub fn new() -> Result<Scratch> {
        let tag = format!("jvmwatch-bench-{}-{:x}", std::process::id(), jvmwatch_ring::now_ns() & 0xffff_ffff);
        let shm_root = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let s = Scratch { shm: shm_root.join(&tag), disk: std::env::temp_dir().join(&tag) };
        for d in [&s.shm, &s.disk] {
            jvmwatch_ring::ensure_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(s)
    }

    /// A fresh sub-directory of `shm` (for one run's ring files).
    pub fn shm_dir(&self, name: &str) -> Result<PathBuf> {
        fresh(&self.shm.join(name))
    }

    /// A fresh sub-directory of `disk`.
    pub fn disk_dir(&self, name: &str) -> Result<PathBuf> {
        fresh(&self.disk.join(name))
    }
}

fn fresh(d: &Path) -> Result<PathBuf> {
    let _ = std::fs::remove_dir_all(d);
    jvmwatch_ring::ensure_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(d.to_path_buf())
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.shm);
        let _ = std::fs::remove_dir_all(&self.disk);
    }
}

/// Paths of everything the harness launches.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `java`.
    pub java: PathBuf,
    /// `libjvmwatch.so`.
    pub agent: PathBuf,
    /// The `jvmwatch` sidecar.
    pub jvmwatch: PathBuf,
    /// Directory holding the workload classes.
    pub classes: PathBuf,
}

/// `$JAVA_HOME/bin/java` if it exists, else `java` from `PATH`.
pub fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|h| Path::new(&h).join("bin/java"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// `$var`, else the first of `name` beside this executable, in `target/release`, or in
/// `target/debug` (the harness may be a debug build while the agent is a release one).
fn built(var: &str, name: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!("{var}={} does not exist", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot locate the harness executable")?;
    let dir = exe.parent().context("executable has no directory")?;
    // Test binaries live one level deeper, in target/<profile>/deps.
    let profile_dir = if dir.ends_with("deps") { dir.parent().unwrap_or(dir) } else { dir };
    let target = profile_dir.parent().unwrap_or(profile_dir);
    let candidates = [profile_dir.join(name), target.join("release").join(name), target.join("debug").join(name)];
    candidates.iter().find(|p| p.exists()).cloned().with_context(|| {
        format!("cannot find {name} beside {} (run `cargo build --release` first, or set {var})", exe.display())
    })
}

impl Tools {
    /// Finds the JDK and the built artifacts and writes the workload classes into `scratch`.
    pub fn find(scratch: &Scratch) -> Result<Tools> {
        let java = java();
        let out = Command::new(&java)
            .arg("-version")
            .output()
            .with_context(|| format!("cannot run {} (install JDK 17+ or set JAVA_HOME)", java.display()))?;
        if !out.status.success() {
            bail!("{} -version failed", java.display());
        }
        let agent = built("JVMWATCH_AGENT", "libjvmwatch.so")?;
        let jvmwatch = built("JVMWATCH_BIN", "jvmwatch")?;
        let classes = scratch.disk.join("classes");
        std::fs::create_dir_all(&classes)?;
        for (name, bytes) in classes::CLASSES {
            std::fs::write(classes.join(name), bytes)?;
        }
        Ok(Tools { java, agent, jvmwatch, classes })
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// `java -version`, first two lines.
    pub java: String,
    /// Load average when the run started.
    pub loadavg_start: String,
}

/// Which agent and sidecar a run measured: CRC-32 and size of each file, so that runs can be
/// told apart (or pooled) later. An identity check, not a security one.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Build {
    /// `libjvmwatch.so`: "crc32 <hex>, <bytes> bytes", or why it could not be read.
    pub agent: String,
    /// The `jvmwatch` binary, likewise.
    pub sidecar: String,
}

impl Build {
    /// Reads both files.
    pub fn of(tools: &Tools) -> Build {
        Build { agent: file_id(&tools.agent), sidecar: file_id(&tools.jvmwatch) }
    }
}

/// "crc32 <hex>, <bytes> bytes" of a file, or "unreadable: <why>".
fn file_id(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => format!("crc32 {:08x}, {} bytes", crc32fast::hash(&bytes), bytes.len()),
        Err(e) => format!("unreadable: {e}"),
    }
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The current 1/5/15-minute load average.
pub fn loadavg() -> String {
    read_trim("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

impl Machine {
    /// Reads /proc and asks `java -version`.
    pub fn describe(tools: &Tools) -> Machine {
        let cpuinfo = read_trim("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let memory_mib = read_trim("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        let java = Command::new(&tools.java)
            .arg("-version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).lines().take(2).collect::<Vec<_>>().join(" / "))
            .unwrap_or_default();
        Machine {
            cpu,
            cpus,
            memory_mib,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            java,
            loadavg_start: loadavg(),
        }
    }
}

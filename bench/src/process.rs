//! Child processes: the JVM workloads and the sidecar. Standard output is read line by line on
//! a thread (so waiting for a line has a deadline); standard error goes to a file whose tail is
//! quoted when something fails. Every child is killed and reaped when its handle drops.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running child with its output lines.
pub struct Proc {
    child: Child,
    what: String,
    lines: Receiver<String>,
    stderr_path: PathBuf,
    /// The child's standard input (piped); dropping it closes it.
    pub stdin: Option<ChildStdin>,
}

impl Proc {
    /// Spawns `cmd` with stdin piped, stdout read into lines, stderr into `stderr_path`.
    pub fn spawn(mut cmd: Command, what: &str, stderr_path: &Path) -> Result<Proc> {
        let err = File::create(stderr_path).with_context(|| format!("cannot create {}", stderr_path.display()))?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("cannot start {what}: {cmd:?}"))?;
        let out = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Proc { child, what: what.to_string(), lines, stderr_path: stderr_path.to_path_buf(), stdin })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for a stdout line starting with `prefix`; returns the rest of it.
    pub fn expect_line(&mut self, prefix: &str, limit: Duration) -> Result<String> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return Ok(rest.trim().to_string());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!("{} printed no {prefix:?} line within {limit:?}{}", self.what, self.stderr_tail())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    bail!("{} ended ({status:?}) without a {prefix:?} line{}", self.what, self.stderr_tail())
                }
            }
        }
    }

    /// Waits up to `limit` for the child to exit by itself; kills it after that.
    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not exit within {limit:?}; killed{}", self.what, self.stderr_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL now, then reap.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        let _ = self.child.kill();
        Ok(self.child.wait()?)
    }

    /// SIGTERM, then SIGKILL if still there after `grace`; reaps.
    pub fn terminate(&mut self, grace: Duration) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet (try_wait said
            // it is running), so the pid cannot have been reused.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let _ = self.wait(grace);
    }

    /// `: <last lines of stderr>` for error messages, or nothing.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        format!(": stderr: {}", lines[lines.len().saturating_sub(6)..].join(" | "))
    }

    /// CPU time (user + system) the child used so far, ns (from /proc/<pid>/stat).
    pub fn cpu_ns(&self) -> Option<u64> {
        cpu_ns(self.pid())
    }

    /// Resident set size of the child, KiB (from /proc/<pid>/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// utime + stime of `pid` in ns.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks * 1_000_000_000 / hz as u64)
}

/// The CPUs this harness may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data (all zeroes is the empty set); sched_getaffinity writes at
    // most size_of::<cpu_set_t>() bytes into it, and CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Runs `cmd`'s process (and so every thread it creates) on `cpu` only.
pub fn pin(cmd: &mut Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec; it only fills a cpu_set_t
    // on its stack and calls sched_setaffinity(2), which is async-signal-safe, and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs the calling thread on `cpu` only.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: as in `pin`: a stack cpu_set_t and sched_setaffinity(0 = this thread).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// On-CPU time so far (ns, from /proc/<pid>/task/<tid>/schedstat) of each thread of `pid` whose
/// name (`comm`, at most 15 bytes) is one of `names`: (tid, name, ns).
pub fn threads_cpu_ns(pid: u32, names: &[&str]) -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?.trim_end().to_string();
            if !names.contains(&comm.as_str()) {
                return None;
            }
            Some((tid, comm, schedstat_run_ns(&e.path().join("schedstat"))?))
        })
        .collect()
}

/// A thread's on-CPU time so far, ns: the first field of a `schedstat` file
/// (`/proc/<pid>/task/<tid>/schedstat`, `/proc/thread-self/schedstat`).
pub fn schedstat_run_ns(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.split_whitespace().next()?.parse().ok()
}

/// CPU the threads in `after` used since `before` (both from [`threads_cpu_ns`]), ns. A thread
/// absent from `before` started meanwhile and counts from zero; one that ended meanwhile is lost.
pub fn threads_cpu_delta(before: &[(u32, String, u64)], after: &[(u32, String, u64)]) -> u64 {
    after.iter().map(|(tid, _, ns)| ns.saturating_sub(before.iter().find(|b| b.0 == *tid).map_or(0, |b| b.2))).sum()
}

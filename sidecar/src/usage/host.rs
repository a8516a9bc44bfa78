//! What a process used (`/proc/PID/stat`, `statm`, `io`); what the host and a process were
//! given (processor, class, hypervisor, cgroup limits, affinity) comes from the shared
//! `jvmwatch-hostfacts` crate, re-exported here.

pub use jvmwatch_hostfacts::*;

/// CPU time (user + system) of process `pid`, nanoseconds.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state field (3).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * (1_000_000_000 / clk_tck()))
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Resident set size of `pid`, bytes.
pub fn rss(pid: u32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: i64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as i64;
    Some(pages * page)
}

/// (read_bytes, write_bytes) of `pid` from `/proc/PID/io` (None when not permitted).
pub fn io(pid: u32) -> Option<(i64, i64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let get = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<i64>().ok());
    Some((get("read_bytes:")?, get("write_bytes:")?))
}

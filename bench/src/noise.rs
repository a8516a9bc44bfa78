//! How much CPU other processes used during a measurement: the machine's busy time
//! (/proc/stat) minus what this harness and its reaped children used (/proc/self/stat utime,
//! stime, cutime, cstime). Measured around runs whose children have all been waited for, so
//! what is left is "foreign": another build, another test, the kernel's unattributed work.

use std::time::Instant;

/// A measurement in progress.
#[derive(Debug)]
pub struct CpuMeter {
    busy0: u64,
    own0: u64,
    t0: Instant,
}

/// Busy ticks of all CPUs (everything but idle and iowait), from /proc/stat.
fn machine_busy_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // counted in user, so only the first eight fields add up.
    let total: u64 = v.iter().take(8).sum();
    total.saturating_sub(v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0))
}

/// This process's CPU plus that of its children it has waited for, in ticks.
fn own_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(close) = s.rfind(')') else { return 0 };
    let f: Vec<u64> = s[close + 2..].split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // Fields 14..=17 (utime, stime, cutime, cstime) are at 11..=14 after the state field.
    f.get(11..15).map_or(0, |x| x.iter().sum())
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

impl CpuMeter {
    /// Starts measuring.
    pub fn start() -> CpuMeter {
        CpuMeter { busy0: machine_busy_ticks(), own0: own_ticks(), t0: Instant::now() }
    }

    /// CPU used by processes outside this harness's tree since [`CpuMeter::start`], in % of one
    /// core. Call after every child started since then has been waited for.
    pub fn foreign_pct(&self) -> f64 {
        let busy = machine_busy_ticks().saturating_sub(self.busy0);
        let own = own_ticks().saturating_sub(self.own0);
        let wall = self.t0.elapsed().as_secs_f64().max(1e-3);
        busy.saturating_sub(own) as f64 / ticks_per_s() / wall * 100.0
    }
}

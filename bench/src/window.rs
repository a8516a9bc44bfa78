//! One run's timing: a warm-up that lasts until the per-second rate stops rising (at least
//! `min`, at most `max`), then a measured window bracketed by marks (the workload's operation
//! count) and by reads of the JVM's CPU (process, and the named threads).

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::process;
use crate::stats::round;

/// A workload's counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mark {
    /// Operations completed so far.
    pub ops: u64,
    /// The workload's own clock at the mark, ns (when it reports one: then the window is timed
    /// by it rather than by this harness).
    pub nanos: Option<u64>,
    /// Collections so far (when the workload reports them).
    pub gcs: Option<u64>,
    /// Collection time so far, ms (likewise).
    pub gc_ms: Option<u64>,
}

/// When the warm-up ends.
#[derive(Clone, Copy, Debug)]
pub struct Warmup {
    /// It lasts at least this long...
    pub min: Duration,
    /// ... and at most this long.
    pub max: Duration,
}

/// Rates are taken per second; "settled" compares the mean of the last `SPAN` rates with the
/// mean of the `SPAN` before them.
const SPAN: usize = 5;
/// Still rising while the later mean exceeds the earlier by more than this, %.
pub const RISING_PCT: f64 = 0.5;

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    /// How long the warm-up lasted, ms.
    pub warmup_ms: u64,
    /// `settled` (the rate stopped rising) or `cap` (the maximum was reached first).
    pub warmup_end: &'static str,
    /// Operations in the measured window.
    pub ops: u64,
    /// The window, ns.
    pub nanos: u64,
    /// Collections in the window (when reported).
    pub gcs: Option<u64>,
    /// Collection time in the window, ms (when reported).
    pub gc_ms: Option<u64>,
    /// The JVM process's CPU (utime + stime, /proc/<pid>/stat) in the window, ns.
    pub jvm_cpu_ns: Option<u64>,
    /// CPU of each group of threads named in the call (schedstat) in the window, ns, in the
    /// call's order.
    pub threads_cpu_ns: Vec<u64>,
}

impl Window {
    /// Operations per second in the window.
    pub fn per_s(&self) -> f64 {
        self.ops as f64 * 1e9 / self.nanos.max(1) as f64
    }

    /// JVM CPU per operation, ns.
    pub fn cpu_per_op_ns(&self) -> Option<f64> {
        self.jvm_cpu_ns.filter(|_| self.ops > 0).map(|c| round(c as f64 / self.ops as f64, 2))
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// True when the last `SPAN` per-second rates are, on average, no more than [`RISING_PCT`]
/// above the `SPAN` before them.
pub fn settled(rates: &[f64]) -> bool {
    if rates.len() < 2 * SPAN {
        return false;
    }
    let n = rates.len();
    let (before, last) = (mean(&rates[n - 2 * SPAN..n - SPAN]), mean(&rates[n - SPAN..]));
    last <= before * (1.0 + RISING_PCT / 100.0)
}

/// Warms up by `rule`, then measures `measure`: `mark` reads the workload's counters, `pid` is
/// the JVM, `groups` the groups of thread names whose CPU is summed (one sum per group).
pub fn run(
    mark: &mut dyn FnMut() -> Result<Mark>,
    pid: u32,
    rule: Warmup,
    measure: Duration,
    groups: &[&[&str]],
) -> Result<Window> {
    let names: Vec<&str> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    let t0 = Instant::now();
    let mut prev = (mark()?, Instant::now());
    let mut rates = Vec::new();
    let mut tick = 1;
    let warmup_end = loop {
        let elapsed = t0.elapsed();
        if elapsed >= rule.max {
            break "cap";
        }
        if elapsed >= rule.min && settled(&rates) {
            break "settled";
        }
        let next = (t0 + Duration::from_secs(tick)).min(t0 + rule.max);
        tick += 1;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let m = (mark()?, Instant::now());
        let dt = (m.1 - prev.1).as_secs_f64().max(1e-6);
        rates.push(m.0.ops.saturating_sub(prev.0.ops) as f64 / dt);
        prev = m;
    };
    let warmup_ms = t0.elapsed().as_millis() as u64;
    let (m0, w0) = (mark()?, Instant::now());
    let (cpu0, th0) = (process::cpu_ns(pid), process::threads_cpu_ns(pid, &names));
    std::thread::sleep(measure);
    let (m1, w1) = (mark()?, Instant::now());
    let (cpu1, th1) = (process::cpu_ns(pid), process::threads_cpu_ns(pid, &names));
    let group_cpu = |g: &[&str]| {
        let only =
            |v: &[(u32, String, u64)]| v.iter().filter(|t| g.contains(&t.1.as_str())).cloned().collect::<Vec<_>>();
        process::threads_cpu_delta(&only(&th0), &only(&th1))
    };
    let diff = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
    Ok(Window {
        warmup_ms,
        warmup_end,
        ops: m1.ops.saturating_sub(m0.ops),
        nanos: diff(m0.nanos, m1.nanos).unwrap_or((w1 - w0).as_nanos() as u64),
        gcs: diff(m0.gcs, m1.gcs),
        gc_ms: diff(m0.gc_ms, m1.gc_ms),
        jvm_cpu_ns: diff(cpu0, cpu1),
        threads_cpu_ns: groups.iter().map(|g| group_cpu(g)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_when_the_rate_stops_rising() {
        let rising: Vec<f64> = (0..12).map(|i| 100.0 + 10.0 * i as f64).collect();
        assert!(!settled(&rising));
        let flat: Vec<f64> = (0..12).map(|i| if i < 2 { 50.0 } else { 100.0 + (i % 2) as f64 * 0.2 }).collect();
        assert!(settled(&flat));
        assert!(!settled(&[100.0; 9]));
    }
}

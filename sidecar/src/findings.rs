//! How a JVM died and what led there: pure functions over what the ring holds, so tests
//! (and later the rules engine) can call them directly. Thresholds are documented in
//! `docs/inspect.md`; keep both in step.

use jvmwatch_ring::{Event, Record, State};
use serde::Serialize;

/// How the writer ended (or that it has not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The writer's lock is held: the JVM is alive.
    Running,
    /// VM death was recorded: a clean shutdown.
    Exited,
    /// The writer is gone and left a crash report (`hs_err_pid<PID>.log`).
    Crashed,
    /// The writer is gone without a clean exit or a crash report (SIGKILL, OOM killer, ...).
    Killed,
}

impl Verdict {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Running => "running",
            Verdict::Exited => "exited",
            Verdict::Crashed => "crashed",
            Verdict::Killed => "killed",
        }
    }
}

/// The verdict from the writer's liveness, its recorded state and whether a crash report
/// exists.
pub fn verdict(writer_alive: bool, state: Option<State>, crash_report: bool) -> Verdict {
    if writer_alive {
        Verdict::Running
    } else if state == Some(State::Exited) {
        Verdict::Exited
    } else if crash_report {
        Verdict::Crashed
    } else {
        Verdict::Killed
    }
}

/// Window over which GC time share is judged.
pub const GC_WINDOW_NS: u64 = 10_000_000_000;
/// `gc_thrash` when stop-the-world pauses took at least this share of the window...
pub const GC_THRASH_SHARE: f64 = 0.25;
/// ... or when the heap after GC is at least this share of the max while pauses took at
/// least [`GC_THRASH_SHARE_WITH_FULL_HEAP`] of the window.
pub const GC_THRASH_HEAP_AFTER_GC: f64 = 0.90;
/// See [`GC_THRASH_HEAP_AFTER_GC`].
pub const GC_THRASH_SHARE_WITH_FULL_HEAP: f64 = 0.05;
/// `heap_exhausted` when the heap after GC is at least this share of the max.
pub const HEAP_EXHAUSTED_AFTER_GC: f64 = 0.95;

/// Share of the `window_ns` ending at `end_ns` spent in GC pauses, from pause-end events
/// (a pause that began before the window counts only its part inside it). `records` are in
/// sequence order; they are walked from the newest back to the window's start only.
pub fn gc_pause_share<'a, I>(records: I, end_ns: u64, window_ns: u64) -> f64
where
    I: IntoIterator<Item = &'a Record>,
    I::IntoIter: DoubleEndedIterator,
{
    let start = end_ns.saturating_sub(window_ns);
    let mut paused = 0u64;
    // Event times are taken before the sequence is reserved, so neighbours may be a little out
    // of order: stop only well before the window (one extra second of slack).
    for r in records.into_iter().rev().take_while(|r| r.time_ns.saturating_add(1_000_000_000) >= start) {
        if let Event::GcPauseEnd { duration_ns, .. } = r.event {
            if r.time_ns < start || r.time_ns > end_ns {
                continue;
            }
            let began = r.time_ns.saturating_sub(duration_ns).max(start);
            paused += r.time_ns - began;
        }
    }
    paused as f64 / window_ns.max(1) as f64
}

/// Inputs to [`findings`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts {
    /// Writer holds its lock.
    pub writer_alive: bool,
    /// Age of the last heartbeat, ns (now − heartbeat), for a live writer.
    pub heartbeat_age_ns: u64,
    /// Sampler interval, ns.
    pub interval_ns: u64,
    /// A GC pause is in progress (the writer is stopped by the VM, not hung).
    pub gc_in_progress: bool,
    /// Share of the last [`GC_WINDOW_NS`] in GC pauses.
    pub gc_share: f64,
    /// Heap used after the last GC divided by heap max, if both are known.
    pub heap_after_gc_ratio: Option<f64>,
    /// A resource-exhausted event is in the ring.
    pub oom: bool,
    /// A deadlock event is in the ring.
    pub deadlock: bool,
    /// The history shows the heap after GC trending up ([`crate::history::heap_leak`]).
    pub heap_leak: bool,
    /// The history shows live threads piling up ([`crate::history::thread_leak`]).
    pub thread_leak: bool,
}

/// `hung` when the live writer's heartbeat is older than this many intervals...
pub const HUNG_INTERVALS: u64 = 10;
/// ... and older than this (ns).
pub const HUNG_MIN_NS: u64 = 2_000_000_000;

/// The findings, in a stable order.
pub fn findings(f: &Facts) -> Vec<&'static str> {
    let mut out = Vec::new();
    if f.oom {
        out.push("oom");
    }
    if f.deadlock {
        out.push("deadlock");
    }
    let full = f.heap_after_gc_ratio.unwrap_or(0.0);
    if f.gc_share >= GC_THRASH_SHARE
        || (full >= GC_THRASH_HEAP_AFTER_GC && f.gc_share >= GC_THRASH_SHARE_WITH_FULL_HEAP)
    {
        out.push("gc_thrash");
    }
    if full >= HEAP_EXHAUSTED_AFTER_GC {
        out.push("heap_exhausted");
    }
    if f.heap_leak {
        out.push("heap_leak");
    }
    if f.thread_leak {
        out.push("thread_leak");
    }
    let stale = f.heartbeat_age_ns > (HUNG_INTERVALS * f.interval_ns).max(HUNG_MIN_NS);
    if f.writer_alive && stale && !f.gc_in_progress {
        out.push("hung");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jvmwatch_ring::Collector;

    fn pause(end_ms: u64, dur_ms: u64) -> Record {
        Record {
            seq: 0,
            time_ns: end_ms * 1_000_000,
            event: Event::GcPauseEnd { gc_id: 1, collector: Collector::G1, duration_ns: dur_ms * 1_000_000 },
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(true, Some(State::Exited), true), Verdict::Running);
        assert_eq!(verdict(false, Some(State::Exited), true), Verdict::Exited);
        assert_eq!(verdict(false, Some(State::Running), true), Verdict::Crashed);
        assert_eq!(verdict(false, Some(State::Running), false), Verdict::Killed);
        assert_eq!(verdict(false, None, false), Verdict::Killed);
    }

    #[test]
    fn pause_share_clips_to_window() {
        let recs = [pause(5_000, 4000), pause(10_500, 1000), pause(15_000, 2000), pause(20_000, 1000)];
        // Window 10 s..20 s: 1000 + 2000 + 500 (clipped) = 3.5 s.
        let share = gc_pause_share(&recs, 20_000_000_000, GC_WINDOW_NS);
        assert!((share - 0.35).abs() < 1e-9, "{share}");
    }

    #[test]
    fn thresholds() {
        let base = Facts { interval_ns: 100_000_000, ..Facts::default() };
        assert!(findings(&base).is_empty());
        assert_eq!(findings(&Facts { oom: true, ..base }), ["oom"]);
        assert_eq!(findings(&Facts { deadlock: true, oom: true, ..base }), ["oom", "deadlock"]);
        assert_eq!(findings(&Facts { gc_share: 0.3, ..base }), ["gc_thrash"]);
        assert_eq!(findings(&Facts { gc_share: 0.06, heap_after_gc_ratio: Some(0.92), ..base }), ["gc_thrash"]);
        assert_eq!(findings(&Facts { gc_share: 0.01, heap_after_gc_ratio: Some(0.97), ..base }), ["heap_exhausted"]);
        let hung = Facts { writer_alive: true, heartbeat_age_ns: 3_000_000_000, ..base };
        assert_eq!(findings(&hung), ["hung"]);
        assert!(findings(&Facts { gc_in_progress: true, ..hung }).is_empty());
        assert!(findings(&Facts { writer_alive: false, ..hung }).is_empty());
        assert!(findings(&Facts { heartbeat_age_ns: 1_000_000_000, ..hung }).is_empty());
    }
}

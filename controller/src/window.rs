//! Bounded per-instance series storage.
//!
//! A [`History`] belongs to one JVM instance. The caller pushes every sample; the history keeps
//! each series for `keep` (the controller's `history`) plus one point before the cutoff, and never
//! more than `max_points` points per series. With the defaults (`history = 15m`,
//! `sample_every = 1s`) that is `900 + 2 = 902` points per series, see
//! [`crate::ControllerCfg::max_points`].
//!
//! Memory: a plain point is 16 bytes (`u64` time, `f64` value). A histogram point is 48 bytes
//! plus 8 bytes per bucket between its lowest and highest non-zero bucket (cumulative buckets of
//! a timer usually span a few dozen of the 116). The `VecDeque`s grow to their bound and keep it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// One cumulative histogram sample (a timer: count, sum in milliseconds, per-bucket counts).
#[derive(Clone, Debug, PartialEq)]
pub struct HistPoint {
    /// Sample time, milliseconds (the caller's clock).
    pub t_ms: u64,
    /// Cumulative number of recorded values.
    pub count: u64,
    /// Cumulative sum of recorded values, milliseconds.
    pub sum_ms: f64,
    /// Index of `buckets[0]`: zero buckets at both ends are not stored.
    lo: usize,
    buckets: Box<[u64]>,
}

impl HistPoint {
    /// Builds a point from full per-bucket cumulative counts.
    pub fn new(t_ms: u64, count: u64, sum_ms: f64, buckets: &[u64]) -> HistPoint {
        let lo = buckets.iter().position(|&b| b != 0).unwrap_or(buckets.len());
        let hi = buckets.iter().rposition(|&b| b != 0).map_or(lo, |i| i + 1);
        HistPoint { t_ms, count, sum_ms, lo, buckets: buckets[lo..hi].into() }
    }

    /// The cumulative count of bucket `i` (0 when not stored).
    pub fn bucket(&self, i: usize) -> u64 {
        i.checked_sub(self.lo).and_then(|j| self.buckets.get(j)).copied().unwrap_or(0)
    }

    /// The stored bucket index range (`lo..hi`); buckets outside it are zero.
    pub fn bucket_range(&self) -> std::ops::Range<usize> {
        self.lo..self.lo + self.buckets.len()
    }
}

/// Per-instance series storage, bounded in time and in points.
#[derive(Clone, Debug)]
pub struct History {
    keep_ms: u64,
    max_points: usize,
    started_ms: Option<u64>,
    series: HashMap<String, VecDeque<(u64, f64)>>,
    hists: HashMap<String, VecDeque<HistPoint>>,
}

impl Default for History {
    /// A history for the default config (15 min, 902 points per series).
    fn default() -> History {
        History::for_config(&crate::ControllerCfg::default())
    }
}

impl History {
    /// A history keeping `keep` (plus one earlier point) and at most `max_points` points per
    /// series (at least 2).
    pub fn new(keep: Duration, max_points: usize) -> History {
        History {
            keep_ms: u64::try_from(keep.as_millis()).unwrap_or(u64::MAX),
            max_points: max_points.max(2),
            started_ms: None,
            series: HashMap::new(),
            hists: HashMap::new(),
        }
    }

    /// A history sized for `cfg`: keeps `cfg.history`, at most [`crate::ControllerCfg::max_points`].
    pub fn for_config(cfg: &crate::ControllerCfg) -> History {
        History::new(cfg.history, cfg.max_points())
    }

    /// The time of the first point ever pushed (windowed aggregations need the history to cover
    /// 80 % of their window, counted from here).
    pub fn started_ms(&self) -> Option<u64> {
        self.started_ms
    }

    /// Appends a point to a plain series (a gauge or a cumulative counter).
    ///
    /// Returns false, and keeps nothing, when `v` is not finite or `t_ms` is older than the
    /// series' newest point; a point at the same time replaces the newest one.
    pub fn push(&mut self, name: &str, t_ms: u64, v: f64) -> bool {
        if !v.is_finite() {
            return false;
        }
        let dq = match self.series.get_mut(name) {
            Some(dq) => dq,
            None => self.series.entry(name.to_string()).or_default(),
        };
        match dq.back_mut() {
            Some(last) if last.0 > t_ms => return false,
            Some(last) if last.0 == t_ms => last.1 = v,
            _ => dq.push_back((t_ms, v)),
        }
        trim(dq, t_ms, self.keep_ms, self.max_points, |p| p.0);
        self.started_ms = Some(self.started_ms.map_or(t_ms, |s| s.min(t_ms)));
        true
    }

    /// Appends a cumulative histogram point (a timer): count, sum in milliseconds and the
    /// per-bucket cumulative counts (bucket `i` as the ring numbers it).
    ///
    /// Returns false, and keeps nothing, when `sum_ms` is not finite or `t_ms` is older than the
    /// newest point; a point at the same time replaces the newest one.
    pub fn push_hist(&mut self, name: &str, t_ms: u64, count: u64, sum_ms: f64, buckets: &[u64]) -> bool {
        if !sum_ms.is_finite() {
            return false;
        }
        let dq = match self.hists.get_mut(name) {
            Some(dq) => dq,
            None => self.hists.entry(name.to_string()).or_default(),
        };
        let p = HistPoint::new(t_ms, count, sum_ms, buckets);
        match dq.back_mut() {
            Some(last) if last.t_ms > t_ms => return false,
            Some(last) if last.t_ms == t_ms => *last = p,
            _ => dq.push_back(p),
        }
        trim(dq, t_ms, self.keep_ms, self.max_points, |p| p.t_ms);
        self.started_ms = Some(self.started_ms.map_or(t_ms, |s| s.min(t_ms)));
        true
    }

    /// Trims every series to `now_ms - keep` (one earlier point stays) and drops empty ones.
    /// Pushing trims the series pushed to; call this for series that stopped receiving points.
    pub fn trim(&mut self, now_ms: u64) {
        let (keep, max) = (self.keep_ms, self.max_points);
        self.series.retain(|_, dq| {
            trim(dq, now_ms, keep, max, |p| p.0);
            !dq.is_empty()
        });
        self.hists.retain(|_, dq| {
            trim(dq, now_ms, keep, max, |p| p.t_ms);
            !dq.is_empty()
        });
    }

    /// The points of a plain series, oldest first.
    pub fn series(&self, name: &str) -> Option<&VecDeque<(u64, f64)>> {
        self.series.get(name)
    }

    /// The points of a histogram series, oldest first.
    pub fn hist(&self, name: &str) -> Option<&VecDeque<HistPoint>> {
        self.hists.get(name)
    }

    /// Total points held (plain and histogram), for accounting.
    pub fn len_points(&self) -> usize {
        self.series.values().map(VecDeque::len).sum::<usize>() + self.hists.values().map(VecDeque::len).sum::<usize>()
    }

    /// Whether windowed aggregations over `window_ms` may be computed at `now_ms`: the history
    /// must cover at least 80 % of the window.
    pub(crate) fn covers(&self, now_ms: u64, window_ms: u64) -> bool {
        match self.started_ms {
            Some(s) => u128::from(now_ms.saturating_sub(s)) * 5 >= u128::from(window_ms) * 4,
            None => false,
        }
    }
}

fn trim<T>(dq: &mut VecDeque<T>, now_ms: u64, keep_ms: u64, max_points: usize, t: impl Fn(&T) -> u64) {
    if let Some(cutoff) = now_ms.checked_sub(keep_ms) {
        while dq.len() >= 2 && dq.get(1).is_some_and(|p| t(p) <= cutoff) {
            dq.pop_front();
        }
    }
    while dq.len() > max_points {
        dq.pop_front();
    }
}

/// The index range of the points with time in `(now - window, now]` (all points up to `now`
/// when `window_ms` is `None`).
pub(crate) fn window_range<T>(
    dq: &VecDeque<T>,
    now_ms: u64,
    window_ms: Option<u64>,
    t: impl Fn(&T) -> u64,
) -> std::ops::Range<usize> {
    let end = dq.partition_point(|p| t(p) <= now_ms);
    let start = match window_ms.and_then(|w| now_ms.checked_sub(w)) {
        Some(cutoff) => dq.partition_point(|p| t(p) <= cutoff),
        None => 0,
    };
    start.min(end)..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_by_time_and_count() {
        let mut h = History::new(Duration::from_secs(10), 1000);
        for t in 0..=30 {
            assert!(h.push("x", t * 1000, t as f64));
        }
        let s = h.series("x").unwrap();
        // (20s, 30s] plus the point at 20s just before the cutoff.
        assert_eq!(s.front().unwrap().0, 20_000);
        assert_eq!(s.len(), 11);

        let mut h = History::new(Duration::from_secs(3600), 5);
        for t in 0..100 {
            h.push("x", t, 1.0);
        }
        assert_eq!(h.series("x").unwrap().len(), 5);
        assert_eq!(h.len_points(), 5);
    }

    #[test]
    fn rejects_bad_points() {
        let mut h = History::new(Duration::from_secs(10), 100);
        assert!(h.push("x", 5, 1.0));
        assert!(!h.push("x", 4, 1.0));
        assert!(!h.push("x", 6, f64::NAN));
        assert!(h.push("x", 5, 2.0));
        assert_eq!(h.series("x").unwrap().len(), 1);
        assert_eq!(h.series("x").unwrap()[0].1, 2.0);
        assert!(!h.push_hist("h", 1, 1, f64::INFINITY, &[]));
        assert!(h.push_hist("h", 1, 2, 3.0, &[0, 0, 1, 0, 1, 0]));
        let p = &h.hist("h").unwrap()[0];
        assert_eq!((p.bucket(1), p.bucket(2), p.bucket(3), p.bucket(4), p.bucket(99)), (0, 1, 0, 1, 0));
        assert_eq!(p.bucket_range(), 2..5);
    }

    #[test]
    fn trim_drops_stale_series() {
        let mut h = History::new(Duration::from_secs(10), 100);
        h.push("x", 0, 1.0);
        h.push("x", 1000, 1.0);
        h.trim(60_000);
        assert_eq!(h.series("x").unwrap().len(), 1);
        assert!(h.covers(60_000, 60_000));
        assert!(!h.covers(1000, 60_000));
    }

    #[test]
    fn ranges() {
        let dq: VecDeque<(u64, f64)> = (0..10).map(|t| (t * 10, 0.0)).collect();
        assert_eq!(window_range(&dq, 50, Some(20), |p| p.0), 4..6);
        assert_eq!(window_range(&dq, 50, None, |p| p.0), 0..6);
        assert_eq!(window_range(&dq, 5, Some(100), |p| p.0), 0..1);
    }
}

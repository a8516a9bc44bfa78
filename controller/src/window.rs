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

use crate::series_store::Series;
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
    series: HashMap<String, Series>,
    hists: HashMap<String, VecDeque<HistPoint>>,
    /// Per histogram: the time of the newest point whose count is lower than the one before
    /// it (a reset). A window starting at or after it holds no reset, so its change is last −
    /// first, without walking the points. (Plain series keep theirs in [`Series`].)
    hist_drops: HashMap<String, u64>,
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
            hist_drops: HashMap::new(),
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
        let keep_ms = self.keep_ms;
        let max_points = self.max_points;
        let series = match self.series.get_mut(name) {
            Some(s) => s,
            None => self.series.entry(name.to_string()).or_default(),
        };
        if !series.push(t_ms, v) {
            return false;
        }
        series.trim(t_ms.checked_sub(keep_ms), max_points);
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
        let dropped = match dq.back_mut() {
            Some(last) if last.t_ms > t_ms => return false,
            Some(last) if last.t_ms == t_ms => {
                *last = p;
                dq.len() >= 2 && dq.get(dq.len() - 2).is_some_and(|q| count < q.count)
            }
            Some(last) => {
                let d = count < last.count;
                dq.push_back(p);
                d
            }
            None => {
                dq.push_back(p);
                false
            }
        };
        trim(dq, t_ms, self.keep_ms, self.max_points, |p| p.t_ms);
        if dropped {
            self.hist_drops.insert(name.to_string(), t_ms);
        }
        self.started_ms = Some(self.started_ms.map_or(t_ms, |s| s.min(t_ms)));
        true
    }

    /// Trims every series to `now_ms - keep` (one earlier point stays) and drops empty ones.
    /// Pushing trims the series pushed to; call this for series that stopped receiving points.
    pub fn trim(&mut self, now_ms: u64) {
        let (keep, max) = (self.keep_ms, self.max_points);
        self.series.retain(|_, s| {
            s.trim(now_ms.checked_sub(keep), max);
            !s.points().is_empty()
        });
        self.hists.retain(|_, dq| {
            trim(dq, now_ms, keep, max, |p| p.t_ms);
            !dq.is_empty()
        });
    }

    /// The points of a plain series, oldest first.
    pub fn series(&self, name: &str) -> Option<&VecDeque<(u64, f64)>> {
        self.series.get(name).map(Series::points)
    }

    /// A plain series with its aggregate helpers.
    pub(crate) fn series_store(&self, name: &str) -> Option<&Series> {
        self.series.get(name)
    }

    /// The points of a histogram series, oldest first.
    pub fn hist(&self, name: &str) -> Option<&VecDeque<HistPoint>> {
        self.hists.get(name)
    }

    /// Total points held (plain and histogram), for accounting.
    pub fn len_points(&self) -> usize {
        self.series.values().map(|s| s.points().len()).sum::<usize>()
            + self.hists.values().map(VecDeque::len).sum::<usize>()
    }

    /// Whether windowed aggregations over `window_ms` may be computed at `now_ms`: the history
    /// must cover at least 80 % of the window.
    /// Whether series `name` may hold a counter reset after `from_ms` (the start of a window).
    #[cfg(test)]
    pub(crate) fn series_reset_after(&self, name: &str, from_ms: u64) -> bool {
        self.series.get(name).is_some_and(|s| s.reset_after(from_ms))
    }

    /// Whether histogram `name` may hold a reset after `from_ms`.
    pub(crate) fn hist_reset_after(&self, name: &str, from_ms: u64) -> bool {
        self.hist_drops.get(name).is_some_and(|t| *t > from_ms)
    }

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
///
/// Evaluation calls this for every instance and rule, over histories far larger than the CPU
/// caches, so it avoids binary searches (each step a cache miss): the end is almost always
/// the newest point, and the start is guessed from the (nearly even) spacing of the points
/// and corrected by a few steps; an uneven series falls back to the binary search.
pub(crate) fn window_range<T>(
    dq: &VecDeque<T>,
    now_ms: u64,
    window_ms: Option<u64>,
    t: impl Fn(&T) -> u64,
) -> std::ops::Range<usize> {
    let n = dq.len();
    let end = match dq.back() {
        None => return 0..0,
        Some(p) if t(p) <= now_ms => n,
        Some(_) => dq.partition_point(|p| t(p) <= now_ms),
    };
    let start = match window_ms.and_then(|w| now_ms.checked_sub(w)) {
        Some(cutoff) => first_after(dq, end, cutoff, &t),
        None => 0,
    };
    start.min(end)..end
}

/// The first index in `0..end` whose time is after `cutoff` (`end` if none): the same as
/// `partition_point(|p| t(p) <= cutoff)` over `0..end`.
fn first_after<T>(dq: &VecDeque<T>, end: usize, cutoff: u64, t: &impl Fn(&T) -> u64) -> usize {
    const STEPS: usize = 8;
    let at = |i: usize| dq.get(i).map_or(u64::MAX, t);
    if end == 0 {
        return 0;
    }
    let (t0, t1) = (at(0), at(end - 1));
    if t1 <= cutoff {
        return end;
    }
    if t0 > cutoff {
        return 0;
    }
    // t0 <= cutoff < t1: interpolate, then walk to the boundary.
    let span = u128::from(t1 - t0);
    let mut i = (u128::from(cutoff - t0) * (end - 1) as u128 / span) as usize + 1;
    i = i.min(end);
    for _ in 0..STEPS {
        let before_ok = i == 0 || at(i - 1) <= cutoff;
        let here_ok = i == end || at(i) > cutoff;
        match (before_ok, here_ok) {
            (true, true) => return i,
            (false, _) => i -= 1,
            (true, false) => i += 1,
        }
    }
    let (mut lo, mut hi) = (0, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if at(mid) <= cutoff {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn matches_a_binary_search_on_even_uneven_and_duplicate_times() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m.max(1)
        };
        for case in 0..2000 {
            let len = rnd(60) as usize;
            let mut t = rnd(5000);
            let dq: VecDeque<(u64, f64)> = (0..len)
                .map(|_| {
                    // Mostly even steps, sometimes gaps, duplicates of time are not pushed.
                    t += if case % 3 == 0 { 1 + rnd(3000) } else { 1000 };
                    (t, 0.0)
                })
                .collect();
            for _ in 0..20 {
                let now = rnd(t + 3000);
                let w = rnd(70_000);
                let want_end = dq.partition_point(|p| p.0 <= now);
                let want_start = now.checked_sub(w).map_or(0, |c| dq.partition_point(|p| p.0 <= c)).min(want_end);
                assert_eq!(window_range(&dq, now, Some(w), |p| p.0), want_start..want_end, "{dq:?} now {now} w {w}");
                assert_eq!(window_range(&dq, now, None, |p| p.0), 0..want_end);
            }
        }
    }
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

#[cfg(test)]
mod reset_tests {
    use super::*;

    #[test]
    fn resets_are_remembered_by_time() {
        let mut h = History::new(Duration::from_secs(3600), 1000);
        for (t, v) in [(0, 5.0), (1000, 9.0), (2000, 2.0), (3000, 4.0)] {
            h.push("c", t, v);
        }
        assert!(h.series_reset_after("c", 0));
        assert!(h.series_reset_after("c", 1000));
        assert!(!h.series_reset_after("c", 2000), "a window starting at the reset holds none");
        assert!(!h.series_reset_after("other", 0));
        h.push_hist("h", 0, 10, 1.0, &[10]);
        h.push_hist("h", 1000, 3, 1.0, &[3]);
        assert!(h.hist_reset_after("h", 0));
        assert!(!h.hist_reset_after("h", 1000));
    }
}

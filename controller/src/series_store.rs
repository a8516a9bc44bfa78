//! One plain series of a [`crate::History`]: its points plus what makes window aggregates
//! cheap over histories much larger than the CPU caches — running sums (`avg` in O(1)), the
//! min/max of each block of [`BLOCK`] points (`min`/`max` in O(window / BLOCK + BLOCK)) and
//! the time of the last counter reset (`rate`/`increase` in O(1) when the window holds none).

use std::collections::VecDeque;
use std::ops::Range;

/// Points per min/max block.
pub const BLOCK: u64 = 32;

/// A plain series (gauge or cumulative counter).
#[derive(Clone, Debug, Default)]
pub struct Series {
    points: VecDeque<(u64, f64)>,
    /// Running sum through each point (sum of every value pushed up to it).
    cum: VecDeque<f64>,
    /// The running sum just before `points[0]`.
    cum0: f64,
    /// Number of points ever dropped from the front: the absolute index of `points[0]`.
    base: u64,
    /// (min, max) of each block of absolute indexes `k*BLOCK..(k+1)*BLOCK`, from block
    /// `base_block` on.
    blocks: VecDeque<(f64, f64)>,
    base_block: u64,
    /// Time of the newest point lower than the one before it (a counter reset).
    last_drop_ms: Option<u64>,
}

impl Series {
    /// The points, oldest first.
    pub fn points(&self) -> &VecDeque<(u64, f64)> {
        &self.points
    }

    /// Appends `(t, v)`, or replaces the newest point when `t` equals its time. False (and
    /// nothing kept) when `t` is older than the newest point.
    pub(crate) fn push(&mut self, t: u64, v: f64) -> bool {
        match self.points.back().map(|p| p.0) {
            Some(last) if last > t => false,
            Some(last) if last == t => {
                let n = self.points.len();
                let old = self.points[n - 1].1;
                self.points[n - 1].1 = v;
                if let Some(c) = self.cum.back_mut() {
                    *c += v - old;
                }
                if n >= 2 && v < self.points[n - 2].1 {
                    self.last_drop_ms = Some(t);
                }
                self.rebuild_last_block();
                true
            }
            _ => {
                if self.points.back().is_some_and(|p| v < p.1) {
                    self.last_drop_ms = Some(t);
                }
                let abs = self.base + self.points.len() as u64;
                let c = self.cum.back().copied().unwrap_or(self.cum0) + v;
                self.points.push_back((t, v));
                self.cum.push_back(c);
                let block = abs / BLOCK;
                if self.blocks.is_empty() {
                    self.base_block = block;
                }
                if block == self.base_block + self.blocks.len() as u64 {
                    self.blocks.push_back((v, v));
                } else if let Some(b) = self.blocks.back_mut() {
                    *b = (b.0.min(v), b.1.max(v));
                }
                true
            }
        }
    }

    fn rebuild_last_block(&mut self) {
        let n = self.points.len() as u64;
        if n == 0 {
            return;
        }
        let last_abs = self.base + n - 1;
        let start_abs = (last_abs / BLOCK * BLOCK).max(self.base);
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for p in self.points.range((start_abs - self.base) as usize..) {
            (lo, hi) = (lo.min(p.1), hi.max(p.1));
        }
        if let Some(b) = self.blocks.back_mut() {
            *b = (lo, hi);
        }
    }

    /// Drops the oldest point.
    pub(crate) fn pop_front(&mut self) {
        if self.points.pop_front().is_none() {
            return;
        }
        if let Some(c) = self.cum.pop_front() {
            self.cum0 = c;
        }
        self.base += 1;
        // A block whose points are all gone goes too; a partly trimmed one stays, and is
        // never used whole (a window never reaches before `points[0]`).
        while self.base / BLOCK > self.base_block && !self.blocks.is_empty() {
            self.blocks.pop_front();
            self.base_block += 1;
        }
        if self.points.is_empty() {
            self.blocks.clear();
        }
    }

    /// Keeps the points after `cutoff` plus the one just before it, at most `max_points`.
    pub(crate) fn trim(&mut self, cutoff: Option<u64>, max_points: usize) {
        if let Some(cutoff) = cutoff {
            while self.points.len() >= 2 && self.points.get(1).is_some_and(|p| p.0 <= cutoff) {
                self.pop_front();
            }
        }
        while self.points.len() > max_points {
            self.pop_front();
        }
    }

    /// Whether a counter reset happened after `from_ms`.
    pub(crate) fn reset_after(&self, from_ms: u64) -> bool {
        self.last_drop_ms.is_some_and(|t| t > from_ms)
    }

    /// Sum of the values in `r`.
    pub(crate) fn sum(&self, r: Range<usize>) -> f64 {
        if r.is_empty() {
            return 0.0;
        }
        let before = if r.start == 0 { self.cum0 } else { self.cum[r.start - 1] };
        self.cum[r.end - 1] - before
    }

    /// (min, max) of the values in `r` (None when empty).
    pub(crate) fn min_max(&self, r: Range<usize>) -> Option<(f64, f64)> {
        if r.is_empty() {
            return None;
        }
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        let mut i = r.start;
        while i < r.end {
            let abs = self.base + i as u64;
            let whole = abs % BLOCK == 0 && i + BLOCK as usize <= r.end;
            if let (true, Some(b)) = (whole, abs.checked_sub(self.base_block * BLOCK).map(|d| d / BLOCK)) {
                if let Some(&(bl, bh)) = self.blocks.get(b as usize) {
                    (lo, hi) = (lo.min(bl), hi.max(bh));
                    i += BLOCK as usize;
                    continue;
                }
            }
            let v = self.points[i].1;
            (lo, hi) = (lo.min(v), hi.max(v));
            i += 1;
        }
        Some((lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against plain scans, through pushes, replacements and trims, for every window.
    #[test]
    fn sums_and_block_extremes_match_plain_scans() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m.max(1)
        };
        let mut s = Series::default();
        let mut t = 0;
        for step in 0..3000 {
            match rnd(10) {
                0 => {
                    let v = rnd(1000) as f64 - 500.0;
                    s.push(t, v); // same time: replaces the newest
                }
                1 => s.trim(None, 1 + rnd(200) as usize),
                _ => {
                    t += 1 + rnd(3);
                    s.push(t, rnd(1000) as f64 - 500.0);
                }
            }
            if step % 7 != 0 {
                continue;
            }
            let n = s.points.len();
            for _ in 0..10 {
                let a = rnd(n as u64 + 1) as usize;
                let b = a + rnd((n - a) as u64 + 1) as usize;
                let vals: Vec<f64> = s.points.range(a..b).map(|p| p.1).collect();
                let sum: f64 = vals.iter().sum();
                assert!((s.sum(a..b) - sum).abs() < 1e-6, "sum {a}..{b}");
                let want = (!vals.is_empty()).then(|| {
                    (vals.iter().copied().fold(f64::MAX, f64::min), vals.iter().copied().fold(f64::MIN, f64::max))
                });
                assert_eq!(s.min_max(a..b), want, "min/max {a}..{b} at step {step}");
            }
        }
    }
}

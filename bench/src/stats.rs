//! Summaries of repeated measurements: min/median/max and percentiles.

use serde::Serialize;

/// min / median / max (and count) of a set of measurements.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Number of measurements.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// (max − min) / median × 100, rounded to 2 decimals: a baseline's spread.
    pub fn spread_pct(&self) -> f64 {
        round((self.max - self.min) / self.median * 100.0, 2)
    }
}

/// Summarises `values`; `None` when there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some(Summary { n, min: v[0], median, max: v[n - 1] })
}

/// Latency percentiles of a sample.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    /// Sample size.
    pub n: usize,
    /// 50th percentile.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Nearest-rank percentiles of `values`; `None` when there are none.
pub fn percentiles(values: &[f64]) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(Percentiles { n: v.len(), p50: rank(&v, 50.0), p99: rank(&v, 99.0), max: v[v.len() - 1] })
}

/// Nearest-rank percentile `p` (0..=100) of sorted `v` (non-empty).
pub fn rank(v: &[f64], p: f64) -> f64 {
    let idx = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[idx.clamp(1, v.len()) - 1]
}

/// A mean with its 95 % confidence interval from a percentile bootstrap.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Ci {
    /// Number of values (paired rounds).
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// 2.5th percentile of the bootstrap means.
    pub lo: f64,
    /// 97.5th percentile of the bootstrap means.
    pub hi: f64,
}

impl Ci {
    /// Half the interval's width.
    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }

    /// Rounded for output.
    pub fn rounded(self, digits: i32) -> Ci {
        Ci { n: self.n, mean: round(self.mean, digits), lo: round(self.lo, digits), hi: round(self.hi, digits) }
    }
}

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 10_000;

/// The mean of `values` with a 95 % percentile-bootstrap interval: `resamples` times, draw
/// `values.len()` values with replacement (seeded, so reproducible) and take their mean; the
/// interval is the 2.5th to 97.5th percentile of those means. `None` when there are no values;
/// one value gives a zero-width interval (nothing to resample).
pub fn bootstrap_mean(values: &[f64], seed: u64, resamples: usize) -> Option<Ci> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = crate::rng::Rng::new(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| values[rng.range(0, n as u64 - 1) as usize]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Some(Ci { n, mean, lo: rank(&means, 2.5), hi: rank(&means, 97.5) })
}

/// Rounds to `digits` significant decimals for output (keeps JSON readable).
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even_counts() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.n, s.min, s.median, s.max), (3, 1.0, 2.0, 3.0));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_is_reproducible() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let a = bootstrap_mean(&v, 7, RESAMPLES).unwrap();
        assert_eq!(a, bootstrap_mean(&v, 7, RESAMPLES).unwrap());
        assert_eq!(a.mean, 3.5);
        assert!(a.lo < a.mean && a.mean < a.hi && a.lo >= 1.0 && a.hi <= 6.0);
        let one = bootstrap_mean(&[2.0], 1, 100).unwrap();
        assert_eq!((one.lo, one.mean, one.hi), (2.0, 2.0, 2.0));
        assert!(bootstrap_mean(&[], 1, 100).is_none());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&v).unwrap();
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
        let p = percentiles(&[7.0]).unwrap();
        assert_eq!((p.p50, p.p99, p.max), (7.0, 7.0, 7.0));
    }
}

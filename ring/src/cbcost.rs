//! The agent's self-measured cost of its GC callbacks (format version 3): per callback
//! (`GarbageCollectionStart`, `GarbageCollectionFinish`) a fixed histogram of 32 log-linear
//! buckets in the live part of the ring header, plus a total and a max.
//!
//! The callbacks run inside stop-the-world pauses, so recording is four Relaxed atomic RMWs on
//! words the callbacks alone write (no allocation, no lock; ordering is not needed: the words
//! are statistics, and the VM serialises a start with its finish). Readers `pread` the words;
//! a histogram read while a callback records may be one record behind in some word.
//!
//! Buckets: four per power of two of nanoseconds, from 128 ns. Bucket 0 holds values below
//! 128 ns; bucket `1 + 4(e − 7) + s` values `v` with `e = ⌊log2 v⌋`, `s = (v >> (e − 2)) & 3`
//! (each at most 25 % wide); bucket 31 everything from 24,576 ns up.

/// Buckets per histogram.
pub const BUCKETS: usize = 32;

/// The bucket of a duration in ns.
pub fn bucket_of(ns: u64) -> usize {
    if ns < 128 {
        return 0;
    }
    let e = 63 - ns.leading_zeros() as usize; // ≥ 7
    let sub = ((ns >> (e - 2)) & 3) as usize;
    (1 + (e - 7) * 4 + sub).min(BUCKETS - 1)
}

/// The smallest value (ns) in bucket `i`.
pub fn bucket_lower(i: usize) -> u64 {
    if i == 0 {
        return 0;
    }
    let e = (i - 1) / 4 + 7;
    let sub = ((i - 1) % 4) as u64;
    (4 + sub) << (e - 2)
}

/// The largest value (ns) still in bucket `i` (`u64::MAX` for the last).
pub fn bucket_upper(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        u64::MAX
    } else {
        bucket_lower(i + 1) - 1
    }
}

/// One callback's cost as read from the header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackCost {
    /// Callbacks timed.
    pub count: u64,
    /// Sum of their durations, ns.
    pub total_ns: u64,
    /// The longest, ns.
    pub max_ns: u64,
    /// Histogram ([`bucket_of`]); all zero in rings older than format version 3.
    pub buckets: [u64; BUCKETS],
}

impl CallbackCost {
    /// Mean duration, ns (`None` before the first callback).
    pub fn mean_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.total_ns as f64 / self.count as f64)
    }

    /// Duration at quantile `q` (0..=1): the upper bound of the bucket holding it, capped by
    /// the max, so it is at most one bucket (25 %) above the truth and never below it.
    /// `None` when the histogram is empty (no callback yet, or a ring older than version 3).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_upper(i).min(self.max_ns));
            }
        }
        Some(self.max_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log_linear_contiguous_and_capped() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(127), 0);
        assert_eq!(bucket_of(128), 1);
        assert_eq!(bucket_of(159), 1);
        assert_eq!(bucket_of(160), 2);
        assert_eq!(bucket_of(256), 5);
        assert_eq!(bucket_of(1000), 12); // 896..1023
        assert_eq!(bucket_of(1024), 13);
        assert_eq!(bucket_lower(31), 24_576);
        assert_eq!(bucket_of(24_575), 30);
        assert_eq!(bucket_of(24_576), 31);
        assert_eq!(bucket_of(u64::MAX), 31);
        for i in 1..BUCKETS - 1 {
            assert_eq!(bucket_of(bucket_lower(i)), i);
            assert_eq!(bucket_of(bucket_upper(i)), i);
            assert_eq!(bucket_upper(i) + 1, bucket_lower(i + 1));
            assert!((bucket_upper(i) - bucket_lower(i)) as f64 <= 0.25 * bucket_lower(i) as f64);
        }
    }

    #[test]
    fn quantiles_are_bucket_upper_bounds_capped_by_the_max() {
        let mut c = CallbackCost::default();
        assert_eq!(c.quantile(0.5), None);
        for ns in (1..=100u64).map(|k| k * 20) {
            c.buckets[bucket_of(ns)] += 1; // 20 ns .. 2000 ns
            c.count += 1;
            c.total_ns += ns;
            c.max_ns = c.max_ns.max(ns);
        }
        let p50 = c.quantile(0.5).unwrap();
        assert_eq!(bucket_of(p50), bucket_of(1000));
        assert!(p50 >= 1000);
        let p99 = c.quantile(0.99).unwrap();
        assert_eq!(bucket_of(p99), bucket_of(1980));
        assert!(p99 >= 1980);
        assert_eq!(c.quantile(1.0), Some(2000), "capped by the max");
        assert_eq!(c.mean_ns(), Some(1010.0));
    }
}

//! The metrics region: application (and agent) counters, gauges and latency histograms,
//! updated in place with atomic adds, plus a small table of interned strings that compact
//! events refer to (collector names, GC causes, application event names).
//!
//! ```text
//! region offset 0     count u32 (instruments registered)   4 strings u32 (strings interned)
//!               64    strings[63] × 64 B: len u8, UTF-8 [63]
//!               4096  instruments[126] × 2048 B
//! instrument    0     kind u32 (0 free, 1 counter, 2 gauge, 3 timer; written last, Release)
//!               4     name_len u32
//!               8     name [120]  ("name" or "name{k=v,...}")
//!               128   stripes[8] × 64 B: value u64 (counter), sum u64, max u64 (timer); one line each
//!               640   buckets [u64; 116] (timers)
//! ```
//!
//! A counter's value and a timer's sum and max are spread over eight stripes (one cache line each,
//! chosen by the recording thread) so that threads on different cores do not fight over one
//! line; readers add the stripes up. A gauge lives in stripe 0. A timer has no count word: its
//! count is the sum of its buckets (one atomic fewer per record).
//!
//! Timer buckets are log-linear: four buckets per power of two of nanoseconds, so a bucket is
//! at most 25 % wide. Bucket 0 holds values below 1 µs, bucket 115 everything from 2^38 ns
//! (~275 s) up. [`bucket_of`] and [`bucket_lower`] define them; the Java API mirrors
//! `bucket_of` (tested against this one).

/// Bytes of the region header (counts + string table).
pub const HEADER: usize = 4096;
/// Offset of the instrument count (u32).
pub const COUNT: usize = 0;
/// Offset of the string count (u32).
pub const STRING_COUNT: usize = 4;
/// First string.
pub const STRINGS: usize = 64;
/// Bytes per string entry.
pub const STRING_SIZE: usize = 64;
/// Strings the table holds.
pub const MAX_STRINGS: usize = (HEADER - STRINGS) / STRING_SIZE;
/// Bytes per instrument.
pub const INSTRUMENT_SIZE: usize = 2048;
/// Instruments the region holds.
pub const MAX_INSTRUMENTS: usize = (crate::layout::METRICS_SIZE - HEADER) / INSTRUMENT_SIZE;
/// Offsets inside an instrument.
pub mod ins {
    /// `u32` kind.
    pub const KIND: usize = 0;
    /// `u32` name length.
    pub const NAME_LEN: usize = 4;
    /// Name bytes.
    pub const NAME: usize = 8;
    /// Name capacity.
    pub const NAME_MAX: usize = 120;
    /// First stripe.
    pub const STRIPES: usize = 128;
    /// Stripe count (a power of two).
    pub const STRIPE_COUNT: usize = 8;
    /// Bytes per stripe.
    pub const STRIPE_SIZE: usize = 64;
    /// Buckets.
    pub const BUCKETS: usize = STRIPES + STRIPE_COUNT * STRIPE_SIZE;
}
/// Number of timer buckets.
pub const BUCKET_COUNT: usize = 116;

const _: () = {
    assert!(ins::BUCKETS + BUCKET_COUNT * 8 <= INSTRUMENT_SIZE);
    assert!(ins::NAME + ins::NAME_MAX <= ins::STRIPES);
    assert!(HEADER + MAX_INSTRUMENTS * INSTRUMENT_SIZE <= crate::layout::METRICS_SIZE);
    assert!(MAX_STRINGS == 63 && MAX_INSTRUMENTS == 126);
};

/// Instrument kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic count (requests, bytes, errors).
    Counter = 1,
    /// Current value (queue depth).
    Gauge = 2,
    /// Latency histogram in ns.
    Timer = 3,
}

impl Kind {
    /// Decodes a stored kind.
    pub fn from_u32(v: u32) -> Option<Kind> {
        match v {
            1 => Some(Kind::Counter),
            2 => Some(Kind::Gauge),
            3 => Some(Kind::Timer),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timer => "timer",
        }
    }
}

/// The bucket of a duration in ns.
pub fn bucket_of(ns: u64) -> usize {
    if ns < 1024 {
        return 0;
    }
    let e = 63 - ns.leading_zeros() as usize; // ≥ 10
    let sub = ((ns >> (e - 2)) & 3) as usize;
    (1 + (e - 10) * 4 + sub).min(BUCKET_COUNT - 1)
}

/// The smallest value (ns) in bucket `i`.
pub fn bucket_lower(i: usize) -> u64 {
    if i == 0 {
        return 0;
    }
    let e = (i - 1) / 4 + 10;
    let sub = ((i - 1) % 4) as u64;
    (4 + sub) << (e - 2)
}

/// The largest value (ns) still in bucket `i` (`u64::MAX` for the last).
pub fn bucket_upper(i: usize) -> u64 {
    if i + 1 >= BUCKET_COUNT {
        u64::MAX
    } else {
        bucket_lower(i + 1) - 1
    }
}

/// One instrument as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Instrument {
    /// Slot index.
    pub index: usize,
    /// Kind.
    pub kind: Kind,
    /// Name (with tags).
    pub name: String,
    /// Counter value, gauge value (as i64 bits), or timer count.
    pub value: u64,
    /// Timer: sum of recorded ns.
    pub sum: u64,
    /// Timer: largest recorded ns.
    pub max: u64,
    /// Timer buckets (empty for counters and gauges).
    pub buckets: Vec<u64>,
}

impl Instrument {
    /// The gauge value.
    pub fn gauge(&self) -> i64 {
        self.value as i64
    }
}

/// Value at quantile `q` (0..=1) of a bucket histogram: the upper bound of the bucket holding
/// it, capped by `max` (so a percentile is never more than one bucket off).
pub fn quantile(buckets: &[u64], q: f64, max: u64) -> Option<u64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, &n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bucket_upper(i).min(max));
        }
    }
    Some(max)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8"))
}

/// Decodes the region (`b` = the whole metrics region). Entries with a kind this version does
/// not know, or an impossible name length, are skipped; counts are clamped to the layout.
pub fn decode(b: &[u8]) -> (Vec<Instrument>, Vec<String>) {
    if b.len() < crate::layout::METRICS_SIZE {
        return (Vec::new(), Vec::new());
    }
    let strings = (0..(u32_at(b, STRING_COUNT) as usize).min(MAX_STRINGS))
        .map(|i| {
            let at = STRINGS + i * STRING_SIZE;
            let n = (b[at] as usize).min(STRING_SIZE - 1);
            String::from_utf8_lossy(&b[at + 1..at + 1 + n]).into_owned()
        })
        .collect();
    let mut out = Vec::new();
    for index in 0..(u32_at(b, COUNT) as usize).min(MAX_INSTRUMENTS) {
        let e = &b[HEADER + index * INSTRUMENT_SIZE..HEADER + (index + 1) * INSTRUMENT_SIZE];
        let Some(kind) = Kind::from_u32(u32_at(e, ins::KIND)) else { continue };
        let n = u32_at(e, ins::NAME_LEN) as usize;
        if n > ins::NAME_MAX {
            continue;
        }
        let name = String::from_utf8_lossy(&e[ins::NAME..ins::NAME + n]).into_owned();
        let stripe = |s: usize, w: usize| u64_at(e, ins::STRIPES + s * ins::STRIPE_SIZE + 8 * w);
        let (value, sum, max, buckets) = match kind {
            Kind::Gauge => (stripe(0, 0), 0, 0, Vec::new()),
            Kind::Counter => {
                let value = (0..ins::STRIPE_COUNT).fold(0u64, |a, s| a.wrapping_add(stripe(s, 0)));
                (value, 0, 0, Vec::new())
            }
            Kind::Timer => {
                let buckets: Vec<u64> = (0..BUCKET_COUNT).map(|i| u64_at(e, ins::BUCKETS + 8 * i)).collect();
                // A timer's count is the sum of its buckets (no count word is written).
                let count = buckets.iter().fold(0u64, |a, b| a.wrapping_add(*b));
                let sum = (0..ins::STRIPE_COUNT).fold(0u64, |a, s| a.wrapping_add(stripe(s, 1)));
                let max = (0..ins::STRIPE_COUNT).map(|s| stripe(s, 2)).max().unwrap_or(0);
                (count, sum, max, buckets)
            }
        };
        out.push(Instrument { index, kind, name, value, sum, max, buckets });
    }
    (out, strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log_linear_and_contiguous() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1023), 0);
        assert_eq!(bucket_of(1024), 1);
        assert_eq!(bucket_of(1279), 1);
        assert_eq!(bucket_of(1280), 2);
        assert_eq!(bucket_of(2048), 5);
        assert_eq!(bucket_of(u64::MAX), BUCKET_COUNT - 1);
        for i in 1..BUCKET_COUNT - 1 {
            assert_eq!(bucket_of(bucket_lower(i)), i);
            assert_eq!(bucket_of(bucket_upper(i)), i);
            assert_eq!(bucket_upper(i) + 1, bucket_lower(i + 1));
            // At most 25 % wide.
            assert!((bucket_upper(i) - bucket_lower(i)) as f64 <= 0.25 * bucket_lower(i) as f64);
        }
    }

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let mut b = vec![0u64; BUCKET_COUNT];
        for v in 1..=1000u64 {
            b[bucket_of(v * 1000)] += 1; // 1 µs .. 1 ms
        }
        let p50 = quantile(&b, 0.5, 1_000_000).unwrap();
        assert_eq!(bucket_of(p50), bucket_of(500_000));
        let p99 = quantile(&b, 0.99, 1_000_000).unwrap();
        assert_eq!(bucket_of(p99), bucket_of(990_000));
        assert_eq!(quantile(&b, 1.0, 1_000_000), Some(1_000_000));
        assert_eq!(quantile(&[0; BUCKET_COUNT], 0.5, 0), None);
    }
}

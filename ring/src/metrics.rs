//! The metrics region: application (and agent) counters, gauges and latency histograms,
//! updated in place with atomic adds, plus a small table of interned strings that compact
//! events refer to (collector names, GC causes, application event names).
//!
//! ```text
//! region offset 0     count u32 (slots used)   4 strings u32 (strings interned)
//!               64    strings[63] × 64 B: len u8, UTF-8 [63]
//!               4096  slots[126] × 2048 B
//! entry         0     kind u32 (0 free, 1 counter, 2 gauge, 3 timer, 4 timer continuation;
//!                     written last, Release)
//!               4     name_len u32
//!               8     name [120]  ("name" or "name{k=v,...}")
//!               128   counter, gauge: stripes[8] × 64 B: value u64; one cache line each
//! timer (v3)          4 consecutive slots; slot k (k = 0..4) holds timer stripes 2k and 2k+1
//!                     at 128 and 1088: 960 B each = sum u64, max u64, buckets [u64; 116], pad
//! timer (v1, v2)      1 slot: stripes[8] × 64 B at 128 (word 1 sum, word 2 max),
//!                     buckets [u64; 116] at 640, shared by all threads
//! ```
//!
//! A counter's value and every word of a timer are spread over eight stripes (chosen by the
//! recording thread) so that threads on different cores do not fight over cache lines; readers
//! add the stripes up ([`merge_timer`]). A gauge lives in stripe 0. A timer has no count word:
//! its count is the sum of its buckets (one atomic fewer per record). From format version 3 each
//! timer stripe has its own bucket array (before, the buckets were shared, and concurrent
//! recorders collided on their lines): a timer takes [`TIMER_SLOTS`] slots, its first with the
//! name, the others marked [`KIND_CONTINUATION`] so that no reader mistakes them for entries.
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
/// Slots a timer takes from format version 3 (one before).
pub const TIMER_SLOTS: usize = 4;
/// Kind word of a timer's continuation slots (format version 3).
pub const KIND_CONTINUATION: u32 = 4;
/// First format version with per-stripe timer buckets ([`TIMER_SLOTS`] slots per timer).
pub const STRIPED_TIMER_VERSION: u32 = 3;
/// One timer stripe (format version 3): its own sum, max and buckets, on lines of its own.
pub mod tstripe {
    /// `u64` sum of recorded ns.
    pub const SUM: usize = 0;
    /// `u64` largest recorded ns.
    pub const MAX: usize = 8;
    /// `[u64; 116]` buckets.
    pub const BUCKETS: usize = 16;
    /// Bytes per stripe: 15 cache lines.
    pub const SIZE: usize = 960;
}

/// Byte offset of timer stripe `s` (0..8) from the start of the timer's first slot (format
/// version 3): stripes `2k` and `2k + 1` sit in slot `k`, after that slot's 128-byte entry head.
pub const fn timer_stripe(s: usize) -> usize {
    (s / 2) * INSTRUMENT_SIZE + ins::STRIPES + (s % 2) * tstripe::SIZE
}

/// A timer's count, sum and max, and its buckets merged into `buckets`, from `word(offset)`:
/// the `u64` at that byte offset from the timer's first slot. `version` is the ring format's
/// (before [`STRIPED_TIMER_VERSION`]: one shared bucket array and 64-byte stripes). Counts and
/// sums wrap like the atomics that produce them.
pub fn merge_timer(version: u32, word: impl Fn(usize) -> u64, buckets: &mut [u64; BUCKET_COUNT]) -> (u64, u64, u64) {
    let (mut sum, mut max) = (0u64, 0u64);
    if version >= STRIPED_TIMER_VERSION {
        buckets.fill(0);
        for s in 0..ins::STRIPE_COUNT {
            let at = timer_stripe(s);
            sum = sum.wrapping_add(word(at + tstripe::SUM));
            max = max.max(word(at + tstripe::MAX));
            for (i, b) in buckets.iter_mut().enumerate() {
                *b = b.wrapping_add(word(at + tstripe::BUCKETS + 8 * i));
            }
        }
    } else {
        for s in 0..ins::STRIPE_COUNT {
            let at = ins::STRIPES + s * ins::STRIPE_SIZE;
            sum = sum.wrapping_add(word(at + 8));
            max = max.max(word(at + 16));
        }
        for (i, b) in buckets.iter_mut().enumerate() {
            *b = word(ins::BUCKETS + 8 * i);
        }
    }
    let count = buckets.iter().fold(0u64, |a, b| a.wrapping_add(*b));
    (count, sum, max)
}

const _: () = {
    assert!(ins::BUCKETS + BUCKET_COUNT * 8 <= INSTRUMENT_SIZE);
    assert!(ins::NAME + ins::NAME_MAX <= ins::STRIPES);
    assert!(HEADER + MAX_INSTRUMENTS * INSTRUMENT_SIZE <= crate::layout::METRICS_SIZE);
    assert!(MAX_STRINGS == 63 && MAX_INSTRUMENTS == 126);
    assert!(tstripe::BUCKETS + 8 * BUCKET_COUNT <= tstripe::SIZE && tstripe::SIZE.is_multiple_of(64));
    assert!(ins::STRIPES + 2 * tstripe::SIZE <= INSTRUMENT_SIZE && ins::STRIPES.is_multiple_of(64));
    assert!(timer_stripe(ins::STRIPE_COUNT - 1) + tstripe::SIZE <= TIMER_SLOTS * INSTRUMENT_SIZE);
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

/// The string count of a metrics region image (at least its first [`STRINGS`] bytes), capped
/// at [`MAX_STRINGS`].
pub fn string_count(b: &[u8]) -> usize {
    b.get(..STRINGS).map_or(0, |h| (u32_at(h, STRING_COUNT) as usize).min(MAX_STRINGS))
}

/// The string table of a whole metrics region image (empty when `b` is short).
pub fn decode_strings(b: &[u8]) -> Vec<String> {
    if b.len() < crate::layout::METRICS_SIZE {
        return Vec::new();
    }
    (0..string_count(b))
        .map(|i| {
            let at = STRINGS + i * STRING_SIZE;
            let n = (b[at] as usize).min(STRING_SIZE - 1);
            String::from_utf8_lossy(&b[at + 1..at + 1 + n]).into_owned()
        })
        .collect()
}

/// The instruments of a whole metrics region image (`b`) of a ring of format `version` (none
/// when `b` is short); the string table is not looked at. Entries with a kind this version
/// does not know (continuation slots included), an impossible name length, or a timer that
/// would run past the slots in use, are skipped; counts are clamped to the layout.
pub fn decode_instruments(b: &[u8], version: u32) -> Vec<Instrument> {
    if b.len() < crate::layout::METRICS_SIZE {
        return Vec::new();
    }
    let count = (u32_at(b, COUNT) as usize).min(MAX_INSTRUMENTS);
    let timer_slots = if version >= STRIPED_TIMER_VERSION { TIMER_SLOTS } else { 1 };
    let mut out = Vec::new();
    let mut index = 0;
    while index < count {
        let at = HEADER + index * INSTRUMENT_SIZE;
        let e = &b[at..at + INSTRUMENT_SIZE];
        let kind = Kind::from_u32(u32_at(e, ins::KIND));
        let slots = if kind == Some(Kind::Timer) { timer_slots } else { 1 };
        let this = index;
        index += slots;
        let Some(kind) = kind else { continue };
        let n = u32_at(e, ins::NAME_LEN) as usize;
        if n > ins::NAME_MAX || index > count {
            continue;
        }
        let name = String::from_utf8_lossy(&e[ins::NAME..ins::NAME + n]).into_owned();
        let stripe = |s: usize| u64_at(e, ins::STRIPES + s * ins::STRIPE_SIZE);
        let (value, sum, max, buckets) = match kind {
            Kind::Gauge => (stripe(0), 0, 0, Vec::new()),
            Kind::Counter => {
                let value = (0..ins::STRIPE_COUNT).fold(0u64, |a, s| a.wrapping_add(stripe(s)));
                (value, 0, 0, Vec::new())
            }
            Kind::Timer => {
                let mut buckets = [0u64; BUCKET_COUNT];
                let (count, sum, max) = merge_timer(version, |o| u64_at(b, at + o), &mut buckets);
                (count, sum, max, buckets.to_vec())
            }
        };
        out.push(Instrument { index: this, kind, name, value, sum, max, buckets });
    }
    out
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

    /// A metrics region with one timer at slot 0, filled by `put(region, stripe, value)`.
    fn region(version: u32, put: impl Fn(&mut [u8], usize, u64)) -> Vec<u8> {
        let mut b = vec![0u8; crate::layout::METRICS_SIZE];
        let slots = if version >= STRIPED_TIMER_VERSION { TIMER_SLOTS } else { 1 };
        b[COUNT..COUNT + 4].copy_from_slice(&(slots as u32).to_le_bytes());
        b[HEADER..HEADER + 4].copy_from_slice(&3u32.to_le_bytes());
        b[HEADER + 4..HEADER + 8].copy_from_slice(&3u32.to_le_bytes());
        b[HEADER + 8..HEADER + 11].copy_from_slice(b"lat");
        for k in 1..slots {
            let at = HEADER + k * INSTRUMENT_SIZE;
            b[at..at + 4].copy_from_slice(&KIND_CONTINUATION.to_le_bytes());
        }
        for s in 0..ins::STRIPE_COUNT {
            // Stripe s records s + 1 values of (s + 1) µs.
            put(&mut b, s, s as u64 + 1);
        }
        b
    }

    fn set(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn timer_stripes_are_merged_on_read_in_every_format() {
        let v3 = region(3, |b, s, n| {
            let at = HEADER + timer_stripe(s);
            set(b, at + tstripe::SUM, n * n * 1000);
            set(b, at + tstripe::MAX, n * 1000);
            set(b, at + tstripe::BUCKETS + 8 * bucket_of(n * 1000), n);
        });
        let v2 = region(2, |b, s, n| {
            let at = HEADER + ins::STRIPES + s * ins::STRIPE_SIZE;
            set(b, at + 8, n * n * 1000);
            set(b, at + 16, n * 1000);
            set(b, HEADER + ins::BUCKETS + 8 * bucket_of(n * 1000), n); // shared: one stripe each here
        });
        let want_sum: u64 = (1..=8u64).map(|n| n * n * 1000).sum();
        for (version, b) in [(3, &v3), (2, &v2), (1, &v2)] {
            let ins = decode_instruments(b, version);
            assert_eq!(ins.len(), 1, "v{version}: continuation slots are not entries");
            let t = &ins[0];
            assert_eq!((t.kind, t.name.as_str(), t.index), (Kind::Timer, "lat", 0));
            assert_eq!(t.value, 36, "v{version}: count = all buckets of all stripes");
            assert_eq!(t.sum, want_sum);
            assert_eq!(t.max, 8000);
            for n in 1..=8u64 {
                assert_eq!(t.buckets[bucket_of(n * 1000)], n, "v{version}");
            }
        }
        // Stripes never overlap one another or an entry head, and each starts a cache line.
        for s in 0..ins::STRIPE_COUNT {
            let at = timer_stripe(s);
            assert!(at.is_multiple_of(64) && at % INSTRUMENT_SIZE >= ins::STRIPES);
            assert!(at % INSTRUMENT_SIZE + tstripe::SIZE <= INSTRUMENT_SIZE);
            if s > 0 {
                assert!(timer_stripe(s - 1) + tstripe::SIZE <= at);
            }
        }
        // A version 3 timer cut short by the slot count is skipped, not read past.
        let mut cut = v3.clone();
        cut[COUNT..COUNT + 4].copy_from_slice(&2u32.to_le_bytes());
        assert!(decode_instruments(&cut, 3).is_empty());
        // Read as version 2, the version 3 timer is one slot and its continuations are skipped.
        assert_eq!(decode_instruments(&v3, 2).len(), 1);
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

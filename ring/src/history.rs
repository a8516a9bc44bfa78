//! The history region (format v2): what the console charts and `inspect` explains, kept for
//! the minutes and hours before a death.
//!
//! Two tiers, each a ring of fixed-size records written by the sampler thread alone:
//! the **fine** tier gets one record per sampler interval (default 9,000 slots: 15 min at
//! 100 ms); the **coarse** tier one per coarse step (default 10 s, 720 slots: 2 h), made by
//! [`Downsampler`] from the fine records.
//!
//! ```text
//! record  0   stamp u64        2s+1 while record s is written, 2s+2 once published
//!         8   time_ns u64      16 heap_used   24 heap_committed   32 heap_max
//!         40  heap_after_gc    48 old_used    56 old_max          64 nonheap_used
//!         72  gc_count         80 gc_time_ms  88 cpu_ns           96 gc_pause_ns (JVMTI)
//!         104 classes u32      108 threads_live u32   112 thread_states [u32; 6]
//!         136 cells_used u32   140 check u32 (CRC-32 of seq and bytes 8..336, check zeroed)
//!         144 cells [8] × 24 B: a u64, b u64, c u32, d u32
//! ```
//!
//! Cell `k` belongs to the `k`-th application instrument of the metrics region, counting in
//! registration order and skipping the agent's own (`jvm.` names): [`cell_instruments`].
//! Instruments are append-only, so the mapping never changes. Instruments past the first
//! [`HISTORY_CELLS`] are not kept in the history; readers list them as dropped. Counter: `a` = value. Gauge: `a` = value (i64 bits). Timer: `a` = records and
//! `b` = sum of ns since the previous record, `c` = p99 and `d` = max of those records in µs
//! (from the bucket deltas: the upper bound of the bucket, capped by the timer's max).
//! [`crate::snapshot::UNKNOWN`] marks a figure the JVM did not report.
//!
//! Torn records are caught as torn events are: the stamp must be exactly `2s+2` for the
//! sequence number the slot should hold, and the check must match.

use crate::layout::{HISTORY_CELLS, HISTORY_RECORD_SIZE};
use crate::metrics::Instrument;

/// The instruments the history keeps, cell by cell, and those it drops.
pub fn cell_instruments(all: &[Instrument]) -> (Vec<&Instrument>, Vec<&Instrument>) {
    let mut app: Vec<&Instrument> = all.iter().filter(|i| !i.name.starts_with("jvm.")).collect();
    let dropped = app.split_off(app.len().min(HISTORY_CELLS));
    (app, dropped)
}
use crate::snapshot::UNKNOWN;

/// One application instrument's figures in one record (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    /// Counter or gauge value; timer records in the interval.
    pub a: u64,
    /// Timer: sum of ns in the interval.
    pub b: u64,
    /// Timer: p99 in the interval, µs.
    pub c: u32,
    /// Timer: max in the interval, µs.
    pub d: u32,
}

/// One history record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Sample time, ns since the Unix epoch.
    pub time_ns: u64,
    /// Heap bytes in use.
    pub heap_used: u64,
    /// Heap bytes committed.
    pub heap_committed: u64,
    /// Heap maximum or [`UNKNOWN`].
    pub heap_max: u64,
    /// Heap in use right after the latest collection (all pools), or [`UNKNOWN`].
    pub heap_after_gc: u64,
    /// Old generation (or the single heap pool) in use, or [`UNKNOWN`].
    pub old_used: u64,
    /// Old generation maximum, or [`UNKNOWN`].
    pub old_max: u64,
    /// Non-heap bytes in use.
    pub nonheap_used: u64,
    /// Collections so far.
    pub gc_count: u64,
    /// Collection time so far, ms (as the beans count it).
    pub gc_time_ms: u64,
    /// Process CPU time, ns.
    pub cpu_ns: u64,
    /// Stop-the-world pause time so far as JVMTI saw it, ns.
    pub gc_pause_ns: u64,
    /// Loaded classes, or `u32::MAX`.
    pub classes: u32,
    /// Live threads.
    pub threads_live: u32,
    /// Threads per state ([`crate::snapshot::THREAD_STATES`] order).
    pub thread_states: [u32; 6],
    /// Cells in use.
    pub cells_used: u32,
    /// Application instruments.
    pub cells: [Cell; HISTORY_CELLS],
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            time_ns: 0,
            heap_used: 0,
            heap_committed: 0,
            heap_max: UNKNOWN,
            heap_after_gc: UNKNOWN,
            old_used: UNKNOWN,
            old_max: UNKNOWN,
            nonheap_used: 0,
            gc_count: 0,
            gc_time_ms: 0,
            cpu_ns: 0,
            gc_pause_ns: 0,
            classes: u32::MAX,
            threads_live: 0,
            thread_states: [0; 6],
            cells_used: 0,
            cells: [Cell::default(); HISTORY_CELLS],
        }
    }
}

/// Offset of the check word inside a record.
pub const CHECK: usize = 140;
const CELLS: usize = 144;
const _: () = assert!(CELLS + HISTORY_CELLS * 24 == HISTORY_RECORD_SIZE);

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn get64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8"))
}
fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4"))
}

/// The check of record `seq`: CRC-32 of the sequence number and bytes 8.. with the check
/// word zeroed.
pub fn check(seq: u64, rec: &[u8; HISTORY_RECORD_SIZE]) -> u32 {
    // One CRC over a copy laid out as hashed (the sequence number where the stamp is): the
    // same value as four `update`s over the pieces, for about a quarter less time.
    let mut b = *rec;
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b[CHECK..CHECK + 4].fill(0);
    crc32fast::hash(&b)
}

/// True when `b` holds record `seq` whole: its stamp is exactly `2seq+2` and its check
/// matches. False for a record torn, overwritten by a later lap, never written, or corrupt.
/// Every decoder of a record ([`Sample::decode`], [`LeakPoint::decode`]) judges it here.
pub fn intact(seq: u64, b: &[u8; HISTORY_RECORD_SIZE]) -> bool {
    get64(b, 0) == seq.wrapping_mul(2).wrapping_add(2) && get32(b, CHECK) == check(seq, b)
}

impl Sample {
    /// Encodes into a record for sequence number `seq`, check included, stamp `2seq+2`.
    pub fn encode(&self, seq: u64) -> [u8; HISTORY_RECORD_SIZE] {
        let mut b = [0u8; HISTORY_RECORD_SIZE];
        let words = [
            self.time_ns,
            self.heap_used,
            self.heap_committed,
            self.heap_max,
            self.heap_after_gc,
            self.old_used,
            self.old_max,
            self.nonheap_used,
            self.gc_count,
            self.gc_time_ms,
            self.cpu_ns,
            self.gc_pause_ns,
        ];
        for (i, w) in words.iter().enumerate() {
            put64(&mut b, 8 + 8 * i, *w);
        }
        put32(&mut b, 104, self.classes);
        put32(&mut b, 108, self.threads_live);
        for (i, s) in self.thread_states.iter().enumerate() {
            put32(&mut b, 112 + 4 * i, *s);
        }
        put32(&mut b, 136, self.cells_used.min(HISTORY_CELLS as u32));
        for (i, c) in self.cells.iter().enumerate() {
            let at = CELLS + 24 * i;
            put64(&mut b, at, c.a);
            put64(&mut b, at + 8, c.b);
            put32(&mut b, at + 16, c.c);
            put32(&mut b, at + 20, c.d);
        }
        let ck = check(seq, &b);
        put32(&mut b, CHECK, ck);
        put64(&mut b, 0, 2 * seq + 2);
        b
    }

    /// Decodes record `seq`; `None` when it is not [`intact`].
    pub fn decode(seq: u64, b: &[u8; HISTORY_RECORD_SIZE]) -> Option<Sample> {
        if !intact(seq, b) {
            return None;
        }
        let w = |i: usize| get64(b, 8 + 8 * i);
        let mut s = Sample {
            time_ns: w(0),
            heap_used: w(1),
            heap_committed: w(2),
            heap_max: w(3),
            heap_after_gc: w(4),
            old_used: w(5),
            old_max: w(6),
            nonheap_used: w(7),
            gc_count: w(8),
            gc_time_ms: w(9),
            cpu_ns: w(10),
            gc_pause_ns: w(11),
            classes: get32(b, 104),
            threads_live: get32(b, 108),
            cells_used: get32(b, 136).min(HISTORY_CELLS as u32),
            ..Sample::default()
        };
        for (i, st) in s.thread_states.iter_mut().enumerate() {
            *st = get32(b, 112 + 4 * i);
        }
        for (i, c) in s.cells.iter_mut().enumerate() {
            let at = CELLS + 24 * i;
            *c = Cell { a: get64(b, at), b: get64(b, at + 8), c: get32(b, at + 16), d: get32(b, at + 20) };
        }
        Some(s)
    }
}

/// The four figures of a record that the leak findings use, and nothing else (32 bytes, a
/// tenth of a [`Sample`]): what [`crate::Ring::leak_series`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeakPoint {
    /// Sample time, ns since the Unix epoch.
    pub time_ns: u64,
    /// Heap in use right after the latest collection, or [`UNKNOWN`].
    pub heap_after_gc: u64,
    /// Heap maximum or [`UNKNOWN`].
    pub heap_max: u64,
    /// Live threads.
    pub threads_live: u32,
}

impl LeakPoint {
    /// Decodes the leak figures of record `seq`; `None` when it is not [`intact`] (exactly
    /// when [`Sample::decode`] gives `None`).
    pub fn decode(seq: u64, b: &[u8; HISTORY_RECORD_SIZE]) -> Option<LeakPoint> {
        intact(seq, b).then(|| LeakPoint {
            time_ns: get64(b, 8),
            heap_max: get64(b, 32),
            heap_after_gc: get64(b, 40),
            threads_live: get32(b, 108),
        })
    }
}

impl From<&Sample> for LeakPoint {
    fn from(s: &Sample) -> LeakPoint {
        LeakPoint {
            time_ns: s.time_ns,
            heap_after_gc: s.heap_after_gc,
            heap_max: s.heap_max,
            threads_live: s.threads_live,
        }
    }
}

/// Which tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// One record per sampler interval.
    Fine,
    /// One record per coarse step.
    Coarse,
}

/// Makes coarse records from fine ones: one per `step`, holding the last fine record of the
/// step, except that timer cells add up their counts and sums and keep the largest p99 and
/// max, and the heap in use is the step's largest.
///
/// Which cells are timers is the caller's knowledge (the metrics region), given per push.
#[derive(Clone, Debug)]
pub struct Downsampler {
    step_ns: u64,
    open: Option<(u64, Sample)>,
}

impl Downsampler {
    /// A downsampler for steps of `step_ns` (≥ 1).
    pub fn new(step_ns: u64) -> Downsampler {
        Downsampler { step_ns: step_ns.max(1), open: None }
    }

    /// Adds a fine record; returns the finished coarse record when `s` starts a new step.
    /// `timers` has bit `i` set when cell `i` is a timer.
    pub fn push(&mut self, s: &Sample, timers: u32) -> Option<Sample> {
        let step = s.time_ns / self.step_ns;
        match &mut self.open {
            Some((open_step, acc)) if *open_step == step => {
                let prev = *acc;
                *acc = *s;
                acc.heap_used = acc.heap_used.max(prev.heap_used);
                for i in 0..HISTORY_CELLS {
                    if timers & (1 << i) != 0 {
                        let (c, p) = (&mut acc.cells[i], prev.cells[i]);
                        c.a = c.a.saturating_add(p.a);
                        c.b = c.b.saturating_add(p.b);
                        c.c = c.c.max(p.c);
                        c.d = c.d.max(p.d);
                    }
                }
                None
            }
            _ => self.open.replace((step, *s)).map(|(_, done)| done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64) -> Sample {
        let mut s = Sample { time_ns: t, heap_used: t * 10, cells_used: 2, ..Sample::default() };
        s.cells[0] = Cell { a: t, ..Cell::default() };
        s.cells[1] = Cell { a: 2, b: 100, c: 5, d: (t % 7) as u32 };
        s.thread_states = [0, 3, 1, 2, 4, 0];
        s
    }

    #[test]
    fn the_check_is_the_crc_of_the_sequence_number_and_the_bytes_after_the_stamp_check_zeroed() {
        for (seq, t) in [(0, 1), (7, 123), (u64::MAX / 2 - 1, 99_999)] {
            let b = sample(t).encode(seq);
            let mut h = crc32fast::Hasher::new();
            h.update(&seq.to_le_bytes());
            h.update(&b[8..CHECK]);
            h.update(&[0; 4]);
            h.update(&b[CHECK + 4..]);
            let want = h.finalize();
            assert_eq!((check(seq, &b), get32(&b, CHECK)), (want, want));
        }
    }

    #[test]
    fn records_round_trip_and_reject_the_wrong_sequence_or_a_flipped_byte() {
        let s = sample(123);
        let b = s.encode(7);
        assert_eq!(Sample::decode(7, &b), Some(s));
        assert_eq!(Sample::decode(6, &b), None, "a record of another lap");
        for at in [9, 104, 140, 200, 335] {
            let mut c = b;
            c[at] ^= 1;
            assert_eq!(Sample::decode(7, &c), None, "flipped byte {at}");
        }
        let mut odd = b;
        odd[0..8].copy_from_slice(&15u64.to_le_bytes());
        assert_eq!(Sample::decode(7, &odd), None, "a record being written");
        assert_eq!(Sample::decode(0, &[0; HISTORY_RECORD_SIZE]), None, "never written");
    }

    #[test]
    fn a_leak_point_holds_the_samples_figures_and_is_refused_exactly_when_the_sample_is() {
        let s = Sample { heap_max: 1 << 30, heap_after_gc: 77 << 20, threads_live: 41, ..sample(123) };
        let b = s.encode(7);
        assert_eq!(LeakPoint::decode(7, &b), Some(LeakPoint::from(&s)));
        assert_eq!(
            LeakPoint::from(&s),
            LeakPoint { time_ns: 123, heap_after_gc: 77 << 20, heap_max: 1 << 30, threads_live: 41 }
        );
        assert_eq!((std::mem::size_of::<LeakPoint>(), std::mem::size_of::<Sample>()), (32, 328));
        for seq in [6, 7, 8] {
            for at in [0, 9, 33, 41, 108, 140, 200, 335] {
                let mut c = b;
                c[at] ^= 1;
                assert_eq!(LeakPoint::decode(seq, &c).is_some(), Sample::decode(seq, &c).is_some(), "{seq} {at}");
            }
            assert_eq!(LeakPoint::decode(seq, &b).is_some(), seq == 7);
        }
    }

    #[test]
    fn downsampling_keeps_the_last_record_and_adds_up_timer_cells() {
        let mut d = Downsampler::new(10);
        assert_eq!(d.push(&sample(10), 0b10), None);
        assert_eq!(d.push(&sample(13), 0b10), None);
        assert_eq!(d.push(&sample(19), 0b10), None);
        let done = d.push(&sample(20), 0b10).expect("a new step closes the old one");
        assert_eq!(done.time_ns, 19);
        assert_eq!(done.cells[0].a, 19, "counter: last value");
        assert_eq!(done.cells[1], Cell { a: 6, b: 300, c: 5, d: 6 }, "timer: summed, max kept");
        assert_eq!(done.heap_used, 190);
    }
}

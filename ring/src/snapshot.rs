//! The status snapshot: the latest heap, GC, thread and CPU figures of one JVM.
//!
//! Encoded into a fixed-size body ([`SNAP_BODY_SIZE`] bytes) that the writer publishes under
//! a double-buffered seqlock (see `writer.rs`) and the reader validates with a CRC.

use crate::layout::{COLLECTOR_ENTRY, MAX_COLLECTORS, MAX_POOLS, NAME_LEN, POOL_ENTRY, SNAP_BODY_SIZE, SNAP_FIXED};

/// Marks a figure the JVM did not report (e.g. an unbounded pool's max).
pub const UNKNOWN: u64 = u64::MAX;

/// Java thread states counted by the sampler, in `java.lang.Thread.State` order.
pub const THREAD_STATES: [&str; 6] = ["new", "runnable", "blocked", "waiting", "timed_waiting", "terminated"];

/// A fixed-width name (pool or collector).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    len: u8,
    bytes: [u8; NAME_LEN],
}

impl Default for Name {
    fn default() -> Self {
        Name { len: 0, bytes: [0; NAME_LEN] }
    }
}

impl Name {
    /// Copies `s`, truncated at a character boundary to [`NAME_LEN`] bytes.
    pub fn new(s: &str) -> Name {
        let mut end = s.len().min(NAME_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; NAME_LEN];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        Name { len: end as u8, bytes }
    }

    /// The name; invalid UTF-8 from a hostile file is replaced.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes[..self.len as usize])
    }

    fn decode(b: &[u8]) -> Name {
        let n = b.iter().position(|&c| c == 0).unwrap_or(b.len()).min(NAME_LEN);
        let mut bytes = [0u8; NAME_LEN];
        bytes[..n].copy_from_slice(&b[..n]);
        Name { len: n as u8, bytes }
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// One memory pool (e.g. "G1 Old Gen", "Metaspace").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    /// Pool name as the JVM reports it.
    pub name: Name,
    /// True for heap pools, false for non-heap (code cache, metaspace).
    pub heap: bool,
    /// Bytes in use.
    pub used: u64,
    /// Bytes committed.
    pub committed: u64,
    /// Maximum, or [`UNKNOWN`].
    pub max: u64,
    /// Bytes in use right after the last GC of this pool, or [`UNKNOWN`].
    pub used_after_gc: u64,
}

/// One garbage collector bean (e.g. "G1 Young Generation").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcCollector {
    /// Bean name.
    pub name: Name,
    /// Collections so far.
    pub count: u64,
    /// Accumulated collection time in ms, as the bean reports it. For ZGC and Shenandoah
    /// this includes concurrent cycle time, so it is not pause time.
    pub time_ms: u64,
}

/// The latest status of one JVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// When the sample was taken, ns since the Unix epoch.
    pub time_ns: u64,
    /// Heap bytes in use.
    pub heap_used: u64,
    /// Heap bytes committed.
    pub heap_committed: u64,
    /// Heap maximum, or [`UNKNOWN`].
    pub heap_max: u64,
    /// Non-heap bytes in use.
    pub nonheap_used: u64,
    /// Non-heap bytes committed.
    pub nonheap_committed: u64,
    /// Process CPU time (all threads), ns.
    pub cpu_time_ns: u64,
    /// Classes currently loaded, or [`UNKNOWN`].
    pub loaded_classes: u64,
    /// Live Java threads.
    pub threads_live: u32,
    /// Live daemon threads, or `u32::MAX` if unknown.
    pub threads_daemon: u32,
    /// Threads per state, indexed like [`THREAD_STATES`].
    pub thread_states: [u32; 6],
    /// Heap in use right after the latest collection, all pools together (from the GC
    /// notification's after-GC usage), or [`UNKNOWN`] (no collection yet, `monitor=off`, or
    /// a file of an older agent).
    pub heap_after_gc: u64,
    pool_count: u8,
    collector_count: u8,
    pools: [Pool; MAX_POOLS],
    collectors: [GcCollector; MAX_COLLECTORS],
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            time_ns: 0,
            heap_used: 0,
            heap_committed: 0,
            heap_max: UNKNOWN,
            nonheap_used: 0,
            nonheap_committed: 0,
            cpu_time_ns: 0,
            loaded_classes: UNKNOWN,
            threads_live: 0,
            threads_daemon: u32::MAX,
            thread_states: [0; 6],
            heap_after_gc: UNKNOWN,
            pool_count: 0,
            collector_count: 0,
            pools: [Pool::default(); MAX_POOLS],
            collectors: [GcCollector::default(); MAX_COLLECTORS],
        }
    }
}

/// Why a snapshot body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The body is shorter than this version's layout.
    #[error("snapshot body too short")]
    Short,
    /// More pools or collectors than the layout holds.
    #[error("snapshot claims {0} entries, more than the layout holds")]
    TooMany(u32),
}

impl Snapshot {
    /// The pools recorded.
    pub fn pools(&self) -> &[Pool] {
        &self.pools[..self.pool_count as usize]
    }

    /// The collectors recorded.
    pub fn collectors(&self) -> &[GcCollector] {
        &self.collectors[..self.collector_count as usize]
    }

    /// Adds a pool; returns false (and drops it) when the table is full.
    pub fn push_pool(&mut self, p: Pool) -> bool {
        let i = self.pool_count as usize;
        if i == MAX_POOLS {
            return false;
        }
        self.pools[i] = p;
        self.pool_count += 1;
        true
    }

    /// Adds a collector; returns false (and drops it) when the table is full.
    pub fn push_collector(&mut self, c: GcCollector) -> bool {
        let i = self.collector_count as usize;
        if i == MAX_COLLECTORS {
            return false;
        }
        self.collectors[i] = c;
        self.collector_count += 1;
        true
    }

    /// The collectors whose figures add up to GC counts and times: all of them, except that
    /// when a collector reports concurrent cycles and pauses as separate beans (ZGC,
    /// Shenandoah: "... Cycles" and "... Pauses") only the pause beans count, so concurrent
    /// time is never added to pause time.
    fn counted_collectors(&self) -> impl Iterator<Item = &GcCollector> {
        let has_pauses = self.collectors().iter().any(|c| c.name.as_str().ends_with("Pauses"));
        self.collectors().iter().filter(move |c| !(has_pauses && c.name.as_str().ends_with("Cycles")))
    }

    /// Sum of GC counts (see `counted_collectors` for ZGC and Shenandoah).
    pub fn gc_count(&self) -> u64 {
        self.counted_collectors().map(|c| c.count).fold(0, u64::saturating_add)
    }

    /// Sum of GC times in ms (see `counted_collectors` for ZGC and Shenandoah).
    pub fn gc_time_ms(&self) -> u64 {
        self.counted_collectors().map(|c| c.time_ms).fold(0, u64::saturating_add)
    }

    /// Heap bytes in use right after the latest collection: [`Snapshot::heap_after_gc`] when
    /// known, else the sum of the heap pools' after-GC usage (which, under a generational
    /// collector, moves for the old generation only when the old generation is collected).
    pub fn heap_used_after_gc(&self) -> Option<u64> {
        if self.heap_after_gc != UNKNOWN {
            return Some(self.heap_after_gc);
        }
        let mut any = false;
        let mut sum = 0u64;
        for p in self.pools().iter().filter(|p| p.heap && p.used_after_gc != UNKNOWN) {
            any = true;
            sum = sum.saturating_add(p.used_after_gc);
        }
        any.then_some(sum)
    }

    /// Encodes into the fixed body layout.
    pub fn encode(&self, out: &mut [u8; SNAP_BODY_SIZE]) {
        out.fill(0);
        let mut w = Cursor { buf: &mut out[..], at: 0 };
        for v in [
            self.time_ns,
            self.heap_used,
            self.heap_committed,
            self.heap_max,
            self.nonheap_used,
            self.nonheap_committed,
            self.cpu_time_ns,
            self.loaded_classes,
        ] {
            w.u64(v);
        }
        w.u32(self.threads_live);
        w.u32(self.threads_daemon);
        for s in self.thread_states {
            w.u32(s);
        }
        w.u32(self.pool_count as u32);
        w.u32(self.collector_count as u32);
        // Stored plus one, so that the zero of an older agent's file reads as unknown.
        w.u64(self.heap_after_gc.wrapping_add(1));
        debug_assert!(w.at <= SNAP_FIXED);
        w.at = SNAP_FIXED;
        for p in &self.pools {
            w.name(&p.name);
            w.u64(p.used);
            w.u64(p.committed);
            w.u64(p.max);
            w.u64(p.used_after_gc);
            w.u64(p.heap as u64);
        }
        for c in &self.collectors {
            w.name(&c.name);
            w.u64(c.count);
            w.u64(c.time_ms);
        }
    }

    /// Decodes a body; every count is checked against the layout.
    pub fn decode(b: &[u8]) -> Result<Snapshot, SnapshotError> {
        if b.len() < SNAP_BODY_SIZE {
            return Err(SnapshotError::Short);
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4"));
        let mut s = Snapshot {
            time_ns: u64_at(0),
            heap_used: u64_at(8),
            heap_committed: u64_at(16),
            heap_max: u64_at(24),
            nonheap_used: u64_at(32),
            nonheap_committed: u64_at(40),
            cpu_time_ns: u64_at(48),
            loaded_classes: u64_at(56),
            threads_live: u32_at(64),
            threads_daemon: u32_at(68),
            ..Snapshot::default()
        };
        for (i, st) in s.thread_states.iter_mut().enumerate() {
            *st = u32_at(72 + 4 * i);
        }
        s.heap_after_gc = u64_at(104).wrapping_sub(1);
        let pools = u32_at(96);
        let collectors = u32_at(100);
        if pools as usize > MAX_POOLS {
            return Err(SnapshotError::TooMany(pools));
        }
        if collectors as usize > MAX_COLLECTORS {
            return Err(SnapshotError::TooMany(collectors));
        }
        for i in 0..pools as usize {
            let at = SNAP_FIXED + i * POOL_ENTRY;
            s.push_pool(Pool {
                name: Name::decode(&b[at..at + NAME_LEN]),
                used: u64_at(at + NAME_LEN),
                committed: u64_at(at + NAME_LEN + 8),
                max: u64_at(at + NAME_LEN + 16),
                used_after_gc: u64_at(at + NAME_LEN + 24),
                heap: u64_at(at + NAME_LEN + 32) != 0,
            });
        }
        let base = SNAP_FIXED + MAX_POOLS * POOL_ENTRY;
        for i in 0..collectors as usize {
            let at = base + i * COLLECTOR_ENTRY;
            s.push_collector(GcCollector {
                name: Name::decode(&b[at..at + NAME_LEN]),
                count: u64_at(at + NAME_LEN),
                time_ms: u64_at(at + NAME_LEN + 8),
            });
        }
        Ok(s)
    }
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    fn u64(&mut self, v: u64) {
        self.buf[self.at..self.at + 8].copy_from_slice(&v.to_le_bytes());
        self.at += 8;
    }
    fn u32(&mut self, v: u32) {
        self.buf[self.at..self.at + 4].copy_from_slice(&v.to_le_bytes());
        self.at += 4;
    }
    fn name(&mut self, n: &Name) {
        self.buf[self.at..self.at + NAME_LEN].copy_from_slice(&n.bytes);
        self.at += NAME_LEN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_full_tables() {
        let mut s = Snapshot { time_ns: 5, heap_used: 10, thread_states: [1, 2, 3, 4, 5, 6], ..Default::default() };
        for i in 0..MAX_POOLS + 2 {
            let added = s.push_pool(Pool {
                name: Name::new(&format!("pool {i}")),
                heap: i % 2 == 0,
                used: i as u64,
                committed: 2 * i as u64,
                max: UNKNOWN,
                used_after_gc: 3,
            });
            assert_eq!(added, i < MAX_POOLS);
        }
        for i in 0..MAX_COLLECTORS {
            assert!(s.push_collector(GcCollector {
                name: Name::new("G1 Young Generation"),
                count: i as u64,
                time_ms: 1
            }));
        }
        let mut buf = [0u8; SNAP_BODY_SIZE];
        s.encode(&mut buf);
        assert_eq!(Snapshot::decode(&buf).unwrap(), s);
        assert_eq!(s.heap_used_after_gc(), Some(3 * (MAX_POOLS as u64 / 2)));
    }

    #[test]
    fn concurrent_cycles_are_not_pause_time() {
        let mut s = Snapshot::default();
        s.push_collector(GcCollector { name: Name::new("ZGC Cycles"), count: 3, time_ms: 900 });
        s.push_collector(GcCollector { name: Name::new("ZGC Pauses"), count: 9, time_ms: 2 });
        assert_eq!((s.gc_count(), s.gc_time_ms()), (9, 2));
        let mut g = Snapshot::default();
        g.push_collector(GcCollector { name: Name::new("G1 Young Generation"), count: 3, time_ms: 30 });
        g.push_collector(GcCollector { name: Name::new("G1 Old Generation"), count: 1, time_ms: 50 });
        assert_eq!((g.gc_count(), g.gc_time_ms()), (4, 80));
    }

    #[test]
    fn rejects_bad_counts() {
        let mut buf = [0u8; SNAP_BODY_SIZE];
        Snapshot::default().encode(&mut buf);
        buf[96..100].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(Snapshot::decode(&buf), Err(SnapshotError::TooMany(1000)));
        assert_eq!(Snapshot::decode(&buf[..10]), Err(SnapshotError::Short));
    }
}

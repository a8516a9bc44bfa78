//! The reader against files it must not trust: random mutations of a valid ring (header,
//! snapshot, metrics, slots), truncation at every slot boundary, absurd sizes, and a file that
//! shrinks under an open reader. Nothing may panic, and nothing may allocate more than a
//! small, fixed bound (a counting global allocator watches every allocation of this binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use jvmwatch_ring::layout::{self, hdr, EVENTS_OFFSET, HEADER_SIZE, METRICS_OFFSET, SLOT_SIZE, SNAPSHOT_OFFSET};
use jvmwatch_ring::metrics::Kind;
use jvmwatch_ring::{Collector, Event, Identity, Name, Pool, ReadError, Ring, Snapshot, State, Writer};
use proptest::prelude::*;

/// Largest single allocation request seen, in bytes.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every method forwards to `System` unchanged; it only records the requested size.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        // SAFETY: `p` and `l` come from this allocator, i.e. from `System`.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` and `l` come from this allocator, i.e. from `System`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// No reader call on a ring of 1024 slots (a 340 KB file) needs a buffer anywhere near this.
const ALLOC_BOUND: usize = 4 << 20;

const CAPACITY: u64 = 1024;

fn dir() -> tempfile::TempDir {
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    tempfile::Builder::new().prefix("jvmwatch-untrusted-test-").tempdir_in(base).unwrap()
}

/// The bytes of a valid, wrapped ring with a snapshot, instruments and strings.
fn template() -> Vec<u8> {
    let d = dir();
    let id = Identity { pid: 42, start_ns: 1, interval_ns: 1, hostname: "h".into(), ..Identity::default() };
    let w = Writer::create(&d.path().join("t.ring"), CAPACITY, &id).unwrap();
    w.set_state(State::Running);
    w.set_app_name("app");
    for i in 0..CAPACITY + 300 {
        w.emit(&Event::GcPauseEnd { gc_id: i, collector: Collector::G1, duration_ns: i });
    }
    let mut s = Snapshot::default();
    s.heap_used = 5;
    s.push_pool(Pool { name: Name::new("Eden"), heap: true, used: 5, ..Pool::default() });
    assert!(w.write_snapshot(&s));
    s.heap_used = 6;
    assert!(w.write_snapshot(&s));
    let c = w.register(Kind::Counter, "requests").unwrap();
    w.counter_add(c, 0, 3);
    let t = w.register(Kind::Timer, "latency").unwrap();
    w.timer_record(t, 1, 5000);
    w.intern("System.gc()");
    let b = std::fs::read(w.path()).unwrap();
    assert_eq!(b.len() as u64, layout::file_size(CAPACITY));
    b
}

fn fix_crc(b: &mut [u8]) {
    if b.len() >= HEADER_SIZE {
        let crc = crc32fast::hash(&b[..hdr::HEADER_CRC]);
        b[hdr::HEADER_CRC..hdr::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Every read the sidecar makes, on whatever `Ring::open` accepted. Results may be errors;
/// panics fail the test, and so does any allocation over the bound.
fn exercise(path: &Path, from: u64, limit: u64) {
    if let Ok(r) = Ring::open(path) {
        let _ = r.live();
        let _ = r.cursor();
        let _ = r.snapshot();
        let _ = r.metrics();
        let _ = r.strings();
        let _ = r.writer_alive();
        for alive in [true, false] {
            if let Ok(s) = r.scan(0, alive) {
                assert!(s.records.len() as u64 <= r.header().capacity);
                assert!(s.records.windows(2).all(|w| w[0].seq < w[1].seq));
            }
            let _ = r.scan(from, alive);
            let _ = r.scan_limit(from, alive, limit);
            let _ = r.scan(u64::MAX, alive);
        }
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest <= ALLOC_BOUND, "an allocation of {largest} bytes");
}

#[derive(Clone, Debug)]
enum Mutation {
    Byte(usize, u8),
    Word(usize, u64),
    /// The 32-bit header fields (capacity, slot size, version, counts) get 32-bit values.
    Word32(usize, u32),
}

fn offset() -> impl Strategy<Value = usize> {
    let file = layout::file_size(CAPACITY) as usize;
    prop_oneof![
        0..HEADER_SIZE,
        hdr::STATE..HEADER_SIZE,
        SNAPSHOT_OFFSET..METRICS_OFFSET,
        METRICS_OFFSET..METRICS_OFFSET + 3 * 4096,
        EVENTS_OFFSET..file,
    ]
}

fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(1u64 << 62),
        Just((1u64 << 62) + 1),
        Just(1u64 << 63),
        Just(layout::MAX_CAPACITY),
        Just(layout::MAX_CAPACITY << 1),
        Just(layout::file_size(layout::MAX_CAPACITY)),
        0u64..4 * CAPACITY,
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (offset(), any::<u8>()).prop_map(|(o, v)| Mutation::Byte(o, v)),
        (offset(), word()).prop_map(|(o, v)| Mutation::Word(o & !7, v)),
        (offset(), prop_oneof![Just(u32::MAX), Just(1u32 << 24), Just(1u32 << 25), 0u32..4096, any::<u32>()])
            .prop_map(|(o, v)| Mutation::Word32(o & !3, v)),
    ]
}

fn apply(b: &mut [u8], m: &Mutation) {
    match *m {
        Mutation::Byte(o, v) => b[o] = v,
        Mutation::Word(o, v) => b[o..o + 8].copy_from_slice(&v.to_le_bytes()),
        Mutation::Word32(o, v) => b[o..o + 4].copy_from_slice(&v.to_le_bytes()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_rings_never_panic_or_allocate_unboundedly(
        muts in proptest::collection::vec(mutation(), 1..8),
        crc in any::<bool>(),
        cut in proptest::option::weighted(0.2, 0usize..400_000),
        from in prop_oneof![Just(0u64), 0u64..4 * CAPACITY, any::<u64>()],
        limit in prop_oneof![Just(0u64), 1u64..2 * CAPACITY, Just(u64::MAX)],
    ) {
        thread_local!(static TEMPLATE: (Vec<u8>, tempfile::TempDir) = (template(), dir()));
        TEMPLATE.with(|(t, d)| {
            let mut b = t.clone();
            for m in &muts {
                apply(&mut b, m);
            }
            // Past the checksum, so the header's semantic checks are what is exercised.
            if crc {
                fix_crc(&mut b);
            }
            if let Some(n) = cut {
                b.truncate(n.min(b.len()));
            }
            let path = d.path().join("m.ring");
            std::fs::write(&path, &b).unwrap();
            exercise(&path, from, limit);
        });
    }
}

#[test]
fn absurd_sizes_are_refused_before_anything_is_allocated() {
    let d = dir();
    let t = template();
    let path = d.path().join("a.ring");
    let cases: &[(usize, u64, bool)] = &[
        (hdr::CAPACITY, layout::MAX_CAPACITY, false),
        (hdr::CAPACITY, layout::MAX_CAPACITY * 2, false),
        (hdr::CAPACITY, u32::MAX as u64, false),
        (hdr::CAPACITY, 0, false),
        (hdr::CAPACITY, 3, false),
        (hdr::FILE_SIZE, u64::MAX, true),
        (hdr::FILE_SIZE, 0, true),
        (hdr::EVENTS_OFFSET, u64::MAX - 10, true),
        (hdr::SLOT_SIZE, 1 << 31, false),
    ];
    for &(at, v, wide) in cases {
        let mut b = t.clone();
        if wide {
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        } else {
            b[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
        }
        if at == hdr::CAPACITY {
            // A consistent header claiming a huge ring: only the real size gives it away.
            b[hdr::FILE_SIZE..hdr::FILE_SIZE + 8].copy_from_slice(&layout::file_size(v & 0xffff_ffff).to_le_bytes());
        }
        fix_crc(&mut b);
        std::fs::write(&path, &b).unwrap();
        let e = Ring::open(&path).expect_err(&format!("field at {at} = {v}"));
        assert!(matches!(e, ReadError::Corrupt(_) | ReadError::Truncated { .. }), "{e}");
        exercise(&path, 0, u64::MAX);
    }
    // Cursors far out: no scan reads (or allocates) more than the ring holds.
    for cursor in [u64::MAX, 1 << 62, (1 << 62) + 1, 1 << 40, CAPACITY - 1] {
        let mut b = t.clone();
        b[hdr::CURSOR..hdr::CURSOR + 8].copy_from_slice(&cursor.to_le_bytes());
        std::fs::write(&path, &b).unwrap();
        let r = Ring::open(&path).unwrap();
        match r.scan(0, false) {
            Ok(s) => {
                assert!(s.records.len() as u64 <= CAPACITY);
                assert_eq!(s.next, cursor);
                assert_eq!(s.records.len() as u64 + s.overwritten + s.torn, cursor);
            }
            Err(e) => assert!(cursor > 1 << 62, "cursor {cursor}: {e}"),
        }
        exercise(&path, cursor.saturating_sub(5), 10);
    }
}

#[test]
fn truncated_at_every_slot_boundary_is_refused() {
    let d = dir();
    let t = template();
    let path = d.path().join("t.ring");
    std::fs::write(&path, &t).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut cuts: Vec<u64> = (0..CAPACITY).rev().map(|k| (EVENTS_OFFSET + k as usize * SLOT_SIZE) as u64).collect();
    cuts.extend([
        EVENTS_OFFSET as u64 - 1,
        METRICS_OFFSET as u64 + 4096,
        METRICS_OFFSET as u64,
        8192,
        4096,
        2048,
        8,
        0,
    ]);
    for n in cuts {
        f.set_len(n).unwrap();
        let e = Ring::open(&path).expect_err(&format!("{n} bytes"));
        assert!(matches!(e, ReadError::Truncated { .. } | ReadError::BadMagic), "{n} bytes: {e}");
        exercise(&path, 0, u64::MAX);
    }
}

#[test]
fn a_file_that_shrinks_after_open_gives_errors_not_panics() {
    let d = dir();
    let t = template();
    let path = d.path().join("s.ring");
    std::fs::write(&path, &t).unwrap();
    let r = Ring::open(&path).unwrap();
    let full = r.scan(0, false).unwrap();
    assert_eq!((full.records.len() as u64, full.torn), (CAPACITY, 0));
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut cuts: Vec<u64> = (0..CAPACITY).rev().map(|k| (EVENTS_OFFSET + k as usize * SLOT_SIZE) as u64).collect();
    cuts.extend([METRICS_OFFSET as u64 + 4096, METRICS_OFFSET as u64, 8192, 4096, 2048, 0]);
    for n in cuts {
        f.set_len(n).unwrap();
        for alive in [true, false] {
            let e = r.scan(0, alive).expect_err(&format!("scan of a ring cut to {n} bytes"));
            assert!(matches!(e, ReadError::Truncated { .. }), "{n} bytes: {e}");
            let _ = r.scan_limit(CAPACITY + 299, alive, 1);
        }
        assert_eq!(r.live().is_ok(), n >= HEADER_SIZE as u64, "{n} bytes");
        assert_eq!(r.snapshot().is_ok(), n >= METRICS_OFFSET as u64, "{n} bytes");
        assert_eq!(r.metrics().is_ok(), n >= METRICS_OFFSET as u64 + 4096 + 5 * 2048, "{n} bytes"); // counter + timer (4 slots)
        let _ = r.strings();
        let _ = r.cursor();
    }
    // Grown back (the reader reads through the file, never a stale mapping): readable again.
    f.write_all_at(&t, 0).unwrap();
    assert_eq!(r.scan(0, false).unwrap().records.len() as u64, CAPACITY);
    assert!(LARGEST.load(Ordering::Relaxed) <= ALLOC_BOUND);
}

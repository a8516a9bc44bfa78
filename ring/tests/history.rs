//! The history tiers and the stacks region (format v2): real files, the writer's mapping on one
//! side and the `pread` reader on the other.

use std::path::PathBuf;

use jvmwatch_ring::history::{LeakPoint, Sample, Tier};
use jvmwatch_ring::layout::{hdr, regions, HISTORY_RECORD_SIZE, STACKS_SIZE};
use jvmwatch_ring::stacks::{Builder, Reason};
use jvmwatch_ring::{Geometry, Identity, LeakSeries, ReadError, Ring, Writer};

fn dir() -> tempfile::TempDir {
    let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    tempfile::Builder::new().prefix("jvmwatch-history-test-").tempdir_in(base).unwrap()
}

const G: Geometry = Geometry { fine_slots: 10, coarse_slots: 4, coarse_step_ns: 50, stacks_size: STACKS_SIZE };

fn writer(d: &tempfile::TempDir, g: Geometry) -> (Writer, PathBuf) {
    let id = Identity { pid: 1, start_ns: 1, interval_ns: 10, geometry: g, ..Identity::default() };
    let p = d.path().join("h.ring");
    (Writer::create(&p, 1024, &id).unwrap(), p)
}

fn sample(t: u64) -> Sample {
    Sample { time_ns: t, heap_used: t * 100, threads_live: t as u32, ..Sample::default() }
}

#[test]
fn the_fine_tier_keeps_the_newest_records_in_order_after_wrapping() {
    let d = dir();
    let (w, p) = writer(&d, G);
    assert_eq!(Ring::open(&p).unwrap().history().unwrap().unwrap().fine.len(), 0);
    for t in 1..=25 {
        assert!(w.history_append(Tier::Fine, &sample(t)));
    }
    for t in [100, 200] {
        assert!(w.history_append(Tier::Coarse, &sample(t)));
    }
    let h = Ring::open(&p).unwrap().history().unwrap().unwrap();
    let times: Vec<u64> = h.fine.iter().map(|s| s.time_ns).collect();
    assert_eq!(times, (16..=25).collect::<Vec<_>>(), "the last 10, oldest first");
    assert_eq!(h.coarse.iter().map(|s| s.time_ns).collect::<Vec<_>>(), [100, 200]);
    assert_eq!((h.torn, h.fine_step_ns, h.coarse_step_ns), (0, 10, 50));
}

#[test]
fn a_record_torn_by_a_dying_writer_is_skipped_and_counted() {
    let d = dir();
    let (w, p) = writer(&d, G);
    for t in 1..=5 {
        w.history_append(Tier::Fine, &sample(t));
    }
    drop(w);
    // Record 3 (seq 2) half rewritten: its bytes changed after publication.
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    let at = regions(1024, &G).0 + 2 * HISTORY_RECORD_SIZE as u64 + 20;
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xff], at).unwrap();
    let h = Ring::open(&p).unwrap().history().unwrap().unwrap();
    assert_eq!(h.fine.iter().map(|s| s.time_ns).collect::<Vec<_>>(), [1, 2, 4, 5]);
    assert_eq!(h.torn, 1);
}

#[test]
fn stacks_captures_alternate_buffers_and_the_newest_wins() {
    let d = dir();
    let (w, p) = writer(&d, G);
    assert!(Ring::open(&p).unwrap().stacks().unwrap().is_none());
    for n in 1..=3u64 {
        let mut b = Builder::new(w.stacks_budget());
        b.thread(&format!("t{n}"), 1, None, None, [("A.b", 1)]);
        assert!(w.write_stacks(&b.finish(n, 0, 0, Reason::Periodic)));
    }
    let c = Ring::open(&p).unwrap().stacks().unwrap().unwrap();
    assert_eq!((c.time_ns, c.threads[0].name.as_str()), (3, "t3"));
    assert!(!w.write_stacks(&vec![0; w.stacks_budget() + 1]), "a body larger than a buffer is refused");
}

#[test]
fn a_ring_without_history_has_none_and_a_lying_geometry_is_corrupt() {
    let d = dir();
    let (_w, p) = writer(&d, Geometry::default());
    let r = Ring::open(&p).unwrap();
    assert!(r.history().unwrap().is_none() && r.stacks().unwrap().is_none());
    assert_eq!(r.header().version, jvmwatch_ring::layout::VERSION);

    let d2 = dir();
    let (_w2, p2) = writer(&d2, G);
    let mut bytes = std::fs::read(&p2).unwrap();
    bytes[hdr::HISTORY_FINE_SLOTS..hdr::HISTORY_FINE_SLOTS + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..hdr::HEADER_CRC]);
    bytes[hdr::HEADER_CRC..hdr::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    let forged = d2.path().join("forged.ring");
    std::fs::write(&forged, &bytes).unwrap();
    assert!(matches!(Ring::open(&forged), Err(ReadError::Corrupt(_))));
}

#[test]
fn a_version_1_file_is_still_read() {
    let d = dir();
    let (w, p) = writer(&d, Geometry::default());
    w.history_append(Tier::Fine, &sample(1));
    drop(w);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[hdr::VERSION..hdr::VERSION + 4].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..hdr::HEADER_CRC]);
    bytes[hdr::HEADER_CRC..hdr::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    let v1 = d.path().join("v1.ring");
    std::fs::write(&v1, &bytes).unwrap();
    let r = Ring::open(&v1).unwrap();
    assert_eq!(r.header().version, 1);
    assert!(r.history().unwrap().is_none());
}

/// What [`Ring::history`] says, as leak points: what [`Ring::leak_series`] must say.
fn as_series(h: &jvmwatch_ring::History) -> LeakSeries {
    let points = |v: &[Sample]| v.iter().map(LeakPoint::from).collect::<Vec<_>>();
    LeakSeries { fine: points(&h.fine), coarse: points(&h.coarse), torn: h.torn }
}

fn poke(p: &std::path::Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, bytes, at).unwrap();
}

#[test]
fn the_leak_series_is_the_history_s_leak_figures_record_for_record() {
    let leaky = |t: u64| Sample {
        time_ns: t,
        heap_after_gc: if t.is_multiple_of(3) { jvmwatch_ring::UNKNOWN } else { t * 1000 },
        heap_max: if t.is_multiple_of(5) { jvmwatch_ring::UNKNOWN } else { 1 << 30 },
        threads_live: 20 + t as u32,
        ..sample(t)
    };
    // (geometry, fine records, coarse records): empty, partly filled, wrapped (by one, by a
    // lap and a half), no coarse tier, a coarse tier left empty; and one larger than a chunk
    // of the lean read (192 records), wrapped at a point inside a chunk.
    let g = |fine_slots, coarse_slots| Geometry { fine_slots, coarse_slots, coarse_step_ns: 50, stacks_size: 0 };
    let cases = [
        (G, 0, 0),
        (G, 3, 1),
        (G, 11, 5),
        (G, 25, 10),
        (g(10, 0), 17, 0),
        (g(10, 4), 17, 0),
        (g(500, 300), 1_234, 777),
    ];
    for (n, &(geom, fine, coarse)) in cases.iter().enumerate() {
        let d = dir();
        let (w, p) = writer(&d, geom);
        for t in 0..fine {
            w.history_append(Tier::Fine, &leaky(1_000_000 + t));
        }
        for t in 0..coarse {
            w.history_append(Tier::Coarse, &leaky(t * 50));
        }
        let r = Ring::open(&p).unwrap();
        let h = r.history().unwrap().unwrap();
        let lean = r.leak_series().unwrap().unwrap();
        assert_eq!(lean, as_series(&h), "case {n}");
        assert_eq!(lean.fine.len() as u64, fine.min(geom.fine_slots as u64), "case {n}");
        assert_eq!(lean.coarse.len() as u64, coarse.min(geom.coarse_slots as u64), "case {n}");

        // Torn and corrupt records in both tiers: a flipped byte in the figures, in a cell, in
        // the check; a stamp left odd by a writer that died; a stamp of another lap.
        let (start, _, _) = regions(1024, &geom);
        let rec = |tier: u64, slot: u64| start + (tier * geom.fine_slots as u64 + slot) * HISTORY_RECORD_SIZE as u64;
        let bad: [(u64, u64, u64, &[u8]); 5] = [
            (0, 1, 41, &[0x5a]),
            (0, 3, 300, &[0x01]),
            (1, 0, 140, &[0xff]),
            (0, 7, 0, &(2 * 7 + 1u64).to_le_bytes()),
            (1, 2, 0, &(2 * 99 + 2u64).to_le_bytes()),
        ];
        for (tier, slot, at, bytes) in bad {
            let slots = if tier == 0 { geom.fine_slots } else { geom.coarse_slots } as u64;
            if slot < slots {
                poke(&p, rec(tier, slot) + at, bytes);
            }
        }
        let h = r.history().unwrap().unwrap();
        let lean = r.leak_series().unwrap().unwrap();
        assert_eq!(lean, as_series(&h), "case {n}, corrupted");
        assert!(fine == 0 || h.torn > 0, "case {n}: the corruption was seen");
    }
}

#[test]
fn the_leak_series_of_a_ring_without_history_is_none_and_of_a_truncated_one_an_error() {
    let d = dir();
    let (_w, p) = writer(&d, Geometry::default());
    assert!(Ring::open(&p).unwrap().leak_series().unwrap().is_none());

    let d = dir();
    let (w, p) = writer(&d, G);
    for t in 1..=25 {
        w.history_append(Tier::Fine, &sample(t));
    }
    let r = Ring::open(&p).unwrap();
    assert!(r.leak_series().unwrap().is_some());
    // Cut inside the coarse tier (the fine one whole), then inside the fine tier: both reads
    // fail alike, on a file truncated under a reader that opened it whole.
    let (start, _, _) = regions(1024, &G);
    for cut in [start + (G.fine_slots as u64 + 1) * HISTORY_RECORD_SIZE as u64, start + 100] {
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(cut).unwrap();
        assert!(matches!(r.history(), Err(ReadError::Truncated { .. })), "history, cut at {cut}");
        assert!(matches!(r.leak_series(), Err(ReadError::Truncated { .. })), "leak series, cut at {cut}");
    }
}

//! The history tiers and the stacks region (format v2): real files, the writer's mapping on one
//! side and the `pread` reader on the other.

use std::path::PathBuf;

use jvmwatch_ring::history::{Sample, Tier};
use jvmwatch_ring::layout::{hdr, regions, HISTORY_RECORD_SIZE, STACKS_SIZE};
use jvmwatch_ring::stacks::{Builder, Reason};
use jvmwatch_ring::{Geometry, Identity, ReadError, Ring, Writer};

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

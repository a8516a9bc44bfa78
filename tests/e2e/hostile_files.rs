//! `inspect` on files it must not trust: a one-line error and exit code 2, never a panic or
//! a signal.

use std::path::Path;
use std::process::Command;

use jvmwatch_ring::layout::{hdr, EVENTS_OFFSET, SLOT_SIZE};
use jvmwatch_ring::{Event, Identity, Writer};
use jvmwatch_tests::*;

fn make_ring(path: &Path) {
    let id =
        Identity { pid: 42, start_ns: now_ns(), interval_ns: 100_000_000, hostname: "h".into(), ..Identity::default() };
    let w = Writer::create(path, 1024, &id).unwrap();
    for i in 0..100 {
        w.emit(&Event::GcPauseStart { gc_id: i, collector: jvmwatch_ring::Collector::G1 });
    }
}

fn recrc(b: &mut [u8]) {
    let crc = crc32(&b[..hdr::HEADER_CRC]);
    b[hdr::HEADER_CRC..hdr::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

fn crc32(b: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE), independent of the implementation under test.
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

fn inspect_err(path: &Path) -> String {
    let out = Command::new(jvmwatch()).args(["inspect", "--json"]).arg(path).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}: {:?} {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn hostile_files_give_one_line_errors() {
    let dir = tempdir();
    let good = dir.path().join("good.ring");
    make_ring(&good);
    let bytes = std::fs::read(&good).unwrap();
    let write = |name: &str, b: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, b).unwrap();
        p
    };

    assert!(inspect_err(&write("empty", b"")).contains("truncated"));
    assert!(inspect_err(&write("tiny", b"JVMW")).contains("truncated"));
    let mid_slot = EVENTS_OFFSET + 10 * SLOT_SIZE + 30;
    assert!(inspect_err(&write("mid-slot", &bytes[..mid_slot])).contains("truncated"));
    assert!(inspect_err(&write("header-only", &bytes[..1000])).contains("truncated"));

    let mut random = vec![0u8; 64 * 1024];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    assert!(inspect_err(&write("random", &random)).contains("bad magic"));

    let mut m = bytes.clone();
    m[0..8].copy_from_slice(b"NOTARING");
    assert!(inspect_err(&write("magic", &m)).contains("bad magic"));

    let mut v = bytes.clone();
    v[hdr::VERSION..hdr::VERSION + 4].copy_from_slice(&99u32.to_le_bytes());
    recrc(&mut v);
    assert!(inspect_err(&write("future", &v)).contains("unsupported ring format version 99"));

    let mut c = bytes.clone();
    c[hdr::HOSTNAME] ^= 0xff;
    assert!(inspect_err(&write("crc", &c)).contains("checksum"));

    let mut huge = bytes.clone();
    huge[hdr::CAPACITY..hdr::CAPACITY + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    recrc(&mut huge);
    assert!(inspect_err(&write("huge-cap", &huge)).contains("capacity"));

    // A plausible but huge capacity whose file is not there: no giant allocation, an error.
    let mut big = bytes.clone();
    big[hdr::CAPACITY..hdr::CAPACITY + 4].copy_from_slice(&(1u32 << 24).to_le_bytes());
    let fs = jvmwatch_ring::layout::file_size(1 << 24);
    big[hdr::FILE_SIZE..hdr::FILE_SIZE + 8].copy_from_slice(&fs.to_le_bytes());
    recrc(&mut big);
    assert!(inspect_err(&write("big-cap", &big)).contains("truncated"));

    assert!(inspect_err(dir.path()).contains("not a regular file"));
    assert!(inspect_err(&dir.path().join("missing")).contains("No such file"));
}

#[test]
fn torn_slot_is_counted_not_fatal() {
    let dir = tempdir();
    let p = dir.path().join("torn.ring");
    make_ring(&p);
    let mut b = std::fs::read(&p).unwrap();
    b[EVENTS_OFFSET + 5 * SLOT_SIZE + 30] ^= 0x55; // payload of seq 5
    std::fs::write(&p, &b).unwrap();
    let r = inspect(&p, 1000);
    assert_eq!(r["lost_events"], 1);
    assert_eq!(r["events"].as_array().unwrap().len(), 99);
    assert!(r["events"].as_array().unwrap().iter().all(|e| e["seq"] != 5));
    assert_eq!(r["verdict"], "killed"); // no writer lock, no clean exit, no crash report
}

/// A hostile history or stacks region: `inspect` and `inspect --history` skip what does not
/// check out (exit 0, torn samples counted) or refuse with exit code 2; never a panic.
#[test]
fn hostile_history_and_stacks_regions_give_skipped_samples_or_exit_2() {
    use jvmwatch_ring::history::{Sample, Tier};
    use jvmwatch_ring::layout::regions;
    let dir = tempdir();
    let g =
        jvmwatch_ring::Geometry { fine_slots: 64, coarse_slots: 8, coarse_step_ns: 1_000_000_000, stacks_size: 16384 };
    let id = Identity { pid: 42, start_ns: now_ns(), interval_ns: 100_000_000, geometry: g, ..Identity::default() };
    let good = dir.path().join("good.ring");
    let w = Writer::create(&good, 1024, &id).unwrap();
    for t in 0..80u64 {
        w.history_append(Tier::Fine, &Sample { time_ns: t, heap_used: t, ..Sample::default() });
    }
    let mut b = jvmwatch_ring::stacks::Builder::new(w.stacks_budget());
    b.thread("main", 1, Some("L"), Some("o"), [("A.b", 1)]);
    w.write_stacks(&b.finish(1, 1, jvmwatch_ring::stacks::Reason::Periodic));
    drop(w);
    let bytes = std::fs::read(&good).unwrap();
    let (history, _, end) = regions(1024, &g);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for case in 0..40 {
        let mut b = bytes.clone();
        // Overwrite 1..64 random bytes inside the history and stacks regions, or the tiers' next words.
        for _ in 0..=(seed % 64) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = if case % 4 == 0 {
                hdr::HISTORY_FINE_NEXT + (seed % 16) as usize
            } else {
                (history + seed % (end - history)) as usize
            };
            b[at] = (seed >> 32) as u8;
        }
        let p = dir.path().join(format!("case{case}.ring"));
        std::fs::write(&p, &b).unwrap();
        for args in [&["inspect", "--json"][..], &["inspect", "--history", "--json"][..], &["inspect"][..]] {
            let out = Command::new(jvmwatch()).args(args).arg(&p).output().unwrap();
            let code = out.status.code();
            assert!(
                matches!(code, Some(0) | Some(2)),
                "case {case} {args:?}: {code:?} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if code == Some(2) {
                assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1, "one line");
            }
        }
    }
}

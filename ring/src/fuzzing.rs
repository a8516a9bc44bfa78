//! The reader's fuzz entry point, shared by the `cargo fuzz` target (`ring/fuzz/`) and the
//! stable test that replays the checked-in corpus (`ring/tests/fuzz_corpus.rs`).
//!
//! An input is a list of edits to a valid ring (built once, with events, a snapshot and
//! metrics), so the fuzzer spends its time past the magic and checksum: 4 bytes of
//! little-endian length to truncate the file to (values at or above the size keep it whole),
//! then records of `[offset: u32 LE][n: u8][n bytes]` written over the file at `offset` modulo
//! its size. The file is then opened and every read is called. Nothing may panic; errors are
//! fine.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::{Collector, Event, Identity, Name, Pool, Ring, Snapshot, State, Writer};

/// The bytes of a valid ring with a little of everything in it.
fn template() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempdir_path("template");
        let _ = std::fs::remove_dir_all(&dir);
        let geometry =
            crate::Geometry { fine_slots: 16, coarse_slots: 4, coarse_step_ns: 1_000_000_000, stacks_size: 16384 };
        let id = Identity { pid: 7, start_ns: 1, interval_ns: 100_000_000, geometry, ..Identity::default() };
        let w = Writer::create_in(&dir, 1024, &id).expect("create a template ring");
        w.set_state(State::Running);
        for i in 0..1500u64 {
            w.emit(&Event::GcPauseEnd { gc_id: i, collector: Collector::G1, duration_ns: i * 7 });
        }
        let (vendor, class) = (w.intern("GenuineIntel"), w.intern("intel-xeon-icelake"));
        w.emit(&Event::Processor {
            vendor,
            model_name: vendor,
            class,
            hypervisor: u16::MAX,
            family: 6,
            model: 106,
            stepping: 6,
            host_cores: 64,
            hypervisor_flag: true,
        });
        w.emit(&Event::Resources {
            cores_told: 2,
            active_processor_count: 2,
            affinity: 4,
            cpu_quota_milli: 1500,
            mem_limit: 1 << 30,
            cpuset: crate::facts::cpuset_text("0-3"),
        });
        let mut s = Snapshot::default();
        (s.time_ns, s.heap_used, s.heap_committed, s.heap_max) = (5, 100, 200, 400);
        s.push_pool(Pool {
            name: Name::new("G1 Old Gen"),
            heap: true,
            used: 1,
            committed: 2,
            max: 3,
            used_after_gc: 1,
        });
        w.write_snapshot(&s);
        for t in 0..20 {
            let h = crate::history::Sample { time_ns: t, heap_used: t, cells_used: 1, ..Default::default() };
            w.history_append(crate::history::Tier::Fine, &h);
            w.history_append(crate::history::Tier::Coarse, &h);
        }
        let mut b = crate::stacks::Builder::new(w.stacks_budget());
        b.thread("main", 1, Some("java.lang.Object"), Some("other"), [("A.b", 3), ("A.main", 9)]);
        w.write_stacks(&b.finish(1, 2, 3, crate::stacks::Reason::Periodic));
        let bytes = std::fs::read(w.path()).expect("read the template");
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
        bytes
    })
}

fn tempdir_path(what: &str) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    base.join(format!("jvmwatch-fuzz-{what}-{}", std::process::id()))
}

/// Applies `input`'s edits to the template and reads the result every way there is.
pub fn check_edited_ring(input: &[u8]) {
    let mut file = template().to_vec();
    let Some((trunc, mut rest)) = input.split_first_chunk::<4>() else { return };
    while let Some((head, tail)) = rest.split_first_chunk::<5>() {
        let off = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize % file.len();
        let n = (head[4] as usize).min(tail.len());
        let end = (off + n).min(file.len());
        file[off..end].copy_from_slice(&tail[..end - off]);
        rest = &tail[n..];
    }
    let keep = (u32::from_le_bytes(*trunc) as usize).min(file.len());
    file.truncate(keep);
    let dir = tempdir_path("case");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{:?}.ring", std::thread::current().id()).replace(['(', ')'], ""));
    let f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path).expect("case file");
    f.write_all_at(&file, 0).expect("write the case");
    drop(f);
    if let Ok(r) = Ring::open(&path) {
        let _ = r.live();
        let _ = r.cursor();
        let _ = r.snapshot();
        let _ = r.metrics();
        let _ = r.strings();
        let _ = r.writer_alive();
        if let Ok(scan) = r.scan(0, false) {
            let strings = r.strings().unwrap_or_default();
            let mut facts = crate::facts::HostFacts::default();
            for rec in &scan.records {
                facts.apply(rec, &strings);
            }
        }
        let _ = r.scan_limit(u64::MAX >> 2, true, 10);
        let (full, lean) = (r.history(), r.leak_series());
        if let (Ok(full), Ok(lean)) = (&full, &lean) {
            let points =
                |v: &[crate::history::Sample]| v.iter().map(crate::history::LeakPoint::from).collect::<Vec<_>>();
            let full = full.as_ref().map(|h| (points(&h.fine), points(&h.coarse), h.torn));
            let lean = lean.as_ref().map(|l| (l.fine.clone(), l.coarse.clone(), l.torn));
            assert_eq!(full, lean, "the lean history read keeps what the full one keeps");
        }
        assert_eq!(full.is_ok(), lean.is_ok());
        let _ = r.stacks();
    }
    let _ = std::fs::remove_file(&path);
}

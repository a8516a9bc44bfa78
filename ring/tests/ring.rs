//! The ring under wrap-around, concurrent writers and a lapping reader — real files on
//! /dev/shm (or the temp dir), the writer's mapping on one side and the `pread` reader on the
//! other, exactly as between the agent and the sidecar.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use jvmwatch_ring::{Collector, Event, Identity, Name, Pool, Ring, Snapshot, State, Writer};

fn dir() -> tempfile::TempDir {
    let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    tempfile::Builder::new().prefix("jvmwatch-ring-test-").tempdir_in(base).unwrap()
}

fn writer(d: &tempfile::TempDir, slots: u64) -> Writer {
    let id = Identity { pid: 1, start_ns: 1, interval_ns: 1, ..Identity::default() };
    Writer::create(&d.path().join("t.ring"), slots, &id).unwrap()
}

/// Event whose fields tie writer thread and counter together, so a mixed-up slot shows.
fn ev(thread: u64, i: u64) -> Event {
    Event::GcPauseEnd { gc_id: thread << 32 | i, collector: Collector::G1, duration_ns: (thread << 32 | i) ^ 0xabcdef }
}

/// `threads` threads, each emitting `ev(thread, 0..each)` in order.
fn spawn_writers(w: &Arc<Writer>, threads: u64, each: u64) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|t| {
            let w = Arc::clone(w);
            std::thread::spawn(move || {
                for i in 0..each {
                    w.emit(&ev(t, i));
                }
            })
        })
        .collect()
}

fn parts(e: &Event) -> (u64, u64) {
    match *e {
        Event::GcPauseEnd { gc_id, duration_ns, .. } => {
            assert_eq!(duration_ns, gc_id ^ 0xabcdef, "slot mixes two events");
            (gc_id >> 32, gc_id & 0xffff_ffff)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn wrap_around_keeps_the_newest_capacity_events() {
    let d = dir();
    let w = writer(&d, 1024);
    assert_eq!(w.capacity(), 1024);
    for i in 0..3 * 1024 + 17 {
        assert_eq!(w.emit(&ev(0, i)), i);
    }
    let r = Ring::open(w.path()).unwrap();
    assert!(r.writer_alive());
    let s = r.scan(0, true).unwrap();
    assert_eq!(s.overwritten, 2 * 1024 + 17);
    assert_eq!(s.torn, 0);
    assert_eq!(s.records.len(), 1024);
    assert_eq!(s.next, 3 * 1024 + 17);
    for (k, rec) in s.records.iter().enumerate() {
        let want = 2 * 1024 + 17 + k as u64;
        assert_eq!(rec.seq, want);
        assert_eq!(parts(&rec.event), (0, want));
    }
    // Resuming from `next` yields nothing new; from an old position counts the loss.
    assert!(r.scan(s.next, true).unwrap().records.is_empty());
    assert_eq!(r.scan(100, true).unwrap().overwritten, 2 * 1024 + 17 - 100);
}

#[test]
fn concurrent_writers_lose_and_duplicate_nothing() {
    const THREADS: u64 = 4;
    const EACH: u64 = 40_000;
    let d = dir();
    let w = Arc::new(writer(&d, 1 << 18)); // large enough not to wrap
    let handles = spawn_writers(&w, THREADS, EACH);
    for h in handles {
        h.join().unwrap();
    }
    let r = Ring::open(w.path()).unwrap();
    let s = r.scan(0, true).unwrap();
    assert_eq!((s.overwritten, s.torn), (0, 0));
    assert_eq!(s.records.len() as u64, THREADS * EACH);
    let mut seqs = HashSet::new();
    let mut next = vec![0u64; THREADS as usize];
    for rec in &s.records {
        assert!(seqs.insert(rec.seq), "duplicate seq {}", rec.seq);
        let (t, i) = parts(&rec.event);
        // Each writer's own events appear in its program order.
        assert_eq!(i, next[t as usize], "thread {t}");
        next[t as usize] += 1;
    }
    assert_eq!(seqs.len() as u64, THREADS * EACH);
    assert!(next.iter().all(|&n| n == EACH));
}

#[test]
fn lapped_reader_counts_what_it_lost_and_never_returns_garbage() {
    const THREADS: u64 = 8;
    const EACH: u64 = 150_000;
    let d = dir();
    let w = Arc::new(writer(&d, 1024)); // small: the writers lap the reader (and each other)
    let done = Arc::new(AtomicBool::new(false));
    // Set by the reader once it has read records while writers were still running.
    let raced = Arc::new(AtomicBool::new(false));
    // Writers that yield now and then, so that on a small machine the reader runs among them;
    // writer 0 also waits half-way until the reader has read something (or 10 s have passed),
    // so the reader surely reads among live writers however the threads are scheduled.
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let w = Arc::clone(&w);
            let raced = Arc::clone(&raced);
            std::thread::spawn(move || {
                for i in 0..EACH {
                    w.emit(&ev(t, i));
                    if i % 512 == 0 {
                        std::thread::yield_now();
                    }
                    if t == 0 && i == EACH / 2 {
                        let t0 = std::time::Instant::now();
                        while !raced.load(Ordering::Acquire) && t0.elapsed().as_secs() < 10 {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                    }
                }
            })
        })
        .collect();
    let reader = {
        let path = w.path().to_path_buf();
        let done = Arc::clone(&done);
        let raced = Arc::clone(&raced);
        std::thread::spawn(move || {
            let r = Ring::open(&path).unwrap();
            let (mut from, mut got, mut overwritten, mut torn) = (0u64, 0u64, 0u64, 0u64);
            let mut got_while_writing = 0u64;
            let mut last = vec![None::<u64>; THREADS as usize];
            loop {
                let finished = done.load(Ordering::Acquire);
                let s = r.scan(from, true).unwrap();
                assert!(s.next >= from && s.next <= THREADS * EACH);
                // Every sequence number in [from, next) is accounted for exactly once.
                assert_eq!(s.records.len() as u64 + s.overwritten + s.torn, s.next - from, "scan from {from}");
                let mut prev_seq = None;
                for rec in &s.records {
                    assert!(rec.seq >= from && rec.seq < s.next, "seq {} outside {from}..{}", rec.seq, s.next);
                    if let Some(p) = prev_seq {
                        assert!(rec.seq > p, "seq {} after {p}", rec.seq);
                    }
                    prev_seq = Some(rec.seq);
                    // No mixed-up slot (checked in `parts`), and each writer's events in order.
                    let (t, i) = parts(&rec.event);
                    assert!(t < THREADS && i < EACH, "{t} {i}");
                    if let Some(prev) = last[t as usize] {
                        assert!(i > prev, "thread {t}: {i} after {prev}");
                    }
                    last[t as usize] = Some(i);
                }
                got += s.records.len() as u64;
                if !finished && !s.records.is_empty() {
                    got_while_writing += s.records.len() as u64;
                    raced.store(true, Ordering::Release);
                }
                overwritten += s.overwritten;
                torn += s.torn;
                from = s.next;
                if finished && from == THREADS * EACH {
                    return (got, got_while_writing, overwritten, torn);
                }
            }
        })
    };
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let (got, got_while_writing, overwritten, torn) = reader.join().unwrap();
    eprintln!("read {got} ({got_while_writing} while writing), overwritten {overwritten}, torn {torn}");
    assert_eq!(got + overwritten + torn, THREADS * EACH, "every event is either read or counted lost");
    assert!(overwritten > 0, "the test should have lapped the reader");
    assert!(got >= 1024, "the reader read something");
    assert!(got_while_writing > 0, "the reader raced the writers");
    // Quiescent now: the newest `capacity` slots all read back, none pending or torn.
    let r = Ring::open(w.path()).unwrap();
    let s = r.scan(0, true).unwrap();
    assert_eq!(s.next, THREADS * EACH);
    assert_eq!(s.records.len() as u64 + s.overwritten + s.torn, THREADS * EACH);
    assert_eq!(s.records.len() as u64 + s.torn, 1024);
}

/// A writer that reserved its sequence number and then stalled for a whole lap, at each point
/// of the write: when it resumes it must not put its old record over the newer one in its slot.
#[test]
fn a_writer_lapped_mid_write_leaves_the_newer_record_alone() {
    for pause in ["before claim", "after claim", "after write"] {
        let d = dir();
        let w = writer(&d, 1024);
        let mut stalled = w.emit_in_steps(7, &ev(9, 0));
        assert_eq!(stalled.seq(), 0);
        let mut claimed = false;
        let mut wrote = false;
        if pause != "before claim" {
            claimed = stalled.claim();
            assert!(claimed, "{pause}");
        }
        if pause == "after write" {
            wrote = stalled.write();
            assert!(wrote, "{pause}");
        }
        // Other writers go round the ring and past seq 0's slot (seq 1024 lives there).
        for i in 1..1024 + 10 {
            assert_eq!(w.emit(&ev(0, i)), i);
        }
        // The stalled writer resumes.
        if !claimed {
            claimed = stalled.claim();
        }
        if !wrote {
            wrote = stalled.write();
        }
        let published = stalled.publish();
        let r = Ring::open(w.path()).unwrap();
        // A live reader waiting at seq 1024 reads it and everything after; it does not stop.
        let s = r.scan(1024, true).unwrap();
        assert_eq!(s.next, 1034, "{pause}: the live scan stopped at the stalled writer's slot");
        assert_eq!(s.records.first().map(|r| r.seq), Some(1024), "{pause}");
        assert_eq!(parts(&s.records[0].event), (0, 1024), "{pause}: the newer record survives");
        assert_eq!((s.records.len(), s.overwritten, s.torn), (10, 0, 0), "{pause}");
        let all = r.scan(0, true).unwrap();
        assert_eq!((all.records.len(), all.overwritten, all.torn, all.next), (1024, 10, 0, 1034), "{pause}");
        assert!(!published, "{pause}: a lapped record is dropped (claim {claimed}, write {wrote})");
    }
}

#[test]
fn snapshot_survives_a_torn_update() {
    let d = dir();
    let w = writer(&d, 1024);
    let r = Ring::open(w.path()).unwrap();
    assert_eq!(r.snapshot().unwrap(), None);
    let mut s = Snapshot::default();
    s.heap_used = 1;
    s.push_pool(Pool { name: Name::new("Eden"), heap: true, used: 5, ..Pool::default() });
    assert!(w.write_snapshot(&s));
    s.heap_used = 2;
    assert!(w.write_snapshot(&s));
    assert_eq!(r.snapshot().unwrap().unwrap().heap_used, 2);
    // Tear the newest buffer (generation 2 lives in buffer 0) as a writer dying mid-update
    // would: the reader falls back to the previous snapshot.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(w.path()).unwrap();
    let off = jvmwatch_ring::layout::SNAPSHOT_OFFSET as u64 + jvmwatch_ring::layout::snap::BODY as u64 + 3;
    f.write_all_at(&[0xee], off).unwrap();
    assert_eq!(r.snapshot().unwrap().unwrap().heap_used, 1);
}

#[test]
fn liveness_follows_the_writer_lock() {
    let d = dir();
    let w = writer(&d, 1024);
    let path = w.path().to_path_buf();
    w.set_state(State::Running);
    let r = Ring::open(&path).unwrap();
    assert!(r.writer_alive());
    assert_eq!(r.live().unwrap().state, Some(State::Running));
    drop(w);
    assert!(!r.writer_alive());
    assert!(!Ring::open(&path).unwrap().writer_alive());
}

#[test]
fn files_are_private_and_never_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir();
    let w = writer(&d, 1024);
    let mode = std::fs::metadata(w.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let id = Identity::default();
    assert!(Writer::create(w.path(), 1024, &id).is_err(), "an existing ring is never replaced");
    // A symlink at the target name is not followed or replaced either.
    let link = d.path().join("link.ring");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    assert!(Writer::create(&link, 1024, &id).is_err());
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn create_in_names_files_uniquely_and_refuses_foreign_dirs() {
    let d = dir();
    let id = Identity { pid: 7, start_ns: 123_000_000, ..Identity::default() };
    let a = Writer::create_in(d.path(), 1024, &id).unwrap();
    let b = Writer::create_in(d.path(), 1024, &id).unwrap();
    assert_ne!(a.path(), b.path(), "same pid and start time still get distinct names");
    assert!(a.path().file_name().unwrap().to_str().unwrap().starts_with("7-123-"));
    let link = d.path().join("dirlink");
    std::os::unix::fs::symlink(d.path(), &link).unwrap();
    assert!(Writer::create_in(&link, 1024, &id).unwrap_err().to_string().contains("symlink"));
}

#[test]
fn metrics_region_roundtrips_counters_gauges_timers_and_strings() {
    use jvmwatch_ring::metrics::{bucket_of, quantile, Kind, MAX_INSTRUMENTS};
    let d = dir();
    let w = Arc::new(writer(&d, 1024));
    let c = w.register(Kind::Counter, "requests{route=/a}").unwrap();
    assert_eq!(w.register(Kind::Counter, "requests{route=/a}"), Some(c), "registration is idempotent");
    let g = w.register(Kind::Gauge, "queue.depth").unwrap();
    let t = w.register(Kind::Timer, "latency").unwrap();
    assert_ne!(c, g);
    assert_eq!(w.register(Kind::Gauge, ""), None);
    assert_eq!(w.register(Kind::Gauge, &"x".repeat(200)), None);
    let handles: Vec<_> = (0..4)
        .map(|th| {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                for i in 0..10_000u64 {
                    w.counter_add(c, th, 1);
                    w.timer_record(t, th, (i % 100 + 1) * 1000);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    w.gauge_set(g, -5);
    let a = w.intern("System.gc()");
    assert_eq!(w.intern("System.gc()"), a);
    let b = w.intern("G1 Young Generation");
    assert_ne!(a, b);
    let (ins, strings) = Ring::open(w.path()).unwrap().metrics().unwrap();
    assert_eq!(strings[a as usize], "System.gc()");
    assert_eq!(strings[b as usize], "G1 Young Generation");
    // The sidecar's read: the string table only when its count moved, the same instruments.
    let r = Ring::open(w.path()).unwrap();
    let (same, fresh) = r.metrics_since(0).unwrap();
    assert_eq!(fresh.as_ref(), Some(&strings));
    assert_eq!(same, ins);
    let (same, unchanged) = r.metrics_since(strings.len()).unwrap();
    assert_eq!((same, unchanged), (ins.clone(), None));
    let c2 = w.intern("a third string");
    let (_, grown) = r.metrics_since(strings.len()).unwrap();
    assert_eq!(grown.unwrap()[c2 as usize], "a third string");
    let get = |n: &str| ins.iter().find(|i| i.name == n).unwrap().clone();
    assert_eq!(get("requests{route=/a}").value, 40_000);
    assert_eq!(get("queue.depth").gauge(), -5);
    let lat = get("latency");
    assert_eq!(lat.value, 40_000);
    assert_eq!(lat.sum, 4 * 100 * (1..=100u64).map(|v| v * 1000).sum::<u64>());
    assert_eq!(lat.max, 100_000);
    assert_eq!(lat.buckets.iter().sum::<u64>(), 40_000);
    assert_eq!(bucket_of(quantile(&lat.buckets, 0.5, lat.max).unwrap()), bucket_of(50_000));
    // A timer takes four slots: counter, gauge, timer = 6. The table fills up cleanly, and a
    // timer needs four free slots.
    assert_eq!(ins.iter().map(|i| i.index).collect::<Vec<_>>(), vec![c, g, t]);
    for i in 0..MAX_INSTRUMENTS - 6 - 3 {
        assert!(w.register(Kind::Counter, &format!("c{i}")).is_some());
    }
    assert_eq!(w.register(Kind::Timer, "no room"), None, "three slots left");
    assert!(w.register(Kind::Counter, "last three").is_some());
    assert!(w.register(Kind::Counter, "last two").is_some());
    assert!(w.register(Kind::Counter, "last one").is_some());
    assert_eq!(w.register(Kind::Counter, "one too many"), None);
    let (ins, _) = Ring::open(w.path()).unwrap().metrics().unwrap();
    assert_eq!(ins.len(), MAX_INSTRUMENTS - 3);
    assert_eq!(ins.iter().find(|i| i.name == "latency").unwrap().value, 40_000);
}

/// Rings of format versions 1 and 2 keep a timer in one slot with shared buckets: still read.
#[test]
fn timers_of_version_1_and_2_rings_are_still_read() {
    use jvmwatch_ring::layout::{hdr, METRICS_OFFSET};
    use jvmwatch_ring::metrics::{bucket_of, ins, Kind, HEADER, INSTRUMENT_SIZE};
    let d = dir();
    let w = writer(&d, 1024);
    let c = w.register(Kind::Counter, "requests").unwrap();
    w.counter_add(c, 3, 7);
    let path = w.path().to_path_buf();
    drop(w);
    let mut bytes = std::fs::read(&path).unwrap();
    let put = |b: &mut Vec<u8>, at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    // Slot 1: a timer as a version 2 agent wrote it: 64-byte stripes (word 1 sum, word 2 max)
    // and one bucket array at 640.
    let t = METRICS_OFFSET + HEADER + INSTRUMENT_SIZE;
    put(&mut bytes, t, &3u32.to_le_bytes());
    put(&mut bytes, t + 4, &7u32.to_le_bytes());
    put(&mut bytes, t + 8, b"latency");
    for (s, ns) in [(0usize, 2000u64), (5, 9000)] {
        put(&mut bytes, t + ins::STRIPES + s * ins::STRIPE_SIZE + 8, &ns.to_le_bytes());
        put(&mut bytes, t + ins::STRIPES + s * ins::STRIPE_SIZE + 16, &ns.to_le_bytes());
        put(&mut bytes, t + ins::BUCKETS + 8 * bucket_of(ns), &1u64.to_le_bytes());
    }
    put(&mut bytes, METRICS_OFFSET, &2u32.to_le_bytes());
    for version in [1u32, 2] {
        put(&mut bytes, hdr::VERSION, &version.to_le_bytes());
        if version == 1 {
            bytes[hdr::HISTORY_OFFSET..hdr::HEADER_CRC].fill(0); // a version 1 header has no geometry
            bytes.truncate(jvmwatch_ring::layout::file_size(1024) as usize);
            let len = bytes.len() as u64;
            put(&mut bytes, hdr::FILE_SIZE, &len.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes[..hdr::HEADER_CRC]);
        put(&mut bytes, hdr::HEADER_CRC, &crc.to_le_bytes());
        let p = d.path().join(format!("v{version}.ring"));
        std::fs::write(&p, &bytes).unwrap();
        let r = Ring::open(&p).unwrap();
        assert_eq!(r.header().version, version);
        let (all, _) = r.metrics().unwrap();
        assert_eq!(all.len(), 2, "v{version}");
        assert_eq!((all[0].kind, all[0].value), (Kind::Counter, 7));
        let lat = &all[1];
        assert_eq!((lat.kind, lat.name.as_str(), lat.index), (Kind::Timer, "latency", 1));
        assert_eq!((lat.value, lat.sum, lat.max), (2, 11_000, 9000), "v{version}");
        assert_eq!(lat.buckets[bucket_of(2000)] + lat.buckets[bucket_of(9000)], 2);
        let live = r.live().unwrap();
        assert_eq!(live.gc_finish_cost.quantile(0.99), None, "no histogram before version 3");
    }
}

/// Running as root lets a test hand a path to another user; otherwise it says so and skips.
fn chown_to_nobody(p: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can hand a path to another user");
        return false;
    }
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
    true
}

#[test]
fn a_shared_sticky_directory_of_another_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir();
    let shared = d.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    if !chown_to_nobody(&shared) {
        return;
    }
    let id = Identity { pid: 7, start_ns: 1, ..Identity::default() };
    let err = Writer::create_in(&shared, 1024, &id).unwrap_err().to_string();
    assert!(err.contains("owned by uid 65534"), "{err}");
    assert!(jvmwatch_ring::ensure_dir(&shared).is_err());
}

#[test]
fn fifos_symlinks_and_devices_are_refused_without_hanging() {
    let d = dir();
    let w = writer(&d, 1024);
    let fifo = d.path().join("fifo.ring");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let link = d.path().join("link.ring");
    std::os::unix::fs::symlink(w.path(), &link).unwrap();
    // On another thread: a blocking open of a FIFO would never return.
    let (tx, rx) = std::sync::mpsc::channel();
    let paths = [fifo.clone(), link.clone(), PathBuf::from("/dev/zero"), d.path().to_path_buf()];
    std::thread::spawn(move || {
        for p in paths {
            tx.send((p.clone(), Ring::open(&p).map(|_| ()).map_err(|e| e.to_string()))).unwrap();
        }
    });
    for _ in 0..4 {
        let (p, r) = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("Ring::open returned");
        let e = r.expect_err(&format!("{} accepted", p.display()));
        if p == link {
            assert!(e.contains("symlink"), "{e}");
        }
    }
    assert!(Ring::open(w.path()).is_ok());
}

#[test]
fn an_attached_writer_appends_to_another_writers_ring() {
    let d = dir();
    let w = writer(&d, 1024);
    w.emit(&ev(0, 0));
    let other = Writer::attach(w.path()).unwrap();
    let text = jvmwatch_ring::Text::new("gc_thrash: restart", 39);
    assert_eq!(other.emit(&Event::ControllerAction { stage: 2, text }), 1);
    w.emit(&ev(0, 1));
    let r = Ring::open(w.path()).unwrap();
    assert!(r.writer_alive(), "attaching takes no lock");
    let s = r.scan(0, true).unwrap();
    assert_eq!(s.records.len(), 3);
    assert_eq!(s.records[1].event.type_name(), "controller_action");
    let garbage = d.path().join("garbage.ring");
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    assert!(Writer::attach(&garbage).unwrap_err().to_string().contains("not a ring"));
}

#[test]
fn the_attached_flag_roundtrips_through_the_header() {
    use jvmwatch_ring::layout::FLAG_ATTACHED;
    let d = dir();
    let plain = Identity { pid: 7, start_ns: 1, ..Identity::default() };
    let attached = Identity { flags: FLAG_ATTACHED, ..plain.clone() };
    let a = Writer::create(&d.path().join("a.ring"), 1024, &plain).unwrap();
    let b = Writer::create(&d.path().join("b.ring"), 1024, &attached).unwrap();
    assert!(!Ring::open(a.path()).unwrap().header().attached());
    let h = Ring::open(b.path()).unwrap().header().clone();
    assert!(h.attached());
    assert_eq!(h.flags, FLAG_ATTACHED);
}

/// The agent's GC-callback self-measurement: counters and a histogram per callback, read back.
#[test]
fn gc_callback_costs_are_read_back_as_distributions() {
    use jvmwatch_ring::cbcost::bucket_of;
    let d = dir();
    let w = writer(&d, 1024);
    for ns in [300u64, 400, 500, 600, 5000] {
        w.record_callback_cost(ns);
        w.record_start_callback_cost(ns / 2);
    }
    let live = Ring::open(w.path()).unwrap().live().unwrap();
    let f = &live.gc_finish_cost;
    assert_eq!((f.count, f.total_ns, f.max_ns), (5, 6800, 5000));
    assert_eq!(f.buckets.iter().sum::<u64>(), 5);
    assert_eq!(bucket_of(f.quantile(0.5).unwrap()), bucket_of(500));
    assert_eq!(f.quantile(0.99), Some(5000));
    let s = &live.gc_start_cost;
    assert_eq!((s.count, s.total_ns, s.max_ns), (5, 3400, 2500));
    assert_eq!(bucket_of(s.quantile(0.5).unwrap()), bucket_of(250));
}

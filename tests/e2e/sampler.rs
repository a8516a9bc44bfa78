//! The sampler's figures against their sources: thread states as threads block and end (the
//! census keeps its thread list while no thread starts or ends, and must notice when one
//! does), and the heap, pool, collector and thread figures it reads through JMM against what
//! the MXBeans say in the same quiet JVM, on every LTS JDK (11 reads them through the Java
//! probe: its JMM is not one the agent knows).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use jvmwatch_ring::{Name, Ring, Snapshot, UNKNOWN};
use jvmwatch_tests::*;

/// `Snapshot::thread_states` indexes (ring::THREAD_STATES).
const BLOCKED: usize = 2;
const WAITING: usize = 3;
const TERMINATED: usize = 5;

/// The ring's latest snapshot, if it has one yet.
fn snapshot(ring: &Path) -> Option<Snapshot> {
    Ring::open(ring).ok()?.snapshot().ok()?
}

#[test]
fn thread_states_follow_threads_that_block_and_end() {
    for jdk in jdks() {
        let dir = tempdir();
        let ring = dir.path().join("census.ring");
        let opts = format!("path={},interval=100ms", ring.display());
        let _jvm = spawn(java_cmd(&jdk, &opts, &["-Xmx64m"], "SamplerCheck", &["census"], dir.path()));
        let limit = Duration::from_secs(60);
        let first = wait_for(limit, || snapshot(&ring).filter(|s| s.thread_states[BLOCKED] == 4))
            .unwrap_or_else(|| panic!("JDK {}: never 4 blocked threads: {:?}", jdk.label, snapshot(&ring)));
        assert!(first.thread_states[WAITING] >= 3, "JDK {}: {:?}", jdk.label, first.thread_states);
        // Ten samples on, with no thread started or ended since: the census reads the states
        // of the list it kept.
        let later = wait_for(limit, || snapshot(&ring).filter(|s| s.time_ns > first.time_ns + 1_000_000_000))
            .unwrap_or_else(|| panic!("JDK {}: the sampler stopped", jdk.label));
        assert_eq!(later.thread_states[BLOCKED], 4, "JDK {}: {:?}", jdk.label, later.thread_states);
        assert!(later.thread_states[WAITING] >= 3, "JDK {}: {:?}", jdk.label, later.thread_states);

        // All 7 end: none may be counted any more, in any state.
        std::fs::write(dir.path().join("end"), "").unwrap();
        let ended = wait_for(limit, || {
            snapshot(&ring).filter(|s| {
                s.thread_states[BLOCKED] == 0 && s.thread_states[WAITING] + 3 <= first.thread_states[WAITING]
            })
        })
        .unwrap_or_else(|| panic!("JDK {}: the ended threads are still counted: {:?}", jdk.label, snapshot(&ring)));
        assert_eq!(ended.thread_states[TERMINATED], 0, "JDK {}: {:?}", jdk.label, ended.thread_states);

        // Two new threads block: the census lists the threads afresh and finds them.
        std::fs::write(dir.path().join("again"), "").unwrap();
        let again =
            wait_for(limit, || snapshot(&ring).filter(|s| s.thread_states[BLOCKED] == 2)).unwrap_or_else(|| {
                panic!("JDK {}: the new blocked threads never counted: {:?}", jdk.label, snapshot(&ring))
            });
        assert_eq!(again.thread_states[TERMINATED], 0, "JDK {}: {:?}", jdk.label, again.thread_states);
    }
}

#[test]
fn sampler_figures_match_the_mxbeans() {
    for jdk in matrix_jdks() {
        let dir = tempdir();
        let ring = dir.path().join("figures.ring");
        let opts = format!("path={},interval=100ms", ring.display());
        let jvm_args = ["-XX:+UseG1GC", "-Xmx128m"];
        let _jvm = spawn(java_cmd(&jdk, &opts, &jvm_args, "SamplerCheck", &["figures"], dir.path()));
        let text = wait_for(Duration::from_secs(60), || std::fs::read_to_string(dir.path().join("figures.txt")).ok())
            .unwrap_or_else(|| panic!("JDK {}: no figures.txt", jdk.label));
        let written = now_ns();
        // A snapshot sampled after the figures were: the JVM is quiet, so they agree.
        let s = wait_for(Duration::from_secs(30), || snapshot(&ring).filter(|s| s.time_ns > written))
            .unwrap_or_else(|| panic!("JDK {}: no snapshot after the figures", jdk.label));
        let figures: HashMap<&str, i64> = text
            .lines()
            .filter_map(|l| l.rsplit_once('='))
            .map(|(k, v)| (k, v.parse().unwrap_or_else(|_| panic!("bad line {k}={v}"))))
            .collect();
        let fig = |key: &str| -> u64 {
            match figures.get(key) {
                Some(-1) => UNKNOWN,
                Some(v) => *v as u64,
                None => panic!("JDK {}: figures.txt has no {key}:\n{text}", jdk.label),
            }
        };
        let label = &jdk.label;
        assert_eq!(s.heap_committed, fig("heap.committed"), "JDK {label}: heap committed");
        assert_eq!(s.heap_max, fig("heap.max"), "JDK {label}: heap max");
        assert_eq!(s.threads_live as u64, fig("threads.live"), "JDK {label}: live threads");
        assert_eq!(s.threads_daemon as u64, fig("threads.daemon"), "JDK {label}: daemon threads");
        let gcs = figures.keys().filter(|k| k.starts_with("gc.") && k.ends_with(".count")).count();
        assert_eq!(s.collectors().len(), gcs, "JDK {label}: {:?}", s.collectors());
        for c in s.collectors() {
            let name = c.name.as_str();
            assert_eq!(c.count, fig(&format!("gc.{name}.count")), "JDK {label}: {name} count");
            assert_eq!(c.time_ms, fig(&format!("gc.{name}.time")), "JDK {label}: {name} time");
        }
        // The two System.gc() calls at least.
        assert!(s.gc_count() >= 2, "JDK {label}: {:?}", s.collectors());
        let pools = figures.keys().filter(|k| k.starts_with("pool.") && k.ends_with(".max")).count();
        assert_eq!(s.pools().len(), pools, "JDK {label}: {:?}", s.pools());
        for p in s.pools() {
            let name = p.name.as_str();
            let key = |field: &str| format!("pool.{}.{field}", Name::new(&name).as_str());
            // Non-heap pools grow while the JVM writes the figures out (its classes load,
            // its code compiles); the heap's stay put in a JVM that does not allocate.
            if p.heap {
                assert_eq!(p.committed, fig(&key("committed")), "JDK {label}: {name} committed");
            }
            assert_eq!(p.max, fig(&key("max")), "JDK {label}: {name} max");
            assert_eq!(p.used_after_gc, fig(&key("after_gc")), "JDK {label}: {name} used after GC");
        }
        assert!(s.pools().iter().any(|p| p.heap && p.used_after_gc != UNKNOWN), "JDK {label}: {:?}", s.pools());
    }
}

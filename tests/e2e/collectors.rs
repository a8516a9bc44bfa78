//! Every collector, on every JDK of the matrix, produces GC pause events.

use jvmwatch_tests::*;
use serde_json::Value;

#[test]
fn every_collector_produces_pause_events() {
    let gcs = [
        ("-XX:+UseG1GC", "G1"),
        ("-XX:+UseParallelGC", "Parallel"),
        ("-XX:+UseSerialGC", "Serial"),
        ("-XX:+UseZGC", "ZGC"),
        ("-XX:+UseShenandoahGC", "Shenandoah"),
    ];
    let mut checked = 0;
    for jdk in jdks() {
        for (flag, name) in gcs {
            let r = run_and_inspect(&jdk, &[flag, "-Xmx128m"], "GcChurn", &["600"]);
            let ends: Vec<_> = r["events"].as_array().unwrap().iter().filter(|e| e["type"] == "gc_pause_end").collect();
            assert!(!ends.is_empty(), "JDK {} {flag}: no gc_pause_end", jdk.label);
            assert!(ends.iter().all(|e| e["collector"] == name), "JDK {} {flag}: {:?}", jdk.label, ends.first());
            assert!(ends.iter().all(|e| e["duration_ms"].as_f64().unwrap() >= 0.0));
            assert_eq!(r["jvm"]["collector"], name);
            assert_eq!(r["gc"]["pauses"].as_u64().unwrap() as usize, ends.len());
            // Heap after GC is the heap right after a whole collection (all pools, as the
            // GC notification gives it), not the sum of the pools' own after-GC usage.
            let after = r["snapshot"]["heap_used_after_gc_bytes"].as_u64();
            let cycles: Vec<u64> = r["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "gc_cycle")
                .filter_map(|e| e["heap_after_bytes"].as_u64())
                .collect();
            // GC notifications are delivered asynchronously: a JVM may exit before any reached
            // the agent (then the snapshot has the per-pool fallback). A figure from a
            // collection must be one that a gc_cycle event carried.
            assert!(after.is_some_and(|a| a > 0), "JDK {} {flag}: after GC {after:?}", jdk.label);
            if r["snapshot"]["heap_after_gc_from"] == "collection" {
                assert!(
                    cycles.contains(&after.unwrap()),
                    "JDK {} {flag}: after GC {after:?}, cycles {cycles:?}",
                    jdk.label
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no run had a heap-after-GC figure from a collection");
}

/// A JVM that collects and ends at once still tells that collection: the in-VM monitor reads
/// once more at VM death. (A JVM that never collected skips that read, so that it does not wait
/// for JMX to set up on its way out; `bench/` times that as a short-lived JVM's exit.)
#[test]
fn a_jvm_that_collects_and_ends_at_once_tells_its_collection() {
    for jdk in jdks() {
        for (flag, collector) in [("-XX:+UseG1GC", "G1 Old Generation"), ("-XX:+UseSerialGC", "MarkSweepCompact")] {
            let r = run_and_inspect(&jdk, &[flag, "-Xmx64m"], "GcExit", &[]);
            let cycles: Vec<&Value> =
                r["events"].as_array().unwrap().iter().filter(|e| e["type"] == "gc_cycle").collect();
            assert!(
                cycles.iter().any(|c| c["collector"] == collector),
                "JDK {} {flag}: no {collector} collection told: {cycles:?}",
                jdk.label
            );
        }
    }
}

/// `gc=poll` (the default: the monitor thread reads the last collection through JMM, or
/// `getLastGcInfo()` on a JDK before 14, when the JVMTI GC-finish callback counted one, and the
/// cause from hsperfdata) and `gc=notify` (a JMX notification per
/// collection) tell the same details: collector, cause, action, heap and pools before/after.
#[test]
fn gc_poll_and_notify_tell_the_same_collection_details() {
    let gcs = [
        ("-XX:+UseG1GC", "G1 Old Generation"),
        ("-XX:+UseParallelGC", "PS MarkSweep"),
        ("-XX:+UseSerialGC", "MarkSweepCompact"),
    ];
    // JDK 11 too: its JMM (version 2) is not one the agent reads, so gc=poll falls back to
    // getLastGcInfo() there. (21 reads the same JMM version as 25.)
    for jdk in matrix_jdks().into_iter().filter(|j| j.label != "21") {
        for (flag, major) in gcs {
            for source in ["poll", "notify"] {
                let label = format!("JDK {} {flag} gc={source}", jdk.label);
                let dir = tempdir();
                let ring = dir.path().join("gc.ring");
                let opts = format!("path={},gc={source}", ring.display());
                let mut cmd = java_cmd(&jdk, &opts, &[flag, "-Xmx64m"], "Matrix", &[], dir.path());
                cmd.stdin(std::process::Stdio::piped());
                let mut child = spawn(cmd);
                // Matrix collects (allocation, then System.gc()) until its stdin ends: wait
                // until the ring has an explicit full collection with its pools (Parallel
                // scavenges first, with the same cause).
                let find = |r: &Value| -> Option<(Value, Vec<Value>)> {
                    let events = r["events"].as_array()?.clone();
                    let cycle = events
                        .iter()
                        .find(|e| {
                            e["type"] == "gc_cycle"
                                && e["collector"] == major
                                && e["cause"] == "System.gc()"
                                && events.iter().any(|p| p["type"] == "gc_pool" && p["gc_number"] == e["gc_number"])
                        })?
                        .clone();
                    Some((cycle, events))
                };
                // ... and a young collection told as minor: the first rounds' may come before
                // the monitor listens (gc=notify registers on the monitor's own thread).
                let minor = |events: &[Value]| {
                    events.iter().any(|e| e["type"] == "gc_cycle" && e["action"] == "end of minor GC")
                };
                let seen = wait_for(std::time::Duration::from_secs(30), || {
                    ring.exists().then_some(())?;
                    find(&inspect(&ring, 1_000_000)).filter(|(_, events)| minor(events))
                });
                drop(child.stdin.take());
                assert!(child.wait().unwrap().success(), "{label}");
                assert!(seen.is_some(), "{label}: no System.gc() cycle and minor collection: {}", inspect(&ring, 40));
                // Judge the file of the exited JVM: a live read may catch a cycle before all
                // of its pools are written.
                let (cycle, events) = find(&inspect(&ring, 1_000_000)).unwrap();
                assert_eq!(cycle["action"], "end of major GC", "{label}: {cycle}");
                assert_eq!(cycle["concurrent"], false, "{label}: {cycle}");
                // The pools of that collection (written after it; numbers are per collector,
                // so stop at the next cycle with the same number) add up to its heap figures.
                let seq = |e: &Value| e["seq"].as_u64().unwrap();
                let same = |e: &&Value| e["gc_number"] == cycle["gc_number"] && seq(e) > seq(&cycle);
                let end =
                    events.iter().filter(same).filter(|e| e["type"] == "gc_cycle").map(seq).min().unwrap_or(u64::MAX);
                let pools: Vec<&Value> =
                    events.iter().filter(same).filter(|p| p["type"] == "gc_pool" && seq(p) < end).collect();
                let sum = |k: &str| pools.iter().map(|p| p[k].as_u64().unwrap()).sum::<u64>();
                assert_eq!(sum("before_bytes"), cycle["heap_before_bytes"].as_u64().unwrap(), "{label}: {pools:?}");
                assert_eq!(sum("after_bytes"), cycle["heap_after_bytes"].as_u64().unwrap(), "{label}: {pools:?}");
                // Each figure is its own pool's (sums alone would not tell pools mixed up): a
                // full collection leaves the young generation's eden empty.
                let eden: Vec<_> = pools.iter().filter(|p| p["pool"].as_str().unwrap().contains("Eden")).collect();
                assert_eq!(eden.len(), 1, "{label}: {pools:?}");
                assert_eq!(eden[0]["after_bytes"], 0, "{label}: {pools:?}");
                // Young collections are told too, as minor ones.
                assert!(minor(&events), "{label}: no minor collection");
            }
        }
    }
}

/// `gc-poll=DURATION` paces the monitor: it reads at most once a nap (and at its 1 s tick), so
/// under a collection storm it tells few collections; every other one is counted in
/// `jvm.gc.coalesced`, none vanishes. `auto` (the default) reads far more often.
#[test]
fn gc_poll_period_tells_fewer_collections_and_counts_the_rest() {
    let jdk = &jdks()[0];
    let mut told_by_mode = Vec::new();
    for mode in ["auto", "1s"] {
        let label = format!("JDK {} gc-poll={mode}", jdk.label);
        let dir = tempdir();
        let ring = dir.path().join("poll.ring");
        // Serial with a small heap collects about a thousand times a second under GcChurn here
        // (3,600-4,400 pauses in 3 s); it has no concurrent cycles, so every collection is a
        // polled stop-the-world one.
        let cmd = java_cmd(
            jdk,
            &format!("path={},gc-poll={mode}", ring.display()),
            &["-XX:+UseSerialGC", "-Xmx64m"],
            "GcChurn",
            &["3000", "3"],
            dir.path(),
        );
        let started = std::time::Instant::now();
        let out = run(cmd);
        let secs = started.elapsed().as_secs_f64();
        assert!(out.status.success(), "{label}: {}", String::from_utf8_lossy(&out.stderr));
        let r = inspect(&ring, 1_000_000);
        let events = r["events"].as_array().unwrap();
        let seq = |e: &Value| e["seq"].as_u64().unwrap();
        let cycles: Vec<&Value> = events.iter().filter(|e| e["type"] == "gc_cycle").collect();
        let told = cycles.len() as u64;
        let coalesced = metric(&r, "jvm.gc.coalesced").and_then(|m| m["value"].as_u64()).unwrap_or(0);
        let total: u64 =
            r["snapshot"]["collectors"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum();
        let first = cycles.iter().map(|e| seq(e)).min().unwrap_or_else(|| panic!("{label}: no gc_cycle"));
        // Every pause that ended after the first collection told is told or counted (a pause
        // holds one collection or more: Serial's full collections may scavenge first).
        let pauses_after = events.iter().filter(|e| e["type"] == "gc_pause_end" && seq(e) > first).count() as u64;
        assert!(
            told + coalesced >= pauses_after,
            "{label}: told {told} + coalesced {coalesced} < {pauses_after} pauses"
        );
        // ... and none twice: the collectors' own counts bound the sum.
        assert!(told + coalesced <= total, "{label}: told {told} + coalesced {coalesced} > {total} collections");
        assert!(pauses_after > 100, "{label}: only {pauses_after} pauses: no collection storm");
        if mode == "1s" {
            // A read a second at most from the naps (a fixed nap is not cut short by a
            // collection) and one from the tick, plus the one at VM death; each tells at most
            // the two collectors' last collections.
            let reads = 2 * (secs.ceil() as u64 + 1) + 1;
            assert!(told <= 2 * reads, "{label}: {told} collections told in {secs:.1} s");
            assert!(coalesced > 0, "{label}: nothing coalesced");
        }
        told_by_mode.push(told);
    }
    assert!(
        told_by_mode[0] > told_by_mode[1],
        "auto told {} collections, 1s told {}",
        told_by_mode[0],
        told_by_mode[1]
    );
}

/// With several collections of each collector between two reads (`gc-poll=200ms`, Matrix's
/// rounds of allocation → young collection → `System.gc()` every 50 ms: about four of each,
/// few enough that the agent still keeps their causes), a collection whose finish number
/// cannot be told for sure gets no cause (`?`), never another pause's.
#[test]
fn coalesced_reads_never_give_a_collection_another_pauses_cause() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("mixed.ring");
    let opts = format!("path={},gc-poll=200ms", ring.display());
    let mut cmd = java_cmd(jdk, &opts, &["-XX:+UseSerialGC", "-Xmx64m"], "Matrix", &[], dir.path());
    cmd.stdin(std::process::Stdio::piped());
    let mut child = spawn(cmd);
    let cycles = |r: &Value| -> Vec<Value> {
        let events = r["events"].as_array().cloned().unwrap_or_default();
        events.into_iter().filter(|e| e["type"] == "gc_cycle").collect()
    };
    // Wait for several reads, each after a nap with many collections of both collectors.
    let enough = wait_for(std::time::Duration::from_secs(60), || {
        ring.exists().then_some(())?;
        let c = cycles(&inspect(&ring, 1_000_000));
        (c.iter().filter(|e| e["action"] == "end of major GC").count() >= 10).then_some(())
    });
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert!(enough.is_some(), "too few major collections told: {}", inspect(&ring, 40));
    let r = inspect(&ring, 1_000_000);
    let c = cycles(&r);
    let coalesced = metric(&r, "jvm.gc.coalesced").and_then(|m| m["value"].as_u64());
    assert!(coalesced.unwrap_or(0) > 0, "no collection coalesced: the case is not exercised");
    for e in &c {
        let (action, cause) = (e["action"].as_str().unwrap(), e["cause"].as_str().unwrap_or("?"));
        match action {
            // Matrix calls System.gc() only for full collections; its young ones are allocation
            // failures.
            "end of minor GC" => assert_ne!(cause, "System.gc()", "a young collection with a full one's cause: {e}"),
            "end of major GC" => {
                assert!(cause == "System.gc()" || cause == "?", "a full collection with cause {cause}: {e}")
            }
            _ => panic!("unexpected action: {e}"),
        }
    }
    assert!(
        c.iter().any(|e| e["action"] == "end of major GC" && e["cause"] == "System.gc()"),
        "no full collection with its cause: {c:?}"
    );
}

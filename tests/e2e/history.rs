//! Flight history (issue 14): the history region, the leak findings and the stacks region,
//! read from the files of real JVMs — killed, deadlocked or run out of memory.

use std::path::Path;
use std::time::{Duration, Instant};

use jvmwatch_tests::http::*;
use jvmwatch_tests::*;
use serde_json::Value;

/// `inspect --json` every 250 ms until `f` accepts the report (a liveness guard, not a timing
/// assertion: every wait below is for a condition the JVM is driven to).
fn poll_inspect<T>(ring: &Path, limit: Duration, mut f: impl FnMut(&Value) -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if ring.exists() {
            if let Some(v) = f(&inspect(ring, 0)) {
                return Some(v);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

fn history_json(ring: &Path) -> Value {
    let out =
        std::process::Command::new(jvmwatch()).args(["inspect", "--history", "--json"]).arg(ring).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn findings(r: &Value) -> Vec<String> {
    r["findings"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect()
}

#[test]
fn a_deadlocked_jvm_killed_after_the_finding_leaves_both_threads_and_their_locks_in_its_file() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("deadlock.ring");
    let mut jvm = spawn(java_cmd(jdk, &format!("path={}", ring.display()), &[], "Deadlock", &[], dir.path()));
    // The deadlock finding, and the capture it triggers (stacks=60s by default: this one is
    // the deadlock's own).
    poll_inspect(&ring, Duration::from_secs(60), |r| {
        (findings(r).contains(&"deadlock".to_string()) && r["stacks"]["reason"] == "dump_request").then_some(())
    })
    .expect("deadlock finding and its stacks capture");
    jvm.kill().unwrap();
    jvm.wait().unwrap();

    let r = inspect(&ring, 0);
    assert_eq!(r["verdict"], "killed");
    let threads = r["stacks"]["threads"].as_array().unwrap();
    for (me, other) in [("Deadlock-A", "Deadlock-B"), ("Deadlock-B", "Deadlock-A")] {
        let t = threads.iter().find(|t| t["name"] == me).unwrap_or_else(|| panic!("{me} in {threads:?}"));
        assert_eq!(t["state"], "blocked", "{t}");
        assert_eq!(t["lock"], "java.lang.Object", "{t}");
        assert_eq!(t["owner"], other, "{t}");
        assert!(t["frames"][0].as_str().unwrap().starts_with("Deadlock.lock:"), "{t}");
    }
    let cites = r["citations"].as_array().unwrap();
    assert!(
        cites.iter().any(|c| c
            .as_str()
            .unwrap()
            .starts_with("Deadlock-A (blocked) waits for java.lang.Object held by Deadlock-B at Deadlock.lock:")),
        "{cites:?}"
    );
    // The text output shows them too.
    let text = std::process::Command::new(jvmwatch()).arg("inspect").arg(&ring).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("\"Deadlock-A\" blocked waiting for java.lang.Object held by \"Deadlock-B\""), "{text}");
}

#[test]
fn a_killed_jvm_keeps_its_history_up_to_the_last_sample() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("killed.ring");
    let mut jvm =
        spawn(java_cmd(jdk, &format!("path={}", ring.display()), &["-Xmx64m"], "GcChurn", &["60000"], dir.path()));
    poll_inspect(&ring, Duration::from_secs(60), |r| (r["history_samples"].as_u64()? >= 30).then_some(()))
        .expect("30 history samples");
    jvm.kill().unwrap();
    jvm.wait().unwrap();
    let r = inspect(&ring, 0);
    assert_eq!(r["verdict"], "killed");
    let h = history_json(&ring);
    let times = h["time_ms"].as_array().unwrap();
    assert!(times.len() >= 30, "{} samples", times.len());
    assert!(h["torn"].as_u64().unwrap() <= 1, "at most the record being written at the kill: {}", h["torn"]);
    // Oldest first, one per sampler interval.
    let t: Vec<u64> = times.iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "history in time order");
    // The newest record is the last snapshot's (or, killed between the two writes, the one before).
    let snap_ms = humantime::parse_rfc3339(r["snapshot"]["time"].as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let last = *t.last().unwrap();
    assert!(last == snap_ms || (snap_ms > last && snap_ms - last <= 2 * 100 + 50), "last {last} vs snapshot {snap_ms}");
    // Charts have data: heap, threads, CPU.
    assert!(h["heap_used"].as_array().unwrap().iter().any(|v| v.as_u64().unwrap_or(0) > 0));
    assert!(h["threads_live"].as_array().unwrap().iter().all(|v| v.as_u64().unwrap() > 0));
    assert!(h["cpu_ms"].as_array().unwrap().last().unwrap().as_f64().unwrap() > 0.0);
    assert!(h["gc_count"].as_array().unwrap().last().unwrap().as_u64().unwrap() > 0);
}

#[test]
fn a_slow_heap_leak_is_found_before_the_oom_with_a_fair_time_to_exhaustion() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("leak.ring");
    let mut jvm = spawn(java_cmd(
        jdk,
        &format!("path={}", ring.display()),
        &["-Xmx48m", "-XX:+UseG1GC"],
        "HeapLeak",
        &["48"],
        dir.path(),
    ));
    // Run inspect on the live file until it reports the leak with the heap about half full.
    let (estimate_s, at) = poll_inspect(&ring, Duration::from_secs(180), |r| {
        let l = &r["heap_leak"];
        (findings(r).contains(&"heap_leak".to_string()) && l["to_ratio"].as_f64()? >= 0.45)
            .then(|| (l["exhaustion_in_s"].as_f64().unwrap(), Instant::now()))
    })
    .expect("heap_leak while the JVM runs");
    let status = wait_for(Duration::from_secs(240), || jvm.try_wait().unwrap()).expect("the JVM runs out of memory");
    let actual_s = at.elapsed().as_secs_f64();
    assert!(!status.success(), "the leak ends in an OutOfMemoryError");
    eprintln!("heap_leak estimate {estimate_s:.1} s, actual {actual_s:.1} s");
    assert!(
        (0.5 * actual_s..=1.5 * actual_s).contains(&estimate_s),
        "estimated exhaustion in {estimate_s:.1} s, it came after {actual_s:.1} s"
    );
    // After the death the file alone still says so, and the timeline names the rise.
    let r = inspect(&ring, 0);
    assert!(findings(&r).contains(&"heap_leak".to_string()), "{:?}", r["findings"]);
    assert!(findings(&r).contains(&"oom".to_string()), "{:?}", r["findings"]);
    let timeline: Vec<&str> = r["timeline"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(timeline.iter().any(|l| l.starts_with("heap after GC rose from")), "{timeline:?}");
}

#[test]
fn a_thread_leak_is_found() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("threads.ring");
    let _jvm = spawn(java_cmd(jdk, &format!("path={}", ring.display()), &[], "ThreadLeak", &["50"], dir.path()));
    let r = poll_inspect(&ring, Duration::from_secs(120), |r| {
        findings(r).contains(&"thread_leak".to_string()).then(|| r.clone())
    })
    .expect("thread_leak");
    let timeline: Vec<&str> = r["timeline"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(timeline.iter().any(|l| l.starts_with("threads ")), "{timeline:?}");
}

#[test]
fn a_calm_jvm_has_no_leak_findings() {
    let jdk = &jdks()[0];
    let r = run_and_inspect(jdk, &["-Xmx64m"], "GcChurn", &["3000"]);
    let f = findings(&r);
    assert!(!f.contains(&"heap_leak".to_string()) && !f.contains(&"thread_leak".to_string()), "{f:?}");
    assert!(r["history_samples"].as_u64().unwrap() >= 20, "{}", r["history_samples"]);
}

#[test]
fn hostile_history_options_are_refused_with_one_line() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let out = run(java_cmd(jdk, "history=7h", &[], "Hello", &[], dir.path()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the JVM runs without the agent");
    assert!(err.contains("history=7h: at most 6h"), "{err}");
}

#[test]
fn the_api_serves_the_history_and_takes_a_stacks_capture_on_request() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let token_file = dir.path().join("token");
    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let rings = dir.path().join("rings");
    std::fs::create_dir(&rings).unwrap();
    let svc = Service::start(&rings, &["--token-file", token_file.to_str().unwrap()]);
    let mut jvm = spawn(java_cmd(jdk, &format!("dir={},stacks=1h", rings.display()), &[], "Sleeper", &[], dir.path()));
    let id = wait_for_jvm(&svc, jvm.id(), "running")["id"].as_str().unwrap().to_string();
    let h = wait_for(Duration::from_secs(30), || {
        let h = get(svc.addr, &format!("/api/v1/jvms/{id}/history")).json();
        (h["time_ms"].as_array()?.len() >= 5).then_some(h)
    })
    .expect("history over HTTP");
    assert_eq!(h["heap_used"].as_array().unwrap().len(), h["time_ms"].as_array().unwrap().len());

    // stacks=1h: the only capture so far is the periodic one at start.
    let path = format!("/api/v1/jvms/{id}/stacks");
    assert_eq!(request(svc.addr, "POST", &path, &[]).status, 401, "a capture request needs the token");
    let auth = format!("Bearer {token}");
    let r = request(svc.addr, "POST", &path, &[("Authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(c["reason"], "dump_request");
    assert!(c["threads"].as_array().unwrap().iter().any(|t| t["name"] == "main"), "{c}");
    assert_eq!(get(svc.addr, &path).json()["captured_at"], c["captured_at"]);

    jvm.kill().unwrap();
    jvm.wait().unwrap();
    wait_for_jvm(&svc, jvm.id(), "killed");
    assert_eq!(request(svc.addr, "POST", &path, &[("Authorization", &auth)]).status, 409);
    assert_eq!(get(svc.addr, &path).status, 200, "the last capture outlives the JVM");
}

#[test]
fn the_service_reports_a_leak_finding_from_the_history() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    let mut jvm =
        spawn(java_cmd(jdk, &format!("dir={}", dir.path().display()), &[], "ThreadLeak", &["50"], dir.path()));
    let j = wait_for_jvm(&svc, jvm.id(), "running");
    let ring = Path::new(j["file"].as_str().expect("file")).to_path_buf();
    poll_inspect(&ring, Duration::from_secs(120), |r| findings(r).contains(&"thread_leak".to_string()).then_some(()))
        .expect("thread_leak in the file");
    jvm.kill().unwrap();
    jvm.wait().unwrap();
    // The service judges a dead JVM's history once more after the death.
    let j = wait_for(Duration::from_secs(60), || {
        let list = get(svc.addr, "/api/v1/jvms").json();
        let j = list.as_array()?.iter().find(|j| j["pid"] == jvm.id())?.clone();
        (j["verdict"] == "killed" && j["findings"].as_array()?.iter().any(|f| f == "thread_leak")).then_some(j)
    })
    .expect("the service shows thread_leak");
    let id = j["id"].as_str().unwrap();
    let metrics = get(svc.addr, "/metrics").text();
    assert!(metrics.contains(&format!("jvm_finding{{jvm=\"{id}\",finding=\"thread_leak\"}} 1")), "{metrics}");
}

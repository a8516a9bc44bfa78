//! The Java side: application metrics through the io.jvmwatch API, and what the in-VM
//! monitor adds (GC causes, concurrent cycles, deadlocks).

use std::time::Duration;

use jvmwatch_ring::metrics::bucket_of;
use jvmwatch_tests::http::get;
use jvmwatch_tests::*;
use serde_json::Value;

fn metric<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name}: {}", r["metrics"]))
}

fn ms_to_ns(v: &Value) -> u64 {
    (v.as_f64().unwrap() * 1e6).round() as u64
}

/// The figures AppMetrics.java records, as the sidecar must read them back.
fn assert_app_figures(r: &Value, label: &str) {
    assert_eq!(metric(r, "orders{route=/checkout}")["value"], 1000, "{label}");
    assert_eq!(metric(r, "bytes.sent")["value"], 1700, "{label}");
    assert_eq!(metric(r, "queue.depth")["value"], 42, "{label}");
    let lat = metric(r, "latency{route=/checkout}");
    assert_eq!(lat["count"], 1000, "{label}");
    // Latencies are i × 10 µs for i = 1..=1000: mean 5.005 ms, max 10 ms.
    assert_eq!(ms_to_ns(&lat["mean_ms"]), 5_005_000, "{label}");
    assert_eq!(ms_to_ns(&lat["max_ms"]), 10_000_000, "{label}");
    // Percentiles are within one bucket of the truth.
    for (key, truth) in [("p50_ms", 5_000_000u64), ("p95_ms", 9_500_000), ("p99_ms", 9_900_000)] {
        let got = ms_to_ns(&lat[key]);
        let (b, t) = (bucket_of(got) as i64, bucket_of(truth) as i64);
        assert!((b - t).abs() <= 1, "{label} {key}: {got} ns (bucket {b}) vs {truth} ns (bucket {t})");
    }
}

#[test]
fn app_metrics_match_what_the_app_recorded() {
    for jdk in jdks() {
        let dir = tempdir();
        let ring = dir.path().join("app.ring");
        let out = run(java_cmd(
            &jdk,
            &format!("path={}", ring.display()),
            &["-Djvmwatch.app=shop"],
            "AppMetrics",
            &[],
            dir.path(),
        ));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("recorded active=true"), "{stdout}");
        // The Java API's bucket function agrees with the sidecar's.
        for line in stdout.lines().filter(|l| l.starts_with("bucket ")) {
            let f: Vec<&str> = line.split(' ').collect();
            let (v, b): (u64, usize) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            assert_eq!(bucket_of(v), b, "bucket of {v}");
        }
        let r = inspect(&ring, 1000);
        assert_eq!(r["app"], "shop");
        assert_app_figures(&r, &jdk.label);
        let deploy = r["events"].as_array().unwrap().iter().find(|e| e["type"] == "app_event").expect("app_event");
        assert_eq!((deploy["name"].as_str(), deploy["detail"].as_str()), (Some("deploy"), Some("v1.2.3")));
    }
}

#[test]
fn api_without_the_agent_runs_the_same_program() {
    for jdk in jdks() {
        let dir = tempdir();
        let out = run(java_cmd_opt(&jdk, None, &[], "AppMetrics", &[], dir.path()));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("recorded active=false"), "{stdout}");
        assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn metrics_survive_kill_9() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("app.ring");
    let mut child = spawn(java_cmd(jdk, &format!("path={}", ring.display()), &[], "AppMetrics", &["hold"], dir.path()));
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("recorded") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "program ended early");
    }
    // SAFETY: kill(2) on our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    let r = inspect(&ring, 100);
    assert_eq!(r["verdict"], "killed");
    assert_app_figures(&r, "after kill -9");
}

#[test]
fn deadlock_is_found_with_both_thread_names() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("dl.ring");
    let mut child = spawn(java_cmd(jdk, &format!("path={}", ring.display()), &[], "Deadlock", &[], dir.path()));
    let report = wait_for(Duration::from_secs(30), || {
        if !ring.exists() {
            return None;
        }
        let r = inspect(&ring, 1000);
        r["findings"].as_array()?.iter().any(|f| f == "deadlock").then_some(r)
    });
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let r = report.expect("deadlock finding");
    let texts: Vec<String> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "deadlock")
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.iter().any(|t| t == "Deadlock-A > Deadlock-B"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "Deadlock-B > Deadlock-A"), "{texts:?}");
}

fn gc_cycles(r: &Value) -> Vec<Value> {
    r["events"].as_array().unwrap().iter().filter(|e| e["type"] == "gc_cycle").cloned().collect()
}

#[test]
fn gc_causes_and_concurrent_cycles() {
    for jdk in jdks() {
        // System.gc() and allocation failure show up as causes.
        for (flag, cause) in [("-XX:+UseG1GC", "System.gc()"), ("-XX:+UseSerialGC", "Allocation Failure")] {
            let r = run_and_inspect(&jdk, &[flag, "-Xmx64m"], "GcChurn", &["600"]);
            let cycles = gc_cycles(&r);
            assert!(
                cycles.iter().any(|c| c["cause"] == cause),
                "JDK {} {flag}: causes {:?}",
                jdk.label,
                cycles.iter().map(|c| &c["cause"]).collect::<Vec<_>>()
            );
            assert!(r["events"].as_array().unwrap().iter().any(|e| e["type"] == "gc_pool"), "per-pool before/after");
        }
        // ZGC and Shenandoah: concurrent cycles are reported, and never as pause time.
        for flag in ["-XX:+UseZGC", "-XX:+UseShenandoahGC"] {
            let r = run_and_inspect(&jdk, &[flag, "-Xmx128m"], "GcChurn", &["800"]);
            let cycles = gc_cycles(&r);
            let concurrent: Vec<&Value> = cycles.iter().filter(|c| c["concurrent"] == true).collect();
            assert!(!concurrent.is_empty(), "JDK {} {flag}: no concurrent cycles in {cycles:?}", jdk.label);
            let s = &r["snapshot"];
            let beans = s["collectors"].as_array().unwrap();
            let cycle_ms: u64 = beans
                .iter()
                .filter(|b| b["name"].as_str().unwrap().ends_with("Cycles"))
                .map(|b| b["time_ms"].as_u64().unwrap())
                .sum();
            let pause_ms: u64 = beans
                .iter()
                .filter(|b| b["name"].as_str().unwrap().ends_with("Pauses"))
                .map(|b| b["time_ms"].as_u64().unwrap())
                .sum();
            assert_eq!(
                s["gc_time_ms"].as_u64().unwrap(),
                pause_ms,
                "JDK {} {flag}: gc_time_ms counts pauses only (cycles: {cycle_ms} ms)",
                jdk.label
            );
            // The JVMTI pause total is what the pauses took, far below the cycles' time.
            let jvmti_pause_ms = r["gc"]["pause_total_ms"].as_f64().unwrap();
            assert!(
                cycle_ms == 0 || jvmti_pause_ms < cycle_ms as f64,
                "JDK {} {flag}: pause {jvmti_pause_ms} ms vs cycles {cycle_ms} ms",
                jdk.label
            );
        }
    }
}

#[test]
fn service_shows_app_metrics_with_rates_and_prometheus_names() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    let mut child =
        spawn(java_cmd(jdk, &format!("dir={}", dir.path().display()), &[], "AppMetrics", &["hold"], dir.path()));
    let id = wait_for_jvm(&svc, child.id(), "running")["id"].as_str().unwrap().to_string();
    let m = wait_for(Duration::from_secs(20), || {
        let v = get(svc.addr, &format!("/api/v1/jvms/{id}/metrics?window=60")).json();
        let orders = v["metrics"].as_array()?.iter().find(|m| m["name"] == "orders{route=/checkout}")?.clone();
        (orders["value"] == 1000).then_some(v)
    })
    .expect("app metrics in the API");
    assert_eq!(m["window_s"], 60);
    // The in-VM monitor's own instruments (class loading, buffer pools) appear beside the app's.
    let monitor = wait_for(Duration::from_secs(20), || {
        let v = get(svc.addr, &format!("/api/v1/jvms/{id}/metrics")).json();
        let loaded = v["metrics"].as_array()?.iter().find(|m| m["name"] == "jvm.classes.loaded")?.clone();
        (loaded["value"].as_u64()? > 100).then_some(v)
    });
    assert!(monitor.is_some(), "monitor metrics");
    let text = get(svc.addr, "/metrics").text();
    assert!(text.contains(&format!("jvm_classes_loaded_total{{jvm=\"{id}\"}}")), "{text}");
    assert!(text.contains("jvm_buffer_pool_used_bytes{") && text.contains("pool=\"direct\""));
    assert!(text.contains(&format!("app_orders_total{{jvm=\"{id}\",route=\"/checkout\"}} 1000")), "{text}");
    assert!(text.contains(&format!("app_latency_seconds_count{{jvm=\"{id}\",route=\"/checkout\"}} 1000")));
    assert!(text.contains("app_latency_seconds{") && text.contains("quantile=\"0.99\""));
    assert!(text.contains(&format!("app_queue_depth{{jvm=\"{id}\"}} 42")));
    if let Some(r) = promtool_check(&text) {
        r.expect("promtool check metrics");
    }
    assert_eq!(get(svc.addr, &format!("/api/v1/jvms/{id}/metrics?window=0")).status, 400);
    assert_eq!(get(svc.addr, &format!("/api/v1/jvms/{id}/metrics?window=99999")).status, 400);
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
}

//! The Java side: application metrics through the io.jvmwatch API, and what the in-VM
//! monitor adds (GC causes, concurrent cycles, deadlocks).

use std::time::Duration;

use jvmwatch_ring::metrics::bucket_of;
use jvmwatch_tests::http::get;
use jvmwatch_tests::*;
use serde_json::Value;

fn expect_metric<'a>(r: &'a Value, name: &str) -> &'a Value {
    metric(r, name).unwrap_or_else(|| panic!("no metric {name}: {}", r["metrics"]))
}

fn ms_to_ns(v: &Value) -> u64 {
    (v.as_f64().unwrap() * 1e6).round() as u64
}

/// The figures AppMetrics.java records, as the sidecar must read them back.
fn assert_app_figures(r: &Value, label: &str) {
    assert_eq!(expect_metric(r, "orders{route=/checkout}")["value"], 1000, "{label}");
    assert_eq!(expect_metric(r, "bytes.sent")["value"], 1700, "{label}");
    assert_eq!(expect_metric(r, "queue.depth")["value"], 42, "{label}");
    let lat = expect_metric(r, "latency{route=/checkout}");
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
        // System.gc() and allocation failure show up as causes. Two System.gc() calls: a cause
        // is `?` when the monitor cannot match it to its pause for sure (docs/agent-options.md,
        // `gc=poll`), as when a pause it does not poll (G1's Remark or Cleanup, on JDK 21+'s
        // "G1 Concurrent GC" bean) finishes in between; the churn can leave G1 in a concurrent
        // cycle that the first System.gc() meets (seen once on JDK 25).
        for (flag, cause) in [("-XX:+UseG1GC", "System.gc()"), ("-XX:+UseSerialGC", "Allocation Failure")] {
            let r = run_and_inspect(&jdk, &[flag, "-Xmx64m"], "GcChurn", &["600", "2"]);
            let cycles = gc_cycles(&r);
            assert!(
                cycles.iter().any(|c| c["cause"] == cause),
                "JDK {} {flag}: causes {:?} in {}",
                jdk.label,
                cycles.iter().map(|c| &c["cause"]).collect::<Vec<_>>(),
                r
            );
            assert!(r["events"].as_array().unwrap().iter().any(|e| e["type"] == "gc_pool"), "per-pool before/after");
            // The agent's own GC-callback cost, as a distribution per callback.
            for cb in ["callback_start", "callback_finish"] {
                let c = &r["gc"][cb];
                assert!(c["count"].as_u64().unwrap() >= 1, "JDK {} {flag}: {cb} {c}", jdk.label);
                let (p50, p99, max) = (c["p50_ns"].as_u64(), c["p99_ns"].as_u64(), c["max_ns"].as_u64());
                assert!(p50 <= p99 && p99 <= max && p50.is_some(), "JDK {} {flag}: {cb} {c}", jdk.label);
            }
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

fn warnings(r: &Value) -> Vec<String> {
    r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "agent_warning")
        .map(|e| e["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Hostile instrument names and tags (newlines, tag keys that collide after sanitising or
/// with the service's own labels, names that collide with built-in families) never break the
/// scrape: the API refuses the bad ones without throwing, the native refuses control
/// characters, and the service renames or drops what still collides.
#[test]
fn hostile_names_keep_the_scrape_valid() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    let mut child =
        spawn(java_cmd(jdk, &format!("dir={}", dir.path().display()), &[], "HostileNames", &["hold"], dir.path()));
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("registered") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "program ended early");
    }
    assert_eq!(line.trim(), "registered active=true");
    let id = wait_for_jvm(&svc, child.id(), "running")["id"].as_str().unwrap().to_string();
    // The service reads the ring on its own poll, which can fall between two of the program's
    // writes: wait for a scrape that shows the gauge's value and the last instrument the
    // program registers before "registered", so every check below sees the final state. (The
    // gauge's line also shows that tags named like the service's labels are renamed.)
    let builtin = format!("app_api_builtin{{jvm=\"{id}\",tag_jvm=\"x\",tag_quantile=\"q\",tag_le=\"l\"}} 7");
    let text = wait_for(Duration::from_secs(20), || {
        let t = get(svc.addr, "/metrics").text();
        (t.contains(&builtin) && t.contains("app_9starts_with_digit{")).then_some(t)
    })
    .expect("the program's final instruments in /metrics");
    let check = promtool_check(&text).expect("promtool is installed (scripts/test.sh installs it)");
    check.unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}"));
    // Nothing was injected through a name: every line is a comment or a sample of a family
    // announced by a TYPE line.
    let families: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        assert!(
            families.iter().any(|f| name == *f || name.strip_prefix(f).is_some_and(|s| s == "_sum" || s == "_count")),
            "sample without a family: {l:?}"
        );
    }
    assert!(!text.contains("app_injected") && !text.contains("app_fake"), "{text}");
    // Built-in families keep exactly one series per JVM.
    assert_eq!(text.lines().filter(|l| l.starts_with(&format!("jvm_up{{jvm=\"{id}\""))).count(), 1, "{text}");
    assert!(text.contains("route=\"/a\\\"b\\\\c\""), "label value escaped: {text}");

    let r = inspect(&dir.path().join(format!("{id}.ring")), 1000);
    let names: Vec<&str> = r["metrics"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    // (The scenario registers a gauge `jvm.up` straight through the native too: the API
    // refuses its counter, the service keeps it out of the built-in `jvm_up`.)
    assert!(!r["metrics"].as_array().unwrap().iter().any(|m| m["name"] == "jvm.up" && m["kind"] == "counter"));
    for refused in ["api.collide", "api.repeated", "api.ctrl", "api{x=1}", "api.odd"] {
        assert!(!names.iter().any(|n| n.starts_with(refused)), "{refused} registered: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains(['\n', '\r'])), "control characters registered: {names:?}");
    assert!(names.contains(&"api.builtin{jvm=x,quantile=q,le=l}"), "{names:?}");
    let w = warnings(&r);
    // 8 refused by the API, 2 (newline, CR) by the native.
    assert_eq!(w.iter().filter(|t| t.starts_with("metric refused")).count(), 10, "{w:?}");
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
}

/// Java hands JNI modified UTF-8; names that differ only in a supplementary character (an
/// emoji, a surrogate pair in UTF-16) must stay two instruments with their real names.
#[test]
fn names_with_emoji_stay_distinct() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("emoji.ring");
    let out = run(java_cmd(jdk, &format!("path={}", ring.display()), &[], "HostileNames", &[], dir.path()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = inspect(&ring, 1000);
    assert_eq!(expect_metric(&r, "emoji.\u{1F600}")["value"], 1, "{}", r["metrics"]);
    assert_eq!(expect_metric(&r, "emoji.\u{1F603}")["value"], 2, "{}", r["metrics"]);
    assert_eq!(expect_metric(&r, "emoji.tag{face=\u{1F600}}")["value"], 3, "{}", r["metrics"]);
}

/// App event names take a bounded share of the ring's 63-entry string table: 200 distinct
/// names do not push out the in-VM monitor's collector and cause names.
#[test]
fn many_event_names_leave_room_for_gc_names() {
    let jdk = &jdks()[0];
    // gc=notify: every collection then carries its cause, so a `?` can only mean a name that
    // found no room. (With the default gc=poll a cause is `?` when it cannot be matched to
    // its pause for sure, e.g. a collection before the monitor started.)
    let dir = tempdir();
    let ring = dir.path().join("names.ring");
    let opts = format!("path={},gc=notify", ring.display());
    let out = run(java_cmd(jdk, &opts, &["-XX:+UseG1GC"], "EventNames", &[], dir.path()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = inspect(&ring, 1_000_000);
    let cycles = gc_cycles(&r);
    assert!(!cycles.is_empty(), "no gc_cycle events");
    for c in &cycles {
        assert_ne!(c["collector"], "?", "{c}");
        assert_ne!(c["cause"], "?", "{c}");
    }
    assert!(cycles.iter().any(|c| c["cause"] == "System.gc()"), "{cycles:?}");
    let apps: Vec<&Value> = r["events"].as_array().unwrap().iter().filter(|e| e["type"] == "app_event").collect();
    assert_eq!(apps.len(), 200);
    // Every event keeps its name: in the string table, or inline in the detail once the
    // application's share of the table is used up.
    for (i, e) in apps.iter().enumerate() {
        let (name, detail) = (e["name"].as_str().unwrap(), e["detail"].as_str().unwrap());
        let inline = format!("e{i}: d{i}");
        assert!(
            (name == format!("e{i}") && detail == format!("d{i}")) || (name == "event" && detail == inline),
            "event {i}: {e}"
        );
    }
    assert_eq!(apps[0]["name"], "e0");
    assert_eq!(apps[199]["name"], "event");
}

/// An OutOfMemoryError inside the sampler's Java probe does not end heap sampling: once the
/// heap is released the snapshot has heap figures again, and snapshots and heartbeats go on.
/// Nor does it stop the monitor thread, wherever it hits it (at its start too: JMX takes a few
/// hundred milliseconds to set up, and this JVM fills its heap after 300).
/// Whether the sampler happens to allocate while the heap is full is up to timing (about
/// two runs in three here), so the scenario runs until the probe has failed once, at most 6
/// times.
#[test]
fn sampler_recovers_after_out_of_memory() {
    let jdk = &jdks()[0];
    for _attempt in 0..6 {
        let dir = tempdir();
        let ring = dir.path().join("oom.ring");
        let out = run(java_cmd(
            jdk,
            &format!("path={},interval=20ms", ring.display()),
            &["-Xmx16m", "-XX:+UseG1GC"],
            "OomRecover",
            &[],
            dir.path(),
        ));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let released_ms: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("released "))
            .and_then(|l| l.split(' ').next())
            .and_then(|v| v.parse().ok())
            .expect("released line");
        let released_ns = released_ms * 1_000_000;
        let r = inspect(&ring, 100_000);
        let w = warnings(&r);
        let probe_warnings = w.iter().filter(|t| t.starts_with("probe")).count();
        if probe_warnings == 0 {
            continue; // the sampler never met the full heap: nothing tested, run again
        }
        assert!(probe_warnings <= 2, "one warning per run of failures: {w:?}");
        assert!(!w.iter().any(|t| t.starts_with("monitor stopped")), "the monitor stopped: {w:?}");
        let s = &r["snapshot"];
        assert!(s["heap_used_bytes"].as_u64().unwrap() > 0, "heap after recovery: {s}");
        assert!(s["heap_committed_bytes"].as_u64().unwrap() > 0, "{s}");
        assert!(!s["pools"].as_array().unwrap().is_empty(), "{s}");
        let snap_ns = rfc3339_ns(s["time"].as_str().unwrap());
        assert!(snap_ns > released_ns, "snapshot not renewed after the heap was released: {s}");
        let beat_ns = rfc3339_ns(r["last_heartbeat_at"].as_str().unwrap());
        assert!(beat_ns > released_ns, "heartbeat stopped: {}", r["last_heartbeat_at"]);
        return;
    }
    panic!("the sampler's probe never failed in 6 runs: nothing tested");
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time as `inspect` prints it
/// (`2024-01-02T03:04:05.123456789Z`, fraction optional).
fn rfc3339_ns(t: &str) -> u64 {
    let (date, time) = t.trim_end_matches('Z').split_once('T').expect("RFC 3339");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2];
    let frac_ns: u64 = format!("{frac:0<9}")[..9].parse().unwrap();
    secs as u64 * 1_000_000_000 + frac_ns
}

/// Every line the agent prints goes through a writer that cannot panic: with stderr a pipe
/// whose reader is gone, a bad option still leaves the JVM running (an `eprintln!` outside
/// `catch_unwind` would abort it).
#[test]
fn closed_stderr_does_not_abort_the_jvm() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let jdk = &jdks()[0];
    let dir = tempdir();
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) fills two fresh descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are ours and open; each is wrapped or closed exactly once.
    let write_end = unsafe {
        libc::close(fds[0]);
        OwnedFd::from_raw_fd(fds[1])
    };
    let mut cmd = java_cmd(jdk, "size=abc", &[], "Hello", &[], dir.path());
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::from(write_end));
    let out = cmd.output().expect("spawn java");
    assert!(out.status.success(), "JVM ended with {:?}", out.status);
    assert!(!String::from_utf8_lossy(&out.stdout).is_empty(), "Hello printed nothing");
}

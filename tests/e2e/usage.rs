//! Usage records, license alerts, reports and tampering, with real JVMs pinned by `taskset`
//! and `-XX:ActiveProcessorCount` under `jvmwatch supervise`. Every wait is on the condition
//! asserted.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jvmwatch_tests::http::{base64_decode, get, request};
use jvmwatch_tests::supervise::Supervise as Sup;
use jvmwatch_tests::*;
use serde_json::{json, Value};

fn wait<T>(what: &str, limit_s: u64, f: impl FnMut() -> Option<T>) -> T {
    wait_for(Duration::from_secs(limit_s), f).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

fn jw(args: &[&str]) -> std::process::Output {
    let o = Command::new(jvmwatch()).args(args).output().expect("run jvmwatch");
    eprintln!(
        "jvmwatch {}: {}\n{}{}",
        args.join(" "),
        o.status,
        String::from_utf8_lossy(&o.stdout).chars().take(2000).collect::<String>(),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn sqlite(db: &Path, sql: &str) {
    let o = Command::new("sqlite3").arg(db).arg(sql).output().expect("sqlite3 CLI");
    assert!(o.status.success(), "sqlite3 {sql}: {}", String::from_utf8_lossy(&o.stderr));
}

/// CPU time (utime + stime) of `pid` in ms, as the OS reports it.
fn os_cpu_ms(pid: u64) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?) * 1000 / hz)
}

#[test]
fn pinned_jvms_usage_alerts_report_and_tampering() {
    let work = tempdir();
    let w = work.path();
    let java = &jdks()[0].java;
    std::fs::write(w.join("usage.key"), "an-operator-secret-of-32-bytes!!\n").unwrap();
    std::fs::write(
        w.join("policy.toml"),
        r#"
rate_limit = "10m"
[[license]]
app = "burn"
classes = ["no-such-class"]
cores_per_instance = 1
cores_aggregate = 2
"#,
    )
    .unwrap();
    let cfg = w.join("jvmwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[usage]
interval = "1s"
key_file = "{key}"
policy = "{policy}"
host = "test-host"
datacenter = "dc1"
alert_hooks = ["note"]

[hooks.note]
command = ["/bin/sh", "-c", "echo \"$JVMWATCH_APP $JVMWATCH_RULE\" >> {hook_log}"]
timeout = "5s"

[[app]]
name = "burn"
initial = 3
min = 3
max = 3
command = ["taskset", "-c", "0", "{java}", "-Xmx32m", "-XX:ActiveProcessorCount=1", "-cp", "{SCENARIOS}", "Burn", "2", "{told}"]
"#,
            key = w.join("usage.key").display(),
            policy = w.join("policy.toml").display(),
            hook_log = w.join("hook.log").display(),
            java = java.display(),
            told = w.join("told-${INSTANCE}").display(),
        ),
    )
    .unwrap();
    let sup = Sup::start(&cfg, w);
    let db = w.join("state/jvmwatch.db");

    // Each instance has at least 3 records.
    let report = wait("3 records per instance", 120, || {
        let r = get(sup.addr, "/api/v1/reports/usage?from=1h&format=json").json();
        let jvms = r["jvms"].as_array()?.clone();
        (jvms.len() == 3 && jvms.iter().all(|j| j["records"].as_u64().unwrap_or(0) >= 3)).then_some(r)
    });
    // Told: the JVMs themselves say 1 (ActiveProcessorCount), and the records agree.
    let told: Vec<String> = wait("each JVM wrote availableProcessors", 60, || {
        let t: Vec<String> = std::fs::read_dir(w)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name().to_string_lossy().starts_with("told-")
                    && !e.file_name().to_string_lossy().ends_with(".tmp")
            })
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        (t.len() == 3).then_some(t)
    });
    for t in told {
        assert_eq!(t.trim(), "availableProcessors 1");
    }
    for j in report["jvms"].as_array().unwrap() {
        assert_eq!(j["cores_told_max"], 1, "{j}");
        assert_eq!(j["host"], "test-host");
        assert_eq!(j["datacenter"], "dc1");
        // Pinned to one CPU: never more than one core used (tolerance 0.15 for sampling
        // jitter at 100 ms sub-intervals); two busy threads always get some of it.
        let peak = j["cores_peak"].as_f64().unwrap();
        assert!(peak <= 1.15, "peak {peak} on one pinned CPU: {j}");
        assert!(j["cores_avg"].as_f64().unwrap() > 0.02, "{j}");
    }

    // Alerts: wrong class for each instance, aggregate (3 × 1 told > 2) once for the app,
    // never cores_told per instance (1 each, licensed 1).
    let ds = wait("wrong_class × 3 and aggregate", 60, || {
        let ds = sup.decisions();
        let n = |k: &str| ds.iter().filter(|d| d["rule"] == format!("license:{k}")).count();
        (n("wrong_class") == 3 && n("aggregate") == 1).then_some(ds)
    });
    assert!(ds.iter().all(|d| d["rule"] != "license:cores_told"), "{ds:?}");
    let agg = ds.iter().find(|d| d["rule"] == "license:aggregate").unwrap();
    assert_eq!(agg["app"], "burn");
    assert!(agg["reason"].as_str().unwrap().contains("told 3 cores"), "{agg}");
    let metrics = get(sup.addr, "/metrics").text();
    assert!(metrics.contains("jvmwatch_license_alert{app=\"burn\",kind=\"aggregate\"} 1"), "{metrics}");
    assert!(metrics.contains("jvmwatch_license_alert{app=\"burn\",kind=\"wrong_class\"} 1"), "{metrics}");
    let hook = wait("the alert hook ran", 60, || {
        std::fs::read_to_string(w.join("hook.log")).ok().filter(|s| s.contains("burn license:aggregate\n"))
    });
    assert!(hook.contains("license:wrong_class"), "{hook}");

    // Cores used agree with the OS: the records' CPU time never exceeds what the kernel
    // counted for the process (one clock tick, 10 ms, per record of tolerance).
    let pids: Vec<u64> =
        get(sup.addr, "/api/v1/jvms").json().as_array().unwrap().iter().filter_map(|j| j["pid"].as_u64()).collect();
    assert_eq!(pids.len(), 3);

    // The console links to the HTML report, which renders in Chromium.
    let console = get(sup.addr, "/").text();
    assert!(console.contains("/api/v1/reports/usage?format=html"), "console links the report");
    if crate::console::have_browser() {
        let (driver, sid) = crate::console::browser(w);
        crate::console::post(
            driver.addr,
            &format!("/session/{sid}/url"),
            &json!({ "url": format!("http://{}/api/v1/reports/usage?format=html&from=1h", sup.addr) }),
        );
        let bars = wait("the report's charts", 60, || {
            crate::console::script(&driver, &sid, "return document.querySelectorAll('svg rect.bar').length")
                .as_u64()
                .filter(|n| *n > 0)
        });
        let title = crate::console::script(&driver, &sid, "return document.querySelector('h1').textContent");
        let shot = get(driver.addr, &format!("/session/{sid}/screenshot")).json()["value"].as_str().map(base64_decode);
        let _ = request(driver.addr, "DELETE", &format!("/session/{sid}"), &[]);
        let png = shot.expect("screenshot");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let artifacts = target_dir().parent().unwrap().join("test-artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join("usage-report.png"), &png).unwrap();
        assert_eq!(title, "Usage report");
        assert!(bars > 3, "{bars} bars");
    }
    let os_total: u64 = pids.iter().map(|p| os_cpu_ms(*p).unwrap()).sum();
    sup.stop();
    let records = {
        let o = jw(&["report", "--state-dir", w.join("state").to_str().unwrap(), "--from", "1h", "--format", "json"]);
        assert!(o.status.success());
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    // The records cover a window inside the processes' lives, so their CPU time is at most
    // what the kernel counted (read just before the stop; tolerance: 15 % for interval
    // length jitter, one 10 ms tick per record, and 1.5 s for the moments until the stop).
    let (mut used_ms, mut n) = (0.0, 0u64);
    for j in records["jvms"].as_array().unwrap() {
        n += j["records"].as_u64().unwrap();
        used_ms += j["cores_avg"].as_f64().unwrap() * j["records"].as_f64().unwrap() * 1000.0;
        // 1 s records
    }
    assert!(used_ms <= os_total as f64 * 1.15 + 10.0 * n as f64 + 1500.0, "records {used_ms} ms > OS {os_total} ms");
    assert!(used_ms > 0.0);

    let state = w.join("state");
    let state = state.to_str().unwrap();
    let key = w.join("usage.key");
    let key = key.to_str().unwrap();
    // Intact, signed.
    let o = jw(&["usage", "verify", "--state-dir", state, "--key", key]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: "));

    // Export a signed bundle; a report from it alone equals the report from the store.
    let bundle = w.join("bundle.json");
    let o =
        jw(&["usage", "export", "--state-dir", state, "--from", "1h", "--key", key, "-o", bundle.to_str().unwrap()]);
    assert!(o.status.success());
    let from_bundle =
        jw(&["report", "--bundle", bundle.to_str().unwrap(), "--key", key, "--from", "1h", "--format", "json"]);
    assert!(from_bundle.status.success());
    let b: Value = serde_json::from_slice(&from_bundle.stdout).unwrap();
    assert_eq!(b["jvms"], records["jvms"]);
    assert_eq!(b["groups"], records["groups"]);
    // CSV carries the JSON's figures.
    let csv = jw(&["report", "--bundle", bundle.to_str().unwrap(), "--from", "1h", "--format", "csv"]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    for j in b["jvms"].as_array().unwrap() {
        let line = format!(",{},{},", j["instance"].as_str().unwrap(), j["app"].as_str().unwrap());
        let row = csv.lines().find(|l| l.contains(&line)).unwrap_or_else(|| panic!("{line} in {csv}"));
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells[7].parse::<f64>().unwrap(), j["cores_avg"].as_f64().unwrap(), "{row}");
        assert_eq!(cells[8].parse::<f64>().unwrap(), j["cores_peak"].as_f64().unwrap(), "{row}");
    }
    // A forged bundle is refused.
    let mut forged: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    forged["records"][1]["cores_avg_milli"] = json!(1);
    std::fs::write(w.join("forged.json"), forged.to_string()).unwrap();
    let o = jw(&["report", "--bundle", w.join("forged.json").to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("do not hash"));

    // Tampering in the SQLite file, each on a fresh copy: edit, delete, reorder.
    let attack = |name: &str, sql: &str| -> String {
        let dir = w.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&db, dir.join("jvmwatch.db")).unwrap();
        sqlite(&dir.join("jvmwatch.db"), "DROP TRIGGER usage_append_only_u; DROP TRIGGER usage_append_only_d;");
        // The triggers stop the plain attempt: shown on the original.
        sqlite(&dir.join("jvmwatch.db"), sql);
        let o = jw(&["usage", "verify", "--state-dir", dir.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name} detected");
        String::from_utf8(o.stdout).unwrap()
    };
    let o =
        Command::new("sqlite3").arg(&db).arg("UPDATE usage SET cores_avg_milli = 0 WHERE seq = 2").output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("append-only"));
    assert!(attack("edit", "UPDATE usage SET cores_avg_milli = cores_avg_milli + 1 WHERE seq = 4")
        .contains("first bad record 4"));
    assert!(attack("delete", "DELETE FROM usage WHERE seq = 5").contains("record 5 is missing"));
    assert!(attack(
        "reorder",
        "UPDATE usage SET seq = -1 WHERE seq = 6; UPDATE usage SET seq = 6 WHERE seq = 7; UPDATE usage SET seq = 7 WHERE seq = -1;"
    )
    .contains("first bad record 6"));
}

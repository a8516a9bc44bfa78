//! Dynamic priority tuning (`[tuning]`) under `jvmwatch supervise` with real JVM children:
//! one listens on a TCP socket, one is idle. Nice values are read from `/proc/PID/stat`
//! (field 19); every wait is on the condition asserted.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jvmwatch_tests::http::get;
use jvmwatch_tests::supervise::Supervise as Sup;
use jvmwatch_tests::*;
use serde_json::Value;

/// The decisions of one rule.
fn decisions(sup: &Sup, rule: &str) -> Vec<Value> {
    sup.decisions().into_iter().filter(|d| d["rule"] == rule).collect()
}

/// app → pid of its one running instance.
fn pid(sup: &Sup, app: &str) -> Option<u32> {
    let apps = get(sup.addr, "/api/v1/apps").json();
    let a = apps.as_array()?.iter().find(|a| a["name"] == app)?.clone();
    a["instances"].as_array()?.first()?["pid"].as_u64().map(|p| p as u32)
}

fn wait<T>(what: &str, limit_s: u64, f: impl FnMut() -> Option<T>) -> T {
    wait_for(Duration::from_secs(limit_s), f).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Field 19 of `/proc/PID/stat`: the nice value of the process's main thread.
fn nice(pid: u32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].split_whitespace().nth(16)?.parse().ok()
}

fn config(w: &Path, enabled: bool, cycle: &str, min_nice: i32, max_nice: i32) -> std::path::PathBuf {
    let java = &jdks()[0].java;
    let cfg = w.join("jvmwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[usage]
enabled = false

[tuning]
enabled = {enabled}
cycle = "{cycle}"
min_nice = {min_nice}
max_nice = {max_nice}

[[app]]
name = "web"
command = ["{java}", "-Xmx32m", "-cp", "{SCENARIOS}", "Listen", "listen"]

[[app]]
name = "batch"
command = ["{java}", "-Xmx32m", "-cp", "{SCENARIOS}", "Listen", "idle"]
"#,
            java = java.display(),
        ),
    )
    .unwrap();
    cfg
}

/// This test process's nice value (its children, and theirs, start with it); the tests need
/// room for two steps either way.
fn own_nice() -> i32 {
    let n = nice(std::process::id()).expect("own nice value");
    assert!((-18..=17).contains(&n), "run the tests at a nice value within -18..17, not {n}");
    n
}

/// Whether this test process may raise priorities (root with CAP_SYS_NICE, as in CI).
fn can_raise() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:")).map(|h| h.trim().to_string()))
        .and_then(|h| u64::from_str_radix(&h, 16).ok())
        .is_some_and(|bits| bits >> 23 & 1 == 1)
}

/// The listening JVM gets more priority (down to min_nice), the idle one less (up to
/// max_nice); each change is a decision; switching tuning off by SIGHUP restores the
/// originals; stopping the supervisor restores them again before its children stop.
/// Without CAP_SYS_NICE only the lowering is checked (the other test covers that case).
#[test]
fn tuning_raises_serving_and_lowers_idle_jvms_and_restores_them() {
    let work = tempdir();
    let w = work.path();
    let base = own_nice();
    let cfg = config(w, true, "300ms", base - 2, base + 2);
    let sup = Sup::start(&cfg, w);
    let raise = can_raise();
    let (web, batch) = wait("both JVMs running", 60, || Some((pid(&sup, "web")?, pid(&sup, "batch")?)));
    // The children start at the supervisor's nice value, which is ours.
    let (web0, batch0) = (base, base);

    wait("the idle JVM at max_nice", 60, || (nice(batch)? == base + 2).then_some(()));
    if raise {
        wait("the listening JVM at min_nice", 60, || (nice(web)? == base - 2).then_some(()));
    }
    let changes = decisions(&sup, "tuning:nice");
    let of = |app: &str| -> Vec<Value> { changes.iter().filter(|d| d["app"] == app).cloned().collect() };
    let batch_changes = of("batch");
    assert!(batch_changes.len() >= 2, "one decision per step: {changes:#?}");
    for d in &batch_changes {
        assert!(d["reason"].as_str().unwrap().contains("background"), "{d}");
        assert_eq!(d["steps"][0]["step"], "renice", "{d}");
        assert_eq!(d["steps"][0]["outcome"], "ok", "{d}");
    }
    let last = batch_changes.last().unwrap();
    let step = format!("nice {} → {}", base + 1, base + 2);
    assert!(last["reason"].as_str().unwrap().contains(&step), "{last}");
    if raise {
        let up: Vec<Value> =
            of("web").into_iter().filter(|d| d["reason"].as_str().unwrap().contains("listening TCP socket")).collect();
        assert!(
            up.iter().any(|d| d["reason"].as_str().unwrap().contains(&format!("nice {} → {}", base - 1, base - 2))),
            "{changes:#?}"
        );
        assert!(up.iter().all(|d| d["steps"][0]["outcome"] == "ok"), "{up:#?}");
    }
    // Never beyond the range.
    for d in decisions(&sup, "tuning:nice") {
        let v = d["figures"][0]["value"].as_f64().unwrap();
        assert!((f64::from(base - 2)..=f64::from(base + 2)).contains(&v), "{d}");
    }
    assert_eq!(nice(batch), Some(base + 2));

    // Tuning off by SIGHUP: the originals come back.
    config(w, false, "300ms", base - 2, base + 2);
    sup.sighup();
    wait("both JVMs back at their original nice", 60, || (nice(batch)? == batch0 && nice(web)? == web0).then_some(()));
    let restored = decisions(&sup, "tuning:restore");
    assert!(
        restored
            .iter()
            .any(|d| d["app"] == "batch" && d["reason"].as_str().unwrap().starts_with("tuning switched off")),
        "{restored:#?}"
    );
    assert!(restored.iter().all(|d| d["steps"][0]["outcome"] == "ok"), "{restored:#?}");

    // On again, then stop: the supervisor restores before it stops its children.
    config(w, true, "300ms", base - 2, base + 2);
    sup.sighup();
    wait("the idle JVM lowered again", 60, || (nice(batch)? == base + 2).then_some(()));
    sup.stop();
    let o = Command::new("sqlite3")
        .arg(w.join("state/jvmwatch.db"))
        .arg(
            "SELECT d.app, s.outcome FROM decisions d JOIN steps s ON s.decision = d.id \
             WHERE d.rule = 'tuning:restore' AND d.reason LIKE 'supervisor stopping%' ORDER BY d.id",
        )
        .output()
        .expect("sqlite3 CLI");
    let rows = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(rows.lines().any(|l| l == "batch|ok"), "restore on stop recorded: {rows:?}");
    assert!(rows.lines().all(|l| l.ends_with("|ok")), "{rows:?}");
}

/// Without CAP_SYS_NICE (as root: supervise runs under `setpriv` without it) tuning only
/// lowers: the idle JVM goes up to max_nice, the listening one is never raised, and the
/// supervisor says so once, on stderr and as a `tuning:no_raise` decision.
#[test]
fn tuning_without_cap_sys_nice_only_lowers_and_says_so_once() {
    let work = tempdir();
    let w = work.path();
    let base = own_nice();
    // 1 s cycles: the idle JVM takes many cycles to reach 19, each one a decision that shows
    // a cycle passed.
    let cfg = config(w, true, "1s", base - 2, 19);
    let prefix: &[&str] =
        if can_raise() { &["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"] } else { &[] };
    let sup = Sup::start_with(prefix, &cfg, w);
    let (web, batch) = wait("both JVMs running", 60, || Some((pid(&sup, "web")?, pid(&sup, "batch")?)));
    // Once the web JVM listens, two more cycles (each lowers the idle JVM one step towards
    // max_nice 19) change nothing for it: it is serving but may not be raised.
    wait("the web JVM listening", 60, || {
        let logs = std::fs::read_dir(w.join("state/logs")).ok()?;
        logs.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("web-"))
            .any(|e| std::fs::read_to_string(e.path()).unwrap_or_default().contains("listening"))
            .then_some(())
    });
    let web_then = nice(web).unwrap();
    let web_changes = decisions(&sup, "tuning:nice").iter().filter(|d| d["app"] == "web").count();
    let n = decisions(&sup, "tuning:nice").iter().filter(|d| d["app"] == "batch").count();
    wait("two more cycles", 60, || {
        (decisions(&sup, "tuning:nice").iter().filter(|d| d["app"] == "batch").count() >= n + 2).then_some(())
    });
    assert_eq!(nice(web), Some(web_then), "never raised without CAP_SYS_NICE");
    let web_decisions: Vec<Value> = decisions(&sup, "tuning:nice").into_iter().filter(|d| d["app"] == "web").collect();
    assert_eq!(web_decisions.len(), web_changes, "{web_decisions:#?}");
    // Whatever it got before it listened was a lowering.
    assert!(web_decisions.iter().all(|d| d["reason"].as_str().unwrap().contains("background")), "{web_decisions:#?}");
    assert!(nice(batch).unwrap() > base);
    let said = decisions(&sup, "tuning:no_raise");
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(said[0]["reason"].as_str().unwrap().contains("CAP_SYS_NICE"), "{said:#?}");
    let lines = sup.lines.lock().unwrap().clone();
    assert_eq!(lines.iter().filter(|l| l.contains("tuning:") && l.contains("CAP_SYS_NICE")).count(), 1, "{lines:#?}");
    sup.stop();
}

/// A busy host (a JVM burning every CPU; `busy_percent = 1` so any real load counts) gets a
/// `tuning:needs_resources` decision after `busy_cycles` busy cycles, and its hook runs.
#[test]
fn busy_host_gets_a_needs_resources_decision_and_its_hook_runs() {
    let work = tempdir();
    let w = work.path();
    let java = &jdks()[0].java;
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hook_log = w.join("hook.log");
    let cfg = w.join("jvmwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[usage]
enabled = false

[hooks.more]
command = ["/bin/sh", "-c", "echo \"$JVMWATCH_RULE $JVMWATCH_APP\" >> {hook_log}"]
timeout = "5s"

[tuning]
enabled = true
cycle = "300ms"
busy_percent = 1
busy_cycles = 2
on_needs_resources = "more"

[[app]]
name = "burn"
command = ["{java}", "-Xmx32m", "-cp", "{SCENARIOS}", "Burn", "{cpus}", "{told}"]
"#,
            hook_log = hook_log.display(),
            java = java.display(),
            told = w.join("told").display(),
        ),
    )
    .unwrap();
    let sup = Sup::start_with(&[], &cfg, w);
    let line =
        wait("the needs_resources hook ran", 60, || std::fs::read_to_string(&hook_log).ok().filter(|s| !s.is_empty()));
    assert!(line.starts_with("tuning:needs_resources host"), "{line}");
    let d = wait("the decision", 30, || decisions(&sup, "tuning:needs_resources").first().cloned());
    assert!(d["reason"].as_str().unwrap().contains("for 2 cycles in a row"), "{d}");
    assert_eq!(d["app"], "host");
    assert!(!d["actions"].as_array().unwrap().is_empty(), "{d}");
    sup.stop();
}

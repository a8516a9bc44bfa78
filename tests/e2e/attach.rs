//! `jvmwatch attach PID`: the agent loaded into a JVM that is already running, through the
//! HotSpot attach protocol (real JVMs, real sockets), and its refusals.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use jvmwatch_ring::{Event, Ring};
use jvmwatch_tests::*;
use serde_json::Value;

/// Starts `Sleeper` without the agent and waits for its "ready" line.
fn sleeper(mut cmd: Command) -> Proc {
    let mut child = spawn({
        cmd.stdin(Stdio::null());
        cmd
    });
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "Sleeper did not start");
    child
}

/// Kills the JVM (SIGKILL) and removes the attach socket a killed JVM leaves in /tmp.
fn end(mut child: Proc) {
    let pid = child.id();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(format!("/tmp/.java_pid{pid}"));
}

fn attach(pid: u32, args: &[&str]) -> Output {
    Command::new(jvmwatch()).arg("attach").arg(pid.to_string()).args(args).output().expect("run jvmwatch attach")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// GC pause ends, GC cycles (from the monitor) and the latest cursor in the ring.
fn counts(ring: &Path) -> Option<(usize, usize, u64)> {
    let r = Ring::open(ring).ok()?;
    let scan = r.scan(0, true).ok()?;
    let ends = scan.records.iter().filter(|x| matches!(x.event, Event::GcPauseEnd { .. })).count();
    let cycles = scan.records.iter().filter(|x| matches!(x.event, Event::GcCycle { .. })).count();
    Some((ends, cycles, r.live().ok()?.cursor))
}

#[test]
fn attach_to_a_running_jvm_on_every_lts_jdk() {
    for jdk in matrix_jdks() {
        let label = format!("JDK {}", jdk.label);
        let dir = tempdir();
        let rings = dir.path().join("rings");
        let mut child = sleeper(java_cmd_opt(&jdk, None, &["-Xmx64m"], "Sleeper", &[], dir.path()));
        let pid = child.id();
        let out = attach(pid, &[&format!("dir={}", rings.display()), "interval=100ms"]);
        assert!(out.status.success(), "{label}: {}{}", text(&out.stdout), text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&format!("attached to JVM {pid}")), "{label}: {stdout}");
        // `attach` names the ring file the agent created (found in dir=).
        let ring = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ring: "))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{label}: no ring line in {stdout}"));
        assert!(ring.starts_with(&rings) && ring.exists(), "{label}: {}", ring.display());

        // GC events flow: JVMTI pauses and the in-VM monitor's cycles, with a heap snapshot.
        let (ends, _, cursor) = wait_for(Duration::from_secs(30), || {
            let c = counts(&ring)?;
            (c.0 >= 3 && c.1 >= 1).then_some(c)
        })
        .unwrap_or_else(|| panic!("{label}: no GC events after attach: {}", inspect(&ring, 20)));
        let r = inspect(&ring, 0);
        assert_eq!(r["attached"], true, "{label}");
        assert_eq!(r["verdict"], "running", "{label}");
        assert!(r["snapshot"]["heap_used_bytes"].as_u64().unwrap_or(0) > 0, "{label}: {}", r["snapshot"]);
        assert!(!r["snapshot"]["pools"].as_array().unwrap().is_empty(), "{label}");
        assert_ne!(r["jvm"]["collector"], "unknown", "{label}");

        // A second attach: "already loaded", a distinct exit code, and nothing breaks.
        let again = attach(pid, &[&format!("dir={}", rings.display())]);
        assert_eq!(again.status.code(), Some(3), "{label}: {}{}", text(&again.stdout), text(&again.stderr));
        assert!(text(&again.stderr).contains("already loaded"), "{label}: {}", text(&again.stderr));
        assert_eq!(std::fs::read_dir(&rings).unwrap().count(), 1, "{label}: a second ring appeared");
        let more = wait_for(Duration::from_secs(30), || {
            let c = counts(&ring)?;
            (c.0 > ends && c.2 > cursor).then_some(())
        });
        assert!(more.is_some(), "{label}: events stopped after the second attach");
        assert!(child.try_wait().unwrap().is_none(), "{label}: the JVM died");

        // kill -9: inspect tells it, from the file alone.
        // SAFETY: kill(2) on our own child process.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        child.wait().unwrap();
        let r = inspect(&ring, 1_000_000);
        assert_eq!(r["verdict"], "killed", "{label}");
        assert_eq!(r["attached"], true, "{label}");
        assert!(r["vm_init_at"].is_null(), "{label}: an attached agent never sees VM init");
        let types = event_types(&r);
        assert!(!types.iter().any(|t| t == "vm_init" || t == "vm_death"), "{label}: {types:?}");
        assert!(types.iter().any(|t| t == "gc_pause_end"), "{label}");
        let warnings: Vec<&Value> =
            r["events"].as_array().unwrap().iter().filter(|e| e["type"] == "agent_warning").collect();
        assert!(warnings.is_empty(), "{label}: {warnings:?}");
        // The trigger file is gone again.
        assert!(!dir.path().join(format!(".attach_pid{pid}")).exists(), "{label}");
        end(child);
    }
}

#[test]
fn a_process_that_is_not_a_jvm_gets_a_clear_error_and_no_signal() {
    let mut sleep = Proc(Command::new("sleep").arg("60").spawn().unwrap());
    // Until the child has exec'd, it is a copy of this test process under the test's name.
    wait_for(Duration::from_secs(10), || {
        (std::fs::read_to_string(format!("/proc/{}/comm", sleep.id())).ok()?.trim() == "sleep").then_some(())
    })
    .expect("sleep started");
    let out = attach(sleep.id(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("process {} (sleep) is not a HotSpot JVM", sleep.id())), "{err}");
    // SIGQUIT would have killed it: it must still run.
    assert!(sleep.try_wait().unwrap().is_none(), "sleep was signalled");

    let out = attach(u32::MAX - 7, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no process"), "{}", text(&out.stderr));
}

#[test]
fn disable_attach_mechanism_gets_a_clear_error() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    // On the command line: seen at once, nothing is sent to the JVM.
    let mut child =
        sleeper(java_cmd_opt(jdk, None, &["-Xmx32m", "-XX:+DisableAttachMechanism"], "Sleeper", &[], dir.path()));
    let out = attach(child.id(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("-XX:+DisableAttachMechanism (on its command line)"), "{err}");
    assert!(child.try_wait().unwrap().is_none());
    drop(child);

    // Hidden in an @argfile: the socket never appears; after --timeout the error says why
    // that usually is. The JVM runs on (SIGQUIT only printed a thread dump).
    let argfile = dir.path().join("jvm.args");
    std::fs::write(&argfile, "-XX:+DisableAttachMechanism\n").unwrap();
    let mut child =
        sleeper(java_cmd_opt(jdk, None, &["-Xmx32m", &format!("@{}", argfile.display())], "Sleeper", &[], dir.path()));
    let out = attach(child.id(), &["--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("did not open its attach socket") && err.contains("DisableAttachMechanism"), "{err}");
    assert!(child.try_wait().unwrap().is_none(), "the JVM died");
    assert!(!dir.path().join(format!(".attach_pid{}", child.id())).exists(), "trigger file left behind");
}

#[test]
fn a_jvm_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("note: skipped: needs root and setpriv to run a JVM as another user (uid 65534)");
        return;
    }
    let jdk = &jdks()[0];
    let java = std::fs::canonicalize(which(&jdk.java)).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&java)
        .args(["-Xmx32m", "-cp"])
        .arg(format!("{SCENARIOS}:{API_JAR}"))
        .arg("Sleeper")
        .current_dir("/");
    let mut child = sleeper(cmd);
    let pid = child.id();
    let out = attach(pid, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("process {pid} runs as uid 65534")) && err.contains("--any-user"), "{err}");
    assert!(child.try_wait().unwrap().is_none());

    // Root may go ahead on purpose (HotSpot accepts root); the ring is the JVM user's.
    let out = attach(pid, &["--any-user"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let ring = text(&out.stdout).lines().find_map(|l| l.strip_prefix("ring: ").map(PathBuf::from)).unwrap();
    let got = wait_for(Duration::from_secs(30), || counts(&ring).filter(|c| c.0 >= 1));
    assert!(got.is_some(), "no GC events in {}", ring.display());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&ring).unwrap().uid(), 65534);
    // SAFETY: kill(2) on our own child process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    assert_eq!(inspect(&ring, 0)["verdict"], "killed");
    let _ = std::fs::remove_file(&ring);
    let _ = std::fs::remove_file(format!("/tmp/.java_pid{pid}"));
}

/// `java` resolved through PATH when it is a bare name.
fn which(java: &Path) -> PathBuf {
    if java.components().count() > 1 {
        return java.to_path_buf();
    }
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(java)).find(|p| p.is_file()))
        .unwrap_or_else(|| java.to_path_buf())
}

#[test]
fn a_jvm_in_other_pid_and_mount_namespaces_is_attached_from_here() {
    // A container seen from the host: the JVM is pid 1 of a new pid namespace, with a private
    // /tmp (so its attach socket exists only under /proc/PID/root/tmp).
    // SAFETY: geteuid has no preconditions.
    let can = unsafe { libc::geteuid() } == 0
        && Command::new("unshare")
            .args(["--pid", "--fork", "--mount", "--mount-proc", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !can {
        eprintln!("note: skipped: needs root and unshare(1) to start a JVM in its own pid and mount namespaces");
        return;
    }
    let jdk = &jdks()[0];
    let java = std::fs::canonicalize(which(&jdk.java)).unwrap();
    // The rings go to /dev/shm, which the JVM shares with us (its /tmp is its own).
    let rings = tempfile::Builder::new().prefix("jvmwatch-e2e-ns-").tempdir_in("/dev/shm").unwrap();
    // The JVM's /tmp is hidden behind its own tmpfs: the class path must not be under /tmp
    // (a checkout in /tmp would vanish from its view), so it runs copies kept in /dev/shm.
    let cp = rings.path().join("classpath");
    let copied = Command::new("cp").arg("-r").arg(SCENARIOS).arg(&cp).status().unwrap();
    assert!(copied.success(), "copy the scenarios");
    std::fs::copy(API_JAR, cp.join("jvmwatch-api.jar")).unwrap();
    let script = format!(
        "mount -t tmpfs jvmwatch-test /tmp && exec {} -Xmx64m -cp {}:{}/jvmwatch-api.jar Sleeper",
        java.display(),
        cp.display(),
        cp.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "sh", "-c", &script]).current_dir("/");
    let mut outer = sleeper(cmd);
    // unshare forks the namespace's pid 1, which execs java.
    let pid: u32 = std::fs::read_dir(format!("/proc/{}/task", outer.id()))
        .unwrap()
        .flatten()
        .find_map(|t| std::fs::read_to_string(t.path().join("children")).ok()?.split_whitespace().next()?.parse().ok())
        .expect("the JVM under unshare");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")), "{status}");

    // The agent from a directory under our /tmp, which the JVM cannot see behind its own:
    // `attach` copies it into the JVM's /tmp (through /proc/PID/root) and loads that copy.
    let hidden = tempfile::Builder::new().prefix("jvmwatch-e2e-agent-").tempdir_in("/tmp").unwrap();
    let agent_copy = hidden.path().join("libjvmwatch.so");
    std::fs::copy(agent(), &agent_copy).unwrap();
    let out = attach(pid, &["--agent", agent_copy.to_str().unwrap(), &format!("dir={}", rings.path().display())]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let copied: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root/tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("jvmwatch-agent-") && n.ends_with(".so"))
        .collect();
    assert_eq!(copied.len(), 1, "the agent copied into the JVM's own /tmp: {copied:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("attached to JVM {pid} (pid 1 in its namespace)")), "{stdout}");
    // The ring as seen through the JVM's root, and as seen from here.
    let seen = stdout.lines().find_map(|l| l.strip_prefix("ring: ").map(PathBuf::from)).unwrap();
    assert!(seen.starts_with(format!("/proc/{pid}/root")), "{}", seen.display());
    let ring = rings.path().join(seen.file_name().unwrap());
    assert!(ring.file_name().unwrap().to_str().unwrap().starts_with("1-"), "named by the namespace pid");
    let got = wait_for(Duration::from_secs(30), || counts(&ring).filter(|c| c.0 >= 3 && c.1 >= 1));
    assert!(got.is_some(), "no GC events: {}", inspect(&ring, 20));
    // The socket was in the JVM's private /tmp, not in ours.
    assert!(!Path::new("/tmp/.java_pid1").exists());

    // SAFETY: kill(2) on the JVM we started (through unshare).
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    outer.wait().unwrap();
    let r = inspect(&ring, 0);
    assert_eq!(r["verdict"], "killed");
    assert_eq!(r["attached"], true);
    assert_eq!(r["pid"], 1);
}

#[test]
fn a_bad_option_changes_nothing_and_a_started_agent_is_already_loaded() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    // A bad option: the agent says why (exit 2), the JVM runs on, and a good attach then works.
    let mut child = sleeper(java_cmd_opt(jdk, None, &["-Xmx32m"], "Sleeper", &[], dir.path()));
    let out = attach(child.id(), &["bogus=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("an agent option is wrong"), "{}", text(&out.stderr));
    let ring = dir.path().join("late.ring");
    let out = attach(child.id(), &[&format!("path={}", ring.display())]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(wait_for(Duration::from_secs(30), || counts(&ring).filter(|c| c.0 >= 1)).is_some());
    assert!(child.try_wait().unwrap().is_none());
    end(child);

    // A JVM started with -agentpath: already loaded.
    let first = dir.path().join("first.ring");
    let mut child =
        sleeper(java_cmd(jdk, &format!("path={}", first.display()), &["-Xmx32m"], "Sleeper", &[], dir.path()));
    let out = attach(child.id(), &[&format!("path={}", dir.path().join("second.ring").display())]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already loaded"));
    assert!(!dir.path().join("second.ring").exists());
    assert_eq!(inspect(&first, 0)["attached"], false);
    assert!(child.try_wait().unwrap().is_none());
    end(child);
}

#[test]
fn a_stale_socket_left_by_a_killed_jvm_is_replaced() {
    // A JVM killed with -9 leaves /tmp/.java_pid<pid>; a new JVM with the same pid (pid 1 of a
    // restarted container) must still be attached. Plant such a socket for a live JVM.
    let jdk = &jdks()[0];
    let dir = tempdir();
    let mut child = sleeper(java_cmd_opt(jdk, None, &["-Xmx32m"], "Sleeper", &[], dir.path()));
    let stale = PathBuf::from(format!("/tmp/.java_pid{}", child.id()));
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("plant a socket nobody listens on"));
    let ring = dir.path().join("r.ring");
    let out = attach(child.id(), &[&format!("path={}", ring.display())]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(wait_for(Duration::from_secs(30), || counts(&ring).filter(|c| c.0 >= 1)).is_some());
    assert!(child.try_wait().unwrap().is_none());
    end(child);
}

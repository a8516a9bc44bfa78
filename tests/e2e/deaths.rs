//! The death matrix: {JDK 17, Temurin 25} × {G1, Parallel, Serial, ZGC, Shenandoah} × every
//! way a JVM dies, each judged by `inspect` of its ring afterwards. CI runs a representative
//! slice (every death on the first JDK with G1, and the commonest deaths on every JDK and
//! collector); `JVMWATCH_FULL_MATRIX=1` runs all of it. The table of what was seen goes to
//! `target/test-artifacts/death-matrix.md` (docs/failure-modes.md shows it).

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use jvmwatch_tests::*;
use serde_json::Value;

const COLLECTORS: [&str; 5] =
    ["-XX:+UseG1GC", "-XX:+UseParallelGC", "-XX:+UseSerialGC", "-XX:+UseZGC", "-XX:+UseShenandoahGC"];

/// How the test ends the JVM (after it printed "ready" where that matters).
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// It ends by itself.
    Own,
    /// SIGKILL once ready.
    Kill,
    /// SIGSTOP once ready; SIGKILL once `inspect` calls it hung.
    Stop,
    /// SIGKILL once `inspect` shows this finding.
    KillOnFinding(&'static str),
}

/// Where the JVM runs.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Plain,
    /// A memory cgroup of this many MiB (the kernel's OOM killer).
    MemoryCgroup(u64),
    /// A pids cgroup allowing this many tasks.
    PidsCgroup(u64),
}

struct Death {
    name: &'static str,
    main: &'static str,
    args: &'static [&'static str],
    flags: &'static [&'static str],
    agent: &'static str,
    end: End,
    place: Place,
    verdict: &'static str,
    /// Findings that must be there.
    findings: &'static [&'static str],
    /// Exit code (None: killed by a signal, or not checked).
    code: Option<i32>,
    /// In the CI slice on every JDK and collector (the rest: first JDK, G1 only).
    everywhere: bool,
}

const DEATHS: &[Death] = &[
    Death {
        name: "clean exit",
        main: "Die",
        args: &["exit0"],
        flags: &[],
        agent: "",
        end: End::Own,
        place: Place::Plain,
        verdict: "exited",
        findings: &[],
        code: Some(0),
        everywhere: true,
    },
    Death {
        name: "System.exit(3)",
        main: "Die",
        args: &["exit3"],
        flags: &[],
        agent: "",
        end: End::Own,
        place: Place::Plain,
        verdict: "exited",
        findings: &[],
        code: Some(3),
        everywhere: false,
    },
    Death {
        name: "SIGKILL",
        main: "Die",
        args: &["wait"],
        flags: &[],
        agent: "",
        end: End::Kill,
        place: Place::Plain,
        verdict: "killed",
        findings: &[],
        code: None,
        everywhere: true,
    },
    Death {
        name: "SIGSEGV",
        main: "Segv",
        args: &[],
        flags: &[],
        agent: "",
        end: End::Own,
        place: Place::Plain,
        verdict: "crashed",
        findings: &[],
        code: None,
        everywhere: false,
    },
    Death {
        name: "CrashOnOutOfMemoryError",
        main: "Die",
        args: &["heap"],
        flags: &["-Xmx48m", "-XX:+CrashOnOutOfMemoryError"],
        agent: "",
        end: End::Own,
        place: Place::Plain,
        verdict: "crashed",
        findings: &["oom"],
        code: None,
        everywhere: false,
    },
    Death {
        name: "ExitOnOutOfMemoryError",
        main: "Die",
        args: &["heap"],
        flags: &["-Xmx48m", "-XX:+ExitOnOutOfMemoryError"],
        agent: "",
        end: End::Own,
        place: Place::Plain,
        verdict: "killed",
        findings: &[],
        code: Some(3),
        everywhere: false,
    },
    Death {
        name: "heap OOM, uncaught",
        main: "Die",
        args: &["heap"],
        flags: &["-Xmx48m"],
        agent: "",
        end: End::Own,
        place: Place::Plain,
        verdict: "exited",
        findings: &["oom"],
        code: Some(1),
        everywhere: false,
    },
    Death {
        name: "heap OOM caught by the app",
        main: "Die",
        args: &["caught_oom"],
        flags: &["-Xmx48m"],
        agent: "",
        end: End::Own,
        place: Place::Plain,
        verdict: "exited",
        findings: &["oom"],
        code: Some(0),
        everywhere: true,
    },
    Death {
        name: "metaspace OOM",
        main: "Die",
        args: &["metaspace"],
        flags: &["-XX:MaxMetaspaceSize=32m"],
        agent: "",
        end: End::Own,
        place: Place::Plain,
        verdict: "exited",
        findings: &["oom"],
        code: Some(1),
        everywhere: false,
    },
    Death {
        name: "unable to create native thread",
        main: "Die",
        args: &["threads"],
        flags: &["-Xmx64m"],
        agent: "",
        end: End::Own,
        place: Place::PidsCgroup(120),
        verdict: "exited",
        findings: &["oom"],
        code: Some(1),
        everywhere: false,
    },
    Death {
        name: "kernel OOM killer",
        main: "Die",
        args: &["touch"],
        flags: &["-Xmx2g", "-Xms64m"],
        agent: "",
        end: End::Own,
        place: Place::MemoryCgroup(300),
        verdict: "killed",
        findings: &[],
        code: None,
        everywhere: false,
    },
    Death {
        name: "GC thrash",
        main: "Die",
        args: &["thrash"],
        flags: &["-Xmx64m"],
        agent: "",
        end: End::KillOnFinding("gc_thrash"),
        place: Place::Plain,
        verdict: "killed",
        findings: &["gc_thrash"],
        code: None,
        everywhere: false,
    },
    Death {
        name: "deadlock",
        main: "Deadlock",
        args: &[],
        flags: &[],
        agent: "",
        end: End::KillOnFinding("deadlock"),
        place: Place::Plain,
        verdict: "killed",
        findings: &["deadlock"],
        code: None,
        everywhere: false,
    },
    Death {
        name: "SIGSTOP (hung)",
        main: "Die",
        args: &["wait"],
        flags: &[],
        agent: ",interval=100ms",
        end: End::Stop,
        place: Place::Plain,
        verdict: "killed",
        findings: &[],
        code: None,
        everywhere: false,
    },
    Death {
        name: "exit while the sampler writes (10 ms interval)",
        main: "Die",
        args: &["quick"],
        flags: &[],
        agent: ",interval=10ms",
        end: End::Own,
        place: Place::Plain,
        verdict: "exited",
        findings: &[],
        code: Some(0),
        everywhere: false,
    },
];

/// A cgroup (v1) for one JVM, removed on drop; None where none can be made (not root, no
/// controller mounted): the case is then reported as not testable here.
struct Cgroup(std::path::PathBuf);

impl Cgroup {
    fn new(controller: &str, file: &str, value: &str) -> Option<Cgroup> {
        let dir = Path::new("/sys/fs/cgroup").join(controller).join(format!(
            "jvmwatch-test-{}-{}",
            std::process::id(),
            now_ns()
        ));
        std::fs::create_dir(&dir).ok()?;
        let cg = Cgroup(dir);
        std::fs::write(cg.0.join(file), value).ok()?;
        if controller == "memory" {
            let _ = std::fs::write(cg.0.join("memory.memsw.limit_in_bytes"), value);
        }
        Some(cg)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn findings(r: &Value) -> Vec<String> {
    r["findings"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Runs one death; Ok(row) or Err(why it could not run here).
fn run_one(jdk: &Jdk, gc: &str, d: &Death) -> Result<(String, Vec<String>, String), String> {
    let dir = tempdir();
    let ring = dir.path().join("die.ring");
    let mut flags: Vec<&str> = vec![gc];
    flags.extend(d.flags);
    let mut cmd = java_cmd(jdk, &format!("path={}{}", ring.display(), d.agent), &flags, d.main, d.args, dir.path());
    let cgroup = match d.place {
        Place::Plain => None,
        Place::MemoryCgroup(mib) => Some(
            Cgroup::new("memory", "memory.limit_in_bytes", &(mib << 20).to_string()).ok_or("no memory cgroup here")?,
        ),
        Place::PidsCgroup(n) => Some(Cgroup::new("pids", "pids.max", &n.to_string()).ok_or("no pids cgroup here")?),
    };
    if let Some(cg) = &cgroup {
        let procs = std::ffi::CString::new(cg.0.join("cgroup.procs").to_str().unwrap()).unwrap();
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (open, write, close) on a path prepared beforehand.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = spawn(cmd);
    let out = child.stdout.take().unwrap();
    let pid = child.id() as i32;
    let (tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if l == "ready" || l == "started" {
                let _ = tx.send(());
            }
        }
    });
    let wait_ready = || ready.recv_timeout(Duration::from_secs(60)).map_err(|_| format!("{}: never ready", d.name));
    let inspect_now = || Command::new(jvmwatch()).args(["inspect", "--json"]).arg(&ring).output().ok();
    let until_finding = |f: &str| {
        wait_for(Duration::from_secs(60), || {
            let o = inspect_now()?;
            let r: Value = serde_json::from_slice(&o.stdout).ok()?;
            findings(&r).iter().any(|x| x == f).then_some(())
        })
        .ok_or_else(|| format!("{}: never showed {f}", d.name))
    };
    let sig = |s: i32| {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, s) };
    };
    match d.end {
        End::Own => {}
        End::Kill => {
            wait_ready()?;
            sig(libc::SIGKILL);
        }
        End::Stop => {
            wait_ready()?;
            sig(libc::SIGSTOP);
            let r = until_finding("hung");
            sig(libc::SIGKILL);
            r?;
        }
        End::KillOnFinding(f) => {
            let r = until_finding(f);
            sig(libc::SIGKILL);
            r?;
        }
    }
    let status = child.wait().unwrap();
    drop(cgroup);
    let r = inspect(&ring, 1_000_000);
    let exit = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "?".into(),
    };
    if let Some(c) = d.code {
        if status.code() != Some(c) {
            return Ok((
                r["verdict"].as_str().unwrap_or("?").into(),
                findings(&r),
                format!("{exit} (expected exit {c})"),
            ));
        }
    }
    Ok((r["verdict"].as_str().unwrap_or("?").into(), findings(&r), exit))
}

#[test]
fn every_way_to_die_is_told_apart() {
    let full = std::env::var("JVMWATCH_FULL_MATRIX").as_deref() == Ok("1");
    let jdks = jdks();
    let mut work: Vec<(&Jdk, &str, &Death)> = Vec::new();
    for (j, jdk) in jdks.iter().enumerate() {
        for (g, gc) in COLLECTORS.iter().enumerate() {
            for d in DEATHS {
                if full || d.everywhere || (j == 0 && g == 0) {
                    work.push((jdk, gc, d));
                }
            }
        }
    }
    let rows = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(work.into_iter());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let Some((jdk, gc, d)) = next.lock().unwrap().next() else { return };
                let gcname = gc.trim_start_matches("-XX:+Use").trim_end_matches("GC");
                let row = match run_one(jdk, gc, d) {
                    Ok((verdict, found, exit)) => {
                        let missing: Vec<&&str> = d.findings.iter().filter(|f| !found.iter().any(|x| x == *f)).collect();
                        let ok = verdict == d.verdict && missing.is_empty() && !exit.contains("expected");
                        let untestable = d.findings.contains(&"gc_thrash") && (gcname == "Z" || gcname == "Shenandoah");
                        if !ok && !untestable {
                            failures.lock().unwrap().push(format!(
                                "JDK {} {gcname} {}: verdict {verdict} (want {}), findings {found:?} (want {:?}), {exit}",
                                jdk.label, d.name, d.verdict, d.findings
                            ));
                        }
                        format!("| {} | {gcname} | {} | {verdict} | {} | {exit} |", jdk.label, d.name, found.join(", "))
                    }
                    Err(why) if why.starts_with("no ") => {
                        eprintln!("not testable here: {} ({why})", d.name);
                        format!("| {} | {gcname} | {} | not testable here: {why} | | |", jdk.label, d.name)
                    }
                    Err(why) => {
                        let concurrent = gcname == "Z" || gcname == "Shenandoah";
                        if !(d.findings.contains(&"gc_thrash") && concurrent) {
                            failures.lock().unwrap().push(format!("JDK {} {gcname}: {why}", jdk.label));
                        }
                        format!("| {} | {gcname} | {} | {why} | | |", jdk.label, d.name)
                    }
                };
                eprintln!("{row}");
                rows.lock().unwrap().push(row);
            });
        }
    });
    let mut rows = rows.into_inner().unwrap();
    rows.sort();
    let table = format!(
        "| JDK | GC | death | verdict | findings | process |\n|---|---|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    let out = target_dir().join("test-artifacts");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join(if full { "death-matrix-full.md" } else { "death-matrix.md" }), &table);
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}

//! The release bundle (scripts/package.sh), used as a new user would: unpacked into an empty
//! directory, the agent found with `jvmwatch agent-path` and loaded through
//! `JAVA_TOOL_OPTIONS`, then `inspect` and `serve` from the bundle alone. Also: one version
//! string on both sides, and `inspect`'s warning when they differ.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use jvmwatch_ring::layout::hdr;
use jvmwatch_tests::http::get;
use jvmwatch_tests::*;

/// Runs scripts/package.sh on the artifacts under test; returns the .tar.gz.
fn package(out: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package.sh");
    let o = Command::new("bash")
        .arg(script)
        .args(["--no-build", "--from"])
        .arg(target_dir())
        .arg("--out")
        .arg(out)
        .output()
        .expect("run package.sh");
    assert!(o.status.success(), "package.sh: {}", String::from_utf8_lossy(&o.stderr));
    let last = String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default().to_string();
    PathBuf::from(last)
}

fn version_of(bin: &Path) -> String {
    let o = Command::new(bin).arg("--version").output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().trim().strip_prefix("jvmwatch ").expect("jvmwatch VERSION").to_string()
}

/// `bin agent-path` with a clean environment (no JVMWATCH_AGENT).
fn agent_path(bin: &Path) -> std::process::Output {
    Command::new(bin).arg("agent-path").env_remove("JVMWATCH_AGENT").output().unwrap()
}

#[test]
fn bundle_unpacked_alone_runs_a_jvm_with_the_agent_then_inspects_and_serves_it() {
    let jdk = &jdks()[0];
    let work = tempdir();
    let tarball = package(&work.path().join("dist"));
    let version = version_of(&jvmwatch());
    let (semver, rev) = version.split_once(' ').expect("VERSION (git REV)");
    assert!(rev.starts_with("(git ") && rev.ends_with(')'), "{version}");
    let arch = String::from_utf8(Command::new("uname").arg("-m").output().unwrap().stdout).unwrap();
    let name = format!("jvmwatch-{semver}-linux-{}", arch.trim());
    assert_eq!(tarball.file_name().unwrap().to_str().unwrap(), format!("{name}.tar.gz"));

    // Unpack into an empty directory.
    let unpacked = tempdir();
    let st = Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(unpacked.path()).status().unwrap();
    assert!(st.success());
    let b = unpacked.path().join(&name);
    for f in [
        "bin/jvmwatch",
        "lib/libjvmwatch.so",
        "lib/jvmwatch-api.jar",
        "README.md",
        "docs/README.md",
        "docs/cli.md",
        "deploy/prometheus/jvmwatch-rules.yml",
        "deploy/grafana/jvmwatch.json",
        "deploy/kubernetes/deployment.yaml",
        "share/man/man1/jvmwatch.1",
        "share/man/man1/jvmwatch-serve.1",
        "share/man/man1/jvmwatch-agent-path.1",
        "share/completions/jvmwatch.bash",
        "share/completions/_jvmwatch",
        "share/completions/jvmwatch.fish",
    ] {
        let p = b.join(f);
        assert!(p.is_file() && std::fs::metadata(&p).unwrap().len() > 0, "{f} missing or empty in the bundle");
    }
    let man = std::fs::read_to_string(b.join("share/man/man1/jvmwatch-serve.1")).unwrap();
    assert!(man.starts_with(".ie") || man.contains(".TH"), "not roff: {}", &man[..man.len().min(200)]);
    assert!(man.contains("listen"), "{man}");
    let bash = std::fs::read_to_string(b.join("share/completions/jvmwatch.bash")).unwrap();
    assert!(bash.contains("agent-path") && bash.contains("complete"), "{bash}");

    let bin = b.join("bin/jvmwatch");
    assert_eq!(version_of(&bin), version, "the bundle's binary is this build");
    let o = agent_path(&bin);
    assert!(o.status.success(), "agent-path: {}", String::from_utf8_lossy(&o.stderr));
    let agent = PathBuf::from(String::from_utf8(o.stdout).unwrap().trim());
    assert!(agent.is_absolute(), "{}", agent.display());
    assert_eq!(agent, b.join("lib/libjvmwatch.so").canonicalize().unwrap());

    // A JVM with the agent from JAVA_TOOL_OPTIONS (the route for launchers one cannot edit),
    // the API jar from the bundle.
    let rings = work.path().join("rings");
    std::fs::create_dir(&rings).unwrap();
    let mut jvm = spawn({
        let mut c = Command::new(&jdk.java);
        c.env("JAVA_TOOL_OPTIONS", format!("-agentpath:{}=dir={}", agent.display(), rings.display()))
            .args(["-Xmx64m", "-cp"])
            .arg(format!("{SCENARIOS}:{}", b.join("lib/jvmwatch-api.jar").display()))
            .args(["AppMetrics", "hold"])
            .current_dir(work.path())
            .stdin(Stdio::null());
        c
    });
    let ring = wait_for(Duration::from_secs(30), || {
        let e =
            std::fs::read_dir(&rings).ok()?.flatten().find(|e| e.path().extension().is_some_and(|x| x == "ring"))?;
        Some(e.path())
    })
    .expect("the agent loaded through JAVA_TOOL_OPTIONS wrote a ring");

    // inspect from the bundle: same version on both sides, so no warning.
    let inspect = |file: &Path| {
        let o = Command::new(&bin).args(["inspect", "--json"]).arg(file).output().unwrap();
        assert!(o.status.success(), "inspect: {}", String::from_utf8_lossy(&o.stderr));
        (serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
    };
    let (r, err) = wait_for(Duration::from_secs(30), || {
        let (r, err) = inspect(&ring);
        r["metrics"]
            .as_array()?
            .iter()
            .any(|m| m["name"] == "orders{route=/checkout}" && m["value"] == 1000)
            .then_some((r, err))
    })
    .expect("app metrics in the ring");
    assert_eq!(r["verdict"], "running");
    assert_eq!(r["agent_version"], version.as_str(), "the agent names the same build as `jvmwatch --version`");
    assert!(!err.contains("warning"), "{err}");

    // serve from the bundle, on a real socket.
    let mut serve = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&rings)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    let addr: std::net::SocketAddr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("http://").nth(1).map(|a| a.trim_end_matches('/').parse().expect("address")))
        .expect("serve printed its address");
    std::thread::spawn(move || lines.for_each(drop));
    let listed = wait_for(Duration::from_secs(30), || {
        let l = get(addr, "/api/v1/jvms").json();
        l.as_array()?.iter().find(|j| j["pid"] == jvm.id()).cloned()
    });
    let metrics = get(addr, "/metrics").text();
    let _ = serve.kill();
    let _ = serve.wait();
    let listed = listed.expect("serve lists the JVM");
    assert_eq!(listed["verdict"], "running");
    assert!(metrics.contains("app_orders_total{"), "{metrics}");

    // kill -9: the bundle's inspect tells.
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(jvm.id() as i32, libc::SIGKILL) };
    jvm.wait().unwrap();
    assert_eq!(inspect(&ring).0["verdict"], "killed");

    // A ring written by another build: inspect warns (and still reports).
    let copy = work.path().join("other.ring");
    std::fs::copy(&ring, &copy).unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    let other = b"0.0.9 (git 0000000)";
    bytes[hdr::AGENT_VERSION..hdr::AGENT_VERSION + hdr::AGENT_VERSION_LEN].fill(0);
    bytes[hdr::AGENT_VERSION..hdr::AGENT_VERSION + other.len()].copy_from_slice(other);
    let crc = crc32fast::hash(&bytes[..hdr::HEADER_CRC]);
    bytes[hdr::HEADER_CRC..hdr::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&copy, &bytes).unwrap();
    let (r, err) = inspect(&copy);
    assert_eq!(r["agent_version"], "0.0.9 (git 0000000)");
    assert!(
        err.contains("warning") && err.contains("0.0.9 (git 0000000)") && err.contains(&version),
        "no version warning: {err:?}"
    );
}

#[test]
fn agent_path_says_where_it_looked_when_the_agent_is_missing() {
    let dir = tempdir();
    let lone = dir.path().join("bin/jvmwatch");
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    std::fs::copy(jvmwatch(), &lone).unwrap();
    let o = agent_path(&lone);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot find libjvmwatch.so"), "{err}");
    assert!(err.contains(&dir.path().join("bin/libjvmwatch.so").display().to_string()), "{err}");
    assert!(err.contains(&dir.path().join("bin/../lib/libjvmwatch.so").display().to_string()), "{err}");
    assert!(err.contains("JVMWATCH_AGENT"), "{err}");
    assert_eq!(o.stdout.len(), 0, "nothing on stdout, so $(jvmwatch agent-path) stays empty");
    // $JVMWATCH_AGENT wins; a wrong one is an error, not a fallback.
    let o = Command::new(&lone).arg("agent-path").env("JVMWATCH_AGENT", agent()).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), agent().canonicalize().unwrap().display().to_string());
    let o = Command::new(&lone).arg("agent-path").env("JVMWATCH_AGENT", dir.path().join("nope.so")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.so"));
    // Beside the binary (a cargo build's target/release) is found too.
    std::fs::copy(agent(), dir.path().join("bin/libjvmwatch.so")).unwrap();
    let o = agent_path(&lone);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        dir.path().join("bin/libjvmwatch.so").canonicalize().unwrap().display().to_string()
    );
}

//! Retention of dead rings: real short-lived JVMs under the agent fill a private ring
//! directory; `jvmwatch gc-rings` and `jvmwatch serve` keep the newest per app and within the
//! byte limit, compress the rest into the archive, never touch a live ring, and `inspect` and
//! the API read the archived rings.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use jvmwatch_tests::http::{get, Sse};
use jvmwatch_tests::*;
use serde_json::Value;

/// Ring size for these JVMs: the smallest the agent takes (about 330 KiB a file).
const SMALL: &str = "size=64K";

fn private_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
    d
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(suffix))
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn rings(dir: &Path) -> Vec<PathBuf> {
    files(dir, ".ring")
}

/// `paths` in the order [`files`] lists them (by name). A ring's name starts with its pid,
/// which wraps, so start order is not name order.
fn sorted(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut v = paths.to_vec();
    v.sort();
    v
}

fn archived(dir: &Path) -> Vec<PathBuf> {
    files(dir, ".ring.zst")
}

fn bytes(paths: &[PathBuf]) -> u64 {
    paths.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

/// Runs `Hello` (exits at once) under the agent with a small ring in `dir`; returns its ring.
fn hello(jdk: &Jdk, dir: &Path, app: &str) -> PathBuf {
    let before = rings(dir);
    let app_arg = format!("-Djvmwatch.app={app}");
    let out = run(java_cmd(jdk, &format!("dir={},{SMALL}", dir.display()), &[&app_arg], "Hello", &[], dir));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new: Vec<PathBuf> = rings(dir).into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "one new ring: {new:?}");
    new.into_iter().next().unwrap()
}

fn gc_rings(dir: &Path, archive: &Path, extra: &[&str]) -> Output {
    Command::new(jvmwatch())
        .arg("gc-rings")
        .arg("--dir")
        .arg(dir)
        .arg("--archive-dir")
        .arg(archive)
        .args(extra)
        .output()
        .unwrap()
}

fn gc_json(dir: &Path, archive: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let out = gc_rings(dir, archive, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn actions(v: &Value) -> Vec<Value> {
    v["actions"].as_array().unwrap().clone()
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn thirty_short_lived_jvms_leave_the_newest_ten_and_the_rest_compressed() {
    let jdk = &jdks()[0];
    let base = tempdir();
    let dir = private_dir(base.path(), "rings");
    let archive = base.path().join("state/archive");
    // A live JVM of the same app, older than all the dead ones.
    let mut live =
        spawn(java_cmd(jdk, &format!("dir={},{SMALL}", dir.display()), &["-Djvmwatch.app=loop"], "Sleeper", &[], &dir));
    let live_ring =
        wait_for(Duration::from_secs(60), || rings(&dir).into_iter().next()).expect("the live ring appears");
    let order: Vec<PathBuf> = (0..30).map(|_| hello(jdk, &dir, "loop")).collect();
    let before = rings(&dir);
    assert_eq!(before.len(), 31);
    let tmpfs_before = bytes(&before);

    // Dry run: says what would go and why, changes nothing.
    let dry = gc_json(&dir, &archive, &["--dry-run"]);
    let acts = actions(&dry);
    assert_eq!(acts.len(), 20, "{dry}");
    assert!(acts.iter().all(|a| a["action"] == "archive" && a["dry_run"] == true));
    assert!(
        acts[0]["reason"].as_str().unwrap().contains("app \"loop\" has 30 dead rings; the newest 10 stay"),
        "{dry}"
    );
    let text = gc_rings(&dir, &archive, &["--dry-run"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("would archive")).count(), 20, "{text}");
    assert_eq!(rings(&dir), before, "a dry run moves nothing");
    assert!(!archive.exists(), "a dry run creates nothing");

    // The real thing.
    let done = gc_json(&dir, &archive, &[]);
    let acts = actions(&done);
    assert_eq!(acts.len(), 20);
    assert!(acts.iter().all(|a| a["action"] == "archive" && a["error"].is_null()), "{done}");
    let after = rings(&dir);
    let mut want: Vec<PathBuf> = order[20..].to_vec();
    want.push(live_ring.clone());
    let want = sorted(&want);
    assert_eq!(after, want, "the newest 10 dead rings and the live one stay");
    assert!(live.try_wait().unwrap().is_none(), "the live JVM runs on");
    let zst = archived(&archive);
    assert_eq!(zst.len(), 20);
    let mut moved: Vec<String> = order[..20].iter().map(|p| format!("{}.zst", name(p))).collect();
    moved.sort();
    assert_eq!(zst.iter().map(|p| name(p)).collect::<Vec<_>>(), moved);
    let tmpfs_after = bytes(&after);
    let archive_bytes = bytes(&zst);
    let ring_size = std::fs::metadata(&after[0]).unwrap().len();
    eprintln!(
        "retention: ring dir {tmpfs_before} → {tmpfs_after} bytes; 20 dead rings of {ring_size} bytes → \
         {archive_bytes} bytes archived ({:.0}:1)",
        (20 * ring_size) as f64 / archive_bytes as f64
    );
    assert!(archive_bytes * 10 < 20 * ring_size, "compressed");

    // inspect reads an archived ring directly.
    let r = inspect(&zst[0], 1000);
    assert_eq!(r["verdict"], "exited");
    assert_eq!(r["app"], "loop");
    assert!(r["events"].as_array().unwrap().iter().any(|e| e["type"] == "vm_death"), "{r}");
    let out = Command::new(jvmwatch()).arg("inspect").arg(&zst[0]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("EXITED"));
    let out = Command::new(jvmwatch()).args(["inspect", "--history", "--json"]).arg(&zst[0]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(serde_json::from_slice::<Value>(&out.stdout).unwrap().is_object());

    // Within the limits now: nothing more to do; the live ring is still never touched.
    let again = gc_rings(&dir, &archive, &["--keep-dead", "0"]);
    let again = String::from_utf8(again.stdout).unwrap();
    assert_eq!(again.lines().filter(|l| l.starts_with("archived")).count(), 10, "{again}");
    assert_eq!(rings(&dir), vec![live_ring.clone()], "only the live ring is left");
    assert!(live.try_wait().unwrap().is_none());
    live.kill().unwrap();
    live.wait().unwrap();
}

#[test]
fn serve_applies_retention_and_serves_archived_rings() {
    let jdk = &jdks()[0];
    let base = tempdir();
    let dir = private_dir(base.path(), "rings");
    let state = base.path().join("state");
    let svc = Service::start(
        &dir,
        &["--state-dir", state.to_str().unwrap(), "--keep-dead", "3", "--retention-interval", "200ms"],
    );
    let mut sse = Sse::open(svc.addr, "/api/v1/stream", None);
    let order: Vec<PathBuf> = (0..8).map(|_| hello(jdk, &dir, "svc")).collect();
    let archive = state.join("archive");
    // The files move first, then the action is logged: wait for both.
    let r = wait_for(Duration::from_secs(60), || {
        let r = get(svc.addr, "/api/v1/retention").json();
        let logged = r["actions"].as_array().map_or(0, Vec::len);
        (rings(&dir).len() == 3 && archived(&archive).len() == 5 && logged == 5).then_some(r)
    })
    .unwrap_or_else(|| panic!("retention did not run: {:?} {:?}", rings(&dir), archived(&archive)));
    assert_eq!(rings(&dir), sorted(&order[5..]), "the newest three stay");

    // Each move is an action in the API and an SSE message.
    let acts = r["actions"].as_array().unwrap();
    assert_eq!(acts.len(), 5, "{r}");
    assert!(acts
        .iter()
        .all(|a| a["action"] == "archive" && a["app"] == "svc" && a["archived_bytes"].as_u64() > Some(0)));
    assert_eq!(r["limits"]["keep_dead_per_app"], 3);
    let mut seen = 0;
    while seen < 5 {
        let m = sse.next_msg().expect("retention messages on the stream");
        if m.event == "retention" {
            assert_eq!(m.json()["action"], "archive");
            seen += 1;
        }
    }

    // Archived JVMs: listed, no longer followed, readable through the per-JVM endpoints.
    let list = get(svc.addr, "/api/v1/archive").json();
    let jvms = list["jvms"].as_array().unwrap();
    assert_eq!(jvms.len(), 5, "{list}");
    assert!(jvms.iter().all(|j| j["archived"] == true && j["verdict"] == "exited" && j["app"] == "svc"), "{list}");
    let id = name(&order[0]).trim_end_matches(".ring").to_string();
    assert!(jvms.iter().any(|j| j["id"] == id.as_str()));
    // The service finds each new ring within ~100 ms; wait for the last one.
    let followed: Vec<String> = wait_for(Duration::from_secs(30), || {
        let l = get(svc.addr, "/api/v1/jvms").json();
        let ids: Vec<String> = l.as_array()?.iter().map(|j| j["id"].as_str().unwrap().to_string()).collect();
        (ids.len() == 3).then_some(ids)
    })
    .expect("the 3 dead rings left are followed");
    assert!(!followed.contains(&id));
    let d = get(svc.addr, &format!("/api/v1/jvms/{id}"));
    assert_eq!(d.status, 200);
    let d = d.json();
    assert_eq!((d["archived"].clone(), d["verdict"].clone()), (Value::Bool(true), Value::from("exited")), "{d}");
    let ev = get(svc.addr, &format!("/api/v1/jvms/{id}/events?since=0&limit=3")).json();
    assert_eq!(ev["events"][0]["type"], "vm_init", "{ev}");
    assert_eq!(ev["next"], 3);
    let h = get(svc.addr, &format!("/api/v1/jvms/{id}/history"));
    assert_eq!(h.status, 200, "{}", h.text());
    assert!(h.json().is_object());
    assert_eq!(get(svc.addr, "/api/v1/jvms/1-2-nosuch").status, 404);
}

#[test]
fn the_byte_limits_and_the_archive_age() {
    let jdk = &jdks()[0];
    let base = tempdir();
    let dir = private_dir(base.path(), "rings");
    let archive = base.path().join("archive");
    // Six apps, one dead ring each: the per-app limit does not apply; the byte limit does.
    let order: Vec<PathBuf> = ["a", "b", "c", "d", "e", "f"].iter().map(|app| hello(jdk, &dir, app)).collect();
    let each = std::fs::metadata(&order[0]).unwrap().len();
    let keep = (1 << 20) / each; // whole rings that fit in 1 MiB
    let v = gc_json(&dir, &archive, &["--max-dead-mb", "1"]);
    let acts = actions(&v);
    assert_eq!(acts.len() as u64, 6 - keep, "{v}");
    assert!(acts.iter().all(|a| a["reason"].as_str().unwrap().starts_with("dead rings take")), "{v}");
    assert_eq!(rings(&dir), sorted(&order[(6 - keep) as usize..]), "the oldest went");
    assert!(bytes(&rings(&dir)) <= 1 << 20);

    // Archive size: 0 MiB allowed, so everything archived goes.
    let v = gc_json(&dir, &archive, &["--max-dead-mb", "1", "--archive-max-mb", "0"]);
    let acts = actions(&v);
    assert_eq!(acts.len() as u64, 6 - keep);
    assert!(acts
        .iter()
        .all(|a| a["action"] == "delete" && a["reason"].as_str().unwrap().starts_with("the archive holds")));
    assert!(archived(&archive).is_empty());

    // Age: the rest go to the archive and, being older than 0 s, out of it.
    let v = gc_json(&dir, &archive, &["--max-dead-mb", "0", "--archive-max-age", "0s"]);
    let acts = actions(&v);
    assert_eq!(acts.iter().filter(|a| a["action"] == "archive").count() as u64, keep);
    assert_eq!(acts.iter().filter(|a| a["action"] == "delete").count() as u64, keep);
    assert!(acts
        .iter()
        .filter(|a| a["action"] == "delete")
        .all(|a| a["reason"].as_str().unwrap().starts_with("ended ")));
    assert!(rings(&dir).is_empty() && archived(&archive).is_empty());
}

fn inspect_fails(path: &Path) -> String {
    let out = Command::new(jvmwatch()).arg("inspect").arg(path).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}: {:?}", path.display(), out);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn corrupt_archives_give_one_line_errors() {
    let base = tempdir();
    let dir = private_dir(base.path(), "rings");
    let archive = base.path().join("archive");
    let id = jvmwatch_ring::Identity { pid: 9, start_ns: now_ns(), interval_ns: 1, ..Default::default() };
    let ring = dir.join("9-1-ab.ring");
    drop(jvmwatch_ring::Writer::create(&ring, 1024, &id).unwrap());
    let plain = std::fs::read(&ring).unwrap();
    let v = gc_json(&dir, &archive, &["--keep-dead", "0"]);
    assert_eq!(actions(&v).len(), 1, "{v}");
    let good = archive.join("9-1-ab.ring.zst");
    assert_eq!(inspect(&good, 10)["pid"], 9);
    let bytes = std::fs::read(&good).unwrap();
    let write = |n: &str, b: &[u8]| {
        let p = base.path().join(n);
        std::fs::write(&p, b).unwrap();
        p
    };
    inspect_fails(&write("cut.ring.zst", &bytes[..bytes.len() / 2]));
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x10;
    inspect_fails(&write("flipped.ring.zst", &flipped));
    let mut junk = vec![0x28, 0xb5, 0x2f, 0xfd];
    junk.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    inspect_fails(&write("junk.ring.zst", &junk));
    // A valid header followed by 256 MiB of zeros: refused after the ring's own length, without
    // writing it all out.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    use std::io::Write;
    enc.write_all(&plain).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    assert!(inspect_fails(&write("bomb.ring.zst", &bomb)).contains("more than"));
    // A stream of something else entirely.
    let other = zstd::encode_all(&b"hello world, not a ring"[..], 3).unwrap();
    assert!(inspect_fails(&write("other.ring.zst", &other)).contains("bad magic"));
}

#[test]
fn supervise_keeps_a_crash_loop_from_filling_the_ring_directory() {
    use std::io::BufRead;
    let work = tempdir();
    let dir = private_dir(work.path(), "rings");
    let state = work.path().join("state");
    let control = work.path().join("control");
    std::fs::write(&control, "exit 3").unwrap();
    let cfg = work.path().join("jvmwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[supervisor]
backoff_initial = "50ms"
backoff_max = "100ms"
max_restarts = 8
restart_window = "5m"

[[app]]
name = "crashy"
agent_options = "{SMALL}"
command = ["{java}", "-Xmx64m", "-XX:-CreateCoredumpOnCrash", "-cp", "{SCENARIOS}:{API_JAR}", "Service", "{control}"]
"#,
            java = jdks()[0].java.display(),
            control = control.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(jvmwatch())
        .arg("supervise")
        .arg(&cfg)
        .arg("--dir")
        .arg(&dir)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0", "--keep-dead", "2", "--retention-interval", "200ms"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let sup = Proc(child);
    let addr: std::net::SocketAddr = lines
        .by_ref()
        .find_map(|l| l.ok()?.split("http://").nth(1).map(|a| a.trim_end_matches('/').parse().unwrap()))
        .expect("supervise printed its address");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || lines.for_each(|l| sink.lock().unwrap().push(l.unwrap_or_default())));
    // 1 start + 8 restarts, then the app is failed: 9 dead rings, of which 2 stay.
    let archive = state.join("archive");
    let r = wait_for(Duration::from_secs(120), || {
        let failed = get(addr, "/api/v1/apps").json()[0]["state"] == "failed";
        let r = get(addr, "/api/v1/retention").json();
        let logged = r["actions"].as_array().map_or(0, Vec::len);
        (failed && rings(&dir).len() == 2 && archived(&archive).len() == 7 && logged == 7).then_some(r)
    })
    .unwrap_or_else(|| panic!("{:?} {:?} {}", rings(&dir), archived(&archive), get(addr, "/api/v1/apps").text()));
    let acts = r["actions"].as_array().unwrap();
    assert_eq!(acts.len(), 7, "{r}");
    assert!(acts.iter().all(|a| a["app"] == "crashy" && a["error"].is_null()), "{r}");
    let logged = wait_for(Duration::from_secs(10), || {
        let l = log.lock().unwrap();
        let n = l.iter().filter(|l| l.starts_with("jvmwatch: retention: archived ")).count();
        (n == 7).then_some(n)
    });
    assert_eq!(logged, Some(7), "each move is logged: {:?}", log.lock().unwrap());
    let a = inspect(&archived(&archive)[0], 100);
    assert_eq!(a["app"], "crashy");
    assert_eq!(a["verdict"], "exited");
    drop(sup);
}

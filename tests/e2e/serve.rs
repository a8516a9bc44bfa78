//! `jvmwatch serve` over real sockets on 127.0.0.1, following real JVMs.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use jvmwatch_tests::http::{get, request, Sse};
use jvmwatch_tests::*;

fn start_sleeper(jdk: &Jdk, dir: &std::path::Path) -> Proc {
    spawn(java_cmd(jdk, &format!("dir={}", dir.display()), &["-Xmx64m"], "Sleeper", &[], dir))
}

fn kill9(child: &mut std::process::Child) {
    // SAFETY: kill(2) on our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    child.wait().unwrap();
}

#[test]
fn follows_a_jvm_while_it_runs_after_kill_and_after_exit() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    assert_eq!(get(svc.addr, "/healthz").json()["status"], "ok");

    let mut jvm = start_sleeper(jdk, dir.path());
    let entry = wait_for_jvm(&svc, jvm.id(), "running");
    let id = entry["id"].as_str().unwrap().to_string();
    assert!(entry["started_at"].is_string() && entry["findings"].is_array());

    // Detail = the inspect report.
    let d = get(svc.addr, &format!("/api/v1/jvms/{id}")).json();
    assert_eq!(d["verdict"], "running");
    assert_eq!(d["pid"], jvm.id());
    assert!(d["events"].as_array().unwrap().len() <= 50);
    // Pull events. The file exists from Agent_OnLoad, events start at VM init: wait for five.
    let ev = wait_for(Duration::from_secs(30), || {
        let ev = get(svc.addr, &format!("/api/v1/jvms/{id}/events?since=0&limit=5")).json();
        (ev["events"].as_array()?.len() == 5).then_some(ev)
    })
    .expect("five events");
    let evs = ev["events"].as_array().unwrap();
    assert_eq!(evs[0]["seq"], 0);
    assert_eq!(evs[0]["type"], "vm_init");
    assert_eq!(ev["next"], 5);
    // Probes.
    assert_eq!(get(svc.addr, &format!("/api/v1/jvms/{id}/live")).status, 200);
    let ready = wait_for(Duration::from_secs(10), || {
        (get(svc.addr, &format!("/api/v1/jvms/{id}/ready")).status == 200).then_some(())
    });
    assert!(ready.is_some());
    // Metrics.
    let m = get(svc.addr, "/metrics");
    assert!(m.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = m.text();
    assert!(text.contains(&format!("jvm_up{{jvm=\"{id}\"}} 1")), "{text}");
    assert!(text.contains("jvm_memory_used_bytes{jvm=") && text.contains("area=\"heap\""));
    assert!(text.contains(&format!("jvm_gc_pause_seconds_count{{jvm=\"{id}\"}}")));
    assert!(text.contains("jvm_threads_states{jvm="));
    match promtool_check(&text) {
        Some(r) => r.expect("promtool check metrics"),
        None => eprintln!("skipped promtool assertion: promtool not installed (scripts/test.sh installs it)"),
    }
    // The stream pushes ring events as they happen.
    let mut sse = Sse::open(svc.addr, &format!("/api/v1/jvms/{id}/stream"), None);
    assert_eq!(sse.status, 200);
    let first = sse.next_msg().unwrap();
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.json()["jvm"], id.as_str());
    let live_event = (0..1000)
        .filter_map(|_| sse.next_msg())
        .find(|m| m.event == "thread_start" || m.event == "gc_pause_end")
        .expect("live events");
    assert!(live_event.id.unwrap().parse::<u64>().is_ok());

    kill9(&mut jvm);
    wait_for_jvm(&svc, jvm.id(), "killed");
    assert_eq!(get(svc.addr, &format!("/api/v1/jvms/{id}/live")).status, 503);
    assert_eq!(get(svc.addr, &format!("/api/v1/jvms/{id}/ready")).status, 503);
    assert!(get(svc.addr, "/metrics").text().contains(&format!("jvm_up{{jvm=\"{id}\"}} 0")));
    assert_eq!(get(svc.addr, &format!("/api/v1/jvms/{id}")).json()["verdict"], "killed");

    let out = run(java_cmd(jdk, &format!("dir={}", dir.path().display()), &[], "Hello", &[], dir.path()));
    assert!(out.status.success());
    let list = wait_for(Duration::from_secs(30), || {
        let l = get(svc.addr, "/api/v1/jvms").json();
        (l.as_array()?.iter().filter(|j| j["verdict"] == "exited").count() == 1).then_some(l)
    })
    .expect("exited JVM listed");
    assert_eq!(list.as_array().unwrap().len(), 2);
    if let Some(r) = promtool_check(&get(svc.addr, "/metrics").text()) {
        r.expect("promtool check metrics");
    }
}

#[test]
fn sse_resumes_after_last_event_id() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    let mut jvm = start_sleeper(jdk, dir.path());
    let id = wait_for_jvm(&svc, jvm.id(), "running")["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/jvms/{id}/stream");
    let mut sse = Sse::open(svc.addr, &path, None);
    let ids: Vec<u64> = (0..500).filter_map(|_| sse.next_msg()).filter_map(|m| m.id?.parse().ok()).take(20).collect();
    assert_eq!(ids.len(), 20);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "consecutive: {ids:?}");
    drop(sse);
    std::thread::sleep(Duration::from_millis(300)); // events keep coming while disconnected
    let resume_after = ids[9];
    let mut again = Sse::open(svc.addr, &path, Some(&resume_after.to_string()));
    let next: Vec<u64> =
        (0..500).filter_map(|_| again.next_msg()).filter_map(|m| m.id?.parse().ok()).take(30).collect();
    assert_eq!(next.len(), 30);
    let expected: Vec<u64> = (resume_after + 1..resume_after + 31).collect();
    assert_eq!(next, expected, "resumed exactly after Last-Event-ID with nothing skipped or repeated");
    // The global stream resumes with JVM/SEQ ids.
    let mut global = Sse::open(svc.addr, "/api/v1/stream", Some(&format!("{id}/{resume_after}")));
    let g: Vec<String> = (0..500).filter_map(|_| global.next_msg()).filter_map(|m| m.id).take(3).collect();
    assert_eq!(g[0], format!("{id}/{}", resume_after + 1));
    kill9(&mut jvm);
}

#[test]
fn bad_requests_get_json_errors_and_do_not_block_others() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    let out = run(java_cmd(jdk, &format!("dir={}", dir.path().display()), &[], "Hello", &[], dir.path()));
    assert!(out.status.success());
    let id = wait_for(Duration::from_secs(30), || {
        get(svc.addr, "/api/v1/jvms").json().as_array()?.first().map(|j| j["id"].as_str().unwrap().to_string())
    })
    .unwrap();

    let e = get(svc.addr, "/api/v1/jvms/12345-does-not-exist");
    assert_eq!(e.status, 404);
    assert!(e.json()["error"].as_str().unwrap().contains("no such JVM"));
    assert_eq!(get(svc.addr, "/api/v1/jvms/..%2F..%2Fetc%2Fpasswd").status, 400);
    assert_eq!(get(svc.addr, "/api/v1/jvms/.hidden").status, 400);
    for q in ["since=abc", "since=-1", "limit=99999999999", "limit=1e3", &format!("since={}", "9".repeat(5000))] {
        let r = get(svc.addr, &format!("/api/v1/jvms/{id}/events?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(get(svc.addr, &format!("/api/v1/jvms/{id}?events=zzz")).status, 400);
    let nf = get(svc.addr, "/no/such/route");
    assert_eq!(nf.status, 404);
    assert!(nf.json()["error"].is_string());

    // A slow client that sends half a request head, and an SSE client that never reads, do
    // not keep others from being served.
    let mut slow = TcpStream::connect(svc.addr).unwrap();
    slow.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", svc.addr).as_bytes()).unwrap();
    let mut stuck: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(svc.addr).unwrap();
            s.write_all(format!("GET /api/v1/stream HTTP/1.1\r\nHost: {}\r\n\r\n", svc.addr).as_bytes()).unwrap();
            s
        })
        .collect();
    for _ in 0..20 {
        assert_eq!(get(svc.addr, "/healthz").status, 200);
        assert_eq!(get(svc.addr, "/api/v1/jvms").status, 200);
    }
    stuck.clear();

    // A ring that vanishes while followed: the JVM shows as gone; the service keeps running.
    let ring = dir.path().join(format!("{id}.ring"));
    std::fs::remove_file(&ring).unwrap();
    let gone = wait_for(Duration::from_secs(10), || {
        let l = get(svc.addr, "/api/v1/jvms").json();
        l.as_array()?.iter().find(|j| j["id"] == id.as_str() && j["gone"].is_string()).cloned()
    });
    assert!(gone.is_some(), "the vanished ring shows as gone");
    assert_eq!(get(svc.addr, &format!("/api/v1/jvms/{id}")).status, 200);
    // A truncated ring too.
    let out = run(java_cmd(jdk, &format!("dir={}", dir.path().display()), &[], "Hello", &[], dir.path()));
    assert!(out.status.success());
    let second = wait_for(Duration::from_secs(30), || {
        get(svc.addr, "/api/v1/jvms")
            .json()
            .as_array()?
            .iter()
            .find(|j| j["id"] != id.as_str())
            .map(|j| j["id"].as_str().unwrap().to_string())
    })
    .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(format!("{second}.ring")))
        .unwrap()
        .set_len(5000)
        .unwrap();
    let r = get(svc.addr, &format!("/api/v1/jvms/{second}/events?since=0"));
    assert!(r.status == 410 || r.status == 200, "{}", r.status);
    let mut svc = svc;
    assert!(svc.running());
    assert_eq!(get(svc.addr, "/healthz").status, 200);
    drop(slow);
}

#[test]
fn changes_need_the_bearer_token() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let token_file = dir.path().join("token");
    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let rings = dir.path().join("rings");
    std::fs::create_dir(&rings).unwrap();
    let svc = Service::start(&rings, &["--token-file", token_file.to_str().unwrap()]);
    let mut jvm = start_sleeper(jdk, &rings);
    let id = wait_for_jvm(&svc, jvm.id(), "running")["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/jvms/{id}");
    assert_eq!(request(svc.addr, "DELETE", &path, &[]).status, 401);
    assert_eq!(request(svc.addr, "DELETE", &path, &[("Authorization", "Bearer wrong")]).status, 401);
    let auth = format!("Bearer {token}");
    assert_eq!(request(svc.addr, "DELETE", &path, &[("Authorization", &auth)]).status, 409, "running JVMs stay");
    kill9(&mut jvm);
    wait_for_jvm(&svc, jvm.id(), "killed");
    let r = request(svc.addr, "DELETE", &path, &[("Authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let archived = rings.join("archive").join(format!("{id}.ring"));
    assert!(archived.exists(), "archived before forgetting");
    assert_eq!(get(svc.addr, &path).status, 404);
    assert_eq!(get(svc.addr, "/api/v1/jvms").json().as_array().unwrap().len(), 0);

    // Without a token file, changes are refused outright; and no listening beyond loopback.
    let plain = Service::start(&rings, &[]);
    assert_eq!(request(plain.addr, "DELETE", "/api/v1/jvms/x", &[("Authorization", &auth)]).status, 403);
    let out = std::process::Command::new(jvmwatch())
        .args(["serve", "--listen", "0.0.0.0:0", "--dir"])
        .arg(&rings)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without --token-file"));
}

#[test]
fn hostile_resume_ids_and_ring_names_do_not_break_streams() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    let mut jvm = start_sleeper(jdk, dir.path());
    let entry = wait_for_jvm(&svc, jvm.id(), "running");
    let id = entry["id"].as_str().unwrap().to_string();
    // A hard link to the live ring under a name with CR/LF: same inode, writer lock held, so
    // it would look alive and stream events with an SSE id containing a line break.
    let bad = dir.path().join("evil\r\nid.ring");
    std::fs::hard_link(entry["file"].as_str().unwrap(), &bad).unwrap();

    // Resume ids that overflow or reach back to the start of the ring.
    for last in [u64::MAX.to_string(), "0".to_string()] {
        let mut sse = Sse::open(svc.addr, &format!("/api/v1/jvms/{id}/stream"), Some(&last));
        assert_eq!(sse.status, 200);
        assert_eq!(sse.next_msg().unwrap().event, "snapshot");
        let first: u64 = (0..100).filter_map(|_| sse.next_msg()).find_map(|m| m.id?.parse().ok()).expect("events");
        if last == "0" {
            // Replayed from seq 1 on, at most MAX_REPLAY (10,000) events back.
            assert!(first >= 1, "{first}");
        }
    }
    // The global stream keeps delivering to a client for longer than a directory rescan
    // (1 s), so the renamed link has been seen; every id is JVM/SEQ of a well-formed JVM.
    let mut global = Sse::open(svc.addr, "/api/v1/stream", None);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut ids = 0;
    while std::time::Instant::now() < deadline {
        let m = global.next_msg().expect("the stream stays open");
        if let Some(i) = m.id {
            assert!(!i.contains('\r') && !i.contains('\n') && i.starts_with(&id), "{i:?}");
            ids += 1;
        }
    }
    assert!(ids > 0);
    let list = get(svc.addr, "/api/v1/jvms").json();
    assert_eq!(list.as_array().unwrap().len(), 1, "the CR/LF name is not a JVM: {list}");
    kill9(&mut jvm);
}

fn raw_status(addr: std::net::SocketAddr, head: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET /api/v1/jvms HTTP/1.1\r\n{head}Connection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn loopback_reads_hide_secrets_refuse_foreign_hosts_and_other_owners() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    let mut jvm = spawn(java_cmd(
        jdk,
        &format!("dir={}", dir.path().display()),
        &["-Xmx64m", "-Ddb.password=hunter2"],
        "Sleeper",
        &[],
        dir.path(),
    ));
    let entry = wait_for_jvm(&svc, jvm.id(), "running");
    let id = entry["id"].as_str().unwrap().to_string();
    let d = get(svc.addr, &format!("/api/v1/jvms/{id}")).json();
    let args = d["jvm"]["args"].as_str().unwrap();
    assert!(args.contains("-Ddb.password=***") && !args.contains("hunter2"), "{args}");

    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host/Origin.
    let me = svc.addr;
    assert_eq!(raw_status(me, &format!("Host: {me}\r\n")), 200);
    assert_eq!(raw_status(me, &format!("Host: localhost:{}\r\n", me.port())), 200);
    assert_eq!(raw_status(me, &format!("Host: evil.example:{}\r\n", me.port())), 403);
    assert_eq!(raw_status(me, &format!("Host: {me}\r\nOrigin: http://evil.example:{}\r\n", me.port())), 403);
    assert_eq!(raw_status(me, &format!("Host: {me}\r\nOrigin: http://{me}\r\n")), 200);

    // A ring of another user in the directory is not followed unless asked for.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let foreign = dir.path().join("99-1-foreign.ring");
        std::fs::copy(entry["file"].as_str().unwrap(), &foreign).unwrap();
        let c = std::ffi::CString::new(foreign.to_str().unwrap()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        let any = Service::start(dir.path(), &["--any-owner"]);
        let listed = wait_for(Duration::from_secs(30), || {
            (get(any.addr, "/api/v1/jvms").json().as_array()?.len() == 2).then_some(())
        });
        assert!(listed.is_some(), "--any-owner follows the foreign ring");
        // The first service has rescanned the directory meanwhile (every second).
        let l = get(svc.addr, "/api/v1/jvms").json();
        assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
    } else {
        eprintln!("skipped the other-owner part: only root can hand a file to another user");
    }

    // --token-for-reads: reads need the token on loopback too; /healthz stays open.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef").unwrap();
    let locked = Service::start(dir.path(), &["--token-file", token_file.to_str().unwrap(), "--token-for-reads"]);
    assert_eq!(get(locked.addr, "/api/v1/jvms").status, 401);
    assert_eq!(get(locked.addr, "/healthz").status, 200);
    let auth = [("Authorization", "Bearer 0123456789abcdef0123456789abcdef")];
    assert_eq!(request(locked.addr, "GET", "/api/v1/jvms", &auth).status, 200);
    kill9(&mut jvm);
}

#[test]
fn a_crashed_jvm_is_crashed_with_its_report_and_a_crash_on_oom_is_oom() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    let segv = run(java_cmd(jdk, &format!("dir={}", dir.path().display()), &[], "Segv", &[], dir.path()));
    assert!(!segv.status.success());
    let oom = run(java_cmd(
        jdk,
        &format!("dir={}", dir.path().display()),
        &["-Xmx48m", "-XX:+CrashOnOutOfMemoryError"],
        "Die",
        &["heap"],
        dir.path(),
    ));
    assert!(!oom.status.success());
    let list = wait_for(Duration::from_secs(30), || {
        let l = get(svc.addr, "/api/v1/jvms").json();
        (l.as_array()?.iter().filter(|j| j["verdict"] == "crashed").count() == 2).then_some(l)
    })
    .expect("both crashed");
    for j in list.as_array().unwrap() {
        let report = j["crash_report"].as_str().expect("crash report path");
        assert!(std::path::Path::new(report).exists(), "{report}");
    }
    let with_oom =
        list.as_array().unwrap().iter().filter(|j| j["findings"].as_array().unwrap().contains(&"oom".into())).count();
    assert_eq!(with_oom, 1, "only the CrashOnOutOfMemoryError JVM: {list}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

#[test]
fn a_thousand_idle_connections_huge_heads_and_stuck_streams_leave_others_served() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let mut svc = Service::start(dir.path(), &[]);
    let mut jvm = start_sleeper(jdk, dir.path());
    wait_for_jvm(&svc, jvm.id(), "running");
    let before = rss_kib(svc.pid());
    // 1,000 connections that never send a byte (slowloris), kept open.
    let idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(svc.addr).unwrap()).collect();
    // 20 stream clients that never read, while the JVM keeps writing events.
    let stuck: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(svc.addr).unwrap();
            s.write_all(format!("GET /api/v1/stream HTTP/1.1\r\nHost: {}\r\n\r\n", svc.addr).as_bytes()).unwrap();
            s
        })
        .collect();
    // An oversized head (1 MiB of headers) and an oversized body.
    let mut big = TcpStream::connect(svc.addr).unwrap();
    let _ = big.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nX: {}\r\n\r\n", svc.addr, "a".repeat(1 << 20)).as_bytes(),
    );
    let mut body = TcpStream::connect(svc.addr).unwrap();
    let _ = body.write_all(
        format!("DELETE /api/v1/jvms/x HTTP/1.1\r\nHost: {}\r\nContent-Length: 1073741824\r\n\r\n", svc.addr)
            .as_bytes(),
    );
    let _ = body.write_all(&vec![b'z'; 1 << 20]);
    // Others are served meanwhile (the service holds at most 1,024 connections: these are
    // 1,022 + the probes, so make room first by closing a few idle ones).
    let mut idle = idle;
    idle.truncate(990);
    for _ in 0..20 {
        assert_eq!(get(svc.addr, "/healthz").status, 200);
        assert_eq!(get(svc.addr, "/api/v1/jvms").status, 200);
    }
    let during = rss_kib(svc.pid());
    eprintln!("sidecar RSS: {before} KiB before, {during} KiB with 1,000 idle + 20 stuck stream connections");
    assert!(during < before + 64 * 1024, "memory stays bounded: {before} → {during} KiB");
    assert!(svc.running());
    drop((idle, stuck, big, body));
    kill9(&mut jvm);
}

//! The web console in headless Chromium (driven over WebDriver by chromedriver): it loads,
//! receives live data over SSE and draws it. A screenshot is saved as a test artifact in
//! target/test-artifacts/console.png.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use jvmwatch_tests::http::{base64_decode, get, request, request_body};
use jvmwatch_tests::*;
use serde_json::{json, Value};

pub(crate) struct Driver {
    child: std::process::Child,
    pub(crate) addr: SocketAddr,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn post(addr: SocketAddr, path: &str, body: &Value) -> Value {
    let r = request_body(addr, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

pub(crate) fn script(d: &Driver, sid: &str, js: &str) -> Value {
    post(d.addr, &format!("/session/{sid}/execute/sync"), &json!({ "script": js, "args": [] }))["value"].clone()
}

#[test]
fn console_shows_live_charts_in_chromium() {
    if !have_browser() {
        return;
    }
    let jdk = &jdks()[0];
    let dir = tempdir();
    let svc = Service::start(dir.path(), &[]);
    let mut jvm =
        spawn(java_cmd(jdk, &format!("dir={}", dir.path().display()), &["-Xmx64m"], "Sleeper", &[], dir.path()));
    let id = wait_for_jvm(&svc, jvm.id(), "running")["id"].as_str().unwrap().to_string();

    let (driver, sid) = browser(dir.path());
    post(driver.addr, &format!("/session/{sid}/url"), &json!({ "url": format!("http://{}/?jvm={id}", svc.addr) }));

    // Wait until live data has arrived over SSE and been charted.
    let live = wait_for(Duration::from_secs(60), || {
        let n: u64 = script(&driver, &sid, "return document.getElementById('live-points').textContent")
            .as_str()?
            .parse()
            .ok()?;
        let snapshots = script(&driver, &sid, "return snapshots").as_u64()?;
        (n >= 20 && snapshots >= 4).then_some(n)
    });
    let counts = script(
        &driver,
        &sid,
        "return Object.fromEntries(Object.entries(series).map(([k, c]) => [k, Object.values(c).reduce((a, s) => a + s.length, 0)]))",
    );
    let shot = get(driver.addr, &format!("/session/{sid}/screenshot")).json()["value"].as_str().map(base64_decode);
    let _ = request(driver.addr, "DELETE", &format!("/session/{sid}"), &[]);
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(jvm.id() as i32, libc::SIGKILL) };
    let _ = jvm.wait();

    let png = shot.expect("screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let artifacts = target_dir().parent().unwrap().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("console.png"), &png).unwrap();
    eprintln!("console screenshot: {}", artifacts.join("console.png").display());

    assert!(live.is_some(), "no live chart data arrived; series: {counts}");
    for chart in ["heap", "gc", "threads"] {
        assert!(counts[chart].as_u64().unwrap_or(0) > 0, "chart {chart} has no points: {counts}");
    }
}

/// chromedriver with a headless Chromium session; the profile goes under `dir`.
pub(crate) fn browser(dir: &std::path::Path) -> (Driver, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
    wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(driver.addr).ok()?;
        (get(driver.addr, "/status").json()["value"]["ready"] == true).then_some(())
    })
    .expect("chromedriver ready");
    let profile = dir.join("chromium-profile");
    let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", format!("--user-data-dir={}", profile.display())]
    }}}});
    let sid = post(driver.addr, "/session", &caps)["value"]["sessionId"].as_str().unwrap().to_string();
    (driver, sid)
}

pub(crate) fn have_browser() -> bool {
    let have = Command::new("chromedriver").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have {
        assert_ne!(std::env::var("JVMWATCH_REQUIRE_BROWSER").as_deref(), Ok("1"), "chromedriver missing");
        eprintln!("skipped: chromedriver/chromium not installed (scripts/test.sh installs them)");
    }
    have
}

#[test]
fn console_shows_the_controllers_apps_and_decisions_in_chromium() {
    if !have_browser() {
        return;
    }
    let jdk = &jdks()[0];
    let dir = tempdir();
    let rings = dir.path().join("rings");
    std::fs::create_dir(&rings).unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rule]]\nname = \"watch_it\"\nwhen = \"alive\"\nthen = [\"flag\"]\n").unwrap();
    let state = dir.path().join("state");
    let svc = Service::start(&rings, &["--rules", rules.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
    let mut jvm = spawn(java_cmd(jdk, &format!("dir={}", rings.display()), &["-Xmx64m"], "Sleeper", &[], dir.path()));
    wait_for(Duration::from_secs(60), || {
        let d = get(svc.addr, "/api/v1/decisions").json();
        (!d["decisions"].as_array()?.is_empty()).then_some(())
    })
    .expect("a decision");
    let (driver, sid) = browser(dir.path());
    post(driver.addr, &format!("/session/{sid}/url"), &json!({ "url": format!("http://{}/", svc.addr) }));
    let row = wait_for(Duration::from_secs(60), || {
        let v = script(
            &driver,
            &sid,
            "const t = document.getElementById('controller'); const r = document.querySelector('#decisions tr');\
             return (t && !t.hidden && r) ? r.textContent : null",
        );
        v.as_str().map(str::to_string)
    });
    let _ = request(driver.addr, "DELETE", &format!("/session/{sid}"), &[]);
    let _ = jvm.kill();
    let row = row.expect("the decisions table shows a row");
    assert!(row.contains("watch_it") && row.contains("flag") && row.contains("alive"), "{row}");
}

#[test]
fn console_draws_every_chart_of_a_dead_jvm_from_its_history_in_chromium() {
    if !have_browser() {
        return;
    }
    let jdk = &jdks()[0];
    let dir = tempdir();
    let mut jvm = spawn(java_cmd(
        jdk,
        &format!("dir={}", dir.path().display()),
        &["-Xmx64m"],
        "AppMetrics",
        &["hold"],
        dir.path(),
    ));
    let ring = wait_for(Duration::from_secs(30), || {
        std::fs::read_dir(dir.path())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "ring"))
    })
    .expect("ring file");
    // A few seconds of history, then kill -9.
    wait_for(Duration::from_secs(60), || (inspect(&ring, 0)["history_samples"].as_u64()? >= 20).then_some(()))
        .expect("20 history samples");
    jvm.kill().unwrap();
    jvm.wait().unwrap();

    let svc = Service::start(dir.path(), &[]);
    wait_for_jvm(&svc, jvm.id(), "killed");
    let (driver, sid) = browser(dir.path());
    // No ?jvm=: with no JVM running, the console selects the one that died last.
    post(driver.addr, &format!("/session/{sid}/url"), &json!({ "url": format!("http://{}/", svc.addr) }));
    let drawn = wait_for(Duration::from_secs(60), || {
        let n = script(&driver, &sid, "return Number(document.body.dataset.historyPoints || 0)").as_u64()?;
        (n > 0).then_some(n)
    });
    let counts = script(
        &driver,
        &sid,
        "return Object.fromEntries(Object.entries(series).map(([k, c]) => [k, Object.values(c).reduce((a, s) => a + s.length, 0)]))",
    );
    let conn = script(&driver, &sid, "return document.getElementById('conn').textContent");
    let story = script(&driver, &sid, "return document.getElementById('story').textContent");
    let _ = request(driver.addr, "DELETE", &format!("/session/{sid}"), &[]);
    assert!(drawn.is_some(), "no history drawn; series: {counts}");
    assert_eq!(conn, "postmortem");
    assert!(story.as_str().unwrap().starts_with("Killed"), "{story}");
    for chart in ["heap", "gc", "threads", "cpu", "app", "rate"] {
        assert!(counts[chart].as_u64().unwrap_or(0) > 0, "chart {chart} has no points: {counts}");
    }
}

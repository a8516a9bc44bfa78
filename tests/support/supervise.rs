//! A running `jvmwatch supervise CONFIG` for the tests: listens on 127.0.0.1 with an
//! OS-chosen port, echoes and keeps its stderr, and is killed and reaped on drop.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::http::get;
use crate::jvmwatch;

/// A running `jvmwatch supervise`.
pub struct Supervise {
    /// The process.
    pub child: Child,
    /// Where its API listens.
    pub addr: std::net::SocketAddr,
    /// Every stderr line so far.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Supervise {
    /// `jvmwatch supervise CONFIG --dir WORK/rings --state-dir WORK/state`.
    pub fn start(config: &Path, work: &Path) -> Supervise {
        Supervise::start_with(&[], config, work)
    }

    /// The same behind `prefix` (e.g. `setpriv …`).
    pub fn start_with(prefix: &[&str], config: &Path, work: &Path) -> Supervise {
        let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        argv.push(jvmwatch().display().to_string());
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
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
        let mut it = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut addr = None;
        for line in it.by_ref() {
            let line = line.unwrap();
            eprintln!("[supervise] {line}");
            lines.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("http://").nth(1) {
                addr = Some(rest.trim_end_matches('/').parse().expect("address"));
                break;
            }
        }
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in it.map_while(Result::ok) {
                eprintln!("[supervise] {l}");
                sink.lock().unwrap().push(l);
            }
        });
        Supervise { child, addr: addr.expect("supervise printed its address"), lines }
    }

    /// Every decision in its log (up to 1,000).
    pub fn decisions(&self) -> Vec<Value> {
        get(self.addr, "/api/v1/decisions?limit=1000").json()["decisions"].as_array().cloned().unwrap_or_default()
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn sighup(&self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Supervise {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

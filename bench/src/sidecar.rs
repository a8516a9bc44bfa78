//! The `jvmwatch serve` sidecar: whether this build has it, starting it on a directory, and a
//! Server-Sent Events subscriber that timestamps every `gc_pause_end` it receives.
//!
//! Contract (sidecar/, being built alongside): `jvmwatch serve --dir DIR --listen ADDR` serves
//! `GET /healthz`, `GET /metrics` and `GET /api/v1/stream` (SSE, one event per ring event:
//! `id: <seq>`, `event: <type>`, `data: {"seq", "type", "time", "time_ns", "jvm", ...}`).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use jvmwatch_ring::now_ns;

use crate::process::Proc;
use crate::tools::Tools;
use crate::{http, sse};

/// `Ok` when `jvmwatch serve --help` succeeds; else why not, for a "skipped: ..." status.
pub fn available(tools: &Tools) -> std::result::Result<(), String> {
    match Command::new(&tools.jvmwatch).args(["serve", "--help"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            Err(format!("serve not available (`jvmwatch serve --help`: {first})"))
        }
        Err(e) => Err(format!("serve not available (cannot run {}: {e})", tools.jvmwatch.display())),
    }
}

/// A free port on 127.0.0.1 (the OS picks it; the listener is closed again at once).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `jvmwatch serve`.
pub struct Serve {
    /// The process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Serve {
    /// Starts `jvmwatch serve --dir dir --listen 127.0.0.1:<free port>` and waits until
    /// `/healthz` answers 200.
    pub fn start(tools: &Tools, dir: &Path, stderr: &Path) -> Result<Serve> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mut cmd = Command::new(&tools.jvmwatch);
        cmd.arg("serve").arg("--dir").arg(dir).arg("--listen").arg(addr.to_string());
        let mut proc = Proc::spawn(cmd, "jvmwatch serve", stderr)?;
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok((200, _)) = http::get_once(addr, "/healthz", Duration::from_secs(2)) {
                return Ok(Serve { proc, addr });
            }
            if Instant::now() > end {
                let tail = proc.stderr_tail();
                proc.terminate(Duration::from_secs(2));
                bail!("jvmwatch serve did not answer /healthz on {addr} within 15 s{tail}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL after 3 s.
    pub fn stop(mut self) {
        self.proc.terminate(Duration::from_secs(3));
    }
}

/// What a subscriber saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Events received.
    pub events: u64,
    /// `(event time, receive time)` of every `gc_pause_end`, ns since the Unix epoch.
    pub gc_ends: Vec<(u64, u64)>,
    /// Why the stream ended early, if it did.
    pub error: Option<String>,
}

impl Seen {
    /// `gc_pause_end` event time → arrival on the stream, ms, for each one seen.
    pub fn gc_to_sse_ms(&self) -> Vec<f64> {
        self.gc_ends.iter().map(|&(t, r)| r.saturating_sub(t) as f64 / 1e6).collect()
    }
}

/// An SSE client reading a stream (`/api/v1/stream`, or one JVM's) on its own thread.
pub struct Subscriber {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Seen>,
}

impl Subscriber {
    /// Connects to every JVM's stream and starts reading.
    pub fn connect(addr: SocketAddr) -> Result<Subscriber> {
        Subscriber::connect_to(addr, "/api/v1/stream")
    }

    /// Connects to the stream at `path` (every JVM's, or one JVM's) and starts reading.
    pub fn connect_to(addr: SocketAddr, path: &str) -> Result<Subscriber> {
        let stream = http::open_stream(addr, path, Duration::from_millis(100))
            .with_context(|| format!("cannot open http://{addr}{path}"))?;
        if stream.head.status != 200 {
            bail!("GET {path} answered {}", stream.head.status);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = Seen::default();
            let mut r = sse::Reader::new(stream.body);
            while !flag.load(Ordering::Relaxed) {
                match r.next() {
                    Ok(Some(ev)) => {
                        let recv = now_ns();
                        seen.events += 1;
                        if let Some((ty, t)) = sse::type_and_time(&ev) {
                            if ty == "gc_pause_end" {
                                seen.gc_ends.push((t, recv));
                            }
                        }
                    }
                    Ok(None) => {
                        seen.error = Some("the server ended the stream".into());
                        break;
                    }
                    Err(e) if http::is_timeout(&e) => {}
                    Err(e) => {
                        seen.error = Some(format!("stream read failed: {e}"));
                        break;
                    }
                }
            }
            seen
        });
        Ok(Subscriber { stop, handle })
    }

    /// Stops reading and returns what was seen.
    pub fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_else(|_| Seen { error: Some("subscriber panicked".into()), ..Seen::default() })
    }
}

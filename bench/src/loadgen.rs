//! The bounded HTTP client that drives the request-serving workload over loopback: `conns`
//! closed-loop keep-alive connections, each on its own thread (pinned to one CPU when asked),
//! running until stopped or a deadline, capped in requests. The caller reads the running count
//! of successful responses to time its own windows.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::Conn;
use crate::process;

/// Hard cap on requests per run, whatever the durations say.
const MAX_REQUESTS: u64 = 50_000_000;

/// Counters shared with the client threads. Relaxed: each is a lone statistic; the threads
/// are joined (a synchronising edge) before the final read.
#[derive(Default)]
struct Counts {
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// A running load.
pub struct Load {
    counts: Arc<Counts>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `conns` connections doing `GET path` on `addr` until [`Load::stop`] or `limit`
    /// passes; each client thread runs on `cpu` only when given.
    pub fn start(addr: SocketAddr, path: &str, conns: usize, cpu: Option<usize>, limit: Duration) -> Load {
        let counts = Arc::new(Counts::default());
        let deadline = Instant::now() + limit;
        let threads = (0..conns)
            .map(|_| {
                let (c, path) = (Arc::clone(&counts), path.to_string());
                std::thread::spawn(move || {
                    if let Some(cpu) = cpu {
                        let _ = process::pin_current_thread(cpu);
                    }
                    client(addr, &path, &c, deadline)
                })
            })
            .collect();
        Load { counts, threads }
    }

    /// Successful responses so far.
    pub fn done(&self) -> u64 {
        self.counts.done.load(Ordering::Relaxed)
    }

    /// Stops and joins the clients; returns the failed requests (errors or non-200).
    pub fn stop(self) -> u64 {
        self.counts.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.counts.errors.load(Ordering::Relaxed)
    }
}

fn client(addr: SocketAddr, path: &str, c: &Counts, deadline: Instant) {
    let timeout = Duration::from_secs(5);
    let mut conn = None;
    while !c.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if c.done.load(Ordering::Relaxed) >= MAX_REQUESTS {
            break;
        }
        if conn.is_none() {
            match Conn::connect(addr, path, timeout) {
                Ok(x) => conn = Some(x),
                Err(_) => {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        match conn.as_mut().map(Conn::get) {
            Some(Ok((200, _))) => {
                c.done.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(_)) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

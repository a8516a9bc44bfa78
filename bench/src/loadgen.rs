//! The bounded HTTP client that drives the request-serving workload over loopback: `conns`
//! closed-loop keep-alive connections, for warm-up + measurement only, capped in requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::http::Conn;

/// Hard cap on requests per run, whatever the durations say.
const MAX_REQUESTS: u64 = 50_000_000;

/// What one load run measured.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Successful responses inside the measured window.
    pub requests: u64,
    /// The window, ns.
    pub window_ns: u64,
    /// Failed requests (errors or non-200) over the whole run.
    pub errors: u64,
}

impl Load {
    /// Requests per second in the window.
    pub fn per_s(&self) -> f64 {
        self.requests as f64 * 1e9 / self.window_ns as f64
    }
}

/// Drives `GET path` on `addr` from `conns` connections for `warmup` then `measure`.
pub fn run(addr: SocketAddr, path: &str, conns: usize, warmup: Duration, measure: Duration) -> Result<Load> {
    let done = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + warmup + measure + Duration::from_secs(5);
    let (c0, c1, t0, t1) = std::thread::scope(|s| {
        for _ in 0..conns {
            s.spawn(|| {
                let timeout = Duration::from_secs(5);
                let mut conn = None;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if done.load(Ordering::Relaxed) >= MAX_REQUESTS {
                        break;
                    }
                    if conn.is_none() {
                        match Conn::connect(addr, path, timeout) {
                            Ok(c) => conn = Some(c),
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        }
                    }
                    match conn.as_mut().map(Conn::get) {
                        Some(Ok((200, _))) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Ok(_)) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                }
            });
        }
        std::thread::sleep(warmup);
        let (c0, t0) = (done.load(Ordering::Relaxed), Instant::now());
        std::thread::sleep(measure);
        let (c1, t1) = (done.load(Ordering::Relaxed), Instant::now());
        stop.store(true, Ordering::Relaxed);
        (c0, c1, t0, t1)
    });
    let load =
        Load { requests: c1 - c0, window_ns: (t1 - t0).as_nanos() as u64, errors: errors.load(Ordering::Relaxed) };
    if load.requests == 0 {
        bail!("no request succeeded in the measured window ({} errors)", load.errors);
    }
    Ok(load)
}

//! A control for the VM's idle cores: harness threads, one pinned to each given CPU, that do
//! nothing but sleep [`PERIOD`] at a time.
//!
//! Why: on this 2-core VM a core that something wakes often answers an interrupt sooner (its
//! idle state, most likely the hypervisor's halt polling, depends on how soon it was woken
//! last). The agent's threads wake the JVM's cores too (the monitor at each collection, and in
//! naps of 5–50 ms while collections come often; the sampler every 100 ms), so an HTTP server that waits on its client between requests
//! serves faster with the agent than without it. Measured by hand: the same HttpWork JVM (one
//! handler thread, pinned to CPU 0, `wrk` on CPU 1) served 3.2 % more requests a second in the
//! 10 s windows with a 5 ms sleeper on CPU 0 than in those without (8 pairs, 7 higher).
//! `none+waker` is the baseline plus this, so the report shows how much of a tool's figure is
//! that effect and not the tool. Its threads use no measurable CPU (a 5 ms sleep loop).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::process;

/// How long each waker thread sleeps at a time: the monitor's shortest nap.
pub const PERIOD: Duration = Duration::from_millis(5);

/// Running waker threads; dropping it stops and joins them.
pub struct Waker {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Waker {
    /// One thread per CPU in `cpus`, each pinned there (a CPU it cannot pin to is left out).
    pub fn start(cpus: &[usize]) -> Waker {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = cpus
            .iter()
            .map(|&cpu| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    if process::pin_current_thread(cpu).is_err() {
                        return;
                    }
                    // Relaxed: the flag carries no data; the thread only needs to see it
                    // eventually, and the join in `drop` orders everything else.
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(PERIOD);
                    }
                })
            })
            .collect();
        Waker { stop, threads }
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waker_runs_one_thread_per_cpu_and_stops_when_dropped() {
        let cpus = process::allowed_cpus();
        let w = Waker::start(&cpus[..1]);
        assert_eq!(w.threads.len(), 1);
        std::thread::sleep(PERIOD * 3);
        assert!(w.threads.iter().all(|t| !t.is_finished()), "a waker thread ended by itself");
        drop(w); // joins: the test would hang if a thread ignored the stop flag
    }
}

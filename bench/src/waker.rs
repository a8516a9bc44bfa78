//! A control for the VM's idle cores: harness threads, one pinned to each of the JVM's CPUs,
//! that do nothing but sleep [`PERIOD`] at a time.
//!
//! Why: on this 2-core VM a core that something wakes often answers an interrupt sooner (its
//! idle state, most likely the hypervisor's halt polling, depends on how soon it was woken
//! last). The agent's threads wake the JVM's cores too (the monitor at each collection, and in
//! naps of 5–50 ms while collections come often; the sampler every 100 ms), so an HTTP server
//! that waits on its client between requests serves faster with the agent than without it.
//! Measured by hand: the same HttpWork JVM (one handler thread, pinned to CPU 0, `wrk` on
//! CPU 1) served 3.2 % more requests a second in the 10 s windows with a 5 ms sleeper on CPU 0
//! than in those without (8 pairs, 7 higher). `none+waker` is the baseline plus this, so the
//! report shows how much of a tool's figure is that effect and not the tool. Its threads use
//! no measurable CPU (a 5 ms sleep loop).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::process;

/// How long each waker thread sleeps at a time: the monitor's shortest nap.
pub const PERIOD: Duration = Duration::from_millis(5);

/// Running waker threads; dropping it stops and joins them.
pub struct Waker {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Waker {
    /// One thread on the CPU the JVM is pinned to (`pinned`), or on each CPU this process may
    /// use when the JVM is not pinned. Returns once every thread runs on its CPU; an error when
    /// one cannot be pinned (the control would not be what it says).
    pub fn on_jvm_cpus(pinned: Option<usize>) -> Result<Waker> {
        let cpus = pinned.map_or_else(process::allowed_cpus, |cpu| vec![cpu]);
        let stop = Arc::new(AtomicBool::new(false));
        let (pinned_tx, pinned_rx) = mpsc::channel();
        let threads = cpus
            .iter()
            .map(|&cpu| {
                let (stop, pinned_tx) = (Arc::clone(&stop), pinned_tx.clone());
                std::thread::spawn(move || {
                    let pin =
                        process::pin_current_thread(cpu).map_err(|e| anyhow!("cannot pin a waker to CPU {cpu}: {e}"));
                    let ok = pin.is_ok();
                    let _ = pinned_tx.send(pin);
                    // Relaxed: the flag carries no data; the thread only needs to see it
                    // eventually, and the join in `drop` orders everything else.
                    while ok && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(PERIOD);
                    }
                })
            })
            .collect();
        let waker = Waker { stop, threads };
        // Every thread sends exactly once before it sleeps; on an error `waker` is dropped,
        // which stops and joins the others.
        for _ in &cpus {
            pinned_rx.recv().map_err(|_| anyhow!("a waker thread ended before it was pinned"))??;
        }
        Ok(waker)
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
    fn a_waker_runs_pinned_until_dropped() {
        let cpu = process::allowed_cpus()[0];
        let w = Waker::on_jvm_cpus(Some(cpu)).expect("waker on an allowed CPU");
        assert_eq!(w.threads.len(), 1);
        assert!(w.threads.iter().all(|t| !t.is_finished()), "a pinned waker thread ended by itself");
        drop(w); // joins: the test would hang if a thread ignored the stop flag
    }

    #[test]
    fn a_cpu_it_cannot_pin_to_is_an_error() {
        let cpu = libc::CPU_SETSIZE as usize - 1;
        if process::allowed_cpus().contains(&cpu) {
            return; // a machine with 1,024 CPUs: no CPU here is out of reach
        }
        let err = Waker::on_jvm_cpus(Some(cpu)).err().expect("CPU 1023 is not ours: pinning must fail");
        assert!(err.to_string().contains("cannot pin a waker to CPU 1023"), "{err:#}");
    }
}

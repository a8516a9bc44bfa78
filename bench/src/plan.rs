//! How big each section is: the full run (`all`: about 20 minutes on 2 cores) or `--smoke`
//! (tiny sizes, one run each, for CI), with command-line overrides.

use std::time::Duration;

use serde::Serialize;

/// Sizes and durations of one harness run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `--smoke`: tiny sizes.
    pub smoke: bool,
    /// Seed of the run orders and kill moments.
    pub seed: u64,
    /// Throughput: interleaved rounds (each runs every configuration once).
    pub rounds: usize,
    /// Throughput: warm-up before the measured window.
    #[serde(rename = "warmup_ms", serialize_with = "ms")]
    pub warmup: Duration,
    /// Throughput: the measured window.
    #[serde(rename = "measure_ms", serialize_with = "ms")]
    pub measure: Duration,
    /// Throughput: a run during which other processes used more than this much CPU (% of one
    /// core) is discarded and repeated...
    pub noise_limit_pct: f64,
    /// ... at most this many attempts per run in all (the last attempt is kept whatever it saw).
    pub max_attempts: usize,
    /// GC workload: allocating threads.
    pub gc_threads: usize,
    /// GC workload: fixed heap (-Xms = -Xmx).
    pub gc_heap: &'static str,
    /// HTTP workload: fixed heap.
    pub http_heap: &'static str,
    /// HTTP workload: server handler threads.
    pub http_pool: usize,
    /// HTTP workload: client connections (closed loop).
    pub http_conns: usize,
    /// Micro: repetitions of each measurement.
    pub micro_reps: usize,
    /// Micro: events per writer per repetition.
    pub micro_events: u64,
    /// Micro: snapshot updates per repetition.
    pub snapshot_writes: u64,
    /// Micro: slots of the ring that is filled and scanned (64 MiB = 1,048,576 slots).
    pub scan_slots: u64,
    /// Micro: JVM runs that measure the GC callback.
    pub callback_runs: usize,
    /// Micro: length of each of those runs.
    #[serde(rename = "callback_run_ms", serialize_with = "ms")]
    pub callback_run: Duration,
    /// Latency: rounds (each runs every method once).
    pub latency_rounds: usize,
    /// Latency: workload length per run.
    #[serde(rename = "latency_run_ms", serialize_with = "ms")]
    pub latency_run: Duration,
    /// Latency: GC events in the first part of a run are not counted (discovery, JIT warm-up).
    #[serde(rename = "latency_warmup_ms", serialize_with = "ms")]
    pub latency_warmup: Duration,
    /// Crash survival: runs.
    pub crash_runs: usize,
    /// Crash survival: the SIGKILL comes uniformly in this range after the JVM starts, ms.
    pub crash_kill_ms: (u64, u64),
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Plan {
    /// The full plan, or the smoke plan.
    pub fn new(smoke: bool, seed: u64) -> Plan {
        let ms = Duration::from_millis;
        if smoke {
            Plan {
                smoke,
                seed,
                rounds: 1,
                warmup: ms(300),
                measure: ms(700),
                noise_limit_pct: 10.0,
                max_attempts: 1,
                gc_threads: 8,
                gc_heap: "512m",
                http_heap: "256m",
                http_pool: 4,
                http_conns: 4,
                micro_reps: 1,
                micro_events: 100_000,
                snapshot_writes: 10_000,
                scan_slots: 16_384,
                callback_runs: 1,
                callback_run: ms(1000),
                latency_rounds: 1,
                latency_run: ms(3000),
                latency_warmup: ms(500),
                crash_runs: 5,
                crash_kill_ms: (300, 800),
            }
        } else {
            Plan {
                smoke,
                seed,
                rounds: 5,
                warmup: ms(2000),
                measure: ms(5000),
                noise_limit_pct: 10.0,
                max_attempts: 3,
                gc_threads: 8,
                gc_heap: "512m",
                http_heap: "256m",
                http_pool: 4,
                http_conns: 4,
                micro_reps: 5,
                micro_events: 2_000_000,
                snapshot_writes: 200_000,
                scan_slots: 1 << 20,
                callback_runs: 5,
                callback_run: ms(3000),
                latency_rounds: 5,
                latency_run: ms(6000),
                latency_warmup: ms(1000),
                crash_runs: 200,
                crash_kill_ms: (300, 1200),
            }
        }
    }
}

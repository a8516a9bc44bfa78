//! How big each section is: the full run, `--quick` (the throughput, Tomcat and sampler
//! sections short, the others full) or `--smoke` (tiny sizes, one run each, for CI), with
//! command-line overrides. [`Plan::estimate`] says how long the timed sections take.

use std::time::Duration;

use serde::Serialize;

/// Sizes and durations of one harness run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `--smoke`: tiny sizes.
    pub smoke: bool,
    /// `--quick`: short throughput, Tomcat and sampler sections.
    pub quick: bool,
    /// Seed of the run orders and kill moments.
    pub seed: u64,
    /// Throughput: interleaved rounds (each runs every configuration once; odd rounds run the
    /// previous round's order reversed, so rounds come in AB/BA pairs).
    pub rounds: usize,
    /// Throughput: the warm-up lasts at least this long, then until the per-second rate stops
    /// rising...
    #[serde(rename = "warmup_ms", serialize_with = "ms")]
    pub warmup: Duration,
    /// ... but at most this long.
    #[serde(rename = "warmup_max_ms", serialize_with = "ms")]
    pub warmup_max: Duration,
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
    /// Tomcat: interleaved rounds (AB/BA pairs as in throughput).
    pub tomcat_rounds: usize,
    /// Tomcat: wrk warm-up run before the measured one.
    #[serde(rename = "tomcat_warmup_ms", serialize_with = "ms")]
    pub tomcat_warmup: Duration,
    /// Tomcat: the measured wrk run.
    #[serde(rename = "tomcat_measure_ms", serialize_with = "ms")]
    pub tomcat_measure: Duration,
    /// Tomcat: wrk connections (one wrk thread).
    pub tomcat_conns: usize,
    /// Tomcat: fixed heap.
    pub tomcat_heap: &'static str,
    /// Sampler cost: parked threads per JVM.
    pub sampler_threads: Vec<usize>,
    /// Sampler cost: wait after the threads are up before the window starts.
    #[serde(rename = "sampler_settle_ms", serialize_with = "ms")]
    pub sampler_settle: Duration,
    /// Sampler cost: the window over which the sampler thread's CPU is read.
    #[serde(rename = "sampler_window_ms", serialize_with = "ms")]
    pub sampler_window: Duration,
    /// Sampler cost: JVMs per thread count (interleaved).
    pub sampler_reps: usize,
    /// Short-lived JVMs: rounds (each runs every configuration once per life).
    pub short_lived_rounds: usize,
    /// Short-lived JVMs: how long the program sleeps before it returns, ms, per life.
    pub short_lived_lives_ms: Vec<u64>,
}

/// How long the timed sections take by the plan, seconds: (shortest, longest), the longest
/// when every warm-up runs to its cap. Repeated noisy runs come on top.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Estimate {
    /// Throughput: rounds × configurations × 2 workloads × (warm-up + measure + JVM start).
    pub throughput_s: (f64, f64),
    /// Tomcat: rounds × configurations × (Tomcat start + warm-up + measure + stop).
    pub tomcat_s: f64,
    /// Sampler: reps × thread counts × (JVM start + settle + window).
    pub sampler_s: f64,
    /// Short-lived JVMs: rounds × configurations × (life + about 0.5 s to start and exit).
    pub short_lived_s: f64,
}

/// Seconds to start a JVM, hand it to the harness and reap it (measured: 1–2 s on 2 cores).
pub const JVM_START_S: f64 = 2.0;
/// Seconds to start Tomcat with its one servlet and stop it again (3–5 s on a quiet 2-core machine,
/// 10–20 s on a busy one).
pub const TOMCAT_START_S: f64 = 8.0;

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
                quick: false,
                seed,
                rounds: 1,
                warmup: ms(300),
                warmup_max: ms(300),
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
                tomcat_rounds: 1,
                tomcat_warmup: ms(1000),
                tomcat_measure: ms(1000),
                tomcat_conns: 8,
                tomcat_heap: "256m",
                sampler_threads: vec![40, 400],
                sampler_settle: ms(500),
                sampler_window: ms(1000),
                sampler_reps: 1,
                short_lived_rounds: 2,
                short_lived_lives_ms: vec![0, 1500],
            }
        } else {
            Plan {
                smoke,
                quick: false,
                seed,
                rounds: 6,
                warmup: ms(20_000),
                warmup_max: ms(30_000),
                measure: ms(10_000),
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
                tomcat_rounds: 8,
                tomcat_warmup: ms(30_000),
                tomcat_measure: ms(15_000),
                tomcat_conns: 8,
                tomcat_heap: "256m",
                sampler_threads: vec![40, 400, 4000],
                sampler_settle: ms(3000),
                sampler_window: ms(10_000),
                sampler_reps: 3,
                short_lived_rounds: 20,
                short_lived_lives_ms: vec![0, 1500],
            }
        }
    }

    /// `--quick`: the full plan with short throughput, Tomcat and sampler sections (one AB/BA
    /// pair of rounds, 5 s warm-ups and windows): a check that they work, not figures to quote.
    pub fn quick(mut self) -> Plan {
        let s = Duration::from_secs;
        self.quick = true;
        self.rounds = 2;
        self.warmup = s(5);
        self.warmup_max = s(8);
        self.measure = s(5);
        self.tomcat_rounds = 2;
        self.tomcat_warmup = s(5);
        self.tomcat_measure = s(5);
        self.sampler_settle = s(2);
        self.sampler_window = s(5);
        self.sampler_reps = 1;
        self.short_lived_rounds = 6;
        self
    }

    /// The timed sections' length for `configs` throughput configurations of `workloads`
    /// workloads and `tomcat_configs` Tomcat configurations.
    pub fn estimate(&self, configs: usize, workloads: usize, tomcat_configs: usize) -> Estimate {
        let (w0, w1, m) = (self.warmup.as_secs_f64(), self.warmup_max.as_secs_f64(), self.measure.as_secs_f64());
        let runs = (self.rounds * configs * workloads) as f64;
        let tomcat_run = TOMCAT_START_S + self.tomcat_warmup.as_secs_f64() + self.tomcat_measure.as_secs_f64();
        let sampler_run = JVM_START_S + self.sampler_settle.as_secs_f64() + self.sampler_window.as_secs_f64();
        Estimate {
            throughput_s: (runs * (w0 + m + JVM_START_S), runs * (w1 + m + JVM_START_S)),
            tomcat_s: (self.tomcat_rounds * tomcat_configs) as f64 * tomcat_run,
            sampler_s: (self.sampler_reps * self.sampler_threads.len()) as f64 * sampler_run,
            short_lived_s: self
                .short_lived_lives_ms
                .iter()
                .map(|&ms| {
                    (self.short_lived_rounds * crate::short_lived::CONFIGS.len()) as f64 * (ms as f64 / 1000.0 + 0.5)
                })
                .sum(),
        }
    }
}

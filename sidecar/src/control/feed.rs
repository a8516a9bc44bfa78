//! Turns what the registry knows of each JVM into the pure controller's [`World`]: verdict,
//! findings and liveness every tick, and every `sample_every` one point per series a rule
//! reads (only those: the history stays bounded by the rules, see `docs/controller.md`).

use std::collections::{BTreeSet, HashMap};

use jvmwatch_controller::{History, Instance, World};
use jvmwatch_ring::metrics::{Instrument, Kind};
use jvmwatch_ring::{Event, UNKNOWN};

use crate::serve::registry::Jvm;

/// Per-JVM bookkeeping beside its controller instance.
#[derive(Default)]
pub struct Cursor {
    /// Next event sequence number to look at for GC cycles.
    next_gc_seq: u64,
}

/// The series names of the fixed table that a JVM's snapshot and header give, with values.
fn fixed_series(j: &Jvm, now_ns: u64) -> Vec<(&'static str, f64)> {
    let mut v = Vec::with_capacity(32);
    let known = |x: u64| (x != UNKNOWN).then_some(x as f64);
    let beat = if j.live.heartbeat_ns == 0 { j.header.start_ns } else { j.live.heartbeat_ns };
    v.push(("heartbeat.age_s", now_ns.saturating_sub(beat) as f64 / 1e9));
    v.push(("gc.pauses", j.live.gc_pauses as f64));
    v.push(("gc.pause_total_s", j.live.gc_pause_total_ns as f64 / 1e9));
    v.push(("gc.pause_max_ms", j.live.gc_pause_max_ns as f64 / 1e6));
    if let Some(s) = &j.snapshot {
        let max = known(s.heap_max).filter(|m| *m > 0.0);
        if let Some(u) = known(s.heap_used) {
            v.push(("heap.used", u));
            if let Some(m) = max {
                v.push(("heap.used_ratio", u / m));
            }
        }
        if let Some(c) = known(s.heap_committed) {
            v.push(("heap.committed", c));
        }
        if let Some(m) = max {
            v.push(("heap.max", m));
        }
        if let Some(a) = s.heap_used_after_gc() {
            v.push(("heap.after_gc", a as f64));
            if let Some(m) = max {
                v.push(("heap.after_gc_ratio", a as f64 / m));
            }
        }
        if let Some(n) = known(s.nonheap_used) {
            v.push(("nonheap.used", n));
        }
        v.push(("gc.count", s.gc_count() as f64));
        v.push(("gc.time_s", s.gc_time_ms() as f64 / 1e3));
        v.push(("cpu.time_s", s.cpu_time_ns as f64 / 1e9));
        v.push(("classes.loaded", s.loaded_classes as f64));
        v.push(("threads.live", s.threads_live as f64));
        v.push(("threads.daemon", s.threads_daemon as f64));
        for (name, n) in
            ["threads.new", "threads.runnable", "threads.blocked", "threads.waiting", "threads.timed_waiting"]
                .iter()
                .zip(s.thread_states)
        {
            v.push((name, n as f64));
        }
    }
    v
}

/// Pushes one sample of `j` into `h` (series in `wanted` only).
pub fn sample(j: &Jvm, h: &mut History, cur: &mut Cursor, wanted: &BTreeSet<String>, t_ms: u64, now_ns: u64) {
    for (name, value) in fixed_series(j, now_ns) {
        if wanted.contains(name) {
            h.push(name, t_ms, value);
        }
    }
    if let Some(s) = &j.snapshot {
        for p in s.pools() {
            let base = format!("heap.pool.{}", p.name.as_str());
            for (suffix, x) in [("used", p.used), ("committed", p.committed), ("max", p.max)] {
                let name = format!("{base}.{suffix}");
                if x != UNKNOWN && wanted.contains(&name) {
                    h.push(&name, t_ms, x as f64);
                }
            }
        }
    }
    // One point per GC for `gc.heap_after_ratio`: the heap right after each collection (from
    // the in-VM monitor's gc_cycle events) over the heap's max.
    if wanted.contains("gc.heap_after_ratio") {
        let max = j.snapshot.as_ref().map(|s| s.heap_max).filter(|m| *m != UNKNOWN && *m > 0);
        for r in j.window.iter().filter(|r| r.seq >= cur.next_gc_seq) {
            if let (Event::GcCycle { after, concurrent: false, .. }, Some(max)) = (r.event, max) {
                h.push("gc.heap_after_ratio", (r.time_ns / 1_000_000).min(t_ms), after as f64 / max as f64);
            }
        }
    }
    cur.next_gc_seq = j.next_seq;
    for i in j.instruments() {
        push_instrument(h, i, wanted, t_ms);
    }
}

fn push_instrument(h: &mut History, i: &Instrument, wanted: &BTreeSet<String>, t_ms: u64) {
    let name = format!("app.{}", i.name);
    match i.kind {
        Kind::Counter => {
            if wanted.contains(&name) {
                h.push(&name, t_ms, i.value as f64);
            }
        }
        Kind::Gauge => {
            if wanted.contains(&name) {
                h.push(&name, t_ms, i.gauge() as f64);
            }
        }
        Kind::Timer => {
            if wanted.contains(&name) {
                h.push_hist(&name, t_ms, i.value, i.sum as f64 / 1e6, &i.buckets);
            }
            let count = format!("{name}.count");
            if wanted.contains(&count) {
                h.push(&count, t_ms, i.value as f64);
            }
        }
    }
}

/// Histogram bucket upper bounds in milliseconds, as the ring numbers buckets.
pub fn bucket_bounds_ms() -> Vec<f64> {
    (0..jvmwatch_ring::metrics::BUCKET_COUNT).map(|i| jvmwatch_ring::metrics::bucket_upper(i) as f64 / 1e6).collect()
}

/// What one controller tick samples.
#[derive(Clone, Copy)]
pub struct Tick<'a> {
    /// Series the rules read.
    pub wanted: &'a BTreeSet<String>,
    /// History bounds.
    pub history: &'a jvmwatch_controller::ControllerCfg,
    /// Push a point now (every `sample_every`).
    pub sample_now: bool,
    /// Now, ms since the epoch.
    pub t_ms: u64,
}

/// Brings `world` up to date with the registry's JVMs: adds new ones, refreshes liveness,
/// verdict and findings, samples series when `sample_now`, drops JVMs the registry forgot.
/// `app_of` names the app of a JVM (the supervisor's grouping, else the ring's app name).
pub fn update(
    world: &mut World,
    cursors: &mut HashMap<String, Cursor>,
    jvms: &std::collections::BTreeMap<std::sync::Arc<str>, Jvm>,
    app_of: &dyn Fn(&Jvm) -> String,
    tick: &Tick<'_>,
) {
    let Tick { wanted, history, sample_now, t_ms } = *tick;
    world.instances.retain(|i| jvms.contains_key(i.id.as_str()));
    cursors.retain(|id, _| jvms.contains_key(id.as_str()));
    let now_ns = jvmwatch_ring::now_ns();
    let mut index: HashMap<String, usize> =
        world.instances.iter().enumerate().map(|(n, i)| (i.id.clone(), n)).collect();
    for (id, j) in jvms {
        let n = match index.get(&**id) {
            Some(n) => *n,
            None => {
                world.instances.push(Instance {
                    id: id.to_string(),
                    app: app_of(j),
                    history: History::for_config(history),
                    ..Instance::default()
                });
                index.insert(id.to_string(), world.instances.len() - 1);
                world.instances.len() - 1
            }
        };
        let inst = &mut world.instances[n];
        // Every tick: a JVM names its app (`-Djvmwatch.app`) only after its ring appeared.
        let app = app_of(j);
        if inst.app != app {
            inst.app = app;
        }
        inst.alive = j.alive;
        inst.verdict = j.verdict.as_str().to_string();
        inst.findings = j.findings.iter().map(|f| f.to_string()).collect();
        if sample_now && j.gone.is_none() && (j.alive || !j.settled) {
            let cur = cursors.entry(id.to_string()).or_default();
            sample(j, &mut inst.history, cur, wanted, t_ms, now_ns);
        }
    }
}

//! The seven example rules of docs/controller.md, each over a synthetic time sequence.

mod common;

use common::Sim;
use jvmwatch_controller::Action;

/// Pushes a timer point: `n` values per second of `ms` each, so far, at `t` seconds.
fn timer(sim: &mut Sim, id: &str, t: u64, per_s: u64, ms: f64) {
    let count = per_s * (t + 1);
    let mut buckets = vec![0u64; 8];
    buckets[3] = count;
    sim.h(id).push_hist("app.latency", t * 1000, count, count as f64 * ms, &buckets);
}

#[test]
fn ex1_slow_scales_up_at_most_2_per_minute_never_above_max() {
    let mut sim = Sim::with_rules(&["slow"]);
    sim.add("s1", "shop", true);
    sim.status("shop", 1, 1, 4);
    for t in 0..=600 {
        timer(&mut sim, "s1", t, 10, 150.0);
        sim.eval(t);
    }
    // Warm-up: 80 % of 5m = 240 s. Then 2 in the first minute, 1 more reaches max = 4.
    assert_eq!(sim.times("slow", None), [240, 241, 300]);
    assert_eq!(sim.world.apps["shop"].instances, 4);
    let d = &sim.log[0];
    assert_eq!(d.actions, [Action::ScaleUp]);
    assert_eq!(d.instance, None);
    assert_eq!(d.reason, "mean(app.latency, 5m) = 150 > 100 (held 0s)");
    assert_eq!(d.figures.len(), 1);
    assert_eq!(d.figures[0].expr, "mean(app.latency, 5m)");
    assert_eq!(d.figures[0].window_ms, Some(300_000));
}

#[test]
fn ex1_fast_app_does_not_scale() {
    let mut sim = Sim::with_rules(&["slow"]);
    sim.add("s1", "shop", true);
    sim.status("shop", 1, 1, 4);
    for t in 0..=600 {
        timer(&mut sim, "s1", t, 10, 80.0);
        sim.eval(t);
    }
    assert!(sim.log.is_empty());
}

#[test]
fn ex2_idle_scales_down_at_most_1_per_5m_never_below_min() {
    let mut sim = Sim::with_rules(&["idle"]);
    sim.add("a", "shop", true);
    sim.status("shop", 3, 1, 4);
    for t in 0..=1800 {
        sim.h("a").push("app.requests", t * 1000, (t / 2) as f64); // 0.5 requests/s
        sim.eval(t);
    }
    // Known from 48 s (80 % of 1m), held 10m -> 648 s; re-armed after the 5m cooldown -> 948 s;
    // then the app is at min = 1.
    assert_eq!(sim.times("idle", None), [648, 948]);
    assert_eq!(sim.world.apps["shop"].instances, 1);
    assert!(sim.log[0].reason.ends_with("(held 10m)"), "{}", sim.log[0].reason);
}

#[test]
fn ex3_error_ratio_restarts_that_instance() {
    let mut sim = Sim::with_rules(&["errors"]);
    sim.add("a", "shop", true);
    sim.add("b", "shop", true);
    for t in 0..=200 {
        for (id, err_per_s) in [("a", 10.0), ("b", 1.0)] {
            let h = sim.h(id);
            h.push("app.requests", t * 1000, 100.0 * t as f64);
            h.push("app.errors", t * 1000, err_per_s * t as f64);
        }
        sim.eval(t);
    }
    assert_eq!(sim.times("errors", Some("a")), [48]);
    assert!(sim.times("errors", Some("b")).is_empty());
    let d = &sim.log[0];
    assert_eq!(d.actions, [Action::Restart]);
    assert_eq!(d.reason, "rate(app.errors, 1m) = 10 > 5% * rate(app.requests, 1m) = 5 (held 0s)");
    // The restarted instance comes back under a new id: the old one's state goes.
    assert_eq!(sim.state.len(), 1);
    sim.world.instances.retain(|i| i.id != "a");
    sim.eval(201);
    assert_eq!(sim.state.len(), 0);
}

#[test]
fn ex4_gc_thrash_time_share_or_three_full_gcs() {
    let mut sim = Sim::with_rules(&["gc_thrash"]);
    sim.add("x", "shop", true);
    sim.add("y", "shop", true);
    let mut gc = 0.0;
    let ratios = [(10, 0.5), (20, 0.95), (30, 0.96), (40, 0.97), (50, 0.5), (60, 0.95), (70, 0.95), (80, 0.95)];
    for t in 0..=200u64 {
        if t > 0 {
            gc += if t > 100 { 0.6 } else { 0.01 };
        }
        sim.h("x").push("gc.time_s", t * 1000, gc);
        if let Some(&(_, r)) = ratios.iter().find(|(at, _)| *at == t) {
            sim.h("y").push("gc.heap_after_ratio", t * 1000, r);
        }
        sim.eval(t);
    }
    // x: 25 of the 29 one-second steps in the 30 s window at 60 % -> 51 %.
    assert_eq!(sim.times("gc_thrash", Some("x")), [125]);
    // y: three GCs above 90 % at 40 s; false at 50 s; true again at 80 s, cooldown 1m -> 100 s.
    assert_eq!(sim.times("gc_thrash", Some("y")), [40, 100]);
    let y = sim.log.iter().find(|d| d.instance.as_deref() == Some("y")).unwrap();
    assert_eq!(y.reason, "min_last(gc.heap_after_ratio, 3) = 0.95 > 90% (held 0s)");
}

#[test]
fn ex5_stale_heartbeat_while_alive_dumps_then_restarts() {
    let mut sim = Sim::with_rules(&["hung"]);
    sim.add("h", "shop", true);
    sim.add("dead", "shop", false);
    for t in 0..=120u64 {
        let age = if t <= 50 { 0.1 } else { (t - 50) as f64 };
        sim.h("h").push("heartbeat.age_s", t * 1000, age);
        sim.h("dead").push("heartbeat.age_s", t * 1000, t as f64);
        if t == 70 {
            sim.inst("h").alive = false;
        }
        sim.eval(t);
    }
    assert_eq!(sim.times("hung", Some("h")), [61]);
    assert!(sim.times("hung", Some("dead")).is_empty());
    assert_eq!(sim.log[0].actions, [Action::ThreadDump, Action::Restart]);
    assert_eq!(sim.log[0].reason, "alive and heartbeat.age_s = 11 > 10 (held 0s)");
}

#[test]
fn ex6_crashed_killed_or_oom_restarts_once() {
    let mut sim = Sim::with_rules(&["died"]);
    for (id, verdict, finding) in
        [("c", "crashed", None), ("k", "killed", None), ("o", "running", Some("oom")), ("r", "running", Some("hung"))]
    {
        sim.add(id, "shop", verdict == "running");
        let i = sim.inst(id);
        i.verdict = verdict.into();
        i.findings = finding.into_iter().map(String::from).collect();
    }
    for t in 0..30 {
        sim.eval(t);
    }
    let mut fired: Vec<_> = sim.log.iter().map(|d| (d.instance.clone().unwrap(), d.at_ms)).collect();
    fired.sort();
    assert_eq!(fired, [("c".to_string(), 0), ("k".to_string(), 0), ("o".to_string(), 0)]);
    assert_eq!(sim.log[0].actions, [Action::Restart, Action::Hook("page".into())]);
    let o = sim.log.iter().find(|d| d.instance.as_deref() == Some("o")).unwrap();
    assert_eq!(o.reason, "finding oom (held 0s)");
    let c = sim.log.iter().find(|d| d.instance.as_deref() == Some("c")).unwrap();
    assert_eq!(c.reason, "verdict crashed (held 0s)");
}

#[test]
fn ex7_outlier_among_peers_is_flagged() {
    let mut sim = Sim::with_rules(&["outlier"]);
    let peers = [("p1", 100.0), ("p2", 102.0), ("p3", 98.0), ("p4", 101.0), ("odd", 300.0)];
    for (id, _) in peers {
        sim.add(id, "shop", true);
    }
    for t in 0..=200 {
        for (id, ms) in peers {
            timer(&mut sim, id, t, 5, ms);
        }
        sim.eval(t);
    }
    // Known from 48 s (80 % of 1m), held 30 s.
    assert_eq!(sim.times("outlier", None), [78]);
    let d = &sim.log[0];
    assert_eq!(d.instance.as_deref(), Some("odd"));
    assert_eq!(d.actions, [Action::Flag, Action::Hook("ticket".into())]);
    assert!(d.reason.starts_with("zscore(mean(app.latency, 1m)) = 134.2"), "{}", d.reason);
}

#[test]
fn ex7_needs_three_peers() {
    let mut sim = Sim::with_rules(&["outlier"]);
    sim.add("p1", "shop", true);
    sim.add("odd", "shop", true);
    for t in 0..=200 {
        timer(&mut sim, "p1", t, 5, 100.0);
        timer(&mut sim, "odd", t, 5, 300.0);
        sim.eval(t);
    }
    assert!(sim.log.is_empty());
}

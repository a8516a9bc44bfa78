//! Firing semantics: cooldown, max_per, `for`, latch, absent data, scale bounds, app scope.

mod common;

use std::path::Path;

use common::Sim;
use jvmwatch_controller::{Action, Config};

fn sim(rules: &str) -> Sim {
    let text = format!("[[app]]\nname = \"shop\"\ncommand = [\"java\"]\nmin = 1\nmax = 4\n{rules}");
    match Config::parse(&text, Path::new("t.toml")) {
        Ok(c) => Sim::new(c),
        Err(e) => panic!("{e}"),
    }
}

/// Runs `secs` seconds, pushing `heap.used_ratio = f(t)` to instance "a", and returns the
/// decision times of rule "r".
fn run(rules: &str, secs: u64, f: impl Fn(u64) -> Option<f64>) -> Vec<u64> {
    let mut s = sim(rules);
    s.add("a", "shop", true);
    for t in 0..secs {
        if let Some(v) = f(t) {
            s.h("a").push("heap.used_ratio", t * 1000, v);
        }
        s.eval(t);
    }
    s.times("r", None)
}

const R: &str = "[[rule]]\nname = \"r\"\nwhen = \"heap.used_ratio > 0.9\"\nthen = [\"flag\"]\n";

#[test]
fn table() {
    let flap = |t: u64| Some(if t % 2 == 0 { 0.91 } else { 0.89 });
    let cases: Vec<(&str, String, u64, Vec<u64>)> = vec![
        ("latched while true", R.to_string(), 100, vec![0]),
        ("flapping: once per cooldown", format!("{R}cooldown = \"1m\"\n"), 300, vec![0, 60, 120, 180, 240]),
        ("flapping: no cooldown, once per rising edge", R.to_string(), 8, vec![0, 2, 4, 6]),
        ("max_per enforced", format!("{R}max_per = \"2/1m\"\n"), 130, vec![0, 2, 60, 62, 120, 122]),
    ];
    for (what, rules, secs, want) in cases {
        let got = if what.starts_with("latched") { run(&rules, secs, |_| Some(0.95)) } else { run(&rules, secs, flap) };
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn for_resets_when_false() {
    let rules = format!("{R}for = \"10s\"\n");
    // true 0..8, false at 8, true again from 9: fires at 19, not at 10.
    let got = run(&rules, 40, |t| Some(if t == 8 { 0.5 } else { 0.95 }));
    assert_eq!(got, [19]);
    let mut s = sim(&rules);
    s.add("a", "shop", true);
    s.h("a").push("heap.used_ratio", 0, 0.95);
    s.eval(0);
    let d = s.eval(10);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].reason, "heap.used_ratio = 0.95 > 0.9 (held 10s)");
}

#[test]
fn absent_data_never_fires() {
    let rules = [
        "heap.used_ratio > 0.9",
        "heap.used_ratio <= 0.9",
        "avg(heap.used, 1m) > -1",
        "rate(gc.count, 1m) >= 0",
        "mean(app.latency, 1m) >= 0",
        "p99(app.latency, 1m) >= 0",
        "min_last(gc.heap_after_ratio, 3) > -1",
        "zscore(heap.used) > -100",
        "heap.used / heap.max > -1",
        "verdict(crashed)",
    ];
    for when in rules {
        let text = format!("[[rule]]\nname = \"r\"\nwhen = \"{when}\"\nthen = [\"flag\"]\n");
        let got = {
            let mut s = sim(&text);
            s.add("a", "shop", true);
            s.add("b", "shop", true);
            s.add("c", "shop", true);
            for t in 0..200 {
                s.eval(t);
            }
            s.times("r", None)
        };
        assert!(got.is_empty(), "{when}: {got:?}");
    }
    // ... but `not` of an absent comparison is true (documented).
    let got = run("[[rule]]\nname = \"r\"\nwhen = \"not (heap.used > 1)\"\nthen = [\"flag\"]\n", 5, |_| None);
    assert_eq!(got, [0]);
}

#[test]
fn warm_up_needs_80_percent_of_the_window() {
    let rules = "[[rule]]\nname = \"r\"\nscope = \"app\"\nwhen = \"rate(app.requests, 10m) < 1\"\nthen = [\"flag\"]\n";
    let mut s = sim(rules);
    s.add("a", "shop", true);
    for t in 0..=600 {
        s.h("a").push("app.requests", t * 1000, 0.0);
        s.eval(t);
    }
    assert_eq!(s.times("r", None), [480]);
}

#[test]
fn division_by_zero_is_absent() {
    let rules = "[[rule]]\nname = \"r\"\nwhen = \"heap.used / heap.max >= 0\"\nthen = [\"flag\"]\n";
    let mut s = sim(rules);
    s.add("a", "shop", true);
    s.h("a").push("heap.used", 0, 5.0);
    s.h("a").push("heap.max", 0, 0.0);
    assert!(s.eval(0).is_empty());
    s.h("a").push("heap.max", 1000, 10.0);
    assert_eq!(s.eval(1).len(), 1);
}

#[test]
fn scale_at_bounds_consumes_nothing() {
    let rules = "[[rule]]\nname = \"r\"\nscope = \"app\"\nwhen = \"threads.live < 5\"\nthen = [\"scale_down\"]\ncooldown = \"1m\"\n";
    let mut s = sim(rules);
    s.add("a", "shop", true);
    s.status("shop", 1, 1, 4);
    for t in 0..10 {
        s.h("a").push("threads.live", t * 1000, 1.0);
        assert!(s.eval(t).is_empty());
    }
    // Above min again: decides at once (no cooldown was used up at the bound).
    s.status("shop", 2, 1, 4);
    s.h("a").push("threads.live", 10_000, 1.0);
    let d = s.eval(10);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].actions, [Action::ScaleDown]);
    assert_eq!(s.world.apps["shop"].instances, 1);
}

#[test]
fn mixed_actions_drop_only_the_scale_step() {
    let text = "[hooks.page]\ncommand = [\"true\"]\n[[rule]]\nname = \"r\"\nscope = \"app\"\nwhen = \"alive\"\nthen = [\"scale_up\", \"hook:page\"]\n";
    let mut s = sim(text);
    s.add("a", "shop", true);
    s.status("shop", 4, 1, 4);
    let d = s.eval(0);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].actions, [Action::Hook("page".into())]);
}

#[test]
fn two_scale_rules_in_one_evaluation_respect_max() {
    let text = "[[rule]]\nname = \"r\"\nscope = \"app\"\nwhen = \"alive\"\nthen = [\"scale_up\"]\n\
                [[rule]]\nname = \"r2\"\nscope = \"app\"\nwhen = \"alive\"\nthen = [\"scale_up\"]\n";
    let mut s = sim(text);
    s.add("a", "shop", true);
    s.status("shop", 3, 1, 4);
    assert_eq!(s.eval(0).len(), 1);
}

#[test]
fn app_scope_combines_instances() {
    let cases = [
        ("rate(app.requests, 1m) > 2.5", true), // sum: 1 + 2 = 3 per second
        ("rate(app.requests, 1m) > 3.5", false),
        ("avg(heap.used, 1m) == 20", true), // mean of 10 and 30
        ("heap.used == 20", true),          // bare series: mean of last
        ("max(heap.used, 1m) == 30", true),
        ("min(heap.used, 1m) == 10", true),
        ("mean(app.latency, 1m) == 30", true), // pooled: (1×10 + 2×40) / 3
        ("alive", true),
        ("verdict(killed)", true), // the dead instance
    ];
    for (when, want) in cases {
        let text = format!("[[rule]]\nname = \"r\"\nscope = \"app\"\nwhen = \"{when}\"\nthen = [\"flag\"]\n");
        let mut s = sim(&text);
        s.add("a", "shop", true);
        s.add("b", "shop", true);
        s.add("dead", "shop", false);
        for t in 0..=60u64 {
            let ms = t * 1000;
            s.h("a").push("app.requests", ms, t as f64);
            s.h("b").push("app.requests", ms, 2.0 * t as f64);
            s.h("dead").push("app.requests", ms, 100.0 * t as f64);
            s.h("a").push("heap.used", ms, 10.0);
            s.h("b").push("heap.used", ms, 30.0);
            s.h("dead").push("heap.used", ms, 1000.0);
            s.h("a").push_hist("app.latency", ms, t, 10.0 * t as f64, &[t]);
            s.h("b").push_hist("app.latency", ms, 2 * t, 80.0 * t as f64, &[2 * t]);
        }
        let got = !s.eval(60).is_empty();
        assert_eq!(got, want, "{when}");
        if got {
            assert_eq!(s.log[0].instance, None, "{when}");
            assert_eq!(s.log[0].app, "shop");
        }
    }
}

#[test]
fn counter_reset_counts_from_zero() {
    let text = "[[rule]]\nname = \"r\"\nwhen = \"increase(gc.count, 1m) == 15\"\nthen = [\"flag\"]\n";
    let mut s = sim(text);
    s.add("a", "shop", true);
    for (t, v) in [(0u64, 0.0), (1, 5.0), (2, 10.0), (3, 2.0), (4, 5.0)] {
        s.h("a").push("gc.count", t * 1000, v);
    }
    // 5 + 5 + 2 (from 0 after the reset) + 3 + 0 = 15
    s.h("a").push("gc.count", 50_000, 5.0);
    assert_eq!(s.eval(50).len(), 1);
}

#[test]
fn state_is_bounded_by_the_world() {
    let mut s = sim(R);
    for i in 0..50 {
        let id = format!("i{i}");
        s.add(&id, "shop", true);
        s.h(&id).push("heap.used_ratio", 0, 0.95);
    }
    s.eval(0);
    assert_eq!(s.state.len(), 50);
    s.world.instances.truncate(10);
    s.eval(1);
    assert_eq!(s.state.len(), 10);
    s.cfg.rules.clear();
    s.eval(2);
    assert!(s.state.is_empty());
}

#[test]
fn decisions_serialize() {
    let mut s = sim(R);
    s.add("a", "shop", true);
    s.h("a").push("heap.used_ratio", 0, 0.95);
    let d = s.eval(0);
    let json = serde_json::to_value(&d[0]).unwrap();
    assert_eq!(json["actions"], serde_json::json!(["flag"]));
    assert_eq!(json["instance"], "a");
    assert_eq!(json["figures"][0]["expr"], "heap.used_ratio");
    assert_eq!(json["figures"][0]["window_ms"], serde_json::Value::Null);
    assert_eq!(Action::Hook("page".into()).name(), "hook:page");
    assert_eq!(String::from(Action::ScaleUp), "scale_up");
}

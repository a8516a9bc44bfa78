//! The rules file: the documented example parses; every bad input gets a one-line error naming
//! the file, the line and the key.

mod common;

use std::path::Path;
use std::time::Duration;

use jvmwatch_controller::{Action, Config, HookTarget, Scope};

#[test]
fn the_documented_example_parses() {
    let c = common::example();
    assert_eq!(c.controller.history, Duration::from_secs(900));
    assert_eq!(c.controller.max_points(), 902);
    assert_eq!(c.supervisor.on_failed.as_deref(), Some("page"));
    assert_eq!(c.hooks["page"].retries, 1);
    assert_eq!(c.hooks["ticket"].target, HookTarget::Url("http://127.0.0.1:9000/hook".into()));
    assert_eq!(c.hooks["ticket"].timeout, Duration::from_secs(10));
    let shop = c.app("shop").unwrap();
    assert_eq!((shop.min, shop.max, shop.initial, shop.port_base), (1, 4, 1, Some(8080)));
    assert_eq!(shop.env["K"], "v");
    let names: Vec<&str> = c.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["slow", "idle", "errors", "gc_thrash", "hung", "died", "outlier"]);
    let slow = &c.rules[0];
    assert_eq!(slow.scope, Scope::App);
    assert_eq!(slow.max_per, Some((2, Duration::from_secs(60))));
    assert_eq!(slow.then, [Action::ScaleUp]);
    assert_eq!(c.rules[1].hold, Duration::from_secs(600));
    assert_eq!(c.rules[5].then, [Action::Restart, Action::Hook("page".into())]);
    let series: Vec<String> = c.series().into_iter().collect();
    assert_eq!(
        series,
        ["app.errors", "app.latency", "app.requests", "gc.heap_after_ratio", "gc.time_s", "heartbeat.age_s"]
    );
}

#[test]
fn empty_and_default() {
    let c = Config::parse("", Path::new("e.toml")).unwrap();
    assert!(c.apps.is_empty() && c.rules.is_empty() && c.hooks.is_empty());
    assert_eq!(c.supervisor, Config::default().supervisor);
    assert_eq!(c.controller, Config::default().controller);
}

const HOOK: &str = "[hooks.page]\ncommand = [\"true\"]\n";
const APP: &str = "[[app]]\nname = \"shop\"\ncommand = [\"java\"]\nmin = 1\nmax = 4\n";

fn rule(extra: &str) -> String {
    format!("{HOOK}{APP}[[rule]]\nname = \"slow\"\n{extra}")
}

/// (what, file text, line, column or 0, key, message part)
#[test]
fn every_bad_input_names_file_line_and_key() {
    let cases: Vec<(&str, String, usize, usize, &str, &str)> = vec![
        (
            "unknown function",
            rule("when = \"avgg(app.latency, 5m) > 100\"\nthen = [\"flag\"]\n"),
            10,
            9,
            "when",
            "unknown function `avgg`, expected one of avg, min",
        ),
        (
            "unknown metric",
            rule("when = \"avg(heap.usd, 1m) > 1\"\nthen = [\"flag\"]\n"),
            10,
            13,
            "when",
            "unknown metric `heap.usd`, expected one of heap.used",
        ),
        (
            "window longer than history",
            format!(
                "[controller]\nhistory = \"10m\"\n{}",
                rule("when = \"avg(heap.used, 20m) > 1\"\nthen = [\"flag\"]\n")
            ),
            12,
            24,
            "when",
            "window 20m is longer than the history (10m)",
        ),
        (
            "syntax error in when",
            rule("when = \"heap.used > \"\nthen = [\"flag\"]\n"),
            10,
            21,
            "when",
            "expected a number, a series or a function",
        ),
        (
            "min > max",
            "[[app]]\nname = \"shop\"\ncommand = [\"java\"]\nmin = 5\nmax = 4\n".into(),
            4,
            7,
            "min",
            "min 5 is greater than max 4",
        ),
        ("initial out of range", format!("{APP}initial = 9\n"), 6, 11, "initial", "expected min <= initial <= max"),
        (
            "max_per zero",
            rule("when = \"alive\"\nthen = [\"flag\"]\nmax_per = \"0/1m\"\n"),
            12,
            11,
            "max_per",
            "a count of zero",
        ),
        (
            "max_per junk",
            rule("when = \"alive\"\nthen = [\"flag\"]\nmax_per = \"2\"\n"),
            12,
            11,
            "max_per",
            "N/DURATION",
        ),
        (
            "unknown hook in then",
            rule("when = \"alive\"\nthen = [\"flag\", \"hook:pager\"]\n"),
            11,
            17,
            "then",
            "unknown hook `pager`, expected one of page",
        ),
        (
            "unknown hook in supervisor",
            "[supervisor]\non_failed = \"page\"\n".into(),
            2,
            13,
            "on_failed",
            "unknown hook `page`",
        ),
        ("unknown action", rule("when = \"alive\"\nthen = [\"reboot\"]\n"), 11, 9, "then", "unknown action `reboot`"),
        (
            "scale in jvm scope",
            rule("when = \"alive\"\nthen = [\"scale_up\"]\n"),
            11,
            9,
            "then",
            "`scale_up` needs scope = \"app\"",
        ),
        ("unknown key", rule("whn = \"alive\"\nthen = [\"flag\"]\n"), 10, 1, "whn", "unknown field `whn`"),
        (
            "unknown key at top",
            "[controler]\nhistory = \"1m\"\n".into(),
            1,
            0,
            "controler",
            "unknown field `controler`",
        ),
        (
            "bad scope",
            rule("scope = \"ap\"\nwhen = \"alive\"\nthen = [\"flag\"]\n"),
            10,
            9,
            "scope",
            "unknown variant `ap`",
        ),
        (
            "bad duration",
            rule("when = \"alive\"\nthen = [\"flag\"]\ncooldown = \"5 parsecs\"\n"),
            12,
            12,
            "cooldown",
            "bad duration",
        ),
        ("history too long", "[controller]\nhistory = \"2h\"\n".into(), 2, 11, "history", "at most 1h"),
        (
            "duplicate rule",
            format!(
                "{}[[rule]]\nname = \"slow\"\nwhen = \"alive\"\nthen = [\"flag\"]\n",
                rule("when = \"alive\"\nthen = [\"flag\"]\n")
            ),
            13,
            8,
            "name",
            "duplicate rule name",
        ),
        ("duplicate app", format!("{APP}{APP}"), 7, 8, "name", "duplicate app name"),
        (
            "unknown app",
            rule("app = \"shoop\"\nwhen = \"alive\"\nthen = [\"flag\"]\n"),
            10,
            7,
            "app",
            "unknown app \"shoop\", expected one of shop",
        ),
        (
            "hook with both",
            "[hooks.x]\ncommand = [\"a\"]\nurl = \"http://h/\"\n".into(),
            2,
            11,
            "command",
            "exactly one",
        ),
        ("hook with neither", "[hooks.x]\ntimeout = \"1s\"\n".into(), 1, 1, "", "exactly one"),
        (
            "https hook (no TLS client)",
            "[hooks.x]\nurl = \"https://h/\"\n".into(),
            2,
            7,
            "url",
            "https is not supported",
        ),
        (
            "app name the sidecar refuses (part of file names and ids)",
            APP.replace("\"shop\"", "\"my-shop\""),
            2,
            8,
            "name",
            "bad app name \"my-shop\", expected letters, digits and `_` only",
        ),
        ("toml syntax", rule("when = \"alive\nthen = [\"flag\"]\n"), 10, 0, "when", ""),
        ("wrong type", APP.replace("max = 4", "max = \"4\""), 5, 7, "max", "invalid type"),
        (
            "rate on a gauge",
            rule("when = \"rate(heap.used, 1m) > 1\"\nthen = [\"flag\"]\n"),
            10,
            14,
            "when",
            "is a gauge",
        ),
        (
            "zscore in app scope",
            rule("scope = \"app\"\nwhen = \"zscore(heap.used) > 3\"\nthen = [\"flag\"]\n"),
            11,
            9,
            "when",
            "only in scope = \"jvm\"",
        ),
        (
            "bad verdict",
            rule("when = \"verdict(dead)\"\nthen = [\"flag\"]\n"),
            10,
            17,
            "when",
            "expected one of running, exited",
        ),
        ("no then", rule("when = \"alive\"\nthen = []\n"), 11, 8, "then", "no actions"),
        ("missing when", rule("then = [\"flag\"]\n"), 8, 0, "when", "missing field `when`"),
    ];
    for (what, text, line, col, key, msg) in cases {
        let e = match Config::parse(&text, Path::new("rules.toml")) {
            Ok(_) => panic!("{what}: parsed\n{text}"),
            Err(e) => e,
        };
        let s = e.to_string();
        assert!(!s.contains('\n'), "{what}: one line: {s}");
        assert!(s.starts_with(&format!("rules.toml:{line}:")), "{what}: {s}");
        if col > 0 {
            assert!(s.starts_with(&format!("rules.toml:{line}:{col}: ")), "{what}: {s}");
        }
        if !key.is_empty() {
            assert!(s.contains(&format!("key `{key}`")), "{what}: {s}");
        }
        assert!(s.contains(msg), "{what}: {s}");
        assert_eq!(e.line, line, "{what}");
    }
}

#[test]
fn errors_name_the_rule() {
    let e =
        Config::parse(&rule("when = \"avgg(app.latency, 5m) > 100\"\nthen = [\"flag\"]\n"), Path::new("rules.toml"))
            .unwrap_err()
            .to_string();
    assert!(e.starts_with("rules.toml:10:9: rule \"slow\": key `when`: unknown function `avgg`"), "{e}");
    let e =
        Config::parse(&rule("whn = \"alive\"\nthen = [\"flag\"]\n"), Path::new("rules.toml")).unwrap_err().to_string();
    assert!(e.contains("rule \"slow\": key `whn`"), "{e}");
}

#[test]
fn no_panic_on_junk() {
    for text in [
        "[",
        "[[rule]]",
        "rule = 5",
        "[[rule]]\nname = 1",
        "[hooks]\nx = 1",
        "\u{0}",
        "[[app]]\nname=\"a\"\ncommand=[]\nport_base = 65535\n",
    ] {
        let _ = Config::parse(text, Path::new("j.toml"));
    }
}

#[test]
fn tuning_is_off_by_default_and_checked() {
    let c = Config::parse("", Path::new("t.toml")).unwrap();
    assert_eq!(c.tuning, jvmwatch_controller::TuningCfg::default());
    assert!(!c.tuning.enabled);
    assert_eq!(c.tuning.cycle, Duration::from_secs(300));
    let text = format!(
        "{HOOK}[tuning]\nenabled = true\ncycle = \"2s\"\nmin_nice = -3\nmax_nice = 7\nbusy_percent = 80\nbusy_cycles = 2\non_needs_resources = \"page\"\n"
    );
    let t = Config::parse(&text, Path::new("t.toml")).unwrap().tuning;
    assert!(t.enabled);
    assert_eq!((t.cycle, t.min_nice, t.max_nice), (Duration::from_secs(2), -3, 7));
    assert_eq!((t.busy_percent, t.busy_cycles, t.on_needs_resources.as_deref()), (80, 2, Some("page")));
    for (bad, key) in [
        ("[tuning]\nmin_nice = -21\n", "min_nice"),
        ("[tuning]\nmax_nice = 20\n", "max_nice"),
        ("[tuning]\nmin_nice = 3\nmax_nice = 2\n", "min_nice"),
        ("[tuning]\ncycle = \"10ms\"\n", "cycle"),
        ("[tuning]\nbusy_percent = 0\n", "busy_percent"),
        ("[tuning]\nbusy_cycles = 0\n", "busy_cycles"),
        ("[tuning]\non_needs_resources = \"nope\"\n", "on_needs_resources"),
    ] {
        let e = Config::parse(bad, Path::new("t.toml")).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:") && e.contains("[tuning]") && e.contains(&format!("key `{key}`")), "{e}");
    }
}

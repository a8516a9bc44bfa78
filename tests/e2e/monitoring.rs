//! The monitoring files under deploy/: the Prometheus rules (`promtool check rules` and the
//! rules' unit tests, `promtool test rules`), the Grafana dashboard (valid dashboard JSON, every
//! PromQL expression parses, every metric it names is one a real `jvmwatch serve` exports) and
//! the OpenMetrics exposition of `/metrics` (checked by a strict checker here and by the
//! `prometheus_client` OpenMetrics parser), all against a live scrape of real JVMs.
//!
//! promtool comes from Debian's `prometheus`, the parser from PyPI's `prometheus_client`;
//! scripts/test.sh installs both and sets `JVMWATCH_REQUIRE_PROMTOOL=1` /
//! `JVMWATCH_REQUIRE_OPENMETRICS_PARSER=1`, so in CI a missing tool fails instead of skipping.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use jvmwatch_tests::http::{get, request};
use jvmwatch_tests::*;
use serde_json::Value;

/// Metric families the dashboard and rules may name although no scrape of the sidecar has
/// them, each with its reason.
const NOT_FROM_THE_SIDECAR: &[(&str, &str)] = &[(
    "up",
    "written by Prometheus itself for every scrape target (JvmwatchSidecarDown, the 'Sidecars scraped' panel)",
)];

/// What the dashboard's variables stand for in the live test: the Service scenario's
/// instruments (`requests`, `errors`, `latency`).
const VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("${requests}", "requests"),
    ("${errors}", "errors"),
    ("${timer}", "latency"),
    ("$requests", "requests"),
    ("$errors", "errors"),
    ("$timer", "latency"),
    ("$jvm", ".+"),
    ("$app", ".*"),
];

/// The alerts the rules must have (issue 15): JVM down/killed/crashed, the findings, heap
/// after GC, GC pause share, stale heartbeat, lost events, sidecar down.
const REQUIRED_ALERTS: &[&str] = &[
    "JvmwatchSidecarDown",
    "JvmDown",
    "JvmKilled",
    "JvmCrashed",
    "JvmOutOfMemory",
    "JvmDeadlock",
    "JvmHung",
    "JvmGcThrash",
    "JvmHeapLeak",
    "JvmHeapAfterGcHigh",
    "JvmGcPauseShareHigh",
    "JvmHeartbeatStale",
    "JvmwatchEventsLost",
];

fn deploy(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(sub)
}

/// True when promtool runs; without it the caller skips with a note, unless
/// `JVMWATCH_REQUIRE_PROMTOOL=1`.
fn have_promtool() -> bool {
    let have = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have {
        assert_ne!(std::env::var("JVMWATCH_REQUIRE_PROMTOOL").as_deref(), Ok("1"), "promtool missing");
        eprintln!("skipped: promtool not installed (scripts/test.sh installs Debian's prometheus)");
    }
    have
}

fn promtool(args: &[&str], cwd: &Path) -> Result<String, String> {
    let out = Command::new("promtool").args(args).current_dir(cwd).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// `alert:` names of a rules file.
fn alerts(rules: &str) -> Vec<String> {
    rules.lines().filter_map(|l| l.trim().strip_prefix("- alert:")).map(|a| a.trim().to_string()).collect()
}

/// `expr:` values of a rules file (one-line and `|` block forms).
fn rule_exprs(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(l) = lines.next() {
        let Some(e) = l.trim().strip_prefix("expr:") else { continue };
        let e = e.trim();
        if e == "|" {
            let mut block = String::new();
            while let Some(n) = lines.peek() {
                if n.trim().is_empty() || n.starts_with(&" ".repeat(l.len() - l.trim_start().len() + 2)) {
                    block.push_str(n.trim());
                    block.push(' ');
                    lines.next();
                } else {
                    break;
                }
            }
            out.push(block.trim().to_string());
        } else {
            out.push(e.to_string());
        }
    }
    out
}

#[test]
fn prometheus_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy("prometheus");
    let rules = std::fs::read_to_string(dir.join("jvmwatch-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("jvmwatch-rules.test.yml")).unwrap();
    let names = alerts(&rules);
    for a in REQUIRED_ALERTS {
        assert!(names.iter().any(|n| n == a), "alert {a} missing from jvmwatch-rules.yml: {names:?}");
    }
    // Every alert is tested firing (exp_alerts with an entry) and quiet (exp_alerts: []).
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for a in &names {
        let evals: Vec<&str> = lines
            .windows(2)
            .filter(|w| w[0] == format!("alertname: {a}"))
            .map(|w| w[1].strip_prefix("exp_alerts:").unwrap_or("?").trim())
            .collect();
        assert!(evals.contains(&""), "no test where {a} fires");
        assert!(evals.contains(&"[]"), "no test where {a} stays quiet");
    }
    if !have_promtool() {
        return;
    }
    let check = promtool(&["check", "rules", "jvmwatch-rules.yml"], &dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(check.contains("SUCCESS"), "{check}");
    let test = promtool(&["test", "rules", "jvmwatch-rules.test.yml"], &dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(test.contains("SUCCESS"), "{test}");
}

/// Metric names an expression selects: identifiers outside label matchers, ranges and strings
/// that are not functions, aggregations, keywords or grouping labels.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    // Blank out strings, {label matchers} and [ranges].
    let mut plain = String::with_capacity(expr.len());
    let mut depth = 0usize;
    let mut quote = None;
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth -= 1,
            (None, c) if depth == 0 => plain.push(c),
            _ => {}
        }
        if quote.is_some() || depth > 0 {
            plain.push(' ');
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number (with exponent or suffix letters): skip it whole.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        // A function call, or an aggregation with its grouping first: `sum by (a) (...)`.
        let next: String = chars[j..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect();
        let call = chars.get(j) == Some(&'(') || next == "by" || next == "without";
        if GROUPING.contains(&word.as_str()) {
            if call {
                // Skip the label list.
                while j < chars.len() && chars[j] != ')' {
                    j += 1;
                }
                i = j + 1;
            }
        } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
            out.insert(word);
        }
    }
    out
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"sum by (jvm, app) (rate(a_total{x="y{z}"}[5m])) / on (jvm) group_left (verdict) b == 1 and c offset 1m > 0.9e3 unless max_over_time(d[10m:1m])"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a_total", "b", "c", "d"]);
}

/// Every `expr` of the dashboard's panels, as written.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        let nested = p["panels"].as_array().cloned().unwrap_or_default();
        for p in std::iter::once(p).chain(nested.iter()) {
            for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                out.push(t["expr"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    out
}

fn substitute(expr: &str) -> String {
    let mut e = expr.to_string();
    for (var, value) in VARIABLES {
        e = e.replace(var, value);
    }
    assert!(!e.contains('$'), "unknown Grafana variable in {expr:?}");
    e
}

#[test]
fn grafana_dashboard_is_valid_and_its_promql_parses() {
    let text = std::fs::read_to_string(deploy("grafana/jvmwatch.json")).unwrap();
    let d: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "title");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40), "uid");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30), "schemaVersion");
    assert!(d.get("id").is_none_or(Value::is_null), "an importable dashboard has no id");
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars.iter().find(|v| v["type"] == "datasource").expect("a datasource variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"]["uid"], ds_ref.as_str(), "variable {}", v["name"]);
        let q = v["query"]["query"].as_str().or(v["query"].as_str()).expect("variable query");
        assert!(q.starts_with("label_values(") || q.starts_with("metrics("), "variable {}: {q}", v["name"]);
    }
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut graphs = 0;
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "panel id twice: {}", p["id"]);
        let g = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(g[k].is_u64(), "panel {} gridPos.{k}", p["title"]);
        }
        assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24, "panel {} wider than the grid", p["title"]);
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "panel title");
        if p["type"] == "row" {
            continue;
        }
        graphs += 1;
        assert!(
            ["timeseries", "stat", "table", "gauge", "bargauge"].contains(&p["type"].as_str().unwrap_or("")),
            "panel {} type {}",
            p["title"],
            p["type"]
        );
        assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "panel {}", p["title"]);
        let targets = p["targets"].as_array().filter(|t| !t.is_empty()).expect("targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().expect("refId")), "refId twice in {}", p["title"]);
            assert!(t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "expr in {}", p["title"]);
            assert_eq!(t["datasource"]["uid"], ds_ref.as_str(), "target datasource in {}", p["title"]);
        }
    }
    assert!(graphs >= 20, "{graphs} panels");
    // What the dashboard must show (issue 15).
    let all = dashboard_exprs(&d).join("\n");
    for needle in [
        "jvm_verdict",
        "jvm_memory_used_bytes",
        "jvm_gc_pause_seconds_sum",
        "jvm_threads_states",
        "process_cpu_seconds_total",
        "app_${requests}_total",
        "app_${errors}_total",
        "app_${timer}_seconds{",
        "quantile",
        "jvm_finding",
        "jvmwatch_rule_active",
        "jvmwatch_scale_recommendation",
        "jvmwatch_decisions_total",
    ] {
        assert!(all.contains(needle), "the dashboard has no {needle}");
    }
    if !have_promtool() {
        return;
    }
    // Every expression parses: as recording rules of a temporary rules file.
    let dir = tempdir();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in dashboard_exprs(&d).iter().enumerate() {
        rules.push_str(&format!("      - record: dashboard:expr_{i}\n        expr: {}\n", Value::from(substitute(e))));
    }
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    promtool(&["check", "rules", "dashboard.yml"], dir.path()).unwrap_or_else(|e| panic!("{e}"));
}

/// Sample names of a text exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Checks the OpenMetrics rules `/metrics` implements: `# EOF` last (and only there), one
/// `# HELP`/`# TYPE` per family before its samples, counter families named without `_total`
/// with `_total` samples, summary samples (`quantile`, `_sum`, `_count`), gauge samples named as
/// their family, each family's samples together, no sample name twice across families.
fn check_openmetrics(text: &str) -> Result<usize, String> {
    let body = text.strip_suffix("# EOF\n").ok_or("does not end with \"# EOF\\n\"")?;
    let mut families: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    let mut help_for: Option<String> = None;
    let mut owner: std::collections::HashMap<String, String> = Default::default();
    for line in body.lines() {
        if line == "# EOF" {
            return Err("# EOF before the end".into());
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            if families.contains(&name) {
                return Err(format!("HELP for {name} after its TYPE: {line}"));
            }
            let h = rest.split_once(' ').map_or("", |x| x.1);
            let mut chars = h.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if !matches!(chars.next(), Some('\\' | 'n' | '"')) => {
                        return Err(format!("bad escape: {line}"))
                    }
                    '"' => return Err(format!("unescaped quote in HELP: {line}")),
                    _ => {}
                }
            }
            help_for = Some(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {line}"))?;
            if !["counter", "gauge", "summary", "histogram", "unknown", "info", "stateset", "gaugehistogram"]
                .contains(&kind)
            {
                return Err(format!("bad type: {line}"));
            }
            if !families.insert(name.to_string()) {
                return Err(format!("family {name} twice"));
            }
            if help_for.as_deref().is_some_and(|h| h != name) {
                return Err(format!("HELP of another family before {line}"));
            }
            if kind == "counter" && name.ends_with("_total") {
                return Err(format!("counter family named with _total: {line}"));
            }
            help_for = None;
            current = Some((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(format!("stray line: {line:?}"));
        }
        let (fam, kind) = current.as_ref().ok_or(format!("sample before any TYPE: {line}"))?;
        let name = line.split(['{', ' ']).next().unwrap();
        let ok = match kind.as_str() {
            "counter" => name == format!("{fam}_total") || name == format!("{fam}_created"),
            "summary" => {
                (name == fam && line.contains("quantile=\""))
                    || [format!("{fam}_sum"), format!("{fam}_count"), format!("{fam}_created")]
                        .iter()
                        .any(|n| n == name)
            }
            _ => name == fam,
        };
        if !ok {
            return Err(format!("sample {name} does not belong to {kind} family {fam}"));
        }
        if let Some(prev) = owner.insert(name.to_string(), fam.clone()) {
            if &prev != fam {
                return Err(format!("sample name {name} in families {prev} and {fam}"));
            }
        }
        let value = line.rsplit(' ').next().unwrap();
        if value.parse::<f64>().is_err() || value.contains("inf") {
            return Err(format!("bad value: {line}"));
        }
    }
    Ok(families.len())
}

#[test]
fn openmetrics_checker_rejects_what_it_should() {
    let good = "# HELP a Things \\\"x\\\".\n# TYPE a counter\na_total{j=\"1\"} 3\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n# EOF\n";
    assert_eq!(check_openmetrics(good), Ok(2));
    for bad in [
        "# TYPE a counter\na_total 1\n",
        "# TYPE a_total counter\na_total 1\n# EOF\n",
        "# TYPE a counter\na 1\n# EOF\n",
        "# TYPE a gauge\na 1\n# TYPE a gauge\na 2\n# EOF\n",
        "# HELP a say \"hi\"\n# TYPE a gauge\na 1\n# EOF\n",
        "a 1\n# EOF\n",
        "# TYPE s summary\ns 1\n# EOF\n",
    ] {
        assert!(check_openmetrics(bad).is_err(), "accepted: {bad:?}");
    }
}

/// Parses OpenMetrics text with `prometheus_client` (PyPI), a strict third-party parser; `None`
/// when it is not installed (and not required).
fn prometheus_client_parse(text: &str) -> Option<Result<String, String>> {
    use std::io::Write;
    const PY: &str =
        "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                      fams = list(p(sys.stdin.read()))\nprint(len(fams), sum(len(f.samples) for f in fams))\n";
    let have = Command::new("python3")
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert_ne!(
            std::env::var("JVMWATCH_REQUIRE_OPENMETRICS_PARSER").as_deref(),
            Ok("1"),
            "prometheus_client missing"
        );
        eprintln!("skipped: prometheus_client not installed (scripts/test.sh installs it with pip)");
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Some(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    })
}

/// A real `jvmwatch serve --rules` following real JVMs: the Service scenario as app `shop`
/// (app requests, errors and latency), a deadlocked JVM (a finding) and a JVM that collected
/// and exited (heap after GC, a dead JVM's verdict). Its scrape must hold every metric the
/// dashboard and the rules name, in both exposition formats, and both must validate.
#[test]
fn dashboard_and_rules_name_only_exported_metrics_and_openmetrics_validates() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let work = tempdir();
    let cfg = work.path().join("rules.toml");
    std::fs::write(
        &cfg,
        "[controller]\nsample_every = \"200ms\"\n\n[[rule]]\nname = \"seen\"\nwhen = \"alive\"\nthen = [\"flag\"]\n",
    )
    .unwrap();
    let svc = Service::start(
        dir.path(),
        &["--rules", cfg.to_str().unwrap(), "--state-dir", work.path().join("state").to_str().unwrap()],
    );
    let opts = format!("dir={}", dir.path().display());
    let control = work.path().join("control");
    let mut service = spawn(java_cmd(
        jdk,
        &opts,
        &["-Xmx64m", "-Djvmwatch.app=shop"],
        "Service",
        &[control.to_str().unwrap()],
        work.path(),
    ));
    let mut deadlock = spawn(java_cmd(jdk, &opts, &["-Xmx64m"], "Deadlock", &[], work.path()));
    let churn = run(java_cmd(jdk, &opts, &["-Xmx64m"], "GcChurn", &["300"], work.path()));
    assert!(churn.status.success(), "GcChurn: {}", String::from_utf8_lossy(&churn.stderr));

    let d: Value = serde_json::from_str(&std::fs::read_to_string(deploy("grafana/jvmwatch.json")).unwrap()).unwrap();
    let rules = std::fs::read_to_string(deploy("prometheus/jvmwatch-rules.yml")).unwrap();
    let mut wanted: BTreeSet<(String, &str)> = BTreeSet::new();
    for e in dashboard_exprs(&d) {
        wanted.extend(metric_names(&substitute(&e)).into_iter().map(|n| (n, "dashboard")));
    }
    for e in rule_exprs(&rules) {
        // Recording rules' own series (level:metric:operation) come from the rules file.
        wanted.extend(metric_names(&e).into_iter().filter(|n| !n.contains(':')).map(|n| (n, "rules")));
    }
    assert!(wanted.len() > 25, "{wanted:?}");
    let allowed: BTreeSet<&str> = NOT_FROM_THE_SIDECAR.iter().map(|(n, _)| *n).collect();

    // Poll until every wanted series has a sample (GC, the deadlock finding and a decision
    // take a moment), then judge on that scrape.
    let missing = |text: &str| -> Vec<(String, &str)> {
        let have = sample_names(text);
        wanted.iter().filter(|(n, _)| !have.contains(n) && !allowed.contains(n.as_str())).cloned().collect()
    };
    let text = wait_for(Duration::from_secs(60), || {
        let t = get(svc.addr, "/metrics").text();
        missing(&t).is_empty().then_some(t)
    })
    .unwrap_or_else(|| {
        let t = get(svc.addr, "/metrics").text();
        panic!("names the sidecar does not export: {:?}\n{t}", missing(&t))
    });
    for (n, why) in NOT_FROM_THE_SIDECAR {
        assert!(!sample_names(&text).contains(*n), "{n} is exported after all; drop it from the allowlist ({why})");
    }

    // The default format, promtool's verdict on it.
    let plain = get(svc.addr, "/metrics");
    assert_eq!(plain.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    if let Some(r) = promtool_check(&plain.text()) {
        r.expect("promtool check metrics");
    }
    // OpenMetrics, as Prometheus asks for it.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                  text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let om = request(svc.addr, "GET", "/metrics", &[("Accept", accept)]);
    assert_eq!(om.status, 200);
    assert_eq!(om.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let om = om.text();
    let families = check_openmetrics(&om).unwrap_or_else(|e| panic!("{e}\n{om}"));
    assert!(om.contains("# TYPE jvm_gc_collections counter\n"), "{om}");
    assert!(om.contains("# TYPE jvmwatch_decisions counter\n"), "{om}");
    assert!(om.contains("# TYPE app_requests counter\n") && om.contains("app_requests_total{"), "{om}");
    assert!(om.contains("app_latency_seconds_count{"), "{om}");
    // The same series in both formats.
    assert_eq!(sample_names(&om), sample_names(&plain.text()));
    if let Some(r) = prometheus_client_parse(&om) {
        let counts = r.unwrap_or_else(|e| panic!("prometheus_client rejects the OpenMetrics text: {e}\n{om}"));
        assert!(counts.starts_with(&format!("{families} ")), "parser saw {counts}, the checker {families} families");
    }
    // Asking for text, or for nothing in particular, still gives 0.0.4.
    for accept in ["text/plain", "*/*", "application/json"] {
        let r = request(svc.addr, "GET", "/metrics", &[("Accept", accept)]);
        assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"), "Accept: {accept}");
    }
    std::fs::write(&control, "exit 0").unwrap();
    let _ = wait_for(Duration::from_secs(20), || service.try_wait().ok().flatten());
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(deadlock.id() as i32, libc::SIGKILL) };
    let _ = deadlock.wait();
}

//! Prometheus text exposition (format 0.0.4) of every followed JVM.
//!
//! Names follow the Prometheus conventions and the names JVM exporters use
//! (`jvm_memory_used_bytes{area,pool}`, `jvm_gc_pause_seconds`, `jvm_threads_states`, ...);
//! every series carries a `jvm` label with the JVM's id. `docs/http-api.md` lists them.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;

use jvmwatch_ring::{THREAD_STATES, UNKNOWN};

use jvmwatch_ring::metrics::{quantile, Instrument, Kind};

use super::registry::Jvm;
use crate::appmetrics::split_name;

/// Escapes a label value (backslash, double quote, newline); any other control character
/// (which a ring written by someone else may hold) becomes a space.
pub fn esc(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Escapes `# HELP` text as the format wants (backslash, newline); other control characters
/// become spaces, so a name can never end the line and inject samples.
fn esc_help(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

struct Family {
    name: String,
    kind: &'static str,
    help: String,
    lines: String,
    /// Made from application instruments (the built-in families are never shared with them).
    app: bool,
    /// Series already written (suffix and sorted labels): a series is never written twice.
    series: HashSet<String>,
}

/// The sample names a family owns: a summary also owns `_sum` and `_count`.
fn owned(name: &str, kind: &str) -> Vec<String> {
    if kind == "summary" {
        vec![name.to_string(), format!("{name}_sum"), format!("{name}_count")]
    } else {
        vec![name.to_string()]
    }
}

struct Out {
    families: Vec<Family>,
}

impl Out {
    fn family(&mut self, name: &str, kind: &'static str, help: &str) -> usize {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            return i;
        }
        self.push(name, kind, help, false)
    }

    fn push(&mut self, name: &str, kind: &'static str, help: &str, app: bool) -> usize {
        let help = esc_help(help);
        self.families.push(Family {
            name: name.to_string(),
            kind,
            help,
            lines: String::new(),
            app,
            series: HashSet::new(),
        });
        self.families.len() - 1
    }

    /// The family for an application instrument, or `None` when its name is taken: by a
    /// built-in family, by an application family of another type, or by another family's
    /// samples (a gauge `x.seconds.count` beside a timer `x`). The first instrument (JVMs in
    /// id order, instruments in registration order) keeps the name; the others are left out.
    fn app_family(&mut self, name: &str, kind: &'static str, help: &str) -> Option<usize> {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            let f = &self.families[i];
            return (f.app && f.kind == kind).then_some(i);
        }
        let mine = owned(name, kind);
        if self.families.iter().any(|f| owned(&f.name, f.kind).iter().any(|n| mine.contains(n))) {
            return None;
        }
        Some(self.push(name, kind, help, true))
    }

    /// Adds one sample; `suffix` is appended to the family name (`_sum`, `_count`). A series
    /// (suffix and label set) already written is skipped.
    fn sample(&mut self, fam: usize, suffix: &str, labels: &[(&str, &str)], value: f64) {
        let f = &mut self.families[fam];
        let mut key: Vec<(&str, &str)> = labels.to_vec();
        key.sort_unstable();
        let mut series = String::from(suffix);
        for (k, v) in key {
            let _ = write!(series, "\u{0}{k}\u{0}{v}");
        }
        if !f.series.insert(series) {
            return;
        }
        f.lines.push_str(&f.name);
        f.lines.push_str(suffix);
        if !labels.is_empty() {
            f.lines.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    f.lines.push(',');
                }
                let _ = write!(f.lines, "{k}=\"{}\"", esc(v));
            }
            f.lines.push('}');
        }
        let _ = writeln!(f.lines, " {value}");
    }

    fn render(self) -> String {
        let mut o = String::new();
        for f in self.families {
            let _ = writeln!(o, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(o, "# TYPE {} {}", f.name, f.kind);
            o.push_str(&f.lines);
        }
        o
    }
}

/// Renders all JVMs.
pub fn render(jvms: &BTreeMap<Arc<str>, Jvm>) -> String {
    let mut o = Out { families: Vec::new() };
    let up = o.family("jvm_up", "gauge", "1 while the JVM process holds its ring (alive), else 0.");
    let info = o.family("jvm_info", "gauge", "JVM identity; always 1.");
    let verdict = o.family("jvmwatch_jvms", "gauge", "Followed JVMs by verdict.");
    let jvm_verdict = o.family("jvm_verdict", "gauge", "1 on the JVM's verdict: running, exited, killed or crashed.");
    let finding = o.family(
        "jvm_finding",
        "gauge",
        "1 for each current finding (oom, deadlock, gc_thrash, heap_exhausted, heap_leak, thread_leak, hung).",
    );
    let mem_used = o.family("jvm_memory_used_bytes", "gauge", "Used bytes of a memory pool.");
    let mem_comm = o.family("jvm_memory_committed_bytes", "gauge", "Committed bytes of a memory pool.");
    let mem_max = o.family("jvm_memory_max_bytes", "gauge", "Maximum bytes of a memory pool (absent when unbounded).");
    let heap_after = o.family("jvm_memory_used_after_gc_bytes", "gauge", "Heap bytes in use after the last GC.");
    let pause =
        o.family("jvm_gc_pause_seconds", "summary", "Stop-the-world GC pauses seen by the agent's JVMTI callbacks.");
    let pause_max = o.family("jvm_gc_pause_max_seconds", "gauge", "Longest stop-the-world GC pause.");
    let gc_count = o.family("jvm_gc_collections_total", "counter", "Collections per GC bean.");
    let gc_time = o.family(
        "jvm_gc_collection_seconds_total",
        "counter",
        "Collection time per GC bean (for ZGC/Shenandoah cycle beans: concurrent time).",
    );
    let states = o.family("jvm_threads_states", "gauge", "Java threads by state.");
    let live = o.family("jvm_threads_live", "gauge", "Live Java threads.");
    let daemon = o.family("jvm_threads_daemon", "gauge", "Live daemon threads.");
    let cpu = o.family("process_cpu_seconds_total", "counter", "CPU time of the JVM process.");
    let classes = o.family("jvm_classes_loaded", "gauge", "Classes currently loaded.");
    let events = o.family("jvmwatch_events_total", "counter", "Events written to the ring.");
    let lost =
        o.family("jvmwatch_events_lost_total", "counter", "Events the service could not read (overwritten or torn).");
    let beat = o.family("jvmwatch_heartbeat_age_seconds", "gauge", "Age of the agent's last heartbeat.");

    let mut by_verdict: BTreeMap<&str, u64> = BTreeMap::new();
    let now = jvmwatch_ring::now_ns();
    for j in jvms.values() {
        let id: &str = &j.id;
        let l = [("jvm", id)];
        *by_verdict.entry(j.verdict.as_str()).or_default() += 1;
        o.sample(up, "", &l, if j.alive { 1.0 } else { 0.0 });
        o.sample(jvm_verdict, "", &[("jvm", id), ("verdict", j.verdict.as_str())], 1.0);
        let pid = j.header.pid.to_string();
        o.sample(
            info,
            "",
            &[
                ("jvm", id),
                ("pid", &pid),
                ("version", &j.header.jvm_version),
                ("vendor", &j.header.jvm_vendor),
                ("collector", j.live.collector.name()),
                ("app", &j.live.app_name),
            ],
            1.0,
        );
        for f in &j.findings {
            o.sample(finding, "", &[("jvm", id), ("finding", f)], 1.0);
        }
        if let Some(s) = &j.snapshot {
            for p in s.pools() {
                let name = p.name.as_str();
                let area = if p.heap { "heap" } else { "nonheap" };
                let pl = [("jvm", id), ("area", area), ("pool", &*name)];
                if p.used != UNKNOWN {
                    o.sample(mem_used, "", &pl, p.used as f64);
                }
                if p.committed != UNKNOWN {
                    o.sample(mem_comm, "", &pl, p.committed as f64);
                }
                if p.max != UNKNOWN {
                    o.sample(mem_max, "", &pl, p.max as f64);
                }
            }
            if let Some(after) = s.heap_used_after_gc() {
                o.sample(heap_after, "", &[("jvm", id), ("area", "heap")], after as f64);
            }
            for c in s.collectors() {
                let name = c.name.as_str();
                o.sample(gc_count, "", &[("jvm", id), ("gc", &name)], c.count as f64);
                o.sample(gc_time, "", &[("jvm", id), ("gc", &name)], c.time_ms as f64 / 1e3);
            }
            for (st, n) in THREAD_STATES.iter().zip(s.thread_states) {
                o.sample(states, "", &[("jvm", id), ("state", st)], n as f64);
            }
            o.sample(live, "", &l, s.threads_live as f64);
            if s.threads_daemon != u32::MAX {
                o.sample(daemon, "", &l, s.threads_daemon as f64);
            }
            o.sample(cpu, "", &l, s.cpu_time_ns as f64 / 1e9);
            if s.loaded_classes != UNKNOWN {
                o.sample(classes, "", &l, s.loaded_classes as f64);
            }
        }
        o.sample(pause, "_sum", &l, j.live.gc_pause_total_ns as f64 / 1e9);
        o.sample(pause, "_count", &l, j.live.gc_pauses as f64);
        o.sample(pause_max, "", &l, j.live.gc_pause_max_ns as f64 / 1e9);
        o.sample(events, "", &l, j.live.cursor as f64);
        o.sample(lost, "", &l, j.lost as f64);
        if j.live.heartbeat_ns != 0 {
            o.sample(beat, "", &l, now.saturating_sub(j.live.heartbeat_ns) as f64 / 1e9);
        }
        app_metrics(&mut o, id, j.instruments());
    }
    for v in ["running", "exited", "killed", "crashed"] {
        o.sample(verdict, "", &[("verdict", v)], by_verdict.get(v).copied().unwrap_or(0) as f64);
    }
    o.render()
}

/// A Prometheus metric name for an instrument name: `http.requests` → `app_http_requests`;
/// names the agent itself registers (`jvm.…`) keep their own prefix. Every character but
/// ASCII letters, digits and `_` becomes `_`, so control characters never reach the output.
fn prom_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    if !name.starts_with("jvm.") {
        out.push_str("app_");
    }
    for c in name.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' });
    }
    out
}

/// The label a tag key becomes: other characters than ASCII letters, digits and `_` become
/// `_`; a key that would be invalid (empty, leading digit, leading `__`) or is one of the
/// service's own labels (`jvm`, `quantile`, `le`) gets a `tag_` prefix. The Java API
/// (`Jvmwatch.label`) applies the same rule to refuse tags that would collide.
fn label_name(k: &str) -> String {
    let mut s: String = k.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty()
        || s.starts_with(|c: char| c.is_ascii_digit())
        || s.starts_with("__")
        || ["jvm", "quantile", "le"].contains(&s.as_str())
    {
        s.insert_str(0, "tag_");
    }
    s
}

/// Label names for the tags of one instrument: [`label_name`], and a name already taken (by
/// `jvm` or an earlier tag: `a.b` and `a_b`, a key given twice) gets `_2`, `_3`, ... — in
/// tag order, so the result is the same on every scrape.
fn label_names(tags: &[(&str, &str)]) -> Vec<String> {
    let mut used: Vec<String> = vec!["jvm".into(), "quantile".into()];
    let mut out = Vec::with_capacity(tags.len());
    for (k, _) in tags {
        let base = label_name(k);
        let mut l = base.clone();
        let mut n = 2;
        while used.contains(&l) {
            l = format!("{base}_{n}");
            n += 1;
        }
        used.push(l.clone());
        out.push(l);
    }
    out
}

fn app_metrics(o: &mut Out, jvm: &str, instruments: &[Instrument]) {
    for i in instruments {
        let (name, tags) = split_name(&i.name);
        let base = prom_name(name);
        let keys = label_names(&tags);
        let mut labels: Vec<(&str, &str)> = vec![("jvm", jvm)];
        labels.extend(keys.iter().map(String::as_str).zip(tags.iter().map(|(_, v)| *v)));
        match i.kind {
            Kind::Counter => {
                let help = format!("Application counter {name}.");
                if let Some(f) = o.app_family(&format!("{base}_total"), "counter", &help) {
                    o.sample(f, "", &labels, i.value as f64);
                }
            }
            Kind::Gauge => {
                if let Some(f) = o.app_family(&base, "gauge", &format!("Gauge {name}.")) {
                    o.sample(f, "", &labels, i.gauge() as f64);
                }
            }
            Kind::Timer => {
                let help = format!("Application timer {name} (lifetime quantiles from log-linear buckets).");
                let Some(f) = o.app_family(&format!("{base}_seconds"), "summary", &help) else { continue };
                for q in [0.5, 0.95, 0.99] {
                    if let Some(v) = quantile(&i.buckets, q, i.max) {
                        let qs = q.to_string();
                        let mut l = labels.clone();
                        l.push(("quantile", &qs));
                        o.sample(f, "", &l, v as f64 / 1e9);
                    }
                }
                o.sample(f, "_sum", &labels, i.sum as f64 / 1e9);
                o.sample(f, "_count", &labels, i.value as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(esc("x\ny"), "x\\ny");
        assert_eq!(esc("x\ry\u{0}"), "x y ");
        assert_eq!(esc_help("a\\b\nc\r"), "a\\\\b\\nc ");
    }

    #[test]
    fn instrument_names_become_prometheus_names() {
        assert_eq!(prom_name("http.requests"), "app_http_requests");
        assert_eq!(prom_name("jvm.buffer.used_bytes"), "jvm_buffer_used_bytes");
        assert_eq!(label_name("route"), "route");
        assert_eq!(label_name("jvm"), "tag_jvm");
        assert_eq!(label_name("1x"), "tag_1x");
        assert_eq!(label_name("le"), "tag_le");
        assert_eq!(
            label_names(&[("a.b", "1"), ("a_b", "2"), ("tag_jvm", "3"), ("jvm", "4"), ("a.b", "5")]),
            ["a_b", "a_b_2", "tag_jvm", "tag_jvm_2", "a_b_3"]
        );
    }

    fn ins(kind: Kind, name: &str) -> Instrument {
        Instrument { index: 0, kind, name: name.into(), value: 1, sum: 1000, max: 1000, buckets: vec![1] }
    }

    /// Label names of one sample line, in order.
    fn line_labels(line: &str) -> Vec<String> {
        let Some((_, rest)) = line.split_once('{') else { return vec![] };
        let mut names = Vec::new();
        let mut chars = rest.chars();
        loop {
            let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if name.is_empty() || name.starts_with('}') {
                break;
            }
            names.push(name.trim_start_matches(',').to_string());
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut esc = false;
            for c in chars.by_ref() {
                match (esc, c) {
                    (false, '\\') => esc = true,
                    (false, '"') => break,
                    _ => esc = false,
                }
            }
        }
        names
    }

    /// Whatever the ring holds (it may come from any writer), the text stays valid: no raw
    /// newline or control character in a name or HELP, no duplicate label, no sample twice,
    /// no family that shadows a built-in one or another family's `_sum`/`_count`.
    #[test]
    fn hostile_instruments_render_valid_text() {
        let mut o = Out { families: Vec::new() };
        o.family("jvm_up", "gauge", "built in");
        let hostile = [
            ins(Kind::Counter, "evil\n# HELP app_x x\napp_x{jvm=\"j\"} 1\n"),
            ins(Kind::Counter, "cr\rname\u{1}"),
            ins(Kind::Counter, "help\\back"),
            ins(Kind::Counter, "x.y"),
            ins(Kind::Counter, "x_y"),
            ins(Kind::Counter, "l{a.b=1,a_b=2,a-b=3,a_b_2=4}"),
            ins(Kind::Counter, "dupkeys{k=1,k=2}"),
            ins(Kind::Counter, "o{b=1,a=2}"),
            ins(Kind::Counter, "o{a=2,b=1}"),
            ins(Kind::Timer, "t{jvm=1,quantile=2,le=3,tag_jvm=4}"),
            ins(Kind::Gauge, "jvm.up"),
            ins(Kind::Timer, "lat"),
            ins(Kind::Gauge, "lat.seconds.count"),
            ins(Kind::Gauge, "lat.seconds"),
            ins(Kind::Counter, "lat.seconds"),
            ins(Kind::Gauge, "9x{1k=v,__x=y,=e,v=\"q\\\"\n}"),
            ins(Kind::Gauge, "emoji.\u{1F600}"),
            ins(Kind::Gauge, "emoji.\u{1F603}"),
        ];
        app_metrics(&mut o, "j", &hostile);
        let text = o.render();
        let mut families = Vec::new();
        let mut series = std::collections::HashSet::new();
        for line in text.lines() {
            assert!(!line.chars().any(|c| c.is_control()), "control character in {line:?}");
            if let Some(rest) = line.strip_prefix("# HELP ") {
                families.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && !name.starts_with(|c: char| c.is_ascii_digit()),
                "bad metric name in {line:?}"
            );
            let fam = families.last().expect("sample before any HELP");
            assert!(
                name == fam || name.strip_prefix(fam.as_str()).is_some_and(|s| s == "_sum" || s == "_count"),
                "{line:?} under {fam}"
            );
            let mut labels = line_labels(line);
            for l in &labels {
                assert!(
                    l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !l.starts_with(|c: char| c.is_ascii_digit())
                        && !l.starts_with("__"),
                    "bad label {l:?} in {line:?}"
                );
            }
            let n = labels.len();
            labels.sort();
            labels.dedup();
            assert_eq!(labels.len(), n, "duplicate label in {line:?}");
            let key = line.rsplit_once(' ').unwrap().0;
            assert!(series.insert(key.to_string()), "series twice: {line:?}");
        }
        let mut sorted = families.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), families.len(), "family announced twice: {families:?}");
        assert_eq!(text.lines().filter(|l| l.starts_with("jvm_up")).count(), 0, "app gauge jvm.up in jvm_up");
        assert!(!text.lines().any(|l| l.starts_with("app_lat_seconds_count{") && !l.contains("jvm=\"j\"}")));
        assert!(
            text.contains(
                "app_t_seconds_count{jvm=\"j\",tag_jvm=\"1\",tag_quantile=\"2\",tag_le=\"3\",tag_jvm_2=\"4\"}"
            ),
            "{text}"
        );
        assert!(text.contains("app_l_total{jvm=\"j\",a_b=\"1\",a_b_2=\"2\",a_b_3=\"3\",a_b_2_2=\"4\"}"), "{text}");
        // promtool agrees, where it is installed.
        if let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn empty_registry_still_has_help_and_type() {
        let text = render(&BTreeMap::new());
        assert!(text.contains("# TYPE jvmwatch_jvms gauge"));
        assert!(text.contains("jvmwatch_jvms{verdict=\"running\"} 0"));
    }
}

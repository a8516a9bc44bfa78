//! Prometheus text exposition (format 0.0.4) of every followed JVM.
//!
//! Names follow the Prometheus conventions and the names JVM exporters use
//! (`jvm_memory_used_bytes{area,pool}`, `jvm_gc_pause_seconds`, `jvm_threads_states`, ...);
//! every series carries a `jvm` label with the JVM's id. `docs/http-api.md` lists them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use jvmwatch_ring::{THREAD_STATES, UNKNOWN};

use jvmwatch_ring::metrics::{quantile, Instrument, Kind};

use super::registry::Jvm;
use crate::appmetrics::split_name;

/// Escapes a label value (backslash, double quote, newline).
pub fn esc(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
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
}

struct Out {
    families: Vec<Family>,
}

impl Out {
    fn family(&mut self, name: &str, kind: &'static str, help: &str) -> usize {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            return i;
        }
        self.families.push(Family { name: name.to_string(), kind, help: help.to_string(), lines: String::new() });
        self.families.len() - 1
    }

    /// Adds one sample; `suffix` is appended to the family name (`_sum`, `_count`).
    fn sample(&mut self, fam: usize, suffix: &str, labels: &[(&str, &str)], value: f64) {
        let f = &mut self.families[fam];
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
    let finding =
        o.family("jvm_finding", "gauge", "1 for each current finding (oom, gc_thrash, heap_exhausted, hung).");
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
/// names the agent itself registers (`jvm.…`) keep their own prefix.
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

fn label_name(k: &str) -> String {
    let mut s: String = k.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty()
        || s.starts_with(|c: char| c.is_ascii_digit())
        || s.starts_with("__")
        || s == "jvm"
        || s == "quantile"
    {
        s.insert_str(0, "tag_");
    }
    s
}

fn app_metrics(o: &mut Out, jvm: &str, instruments: &[Instrument]) {
    for i in instruments {
        let (name, tags) = split_name(&i.name);
        let base = prom_name(name);
        let keys: Vec<String> = tags.iter().map(|(k, _)| label_name(k)).collect();
        let mut labels: Vec<(&str, &str)> = vec![("jvm", jvm)];
        labels.extend(keys.iter().map(String::as_str).zip(tags.iter().map(|(_, v)| *v)));
        match i.kind {
            Kind::Counter => {
                let f = o.family(&format!("{base}_total"), "counter", &format!("Application counter {name}."));
                o.sample(f, "", &labels, i.value as f64);
            }
            Kind::Gauge => {
                let f = o.family(&base, "gauge", &format!("Gauge {name}."));
                o.sample(f, "", &labels, i.gauge() as f64);
            }
            Kind::Timer => {
                let f = o.family(
                    &format!("{base}_seconds"),
                    "summary",
                    &format!("Application timer {name} (lifetime quantiles from log-linear buckets)."),
                );
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
    }

    #[test]
    fn instrument_names_become_prometheus_names() {
        assert_eq!(prom_name("http.requests"), "app_http_requests");
        assert_eq!(prom_name("jvm.buffer.used_bytes"), "jvm_buffer_used_bytes");
        assert_eq!(label_name("route"), "route");
        assert_eq!(label_name("jvm"), "tag_jvm");
        assert_eq!(label_name("1x"), "tag_1x");
    }

    #[test]
    fn empty_registry_still_has_help_and_type() {
        let text = render(&BTreeMap::new());
        assert!(text.contains("# TYPE jvmwatch_jvms gauge"));
        assert!(text.contains("jvmwatch_jvms{verdict=\"running\"} 0"));
    }
}

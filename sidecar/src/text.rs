//! Human-readable rendering of a [`Report`].

use std::fmt::Write;

use serde_json::Value;

use crate::report::Report;

/// Bytes as KiB/MiB/GiB.
pub fn bytes(v: &Value) -> String {
    let Some(b) = v.as_u64() else {
        return "-".into();
    };
    const U: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut x = b as f64;
    let mut i = 0;
    while x >= 1024.0 && i < U.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", U[i])
    }
}

fn event_line(e: &Value) -> String {
    let mut extra = String::new();
    if let Some(m) = e.as_object() {
        for (k, v) in m {
            if matches!(k.as_str(), "seq" | "type" | "time" | "time_ns") {
                continue;
            }
            let v = match v {
                Value::String(s) => format!("{s:?}"),
                v => v.to_string(),
            };
            let _ = write!(extra, " {k}={v}");
        }
    }
    format!(
        "  #{:<8} {}  {:<18}{}",
        e["seq"],
        e["time"].as_str().unwrap_or("-"),
        e["type"].as_str().unwrap_or("?"),
        extra
    )
}

/// The report as text, for a terminal.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "ring:      {}", r.file.display());
    let why = match r.verdict.as_str() {
        "running" => "the JVM holds its ring lock",
        "exited" => "clean shutdown recorded",
        "crashed" => "writer gone, crash report found",
        _ => "writer gone without a clean exit or a crash report (SIGKILL, OOM killer, ...)",
    };
    let _ = writeln!(o, "verdict:   {} ({why})", r.verdict.as_str().to_uppercase());
    if let Some(c) = &r.crash_report {
        let _ = writeln!(o, "crash:     {}", c.display());
    }
    let f = if r.findings.is_empty() { "none".to_string() } else { r.findings.join(", ") };
    let _ = writeln!(o, "findings:  {f}");
    let app = r.app.as_deref().map(|a| format!(" app {a},")).unwrap_or_default();
    let _ = writeln!(
        o,
        "jvm:       pid {} on {},{app} {} {} ({})",
        r.pid, r.hostname, r.jvm.vendor, r.jvm.version, r.jvm.collector
    );
    let _ = writeln!(o, "command:   {}", r.jvm.args);
    if r.attached {
        let _ = writeln!(o, "agent:     attached to the running JVM (nothing before the attach was recorded)");
    }
    let t = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(
        o,
        "started:   {}   last heartbeat: {}   exited: {}",
        t(&r.started_at),
        t(&r.last_heartbeat_at),
        t(&r.exited_at)
    );
    match &r.snapshot {
        Some(s) => {
            let _ = writeln!(
                o,
                "heap:      used {} / committed {} / max {}   (after last GC: {})",
                bytes(&s["heap_used_bytes"]),
                bytes(&s["heap_committed_bytes"]),
                bytes(&s["heap_max_bytes"]),
                bytes(&s["heap_used_after_gc_bytes"])
            );
            for p in s["pools"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    o,
                    "  {:<7} {:<32} used {:>10}  max {:>10}",
                    p["area"].as_str().unwrap_or(""),
                    p["name"].as_str().unwrap_or(""),
                    bytes(&p["used_bytes"]),
                    bytes(&p["max_bytes"])
                );
            }
            let states: Vec<String> = s["threads_by_state"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.as_u64() != Some(0))
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(o, "threads:   {} live ({})", s["threads_live"], states.join(", "));
            let _ = writeln!(o, "cpu:       {} ms   classes: {}", s["cpu_time_ms"], s["loaded_classes"]);
            for c in s["collectors"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    o,
                    "  gc bean {:<32} {} collections, {} ms",
                    c["name"].as_str().unwrap_or(""),
                    c["count"],
                    c["time_ms"]
                );
            }
        }
        None => {
            let _ = writeln!(o, "snapshot:  none written yet");
        }
    }
    if let Some(h) = &r.host_facts {
        let p = &h["processor"];
        if p.is_object() {
            let _ = writeln!(
                o,
                "processor: {} ({} {}, family/model/stepping {}), class {}, hypervisor {}, host cores {}",
                p["model_name"].as_str().unwrap_or("?"),
                p["vendor"].as_str().unwrap_or("?"),
                if p["hypervisor_flag"] == true { "with the hypervisor flag" } else { "no hypervisor flag" },
                p["family_model_stepping"].as_str().unwrap_or("?"),
                p["class"].as_str().unwrap_or("?"),
                p["hypervisor"].as_str().unwrap_or("?"),
                p["host_cores"]
            );
        }
        let r = &h["resources"];
        if r.is_object() {
            let or_none = |v: &Value, unit: &str| if v.is_null() { "none".to_string() } else { format!("{v}{unit}") };
            let _ = writeln!(
                o,
                "resources: cores told {} (ActiveProcessorCount {}), cpuset {} ({} CPUs), cpu quota {}, memory limit {}",
                r["cores_told"],
                or_none(&r["active_processor_count"], ""),
                r["cpuset"].as_str().unwrap_or("?"),
                r["affinity"],
                or_none(&r["cpu_quota_millicores"], " millicores"),
                if r["memory_limit_bytes"].is_null() { "none".to_string() } else { bytes(&r["memory_limit_bytes"]) }
            );
        }
    }
    let _ = writeln!(
        o,
        "gc pauses: {} (total {:.1} ms, max {:.2} ms, {:.1}% of the last 10 s)",
        r.gc.pauses,
        r.gc.pause_total_ms,
        r.gc.pause_max_ms,
        r.gc.pause_share_10s * 100.0
    );
    if !r.metrics.is_empty() {
        let _ = writeln!(o, "metrics:");
        for m in &r.metrics {
            let name = m["name"].as_str().unwrap_or("?");
            let line = match m["kind"].as_str() {
                Some("timer") => {
                    let f = |k: &str| m[k].as_f64().map(|v| format!("{v:.3} ms")).unwrap_or_else(|| "-".into());
                    let (mean, p50, p95, p99, max) = (f("mean_ms"), f("p50_ms"), f("p95_ms"), f("p99_ms"), f("max_ms"));
                    format!("count {}  mean {mean}  p50 {p50}  p95 {p95}  p99 {p99}  max {max}", m["count"])
                }
                _ => format!("{}", m["value"]),
            };
            let _ = writeln!(o, "  {:<7} {name:<40} {line}", m["kind"].as_str().unwrap_or(""));
        }
    }
    let _ = writeln!(
        o,
        "events:    last {} of {} written, {} lost, ring holds {}",
        r.events.len(),
        r.events_total,
        r.lost_events,
        r.ring_capacity
    );
    for e in &r.events {
        let _ = writeln!(o, "{}", event_line(e));
    }
    if let Some(st) = &r.stacks {
        let threads = st["threads"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            o,
            "stacks:    {} threads of {} captured {} ({:.1} s before the last sign of life, {})",
            threads,
            st["total_threads"],
            st["captured_at"].as_str().unwrap_or("-"),
            st["age_s"].as_f64().unwrap_or(0.0),
            st["reason"].as_str().unwrap_or("?")
        );
        for t in st["threads"].as_array().into_iter().flatten().take(STACK_THREADS) {
            let lock = match (t["lock"].as_str(), t["owner"].as_str(), t["state"].as_str()) {
                (Some(l), Some(w), Some("blocked")) => format!(" waiting for {l} held by {w:?}"),
                (Some(l), _, Some("blocked")) => format!(" waiting for {l}"),
                (Some(l), _, _) => format!(" on {l}"),
                _ => String::new(),
            };
            let _ =
                writeln!(o, "  {:?} {}{lock}", t["name"].as_str().unwrap_or("?"), t["state"].as_str().unwrap_or("?"));
            for f in t["frames"].as_array().into_iter().flatten().take(STACK_FRAMES) {
                let _ = writeln!(o, "      at {}", f.as_str().unwrap_or("?"));
            }
        }
        if threads > STACK_THREADS {
            let _ = writeln!(o, "  ... {} more threads (--json shows all)", threads - STACK_THREADS);
        }
    }
    if !r.citations.is_empty() {
        let _ = writeln!(o, "blocked:");
        for c in &r.citations {
            let _ = writeln!(o, "  {c}");
        }
    }
    if !r.timeline.is_empty() {
        let _ = writeln!(o, "timeline:");
        for l in &r.timeline {
            let _ = writeln!(o, "  {l}");
        }
    }
    o
}

/// Threads and frames per thread that the text shows of the last stacks capture.
const STACK_THREADS: usize = 20;
/// See [`STACK_THREADS`].
const STACK_FRAMES: usize = 6;

//! The last stacks capture of a ring, as JSON and as the lines that `hung` and `deadlock`
//! cite.

use jvmwatch_ring::stacks::{Capture, ThreadStack};
use serde_json::{json, Value};

fn frame(t: &ThreadStack, i: usize) -> Option<String> {
    t.frames.get(i).map(|f| if f.line >= 0 { format!("{}:{}", f.method, f.line) } else { f.method.clone() })
}

/// The capture as JSON; `end_ns` (the ring's last sign of life) gives its age.
pub fn to_json(c: &Capture, end_ns: u64) -> Value {
    json!({
        "captured_at": crate::report::rfc3339(c.time_ns),
        "age_s": end_ns.saturating_sub(c.time_ns) as f64 / 1e9,
        "reason": c.reason.name(),
        "capture_us": c.duration_ns as f64 / 1e3,
        "total_threads": c.total_threads,
        "threads": c.threads.iter().map(|t| json!({
            "name": t.name,
            "state": t.state_name(),
            "lock": t.lock,
            "owner": t.owner,
            "frames": (0..t.frames.len()).filter_map(|i| frame(t, i)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// One line per thread blocked entering a monitor: who waits for what, held by whom, where.
/// (Threads in `Object.wait` also report their monitor; they are not blocked on it.)
pub fn citations(c: &Capture) -> Vec<String> {
    c.threads
        .iter()
        .filter(|t| t.lock.is_some() && t.state_name() == "blocked")
        .map(|t| {
            format!(
                "{} ({}) waits for {} held by {} at {}",
                t.name,
                t.state_name(),
                t.lock.as_deref().unwrap_or("?"),
                t.owner.as_deref().unwrap_or("?"),
                frame(t, 0).unwrap_or_else(|| "?".into())
            )
        })
        .collect()
}

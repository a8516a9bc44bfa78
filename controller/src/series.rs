//! The series the sidecar pushes, by name, and how a rule may use them.
//!
//! Names under `app.` are the application's own instruments (`io.jvmwatch`) and are open: they
//! are checked only for their spelling. Every other name must be in [`FIXED`] or in the
//! `heap.pool.<pool>.used|committed|max` family.

/// The fixed JVM series, pushed per instance every sample.
pub const FIXED: &[&str] = &[
    "heap.used",
    "heap.committed",
    "heap.max",
    "heap.used_ratio",
    "heap.after_gc",
    "heap.after_gc_ratio",
    "nonheap.used",
    "gc.count",
    "gc.time_s",
    "gc.pauses",
    "gc.pause_total_s",
    "gc.pause_max_ms",
    "gc.heap_after_ratio",
    "threads.live",
    "threads.daemon",
    "threads.new",
    "threads.runnable",
    "threads.blocked",
    "threads.waiting",
    "threads.timed_waiting",
    "cpu.time_s",
    "classes.loaded",
    "heartbeat.age_s",
];

/// The fixed series that are cumulative counters (use `rate` / `increase` on them).
pub const COUNTERS: &[&str] = &["gc.count", "gc.time_s", "gc.pauses", "gc.pause_total_s", "cpu.time_s"];

/// Verdict names `verdict(...)` accepts (as `jvmwatch inspect` reports them).
pub const VERDICTS: &[&str] = &["running", "exited", "killed", "crashed"];

/// Finding names `finding(...)` accepts (as `jvmwatch inspect` reports them).
pub const FINDINGS: &[&str] = &["oom", "deadlock", "gc_thrash", "heap_exhausted", "hung"];

/// What a series name is, as far as the config can know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A fixed gauge (or the `heap.pool.*` family).
    Gauge,
    /// A fixed cumulative counter.
    Counter,
    /// An application instrument: counter, gauge or timer (histogram); only known at run time.
    App,
}

/// Whether `c` may appear in a bare series name.
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// Checks a series key (`name` or `name{tags}`) and says what kind it is.
///
/// The error is a sentence without position.
pub fn classify(key: &str) -> Result<Kind, String> {
    let (name, tags) = match key.find('{') {
        Some(i) => (&key[..i], Some(&key[i..])),
        None => (key, None),
    };
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(format!("bad series name `{key}`, expected letters, digits, `_`, `.`, `:` or `-`"));
    }
    if let Some(tags) = tags {
        check_tags(tags).map_err(|e| format!("series `{key}`: {e}"))?;
    }
    if let Some(rest) = name.strip_prefix("app.") {
        if rest.is_empty() || rest.starts_with('.') || rest.ends_with('.') {
            return Err(format!("bad application series `{name}`, expected app.NAME"));
        }
        return Ok(Kind::App);
    }
    if tags.is_some() {
        return Err(format!("series `{name}` takes no tags, only app.* series do"));
    }
    if COUNTERS.contains(&name) {
        return Ok(Kind::Counter);
    }
    if FIXED.contains(&name) {
        return Ok(Kind::Gauge);
    }
    if let Some(rest) = name.strip_prefix("heap.pool.") {
        for field in [".used", ".committed", ".max"] {
            if let Some(pool) = rest.strip_suffix(field) {
                if !pool.is_empty() {
                    return Ok(Kind::Gauge);
                }
            }
        }
    }
    Err(format!(
        "unknown metric `{name}`, expected one of {}, heap.pool.<pool>.used|committed|max or app.<name>",
        FIXED.join(", ")
    ))
}

fn check_tags(tags: &str) -> Result<(), String> {
    let inner = tags
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| "tags must be `{key=value,...}`".to_string())?;
    if inner.is_empty() {
        return Err("empty tags `{}`".to_string());
    }
    for pair in inner.split(',') {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("tag `{pair}` is not key=value"))?;
        let ok = |s: &str| !s.is_empty() && !s.contains(['{', '}', '"', '=']) && !s.chars().any(char::is_whitespace);
        if !ok(k) || !ok(v) {
            return Err(format!("tag `{pair}` is not key=value"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify("heap.used"), Ok(Kind::Gauge));
        assert_eq!(classify("gc.time_s"), Ok(Kind::Counter));
        assert_eq!(classify("heap.pool.G1 Eden.used").map_err(|_| ()), Err(()));
        assert_eq!(classify("heap.pool.G1_Eden_Space.used"), Ok(Kind::Gauge));
        assert_eq!(classify("app.latency{route=/x}"), Ok(Kind::App));
        assert!(classify("heap.usd").unwrap_err().contains("unknown metric `heap.usd`"));
        assert!(classify("heap.used{a=b}").is_err());
        assert!(classify("app.x{a}").is_err());
        assert!(classify("app.").is_err());
    }
}

//! What the ring's history region says: the series as JSON or text (`inspect --history`, the
//! console's charts, `GET /api/v1/jvms/{id}/history`), the `heap_leak` and `thread_leak`
//! findings and the timeline lines that explain a verdict. Every judgement is a pure
//! function over `(time, value)` points with the thresholds below; `docs/inspect.md` states
//! them too. Keep both in step.

use jvmwatch_ring::history::{LeakPoint, Sample};
use jvmwatch_ring::metrics::{Instrument, Kind};
use jvmwatch_ring::{History, LeakSeries, THREAD_STATES, UNKNOWN};
use serde::Serialize;
use serde_json::{json, Value};

/// Reads a ring's history and its instruments; a ring without history (format version 1,
/// `history=off`) is an error that says so.
pub fn read(path: &std::path::Path) -> Result<(History, Vec<Instrument>), String> {
    let ring = crate::retention::archive::open(path).map_err(|e| e.to_string())?; // plain or archived
    let h = ring.history().map_err(|e| e.to_string())?.ok_or_else(|| {
        format!("no history region (format version {}, or the agent ran with history=off)", ring.header().version)
    })?;
    Ok((h, ring.metrics().map_err(|e| e.to_string())?.0))
}

/// The samples of both tiers as one series: the coarse records older than the first fine
/// record, then the fine records.
/// Samples whose time does not move forward (the wall clock stepped back, or a hostile file)
/// are dropped, so every judgement below sees strictly increasing times.
pub fn merged(h: &History) -> Vec<&Sample> {
    let mut out = Vec::with_capacity(h.coarse.len() + h.fine.len());
    out.extend(merge(&h.coarse, &h.fine, |s| s.time_ns));
    out
}

/// The rule of [`merged`] over records of any shape (samples, leak points) with a `time`.
fn merge<'a, T>(
    coarse: &'a [T],
    fine: &'a [T],
    time: impl Fn(&T) -> u64 + Copy + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    let first_fine = fine.first().map_or(u64::MAX, time);
    let mut last: Option<u64> = None;
    coarse.iter().filter(move |s| time(s) < first_fine).chain(fine).filter(move |s| {
        let t = time(s);
        let forward = last.is_none_or(|l| t > l);
        if forward {
            last = Some(t);
        }
        forward
    })
}

fn opt(v: u64) -> Value {
    if v == UNKNOWN {
        Value::Null
    } else {
        json!(v)
    }
}

/// The history as JSON arrays aligned on `time_ms`. `instruments` are the ring's metrics
/// (cell `i` is instrument `i`); those past the cells are listed as dropped.
pub fn to_json(h: &History, instruments: &[Instrument]) -> Value {
    let s = merged(h);
    let col = |f: &dyn Fn(&Sample) -> Value| -> Value { Value::Array(s.iter().map(|x| f(x)).collect()) };
    let mut states = serde_json::Map::new();
    for (i, name) in THREAD_STATES.iter().enumerate() {
        states.insert((*name).into(), col(&|x| json!(x.thread_states[i])));
    }
    let (kept, dropped) = jvmwatch_ring::history::cell_instruments(instruments);
    let app: Vec<Value> = kept
        .iter()
        .enumerate()
        .map(|(i, ins)| {
            // A sample taken before the instrument was registered has no figure for it.
            let has = |x: &Sample| (i as u32) < x.cells_used;
            let timed = |x: &Sample| has(x) && x.cells[i].a > 0;
            match ins.kind {
                Kind::Timer => json!({
                    "name": ins.name, "kind": "timer",
                    "count": col(&|x| if has(x) { json!(x.cells[i].a) } else { Value::Null }),
                    "mean_ms": col(&|x| if timed(x) { json!(x.cells[i].b as f64 / x.cells[i].a as f64 / 1e6) } else { Value::Null }),
                    "p99_ms": col(&|x| if timed(x) { json!(x.cells[i].c as f64 / 1e3) } else { Value::Null }),
                    "max_ms": col(&|x| if timed(x) { json!(x.cells[i].d as f64 / 1e3) } else { Value::Null }),
                }),
                Kind::Counter => json!({ "name": ins.name, "kind": "counter", "value": col(&|x| if has(x) { json!(x.cells[i].a) } else { Value::Null }) }),
                Kind::Gauge => json!({ "name": ins.name, "kind": "gauge", "value": col(&|x| if has(x) { json!(x.cells[i].a as i64) } else { Value::Null }) }),
            }
        })
        .collect();
    let dropped: Vec<&str> = dropped.iter().map(|i| i.name.as_str()).collect();
    json!({
        "fine_step_ms": h.fine_step_ns as f64 / 1e6,
        "coarse_step_ms": h.coarse_step_ns as f64 / 1e6,
        "fine_samples": h.fine.len(),
        "coarse_samples": s.len() - h.fine.len(),
        "torn": h.torn,
        "time_ms": col(&|x| json!(x.time_ns / 1_000_000)),
        "heap_used": col(&|x| json!(x.heap_used)),
        "heap_committed": col(&|x| json!(x.heap_committed)),
        "heap_max": col(&|x| opt(x.heap_max)),
        "heap_after_gc": col(&|x| opt(x.heap_after_gc)),
        "old_used": col(&|x| opt(x.old_used)),
        "nonheap_used": col(&|x| json!(x.nonheap_used)),
        "gc_count": col(&|x| json!(x.gc_count)),
        "gc_time_ms": col(&|x| json!(x.gc_time_ms)),
        "gc_pause_ms": col(&|x| json!(x.gc_pause_ns as f64 / 1e6)),
        "cpu_ms": col(&|x| json!(x.cpu_ns as f64 / 1e6)),
        "classes": col(&|x| if x.classes == u32::MAX { Value::Null } else { json!(x.classes) }),
        "threads_live": col(&|x| json!(x.threads_live)),
        "thread_states": states,
        "app": app,
        "dropped_instruments": dropped,
    })
}

/// The history as a compact text table (one line per sample; at most `rows` newest).
pub fn to_text(h: &History, instruments: &[Instrument], rows: usize) -> String {
    use std::fmt::Write;
    let s = merged(h);
    let mut o = String::new();
    let (kept, dropped) = jvmwatch_ring::history::cell_instruments(instruments);
    let names = |v: &[&Instrument]| v.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        o,
        "history: {} fine samples every {} ms, {} coarse every {} s, {} torn",
        h.fine.len(),
        h.fine_step_ns / 1_000_000,
        s.len() - h.fine.len(),
        h.coarse_step_ns / 1_000_000_000,
        h.torn
    );
    if !kept.is_empty() {
        let _ = writeln!(o, "app instruments kept: {} (--json has their series)", names(&kept));
    }
    if !dropped.is_empty() {
        let _ = writeln!(o, "app instruments not kept (8 at most): {}", names(&dropped));
    }
    let _ = writeln!(
        o,
        "{:<24} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "time", "heap MiB", "after GC", "max MiB", "GCs", "threads", "classes"
    );
    let mib = |v: u64| if v == UNKNOWN { "-".to_string() } else { format!("{:.1}", v as f64 / 1048576.0) };
    for x in &s[s.len().saturating_sub(rows)..] {
        let _ = writeln!(
            o,
            "{:<24} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}",
            crate::report::rfc3339(x.time_ns).unwrap_or_default(),
            mib(x.heap_used),
            mib(x.heap_after_gc),
            mib(x.heap_max),
            x.gc_count,
            x.threads_live,
            if x.classes == u32::MAX { "-".to_string() } else { x.classes.to_string() }
        );
    }
    o
}

// ---- findings over the history ----

/// Window the leak findings look at (the newest part of the history).
pub const LEAK_WINDOW_NS: u64 = 30 * 60 * 1_000_000_000;
/// `heap_leak` needs at least this many heap-after-GC points (collections) ...
pub const LEAK_MIN_POINTS: usize = 6;
/// ... spanning at least this long.
pub const LEAK_MIN_SPAN_NS: u64 = 30_000_000_000;
/// The least-squares line must explain at least this share of the variance (R²) ...
pub const LEAK_MIN_R2: f64 = 0.7;
/// ... rise by at least this share of the heap max over the window ...
pub const LEAK_MIN_RISE: f64 = 0.10;
/// ... and the newest third of the window must still rise at ≥ this share of the overall
/// slope (a one-off step, such as a cache filling, then flat, is not a leak).
pub const LEAK_TAIL_SLOPE: f64 = 0.3;
/// ... unless the newest third reached this share of the heap max (the heap is full).
pub const LEAK_FULL: f64 = 0.9;
/// `thread_leak`: threads rose by at least this many over the window ...
pub const THREAD_LEAK_MIN_RISE: f64 = 50.0;
/// ... to at least this multiple of where the line starts ...
pub const THREAD_LEAK_MIN_FACTOR: f64 = 2.0;
/// ... over at least this long, with R² ≥ [`LEAK_MIN_R2`] and a rising newest third.
pub const THREAD_LEAK_MIN_SPAN_NS: u64 = 20_000_000_000;

/// A least-squares line over `(t, v)` points: slope per ns, value at the first and last
/// point's time, and R².
fn fit(p: &[(u64, f64)]) -> Option<(f64, f64, f64, f64)> {
    if p.len() < 2 {
        return None;
    }
    let t0 = p[0].0;
    let n = p.len() as f64;
    let xs: Vec<f64> = p.iter().map(|(t, _)| t.saturating_sub(t0) as f64).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = p.iter().map(|(_, v)| v).sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(p).map(|(x, (_, y))| (x - mx) * (y - my)).sum();
    let syy: f64 = p.iter().map(|(_, y)| (y - my).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 { 0.0 } else { (sxy * sxy) / (sxx * syy) };
    let at = |x: f64| my + slope * (x - mx);
    Some((slope, at(0.0), at(*xs.last().expect("≥ 2")), r2))
}

/// The newest [`LEAK_WINDOW_NS`] of points.
fn window(p: &[(u64, f64)]) -> &[(u64, f64)] {
    let end = p.last().map_or(0, |x| x.0);
    let start = p.partition_point(|x| x.0 < end.saturating_sub(LEAK_WINDOW_NS));
    &p[start..]
}

/// A steady rise: the line's slope, start and end, or `None` when the points do not show
/// one (too few, too short, too noisy, or flattening in the newest third).
///
/// With a `ceiling` (the heap max), a newest third that stopped rising at ≥ 90 % of it still
/// counts: the rise ended because the heap is full, not because the leak did.
fn steady_rise(p: &[(u64, f64)], min_points: usize, min_span: u64, ceiling: Option<f64>) -> Option<(f64, f64, f64)> {
    let p = window(p);
    if p.len() < min_points || p.last()?.0.saturating_sub(p[0].0) < min_span {
        return None;
    }
    let (slope, start, end, r2) = fit(p)?;
    if slope <= 0.0 || r2 < LEAK_MIN_R2 {
        return None;
    }
    let tail_from = p[0].0 + p.last()?.0.saturating_sub(p[0].0) * 2 / 3;
    let tail = &p[p.partition_point(|x| x.0 < tail_from)..];
    let tail_slope = fit(tail).map_or(0.0, |f| f.0);
    let full = ceiling.is_some_and(|c| tail.iter().any(|x| x.1 >= LEAK_FULL * c));
    (tail_slope >= LEAK_TAIL_SLOPE * slope || full).then_some((slope, start, end))
}

/// A heap leak: the heap after GC trends up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeapLeak {
    /// Growth, bytes per second.
    pub bytes_per_s: f64,
    /// Heap after GC as a share of max where the line starts and ends.
    pub from_ratio: f64,
    /// See `from_ratio`.
    pub to_ratio: f64,
    /// Span judged, s.
    pub over_s: f64,
    /// Estimated seconds from the last point until the line reaches the max.
    pub exhaustion_in_s: f64,
}

/// Slices of the window whose lowest heap-after-GC point forms the lower envelope.
pub const LEAK_ENVELOPE_SLICES: usize = 12;

/// `heap_leak` over heap-after-GC points `(time ns, bytes)` (one per collection: repeated
/// values are dropped) against the heap max.
///
/// The line is fitted to the lower envelope: the lowest point of each of
/// [`LEAK_ENVELOPE_SLICES`] equal slices of the window. After a young collection the heap
/// still holds the old generation's garbage, which climbs until an old (or mixed) collection
/// clears it; the envelope follows what the old collections leave, which a leak makes climb
/// and garbage does not. A climb with no old collection at all inside the window still looks
/// like a leak: no figure in the file can tell them apart.
pub fn heap_leak(points: &[(u64, f64)], max: f64) -> Option<HeapLeak> {
    if max <= 0.0 {
        return None;
    }
    // One point per collection: a run of equal samples (the same after-GC value, read at every
    // sampler tick until the next collection) keeps its first and its last point, so a flat
    // stretch still shows as flat.
    let w = window(points);
    let mut distinct: Vec<(u64, f64)> = Vec::new();
    for (i, &(t, v)) in w.iter().enumerate() {
        let changes = i == 0 || w[i - 1].1 != v;
        let run_ends = i + 1 == w.len() || w[i + 1].1 != v;
        if changes || run_ends {
            distinct.push((t, v));
        }
    }
    // A heap that filled up (≥ 90 % of max) and then collapsed to half or less: an
    // OutOfMemoryError ended the thread that held the leak, or the leak was let go. Judge the
    // climb that led to the full heap.
    if let Some((peak, &(_, top))) = distinct.iter().enumerate().max_by(|a, b| a.1 .1.total_cmp(&b.1 .1)) {
        if top >= LEAK_FULL * max && distinct[peak + 1..].iter().any(|p| p.1 <= top / 2.0) {
            distinct.truncate(peak + 1);
        }
    }
    if distinct.len() < LEAK_MIN_POINTS {
        return None;
    }
    let (t0, t1) = (distinct[0].0, distinct.last()?.0);
    let slice = (t1.saturating_sub(t0) / LEAK_ENVELOPE_SLICES as u64).max(1);
    // (slice, time, value) of each slice's lowest point.
    let mut envelope: Vec<(u64, u64, f64)> = Vec::new();
    for &(t, v) in &distinct {
        let k = (t.saturating_sub(t0) / slice).min(LEAK_ENVELOPE_SLICES as u64 - 1);
        match envelope.last_mut() {
            Some(e) if e.0 == k => {
                if v < e.2 {
                    *e = (k, t, v);
                }
            }
            _ => envelope.push((k, t, v)),
        }
    }
    let distinct: Vec<(u64, f64)> = envelope.iter().map(|&(_, t, v)| (t, v)).collect();
    let (slope, start, end) =
        steady_rise(&distinct, LEAK_MIN_POINTS, LEAK_MIN_SPAN_NS.saturating_sub(slice), Some(max))?;
    if (end - start) / max < LEAK_MIN_RISE {
        return None;
    }
    let per_s = slope * 1e9;
    // The line's end is at the last slice's middle: carry it on to the last point.
    let end = end + slope * (t1.saturating_sub(distinct.last()?.0)) as f64;
    Some(HeapLeak {
        bytes_per_s: per_s,
        from_ratio: start / max,
        to_ratio: end / max,
        over_s: t1.saturating_sub(t0) as f64 / 1e9,
        exhaustion_in_s: ((max - end) / per_s).max(0.0),
    })
}

/// `thread_leak` over `(time ns, live threads)` points: `(from, to, over_s)` of the line.
pub fn thread_leak(points: &[(u64, f64)]) -> Option<(f64, f64, f64)> {
    let (_, start, end) = steady_rise(points, 3, THREAD_LEAK_MIN_SPAN_NS, None)?;
    let w = window(points);
    (end - start >= THREAD_LEAK_MIN_RISE && end >= THREAD_LEAK_MIN_FACTOR * start.max(1.0))
        .then(|| (start, end, w.last().map_or(0, |x| x.0).saturating_sub(w[0].0) as f64 / 1e9))
}

/// The leak findings: `heap_leak` and `thread_leak` (`(from, to, over_s)`).
pub type Leaks = (Option<HeapLeak>, Option<(f64, f64, f64)>);

/// The leak findings of a ring's history ([`jvmwatch_ring::Ring::history`]).
pub fn leaks(h: &History) -> Leaks {
    leaks_of(merge(&h.coarse, &h.fine, |s| s.time_ns).map(LeakPoint::from))
}

/// The same findings from just the figures they use ([`jvmwatch_ring::Ring::leak_series`]:
/// what the service reads for them, a fraction of the cost of the whole history).
pub fn leaks_of_series(l: &LeakSeries) -> Leaks {
    leaks_of(merge(&l.coarse, &l.fine, |p| p.time_ns).copied())
}

/// The leak findings over the merged series ([`merged`]'s rule): heap after GC against the
/// newest known heap max, and live threads.
fn leaks_of(series: impl Iterator<Item = LeakPoint>) -> Leaks {
    let n = series.size_hint().1.unwrap_or(0);
    let (mut max, mut after, mut threads) = (0.0, Vec::with_capacity(n), Vec::with_capacity(n));
    for x in series {
        if x.heap_max != UNKNOWN {
            max = x.heap_max as f64;
        }
        if x.heap_after_gc != UNKNOWN {
            after.push((x.time_ns, x.heap_after_gc as f64));
        }
        threads.push((x.time_ns, x.threads_live as f64));
    }
    (heap_leak(&after, max), thread_leak(&threads))
}

/// The timer cells of a history (`(cell, name)`), for [`timeline`].
pub fn timer_cells(instruments: &[Instrument]) -> Vec<(usize, String)> {
    let (kept, _) = jvmwatch_ring::history::cell_instruments(instruments);
    kept.iter().enumerate().filter(|(_, i)| i.kind == Kind::Timer).map(|(c, i)| (c, i.name.clone())).collect()
}

// ---- the timeline ----

/// A timeline line needs heap after GC to rise by at least this share of the max.
pub const TIMELINE_HEAP_RISE: f64 = 0.20;
/// GC share over the last [`TIMELINE_GC_WINDOW_NS`] must reach this ...
pub const TIMELINE_GC_SHARE: f64 = 0.20;
/// ... and at least double the share of the window before.
pub const TIMELINE_GC_WINDOW_NS: u64 = 40_000_000_000;
/// Threads must rise by at least this many (and by half).
pub const TIMELINE_THREADS_RISE: u32 = 50;
/// An app timer's p99 must reach this multiple of its earlier median p99, and ≥ 10 ms.
pub const TIMELINE_P99_FACTOR: f64 = 3.0;

/// "6 min 10 s", "40 s", "1 h 2 min".
pub fn span(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

fn pct(r: f64) -> String {
    format!("{:.0} %", r * 100.0)
}

fn clock(ns: u64) -> String {
    crate::report::rfc3339(ns).map(|t| t[11..19].to_string()).unwrap_or_default()
}

/// The few lines that explain what led to the end of `s` (oldest first): heap after GC
/// rising, GC share jumping, threads piling up, app latency rising. `timers` names the timer
/// cells (`(cell, name)`).
pub fn timeline(s: &[Sample], timers: &[(usize, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(last) = s.last() else { return out };
    // Heap after GC, against the max.
    let ratio = |x: &Sample| {
        (x.heap_after_gc != UNKNOWN && x.heap_max != UNKNOWN && x.heap_max > 0)
            .then(|| x.heap_after_gc as f64 / x.heap_max as f64)
    };
    // The climb to the highest point (the end, for a JVM still climbing; the full heap, for one
    // whose OutOfMemoryError then let the leak go) from the lowest point before it.
    let points: Vec<(u64, f64)> = s.iter().filter_map(|x| ratio(x).map(|r| (x.time_ns, r))).collect();
    if let Some(peak) = points.iter().enumerate().max_by(|a, b| a.1 .1.total_cmp(&b.1 .1)).map(|(i, _)| i) {
        let (peak_at, top) = points[peak];
        if let Some(&(low_at, low)) = points[..=peak].iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
            if top - low >= TIMELINE_HEAP_RISE && low_at < peak_at {
                let mut line = format!(
                    "heap after GC rose from {} to {} of max over {} (from {})",
                    pct(low),
                    pct(top),
                    span(peak_at - low_at),
                    clock(low_at)
                );
                if let Some(&(end_at, end)) = points.last().filter(|p| p.1 <= top / 2.0) {
                    line += &format!(", then fell to {} at {}", pct(end), clock(end_at));
                }
                out.push(line);
            }
        }
    }
    // GC pause share: the last window against the one before.
    let share = |from: u64, to: u64| -> Option<f64> {
        let a = s.iter().find(|x| x.time_ns >= from)?;
        let b = s.iter().rev().find(|x| x.time_ns <= to)?;
        (b.time_ns > a.time_ns)
            .then(|| (b.gc_pause_ns - a.gc_pause_ns.min(b.gc_pause_ns)) as f64 / (b.time_ns - a.time_ns) as f64)
    };
    let end = last.time_ns;
    let w = TIMELINE_GC_WINDOW_NS;
    if let (Some(now), Some(before)) =
        (share(end.saturating_sub(w), end), share(end.saturating_sub(2 * w), end.saturating_sub(w)))
    {
        if now >= TIMELINE_GC_SHARE && now >= 2.0 * before {
            out.push(format!("GC share {} → {} in the last {}", pct(before), pct(now), span(w)));
        }
    }
    // Threads.
    if let Some(low) = s.iter().min_by_key(|x| x.threads_live) {
        let (a, b) = (low.threads_live, last.threads_live);
        if b >= a + TIMELINE_THREADS_RISE && b as f64 >= 1.5 * a as f64 && low.time_ns < end {
            out.push(format!("threads {a} → {b} in {}", span(end - low.time_ns)));
        }
    }
    // App latency: the newest 30 s's worst p99 against the median p99 before.
    for (cell, name) in timers {
        let p99 =
            |x: &Sample| ((*cell as u32) < x.cells_used && x.cells[*cell].a > 0).then(|| x.cells[*cell].c as f64 / 1e3);
        let recent_from = end.saturating_sub(30_000_000_000);
        let mut before: Vec<f64> = s.iter().filter(|x| x.time_ns < recent_from).filter_map(p99).collect();
        let worst = s
            .iter()
            .filter(|x| x.time_ns >= recent_from)
            .filter_map(|x| p99(x).map(|v| (x.time_ns, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if before.is_empty() {
            continue;
        }
        before.sort_by(f64::total_cmp);
        let median = before[before.len() / 2];
        if let Some((at, v)) = worst {
            if v >= 10.0 && v >= TIMELINE_P99_FACTOR * median.max(0.001) {
                out.push(format!("app {name} p99 {median:.0} ms → {v:.0} ms from {}", clock(at)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn pts(f: impl Fn(u64) -> f64, n: u64, step_s: u64) -> Vec<(u64, f64)> {
        (0..n).map(|i| (i * step_s * S, f(i))).collect()
    }

    #[test]
    fn heap_leak_table() {
        let max = 1000.0;
        // (name, points, fires)
        let noise = |i: u64| ((i * 7919) % 13) as f64 * 10.0;
        type Case = (&'static str, Vec<(u64, f64)>, bool);
        let cases: Vec<Case> = vec![
            ("steady climb", pts(|i| 200.0 + 5.0 * i as f64, 60, 2), true),
            ("noisy climb", pts(|i| 200.0 + 5.0 * i as f64 + noise(i), 60, 2), true),
            ("flat", pts(|_| 400.0, 60, 2), false),
            ("noisy flat", pts(|i| 400.0 + noise(i), 60, 2), false),
            ("sawtooth", pts(|i| 300.0 + (i % 5) as f64 * 40.0, 60, 2), false),
            ("step then flat", pts(|i| if i < 30 { 200.0 } else { 500.0 }, 60, 2), false),
            ("too short", pts(|i| 200.0 + 5.0 * i as f64, 10, 2), false),
            ("tiny rise", pts(|i| 200.0 + 0.5 * i as f64, 60, 2), false),
            ("falling", pts(|i| 800.0 - 5.0 * i as f64, 60, 2), false),
            ("climb into a full heap", pts(|i| (200.0 + 15.0 * i as f64).min(960.0), 60, 2), true),
            (
                "climb to a full heap, then an OOM frees it",
                pts(|i| if i < 55 { 200.0 + 14.0 * i as f64 } else { 30.0 }, 60, 2),
                true,
            ),
            (
                "half-full heap, then released",
                pts(|i| if i < 55 { 200.0 + 5.0 * i as f64 } else { 30.0 }, 60, 2),
                false,
            ),
            ("step into a flat 50 %", pts(|i| if i < 40 { 200.0 + 7.5 * i as f64 } else { 500.0 }, 60, 2), false),
        ];
        for (name, p, fires) in cases {
            assert_eq!(heap_leak(&p, max).is_some(), fires, "{name}");
        }
        let l = heap_leak(&pts(|i| 200.0 + 5.0 * i as f64, 60, 2), max).unwrap();
        // 2.5 bytes/s; ends at 495: (1000 - 495) / 2.5 = 202 s.
        assert!((l.bytes_per_s - 2.5).abs() < 1e-6, "{l:?}");
        assert!((l.exhaustion_in_s - 202.0).abs() < 1.0, "{l:?}");
    }

    #[test]
    fn thread_leak_table() {
        assert!(thread_leak(&pts(|i| 20.0 + 10.0 * i as f64, 30, 1)).is_some(), "20 → 310 in 30 s");
        assert!(thread_leak(&pts(|i| 20.0 + (i % 3) as f64, 60, 1)).is_none(), "flat, noisy");
        assert!(thread_leak(&pts(|i| 500.0 + i as f64, 60, 1)).is_none(), "a rise of 60 on 500 is not double");
        assert!(thread_leak(&pts(|i| if i < 20 { 20.0 } else { 200.0 }, 60, 1)).is_none(), "one step: a pool started");
    }

    fn sample(t_s: u64, after: u64, threads: u32, pause_ns: u64) -> Sample {
        Sample {
            time_ns: t_s * S,
            heap_after_gc: after,
            heap_max: 1000,
            threads_live: threads,
            gc_pause_ns: pause_ns,
            ..Sample::default()
        }
    }

    #[test]
    fn timeline_names_the_rise_and_stays_quiet_on_a_calm_run() {
        let rising: Vec<Sample> = (0..400).map(|i| sample(i, 380 + i * 3 / 2, 60 + (i as u32) * 6, 0)).collect();
        let lines = timeline(&rising, &[]);
        assert!(lines[0].starts_with("heap after GC rose from 38 % to 98 % of max over 6 min 39 s"), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("threads 60 → 2454 in 6 min 39 s")), "{lines:?}");
        // GC share jumping from 0 to 50 % in the last 40 s.
        let gc: Vec<Sample> = (0..120).map(|i| sample(i, 400, 20, if i > 80 { (i - 80) * S / 2 } else { 0 })).collect();
        // 19.5 s of pauses in the 40 s from 79 s to 119 s: 48.75 %.
        assert_eq!(timeline(&gc, &[]), ["GC share 0 % → 49 % in the last 40 s"]);
        let calm: Vec<Sample> =
            (0..400).map(|i| sample(i, 400 + (i % 7) * 5, 30 + (i % 3) as u32, i * S / 100)).collect();
        assert!(timeline(&calm, &[]).is_empty());
    }

    #[test]
    fn spans_read_like_a_person_wrote_them() {
        assert_eq!(span(40 * S), "40 s");
        assert_eq!(span(370 * S), "6 min 10 s");
        assert_eq!(span(180 * S), "3 min");
        assert_eq!(span(3720 * S), "1 h 2 min");
    }

    // ---- the service's lean leak check against the full history: the same findings ----

    use jvmwatch_ring::history::Tier;
    use jvmwatch_ring::layout::{regions, HISTORY_RECORD_SIZE};
    use jvmwatch_ring::{Geometry, Identity, Ring, Writer};

    const MIB: u64 = 1 << 20;
    const T0: u64 = 1_700_000_000 * S;

    /// A ring of `g` whose tiers got `fine` and `coarse` appended, in that order.
    fn ring_with(g: Geometry, fine: &[Sample], coarse: &[Sample]) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::Builder::new().prefix("jvmwatch-leaks-test-").tempdir().unwrap();
        let id = Identity { pid: 1, start_ns: 1, interval_ns: S, geometry: g, ..Identity::default() };
        let p = d.path().join("h.ring");
        let w = Writer::create(&p, 1024, &id).unwrap();
        for (tier, v) in [(Tier::Fine, fine), (Tier::Coarse, coarse)] {
            for s in v {
                assert!(w.history_append(tier, s));
            }
        }
        (d, p)
    }

    /// `leaks` and `merged` as they were before the lean check.
    fn leaks_before(h: &History) -> Leaks {
        let first_fine = h.fine.first().map_or(u64::MAX, |s| s.time_ns);
        let mut s: Vec<&Sample> = Vec::with_capacity(h.coarse.len() + h.fine.len());
        for x in h.coarse.iter().filter(|x| x.time_ns < first_fine).chain(&h.fine) {
            if s.last().is_none_or(|l| x.time_ns > l.time_ns) {
                s.push(x);
            }
        }
        assert_eq!(s, merged(h));
        let max = s.iter().rev().find(|x| x.heap_max != UNKNOWN).map_or(0.0, |x| x.heap_max as f64);
        let after: Vec<(u64, f64)> =
            s.iter().filter(|x| x.heap_after_gc != UNKNOWN).map(|x| (x.time_ns, x.heap_after_gc as f64)).collect();
        let threads: Vec<(u64, f64)> = s.iter().map(|x| (x.time_ns, x.threads_live as f64)).collect();
        (heap_leak(&after, max), thread_leak(&threads))
    }

    /// The findings both ways: (full history read, lean read); the full one checked against
    /// the code before the lean check too.
    fn both(p: &std::path::Path) -> (Leaks, Leaks) {
        let r = Ring::open(p).unwrap();
        let h = r.history().unwrap().unwrap();
        assert_eq!(leaks(&h), leaks_before(&h));
        (leaks(&h), leaks_of_series(&r.leak_series().unwrap().unwrap()))
    }

    /// Overwrites bytes of record `slot` of a tier (0 fine, 1 coarse) at `at` inside it.
    fn poke(p: &std::path::Path, g: Geometry, tier: u64, slot: u64, at: u64, bytes: &[u8]) {
        let rec = regions(1024, &g).0 + (tier * g.fine_slots as u64 + slot) * HISTORY_RECORD_SIZE as u64;
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, bytes, rec + at).unwrap();
    }

    /// A JVM at second `t`: heap after GC climbs by `leak` MiB/s, moving at a collection every
    /// 5 s; threads climb by one per `1 / threads` s from 20.
    fn jvm(t: u64, leak: f64, threads: f64) -> Sample {
        let gc = t / 5 * 5;
        Sample {
            time_ns: T0 + t * S,
            heap_after_gc: 200 * MIB + (leak * gc as f64) as u64 * MIB + (gc * 7919 % 13) * MIB,
            heap_max: 1024 * MIB,
            threads_live: 20 + (threads * t as f64) as u32,
            ..Sample::default()
        }
    }

    fn series(range: std::ops::Range<u64>, step: u64, f: impl Fn(u64) -> Sample) -> Vec<Sample> {
        range.step_by(step as usize).map(f).collect()
    }

    #[test]
    fn the_lean_leak_check_finds_what_the_full_history_finds() {
        let g = Geometry { fine_slots: 200, coarse_slots: 60, coarse_step_ns: 10 * S, stacks_size: 0 };
        let leaking = |t| jvm(t, 0.5, 0.25);
        // Coarse tier: 90 records every 10 s (wrapped: the last 60 kept, from 300 s), the newest
        // overlapping the fine tier; fine: 350 records every second (wrapped: 700..900 s kept).
        let coarse = series(0..900, 10, leaking);
        let fine = series(550..900, 1, leaking);
        let (_d, p) = ring_with(g, &fine, &coarse);
        let (full, lean) = both(&p);
        assert_eq!(lean, full);
        assert!(full.0.is_some() && full.1.is_some(), "a leak of both kinds fires: {full:?}");

        // Torn and corrupt records in both tiers (a flipped heap-after-GC byte, a flipped cell,
        // a stamp left odd by a dying writer, a stamp of another lap), including the newest.
        let newest_fine = (350 - 1) % 200;
        for (tier, slot, at, bytes) in [
            (0, 3, 41, &[0x10][..]),
            (0, 77, 250, &[0x01][..]),
            (0, newest_fine, 0, &(2 * 349 + 1u64).to_le_bytes()[..]),
            (1, 5, 33, &[0x80][..]),
            (1, 6, 0, &(2 * 900 + 2u64).to_le_bytes()[..]),
        ] {
            poke(&p, g, tier, slot, at, bytes);
        }
        let r = Ring::open(&p).unwrap();
        assert_eq!(r.history().unwrap().unwrap().torn, 5);
        let (full, lean) = both(&p);
        assert_eq!(lean, full, "torn records");
        assert!(full.0.is_some() && full.1.is_some(), "{full:?}");

        // The full-size default geometry, both tiers wrapped: 9,000 fine at 100 ms, 720 coarse
        // at 10 s (what the service reads once a minute for a JVM past 15 minutes).
        let g = Geometry { fine_slots: 9_000, coarse_slots: 720, coarse_step_ns: 10 * S, stacks_size: 0 };
        // Flat for 95 min, then both leaks over the last 30 (the window).
        let at_ms =
            |ms: u64| Sample { time_ns: T0 + ms * 1_000_000, ..jvm((ms / 1000).saturating_sub(5_700), 0.4, 0.25) };
        let coarse = series(0..7_500_000, 10_000, at_ms);
        let fine = series(7_500_000 - 9_900 * 100..7_500_000, 100, at_ms);
        let (_d, p) = ring_with(g, &fine, &coarse);
        let (full, lean) = both(&p);
        assert_eq!(lean, full, "default geometry");
        assert!(full.0.is_some() && full.1.is_some(), "{full:?}");
    }

    #[test]
    fn the_lean_leak_check_agrees_on_calm_and_odd_histories() {
        let g = Geometry { fine_slots: 50, coarse_slots: 20, coarse_step_ns: 10 * S, stacks_size: 0 };
        let calm = |t| jvm(t, 0.0, 0.0);
        let leaking = |t: u64| jvm(t.saturating_sub(250), 2.0, 2.0);
        // The fine tier: 50 records every 3 s. The clock stepped back inside the fine tier and
        // the coarse tier; heap max and heap after GC unknown at times (the newest heap max
        // among them).
        let odd = |t: u64| {
            let mut s = leaking(t);
            if t.is_multiple_of(17) {
                s.time_ns -= 40 * S;
            }
            if t.is_multiple_of(4) {
                s.heap_after_gc = UNKNOWN;
            }
            if t.is_multiple_of(3) || t >= 398 {
                s.heap_max = UNKNOWN;
            }
            s
        };
        let no_coarse = Geometry { coarse_slots: 0, coarse_step_ns: 0, ..g };
        // (name, geometry, fine, coarse, both leaks fire)
        type Case = (&'static str, Geometry, Vec<Sample>, Vec<Sample>, bool);
        let cases: Vec<Case> = vec![
            ("calm", g, series(251..400, 3, calm), series(0..400, 10, calm), false),
            ("no records", g, vec![], vec![], false),
            ("only coarse records", g, vec![], series(0..400, 10, leaking), true),
            ("coarse tier empty", g, series(251..400, 3, leaking), vec![], true),
            ("no coarse tier", no_coarse, series(251..400, 3, leaking), vec![], true),
            ("a leak that ended in the coarse tier", g, series(251..400, 3, calm), series(0..300, 10, leaking), false),
            ("clock steps and unknowns", g, series(251..400, 3, odd), series(0..400, 10, odd), true),
        ];
        for (name, g, fine, coarse, fires) in cases {
            let (_d, p) = ring_with(g, &fine, &coarse);
            let (full, lean) = both(&p);
            assert_eq!(lean, full, "{name}");
            assert_eq!((full.0.is_some(), full.1.is_some()), (fires, fires), "{name}: {full:?}");
        }
    }
}

//! Application metrics (counters, gauges, timers from the ring's metrics region) as figures:
//! lifetime totals, and rates, averages and percentiles over a window from two reads.
//! Pure functions over [`Instrument`]s.

use jvmwatch_ring::metrics::{quantile, Instrument, Kind};
use serde_json::{json, Value};

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

/// Splits `name{k=v,k2=v2}` into the name and its tags.
pub fn split_name(full: &str) -> (&str, Vec<(&str, &str)>) {
    match full.split_once('{') {
        Some((name, rest)) => {
            let tags = rest.trim_end_matches('}').split(',').filter_map(|kv| kv.split_once('=')).collect();
            (name, tags)
        }
        None => (full, Vec::new()),
    }
}

fn timer_figures(count: u64, sum: u64, max: Option<u64>, buckets: &[u64]) -> Value {
    let cap = max.unwrap_or(u64::MAX);
    let q = |p: f64| quantile(buckets, p, cap).map(|v| ms(v as f64));
    json!({
        "count": count,
        "mean_ms": (count > 0).then(|| ms(sum as f64 / count as f64)),
        "p50_ms": q(0.50),
        "p95_ms": q(0.95),
        "p99_ms": q(0.99),
        "max_ms": max.map(|m| ms(m as f64)),
    })
}

/// Lifetime figures of every instrument.
pub fn lifetime(ins: &[Instrument]) -> Vec<Value> {
    ins.iter()
        .map(|i| {
            let mut v = match i.kind {
                Kind::Counter => json!({ "value": i.value }),
                Kind::Gauge => json!({ "value": i.gauge() }),
                Kind::Timer => timer_figures(i.value, i.sum, Some(i.max), &i.buckets),
            };
            v["name"] = json!(i.name);
            v["kind"] = json!(i.kind.name());
            v
        })
        .collect()
}

/// Figures over the window between two reads `then` and `now`, `secs` apart: counters get
/// their increase and rate per second; gauges their current value; timers count, rate, mean
/// and percentiles of what was recorded inside the window (bucket differences; the max is
/// only known when the window holds everything recorded).
pub fn window(now: &[Instrument], then: &[Instrument], secs: f64) -> Vec<Value> {
    let secs = secs.max(1e-9);
    now.iter()
        .map(|i| {
            let before = then.iter().find(|t| t.index == i.index && t.kind == i.kind);
            let mut v = match i.kind {
                Kind::Counter => {
                    let d = i.value.saturating_sub(before.map_or(0, |b| b.value));
                    json!({ "value": i.value, "increase": d, "rate_per_s": d as f64 / secs })
                }
                Kind::Gauge => json!({ "value": i.gauge() }),
                Kind::Timer => {
                    let count = i.value.saturating_sub(before.map_or(0, |b| b.value));
                    let sum = i.sum.saturating_sub(before.map_or(0, |b| b.sum));
                    let buckets: Vec<u64> = match before {
                        Some(b) if b.buckets.len() == i.buckets.len() => {
                            i.buckets.iter().zip(&b.buckets).map(|(x, y)| x.saturating_sub(*y)).collect()
                        }
                        _ => i.buckets.clone(),
                    };
                    let max = before.is_none().then_some(i.max);
                    let mut t = timer_figures(count, sum, max, &buckets);
                    t["rate_per_s"] = json!(count as f64 / secs);
                    t
                }
            };
            v["name"] = json!(i.name);
            v["kind"] = json!(i.kind.name());
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jvmwatch_ring::metrics::{bucket_of, BUCKET_COUNT};

    fn timer(index: usize, values: &[u64]) -> Instrument {
        let mut buckets = vec![0; BUCKET_COUNT];
        for &v in values {
            buckets[bucket_of(v)] += 1;
        }
        Instrument {
            index,
            kind: Kind::Timer,
            name: "t".into(),
            value: values.len() as u64,
            sum: values.iter().sum(),
            max: values.iter().copied().max().unwrap_or(0),
            buckets,
        }
    }

    #[test]
    fn names_and_tags() {
        assert_eq!(split_name("a.b{route=/x,code=200}"), ("a.b", vec![("route", "/x"), ("code", "200")]));
        assert_eq!(split_name("plain"), ("plain", vec![]));
    }

    #[test]
    fn window_uses_only_what_happened_inside_it() {
        let then = timer(0, &[1_000_000; 10]);
        let mut all = vec![1_000_000u64; 10];
        all.extend([5_000_000u64; 30]);
        let now = timer(0, &all);
        let w = &window(&[now], &[then], 10.0)[0];
        assert_eq!(w["count"], 30);
        assert_eq!(w["rate_per_s"], 3.0);
        assert_eq!(w["mean_ms"], 5.0);
        let p50 = (w["p50_ms"].as_f64().unwrap() * 1e6) as u64;
        assert_eq!(bucket_of(p50), bucket_of(5_000_000));
        let c_then =
            Instrument { index: 1, kind: Kind::Counter, name: "c".into(), value: 100, sum: 0, max: 0, buckets: vec![] };
        let c_now = Instrument { value: 160, ..c_then.clone() };
        let w = &window(&[c_now], &[c_then], 2.0)[0];
        assert_eq!((w["increase"].as_u64(), w["rate_per_s"].as_f64()), (Some(60), Some(30.0)));
    }
}

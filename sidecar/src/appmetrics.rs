//! Application metrics (counters, gauges, timers from the ring's metrics region) as figures:
//! lifetime totals, and rates, averages and percentiles over a window from two reads.
//! Pure functions over [`Instrument`]s.

use std::collections::VecDeque;

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

/// Metrics reads of one JVM over the last [`History::SPAN_S`] seconds, for windows: the
/// newest read whole, older ones compact (no names; a timer's non-zero buckets only) and
/// thinned with age: one a second over the last [`History::FINE_S`] seconds, one per
/// [`History::COARSE_S`] seconds before. Keeping every read whole was about 1.2 KiB per read
/// for three instruments (a timer's 116 buckets), growing for five minutes: ~360 MiB at
/// 1,000 JVMs; now about 40 compact reads of ~400 bytes. A window up to `FINE_S` starts within a second of where it was asked to; a
/// longer one within `COARSE_S` (its rates divide by the time actually spanned).
#[derive(Debug, Default)]
pub struct History {
    latest: Option<(u64, Vec<Instrument>)>,
    /// Older reads, oldest first.
    kept: VecDeque<Kept>,
}

#[derive(Debug)]
struct Kept {
    t_ns: u64,
    ins: Box<[KeptInstrument]>,
}

#[derive(Debug)]
struct KeptInstrument {
    index: u32,
    kind: Kind,
    value: u64,
    sum: u64,
    max: u64,
    /// (bucket, count) of the non-zero buckets.
    buckets: Box<[(u8, u64)]>,
    /// Bucket array length (restored on use).
    bucket_len: u8,
}

impl Kept {
    fn new(t_ns: u64, ins: Vec<Instrument>) -> Kept {
        let ins = ins
            .into_iter()
            .map(|i| KeptInstrument {
                index: i.index.min(u32::MAX as usize) as u32,
                kind: i.kind,
                value: i.value,
                sum: i.sum,
                max: i.max,
                buckets: (i.buckets.iter().enumerate())
                    .filter(|&(b, &n)| n > 0 && b <= u8::MAX as usize)
                    .map(|(b, &n)| (b as u8, n))
                    .collect(),
                bucket_len: i.buckets.len().min(u8::MAX as usize) as u8,
            })
            .collect();
        Kept { t_ns, ins }
    }

    /// Back to instruments (names are not kept: `window` matches them by slot and kind).
    fn expand(&self) -> Vec<Instrument> {
        (self.ins.iter())
            .map(|k| {
                let mut buckets = vec![0; k.bucket_len as usize];
                for &(b, n) in k.buckets.iter() {
                    buckets[b as usize] = n;
                }
                Instrument {
                    index: k.index as usize,
                    kind: k.kind,
                    name: String::new(),
                    value: k.value,
                    sum: k.sum,
                    max: k.max,
                    buckets,
                }
            })
            .collect()
    }
}

impl History {
    /// The longest window, s.
    pub const SPAN_S: u64 = 300;
    /// Reads kept one a second over this many seconds.
    pub const FINE_S: u64 = 10;
    /// Older reads kept one per this many seconds.
    pub const COARSE_S: u64 = 10;

    /// Adds a read taken at `t_ns` (reads come in time order).
    pub fn push(&mut self, t_ns: u64, ins: Vec<Instrument>) {
        if let Some((t, old)) = self.latest.replace((t_ns, ins)) {
            self.kept.push_back(Kept::new(t, old));
        }
        let s = 1_000_000_000u64;
        // Drop what no window can start at: a read older than SPAN_S, when the next one is
        // old enough to start the longest window too.
        while self.kept.len() >= 2 && self.kept[1].t_ns <= t_ns.saturating_sub(Self::SPAN_S * s) {
            self.kept.pop_front();
        }
        // Thin the read that just aged past FINE_S: drop it if the older one it follows is
        // less than COARSE_S before it.
        let old = self.kept.partition_point(|k| k.t_ns < t_ns.saturating_sub(Self::FINE_S * s));
        if old >= 2 && self.kept[old - 1].t_ns - self.kept[old - 2].t_ns < Self::COARSE_S * s {
            self.kept.remove(old - 1);
        }
    }

    /// The newest read.
    pub fn latest(&self) -> &[Instrument] {
        self.latest.as_ref().map_or(&[], |(_, i)| i.as_slice())
    }

    /// Reads held (the newest included).
    pub fn len(&self) -> usize {
        self.kept.len() + usize::from(self.latest.is_some())
    }

    /// Whether nothing was read yet.
    pub fn is_empty(&self) -> bool {
        self.latest.is_none()
    }

    /// Figures over (up to) the last `secs` seconds: from the oldest read at or after the
    /// window's start to the newest; lifetime figures when there is only one read.
    pub fn window(&self, secs: u64) -> Value {
        let Some((t1, now)) = &self.latest else { return json!([]) };
        let cutoff = t1.saturating_sub(secs.saturating_mul(1_000_000_000));
        match self.kept.iter().find(|k| k.t_ns >= cutoff) {
            Some(k) => json!(window(now, &k.expand(), (t1 - k.t_ns) as f64 / 1e9)),
            None => json!(lifetime(now)),
        }
    }
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

    fn counter(index: usize, value: u64) -> Instrument {
        Instrument { index, kind: Kind::Counter, name: "c".into(), value, sum: 0, max: 0, buckets: vec![] }
    }

    #[test]
    fn history_thins_old_reads_and_keeps_windows_exact_within_the_fine_span() {
        let s = 1_000_000_000u64;
        let mut h = History::default();
        // 20 minutes of reads, one a second: the counter counts seconds, the timer gets one
        // 1 ms record a second.
        for k in 0..1200u64 {
            let t = timer(1, &vec![1_000_000; k as usize]);
            h.push(k * s, vec![counter(0, k), t]);
        }
        // 10 fine reads, (300 - 10) / 10 coarse ones, plus the edges.
        assert!(h.len() <= 10 + 29 + 3, "{} reads held", h.len());
        assert!(h.len() >= 10 + 25, "{} reads held", h.len());
        for secs in [1u64, 5, 9, 10] {
            let w = h.window(secs);
            assert_eq!(w[0]["increase"], secs, "{secs} s: {w}");
            assert_eq!(w[0]["rate_per_s"], 1.0, "{secs} s: {w}");
            assert_eq!(w[1]["count"], secs, "{secs} s: {w}");
            // The same figures as from the whole read kept (names, buckets and all).
            let k0 = 1199 - secs;
            let then = [counter(0, k0), timer(1, &vec![1_000_000; k0 as usize])];
            assert_eq!(w, json!(window(h.latest(), &then, secs as f64)), "{secs} s");
            assert_eq!(w[1]["name"], "t", "{secs} s: {w}");
        }
        for secs in [11u64, 60, 120, 299, 300] {
            let w = h.window(secs);
            let inc = w[0]["increase"].as_u64().unwrap();
            assert!(inc <= secs && inc + History::COARSE_S >= secs, "{secs} s: {w}");
            assert_eq!(w[0]["rate_per_s"], 1.0, "{secs} s: {w}");
            assert_eq!(w[1]["count"].as_u64(), Some(inc), "{secs} s: {w}");
        }
        // Longer than held: from the oldest read held, about SPAN_S.
        let w = h.window(10_000);
        let inc = w[0]["increase"].as_u64().unwrap();
        assert!((History::SPAN_S..=History::SPAN_S + History::COARSE_S).contains(&inc), "{w}");
    }

    #[test]
    fn history_with_one_read_gives_lifetime_figures() {
        let mut h = History::default();
        assert_eq!(h.window(60), json!([]));
        h.push(5, vec![counter(0, 7)]);
        assert_eq!(h.window(60)[0]["value"], 7);
        assert!(h.window(60)[0].get("rate_per_s").is_none());
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

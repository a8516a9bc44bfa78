//! License policy (TOML) and the alert conditions over usage records — pure functions.
//!
//! ```toml
//! rate_limit = "10m"                 # an alert condition fires at most once per this
//! [[license]]
//! app = "shop"                       # selectors: app, host, datacenter (all given must match)
//! classes = ["intel-xeon-icelake"]   # licensed processor classes
//! cores_per_instance = 2             # cores told or used by one JVM
//! cores_aggregate = 4                # cores told, summed over the matching JVMs
//! change_pct = 50                    # cores used changed by more than this vs the previous record
//! [[license.threshold]]
//! metric = "cores_used"              # cores_used | cores_peak | cores_told | rss_bytes | heap_bytes
//! above = 1.0
//! for = "5m"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{UsageError, UsageRecord};

/// A license policy file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// An alert condition fires at most once per this (default 10m).
    #[serde(default, with = "opt_dur")]
    pub rate_limit: Option<Duration>,
    /// The licenses.
    #[serde(default)]
    pub license: Vec<License>,
}

/// One license entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct License {
    /// Applies to this app only.
    pub app: Option<String>,
    /// Applies to this host label only.
    pub host: Option<String>,
    /// Applies to this datacenter label only.
    pub datacenter: Option<String>,
    /// Licensed processor classes (empty: any).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Cores per instance.
    pub cores_per_instance: Option<f64>,
    /// Cores told, summed over the matching instances.
    pub cores_aggregate: Option<f64>,
    /// Alert when cores used changed by more than this percentage against the previous record.
    pub change_pct: Option<f64>,
    /// User thresholds.
    #[serde(default)]
    pub threshold: Vec<Threshold>,
}

/// `metric > above for DURATION`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// `cores_used`, `cores_peak`, `cores_told`, `rss_bytes`, `heap_bytes`.
    pub metric: String,
    /// The limit.
    pub above: f64,
    /// How long it must hold (default 0s).
    #[serde(default, rename = "for", with = "opt_dur")]
    pub hold: Option<Duration>,
}

mod opt_dur {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(s.trim()).map_err(serde::de::Error::custom)).transpose()
    }
}

const METRICS: &[&str] = &["cores_used", "cores_peak", "cores_told", "rss_bytes", "heap_bytes"];

impl Policy {
    /// Parses and checks a policy.
    pub fn parse(text: &str) -> Result<Policy, UsageError> {
        let p: Policy = toml::from_str(text).map_err(|e| UsageError::Bad(format!("policy: {e}")))?;
        for l in &p.license {
            for t in &l.threshold {
                if !METRICS.contains(&t.metric.as_str()) {
                    return Err(UsageError::Bad(format!(
                        "policy: threshold metric `{}` unknown, expected one of {}",
                        t.metric,
                        METRICS.join(", ")
                    )));
                }
            }
        }
        Ok(p)
    }

    /// Reads a policy file.
    pub fn load(path: &std::path::Path) -> Result<Policy, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| UsageError::Bad(format!("{}: {e}", path.display())))?;
        Policy::parse(&text).map_err(|e| UsageError::Bad(format!("{}: {e}", path.display())))
    }

    /// The rate limit per condition.
    pub fn rate_limit_ms(&self) -> i64 {
        self.rate_limit.unwrap_or(Duration::from_secs(600)).as_millis() as i64
    }
}

impl License {
    /// Whether this license covers record `r`.
    pub fn matches(&self, r: &UsageRecord) -> bool {
        self.app.as_deref().is_none_or(|a| a == r.app)
            && self.host.as_deref().is_none_or(|h| h == r.host)
            && self.datacenter.as_deref().is_none_or(|d| d == r.datacenter)
    }

    /// A short name: `app=shop`, `datacenter=fra`, `*`.
    pub fn scope(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [("app", &self.app), ("host", &self.host), ("datacenter", &self.datacenter)] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        if parts.is_empty() {
            "*".into()
        } else {
            parts.join(",")
        }
    }
}

/// An alert condition that holds now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// `wrong_class`, `cores_told`, `cores_used`, `aggregate`, `threshold`, `change`.
    pub kind: &'static str,
    /// The app (for aggregates: the license's app, or `*`).
    pub app: String,
    /// The instance, for per-JVM conditions.
    pub instance: Option<String>,
    /// The condition's identity (dedup and rate limiting are per key).
    pub key: String,
    /// The measured value.
    pub value: f64,
    /// The limit.
    pub limit: f64,
    /// Human readable.
    pub reason: String,
}

fn metric(r: &UsageRecord, m: &str) -> f64 {
    match m {
        "cores_used" => r.cores_avg(),
        "cores_peak" => r.cores_peak(),
        "cores_told" => r.cores_told as f64,
        "rss_bytes" => r.rss_bytes as f64,
        "heap_bytes" => r.heap_bytes as f64,
        _ => 0.0,
    }
}

/// The conditions that hold for one interval's records `batch` (one per JVM), given each
/// instance's previous record `prev` and `since` (when each threshold condition started
/// to hold; updated here).
pub fn conditions(
    p: &Policy,
    batch: &[UsageRecord],
    prev: &HashMap<String, UsageRecord>,
    since: &mut HashMap<String, i64>,
) -> Vec<Alert> {
    let mut out = Vec::new();
    let mut seen_keys = Vec::new();
    for (li, l) in p.license.iter().enumerate() {
        let scope = l.scope();
        let mine: Vec<&UsageRecord> = batch.iter().filter(|r| l.matches(r)).collect();
        for r in &mine {
            let inst = Some(r.instance.clone());
            if !l.classes.is_empty() && !l.classes.contains(&r.proc_class) {
                out.push(Alert {
                    kind: "wrong_class",
                    app: r.app.clone(),
                    instance: inst.clone(),
                    key: format!("{li}/wrong_class/{}", r.instance),
                    value: 0.0,
                    limit: 0.0,
                    reason: format!(
                        "{} runs on {} ({}), licensed for {} ({scope})",
                        r.instance,
                        r.proc_class,
                        r.cpu_model,
                        l.classes.join(", ")
                    ),
                });
            }
            if let Some(lim) = l.cores_per_instance {
                if r.cores_told as f64 > lim {
                    out.push(Alert {
                        kind: "cores_told",
                        app: r.app.clone(),
                        instance: inst.clone(),
                        key: format!("{li}/cores_told/{}", r.instance),
                        value: r.cores_told as f64,
                        limit: lim,
                        reason: format!(
                            "{} was told {} cores, licensed {lim} per instance ({scope})",
                            r.instance, r.cores_told
                        ),
                    });
                }
                if r.cores_avg() > lim {
                    out.push(Alert {
                        kind: "cores_used",
                        app: r.app.clone(),
                        instance: inst.clone(),
                        key: format!("{li}/cores_used/{}", r.instance),
                        value: r.cores_avg(),
                        limit: lim,
                        reason: format!(
                            "{} used {:.3} cores, licensed {lim} per instance ({scope})",
                            r.instance,
                            r.cores_avg()
                        ),
                    });
                }
            }
            if let (Some(pct), Some(old)) = (l.change_pct, prev.get(&r.instance)) {
                let (a, b) = (old.cores_avg(), r.cores_avg());
                let base = a.max(0.01);
                let change = (b - a).abs() / base * 100.0;
                if change > pct {
                    out.push(Alert {
                        kind: "change",
                        app: r.app.clone(),
                        instance: inst.clone(),
                        key: format!("{li}/change/{}", r.instance),
                        value: change,
                        limit: pct,
                        reason: format!(
                            "{} cores used went from {a:.3} to {b:.3} ({change:.0} % > {pct} %)",
                            r.instance
                        ),
                    });
                }
            }
            for (ti, t) in l.threshold.iter().enumerate() {
                let key = format!("{li}/threshold{ti}/{}", r.instance);
                let v = metric(r, &t.metric);
                if v > t.above {
                    seen_keys.push(key.clone());
                    // The condition holds since the start of the first interval above.
                    let start = *since.entry(key.clone()).or_insert(r.at_ms - r.interval_ms);
                    let hold = t.hold.unwrap_or_default().as_millis() as i64;
                    if r.at_ms - start >= hold {
                        out.push(Alert {
                            kind: "threshold",
                            app: r.app.clone(),
                            instance: inst.clone(),
                            key,
                            value: v,
                            limit: t.above,
                            reason: format!(
                                "{}: {} = {v:.3} > {} for {}s",
                                r.instance,
                                t.metric,
                                t.above,
                                (r.at_ms - start) / 1000
                            ),
                        });
                    }
                }
            }
        }
        if let Some(lim) = l.cores_aggregate {
            let told: i64 = mine.iter().map(|r| r.cores_told).sum();
            let used: f64 = mine.iter().map(|r| r.cores_avg()).sum();
            if told as f64 > lim || used > lim {
                out.push(Alert {
                    kind: "aggregate",
                    app: l.app.clone().unwrap_or_else(|| "*".into()),
                    instance: None,
                    key: format!("{li}/aggregate"),
                    value: (told as f64).max(used),
                    limit: lim,
                    reason: format!(
                        "{} instances ({scope}) were told {told} cores and used {used:.3}, licensed {lim} in aggregate",
                        mine.len()
                    ),
                });
            }
        }
    }
    // A threshold that stopped holding starts over.
    since.retain(|k, _| seen_keys.contains(k) || !batch.iter().any(|r| k.ends_with(&format!("/{}", r.instance))));
    out
}

/// Deduplication and rate limiting per condition: a condition fires when it starts to hold
/// (not again while it keeps holding), and at most once per `rate_limit_ms`.
#[derive(Debug, Default)]
pub struct Gate {
    active: BTreeMap<String, (String, &'static str)>,
    last_fired: HashMap<String, i64>,
}

impl Gate {
    /// Of the conditions holding `now`, those that fire.
    pub fn fire(&mut self, holding: Vec<Alert>, now_ms: i64, rate_limit_ms: i64) -> Vec<Alert> {
        let mut fired = Vec::new();
        let mut next = BTreeMap::new();
        for a in holding {
            let was = self.active.contains_key(&a.key);
            next.insert(a.key.clone(), (a.app.clone(), a.kind));
            if was {
                continue;
            }
            let ok = self.last_fired.get(&a.key).is_none_or(|t| now_ms - t >= rate_limit_ms);
            if ok {
                self.last_fired.insert(a.key.clone(), now_ms);
                fired.push(a);
            }
        }
        self.active = next;
        fired
    }

    /// (app, kind) of every condition holding now.
    pub fn active(&self) -> impl Iterator<Item = &(String, &'static str)> {
        self.active.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(inst: &str, class: &str, told: i64, used_milli: i64, at: i64) -> UsageRecord {
        UsageRecord {
            app: "shop".into(),
            instance: inst.into(),
            host: "h1".into(),
            datacenter: "fra".into(),
            proc_class: class.into(),
            cores_told: told,
            cores_avg_milli: used_milli,
            cores_peak_milli: used_milli,
            at_ms: at,
            interval_ms: 60_000,
            ..UsageRecord::default()
        }
    }

    fn kinds(a: &[Alert]) -> Vec<&str> {
        a.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn table() {
        let policy = Policy::parse(
            r#"
            [[license]]
            app = "shop"
            classes = ["intel-xeon-icelake"]
            cores_per_instance = 2
            cores_aggregate = 4
            change_pct = 50
            [[license.threshold]]
            metric = "cores_used"
            above = 1.0
            for = "2m"
            "#,
        )
        .unwrap();
        let ok = "intel-xeon-icelake";
        // (batch, prev, expected kinds)
        let cases: Vec<(Vec<UsageRecord>, Vec<UsageRecord>, Vec<&str>)> = vec![
            (vec![rec("a", ok, 2, 500, 60_000)], vec![], vec![]),
            (vec![rec("a", "amd-epyc-zen3", 2, 500, 60_000)], vec![], vec!["wrong_class"]),
            (vec![rec("a", ok, 3, 500, 60_000)], vec![], vec!["cores_told"]),
            (vec![rec("a", ok, 2, 2500, 60_000)], vec![], vec!["cores_used"]),
            // Each alone within 2 per instance, 3 × 2 = 6 > 4 in aggregate.
            (
                vec![rec("a", ok, 2, 100, 60_000), rec("b", ok, 2, 100, 60_000), rec("c", ok, 2, 100, 60_000)],
                vec![],
                vec!["aggregate"],
            ),
            (vec![rec("a", ok, 2, 500, 120_000)], vec![rec("a", ok, 2, 200, 60_000)], vec!["change"]),
            (vec![rec("a", ok, 2, 220, 120_000)], vec![rec("a", ok, 2, 200, 60_000)], vec![]),
            // Another app is not covered.
            (vec![UsageRecord { app: "other".into(), ..rec("z", "amd", 64, 9000, 60_000) }], vec![], vec![]),
        ];
        for (i, (batch, prev, want)) in cases.into_iter().enumerate() {
            let prev = prev.into_iter().map(|r| (r.instance.clone(), r)).collect();
            let got = conditions(&policy, &batch, &prev, &mut HashMap::new());
            assert_eq!(kinds(&got), want, "case {i}");
        }
    }

    #[test]
    fn threshold_holds_for() {
        let policy =
            Policy::parse("[[license]]\n[[license.threshold]]\nmetric = \"cores_used\"\nabove = 1.0\nfor = \"2m\"\n")
                .unwrap();
        let mut since = HashMap::new();
        let none = HashMap::new();
        let r = |used, at| rec("a", "x", 1, used, at);
        assert!(conditions(&policy, &[r(1500, 60_000)], &none, &mut since).is_empty());
        assert_eq!(kinds(&conditions(&policy, &[r(1500, 120_000)], &none, &mut since)), ["threshold"]);
        // Dropping below resets the clock.
        assert!(conditions(&policy, &[r(500, 180_000)], &none, &mut since).is_empty());
        assert!(conditions(&policy, &[r(1500, 240_000)], &none, &mut since).is_empty());
    }

    #[test]
    fn gate_dedups_and_rate_limits() {
        let a = |k: &str| Alert {
            kind: "cores_used",
            app: "shop".into(),
            instance: None,
            key: k.into(),
            value: 0.0,
            limit: 0.0,
            reason: String::new(),
        };
        let mut g = Gate::default();
        assert_eq!(g.fire(vec![a("x")], 0, 1000).len(), 1);
        assert_eq!(g.fire(vec![a("x")], 100, 1000).len(), 0, "still holding: no repeat");
        assert_eq!(g.fire(vec![], 200, 1000).len(), 0);
        assert_eq!(g.fire(vec![a("x")], 300, 1000).len(), 0, "flapping within the rate limit");
        assert_eq!(g.fire(vec![], 400, 1000).len(), 0);
        assert_eq!(g.fire(vec![a("x"), a("y")], 1500, 1000).len(), 2);
        assert_eq!(g.active().count(), 2);
    }
}

//! Usage reports (JSON, CSV, self-contained HTML with SVG charts) and export bundles.
//!
//! Figures: a JVM's `cores_avg` is the mean of its records' averages, `cores_peak` the
//! largest record peak. A group's per-class figures come from time buckets
//! (`bucket_ms`): per bucket, the sum over the group's JVMs of that class of the records'
//! average (and peak) cores. `cores_avg` is the mean of the bucket sums, `cores_peak` the
//! largest bucket sum of peaks, `cores_p95` the nearest-rank 95th percentile of the bucket
//! sums of averages; the suggested license is `ceil(p95 × (1 + headroom))`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ledger::Ledger;
use super::policy::Policy;
use super::{head_message, hex, hmac, unhex, UsageError, UsageRecord};

/// How to group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// By app.
    App,
    /// By host label.
    Host,
    /// By datacenter label.
    Datacenter,
}

impl GroupBy {
    /// From `app`, `host`, `datacenter`.
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "app" => GroupBy::App,
            "host" => GroupBy::Host,
            "datacenter" => GroupBy::Datacenter,
            _ => return None,
        })
    }
}

/// Report parameters.
#[derive(Clone, Debug)]
pub struct Params {
    /// Start, ms (inclusive).
    pub from_ms: i64,
    /// End, ms (exclusive).
    pub to_ms: i64,
    /// Grouping.
    pub group_by: GroupBy,
    /// Bucket length for group sums (default 60 s).
    pub bucket_ms: i64,
    /// Headroom over the p95 for the suggested license, percent (default 20).
    pub headroom_pct: f64,
    /// Licensed cores per group, from a policy.
    pub policy: Option<Policy>,
    /// Under-use: below this fraction of the licensed cores (default 0.5).
    pub under_ratio: f64,
}

/// A period `[from_ms, to_ms)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// Start.
    pub from_ms: i64,
    /// End.
    pub to_ms: i64,
}

/// Per JVM.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JvmRow {
    /// Host label.
    pub host: String,
    /// Instance.
    pub instance: String,
    /// App.
    pub app: String,
    /// Datacenter.
    pub datacenter: String,
    /// Processor class (the last one seen).
    pub proc_class: String,
    /// Records.
    pub records: u64,
    /// Cores used, mean.
    pub cores_avg: f64,
    /// Cores used, peak.
    pub cores_peak: f64,
    /// Cores told, max.
    pub cores_told_max: i64,
    /// RSS, mean.
    pub rss_avg_bytes: i64,
    /// RSS, peak.
    pub rss_peak_bytes: i64,
    /// Heap, peak.
    pub heap_peak_bytes: i64,
    /// Storage bytes read.
    pub io_read_bytes: i64,
    /// Storage bytes written.
    pub io_write_bytes: i64,
    /// License alerts for this instance.
    pub alerts: u64,
    #[serde(skip)]
    sum_avg: i64,
    #[serde(skip)]
    sum_rss: i64,
    #[serde(skip)]
    chart: Vec<(i64, u32)>,
}

/// Per group and processor class.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    /// Processor class.
    pub proc_class: String,
    /// Mean of bucket sums.
    pub cores_avg: f64,
    /// Largest bucket sum of peaks.
    pub cores_peak: f64,
    /// p95 of bucket sums of averages.
    pub cores_p95: f64,
    /// ceil(p95 × (1 + headroom)).
    pub suggested_cores: i64,
}

/// Per group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupRow {
    /// The group's value.
    pub group: String,
    /// JVMs.
    pub jvms: u64,
    /// Per processor class.
    pub classes: Vec<ClassRow>,
    /// Licensed cores (aggregate) from the policy.
    pub licensed_cores: Option<f64>,
    /// RSS, peak bucket sum.
    pub rss_peak_bytes: i64,
    /// Storage bytes read.
    pub io_read_bytes: i64,
    /// Storage bytes written.
    pub io_write_bytes: i64,
    /// License alerts.
    pub alerts: u64,
    /// Buckets whose sum of average cores exceeded the licensed cores, merged.
    pub over_use: Vec<Period>,
    /// Buckets whose sum of peak cores stayed under `under_ratio` × licensed, merged.
    pub under_use: Vec<Period>,
    #[serde(skip)]
    chart: Vec<(i64, u32)>,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Range start.
    pub from_ms: i64,
    /// Range end.
    pub to_ms: i64,
    /// Grouping.
    pub group_by: GroupBy,
    /// Bucket length.
    pub bucket_ms: i64,
    /// Headroom.
    pub headroom_pct: f64,
    /// Records read.
    pub records: u64,
    /// Per JVM.
    pub jvms: Vec<JvmRow>,
    /// Per group.
    pub groups: Vec<GroupRow>,
    /// Suggested license over everything: cores per processor class.
    pub suggested: BTreeMap<String, i64>,
}

const CHART_BINS: usize = 48;

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile of `v` (sorted here).
pub fn percentile(v: &mut [i64], p: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

#[derive(Default)]
struct Bucket {
    avg: i64,
    peak: i64,
    rss: i64,
}

/// A JVM's open bucket: (bucket, Σ avg, records, max peak, max rss).
type Acc = (i64, i64, i64, i64, i64);

/// The fields of one record that a report reads, borrowed (a store is scanned without
/// copying its strings).
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    /// End of the interval, ms.
    pub at_ms: i64,
    /// Host label.
    pub host: &'a str,
    /// Datacenter label.
    pub datacenter: &'a str,
    /// App.
    pub app: &'a str,
    /// Instance.
    pub instance: &'a str,
    /// Processor class.
    pub proc_class: &'a str,
    /// Cores told.
    pub cores_told: i64,
    /// Cores used, average, millicores.
    pub cores_avg_milli: i64,
    /// Cores used, peak, millicores.
    pub cores_peak_milli: i64,
    /// RSS, bytes.
    pub rss_bytes: i64,
    /// Heap used, bytes.
    pub heap_bytes: i64,
    /// Storage bytes read (-1 unknown).
    pub io_read_bytes: i64,
    /// Storage bytes written (-1 unknown).
    pub io_write_bytes: i64,
}

impl UsageRecord {
    /// The fields a report reads.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            at_ms: self.at_ms,
            host: &self.host,
            datacenter: &self.datacenter,
            app: &self.app,
            instance: &self.instance,
            proc_class: &self.proc_class,
            cores_told: self.cores_told,
            cores_avg_milli: self.cores_avg_milli,
            cores_peak_milli: self.cores_peak_milli,
            rss_bytes: self.rss_bytes,
            heap_bytes: self.heap_bytes,
            io_read_bytes: self.io_read_bytes,
            io_write_bytes: self.io_write_bytes,
        }
    }
}

/// Interned labels (group values and processor classes): an id per distinct string.
#[derive(Default)]
struct Names {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(i) = self.ids.get(s) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }
}

/// A JVM's row and its open buckets, one per (group id, class id) it has records in (with
/// the index of that pair's series).
struct JvmAcc {
    row: JvmRow,
    open: Vec<(u32, u32, usize, Acc)>,
    /// (group id, class id) of its last record.
    ids: Option<(u32, u32)>,
    /// The key of its last record, when added with one ([`Builder::add_keyed`]).
    key: Option<u32>,
    /// The group ids it has records in.
    groups: Vec<u32>,
}

/// `v[i]`'s index, `v` grown to hold it.
fn grow<T: Default>(v: &mut Vec<T>, i: u32) -> usize {
    let i = i as usize;
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    i
}

/// Values by bucket, in bucket order. Buckets are closed nearly in time order, so finding
/// one is almost always a look at the last.
struct Series<T>(Vec<(i64, T)>);

impl<T: Default> Series<T> {
    fn at(&mut self, b: i64) -> &mut T {
        let i = match self.0.last() {
            Some((last, _)) if *last == b => self.0.len() - 1,
            Some((last, _)) if *last > b => match self.0.binary_search_by_key(&b, |x| x.0) {
                Ok(i) => i,
                Err(i) => {
                    self.0.insert(i, (b, T::default()));
                    i
                }
            },
            _ => {
                self.0.push((b, T::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|x| &x.1)
    }
}

/// Builds reports from records fed one by one. Labels are interned and JVMs numbered, so
/// a record costs no allocation once its JVM was seen.
pub struct Builder {
    p: Params,
    records: u64,
    names: Names,
    /// host → instance → index in `jvms`.
    by_host: HashMap<String, HashMap<String, usize>>,
    jvms: Vec<JvmAcc>,
    /// (group, class) → index in `buckets`.
    pairs: HashMap<(u32, u32), usize>,
    /// Per (group, class): bucket → sums over the group's JVMs of that class.
    buckets: Vec<((u32, u32), Series<Bucket>)>,
    /// Per group id: its JVMs (indices in `jvms`, each once).
    group_jvms: Vec<Vec<usize>>,
    /// Per group id: storage bytes read and written.
    group_io: Vec<(i64, i64)>,
    /// Per key of [`Builder::add_keyed`]: the JVM's index and its (group id, class id).
    keyed: Vec<Option<(usize, (u32, u32))>>,
    /// Per class id: bucket → sum of averages over every JVM of that class.
    all: Vec<Series<i64>>,
    alerts: Vec<(i64, String, String, String)>,
}

fn set(dst: &mut String, src: &str) {
    if dst != src {
        src.clone_into(dst);
    }
}

impl Builder {
    /// A builder with `p`.
    pub fn new(p: Params) -> Builder {
        Builder {
            p,
            records: 0,
            names: Names::default(),
            by_host: HashMap::new(),
            jvms: Vec::new(),
            pairs: HashMap::new(),
            buckets: Vec::new(),
            group_jvms: Vec::new(),
            group_io: Vec::new(),
            keyed: Vec::new(),
            all: Vec::new(),
            alerts: Vec::new(),
        }
    }

    fn bin(&self, at: i64) -> usize {
        let span = (self.p.to_ms - self.p.from_ms).max(1);
        (((at - self.p.from_ms).max(0) as i128 * CHART_BINS as i128 / span as i128) as usize).min(CHART_BINS - 1)
    }

    /// Adds one record (ignored outside the range).
    pub fn add(&mut self, r: &UsageRecord) {
        self.add_fields(&r.fields());
    }

    /// Adds one record's fields (ignored outside the range).
    pub fn add_fields(&mut self, r: &Fields<'_>) {
        if r.at_ms < self.p.from_ms || r.at_ms >= self.p.to_ms {
            return;
        }
        let idx = self.jvm(r.host, r.instance);
        // The JVM's labels rarely change: reuse the ids of its last record when they did not.
        let acc = &self.jvms[idx];
        let same = acc.row.proc_class == r.proc_class
            && match self.p.group_by {
                GroupBy::App => acc.row.app == r.app,
                GroupBy::Host => true,
                GroupBy::Datacenter => acc.row.datacenter == r.datacenter,
            };
        let (g, c) = match acc.ids.filter(|_| same) {
            Some(ids) => ids,
            None => self.ids(r),
        };
        self.label(idx, r, (g, c), None);
        self.measure(idx, (g, c), r);
    }

    /// Adds one record's fields (ignored outside the range), with `key` naming its labels
    /// (host, instance, app, datacenter, processor class): records with the same key must
    /// have the same labels. The labels are then looked at once per key, and when a JVM's
    /// key changes.
    pub fn add_keyed(&mut self, key: u32, r: &Fields<'_>) {
        if r.at_ms < self.p.from_ms || r.at_ms >= self.p.to_ms {
            return;
        }
        let k = key as usize;
        if self.keyed.len() <= k {
            self.keyed.resize(k + 1, None);
        }
        let (idx, ids) = match self.keyed[k] {
            Some(x) => x,
            None => {
                let x = (self.jvm(r.host, r.instance), self.ids(r));
                self.keyed[k] = Some(x);
                x
            }
        };
        if self.jvms[idx].key != Some(key) {
            self.label(idx, r, ids, Some(key));
        }
        self.measure(idx, ids, r);
    }

    /// The index of the JVM `(host, instance)` in `jvms`, added when new.
    fn jvm(&mut self, host: &str, instance: &str) -> usize {
        if let Some(i) = self.by_host.get(host).and_then(|m| m.get(instance)) {
            return *i;
        }
        let i = self.jvms.len();
        self.by_host.entry(host.to_string()).or_default().insert(instance.to_string(), i);
        self.jvms.push(JvmAcc {
            row: JvmRow {
                host: host.to_string(),
                instance: instance.to_string(),
                chart: vec![(0, 0); CHART_BINS],
                ..JvmRow::default()
            },
            open: Vec::new(),
            ids: None,
            key: None,
            groups: Vec::new(),
        });
        i
    }

    /// The (group id, class id) of a record.
    fn ids(&mut self, r: &Fields<'_>) -> (u32, u32) {
        let g = self.names.id(match self.p.group_by {
            GroupBy::App => r.app,
            GroupBy::Host => r.host,
            GroupBy::Datacenter => r.datacenter,
        });
        (g, self.names.id(r.proc_class))
    }

    /// Gives JVM `idx` the labels of `r` (the last record's are the row's).
    fn label(&mut self, idx: usize, r: &Fields<'_>, ids: (u32, u32), key: Option<u32>) {
        let acc = &mut self.jvms[idx];
        acc.ids = Some(ids);
        acc.key = key;
        let j = &mut acc.row;
        set(&mut j.app, r.app);
        set(&mut j.datacenter, r.datacenter);
        set(&mut j.proc_class, r.proc_class);
        if !acc.groups.contains(&ids.0) {
            acc.groups.push(ids.0);
            let g = grow(&mut self.group_jvms, ids.0);
            self.group_jvms[g].push(idx);
        }
    }

    /// Adds the numbers of `r` to JVM `idx`, of group and class `(g, c)`.
    fn measure(&mut self, idx: usize, (g, c): (u32, u32), r: &Fields<'_>) {
        self.records += 1;
        let bin = self.bin(r.at_ms);
        let b = (r.at_ms - self.p.from_ms) / self.p.bucket_ms.max(1);
        let acc = &mut self.jvms[idx];
        let j = &mut acc.row;
        j.records += 1;
        j.sum_avg += r.cores_avg_milli;
        j.cores_peak = j.cores_peak.max(r.cores_peak_milli as f64 / 1000.0);
        j.cores_told_max = j.cores_told_max.max(r.cores_told);
        j.sum_rss += r.rss_bytes.max(0);
        j.rss_peak_bytes = j.rss_peak_bytes.max(r.rss_bytes);
        j.heap_peak_bytes = j.heap_peak_bytes.max(r.heap_bytes);
        j.io_read_bytes += r.io_read_bytes.max(0);
        j.io_write_bytes += r.io_write_bytes.max(0);
        j.chart[bin].0 += r.cores_avg_milli;
        j.chart[bin].1 += 1;
        // A JVM contributes the mean of its records within a bucket (its records arrive in
        // time order, so a bucket is closed when its next record is in a later one).
        let slot = match acc.open.iter().position(|o| o.0 == g && o.1 == c) {
            Some(s) => s,
            None => {
                let series = *self.pairs.entry((g, c)).or_insert_with(|| {
                    self.buckets.push(((g, c), Series(Vec::new())));
                    self.buckets.len() - 1
                });
                acc.open.push((g, c, series, (b, 0, 0, 0, 0)));
                acc.open.len() - 1
            }
        };
        let series = acc.open[slot].2;
        let done = (acc.open[slot].3 .0 != b).then(|| std::mem::replace(&mut acc.open[slot].3, (b, 0, 0, 0, 0)));
        let o = &mut acc.open[slot].3;
        o.1 += r.cores_avg_milli;
        o.2 += 1;
        o.3 = o.3.max(r.cores_peak_milli);
        o.4 = o.4.max(r.rss_bytes.max(0));
        if let Some(done) = done {
            self.close(series, c, done);
        }
        let gi = grow(&mut self.group_io, g);
        let io = &mut self.group_io[gi];
        io.0 += r.io_read_bytes.max(0);
        io.1 += r.io_write_bytes.max(0);
    }

    /// Adds a JVM's closed bucket to its (group, class) series `series` and to `class`.
    fn close(&mut self, series: usize, class: u32, (b, sum, n, peak, rss): Acc) {
        if n == 0 {
            return;
        }
        let avg = sum / n;
        let e = self.buckets[series].1.at(b);
        e.avg += avg;
        e.peak += peak;
        e.rss += rss;
        let class = class as usize;
        if self.all.len() <= class {
            self.all.resize_with(class + 1, || Series(Vec::new()));
        }
        *self.all[class].at(b) += avg;
    }

    /// Adds license alerts (at_ms, app, instance, kind).
    pub fn add_alerts(&mut self, a: impl IntoIterator<Item = (i64, String, String, String)>) {
        let (from, to) = (self.p.from_ms, self.p.to_ms);
        self.alerts.extend(a.into_iter().filter(|x| x.0 >= from && x.0 < to));
    }

    fn licensed(&self, group: &str) -> Option<f64> {
        let p = self.p.policy.as_ref()?;
        p.license
            .iter()
            .find(|l| match self.p.group_by {
                GroupBy::App => l.app.as_deref() == Some(group),
                GroupBy::Host => l.host.as_deref() == Some(group),
                GroupBy::Datacenter => l.datacenter.as_deref() == Some(group),
            })
            .and_then(|l| l.cores_aggregate)
    }

    /// The report.
    pub fn finish(mut self) -> Report {
        let open: Vec<(u32, u32, usize, Acc)> =
            self.jvms.iter_mut().flat_map(|j| std::mem::take(&mut j.open)).collect();
        for (_, c, series, acc) in open {
            self.close(series, c, acc);
        }
        let headroom = 1.0 + self.p.headroom_pct / 100.0;
        let suggest = |p95: i64| ((p95 as f64 / 1000.0) * headroom - 1e-9).ceil().max(0.0) as i64;
        let mut jvms: Vec<JvmRow> = self.jvms.iter().map(|j| j.row.clone()).collect();
        jvms.sort_by(|a, b| (&a.host, &a.instance).cmp(&(&b.host, &b.instance)));
        for j in &mut jvms {
            j.cores_avg = r3(j.sum_avg as f64 / j.records.max(1) as f64 / 1000.0);
            j.rss_avg_bytes = j.sum_rss / j.records.max(1) as i64;
            j.alerts = self.alerts.iter().filter(|a| a.2 == j.instance && a.1 == j.app).count() as u64;
        }
        let name = |i: u32| self.names.names[i as usize].as_str();
        // group → class → buckets, in name order.
        let mut by_group: BTreeMap<&str, (u32, BTreeMap<&str, &Series<Bucket>>)> = BTreeMap::new();
        for ((g, c), bs) in &self.buckets {
            by_group.entry(name(*g)).or_insert((*g, BTreeMap::new())).1.insert(name(*c), bs);
        }
        let mut groups = Vec::new();
        for (g, (gid, classes)) in &by_group {
            let licensed = self.licensed(g);
            let mut rows = Vec::new();
            // Totals over classes per bucket, for over/under use and the chart.
            let mut total: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
            for (class, bs) in classes {
                let mut avgs: Vec<i64> = bs.values().map(|b| b.avg).collect();
                let n = avgs.len().max(1) as f64;
                let mean = avgs.iter().sum::<i64>() as f64 / n / 1000.0;
                let peak = bs.values().map(|b| b.peak).max().unwrap_or(0);
                let p95 = percentile(&mut avgs, 95.0);
                rows.push(ClassRow {
                    proc_class: class.to_string(),
                    cores_avg: r3(mean),
                    cores_peak: r3(peak as f64 / 1000.0),
                    cores_p95: r3(p95 as f64 / 1000.0),
                    suggested_cores: suggest(p95),
                });
                for (b, x) in bs.0.iter() {
                    let t = total.entry(*b).or_default();
                    t.0 += x.avg;
                    t.1 += x.peak;
                    t.2 += x.rss;
                }
            }
            let mut over = Vec::new();
            let mut under = Vec::new();
            let bucket = self.p.bucket_ms.max(1);
            let mut chart = vec![(0i64, 0u32); CHART_BINS];
            for (b, (avg, peak, _)) in &total {
                let at = self.p.from_ms + b * bucket;
                let bin = self.bin(at);
                chart[bin].0 += avg;
                chart[bin].1 += 1;
                if let Some(l) = licensed {
                    let lim = (l * 1000.0) as i64;
                    if *avg > lim {
                        push_period(&mut over, at, at + bucket);
                    }
                    if (*peak as f64) < l * 1000.0 * self.p.under_ratio {
                        push_period(&mut under, at, at + bucket);
                    }
                }
            }
            let (io_r, io_w) = self.group_io.get(*gid as usize).copied().unwrap_or_default();
            let members: Vec<&str> = self
                .group_jvms
                .get(*gid as usize)
                .map(|s| s.iter().map(|i| self.jvms[*i].row.instance.as_str()).collect())
                .unwrap_or_default();
            let alerts = self
                .alerts
                .iter()
                .filter(|a| match self.p.group_by {
                    GroupBy::App => a.1 == *g,
                    _ => members.contains(&a.2.as_str()),
                })
                .count() as u64;
            groups.push(GroupRow {
                group: g.to_string(),
                jvms: members.len() as u64,
                classes: rows,
                licensed_cores: licensed,
                rss_peak_bytes: total.values().map(|t| t.2).max().unwrap_or(0),
                io_read_bytes: io_r,
                io_write_bytes: io_w,
                alerts,
                over_use: over,
                under_use: under,
                chart,
            });
        }
        let suggested = self
            .all
            .iter()
            .enumerate()
            .filter(|(_, bs)| !bs.0.is_empty())
            .map(|(c, bs)| {
                let mut v: Vec<i64> = bs.values().copied().collect();
                (name(c as u32).to_string(), suggest(percentile(&mut v, 95.0)))
            })
            .collect();
        Report {
            from_ms: self.p.from_ms,
            to_ms: self.p.to_ms,
            group_by: self.p.group_by,
            bucket_ms: self.p.bucket_ms,
            headroom_pct: self.p.headroom_pct,
            records: self.records,
            jvms,
            groups,
            suggested,
        }
    }
}

fn push_period(v: &mut Vec<Period>, from: i64, to: i64) {
    if let Some(last) = v.last_mut() {
        if last.to_ms == from {
            last.to_ms = to;
            return;
        }
    }
    v.push(Period { from_ms: from, to_ms: to });
}

/// The report as CSV: one `jvm` row per JVM, one `group` row per group and class.
pub fn to_csv(r: &Report) -> String {
    let mut out = String::from(
        "section,group,host,instance,app,proc_class,records,cores_avg,cores_peak,cores_p95,suggested_cores,\
         licensed_cores,cores_told_max,rss_peak_bytes,io_read_bytes,io_write_bytes,alerts\n",
    );
    let q = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    for j in &r.jvms {
        out.push_str(&format!(
            "jvm,,{},{},{},{},{},{},{},,,,{},{},{},{},{}\n",
            q(&j.host),
            q(&j.instance),
            q(&j.app),
            q(&j.proc_class),
            j.records,
            j.cores_avg,
            j.cores_peak,
            j.cores_told_max,
            j.rss_peak_bytes,
            j.io_read_bytes,
            j.io_write_bytes,
            j.alerts
        ));
    }
    for g in &r.groups {
        for c in &g.classes {
            out.push_str(&format!(
                "group,{},,,,{},,{},{},{},{},{},,{},{},{},{}\n",
                q(&g.group),
                q(&c.proc_class),
                c.cores_avg,
                c.cores_peak,
                c.cores_p95,
                c.suggested_cores,
                g.licensed_cores.map(|l| l.to_string()).unwrap_or_default(),
                g.rss_peak_bytes,
                g.io_read_bytes,
                g.io_write_bytes,
                g.alerts
            ));
        }
    }
    for (c, n) in &r.suggested {
        out.push_str(&format!("suggested,,,,,{},,,,,{n},,,,,,\n", q(c)));
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A bar chart: `bars` of (label, value, optional reference line value).
fn svg_bars(title: &str, bars: &[(String, f64)], reference: Option<f64>, unit: &str) -> String {
    let (w, h, pad) = (640.0, 180.0, 30.0);
    let max = bars.iter().map(|b| b.1).fold(reference.unwrap_or(0.0), f64::max).max(0.001);
    let bw = (w - 2.0 * pad) / bars.len().max(1) as f64;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\"><rect width=\"{w}\" height=\"{h}\" fill=\"#fafafa\"/>",
        esc(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let bh = v / max * (h - 2.0 * pad);
        let x = pad + i as f64 * bw;
        s.push_str(&format!(
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#3b7dd8\"><title>{}: {v:.3} {unit}</title></rect>",
            h - pad - bh,
            (bw - 1.0).max(1.0),
            esc(label)
        ));
    }
    if let Some(r) = reference {
        let y = h - pad - r / max * (h - 2.0 * pad);
        s.push_str(&format!(
            "<line x1=\"{pad}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d33\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" fill=\"#d33\" text-anchor=\"end\">licensed {r}</text>",
            w - pad,
            w - pad,
            y - 3.0
        ));
    }
    s.push_str(&format!(
        "<text x=\"{pad}\" y=\"14\" font-size=\"11\">max {max:.3} {unit}</text><line x1=\"{pad}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#555\"/></svg></figure>",
        w - pad,
        h - pad,
        h - pad
    ));
    s
}

fn chart_bars(r: &Report, chart: &[(i64, u32)]) -> Vec<(String, f64)> {
    let span = (r.to_ms - r.from_ms).max(1);
    chart
        .iter()
        .enumerate()
        .map(|(i, (sum, n))| {
            let at = r.from_ms + span * i as i64 / CHART_BINS as i64;
            (
                crate::report::rfc3339(at.max(0) as u64 * 1_000_000).unwrap_or_default(),
                if *n == 0 { 0.0 } else { *sum as f64 / *n as f64 / 1000.0 },
            )
        })
        .collect()
}

/// The report as one self-contained HTML page with inline SVG charts.
pub fn to_html(r: &Report) -> String {
    let t = |ms: i64| crate::report::rfc3339(ms.max(0) as u64 * 1_000_000).unwrap_or_default();
    let mut s = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>jvmwatch usage report</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#eee}}td:first-child{{text-align:left}}\
         figure{{display:inline-block;margin:0.5em}}figcaption{{font-weight:bold}}.over{{color:#b00}}</style></head><body>\
         <h1>Usage report</h1><p>{} to {} · grouped by {:?} · {} records · buckets of {} s · headroom {} %</p>",
        t(r.from_ms),
        t(r.to_ms),
        r.group_by,
        r.records,
        r.bucket_ms / 1000,
        r.headroom_pct
    );
    s.push_str("<h2>Suggested license</h2><table id=\"suggested\"><tr><th>processor class</th><th>cores</th></tr>");
    for (c, n) in &r.suggested {
        s.push_str(&format!("<tr><td>{}</td><td>{n}</td></tr>", esc(c)));
    }
    s.push_str("</table><h2>Groups</h2><table id=\"groups\"><tr><th>group</th><th>JVMs</th><th>class</th><th>avg cores</th>\
                <th>peak cores</th><th>p95 cores</th><th>suggested</th><th>licensed</th><th>alerts</th><th>over-use</th></tr>");
    for g in &r.groups {
        for c in &g.classes {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"over\">{}</td></tr>",
                esc(&g.group),
                g.jvms,
                esc(&c.proc_class),
                c.cores_avg,
                c.cores_peak,
                c.cores_p95,
                c.suggested_cores,
                g.licensed_cores.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                g.alerts,
                g.over_use.iter().map(|p| format!("{} – {}", t(p.from_ms), t(p.to_ms))).collect::<Vec<_>>().join("<br>")
            ));
        }
    }
    s.push_str("</table><h2>Peak against licensed</h2>");
    let peaks: Vec<(String, f64)> = r
        .groups
        .iter()
        .flat_map(|g| {
            let lic = g.licensed_cores;
            let peak = g.classes.iter().map(|c| c.cores_peak).sum::<f64>();
            [(format!("{} peak", g.group), peak), (format!("{} licensed", g.group), lic.unwrap_or(0.0))]
        })
        .collect();
    s.push_str(&svg_bars("peak cores (left) and licensed cores (right) per group", &peaks, None, "cores"));
    s.push_str("<h2>Usage over time per group</h2>");
    for g in &r.groups {
        s.push_str(&svg_bars(
            &format!("{} — cores used", g.group),
            &chart_bars(r, &g.chart),
            g.licensed_cores,
            "cores",
        ));
    }
    s.push_str("<h2>Usage over time per JVM</h2>");
    for j in r.jvms.iter().take(200) {
        s.push_str(&svg_bars(
            &format!("{} on {} ({})", j.instance, j.host, j.app),
            &chart_bars(r, &j.chart),
            None,
            "cores",
        ));
    }
    s.push_str("<h2>JVMs</h2><table id=\"jvms\"><tr><th>instance</th><th>host</th><th>app</th><th>datacenter</th><th>class</th>\
                <th>records</th><th>avg cores</th><th>peak cores</th><th>cores told</th><th>peak RSS</th><th>peak heap</th>\
                <th>read</th><th>written</th><th>alerts</th></tr>");
    for j in &r.jvms {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&j.instance),
            esc(&j.host),
            esc(&j.app),
            esc(&j.datacenter),
            esc(&j.proc_class),
            j.records,
            j.cores_avg,
            j.cores_peak,
            j.cores_told_max,
            j.rss_peak_bytes,
            j.heap_peak_bytes,
            j.io_read_bytes,
            j.io_write_bytes,
            j.alerts
        ));
    }
    s.push_str("</table></body></html>\n");
    s
}

/// An export bundle: a contiguous run of one ledger's records, their chain head, the
/// license alerts of the range, and (with a key) an HMAC over the head.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// `jvmwatch-usage-bundle/1`.
    pub format: String,
    /// When exported, ms.
    pub exported_ms: i64,
    /// Hex hash of the record before the first one (zeros from the start).
    pub prev_hash: String,
    /// Last seq.
    pub head_seq: i64,
    /// Hex hash of the last record.
    pub head_hash: String,
    /// Hex HMAC of the head (`prev_hash` + head message), when exported with a key.
    pub mac: Option<String>,
    /// The records.
    pub records: Vec<UsageRecord>,
    /// (at_ms, app, instance, kind).
    pub alerts: Vec<(i64, String, String, String)>,
}

const BUNDLE_FORMAT: &str = "jvmwatch-usage-bundle/1";

fn bundle_mac(key: &[u8], prev: &str, seq: i64, head: &[u8]) -> String {
    let mut msg = prev.as_bytes().to_vec();
    msg.extend(head_message(seq, head));
    hex(&hmac(key, &msg))
}

/// Exports the records of `[from_ms, to_ms)` of `ledger`.
pub fn export(
    ledger: &Ledger,
    from_ms: i64,
    to_ms: i64,
    key: Option<&[u8]>,
    now_ms: i64,
) -> Result<Bundle, UsageError> {
    let mut records = Vec::new();
    let mut head = [0u8; 32];
    let mut first_seq = None;
    ledger.for_each(from_ms, to_ms, |r, h| {
        first_seq.get_or_insert(r.seq);
        head = h.try_into().unwrap_or([0u8; 32]);
        records.push(r);
    })?;
    // A range must be a contiguous run of the chain to be checkable.
    for w in records.windows(2) {
        if w[1].seq != w[0].seq + 1 {
            return Err(UsageError::Bad(format!(
                "records {}..{} interleave with records outside the range; export a wider range",
                w[0].seq, w[1].seq
            )));
        }
    }
    let prev = hex(&ledger.hash_before(first_seq.unwrap_or(1))?);
    let head_seq = records.last().map_or(0, |r| r.seq);
    let mac = key.map(|k| bundle_mac(k, &prev, head_seq, &head));
    Ok(Bundle {
        format: BUNDLE_FORMAT.into(),
        exported_ms: now_ms,
        head_hash: hex(&head),
        prev_hash: prev,
        head_seq,
        mac,
        records,
        alerts: ledger.alerts(from_ms, to_ms)?,
    })
}

/// Reads and checks a bundle: its chain, and with `key`, its signature.
pub fn read_bundle(path: &Path, key: Option<&[u8]>) -> Result<Bundle, UsageError> {
    let text = std::fs::read(path)?;
    let b: Bundle = serde_json::from_slice(&text).map_err(|e| UsageError::Bad(format!("{}: {e}", path.display())))?;
    let bad = |m: String| UsageError::Bad(format!("{}: {m}", path.display()));
    if b.format != BUNDLE_FORMAT {
        return Err(bad(format!("format {:?}, expected {BUNDLE_FORMAT:?}", b.format)));
    }
    let mut prev: [u8; 32] =
        unhex(&b.prev_hash).and_then(|v| v.try_into().ok()).ok_or_else(|| bad("bad prev_hash".into()))?;
    let mut expect = None;
    for r in &b.records {
        if let Some(e) = expect {
            if r.seq != e {
                return Err(bad(format!("record {e} is missing or out of order (found {})", r.seq)));
            }
        }
        expect = Some(r.seq + 1);
        prev = r.chain_hash(&prev);
    }
    if hex(&prev) != b.head_hash || b.records.last().map_or(0, |r| r.seq) != b.head_seq {
        return Err(bad("the records do not hash to the bundle's head: edited, removed or reordered".into()));
    }
    if let Some(k) = key {
        match &b.mac {
            Some(m) if *m == bundle_mac(k, &b.prev_hash, b.head_seq, &prev) => {}
            Some(_) => return Err(bad("bad signature (wrong key, or forged)".into())),
            None => return Err(bad("not signed, and --key was given".into())),
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)] // a table row
    fn rec(host: &str, inst: &str, app: &str, dc: &str, class: &str, at: i64, avg: i64, peak: i64) -> UsageRecord {
        UsageRecord {
            host: host.into(),
            instance: inst.into(),
            app: app.into(),
            datacenter: dc.into(),
            proc_class: class.into(),
            at_ms: at,
            interval_ms: 60_000,
            cores_avg_milli: avg,
            cores_peak_milli: peak,
            cores_told: 2,
            rss_bytes: 100,
            heap_bytes: 50,
            io_read_bytes: 10,
            io_write_bytes: -1,
            ..UsageRecord::default()
        }
    }

    /// Fixed records; every figure below is worked out by hand in the comments.
    pub fn fixed() -> Vec<UsageRecord> {
        let m = 60_000;
        vec![
            // shop: a and b on h1 (icelake), 3 minutes.
            rec("h1", "a", "shop", "fra", "intel-xeon-icelake", m, 1000, 1500),
            rec("h1", "b", "shop", "fra", "intel-xeon-icelake", m, 500, 700),
            rec("h1", "a", "shop", "fra", "intel-xeon-icelake", 2 * m, 2000, 2500),
            rec("h1", "b", "shop", "fra", "intel-xeon-icelake", 2 * m, 500, 600),
            rec("h1", "a", "shop", "fra", "intel-xeon-icelake", 3 * m, 3000, 3000),
            rec("h1", "b", "shop", "fra", "intel-xeon-icelake", 3 * m, 1000, 1000),
            // batch: c on h2 (zen3), other datacenter.
            rec("h2", "c", "batch", "ams", "amd-epyc-zen3", m, 250, 400),
            rec("h2", "c", "batch", "ams", "amd-epyc-zen3", 2 * m, 750, 800),
        ]
    }

    #[test]
    fn hand_computed() {
        let policy = Policy::parse("[[license]]\napp = \"shop\"\ncores_aggregate = 3\n").unwrap();
        let p = Params {
            from_ms: 0,
            to_ms: 10 * 60_000,
            group_by: GroupBy::App,
            bucket_ms: 60_000,
            headroom_pct: 20.0,
            policy: Some(policy),
            under_ratio: 0.5,
        };
        let mut b = Builder::new(p);
        for r in fixed() {
            b.add(&r);
        }
        b.add_alerts([(60_000, "shop".into(), "a".into(), "cores_used".into())]);
        let r = b.finish();
        assert_eq!(r.records, 8);
        let a = r.jvms.iter().find(|j| j.instance == "a").unwrap();
        // a: mean(1, 2, 3) = 2; peak 3; rss 3 × 100 / 3; io 3 × 10; writes unknown.
        assert_eq!(
            (a.cores_avg, a.cores_peak, a.rss_avg_bytes, a.io_read_bytes, a.io_write_bytes, a.alerts),
            (2.0, 3.0, 100, 30, 0, 1)
        );
        let shop = r.groups.iter().find(|g| g.group == "shop").unwrap();
        let c = &shop.classes[0];
        // Bucket sums of averages: 1.5, 2.5, 4.0 → mean 2.667, p95 (rank ceil(2.85) = 3) 4.0;
        // sums of peaks: 2.2, 3.1, 4.0 → peak 4.0; suggested ceil(4.0 × 1.2) = 5.
        assert_eq!((c.cores_avg, c.cores_peak, c.cores_p95, c.suggested_cores), (2.667, 4.0, 4.0, 5));
        // Licensed 3: over-use in minute 3 only ([3m, 4m)); under-use (peak < 1.5) never.
        assert_eq!(shop.over_use, vec![Period { from_ms: 180_000, to_ms: 240_000 }]);
        assert!(shop.under_use.is_empty());
        assert_eq!((shop.jvms, shop.alerts, shop.rss_peak_bytes), (2, 1, 200));
        let batch = r.groups.iter().find(|g| g.group == "batch").unwrap();
        // 0.25, 0.75 → mean 0.5, p95 0.75, peak 0.8, suggested ceil(0.9) = 1.
        let c = &batch.classes[0];
        assert_eq!((c.cores_avg, c.cores_peak, c.cores_p95, c.suggested_cores), (0.5, 0.8, 0.75, 1));
        assert_eq!(r.suggested.get("intel-xeon-icelake"), Some(&5));
        assert_eq!(r.suggested.get("amd-epyc-zen3"), Some(&1));

        // Grouped by datacenter the same sums apply per datacenter.
        let mut b = Builder::new(Params { group_by: GroupBy::Datacenter, policy: None, ..paramsish() });
        for r in fixed() {
            b.add(&r);
        }
        let r2 = b.finish();
        assert_eq!(r2.groups.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(), ["ams", "fra"]);

        // CSV carries the JSON figures.
        let csv = to_csv(&r);
        assert!(csv.contains("jvm,,h1,a,shop,intel-xeon-icelake,3,2,3,,,,2,100,30,0,1\n"), "{csv}");
        assert!(csv.contains("group,shop,,,,intel-xeon-icelake,,2.667,4,4,5,3,,200,60,0,1\n"), "{csv}");
        let html = to_html(&r);
        assert!(html.contains("<svg") && html.contains("licensed 3"));
    }

    #[test]
    fn a_store_scan_gives_the_same_report_as_the_records() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("jvmwatch.db");
        let mut recs = fixed();
        // A JVM that changes class, and one whose labels change, within the range.
        recs.push(rec("h1", "a", "shop", "fra", "amd-epyc-zen3", 4 * 60_000, 700, 900));
        recs.push(rec("h2", "c", "batch2", "ams", "amd-epyc-zen3", 3 * 60_000, 100, 200));
        Ledger::open(&db, None).unwrap().append(&mut recs.clone(), 0).unwrap();
        for group_by in [GroupBy::App, GroupBy::Host, GroupBy::Datacenter] {
            let p = Params { group_by, ..paramsish() };
            let mut from_records = Builder::new(p.clone());
            for r in &recs {
                from_records.add(r);
            }
            let mut from_store = Builder::new(p);
            Ledger::open_read(&db).unwrap().for_each_fields(0, 600_000, |f| from_store.add_fields(f)).unwrap();
            let (a, b) = (from_records.finish(), from_store.finish());
            assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap());
            assert_eq!(to_csv(&a), to_csv(&b));
        }
    }

    #[test]
    fn the_keyed_store_scan_gives_the_same_report_as_the_records() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("jvmwatch.db");
        let mut recs = fixed();
        // A JVM that changes class and back, one whose labels change, and one with the same
        // labels but other facts (pid), so several facts rows name one JVM.
        recs.push(rec("h1", "a", "shop", "fra", "amd-epyc-zen3", 4 * 60_000, 700, 900));
        recs.push(rec("h2", "c", "batch2", "ams", "amd-epyc-zen3", 3 * 60_000, 100, 200));
        recs.push(rec("h1", "a", "shop", "fra", "intel-xeon-icelake", 5 * 60_000, 800, 900));
        recs.push(UsageRecord { pid: 7, ..rec("h1", "b", "shop", "fra", "intel-xeon-icelake", 5 * 60_000, 10, 20) });
        recs.push(rec("h1", "b", "shop", "fra", "intel-xeon-icelake", 6 * 60_000, 30, 40));
        let mut l = Ledger::open(&db, None).unwrap();
        l.append(&mut recs[..5].to_vec(), 0).unwrap();
        l.append(&mut recs[5..].to_vec(), 0).unwrap();
        for group_by in [GroupBy::App, GroupBy::Host, GroupBy::Datacenter] {
            for (from_ms, to_ms) in [(0, 600_000), (2 * 60_000, 5 * 60_000)] {
                let p = Params { group_by, from_ms, to_ms, ..paramsish() };
                let mut from_records = Builder::new(p.clone());
                for r in &recs {
                    from_records.add(r);
                }
                let mut from_store = Builder::new(p);
                Ledger::open_read(&db).unwrap().report_into(from_ms, to_ms, &mut from_store).unwrap();
                let (a, b) = (from_records.finish(), from_store.finish());
                assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap());
                assert_eq!(to_csv(&a), to_csv(&b));
                assert_eq!(to_html(&a), to_html(&b));
            }
        }
    }

    #[test]
    fn several_records_per_bucket_count_as_their_mean() {
        let mut b = Builder::new(paramsish());
        // a: 1.0 and 3.0 in minute 0 → 2.0; b: 0.5 → group 2.5; peaks 3.5 + 0.7.
        b.add(&rec("h", "a", "x", "", "c", 10_000, 1000, 1500));
        b.add(&rec("h", "b", "x", "", "c", 15_000, 500, 700));
        b.add(&rec("h", "a", "x", "", "c", 20_000, 3000, 3500));
        let r = b.finish();
        let c = &r.groups[0].classes[0];
        assert_eq!((c.cores_avg, c.cores_peak, c.cores_p95), (2.5, 4.2, 2.5));
    }

    fn paramsish() -> Params {
        Params {
            from_ms: 0,
            to_ms: 600_000,
            group_by: GroupBy::App,
            bucket_ms: 60_000,
            headroom_pct: 20.0,
            policy: None,
            under_ratio: 0.5,
        }
    }

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&mut [], 95.0), 0);
        assert_eq!(percentile(&mut [5], 95.0), 5);
        let mut v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&mut v, 95.0), 95);
    }
}

//! The postmortem (or live) report of one ring file: what `inspect --json` prints and what the
//! HTTP API serves for one JVM.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use jvmwatch_ring::facts::HostFacts;
use jvmwatch_ring::{Event, Header, Live, ReadError, Record, Ring, Snapshot, THREAD_STATES, UNKNOWN};
use serde::Serialize;
use serde_json::{json, Value};

use crate::findings::{self, Facts, Verdict};

/// RFC 3339 time (UTC, milliseconds) for ns since the Unix epoch; `None` for 0 (never).
pub fn rfc3339(ns: u64) -> Option<String> {
    (ns != 0).then(|| rfc3339_display(ns).to_string())
}

/// [`rfc3339`]'s text, to format without a `String` first.
fn rfc3339_display(ns: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns))
}

fn opt(v: u64) -> Option<u64> {
    (v != UNKNOWN).then_some(v)
}

/// JVM identity.
#[derive(Debug, Serialize)]
pub struct Jvm {
    /// `java.vm.version`.
    pub version: String,
    /// Vendor / VM name.
    pub vendor: String,
    /// Command line summary.
    pub args: String,
    /// Collector family.
    pub collector: &'static str,
}

/// GC pause summary from the JVMTI callbacks.
#[derive(Debug, Serialize)]
pub struct Gc {
    /// Stop-the-world pauses.
    pub pauses: u64,
    /// Their total, ms.
    pub pause_total_ms: f64,
    /// The longest, ms.
    pub pause_max_ms: f64,
    /// A pause was in progress at the last record.
    pub pause_in_progress: bool,
    /// Share of the last 10 s (before the last record) spent in pauses.
    pub pause_share_10s: f64,
    /// Self-measured cost of the agent's GC-finish callback: mean, ns.
    pub callback_mean_ns: Option<f64>,
    /// ... and the longest, ns.
    pub callback_max_ns: u64,
    /// The GC-finish callback's cost distribution (rings of format 3 and later).
    pub callback_finish: CallbackCost,
    /// The GC-start callback's (rings of format 3 and later; zero count before).
    pub callback_start: CallbackCost,
}

/// One GC callback's self-measured cost, from the agent's histogram in the ring header.
/// Percentiles are bucket upper bounds (at most 25 % above the truth), capped by the max;
/// `null` when the ring has no histogram (format 1 or 2) or no callback ran yet.
#[derive(Debug, Serialize)]
pub struct CallbackCost {
    /// Callbacks timed.
    pub count: u64,
    /// Mean, ns.
    pub mean_ns: Option<f64>,
    /// Median, ns.
    pub p50_ns: Option<u64>,
    /// 99th percentile, ns.
    pub p99_ns: Option<u64>,
    /// The longest, ns.
    pub max_ns: u64,
}

impl CallbackCost {
    fn of(c: &jvmwatch_ring::cbcost::CallbackCost) -> CallbackCost {
        CallbackCost {
            count: c.count,
            mean_ns: c.mean_ns(),
            p50_ns: c.quantile(0.5),
            p99_ns: c.quantile(0.99),
            max_ns: c.max_ns,
        }
    }
}

/// The report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The ring file.
    pub file: PathBuf,
    /// running / exited / killed / crashed.
    pub verdict: Verdict,
    /// Path of the JVM's crash report, when the verdict is `crashed`.
    pub crash_report: Option<PathBuf>,
    /// Findings such as `oom`, `gc_thrash`, `heap_exhausted`, `hung`.
    pub findings: Vec<&'static str>,
    /// Writer pid (as seen in its own namespace).
    pub pid: u32,
    /// Host the JVM ran on.
    pub hostname: String,
    /// The writing agent's version and git revision (`0.1.0 (git 1a2b3c4)`).
    pub agent_version: String,
    /// The agent was loaded into the running JVM (`jvmwatch attach`): events before the
    /// attach are missing (docs/agent-options.md, "Attached agents").
    pub attached: bool,
    /// Application name, if set.
    pub app: Option<String>,
    /// JVM identity.
    pub jvm: Jvm,
    /// JVM start.
    pub started_at: Option<String>,
    /// VM init.
    pub vm_init_at: Option<String>,
    /// Last sampler heartbeat.
    pub last_heartbeat_at: Option<String>,
    /// Clean exit time.
    pub exited_at: Option<String>,
    /// Sampler interval, ms.
    pub interval_ms: f64,
    /// The latest snapshot.
    pub snapshot: Option<Value>,
    /// GC pause summary.
    pub gc: Gc,
    /// The last N events.
    pub events: Vec<Value>,
    /// Events ever written (the cursor).
    pub events_total: u64,
    /// Events lost: overwritten by wrap-around, or torn.
    pub lost_events: u64,
    /// Ring capacity in events.
    pub ring_capacity: u64,
    /// Application (and agent) metrics, lifetime figures.
    pub metrics: Vec<Value>,
    /// `heap_leak` details: growth rate and estimated time to exhaustion.
    pub heap_leak: Option<crate::history::HeapLeak>,
    /// What led there: a few lines from the history (oldest first).
    pub timeline: Vec<String>,
    /// The last stacks capture (threads, states, locks, top frames) and its age.
    pub stacks: Option<Value>,
    /// For `deadlock` and `hung`: the blocked threads of the last capture, with the lock,
    /// its owner and where they wait.
    pub citations: Vec<String>,
    /// Samples in the history region (fine + coarse; 0 without history).
    pub history_samples: usize,
    /// The processor and resources the agent recorded, latest first, and their changes
    /// among the events read (`null` for a ring without them).
    pub host_facts: Option<Value>,
}

/// One event as JSON: `seq`, `type`, `time` and its fields. `strings` is the ring's string
/// table, which compact events refer to.
pub fn event_json(r: &Record, strings: &[String]) -> Value {
    serde_json::to_value(event_fields(r, strings)).unwrap_or(Value::Null)
}

/// One event as JSON with a `jvm` field, serialized directly (no [`Value`] tree): the same
/// text as [`event_json`] with `jvm` added, for the stream, which writes thousands a second.
pub fn event_json_text(r: &Record, strings: &[String], jvm: &str) -> String {
    let mut fields = event_fields(r, strings);
    fields.push("jvm", Field::Str(jvm.into()));
    // Sorted, as a `Value` object's keys are, so both texts are the same.
    fields.as_mut_slice().sort_unstable_by_key(|(k, _)| *k);
    let mut out = Vec::with_capacity(256);
    // Serializing numbers, strings and booleans into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &fields);
    // serde_json writes only UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// One JSON field value of an event.
enum Field<'a> {
    U(u64),
    I(i64),
    F(f64),
    B(bool),
    Str(std::borrow::Cow<'a, str>),
    /// Nanoseconds since the epoch, written as [`rfc3339`] (`null` for 0).
    Time(u64),
    Null,
}

macro_rules! field_from {
    ($variant:ident as $wide:ty: $($t:ty),*) => {$(
        impl From<$t> for Field<'_> {
            fn from(v: $t) -> Self {
                Field::$variant(<$wide>::from(v))
            }
        }
    )*};
}
field_from!(U as u64: u8, u16, u32, u64);
field_from!(I as i64: i8, i16, i32, i64);
field_from!(F as f64: f64);
field_from!(B as bool: bool);

impl<'a> From<&'a str> for Field<'a> {
    fn from(v: &'a str) -> Self {
        Field::Str(v.into())
    }
}

impl<'a> From<std::borrow::Cow<'a, str>> for Field<'a> {
    fn from(v: std::borrow::Cow<'a, str>) -> Self {
        Field::Str(v)
    }
}

impl<'a, T: Into<Field<'a>>> From<Option<T>> for Field<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Field::Null, Into::into)
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::U(v) => s.serialize_u64(*v),
            Field::I(v) => s.serialize_i64(*v),
            // As `json!` does: a non-finite number is `null`.
            Field::F(v) if !v.is_finite() => s.serialize_unit(),
            Field::F(v) => s.serialize_f64(*v),
            Field::B(v) => s.serialize_bool(*v),
            Field::Str(v) => s.serialize_str(v),
            Field::Time(ns) => Time(*ns).serialize(s),
            Field::Null => s.serialize_unit(),
        }
    }
}

/// An event's fields, in a fixed array (no allocation per event).
struct Fields<'a> {
    len: usize,
    items: [(&'static str, Field<'a>); 16],
}

impl Default for Fields<'_> {
    fn default() -> Self {
        Fields { len: 0, items: std::array::from_fn(|_| ("", Field::Null)) }
    }
}

impl<'a> Fields<'a> {
    fn push(&mut self, key: &'static str, value: impl Into<Field<'a>>) {
        let value = value.into();
        // The largest event has 14 fields (with `jvm`); one more would be a bug caught by
        // the test that serializes every kind.
        debug_assert!(self.len < self.items.len(), "too many event fields");
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = (key, value);
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[(&'static str, Field<'a>)] {
        &self.items[..self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [(&'static str, Field<'a>)] {
        &mut self.items[..self.len]
    }
}

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.as_slice().iter().map(|(k, v)| (k, v)))
    }
}

fn event_fields<'a>(r: &'a Record, strings: &'a [String]) -> Fields<'a> {
    let s = |id: u16| strings.get(id as usize).map_or("?", String::as_str);
    let mut m = Fields::default();
    m.push("seq", r.seq);
    m.push("type", r.event.type_name());
    m.push("time", Field::Time(r.time_ns));
    m.push("time_ns", r.time_ns);
    match r.event {
        Event::GcPauseStart { gc_id, collector } => {
            m.push("gc_id", gc_id);
            m.push("collector", collector.name());
        }
        Event::GcPauseEnd { gc_id, collector, duration_ns } => {
            m.push("gc_id", gc_id);
            m.push("collector", collector.name());
            m.push("duration_ms", duration_ns as f64 / 1e6);
        }
        Event::ThreadStart { tid, ref name } | Event::ThreadEnd { tid, ref name } => {
            m.push("tid", tid);
            m.push("name", name.as_str());
        }
        Event::ResourceExhausted { kind, flags, ref detail } => {
            m.push("kind", kind.name());
            m.push("flags", flags);
            m.push("detail", detail.as_str());
        }
        Event::AgentWarning { ref text } => {
            m.push("text", text.as_str());
        }
        Event::Unknown { kind } => {
            m.push("code", kind);
        }
        Event::GcCycle { gc_number, duration_us, collector, cause, action, concurrent, before, after } => {
            m.push("gc_number", gc_number);
            m.push("collector", s(collector));
            m.push("cause", s(cause));
            m.push("action", s(action));
            m.push("concurrent", concurrent);
            m.push("duration_ms", duration_us as f64 / 1e3);
            m.push("heap_before_bytes", before);
            m.push("heap_after_bytes", after);
        }
        Event::GcPool { gc_number, pool, before, after } => {
            m.push("gc_number", gc_number);
            m.push("pool", s(pool));
            m.push("before_bytes", before);
            m.push("after_bytes", after);
        }
        Event::Deadlock { threads, index, ref text } => {
            m.push("threads", threads);
            m.push("index", index);
            m.push("text", text.as_str());
        }
        Event::AppEvent { name, ref detail } => {
            m.push("name", s(name));
            m.push("detail", detail.as_str());
        }
        Event::ControllerAction { stage, ref text } => {
            let stage = match stage {
                0 => "warn",
                1 => "diagnose",
                2 => "act",
                _ => "?",
            };
            m.push("stage", stage);
            m.push("text", text.as_str());
        }
        Event::Processor {
            vendor,
            model_name,
            class,
            hypervisor,
            family,
            model,
            stepping,
            host_cores,
            hypervisor_flag,
        } => {
            let n = |v: u32| (v != u32::MAX).then_some(v);
            m.push("vendor", s(vendor));
            m.push("model_name", s(model_name));
            m.push("class", s(class));
            m.push("hypervisor", s(hypervisor));
            m.push("family", n(family));
            m.push("model", n(model));
            m.push("stepping", n(stepping));
            m.push("host_cores", host_cores);
            m.push("hypervisor_flag", hypervisor_flag);
        }
        Event::Resources { cores_told, active_processor_count, affinity, cpu_quota_milli, mem_limit, ref cpuset } => {
            m.push("cores_told", cores_told);
            m.push("active_processor_count", (active_processor_count > 0).then_some(active_processor_count));
            m.push("affinity", affinity);
            m.push("cpuset", cpuset.as_str());
            m.push("cpu_quota_millicores", (cpu_quota_milli >= 0).then_some(cpu_quota_milli));
            m.push("memory_limit_bytes", (mem_limit >= 0).then_some(mem_limit));
        }
        Event::VmInit | Event::VmDeath | Event::DataDump => {}
    }
    m
}

/// The latest host facts and their changes as JSON (`host_facts` of a report); `None` when
/// the events read hold no facts (a ring from an agent before they were recorded).
pub fn host_facts_json(f: &HostFacts) -> Option<Value> {
    if f.processor.is_none() && f.resources.is_none() {
        return None;
    }
    let processor = f.processor.as_ref().map(|(t, p)| {
        json!({
            "recorded_at": rfc3339(*t),
            "vendor": p.vendor,
            "model_name": p.model_name,
            "family_model_stepping": p.fms,
            "class": p.class,
            "hypervisor": p.hypervisor,
            "hypervisor_flag": p.hypervisor_flag,
            "host_cores": p.host_cores,
        })
    });
    let resources = f.resources.as_ref().map(|(t, r)| {
        json!({
            "recorded_at": rfc3339(*t),
            "cores_told": r.cores_told,
            "active_processor_count": (r.active_processor_count > 0).then_some(r.active_processor_count),
            "affinity": r.affinity,
            "cpuset": r.cpuset,
            "cpu_quota_millicores": (r.cpu_quota_milli >= 0).then_some(r.cpu_quota_milli),
            "memory_limit_bytes": (r.mem_limit >= 0).then_some(r.mem_limit),
        })
    });
    let changes: Vec<Value> = f.changes.iter().map(|(t, c)| json!({ "time": rfc3339(*t), "change": c })).collect();
    Some(json!({ "processor": processor, "resources": resources, "changes": changes }))
}

/// The snapshot as JSON (unknown figures are `null`; the fields are [`SnapshotJson`]'s).
pub fn snapshot_json(s: &Snapshot) -> Value {
    serde_json::to_value(SnapshotJson::of(s)).unwrap_or(Value::Null)
}

/// A snapshot's JSON fields, serialized directly where thousands a second are written (the
/// stream's snapshot messages) and through [`snapshot_json`] elsewhere.
#[derive(Serialize)]
pub struct SnapshotJson<'a> {
    time: Time,
    heap_used_bytes: u64,
    heap_committed_bytes: u64,
    heap_max_bytes: Option<u64>,
    heap_used_after_gc_bytes: Option<u64>,
    /// "collection": the whole heap right after the latest collection (GC notification);
    /// "pools": the per-pool fallback (no notification yet, or monitor=off).
    heap_after_gc_from: &'static str,
    nonheap_used_bytes: u64,
    nonheap_committed_bytes: u64,
    pools: Vec<PoolJson<'a>>,
    collectors: Vec<CollectorJson<'a>>,
    gc_count: u64,
    gc_time_ms: u64,
    threads_live: u32,
    threads_daemon: Option<u32>,
    threads_by_state: ThreadStates,
    cpu_time_ms: u64,
    loaded_classes: Option<u64>,
}

#[derive(Serialize)]
struct PoolJson<'a> {
    name: std::borrow::Cow<'a, str>,
    area: &'static str,
    used_bytes: Option<u64>,
    committed_bytes: Option<u64>,
    max_bytes: Option<u64>,
    used_after_gc_bytes: Option<u64>,
}

#[derive(Serialize)]
struct CollectorJson<'a> {
    name: std::borrow::Cow<'a, str>,
    count: u64,
    time_ms: u64,
}

/// Threads per state, as an object keyed by [`THREAD_STATES`].
struct ThreadStates([u32; 6]);

impl Serialize for ThreadStates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(THREAD_STATES.iter().zip(self.0))
    }
}

impl<'a> SnapshotJson<'a> {
    /// The fields of `s`.
    pub fn of(s: &'a Snapshot) -> SnapshotJson<'a> {
        let pools = s
            .pools()
            .iter()
            .map(|p| PoolJson {
                name: p.name.as_str(),
                area: if p.heap { "heap" } else { "nonheap" },
                used_bytes: opt(p.used),
                committed_bytes: opt(p.committed),
                max_bytes: opt(p.max),
                used_after_gc_bytes: opt(p.used_after_gc),
            })
            .collect();
        let collectors = (s.collectors().iter())
            .map(|c| CollectorJson { name: c.name.as_str(), count: c.count, time_ms: c.time_ms })
            .collect();
        SnapshotJson {
            time: Time(s.time_ns),
            heap_used_bytes: s.heap_used,
            heap_committed_bytes: s.heap_committed,
            heap_max_bytes: opt(s.heap_max),
            heap_used_after_gc_bytes: s.heap_used_after_gc(),
            heap_after_gc_from: if s.heap_after_gc != UNKNOWN { "collection" } else { "pools" },
            nonheap_used_bytes: s.nonheap_used,
            nonheap_committed_bytes: s.nonheap_committed,
            pools,
            collectors,
            gc_count: s.gc_count(),
            gc_time_ms: s.gc_time_ms(),
            threads_live: s.threads_live,
            threads_daemon: (s.threads_daemon != u32::MAX).then_some(s.threads_daemon),
            threads_by_state: ThreadStates(s.thread_states),
            cpu_time_ms: s.cpu_time_ns / 1_000_000,
            loaded_classes: opt(s.loaded_classes),
        }
    }
}

/// A time as JSON without building a `String` first: [`rfc3339`]'s text, `null` for 0.
#[derive(Clone, Copy, Debug)]
pub struct Time(pub u64);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            0 => s.serialize_unit(),
            ns => s.collect_str(&rfc3339_display(ns)),
        }
    }
}

/// Where the JVM's `hs_err_pid<PID>.log` may be: `-XX:ErrorFile=` (with `%p` = pid, relative
/// to the working directory), the working directory, then the temp directory — the JVM's own
/// order. Only a file written after the JVM started counts (pids are reused).
pub fn find_crash_report(cwd: &str, error_file: &str, pid: u32, started_ns: u64) -> Option<PathBuf> {
    let default = format!("hs_err_pid{pid}.log");
    let mut candidates = Vec::new();
    if !error_file.is_empty() {
        let f = error_file.replace("%p", &pid.to_string()).replace("%%", "%");
        candidates.push(Path::new(cwd).join(f));
    }
    candidates.push(Path::new(cwd).join(&default));
    candidates.push(std::env::temp_dir().join(&default));
    candidates.push(Path::new("/tmp").join(&default));
    candidates.into_iter().find(|p| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .map(|t| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64 + 1_000_000_000 >= started_ns)
            .unwrap_or(false)
    })
}

/// Words that make a command-line option's value secret (compared case-insensitively with
/// the option's name): `-Ddb.password=…`, `--api-key=…`, `-Daws.secretKey=…`, …
pub const SECRET_WORDS: [&str; 9] =
    ["password", "passwd", "pwd", "secret", "token", "credential", "apikey", "api-key", "api_key"];

/// The command line with the values of secret-looking options replaced by `***`: a
/// `NAME=VALUE` argument whose NAME contains one of [`SECRET_WORDS`] keeps `NAME=`, and an
/// argument that is only such an option name (`--password`) hides the argument after it.
pub fn redact_args(args: &str) -> String {
    let secret = |name: &str| {
        let n = name.to_ascii_lowercase();
        SECRET_WORDS.iter().any(|w| n.contains(w)) || n.contains("private") && n.contains("key")
    };
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in args.split(' ') {
        if std::mem::take(&mut hide_next) {
            out.push("***".to_string());
            continue;
        }
        match a.split_once('=') {
            Some((name, _)) if secret(name) => out.push(format!("{name}=***")),
            None if a.starts_with('-') && secret(a) => {
                hide_next = true;
                out.push(a.to_string());
            }
            _ => out.push(a.to_string()),
        }
    }
    out.join(" ")
}

/// Reads `path` and builds the report with the last `n_events` events.
pub fn inspect(path: &Path, n_events: usize) -> Result<Report, ReadError> {
    read_report(path, n_events, None, Seen::default())
}

/// Events the service's detail view reads at most besides the `n_events` it shows: enough for
/// the GC findings' window; earlier OOM and deadlock events come from what the service has
/// seen while following (`seen`).
pub const RECENT: usize = 4096;

/// Like [`inspect`], reading only the newest `max(n_events, RECENT)` events (the service's
/// `GET /api/v1/jvms/{id}`: its cost does not grow with the ring). `lost_events` then counts
/// what was lost among those.
pub fn inspect_recent(path: &Path, n_events: usize, seen: Seen) -> Result<Report, ReadError> {
    read_report(path, n_events, Some(n_events.max(RECENT)), seen)
}

/// Reads the ring and builds its report from the newest `tail` events (all when None).
fn read_report(path: &Path, n_events: usize, tail: Option<usize>, seen: Seen) -> Result<Report, ReadError> {
    // A plain ring, or one archived with zstd.
    let ring = crate::retention::archive::open(path)?;
    // Liveness first: a writer that dies while we read is reported as it was at the start,
    // and its unpublished slots then count as torn in the next read, not now.
    let alive = ring.writer_alive();
    let live = ring.live()?;
    let snapshot = ring.snapshot()?;
    let from = tail.map_or(0, |t| live.cursor.saturating_sub(t as u64));
    let scan = ring.scan(from, alive)?;
    let (instruments, strings) = ring.metrics()?;
    let history = ring.history()?;
    let stacks = ring.stacks()?;
    let parts = Parts {
        history: history.as_ref(),
        stacks: stacks.as_ref(),
        alive,
        live: &live,
        snapshot: snapshot.as_ref(),
        records: &scan.records,
        lost: scan.lost(),
        instruments: &instruments,
        strings: &strings,
    };
    Ok(build(&ring, &parts, n_events, Seen { covers_records: false, ..seen }))
}

/// Whether a crash report says the JVM died of running out of memory
/// (`-XX:+CrashOnOutOfMemoryError` crashes before the JVM posts its resource-exhausted event,
/// so the ring itself cannot tell). Reads at most the report's first 4 KiB, its header.
pub fn crash_was_oom(report: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    let read = std::fs::File::open(report).and_then(|f| f.take(4096).read_to_end(&mut head));
    read.is_ok()
        && String::from_utf8_lossy(&head)
            .lines()
            .take_while(|l| l.starts_with('#') || l.is_empty())
            .any(|l| l.contains("OutOfMemory encountered") || l.contains("java.lang.OutOfMemoryError"))
}

/// The verdict and, for a crash, the crash report's path.
pub fn verdict_of(h: &Header, live: &Live, alive: bool) -> (Verdict, Option<PathBuf>) {
    let crash_report = if alive || live.state == Some(jvmwatch_ring::State::Exited) {
        None
    } else {
        find_crash_report(&h.cwd, &h.error_file, h.pid, h.start_ns)
    };
    let verdict = findings::verdict(alive, live.state, crash_report.is_some());
    (verdict, crash_report)
}

/// The facts the findings are judged on. `records` are the recent events (for the GC
/// window); `seen` what was read before them.
pub fn facts<'a, I>(h: &Header, live: &Live, alive: bool, snapshot: Option<&Snapshot>, records: I, seen: Seen) -> Facts
where
    I: IntoIterator<Item = &'a Record>,
    I::IntoIter: DoubleEndedIterator + Clone,
{
    let records = records.into_iter();
    let last_ns = records.clone().next_back().map(|r| r.time_ns).unwrap_or(0).max(live.heartbeat_ns);
    let heap_after_gc_ratio = snapshot.and_then(|s| {
        let after = s.heap_used_after_gc()?;
        (s.heap_max != UNKNOWN && s.heap_max > 0).then(|| after as f64 / s.heap_max as f64)
    });
    let now = jvmwatch_ring::now_ns();
    let beat = if live.heartbeat_ns == 0 { h.start_ns } else { live.heartbeat_ns };
    let mut oom = seen.oom;
    let mut deadlock = seen.deadlock;
    if !seen.covers_records {
        for r in records.clone() {
            match r.event {
                Event::ResourceExhausted { .. } => oom = true,
                Event::Deadlock { .. } => deadlock = true,
                _ => {}
            }
        }
    }
    Facts {
        writer_alive: alive,
        heartbeat_age_ns: now.saturating_sub(beat),
        interval_ns: h.interval_ns,
        gc_in_progress: live.gc_pause_start_ns != 0,
        gc_share: findings::gc_pause_share(records, last_ns, findings::GC_WINDOW_NS),
        heap_after_gc_ratio,
        oom,
        deadlock,
        heap_leak: false,
        thread_leak: false,
    }
}

/// Events seen earlier than the records at hand (the service keeps these across its window).
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// A resource-exhausted event.
    pub oom: bool,
    /// A deadlock event.
    pub deadlock: bool,
    /// These flags already cover the records passed along (no need to look through them).
    pub covers_records: bool,
}

/// What a report is built from.
pub struct Parts<'a> {
    /// Writer alive.
    pub alive: bool,
    /// Live header part.
    pub live: &'a Live,
    /// Latest snapshot.
    pub snapshot: Option<&'a Snapshot>,
    /// Events read.
    pub records: &'a [Record],
    /// Events lost.
    pub lost: u64,
    /// Metrics region instruments.
    pub instruments: &'a [jvmwatch_ring::metrics::Instrument],
    /// String table.
    pub strings: &'a [String],
    /// The history region, if the ring has one.
    pub history: Option<&'a jvmwatch_ring::History>,
    /// The last stacks capture.
    pub stacks: Option<&'a jvmwatch_ring::stacks::Capture>,
}

/// Builds a report from parts already read.
pub fn build(ring: &Ring, p: &Parts<'_>, n_events: usize, seen: Seen) -> Report {
    let (alive, live, snapshot, records) = (p.alive, p.live, p.snapshot, p.records);
    let h = ring.header();
    let (verdict, crash_report) = verdict_of(h, live, alive);
    let mut facts = facts(h, live, alive, snapshot, records, seen);
    facts.oom |= crash_report.as_deref().is_some_and(crash_was_oom);
    let (heap_leak, thread_leak) = p.history.map(crate::history::leaks).unwrap_or_default();
    facts.heap_leak = heap_leak.is_some();
    facts.thread_leak = thread_leak.is_some();
    let merged: Vec<_> = p.history.map(crate::history::merged).unwrap_or_default().into_iter().copied().collect();
    let mut timeline = crate::history::timeline(&merged, &crate::history::timer_cells(p.instruments));
    if let Some(l) = &heap_leak {
        timeline.push(format!(
            "heap after GC grows {:.1} MiB/min; at that rate the heap is full {} after the last collection judged",
            l.bytes_per_s * 60.0 / 1048576.0,
            crate::history::span((l.exhaustion_in_s * 1e9) as u64)
        ));
    }
    let mut host = HostFacts::default();
    for r in records {
        host.apply(r, p.strings);
    }
    for (t, c) in &host.changes {
        timeline.push(format!("{c} (at {})", rfc3339(*t).unwrap_or_default()));
    }
    let end_ns = live.heartbeat_ns.max(merged.last().map_or(0, |s| s.time_ns));
    let found = findings::findings(&facts);
    let citations = match p.stacks {
        Some(c) if found.iter().any(|f| matches!(*f, "deadlock" | "hung")) => crate::stacks::citations(c),
        _ => Vec::new(),
    };
    let skip = records.len().saturating_sub(n_events);
    Report {
        file: ring.path().to_path_buf(),
        verdict,
        crash_report,
        findings: found,
        pid: h.pid,
        hostname: h.hostname.clone(),
        agent_version: h.agent_version.clone(),
        attached: h.attached(),
        app: (!live.app_name.is_empty()).then(|| live.app_name.clone()),
        jvm: Jvm {
            version: h.jvm_version.clone(),
            vendor: h.jvm_vendor.clone(),
            args: h.command.clone(),
            collector: live.collector.name(),
        },
        started_at: rfc3339(h.start_ns),
        vm_init_at: rfc3339(live.vm_init_ns),
        last_heartbeat_at: rfc3339(live.heartbeat_ns),
        exited_at: rfc3339(live.exit_ns),
        interval_ms: h.interval_ns as f64 / 1e6,
        snapshot: snapshot.map(snapshot_json),
        gc: Gc {
            pauses: live.gc_pauses,
            pause_total_ms: live.gc_pause_total_ns as f64 / 1e6,
            pause_max_ms: live.gc_pause_max_ns as f64 / 1e6,
            pause_in_progress: live.gc_pause_start_ns != 0,
            pause_share_10s: facts.gc_share,
            callback_mean_ns: live.gc_finish_cost.mean_ns(),
            callback_max_ns: live.gc_finish_cost.max_ns,
            callback_finish: CallbackCost::of(&live.gc_finish_cost),
            callback_start: CallbackCost::of(&live.gc_start_cost),
        },
        events: records[skip..].iter().map(|r| event_json(r, p.strings)).collect(),
        events_total: live.cursor,
        lost_events: p.lost,
        ring_capacity: h.capacity,
        metrics: crate::appmetrics::lifetime(p.instruments),
        heap_leak,
        timeline,
        stacks: p.stacks.map(|c| crate::stacks::to_json(c, end_ns)),
        citations,
        history_samples: merged.len(),
        host_facts: host_facts_json(&host),
    }
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn secret_looking_values_are_hidden() {
        let cases = [
            ("-Ddb.password=hunter2 -Xmx1g Main", "-Ddb.password=*** -Xmx1g Main"),
            ("--api-key=abc --port=8080", "--api-key=*** --port=8080"),
            (
                "-Daws.secretKey=x -Dspring.datasource.PASSWORD=y",
                "-Daws.secretKey=*** -Dspring.datasource.PASSWORD=***",
            ),
            ("app --password hunter2 --user bob", "app --password *** --user bob"),
            ("-Dtls.privateKey=k", "-Dtls.privateKey=***"),
            ("-Xmx64m -cp a.jar Main", "-Xmx64m -cp a.jar Main"),
        ];
        for (input, want) in cases {
            assert_eq!(super::redact_args(input), want);
        }
    }
}

#[cfg(test)]
mod recent_tests {
    use jvmwatch_ring::{Collector, Event, Identity, Writer};

    #[test]
    fn the_service_detail_reads_only_the_tail_and_keeps_what_it_saw_before() {
        let d = tempfile::tempdir().unwrap();
        let id = Identity { pid: 1, start_ns: 1, interval_ns: 100_000_000, ..Identity::default() };
        let w = Writer::create(&d.path().join("t.ring"), 65_536, &id).unwrap();
        for i in 0..70_000u64 {
            w.emit(&Event::GcPauseEnd { gc_id: i, collector: Collector::G1, duration_ns: 1 });
        }
        let full = super::inspect(w.path(), 10).unwrap();
        assert_eq!(full.lost_events, 70_000 - 65_536, "inspect walks the whole ring");
        let seen = super::Seen { oom: true, ..super::Seen::default() };
        let recent = super::inspect_recent(w.path(), 10, seen).unwrap();
        assert_eq!(recent.events.len(), 10);
        assert_eq!(recent.lost_events, 0, "only the newest {} events were read", super::RECENT);
        assert_eq!(recent.events_total, 70_000);
        assert!(recent.findings.contains(&"oom"), "what the service saw earlier is kept");
    }
}

#[cfg(test)]
mod event_text_tests {
    use jvmwatch_ring::event::{OomKind, Text};
    use jvmwatch_ring::{Collector, Event, Record};

    /// The stream's direct text of every kind of event is the API's `Value` with `jvm` added,
    /// byte for byte (key order, numbers, escapes, `null`s, string ids out of range).
    #[test]
    fn the_stream_text_of_every_event_is_the_api_json_with_its_jvm() {
        let t = |s: &str| Text::new(s, 40);
        let strings: Vec<String> =
            ["G1 Young Generation", "Allocation Failure", "end of minor GC", "quote \" and \\ é"]
                .map(String::from)
                .to_vec();
        let events = [
            Event::VmInit,
            Event::VmDeath,
            Event::DataDump,
            Event::GcPauseStart { gc_id: u64::MAX, collector: Collector::G1 },
            Event::GcPauseEnd { gc_id: 7, collector: Collector::Z, duration_ns: 1_234_567 },
            Event::GcPauseEnd { gc_id: 8, collector: Collector::Unknown, duration_ns: 0 },
            Event::ThreadStart { tid: 12, name: t("worker \"1\"\n\ttab") },
            Event::ThreadEnd { tid: u32::MAX, name: t("") },
            Event::ResourceExhausted { kind: OomKind::Metaspace, flags: 3, detail: t("Metaspace") },
            Event::AgentWarning { text: t("control \u{1} char") },
            Event::GcCycle {
                gc_number: 3,
                duration_us: 1501,
                collector: 0,
                cause: 1,
                action: 2,
                concurrent: true,
                before: u64::MAX,
                after: 0,
            },
            Event::GcPool { gc_number: 3, pool: 3, before: 10, after: 5 },
            Event::GcPool { gc_number: 4, pool: 999, before: 1, after: 1 },
            Event::Deadlock { threads: 2, index: 1, text: t("\"a\" waits on \"b\"") },
            Event::AppEvent { name: 3, detail: t("é ü 日本") },
            Event::ControllerAction { stage: 2, text: t("restart") },
            Event::ControllerAction { stage: 9, text: t("?") },
            Event::Processor {
                vendor: 0,
                model_name: 1,
                class: 2,
                hypervisor: u16::MAX,
                family: 6,
                model: u32::MAX,
                stepping: 0,
                host_cores: 64,
                hypervisor_flag: false,
            },
            Event::Resources {
                cores_told: 2,
                active_processor_count: 0,
                affinity: 4,
                cpu_quota_milli: -1,
                mem_limit: 1 << 40,
                cpuset: t("0-3"),
            },
            Event::Resources {
                cores_told: 2,
                active_processor_count: 3,
                affinity: 4,
                cpu_quota_milli: 1500,
                mem_limit: -1,
                cpuset: t(""),
            },
            Event::Unknown { kind: 0xfff },
        ];
        for (k, event) in events.into_iter().enumerate() {
            for time_ns in [0, 1_795_732_072_223_109_882] {
                let r = Record { seq: k as u64, time_ns, event };
                let mut want = super::event_json(&r, &strings);
                want["jvm"] = "1-2-ab\"c".into();
                let got = super::event_json_text(&r, &strings, "1-2-ab\"c");
                assert_eq!(got, want.to_string(), "{event:?}");
            }
        }
    }
}

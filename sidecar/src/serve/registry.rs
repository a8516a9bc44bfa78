//! The JVMs the service follows: discovery of ring files in the watched directory, and the
//! follower thread that tails each ring (cursor, events, snapshot, liveness) and publishes
//! what is new to SSE subscribers.
//!
//! The follower is one plain thread polling: mapped-file writes raise no inotify events. Per
//! tick it looks at each live ring's cursor, heartbeat and state words through a read-only
//! mapping of the header page (memory loads, no system call: [`jvmwatch_ring::watch`]); only
//! when the cursor moved does it read events, and only when the heartbeat or state moved does
//! it re-read the live header, all with checked `pread`s, so a truncated or vanished file stays
//! an error rather than a SIGBUS. A ring that cannot be mapped is polled with `pread` instead.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use jvmwatch_ring::metrics::Instrument;
use jvmwatch_ring::watch::{CursorWatch, HeaderPage};
use jvmwatch_ring::{Event, Header, Live, Record, Ring, Snapshot};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::findings::{self, Verdict};
use crate::report;

/// Events kept in memory per JVM at most (for findings and SSE resume; older ones are re-read
/// from the ring file on demand).
pub const WINDOW: usize = 4096;
/// Events kept per JVM whatever their age.
pub const WINDOW_MIN: usize = 128;
/// Beyond WINDOW_MIN, events older than this (before the JVM's newest) leave the window.
pub const WINDOW_AGE: Duration = Duration::from_secs(30);
/// How often live rings are checked for new events.
pub const TICK: Duration = Duration::from_millis(5);
/// The tick while no one subscribes to a stream: nobody waits on an event then (the
/// controller's rules read the registry on their own period, `/metrics` is scraped in
/// seconds), so events are read in larger batches and the follower wakes 10 times a second,
/// not 200. A new subscriber is served from the next tick on.
pub const IDLE_TICK: Duration = Duration::from_millis(100);
/// While someone streams (the 5 ms tick), the events of a ring whose messages nobody
/// subscribed to are read this often: about the idle tick's pace.
pub const UNWATCHED_EVERY: Duration = Duration::from_millis(95);
/// A ring without events for a second is polled every this many ticks (20 ms).
pub const QUIET_EVERY: u64 = 4;
/// How often a ring's snapshot is re-read at most (the sampler writes one per interval,
/// 100 ms by default; the service shows and pushes them once a second).
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// How often a quiet ring's live header, snapshot and findings are refreshed.
pub const QUIET_REFRESH: Duration = Duration::from_millis(500);
/// How often liveness, snapshot and findings are refreshed (rings with recent events).
pub const REFRESH: Duration = Duration::from_millis(100);
/// How often a snapshot is pushed to SSE subscribers.
pub const SNAPSHOT_PUSH: Duration = Duration::from_secs(1);
/// Every this many pushes (5 s) the directory is listed and every ring's path checked even
/// though the directory's mtime did not move; otherwise both happen within a [`REFRESH`] of
/// the mtime moving (a file created, removed or renamed). The sweep is the backstop for two
/// changes within one mtime tick.
pub const SWEEP_EVERY: u64 = 5;
/// The longest metrics window, s (five minutes; see [`crate::appmetrics::History`]).
pub const METRICS_HISTORY: usize = crate::appmetrics::History::SPAN_S as usize;
/// Window of the metrics in snapshot messages, seconds.
pub const DEFAULT_WINDOW_S: u64 = 60;
/// SSE messages buffered for all subscribers together; a subscriber further behind is dropped.
pub const BROADCAST_CAPACITY: usize = 2048;

/// How often the service judges the leak findings of a live JVM: they read its whole history
/// (3 MiB at the defaults), so 50 JVMs cost 2.5 MB/s of `pread` at this period. The read is
/// the lean one ([`jvmwatch_ring::Ring::leak_series`]: a 63 KiB buffer per thread, four figures
/// kept per record), not [`jvmwatch_ring::Ring::history`]. A dead JVM's history no longer
/// changes: it is judged once.
const LEAK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// At most one history read for the leak findings per this long, over all followed JVMs: beyond
/// 240 of them, each is judged every `count × LEAK_SPACING` rather than every [`LEAK_EVERY`]
/// (1,000 JVMs: every 250 s), so the reads cost at most 4 histories a second.
const LEAK_SPACING: Duration = Duration::from_millis(250);
/// Largest history the service reads for the leak findings (4 × the default).
const LEAK_MAX_HISTORY_BYTES: u64 = 16 << 20;

/// One message for SSE subscribers.
#[derive(Debug)]
pub struct Msg {
    /// The JVM it is about.
    pub jvm: Arc<str>,
    /// Event sequence number (`None` for snapshots).
    pub seq: Option<u64>,
    /// SSE event name: the event type, or `snapshot`.
    pub kind: &'static str,
    /// JSON data.
    pub data: String,
    /// The frame the all-JVM stream sends, rendered once by the first subscriber to send it
    /// and shared by the others.
    global_frame: OnceLock<String>,
}

impl Msg {
    /// A message (its frames are rendered when a subscriber first sends it).
    pub fn new(jvm: Arc<str>, seq: Option<u64>, kind: &'static str, data: String) -> Msg {
        Msg { jvm, seq, kind, data, global_frame: OnceLock::new() }
    }

    /// Appends the message as one SSE frame: `event:`, one `data:` line per line of the data,
    /// `id:` for events (`JVMID/SEQ` on the all-JVM stream, `SEQ` on one JVM's) and a blank
    /// line.
    pub fn frame_to(&self, global: bool, out: &mut Vec<u8>) {
        if global {
            out.extend_from_slice(self.global_frame.get_or_init(|| self.render(true)).as_bytes());
        } else {
            out.extend_from_slice(self.render(false).as_bytes());
        }
    }

    fn render(&self, global: bool) -> String {
        use std::fmt::Write;
        let mut f = String::with_capacity(self.data.len() + self.kind.len() + self.jvm.len() + 48);
        // Event names and JVM ids hold no line breaks (static names; ids are checked by
        // `valid_id`); compact JSON holds none either, but a line break in the data (`\r\n`,
        // `\n` or `\r`, as the SSE format counts them) would end the line, so each line of it
        // gets its own `data:` field.
        let _ = writeln!(f, "event: {}", self.kind);
        let lines = self.data.split('\n').flat_map(|l| l.strip_suffix('\r').unwrap_or(l).split('\r'));
        for line in lines {
            let _ = writeln!(f, "data: {line}");
        }
        match self.seq {
            Some(seq) if global => {
                let _ = writeln!(f, "id: {}/{seq}", self.jvm);
            }
            Some(seq) => {
                let _ = writeln!(f, "id: {seq}");
            }
            None => {}
        }
        f.push('\n');
        f
    }
}

/// A JVM's list entry (see [`Jvm::summary`]).
#[derive(Serialize)]
struct Summary<'a> {
    id: &'a str,
    pid: u32,
    verdict: Verdict,
    findings: &'a [&'static str],
    started_at: report::Time,
    last_heartbeat_at: report::Time,
    app: Option<&'a str>,
    hostname: &'a str,
    attached: bool,
    jvm_version: &'a str,
    collector: &'static str,
    /// Paths lossily as text: a directory name that is not UTF-8 shows with U+FFFD rather
    /// than failing the whole entry.
    crash_report: Option<std::borrow::Cow<'a, str>>,
    file: std::borrow::Cow<'a, str>,
    gone: Option<&'a str>,
    exit: Option<&'a str>,
    restart_requested: Option<&'a str>,
}

/// A stream's snapshot message (see [`Jvm::snapshot_msg`]).
#[derive(Serialize)]
struct SnapshotMsg<'a> {
    #[serde(flatten)]
    summary: Summary<'a>,
    jvm: &'a str,
    snapshot: Option<report::SnapshotJson<'a>>,
    gc: GcTotals,
    events_total: u64,
    metrics: Value,
}

#[derive(Serialize)]
struct GcTotals {
    pauses: u64,
    pause_total_ms: f64,
    pause_max_ms: f64,
}

/// What the service knows of one JVM.
pub struct Jvm {
    /// Id: the ring file's stem.
    pub id: Arc<str>,
    /// The ring file.
    pub path: PathBuf,
    ring: Option<Arc<Ring>>,
    /// Validated header.
    pub header: Header,
    /// Live header part, as of the last refresh.
    pub live: Live,
    /// Writer alive at the last refresh.
    pub alive: bool,
    /// Latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// Recent events.
    pub window: VecDeque<Record>,
    /// Next sequence number to read.
    pub next_seq: u64,
    /// Events lost (overwritten/torn) since the service started following.
    pub lost: u64,
    /// Resource-exhaustion or deadlock events seen (they may have left the window).
    pub seen: report::Seen,
    /// The ring's string table (names that compact events refer to).
    pub strings: Vec<String>,
    /// The host facts the agent recorded, as of the events read so far.
    pub host_facts: jvmwatch_ring::facts::HostFacts,
    /// Metrics region reads, one per second, thinned with age (for windows up to 5 minutes).
    pub metrics_hist: crate::appmetrics::History,
    /// Current verdict.
    pub verdict: Verdict,
    /// Crash report, when crashed.
    pub crash_report: Option<PathBuf>,
    /// The crash-report search for a dead JVM, once done (outside the registry lock: it
    /// stats files in the JVM's working directory, which may be on a hung filesystem), and
    /// whether that report says the JVM ran out of memory.
    crash_lookup: Option<CrashFound>,
    /// The leak findings (heap, threads) from the history, and when they were judged.
    leaks: (bool, bool),
    leaks_at: Option<Instant>,
    leaks_final: bool,
    /// Current findings.
    pub findings: Vec<&'static str>,
    /// Why the file can no longer be read, once it vanished or broke.
    pub gone: Option<String>,
    /// The process's exit status as its supervisor saw it (`exited(3)`, `killed(SIGKILL)`).
    pub exit_status: Option<String>,
    /// The rule whose restart decision this JVM's orchestrator is to carry out (`serve
    /// --rules`): its liveness probe answers 503 from then on.
    pub restart_requested: Option<String>,
    /// Writer gone and everything read: nothing more will change.
    pub settled: bool,
    /// When events last arrived (a quiet ring's cursor is polled less often).
    last_events: Instant,
    /// When the live header was last read.
    last_refresh: Instant,
    /// When the snapshot was last read.
    last_snapshot: Option<Instant>,
    /// The mapped header page (`None`: polled with `pread`).
    page: Option<Arc<HeaderPage>>,
    /// Its words at the last live-header read.
    words: jvmwatch_ring::watch::Words,
    /// Whether the leak findings were judged more than once (the second time comes at a point
    /// of the period that depends on the id, so rings found together are not read together).
    leaks_again: bool,
    /// How often they are judged while it lives (see [`LEAK_SPACING`]).
    leak_every: Duration,
    /// When this ring's once-a-second work (full refresh, metrics, snapshot message) is next
    /// due: each ring at its own point of the second, so the work never piles up in one tick.
    push_due: Instant,
}

impl Jvm {
    /// Opens a ring and reads its recent events; those of a live writer also go to `publish`
    /// (a JVM found after it started still streams everything it wrote meanwhile).
    fn open(path: &Path, publish: impl Fn(Msg)) -> Result<Jvm, jvmwatch_ring::ReadError> {
        let ring = Ring::open(path)?;
        let id: Arc<str> = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default().into();
        let header = ring.header().clone();
        let cursor = ring.cursor()?;
        let mut j = Jvm {
            id,
            path: path.to_path_buf(),
            header,
            live: Live::default(),
            alive: false,
            snapshot: None,
            window: VecDeque::new(),
            // Start with the last WINDOW events; older ones stay readable from the file.
            next_seq: cursor.saturating_sub(WINDOW as u64),
            lost: 0,
            seen: report::Seen::default(),
            strings: Vec::new(),
            host_facts: Default::default(),
            metrics_hist: Default::default(),
            verdict: Verdict::Running,
            crash_report: None,
            crash_lookup: None,
            leaks: (false, false),
            leaks_at: None,
            leaks_final: false,
            findings: Vec::new(),
            gone: None,
            exit_status: None,
            restart_requested: None,
            settled: false,
            last_events: Instant::now(),
            last_refresh: Instant::now(),
            last_snapshot: None,
            page: ring.header_page().map(Arc::new),
            words: Default::default(),
            leaks_again: false,
            leak_every: LEAK_EVERY,
            push_due: Instant::now() + SNAPSHOT_PUSH.mul_f64(spread(path.to_string_lossy().as_ref())),
            ring: Some(Arc::new(ring)),
        };
        j.refresh(true);
        if let Some(q) = j.crash_query() {
            j.crash_lookup = Some(q.run()); // not under the registry lock: `open` runs before insertion
        }
        let (alive, id) = (j.alive, j.id.clone());
        j.read_events(|r, strings| {
            if alive {
                publish(event_msg(&id, r, strings));
            }
        });
        j.sample_metrics();
        j.judge();
        Ok(j)
    }

    /// The open ring, unless the file is gone. A shared handle, so callers read the file
    /// after releasing the registry lock.
    pub fn ring(&self) -> Option<Arc<Ring>> {
        self.ring.clone()
    }

    fn fail(&mut self, why: String) {
        self.gone = Some(why);
        self.ring = None;
        self.page = None;
        self.alive = false;
        self.settled = true;
    }

    /// What to look for to find this JVM's crash report, when it is dead without a clean exit
    /// and no one has looked yet.
    fn crash_query(&self) -> Option<CrashQuery> {
        let dead = !self.alive && self.gone.is_none() && self.live.state != Some(jvmwatch_ring::State::Exited);
        (dead && self.crash_lookup.is_none()).then(|| CrashQuery {
            id: self.id.clone(),
            cwd: self.header.cwd.clone(),
            error_file: self.header.error_file.clone(),
            pid: self.header.pid,
            start_ns: self.header.start_ns,
        })
    }

    /// Whether the live header is worth re-reading before the next push: always without a
    /// mapping; with one, when the state word moved, or when the heartbeat did not (is the
    /// writer still alive?). A heartbeat that moves as it should waits for the push.
    fn wants_refresh(&self) -> bool {
        self.page.as_ref().is_none_or(|p| {
            let w = p.words();
            w.state != self.words.state || w.heartbeat_ns == self.words.heartbeat_ns
        })
    }

    /// Re-reads the live header part; the snapshot on `full` refreshes, else only when the
    /// heartbeat moved (the sampler writes the snapshot before the heartbeat) and
    /// [`SNAPSHOT_EVERY`] passed; liveness (two
    /// `flock` calls) when the heartbeat did not move or the writer was not known alive: a
    /// moving heartbeat is a live writer, and one that stops is looked at within a refresh.
    /// (Whether the file still exists is checked by [`Registry::tick`] outside the lock.)
    fn refresh(&mut self, full: bool) {
        let Some(ring) = &self.ring else { return };
        // The words first: a change after this read shows as a change next time.
        if let Some(p) = &self.page {
            self.words = p.words();
        }
        let live = match ring.live() {
            Ok(l) => l,
            Err(e) => return self.fail(e.to_string()),
        };
        let beat_moved = live.heartbeat_ns != self.live.heartbeat_ns;
        let snapshot_due = self.last_snapshot.is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY);
        if (beat_moved && snapshot_due) || full {
            self.last_snapshot = Some(Instant::now());
            match ring.snapshot() {
                Ok(Some(s)) => self.snapshot = Some(s),
                Ok(None) => {}
                Err(e) => return self.fail(e.to_string()),
            }
        }
        if !beat_moved || !self.alive {
            self.alive = ring.writer_alive();
        }
        self.live = live;
    }

    /// Reads new events, handing each to `publish`.
    fn read_events(&mut self, publish: impl FnMut(&Record, &[String])) {
        let mapped = self.page.as_ref().map(|p| p.cursor());
        self.read_events_to(mapped, publish)
    }

    /// [`Jvm::read_events`] with the mapped cursor already loaded (`None`: not mapped).
    fn read_events_to(&mut self, mapped: Option<u64>, mut publish: impl FnMut(&Record, &[String])) {
        let Some(ring) = &self.ring else { return };
        // The mapped cursor says whether anything is new (no system call); with it the scan
        // reads only slots, each judged by its own stamp and check.
        let unmoved = match mapped {
            Some(c) => Ok(c == self.next_seq),
            None => ring.cursor().map(|c| c == self.next_seq),
        };
        let scan = match unmoved.and_then(|unmoved| match mapped {
            _ if unmoved => Ok(None),
            // A mapped cursor ahead of ours saves the scan's `pread` of it; one behind ours
            // (a truncated file reads zeros there) goes the way that reads and checks the file.
            Some(c) if c > self.next_seq => ring.scan_limit_to(self.next_seq, c, self.alive, 65_536).map(Some),
            _ => ring.scan_limit(self.next_seq, self.alive, 65_536).map(Some),
        }) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => return self.fail(e.to_string()),
        };
        self.lost += scan.lost();
        self.next_seq = scan.next;
        if !scan.records.is_empty() {
            self.last_events = Instant::now();
        }
        // The string table only grows: re-read it when an event names an id not known yet.
        let known = self.strings.len();
        let unknown = |ids: &[u16]| ids.iter().any(|&i| i as usize >= known);
        let refers_to_new_strings = scan.records.iter().any(|r| match r.event {
            Event::GcCycle { collector, cause, action, .. } => unknown(&[collector, cause, action]),
            Event::GcPool { pool, .. } => unknown(&[pool]),
            Event::AppEvent { name, .. } => unknown(&[name]),
            Event::Processor { vendor, model_name, class, hypervisor, .. } => {
                unknown(&[vendor, model_name, class, hypervisor])
            }
            _ => false,
        });
        if refers_to_new_strings {
            if let Ok(s) = ring.strings() {
                self.strings = s;
            }
        }
        for r in scan.records {
            match r.event {
                Event::ResourceExhausted { .. } => self.seen.oom = true,
                Event::Deadlock { .. } => self.seen.deadlock = true,
                _ => {}
            }
            self.host_facts.apply(&r, &self.strings);
            publish(&r, &self.strings);
            self.window.push_back(r);
        }
        self.trim_window();
    }

    fn trim_window(&mut self) {
        trim_window(&mut self.window);
    }

    /// Recomputes verdict and findings.
    fn judge(&mut self) {
        if self.gone.is_none() {
            let crash = self.crash_lookup.as_ref().and_then(|(p, _)| p.clone());
            self.verdict = findings::verdict(self.alive, self.live.state, crash.is_some());
            self.crash_report = crash;
        }
        // `seen` already holds the flags from every event read, so no full walk of the window.
        let seen = report::Seen { covers_records: true, ..self.seen };
        let mut facts = report::facts(&self.header, &self.live, self.alive, self.snapshot.as_ref(), &self.window, seen);
        facts.oom |= self.crash_lookup.as_ref().is_some_and(|(_, oom)| *oom);
        // The leak findings read the history's records (up to a few MB; only the four figures
        // they use are kept): every LEAK_EVERY.
        let due = match self.leaks_at {
            None => true,
            Some(t) => {
                let every = if self.leaks_again { self.leak_every } else { self.leak_every.mul_f64(spread(&self.id)) };
                (self.alive && t.elapsed() >= every) || (!self.alive && !self.leaks_final)
            }
        };
        if due {
            self.leaks_again = self.leaks_at.is_some();
            self.leaks_at = Some(Instant::now());
            self.leaks_final = !self.alive;
            // Under the registry lock: only histories of the default size or so (a hostile
            // geometry of 88 MB is not read here; `inspect` and the history route still can).
            let small = self.header.geometry.history_bytes() <= LEAK_MAX_HISTORY_BYTES;
            if let Some(Ok(Some(l))) = self.ring.as_ref().filter(|_| small).map(|r| r.leak_series()) {
                let (heap, threads) = crate::history::leaks_of_series(&l);
                self.leaks = (heap.is_some(), threads.is_some());
            }
        }
        (facts.heap_leak, facts.thread_leak) = self.leaks;
        self.findings = findings::findings(&facts);
        if !self.alive && self.ring.as_ref().and_then(|r| r.cursor().ok()) == Some(self.next_seq) {
            self.settled = true;
        }
    }

    /// Reads the metrics region into the history (once per second).
    fn sample_metrics(&mut self) {
        let Some(ring) = &self.ring else { return };
        if let Ok((ins, strings)) = ring.metrics_since(self.strings.len()) {
            if let Some(strings) = strings {
                self.strings = strings;
            }
            self.metrics_hist.push(jvmwatch_ring::now_ns(), ins);
        }
    }

    /// Application metrics over (up to) the last `secs` seconds: rates, averages, percentiles.
    pub fn metrics_window(&self, secs: u64) -> Value {
        self.metrics_hist.window(secs)
    }

    /// The latest metrics read.
    pub fn instruments(&self) -> &[Instrument] {
        self.metrics_hist.latest()
    }

    /// The list entry: `id`, `pid`, `verdict`, `findings`, times, app, host, file.
    pub fn summary(&self) -> Value {
        serde_json::to_value(self.summary_fields()).unwrap_or(Value::Null)
    }

    fn summary_fields(&self) -> Summary<'_> {
        Summary {
            id: &self.id,
            pid: self.header.pid,
            verdict: self.verdict,
            findings: &self.findings,
            started_at: report::Time(self.header.start_ns),
            last_heartbeat_at: report::Time(self.live.heartbeat_ns),
            app: (!self.live.app_name.is_empty()).then_some(self.live.app_name.as_str()),
            hostname: &self.header.hostname,
            attached: self.header.attached(),
            jvm_version: &self.header.jvm_version,
            collector: self.live.collector.name(),
            crash_report: self.crash_report.as_deref().map(Path::to_string_lossy),
            file: self.path.to_string_lossy(),
            gone: self.gone.as_deref(),
            exit: self.exit_status.as_deref(),
            restart_requested: self.restart_requested.as_deref(),
        }
    }

    /// The snapshot message for SSE: the summary plus the snapshot and GC pause totals.
    /// Serialized directly (no `Value` tree): the stream sends one per JVM a second.
    pub fn snapshot_msg(&self) -> Msg {
        let gc = &self.live;
        let m = SnapshotMsg {
            summary: self.summary_fields(),
            jvm: &self.id,
            snapshot: self.snapshot.as_ref().map(report::SnapshotJson::of),
            gc: GcTotals {
                pauses: gc.gc_pauses,
                pause_total_ms: gc.gc_pause_total_ns as f64 / 1e6,
                pause_max_ms: gc.gc_pause_max_ns as f64 / 1e6,
            },
            events_total: self.live.cursor,
            metrics: self.metrics_window(DEFAULT_WINDOW_S),
        };
        Msg::new(self.id.clone(), None, "snapshot", serde_json::to_string(&m).unwrap_or_default())
    }

    /// Live probe: the JVM process is alive, its sampler is not stuck, and no restart was
    /// decided for it.
    pub fn is_live(&self) -> bool {
        self.alive && !self.findings.contains(&"hung") && self.restart_requested.is_none()
    }

    /// The app it belongs to: the name it set (`-Djvmwatch.app`), else `default`.
    pub fn app(&self) -> &str {
        if self.live.app_name.is_empty() {
            "default"
        } else {
            &self.live.app_name
        }
    }

    /// Ready probe: live, initialised, its first snapshot written (so every figure the
    /// service shows exists), no resource exhaustion.
    pub fn is_ready(&self) -> bool {
        self.is_live()
            && self.live.state == Some(jvmwatch_ring::State::Running)
            && self.snapshot.is_some()
            && !self.seen.oom
    }
}

/// A fraction in 0..1 that depends only on `id` (FNV-1a), to spread periodic work.
fn spread(id: &str) -> f64 {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A crash report's path, if one was found, and whether it says out of memory.
type CrashFound = (Option<PathBuf>, bool);

/// A crash-report search to run outside the registry lock.
struct CrashQuery {
    id: Arc<str>,
    cwd: String,
    error_file: String,
    pid: u32,
    start_ns: u64,
}

impl CrashQuery {
    /// The report's path, if found, and whether it says out of memory.
    fn run(&self) -> CrashFound {
        let found = report::find_crash_report(&self.cwd, &self.error_file, self.pid, self.start_ns);
        let oom = found.as_deref().is_some_and(report::crash_was_oom);
        (found, oom)
    }
}

/// A JVM id (a ring file's stem) the service accepts: it appears in URLs, JSON and SSE `id`
/// lines, so no separators, no CR/LF, nothing hidden.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// One event record as an SSE message.
pub fn event_msg(jvm: &Arc<str>, r: &Record, strings: &[String]) -> Msg {
    let data = report::event_json_text(r, strings, jvm);
    Msg::new(jvm.clone(), Some(r.seq), r.event.type_name(), data)
}

/// All followed JVMs.
pub struct Registry {
    /// The watched directory.
    pub dir: PathBuf,
    /// Follow ring files of other owners too (off: only the effective user's files, so
    /// another user cannot plant forged rings).
    pub any_owner: bool,
    jvms: Mutex<BTreeMap<Arc<str>, Jvm>>,
    /// SSE fan-out.
    pub tx: broadcast::Sender<Arc<Msg>>,
    stop: AtomicBool,
    /// Modification time of the directory at the last discovery (new rings change it).
    dir_mtime: Mutex<Option<std::time::SystemTime>>,
    /// Counts refreshes: what the service shows changes only when this moves.
    generation: AtomicU64,
    /// The rendered `/metrics` text and the generation it shows.
    metrics_text: Mutex<(u64, Arc<String>)>,
    /// Exit statuses reported for JVMs not discovered yet (applied when they are).
    early_exits: Mutex<HashMap<String, String>>,
    /// Counts insertions into and removals from the map (the follower's poll list is rebuilt
    /// when it moves; Relaxed: read and written under the map lock).
    members: AtomicU64,
    /// The follower's poll list (only the follower thread uses it).
    polls: Mutex<Polls>,
    /// Which JVMs' messages some subscriber reads ([`Registry::subscribe`]).
    interest: Arc<Mutex<Interest>>,
}

/// What the stream's subscribers read: the follower builds a JVM's event and snapshot
/// messages only when some subscriber takes them. A console shows one JVM's stream; at 1,000
/// rings, building every ring's messages for it cost as much as a client that reads them all.
#[derive(Debug, Default)]
struct Interest {
    /// Subscribers to every JVM's messages.
    all: usize,
    /// Subscribers to one JVM's messages, per JVM (no zero counts kept).
    jvms: HashMap<Arc<str>, usize>,
    /// Counts changes (the follower's poll list caches [`Interest::wants`] per ring).
    changes: u64,
}

impl Interest {
    /// Whether some subscriber reads JVM `id`'s messages.
    fn wants(&self, id: &str) -> bool {
        self.all > 0 || self.jvms.contains_key(id)
    }
}

/// A subscription to the stream: its receiver, and its interest, which it withdraws when
/// dropped.
pub struct Subscription {
    /// The messages (every JVM's that anyone subscribed to; a one-JVM subscriber filters).
    pub rx: broadcast::Receiver<Arc<Msg>>,
    /// Withdraws the interest when the stream ends.
    pub interest: InterestGuard,
}

/// Counts a subscriber in [`Interest`] while it lives.
pub struct InterestGuard {
    interest: Arc<Mutex<Interest>>,
    jvm: Option<Arc<str>>,
}

impl Drop for InterestGuard {
    fn drop(&mut self) {
        let mut i = self.interest.lock().unwrap_or_else(|e| e.into_inner());
        i.changes += 1;
        match &self.jvm {
            None => i.all = i.all.saturating_sub(1),
            Some(id) => {
                if let Some(n) = i.jvms.get_mut(id) {
                    *n -= 1;
                    if *n == 0 {
                        i.jvms.remove(id);
                    }
                }
            }
        }
    }
}

/// The follower's compact list of what to poll each tick: the mapped pages side by side, so
/// one tick's loads of a thousand cursors run in a tight loop rather than one per walk
/// through each JVM's state.
#[derive(Default)]
struct Polls {
    /// The [`Registry::members`] count it was built at (`u64::MAX`: never built).
    members: u64,
    /// The [`Interest::changes`] count its `wanted` flags show (`u64::MAX`: none yet).
    interest: u64,
    list: Vec<Poll>,
    /// Each ring's next once-a-second push, soonest first: the due ones are found on any tick
    /// without walking every ring, so the push work spreads over the ticks of the second
    /// instead of bunching on the refresh ticks (where it held back the next tick's events).
    due: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    /// A tick's rings whose cursor moved: (index in `list`, the cursor loaded), kept between
    /// ticks for its allocation only.
    moved: Vec<(usize, Option<u64>)>,
    /// A tick's messages, kept between ticks for its allocation only (empty between ticks).
    out: Vec<Arc<Msg>>,
}

struct Poll {
    id: Arc<str>,
    /// `None`: not mapped; its cursor is read with `pread`.
    page: Option<CursorWatch>,
    /// The JVM's next sequence number to read, as of its last read.
    next_seq: u64,
    /// When its events were last read (`None`: not since the list was built).
    read_at: Option<Instant>,
    /// Whether someone streams its messages, as of [`Polls::interest`].
    wanted: bool,
}

impl Registry {
    /// A registry for `dir` (nothing read yet).
    pub fn new(dir: PathBuf, any_owner: bool) -> Arc<Registry> {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(Registry {
            dir,
            any_owner,
            jvms: Mutex::new(BTreeMap::new()),
            tx,
            stop: AtomicBool::new(false),
            dir_mtime: Mutex::new(None),
            generation: AtomicU64::new(1),
            metrics_text: Mutex::new((0, Arc::new(String::new()))),
            early_exits: Mutex::new(Default::default()),
            members: AtomicU64::new(0),
            polls: Mutex::new(Polls { members: u64::MAX, interest: u64::MAX, ..Polls::default() }),
            interest: Arc::default(),
        })
    }

    /// Subscribes to the stream: every JVM's messages (`jvm` `None`) or one JVM's. The
    /// follower builds a JVM's messages only while someone subscribed to them, from its next
    /// tick on; so subscribe before reading what to replay (under the map lock): a tick that
    /// ran without this interest finished before that read and is in it.
    pub fn subscribe(&self, jvm: Option<Arc<str>>) -> Subscription {
        let rx = self.tx.subscribe();
        let mut i = self.interest.lock().unwrap_or_else(|e| e.into_inner());
        i.changes += 1;
        match &jvm {
            None => i.all += 1,
            Some(id) => *i.jvms.entry(id.clone()).or_insert(0) += 1,
        }
        drop(i);
        Subscription { rx, interest: InterestGuard { interest: self.interest.clone(), jvm } }
    }

    /// Locks the map (a poisoned lock is taken over: the data is plain state).
    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Jvm>> {
        self.jvms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Picks up new ring files if the directory changed since the last look (one `stat`);
    /// whether it changed.
    pub fn discover_if_changed(&self) -> bool {
        let now = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        let mut last = self.dir_mtime.lock().unwrap_or_else(|e| e.into_inner());
        if now == *last {
            return false;
        }
        *last = now;
        drop(last);
        self.discover();
        true
    }

    /// Picks up ring files that appeared in the directory.
    pub fn discover(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let known: std::collections::HashSet<PathBuf> = self.lock().values().map(|j| j.path.clone()).collect();
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".ring") || known.contains(&p) {
                continue;
            }
            if !name.strip_suffix(".ring").is_some_and(valid_id) {
                continue; // a name that cannot be an id (CR/LF, spaces, …): not a ring of ours
            }
            let Ok(md) = e.metadata() else { continue };
            if !md.is_file() {
                continue;
            }
            // SAFETY: geteuid has no preconditions and cannot fail.
            if !self.any_owner && std::os::unix::fs::MetadataExt::uid(&md) != unsafe { libc::geteuid() } {
                continue; // another user's file (see --any-owner)
            }
            match Jvm::open(&p, |m| {
                let _ = self.tx.send(Arc::new(m));
            }) {
                Ok(mut j) => {
                    j.exit_status = self.early_exits.lock().unwrap_or_else(|e| e.into_inner()).remove(&*j.id);
                    let msg = Arc::new(j.snapshot_msg());
                    let mut jvms = self.lock();
                    if !p.exists() {
                        continue; // archived by retention meanwhile (it forgets after removing)
                    }
                    jvms.insert(j.id.clone(), j);
                    self.members.fetch_add(1, Ordering::Relaxed);
                    // Under the lock: whoever sees the new JVM also sees a new generation.
                    self.generation.fetch_add(1, Ordering::Release);
                    drop(jvms);
                    let _ = self.tx.send(msg);
                }
                Err(e) => eprintln!("jvmwatch serve: skipping {}: {e}", p.display()),
            }
        }
    }

    /// The Prometheus text, rendered at most once per follower tick that changed something
    /// (every 100 ms while no one streams, up to every 5 ms while someone does) however
    /// often it is scraped. Every change to what it shows bumps the generation while holding the
    /// map's lock, so a client that saw a change through any endpoint never gets an older
    /// rendering afterwards.
    pub fn metrics_text(&self) -> Arc<String> {
        let mut cache = self.metrics_text.lock().unwrap_or_else(|e| e.into_inner());
        // Acquire pairs with the Release bumps made under the map lock; the render below
        // takes that lock, so it shows at least this generation's state.
        let generation = self.generation.load(Ordering::Acquire);
        if cache.0 != generation {
            *cache = (generation, Arc::new(super::metrics::render(&self.lock())));
        }
        cache.1.clone()
    }

    /// Records the exit status a supervisor saw for JVM `id` (kept until it is discovered).
    pub fn set_exit_status(&self, id: &str, status: &str) {
        let mut jvms = self.lock();
        match jvms.get_mut(id) {
            Some(j) => j.exit_status = Some(status.to_string()),
            None => {
                let mut early = self.early_exits.lock().unwrap_or_else(|e| e.into_inner());
                if early.len() < 10_000 {
                    early.insert(id.to_string(), status.to_string());
                }
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Marks JVM `id` for a restart by its orchestrator (its liveness turns 503); false if
    /// the service does not know it.
    pub fn request_restart(&self, id: &str, rule: &str) -> bool {
        let mut jvms = self.lock();
        let Some(j) = jvms.get_mut(id) else { return false };
        j.restart_requested = Some(rule.to_string());
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// Forgets a JVM (after its file was archived).
    pub fn forget(&self, id: &str) -> Option<Jvm> {
        let mut jvms = self.lock();
        let j = jvms.remove(id);
        self.members.fetch_add(1, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
        j
    }

    /// One follower tick (number `n`): new events from every live ring whose mapped cursor
    /// moved (unmapped rings: each tick while they had events in the last second, every
    /// [`QUIET_EVERY`]th tick when quiet); on any tick, for each ring whose second came (each
    /// at its own point of the second, found through a queue, so the work never piles up in
    /// one tick), a full refresh, the metrics region and a snapshot message; on `refresh`
    /// ticks (every [`REFRESH`]) also the live header and findings of rings whose state moved
    /// or whose heartbeat stopped. On `sweep` ticks (the directory changed, or every
    /// [`SWEEP_EVERY`] seconds) whether the ring files still exist.
    pub fn tick(&self, n: u64, refresh: bool, sweep: bool) {
        let tx = &self.tx;
        // Whether each ring file still exists: stat outside the lock.
        let removed: Vec<Arc<str>> = if sweep {
            let paths: Vec<(Arc<str>, PathBuf)> =
                self.lock().values().filter(|j| j.gone.is_none()).map(|j| (j.id.clone(), j.path.clone())).collect();
            paths.into_iter().filter(|(_, p)| !p.exists()).map(|(id, _)| id).collect()
        } else {
            Vec::new()
        };
        let mut jvms = self.lock();
        // Messages are only built for the JVMs someone subscribed to. Read under the map lock
        // (and held through the tick, after it: the lock order is map, then interest): a
        // subscriber that comes later replays under the map lock, after this tick.
        let interest = self.interest.lock().unwrap_or_else(|e| e.into_inner());
        for id in &removed {
            if let Some(j) = jvms.get_mut(id) {
                j.fail("ring file removed".into());
            }
        }
        let now = Instant::now();
        // This tick's messages, sent together at its end: the HTTP side then finds them all
        // queued and writes them to each subscriber in one go. (The push work that precedes
        // the sending is a few rings' worth per tick, see below.)
        let mut polls = self.polls.lock().unwrap_or_else(|e| e.into_inner());
        // The tick's lists reuse the last tick's allocations (200 ticks a second).
        let mut out = std::mem::take(&mut polls.out);
        let mut moved = std::mem::take(&mut polls.moved);
        let members = self.members.load(Ordering::Relaxed);
        if polls.members != members {
            polls.list = (jvms.values())
                .map(|j| Poll {
                    id: j.id.clone(),
                    page: j.page.clone().map(CursorWatch::new),
                    next_seq: j.next_seq,
                    read_at: None,
                    wanted: false,
                })
                .collect();
            polls.due = jvms.values().map(|j| Reverse((j.push_due, j.id.clone()))).collect();
            polls.members = members;
            polls.interest = u64::MAX;
        }
        if polls.interest != interest.changes {
            for p in &mut polls.list {
                p.wanted = interest.wants(&p.id);
            }
            polls.interest = interest.changes;
        }
        // New events: first every mapped cursor (independent loads in a tight loop), then the
        // rings whose cursor moved, and the unmapped ones.
        // (index, the mapped cursor as loaded here, handed on so the page is not touched again)
        moved.clear();
        moved.extend(
            (polls.list.iter().enumerate())
                .map(|(k, p)| (k, p.next_seq, p.page.as_ref().map(|page| page.cursor())))
                .filter(|&(_, next, cursor)| cursor != Some(next))
                .map(|(k, _, cursor)| (k, cursor)),
        );
        for &(k, cursor) in &moved {
            let p = &mut polls.list[k];
            let wanted = p.wanted;
            // A ring nobody streams is read at the idle tick's pace even while others are
            // streamed: its events reach the window, findings and rules as when no one
            // streams, in a twentieth of the scans.
            if !wanted && p.read_at.is_some_and(|t| now.saturating_duration_since(t) < UNWATCHED_EVERY) {
                continue;
            }
            let Some(j) = jvms.get_mut(&p.id) else { continue };
            if j.settled {
                continue;
            }
            // Without a mapping, a quiet ring's cursor is read every QUIET_EVERY ticks only.
            let quiet = now.saturating_duration_since(j.last_events) > Duration::from_secs(1);
            if j.page.is_none() && quiet && !refresh && !n.is_multiple_of(QUIET_EVERY) {
                continue;
            }
            p.read_at = Some(now);
            let jvm = j.id.clone();
            j.read_events_to(cursor, |r, strings| {
                if wanted {
                    out.push(Arc::new(event_msg(&jvm, r, strings)));
                }
            });
            p.next_seq = j.next_seq;
        }
        let mut refreshed = false;
        let leak_every = LEAK_EVERY.max(LEAK_SPACING * jvms.len().min(1 << 20) as u32);
        // Each ring's once-a-second work, at its own point of the second: the due ones only.
        while polls.due.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            let Some(Reverse((t, id))) = polls.due.pop() else { break };
            let Some(j) = jvms.get_mut(&id) else { continue }; // forgotten
            if j.push_due != t {
                continue; // a stale entry (the list was rebuilt meanwhile)
            }
            j.push_due = if now - t > SNAPSHOT_PUSH { now + SNAPSHOT_PUSH } else { t + SNAPSHOT_PUSH };
            polls.due.push(Reverse((j.push_due, id)));
            j.leak_every = leak_every;
            j.refresh(true);
            j.last_refresh = now;
            refreshed = true;
            j.sample_metrics();
            j.judge();
            if j.gone.is_none() && interest.wants(&j.id) {
                out.push(Arc::new(j.snapshot_msg()));
            }
        }
        polls.moved = moved;
        drop(polls);
        drop(interest);
        // Every REFRESH: the live header and findings of rings whose state moved or whose
        // heartbeat stopped. Only on refresh ticks: walking every JVM on each 5 ms tick was
        // most of an idle sidecar's CPU at 1,000 rings (cache misses on each ring's state).
        if refresh {
            for j in jvms.values_mut() {
                j.leak_every = leak_every;
                if j.settled {
                    continue;
                }
                let quiet = now.saturating_duration_since(j.last_events) > Duration::from_secs(1);
                // A heartbeat is due every sampler interval: one that did not move over two of them
                // (or `due`, whichever is longer, and at most a push period) has stopped.
                let two_beats = Duration::from_nanos(j.header.interval_ns.saturating_mul(2));
                let due = two_beats.clamp(if quiet { QUIET_REFRESH } else { REFRESH }, SNAPSHOT_PUSH);
                if now.saturating_duration_since(j.last_refresh) >= due && j.wants_refresh() {
                    j.refresh(false);
                    j.last_refresh = now;
                    refreshed = true;
                    j.judge();
                }
            }
        }
        for m in out.drain(..) {
            let _ = tx.send(m);
        }
        self.polls.lock().unwrap_or_else(|e| e.into_inner()).out = out;
        // JVMs that just died without a clean exit: look for their crash reports outside
        // the lock (a hung filesystem then stalls only this thread, never the API), then judge
        // them again.
        // On refresh ticks only (a walk of every JVM), which also covers a death seen by the push
        // work of the ticks between them.
        let queries: Vec<CrashQuery> =
            if refresh { jvms.values().filter_map(Jvm::crash_query).collect() } else { Vec::new() };
        if !queries.is_empty() {
            drop(jvms);
            let found: Vec<(Arc<str>, CrashFound)> = queries.iter().map(|q| (q.id.clone(), q.run())).collect();
            jvms = self.lock();
            for (id, result) in found {
                if let Some(j) = jvms.get_mut(&id) {
                    j.crash_lookup = Some(result);
                    j.judge();
                }
            }
        }
        if refresh || refreshed {
            // Under the map lock, so the bump is seen together with the state it shows.
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Runs the follower until [`Registry::stop`].
    pub fn follow(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("jvmwatch-follower".into())
            .spawn(move || {
                me.discover();
                let (mut last_refresh, mut last_push) = (Instant::now(), Instant::now());
                let (mut n, mut pushes) = (0u64, 0u64);
                while !me.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(if me.tx.receiver_count() > 0 { TICK } else { IDLE_TICK });
                    n += 1;
                    let now = Instant::now();
                    let push = now - last_push >= SNAPSHOT_PUSH;
                    let refresh = push || now - last_refresh >= REFRESH;
                    if refresh {
                        last_refresh = now;
                    }
                    let mut sweep = false;
                    if push {
                        last_push = now;
                        pushes += 1;
                    }
                    if push && pushes.is_multiple_of(SWEEP_EVERY) {
                        me.discover();
                        sweep = true;
                    } else if refresh {
                        sweep = me.discover_if_changed();
                    }
                    me.tick(n, refresh, sweep);
                }
            })
            .expect("spawn follower thread")
    }

    /// Stops the follower.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// At most WINDOW events; beyond WINDOW_MIN, none older than WINDOW_AGE before the newest (a
/// quiet JVM's window then holds half a minute, not a quarter of an hour: at 1,000 JVMs full
/// windows were ~250 MiB). The GC findings look back GC_WINDOW_NS (10 s), well inside.
fn trim_window(window: &mut VecDeque<Record>) {
    let Some(newest) = window.back().map(|r| r.time_ns) else { return };
    let cutoff = newest.saturating_sub(WINDOW_AGE.as_nanos() as u64);
    while window.len() > WINDOW || (window.len() > WINDOW_MIN && window.front().is_some_and(|r| r.time_ns < cutoff)) {
        window.pop_front();
    }
    if window.capacity() > 2 * WINDOW_MIN && window.len() < window.capacity() / 4 {
        window.shrink_to(window.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, time_ns: u64) -> Record {
        Record { seq, time_ns, event: Event::VmDeath }
    }

    #[test]
    fn the_window_keeps_half_a_minute_beyond_its_minimum_and_never_more_than_its_maximum() {
        let s = 1_000_000_000u64;
        // A quiet JVM: one event a second for 20 minutes keeps WINDOW_MIN events.
        let mut w: VecDeque<Record> = (0..1200).map(|k| rec(k, k * s)).collect();
        trim_window(&mut w);
        assert_eq!(w.len(), WINDOW_MIN);
        assert_eq!(w.back().map(|r| r.seq), Some(1199));
        assert!(w.capacity() <= 4 * WINDOW_MIN, "capacity {} kept", w.capacity());
        // A busy one: 100 events a second keeps the last 30 s (and the newest).
        let mut w: VecDeque<Record> = (0..10_000).map(|k| rec(k, k * s / 100)).collect();
        trim_window(&mut w);
        assert_eq!(w.front().map(|r| r.time_ns), Some(9999 * s / 100 - WINDOW_AGE.as_nanos() as u64));
        assert_eq!(w.len(), 3001);
        // A very busy one: WINDOW at most, the newest kept.
        let mut w: VecDeque<Record> = (0..100_000).map(|k| rec(k, k * s / 10_000)).collect();
        trim_window(&mut w);
        assert_eq!(w.len(), WINDOW);
        assert_eq!(w.back().map(|r| r.seq), Some(99_999));
    }

    /// The stream's directly serialized snapshot message holds what the API's `Value`s hold:
    /// the list entry, the snapshot, the GC totals, the event count and the metrics window.
    #[test]
    fn the_snapshot_message_is_the_summary_plus_snapshot_gc_events_and_metrics() {
        use jvmwatch_ring::metrics::Kind;
        use jvmwatch_ring::{Collector, GcCollector, Identity, Name, Pool, Writer};
        let d = tempfile::tempdir().unwrap();
        let id =
            Identity { pid: 42, start_ns: 1_700_000_000_000_000_000, interval_ns: 100_000_000, ..Identity::default() };
        let w = Writer::create(&d.path().join("42-1-ab.ring"), 1024, &id).unwrap();
        assert!(w.set_app_name("shop"));
        w.set_collector(Collector::G1);
        let mut snap = Snapshot::default();
        (snap.time_ns, snap.heap_used, snap.heap_committed) = (1_700_000_001_000_000_000, 100, 200);
        (snap.threads_live, snap.threads_daemon, snap.thread_states) = (12, 3, [0, 5, 1, 4, 2, 0]);
        assert!(snap.push_pool(Pool {
            name: Name::new("G1 Old Gen"),
            heap: true,
            used: 70,
            committed: 150,
            max: 400,
            used_after_gc: 60
        }));
        assert!(snap.push_collector(GcCollector { name: Name::new("G1 Young Generation"), count: 7, time_ms: 12 }));
        assert!(w.write_snapshot(&snap));
        w.heartbeat(1_700_000_001_000_000_000);
        let (c, t) = (w.register(Kind::Counter, "requests").unwrap(), w.register(Kind::Timer, "latency").unwrap());
        w.counter_add(c, 0, 5);
        w.timer_record(t, 0, 2_000_000);
        w.gc_pause_begin(10);
        w.gc_pause_end(1_500_010);
        w.emit(&Event::GcPauseStart { gc_id: 1, collector: Collector::G1 });
        let mut j = Jvm::open(w.path(), |_| {}).unwrap();
        j.refresh(true);
        j.sample_metrics();
        j.exit_status = Some("exit 3".into());
        let got: Value = serde_json::from_str(&j.snapshot_msg().data).unwrap();
        let mut want = j.summary();
        want["jvm"] = "42-1-ab".into();
        want["snapshot"] = report::snapshot_json(j.snapshot.as_ref().unwrap());
        want["gc"] = serde_json::json!({
            "pauses": j.live.gc_pauses,
            "pause_total_ms": j.live.gc_pause_total_ns as f64 / 1e6,
            "pause_max_ms": j.live.gc_pause_max_ns as f64 / 1e6,
        });
        want["events_total"] = j.live.cursor.into();
        want["metrics"] = j.metrics_window(DEFAULT_WINDOW_S);
        assert_eq!(got, want);
        // And the figures are the ones written, not nulls.
        assert_eq!(got["app"], "shop");
        assert_eq!(got["exit"], "exit 3");
        assert_eq!(got["snapshot"]["pools"][0]["used_after_gc_bytes"], 60);
        assert_eq!(got["snapshot"]["threads_by_state"]["waiting"], 4);
        assert_eq!(got["gc"]["pauses"], 1);
        assert_eq!(got["events_total"], 1);
        assert_eq!(got["metrics"][0]["name"], "requests");
        assert_eq!(got["started_at"], "2023-11-14T22:13:20.000Z");
    }

    /// A one-JVM subscription makes the follower build that JVM's messages only; the other
    /// rings' events still reach their windows, at the idle pace; withdrawing the interest
    /// (dropping the subscription) stops the messages, and a subscriber to all gets every JVM's.
    #[test]
    fn messages_are_built_only_for_the_jvms_someone_streams() {
        use jvmwatch_ring::{Identity, Writer};
        let d = tempfile::tempdir().unwrap();
        let id = Identity {
            pid: std::process::id(),
            start_ns: jvmwatch_ring::now_ns(),
            interval_ns: 100_000_000,
            ..Identity::default()
        };
        let wa = Writer::create(&d.path().join("1-1-aa.ring"), 1024, &id).unwrap();
        let wb = Writer::create(&d.path().join("1-1-bb.ring"), 1024, &id).unwrap();
        let reg = Registry::new(d.path().to_path_buf(), false);
        reg.discover();
        assert_eq!(reg.lock().len(), 2);
        let events = |rx: &mut broadcast::Receiver<Arc<Msg>>| {
            let mut got = Vec::new();
            while let Ok(m) = rx.try_recv() {
                if m.seq.is_some() {
                    got.push(m.jvm.to_string());
                }
            }
            got
        };
        let window_len = |id: &str| reg.lock().get(id).map_or(0, |j| j.window.len());
        // Ticks until `done` holds (the unwatched ring is read every UNWATCHED_EVERY).
        let mut n = 0;
        let mut tick_until = |done: &dyn Fn() -> bool| {
            let end = Instant::now() + Duration::from_secs(30);
            while !done() {
                assert!(Instant::now() < end, "condition not reached in 30 s of ticks");
                n += 1;
                reg.tick(n, false, false);
                std::thread::sleep(TICK);
            }
        };

        let one = reg.subscribe(Some("1-1-bb".into()));
        let mut rx = one.rx.resubscribe();
        let (a0, b0) = (window_len("1-1-aa"), window_len("1-1-bb"));
        wa.emit(&Event::VmDeath);
        wb.emit(&Event::VmDeath);
        tick_until(&|| window_len("1-1-aa") > a0 && window_len("1-1-bb") > b0);
        assert_eq!(events(&mut rx), ["1-1-bb"], "only the streamed JVM's event is a message");

        drop(one);
        let a1 = window_len("1-1-aa");
        wa.emit(&Event::VmDeath);
        tick_until(&|| window_len("1-1-aa") > a1);
        assert!(events(&mut rx).is_empty(), "no messages once the subscription is gone");

        let all = reg.subscribe(None);
        let (a2, b2) = (window_len("1-1-aa"), window_len("1-1-bb"));
        wa.emit(&Event::VmDeath);
        wb.emit(&Event::VmDeath);
        tick_until(&|| window_len("1-1-aa") > a2 && window_len("1-1-bb") > b2);
        let mut got = events(&mut rx);
        got.sort();
        assert_eq!(got, ["1-1-aa", "1-1-bb"]);
        drop(all);
    }
}

//! Retention of dead rings: `serve`, `supervise` and `run` keep at most N dead rings per app
//! and M bytes of dead rings in the ring directory (tmpfs: RAM); older ones are compressed
//! into a persistent archive, which is itself trimmed by age and size. `jvmwatch gc-rings`
//! does one pass (`--dry-run`: only says what would go). `docs/retention.md` is the manual.
//!
//! [`policy`] decides (pure); this module gathers the facts and carries the plan out. A ring
//! whose writer holds its lock is never touched: liveness is tested when the facts are
//! gathered, and the ring is then moved only while this process itself holds a shared lock
//! on it (which no writer can hold its exclusive lock beside), checked again right before
//! the file is removed.

pub mod archive;
pub mod policy;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use jvmwatch_ring::{ReadError, Ring};
use serde::Serialize;
use serde_json::{json, Value};

pub use policy::{Limits, Reason, DEFAULT_LIMITS};

use crate::report::rfc3339;
use crate::serve::registry::{valid_id, Msg, Registry};

/// Where rings are archived unless told otherwise: `<state dir>/archive`, the state dir being
/// `$XDG_STATE_HOME/jvmwatch`, else `~/.local/state/jvmwatch`, else `/var/lib/jvmwatch`.
pub fn default_archive_dir() -> PathBuf {
    crate::control::cli::default_state_dir().join("archive")
}

/// How often `serve`, `supervise` and `run` apply retention by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Retention actions the service remembers for `GET /api/v1/retention`.
pub const LOG_LEN: usize = 500;

/// What retention works on.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The ring directory.
    pub dir: PathBuf,
    /// The archive directory.
    pub archive_dir: PathBuf,
    /// The limits.
    pub limits: Limits,
}

/// The app a ring belongs to for retention: the name it set (`-Djvmwatch.app`), else what
/// its command line runs — the jar's file name for `-jar X.jar`, the module/class for
/// `-m`/`--module`, else the main class — else `default`.
pub fn app_key(app_name: &str, command: &str) -> String {
    if !app_name.is_empty() {
        return app_name.to_string();
    }
    // Options of the java launcher that take the next argument as their value.
    const WITH_VALUE: [&str; 12] = [
        "-cp",
        "-classpath",
        "--class-path",
        "-p",
        "--module-path",
        "--upgrade-module-path",
        "--add-modules",
        "--add-opens",
        "--add-exports",
        "--add-reads",
        "--patch-module",
        "--limit-modules",
    ];
    let mut args = command.split(' ').filter(|a| !a.is_empty()).skip(1);
    while let Some(a) = args.next() {
        if a == "-jar" {
            return args.next().map(|j| j.rsplit('/').next().unwrap_or(j).to_string()).unwrap_or_default();
        }
        if a == "-m" || a == "--module" {
            return args.next().unwrap_or_default().to_string();
        }
        if WITH_VALUE.contains(&a) {
            args.next();
            continue;
        }
        if !a.starts_with('-') {
            return a.to_string();
        }
    }
    "default".to_string()
}

/// One thing retention did (or, in a dry run, would do).
#[derive(Clone, Debug, Serialize)]
pub struct Action {
    /// When, RFC 3339.
    pub time: Option<String>,
    /// `archive` (a dead ring moved to the archive) or `delete` (an archived ring removed).
    pub action: &'static str,
    /// The JVM's id.
    pub id: String,
    /// Its app (archive actions).
    pub app: Option<String>,
    /// The file it was.
    pub from: PathBuf,
    /// The archived file (archive actions).
    pub to: Option<PathBuf>,
    /// Bytes freed where it was.
    pub bytes: u64,
    /// Size of the archived file.
    pub archived_bytes: Option<u64>,
    /// Why.
    pub reason: String,
    /// Only said, not done (`gc-rings --dry-run`).
    pub dry_run: bool,
    /// Why it could not be done, if it failed (nothing was changed then).
    pub error: Option<String>,
}

impl Action {
    /// The stderr log line.
    pub fn line(&self) -> String {
        let mib = |b: u64| match b {
            0..1024 => format!("{b} B"),
            1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
            _ => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        };
        let what = match (self.action, &self.error, self.dry_run) {
            ("archive", Some(e), _) => format!("cannot archive {}: {e}", self.from.display()),
            ("archive", None, true) => format!("would archive {} ({})", self.from.display(), mib(self.bytes)),
            ("archive", None, false) => format!(
                "archived {} ({} → {}) to {}",
                self.from.display(),
                mib(self.bytes),
                mib(self.archived_bytes.unwrap_or(0)),
                self.to.as_deref().unwrap_or(Path::new("?")).display()
            ),
            (_, Some(e), _) => format!("cannot delete {}: {e}", self.from.display()),
            (_, None, true) => format!("would delete {} ({})", self.from.display(), mib(self.bytes)),
            (_, None, false) => format!("deleted {} ({})", self.from.display(), mib(self.bytes)),
        };
        format!("{what}: {}", self.reason)
    }
}

/// A ring in the ring directory, as found.
struct Found {
    facts: policy::RingFacts,
    path: PathBuf,
}

fn own_regular_file(md: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    md.is_file() && md.uid() == unsafe { libc::geteuid() }
}

/// The rings of `dir` retention may judge: `*.ring` files with a valid id, owned by this
/// user, readable as rings. Files it cannot read are left alone.
fn scan_rings(dir: &Path) -> Vec<Found> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some(id) = name.strip_suffix(".ring").filter(|id| valid_id(id)) else { continue };
        let Ok(md) = e.metadata() else { continue };
        if !own_regular_file(&md) {
            continue;
        }
        let path = e.path();
        // Live rings are never archived and do not count against the limits: one `flock`
        // test, no header read (a sidecar with 1,000 live rings checks them every pass).
        if std::fs::File::open(&path).is_ok_and(|f| jvmwatch_ring::reader::writer_alive(&f)) {
            continue;
        }
        let Ok(ring) = Ring::open(&path) else { continue };
        let Ok(live) = ring.live() else { continue };
        let h = ring.header();
        let end_ns = if live.exit_ns != 0 { live.exit_ns } else { live.heartbeat_ns.max(h.start_ns) };
        out.push(Found {
            facts: policy::RingFacts {
                id: id.to_string(),
                app: app_key(&live.app_name, &h.command),
                start_ns: h.start_ns,
                end_ns,
                bytes: md.len(),
                live: ring.writer_alive(),
            },
            path,
        });
    }
    out
}

/// Temporary files of an archive write that did not finish (a crash) are removed after this.
pub const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Removes temporary files that an interrupted archive write left in `dir` (hidden,
/// `.tmp`, this user's, older than [`STALE_TEMP`]); returns their paths.
fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with('.') && name.ends_with(".tmp") && name.contains(archive::SUFFIX)) {
            continue;
        }
        let stale = e
            .metadata()
            .ok()
            .filter(own_regular_file)
            .and_then(|m| m.modified().ok())
            .is_some_and(|t| std::time::SystemTime::now().duration_since(t).unwrap_or_default() > STALE_TEMP);
        if stale && std::fs::remove_file(e.path()).is_ok() {
            out.push(e.path());
        }
    }
    out
}

/// The archived rings in `dir` (`*.ring.zst` owned by this user); their age is their
/// modification time, set to when their JVM ended.
fn scan_archive(dir: &Path) -> Vec<(policy::ArchivedFacts, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if archive::id_of(&name).is_none() {
            continue;
        }
        let Ok(md) = e.metadata() else { continue };
        if !own_regular_file(&md) {
            continue;
        }
        let end_ns =
            md.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64);
        out.push((policy::ArchivedFacts { name, end_ns, bytes: md.len() }, e.path()));
    }
    out
}

/// Holds a shared lock on a ring file: while held, no writer holds (or takes) its exclusive
/// lock, so the ring is and stays dead.
struct DeadLock(File);

impl DeadLock {
    /// Opens `path` and takes the shared lock; `None` when a writer holds the ring.
    fn take(path: &Path) -> io::Result<Option<DeadLock>> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        // SAFETY: `f` is an open descriptor; flock has no memory effects.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
            Ok(Some(DeadLock(f)))
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }

    /// True if `path` is still the file this lock is on (not replaced meanwhile).
    fn same_file(&self, path: &Path) -> bool {
        match (self.0.metadata(), std::fs::symlink_metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

/// Moves one dead ring to the archive: only under the shared lock, checked again (the same
/// file, still dead) right before it is removed.
fn archive_one(f: &Found, archive_dir: &Path) -> Result<archive::Written, String> {
    let lock = match DeadLock::take(&f.path) {
        Ok(Some(l)) => l,
        Ok(None) => return Err("its writer holds the lock now; left alone".into()),
        Err(e) => return Err(e.to_string()),
    };
    let len = lock.0.metadata().map_err(|e| e.to_string())?.len();
    let written =
        archive::compress_into(&lock.0, len, archive_dir, &f.facts.id, f.facts.end_ns).map_err(|e| e.to_string())?;
    if !lock.same_file(&f.path) {
        return Err("the file was replaced meanwhile; left alone".into());
    }
    std::fs::remove_file(&f.path).map_err(|e| format!("archived, but cannot remove the ring: {e}"))?;
    drop(lock);
    Ok(written)
}

/// One retention pass over `s`. With `dry_run`, nothing changes and the actions say what
/// would be done. `each` sees every action as it happens.
pub fn run_once(s: &Settings, dry_run: bool, mut each: impl FnMut(&Action)) -> Vec<Action> {
    let now = jvmwatch_ring::now_ns();
    let mut actions = Vec::new();
    let found = scan_rings(&s.dir);
    let facts: Vec<policy::RingFacts> = found.iter().map(|f| f.facts.clone()).collect();
    for (i, reason) in policy::rings_to_archive(&facts, &s.limits) {
        let f = &found[i];
        let mut a = Action {
            time: rfc3339(jvmwatch_ring::now_ns()),
            action: "archive",
            id: f.facts.id.clone(),
            app: Some(f.facts.app.clone()),
            from: f.path.clone(),
            to: Some(s.archive_dir.join(format!("{}{}", f.facts.id, archive::SUFFIX))),
            bytes: f.facts.bytes,
            archived_bytes: None,
            reason: reason.to_string(),
            dry_run,
            error: None,
        };
        if !dry_run {
            match archive_one(f, &s.archive_dir) {
                Ok(w) => {
                    a.to = Some(w.path);
                    a.archived_bytes = Some(w.bytes);
                }
                Err(e) => a.error = Some(e),
            }
            a.time = rfc3339(jvmwatch_ring::now_ns());
        }
        each(&a);
        actions.push(a);
    }
    if !dry_run {
        for t in remove_stale_temps(&s.archive_dir) {
            eprintln!("jvmwatch: retention: removed {}, left by an archive write that did not finish", t.display());
        }
    }
    let archived = scan_archive(&s.archive_dir);
    let facts: Vec<policy::ArchivedFacts> = archived.iter().map(|(f, _)| f.clone()).collect();
    for (i, reason) in policy::archived_to_delete(&facts, &s.limits, now) {
        let (f, path) = &archived[i];
        let mut a = Action {
            time: rfc3339(jvmwatch_ring::now_ns()),
            action: "delete",
            id: archive::id_of(&f.name).unwrap_or_default().to_string(),
            app: None,
            from: path.clone(),
            to: None,
            bytes: f.bytes,
            archived_bytes: None,
            reason: reason.to_string(),
            dry_run,
            error: None,
        };
        if !dry_run {
            if let Err(e) = std::fs::remove_file(path) {
                a.error = Some(e.to_string());
            }
        }
        each(&a);
        actions.push(a);
    }
    actions
}

/// A listing entry and the (size, mtime) of the file it was read from.
type Listed = ((u64, i64), Value);

/// Retention and the archive inside the service: the periodic pass, the log of recent
/// actions (`GET /api/v1/retention`, SSE `retention`), and reads of archived rings.
pub struct Service {
    /// What it works on.
    pub settings: Settings,
    /// How often it runs; `None`: never (reads of the archive still work).
    pub interval: Option<Duration>,
    log: Mutex<VecDeque<Action>>,
    /// Listing entries by file name, with the (size, mtime) they were read at.
    listing: Mutex<HashMap<String, Listed>>,
    /// The archived ring read last (its id), so paging through its events decompresses once.
    last: Mutex<Option<(String, Arc<Ring>)>>,
    /// Set by [`Service::stop`]; the periodic thread waits on the condvar between passes (it
    /// wakes for a pass or for the stop, never to poll).
    stop: (Mutex<bool>, Condvar),
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("settings", &self.settings).field("interval", &self.interval).finish()
    }
}

impl Service {
    /// A retention service over `settings`, running every `interval` (never with `None`).
    pub fn new(settings: Settings, interval: Option<Duration>) -> Arc<Service> {
        Arc::new(Service {
            settings,
            interval,
            log: Mutex::new(VecDeque::new()),
            listing: Mutex::new(HashMap::new()),
            last: Mutex::new(None),
            stop: (Mutex::new(false), Condvar::new()),
        })
    }

    /// One pass now: logs each action to stderr, keeps it for the API, sends it to SSE
    /// subscribers, and forgets archived JVMs in `registry` (closing their rings, which frees
    /// the tmpfs pages).
    pub fn pass(&self, registry: &Registry) {
        run_once(&self.settings, false, |a| {
            eprintln!("jvmwatch: retention: {}", a.line());
            if a.action == "archive" && a.error.is_none() {
                registry.forget(&a.id);
            }
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() >= LOG_LEN {
                log.pop_front();
            }
            log.push_back(a.clone());
            drop(log);
            let data = serde_json::to_value(a).unwrap_or(Value::Null);
            let _ = registry.tx.send(Arc::new(Msg::new(a.id.as_str().into(), None, "retention", data.to_string())));
        });
    }

    /// Runs [`Service::pass`] every interval on its own thread until [`Service::stop`]; `None`
    /// when retention is off.
    pub fn start(self: &Arc<Self>, registry: Arc<Registry>) -> Option<std::thread::JoinHandle<()>> {
        let every = self.interval?;
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("jvmwatch-retention".into())
            .spawn(move || loop {
                me.pass(&registry);
                let (stopped, wake) = &me.stop;
                let guard = stopped.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) =
                    wake.wait_timeout_while(guard, every, |stop| !*stop).unwrap_or_else(|e| e.into_inner());
                if *guard {
                    break;
                }
            })
            .ok()
    }

    /// Stops the periodic pass.
    pub fn stop(&self) {
        let (stopped, wake) = &self.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
    }

    /// The recent actions, oldest first, and the settings.
    pub fn recent(&self) -> Value {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        json!({
            "enabled": self.interval.is_some(),
            "interval_s": self.interval.map(|d| d.as_secs_f64()),
            "dir": self.settings.dir,
            "archive_dir": self.settings.archive_dir,
            "limits": {
                "keep_dead_per_app": self.settings.limits.keep_per_app,
                "max_dead_bytes": self.settings.limits.max_dead_bytes,
                "archive_max_age_s": self.settings.limits.archive_max_age_ns / 1_000_000_000,
                "archive_max_bytes": self.settings.limits.archive_max_bytes,
            },
            "actions": log.iter().collect::<Vec<_>>(),
        })
    }

    /// The path of archived JVM `id`, if the archive holds it.
    pub fn archived_path(&self, id: &str) -> Option<PathBuf> {
        if !valid_id(id) {
            return None;
        }
        let p = self.settings.archive_dir.join(format!("{id}{}", archive::SUFFIX));
        std::fs::symlink_metadata(&p).ok().filter(own_regular_file).map(|_| p)
    }

    /// Opens archived JVM `id` (decompressing it, or reusing the last one opened).
    pub fn open(&self, id: &str) -> Option<Result<Arc<Ring>, ReadError>> {
        let path = self.archived_path(id)?;
        if let Some((last, ring)) = &*self.last.lock().unwrap_or_else(|e| e.into_inner()) {
            if last == id {
                return Some(Ok(ring.clone()));
            }
        }
        Some(archive::open(&path).map(|r| {
            let r = Arc::new(r);
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((id.to_string(), r.clone()));
            r
        }))
    }

    /// The archive listing (newest first): per archived JVM its id, app, pid, host, times,
    /// verdict and sizes, from the header page alone (cached per file).
    pub fn list(&self) -> Value {
        let mut entries: Vec<(u64, Value)> = Vec::new();
        let mut total = 0u64;
        let mut cache = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        let mut keep = std::collections::HashSet::new();
        for (f, path) in scan_archive(&self.settings.archive_dir) {
            total += f.bytes;
            let md = std::fs::symlink_metadata(&path).ok();
            let stamp = md.map(|m| (m.len(), m.mtime())).unwrap_or_default();
            keep.insert(f.name.clone());
            let v = match cache.get(&f.name) {
                Some((s, v)) if *s == stamp => v.clone(),
                _ => {
                    let v = listing_entry(&f, &path);
                    cache.insert(f.name.clone(), (stamp, v.clone()));
                    v
                }
            };
            entries.push((f.end_ns, v));
        }
        cache.retain(|k, _| keep.contains(k));
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        json!({
            "archive_dir": self.settings.archive_dir,
            "bytes": total,
            "jvms": entries.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        })
    }
}

fn listing_entry(f: &policy::ArchivedFacts, path: &Path) -> Value {
    let id = archive::id_of(&f.name).unwrap_or_default();
    let mut v = json!({
        "id": id,
        "archived": true,
        "file": path,
        "archived_bytes": f.bytes,
        "ended_at": rfc3339(f.end_ns),
    });
    match archive::header_page(path).and_then(|page| {
        let h = jvmwatch_ring::reader::parse_header(&page, u64::MAX)?;
        Ok((h, live_of(&page)))
    }) {
        Ok((h, (app, state, exit_ns, heartbeat_ns))) => {
            let crashed = state != Some(jvmwatch_ring::State::Exited)
                && crate::report::find_crash_report(&h.cwd, &h.error_file, h.pid, h.start_ns).is_some();
            let verdict = crate::findings::verdict(false, state, crashed);
            v["pid"] = json!(h.pid);
            v["app"] = json!((!app.is_empty()).then_some(app.clone()));
            v["retention_app"] = json!(app_key(&app, &h.command));
            v["hostname"] = json!(h.hostname);
            v["jvm_version"] = json!(h.jvm_version);
            v["started_at"] = json!(rfc3339(h.start_ns));
            v["exited_at"] = json!(rfc3339(exit_ns));
            v["last_heartbeat_at"] = json!(rfc3339(heartbeat_ns));
            v["verdict"] = json!(verdict);
            v["ring_bytes"] = json!(h.file_size);
        }
        Err(e) => v["error"] = json!(e.to_string()),
    }
    v
}

/// App name, state, exit and heartbeat times from a header page (already validated).
fn live_of(page: &[u8]) -> (String, Option<jvmwatch_ring::State>, u64, u64) {
    use jvmwatch_ring::layout::hdr;
    let u64_at = |at: usize| page.get(at..at + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let u32_at = |at: usize| page.get(at..at + 4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let name = page.get(hdr::APP_NAME..hdr::APP_NAME + hdr::APP_NAME_LEN).unwrap_or(&[]);
    let n = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    (
        String::from_utf8_lossy(&name[..n]).into_owned(),
        jvmwatch_ring::State::from_u32(u32_at(hdr::STATE)),
        u64_at(hdr::EXIT_NS),
        u64_at(hdr::HEARTBEAT_NS),
    )
}

#[cfg(test)]
mod tests {
    use super::app_key;

    #[test]
    fn only_old_temporaries_of_archive_writes_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let make = |name: &str, age_s: u64| {
            let f = std::fs::File::create(d.path().join(name)).unwrap();
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(age_s)).unwrap();
        };
        make(".1-2-ab.ring.zst.77.tmp", 7200);
        make(".1-2-cd.ring.zst.77.tmp", 60); // may still be written
        make("1-2-ef.ring.zst", 7200 * 1000);
        make(".other.tmp", 7200);
        let gone = super::remove_stale_temps(d.path());
        assert_eq!(gone, [d.path().join(".1-2-ab.ring.zst.77.tmp")]);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".1-2-cd.ring.zst.77.tmp", ".other.tmp", "1-2-ef.ring.zst"]);
    }

    #[test]
    fn the_app_falls_back_to_what_the_command_runs() {
        let cases = [
            ("shop", "java -jar x.jar", "shop"),
            ("", "/usr/bin/java -Xmx1g -jar /opt/app/billing.jar --port 8080", "billing.jar"),
            ("", "java -cp a.jar:b.jar -Dx=y com.example.Main arg", "com.example.Main"),
            ("", "java -XX:+UseG1GC -classpath /x Hello", "Hello"),
            ("", "java --module-path mods -m com.app/com.app.Main", "com.app/com.app.Main"),
            ("", "java -version", "default"),
            ("", "", "default"),
        ];
        for (app, cmd, want) in cases {
            assert_eq!(app_key(app, cmd), want, "{cmd}");
        }
    }
}

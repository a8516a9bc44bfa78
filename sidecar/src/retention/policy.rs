//! The retention policy as pure functions: given what is in the ring directory and in the
//! archive, which dead rings go to the archive and which archived rings are deleted, and why.
//! No file, clock or process in here; `super` gathers the facts and carries out the plan.

use std::fmt;

/// One ring file in the ring directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingFacts {
    /// Its id (file stem).
    pub id: String,
    /// The app it belongs to (see [`super::app_key`]).
    pub app: String,
    /// When its JVM started, ns since the epoch.
    pub start_ns: u64,
    /// When its JVM ended: the clean exit, else the last heartbeat, else the start.
    pub end_ns: u64,
    /// Bytes it takes.
    pub bytes: u64,
    /// Its writer holds the lock: never touched.
    pub live: bool,
}

/// One compressed ring in the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedFacts {
    /// Its file name.
    pub name: String,
    /// When its JVM ended, ns since the epoch (the file's modification time).
    pub end_ns: u64,
    /// Bytes it takes.
    pub bytes: u64,
}

/// The limits; see `docs/retention.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Dead rings kept per app in the ring directory; older ones are archived.
    pub keep_per_app: usize,
    /// Bytes of dead rings kept in the ring directory; the oldest beyond it are archived.
    pub max_dead_bytes: u64,
    /// Archived rings whose JVM ended longer ago than this are deleted, ns.
    pub archive_max_age_ns: u64,
    /// Bytes the archive holds at most; the oldest beyond it are deleted.
    pub archive_max_bytes: u64,
}

/// Defaults: 10 dead rings per app, 256 MiB of dead rings, 30 days and 1 GiB of archive.
pub const DEFAULT_LIMITS: Limits = Limits {
    keep_per_app: 10,
    max_dead_bytes: 256 << 20,
    archive_max_age_ns: 30 * 24 * 3600 * 1_000_000_000,
    archive_max_bytes: 1 << 30,
};

/// Why a ring goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Its app has more dead rings than it keeps; this one is not among the newest.
    PerApp {
        /// The app.
        app: String,
        /// Its dead rings.
        dead: usize,
        /// How many it keeps.
        keep: usize,
    },
    /// Dead rings take more than the limit; this one is among the oldest.
    DeadBytes {
        /// Dead bytes before anything was archived for this reason.
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// Archived longer ago than the maximum age.
    Age {
        /// Its age, ns.
        age_ns: u64,
        /// The maximum.
        max_ns: u64,
    },
    /// The archive holds more than the limit; this one is among the oldest.
    ArchiveBytes {
        /// Archive bytes before anything was deleted for this reason.
        total: u64,
        /// The limit.
        limit: u64,
    },
}

/// An age in days (one decimal) from a day on, else as humantime says it.
fn age(ns: u64) -> String {
    const DAY: u64 = 24 * 3600 * 1_000_000_000;
    if ns >= DAY {
        format!("{:.1} days", ns as f64 / DAY as f64)
    } else {
        humantime::format_duration(std::time::Duration::from_secs(ns / 1_000_000_000)).to_string()
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::PerApp { app, dead, keep } => {
                let rings = if *dead == 1 { "ring" } else { "rings" };
                write!(f, "app {app:?} has {dead} dead {rings}; the newest {keep} stay")
            }
            Reason::DeadBytes { total, limit } => {
                write!(f, "dead rings take {}, more than {}; the oldest go first", mib(*total), mib(*limit))
            }
            Reason::Age { age_ns, max_ns } => write!(f, "ended {} ago, longer than {}", age(*age_ns), age(*max_ns)),
            Reason::ArchiveBytes { total, limit } => {
                write!(f, "the archive holds {}, more than {}; the oldest go first", mib(*total), mib(*limit))
            }
        }
    }
}

/// Newest first: later end, then later start, then id (a stable order for equal times).
fn newest_first(a: &RingFacts, b: &RingFacts) -> std::cmp::Ordering {
    (b.end_ns, b.start_ns, &b.id).cmp(&(a.end_ns, a.start_ns, &a.id))
}

/// The rings to archive, by index into `rings`, with the reason; oldest first. Live rings are
/// never chosen. First, each app keeps its newest `keep_per_app` dead rings; then, while the
/// dead rings that stay take more than `max_dead_bytes`, the oldest of them go too.
pub fn rings_to_archive(rings: &[RingFacts], limits: &Limits) -> Vec<(usize, Reason)> {
    let mut dead: Vec<usize> = (0..rings.len()).filter(|&i| !rings[i].live).collect();
    dead.sort_by(|&a, &b| newest_first(&rings[a], &rings[b]));
    let mut out = Vec::new();
    let mut stays = Vec::new();
    let mut per_app: std::collections::HashMap<&str, usize> = Default::default();
    for &i in &dead {
        *per_app.entry(rings[i].app.as_str()).or_default() += 1;
    }
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    for &i in &dead {
        let n = seen.entry(rings[i].app.as_str()).or_default();
        *n += 1;
        if *n > limits.keep_per_app {
            let app = rings[i].app.clone();
            out.push((i, Reason::PerApp { dead: per_app[app.as_str()], app, keep: limits.keep_per_app }));
        } else {
            stays.push(i);
        }
    }
    let total: u64 = stays.iter().map(|&i| rings[i].bytes).sum();
    let mut left = total;
    for &i in stays.iter().rev() {
        if left <= limits.max_dead_bytes {
            break;
        }
        left -= rings[i].bytes;
        out.push((i, Reason::DeadBytes { total, limit: limits.max_dead_bytes }));
    }
    out.sort_by(|(a, _), (b, _)| newest_first(&rings[*b], &rings[*a]));
    out
}

/// The archived rings to delete, by index into `archived`, with the reason: those that ended
/// longer than `archive_max_age_ns` before `now_ns`, then the oldest while the rest hold more
/// than `archive_max_bytes`.
pub fn archived_to_delete(archived: &[ArchivedFacts], limits: &Limits, now_ns: u64) -> Vec<(usize, Reason)> {
    let mut order: Vec<usize> = (0..archived.len()).collect();
    // Oldest first.
    order.sort_by(|&a, &b| (archived[a].end_ns, &archived[a].name).cmp(&(archived[b].end_ns, &archived[b].name)));
    let mut out = Vec::new();
    let mut stays = Vec::new();
    for i in order {
        let age_ns = now_ns.saturating_sub(archived[i].end_ns);
        if age_ns > limits.archive_max_age_ns {
            out.push((i, Reason::Age { age_ns, max_ns: limits.archive_max_age_ns }));
        } else {
            stays.push(i);
        }
    }
    let total: u64 = stays.iter().map(|&i| archived[i].bytes).sum();
    let mut left = total;
    for i in stays {
        if left <= limits.archive_max_bytes {
            break;
        }
        left -= archived[i].bytes;
        out.push((i, Reason::ArchiveBytes { total, limit: limits.archive_max_bytes }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn ring(id: &str, app: &str, end: u64, mb: u64, live: bool) -> RingFacts {
        RingFacts { id: id.into(), app: app.into(), start_ns: end.saturating_sub(5), end_ns: end, bytes: mb * MB, live }
    }

    fn ids(rings: &[RingFacts], picked: &[(usize, Reason)]) -> Vec<String> {
        picked.iter().map(|(i, _)| rings[*i].id.clone()).collect()
    }

    fn limits(keep: usize, dead_mb: u64) -> Limits {
        Limits { keep_per_app: keep, max_dead_bytes: dead_mb * MB, ..DEFAULT_LIMITS }
    }

    #[test]
    fn each_app_keeps_its_newest_dead_rings() {
        let mut rings: Vec<RingFacts> = (0..14).map(|i| ring(&format!("a{i:02}"), "shop", 100 + i, 4, false)).collect();
        rings.extend((0..3).map(|i| ring(&format!("b{i}"), "cart", 50 + i, 4, false)));
        let picked = rings_to_archive(&rings, &limits(10, 1024));
        assert_eq!(ids(&rings, &picked), ["a00", "a01", "a02", "a03"], "the 4 oldest of shop, oldest first");
        assert_eq!(picked[0].1, Reason::PerApp { app: "shop".into(), dead: 14, keep: 10 });
        assert!(picked[0].1.to_string().contains("14 dead rings"));
    }

    #[test]
    fn live_rings_are_never_chosen_and_do_not_count() {
        // 12 rings of one app, the 5 oldest alive: 7 dead, under the limit of 10.
        let rings: Vec<RingFacts> = (0..12).map(|i| ring(&format!("r{i:02}"), "shop", 100 + i, 4, i < 5)).collect();
        assert!(rings_to_archive(&rings, &limits(10, 1024)).is_empty());
        // Keep none, tiny byte limit: every dead one goes, no live one.
        let picked = rings_to_archive(&rings, &limits(0, 0));
        assert_eq!(picked.len(), 7);
        assert!(picked.iter().all(|(i, _)| !rings[*i].live));
        // Everything alive: nothing, whatever the limits.
        let alive: Vec<RingFacts> = (0..30).map(|i| ring(&format!("l{i}"), "x", i, 100, true)).collect();
        assert!(rings_to_archive(&alive, &limits(0, 0)).is_empty());
    }

    #[test]
    fn the_byte_limit_archives_the_oldest_across_apps() {
        // Four apps, 3 dead rings each of 40 MB, 480 MB > 256 MB: the oldest go until ≤ 256.
        let mut rings = Vec::new();
        for (a, app) in ["a", "b", "c", "d"].iter().enumerate() {
            for i in 0..3u64 {
                rings.push(ring(&format!("{app}{i}"), app, 1000 + i * 10 + a as u64, 40, false));
            }
        }
        let picked = rings_to_archive(&rings, &limits(10, 256));
        // 12 × 40 = 480; must drop 6 to reach 240.
        assert_eq!(ids(&rings, &picked), ["a0", "b0", "c0", "d0", "a1", "b1"]);
        assert!(matches!(picked[0].1, Reason::DeadBytes { total, limit } if total == 480 * MB && limit == 256 * MB));
        // Exactly at the limit: nothing.
        assert!(rings_to_archive(&rings[..6], &limits(10, 240)).is_empty());
    }

    #[test]
    fn both_limits_together_and_no_ring_twice() {
        let rings: Vec<RingFacts> = (0..20).map(|i| ring(&format!("r{i:02}"), "one", 100 + i, 30, false)).collect();
        let picked = rings_to_archive(&rings, &limits(10, 256));
        // Per app: r00..r09 go; the 10 that stay take 300 MB > 256: r10 and r11 go too.
        let got = ids(&rings, &picked);
        let want: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
        assert_eq!(got, want);
        let mut dedup = got.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), got.len());
        assert!(matches!(picked[11].1, Reason::DeadBytes { .. }));
    }

    #[test]
    fn equal_times_order_by_id_and_empty_input_is_fine() {
        let rings: Vec<RingFacts> = ["c", "a", "b"].iter().map(|id| ring(id, "x", 7, 1, false)).collect();
        assert_eq!(ids(&rings, &rings_to_archive(&rings, &limits(1, 1024))), ["a", "b"]);
        assert!(rings_to_archive(&[], &limits(0, 0)).is_empty());
        assert!(archived_to_delete(&[], &DEFAULT_LIMITS, u64::MAX).is_empty());
    }

    #[test]
    fn the_archive_is_trimmed_by_age_then_by_size() {
        const DAY: u64 = 24 * 3600 * 1_000_000_000;
        let now = 100 * DAY;
        let a = |name: &str, days_ago: u64, mb: u64| ArchivedFacts {
            name: name.into(),
            end_ns: now - days_ago * DAY,
            bytes: mb * MB,
        };
        let archived = vec![a("new", 1, 400), a("old", 40, 1), a("mid", 10, 400), a("older", 31, 1), a("x", 20, 400)];
        let l = Limits { archive_max_age_ns: 30 * DAY, archive_max_bytes: 1000 * MB, ..DEFAULT_LIMITS };
        let picked = archived_to_delete(&archived, &l, now);
        let names: Vec<&str> = picked.iter().map(|(i, _)| archived[*i].name.as_str()).collect();
        // Age: old, older. Then 1200 MB > 1000 MB: the oldest of the rest (x) goes.
        assert_eq!(names, ["old", "older", "x"]);
        assert!(matches!(picked[0].1, Reason::Age { .. }));
        assert_eq!(picked[0].1.to_string(), "ended 40.0 days ago, longer than 30.0 days");
        assert!(matches!(picked[2].1, Reason::ArchiveBytes { total, .. } if total == 1200 * MB));
        // A clock behind the files (ended "in the future"): age 0, not deleted for age.
        assert!(archived_to_delete(&archived, &Limits { archive_max_bytes: u64::MAX, ..l }, 0).is_empty());
    }
}

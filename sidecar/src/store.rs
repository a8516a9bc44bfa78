//! The decision store: an embedded SQLite database (WAL) that survives restarts and `kill -9`
//! of the sidecar. With the usage ledger (`crate::usage::ledger`, its own tables in the same
//! file) the only modules that write SQL; everything else calls their typed functions.
//!
//! Tables are append-only for decisions and their steps (no update or delete path exists);
//! `children` holds the supervisor's running children so a restarted supervisor can adopt
//! them; `marks` remembers one-shot facts (a hook that must run exactly once).

use std::path::Path;
use std::sync::Mutex;

use jvmwatch_controller::Decision;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

/// A store error (the database could not be opened, read or written).
#[derive(Debug, thiserror::Error)]
#[error("decision store: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// A decision as stored, with its steps.
#[derive(Clone, Debug, Serialize)]
pub struct StoredDecision {
    /// Row id, increasing.
    pub id: i64,
    /// When it was decided, ms since the epoch.
    pub at_ms: u64,
    /// The rule (or a built-in reason such as `process_exit`).
    pub rule: String,
    /// The app.
    pub app: String,
    /// The instance, when one.
    pub instance: Option<String>,
    /// Action names in order.
    pub actions: Vec<String>,
    /// The figures that triggered it.
    pub figures: Value,
    /// Human-readable reason.
    pub reason: String,
    /// What was done, step by step.
    pub steps: Vec<Step>,
}

/// One step of carrying out a decision.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// `warn`, `diagnose`, `act`, `hook:NAME`, `thread_dump`, …
    pub step: String,
    /// `ok`, `failed`, `skipped`, `timeout`.
    pub outcome: String,
    /// Detail (exit status, file written, error).
    pub detail: String,
}

/// A child the supervisor launched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildRow {
    /// Instance id (= ring file stem).
    pub instance: String,
    /// App name.
    pub app: String,
    /// Process id.
    pub pid: u32,
    /// Its ring file.
    pub ring: String,
}

/// The open database.
pub struct Store {
    db: Mutex<Connection>,
    path: std::path::PathBuf,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    rule TEXT NOT NULL,
    app TEXT NOT NULL,
    instance TEXT,
    actions TEXT NOT NULL,
    figures TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions(at_ms);
CREATE TABLE IF NOT EXISTS steps (
    decision INTEGER NOT NULL REFERENCES decisions(id),
    at_ms INTEGER NOT NULL,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_decision ON steps(decision);
CREATE TABLE IF NOT EXISTS children (
    instance TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    pid INTEGER NOT NULL,
    ring TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
";

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Store { db: Mutex::new(db), path: path.to_path_buf() })
    }

    /// The database file (the usage ledger, `crate::usage::ledger`, shares it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a decision; returns its id.
    pub fn record_decision(&self, d: &Decision) -> Result<i64, StoreError> {
        let actions: Vec<String> = d.actions.iter().map(|a| a.name()).collect();
        let figures = serde_json::to_string(&d.figures).unwrap_or_default();
        let db = self.db();
        db.execute(
            "INSERT INTO decisions (at_ms, rule, app, instance, actions, figures, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                d.at_ms as i64,
                d.rule,
                d.app,
                d.instance,
                serde_json::to_string(&actions).unwrap_or_default(),
                figures,
                d.reason
            ],
        )?;
        Ok(db.last_insert_rowid())
    }

    /// Appends a step outcome to decision `id`.
    pub fn record_step(&self, id: i64, at_ms: u64, step: &str, outcome: &str, detail: &str) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO steps (decision, at_ms, step, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, at_ms as i64, step, outcome, detail],
        )?;
        Ok(())
    }

    /// Decisions at or after `since_ms`, optionally of one app, newest last, at most `limit`
    /// (the newest ones when more match).
    pub fn decisions(&self, since_ms: u64, app: Option<&str>, limit: u32) -> Result<Vec<StoredDecision>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT id, at_ms, rule, app, instance, actions, figures, reason FROM decisions
             WHERE at_ms >= ?1 AND (?2 IS NULL OR app = ?2) ORDER BY id DESC LIMIT ?3",
        )?;
        let mut out: Vec<StoredDecision> = q
            .query_map(params![since_ms as i64, app, limit], |r| {
                let actions: String = r.get(5)?;
                let figures: String = r.get(6)?;
                Ok(StoredDecision {
                    id: r.get(0)?,
                    at_ms: r.get::<_, i64>(1)? as u64,
                    rule: r.get(2)?,
                    app: r.get(3)?,
                    instance: r.get(4)?,
                    actions: serde_json::from_str(&actions).unwrap_or_default(),
                    figures: serde_json::from_str(&figures).unwrap_or(Value::Null),
                    reason: r.get(7)?,
                    steps: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        out.reverse();
        let mut sq = db.prepare("SELECT at_ms, step, outcome, detail FROM steps WHERE decision = ?1 ORDER BY rowid")?;
        for d in &mut out {
            d.steps = sq
                .query_map(params![d.id], |r| {
                    Ok(Step {
                        at_ms: r.get::<_, i64>(0)? as u64,
                        step: r.get(1)?,
                        outcome: r.get(2)?,
                        detail: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        Ok(out)
    }

    /// Count of decisions by (app, rule, action) — the `jvmwatch_decisions_total` counter,
    /// which therefore survives restarts.
    pub fn counts(&self) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT app, rule, actions FROM decisions")?;
        let mut m: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
        for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))? {
            let (app, rule, actions) = row?;
            for a in serde_json::from_str::<Vec<String>>(&actions).unwrap_or_default() {
                *m.entry((app.clone(), rule.clone(), a)).or_default() += 1;
            }
        }
        Ok(m.into_iter().map(|((a, r, x), n)| (a, r, x, n)).collect())
    }

    /// When rule `rule` last decided (ms), if ever.
    pub fn last_decision_at(&self, rule: &str) -> Result<Option<u64>, StoreError> {
        let at: Option<i64> =
            self.db().query_row("SELECT MAX(at_ms) FROM decisions WHERE rule = ?1", params![rule], |r| r.get(0))?;
        Ok(at.map(|t| t as u64))
    }

    /// Remembers a running child.
    pub fn add_child(&self, c: &ChildRow) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT OR REPLACE INTO children (instance, app, pid, ring) VALUES (?1, ?2, ?3, ?4)",
            params![c.instance, c.app, c.pid, c.ring],
        )?;
        Ok(())
    }

    /// Forgets a child that ended.
    pub fn remove_child(&self, instance: &str) -> Result<(), StoreError> {
        self.db().execute("DELETE FROM children WHERE instance = ?1", params![instance])?;
        Ok(())
    }

    /// Children recorded as running.
    pub fn children(&self) -> Result<Vec<ChildRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT instance, app, pid, ring FROM children ORDER BY instance")?;
        let rows = q
            .query_map([], |r| Ok(ChildRow { instance: r.get(0)?, app: r.get(1)?, pid: r.get(2)?, ring: r.get(3)? }))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Sets a one-shot mark; true if it was not set before (the caller may act once).
    pub fn mark_once(&self, key: &str, at_ms: u64) -> Result<bool, StoreError> {
        let n = self
            .db()
            .execute("INSERT OR IGNORE INTO marks (key, at_ms) VALUES (?1, ?2)", params![key, at_ms as i64])?;
        Ok(n == 1)
    }

    /// Whether a mark is set.
    pub fn marked(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.db().query_row("SELECT 1 FROM marks WHERE key = ?1", params![key], |_| Ok(())).optional()?.is_some())
    }

    /// Clears a mark (a group that recovered may fail, and be reported, again).
    pub fn clear_mark(&self, key: &str) -> Result<(), StoreError> {
        self.db().execute("DELETE FROM marks WHERE key = ?1", params![key])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jvmwatch_controller::{Action, Figure};

    #[test]
    fn decisions_and_steps_survive_reopening() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("jvmwatch.db");
        {
            let s = Store::open(&path).unwrap();
            let d = |at_ms, rule: &str, app: &str, instance: Option<&str>, actions| Decision {
                at_ms,
                rule: rule.into(),
                app: app.into(),
                instance: instance.map(str::to_string),
                actions,
                figures: vec![Figure { expr: "x".into(), instance: None, value: 142.0, window_ms: None }],
                reason: "r".into(),
            };
            let id = s.record_decision(&d(1000, "slow", "shop", None, vec![Action::ScaleUp])).unwrap();
            s.record_step(id, 1001, "act", "ok", "started shop-2").unwrap();
            s.record_decision(&d(2000, "hung", "pay", Some("pay-1"), vec![Action::ThreadDump, Action::Restart]))
                .unwrap();
            assert!(s.mark_once("failed:shop", 5).unwrap());
            assert!(!s.mark_once("failed:shop", 6).unwrap());
        }
        let s = Store::open(&path).unwrap();
        let all = s.decisions(0, None, 100).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].rule, "slow");
        assert_eq!(all[0].steps.len(), 1);
        assert_eq!(all[0].steps[0].detail, "started shop-2");
        assert_eq!(s.decisions(1500, None, 100).unwrap().len(), 1);
        assert_eq!(s.decisions(0, Some("pay"), 100).unwrap()[0].instance.as_deref(), Some("pay-1"));
        assert_eq!(s.decisions(0, None, 1).unwrap()[0].rule, "hung", "limit keeps the newest");
        assert!(s.marked("failed:shop").unwrap());
        let counts = s.counts().unwrap();
        assert!(counts.contains(&("pay".into(), "hung".into(), "restart".into(), 1)));
    }

    #[test]
    fn children_are_remembered_until_removed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db")).unwrap();
        let c = ChildRow { instance: "shop-1".into(), app: "shop".into(), pid: 42, ring: "/x/shop-1.ring".into() };
        s.add_child(&c).unwrap();
        assert_eq!(s.children().unwrap(), vec![c]);
        s.remove_child("shop-1").unwrap();
        assert!(s.children().unwrap().is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("db");
        std::fs::write(&p, vec![0x55u8; 8192]).unwrap();
        assert!(Store::open(&p).is_err());
    }
}

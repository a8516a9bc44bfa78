//! The usage ledger: the `usage` and `usage_heads` tables of the store's database.
//!
//! Append-only. This file holds INSERT and SELECT statements only, and the schema's
//! triggers make SQLite refuse UPDATE and DELETE on both tables, so a changed record needs a
//! deliberate edit of the file (dropping the triggers) — which `verify` then detects.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::{head_message, hex, hmac, UsageError, UsageRecord};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS usage (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL, interval_ms INTEGER NOT NULL,
    host TEXT NOT NULL, datacenter TEXT NOT NULL, app TEXT NOT NULL, instance TEXT NOT NULL,
    pid INTEGER NOT NULL,
    cpu_vendor TEXT NOT NULL, cpu_model TEXT NOT NULL, cpu_fms TEXT NOT NULL,
    proc_class TEXT NOT NULL, hypervisor TEXT NOT NULL,
    host_cores INTEGER NOT NULL, cores_told INTEGER NOT NULL, active_processor_count INTEGER NOT NULL,
    cpu_quota_milli INTEGER NOT NULL, cpuset TEXT NOT NULL, mem_limit INTEGER NOT NULL,
    cores_avg_milli INTEGER NOT NULL, cores_peak_milli INTEGER NOT NULL,
    rss_bytes INTEGER NOT NULL, heap_bytes INTEGER NOT NULL,
    io_read_bytes INTEGER NOT NULL, io_write_bytes INTEGER NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_at ON usage(at_ms);
CREATE TABLE IF NOT EXISTS usage_heads (
    seq INTEGER NOT NULL, hash BLOB NOT NULL, mac BLOB NOT NULL, at_ms INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS usage_append_only_u BEFORE UPDATE ON usage
    BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_append_only_d BEFORE DELETE ON usage
    BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_heads_append_only_u BEFORE UPDATE ON usage_heads
    BEGIN SELECT RAISE(ABORT, 'usage heads are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_heads_append_only_d BEFORE DELETE ON usage_heads
    BEGIN SELECT RAISE(ABORT, 'usage heads are append-only'); END;
";

/// The record columns, in [`UsageRecord`] order (then `hash`).
pub const COLUMNS: &str = "seq, at_ms, interval_ms, host, datacenter, app, instance, pid, cpu_vendor, cpu_model, \
     cpu_fms, proc_class, hypervisor, host_cores, cores_told, active_processor_count, cpu_quota_milli, cpuset, \
     mem_limit, cores_avg_milli, cores_peak_milli, rss_bytes, heap_bytes, io_read_bytes, io_write_bytes, hash";

/// A record as read back, with its stored hash.
fn from_row(r: &Row<'_>) -> rusqlite::Result<(UsageRecord, Vec<u8>)> {
    Ok((
        UsageRecord {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            interval_ms: r.get(2)?,
            host: r.get(3)?,
            datacenter: r.get(4)?,
            app: r.get(5)?,
            instance: r.get(6)?,
            pid: r.get(7)?,
            cpu_vendor: r.get(8)?,
            cpu_model: r.get(9)?,
            cpu_fms: r.get(10)?,
            proc_class: r.get(11)?,
            hypervisor: r.get(12)?,
            host_cores: r.get(13)?,
            cores_told: r.get(14)?,
            active_processor_count: r.get(15)?,
            cpu_quota_milli: r.get(16)?,
            cpuset: r.get(17)?,
            mem_limit: r.get(18)?,
            cores_avg_milli: r.get(19)?,
            cores_peak_milli: r.get(20)?,
            rss_bytes: r.get(21)?,
            heap_bytes: r.get(22)?,
            io_read_bytes: r.get(23)?,
            io_write_bytes: r.get(24)?,
        },
        r.get(25)?,
    ))
}

/// The ledger: its own connection to the store's database file.
pub struct Ledger {
    db: Connection,
    key: Option<Vec<u8>>,
    last: Option<(i64, [u8; 32])>,
}

/// What `usage verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Records checked.
    pub records: u64,
    /// Signed heads checked (with a key).
    pub heads: u64,
    /// The chain head: last seq and its hash.
    pub head_seq: i64,
    /// Hex.
    pub head_hash: String,
    /// The first bad record (seq as stored), if any.
    pub first_bad: Option<i64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

impl Verdict {
    /// No problem found.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

impl Ledger {
    /// Opens the ledger in the database at `path` (creating its tables); with `key`, each
    /// append also appends an HMAC-signed chain head.
    pub fn open(path: &Path, key: Option<Vec<u8>>) -> Result<Ledger, UsageError> {
        let db = Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        let last = db
            .query_row("SELECT seq, hash FROM usage ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?
            .map(|(s, h)| (s, h.try_into().unwrap_or([0u8; 32])));
        Ok(Ledger { db, key, last })
    }

    /// Opens an existing ledger read-only (for verify, export, report).
    pub fn open_read(path: &Path) -> Result<Ledger, UsageError> {
        if !path.exists() {
            return Err(UsageError::Bad(format!("{}: no such database", path.display())));
        }
        // NO_MUTEX: a Connection is never shared between threads (it is not Sync), so SQLite's
        // per-call locking would only cost time (an eighth of a report's).
        let db = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Ledger { db, key: None, last: None })
    }

    /// Appends `recs` (their `seq` is assigned here) in one transaction, chained to the
    /// last record; with a key, signs the new head. Returns the last seq.
    pub fn append(&mut self, recs: &mut [UsageRecord], now_ms: i64) -> Result<i64, UsageError> {
        let tx = self.db.transaction()?;
        let (mut seq, mut prev) = self.last.unwrap_or((0, [0u8; 32]));
        {
            let mut ins = tx.prepare_cached(&format!(
                "INSERT INTO usage ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                 ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)"
            ))?;
            for r in recs.iter_mut() {
                seq += 1;
                r.seq = seq;
                prev = r.chain_hash(&prev);
                ins.execute(params![
                    r.seq,
                    r.at_ms,
                    r.interval_ms,
                    r.host,
                    r.datacenter,
                    r.app,
                    r.instance,
                    r.pid,
                    r.cpu_vendor,
                    r.cpu_model,
                    r.cpu_fms,
                    r.proc_class,
                    r.hypervisor,
                    r.host_cores,
                    r.cores_told,
                    r.active_processor_count,
                    r.cpu_quota_milli,
                    r.cpuset,
                    r.mem_limit,
                    r.cores_avg_milli,
                    r.cores_peak_milli,
                    r.rss_bytes,
                    r.heap_bytes,
                    r.io_read_bytes,
                    r.io_write_bytes,
                    &prev[..],
                ])?;
            }
            if let Some(key) = &self.key {
                let mac = hmac(key, &head_message(seq, &prev));
                tx.execute(
                    "INSERT INTO usage_heads (seq, hash, mac, at_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![seq, &prev[..], &mac[..], now_ms],
                )?;
            }
        }
        tx.commit()?;
        self.last = Some((seq, prev));
        Ok(seq)
    }

    /// Calls `f` for every record with `from_ms <= at_ms < to_ms`, in chain order.
    pub fn for_each(
        &self,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(UsageRecord, Vec<u8>),
    ) -> Result<(), UsageError> {
        let mut q =
            self.db.prepare(&format!("SELECT {COLUMNS} FROM usage WHERE +at_ms >= ?1 AND +at_ms < ?2 ORDER BY seq"))?;
        let mut rows = q.query(params![from_ms, to_ms])?;
        while let Some(r) = rows.next()? {
            let (rec, h) = from_row(r)?;
            f(rec, h);
        }
        Ok(())
    }

    /// Calls `f` with the report's fields of every record with `from_ms <= at_ms < to_ms`,
    /// in chain order: only those columns are read, and strings are borrowed from SQLite.
    pub fn for_each_fields(
        &self,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(&super::report::Fields<'_>),
    ) -> Result<(), UsageError> {
        let mut q = self.db.prepare(
            "SELECT at_ms, host, datacenter, app, instance, proc_class, cores_told, cores_avg_milli, \
             cores_peak_milli, rss_bytes, heap_bytes, io_read_bytes, io_write_bytes \
             FROM usage WHERE +at_ms >= ?1 AND +at_ms < ?2 ORDER BY seq",
        )?;
        let mut rows = q.query(params![from_ms, to_ms])?;
        while let Some(r) = rows.next()? {
            let text = |i: usize| -> rusqlite::Result<&str> {
                r.get_ref(i)?
                    .as_str()
                    .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
            };
            f(&super::report::Fields {
                at_ms: r.get(0)?,
                host: text(1)?,
                datacenter: text(2)?,
                app: text(3)?,
                instance: text(4)?,
                proc_class: text(5)?,
                cores_told: r.get(6)?,
                cores_avg_milli: r.get(7)?,
                cores_peak_milli: r.get(8)?,
                rss_bytes: r.get(9)?,
                heap_bytes: r.get(10)?,
                io_read_bytes: r.get(11)?,
                io_write_bytes: r.get(12)?,
            });
        }
        Ok(())
    }

    /// The hash of the record before `seq` (32 zero bytes before the first).
    pub fn hash_before(&self, seq: i64) -> Result<[u8; 32], UsageError> {
        let h: Option<Vec<u8>> = self
            .db
            .query_row("SELECT hash FROM usage WHERE seq < ?1 ORDER BY seq DESC LIMIT 1", params![seq], |r| r.get(0))
            .optional()?;
        Ok(h.and_then(|h| h.try_into().ok()).unwrap_or([0u8; 32]))
    }

    /// License alerts recorded in the decision log (`license:KIND` decisions) in a range:
    /// (at_ms, app, instance, kind).
    pub fn alerts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, String, String, String)>, UsageError> {
        let exists: bool = self
            .db
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'decisions'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)?;
        if !exists {
            return Ok(Vec::new());
        }
        let mut q = self.db.prepare(
            "SELECT at_ms, app, coalesce(instance, ''), substr(rule, 9) FROM decisions
             WHERE rule LIKE 'license:%' AND at_ms >= ?1 AND at_ms < ?2 ORDER BY id",
        )?;
        let out = q
            .query_map(params![from_ms, to_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// Checks the whole chain (and, with `key`, every signed head, and that the last record
    /// is covered by one) in one pass: the signed heads are read first (their HMACs checked),
    /// then each record is compared with the head signed at its seq as the chain streams by,
    /// so memory stays flat however long the chain. Names the first bad record.
    pub fn verify(&self, key: Option<&[u8]>) -> Result<Verdict, UsageError> {
        let mut v =
            Verdict { records: 0, heads: 0, head_seq: 0, head_hash: String::new(), first_bad: None, problem: None };
        // (seq, hash) of the signed heads, by seq.
        let mut heads: Vec<(i64, Vec<u8>)> = Vec::new();
        if let Some(key) = key {
            let mut q = self.db.prepare("SELECT seq, hash, mac FROM usage_heads ORDER BY rowid")?;
            let mut rows = q.query([])?;
            while let Some(r) = rows.next()? {
                let (seq, hash, mac): (i64, Vec<u8>, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
                v.heads += 1;
                if hmac(key, &head_message(seq, &hash))[..] != mac[..] {
                    v.first_bad = Some(seq);
                    v.problem = Some(format!("the signed head at record {seq} has a bad HMAC (wrong key, or forged)"));
                    return Ok(v);
                }
                heads.push((seq, hash));
            }
            heads.sort_by_key(|h| h.0);
        }
        let mut next_head = 0usize;
        let mut prev = [0u8; 32];
        let mut expect = 1i64;
        let mut rec = UsageRecord::default();
        let mut buf = Vec::with_capacity(512);
        {
            let mut q = self.db.prepare(&format!("SELECT {COLUMNS} FROM usage ORDER BY rowid"))?;
            let mut rows = q.query([])?;
            while let Some(r) = rows.next()? {
                read_into(r, &mut rec)?;
                v.records += 1;
                if rec.seq != expect {
                    let what = if rec.seq > expect {
                        format!(
                            "record {} is missing (removed), the chain jumps from {} to {}",
                            expect,
                            expect - 1,
                            rec.seq
                        )
                    } else {
                        format!("record {} is out of order (after {})", rec.seq, expect - 1)
                    };
                    v.first_bad = Some(rec.seq);
                    v.problem = Some(what);
                    return Ok(v);
                }
                let h = rec.chain_hash_with(&prev, &mut buf);
                let stored = r.get_ref(25)?.as_blob().unwrap_or_default();
                if stored != &h[..] {
                    // Which: the record's content changed (its own hash is wrong), or it was
                    // moved (it would chain from another predecessor).
                    v.first_bad = Some(rec.seq);
                    v.problem = Some(format!(
                        "record {} (app {}, instance {}, at {}) does not match its hash: edited, or moved",
                        rec.seq, rec.app, rec.instance, rec.at_ms
                    ));
                    return Ok(v);
                }
                while next_head < heads.len() && heads[next_head].0 == rec.seq {
                    if heads[next_head].1[..] != h[..] {
                        v.first_bad = Some(rec.seq);
                        v.problem =
                            Some(format!("record {} differs from the one signed then (chain rewritten)", rec.seq));
                        return Ok(v);
                    }
                    next_head += 1;
                }
                prev = h;
                v.head_seq = rec.seq;
                expect += 1;
            }
        }
        v.head_hash = hex(&prev);
        if key.is_none() {
            return Ok(v);
        }
        if let Some((seq, _)) = heads.get(next_head) {
            v.first_bad = Some(*seq);
            v.problem = Some(format!("record {seq} was signed but is gone (records removed at the end)"));
            return Ok(v);
        }
        let last_signed = heads.last().map_or(0, |h| h.0);
        if v.head_seq > last_signed {
            v.first_bad = Some(last_signed + 1);
            v.problem = Some(format!(
                "records {}..{} are not covered by a signed head (appended without the key)",
                last_signed + 1,
                v.head_seq
            ));
        }
        Ok(v)
    }
}

/// Reads a row of [`COLUMNS`] into `rec`, reusing its strings' buffers.
fn read_into(r: &Row<'_>, rec: &mut UsageRecord) -> rusqlite::Result<()> {
    let text = |i: usize, dst: &mut String| -> rusqlite::Result<()> {
        let s = r
            .get_ref(i)?
            .as_str()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))?;
        dst.clear();
        dst.push_str(s);
        Ok(())
    };
    rec.seq = r.get(0)?;
    rec.at_ms = r.get(1)?;
    rec.interval_ms = r.get(2)?;
    text(3, &mut rec.host)?;
    text(4, &mut rec.datacenter)?;
    text(5, &mut rec.app)?;
    text(6, &mut rec.instance)?;
    rec.pid = r.get(7)?;
    text(8, &mut rec.cpu_vendor)?;
    text(9, &mut rec.cpu_model)?;
    text(10, &mut rec.cpu_fms)?;
    text(11, &mut rec.proc_class)?;
    text(12, &mut rec.hypervisor)?;
    rec.host_cores = r.get(13)?;
    rec.cores_told = r.get(14)?;
    rec.active_processor_count = r.get(15)?;
    rec.cpu_quota_milli = r.get(16)?;
    text(17, &mut rec.cpuset)?;
    rec.mem_limit = r.get(18)?;
    rec.cores_avg_milli = r.get(19)?;
    rec.cores_peak_milli = r.get(20)?;
    rec.rss_bytes = r.get(21)?;
    rec.heap_bytes = r.get(22)?;
    rec.io_read_bytes = r.get(23)?;
    rec.io_write_bytes = r.get(24)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: i64) -> UsageRecord {
        UsageRecord {
            at_ms: i * 1000,
            app: "shop".into(),
            instance: format!("i{}", i % 3),
            cores_avg_milli: i,
            ..Default::default()
        }
    }

    fn filled(key: Option<&[u8]>) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("jvmwatch.db");
        let mut l = Ledger::open(&p, key.map(<[u8]>::to_vec)).unwrap();
        for b in 0..4 {
            let mut batch: Vec<UsageRecord> = (0..3).map(|i| rec(b * 3 + i)).collect();
            l.append(&mut batch, b).unwrap();
        }
        (d, p)
    }

    fn raw(p: &Path) -> Connection {
        let c = Connection::open(p).unwrap();
        c.execute_batch("DROP TRIGGER usage_append_only_u; DROP TRIGGER usage_append_only_d;").unwrap();
        c
    }

    const KEY: &[u8] = b"0123456789abcdef0123";

    #[test]
    fn intact_and_reopened() {
        let (_d, p) = filled(Some(KEY));
        let mut l = Ledger::open(&p, Some(KEY.to_vec())).unwrap();
        l.append(&mut [rec(99)], 9).unwrap();
        let v = l.verify(Some(KEY)).unwrap();
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.records, v.heads, v.head_seq), (13, 5, 13));
        assert!(!l.verify(Some(b"another key, long enough")).unwrap().ok());
    }

    #[test]
    fn triggers_refuse_update_and_delete() {
        let (_d, p) = filled(Some(KEY));
        let c = Connection::open(&p).unwrap();
        assert!(c.execute("UPDATE usage SET cores_avg_milli = 0 WHERE seq = 2", []).is_err());
        assert!(c.execute("DELETE FROM usage WHERE seq = 2", []).is_err());
        assert!(c.execute("DELETE FROM usage_heads", []).is_err());
    }

    #[test]
    fn edit_delete_reorder_detected() {
        let (_d, p) = filled(None);
        raw(&p).execute("UPDATE usage SET cores_avg_milli = 1 WHERE seq = 5", []).unwrap();
        let v = Ledger::open_read(&p).unwrap().verify(None).unwrap();
        assert_eq!(v.first_bad, Some(5), "{v:?}");

        let (_d, p) = filled(None);
        raw(&p).execute("DELETE FROM usage WHERE seq = 7", []).unwrap();
        let v = Ledger::open_read(&p).unwrap().verify(None).unwrap();
        assert_eq!(v.first_bad, Some(8), "{v:?}");
        assert!(v.problem.unwrap().contains("record 7 is missing"));

        // Reorder: swap the contents of records 3 and 4 (hashes moved along).
        let (_d, p) = filled(None);
        let c = raw(&p);
        c.execute_batch(
            "UPDATE usage SET seq = -3 WHERE seq = 3; UPDATE usage SET seq = 3 WHERE seq = 4; \
             UPDATE usage SET seq = 4 WHERE seq = -3;",
        )
        .unwrap();
        let v = Ledger::open_read(&p).unwrap().verify(None).unwrap();
        assert_eq!(v.first_bad, Some(3), "{v:?}");
    }

    #[test]
    fn truncation_and_rewrite_detected_with_key() {
        // Without the key, removing the last record looks like a shorter chain; with the
        // key, the signed head names it.
        let (_d, p) = filled(Some(KEY));
        raw(&p).execute("DELETE FROM usage WHERE seq = 12", []).unwrap();
        assert!(Ledger::open_read(&p).unwrap().verify(None).unwrap().ok());
        let v = Ledger::open_read(&p).unwrap().verify(Some(KEY)).unwrap();
        assert_eq!(v.first_bad, Some(12), "{v:?}");

        // A recomputed chain (edit, then rehash everything after) defeats the bare chain
        // but not the signed heads.
        let (_d, p) = filled(Some(KEY));
        let c = raw(&p);
        c.execute("UPDATE usage SET cores_avg_milli = 0 WHERE seq = 2", []).unwrap();
        let l = Ledger::open_read(&p).unwrap();
        let mut prev = [0u8; 32];
        let mut fixes = Vec::new();
        l.for_each(i64::MIN, i64::MAX, |r, _| {
            prev = r.chain_hash(&prev);
            fixes.push((r.seq, prev));
        })
        .unwrap();
        for (s, h) in fixes {
            c.execute("UPDATE usage SET hash = ?1 WHERE seq = ?2", params![&h[..], s]).unwrap();
        }
        assert!(Ledger::open_read(&p).unwrap().verify(None).unwrap().ok());
        let v = Ledger::open_read(&p).unwrap().verify(Some(KEY)).unwrap();
        assert_eq!(v.first_bad, Some(3), "first signed head after the edit: {v:?}");
    }

    #[test]
    fn no_update_or_delete_path_in_the_usage_code() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("ledger.rs", include_str!("ledger.rs")),
            ("collect.rs", include_str!("collect.rs")),
            ("policy.rs", include_str!("policy.rs")),
            ("report.rs", include_str!("report.rs")),
            ("cli.rs", include_str!("cli.rs")),
        ];
        for (name, src) in sources {
            // Only the code, not this test module (which edits the file to show detection).
            let code = src.split("#[cfg(test)]").next().unwrap().to_uppercase();
            for bad in ["UPDATE USAGE", " SET ", "DELETE FROM", "REPLACE INTO", "DROP ", "INSERT OR ", "TRUNCATE"] {
                let hits: Vec<&str> =
                    code.lines().filter(|l| !l.trim_start().starts_with("//") && l.contains(bad)).collect();
                assert!(hits.is_empty(), "{name}: {bad:?} in {hits:?}");
            }
        }
    }
}

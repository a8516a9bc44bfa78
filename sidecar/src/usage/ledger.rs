//! The usage ledger: the `usage`, `usage_facts` and `usage_heads` tables of the store's
//! database.
//!
//! A record is stored as two parts: its facts (who the JVM is and what it was given: host,
//! labels, pid, processor, cores told, quota, cpuset, memory limit — the same for all of a
//! JVM's records until something changes) once per distinct tuple in `usage_facts`, and per
//! interval a narrow `usage` row of integers (seq, time, facts id, the six measures, hash).
//! The hash chain is over the whole record (the join), so the hashes are those of the
//! records, whatever the storage.
//!
//! Append-only. This file holds INSERT and SELECT statements only (and, for a store of the
//! first format, the one-time migration below, which copies), and the schema's triggers make
//! SQLite refuse UPDATE and DELETE on all three tables, so a changed record needs a
//! deliberate edit of the file (dropping the triggers) — which `verify` then detects.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;

use super::ints::IntScan;
use super::report::{Builder, Fields};
use super::{canonical_from_parts, chain_hash_of, head_message, hex, hmac, Measures, UsageError, UsageRecord};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS usage_facts (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL, datacenter TEXT NOT NULL, app TEXT NOT NULL, instance TEXT NOT NULL,
    pid INTEGER NOT NULL,
    cpu_vendor TEXT NOT NULL, cpu_model TEXT NOT NULL, cpu_fms TEXT NOT NULL,
    proc_class TEXT NOT NULL, hypervisor TEXT NOT NULL,
    host_cores INTEGER NOT NULL, cores_told INTEGER NOT NULL, active_processor_count INTEGER NOT NULL,
    cpu_quota_milli INTEGER NOT NULL, cpuset TEXT NOT NULL, mem_limit INTEGER NOT NULL,
    UNIQUE (host, datacenter, app, instance, pid, cpu_vendor, cpu_model, cpu_fms, proc_class, hypervisor,
        host_cores, cores_told, active_processor_count, cpu_quota_milli, cpuset, mem_limit)
);
CREATE TABLE IF NOT EXISTS usage (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL, interval_ms INTEGER NOT NULL,
    facts_id INTEGER NOT NULL REFERENCES usage_facts (id),
    cores_avg_milli INTEGER NOT NULL, cores_peak_milli INTEGER NOT NULL,
    rss_bytes INTEGER NOT NULL, heap_bytes INTEGER NOT NULL,
    io_read_bytes INTEGER NOT NULL, io_write_bytes INTEGER NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_heads (
    seq INTEGER NOT NULL, hash BLOB NOT NULL, mac BLOB NOT NULL, at_ms INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS usage_append_only_u BEFORE UPDATE ON usage
    BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_append_only_d BEFORE DELETE ON usage
    BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_facts_append_only_u BEFORE UPDATE ON usage_facts
    BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_facts_append_only_d BEFORE DELETE ON usage_facts
    BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_heads_append_only_u BEFORE UPDATE ON usage_heads
    BEGIN SELECT RAISE(ABORT, 'usage heads are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_heads_append_only_d BEFORE DELETE ON usage_heads
    BEGIN SELECT RAISE(ABORT, 'usage heads are append-only'); END;
";

/// In a migrated store, the trigger names `usage_append_only_*` belong to the first-format
/// table (kept as `usage_v1`, see [`migrate`]), so the new table's are these.
const V2_TRIGGERS: &str = "
CREATE TRIGGER IF NOT EXISTS usage_v2_append_only_u BEFORE UPDATE ON usage
    BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_v2_append_only_d BEFORE DELETE ON usage
    BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
";

/// The facts columns, in [`UsageRecord`] (and canonical) order.
const FACTS: &str = "host, datacenter, app, instance, pid, cpu_vendor, cpu_model, cpu_fms, proc_class, hypervisor, \
     host_cores, cores_told, active_processor_count, cpu_quota_milli, cpuset, mem_limit";

/// The record columns, in [`UsageRecord`] order (then `hash`), as read from [`Ledger::records`].
pub const COLUMNS: &str = "seq, at_ms, interval_ms, host, datacenter, app, instance, pid, cpu_vendor, cpu_model, \
     cpu_fms, proc_class, hypervisor, host_cores, cores_told, active_processor_count, cpu_quota_milli, cpuset, \
     mem_limit, cores_avg_milli, cores_peak_milli, rss_bytes, heap_bytes, io_read_bytes, io_write_bytes, hash";

/// A record as read back, with its stored hash.
fn from_row(r: &Row<'_>) -> rusqlite::Result<(UsageRecord, Vec<u8>)> {
    let mut rec = UsageRecord::default();
    read_into(r, &mut rec)?;
    Ok((rec, r.get(25)?))
}

/// The ledger: its own connection to the store's database file.
pub struct Ledger {
    db: Connection,
    key: Option<Vec<u8>>,
    last: Option<(i64, [u8; 32])>,
    /// A store of the first format (one wide `usage` table), opened read-only.
    wide: bool,
    /// Facts ids by the hash of the facts (see [`facts_hash`]), with the facts' record.
    facts: HashMap<u64, Vec<(UsageRecord, i64)>>,
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

/// Whether `usage` is a first-format table (the facts in every row).
fn is_wide(db: &Connection) -> rusqlite::Result<bool> {
    db.query_row("SELECT count(*) FROM pragma_table_info('usage') WHERE name = 'host'", [], |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
}

/// Who and where: host, datacenter, app, instance, pid, CPU vendor, model, family/model/stepping.
type Placement<'a> = (&'a str, &'a str, &'a str, &'a str, i64, &'a str, &'a str, &'a str);
/// What it was given: class, hypervisor, host cores, cores told, active processor count,
/// quota, cpuset, memory limit.
type Given<'a> = (&'a str, &'a str, i64, i64, i64, i64, &'a str, i64);

/// A record's facts (everything `usage_facts` holds), as one comparable, hashable value.
fn facts_key(r: &UsageRecord) -> (Placement<'_>, Given<'_>) {
    (
        (&r.host, &r.datacenter, &r.app, &r.instance, r.pid, &r.cpu_vendor, &r.cpu_model, &r.cpu_fms),
        (
            &r.proc_class,
            &r.hypervisor,
            r.host_cores,
            r.cores_told,
            r.active_processor_count,
            r.cpu_quota_milli,
            &r.cpuset,
            r.mem_limit,
        ),
    )
}

/// Whether two records have the same facts.
fn same_facts(a: &UsageRecord, b: &UsageRecord) -> bool {
    facts_key(a) == facts_key(b)
}

/// A hash of a record's facts (for the append cache; equal facts, equal hashes).
fn facts_hash(r: &UsageRecord) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    facts_key(r).hash(&mut h);
    h.finish()
}

/// Moves a first-format store to the current one, in one transaction: the wide table is
/// renamed `usage_v1` (and kept: the ledger never deletes), its distinct facts go to
/// `usage_facts` in order of first use, and its rows are copied to the narrow `usage` with
/// their seq and hash, so the chain and the signed heads verify as before.
fn migrate(db: &mut Connection) -> Result<(), UsageError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !is_wide(&tx)? {
        return Ok(()); // another process migrated it meanwhile
    }
    tx.execute_batch("ALTER TABLE usage RENAME TO usage_v1;")?;
    tx.execute_batch(SCHEMA.split_once("PRAGMA synchronous = NORMAL;").map_or(SCHEMA, |s| s.1))?;
    tx.execute_batch(V2_TRIGGERS)?;
    // A tuple seen before is skipped (DO NOTHING: no row is ever changed), so ids follow
    // first use; three times faster than grouping 16 columns over a large table.
    tx.execute_batch(&format!(
        "INSERT INTO usage_facts ({FACTS}) SELECT {FACTS} FROM usage_v1 WHERE true ORDER BY seq \
         ON CONFLICT DO NOTHING;"
    ))?;
    let on: Vec<String> = FACTS.split(", ").map(|c| format!("f.{c} = v.{c}")).collect();
    tx.execute_batch(&format!(
        "INSERT INTO usage (seq, at_ms, interval_ms, facts_id, cores_avg_milli, cores_peak_milli, rss_bytes, \
         heap_bytes, io_read_bytes, io_write_bytes, hash) \
         SELECT v.seq, v.at_ms, v.interval_ms, f.id, v.cores_avg_milli, v.cores_peak_milli, v.rss_bytes, \
         v.heap_bytes, v.io_read_bytes, v.io_write_bytes, v.hash \
         FROM usage_v1 v CROSS JOIN usage_facts f ON {} ORDER BY v.seq;",
        on.join(" AND ")
    ))?;
    tx.commit()?;
    Ok(())
}

impl Ledger {
    /// Opens the ledger in the database at `path` (creating its tables, or migrating a store
    /// of the first format); with `key`, each append also appends an HMAC-signed chain head.
    pub fn open(path: &Path, key: Option<Vec<u8>>) -> Result<Ledger, UsageError> {
        let mut db = Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        if is_wide(&db)? {
            migrate(&mut db)?;
        }
        db.execute_batch(SCHEMA)?;
        let last = db
            .query_row("SELECT seq, hash FROM usage ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?
            .map(|(s, h)| (s, h.try_into().unwrap_or([0u8; 32])));
        Ok(Ledger { db, key, last, wide: false, facts: HashMap::new() })
    }

    /// Opens an existing ledger read-only (for verify, export, report). A store of the first
    /// format is read as it is (and migrated by the next [`Ledger::open`]).
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
        let wide = is_wide(&db)?;
        Ok(Ledger { db, key: None, last: None, wide, facts: HashMap::new() })
    }

    /// Where whole records are read from: the join of a row with its facts (columns
    /// [`COLUMNS`]), or the wide table of the first format.
    fn records(&self) -> &'static str {
        if self.wide {
            "usage"
        } else {
            "usage CROSS JOIN usage_facts ON usage_facts.id = usage.facts_id"
        }
    }

    /// The id of `r`'s facts, adding them to `usage_facts` when new. `fresh` collects the
    /// ids found or added in this transaction (cached only once it commits).
    fn facts_id(
        cache: &HashMap<u64, Vec<(UsageRecord, i64)>>,
        tx: &rusqlite::Transaction<'_>,
        r: &UsageRecord,
        fresh: &mut Vec<(u64, UsageRecord, i64)>,
    ) -> Result<i64, UsageError> {
        let h = facts_hash(r);
        let cached = cache.get(&h).into_iter().flatten().map(|(f, id)| (f, *id));
        let pending = fresh.iter().filter(|f| f.0 == h).map(|(_, f, id)| (f, *id));
        if let Some((_, id)) = cached.chain(pending).find(|(f, _)| same_facts(f, r)) {
            return Ok(id);
        }
        let facts = params![
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
        ];
        let found: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM usage_facts WHERE host = ?1 AND datacenter = ?2 AND app = ?3 AND instance = ?4 \
                 AND pid = ?5 AND cpu_vendor = ?6 AND cpu_model = ?7 AND cpu_fms = ?8 AND proc_class = ?9 \
                 AND hypervisor = ?10 AND host_cores = ?11 AND cores_told = ?12 AND active_processor_count = ?13 \
                 AND cpu_quota_milli = ?14 AND cpuset = ?15 AND mem_limit = ?16",
            )?
            .query_row(facts, |row| row.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                tx.prepare_cached(&format!(
                    "INSERT INTO usage_facts ({FACTS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
                     ?13, ?14, ?15, ?16)"
                ))?
                .execute(facts)?;
                tx.last_insert_rowid()
            }
        };
        let mut f = r.clone();
        f.seq = 0;
        fresh.push((h, f, id));
        Ok(id)
    }

    /// Appends `recs` (their `seq` is assigned here) in one transaction, chained to the
    /// last record; with a key, signs the new head. Returns the last seq.
    pub fn append(&mut self, recs: &mut [UsageRecord], now_ms: i64) -> Result<i64, UsageError> {
        let tx = self.db.transaction()?;
        let (mut seq, mut prev) = self.last.unwrap_or((0, [0u8; 32]));
        let mut fresh = Vec::new();
        let mut buf = Vec::with_capacity(512);
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO usage (seq, at_ms, interval_ms, facts_id, cores_avg_milli, cores_peak_milli, \
                 rss_bytes, heap_bytes, io_read_bytes, io_write_bytes, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for r in recs.iter_mut() {
                seq += 1;
                r.seq = seq;
                prev = r.chain_hash_with(&prev, &mut buf);
                let facts_id = Self::facts_id(&self.facts, &tx, r, &mut fresh)?;
                ins.execute(params![
                    r.seq,
                    r.at_ms,
                    r.interval_ms,
                    facts_id,
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
        for (h, f, id) in fresh {
            let known = self.facts.entry(h).or_default();
            if !known.iter().any(|k| k.1 == id) {
                known.push((f, id));
            }
        }
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
        let mut q = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM {} WHERE +at_ms >= ?1 AND +at_ms < ?2 ORDER BY seq",
            self.records()
        ))?;
        let mut rows = q.query(params![from_ms, to_ms])?;
        while let Some(r) = rows.next()? {
            let (rec, h) = from_row(r)?;
            f(rec, h);
        }
        Ok(())
    }

    /// Calls `f` with the report's fields of every record with `from_ms <= at_ms < to_ms`,
    /// in chain order: only those columns are read, and strings are borrowed from SQLite.
    pub fn for_each_fields(&self, from_ms: i64, to_ms: i64, mut f: impl FnMut(&Fields<'_>)) -> Result<(), UsageError> {
        let mut q = self.db.prepare(&format!(
            "SELECT at_ms, host, datacenter, app, instance, proc_class, cores_told, cores_avg_milli, \
             cores_peak_milli, rss_bytes, heap_bytes, io_read_bytes, io_write_bytes \
             FROM {} WHERE +at_ms >= ?1 AND +at_ms < ?2 ORDER BY seq",
            self.records()
        ))?;
        let mut rows = q.query(params![from_ms, to_ms])?;
        while let Some(r) = rows.next()? {
            f(&Fields {
                at_ms: r.get(0)?,
                host: text(r, 1)?,
                datacenter: text(r, 2)?,
                app: text(r, 3)?,
                instance: text(r, 4)?,
                proc_class: text(r, 5)?,
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

    /// Adds every record with `from_ms <= at_ms < to_ms` to `b`, in chain order. The facts
    /// are read once, then only the rows' integers: each record goes to the builder with
    /// its facts id as key ([`Builder::add_keyed`]), so its labels are looked at only when
    /// they change.
    pub fn report_into(&self, from_ms: i64, to_ms: i64, b: &mut Builder) -> Result<(), UsageError> {
        if self.wide {
            return self.for_each_fields(from_ms, to_ms, |f| b.add_fields(f));
        }
        let mut facts: Vec<Option<ReportFacts>> = Vec::new();
        {
            let mut q = self
                .db
                .prepare("SELECT id, host, datacenter, app, instance, proc_class, cores_told FROM usage_facts")?;
            let mut rows = q.query([])?;
            while let Some(r) = rows.next()? {
                let id = usize::try_from(r.get::<_, i64>(0)?).unwrap_or(usize::MAX);
                if id >= u32::MAX as usize {
                    return Err(UsageError::Bad(format!("usage_facts: id {id} out of range")));
                }
                if facts.len() <= id {
                    facts.resize(id + 1, None);
                }
                facts[id] = Some((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?));
            }
        }
        let mut q = IntScan::new(
            &self.db,
            "SELECT at_ms, facts_id, cores_avg_milli, cores_peak_milli, rss_bytes, heap_bytes, io_read_bytes, \
             io_write_bytes FROM usage WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY seq",
            &[from_ms, to_ms],
        )?;
        while q.step()? {
            let r = &q;
            let id: i64 = r.get(1);
            let Some((host, datacenter, app, instance, proc_class, cores_told)) =
                usize::try_from(id).ok().and_then(|i| facts.get(i)).and_then(Option::as_ref)
            else {
                return Err(UsageError::Bad(format!("a usage record names facts {id}, which are missing")));
            };
            b.add_keyed(
                id as u32,
                &Fields {
                    at_ms: r.get(0),
                    host,
                    datacenter,
                    app,
                    instance,
                    proc_class,
                    cores_told: *cores_told,
                    cores_avg_milli: r.get(2),
                    cores_peak_milli: r.get(3),
                    rss_bytes: r.get(4),
                    heap_bytes: r.get(5),
                    io_read_bytes: r.get(6),
                    io_write_bytes: r.get(7),
                },
            );
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
    ///
    /// A record's canonical bytes are put together from its integers and the JSON text of
    /// its facts, made once per facts row (the same bytes as serialising the record).
    pub fn verify(&self, key: Option<&[u8]>) -> Result<Verdict, UsageError> {
        let mut w = Walk {
            v: Verdict { records: 0, heads: 0, head_seq: 0, head_hash: String::new(), first_bad: None, problem: None },
            heads: Vec::new(),
            next_head: 0,
            prev: [0u8; 32],
            expect: 1,
            buf: Vec::with_capacity(512),
        };
        if let Some(key) = key {
            let mut q = self.db.prepare("SELECT seq, hash, mac FROM usage_heads ORDER BY rowid")?;
            let mut rows = q.query([])?;
            while let Some(r) = rows.next()? {
                let (seq, hash, mac): (i64, Vec<u8>, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
                w.v.heads += 1;
                if hmac(key, &head_message(seq, &hash))[..] != mac[..] {
                    w.v.first_bad = Some(seq);
                    w.v.problem =
                        Some(format!("the signed head at record {seq} has a bad HMAC (wrong key, or forged)"));
                    return Ok(w.v);
                }
                w.heads.push((seq, hash));
            }
            w.heads.sort_by_key(|h| h.0);
        }
        if self.wide {
            let mut rec = UsageRecord::default();
            let mut q = self.db.prepare(&format!("SELECT {COLUMNS} FROM usage ORDER BY rowid"))?;
            let mut rows = q.query([])?;
            while let Some(r) = rows.next()? {
                read_into(r, &mut rec)?;
                let stored = r.get_ref(25)?.as_blob().unwrap_or_default();
                let ok = w.step(
                    rec.seq,
                    |buf| {
                        // Serialising plain fields into a Vec cannot fail.
                        let _ = serde_json::to_writer(buf, &rec);
                    },
                    stored,
                    || (rec.app.clone(), rec.instance.clone(), rec.at_ms),
                );
                if !ok {
                    return Ok(w.v);
                }
            }
        } else {
            // id → (JSON text of the facts, app, instance).
            let mut facts: Vec<Option<(Vec<u8>, String, String)>> = Vec::new();
            {
                let mut q = self.db.prepare(&format!("SELECT id, {FACTS} FROM usage_facts"))?;
                let mut rows = q.query([])?;
                let mut rec = UsageRecord::default();
                while let Some(r) = rows.next()? {
                    let id = usize::try_from(r.get::<_, i64>(0)?).unwrap_or(usize::MAX);
                    if id >= u32::MAX as usize {
                        return Err(UsageError::Bad(format!("usage_facts: id {id} out of range")));
                    }
                    read_facts(r, 1, &mut rec)?;
                    if facts.len() <= id {
                        facts.resize(id + 1, None);
                    }
                    facts[id] = Some((rec.facts_fragment(), rec.app.clone(), rec.instance.clone()));
                }
            }
            let mut q = IntScan::new(
                &self.db,
                "SELECT seq, at_ms, interval_ms, facts_id, cores_avg_milli, cores_peak_milli, rss_bytes, heap_bytes, \
                 io_read_bytes, io_write_bytes, hash FROM usage ORDER BY rowid",
                &[],
            )?;
            let missing = (Vec::new(), String::from("?"), String::from("?"));
            while q.step()? {
                let r = &q;
                let (seq, at_ms, interval_ms, id) = (r.get(0), r.get(1), r.get(2), r.get(3));
                let m: Measures = [r.get(4), r.get(5), r.get(6), r.get(7), r.get(8), r.get(9)];
                let stored = r.blob(10);
                if let Some(bad) = (0..10).find(|i| !r.is_int(*i)) {
                    // What the ledger writes is integers: anything else was put there by hand.
                    w.v.records += 1;
                    w.v.first_bad = Some(seq);
                    w.v.problem = Some(format!("record {seq} has a value that is not an integer in column {bad}"));
                    return Ok(w.v);
                }
                // Facts that are gone give bytes that cannot match the stored hash.
                let f =
                    usize::try_from(id).ok().and_then(|i| facts.get(i)).and_then(Option::as_ref).unwrap_or(&missing);
                let ok = w.step(
                    seq,
                    |buf| canonical_from_parts(buf, seq, at_ms, interval_ms, &f.0, &m),
                    stored,
                    || (f.1.clone(), f.2.clone(), at_ms),
                );
                if !ok {
                    return Ok(w.v);
                }
            }
        }
        w.finish(key.is_some())
    }
}

/// The facts a report reads, by facts id: host, datacenter, app, instance, proc_class,
/// cores_told.
type ReportFacts = (String, String, String, String, String, i64);

/// `verify`'s walk along the chain.
struct Walk {
    v: Verdict,
    /// (seq, hash) of the signed heads, by seq.
    heads: Vec<(i64, Vec<u8>)>,
    next_head: usize,
    prev: [u8; 32],
    expect: i64,
    buf: Vec<u8>,
}

impl Walk {
    /// Checks the next record (`canonical` writes its canonical bytes; `who` names it:
    /// app, instance, at_ms); false, with the verdict's problem set, when it is bad.
    fn step(
        &mut self,
        seq: i64,
        canonical: impl FnOnce(&mut Vec<u8>),
        stored: &[u8],
        who: impl FnOnce() -> (String, String, i64),
    ) -> bool {
        let v = &mut self.v;
        v.records += 1;
        if seq != self.expect {
            let what = if seq > self.expect {
                format!(
                    "record {} is missing (removed), the chain jumps from {} to {}",
                    self.expect,
                    self.expect - 1,
                    seq
                )
            } else {
                format!("record {} is out of order (after {})", seq, self.expect - 1)
            };
            v.first_bad = Some(seq);
            v.problem = Some(what);
            return false;
        }
        self.buf.clear();
        canonical(&mut self.buf);
        let h = chain_hash_of(&self.prev, &self.buf);
        if stored != &h[..] {
            // Which: the record's content changed (its own hash is wrong), or it was
            // moved (it would chain from another predecessor).
            let (app, instance, at_ms) = who();
            v.first_bad = Some(seq);
            v.problem = Some(format!(
                "record {seq} (app {app}, instance {instance}, at {at_ms}) does not match its hash: edited, or moved"
            ));
            return false;
        }
        while self.next_head < self.heads.len() && self.heads[self.next_head].0 == seq {
            if self.heads[self.next_head].1[..] != h[..] {
                v.first_bad = Some(seq);
                v.problem = Some(format!("record {seq} differs from the one signed then (chain rewritten)"));
                return false;
            }
            self.next_head += 1;
        }
        self.prev = h;
        v.head_seq = seq;
        self.expect += 1;
        true
    }

    /// The verdict once every record passed: with a key, every signed head must have been
    /// met, and the last record covered by one.
    fn finish(mut self, keyed: bool) -> Result<Verdict, UsageError> {
        let v = &mut self.v;
        v.head_hash = hex(&self.prev);
        if !keyed {
            return Ok(self.v);
        }
        if let Some((seq, _)) = self.heads.get(self.next_head) {
            v.first_bad = Some(*seq);
            v.problem = Some(format!("record {seq} was signed but is gone (records removed at the end)"));
            return Ok(self.v);
        }
        let last_signed = self.heads.last().map_or(0, |h| h.0);
        if v.head_seq > last_signed {
            v.first_bad = Some(last_signed + 1);
            v.problem = Some(format!(
                "records {}..{} are not covered by a signed head (appended without the key)",
                last_signed + 1,
                v.head_seq
            ));
        }
        Ok(self.v)
    }
}

/// Column `i` as borrowed text.
fn text<'r>(r: &'r Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(i)?
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// Reads the facts columns ([`FACTS`], from column `at`) into `rec`, reusing its strings'
/// buffers.
fn read_facts(r: &Row<'_>, at: usize, rec: &mut UsageRecord) -> rusqlite::Result<()> {
    let put = |i: usize, dst: &mut String| -> rusqlite::Result<()> {
        dst.clear();
        dst.push_str(text(r, at + i)?);
        Ok(())
    };
    put(0, &mut rec.host)?;
    put(1, &mut rec.datacenter)?;
    put(2, &mut rec.app)?;
    put(3, &mut rec.instance)?;
    rec.pid = r.get(at + 4)?;
    put(5, &mut rec.cpu_vendor)?;
    put(6, &mut rec.cpu_model)?;
    put(7, &mut rec.cpu_fms)?;
    put(8, &mut rec.proc_class)?;
    put(9, &mut rec.hypervisor)?;
    rec.host_cores = r.get(at + 10)?;
    rec.cores_told = r.get(at + 11)?;
    rec.active_processor_count = r.get(at + 12)?;
    rec.cpu_quota_milli = r.get(at + 13)?;
    put(14, &mut rec.cpuset)?;
    rec.mem_limit = r.get(at + 15)?;
    Ok(())
}

/// Reads a row of [`COLUMNS`] into `rec`, reusing its strings' buffers.
fn read_into(r: &Row<'_>, rec: &mut UsageRecord) -> rusqlite::Result<()> {
    rec.seq = r.get(0)?;
    rec.at_ms = r.get(1)?;
    rec.interval_ms = r.get(2)?;
    read_facts(r, 3, rec)?;
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

    /// The schema of the first format (before `usage_facts`), as that code created it.
    const V1_SCHEMA: &str = "
        PRAGMA journal_mode = WAL;
        CREATE TABLE usage (
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
        CREATE INDEX usage_at ON usage(at_ms);
        CREATE TABLE usage_heads (seq INTEGER NOT NULL, hash BLOB NOT NULL, mac BLOB NOT NULL, at_ms INTEGER NOT NULL);
        CREATE TRIGGER usage_append_only_u BEFORE UPDATE ON usage
            BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
        CREATE TRIGGER usage_append_only_d BEFORE DELETE ON usage
            BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;
        CREATE TRIGGER usage_heads_append_only_u BEFORE UPDATE ON usage_heads
            BEGIN SELECT RAISE(ABORT, 'usage heads are append-only'); END;
        CREATE TRIGGER usage_heads_append_only_d BEFORE DELETE ON usage_heads
            BEGIN SELECT RAISE(ABORT, 'usage heads are append-only'); END;";

    /// A store of the first format, written as its ledger appended (wide rows, one
    /// transaction and signed head per batch of 3), with records of varied facts.
    fn v1_store() -> (tempfile::TempDir, std::path::PathBuf, Vec<UsageRecord>) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("jvmwatch.db");
        let mut c = Connection::open(&p).unwrap();
        c.execute_batch(V1_SCHEMA).unwrap();
        let mut all = Vec::new();
        let mut prev = [0u8; 32];
        for b in 0..4i64 {
            let tx = c.transaction().unwrap();
            for i in 0..3 {
                let n = b * 3 + i;
                let mut r = UsageRecord {
                    seq: n + 1,
                    at_ms: (b + 1) * 60_000,
                    interval_ms: 60_000,
                    host: format!("h{}", i % 2),
                    datacenter: "fra".into(),
                    app: if i == 2 { "batch".into() } else { "shop".into() },
                    cpu_model: "Intel(R) Xeon(R) \"Platinum\" é".into(),
                    proc_class: if b == 3 && i == 0 { "amd-epyc-zen3".into() } else { "intel-xeon-icelake".into() },
                    cores_told: 2 + b / 2,
                    cores_peak_milli: 100 * n + 50,
                    rss_bytes: 1 << 20,
                    io_read_bytes: -1,
                    ..rec(n)
                };
                r.instance = format!("i{i}");
                prev = r.chain_hash(&prev);
                tx.execute(
                    &format!(
                        "INSERT INTO usage ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
                         ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)"
                    ),
                    params![
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
                        &prev[..]
                    ],
                )
                .unwrap();
                all.push(r);
            }
            let seq = all.len() as i64;
            tx.execute(
                "INSERT INTO usage_heads (seq, hash, mac, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![seq, &prev[..], &hmac(KEY, &head_message(seq, &prev))[..], b],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        (d, p, all)
    }

    fn report_of(l: &Ledger, group_by: super::super::report::GroupBy) -> serde_json::Value {
        use super::super::report::Params;
        let p = Params {
            from_ms: 0,
            to_ms: 3_600_000,
            group_by,
            bucket_ms: 60_000,
            headroom_pct: 20.0,
            policy: None,
            under_ratio: 0.5,
        };
        let mut b = Builder::new(p);
        l.report_into(0, 3_600_000, &mut b).unwrap();
        serde_json::to_value(b.finish()).unwrap()
    }

    #[test]
    fn a_first_format_store_is_read_then_migrated_and_still_verifies() {
        use super::super::report::{GroupBy, Params};
        let (_d, p, recs) = v1_store();
        let by_records = |group_by| {
            let mut b = Builder::new(Params {
                from_ms: 0,
                to_ms: 3_600_000,
                group_by,
                bucket_ms: 60_000,
                headroom_pct: 20.0,
                policy: None,
                under_ratio: 0.5,
            });
            for r in &recs {
                b.add(r);
            }
            serde_json::to_value(b.finish()).unwrap()
        };
        // Read as it is (read-only: not migrated).
        let old = Ledger::open_read(&p).unwrap();
        let v = old.verify(Some(KEY)).unwrap();
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.records, v.heads), (12, 4));
        let head = v.head_hash.clone();
        for g in [GroupBy::App, GroupBy::Host, GroupBy::Datacenter] {
            assert_eq!(report_of(&old, g), by_records(g));
        }
        let mut exported = Vec::new();
        old.for_each(i64::MIN, i64::MAX, |r, _| exported.push(r)).unwrap();
        assert_eq!(exported, recs);
        drop(old);

        // Opened for appending: migrated; same records, hashes, heads and report.
        let mut l = Ledger::open(&p, Some(KEY.to_vec())).unwrap();
        let c = Connection::open(&p).unwrap();
        let facts: i64 = c.query_row("SELECT count(*) FROM usage_facts", [], |r| r.get(0)).unwrap();
        assert_eq!(facts, 3 * 2 + 1, "one tuple per instance and cores_told, and the class change");
        assert!(is_wide(&c).is_ok_and(|w| !w));
        let r = Ledger::open_read(&p).unwrap();
        let v = r.verify(Some(KEY)).unwrap();
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.records, v.heads, v.head_hash.as_str()), (12, 4, head.as_str()));
        for g in [GroupBy::App, GroupBy::Host, GroupBy::Datacenter] {
            assert_eq!(report_of(&r, g), by_records(g));
        }
        let mut exported = Vec::new();
        r.for_each(i64::MIN, i64::MAX, |r, _| exported.push(r)).unwrap();
        assert_eq!(exported, recs);

        // Appends continue the chain; reopening does not migrate again.
        let mut more = vec![UsageRecord { app: "shop".into(), instance: "i0".into(), ..rec(20) }, recs[4].clone()];
        l.append(&mut more, 9).unwrap();
        drop(l);
        let l = Ledger::open(&p, Some(KEY.to_vec())).unwrap();
        let v = l.verify(Some(KEY)).unwrap();
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.records, v.heads, v.head_seq), (14, 5, 14));

        // Both the kept first-format table and the new one refuse UPDATE and DELETE.
        for sql in [
            "UPDATE usage SET cores_avg_milli = 0 WHERE seq = 2",
            "DELETE FROM usage WHERE seq = 2",
            "UPDATE usage_v1 SET cores_avg_milli = 0 WHERE seq = 2",
            "DELETE FROM usage_v1 WHERE seq = 2",
            "UPDATE usage_facts SET host = 'x' WHERE id = 1",
            "DELETE FROM usage_facts WHERE id = 1",
        ] {
            assert!(c.execute(sql, []).unwrap_err().to_string().contains("append-only"), "{sql}");
        }
        // And an edit of the copied records is detected.
        c.execute_batch("DROP TRIGGER usage_v2_append_only_u;").unwrap();
        c.execute("UPDATE usage SET io_write_bytes = 1 WHERE seq = 6", []).unwrap();
        let v = Ledger::open_read(&p).unwrap().verify(Some(KEY)).unwrap();
        assert_eq!(v.first_bad, Some(6), "{v:?}");
    }

    #[test]
    fn a_non_integer_measure_is_detected() {
        let (_d, p) = filled(None);
        // The same integer part: only the type check sees it.
        raw(&p).execute("UPDATE usage SET cores_avg_milli = cores_avg_milli + 0.25 WHERE seq = 5", []).unwrap();
        let v = Ledger::open_read(&p).unwrap().verify(None).unwrap();
        assert_eq!(v.first_bad, Some(5), "{v:?}");
    }

    #[test]
    fn an_edited_facts_row_is_detected() {
        let (_d, p) = filled(Some(KEY));
        let c = Connection::open(&p).unwrap();
        c.execute_batch("DROP TRIGGER usage_facts_append_only_u;").unwrap();
        // Facts of instance i1 (records 2, 5, 8, 11).
        c.execute("UPDATE usage_facts SET cpuset = '0-63' WHERE instance = 'i1'", []).unwrap();
        let v = Ledger::open_read(&p).unwrap().verify(None).unwrap();
        assert_eq!(v.first_bad, Some(2), "{v:?}");
        assert!(v.problem.unwrap().contains("instance i1"));
        // A record pointed at other facts.
        let (_d, p) = filled(Some(KEY));
        let c = raw(&p);
        c.execute("UPDATE usage SET facts_id = facts_id + 1 WHERE seq = 4", []).unwrap();
        let v = Ledger::open_read(&p).unwrap().verify(None).unwrap();
        assert_eq!(v.first_bad, Some(4), "{v:?}");
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
            ("ints.rs", include_str!("ints.rs")),
        ];
        for (name, src) in sources {
            // Only the code, not this test module (which edits the file to show detection).
            let code = src.split("#[cfg(test)]").next().unwrap().to_uppercase();
            for bad in ["UPDATE USAGE", " SET ", "DELETE FROM", "REPLACE INTO", "DROP ", "INSERT OR ", "TRUNCATE"] {
                let hits: Vec<&str> = (code.lines().filter(|l| !l.trim_start().starts_with("//") && l.contains(bad)))
                    // Rust's `impl Drop` (a statement handle finalised) is no SQL.
                    .filter(|l| !(bad == "DROP " && l.contains("IMPL DROP FOR")))
                    .collect();
                assert!(hits.is_empty(), "{name}: {bad:?} in {hits:?}");
            }
        }
    }
}

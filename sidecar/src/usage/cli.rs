//! `jvmwatch usage verify|export` and `jvmwatch report`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::ledger::Ledger;
use super::policy::Policy;
use super::report::{self, Builder, GroupBy, Params};

/// The database in a state directory.
pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("jvmwatch.db")
}

/// A time: RFC 3339 (`2026-11-01T00:00:00Z`, `2026-11-01`), ms since the epoch, or a
/// duration meaning that long before now (`7d`, `24h`); `now`.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ms);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms - d.as_millis() as i64);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .or_else(|_| humantime::parse_rfc3339_weak(&format!("{s} 00:00:00")))
        .with_context(|| format!("time {s:?}: expected RFC 3339 (2026-11-01T00:00:00Z), ms, or an age (7d)"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
}

fn now_ms() -> i64 {
    (jvmwatch_ring::now_ns() / 1_000_000) as i64
}

fn key(path: Option<&Path>) -> Result<Option<Vec<u8>>> {
    Ok(path.map(super::read_key).transpose()?)
}

/// `usage verify`: exit 0 when intact, 1 when tampered.
pub fn verify(state_dir: &Path, key_file: Option<&Path>, json: bool) -> Result<bool> {
    let db = db_path(state_dir);
    let ledger = Ledger::open_read(&db)?;
    let v = ledger.verify(key(key_file)?.as_deref())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if v.ok() {
        println!(
            "ok: {} records, chain head {} {}{}",
            v.records,
            v.head_seq,
            v.head_hash,
            if key_file.is_some() { format!(", {} signed heads valid", v.heads) } else { String::new() }
        );
    } else {
        println!("TAMPERED: first bad record {}: {}", v.first_bad.unwrap_or(0), v.problem.as_deref().unwrap_or("?"));
    }
    Ok(v.ok())
}

/// `usage export`.
pub fn export(state_dir: &Path, from: &str, to: &str, key_file: Option<&Path>, output: Option<&Path>) -> Result<()> {
    let now = now_ms();
    let ledger = Ledger::open_read(&db_path(state_dir))?;
    let b = report::export(&ledger, parse_time(from, now)?, parse_time(to, now)?, key(key_file)?.as_deref(), now)?;
    let text = serde_json::to_string(&b)?;
    match output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

/// Options of `report`.
#[derive(Debug)]
pub struct ReportArgs {
    /// Start.
    pub from: String,
    /// End.
    pub to: String,
    /// app | host | datacenter.
    pub group_by: String,
    /// html | csv | json.
    pub format: String,
    /// This host's store (none with only bundles).
    pub state_dir: Option<PathBuf>,
    /// Exported bundles.
    pub bundles: Vec<PathBuf>,
    /// Key for bundle signatures.
    pub key_file: Option<PathBuf>,
    /// Licensed cores.
    pub policy: Option<PathBuf>,
    /// Headroom, percent.
    pub headroom: f64,
    /// Bucket.
    pub bucket: std::time::Duration,
}

/// Builds a report from a store and bundles.
pub fn build(a: &ReportArgs) -> Result<report::Report> {
    let now = now_ms();
    let group_by = GroupBy::parse(&a.group_by).context("--group-by: app, host or datacenter")?;
    let policy = a.policy.as_deref().map(Policy::load).transpose()?;
    let p = Params {
        from_ms: parse_time(&a.from, now)?,
        to_ms: parse_time(&a.to, now)?,
        group_by,
        bucket_ms: (a.bucket.as_millis() as i64).max(1),
        headroom_pct: a.headroom,
        policy,
        under_ratio: 0.5,
    };
    let (from, to) = (p.from_ms, p.to_ms);
    let mut b = Builder::new(p);
    if let Some(dir) = &a.state_dir {
        let ledger = Ledger::open_read(&db_path(dir))?;
        ledger.report_into(from, to, &mut b)?;
        b.add_alerts(ledger.alerts(from, to)?);
    }
    let k = key(a.key_file.as_deref())?;
    for f in &a.bundles {
        let bundle = report::read_bundle(f, k.as_deref())?;
        for r in &bundle.records {
            b.add(r);
        }
        b.add_alerts(bundle.alerts);
    }
    Ok(b.finish())
}

/// Renders a report.
pub fn render(r: &report::Report, format: &str) -> Result<String> {
    Ok(match format {
        "json" => serde_json::to_string_pretty(r)?,
        "csv" => report::to_csv(r),
        "html" => report::to_html(r),
        f => anyhow::bail!("--format {f:?}: html, csv or json"),
    })
}

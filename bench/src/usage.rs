//! Section 9, usage records: append cost per record, store growth per JVM-day, and
//! `jvmwatch report` / `jvmwatch usage verify` over a store of `jvms` JVMs × `days` days of
//! 1-minute records (the goal is stated for 100 JVMs × 30 days = 4.32 M records; a shorter
//! run is extrapolated linearly, and labelled so).

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use jvmwatch_sidecar::usage::ledger::Ledger;
use jvmwatch_sidecar::usage::UsageRecord;
use serde::Serialize;

use crate::stats::{percentiles, round, Percentiles};
use crate::tools::{Scratch, Tools};

/// The section's result.
#[derive(Debug, Serialize)]
pub struct UsageBench {
    /// JVMs.
    pub jvms: u64,
    /// Days of 1-minute records.
    pub days: f64,
    /// Records in the store.
    pub records: u64,
    /// Append cost per record (batches of one interval, i.e. `jvms` records per
    /// transaction, with a signed head), µs.
    pub append_us_per_record: Percentiles,
    /// Database file size ÷ (JVMs × days), bytes.
    pub store_bytes_per_jvm_day: u64,
    /// `jvmwatch report --format json` over all records, s.
    pub report_s: f64,
    /// Its CPU time (user + system), s: less sensitive to other load than wall time.
    pub report_cpu_s: f64,
    /// Its peak RSS, MB.
    pub report_max_rss_mb: f64,
    /// `jvmwatch usage verify --key` over all records, s.
    pub verify_s: f64,
    /// Its CPU time (user + system), s.
    pub verify_cpu_s: f64,
    /// Its peak RSS, MB.
    pub verify_max_rss_mb: f64,
    /// report_s and verify_s scaled linearly to 4.32 M records, when fewer were measured.
    pub extrapolated_to_4_32m: Option<(f64, f64)>,
}

/// Wall time, CPU time (user + system, s) and peak RSS (MB) of a command.
fn timed(mut c: Command) -> Result<(f64, f64, f64)> {
    let t = Instant::now();
    let child = c.stdout(std::process::Stdio::null()).spawn().context("spawn")?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid out-pointers.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let secs = t.elapsed().as_secs_f64();
    if r < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) > 1 {
        bail!("{c:?} failed ({status})");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((secs, tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as f64 / 1024.0))
}

/// Runs the section.
pub fn run(tools: &Tools, scratch: &Scratch, jvms: u64, days: f64) -> Result<UsageBench> {
    let dir = scratch.disk.join("usage");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("jvmwatch.db");
    let key_file = dir.join("usage.key");
    std::fs::write(&key_file, "bench-key-bench-key-bench-key-00")?;
    let mut ledger = Ledger::open(&db, Some(b"bench-key-bench-key-bench-key-00".to_vec()))?;
    let minutes = (days * 1440.0) as i64;
    let start = 1_700_000_000_000i64;
    let classes = ["intel-xeon-icelake", "amd-epyc-zen3"];
    let mut per_record = Vec::new();
    for m in 0..minutes {
        let mut batch: Vec<UsageRecord> = (0..jvms)
            .map(|j| UsageRecord {
                at_ms: start + (m + 1) * 60_000,
                interval_ms: 60_000,
                host: format!("host{}", j / 10),
                datacenter: format!("dc{}", j / 50),
                app: format!("app{}", j % 7),
                instance: format!("app{}-{j}-1700000000000", j % 7),
                pid: 1000 + j as i64,
                cpu_vendor: "GenuineIntel".into(),
                cpu_model: "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz".into(),
                cpu_fms: "6/106/6".into(),
                proc_class: classes[(j % 2) as usize].into(),
                hypervisor: "kvm".into(),
                host_cores: 32,
                cores_told: 4,
                active_processor_count: 0,
                cpu_quota_milli: 4000,
                cpuset: "0-31".into(),
                mem_limit: 8 << 30,
                cores_avg_milli: ((m * 7 + j as i64 * 13) % 3000) + 100,
                cores_peak_milli: ((m * 7 + j as i64 * 13) % 3000) + 600,
                rss_bytes: 1 << 30,
                heap_bytes: 512 << 20,
                io_read_bytes: 4096 * (m % 11),
                io_write_bytes: 8192 * (m % 5),
                ..UsageRecord::default()
            })
            .collect();
        let t = Instant::now();
        ledger.append(&mut batch, start + m * 60_000)?;
        per_record.push(t.elapsed().as_secs_f64() * 1e6 / jvms as f64);
    }
    drop(ledger);
    let records = jvms * minutes as u64;
    let size: u64 = ["jvmwatch.db", "jvmwatch.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let mut report = Command::new(&tools.jvmwatch);
    report.args(["report", "--from", "0", "--to", "now", "--format", "json", "--state-dir"]).arg(&dir);
    let (report_s, report_cpu_s, report_rss) = timed(report)?;
    let mut verify = Command::new(&tools.jvmwatch);
    verify.args(["usage", "verify", "--state-dir"]).arg(&dir).arg("--key").arg(&key_file);
    let (verify_s, verify_cpu_s, verify_rss) = timed(verify)?;
    let full = 4_320_000.0;
    let scale = full / records.max(1) as f64;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(UsageBench {
        jvms,
        days,
        records,
        append_us_per_record: percentiles(&per_record).context("no appends")?,
        store_bytes_per_jvm_day: (size as f64 / (jvms as f64 * days)) as u64,
        report_s: round(report_s, 2),
        report_cpu_s: round(report_cpu_s, 2),
        report_max_rss_mb: round(report_rss, 1),
        verify_s: round(verify_s, 2),
        verify_cpu_s: round(verify_cpu_s, 2),
        verify_max_rss_mb: round(verify_rss, 1),
        extrapolated_to_4_32m: (records < 4_320_000).then(|| (round(report_s * scale, 1), round(verify_s * scale, 1))),
    })
}

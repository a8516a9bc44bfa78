//! The per-interval collector run by the controller loop: samples each followed JVM's CPU
//! time several times per interval (for the peak), and at the end of every interval appends
//! one record per JVM to the ledger and evaluates the license policy.

use std::collections::HashMap;
use std::path::Path;

use jvmwatch_controller::UsageCfg;

use jvmwatch_ring::facts::{Processor, Resources};

use super::host::{self, Cpu};
use super::ledger::Ledger;
use super::policy::{self, Alert, Gate, Policy};
use super::{UsageError, UsageRecord};

/// A followed JVM as the controller sees it this tick.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Instance id.
    pub instance: String,
    /// App.
    pub app: String,
    /// Process id.
    pub pid: u32,
    /// Heap used, bytes (latest agent snapshot).
    pub heap_bytes: i64,
    /// The processor the agent inside this JVM recorded in its ring (None: an older agent).
    pub processor: Option<Processor>,
    /// What the agent recorded the JVM was given (None: an older agent).
    pub resources: Option<Resources>,
}

struct Track {
    app: String,
    pid: u32,
    heap: i64,
    start_ms: i64,
    start_cpu: u64,
    last_ms: i64,
    last_cpu: u64,
    peak_milli: i64,
    io_start: Option<(i64, i64)>,
    processor: Option<Processor>,
    resources: Option<Resources>,
}

/// The collector.
pub struct Collector {
    cfg: UsageCfg,
    ledger: Ledger,
    policy: Option<Policy>,
    cpu: Cpu,
    hypervisor: String,
    cpu_checked_ms: i64,
    host: String,
    interval_ms: i64,
    sub_ms: i64,
    last_flush_ms: i64,
    last_sub_ms: i64,
    tracks: HashMap<String, Track>,
    prev: HashMap<String, UsageRecord>,
    since: HashMap<String, i64>,
    gate: Gate,
}

/// How often the processor is re-read (a live migration can change it).
const CPU_RECHECK_MS: i64 = 10_000;

impl Collector {
    /// A collector appending to the ledger in database `db`.
    pub fn new(cfg: &UsageCfg, db: &Path, now_ms: i64) -> Result<Collector, UsageError> {
        let key = cfg.key_file.as_deref().map(super::read_key).transpose()?;
        let policy = cfg.policy.as_deref().map(Policy::load).transpose()?;
        let cpu = host::cpu();
        let interval_ms = cfg.interval.as_millis().max(100) as i64;
        Ok(Collector {
            ledger: Ledger::open(db, key)?,
            policy,
            hypervisor: host::hypervisor(cpu.hypervisor_flag),
            cpu,
            cpu_checked_ms: now_ms,
            host: cfg.host.clone().unwrap_or_else(hostname),
            interval_ms,
            sub_ms: (interval_ms / 10).clamp(100, 5_000),
            last_flush_ms: now_ms,
            last_sub_ms: 0,
            tracks: HashMap::new(),
            prev: HashMap::new(),
            since: HashMap::new(),
            gate: Gate::default(),
            cfg: cfg.clone(),
        })
    }

    /// The config it runs with.
    pub fn cfg(&self) -> &UsageCfg {
        &self.cfg
    }

    /// (app, kind) of every license alert condition holding now.
    pub fn active_alerts(&self) -> Vec<(String, &'static str)> {
        self.gate.active().cloned().collect()
    }

    /// One controller tick with the live JVMs `jvms`; returns the alerts that fire.
    pub fn tick(&mut self, now_ms: i64, jvms: &[Seen]) -> Vec<Alert> {
        if now_ms - self.last_sub_ms < self.sub_ms && now_ms - self.last_flush_ms < self.interval_ms {
            return Vec::new();
        }
        self.last_sub_ms = now_ms;
        for s in jvms {
            let Some(cpu) = host::cpu_ns(s.pid) else { continue };
            let t = self.tracks.entry(s.instance.clone()).or_insert_with(|| Track {
                app: s.app.clone(),
                pid: s.pid,
                heap: s.heap_bytes,
                start_ms: now_ms,
                start_cpu: cpu,
                last_ms: now_ms,
                last_cpu: cpu,
                peak_milli: 0,
                io_start: host::io(s.pid),
                processor: None,
                resources: None,
            });
            t.heap = s.heap_bytes;
            t.processor.clone_from(&s.processor);
            t.resources.clone_from(&s.resources);
            t.app.clone_from(&s.app);
            let dt = now_ms - t.last_ms;
            if dt > 0 {
                let rate = cpu.saturating_sub(t.last_cpu) as i64 / 1000 / dt; // ns/ms/1000 = millicores
                t.peak_milli = t.peak_milli.max(rate);
            }
            t.last_ms = now_ms;
            t.last_cpu = cpu;
        }
        if now_ms - self.last_flush_ms < self.interval_ms {
            return Vec::new();
        }
        self.last_flush_ms = now_ms;
        match self.flush(now_ms) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("jvmwatch: usage: {e}");
                Vec::new()
            }
        }
    }

    fn flush(&mut self, now_ms: i64) -> Result<Vec<Alert>, UsageError> {
        if now_ms - self.cpu_checked_ms >= CPU_RECHECK_MS {
            self.cpu = host::cpu();
            self.hypervisor = host::hypervisor(self.cpu.hypervisor_flag);
            self.cpu_checked_ms = now_ms;
        }
        let mut batch = Vec::new();
        let mut gone = Vec::new();
        for (inst, t) in &mut self.tracks {
            let Some(given) = host::given(t.pid) else {
                gone.push(inst.clone());
                continue;
            };
            let wall = t.last_ms - t.start_ms;
            if wall <= 0 {
                // Not seen since the last record: no longer followed.
                gone.push(inst.clone());
                continue;
            }
            let avg = t.last_cpu.saturating_sub(t.start_cpu) as i64 / 1000 / wall;
            let io_now = host::io(t.pid);
            let (io_r, io_w) = match (t.io_start, io_now) {
                (Some(a), Some(b)) => (b.0 - a.0, b.1 - a.1),
                _ => (-1, -1),
            };
            // What the agent inside the JVM saw, when its ring has it; else /proc, read now.
            let p = t.processor.clone().unwrap_or_else(|| Processor {
                vendor: self.cpu.vendor.clone(),
                model_name: self.cpu.model_name.clone(),
                fms: self.cpu.fms(),
                class: self.cpu.class.clone(),
                hypervisor: self.hypervisor.clone(),
                hypervisor_flag: self.cpu.hypervisor_flag,
                host_cores: self.cpu.cores.clamp(0, u32::MAX.into()) as u32,
            });
            let r = t.resources.clone().unwrap_or_else(|| Resources {
                cores_told: given.cores_told().clamp(0, u32::MAX.into()) as u32,
                active_processor_count: given.active_processor_count.clamp(0, u32::MAX.into()) as u32,
                affinity: given.affinity.clamp(0, u32::MAX.into()) as u32,
                cpu_quota_milli: given.quota_milli.clamp(-1, i32::MAX.into()) as i32,
                mem_limit: given.mem_limit,
                cpuset: given.cpuset.clone(),
            });
            batch.push(UsageRecord {
                seq: 0,
                at_ms: t.last_ms,
                interval_ms: wall,
                host: self.host.clone(),
                datacenter: self.cfg.datacenter.clone().unwrap_or_default(),
                app: t.app.clone(),
                instance: inst.clone(),
                pid: i64::from(t.pid),
                cpu_vendor: p.vendor,
                cpu_model: p.model_name,
                cpu_fms: p.fms,
                proc_class: p.class,
                hypervisor: p.hypervisor,
                host_cores: p.host_cores.into(),
                cores_told: r.cores_told.into(),
                active_processor_count: r.active_processor_count.into(),
                cpu_quota_milli: r.cpu_quota_milli.into(),
                cpuset: r.cpuset,
                mem_limit: r.mem_limit,
                cores_avg_milli: avg,
                cores_peak_milli: t.peak_milli.max(avg),
                rss_bytes: host::rss(t.pid).unwrap_or(-1),
                heap_bytes: t.heap,
                io_read_bytes: io_r,
                io_write_bytes: io_w,
            });
            t.start_ms = t.last_ms;
            t.start_cpu = t.last_cpu;
            t.peak_milli = 0;
            t.io_start = io_now;
        }
        for g in gone {
            self.tracks.remove(&g);
            self.prev.remove(&g);
        }
        batch.sort_by(|a, b| a.instance.cmp(&b.instance));
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.ledger.append(&mut batch, now_ms)?;
        let Some(p) = &self.policy else { return Ok(Vec::new()) };
        let holding = policy::conditions(p, &batch, &self.prev, &mut self.since);
        for r in batch {
            self.prev.insert(r.instance.clone(), r);
        }
        Ok(self.gate.fire(holding, now_ms, p.rate_limit_ms()))
    }
}

/// This host's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record takes the processor and resources from the ring when the JVM's agent wrote
    /// them, and reads `/proc` for a ring without them (this test process stands in for the
    /// JVM: its CPU time, RSS and I/O are real either way).
    #[test]
    fn ring_facts_win_over_proc() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = UsageCfg { interval: std::time::Duration::from_secs(1), ..UsageCfg::default() };
        let mut c = Collector::new(&cfg, &dir.path().join("u.db"), 0).unwrap();
        let pid = std::process::id();
        let from_ring = Seen {
            instance: "a".into(),
            app: "app".into(),
            pid,
            heap_bytes: 1,
            processor: Some(Processor { class: "from-the-ring".into(), host_cores: 99, ..Processor::default() }),
            resources: Some(Resources {
                cores_told: 7,
                cpuset: "3".into(),
                cpu_quota_milli: 1500,
                mem_limit: 1 << 30,
                ..Resources::default()
            }),
        };
        let old_agent = Seen { instance: "b".into(), processor: None, resources: None, ..from_ring.clone() };
        // Sampled every 100 ms (interval / 10), flushed at 1 s.
        for t in (100..=1000).step_by(100) {
            c.tick(t, &[from_ring.clone(), old_agent.clone()]);
        }
        let mut got = Vec::new();
        c.ledger.for_each(0, i64::MAX, |r, _| got.push(r)).unwrap();
        let a = got.iter().find(|r| r.instance == "a").expect("a record for a");
        assert_eq!((a.proc_class.as_str(), a.host_cores, a.cores_told), ("from-the-ring", 99, 7));
        assert_eq!((a.cpuset.as_str(), a.cpu_quota_milli, a.mem_limit), ("3", 1500, 1 << 30));
        let b = got.iter().find(|r| r.instance == "b").expect("a record for b");
        let proc = host::given(pid).unwrap();
        assert_eq!((b.proc_class.as_str(), b.cpuset.as_str()), (host::cpu().class.as_str(), proc.cpuset.as_str()));
        assert_eq!(b.host_cores, host::cpu().cores);
    }
}

//! The host facts the agent records ([`Event::Processor`], [`Event::Resources`]) as a reader
//! sees them: resolved against the string table, the latest of each, and the changes between
//! successive records ("resources changed: cpuset 0-1 → 0").

use crate::{Event, Record, Text};

/// The agent writes the facts again once this many events went by since it last wrote them,
/// changed or not, so the newest 4,096 events (what `jvmwatch serve` follows and the API
/// reads) always hold them.
pub const REFRESH_EVENTS: u64 = 1024;

/// Bytes of the cpuset text in a `resources` event.
pub const CPUSET_LEN: usize = 16;

/// The cpuset text of a `resources` event: `s`, or its first 15 bytes and `+` when longer.
pub fn cpuset_text(s: &str) -> Text {
    if s.len() <= CPUSET_LEN {
        return Text::new(s, CPUSET_LEN);
    }
    let mut end = CPUSET_LEN - 1;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Text::new(&format!("{}+", &s[..end]), CPUSET_LEN)
}

/// The processor, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processor {
    /// `vendor_id`.
    pub vendor: String,
    /// `model name`.
    pub model_name: String,
    /// `family/model/stepping`, decimal, `?` unknown.
    pub fms: String,
    /// Normalised class.
    pub class: String,
    /// Hypervisor (`none`).
    pub hypervisor: String,
    /// The CPUID hypervisor bit.
    pub hypervisor_flag: bool,
    /// Logical processors of the host.
    pub host_cores: u32,
}

/// What the JVM was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `Runtime.availableProcessors()`.
    pub cores_told: u32,
    /// `-XX:ActiveProcessorCount`, 0 when not set.
    pub active_processor_count: u32,
    /// CPUs in the affinity mask.
    pub affinity: u32,
    /// cgroup CPU quota, millicores; -1 unlimited.
    pub cpu_quota_milli: i32,
    /// cgroup memory limit, bytes; -1 unlimited.
    pub mem_limit: i64,
    /// Affinity as a CPU list (cut to 16 bytes, then ending in `+`).
    pub cpuset: String,
}

/// The latest facts of a ring and their changes, fed event by event in sequence order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The latest processor record and its time (ns since the epoch).
    pub processor: Option<(u64, Processor)>,
    /// The latest resources record and its time.
    pub resources: Option<(u64, Resources)>,
    /// (time, "resources changed: cpuset 0-1 → 0") for every record that differs from the
    /// one before it, oldest first; at most [`MAX_CHANGES`] (the newest).
    pub changes: Vec<(u64, String)>,
}

/// Changes a [`HostFacts`] keeps.
pub const MAX_CHANGES: usize = 64;

impl HostFacts {
    /// Takes in one event (others are ignored); `strings` is the ring's string table.
    /// Returns whether it was a facts record.
    pub fn apply(&mut self, r: &Record, strings: &[String]) -> bool {
        let s = |id: u16| strings.get(id as usize).cloned().unwrap_or_else(|| "?".into());
        let n = |v: u32| (v != u32::MAX).then_some(v);
        match r.event {
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
                let p = Processor {
                    vendor: s(vendor),
                    model_name: s(model_name),
                    fms: fms(n(family), n(model), n(stepping)),
                    class: s(class),
                    hypervisor: s(hypervisor),
                    hypervisor_flag,
                    host_cores,
                };
                if let Some((_, old)) = &self.processor {
                    if let Some(d) = diff_processor(old, &p) {
                        self.push(r.time_ns, format!("processor changed: {d}"));
                    }
                }
                self.processor = Some((r.time_ns, p));
                true
            }
            Event::Resources { cores_told, active_processor_count, affinity, cpu_quota_milli, mem_limit, cpuset } => {
                let n = Resources {
                    cores_told,
                    active_processor_count,
                    affinity,
                    cpu_quota_milli,
                    mem_limit,
                    cpuset: cpuset.as_str().into_owned(),
                };
                if let Some((_, old)) = &self.resources {
                    if let Some(d) = diff_resources(old, &n) {
                        self.push(r.time_ns, format!("resources changed: {d}"));
                    }
                }
                self.resources = Some((r.time_ns, n));
                true
            }
            _ => false,
        }
    }

    fn push(&mut self, t: u64, line: String) {
        if self.changes.len() == MAX_CHANGES {
            self.changes.remove(0);
        }
        self.changes.push((t, line));
    }
}

fn fms(f: Option<u32>, m: Option<u32>, s: Option<u32>) -> String {
    let x = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
    format!("{}/{}/{}", x(f), x(m), x(s))
}

/// "-1" (unlimited) as `none`.
fn limit(v: i64) -> String {
    if v < 0 {
        "none".into()
    } else {
        v.to_string()
    }
}

fn diff(out: &mut Vec<String>, what: &str, a: String, b: String) {
    if a != b {
        out.push(format!("{what} {a} → {b}"));
    }
}

fn diff_resources(a: &Resources, b: &Resources) -> Option<String> {
    let mut d = Vec::new();
    diff(&mut d, "cpuset", a.cpuset.clone(), b.cpuset.clone());
    diff(&mut d, "cores told", a.cores_told.to_string(), b.cores_told.to_string());
    diff(&mut d, "ActiveProcessorCount", a.active_processor_count.to_string(), b.active_processor_count.to_string());
    if a.cpuset == b.cpuset {
        diff(&mut d, "affinity", a.affinity.to_string(), b.affinity.to_string());
    }
    diff(&mut d, "cpu quota (millicores)", limit(a.cpu_quota_milli.into()), limit(b.cpu_quota_milli.into()));
    diff(&mut d, "memory limit", limit(a.mem_limit), limit(b.mem_limit));
    (!d.is_empty()).then(|| d.join(", "))
}

fn diff_processor(a: &Processor, b: &Processor) -> Option<String> {
    let mut d = Vec::new();
    diff(&mut d, "class", a.class.clone(), b.class.clone());
    diff(&mut d, "model", a.model_name.clone(), b.model_name.clone());
    diff(&mut d, "family/model/stepping", a.fms.clone(), b.fms.clone());
    diff(&mut d, "vendor", a.vendor.clone(), b.vendor.clone());
    diff(&mut d, "hypervisor", a.hypervisor.clone(), b.hypervisor.clone());
    diff(&mut d, "host cores", a.host_cores.to_string(), b.host_cores.to_string());
    (!d.is_empty()).then(|| d.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, event: Event) -> Record {
        Record { seq, time_ns: seq * 10, event }
    }

    fn res(cpuset: &str, told: u32) -> Event {
        Event::Resources {
            cores_told: told,
            active_processor_count: 0,
            affinity: told,
            cpu_quota_milli: -1,
            mem_limit: -1,
            cpuset: cpuset_text(cpuset),
        }
    }

    #[test]
    fn latest_and_changes() {
        let strings: Vec<String> = ["AuthenticAMD", "AMD EPYC", "amd-epyc-zen3", "none"].map(String::from).into();
        let mut f = HostFacts::default();
        let p = Event::Processor {
            vendor: 0,
            model_name: 1,
            class: 2,
            hypervisor: 3,
            family: 25,
            model: 1,
            stepping: u32::MAX,
            host_cores: 2,
            hypervisor_flag: false,
        };
        assert!(f.apply(&rec(1, p), &strings));
        assert!(f.apply(&rec(2, res("0-1", 2)), &strings));
        assert!(f.apply(&rec(3, res("0-1", 2)), &strings), "a refresh is a record, not a change");
        assert!(!f.apply(&rec(4, Event::VmInit), &strings));
        assert!(f.changes.is_empty());
        assert!(f.apply(&rec(5, res("0", 1)), &strings));
        assert_eq!(f.changes, [(50, "resources changed: cpuset 0-1 → 0, cores told 2 → 1".to_string())]);
        let (_, p) = f.processor.clone().unwrap();
        assert_eq!((p.class.as_str(), p.fms.as_str()), ("amd-epyc-zen3", "25/1/?"));
        assert_eq!(f.resources.as_ref().unwrap().1.cpuset, "0");
        // Ids beyond the table (a hostile or table-full ring) read as "?".
        let mut g = HostFacts::default();
        let hostile = Event::Processor {
            vendor: 9,
            model_name: u16::MAX,
            class: 4,
            hypervisor: 4,
            family: 0,
            model: 0,
            stepping: 0,
            host_cores: 0,
            hypervisor_flag: false,
        };
        g.apply(&rec(1, hostile), &strings);
        let p = g.processor.unwrap().1;
        assert_eq!((p.vendor.as_str(), p.model_name.as_str(), p.class.as_str()), ("?", "?", "?"));
    }

    proptest::proptest! {
        /// Any payload bytes and length under the facts kinds decode, and a reader takes
        /// them in against any string table, without a panic.
        #[test]
        fn hostile_payloads_are_read_without_panic(
            kind in 15u16..=16,
            len in proptest::prelude::any::<u16>(),
            words in proptest::prelude::any::<[u64; 5]>(),
            table in 0usize..3,
        ) {
            let mut p = [0u8; crate::layout::slot::PAYLOAD_LEN];
            for (i, w) in words.iter().enumerate() {
                p[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
            }
            let strings: Vec<String> = (0..table).map(|i| i.to_string()).collect();
            let mut f = HostFacts::default();
            for seq in 0..3 {
                f.apply(&rec(seq, Event::decode(kind, len.wrapping_add(seq as u16), &p)), &strings);
            }
            proptest::prop_assert!(f.processor.is_some() || f.resources.is_some());
        }
    }

    #[test]
    fn long_cpusets_are_cut_with_a_plus() {
        assert_eq!(cpuset_text("0-3").as_str(), "0-3");
        let long = "0-3,8-11,16-19,24-27";
        assert_eq!(cpuset_text(long).as_str(), "0-3,8-11,16-19,+");
        assert_eq!(cpuset_text(long).as_bytes().len(), CPUSET_LEN);
    }
}

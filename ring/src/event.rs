//! Events: what one slot of the ring holds, and its encoding.
//!
//! An [`Event`] is `Copy` and allocation-free so that the writer can build one inside a GC
//! callback. Text fields are [`Text`]: inline, truncated UTF-8.

use crate::layout::{slot, Collector};

/// Inline UTF-8 text of at most 40 bytes; longer input is cut at a character boundary.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text {
    len: u8,
    bytes: [u8; slot::PAYLOAD_LEN],
}

impl Text {
    /// Copies `s`, truncated to `max` bytes (at most 40) at a character boundary.
    pub fn new(s: &str, max: usize) -> Text {
        let max = max.min(slot::PAYLOAD_LEN);
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Text::from_bytes(&s.as_bytes()[..end])
    }

    /// Copies raw bytes (truncated to 40); invalid UTF-8 is shown lossily by [`Text::as_str`].
    pub fn from_bytes(b: &[u8]) -> Text {
        let n = b.len().min(slot::PAYLOAD_LEN);
        let mut bytes = [0u8; slot::PAYLOAD_LEN];
        bytes[..n].copy_from_slice(&b[..n]);
        Text { len: n as u8, bytes }
    }

    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The text; invalid UTF-8 (a hostile file) is replaced, never trusted.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// What ran out, for a `resource_exhausted` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomKind {
    /// Java heap space / GC overhead limit.
    Heap = 1,
    /// Metaspace or compressed class space.
    Metaspace = 2,
    /// Native threads could not be created.
    Threads = 3,
    /// Direct buffer memory.
    Direct = 4,
    /// Anything else the JVM reported.
    Other = 5,
}

impl OomKind {
    /// Classifies a JVMTI `ResourceExhausted` report from its flags and description.
    /// Flags: `JVMTI_RESOURCE_EXHAUSTED_JAVA_HEAP` = 2, `..._THREADS` = 4.
    pub fn classify(flags: u32, description: &str) -> OomKind {
        if flags & 0x2 != 0 {
            OomKind::Heap
        } else if flags & 0x4 != 0 {
            OomKind::Threads
        } else if description.contains("Metaspace") || description.contains("class space") {
            OomKind::Metaspace
        } else if description.contains("Direct buffer") {
            OomKind::Direct
        } else {
            OomKind::Other
        }
    }

    fn from_u8(v: u8) -> OomKind {
        match v {
            1 => OomKind::Heap,
            2 => OomKind::Metaspace,
            3 => OomKind::Threads,
            4 => OomKind::Direct,
            _ => OomKind::Other,
        }
    }

    /// Name used in JSON and text output.
    pub fn name(self) -> &'static str {
        match self {
            OomKind::Heap => "heap",
            OomKind::Metaspace => "metaspace",
            OomKind::Threads => "threads",
            OomKind::Direct => "direct",
            OomKind::Other => "other",
        }
    }
}

/// One ring event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The VM finished initialising (JVMTI `VMInit`).
    VmInit,
    /// The VM is shutting down cleanly (JVMTI `VMDeath`).
    VmDeath,
    /// A stop-the-world GC pause began.
    GcPauseStart {
        /// Pause number, counting from 1.
        gc_id: u64,
        /// Collector family.
        collector: Collector,
    },
    /// A stop-the-world GC pause ended.
    GcPauseEnd {
        /// Pause number, matching its start.
        gc_id: u64,
        /// Collector family.
        collector: Collector,
        /// Pause length.
        duration_ns: u64,
    },
    /// A Java thread started.
    ThreadStart {
        /// Linux thread id.
        tid: u32,
        /// Thread name, truncated to 36 bytes.
        name: Text,
    },
    /// A Java thread ended.
    ThreadEnd {
        /// Linux thread id.
        tid: u32,
        /// Thread name, truncated to 36 bytes.
        name: Text,
    },
    /// The JVM ran out of a resource (it is about to throw `OutOfMemoryError`).
    ResourceExhausted {
        /// What ran out.
        kind: OomKind,
        /// The raw JVMTI flags.
        flags: u32,
        /// The JVM's description, truncated to 35 bytes.
        detail: Text,
    },
    /// A thread dump was requested (SIGQUIT / `jcmd Thread.print`).
    DataDump,
    /// The agent reports a problem of its own.
    AgentWarning {
        /// What went wrong, truncated to 40 bytes.
        text: Text,
    },
    /// A collection as the JVM's GC notification reports it (from the in-VM monitor): pauses
    /// and concurrent cycles (ZGC, Shenandoah, G1 concurrent marking) alike.
    GcCycle {
        /// The collector bean's collection number.
        gc_number: u32,
        /// Duration as the notification reports it, µs.
        duration_us: u32,
        /// Collector bean name (string-table id).
        collector: u16,
        /// GC cause, e.g. "System.gc()" (string-table id).
        cause: u16,
        /// GC action, e.g. "end of minor GC" (string-table id).
        action: u16,
        /// A concurrent cycle (its duration is not a pause).
        concurrent: bool,
        /// Heap used before, bytes.
        before: u64,
        /// Heap used after, bytes.
        after: u64,
    },
    /// One heap pool before and after the collection `gc_number` (follows its `GcCycle`).
    GcPool {
        /// The collection number.
        gc_number: u32,
        /// Pool name (string-table id).
        pool: u16,
        /// Used before, bytes.
        before: u64,
        /// Used after, bytes.
        after: u64,
    },
    /// A deadlock found by the in-VM monitor: one event per deadlocked thread.
    Deadlock {
        /// Threads in the deadlock.
        threads: u8,
        /// This thread's index among them.
        index: u8,
        /// "thread > lock owner", truncated to 38 bytes.
        text: Text,
    },
    /// An application event (`Jvmwatch.event(name, detail)`).
    AppEvent {
        /// Event name (string-table id).
        name: u16,
        /// Detail, truncated to 38 bytes.
        detail: Text,
    },
    /// The jvmwatch controller is acting on this JVM (written by the sidecar into the JVM's
    /// ring before each step, so the ring of a JVM it ended says who ended it and why).
    ControllerAction {
        /// 0 warn, 1 diagnose, 2 act.
        stage: u8,
        /// "rule: action", truncated to 39 bytes.
        text: Text,
    },
    /// The host's processor as the agent saw it (at start, on a change, and again after every
    /// [`crate::facts::REFRESH_EVENTS`] events so the newest events always hold it).
    Processor {
        /// `vendor_id` (string-table id).
        vendor: u16,
        /// `model name` (string-table id).
        model_name: u16,
        /// Normalised processor class (string-table id).
        class: u16,
        /// Hypervisor, `none` when there is none (string-table id).
        hypervisor: u16,
        /// `cpu family`, `u32::MAX` unknown.
        family: u32,
        /// `model`, `u32::MAX` unknown.
        model: u32,
        /// `stepping`, `u32::MAX` unknown.
        stepping: u32,
        /// Logical processors of the host.
        host_cores: u32,
        /// The CPUID hypervisor bit (`hypervisor` in `/proc/cpuinfo` flags).
        hypervisor_flag: bool,
    },
    /// What the JVM was given, as the agent saw it (written with [`Event::Processor`]).
    Resources {
        /// `Runtime.availableProcessors()`: the cores the JVM was told.
        cores_told: u32,
        /// `-XX:ActiveProcessorCount`, 0 when not set.
        active_processor_count: u32,
        /// CPUs in the process's affinity mask (cpuset).
        affinity: u32,
        /// cgroup CPU quota in millicores, -1 unlimited.
        cpu_quota_milli: i32,
        /// cgroup memory limit in bytes, -1 unlimited.
        mem_limit: i64,
        /// The affinity as a CPU list (`0-3,6`), cut to 16 bytes (a cut list ends in `+`).
        cpuset: Text,
    },
    /// A type this version does not know (from a newer writer); kept, not interpreted.
    Unknown {
        /// Raw type code.
        kind: u16,
    },
}

/// Type codes stored in a slot.
pub mod kind {
    /// [`super::Event::VmInit`].
    pub const VM_INIT: u16 = 1;
    /// [`super::Event::VmDeath`].
    pub const VM_DEATH: u16 = 2;
    /// [`super::Event::GcPauseStart`].
    pub const GC_PAUSE_START: u16 = 3;
    /// [`super::Event::GcPauseEnd`].
    pub const GC_PAUSE_END: u16 = 4;
    /// [`super::Event::ThreadStart`].
    pub const THREAD_START: u16 = 5;
    /// [`super::Event::ThreadEnd`].
    pub const THREAD_END: u16 = 6;
    /// [`super::Event::ResourceExhausted`].
    pub const RESOURCE_EXHAUSTED: u16 = 7;
    /// [`super::Event::DataDump`].
    pub const DATA_DUMP: u16 = 8;
    /// [`super::Event::AgentWarning`].
    pub const AGENT_WARNING: u16 = 9;
    /// [`super::Event::GcCycle`].
    pub const GC_CYCLE: u16 = 10;
    /// [`super::Event::GcPool`].
    pub const GC_POOL: u16 = 11;
    /// [`super::Event::Deadlock`].
    pub const DEADLOCK: u16 = 12;
    /// [`super::Event::AppEvent`].
    pub const APP_EVENT: u16 = 13;
    /// [`super::Event::ControllerAction`].
    pub const CONTROLLER_ACTION: u16 = 14;
    /// [`super::Event::Processor`].
    pub const PROCESSOR: u16 = 15;
    /// [`super::Event::Resources`].
    pub const RESOURCES: u16 = 16;
}

/// Payload words of a slot, plus the type code and bytes used.
pub(crate) struct Encoded {
    pub kind: u16,
    pub len: u16,
    pub payload: [u8; slot::PAYLOAD_LEN],
}

fn text_into(p: &mut [u8; slot::PAYLOAD_LEN], at: usize, t: &Text) -> usize {
    let b = t.as_bytes();
    let n = b.len().min(slot::PAYLOAD_LEN - at);
    p[at..at + n].copy_from_slice(&b[..n]);
    at + n
}

impl Event {
    /// The name used in JSON and text output (`gc_pause_end`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::VmInit => "vm_init",
            Event::VmDeath => "vm_death",
            Event::GcPauseStart { .. } => "gc_pause_start",
            Event::GcPauseEnd { .. } => "gc_pause_end",
            Event::ThreadStart { .. } => "thread_start",
            Event::ThreadEnd { .. } => "thread_end",
            Event::ResourceExhausted { .. } => "resource_exhausted",
            Event::DataDump => "data_dump",
            Event::AgentWarning { .. } => "agent_warning",
            Event::GcCycle { .. } => "gc_cycle",
            Event::GcPool { .. } => "gc_pool",
            Event::Deadlock { .. } => "deadlock",
            Event::AppEvent { .. } => "app_event",
            Event::ControllerAction { .. } => "controller_action",
            Event::Processor { .. } => "processor",
            Event::Resources { .. } => "resources",
            Event::Unknown { .. } => "unknown",
        }
    }

    pub(crate) fn encode(&self) -> Encoded {
        let mut p = [0u8; slot::PAYLOAD_LEN];
        let (kind, len) = match *self {
            Event::VmInit => (kind::VM_INIT, 0),
            Event::VmDeath => (kind::VM_DEATH, 0),
            Event::DataDump => (kind::DATA_DUMP, 0),
            Event::GcPauseStart { gc_id, collector } => {
                p[0..8].copy_from_slice(&gc_id.to_le_bytes());
                p[8] = collector as u8;
                (kind::GC_PAUSE_START, 9)
            }
            Event::GcPauseEnd { gc_id, collector, duration_ns } => {
                p[0..8].copy_from_slice(&gc_id.to_le_bytes());
                p[8..16].copy_from_slice(&duration_ns.to_le_bytes());
                p[16] = collector as u8;
                (kind::GC_PAUSE_END, 17)
            }
            Event::ThreadStart { tid, ref name } | Event::ThreadEnd { tid, ref name } => {
                p[0..4].copy_from_slice(&tid.to_le_bytes());
                let end = text_into(&mut p, 4, name);
                let k = if matches!(self, Event::ThreadStart { .. }) { kind::THREAD_START } else { kind::THREAD_END };
                (k, end)
            }
            Event::ResourceExhausted { kind: k, flags, ref detail } => {
                p[0..4].copy_from_slice(&flags.to_le_bytes());
                p[4] = k as u8;
                (kind::RESOURCE_EXHAUSTED, text_into(&mut p, 5, detail))
            }
            Event::AgentWarning { ref text } => (kind::AGENT_WARNING, text_into(&mut p, 0, text)),
            Event::GcCycle { gc_number, duration_us, collector, cause, action, concurrent, before, after } => {
                p[0..4].copy_from_slice(&gc_number.to_le_bytes());
                p[4..8].copy_from_slice(&duration_us.to_le_bytes());
                p[8..10].copy_from_slice(&collector.to_le_bytes());
                p[10..12].copy_from_slice(&cause.to_le_bytes());
                p[12..14].copy_from_slice(&action.to_le_bytes());
                p[14] = concurrent as u8;
                p[16..24].copy_from_slice(&before.to_le_bytes());
                p[24..32].copy_from_slice(&after.to_le_bytes());
                (kind::GC_CYCLE, 32)
            }
            Event::GcPool { gc_number, pool, before, after } => {
                p[0..4].copy_from_slice(&gc_number.to_le_bytes());
                p[4..6].copy_from_slice(&pool.to_le_bytes());
                p[8..16].copy_from_slice(&before.to_le_bytes());
                p[16..24].copy_from_slice(&after.to_le_bytes());
                (kind::GC_POOL, 24)
            }
            Event::Deadlock { threads, index, ref text } => {
                p[0] = threads;
                p[1] = index;
                (kind::DEADLOCK, text_into(&mut p, 2, text))
            }
            Event::AppEvent { name, ref detail } => {
                p[0..2].copy_from_slice(&name.to_le_bytes());
                (kind::APP_EVENT, text_into(&mut p, 2, detail))
            }
            Event::ControllerAction { stage, ref text } => {
                p[0] = stage;
                (kind::CONTROLLER_ACTION, text_into(&mut p, 1, text))
            }
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
                for (i, id) in [vendor, model_name, class, hypervisor].into_iter().enumerate() {
                    p[2 * i..2 * i + 2].copy_from_slice(&id.to_le_bytes());
                }
                for (i, v) in [family, model, stepping, host_cores].into_iter().enumerate() {
                    p[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_le_bytes());
                }
                p[24] = hypervisor_flag as u8;
                (kind::PROCESSOR, 25)
            }
            Event::Resources {
                cores_told,
                active_processor_count,
                affinity,
                cpu_quota_milli,
                mem_limit,
                ref cpuset,
            } => {
                p[0..4].copy_from_slice(&cores_told.to_le_bytes());
                p[4..8].copy_from_slice(&active_processor_count.to_le_bytes());
                p[8..12].copy_from_slice(&affinity.to_le_bytes());
                p[12..16].copy_from_slice(&cpu_quota_milli.to_le_bytes());
                p[16..24].copy_from_slice(&mem_limit.to_le_bytes());
                (kind::RESOURCES, text_into(&mut p, 24, cpuset))
            }
            Event::Unknown { kind: k } => (k, 0),
        };
        Encoded { kind, len: len as u16, payload: p }
    }

    /// Decodes a slot's type code and payload. `len` is clamped; nothing is trusted.
    pub(crate) fn decode(kind: u16, len: u16, p: &[u8; slot::PAYLOAD_LEN]) -> Event {
        let len = (len as usize).min(slot::PAYLOAD_LEN);
        let u64_at = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(p[at..at + 4].try_into().expect("4 bytes"));
        let u16_at = |at: usize| u16::from_le_bytes(p[at..at + 2].try_into().expect("2 bytes"));
        let text = |at: usize| Text::from_bytes(&p[at.min(len)..len]);
        match kind {
            kind::VM_INIT => Event::VmInit,
            kind::VM_DEATH => Event::VmDeath,
            kind::DATA_DUMP => Event::DataDump,
            kind::GC_PAUSE_START => {
                Event::GcPauseStart { gc_id: u64_at(0), collector: Collector::from_u32(p[8] as u32) }
            }
            kind::GC_PAUSE_END => Event::GcPauseEnd {
                gc_id: u64_at(0),
                duration_ns: u64_at(8),
                collector: Collector::from_u32(p[16] as u32),
            },
            kind::THREAD_START => Event::ThreadStart { tid: u32_at(0), name: text(4) },
            kind::THREAD_END => Event::ThreadEnd { tid: u32_at(0), name: text(4) },
            kind::RESOURCE_EXHAUSTED => {
                Event::ResourceExhausted { flags: u32_at(0), kind: OomKind::from_u8(p[4]), detail: text(5) }
            }
            kind::AGENT_WARNING => Event::AgentWarning { text: text(0) },
            kind::GC_CYCLE => Event::GcCycle {
                gc_number: u32_at(0),
                duration_us: u32_at(4),
                collector: u16_at(8),
                cause: u16_at(10),
                action: u16_at(12),
                concurrent: p[14] != 0,
                before: u64_at(16),
                after: u64_at(24),
            },
            kind::GC_POOL => {
                Event::GcPool { gc_number: u32_at(0), pool: u16_at(4), before: u64_at(8), after: u64_at(16) }
            }
            kind::DEADLOCK => Event::Deadlock { threads: p[0], index: p[1], text: text(2) },
            kind::APP_EVENT => Event::AppEvent { name: u16_at(0), detail: text(2) },
            kind::CONTROLLER_ACTION => Event::ControllerAction { stage: p[0], text: text(1) },
            kind::PROCESSOR => Event::Processor {
                vendor: u16_at(0),
                model_name: u16_at(2),
                class: u16_at(4),
                hypervisor: u16_at(6),
                family: u32_at(8),
                model: u32_at(12),
                stepping: u32_at(16),
                host_cores: u32_at(20),
                hypervisor_flag: p[24] != 0,
            },
            kind::RESOURCES => Event::Resources {
                cores_told: u32_at(0),
                active_processor_count: u32_at(4),
                affinity: u32_at(8),
                cpu_quota_milli: u32_at(12) as i32,
                mem_limit: u64_at(16) as i64,
                cpuset: text(24),
            },
            k => Event::Unknown { kind: k },
        }
    }
}

/// The check value of a slot: a multiply-rotate hash (FxHash-style) of the sequence number and
/// every word after the stamp, keeping the check bits themselves out. It detects torn slots
/// (a writer that died half-way, a reader racing a lapping writer) and random garbage; it is
/// not a defence against a forger, which the reader does not need: every field is
/// bounds-checked anyway.
pub fn check(seq: u64, words: &[u64; 7]) -> u32 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = seq.wrapping_mul(K);
    for (i, &w) in words.iter().enumerate() {
        // Word 1 holds kind | len << 16 | check << 32: only its low half is covered.
        let w = if i == 1 { w & 0xffff_ffff } else { w };
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    (h >> 32) as u32 ^ (h as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(e: Event) {
        let enc = e.encode();
        assert_eq!(Event::decode(enc.kind, enc.len, &enc.payload), e);
    }

    #[test]
    fn every_event_roundtrips() {
        roundtrip(Event::VmInit);
        roundtrip(Event::VmDeath);
        roundtrip(Event::DataDump);
        roundtrip(Event::GcPauseStart { gc_id: 7, collector: Collector::G1 });
        roundtrip(Event::GcPauseEnd { gc_id: 7, collector: Collector::Z, duration_ns: 1234 });
        roundtrip(Event::ThreadStart { tid: 42, name: Text::new("worker-1", 36) });
        roundtrip(Event::ThreadEnd { tid: 42, name: Text::new("worker-1", 36) });
        roundtrip(Event::ResourceExhausted { kind: OomKind::Heap, flags: 3, detail: Text::new("Java heap space", 35) });
        roundtrip(Event::AgentWarning { text: Text::new("sampler fell behind", 40) });
        roundtrip(Event::GcCycle {
            gc_number: 3,
            duration_us: 1500,
            collector: 1,
            cause: 2,
            action: 3,
            concurrent: true,
            before: 10,
            after: 5,
        });
        roundtrip(Event::GcPool { gc_number: 3, pool: 4, before: 9, after: 1 });
        roundtrip(Event::Deadlock { threads: 2, index: 1, text: Text::new("a > b", 38) });
        roundtrip(Event::AppEvent { name: 7, detail: Text::new("v1.2.3", 38) });
        roundtrip(Event::ControllerAction { stage: 2, text: Text::new("gc_thrash: restart", 39) });
        roundtrip(Event::Processor {
            vendor: 0,
            model_name: 1,
            class: 2,
            hypervisor: u16::MAX,
            family: 25,
            model: 1,
            stepping: u32::MAX,
            host_cores: 128,
            hypervisor_flag: true,
        });
        roundtrip(Event::Resources {
            cores_told: 1,
            active_processor_count: 1,
            affinity: 2,
            cpu_quota_milli: -1,
            mem_limit: 512 << 20,
            cpuset: Text::new("0-1", 16),
        });
    }

    #[test]
    fn hostile_facts_payloads_decode_without_panic() {
        // A length beyond the payload, and garbage words: every field decodes to something.
        let p = [0xffu8; slot::PAYLOAD_LEN];
        match Event::decode(kind::RESOURCES, u16::MAX, &p) {
            Event::Resources { cpu_quota_milli, mem_limit, cpuset, .. } => {
                assert_eq!((cpu_quota_milli, mem_limit), (-1, -1));
                assert_eq!(cpuset.as_bytes().len(), slot::PAYLOAD_LEN - 24);
            }
            e => panic!("{e:?}"),
        }
        // A truncated payload (len 0): the text is empty, the words are what the slot holds.
        match Event::decode(kind::RESOURCES, 0, &[0u8; slot::PAYLOAD_LEN]) {
            Event::Resources { cpuset, cores_told: 0, .. } => assert!(cpuset.as_bytes().is_empty()),
            e => panic!("{e:?}"),
        }
        assert!(matches!(Event::decode(kind::PROCESSOR, 3, &p), Event::Processor { family: u32::MAX, .. }));
    }

    #[test]
    fn text_truncates_on_char_boundary() {
        let t = Text::new("ääääääääääääääääääääää", 35);
        assert_eq!(t.as_bytes().len(), 34);
        assert!(std::str::from_utf8(t.as_bytes()).is_ok());
    }

    #[test]
    fn oom_classification() {
        assert_eq!(OomKind::classify(3, "Java heap space"), OomKind::Heap);
        assert_eq!(OomKind::classify(5, "unable to create native thread"), OomKind::Threads);
        assert_eq!(OomKind::classify(1, "Metaspace"), OomKind::Metaspace);
        assert_eq!(OomKind::classify(1, "Direct buffer memory"), OomKind::Direct);
        assert_eq!(OomKind::classify(1, "something"), OomKind::Other);
    }

    #[test]
    fn check_sees_every_covered_word() {
        let words = [1, 2, 3, 4, 5, 6, 7];
        let base = check(9, &words);
        assert_ne!(base, check(10, &words));
        for i in 0..7 {
            let mut w = words;
            w[i] ^= 1;
            assert_ne!(base, check(9, &w), "word {i}");
        }
        let mut w = words;
        w[1] |= 0xdead_0000_0000; // the check bits themselves are not covered
        assert_eq!(base, check(9, &w));
    }
}

//! Byte layout of the ring file, format version 3 (versions 1 and 2 are still read: version 1
//! has no history and no stacks region; versions 1 and 2 keep a timer in one slot with shared
//! buckets and have no GC-callback histograms). `docs/ring-format.md` draws it.
//!
//! Every offset is a chained constant; the compile-time asserts at the bottom keep the
//! chain aligned and inside its region. All integers are little-endian.

/// First eight bytes of every ring file.
pub const MAGIC: [u8; 8] = *b"JVMWRING";
/// The format version this crate writes.
pub const VERSION: u32 = 3;
/// The oldest format version this crate reads (version 1: no history, no stacks; versions 1
/// and 2: one slot per timer, see [`crate::metrics`]).
pub const OLDEST_VERSION: u32 = 1;

/// Header page: identity (immutable after creation, covered by a CRC) and live counters.
pub const HEADER_SIZE: usize = 4096;
/// Status snapshot region: two buffers, written alternately (double-buffered seqlock).
pub const SNAPSHOT_OFFSET: usize = HEADER_SIZE;
/// One snapshot buffer.
pub const SNAPSHOT_BUF_SIZE: usize = 4096;
/// Both snapshot buffers.
pub const SNAPSHOT_SIZE: usize = 2 * SNAPSHOT_BUF_SIZE;
/// Metrics region (application counters, gauges, histograms).
pub const METRICS_OFFSET: usize = SNAPSHOT_OFFSET + SNAPSHOT_SIZE;
/// Size of the metrics region.
pub const METRICS_SIZE: usize = 256 * 1024;
/// Event ring: `capacity` slots of [`SLOT_SIZE`] bytes.
pub const EVENTS_OFFSET: usize = METRICS_OFFSET + METRICS_SIZE;
/// One event slot: a cache line.
pub const SLOT_SIZE: usize = 64;
/// Header flag bit (`hdr::FLAGS`): the agent was loaded into a running JVM (`jvmwatch attach`,
/// `Agent_OnAttach`) rather than at JVM start, so events before the attach are missing.
pub const FLAG_ATTACHED: u32 = 1;
/// Smallest event ring, in slots (64 KiB).
pub const MIN_CAPACITY: u64 = 1024;
/// Largest event ring, in slots (1 GiB).
pub const MAX_CAPACITY: u64 = 1 << 24;

/// Offsets inside the header page.
pub mod hdr {
    /// `[u8; 8]` = [`super::MAGIC`].
    pub const MAGIC: usize = 0;
    /// `u32` format version.
    pub const VERSION: usize = MAGIC + 8;
    /// `u32` = [`super::HEADER_SIZE`].
    pub const HEADER_SIZE: usize = VERSION + 4;
    /// `u64` total file size in bytes.
    pub const FILE_SIZE: usize = HEADER_SIZE + 4;
    /// `u64` snapshot region offset.
    pub const SNAPSHOT_OFFSET: usize = FILE_SIZE + 8;
    /// `u64` snapshot region size.
    pub const SNAPSHOT_SIZE: usize = SNAPSHOT_OFFSET + 8;
    /// `u64` metrics region offset.
    pub const METRICS_OFFSET: usize = SNAPSHOT_SIZE + 8;
    /// `u64` metrics region size.
    pub const METRICS_SIZE: usize = METRICS_OFFSET + 8;
    /// `u64` event ring offset.
    pub const EVENTS_OFFSET: usize = METRICS_SIZE + 8;
    /// `u32` slot size in bytes.
    pub const SLOT_SIZE: usize = EVENTS_OFFSET + 8;
    /// `u32` number of slots (a power of two).
    pub const CAPACITY: usize = SLOT_SIZE + 4;
    /// `u32` writer process id (as the writer saw it; may be namespaced).
    pub const PID: usize = CAPACITY + 4;
    /// `u32` flags, fixed at creation ([`FLAG_ATTACHED`]); other bits are zero.
    pub const FLAGS: usize = PID + 4;
    /// `u64` JVM start (file creation), ns since the Unix epoch.
    pub const START_NS: usize = FLAGS + 4;
    /// `u64` sampler interval in ns.
    pub const INTERVAL_NS: usize = START_NS + 8;
    /// NUL-padded UTF-8 strings, fixed width.
    pub const AGENT_VERSION: usize = INTERVAL_NS + 8;
    /// Width of [`AGENT_VERSION`].
    pub const AGENT_VERSION_LEN: usize = 32;
    /// Host name.
    pub const HOSTNAME: usize = AGENT_VERSION + AGENT_VERSION_LEN;
    /// Width of [`HOSTNAME`].
    pub const HOSTNAME_LEN: usize = 64;
    /// `java.vm.version` (+ `java.runtime.version` when they differ).
    pub const JVM_VERSION: usize = HOSTNAME + HOSTNAME_LEN;
    /// Width of [`JVM_VERSION`].
    pub const JVM_VERSION_LEN: usize = 64;
    /// `java.vm.vendor` and VM name.
    pub const JVM_VENDOR: usize = JVM_VERSION + JVM_VERSION_LEN;
    /// Width of [`JVM_VENDOR`].
    pub const JVM_VENDOR_LEN: usize = 64;
    /// Working directory of the JVM (where `hs_err_pid<PID>.log` goes by default).
    pub const CWD: usize = JVM_VENDOR + JVM_VENDOR_LEN;
    /// Width of [`CWD`].
    pub const CWD_LEN: usize = 256;
    /// Value of `-XX:ErrorFile=` if given (may contain `%p`).
    pub const ERROR_FILE: usize = CWD + CWD_LEN;
    /// Width of [`ERROR_FILE`].
    pub const ERROR_FILE_LEN: usize = 256;
    /// Command line, arguments separated by spaces, truncated.
    pub const COMMAND: usize = ERROR_FILE + ERROR_FILE_LEN;
    /// Width of [`COMMAND`].
    pub const COMMAND_LEN: usize = 1024;
    /// `u64` history region offset (v2; 0 = no history). Right after the event ring.
    pub const HISTORY_OFFSET: usize = COMMAND + COMMAND_LEN;
    /// `u32` slots of the fine history tier (one record per sampler interval).
    pub const HISTORY_FINE_SLOTS: usize = HISTORY_OFFSET + 8;
    /// `u32` slots of the coarse history tier.
    pub const HISTORY_COARSE_SLOTS: usize = HISTORY_FINE_SLOTS + 4;
    /// `u64` step of the coarse tier, ns.
    pub const HISTORY_COARSE_STEP_NS: usize = HISTORY_COARSE_SLOTS + 4;
    /// `u64` stacks region offset (v2; 0 = none). Right after the history region.
    pub const STACKS_OFFSET: usize = HISTORY_COARSE_STEP_NS + 8;
    /// `u64` stacks region size (two buffers).
    pub const STACKS_SIZE: usize = STACKS_OFFSET + 8;
    /// `u32` CRC-32 (IEEE) of bytes `0..HEADER_CRC`.
    pub const HEADER_CRC: usize = 2040;

    // ---- live part: written while the JVM runs (atomics, own cache lines) ----
    /// `u32` lifecycle state, see [`super::State`].
    pub const STATE: usize = 2048;
    /// `u64` last sampler heartbeat, ns since the Unix epoch.
    pub const HEARTBEAT_NS: usize = STATE + 8;
    /// `u64` time of VM init.
    pub const VM_INIT_NS: usize = HEARTBEAT_NS + 8;
    /// `u64` time of VM death (clean exit).
    pub const EXIT_NS: usize = VM_INIT_NS + 8;
    /// NUL-padded application name, written once (Java API / `-Djvmwatch.app`).
    pub const APP_NAME: usize = EXIT_NS + 8;
    /// Width of [`APP_NAME`].
    pub const APP_NAME_LEN: usize = 32;
    /// `u64` event cursor: next sequence number to reserve. Own cache line.
    pub const CURSOR: usize = 2112;
    /// `u64` GC pauses seen by the JVMTI callbacks. GC-callback-owned cache line.
    pub const GC_PAUSES: usize = 2176;
    /// `u64` sum of pause durations, ns.
    pub const GC_PAUSE_TOTAL_NS: usize = GC_PAUSES + 8;
    /// `u64` longest pause, ns.
    pub const GC_PAUSE_MAX_NS: usize = GC_PAUSE_TOTAL_NS + 8;
    /// `u64` start time of the pause in progress (0 when none), ns since the Unix epoch.
    pub const GC_PAUSE_START_NS: usize = GC_PAUSE_MAX_NS + 8;
    /// `u64` self-measured cost of the GC-finish callbacks: count.
    pub const GC_CB_COUNT: usize = GC_PAUSE_START_NS + 8;
    /// `u64` sum of callback durations, ns.
    pub const GC_CB_TOTAL_NS: usize = GC_CB_COUNT + 8;
    /// `u64` longest callback, ns.
    pub const GC_CB_MAX_NS: usize = GC_CB_TOTAL_NS + 8;
    /// `u32` collector code (see [`super::Collector`]) detected at VM init.
    pub const COLLECTOR: usize = GC_CB_MAX_NS + 8;
    /// `u64` next sequence number of the fine history tier (v2). Sampler-owned cache line.
    pub const HISTORY_FINE_NEXT: usize = 2240;
    /// `u64` next sequence number of the coarse history tier (v2).
    pub const HISTORY_COARSE_NEXT: usize = HISTORY_FINE_NEXT + 8;
    /// `[u64; 32]` histogram of the GC-finish callback's cost (v3; [`crate::cbcost`]).
    /// GC-callback-owned cache lines.
    pub const GC_CB_HIST: usize = 2304;
    /// `u64` self-measured cost of the GC-start callbacks: sum of durations, ns (v3; their
    /// count is the sum of [`GC_START_CB_HIST`]).
    pub const GC_START_CB_TOTAL_NS: usize = GC_CB_HIST + 8 * crate::cbcost::BUCKETS;
    /// `u64` longest GC-start callback, ns (v3).
    pub const GC_START_CB_MAX_NS: usize = GC_START_CB_TOTAL_NS + 8;
    /// `[u64; 32]` histogram of the GC-start callback's cost (v3).
    pub const GC_START_CB_HIST: usize = GC_START_CB_MAX_NS + 8;
}

/// Lifecycle state stored at [`hdr::STATE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// File created in `Agent_OnLoad`; VM not yet initialised.
    Starting = 0,
    /// VM init seen; the sampler runs.
    Running = 1,
    /// VM death seen: the JVM shut down cleanly.
    Exited = 2,
}

impl State {
    /// Decodes a stored state; `None` for values this version does not know.
    pub fn from_u32(v: u32) -> Option<State> {
        match v {
            0 => Some(State::Starting),
            1 => Some(State::Running),
            2 => Some(State::Exited),
            _ => None,
        }
    }
}

/// Garbage collector family, as far as the agent could tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Collector {
    /// Not (yet) known.
    #[default]
    Unknown = 0,
    /// `-XX:+UseG1GC`.
    G1 = 1,
    /// `-XX:+UseParallelGC`.
    Parallel = 2,
    /// `-XX:+UseSerialGC`.
    Serial = 3,
    /// `-XX:+UseZGC`.
    Z = 4,
    /// `-XX:+UseShenandoahGC`.
    Shenandoah = 5,
    /// Epsilon or another collector.
    Other = 6,
}

impl Collector {
    /// Decodes a stored code; unknown codes map to [`Collector::Unknown`].
    pub fn from_u32(v: u32) -> Collector {
        match v {
            1 => Collector::G1,
            2 => Collector::Parallel,
            3 => Collector::Serial,
            4 => Collector::Z,
            5 => Collector::Shenandoah,
            6 => Collector::Other,
            _ => Collector::Unknown,
        }
    }

    /// Guesses the family from a `GarbageCollectorMXBean` name such as "G1 Young Generation".
    pub fn from_bean_name(name: &str) -> Collector {
        if name.starts_with("G1") {
            Collector::G1
        } else if name.starts_with("PS ") {
            Collector::Parallel
        } else if name == "Copy" || name == "MarkSweepCompact" {
            Collector::Serial
        } else if name.starts_with("ZGC") {
            Collector::Z
        } else if name.starts_with("Shenandoah") {
            Collector::Shenandoah
        } else {
            Collector::Other
        }
    }

    /// Short display name.
    pub fn name(self) -> &'static str {
        match self {
            Collector::Unknown => "unknown",
            Collector::G1 => "G1",
            Collector::Parallel => "Parallel",
            Collector::Serial => "Serial",
            Collector::Z => "ZGC",
            Collector::Shenandoah => "Shenandoah",
            Collector::Other => "other",
        }
    }
}

// ---- snapshot buffer layout (offsets inside one SNAPSHOT_BUF_SIZE buffer) ----

/// Offsets inside one snapshot buffer.
pub mod snap {
    /// `u64` generation stamp: `2g+1` while buffer is written for generation `g`, `2g+2` after.
    pub const STAMP: usize = 0;
    /// `u32` CRC-32 of the body.
    pub const CRC: usize = STAMP + 8;
    /// `u32` body length in bytes.
    pub const BODY_LEN: usize = CRC + 4;
    /// Start of the body ([`crate::snapshot::Snapshot`] encoding).
    pub const BODY: usize = BODY_LEN + 4;
}

/// Pools a snapshot can hold.
pub const MAX_POOLS: usize = 16;
/// Collectors a snapshot can hold.
pub const MAX_COLLECTORS: usize = 8;
/// Width of a pool or collector name.
pub const NAME_LEN: usize = 48;
/// Bytes of one pool entry: name, used, committed, max, used after last GC, kind + pad.
pub const POOL_ENTRY: usize = NAME_LEN + 4 * 8 + 8;
/// Bytes of one collector entry: name, count, time in ms.
pub const COLLECTOR_ENTRY: usize = NAME_LEN + 2 * 8;
/// Fixed part of the snapshot body before the pool table.
pub const SNAP_FIXED: usize = 128;
/// Snapshot body size.
pub const SNAP_BODY_SIZE: usize = SNAP_FIXED + MAX_POOLS * POOL_ENTRY + MAX_COLLECTORS * COLLECTOR_ENTRY;

// ---- event slot layout ----

/// Offsets inside one event slot.
pub mod slot {
    /// `u64` stamp: `2s+1` while the slot is written for sequence `s`, `2s+2` once published.
    pub const STAMP: usize = 0;
    /// `u64` event time, ns since the Unix epoch.
    pub const TIME_NS: usize = STAMP + 8;
    /// `u16` event type.
    pub const KIND: usize = TIME_NS + 8;
    /// `u16` payload bytes used.
    pub const LEN: usize = KIND + 2;
    /// `u32` check value over sequence, time, kind, length and payload.
    pub const CHECK: usize = LEN + 2;
    /// Payload bytes.
    pub const PAYLOAD: usize = CHECK + 4;
    /// Payload capacity.
    pub const PAYLOAD_LEN: usize = super::SLOT_SIZE - PAYLOAD;
}

/// End of the event ring for `capacity` slots: the whole file in format version 1, and where
/// the history region starts in version 2.
pub const fn file_size(capacity: u64) -> u64 {
    EVENTS_OFFSET as u64 + capacity * SLOT_SIZE as u64
}

// ---- history region (v2): two tiers of fixed-size records, each a ring of slots ----

/// Bytes of one history record; [`crate::history`] gives its fields.
pub const HISTORY_RECORD_SIZE: usize = 336;
/// Application instruments a history record holds (the first ones registered).
pub const HISTORY_CELLS: usize = 8;
/// Most slots of one history tier (a hostile header cannot make a reader allocate more).
pub const MAX_HISTORY_SLOTS: u64 = 1 << 17;

/// Shape of the history and stacks regions, as stored in the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Geometry {
    /// Slots of the fine tier (one per sampler interval); 0: no history.
    pub fine_slots: u32,
    /// Slots of the coarse tier.
    pub coarse_slots: u32,
    /// Step of the coarse tier, ns.
    pub coarse_step_ns: u64,
    /// Bytes of the stacks region (two buffers); 0: none.
    pub stacks_size: u64,
}

impl Geometry {
    /// Bytes of the history region, rounded up to whole pages.
    pub const fn history_bytes(&self) -> u64 {
        let raw = (self.fine_slots as u64 + self.coarse_slots as u64) * HISTORY_RECORD_SIZE as u64;
        raw.div_ceil(4096) * 4096
    }
}

/// Default stacks region: two buffers of 128 KiB.
pub const STACKS_SIZE: u64 = 256 * 1024;
/// Largest stacks region a reader accepts.
pub const MAX_STACKS_SIZE: u64 = 16 << 20;

/// Offsets of the regions after the event ring, and the total file size, in format version 2.
pub const fn regions(capacity: u64, g: &Geometry) -> (u64, u64, u64) {
    let history = file_size(capacity);
    let stacks = history + g.history_bytes();
    (history, stacks, stacks + g.stacks_size)
}

/// Offsets inside one stacks buffer (the region holds two, written alternately).
pub mod stk {
    /// `u64` generation stamp, as in [`super::snap::STAMP`].
    pub const STAMP: usize = 0;
    /// `u32` CRC-32 of the body.
    pub const CRC: usize = STAMP + 8;
    /// `u32` body length.
    pub const BODY_LEN: usize = CRC + 4;
    /// Body ([`crate::stacks::Capture`] encoding).
    pub const BODY: usize = BODY_LEN + 4;
}

const _: () = {
    assert!(hdr::STACKS_SIZE + 8 <= hdr::HEADER_CRC);
    assert!(hdr::HISTORY_FINE_NEXT >= hdr::COLLECTOR + 4 && hdr::HISTORY_FINE_NEXT.is_multiple_of(64));
    assert!(hdr::HISTORY_COARSE_NEXT + 8 <= hdr::GC_CB_HIST && hdr::GC_CB_HIST.is_multiple_of(64));
    assert!(hdr::GC_START_CB_HIST + 8 * crate::cbcost::BUCKETS <= HEADER_SIZE);
    assert!(HISTORY_RECORD_SIZE.is_multiple_of(8));
    assert!(hdr::HEADER_CRC + 4 <= hdr::STATE);
    assert!(hdr::APP_NAME + hdr::APP_NAME_LEN <= hdr::CURSOR);
    assert!(hdr::CURSOR.is_multiple_of(64) && hdr::GC_PAUSES.is_multiple_of(64));
    assert!(hdr::GC_PAUSES >= hdr::CURSOR + 64);
    assert!(hdr::COLLECTOR + 4 <= HEADER_SIZE);
    assert!(hdr::HEARTBEAT_NS.is_multiple_of(8) && hdr::GC_CB_MAX_NS.is_multiple_of(8));
    assert!(
        SNAPSHOT_OFFSET.is_multiple_of(4096)
            && METRICS_OFFSET.is_multiple_of(4096)
            && EVENTS_OFFSET.is_multiple_of(4096)
    );
    assert!(snap::BODY + SNAP_BODY_SIZE <= SNAPSHOT_BUF_SIZE);
    assert!(snap::BODY.is_multiple_of(8) && SNAP_BODY_SIZE.is_multiple_of(8));
    assert!(POOL_ENTRY.is_multiple_of(8) && COLLECTOR_ENTRY.is_multiple_of(8));
    assert!(slot::PAYLOAD_LEN == 40 && slot::PAYLOAD.is_multiple_of(8));
    assert!(MIN_CAPACITY.is_power_of_two() && MAX_CAPACITY.is_power_of_two());
};

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/ring-format.md` states the offsets in prose; they must be this file's.
    #[test]
    fn the_format_doc_states_these_offsets() {
        let doc = include_str!("../../docs/ring-format.md");
        let number_after = |marker: &str| -> usize {
            let at = doc.find(marker).unwrap_or_else(|| panic!("doc lacks {marker:?}")) + marker.len();
            let digits: String = doc[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().unwrap_or_else(|_| panic!("no number after {marker:?}"))
        };
        assert_eq!(number_after("slots of 64 bytes (one cache line) at "), EVENTS_OFFSET);
        assert_eq!(number_after("events_offset u64 = "), EVENTS_OFFSET);
        assert_eq!(number_after("metrics_offset u64 = "), METRICS_OFFSET);
        assert_eq!(number_after("snapshot_offset u64 = "), SNAPSHOT_OFFSET);
        assert_eq!(number_after("file size = "), EVENTS_OFFSET);
        assert_eq!(number_after("slot_size u32 = "), SLOT_SIZE);
    }
}

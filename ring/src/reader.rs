//! The reader: opens any file and trusts nothing in it.
//!
//! Reads go through `pread` into the reader's own buffers, never through a mapping, so a file
//! truncated under the reader gives an error instead of SIGBUS. (A follower may also map the
//! header page to notice changes cheaply, [`crate::watch`]; what it reads still comes from
//! here.) Every size, offset and count
//! read from the file is checked against this version's layout and the file's real size
//! before it is used.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use crate::event::{check, Event};
use crate::layout::*;
use crate::snapshot::Snapshot;

/// Why a file cannot be read as a ring.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The OS refused.
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    /// Shorter than what it must hold.
    #[error("truncated: {have} bytes, a ring needs at least {need}")]
    Truncated {
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// Not a ring at all.
    #[error("not a jvmwatch ring file (bad magic)")]
    BadMagic,
    /// A ring of another format version.
    #[error("unsupported ring format version {0} (this jvmwatch reads versions {OLDEST_VERSION} to {VERSION})")]
    UnsupportedVersion(u32),
    /// The header does not add up.
    #[error("corrupt header: {0}")]
    Corrupt(String),
}

/// The immutable part of the header, validated.
#[derive(Clone, Debug)]
pub struct Header {
    /// Format version (1 or 2).
    pub version: u32,
    /// History and stacks regions (all zero in version 1).
    pub geometry: Geometry,
    /// Total file size the header claims (checked against the real size).
    pub file_size: u64,
    /// Event slots.
    pub capacity: u64,
    /// Writer pid.
    pub pid: u32,
    /// JVM start, ns since the Unix epoch.
    pub start_ns: u64,
    /// Sampler interval, ns.
    pub interval_ns: u64,
    /// Agent version.
    pub agent_version: String,
    /// Host name.
    pub hostname: String,
    /// JVM version.
    pub jvm_version: String,
    /// JVM vendor and name.
    pub jvm_vendor: String,
    /// Working directory.
    pub cwd: String,
    /// `-XX:ErrorFile=` value or empty.
    pub error_file: String,
    /// Command line summary.
    pub command: String,
    /// Header flags (`layout::FLAG_ATTACHED`).
    pub flags: u32,
}

impl Header {
    /// True when the agent was loaded into a running JVM (`jvmwatch attach`), not at start.
    pub fn attached(&self) -> bool {
        self.flags & crate::layout::FLAG_ATTACHED != 0
    }
}

/// The live part of the header: changes while the JVM runs.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// Lifecycle state (`None`: a value this version does not know).
    pub state: Option<State>,
    /// Last heartbeat, ns since the Unix epoch (0: none yet).
    pub heartbeat_ns: u64,
    /// VM init time (0: not seen).
    pub vm_init_ns: u64,
    /// Clean exit time (0: not seen).
    pub exit_ns: u64,
    /// Application name, if set.
    pub app_name: String,
    /// Next event sequence number.
    pub cursor: u64,
    /// Stop-the-world pauses seen by JVMTI.
    pub gc_pauses: u64,
    /// Sum of pause durations, ns.
    pub gc_pause_total_ns: u64,
    /// Longest pause, ns.
    pub gc_pause_max_ns: u64,
    /// Start of a pause in progress (0: none).
    pub gc_pause_start_ns: u64,
    /// The agent's self-measured GC-finish callback cost (histogram: format version 3).
    pub gc_finish_cost: crate::cbcost::CallbackCost,
    /// The GC-start callback's (format version 3; all zero before).
    pub gc_start_cost: crate::cbcost::CallbackCost,
    /// Collector family.
    pub collector: Collector,
}

/// One event read back, with its sequence number and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Sequence number (0-based, gap-free among committed events).
    pub seq: u64,
    /// ns since the Unix epoch.
    pub time_ns: u64,
    /// The event.
    pub event: Event,
}

/// Result of [`Ring::scan`].
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Committed events, in sequence order.
    pub records: Vec<Record>,
    /// Events overwritten before they could be read (the writer lapped the reader).
    pub overwritten: u64,
    /// Slots whose content did not check out: a writer died half-way, or corruption.
    pub torn: u64,
    /// Where to continue next time.
    pub next: u64,
}

impl Scan {
    /// Everything lost in this scan: overwritten plus torn.
    pub fn lost(&self) -> u64 {
        self.overwritten + self.torn
    }
}

/// An open ring file (any state: live, exited, killed, a copy from another machine).
#[derive(Debug)]
pub struct Ring {
    file: File,
    path: PathBuf,
    header: Header,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn str_at(b: &[u8], at: usize, width: usize) -> String {
    let f = &b[at..at + width];
    let n = f.iter().position(|&c| c == 0).unwrap_or(width);
    String::from_utf8_lossy(&f[..n]).into_owned()
}

/// Validates a header page against this version's layout and the file's real size.
pub fn parse_header(h: &[u8], real_size: u64) -> Result<Header, ReadError> {
    if h.len() < 8 {
        return Err(ReadError::Truncated { need: HEADER_SIZE as u64, have: real_size });
    }
    if h[..8] != MAGIC {
        return Err(ReadError::BadMagic);
    }
    if h.len() < HEADER_SIZE {
        return Err(ReadError::Truncated { need: HEADER_SIZE as u64, have: real_size });
    }
    let version = u32_at(h, hdr::VERSION);
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(ReadError::UnsupportedVersion(version));
    }
    let crc = crc32fast::hash(&h[..hdr::HEADER_CRC]);
    if crc != u32_at(h, hdr::HEADER_CRC) {
        return Err(ReadError::Corrupt("checksum mismatch".into()));
    }
    let expect = |what: &str, at: usize, want: u64, wide: bool| -> Result<(), ReadError> {
        let got = if wide { u64_at(h, at) } else { u32_at(h, at) as u64 };
        if got != want {
            return Err(ReadError::Corrupt(format!("{what} is {got}, version {version} has {want}")));
        }
        Ok(())
    };
    expect("header size", hdr::HEADER_SIZE, HEADER_SIZE as u64, false)?;
    expect("snapshot offset", hdr::SNAPSHOT_OFFSET, SNAPSHOT_OFFSET as u64, true)?;
    expect("snapshot size", hdr::SNAPSHOT_SIZE, SNAPSHOT_SIZE as u64, true)?;
    expect("metrics offset", hdr::METRICS_OFFSET, METRICS_OFFSET as u64, true)?;
    expect("metrics size", hdr::METRICS_SIZE, METRICS_SIZE as u64, true)?;
    expect("events offset", hdr::EVENTS_OFFSET, EVENTS_OFFSET as u64, true)?;
    expect("slot size", hdr::SLOT_SIZE, SLOT_SIZE as u64, false)?;
    let capacity = u32_at(h, hdr::CAPACITY) as u64;
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(ReadError::Corrupt(format!(
            "event capacity {capacity} is not a power of two in {MIN_CAPACITY}..={MAX_CAPACITY}"
        )));
    }
    let geometry = if version >= 2 { parse_geometry(h, capacity)? } else { Geometry::default() };
    let total = regions(capacity, &geometry).2;
    expect("file size", hdr::FILE_SIZE, total, true)?;
    if real_size < total {
        return Err(ReadError::Truncated { need: total, have: real_size });
    }
    Ok(Header {
        version,
        geometry,
        file_size: total,
        capacity,
        pid: u32_at(h, hdr::PID),
        start_ns: u64_at(h, hdr::START_NS),
        interval_ns: u64_at(h, hdr::INTERVAL_NS),
        agent_version: str_at(h, hdr::AGENT_VERSION, hdr::AGENT_VERSION_LEN),
        hostname: str_at(h, hdr::HOSTNAME, hdr::HOSTNAME_LEN),
        jvm_version: str_at(h, hdr::JVM_VERSION, hdr::JVM_VERSION_LEN),
        jvm_vendor: str_at(h, hdr::JVM_VENDOR, hdr::JVM_VENDOR_LEN),
        cwd: str_at(h, hdr::CWD, hdr::CWD_LEN),
        error_file: str_at(h, hdr::ERROR_FILE, hdr::ERROR_FILE_LEN),
        command: str_at(h, hdr::COMMAND, hdr::COMMAND_LEN),
        flags: u32_at(h, hdr::FLAGS),
    })
}

/// The history and stacks geometry of a version 2 header, checked: offsets where the layout
/// puts them, slot counts and sizes within bounds.
fn parse_geometry(h: &[u8], capacity: u64) -> Result<Geometry, ReadError> {
    let g = Geometry {
        fine_slots: u32_at(h, hdr::HISTORY_FINE_SLOTS),
        coarse_slots: u32_at(h, hdr::HISTORY_COARSE_SLOTS),
        coarse_step_ns: u64_at(h, hdr::HISTORY_COARSE_STEP_NS),
        stacks_size: u64_at(h, hdr::STACKS_SIZE),
    };
    let bad = |why: String| Err(ReadError::Corrupt(why));
    if g.fine_slots as u64 > MAX_HISTORY_SLOTS || g.coarse_slots as u64 > MAX_HISTORY_SLOTS {
        return bad(format!("history of {} + {} slots is implausible", g.fine_slots, g.coarse_slots));
    }
    if g.coarse_slots != 0 && (g.fine_slots == 0 || g.coarse_step_ns == 0) {
        return bad("history tiers do not add up".into());
    }
    if g.stacks_size > MAX_STACKS_SIZE || !g.stacks_size.is_multiple_of(8192) {
        return bad(format!("stacks region of {} bytes is implausible", g.stacks_size));
    }
    let (history, stacks, _) = regions(capacity, &g);
    let want_history = if g.fine_slots > 0 { history } else { 0 };
    let want_stacks = if g.stacks_size > 0 { stacks } else { 0 };
    if u64_at(h, hdr::HISTORY_OFFSET) != want_history || u64_at(h, hdr::STACKS_OFFSET) != want_stacks {
        return bad("history or stacks offset is not where the layout puts it".into());
    }
    Ok(g)
}

/// Opens a file nobody vouches for, for reading: never through a symlink in the last
/// component (`O_NOFOLLOW`), never blocking (`O_NONBLOCK`: a FIFO planted under the name
/// returns at once), and only a regular file.
pub fn open_untrusted(path: &Path) -> Result<File, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                ReadError::Io(io::Error::new(io::ErrorKind::InvalidInput, "is a symlink; not followed"))
            } else {
                ReadError::Io(e)
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(ReadError::Io(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")));
    }
    Ok(file)
}

/// The history of a ring, oldest record first in each tier.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// One record per sampler interval.
    pub fine: Vec<crate::history::Sample>,
    /// One record per coarse step, older than and overlapping with `fine`.
    pub coarse: Vec<crate::history::Sample>,
    /// Sampler interval, ns (the fine tier's step).
    pub fine_step_ns: u64,
    /// Coarse step, ns.
    pub coarse_step_ns: u64,
    /// Records that did not check out (torn by a writer that died, or corrupt): skipped.
    pub torn: u64,
}

/// The leak findings' inputs from the history ([`Ring::leak_series`]): [`History`] with only
/// the four figures of [`crate::history::LeakPoint`] per record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeakSeries {
    /// The fine tier, oldest first.
    pub fine: Vec<crate::history::LeakPoint>,
    /// The coarse tier, oldest first.
    pub coarse: Vec<crate::history::LeakPoint>,
    /// Records that did not check out: skipped.
    pub torn: u64,
}

/// What [`Ring::history_records`] found: the fine and the coarse records, oldest first, and how
/// many records did not check out.
type Tiers<T> = (Vec<T>, Vec<T>, u64);

/// Records per `pread` of [`Ring::leak_series`] (63 KiB: the buffer stays in the cache while its
/// records are checked).
const LEAN_CHUNK_RECORDS: u64 = 192;

impl Ring {
    /// The history tiers, or `None` for a ring without history (format version 1, or
    /// `history=off`). Reads each tier whole into one buffer (one `pread`, two when the tier
    /// has wrapped); records that fail their stamp or check are skipped and counted.
    pub fn history(&self) -> Result<Option<History>, ReadError> {
        let tiers = self.history_records(&mut Vec::new(), u64::MAX, crate::history::Sample::decode)?;
        let g = self.header.geometry;
        Ok(tiers.map(|(fine, coarse, torn)| History {
            fine,
            coarse,
            fine_step_ns: self.header.interval_ns,
            coarse_step_ns: g.coarse_step_ns,
            torn,
        }))
    }

    /// What the leak findings read of the history: per record, the time, heap after GC, heap
    /// max and live threads; `None` without a history. Exactly the records [`Ring::history`]
    /// keeps (the same slots read, the same stamp and check, [`crate::history::intact`]), for
    /// a fraction of its cost: the records pass through one small buffer per thread,
    /// [`LEAN_CHUNK_RECORDS`] per `pread`, and only the four figures are kept. A file truncated
    /// under the reader is an error, as for [`Ring::history`].
    pub fn leak_series(&self) -> Result<Option<LeakSeries>, ReadError> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with(|b| {
            let tiers =
                self.history_records(&mut b.borrow_mut(), LEAN_CHUNK_RECORDS, crate::history::LeakPoint::decode)?;
            Ok(tiers.map(|(fine, coarse, torn)| LeakSeries { fine, coarse, torn }))
        })
    }

    /// Walks both history tiers for [`Ring::history`] and [`Ring::leak_series`]: the slots of
    /// the records each tier's next word says it holds are read in sequence order, at most
    /// `per_read` records per `pread` into `buf` (grown when it is smaller), and each record is
    /// decoded by `decode`, oldest first; a `None` counts as torn. Returns the fine and coarse
    /// records and the torn count, or `None` for a ring without history.
    fn history_records<T>(
        &self,
        buf: &mut Vec<u8>,
        per_read: u64,
        decode: impl Fn(u64, &[u8; HISTORY_RECORD_SIZE]) -> Option<T>,
    ) -> Result<Option<Tiers<T>>, ReadError> {
        let g = self.header.geometry;
        if g.fine_slots == 0 {
            return Ok(None);
        }
        let (start, _, _) = regions(self.header.capacity, &g);
        let mut next = [0u8; 16];
        self.read_at(&mut next, hdr::HISTORY_FINE_NEXT as u64)?;
        // The next words are loaded before any record (the writer stores them last).
        fence(Ordering::Acquire);
        let tiers = [
            (start, g.fine_slots as u64, u64_at(&next, 0)),
            (start + g.fine_slots as u64 * HISTORY_RECORD_SIZE as u64, g.coarse_slots as u64, u64_at(&next, 8)),
        ];
        let mut torn = 0;
        let mut out = [Vec::new(), Vec::new()];
        for (kept, (at, slots, next)) in out.iter_mut().zip(tiers) {
            if slots == 0 {
                continue;
            }
            let per_read = per_read.clamp(1, slots);
            if buf.len() < per_read as usize * HISTORY_RECORD_SIZE {
                *buf = vec![0u8; per_read as usize * HISTORY_RECORD_SIZE];
            }
            let first = next.saturating_sub(slots);
            kept.reserve((next - first) as usize);
            // Every slot holding a record once, the oldest record's first: sequences
            // `first..next`. Slots past `next` hold no record yet (a young JVM's tier is mostly
            // empty): only the tier's last byte is read, so a file truncated anywhere in the
            // tier is still an error, as it is when the whole tier holds records.
            let mut seq = first;
            if next < first + slots {
                self.read_at(&mut [0u8; 1], at + slots * HISTORY_RECORD_SIZE as u64 - 1)?;
            }
            while seq < next {
                let idx = seq % slots;
                let n = per_read.min(slots - idx).min(next - seq);
                let b = &mut buf[..n as usize * HISTORY_RECORD_SIZE];
                self.read_at(b, at + idx * HISTORY_RECORD_SIZE as u64)?;
                for (k, rec) in b.chunks_exact(HISTORY_RECORD_SIZE).enumerate() {
                    match decode(seq + k as u64, rec.try_into().expect("a whole record")) {
                        Some(x) => kept.push(x),
                        None => torn += 1,
                    }
                }
                seq += n;
            }
        }
        let [fine, coarse] = out;
        Ok(Some((fine, coarse, torn)))
    }

    /// The newest intact stacks capture, or `None` when there is none (no region, nothing
    /// captured yet, or both buffers torn). A corrupt body is an error.
    pub fn stacks(&self) -> Result<Option<crate::stacks::Capture>, ReadError> {
        let g = self.header.geometry;
        if g.stacks_size == 0 {
            return Ok(None);
        }
        let (_, at, _) = regions(self.header.capacity, &g);
        let mut b = vec![0u8; g.stacks_size as usize];
        let buf = b.len() / 2;
        for _ in 0..4 {
            self.read_at(&mut b, at)?;
            let best = b
                .chunks_exact(buf)
                .filter_map(|x| {
                    let stamp = u64_at(x, stk::STAMP);
                    let len = u32_at(x, stk::BODY_LEN) as usize;
                    if stamp == 0 || stamp % 2 == 1 || stk::BODY + len > buf {
                        return None;
                    }
                    let body = &x[stk::BODY..stk::BODY + len];
                    (crc32fast::hash(body) == u32_at(x, stk::CRC)).then_some((stamp, body))
                })
                .max_by_key(|(stamp, _)| *stamp);
            if let Some((_, body)) = best {
                return crate::stacks::Capture::decode(body).map(Some).map_err(|e| ReadError::Corrupt(e.to_string()));
            }
        }
        Ok(None)
    }

    /// Opens and validates `path`. Never maps the file.
    ///
    /// Never through a symlink in the last component (`O_NOFOLLOW`), and never blocking:
    /// `O_NONBLOCK` makes opening a FIFO planted under a ring's name return at once, and
    /// anything but a regular file is then refused.
    pub fn open(path: &Path) -> Result<Ring, ReadError> {
        Ring::from_file(open_untrusted(path)?, path)
    }

    /// Validates a ring from a file that is already open (a copy decompressed into a memfd,
    /// say); `path` is what [`Ring::path`] reports. Only regular files are read.
    pub fn from_file(file: File, path: &Path) -> Result<Ring, ReadError> {
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(ReadError::Io(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")));
        }
        let size = md.len();
        let mut h = vec![0u8; HEADER_SIZE.min(size as usize)];
        read_exact_at(&file, &mut h, 0, size)?;
        let header = parse_header(&h, size)?;
        Ok(Ring { file, path: path.to_path_buf(), header })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated immutable header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), ReadError> {
        read_exact_at(&self.file, buf, off, self.header.file_size)
    }

    /// The metrics region: instruments and the string table. Reads only the region header and
    /// the registered instruments.
    pub fn metrics(&self) -> Result<(Vec<crate::metrics::Instrument>, Vec<String>), ReadError> {
        // No table has usize::MAX strings: the table is always read.
        let (ins, strings) = self.metrics_since(usize::MAX)?;
        Ok((ins, strings.unwrap_or_default()))
    }

    /// The instruments, and the string table only when it no longer has `strings_known`
    /// entries (`None`: unchanged). The table only grows, and its count is published after
    /// the entry, so an unchanged count is an unchanged table: the sidecar's once-a-second
    /// read then skips the table's 4 KiB and its 63 strings.
    #[allow(clippy::type_complexity)]
    pub fn metrics_since(
        &self,
        strings_known: usize,
    ) -> Result<(Vec<crate::metrics::Instrument>, Option<Vec<String>>), ReadError> {
        use crate::metrics::{HEADER, INSTRUMENT_SIZE, MAX_INSTRUMENTS, STRINGS};
        with_metrics_buffer(|b| {
            self.read_at(&mut b[..STRINGS], METRICS_OFFSET as u64)?;
            let fresh = crate::metrics::string_count(b) != strings_known;
            if fresh {
                self.read_at(&mut b[STRINGS..HEADER], (METRICS_OFFSET + STRINGS) as u64)?;
            }
            let count = (u32_at(b, crate::metrics::COUNT) as usize).min(MAX_INSTRUMENTS);
            let end = HEADER + count * INSTRUMENT_SIZE;
            self.read_at(&mut b[HEADER..end], (METRICS_OFFSET + HEADER) as u64)?;
            let ins = crate::metrics::decode_instruments(b, self.header.version);
            Ok((ins, fresh.then(|| crate::metrics::decode_strings(b))))
        })
    }

    /// Just the string table of the metrics region (one 4 KiB read).
    pub fn strings(&self) -> Result<Vec<String>, ReadError> {
        with_metrics_buffer(|b| {
            self.read_at(&mut b[..crate::metrics::HEADER], METRICS_OFFSET as u64)?;
            Ok(crate::metrics::decode_strings(b))
        })
    }

    /// A read-only mapping of the header page, for polling the cursor, heartbeat and state
    /// without a system call ([`crate::watch`]: a hint of change, never data); `None` when it
    /// cannot be mapped.
    pub fn header_page(&self) -> Option<crate::watch::HeaderPage> {
        crate::watch::HeaderPage::map(&self.file)
    }

    /// Reads just the event cursor (one 8-byte `pread`): the cheap "anything new?" check.
    pub fn cursor(&self) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.read_at(&mut b, hdr::CURSOR as u64)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads the live part of the header.
    pub fn live(&self) -> Result<Live, ReadError> {
        let mut b = [0u8; HEADER_SIZE - hdr::STATE];
        self.read_at(&mut b, hdr::STATE as u64)?;
        let at = |o: usize| o - hdr::STATE;
        let hist = |o: usize| std::array::from_fn(|i| u64_at(&b, at(o) + 8 * i));
        Ok(Live {
            state: State::from_u32(u32_at(&b, at(hdr::STATE))),
            heartbeat_ns: u64_at(&b, at(hdr::HEARTBEAT_NS)),
            vm_init_ns: u64_at(&b, at(hdr::VM_INIT_NS)),
            exit_ns: u64_at(&b, at(hdr::EXIT_NS)),
            app_name: str_at(&b, at(hdr::APP_NAME), hdr::APP_NAME_LEN),
            cursor: u64_at(&b, at(hdr::CURSOR)),
            gc_pauses: u64_at(&b, at(hdr::GC_PAUSES)),
            gc_pause_total_ns: u64_at(&b, at(hdr::GC_PAUSE_TOTAL_NS)),
            gc_pause_max_ns: u64_at(&b, at(hdr::GC_PAUSE_MAX_NS)),
            gc_pause_start_ns: u64_at(&b, at(hdr::GC_PAUSE_START_NS)),
            gc_finish_cost: crate::cbcost::CallbackCost {
                count: u64_at(&b, at(hdr::GC_CB_COUNT)),
                total_ns: u64_at(&b, at(hdr::GC_CB_TOTAL_NS)),
                max_ns: u64_at(&b, at(hdr::GC_CB_MAX_NS)),
                buckets: hist(hdr::GC_CB_HIST),
            },
            gc_start_cost: crate::cbcost::CallbackCost {
                count: hist(hdr::GC_START_CB_HIST).iter().fold(0, |a, n| a.wrapping_add(*n)),
                total_ns: u64_at(&b, at(hdr::GC_START_CB_TOTAL_NS)),
                max_ns: u64_at(&b, at(hdr::GC_START_CB_MAX_NS)),
                buckets: hist(hdr::GC_START_CB_HIST),
            },
            collector: Collector::from_u32(u32_at(&b, at(hdr::COLLECTOR))),
        })
    }

    /// True while the writer process holds its lock: it is alive, whatever its pid looks
    /// like from here (works across PID namespaces; never fooled by a reused pid).
    pub fn writer_alive(&self) -> bool {
        writer_alive(&self.file)
    }

    /// The newest intact snapshot, if any was written. A torn newest buffer (writer died
    /// half-way) falls back to the other one.
    pub fn snapshot(&self) -> Result<Option<Snapshot>, ReadError> {
        let mut b = vec![0u8; SNAPSHOT_SIZE];
        // A live writer may be mid-update: retry a few times for a consistent pair.
        let mut best = None;
        for _ in 0..4 {
            self.read_at(&mut b, SNAPSHOT_OFFSET as u64)?;
            best = b
                .chunks_exact(SNAPSHOT_BUF_SIZE)
                .filter_map(|buf| {
                    let stamp = u64_at(buf, snap::STAMP);
                    let len = u32_at(buf, snap::BODY_LEN) as usize;
                    if stamp == 0 || stamp % 2 == 1 || len != SNAP_BODY_SIZE {
                        return None;
                    }
                    let body = &buf[snap::BODY..snap::BODY + len];
                    if crc32fast::hash(body) != u32_at(buf, snap::CRC) {
                        return None;
                    }
                    Snapshot::decode(body).ok().map(|s| (stamp, s))
                })
                .max_by_key(|(stamp, _)| *stamp);
            if best.is_some() {
                break;
            }
        }
        Ok(best.map(|(_, s)| s))
    }

    /// Reads committed events from sequence `from` up to the cursor.
    ///
    /// When `writer_alive` is true, a slot that is reserved but not yet published ends the
    /// scan (`next` points at it, to retry later), unless the cursor shows that a writer a
    /// lap ahead has reserved its slot already (then it can never be read: overwritten).
    /// When the writer is gone, such a slot can never complete: it is counted as torn and
    /// skipped.
    ///
    /// Each chunk of slots is read twice (two `pread`s, an Acquire fence between them): a
    /// slot is accepted only if its stamp is the published one in both copies and its check
    /// matches. A slot that changed between the copies or fails its check is re-read a few
    /// times while the writer lives, so a record caught mid-write is neither accepted torn
    /// nor given up as lost.
    pub fn scan(&self, from: u64, writer_alive: bool) -> Result<Scan, ReadError> {
        self.scan_limit(from, writer_alive, u64::MAX)
    }

    /// Like [`Ring::scan`], reading at most `limit` slots.
    pub fn scan_limit(&self, from: u64, writer_alive: bool, limit: u64) -> Result<Scan, ReadError> {
        self.scan_limit_to(from, self.cursor()?, writer_alive, limit)
    }

    /// [`Ring::scan_limit`] up to a cursor the caller has already read (e.g. from a mapped
    /// header page, [`crate::watch::HeaderPage::cursor`]), saving the `pread` of it. The cursor
    /// is checked like one read here: it is a hint about which slots to read, and every slot
    /// is still judged by its own stamp and check.
    pub fn scan_limit_to(&self, from: u64, cursor: u64, writer_alive: bool, limit: u64) -> Result<Scan, ReadError> {
        let cap = self.header.capacity;
        if cursor > MAX_CURSOR {
            return Err(ReadError::Corrupt(format!("event cursor {cursor} is implausible")));
        }
        let mut scan = Scan::default();
        let mut start = from.min(cursor);
        if cursor - start > cap {
            scan.overwritten = cursor - cap - start;
            start = cursor - cap;
        }
        let end = cursor.min(start.saturating_add(limit));
        const CHUNK: u64 = 4096;
        // Buffers as large as this scan needs, up to a chunk. Most scans read a few slots (a
        // follower reads each ring every 5 ms): those use the stack, not two fresh zeroed
        // allocations per scan.
        const SMALL: usize = 16 * SLOT_SIZE;
        let chunk = (CHUNK.min(cap).min(end - start) as usize) * SLOT_SIZE;
        let (mut small, mut large);
        let (first, second): (&mut [u8], &mut [u8]) = if chunk <= SMALL {
            small = ([0u8; SMALL], [0u8; SMALL]);
            (&mut small.0[..chunk], &mut small.1[..chunk])
        } else {
            large = (vec![0u8; chunk], vec![0u8; chunk]);
            (&mut large.0, &mut large.1)
        };
        let mut s = start;
        'outer: while s < end {
            // Contiguous run of slots without wrapping past the end of the ring.
            let idx = s & (cap - 1);
            let n = (end - s).min(CHUNK).min(cap - idx);
            let len = n as usize * SLOT_SIZE;
            let off = EVENTS_OFFSET as u64 + idx * SLOT_SIZE as u64;
            self.read_at(&mut first[..len], off)?;
            #[cfg(test)]
            tests::after_first_read(s);
            // The second copy's stamps are loaded after every word of the first copy.
            fence(Ordering::Acquire);
            self.read_at(&mut second[..len], off)?;
            for (a, b) in first[..len].chunks_exact(SLOT_SIZE).zip(second[..len].chunks_exact(SLOT_SIZE)) {
                let mut state = judge(s, a, u64_at(b, slot::STAMP));
                if writer_alive && matches!(state, SlotState::Pending | SlotState::Torn) {
                    state = self.settle(s, state)?;
                }
                match state {
                    SlotState::Committed(r) => scan.records.push(r),
                    SlotState::Overwritten => scan.overwritten += 1,
                    SlotState::Pending if writer_alive => break 'outer,
                    SlotState::Pending | SlotState::Torn => scan.torn += 1,
                }
                s += 1;
            }
        }
        scan.next = s;
        Ok(scan)
    }

    /// A slot of a live writer that was pending, changed between the two copies or failed its
    /// check: re-read it (slot, fence, stamp) a few times. One still pending is overwritten if
    /// the cursor (re-read) shows that seq + capacity has been reserved: its slot belongs to
    /// a later lap, so it can never be read. One whose published stamp stays put while its
    /// check keeps failing is torn for good (waiting would not mend it).
    fn settle(&self, seq: u64, mut state: SlotState) -> Result<SlotState, ReadError> {
        // A running writer finishes its seven stores within nanoseconds, well inside one
        // `pread`; one preempted mid-write may take a scheduling quantum, which is not worth
        // waiting for here: the scan stops and the next one finds the slot done.
        const RETRIES: u32 = 2;
        let off = EVENTS_OFFSET as u64 + (seq & (self.header.capacity - 1)) * SLOT_SIZE as u64;
        for _ in 0..RETRIES {
            let mut b = [0u8; SLOT_SIZE];
            self.read_at(&mut b, off)?;
            fence(Ordering::Acquire);
            let mut stamp = [0u8; 8];
            self.read_at(&mut stamp, off)?;
            state = judge(seq, &b, u64::from_le_bytes(stamp));
            if !matches!(state, SlotState::Pending | SlotState::Torn) {
                return Ok(state);
            }
        }
        if matches!(state, SlotState::Pending) {
            let cursor = self.cursor()?;
            if cursor <= MAX_CURSOR && cursor > seq + self.header.capacity {
                return Ok(SlotState::Overwritten);
            }
        }
        Ok(state)
    }
}

/// Larger cursors are refused as corrupt (no writer gets near it; it keeps `2s+2` and
/// `s + capacity` far from overflowing).
const MAX_CURSOR: u64 = 1 << 62;

enum SlotState {
    Committed(Record),
    /// Holds a later sequence: lapped.
    Overwritten,
    /// Reserved for `seq` (or an older one held it), not published; or its stamp changed
    /// between the two reads without passing `seq`.
    Pending,
    /// Published stamp, unchanged between the reads, but the content does not check out.
    Torn,
}

/// Judges the slot for `seq` from a copy `b` of its bytes and its stamp as read again after
/// that copy (`stamp2`). Stamps only grow, so either read above `2s+2` means a later lap.
fn judge(seq: u64, b: &[u8], stamp2: u64) -> SlotState {
    let stamp = u64_at(b, slot::STAMP);
    let want = 2 * seq + 2;
    if stamp > want || stamp2 > want {
        return SlotState::Overwritten;
    }
    if stamp != want || stamp2 != want {
        return SlotState::Pending;
    }
    let mut words = [0u64; 7];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u64_at(b, 8 + 8 * i);
    }
    if check(seq, &words) != (words[1] >> 32) as u32 {
        return SlotState::Torn;
    }
    let kind = words[1] as u16;
    let len = (words[1] >> 16) as u16;
    let payload: &[u8; slot::PAYLOAD_LEN] = b[slot::PAYLOAD..SLOT_SIZE].try_into().expect("payload");
    SlotState::Committed(Record { seq, time_ns: words[0], event: Event::decode(kind, len, payload) })
}

/// Runs `f` over this thread's metrics-region buffer (256 KiB, allocated once per thread
/// rather than zeroed per read). `decode` looks only at the header and the instruments the
/// count names, all of which the caller has just read into it, so what an earlier read left
/// behind is never seen.
fn with_metrics_buffer<T>(f: impl FnOnce(&mut [u8]) -> Result<T, ReadError>) -> Result<T, ReadError> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() != METRICS_SIZE {
            *b = vec![0u8; METRICS_SIZE];
        }
        f(&mut b)
    })
}

/// True while a writer process holds the lock of the ring file open as `file` (what
/// [`Ring::writer_alive`] answers), for callers that want to know before reading the file.
pub fn writer_alive(file: &File) -> bool {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor (borrowed from `file`). A shared non-blocking lock
    // succeeds only if no one holds the exclusive one; we drop it at once.
    unsafe {
        if libc::flock(fd, libc::LOCK_SH | libc::LOCK_NB) == 0 {
            libc::flock(fd, libc::LOCK_UN);
            false
        } else {
            io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
        }
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], off: u64, size: u64) -> Result<(), ReadError> {
    file.read_exact_at(buf, off).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            let have = file.metadata().map(|m| m.len()).unwrap_or(0);
            ReadError::Truncated { need: size.max(off + buf.len() as u64), have }
        } else {
            ReadError::Io(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::writer::{Identity, Writer};

    type Hook = Box<dyn FnMut(u64)>;

    thread_local! {
        /// Runs in `scan_limit` right after the first read of each chunk, with the chunk's
        /// first sequence number: a deterministic stand-in for a writer racing the reader.
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    pub(super) fn after_first_read(seq: u64) {
        if let Some(mut h) = HOOK.with(|c| c.borrow_mut().take()) {
            h(seq);
            HOOK.with(|c| *c.borrow_mut() = Some(h));
        }
    }

    fn set_hook(h: impl FnMut(u64) + 'static) {
        HOOK.with(|c| *c.borrow_mut() = Some(Box::new(h)));
    }

    fn clear_hook() {
        HOOK.with(|c| *c.borrow_mut() = None);
    }

    /// A 1024-slot ring holding events 0..n.
    fn ring(n: u64) -> (tempfile::TempDir, Writer, Ring) {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let d = tempfile::Builder::new().prefix("jvmwatch-reader-test-").tempdir_in(base).unwrap();
        let id = Identity { pid: 1, start_ns: 1, interval_ns: 1, ..Identity::default() };
        let w = Writer::create(&d.path().join("t.ring"), 1024, &id).unwrap();
        for i in 0..n {
            w.emit_at(1000 + i, &Event::GcPauseStart { gc_id: i, collector: Collector::G1 });
        }
        let r = Ring::open(w.path()).unwrap();
        (d, w, r)
    }

    fn slot_off(seq: u64) -> u64 {
        (EVENTS_OFFSET + (seq & 1023) as usize * SLOT_SIZE) as u64
    }

    fn poke(path: &Path, off: u64, bytes: &[u8]) {
        std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, off).unwrap();
    }

    fn peek(path: &Path, off: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        std::fs::File::open(path).unwrap().read_exact_at(&mut b, off).unwrap();
        b
    }

    fn seqs(s: &Scan) -> Vec<u64> {
        s.records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn a_slot_whose_stamp_moves_during_the_read_is_not_accepted() {
        let (_d, w, r) = ring(10);
        let path = w.path().to_path_buf();
        // Between the reader's copy of the slot and its second look at the stamp, a writer
        // a lap ahead (seq 3 + 1024) claims the slot: what was copied may be half its words.
        set_hook(move |_| poke(&path, slot_off(3), &(2 * (3 + 1024) + 1u64).to_le_bytes()));
        let s = r.scan(0, true).unwrap();
        clear_hook();
        assert_eq!(seqs(&s), [0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!((s.overwritten, s.torn, s.next), (1, 0, 10));
    }

    #[test]
    fn a_committed_slot_read_too_early_is_retried_not_lost() {
        let (_d, w, r) = ring(10);
        let path = w.path().to_path_buf();
        // The copy sees slot 5's published stamp but words from before the writer's stores
        // landed (the copy is not ordered word by word); the second look finds them in place.
        let real = peek(&path, slot_off(5), SLOT_SIZE);
        poke(&path, slot_off(5) + 8, &[0u8; SLOT_SIZE - 8]);
        set_hook(move |_| poke(&path, slot_off(5), &real));
        let s = r.scan(0, true).unwrap();
        clear_hook();
        assert_eq!(seqs(&s), (0..10).collect::<Vec<_>>());
        assert_eq!((s.overwritten, s.torn, s.next), (0, 0, 10));
    }

    #[test]
    fn a_slot_published_during_the_read_is_read_in_the_same_scan() {
        let (_d, w, r) = ring(10);
        let path = w.path().to_path_buf();
        poke(&path, slot_off(7), &(2 * 7 + 1u64).to_le_bytes());
        set_hook(move |_| poke(&path, slot_off(7), &(2 * 7 + 2u64).to_le_bytes()));
        let s = r.scan(0, true).unwrap();
        clear_hook();
        assert_eq!(seqs(&s), (0..10).collect::<Vec<_>>());
        assert_eq!((s.overwritten, s.torn, s.next), (0, 0, 10));
    }

    #[test]
    fn a_pending_slot_stops_a_live_scan_until_a_lap_has_passed_it() {
        let (_d, w, r) = ring(10);
        let path = w.path().to_path_buf();
        // The writer of seq 4 is stuck between reserving and publishing.
        poke(&path, slot_off(4), &(2 * 4 + 1u64).to_le_bytes());
        let s = r.scan(0, true).unwrap();
        assert_eq!(seqs(&s), [0, 1, 2, 3]);
        assert_eq!((s.overwritten, s.torn, s.next), (0, 0, 4), "live: wait for it");
        let s = r.scan(0, false).unwrap();
        assert_eq!((s.records.len(), s.overwritten, s.torn, s.next), (9, 0, 1, 10), "dead: it never completes");
        // While the reader looks, other writers reserve up to seq 4 + 1024: seq 4's slot
        // belongs to the next lap, so seq 4 can never be read; it is lost, not waited for.
        let p = path.clone();
        set_hook(move |_| poke(&p, hdr::CURSOR as u64, &(4 + 1024 + 1u64).to_le_bytes()));
        let s = r.scan(0, true).unwrap();
        clear_hook();
        assert_eq!(seqs(&s), [0, 1, 2, 3, 5, 6, 7, 8, 9]);
        assert_eq!((s.overwritten, s.torn, s.next), (1, 0, 10));
    }

    #[test]
    fn a_stably_torn_slot_is_counted_and_skipped_even_while_the_writer_lives() {
        let (_d, w, r) = ring(10);
        // Corruption under a published stamp does not go away by waiting.
        poke(w.path(), slot_off(2) + 30, &[0xee]);
        let s = r.scan(0, true).unwrap();
        assert_eq!(seqs(&s), [0, 1, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!((s.overwritten, s.torn, s.next), (0, 1, 10));
    }
}

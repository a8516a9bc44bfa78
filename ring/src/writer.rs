//! The writer: creates a ring file and records into it. Used by the agent inside the JVM.
//!
//! # What is safe where
//! - [`Writer::emit`], [`Writer::gc_pause_begin`], [`Writer::gc_pause_end`] and
//!   [`Writer::record_callback_cost`] are safe in a GC callback: atomics on pre-faulted
//!   mapped memory and a vDSO clock read; no allocation, no locks, no syscalls.
//! - [`Writer::write_snapshot`] is for one thread at a time (the sampler); a concurrent call
//!   returns `false` instead of waiting.
//! - [`Writer::create`] does file-system work and allocates: call it from `Agent_OnLoad`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::event::{check, Event};
use crate::history::{Sample as HistorySample, Tier};
use crate::layout::*;
use crate::metrics;
use crate::snapshot::Snapshot;

/// Who is writing: stored in the header once, at creation, and covered by the header CRC.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// Process id.
    pub pid: u32,
    /// JVM start, ns since the Unix epoch.
    pub start_ns: u64,
    /// Sampler interval, ns.
    pub interval_ns: u64,
    /// Agent version string.
    pub agent_version: String,
    /// Host name.
    pub hostname: String,
    /// JVM version.
    pub jvm_version: String,
    /// JVM vendor and name.
    pub jvm_vendor: String,
    /// Working directory.
    pub cwd: String,
    /// `-XX:ErrorFile=` value, if any.
    pub error_file: String,
    /// Command line summary.
    pub command: String,
    /// Shape of the history and stacks regions (default: none).
    pub geometry: Geometry,
    /// Header flags (`layout::FLAG_ATTACHED`).
    pub flags: u32,
}

/// Why a ring file could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The directory is not one the user owns, or is a symlink.
    #[error("{path}: {why}")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// An existing file to attach to is not a ring of this version.
    #[error("{path}: not a ring: {why}")]
    NotARing {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CreateError + 'a {
    move |source| CreateError::Io { what, path: path.to_path_buf(), source }
}

/// The directory rings go to when none is given: `$JVMWATCH_DIR`, else
/// `/dev/shm/jvmwatch-<uid>` (tmpfs), else `$XDG_RUNTIME_DIR/jvmwatch`, else
/// `/tmp/jvmwatch-<uid>`. The agent and the sidecar both call this, so they agree.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("JVMWATCH_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if Path::new("/dev/shm").is_dir() {
        return PathBuf::from(format!("/dev/shm/jvmwatch-{uid}"));
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&x).join("jvmwatch");
    }
    PathBuf::from(format!("/tmp/jvmwatch-{uid}"))
}

/// Number of slots for a ring of about `bytes` bytes of events: the largest power of two
/// that fits, clamped to [`MIN_CAPACITY`]..=[`MAX_CAPACITY`].
pub fn capacity_for_bytes(bytes: u64) -> u64 {
    let slots = (bytes / SLOT_SIZE as u64).clamp(MIN_CAPACITY, MAX_CAPACITY);
    1u64 << (63 - slots.leading_zeros())
}

/// Creates `dir` (mode 0700) if missing and checks that it is safe to write into: a real
/// directory (not a symlink) owned by the effective user. A shared directory such as `/tmp`
/// is refused even when sticky: its owner could delete or swap rings, plant forged ones or
/// replace one with a FIFO; use a directory of your own inside it.
pub fn ensure_dir(dir: &Path) -> Result<(), CreateError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err("cannot create directory", dir))?;
        }
        Err(e) => return Err(io_err("cannot create directory", dir)(e)),
    }
    let md = std::fs::symlink_metadata(dir).map_err(io_err("cannot stat", dir))?;
    let unsafe_dir = |why: String| CreateError::UnsafeDir { path: dir.to_path_buf(), why };
    if md.file_type().is_symlink() {
        return Err(unsafe_dir("is a symlink; jvmwatch does not write through symlinks".into()));
    }
    if !md.is_dir() {
        return Err(unsafe_dir("is not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if md.uid() != uid {
        return Err(unsafe_dir(format!(
            "is owned by uid {}, not by this user (uid {uid}); use a directory you own",
            md.uid()
        )));
    }
    Ok(())
}

/// Fills a fixed-width NUL-padded string field, truncated at a character boundary.
fn put_str(h: &mut [u8], at: usize, width: usize, s: &str) {
    let mut end = s.len().min(width - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    h[at..at + end].copy_from_slice(&s.as_bytes()[..end]);
}

/// Builds the header page for a new ring.
pub fn encode_header(capacity: u64, id: &Identity) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_SIZE];
    let mut put = |at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
    put(hdr::MAGIC, &MAGIC);
    put(hdr::VERSION, &VERSION.to_le_bytes());
    put(hdr::HEADER_SIZE, &(HEADER_SIZE as u32).to_le_bytes());
    let (history, stacks, total) = regions(capacity, &id.geometry);
    put(hdr::FILE_SIZE, &total.to_le_bytes());
    put(hdr::SNAPSHOT_OFFSET, &(SNAPSHOT_OFFSET as u64).to_le_bytes());
    put(hdr::SNAPSHOT_SIZE, &(SNAPSHOT_SIZE as u64).to_le_bytes());
    put(hdr::METRICS_OFFSET, &(METRICS_OFFSET as u64).to_le_bytes());
    put(hdr::METRICS_SIZE, &(METRICS_SIZE as u64).to_le_bytes());
    put(hdr::EVENTS_OFFSET, &(EVENTS_OFFSET as u64).to_le_bytes());
    put(hdr::SLOT_SIZE, &(SLOT_SIZE as u32).to_le_bytes());
    put(hdr::CAPACITY, &(capacity as u32).to_le_bytes());
    put(hdr::PID, &id.pid.to_le_bytes());
    put(hdr::FLAGS, &id.flags.to_le_bytes());
    put(hdr::START_NS, &id.start_ns.to_le_bytes());
    put(hdr::INTERVAL_NS, &id.interval_ns.to_le_bytes());
    let g = &id.geometry;
    if g.fine_slots > 0 {
        put(hdr::HISTORY_OFFSET, &history.to_le_bytes());
        put(hdr::HISTORY_FINE_SLOTS, &g.fine_slots.to_le_bytes());
        put(hdr::HISTORY_COARSE_SLOTS, &g.coarse_slots.to_le_bytes());
        put(hdr::HISTORY_COARSE_STEP_NS, &g.coarse_step_ns.to_le_bytes());
    }
    if g.stacks_size > 0 {
        put(hdr::STACKS_OFFSET, &stacks.to_le_bytes());
        put(hdr::STACKS_SIZE, &g.stacks_size.to_le_bytes());
    }
    put_str(&mut h, hdr::AGENT_VERSION, hdr::AGENT_VERSION_LEN, &id.agent_version);
    put_str(&mut h, hdr::HOSTNAME, hdr::HOSTNAME_LEN, &id.hostname);
    put_str(&mut h, hdr::JVM_VERSION, hdr::JVM_VERSION_LEN, &id.jvm_version);
    put_str(&mut h, hdr::JVM_VENDOR, hdr::JVM_VENDOR_LEN, &id.jvm_vendor);
    put_str(&mut h, hdr::CWD, hdr::CWD_LEN, &id.cwd);
    put_str(&mut h, hdr::ERROR_FILE, hdr::ERROR_FILE_LEN, &id.error_file);
    put_str(&mut h, hdr::COMMAND, hdr::COMMAND_LEN, &id.command);
    let crc = crc32fast::hash(&h[..hdr::HEADER_CRC]);
    h[hdr::HEADER_CRC..hdr::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Current time, ns since the Unix epoch (CLOCK_REALTIME through the vDSO: no syscall).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME is always supported.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: `b` is a valid writable buffer of the given length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
    if n != 4 {
        // No entropy yet (very early boot): time and pid still make the name unique enough,
        // and O_EXCL catches the rest.
        return (now_ns() as u32) ^ std::process::id().rotate_left(16);
    }
    u32::from_le_bytes(b)
}

/// An open ring, mapped for writing. Holds the writer lock for its whole life.
pub struct Writer {
    map: MmapRaw,
    /// Keeps the exclusive `flock` that tells readers this writer is alive. The kernel drops
    /// it when the process dies, however it dies.
    _file: File,
    path: PathBuf,
    mask: u64,
    on_tmpfs: bool,
    /// Generation of the last snapshot written (sampler thread only).
    snap_gen: AtomicU64,
    /// Guards [`Writer::write_snapshot`] against concurrent use (Acquire/Release: a busy flag).
    snap_busy: AtomicBool,
    /// Serialises registration of instruments and strings (rare; never on a hot path).
    registry: std::sync::Mutex<()>,
    /// Where the history tiers and the stacks region are (from the header).
    regions: Regions,
    /// Generation of the last stacks capture written (its writer only).
    stacks_gen: AtomicU64,
}

/// Offsets of the v2 regions of an open ring.
#[derive(Clone, Copy, Debug, Default)]
struct Regions {
    fine: (usize, u64),
    coarse: (usize, u64),
    stacks: (usize, usize),
}

impl Regions {
    fn new(capacity: u64, g: &Geometry) -> Regions {
        let (history, stacks, _) = regions(capacity, g);
        let fine_at = history as usize;
        let coarse_at = fine_at + g.fine_slots as usize * HISTORY_RECORD_SIZE;
        Regions {
            fine: (fine_at, g.fine_slots as u64),
            coarse: (coarse_at, g.coarse_slots as u64),
            stacks: (stacks as usize, g.stacks_size as usize),
        }
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("path", &self.path).field("capacity", &(self.mask + 1)).finish()
    }
}

impl Writer {
    /// Creates a new ring in `dir` named `<pid>-<start ms>-<random>.ring`.
    pub fn create_in(dir: &Path, capacity: u64, id: &Identity) -> Result<Writer, CreateError> {
        ensure_dir(dir)?;
        let name = format!("{}-{}-{:08x}.ring", id.pid, id.start_ns / 1_000_000, random_u32());
        Writer::create(&dir.join(name), capacity, id)
    }

    /// Creates a new ring at exactly `path`, which must not exist. The file is built under a
    /// hidden temporary name (O_EXCL, O_NOFOLLOW, mode 0600), locked, sized, and only then
    /// renamed into place without replacing anything, so a reader never sees a half-made ring.
    pub fn create(path: &Path, capacity: u64, id: &Identity) -> Result<Writer, CreateError> {
        let capacity = capacity_for_bytes(capacity.saturating_mul(SLOT_SIZE as u64));
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .ok_or_else(|| CreateError::UnsafeDir { path: path.to_path_buf(), why: "has no file name".into() })?;
        let tmp = dir.join(format!(".{}.{:08x}.tmp", file_name.to_string_lossy(), random_u32()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io_err("cannot create", &tmp))?;
        let result = Writer::init(file, &tmp, path, capacity, id);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn init(file: File, tmp: &Path, path: &Path, capacity: u64, id: &Identity) -> Result<Writer, CreateError> {
        let fd = file.as_raw_fd();
        // SAFETY: `fd` is an open descriptor owned by `file`.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io_err("cannot lock", tmp)(io::Error::last_os_error()));
        }
        let len = regions(capacity, &id.geometry).2;
        // Allocate every page now: a full tmpfs fails here with ENOSPC instead of SIGBUS later.
        // SAFETY: `fd` is open for writing.
        match unsafe { libc::posix_fallocate(fd, 0, len as libc::off_t) } {
            0 => {}
            libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len).map_err(io_err("cannot size", tmp))?,
            e => return Err(io_err("cannot allocate", tmp)(io::Error::from_raw_os_error(e))),
        }
        file.write_all_at(&encode_header(capacity, id), 0).map_err(io_err("cannot write", tmp))?;
        // The file was just created by us with O_EXCL and has the mapped length; no one else
        // truncates it (readers never write). MAP_POPULATE faults every page in now, so no
        // write from a GC callback takes a page fault.
        let map = MmapOptions::new().len(len as usize).populate().map_raw(&file).map_err(io_err("cannot map", tmp))?;
        let mut st: libc::statfs = unsafe_zeroed_statfs();
        // SAFETY: `st` is a valid writable statfs; `fd` is open.
        let on_tmpfs = unsafe { libc::fstatfs(fd, &mut st) } == 0
            && (st.f_type == 0x0102_1994 || st.f_type == 0x8584_58f6 as libc::c_long as _);
        let c_tmp = cstr(tmp)?;
        let c_path = cstr(path)?;
        // SAFETY: both are valid NUL-terminated paths.
        let rc = unsafe {
            libc::renameat2(libc::AT_FDCWD, c_tmp.as_ptr(), libc::AT_FDCWD, c_path.as_ptr(), libc::RENAME_NOREPLACE)
        };
        if rc != 0 {
            return Err(io_err("cannot create", path)(io::Error::last_os_error()));
        }
        Ok(Writer {
            map,
            _file: file,
            path: path.to_path_buf(),
            mask: capacity - 1,
            on_tmpfs,
            snap_gen: AtomicU64::new(0),
            snap_busy: AtomicBool::new(false),
            registry: std::sync::Mutex::new(()),
            regions: Regions::new(capacity, &id.geometry),
            stacks_gen: AtomicU64::new(0),
        })
    }

    /// Maps an existing ring of another process (the agent's) to append events to it with
    /// the same lock-free protocol; used by the sidecar's controller to record what it does
    /// to a JVM in that JVM's own ring. Takes no lock: the file's writer keeps its liveness
    /// lock. The header is validated and the file must have the size it states.
    ///
    /// Only [`Writer::emit`] is meant for an attached writer; its snapshot and metrics
    /// belong to the agent. The agent never shrinks its file; a file shrunk by someone else
    /// while attached would make a store fault (SIGBUS), so attach only to the rings of
    /// JVMs this process launched or is told to act on.
    pub fn attach(path: &Path) -> Result<Writer, CreateError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err("cannot open", path))?;
        let md = file.metadata().map_err(io_err("cannot stat", path))?;
        if !md.is_file() {
            return Err(CreateError::NotARing { path: path.to_path_buf(), why: "not a regular file".into() });
        }
        let mut h = vec![0u8; HEADER_SIZE.min(md.len() as usize)];
        file.read_exact_at(&mut h, 0).map_err(io_err("cannot read", path))?;
        let header = crate::reader::parse_header(&h, md.len())
            .map_err(|e| CreateError::NotARing { path: path.to_path_buf(), why: e.to_string() })?;
        let map =
            MmapOptions::new().len(header.file_size as usize).map_raw(&file).map_err(io_err("cannot map", path))?;
        Ok(Writer {
            map,
            _file: file,
            path: path.to_path_buf(),
            mask: header.capacity - 1,
            on_tmpfs: true,
            snap_gen: AtomicU64::new(0),
            snap_busy: AtomicBool::new(false),
            registry: std::sync::Mutex::new(()),
            // History and stacks belong to the agent: an attached writer only emits events.
            regions: Regions::default(),
            stacks_gen: AtomicU64::new(0),
        })
    }

    /// Where the ring lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of event slots.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// True when the file is on tmpfs/ramfs (no writeback stalls).
    pub fn on_tmpfs(&self) -> bool {
        self.on_tmpfs
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.map.len());
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned); the mapping lives as
        // long as `self`; AtomicU64 has u64's layout; every access to this word, in this
        // process or a reader's, is an atomic or a read that tolerates tearing.
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU64) }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= self.map.len());
        // SAFETY: as in `u64_at`, for a 4-aligned u32.
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU32) }
    }

    /// Records `ev` now. Returns its sequence number. GC-callback safe.
    #[inline]
    pub fn emit(&self, ev: &Event) -> u64 {
        self.emit_at(now_ns(), ev)
    }

    /// Records `ev` with the given timestamp. Returns its sequence number. GC-callback safe.
    ///
    /// Per-slot seqlock, lock-free for any number of writers: reserve `s` on the cursor,
    /// claim the slot (stamp → 2s+1), store the payload, publish (stamp 2s+1 → 2s+2). A writer
    /// stalled for a whole lap finds a later stamp in its slot at the claim, before the
    /// payload, or at the publish, and drops its record instead of putting it (and its older
    /// stamp) over the newer one; readers count the dropped record as overwritten.
    pub fn emit_at(&self, time_ns: u64, ev: &Event) -> u64 {
        let mut e = self.emit_in_steps(time_ns, ev);
        let _published = e.claim() && e.write() && e.publish();
        e.seq()
    }

    /// Reserves a sequence number for `ev` and returns the remaining steps of
    /// [`Writer::emit_at`], to be run one by one. For tests that pause a writer mid-write.
    #[doc(hidden)]
    #[inline]
    pub fn emit_in_steps(&self, time_ns: u64, ev: &Event) -> EmitSteps<'_> {
        let enc = ev.encode();
        // Relaxed: the cursor only hands out unique numbers; publication is per slot below.
        let seq = self.u64_at(hdr::CURSOR).fetch_add(1, Ordering::Relaxed);
        let base = EVENTS_OFFSET + ((seq & self.mask) as usize) * SLOT_SIZE;
        let mut words = [0u64; 7];
        words[0] = time_ns;
        words[1] = enc.kind as u64 | (enc.len as u64) << 16;
        for (i, w) in words[2..].iter_mut().enumerate() {
            *w = u64::from_le_bytes(enc.payload[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        words[1] |= (check(seq, &words) as u64) << 32;
        EmitSteps { w: self, seq, base, words, claimed: false }
    }

    /// Next sequence number to be reserved (= events written so far).
    pub fn cursor(&self) -> u64 {
        self.u64_at(hdr::CURSOR).load(Ordering::Relaxed)
    }

    /// Stores the lifecycle state (Release: everything written before is visible with it).
    pub fn set_state(&self, s: State) {
        self.u32_at(hdr::STATE).store(s as u32, Ordering::Release);
    }

    /// Stores the collector family detected at VM init.
    pub fn set_collector(&self, c: Collector) {
        self.u32_at(hdr::COLLECTOR).store(c as u32, Ordering::Relaxed);
    }

    /// The collector family stored by [`Writer::set_collector`]. GC-callback safe.
    pub fn collector(&self) -> Collector {
        Collector::from_u32(self.u32_at(hdr::COLLECTOR).load(Ordering::Relaxed))
    }

    /// Records the sampler heartbeat (Release, so a reader that sees it also sees the
    /// snapshot written before it).
    pub fn heartbeat(&self, now: u64) {
        self.u64_at(hdr::HEARTBEAT_NS).store(now, Ordering::Release);
    }

    /// Records the VM init time.
    pub fn set_vm_init_ns(&self, now: u64) {
        self.u64_at(hdr::VM_INIT_NS).store(now, Ordering::Relaxed);
    }

    /// Records the clean-exit time.
    pub fn set_exit_ns(&self, now: u64) {
        self.u64_at(hdr::EXIT_NS).store(now, Ordering::Relaxed);
    }

    /// Writes the application name once (later calls are ignored). Not GC-callback safe.
    pub fn set_app_name(&self, name: &str) -> bool {
        let first = self.u64_at(hdr::APP_NAME);
        if first.load(Ordering::Acquire) != 0 {
            return false;
        }
        let mut b = [0u8; hdr::APP_NAME_LEN];
        put_str(&mut b, 0, hdr::APP_NAME_LEN, name);
        for (i, chunk) in b.chunks_exact(8).enumerate().rev() {
            // Relaxed for the tail, Release for the first word that readers test.
            let ord = if i == 0 { Ordering::Release } else { Ordering::Relaxed };
            self.u64_at(hdr::APP_NAME + 8 * i).store(u64::from_le_bytes(chunk.try_into().expect("8")), ord);
        }
        true
    }

    /// Registers (or finds) an instrument by kind and name; returns its index, or `None` when
    /// the table is full or the name too long. Takes a lock: call once per instrument.
    pub fn register(&self, kind: metrics::Kind, name: &str) -> Option<usize> {
        let name = name.as_bytes();
        if name.is_empty() || name.len() > metrics::ins::NAME_MAX {
            return None;
        }
        let _guard = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let count_word = self.u32_at(METRICS_OFFSET + metrics::COUNT);
        let count = count_word.load(Ordering::Acquire) as usize;
        for i in 0..count.min(metrics::MAX_INSTRUMENTS) {
            let base = self.instrument(i);
            let k = self.u32_at(base + metrics::ins::KIND).load(Ordering::Acquire);
            if k == kind as u32
                && self.read_bytes(
                    base + metrics::ins::NAME,
                    self.u32_at(base + metrics::ins::NAME_LEN).load(Ordering::Relaxed) as usize,
                ) == name
            {
                return Some(i);
            }
        }
        let slots = if kind == metrics::Kind::Timer { metrics::TIMER_SLOTS } else { 1 };
        if count + slots > metrics::MAX_INSTRUMENTS {
            return None;
        }
        let base = self.instrument(count);
        for k in 1..slots {
            // Relaxed: published by the Release stores of the kind and the count below.
            self.u32_at(self.instrument(count + k) + metrics::ins::KIND)
                .store(metrics::KIND_CONTINUATION, Ordering::Relaxed);
        }
        self.write_bytes(base + metrics::ins::NAME, name);
        self.u32_at(base + metrics::ins::NAME_LEN).store(name.len() as u32, Ordering::Relaxed);
        // Release: the name is visible before the kind that marks the entry in use.
        self.u32_at(base + metrics::ins::KIND).store(kind as u32, Ordering::Release);
        count_word.store((count + slots) as u32, Ordering::Release);
        Some(count)
    }

    /// Interns a short string (≤ 63 bytes, longer is truncated) into the string table; returns
    /// its id, or `u16::MAX` when the table is full. Takes a lock: not for GC callbacks.
    pub fn intern(&self, s: &str) -> u16 {
        let mut end = s.len().min(metrics::STRING_SIZE - 1);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let s = &s.as_bytes()[..end];
        let _guard = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let count_word = self.u32_at(METRICS_OFFSET + metrics::STRING_COUNT);
        let count = (count_word.load(Ordering::Acquire) as usize).min(metrics::MAX_STRINGS);
        for i in 0..count {
            let at = METRICS_OFFSET + metrics::STRINGS + i * metrics::STRING_SIZE;
            let n = self.read_bytes(at, 1)[0] as usize;
            if self.read_bytes(at + 1, n) == s {
                return i as u16;
            }
        }
        if count == metrics::MAX_STRINGS {
            return u16::MAX;
        }
        let at = METRICS_OFFSET + metrics::STRINGS + count * metrics::STRING_SIZE;
        let mut entry = vec![s.len() as u8];
        entry.extend_from_slice(s);
        self.write_bytes(at, &entry);
        count_word.store(count as u32 + 1, Ordering::Release);
        count as u16
    }

    /// The interned string `id`, if there is one. Takes the registration lock: not for GC
    /// callbacks.
    pub fn interned(&self, id: u16) -> Option<Vec<u8>> {
        let _guard = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let count = self.u32_at(METRICS_OFFSET + metrics::STRING_COUNT).load(Ordering::Acquire) as usize;
        if id as usize >= count.min(metrics::MAX_STRINGS) {
            return None;
        }
        let at = METRICS_OFFSET + metrics::STRINGS + id as usize * metrics::STRING_SIZE;
        let n = (self.read_bytes(at, 1)[0] as usize).min(metrics::STRING_SIZE - 1);
        Some(self.read_bytes(at + 1, n))
    }

    fn instrument(&self, i: usize) -> usize {
        METRICS_OFFSET + metrics::HEADER + i * metrics::INSTRUMENT_SIZE
    }

    fn stripe(&self, index: usize, stripe: usize, word: usize) -> &AtomicU64 {
        let s = stripe & (metrics::ins::STRIPE_COUNT - 1);
        self.u64_at(self.instrument(index) + metrics::ins::STRIPES + s * metrics::ins::STRIPE_SIZE + 8 * word)
    }

    /// Adds to a counter (Relaxed: a statistic; readers sum the stripes).
    pub fn counter_add(&self, index: usize, stripe: usize, delta: u64) {
        self.stripe(index, stripe, 0).fetch_add(delta, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn gauge_set(&self, index: usize, value: i64) {
        self.stripe(index, 0, 0).store(value as u64, Ordering::Relaxed);
    }

    /// Records one duration into stripe `stripe` (taken modulo 8) of a timer, as the Java API
    /// does (Relaxed: statistics; readers merge the stripes). The count is not stored: readers
    /// add up the buckets.
    pub fn timer_record(&self, index: usize, stripe: usize, ns: u64) {
        let at = self.instrument(index) + metrics::timer_stripe(stripe & (metrics::ins::STRIPE_COUNT - 1));
        self.u64_at(at + metrics::tstripe::SUM).fetch_add(ns, Ordering::Relaxed);
        self.u64_at(at + metrics::tstripe::MAX).fetch_max(ns, Ordering::Relaxed);
        let b = metrics::bucket_of(ns);
        self.u64_at(at + metrics::tstripe::BUCKETS + 8 * b).fetch_add(1, Ordering::Relaxed);
    }

    /// The metrics region as a raw pointer and length, for the Java API's direct buffer.
    /// Every access through it must be atomic (Java VarHandle `getAndAdd` / `setVolatile`).
    pub fn metrics_region(&self) -> (*mut u8, usize) {
        // SAFETY: METRICS_OFFSET + METRICS_SIZE is inside the mapping (checked by the layout).
        (unsafe { self.map.as_mut_ptr().add(METRICS_OFFSET) }, METRICS_SIZE)
    }

    fn read_bytes(&self, off: usize, n: usize) -> Vec<u8> {
        assert!(off + n <= self.map.len());
        // SAFETY: in bounds; these bytes (names, strings) are only written under `registry`,
        // which the caller holds, before they are published.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off), n) }.to_vec()
    }

    fn write_bytes(&self, off: usize, b: &[u8]) {
        assert!(off + b.len() <= self.map.len());
        // SAFETY: in bounds; the caller holds `registry` and the entry is not yet published,
        // so no one else writes these bytes, and readers ignore them until the count/kind says so.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.map.as_mut_ptr().add(off), b.len()) };
    }

    /// A stop-the-world pause begins at `now`; returns its pause number. GC-callback safe.
    /// Pauses are serialised by the VM, so plain Relaxed atomics suffice between the two calls.
    pub fn gc_pause_begin(&self, now: u64) -> u64 {
        self.u64_at(hdr::GC_PAUSE_START_NS).store(now, Ordering::Relaxed);
        self.u64_at(hdr::GC_PAUSES).load(Ordering::Relaxed) + 1
    }

    /// The pause begun by [`Writer::gc_pause_begin`] ends at `now`: updates count, total and
    /// max, returns `(pause number, duration)` or `None` if no begin was seen.
    /// GC-callback safe.
    pub fn gc_pause_end(&self, now: u64) -> Option<(u64, u64)> {
        let start = self.u64_at(hdr::GC_PAUSE_START_NS).swap(0, Ordering::Relaxed);
        if start == 0 {
            return None;
        }
        let dur = now.saturating_sub(start);
        self.u64_at(hdr::GC_PAUSE_TOTAL_NS).fetch_add(dur, Ordering::Relaxed);
        self.u64_at(hdr::GC_PAUSE_MAX_NS).fetch_max(dur, Ordering::Relaxed);
        let n = self.u64_at(hdr::GC_PAUSES).fetch_add(1, Ordering::Relaxed) + 1;
        Some((n, dur))
    }

    /// Stop-the-world pause time so far, ns (Relaxed: a statistic).
    pub fn gc_pause_total_ns(&self) -> u64 {
        self.u64_at(hdr::GC_PAUSE_TOTAL_NS).load(Ordering::Relaxed)
    }

    /// Asks the CPU for the cache lines a GC callback is about to write: the header's cursor
    /// and pause lines, that callback's histogram, and the next event slot. Between two GC
    /// callbacks the collection itself (or the application) has most likely evicted them, and
    /// each of the callback's locked atomics would wait for its own miss in turn; prefetches
    /// issued together overlap those misses. A hint only: it changes no value. GC-callback safe.
    pub fn prefetch_gc_lines(&self, finish: bool) {
        let (hist, lines) = if finish { (hdr::GC_CB_HIST, 4) } else { (hdr::GC_START_CB_TOTAL_NS, 5) };
        let base = self.map.as_ptr();
        for off in [hdr::CURSOR, hdr::GC_PAUSES].into_iter().chain((0..lines).map(|k| hist + 64 * k)) {
            prefetch(base.wrapping_add(off));
        }
        // Relaxed: a guess at the next slot; emit_at reserves the real one.
        let seq = self.u64_at(hdr::CURSOR).load(Ordering::Relaxed);
        prefetch(base.wrapping_add(EVENTS_OFFSET + ((seq & self.mask) as usize) * SLOT_SIZE));
    }

    /// Adds one self-measured GC-finish callback duration to its counters and histogram
    /// (Relaxed: statistics, see [`crate::cbcost`]). GC-callback safe: atomics only.
    pub fn record_callback_cost(&self, ns: u64) {
        self.u64_at(hdr::GC_CB_COUNT).fetch_add(1, Ordering::Relaxed);
        self.u64_at(hdr::GC_CB_TOTAL_NS).fetch_add(ns, Ordering::Relaxed);
        self.u64_at(hdr::GC_CB_MAX_NS).fetch_max(ns, Ordering::Relaxed);
        self.u64_at(hdr::GC_CB_HIST + 8 * crate::cbcost::bucket_of(ns)).fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one self-measured GC-start callback duration (Relaxed, as above; the count is the
    /// histogram's sum). GC-callback safe: atomics only.
    pub fn record_start_callback_cost(&self, ns: u64) {
        self.u64_at(hdr::GC_START_CB_TOTAL_NS).fetch_add(ns, Ordering::Relaxed);
        self.u64_at(hdr::GC_START_CB_MAX_NS).fetch_max(ns, Ordering::Relaxed);
        self.u64_at(hdr::GC_START_CB_HIST + 8 * crate::cbcost::bucket_of(ns)).fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes a snapshot into the buffer not holding the latest one (double-buffered
    /// seqlock): a writer that dies half-way leaves the previous snapshot intact. Returns
    /// false if another thread is writing one right now.
    pub fn write_snapshot(&self, s: &Snapshot) -> bool {
        // Acquire: see the previous writer's stores to the buffers before overwriting them.
        if self.snap_busy.swap(true, Ordering::Acquire) {
            return false;
        }
        let mut body = [0u8; SNAP_BODY_SIZE];
        s.encode(&mut body);
        let crc = crc32fast::hash(&body);
        let g = self.snap_gen.load(Ordering::Relaxed) + 1;
        let base = SNAPSHOT_OFFSET + (g as usize % 2) * SNAPSHOT_BUF_SIZE;
        let stamp = self.u64_at(base + snap::STAMP);
        stamp.store(2 * g + 1, Ordering::Relaxed);
        fence(Ordering::Release); // as in `emit_at`: the odd stamp is seen before any new byte
        self.u64_at(base + snap::CRC).store(crc as u64 | (SNAP_BODY_SIZE as u64) << 32, Ordering::Relaxed);
        for (i, chunk) in body.chunks_exact(8).enumerate() {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.u64_at(base + snap::BODY + 8 * i).store(w, Ordering::Relaxed);
        }
        stamp.store(2 * g + 2, Ordering::Release);
        self.snap_gen.store(g, Ordering::Relaxed);
        // Release: hand the buffers over to the next caller.
        self.snap_busy.store(false, Ordering::Release);
        true
    }

    /// Appends a history record to `tier`. Returns false when the ring has no history.
    ///
    /// One writer per tier (the sampler thread); not for GC callbacks. The record is written
    /// like an event: odd stamp, fence, the words, then the even stamp (Release), then the
    /// tier's next-sequence word (Release), so a reader that loads the next word (Acquire)
    /// finds the record published or, if the writer died in between, torn and skipped.
    pub fn history_append(&self, tier: Tier, s: &HistorySample) -> bool {
        let ((at, slots), next_word) = match tier {
            Tier::Fine => (self.regions.fine, hdr::HISTORY_FINE_NEXT),
            Tier::Coarse => (self.regions.coarse, hdr::HISTORY_COARSE_NEXT),
        };
        if slots == 0 {
            return false;
        }
        let next = self.u64_at(next_word);
        let seq = next.load(Ordering::Relaxed); // this thread is the only writer of `next`
        let rec = s.encode(seq);
        let base = at + (seq % slots) as usize * HISTORY_RECORD_SIZE;
        let stamp = self.u64_at(base);
        stamp.store(2 * seq + 1, Ordering::Relaxed);
        fence(Ordering::Release); // as in `emit_at`: the odd stamp is seen before any new byte
        for (i, chunk) in rec.chunks_exact(8).enumerate().skip(1) {
            self.u64_at(base + 8 * i).store(u64::from_le_bytes(chunk.try_into().expect("8")), Ordering::Relaxed);
        }
        stamp.store(2 * seq + 2, Ordering::Release);
        next.store(seq + 1, Ordering::Release);
        true
    }

    /// Publishes a stacks capture body into the buffer not holding the latest one (the
    /// snapshot's double-buffered seqlock). Returns false when the ring has no stacks region
    /// or the body does not fit one buffer. One writer (the sampler thread).
    pub fn write_stacks(&self, body: &[u8]) -> bool {
        let (at, size) = self.regions.stacks;
        let buf = size / 2;
        if size == 0 || stk::BODY + body.len() > buf {
            return false;
        }
        let g = self.stacks_gen.load(Ordering::Relaxed) + 1;
        let base = at + (g as usize % 2) * buf;
        let stamp = self.u64_at(base + stk::STAMP);
        stamp.store(2 * g + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let crc = crc32fast::hash(body);
        self.u64_at(base + stk::CRC).store(crc as u64 | (body.len() as u64) << 32, Ordering::Relaxed);
        let mut padded = body.to_vec();
        padded.resize(body.len().div_ceil(8) * 8, 0);
        for (i, chunk) in padded.chunks_exact(8).enumerate() {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.u64_at(base + stk::BODY + 8 * i).store(w, Ordering::Relaxed);
        }
        stamp.store(2 * g + 2, Ordering::Release);
        self.stacks_gen.store(g, Ordering::Relaxed);
        true
    }

    /// Bytes a stacks capture body may take (0: no stacks region).
    pub fn stacks_budget(&self) -> usize {
        (self.regions.stacks.1 / 2).saturating_sub(stk::BODY)
    }

    /// Instruments registered so far (Acquire: their entries are complete).
    pub fn instrument_count(&self) -> usize {
        (self.u32_at(METRICS_OFFSET + metrics::COUNT).load(Ordering::Acquire) as usize).min(metrics::MAX_INSTRUMENTS)
    }

    /// True when slot `index` holds no application instrument of its own: one of the agent's
    /// instruments (`jvm.` names), which the history does not keep (see [`crate::history`]),
    /// or a continuation slot of a timer (which spans [`metrics::TIMER_SLOTS`] slots).
    pub fn instrument_is_agents(&self, index: usize) -> bool {
        if index >= self.instrument_count() {
            return false;
        }
        let base = self.instrument(index);
        // Acquire on the kind: the name, written before it, is complete.
        match self.u32_at(base + metrics::ins::KIND).load(Ordering::Acquire) {
            0 => return false,
            metrics::KIND_CONTINUATION => return true,
            _ => {}
        }
        let n = self.u32_at(base + metrics::ins::NAME_LEN).load(Ordering::Relaxed) as usize;
        n >= 4 && self.read_bytes(base + metrics::ins::NAME, 4) == b"jvm."
    }

    /// Reads application instrument `index` from the mapping: kind, value (counter sum over
    /// stripes, gauge bits, or timer count), timer sum and max, and the timer's buckets into
    /// `buckets` (left untouched for counters and gauges). `None` for a free slot.
    /// For the sampler thread; the words are read with Relaxed atomic loads (statistics).
    pub fn read_instrument(
        &self,
        index: usize,
        buckets: &mut [u64; metrics::BUCKET_COUNT],
    ) -> Option<(metrics::Kind, u64, u64, u64)> {
        if index >= metrics::MAX_INSTRUMENTS
            || index >= self.u32_at(METRICS_OFFSET + metrics::COUNT).load(Ordering::Acquire) as usize
        {
            return None;
        }
        let base = self.instrument(index);
        let kind = metrics::Kind::from_u32(self.u32_at(base + metrics::ins::KIND).load(Ordering::Acquire))?;
        let word = |s: usize, w: usize| self.stripe(index, s, w).load(Ordering::Relaxed);
        let all = |w: usize| (0..metrics::ins::STRIPE_COUNT).map(move |s| word(s, w));
        Some(match kind {
            metrics::Kind::Gauge => (kind, word(0, 0), 0, 0),
            metrics::Kind::Counter => (kind, all(0).fold(0, u64::wrapping_add), 0, 0),
            metrics::Kind::Timer => {
                if index + metrics::TIMER_SLOTS > metrics::MAX_INSTRUMENTS {
                    return None;
                }
                let word = |o: usize| self.u64_at(base + o).load(Ordering::Relaxed);
                let (count, sum, max) = metrics::merge_timer(VERSION, word, buckets);
                (kind, count, sum, max)
            }
        })
    }
}

/// A prefetch hint for the line holding `p` (no-op off x86-64). Never faults, never changes
/// memory, whatever `p` is.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline; a prefetch is a hint that never faults and
    // never writes, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// An event reserved by [`Writer::emit_in_steps`], not yet written: the three steps of
/// [`Writer::emit_at`] after the reservation, each of which gives up (returns `false`) once
/// the slot has been taken by a writer a lap ahead.
#[doc(hidden)]
pub struct EmitSteps<'a> {
    w: &'a Writer,
    seq: u64,
    base: usize,
    words: [u64; 7],
    /// The slot's stamp is ours (2s+1) as far as this writer knows.
    claimed: bool,
}

impl EmitSteps<'_> {
    /// The reserved sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn stamp(&self) -> &AtomicU64 {
        self.w.u64_at(self.base + slot::STAMP)
    }

    /// Step 1: marks the slot "being written for `s`" (stamp 2s+1). Fails, dropping the
    /// record, if the slot already carries a stamp of `s + capacity` or later: this writer
    /// stalled between reserving and claiming while others went round the whole ring.
    #[inline]
    pub fn claim(&mut self) -> bool {
        let odd = 2 * self.seq + 1;
        let stamp = self.stamp();
        // Relaxed: only a guess for the compare-exchange, which checks it.
        let mut cur = stamp.load(Ordering::Relaxed);
        loop {
            if cur >= odd {
                // A later lap owns the slot (stamps only grow: every store is a
                // compare-exchange upwards). Our record is older than what is there: drop it.
                return false;
            }
            // Success Acquire: if `cur` is a lapped predecessor's published stamp, its payload
            // stores happen-before ours, so ours come later in each word's modification order.
            // Failure Relaxed: the value is only re-examined by this loop.
            match stamp.compare_exchange_weak(cur, odd, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        // Release fence after the odd stamp, before the payload: a reader (or a lapping
        // writer) that sees any payload word of ours also sees this stamp or a later one.
        fence(Ordering::Release);
        self.claimed = true;
        true
    }

    /// Step 2: stores the six words after the stamp, unless the slot was taken by a later
    /// lap since the claim (then the record is dropped and nothing is stored).
    ///
    /// A writer a lap ahead can still take the slot *during* these seven stores; the words
    /// then mix and the later record fails its check: the reader counts it torn. That window
    /// is a handful of stores wide; waiting for it to close would need a lock.
    #[inline]
    pub fn write(&mut self) -> bool {
        // Relaxed: a cheap re-check that shrinks the window above; the publishing
        // compare-exchange is what guarantees no later record's stamp is overwritten.
        if !self.claimed || self.stamp().load(Ordering::Relaxed) != 2 * self.seq + 1 {
            self.claimed = false;
            return false;
        }
        for (i, w) in self.words.iter().enumerate() {
            // Relaxed: ordered after the odd stamp by the claim's Release fence, and before
            // the even stamp by the publishing Release compare-exchange.
            self.w.u64_at(self.base + 8 + 8 * i).store(*w, Ordering::Relaxed);
        }
        true
    }

    /// Step 3: publishes the slot, moving its stamp from 2s+1 to 2s+2, and only from 2s+1:
    /// if a writer a lap ahead took the slot since, its stamp stays and this record is
    /// dropped (its payload words, if any landed, are overwritten or make the later record
    /// fail its check; they are never published under our stamp).
    #[inline]
    pub fn publish(&mut self) -> bool {
        if !self.claimed {
            return false;
        }
        self.claimed = false;
        let odd = 2 * self.seq + 1;
        // Success Release: the payload stores above happen-before any Acquire load that sees
        // 2s+2. Failure Relaxed: the record is dropped, nothing depends on the value seen.
        self.stamp().compare_exchange(odd, odd + 1, Ordering::Release, Ordering::Relaxed).is_ok()
    }
}

fn unsafe_zeroed_statfs() -> libc::statfs {
    // SAFETY: statfs is a plain C struct for which all-zero bytes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn cstr(p: &Path) -> Result<std::ffi::CString, CreateError> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| CreateError::UnsafeDir { path: p.to_path_buf(), why: "contains a NUL byte".into() })
}

//! Cheap change detection for a followed ring: a read-only shared mapping of its header page,
//! so "did the cursor, heartbeat or state move?" is a few memory loads instead of a `pread`.
//!
//! What the mapping shows is only a hint: it decides *whether* to read, never *what* was
//! read. Everything taken from the file still goes through [`crate::Ring`]'s checked `pread`s.
//!
//! A mapped page whose file was truncated to nothing raises SIGBUS on access. Every header
//! page lives in one reserved address range; a SIGBUS handler (installed with the first
//! mapping, chaining to whatever handler was there before) recognises a fault inside that
//! range and maps a zero page over the faulting page, so the load completes and reads zeros.
//! Zeros read as "changed", the follower reads the file with `pread`, and that reports the
//! truncation as an error. A fault anywhere else goes to the previous handler, or kills the
//! process as it would have without this module.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::layout::hdr;

/// Header pages that can be mapped at once (the reserved range is this many pages; 256 MiB of
/// address space with 4 KiB pages, none of it memory until mapped). More rings fall back to
/// `pread` polling.
pub const MAX_PAGES: usize = 65_536;

/// Start and length of the reserved range, for the signal handler (Release when set, Acquire
/// in the handler; set once, before the handler is installed).
static RANGE_START: AtomicUsize = AtomicUsize::new(0);
static RANGE_LEN: AtomicUsize = AtomicUsize::new(0);
/// The page size the range is laid out in.
static PAGE: AtomicUsize = AtomicUsize::new(0);
/// The SIGBUS disposition before ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

struct Region {
    /// Next never-used page index, and the freed ones.
    free: Mutex<(usize, Vec<usize>)>,
}

fn region() -> Option<&'static Region> {
    static REGION: OnceLock<Option<Region>> = OnceLock::new();
    REGION.get_or_init(reserve).as_ref()
}

/// Reserves the range and installs the SIGBUS handler.
fn reserve() -> Option<Region> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = usize::try_from(page).ok().filter(|p| p.is_power_of_two() && *p >= crate::layout::HEADER_SIZE)?;
    let len = page * MAX_PAGES;
    // SAFETY: a fresh anonymous PROT_NONE reservation at an address the kernel picks; touches
    // nothing that exists.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    PAGE.store(page, Ordering::Relaxed);
    RANGE_LEN.store(len, Ordering::Relaxed);
    // Release: the handler that sees the start also sees the length and page size.
    RANGE_START.store(base as usize, Ordering::Release);
    // SAFETY: a zeroed sigaction is a valid value to fill in; `on_sigbus` has the SA_SIGINFO
    // signature; the old disposition is written into `old` before we read it.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &sa, &mut old) != 0 {
            libc::munmap(base, len);
            RANGE_START.store(0, Ordering::Release);
            return None;
        }
        let _ = PREVIOUS.set(old);
    }
    Some(Region { free: Mutex::new((0, Vec::new())) })
}

/// SIGBUS: a fault inside the reserved range gets a zero page mapped over the faulting page
/// (only `mmap`, a plain system call, and atomic loads here: async-signal-safe); any other
/// fault goes to the previous disposition.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    // Acquire pairs with the Release in `reserve`.
    let start = RANGE_START.load(Ordering::Acquire);
    let (len, page) = (RANGE_LEN.load(Ordering::Relaxed), PAGE.load(Ordering::Relaxed));
    if start != 0 && addr >= start && addr < start + len {
        let at = addr & !(page - 1);
        // SAFETY: `at` is a page of our own reserved range (never memory anyone else owns);
        // replacing it with a private zero page makes the faulting load complete.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            return;
        }
    }
    // Not ours (or the remap failed): what would have happened without this module.
    match PREVIOUS.get() {
        Some(old) if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN => {
            if old.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this
                // signature; we pass on exactly what we were given.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(old.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: as above, for a plain handler.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(old.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // SAFETY: restoring the default disposition; returning re-runs the faulting
            // instruction, which then terminates the process as an unhandled SIGBUS would.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
            }
        }
    }
}

/// A read-only shared mapping of one ring's header page (see the module docs).
#[derive(Debug)]
pub struct HeaderPage {
    index: usize,
    at: *const u8,
}

// SAFETY: the page is only read, with atomic loads; the mapping belongs to this value alone.
unsafe impl Send for HeaderPage {}
// SAFETY: as above: shared access is atomic loads only.
unsafe impl Sync for HeaderPage {}

/// The words a follower polls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Words {
    /// Next event sequence number.
    pub cursor: u64,
    /// Last heartbeat, ns.
    pub heartbeat_ns: u64,
    /// Lifecycle state word.
    pub state: u32,
}

impl HeaderPage {
    /// Maps the first page of `file` read-only; `None` when every page of the reserved range
    /// is in use or the system refuses (the caller then polls with `pread`).
    pub fn map(file: &File) -> Option<HeaderPage> {
        let r = region()?;
        let index = {
            let mut free = r.free.lock().unwrap_or_else(|e| e.into_inner());
            match free.1.pop() {
                Some(i) => i,
                None if free.0 < MAX_PAGES => {
                    free.0 += 1;
                    free.0 - 1
                }
                None => return None,
            }
        };
        let page = PAGE.load(Ordering::Relaxed);
        let at = RANGE_START.load(Ordering::Acquire) + index * page;
        // SAFETY: `at` is a page of our reserved range that no other HeaderPage holds (taken
        // from the free list under its lock); MAP_FIXED replaces only that page.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            r.free.lock().unwrap_or_else(|e| e.into_inner()).1.push(index);
            return None;
        }
        Some(HeaderPage { index, at: at as *const u8 })
    }

    fn u64_at(&self, off: usize) -> u64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= crate::layout::HEADER_SIZE);
        // SAFETY: in the mapped page and 8-aligned; the writer stores these words atomically;
        // a truncated file reads zeros (see the module docs), never faults the process.
        // Acquire pairs with the writer's Release stores of the cursor and heartbeat.
        unsafe { (*(self.at.add(off) as *const AtomicU64)).load(Ordering::Acquire) }
    }

    fn u32_at(&self, off: usize) -> u32 {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= crate::layout::HEADER_SIZE);
        // SAFETY: as in `u64_at`.
        unsafe { (*(self.at.add(off) as *const AtomicU32)).load(Ordering::Acquire) }
    }

    /// The event cursor as it is now (a hint: see the module docs).
    pub fn cursor(&self) -> u64 {
        self.u64_at(hdr::CURSOR)
    }

    /// The cursor, heartbeat and state as they are now (a hint: see the module docs).
    pub fn words(&self) -> Words {
        Words {
            cursor: self.u64_at(hdr::CURSOR),
            heartbeat_ns: self.u64_at(hdr::HEARTBEAT_NS),
            state: self.u32_at(hdr::STATE),
        }
    }
}

/// A page's cursor for a poll loop over many rings: the mapped word's address kept next to
/// the page that keeps it mapped, so each poll touches only the mapped word, not also the
/// page's own (heap-allocated, scattered) [`HeaderPage`]. At 1,000 rings polled every 5 ms
/// that is one cache miss per ring instead of two.
#[derive(Debug)]
pub struct CursorWatch {
    cursor: *const AtomicU64,
    _page: std::sync::Arc<HeaderPage>,
}

// SAFETY: `cursor` points into the page `_page` keeps mapped; it is only loaded atomically.
unsafe impl Send for CursorWatch {}
// SAFETY: as above: shared access is atomic loads only.
unsafe impl Sync for CursorWatch {}

impl CursorWatch {
    /// Watches `page`'s cursor (and keeps the page mapped while it does).
    pub fn new(page: std::sync::Arc<HeaderPage>) -> CursorWatch {
        // SAFETY: CURSOR is inside the header page (checked in `u64_at` too) and 8-aligned.
        let cursor = unsafe { page.at.add(hdr::CURSOR) } as *const AtomicU64;
        CursorWatch { cursor, _page: page }
    }

    /// The event cursor as it is now: [`HeaderPage::cursor`] (a hint: see the module docs).
    pub fn cursor(&self) -> u64 {
        // SAFETY: the word is in the page `_page` keeps mapped (a truncated file reads zeros,
        // never faults: see the module docs); Acquire pairs with the writer's Release store.
        unsafe { (*self.cursor).load(Ordering::Acquire) }
    }
}

impl Drop for HeaderPage {
    fn drop(&mut self) {
        let page = PAGE.load(Ordering::Relaxed);
        // SAFETY: our own page of the reserved range; it goes back to an inaccessible
        // reservation before its index is handed out again.
        let p = unsafe {
            libc::mmap(
                self.at as *mut libc::c_void,
                page,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            if let Some(r) = region() {
                r.free.lock().unwrap_or_else(|e| e.into_inner()).1.push(self.index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{Identity, Writer};
    use crate::Ring;

    #[test]
    fn words_follow_the_writer_and_a_truncated_file_reads_zeros_not_sigbus() {
        let d = tempfile::tempdir().unwrap();
        let id = Identity { pid: 1, start_ns: 1, interval_ns: 1, ..Identity::default() };
        let w = Writer::create(&d.path().join("t.ring"), 1024, &id).unwrap();
        let r = Ring::open(w.path()).unwrap();
        let p = std::sync::Arc::new(r.header_page().expect("mapped"));
        let watch = CursorWatch::new(p.clone());
        assert_eq!((p.words().cursor, watch.cursor()), (0, 0));
        w.emit(&crate::Event::VmInit);
        w.heartbeat(77);
        assert_eq!((p.words().cursor, p.words().heartbeat_ns, watch.cursor()), (1, 77, 1));
        // Truncated to nothing under the mapping: the page reads zeros, the pread path errs.
        std::fs::OpenOptions::new().write(true).open(w.path()).unwrap().set_len(0).unwrap();
        assert_eq!(p.words(), Words::default());
        assert_eq!(watch.cursor(), 0);
        drop(watch);
        assert!(matches!(r.cursor(), Err(crate::ReadError::Truncated { .. })));
        // Pages are reused once dropped.
        drop(p);
        let again = Ring::open(w.path());
        assert!(again.is_err(), "an empty file is no ring");
    }
}

//! Wakes the in-VM monitor thread when a stop-the-world collection ends (`gc=poll`).
//!
//! The JVMTI GarbageCollectionFinish callback runs inside the pause, where no JNI is allowed:
//! it bumps [`FINISHED`]. The monitor thread then reads the collection's details through the
//! MXBeans, outside the pause, at a fraction of the cost of a JMX notification.
//!
//! How the monitor learns of a finish adapts to the collection rate. While collections come
//! often, it naps and checks the count (no wake-up from the pause: waking a sleeping thread is
//! a system call that cost about 10 µs of pause time, measured in `bench/` section 2). A nap
//! lasts half the mean interval between finishes, between [`NAP_MIN`] and [`NAP_MAX`]
//! ([`nap_for`]): each wake-up of a napping thread costs it 20–75 µs of CPU on the bench VM, so
//! waking once per half interval, not every 5 ms, cut the monitor thread's CPU by 68 % at 11
//! collections a second and by 14 % at 60 (bench/README.md, "Issue 11, fourth round"), and it
//! still reads every collection that follows the previous one by half the mean interval or
//! more. After [`QUIET_NAPS`] naps with no collection it sleeps until its next tick and asks to
//! be woken: the first collection after a quiet spell then pays one `FUTEX_WAKE` (non-blocking:
//! no lock, no allocation), and the naps start again from [`NAP_MIN`], so a burst after a quiet
//! spell is read collection by collection. `gc-poll=DURATION` replaces the adaptive nap with a
//! fixed one ([`set_fixed_nap`]): fewer wake-ups, and the collections in between are only
//! counted (`jvm.gc.coalesced`).
//!
//! The callback also copies the collection's cause from hsperfdata (`sun.gc.cause`, still set
//! when the finish event is posted) into a small seqlock ring keyed by the finish count, so the
//! monitor reads the cause of *that* collection even when another one has started since.
//!
//! Safe inside a GC callback: [`started`] (one atomic store) and [`finished`] (atomics, a
//! 64-byte copy and one `futex` wake).

use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest cause kept (bytes; HotSpot's cause strings are shorter).
const CAUSE_WORDS: usize = 8;
/// Finishes whose cause is kept.
const SLOTS: usize = 16;

/// One finish's cause: `seq` is the finish count it belongs to, `u32::MAX` while written.
struct Slot {
    seq: AtomicU32,
    words: [AtomicU64; CAUSE_WORDS],
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise the static array
const EMPTY: Slot = Slot { seq: AtomicU32::new(u32::MAX), words: [const { AtomicU64::new(0) }; CAUSE_WORDS] };
static CAUSES: [Slot; SLOTS] = [EMPTY; SLOTS];
/// Where `sun.gc.cause` lives (a read-only mapping of hsperfdata), or null.
static CAUSE_AT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CAUSE_LEN: AtomicUsize = AtomicUsize::new(0);
/// Where `sun.gc.lastCause` lives, or null.
static LAST_CAUSE_AT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static LAST_CAUSE_LEN: AtomicUsize = AtomicUsize::new(0);

/// Sets where the callback reads the cause from (once, at VM init or attach, before the monitor
/// starts):
/// `sun.gc.cause` and `sun.gc.lastCause`. G1 posts the finish event while the collection's
/// cause is still set; Serial and Parallel post it after HotSpot restored `No GC`, when the
/// collection's cause has moved to `lastCause`.
///
/// # Safety
/// Both ranges must stay readable for the life of the process.
pub unsafe fn set_cause_source(cause: (*const u8, usize), last: (*const u8, usize)) {
    CAUSE_LEN.store(cause.1, Ordering::Relaxed);
    LAST_CAUSE_LEN.store(last.1, Ordering::Relaxed);
    // Release: a callback that sees a pointer sees its length.
    LAST_CAUSE_AT.store(last.0.cast_mut(), Ordering::Release);
    CAUSE_AT.store(cause.0.cast_mut(), Ordering::Release);
}

/// Reads byte `k` of a perf string, 0 past its end.
///
/// # Safety
/// `at..at + len` must be readable.
unsafe fn perf_byte(at: *const u8, len: usize, k: usize) -> u8 {
    if k < len {
        // SAFETY: in bounds per the contract; volatile, since the JVM writes that memory.
        unsafe { at.add(k).read_volatile() }
    } else {
        0
    }
}

/// Stop-the-world collections finished so far (wraps). The futex word.
static FINISHED: AtomicU32 = AtomicU32::new(0);
/// 1 while the monitor thread is (about to be) asleep in [`wait`] and wants a wake-up.
static WAITING: AtomicU32 = AtomicU32::new(0);
/// Set at VM death ([`stop`]): every wait returns at once from then on.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// 1 while the monitor thread is (about to be) inside the futex wait of [`nap`], for [`stop`].
static IN_FUTEX: AtomicU32 = AtomicU32::new(0);
/// How many times (100 µs apart) [`stop`] wakes a thread that has not left its wait yet: a
/// waiter preempted between its check of [`STOPPING`] and its futex call sleeps only once it
/// runs again, so this outlasts a few scheduler slices of a loaded machine (at most 50 ms, not
/// HotSpot's 300).
const STOP_TRIES: u32 = 500;

/// At VM death: ends the monitor thread's wait, now and for good, so that it leaves native
/// code. HotSpot's exit waits, in 10 ms steps and for up to 300 ms, until no thread is in
/// native code (`VM_Exit::wait_for_threads_in_native_to_block`, JDK 11 to 25): a monitor asleep
/// here until its next tick held every JVM's exit back by about 310 ms (bench/README.md, "Issue
/// 11, fourteenth round"). Wakes the waiter until it is out, at most [`STOP_TRIES`] times 100 µs:
/// it may have checked [`STOPPING`] just before this set it, and not be in the futex yet (the
/// futex word is the collection count, which this must not change).
pub fn stop() {
    // SeqCst on both sides (here: store STOPPING, then load IN_FUTEX; in `nap`: store
    // IN_FUTEX, then load STOPPING), the Dekker pattern of `finished`: either the waiter sees
    // STOPPING and does not sleep, or this sees it inside and wakes it until it is out.
    STOPPING.store(true, Ordering::SeqCst);
    for _ in 0..STOP_TRIES {
        wake_waiters(i32::MAX);
        if IN_FUTEX.load(Ordering::SeqCst) == 0 {
            return;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Wakes up to `n` threads asleep on [`FINISHED`] in [`nap`]. One `FUTEX_WAKE`: no lock, no
/// allocation, never blocks, so [`finished`] may call it inside the pause.
fn wake_waiters(n: i32) {
    // SAFETY: FUTEX_WAKE on a valid, static, aligned u32; it never blocks.
    unsafe {
        libc::syscall(libc::SYS_futex, FINISHED.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, n);
    }
}

/// The shortest nap while collections come often (and the first after a quiet spell).
pub const NAP_MIN: Duration = Duration::from_millis(5);
/// The longest nap while collections come often.
pub const NAP_MAX: Duration = Duration::from_millis(50);
/// Naps without a collection before the monitor sleeps until woken.
pub const QUIET_NAPS: u32 = 20;

/// A fixed nap (`gc-poll=DURATION`), in ms; 0: [`nap_for`] the mean interval (`gc-poll=auto`).
static FIXED_NAP_MS: AtomicU32 = AtomicU32::new(0);

/// Sets the nap for `gc-poll=` (once, at VM init or attach, before the monitor starts): `None`
/// for `auto`.
pub fn set_fixed_nap(nap: Option<Duration>) {
    let ms = nap.map_or(0, |d| d.as_millis().clamp(1, u32::MAX as u128) as u32);
    // Relaxed: a setting read by the monitor thread, which the agent starts after this.
    FIXED_NAP_MS.store(ms, Ordering::Relaxed);
}

/// The monitor thread's pacing. Only [`wait`] (the monitor thread) touches it, never while
/// asleep: the mutex is not contended and never taken in a GC callback.
struct Pace {
    /// Naps in a row that saw no collection.
    quiet: u32,
    /// When the count was last seen to move.
    last_move: Option<Instant>,
    /// Mean interval between finishes, as the monitor sees them; `None` after a quiet spell.
    interval: Option<Duration>,
}

static PACE: Mutex<Pace> = Mutex::new(Pace { quiet: 0, last_move: None, interval: None });

/// How long to nap while collections come every `interval` (`None`: not known yet): half of
/// it, so a collection that follows the previous one by half the mean or more is read before
/// the next one ends.
pub fn nap_for(interval: Option<Duration>) -> Duration {
    interval.map_or(NAP_MIN, |i| (i / 2).clamp(NAP_MIN, NAP_MAX))
}

/// The mean interval after one more observation (`sample`: time between two moves of the
/// count, divided by the finishes in between). It follows a shorter interval at once (a
/// burst must not find the monitor asleep) and a longer one by a quarter at a time.
pub fn next_interval(mean: Option<Duration>, sample: Duration) -> Duration {
    match mean {
        Some(m) if sample > m => (m * 3 + sample) / 4,
        _ => sample,
    }
}

/// True from a GC-start callback to the next GC-finish callback: a stop-the-world pause is on.
static IN_PAUSE: AtomicBool = AtomicBool::new(false);

/// Called by the GC-start callback.
pub fn started() {
    // Relaxed: a hint for [`wait`], which only decides with it whether to nap again.
    IN_PAUSE.store(true, Ordering::Relaxed);
}

/// Called by the GC-finish callback.
pub fn finished() {
    IN_PAUSE.store(false, Ordering::Relaxed);
    let n = FINISHED.load(Ordering::Relaxed).wrapping_add(1);
    let mut at = CAUSE_AT.load(Ordering::Acquire).cast_const();
    let mut len = CAUSE_LEN.load(Ordering::Relaxed);
    let last = LAST_CAUSE_AT.load(Ordering::Acquire).cast_const();
    let no_gc = |k: usize| {
        // SAFETY: set_cause_source's contract (`at` is non-null when this runs).
        unsafe { perf_byte(at, len, k) == b"No GC\0"[k] }
    };
    if !at.is_null() && !last.is_null() && (0..6).all(no_gc) {
        at = last;
        len = LAST_CAUSE_LEN.load(Ordering::Relaxed);
    }
    if !at.is_null() {
        let slot = &CAUSES[n as usize % SLOTS];
        // Seqlock write (one writer: finish callbacks never overlap): mark the slot busy,
        // copy, then publish the finish count with Release.
        slot.seq.store(u32::MAX, Ordering::Relaxed);
        fence(Ordering::Release);
        let len = len.min(CAUSE_WORDS * 8);
        for (i, w) in slot.words.iter().enumerate() {
            let mut b = [0u8; 8];
            for (j, byte) in b.iter_mut().enumerate() {
                // SAFETY: set_cause_source's contract.
                *byte = unsafe { perf_byte(at, len, i * 8 + j) };
            }
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        slot.seq.store(n, Ordering::Release);
    }
    // SeqCst on both sides (here: increment, then load WAITING; in `wait`: store WAITING, then
    // load FINISHED) is the Dekker pattern: at least one side sees the other's write, so
    // either the waiter sees the new count and does not sleep, or we see it waiting and wake
    // it. The futex itself re-checks the count, closing the gap between its load and sleep.
    FINISHED.store(n, Ordering::SeqCst);
    if WAITING.load(Ordering::SeqCst) != 0 {
        wake_waiters(1);
    }
}

/// The cause of finish number `n` (1-based), if it is still kept and was read.
pub fn cause(n: u32) -> Option<String> {
    let slot = &CAUSES[n as usize % SLOTS];
    // Seqlock read: Acquire pairs with the writer's Release; re-check after the copy.
    if slot.seq.load(Ordering::Acquire) != n {
        return None;
    }
    let mut bytes = Vec::with_capacity(CAUSE_WORDS * 8);
    for w in &slot.words {
        bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    fence(Ordering::Acquire);
    if slot.seq.load(Ordering::Relaxed) != n {
        return None;
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// Collections finished so far.
pub fn count() -> u32 {
    FINISHED.load(Ordering::SeqCst)
}

/// Sleeps until the count differs from `seen` or `timeout` passes (naps of [`nap_for`] the
/// mean interval while collections come often, or of the fixed `gc-poll=` period; see the
/// module docs); returns the count. A zero `timeout` just reads the count. For one waiter (the
/// monitor thread).
///
/// A nap that ends with no collection naps again here, in native code, rather than returning
/// to Java, which costs the monitor thread a JNI transition and a turn of its loop — unless a
/// pause is on (and the nap is not fixed): then it returns, and the return blocks until the
/// pause's safepoint ends, so the collection is read right after it (another nap here would
/// read it up to a nap later, and let more collections be told only as the later of two).
/// After [`stop`] it returns at once.
pub fn wait(seen: u32, timeout: Duration) -> u32 {
    if timeout.is_zero() {
        return FINISHED.load(Ordering::SeqCst);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let now = nap(seen, deadline.saturating_duration_since(Instant::now()));
        // With a fixed nap the next nap lasts its full length anyway: returning to Java during
        // a pause would only block the thread at the safepoint.
        let pause = IN_PAUSE.load(Ordering::Relaxed) && FIXED_NAP_MS.load(Ordering::Relaxed) == 0;
        if now != seen || pause || STOPPING.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return now;
        }
    }
}

/// One nap of [`wait`]: until the count differs from `seen`, `timeout` passes, or (while
/// collections come often) the nap ends.
fn nap(seen: u32, timeout: Duration) -> u32 {
    if timeout.is_zero() {
        return FINISHED.load(Ordering::SeqCst);
    }
    let lock_pace = || PACE.lock().unwrap_or_else(|e| e.into_inner());
    let fixed = FIXED_NAP_MS.load(Ordering::Relaxed);
    let (napping, length) = {
        let p = lock_pace();
        let length = if fixed > 0 { Duration::from_millis(fixed.into()) } else { nap_for(p.interval) };
        (p.quiet < QUIET_NAPS, length)
    };
    let timeout = if napping { timeout.min(length) } else { timeout };
    if !napping {
        WAITING.store(1, Ordering::SeqCst);
    }
    // A fixed nap (`gc-poll=`) is never cut short: it waits on the count as it is now, so a
    // collection that finished while the monitor read does not end it at once (the count is
    // compared with `seen` after it). Otherwise a nap ends at once when the count moved.
    let word = if napping && fixed > 0 { FINISHED.load(Ordering::SeqCst) } else { seen };
    IN_FUTEX.store(1, Ordering::SeqCst);
    if !STOPPING.load(Ordering::SeqCst) && FINISHED.load(Ordering::SeqCst) == word {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT on a valid static u32 with a valid relative timeout; the kernel
        // returns at once (EAGAIN) when the word no longer equals `word`. EINTR and ETIMEDOUT
        // just return: the caller re-reads the count.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                FINISHED.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                word,
                &ts as *const libc::timespec,
            );
        }
    }
    IN_FUTEX.store(0, Ordering::SeqCst);
    WAITING.store(0, Ordering::SeqCst);
    let now = FINISHED.load(Ordering::SeqCst);
    let mut pace = lock_pace();
    if now != seen {
        let at = Instant::now();
        pace.interval = match pace.last_move {
            // Woken from a quiet spell: start again from the shortest nap.
            _ if !napping => None,
            Some(last) => Some(next_interval(pace.interval, (at - last) / now.wrapping_sub(seen).max(1))),
            None => None,
        };
        pace.last_move = Some(at);
        pace.quiet = 0;
    } else if napping {
        pace.quiet += 1;
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naps_last_half_the_mean_interval_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(nap_for(None), NAP_MIN, "nothing known yet: the shortest nap");
        assert_eq!(nap_for(Some(ms(16))), ms(8), "60 collections a second");
        assert_eq!(nap_for(Some(ms(2))), NAP_MIN);
        assert_eq!(nap_for(Some(ms(1000))), NAP_MAX);
        // A shorter interval is followed at once, a longer one a quarter at a time.
        assert_eq!(next_interval(None, ms(40)), ms(40));
        assert_eq!(next_interval(Some(ms(40)), ms(4)), ms(4));
        assert_eq!(next_interval(Some(ms(4)), ms(40)), ms(13));
        let mut mean = Some(ms(4));
        for _ in 0..30 {
            mean = Some(next_interval(mean, ms(40)));
        }
        assert!(mean.unwrap() > ms(39) && mean.unwrap() <= ms(40), "converges: {mean:?}");
    }

    #[test]
    fn a_finish_keeps_its_cause_and_wakes_the_waiter() {
        static CAUSE: [u8; 16] = *b"System.gc()\0\0\0\0\0";
        static NO_GC: [u8; 8] = *b"No GC\0\0\0";
        static LAST: [u8; 24] = *b"Allocation Failure\0\0\0\0\0\0";
        // SAFETY: statics, readable forever.
        unsafe { set_cause_source((CAUSE.as_ptr(), CAUSE.len()), (LAST.as_ptr(), LAST.len())) };
        finished();
        let n = count();
        assert_eq!(cause(n).as_deref(), Some("System.gc()"));
        // The cause already restored to "No GC": the collection's cause is the last one.
        // SAFETY: as above.
        unsafe { set_cause_source((NO_GC.as_ptr(), NO_GC.len()), (LAST.as_ptr(), LAST.len())) };
        finished();
        assert_eq!(cause(count()).as_deref(), Some("Allocation Failure"));
        // SAFETY: as above.
        unsafe { set_cause_source((CAUSE.as_ptr(), CAUSE.len()), (LAST.as_ptr(), LAST.len())) };
        for _ in 0..SLOTS {
            finished();
        }
        assert_eq!(cause(n), None, "overwritten by a later finish");

        // One test: the statics are shared, and tests run in parallel.
        let seen = count();
        // Nothing happens: the waiter naps (again and again, in one call) until the deadline.
        assert_eq!(wait(seen, Duration::from_millis(20)), seen);
        assert_eq!(wait(seen, Duration::ZERO), seen);
        // While a pause is on, a nap that ends returns at once, with the same count.
        started();
        assert_eq!(wait(seen, Duration::from_secs(60)), seen);
        IN_PAUSE.store(false, Ordering::Relaxed);
        // After QUIET_NAPS naps without a collection the waiter sleeps until a finish wakes it.
        let waiter = std::thread::spawn(move || wait(seen, Duration::from_secs(60)));
        // Wait until the waiter is (about to be) asleep, then finish a collection.
        while WAITING.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        finished();
        assert_eq!(waiter.join().unwrap(), seen.wrapping_add(1));
        // A stale `seen` returns at once.
        assert_eq!(wait(seen, Duration::from_secs(60)), seen.wrapping_add(1));

        // At VM death `stop` wakes a waiter asleep until its deadline (after QUIET_NAPS naps
        // without a collection), and every later wait returns at once (last here: it is for
        // good).
        let now = count();
        let asked = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            wait(now, Duration::from_secs(60))
        });
        let tid = rx.recv().unwrap();
        let sleeping = || {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
            stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) == Some("S")
        };
        while WAITING.load(Ordering::SeqCst) == 0 || !sleeping() {
            std::thread::yield_now();
        }
        stop();
        assert_eq!(waiter.join().unwrap(), now);
        assert_eq!(wait(now, Duration::from_secs(60)), now);
        assert!(asked.elapsed() < Duration::from_secs(30), "woken by stop, not by the deadline");
    }
}

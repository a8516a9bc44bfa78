//! The stacks region (format v2): the latest capture of every thread's name, state, the
//! monitor it waits for (and that monitor's owner) and its top frames, so a JVM that hung and
//! was then killed still tells what its threads were doing.
//!
//! Two buffers written alternately under a seqlock, as the snapshot is ([`crate::layout::stk`]):
//! a writer that dies half-way leaves the previous capture whole. The body:
//!
//! ```text
//! 0   time_ns u64        8  duration_ns u64 (the capture's own cost)
//! 16  reason u32         20 total_threads u32   24 strings u32   28 threads u32
//! 32  strings: len u16, UTF-8 bytes ...            (method, thread, class names, interned)
//!     threads: name u32, lock u32, owner u32, state u16, frames u16, frames × (method u32, line i32)
//! ```
//!
//! String references are indexes into the string table; [`NONE`] means none. A capture that
//! does not fit its buffer keeps the threads that fit and says how many there were in all.

/// No string (no lock, no owner).
pub const NONE: u32 = u32::MAX;
/// Frames kept per thread.
pub const MAX_FRAMES: usize = 32;
/// Longest string kept, bytes.
pub const MAX_STRING: usize = 512;

/// Why a capture was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The periodic capture (`stacks=` interval).
    Periodic,
    /// A data dump request: SIGQUIT, sent by an operator, `POST /api/v1/jvms/{id}/stacks` or
    /// the controller's diagnose step.
    DumpRequest,
    /// A value this version does not know.
    Other(u32),
}

impl Reason {
    fn code(self) -> u32 {
        match self {
            Reason::Periodic => 1,
            Reason::DumpRequest => 2,
            Reason::Other(c) => c,
        }
    }
    fn from_code(c: u32) -> Reason {
        match c {
            1 => Reason::Periodic,
            2 => Reason::DumpRequest,
            c => Reason::Other(c),
        }
    }
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Periodic => "periodic",
            Reason::DumpRequest => "dump_request",
            Reason::Other(_) => "unknown",
        }
    }
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// `pkg.Class.method`.
    pub method: String,
    /// Source line, or -1 when unknown (native, no line table).
    pub line: i32,
}

/// One thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadStack {
    /// Thread name.
    pub name: String,
    /// State, indexed like [`crate::snapshot::THREAD_STATES`] (6 and up: unknown).
    pub state: u16,
    /// Class of the monitor the thread waits to enter, if any.
    pub lock: Option<String>,
    /// Name of the thread owning that monitor, if known.
    pub owner: Option<String>,
    /// Top frames, innermost first.
    pub frames: Vec<Frame>,
}

impl ThreadStack {
    /// The state's name.
    pub fn state_name(&self) -> &'static str {
        crate::snapshot::THREAD_STATES.get(self.state as usize).copied().unwrap_or("unknown")
    }
}

/// One capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// When, ns since the Unix epoch.
    pub time_ns: u64,
    /// What the capture cost the agent, ns.
    pub duration_ns: u64,
    /// Why it was taken.
    pub reason: Reason,
    /// Threads the JVM had; more than `threads.len()` when the buffer was full.
    pub total_threads: u32,
    /// The threads kept.
    pub threads: Vec<ThreadStack>,
}

/// Builds a capture's body within a byte budget, interning strings.
#[derive(Debug)]
pub struct Builder {
    budget: usize,
    strings: Vec<String>,
    index: std::collections::HashMap<String, u32>,
    string_bytes: usize,
    threads: Vec<u8>,
    kept: u32,
    total: u32,
}

const FIXED: usize = 32;

fn clip(s: &str) -> &str {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Builder {
    /// A builder whose body will not exceed `budget` bytes.
    pub fn new(budget: usize) -> Builder {
        Builder {
            budget,
            strings: Vec::new(),
            index: Default::default(),
            string_bytes: 0,
            threads: Vec::new(),
            kept: 0,
            total: 0,
        }
    }

    fn size(&self) -> usize {
        FIXED + self.string_bytes + self.threads.len()
    }

    fn intern(&mut self, s: &str) -> u32 {
        let s = clip(s);
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        self.string_bytes += 2 + s.len();
        i
    }

    /// Adds a thread (frames beyond [`MAX_FRAMES`] are dropped). Returns false, and keeps
    /// nothing of it, when it does not fit the budget; it still counts in the total.
    pub fn thread<'a>(
        &mut self,
        name: &str,
        state: u16,
        lock: Option<&str>,
        owner: Option<&str>,
        frames: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> bool {
        self.total += 1;
        let (strings_before, bytes_before, threads_before) =
            (self.strings.len(), self.string_bytes, self.threads.len());
        let name = self.intern(name);
        let lock = lock.map_or(NONE, |l| self.intern(l));
        let owner = owner.map_or(NONE, |o| self.intern(o));
        let frames: Vec<(u32, i32)> =
            frames.into_iter().take(MAX_FRAMES).map(|(m, line)| (self.intern(m), line)).collect();
        for v in [name, lock, owner] {
            self.threads.extend_from_slice(&v.to_le_bytes());
        }
        self.threads.extend_from_slice(&state.to_le_bytes());
        self.threads.extend_from_slice(&(frames.len() as u16).to_le_bytes());
        for (m, line) in frames {
            self.threads.extend_from_slice(&m.to_le_bytes());
            self.threads.extend_from_slice(&line.to_le_bytes());
        }
        if self.size() > self.budget {
            for s in self.strings.drain(strings_before..) {
                self.index.remove(&s);
            }
            self.string_bytes = bytes_before;
            self.threads.truncate(threads_before);
            return false;
        }
        self.kept += 1;
        true
    }

    /// The body.
    pub fn finish(self, time_ns: u64, duration_ns: u64, reason: Reason) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.size());
        b.extend_from_slice(&time_ns.to_le_bytes());
        b.extend_from_slice(&duration_ns.to_le_bytes());
        b.extend_from_slice(&reason.code().to_le_bytes());
        b.extend_from_slice(&self.total.to_le_bytes());
        b.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.kept.to_le_bytes());
        for s in &self.strings {
            b.extend_from_slice(&(s.len() as u16).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        b.extend_from_slice(&self.threads);
        b
    }
}

/// Why a body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt stacks capture: {0}")]
pub struct StacksError(&'static str);

struct Input<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StacksError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or(StacksError("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, StacksError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, StacksError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, StacksError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
}

impl Capture {
    /// Decodes a body; every count and index is checked (a string index out of range
    /// reads as "?"), and nothing is allocated beyond what the body's length can hold.
    pub fn decode(body: &[u8]) -> Result<Capture, StacksError> {
        let mut i = Input { b: body, at: 0 };
        let time_ns = i.u64()?;
        let duration_ns = i.u64()?;
        let reason = Reason::from_code(i.u32()?);
        let total_threads = i.u32()?;
        let n_strings = i.u32()? as usize;
        let n_threads = i.u32()? as usize;
        // Each string takes ≥ 2 bytes, each thread ≥ 16: counts beyond that are lies.
        if n_strings > body.len() / 2 || n_threads > body.len() / 16 {
            return Err(StacksError("counts exceed the body"));
        }
        let mut strings = Vec::with_capacity(n_strings);
        for _ in 0..n_strings {
            let n = i.u16()? as usize;
            strings.push(String::from_utf8_lossy(i.take(n)?).into_owned());
        }
        let s = |x: u32| -> Option<String> {
            (x != NONE).then(|| strings.get(x as usize).cloned().unwrap_or_else(|| "?".into()))
        };
        let mut threads = Vec::with_capacity(n_threads);
        for _ in 0..n_threads {
            let name = s(i.u32()?).unwrap_or_else(|| "?".into());
            let lock = s(i.u32()?);
            let owner = s(i.u32()?);
            let state = i.u16()?;
            let n_frames = (i.u16()? as usize).min(MAX_FRAMES);
            let mut frames = Vec::with_capacity(n_frames);
            for _ in 0..n_frames {
                let method = s(i.u32()?).unwrap_or_else(|| "?".into());
                let line = i.u32()? as i32;
                frames.push(Frame { method, line });
            }
            threads.push(ThreadStack { name, state, lock, owner, frames });
        }
        Ok(Capture { time_ns, duration_ns, reason, total_threads: total_threads.max(threads.len() as u32), threads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_round_trips_and_a_full_budget_keeps_what_fits() {
        let mut b = Builder::new(200);
        assert!(b.thread("main", 3, None, None, [("Foo.bar", 12), ("Foo.main", 3)]));
        assert!(b.thread("Deadlock-A", 2, Some("java.lang.Object"), Some("Deadlock-B"), [("Deadlock.lock", 22)]));
        assert!(!b.thread("x".repeat(300).as_str(), 1, None, None, []), "over budget");
        let body = b.finish(5, 6, Reason::DumpRequest);
        assert!(body.len() <= 200);
        let c = Capture::decode(&body).unwrap();
        assert_eq!((c.time_ns, c.duration_ns, c.reason, c.total_threads), (5, 6, Reason::DumpRequest, 3));
        assert_eq!(c.threads.len(), 2);
        assert_eq!(c.threads[1].lock.as_deref(), Some("java.lang.Object"));
        assert_eq!(c.threads[1].owner.as_deref(), Some("Deadlock-B"));
        assert_eq!(c.threads[0].frames[1], Frame { method: "Foo.main".into(), line: 3 });
        assert_eq!(c.threads[1].state_name(), "blocked");
    }

    #[test]
    fn hostile_bodies_are_errors_not_panics() {
        let mut b = Builder::new(1 << 16);
        b.thread("t", 1, Some("L"), None, [("m", 1)]);
        let body = b.finish(1, 2, Reason::Periodic);
        for n in 0..body.len() {
            let _ = Capture::decode(&body[..n]);
        }
        let mut lie = body.clone();
        lie[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Capture::decode(&lie).is_err());
        let mut bad_index = body;
        let at = bad_index.len() - 8 - 16;
        bad_index[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
        assert_eq!(Capture::decode(&bad_index).unwrap().threads[0].name, "?");
    }
}

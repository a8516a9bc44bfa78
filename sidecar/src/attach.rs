//! `jvmwatch attach PID [OPTIONS]`: loads the agent into a running HotSpot JVM through the
//! JVM's dynamic attach mechanism, written here without `jcmd` or a JDK.
//!
//! The HotSpot protocol (Linux), as the JDK's own `VirtualMachineImpl` speaks it:
//! 1. if the JVM's attach listener is not up yet (no socket `/tmp/.java_pid<ns pid>` in the
//!    JVM's mount namespace), create `.attach_pid<ns pid>` in the JVM's working directory (or
//!    its `/tmp`) and send it SIGQUIT; the JVM sees the file and starts the listener instead of
//!    printing a thread dump;
//! 2. connect to the socket and send `1\0load\0<agent path>\0true\0<options>\0` (protocol 1,
//!    the `load` command, the path is absolute, the agent options);
//! 3. read the reply: the command's result code on the first line, then its output, which for
//!    `load` is the value `Agent_OnAttach` returned (`N`, or `return code: N` from JDK 21 on).
//!
//! Everything goes through `/proc/PID/root` and `/proc/PID/cwd`, and file names use the pid
//! in the JVM's own pid namespace (the last field of `NSpid` in `/proc/PID/status`), so a JVM
//! in a container can be attached from the host.
//!
//! The JVM accepts a connection only from its own effective user and group, or from root; it
//! drops anyone else without a word. So another user's JVM is refused here, at once, with a
//! message; root may go ahead with `--any-user`. SIGQUIT is sent only to a process that maps
//! HotSpot's `libjvm.so` and catches SIGQUIT (a JVM with `-Xrs`, or one still starting,
//! would die of it).

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Codes the agent's `Agent_OnAttach` returns (native/src/agent.rs `attach_code`).
pub mod code {
    /// Started.
    pub const OK: i64 = 0;
    /// Already loaded into this JVM.
    pub const ALREADY_LOADED: i64 = 101;
    /// A bad agent option.
    pub const BAD_OPTION: i64 = 102;
    /// The JVM is older than JDK 11.
    pub const JDK_TOO_OLD: i64 = 103;
    /// Could not start (ring file, JVMTI).
    pub const FAILED: i64 = 104;
    /// Internal error in the agent.
    pub const INTERNAL: i64 = 105;
}

/// Why an attach failed. Every message names the process and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No such process (or it is not visible).
    #[error("no process {pid}")]
    NoProcess {
        /// The pid.
        pid: u32,
    },
    /// Another user's JVM.
    #[error(
        "process {pid} runs as uid {owner}/gid {group}, you are uid {me}/gid {my_group}: a JVM accepts attaches only from its own user (run `jvmwatch attach` as that user{root_hint})"
    )]
    OtherUser {
        /// The pid.
        pid: u32,
        /// Its effective uid.
        owner: u32,
        /// Its effective gid.
        group: u32,
        /// Our effective uid.
        me: u32,
        /// Our effective gid.
        my_group: u32,
        /// Extra advice for root.
        root_hint: &'static str,
    },
    /// Not a HotSpot JVM.
    #[error("process {pid} ({name}) is not a HotSpot JVM (no libjvm.so in its memory map); nothing was sent to it")]
    NotHotSpot {
        /// The pid.
        pid: u32,
        /// Its command name.
        name: String,
    },
    /// `-XX:+DisableAttachMechanism` seen in the command line or environment.
    #[error(
        "JVM {pid} was started with -XX:+DisableAttachMechanism ({source_of_flag}): it accepts no attach; start it with -agentpath:<libjvmwatch.so> instead"
    )]
    Disabled {
        /// The pid.
        pid: u32,
        /// Where the flag was seen.
        source_of_flag: String,
    },
    /// The JVM does not catch SIGQUIT (`-Xrs`, or still starting): the signal would kill it.
    #[error("JVM {pid} does not handle SIGQUIT ({why}); not signalling it, since that would kill it")]
    NoSigquit {
        /// The pid.
        pid: u32,
        /// Why, as far as known.
        why: &'static str,
    },
    /// The attach socket never appeared.
    #[error(
        "JVM {pid} did not open its attach socket {socket} within {waited:?}: it was probably started with -XX:+DisableAttachMechanism (e.g. from an @argfile or a launcher), or it is hung"
    )]
    Timeout {
        /// The pid.
        pid: u32,
        /// The socket path looked for.
        socket: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The agent library is missing.
    #[error("agent library {0} not found (build it with `cargo build --release`, or pass --agent PATH)")]
    NoAgent(PathBuf),
    /// The options contain a NUL or a comma-free mess the protocol cannot carry.
    #[error("agent options must not contain NUL bytes")]
    BadOptions,
    /// The JVM's reply to `load` was not success.
    #[error("JVM {pid} refused to load the agent (attach result {code}): {message}")]
    LoadFailed {
        /// The pid.
        pid: u32,
        /// The attach command's result code.
        code: i64,
        /// The JVM's text.
        message: String,
    },
    /// A second attach.
    #[error("jvmwatch is already loaded in JVM {pid}; nothing changed")]
    AlreadyLoaded {
        /// The pid.
        pid: u32,
    },
    /// `Agent_OnAttach` returned an error code.
    #[error(
        "the agent did not start in JVM {pid}: {why} (the JVM's stderr has the details; the JVM runs on unchanged)"
    )]
    AgentFailed {
        /// The pid.
        pid: u32,
        /// The code explained.
        why: String,
    },
    /// Any I/O failure on the way.
    #[error("{what}: {err}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        err: std::io::Error,
    },
    /// A reply that is not the protocol.
    #[error("JVM {pid} gave an unexpected reply: {reply:?}")]
    BadReply {
        /// The pid.
        pid: u32,
        /// The reply text.
        reply: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AttachError {
    let what = what.into();
    move |err| AttachError::Io { what, err }
}

/// What is known about the target process from `/proc`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pid as we see it.
    pub pid: u32,
    /// The pid in the process's own (innermost) pid namespace.
    pub nspid: u32,
    /// Effective uid and gid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// `Name:` from status.
    pub name: String,
    /// Whether it catches SIGQUIT (`SigCgt` bit 3).
    pub catches_sigquit: bool,
}

/// Parses `/proc/PID/status` text.
pub fn parse_status(pid: u32, status: &str) -> Option<Target> {
    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
    let ids = |k: &str| -> Option<Vec<u32>> { field(k)?.split_whitespace().map(|x| x.parse().ok()).collect() };
    let uid = *ids("Uid:")?.get(1)?;
    let gid = *ids("Gid:")?.get(1)?;
    // NSpid: pids from the outermost to the innermost namespace; absent on old kernels.
    let nspid = ids("NSpid:").and_then(|v| v.last().copied()).unwrap_or(pid);
    let sigcgt = field("SigCgt:").and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0);
    Some(Target {
        pid,
        nspid,
        uid,
        gid,
        name: field("Name:").unwrap_or("?").to_string(),
        catches_sigquit: sigcgt & (1 << (libc::SIGQUIT - 1)) != 0,
    })
}

/// Where the JVM looks for `-XX:+DisableAttachMechanism`: the command line (NUL-separated
/// `/proc/PID/cmdline`) and the option variables of its environment. Returns where it was
/// seen, if it was (the last `±DisableAttachMechanism` wins, as in the JVM).
pub fn attach_disabled(cmdline: &[u8], environ: &[u8]) -> Option<String> {
    let mut seen = None;
    let mut scan = |words: &mut dyn Iterator<Item = &str>, from: &str| {
        for w in words {
            match w {
                "-XX:+DisableAttachMechanism" => seen = Some(from.to_string()),
                "-XX:-DisableAttachMechanism" => seen = None,
                _ => {}
            }
        }
    };
    let env = String::from_utf8_lossy(environ);
    for var in ["JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS"] {
        for entry in env.split('\0') {
            if let Some(v) = entry.strip_prefix(var).and_then(|r| r.strip_prefix('=')) {
                scan(&mut v.split_whitespace(), &format!("in {var}"));
            }
        }
    }
    let cmd = String::from_utf8_lossy(cmdline);
    scan(&mut cmd.split('\0'), "on its command line");
    seen
}

/// True when the command line asks for `-Xrs` (the JVM leaves SIGQUIT alone).
fn reduces_signals(cmdline: &[u8]) -> bool {
    cmdline.split(|&b| b == 0).any(|a| a == b"-Xrs")
}

/// The agent's reply, from the text after the attach result line: `N` (JDK 11–20) or
/// `return code: N` (JDK 21+).
pub fn agent_return_code(output: &str) -> Option<i64> {
    let line = output.lines().map(str::trim).find(|l| !l.is_empty())?;
    line.strip_prefix("return code:").unwrap_or(line).trim().parse().ok()
}

/// Splits a reply into the attach result code and the rest.
pub fn parse_reply(reply: &str) -> Option<(i64, &str)> {
    let (first, rest) = reply.split_once('\n').unwrap_or((reply, ""));
    Some((first.trim().parse().ok()?, rest))
}

/// The `load` request of protocol 1.
pub fn load_request(agent: &Path, options: &str) -> Result<Vec<u8>, AttachError> {
    use std::os::unix::ffi::OsStrExt;
    let path = agent.as_os_str().as_bytes();
    if options.as_bytes().contains(&0) || path.contains(&0) {
        return Err(AttachError::BadOptions);
    }
    let mut req = Vec::new();
    for part in [b"1".as_slice(), b"load", path, b"true", options.as_bytes()] {
        req.extend_from_slice(part);
        req.push(0);
    }
    Ok(req)
}

/// The default agent: what `jvmwatch agent-path` prints (`$JVMWATCH_AGENT`, else
/// `libjvmwatch.so` beside this executable or in `../lib`, a release bundle's layout).
pub fn default_agent() -> Result<PathBuf, AttachError> {
    crate::agentpath::agent_path().map_err(|e| {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|x| x.parent().map(|d| d.join("libjvmwatch.so")))
            .unwrap_or_else(|| PathBuf::from(e.to_string()));
        AttachError::NoAgent(beside)
    })
}

/// One attach request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The JVM's pid as we see it.
    pub pid: u32,
    /// Agent options (`dir=...,interval=...`), as for `-agentpath:...=`.
    pub options: String,
    /// The agent library (absolute).
    pub agent: PathBuf,
    /// How long to wait for the attach socket and for the reply.
    pub timeout: Duration,
    /// Root may attach to other users' JVMs.
    pub any_user: bool,
}

/// What a successful attach found.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The target as read from /proc.
    pub target: Target,
    /// The ring file the agent created (through `/proc/PID/root`), when it was found.
    pub ring: Option<PathBuf>,
}

/// Reads a `/proc/PID/...` file; `NoProcess` when the process is gone.
fn proc_read(pid: u32, what: &str) -> Result<Vec<u8>, AttachError> {
    std::fs::read(format!("/proc/{pid}/{what}")).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AttachError::NoProcess { pid },
        _ => AttachError::Io { what: format!("cannot read /proc/{pid}/{what}"), err: e },
    })
}

/// Checks that `pid` is a HotSpot JVM we may attach to; returns what /proc says about it.
pub fn check_target(pid: u32, any_user: bool) -> Result<Target, AttachError> {
    let status = String::from_utf8_lossy(&proc_read(pid, "status")?).into_owned();
    let t = parse_status(pid, &status).ok_or(AttachError::NoProcess { pid })?;
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    let (me, my_group) = unsafe { (libc::geteuid(), libc::getegid()) };
    let same = t.uid == me && t.gid == my_group;
    if !(same || me == 0 && any_user) {
        let root_hint = if me == 0 { ", or, as root, add --any-user" } else { "" };
        return Err(AttachError::OtherUser { pid, owner: t.uid, group: t.gid, me, my_group, root_hint });
    }
    let maps = proc_read(pid, "maps")?;
    let hotspot = maps.split(|&b| b == b'\n').any(|l| l.ends_with(b"/libjvm.so"));
    if !hotspot {
        return Err(AttachError::NotHotSpot { pid, name: t.name });
    }
    let cmdline = proc_read(pid, "cmdline")?;
    let environ = proc_read(pid, "environ").unwrap_or_default();
    if let Some(from) = attach_disabled(&cmdline, &environ) {
        return Err(AttachError::Disabled { pid, source_of_flag: from });
    }
    if reduces_signals(&cmdline) {
        return Err(AttachError::NoSigquit { pid, why: "started with -Xrs" });
    }
    Ok(t)
}

/// `/proc/PID/root/tmp/.java_pid<nspid>`: the attach listener's socket.
fn socket_path(t: &Target) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root/tmp/.java_pid{}", t.pid, t.nspid))
}

/// The socket's identity (device, inode), if it exists and belongs to the JVM's user (a
/// socket planted in /tmp by someone else is not the JVM's).
fn socket_id(t: &Target, path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::FileTypeExt;
    let m = std::fs::metadata(path).ok()?;
    (m.file_type().is_socket() && m.uid() == t.uid).then_some((m.dev(), m.ino()))
}

/// Creates the trigger file: in the JVM's working directory, else in its /tmp.
fn create_trigger(t: &Target) -> Result<PathBuf, AttachError> {
    let name = format!(".attach_pid{}", t.nspid);
    let mut last = None;
    for dir in [format!("/proc/{}/cwd", t.pid), format!("/proc/{}/root/tmp", t.pid)] {
        let p = Path::new(&dir).join(&name);
        match std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(&p) {
            Ok(_) => return Ok(p),
            Err(e) => last = Some(e),
        }
    }
    Err(AttachError::Io {
        what: format!("cannot create {name} in the working directory or /tmp of process {}", t.pid),
        err: last.unwrap_or_else(|| std::io::Error::other("no directory")),
    })
}

/// Makes the JVM start its attach listener, and waits (polling) for the socket.
fn start_listener(t: &Target, timeout: Duration) -> Result<PathBuf, AttachError> {
    let socket = socket_path(t);
    // A socket nobody listens on was left by a JVM that had this pid and was killed (pid 1 of
    // a restarted container, typically): the new listener replaces it with a new inode.
    let stale = match socket_id(t, &socket) {
        Some(_) if UnixStream::connect(&socket).is_ok() => return Ok(socket),
        other => other,
    };
    let end = Instant::now() + timeout;
    // A JVM that is still starting installs its SIGQUIT handler a little later: wait for it.
    let mut target = t.clone();
    while !target.catches_sigquit {
        if Instant::now() > end {
            return Err(AttachError::NoSigquit { pid: t.pid, why: "no SIGQUIT handler; -Xrs or still starting" });
        }
        std::thread::sleep(Duration::from_millis(20));
        let status = String::from_utf8_lossy(&proc_read(t.pid, "status")?).into_owned();
        target = parse_status(t.pid, &status).ok_or(AttachError::NoProcess { pid: t.pid })?;
    }
    let trigger = create_trigger(t)?;
    let result = (|| {
        // SAFETY: kill has no memory preconditions; the pid was checked to be a HotSpot JVM
        // of ours that catches SIGQUIT.
        if unsafe { libc::kill(t.pid as libc::pid_t, libc::SIGQUIT) } != 0 {
            return Err(AttachError::Io {
                what: format!("cannot signal process {}", t.pid),
                err: std::io::Error::last_os_error(),
            });
        }
        let start = Instant::now();
        loop {
            if socket_id(t, &socket).is_some_and(|id| Some(id) != stale) {
                return Ok(socket.clone());
            }
            if std::fs::metadata(format!("/proc/{}", t.pid)).is_err() {
                return Err(AttachError::NoProcess { pid: t.pid });
            }
            if Instant::now() > end {
                return Err(AttachError::Timeout { pid: t.pid, socket: socket.clone(), waited: start.elapsed() });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })();
    let _ = std::fs::remove_file(&trigger);
    result
}

/// Sends one command and reads the whole reply.
fn exchange(pid: u32, socket: &Path, request: &[u8], timeout: Duration) -> Result<String, AttachError> {
    let mut s = UnixStream::connect(socket).map_err(io(format!("cannot connect to {}", socket.display())))?;
    s.set_read_timeout(Some(timeout)).map_err(io("socket timeout"))?;
    s.set_write_timeout(Some(timeout)).map_err(io("socket timeout"))?;
    s.write_all(request).map_err(io(format!("cannot send the request to JVM {pid}")))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(io(format!("no reply from JVM {pid}")))?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// The agent's path as the JVM will open it. A JVM in another mount namespace (a container
/// seen from the host) may not see our file at our path: then the agent is copied into its
/// `/tmp` (through `/proc/PID/root`, owned by the JVM's user, mode 0644, written under a
/// temporary name and renamed) and that path is used. Same namespace: the path as it is.
pub fn visible_agent(t: &Target, agent: &Path) -> Result<PathBuf, AttachError> {
    use std::os::unix::fs::MetadataExt;
    let ns = |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/mnt")).map(|m| (m.dev(), m.ino())).ok();
    let ours = ns("self");
    if ours.is_some() && ours == ns(&t.pid.to_string()) {
        return Ok(agent.to_path_buf());
    }
    let same_file = |inside: &Path| {
        let there = Path::new(&format!("/proc/{}/root", t.pid)).join(inside.strip_prefix("/").unwrap_or(inside));
        match (std::fs::metadata(&there), std::fs::metadata(agent)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    };
    if same_file(agent) {
        return Ok(agent.to_path_buf());
    }
    let bytes = std::fs::read(agent).map_err(io(format!("cannot read {}", agent.display())))?;
    let name = format!("jvmwatch-agent-{}-{:x}.so", env!("CARGO_PKG_VERSION"), crc32fast::hash(&bytes));
    let inside = Path::new("/tmp").join(&name);
    let root_tmp = PathBuf::from(format!("/proc/{}/root/tmp", t.pid));
    let dest = root_tmp.join(&name);
    if !same_content(&dest, &bytes) {
        let tmp = root_tmp.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&tmp, &bytes).map_err(io(format!("cannot copy the agent to {}", dest.display())))?;
        let done = std::os::unix::fs::chown(&tmp, Some(t.uid), Some(t.gid))
            .and_then(|()| std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)))
            .and_then(|()| std::fs::rename(&tmp, &dest));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(format!("cannot copy the agent to {}", dest.display()))(e));
        }
    }
    Ok(inside)
}

fn same_content(p: &Path, bytes: &[u8]) -> bool {
    std::fs::read(p).is_ok_and(|b| b == bytes)
}

/// Loads the agent into the JVM `req.pid`.
pub fn attach(req: &Request) -> Result<Attached, AttachError> {
    if !req.agent.is_file() {
        return Err(AttachError::NoAgent(req.agent.clone()));
    }
    let agent = req.agent.canonicalize().map_err(io(format!("cannot resolve {}", req.agent.display())))?;
    let t = check_target(req.pid, req.any_user)?;
    let agent = visible_agent(&t, &agent)?;
    let request = load_request(&agent, &req.options)?;
    let since = jvmwatch_ring::now_ns();
    let socket = start_listener(&t, req.timeout)?;
    let reply = exchange(t.pid, &socket, &request, req.timeout)?;
    let (code, rest) = parse_reply(&reply).ok_or_else(|| AttachError::BadReply { pid: t.pid, reply: reply.clone() })?;
    if code != 0 {
        return Err(AttachError::LoadFailed { pid: t.pid, code, message: one_line(rest) });
    }
    let rc = agent_return_code(rest).ok_or_else(|| AttachError::BadReply { pid: t.pid, reply: reply.clone() })?;
    let why = match rc {
        code::OK => return Ok(Attached { ring: find_ring(&t, &req.options, since), target: t }),
        code::ALREADY_LOADED => return Err(AttachError::AlreadyLoaded { pid: t.pid }),
        code::BAD_OPTION => "an agent option is wrong".to_string(),
        code::JDK_TOO_OLD => "jvmwatch needs JDK 11 or newer".to_string(),
        code::FAILED => "it could not start (ring file or JVMTI)".to_string(),
        code::INTERNAL => "internal error".to_string(),
        // JNI_ERR (-1) and other codes: an Agent_OnAttach that is not jvmwatch's.
        other => format!("Agent_OnAttach returned {other}"),
    };
    Err(AttachError::AgentFailed { pid: t.pid, why })
}

fn one_line(s: &str) -> String {
    let s: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if s.is_empty() {
        "no message".into()
    } else {
        s.join("; ")
    }
}

/// The ring file the agent just created, seen through `/proc/PID/root`: `path=` if given,
/// else the newest attached ring of this JVM in `dir=` or the JVM user's default directory.
fn find_ring(t: &Target, options: &str, since_ns: u64) -> Option<PathBuf> {
    // Through /proc/PID/root unless the JVM shares our mount namespace (then the plain path
    // reads better and stays valid after the JVM is gone).
    let proc_root = PathBuf::from(format!("/proc/{}/root", t.pid));
    let ns = |p: &str| std::fs::read_link(p).ok();
    let same_root = ns(&format!("/proc/{}/ns/mnt", t.pid)).is_some_and(|m| Some(m) == ns("/proc/self/ns/mnt"))
        && std::fs::read_link(&proc_root).is_ok_and(|r| r == Path::new("/"));
    let root = if same_root { PathBuf::from("/") } else { proc_root };
    let cwd = PathBuf::from(format!("/proc/{}/cwd", t.pid));
    let opt = |k: &str| {
        options.split(',').find_map(|o| o.trim().strip_prefix(k)?.trim_start().strip_prefix('=').map(str::trim))
    };
    let inside = |p: &str| if p.starts_with('/') { root.join(p.trim_start_matches('/')) } else { cwd.join(p) };
    if let Some(p) = opt("path") {
        return Some(inside(p));
    }
    let dir = match opt("dir") {
        Some(d) => inside(d),
        None => {
            let env = std::fs::read(format!("/proc/{}/environ", t.pid)).unwrap_or_default();
            let env = String::from_utf8_lossy(&env).into_owned();
            match env.split('\0').find_map(|e| e.strip_prefix("JVMWATCH_DIR=")).filter(|d| !d.is_empty()) {
                Some(d) => inside(d),
                None => inside(&format!("/dev/shm/jvmwatch-{}", t.uid)),
            }
        }
    };
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(&dir).ok()?.flatten() {
        let p = e.path();
        if p.extension() != Some(std::ffi::OsStr::new("ring")) {
            continue;
        }
        let Ok(ring) = jvmwatch_ring::Ring::open(&p) else { continue };
        let h = ring.header();
        let newer = !matches!(&best, Some((s, _)) if *s >= h.start_ns);
        if h.pid == t.nspid && h.attached() && h.start_ns + 1_000_000_000 >= since_ns && newer {
            best = Some((h.start_ns, p));
        }
    }
    best.map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tjava\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4242\n\
        Uid:\t1000\t1001\t1001\t1001\nGid:\t2000\t2001\t2001\t2001\nNSpid:\t4242\t7\n\
        SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t2000000181005ccf\n";

    #[test]
    fn status_gives_namespace_pid_effective_ids_and_sigquit() {
        let t = parse_status(4242, STATUS).unwrap();
        assert_eq!((t.nspid, t.uid, t.gid, t.name.as_str()), (7, 1001, 2001, "java"));
        assert!(t.catches_sigquit, "0x...5ccf has bit 3 (SIGQUIT) set");
        let no_ns = STATUS.replace("NSpid:\t4242\t7\n", "").replace("5ccf", "5cc3");
        let t = parse_status(4242, &no_ns).unwrap();
        assert_eq!(t.nspid, 4242);
        assert!(!t.catches_sigquit);
        assert!(parse_status(1, "Name:\tx\n").is_none());
    }

    #[test]
    fn disable_attach_is_found_in_command_line_and_environment() {
        let cmd = b"java\0-XX:+DisableAttachMechanism\0-cp\0x\0Main\0";
        assert_eq!(attach_disabled(cmd, b"").as_deref(), Some("on its command line"));
        assert_eq!(attach_disabled(b"java\0-XX:+DisableAttachMechanism\0-XX:-DisableAttachMechanism\0", b""), None);
        let env = b"HOME=/\0JAVA_TOOL_OPTIONS=-Xmx1g -XX:+DisableAttachMechanism\0";
        assert_eq!(attach_disabled(b"java\0Main\0", env).as_deref(), Some("in JAVA_TOOL_OPTIONS"));
        // The command line comes after the environment, as in the JVM.
        assert_eq!(attach_disabled(b"java\0-XX:-DisableAttachMechanism\0", env), None);
        assert_eq!(attach_disabled(b"java\0Main\0-XX:+DisableAttachMechanismX\0", b""), None);
    }

    #[test]
    fn replies_of_every_jdk_are_understood() {
        assert_eq!(parse_reply("0\n0\n"), Some((0, "0\n")));
        assert_eq!(agent_return_code("0\n"), Some(0));
        assert_eq!(agent_return_code("return code: 101\n"), Some(101));
        assert_eq!(agent_return_code("return code: -1\n"), Some(-1));
        assert_eq!(parse_reply("-1\nCould not load\n"), Some((-1, "Could not load\n")));
        assert_eq!(parse_reply("garbage"), None);
        assert_eq!(agent_return_code(""), None);
    }

    #[test]
    fn the_load_request_is_protocol_1() {
        let r = load_request(Path::new("/a/libjvmwatch.so"), "dir=/x,interval=1s").unwrap();
        assert_eq!(r, b"1\0load\0/a/libjvmwatch.so\0true\0dir=/x,interval=1s\0");
        assert_eq!(load_request(Path::new("/a"), "").unwrap(), b"1\0load\0/a\0true\0\0");
        assert!(matches!(load_request(Path::new("/a"), "x\0y"), Err(AttachError::BadOptions)));
    }

    #[test]
    fn a_process_that_is_not_a_jvm_is_never_signalled() {
        // This test process is no JVM: it must be refused before any signal is sent.
        let err = check_target(std::process::id(), false).unwrap_err();
        assert!(matches!(err, AttachError::NotHotSpot { .. }), "{err}");
        assert!(err.to_string().contains("is not a HotSpot JVM"), "{err}");
        assert!(matches!(check_target(u32::MAX - 1, false), Err(AttachError::NoProcess { .. })));
    }
}

//! Process handles by pidfd: signals that cannot hit a reused pid, and waiting for a process
//! that is not our child (one adopted after a supervisor restart) without polling.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A pidfd for a running process.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// Opens a pidfd for `pid` (Linux ≥ 5.3). Fails if the process is gone.
    pub fn open(pid: u32) -> std::io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `sig`; false if the process is gone.
    pub fn signal(&self, sig: i32) -> bool {
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
                == 0
        }
    }

    /// Waits until the process ends or `limit` passes (None: forever); true if it ended.
    pub fn wait_exit(&self, limit: Option<Duration>) -> bool {
        let timeout = limit.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
        let mut p = libc::pollfd { fd: self.0.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        loop {
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut p, 1, timeout) };
            if rc < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return rc > 0;
        }
    }
}

/// `exited(N)`, `killed(SIGKILL)`, `signal(SIGSEGV)` … from a wait status.
pub fn describe(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exited({code})");
    }
    match status.signal() {
        Some(s) => format!("{}({})", if s == libc::SIGKILL { "killed" } else { "signal" }, signal_name(s)),
        None => "ended".into(),
    }
}

/// `SIGKILL`, `SIGSEGV`, … or the number.
pub fn signal_name(s: i32) -> String {
    match s {
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

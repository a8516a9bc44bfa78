//! Dynamic priority tuning (`[tuning]`, docs/usage.md): each cycle, every supervised JVM is
//! classified from its TCP sockets as network-serving or background; serving ones get one
//! nice step more priority, the others one step less, within `min_nice..=max_nice`. Only
//! `setpriority(2)` is used, never a real-time policy. Original nice values come back when
//! tuning is switched off (SIGHUP reload) and when the supervisor stops.
//!
//! The rule (pure, [`classify`]): a JVM is **serving** when one of its socket fds is a TCP
//! socket in LISTEN, or in ESTABLISHED while its read/write byte counters (`rchar` +
//! `wchar` of `/proc/PID/io`) grew since the previous cycle; otherwise it is **background**.

use std::collections::BTreeMap;

use jvmwatch_controller::{Action, Decision, Figure, TuningCfg};

/// The TCP state numbers of `/proc/net/tcp`.
const TCP_ESTABLISHED: u8 = 0x01;
const TCP_LISTEN: u8 = 0x0A;
/// CAP_SYS_NICE's bit in `CapEff`.
const CAP_SYS_NICE: u32 = 23;

/// What a JVM does on the network, as far as tuning cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It has a listening socket.
    Listening,
    /// It has an established connection and moved bytes since the last cycle.
    Talking,
    /// Neither.
    Background,
}

impl Role {
    /// Serving roles get more priority.
    pub fn serving(self) -> bool {
        self != Role::Background
    }

    fn why(self) -> &'static str {
        match self {
            Role::Listening => "network-serving (a listening TCP socket)",
            Role::Talking => "network-serving (an established TCP connection with traffic)",
            Role::Background => "background (no listening socket, no established connection with traffic)",
        }
    }
}

/// The role from the TCP states of a process's sockets and whether its I/O bytes grew.
pub fn classify(states: &[u8], io_grew: bool) -> Role {
    if states.contains(&TCP_LISTEN) {
        Role::Listening
    } else if io_grew && states.contains(&TCP_ESTABLISHED) {
        Role::Talking
    } else {
        Role::Background
    }
}

/// The next nice value, or None to leave it: serving goes one step down (more priority) to
/// no lower than `min` and only with `can_raise`; background goes one step up to no higher
/// than `max`. A value outside the range only ever moves towards it.
pub fn step(current: i32, serving: bool, can_raise: bool, min: i32, max: i32) -> Option<i32> {
    if serving {
        (can_raise && current > min).then(|| current - 1)
    } else {
        (current < max).then(|| current + 1)
    }
}

/// (socket inode, TCP state) of every line of a `/proc/PID/net/tcp` or `tcp6` file.
pub fn parse_net_tcp(text: &str) -> Vec<(u64, u8)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            Some((inode, state))
        })
        .collect()
}

/// The inode of a `socket:[INODE]` fd link.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The cumulative CPU times of the first line of `/proc/stat`: (busy, total) in ticks, where
/// idle and iowait are not busy.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest times are inside user/nice).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Host CPU utilisation in percent between two `/proc/stat` readings.
pub fn busy_percent(prev: (u64, u64), now: (u64, u64)) -> f64 {
    let total = now.1.saturating_sub(prev.1);
    if total == 0 {
        return 0.0;
    }
    now.0.saturating_sub(prev.0) as f64 * 100.0 / total as f64
}

/// Busy cycles in a row after one more cycle at `pct`; a streak that reaches `cycles` starts
/// over. Returns (new streak, the streak just reached `cycles`).
pub fn busy_streak(streak: u32, pct: f64, busy_percent: u32, cycles: u32) -> (u32, bool) {
    if pct < f64::from(busy_percent) {
        return (0, false);
    }
    let n = streak + 1;
    if n >= cycles {
        (0, true)
    } else {
        (n, false)
    }
}

/// Whether this process has CAP_SYS_NICE in its effective set.
pub fn has_cap_sys_nice() -> bool {
    std::fs::read_to_string("/proc/self/status").ok().is_some_and(|s| cap_in_status(&s, CAP_SYS_NICE))
}

/// Whether bit `cap` is set in the `CapEff` line of a `/proc/PID/status` text.
pub fn cap_in_status(status: &str, cap: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|bits| bits >> cap & 1 == 1)
}

/// The TCP states of `pid`'s sockets (fds matched by inode against its namespace's tables).
fn socket_states(pid: u32) -> std::io::Result<Vec<u8>> {
    let mut inodes = std::collections::HashSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        if let Some(i) = std::fs::read_link(e.path()).ok().and_then(|l| socket_inode(&l.to_string_lossy())) {
            inodes.insert(i);
        }
    }
    let mut states = Vec::new();
    for f in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
        states.extend(parse_net_tcp(&text).into_iter().filter(|(i, _)| inodes.contains(i)).map(|(_, s)| s));
    }
    Ok(states)
}

/// `rchar + wchar` of `/proc/PID/io` (None where it is not readable).
fn io_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let get = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
    Some(get("rchar:")? + get("wchar:")?)
}

/// The nice value of `pid` (field 19 of `/proc/PID/stat`: its main thread).
pub fn nice_of(pid: u32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].split_whitespace().nth(16)?.parse().ok()
}

/// Sets the nice value of every thread of `pid` (Linux nice values are per thread); returns
/// how many threads were set, or the first error.
fn renice(pid: u32, nice: i32) -> std::io::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        // SAFETY: setpriority takes plain integers; PRIO_PROCESS with a thread id sets that
        // thread's nice value.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            // A thread that ended meanwhile is no failure.
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        } else {
            n += 1;
        }
    }
    Ok(n)
}

/// A supervised JVM as tuning sees it.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its app.
    pub app: String,
    /// Instance id.
    pub instance: String,
    /// Process id.
    pub pid: u32,
}

/// What tuning remembers about one JVM.
#[derive(Debug)]
struct Tuned {
    pid: u32,
    app: String,
    /// Nice value when tuning first saw it.
    original: i32,
    /// `rchar + wchar` at the last cycle.
    io: Option<u64>,
}

/// The tuning state, owned by the controller.
#[derive(Debug, Default)]
pub struct Tuner {
    last_cycle_ms: Option<u64>,
    cpu: Option<(u64, u64)>,
    streak: u32,
    recent: Vec<f64>,
    tuned: BTreeMap<String, Tuned>,
    /// Raising is possible (CAP_SYS_NICE), as far as we know; checked on the first cycle.
    can_raise: Option<bool>,
    /// The supervisor is stopping: no more cycles.
    stopped: bool,
}

/// A decision tuning made, and the step to record with it (None: no step).
pub type Made = (Decision, Option<(&'static str, &'static str, String)>);

fn decision(at_ms: u64, rule: &str, app: &str, instance: Option<&str>, reason: String) -> Decision {
    Decision {
        at_ms,
        rule: rule.into(),
        app: app.into(),
        instance: instance.map(str::to_string),
        actions: Vec::new(),
        figures: Vec::new(),
        reason,
    }
}

impl Tuner {
    /// One controller tick: runs a cycle when one is due (tuning on), or restores the
    /// original nice values once tuning was switched off. Returns the decisions made.
    pub fn tick(&mut self, now_ms: u64, cfg: &TuningCfg, targets: &[Target]) -> Vec<Made> {
        if self.stopped {
            return Vec::new();
        }
        if !cfg.enabled {
            self.last_cycle_ms = None;
            self.cpu = None;
            self.streak = 0;
            return self.restore(now_ms, "tuning switched off");
        }
        if self.last_cycle_ms.is_some_and(|t| now_ms.saturating_sub(t) < cfg.cycle.as_millis() as u64) {
            return Vec::new();
        }
        self.last_cycle_ms = Some(now_ms);
        self.cycle(now_ms, cfg, targets)
    }

    fn cycle(&mut self, now_ms: u64, cfg: &TuningCfg, targets: &[Target]) -> Vec<Made> {
        let mut out = Vec::new();
        if self.can_raise.is_none() {
            let can = has_cap_sys_nice();
            self.can_raise = Some(can);
            if !can {
                out.push(no_raise(now_ms, "the process lacks CAP_SYS_NICE"));
            }
        }
        // JVMs that are gone are forgotten.
        self.tuned.retain(|id, t| targets.iter().any(|x| &x.instance == id && x.pid == t.pid));
        for t in targets {
            let Some(current) = nice_of(t.pid) else { continue };
            let io = io_bytes(t.pid);
            let entry = self.tuned.entry(t.instance.clone()).or_insert(Tuned {
                pid: t.pid,
                app: t.app.clone(),
                original: current,
                io: None,
            });
            let io_grew = matches!((entry.io, io), (Some(a), Some(b)) if b > a);
            entry.io = io;
            let states = socket_states(t.pid).unwrap_or_default();
            let role = classify(&states, io_grew);
            let can_raise = self.can_raise.unwrap_or(false);
            let Some(next) = step(current, role.serving(), can_raise, cfg.min_nice, cfg.max_nice) else { continue };
            let mut d = decision(
                now_ms,
                "tuning:nice",
                &t.app,
                Some(&t.instance),
                format!("pid {}: nice {current} → {next}: {}", t.pid, role.why()),
            );
            d.figures.push(Figure {
                expr: format!("nice (range {}..{})", cfg.min_nice, cfg.max_nice),
                instance: Some(t.instance.clone()),
                value: f64::from(next),
                window_ms: None,
            });
            match renice(t.pid, next) {
                Ok(n) => out.push((d, Some(("renice", "ok", format!("{n} threads set to nice {next}"))))),
                Err(e) if next < current && matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                    // The capability check said yes, the kernel says no: only lower from now.
                    self.can_raise = Some(false);
                    out.push((d, Some(("renice", "failed", e.to_string()))));
                    out.push(no_raise(now_ms, &format!("raising pid {} was refused ({e})", t.pid)));
                }
                Err(e) => out.push((d, Some(("renice", "failed", e.to_string())))),
            }
        }
        if let Some(now) = std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(parse_proc_stat) {
            if let Some(prev) = self.cpu {
                let pct = busy_percent(prev, now);
                let (streak, fire) = busy_streak(self.streak, pct, cfg.busy_percent, cfg.busy_cycles);
                self.streak = streak;
                self.recent.push(pct);
                let keep = cfg.busy_cycles as usize;
                if self.recent.len() > keep {
                    self.recent.drain(..self.recent.len() - keep);
                }
                if fire {
                    out.push((needs_resources(now_ms, cfg, &self.recent), None));
                }
            }
            self.cpu = Some(now);
        }
        out
    }

    /// Puts every tuned JVM back to its original nice value and forgets it.
    pub fn restore(&mut self, now_ms: u64, why: &str) -> Vec<Made> {
        let mut out = Vec::new();
        for (id, t) in std::mem::take(&mut self.tuned) {
            let Some(current) = nice_of(t.pid) else { continue };
            if current == t.original {
                continue;
            }
            let d = decision(
                now_ms,
                "tuning:restore",
                &t.app,
                Some(&id),
                format!("{why}: pid {}: nice {current} → {} (its original)", t.pid, t.original),
            );
            let step = match renice(t.pid, t.original) {
                Ok(n) => ("restore", "ok", format!("{n} threads set to nice {}", t.original)),
                Err(e) => ("restore", "failed", e.to_string()),
            };
            out.push((d, Some(step)));
        }
        out
    }

    /// The supervisor stops: restore, and run no more cycles.
    pub fn stop(&mut self, now_ms: u64) -> Vec<Made> {
        self.stopped = true;
        self.restore(now_ms, "supervisor stopping")
    }
}

fn no_raise(now_ms: u64, why: &str) -> Made {
    let reason = format!("{why}: tuning only lowers the priority of background JVMs, never raises serving ones");
    eprintln!("jvmwatch: tuning: {reason}");
    (decision(now_ms, "tuning:no_raise", "host", None, reason), None)
}

fn needs_resources(now_ms: u64, cfg: &TuningCfg, recent: &[f64]) -> Decision {
    let seen: Vec<String> = recent.iter().map(|p| format!("{p:.0} %")).collect();
    let mut d = decision(
        now_ms,
        "tuning:needs_resources",
        "host",
        None,
        format!(
            "host CPU at or above {} % for {} cycles in a row ({}): needs more resources, scale up (more cores, \
             or move JVMs to another host)",
            cfg.busy_percent,
            cfg.busy_cycles,
            seen.join(", ")
        ),
    );
    d.figures.push(Figure {
        expr: "host CPU busy %".into(),
        instance: None,
        value: recent.last().copied().unwrap_or(0.0),
        window_ms: Some(cfg.cycle.as_millis() as u64),
    });
    if let Some(h) = &cfg.on_needs_resources {
        d.actions.push(Action::Hook(h.clone()));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        // (socket states, io grew, role)
        let cases: &[(&[u8], bool, Role)] = &[
            (&[], false, Role::Background),
            (&[], true, Role::Background),
            (&[TCP_LISTEN], false, Role::Listening),
            (&[TCP_ESTABLISHED, TCP_LISTEN], true, Role::Listening),
            (&[TCP_ESTABLISHED], true, Role::Talking),
            (&[TCP_ESTABLISHED], false, Role::Background),
            (&[0x06 /* TIME_WAIT */, 0x08 /* CLOSE_WAIT */], true, Role::Background),
        ];
        for (states, grew, want) in cases {
            assert_eq!(classify(states, *grew), *want, "{states:?} {grew}");
        }
    }

    #[test]
    fn step_table() {
        // (current, serving, can_raise, min, max, next)
        let cases = [
            (0, true, true, -5, 5, Some(-1)),
            (-5, true, true, -5, 5, None),
            (0, true, false, -5, 5, None),
            (0, false, true, -5, 5, Some(1)),
            (0, false, false, -5, 5, Some(1)),
            (5, false, true, -5, 5, None),
            // Outside the range: only ever towards it.
            (10, true, true, -5, 5, Some(9)),
            (10, false, true, -5, 5, None),
            (-10, false, true, -5, 5, Some(-9)),
            (-10, true, true, -5, 5, None),
            (19, false, true, -20, 19, None),
        ];
        for (cur, serving, can, min, max, want) in cases {
            assert_eq!(step(cur, serving, can, min, max), want, "{cur} {serving} {can} {min}..{max}");
        }
    }

    #[test]
    fn net_tcp_lines() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A3E1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A3E1 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   junk
";
        assert_eq!(parse_net_tcp(text), [(4242, TCP_LISTEN), (4343, TCP_ESTABLISHED)]);
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/tmp/x"), None);
    }

    #[test]
    fn host_cpu_and_streaks() {
        let a = parse_proc_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!(a, (200, 1000));
        let b = parse_proc_stat("cpu  550 0 550 750 150 0 0 0 0 0\n").unwrap();
        assert_eq!(b, (1100, 2000));
        assert_eq!(busy_percent(a, b), 90.0);
        assert_eq!(busy_percent(b, b), 0.0);
        // Three busy cycles in a row fire once, then the count starts over; a quiet cycle resets.
        let mut s = 0;
        let mut fired = Vec::new();
        for pct in [95.0, 91.0, 89.9, 90.0, 99.0, 100.0, 92.0, 93.0, 94.0] {
            let (n, f) = busy_streak(s, pct, 90, 3);
            s = n;
            fired.push(f);
        }
        assert_eq!(fired, [false, false, false, false, false, true, false, false, true]);
    }

    #[test]
    fn cap_bits() {
        assert!(cap_in_status("Name:\tx\nCapEff:\t000001fffeffffff\n", CAP_SYS_NICE));
        assert!(!cap_in_status("CapEff:\t000001fffe7fffff\n", CAP_SYS_NICE));
        assert!(!cap_in_status("CapEff:\t0000000000000000\n", CAP_SYS_NICE));
        assert!(!cap_in_status("no caps line\n", CAP_SYS_NICE));
    }
}

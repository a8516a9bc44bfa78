//! Carrying out a decision, step by step, each step recorded with its outcome.
//!
//! Drastic actions are staged so that no JVM is ended without warning or rationale:
//! 1. **warn**: a `controller_action` event in the JVM's ring plus the `on_warn` hook;
//! 2. **diagnose**: a thread dump (SIGQUIT; it goes to the JVM's log) and, if configured, a
//!    heap dump (`jcmd PID GC.heap_dump`), waited for within `diagnose_timeout`;
//! 3. **act**: another `controller_action` event, then SIGTERM, the grace period, SIGKILL.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jvmwatch_controller::{Action, Decision, HookTarget};
use jvmwatch_ring::{Event, Text, Writer};

use super::supervisor::StopReason;
use super::Controller;

/// Runs every action of `d` in order; `id` is its store id.
pub fn carry_out(c: &Arc<Controller>, d: &Decision, id: Option<i64>) {
    for a in &d.actions {
        match a {
            Action::Flag => c.step(id, "flag", "ok", "recorded"),
            Action::Hook(name) => run_hook(c, d, id, name),
            Action::ThreadDump => thread_dump(c, d, id, 1),
            Action::HeapDump => heap_dump(c, d, id),
            Action::Restart => restart(c, d, id),
            Action::ScaleUp => scale(c, d, id, true),
            Action::ScaleDown => scale(c, d, id, false),
        }
    }
}

/// The process of the decision's instance, if this controller may signal it: a supervised
/// member, or (with `allow_signals`) any live JVM whose ring still holds its writer's lock.
fn target(c: &Controller, d: &Decision) -> Result<(std::path::PathBuf, u32, Option<Arc<super::proc::Pidfd>>), String> {
    let inst = d.instance.as_deref().ok_or("an app-scope decision names no instance")?;
    if let Some(m) = c.supervisor.as_ref().and_then(|s| s.member(inst)) {
        return Ok(m);
    }
    if c.supervisor.is_some() && c.supervisor.as_ref().and_then(|s| s.app_of(inst)).is_some() {
        return Err("the instance is no longer running (the supervisor handles its exit)".into());
    }
    if !c.config().supervisor.allow_signals {
        return Err("not launched by jvmwatch and supervisor.allow_signals = false".into());
    }
    let path = c.registry.lock().get(inst).map(|j| j.path.clone()).ok_or("unknown instance")?;
    let ring = jvmwatch_ring::Ring::open(&path).map_err(|e| e.to_string())?;
    if !ring.writer_alive() {
        return Err("the JVM is not running".into());
    }
    let pid = ring.header().pid;
    let pidfd = super::proc::Pidfd::open(pid).ok().map(Arc::new);
    Ok((path, pid, pidfd))
}

/// Writes a `controller_action` event into the JVM's ring (so `inspect` of it tells who
/// acted and why).
fn mark_ring(ring: &Path, stage: u8, d: &Decision, what: &str) -> Result<(), String> {
    let w = Writer::attach(ring).map_err(|e| e.to_string())?;
    w.emit(&Event::ControllerAction { stage, text: Text::new(&format!("{}: {what}", d.rule), 39) });
    Ok(())
}

fn signal(pid: u32, pidfd: &Option<Arc<super::proc::Pidfd>>, sig: i32) -> bool {
    match pidfd {
        Some(p) => p.signal(sig),
        // SAFETY: kill(2) with a pid read from a ring whose writer lock is held right now.
        None => unsafe { libc::kill(pid as i32, sig) == 0 },
    }
}

fn thread_dump(c: &Controller, d: &Decision, id: Option<i64>, stage: u8) {
    match target(c, d) {
        Ok((ring, pid, pidfd)) => {
            let _ = mark_ring(&ring, stage, d, "thread dump");
            if signal(pid, &pidfd, libc::SIGQUIT) {
                c.step(
                    id,
                    "thread_dump",
                    "ok",
                    &format!("SIGQUIT to pid {pid}; the dump is in the JVM's output and the ring's stacks region"),
                );
            } else {
                c.step(id, "thread_dump", "failed", "the process is gone");
            }
        }
        Err(e) => c.step(id, "thread_dump", "skipped", &e),
    }
}

fn heap_dump(c: &Controller, d: &Decision, id: Option<i64>) {
    let (_, pid, _) = match target(c, d) {
        Ok(t) => t,
        Err(e) => return c.step(id, "heap_dump", "skipped", &e),
    };
    let dir = c.supervisor.as_ref().map(|s| s.log_dir.clone()).unwrap_or_else(std::env::temp_dir);
    let file = dir.join(format!("{}-{}.hprof", d.instance.as_deref().unwrap_or("jvm"), d.at_ms));
    // Beside the `java` the JVMs run with: `$JAVA_HOME/bin/jcmd`, else `jcmd` from PATH.
    let mut cmd = Command::new(crate::demo::java_command().with_file_name("jcmd"));
    cmd.arg(pid.to_string()).arg("GC.heap_dump").arg(&file);
    let limit = c.config().supervisor.diagnose_timeout;
    match run_bounded(cmd, limit) {
        Ok((true, _)) => c.step(id, "heap_dump", "ok", &file.display().to_string()),
        Ok((false, out)) => c.step(id, "heap_dump", "failed", &out),
        Err(e) => c.step(id, "heap_dump", "timeout", &e),
    }
}

fn restart(c: &Arc<Controller>, d: &Decision, id: Option<i64>) {
    if c.supervisor.is_none() && !c.config().supervisor.allow_signals {
        return request_restart(c, d, id);
    }
    let (ring, pid, pidfd) = match target(c, d) {
        Ok(t) => t,
        Err(e) => return c.step(id, "restart", "skipped", &e),
    };
    // 1. warn
    let warned = mark_ring(&ring, 0, d, "restart");
    c.step(id, "warn", if warned.is_ok() { "ok" } else { "failed" }, &warned.err().unwrap_or_else(|| d.reason.clone()));
    if let Some(h) = c.config().supervisor.on_warn.clone() {
        run_hook(c, d, id, &h);
    }
    // 2. diagnose
    thread_dump(c, d, id, 1);
    if c.config().supervisor.heap_dump {
        heap_dump(c, d, id);
    }
    // 3. act
    let _ = mark_ring(&ring, 2, d, "restart");
    let inst = d.instance.as_deref().unwrap_or_default();
    let result = match &c.supervisor {
        Some(s) if s.member(inst).is_some() => s.stop(inst, StopReason::Restart),
        _ => {
            // Not ours (serve --rules with allow_signals): end it; its orchestrator restarts it.
            let grace = c.config().supervisor.grace;
            if !signal(pid, &pidfd, libc::SIGTERM) {
                Ok("already gone".into())
            } else if pidfd.as_ref().is_some_and(|p| p.wait_exit(Some(grace))) {
                Ok("stopped by SIGTERM".into())
            } else {
                signal(pid, &pidfd, libc::SIGKILL);
                Ok("SIGKILL after the grace period".into())
            }
        }
    };
    match result {
        Ok(how) => c.step(id, "act", "ok", &how),
        Err(e) => c.step(id, "act", "failed", &e),
    }
}

/// `serve --rules` without `allow_signals`: the JVM's orchestrator restarts it. Warn as
/// usual, then turn its liveness probe to 503 (kubelet restarts the container).
fn request_restart(c: &Arc<Controller>, d: &Decision, id: Option<i64>) {
    let Some(inst) = d.instance.as_deref() else {
        return c.step(id, "restart", "skipped", "an app-scope decision names no instance");
    };
    let ring = c.registry.lock().get(inst).map(|j| j.path.clone());
    let warned = ring.as_deref().map(|r| mark_ring(r, 0, d, "restart")).unwrap_or(Err("unknown instance".into()));
    c.step(id, "warn", if warned.is_ok() { "ok" } else { "failed" }, &warned.err().unwrap_or_else(|| d.reason.clone()));
    if let Some(h) = c.config().supervisor.on_warn.clone() {
        run_hook(c, d, id, &h);
    }
    if let Some(r) = &ring {
        let _ = mark_ring(r, 2, d, "restart (liveness 503)");
    }
    if c.registry.request_restart(inst, &d.rule) {
        c.step(id, "act", "ok", &format!("liveness of {inst} answers 503 from now on: its orchestrator restarts it"));
    } else {
        c.step(id, "act", "failed", "the JVM is no longer followed");
    }
}

fn scale(c: &Arc<Controller>, d: &Decision, id: Option<i64>, up: bool) {
    let step = if up { "scale_up" } else { "scale_down" };
    let Some(s) = &c.supervisor else {
        return c.step(
            id,
            step,
            "skipped",
            "no supervisor (serve --rules): the decision is exported for an orchestrator",
        );
    };
    if up {
        if !s.can_grow(&d.app) {
            return c.step(id, step, "skipped", "at max");
        }
        match s.start_instance(c, &d.app) {
            Ok(inst) => c.step(id, step, "ok", &format!("started {inst}")),
            Err(e) => c.step(id, step, "failed", &e),
        }
    } else {
        let Some(victim) = s.newest(&d.app) else { return c.step(id, step, "skipped", "no instance") };
        if s.app_status().get(&d.app).is_some_and(|a| a.instances <= a.min) {
            return c.step(id, step, "skipped", "at min");
        }
        match s.stop(&victim, StopReason::ScaleDown) {
            Ok(how) => c.step(id, step, "ok", &format!("stopped {victim} (newest): {how}")),
            Err(e) => c.step(id, step, "failed", &e),
        }
    }
}

/// Runs `cmd`, killing it after `limit`. Ok((success, output tail)) or Err on timeout.
fn run_bounded(mut cmd: Command, limit: Duration) -> Result<(bool, String), String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
    let pidfd = super::proc::Pidfd::open(child.id()).ok();
    let ended = match &pidfd {
        Some(p) => p.wait_exit(Some(limit)),
        None => true,
    };
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("killed after {}", humantime::format_duration(limit)));
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    let tail: String = out.trim().chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
    Ok((status.success(), format!("{}; {tail}", super::proc::describe(&status))))
}

/// Runs hook `name` with the decision in its environment (command) or as a JSON POST (url),
/// killed after its timeout, retried per its `retries`.
pub fn run_hook(c: &Controller, d: &Decision, id: Option<i64>, name: &str) {
    let step = format!("hook:{name}");
    let Some(hook) = c.config().hooks.get(name).cloned() else {
        return c.step(id, &step, "failed", "no such hook in the config");
    };
    for attempt in 0..=hook.retries {
        let started = Instant::now();
        let result = match &hook.target {
            HookTarget::Command(argv) => {
                let Some((prog, args)) = argv.split_first() else {
                    return c.step(id, &step, "failed", "empty command");
                };
                let mut cmd = Command::new(prog);
                cmd.args(args)
                    .env("JVMWATCH_RULE", &d.rule)
                    .env("JVMWATCH_APP", &d.app)
                    .env("JVMWATCH_INSTANCE", d.instance.as_deref().unwrap_or(""))
                    .env("JVMWATCH_REASON", &d.reason)
                    .env("JVMWATCH_ACTIONS", d.actions.iter().map(|a| a.name()).collect::<Vec<_>>().join(","));
                run_bounded(cmd, hook.timeout)
            }
            HookTarget::Url(url) => post_json(url, d, hook.timeout).map(|s| (s, "HTTP".into())),
        };
        let took = format!("attempt {} in {} ms", attempt + 1, started.elapsed().as_millis());
        match result {
            Ok((true, out)) => return c.step(id, &step, "ok", &format!("{took}: {out}")),
            Ok((false, out)) => c.step(id, &step, "failed", &format!("{took}: {out}")),
            Err(e) => c.step(id, &step, "timeout", &format!("{took}: {e}")),
        }
    }
}

/// POSTs the decision as JSON to an `http://` URL; true on a 2xx answer.
fn post_json(url: &str, d: &Decision, timeout: Duration) -> Result<bool, String> {
    let body = serde_json::to_vec(d).unwrap_or_default();
    super::http::request("POST", url, &[("Content-Type", "application/json")], &body, timeout).map(|r| r.ok())
}

//! The embedded supervisor: launches each app's JVMs with the agent, watches them (a reaper
//! thread blocked in `waitpid` per child; a pidfd `poll` for children adopted after a
//! supervisor restart), restarts them with exponential backoff, scales within min/max, and
//! marks a crash-looping group `failed` (its `on_failed` hook runs exactly once).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jvmwatch_controller::ha::{self, AppState, AppView};
use jvmwatch_controller::{Action, AppCfg, AppStatus, Config, Decision, Figure, Health, SupervisorCfg};

use super::proc::{describe, Pidfd};
use super::{now_ms, Controller, Exit};
use crate::store::ChildRow;

/// Why the supervisor itself stops an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Replace it when it is gone.
    Restart,
    /// One instance fewer.
    ScaleDown,
    /// The supervisor is shutting down.
    Shutdown,
}

/// One running JVM of a group.
#[derive(Debug)]
pub struct Member {
    /// Process id.
    pub pid: u32,
    /// Its pidfd (signals never hit a reused pid).
    pub pidfd: Option<Arc<Pidfd>>,
    /// Its ring file.
    pub ring: PathBuf,
    /// Slot number (`${INSTANCE}`; `${PORT}` = port_base + slot).
    pub slot: u32,
    /// Started, ms since the epoch.
    pub started_ms: u64,
    /// Being stopped by the supervisor, and why.
    pub stopping: Option<StopReason>,
    /// Adopted after a supervisor restart (not our child).
    pub adopted: bool,
    /// With the app's own health check: its last result (its checker thread ends once this
    /// member is gone, which `gone` tells it).
    pub health: Option<HealthFlag>,
}

/// A member's health, as its checker thread last saw it.
#[derive(Debug, Clone, Default)]
pub struct HealthFlag {
    /// The last check passed.
    pub ok: Arc<std::sync::atomic::AtomicBool>,
    /// The member is gone: the checker stops.
    pub gone: Arc<std::sync::atomic::AtomicBool>,
}

impl HealthFlag {
    /// Starts a checker running `check` every second until the member is gone.
    fn start(check: Health) -> HealthFlag {
        use std::sync::atomic::Ordering::Relaxed;
        let flag = HealthFlag::default();
        let f = flag.clone();
        let _ = std::thread::Builder::new().name("jvmwatch-health".into()).spawn(move || {
            while !f.gone.load(Relaxed) {
                f.ok.store(healthy(&check), Relaxed);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        flag
    }
}

/// Runs one health check: a 2xx answer within 2 s, or exit 0 within 5 s.
fn healthy(check: &Health) -> bool {
    match check {
        Health::Url(url) => super::http::request("GET", url, &[], b"", Duration::from_secs(2)).is_ok_and(|r| r.ok()),
        Health::Command(argv) => {
            let Some((prog, args)) = argv.split_first() else { return false };
            let Ok(mut child) =
                Command::new(prog).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
            else {
                return false;
            };
            let ended = Pidfd::open(child.id()).map(|p| p.wait_exit(Some(Duration::from_secs(5)))).unwrap_or(true);
            if !ended {
                let _ = child.kill();
            }
            child.wait().is_ok_and(|s| s.success()) && ended
        }
    }
}

/// An app's group of instances.
#[derive(Debug)]
pub struct Group {
    /// Its config.
    pub cfg: AppCfg,
    /// Running instances by id.
    pub members: BTreeMap<String, Member>,
    /// Unexpected exits (ms), for backoff and the crash-loop limit.
    pub crashes: VecDeque<u64>,
    /// Starts waiting for their time (ms).
    pub pending: Vec<u64>,
    /// Crash-looped past `max_restarts`: no more restarts until the config is reloaded.
    pub failed: bool,
    /// Stopped on purpose (`POST /api/v1/apps/{app}/offline`): no starts, no restarts.
    pub offline: bool,
}

impl Group {
    fn new(cfg: AppCfg) -> Group {
        Group {
            cfg,
            members: BTreeMap::new(),
            crashes: VecDeque::new(),
            pending: Vec::new(),
            failed: false,
            offline: false,
        }
    }
}

/// A group's state; `ready` tells whether an instance's JVM answers its readiness probe.
fn group_state(g: &Group, ready: &dyn Fn(&str) -> bool) -> AppState {
    let running: Vec<&String> = g.members.iter().filter(|(_, m)| m.stopping.is_none()).map(|(id, _)| id).collect();
    if g.failed {
        AppState::Failed
    } else if g.offline {
        AppState::Offline
    } else if !g.pending.is_empty() && !g.crashes.is_empty() {
        AppState::Restarting
    } else if running.is_empty() || !g.pending.is_empty() || !running.iter().all(|id| ready(id)) {
        AppState::Starting
    } else {
        AppState::Online
    }
}

/// The ids of `ids` whose JVMs answer their readiness probe. Lock order: the registry lock is
/// never taken while the groups lock is held (the controller loop holds the registry's and
/// then asks for the groups'), so callers collect ids first.
fn ready_set(c: &Controller, ids: Vec<(String, Option<HealthFlag>)>) -> std::collections::HashSet<String> {
    let jvms = c.registry.lock();
    ids.into_iter()
        .filter(|(id, health)| match health {
            // The app's own check decides.
            Some(h) => h.ok.load(std::sync::atomic::Ordering::Relaxed),
            None => jvms.get(id.as_str()).is_some_and(|j| j.is_ready()),
        })
        .map(|(id, _)| id)
        .collect()
}

/// The supervisor.
pub struct Supervisor {
    groups: Mutex<BTreeMap<String, Group>>,
    sup: Mutex<SupervisorCfg>,
    /// Where rings go.
    pub ring_dir: PathBuf,
    /// Where child logs go.
    pub log_dir: PathBuf,
    /// The agent library.
    pub agent: PathBuf,
    /// `run`: one JVM whose clean exit ends the run.
    pub single: bool,
}

impl Supervisor {
    /// A supervisor for `cfg`'s apps.
    pub fn new(cfg: &Config, ring_dir: PathBuf, state_dir: &Path, agent: PathBuf, single: bool) -> Supervisor {
        let groups = cfg.apps.iter().map(|a| (a.name.clone(), Group::new(a.clone()))).collect();
        Supervisor {
            groups: Mutex::new(groups),
            sup: Mutex::new(cfg.supervisor.clone()),
            ring_dir,
            log_dir: state_dir.join("logs"),
            agent,
            single,
        }
    }

    fn groups(&self) -> MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The supervisor settings in force.
    pub fn settings(&self) -> SupervisorCfg {
        self.sup.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies a reloaded config: new settings and app bounds, new apps; a failed group is
    /// given another chance. Running instances are kept.
    pub fn reconfigure(&self, cfg: &Config) {
        *self.sup.lock().unwrap_or_else(|e| e.into_inner()) = cfg.supervisor.clone();
        let mut groups = self.groups();
        for a in &cfg.apps {
            let g = groups.entry(a.name.clone()).or_insert_with(|| Group::new(a.clone()));
            g.cfg = a.clone();
            g.failed = false;
            g.crashes.clear();
            if g.offline {
                continue;
            }
            let have = (g.members.len() + g.pending.len()) as u32;
            for _ in have..a.min {
                g.pending.push(0);
            }
        }
    }

    /// The app a supervised instance belongs to.
    pub fn app_of(&self, instance: &str) -> Option<String> {
        let groups = self.groups();
        if let Some((n, _)) = groups.iter().find(|(_, g)| g.members.contains_key(instance)) {
            return Some(n.clone());
        }
        // A dead instance is no longer a member: its id is `<app>-<slot>-<start ms>`.
        groups.keys().find(|n| instance.starts_with(&format!("{n}-"))).cloned()
    }

    /// Sizes and bounds of every group, for the rules.
    pub fn app_status(&self) -> BTreeMap<String, AppStatus> {
        self.groups()
            .iter()
            .map(|(n, g)| {
                let live = g.members.values().filter(|m| m.stopping.is_none()).count() + g.pending.len();
                (n.clone(), AppStatus { name: n.clone(), instances: live as u32, min: g.cfg.min, max: g.cfg.max })
            })
            .collect()
    }

    /// The groups as JSON for `GET /api/v1/apps`: state, priority, dependencies, instances
    /// and the last decision about each.
    pub fn apps_json(&self, c: &Controller) -> serde_json::Value {
        let set = ready_set(c, self.member_ids());
        let ready = |id: &str| set.contains(id);
        let names: Vec<String> = self.groups().keys().cloned().collect();
        let last: BTreeMap<String, _> = names
            .into_iter()
            .map(|n| (n.clone(), c.store.decisions(0, Some(&n), 1).ok().and_then(|mut d| d.pop())))
            .collect();
        let last = |app: &str| last.get(app).cloned().flatten();
        let groups = self.groups();
        serde_json::Value::Array(
            groups
                .iter()
                .map(|(n, g)| {
                    serde_json::json!({
                        "name": n,
                        "state": group_state(g, &ready),
                        "priority": g.cfg.priority,
                        "depends_on": g.cfg.depends_on,
                        "min": g.cfg.min, "max": g.cfg.max,
                        "instances": g.members.iter().map(|(id, m)| serde_json::json!({
                            "id": id, "pid": m.pid, "slot": m.slot, "adopted": m.adopted,
                            "stopping": m.stopping.map(|s| format!("{s:?}").to_lowercase()),
                            "started_at": crate::report::rfc3339(m.started_ms * 1_000_000),
                        })).collect::<Vec<_>>(),
                        "pending_starts": g.pending.len(),
                        "recent_crashes": g.crashes.len(),
                        "last_decision": last(n),
                    })
                })
                .collect(),
        )
    }

    /// Every app's name, priority and state, for the escalation policies.
    pub fn app_views(&self, c: &Controller) -> Vec<AppView> {
        let set = ready_set(c, self.member_ids());
        let ready = |id: &str| set.contains(id);
        self.groups()
            .iter()
            .map(|(n, g)| AppView { name: n.clone(), priority: g.cfg.priority, state: group_state(g, &ready) })
            .collect()
    }

    /// The running members (not being stopped), for priority tuning.
    pub fn tuning_targets(&self) -> Vec<super::tuning::Target> {
        self.groups()
            .iter()
            .flat_map(|(app, g)| {
                g.members.iter().filter(|(_, m)| m.stopping.is_none()).map(|(id, m)| super::tuning::Target {
                    app: app.clone(),
                    instance: id.clone(),
                    pid: m.pid,
                })
            })
            .collect()
    }

    /// Every member's id, with its health flag when its app has its own check.
    fn member_ids(&self) -> Vec<(String, Option<HealthFlag>)> {
        self.groups().values().flat_map(|g| g.members.iter().map(|(id, m)| (id.clone(), m.health.clone()))).collect()
    }

    /// Apps in start order (dependencies first).
    fn start_order(&self) -> Vec<String> {
        let apps: Vec<AppCfg> = self.groups().values().map(|g| g.cfg.clone()).collect();
        ha::start_order(&apps).unwrap_or_else(|_| apps.iter().map(|a| a.name.clone()).collect())
    }

    /// Takes an app offline (stops its instances, no restarts) or back online.
    pub fn set_offline(&self, c: &Arc<Controller>, app: &str, offline: bool) -> Result<(), String> {
        let ids: Vec<String> = {
            let mut groups = self.groups();
            let g = groups.get_mut(app).ok_or_else(|| format!("no app {app:?}"))?;
            g.offline = offline;
            g.pending.clear();
            if offline {
                g.members.keys().cloned().collect()
            } else {
                g.failed = false;
                g.crashes.clear();
                let n = g.cfg.initial.max(g.cfg.min) as usize;
                g.pending.extend(std::iter::repeat_n(0, n.saturating_sub(g.members.len())));
                Vec::new()
            }
        };
        let d = decision(
            if offline { "app_offline" } else { "app_online" },
            app,
            None,
            vec![],
            format!("{app} set {} through the API", if offline { "offline" } else { "online" }),
        );
        let id = c.record(&d);
        for inst in ids {
            match self.stop(&inst, StopReason::ScaleDown) {
                Ok(how) => c.step(id, "stop", "ok", &format!("{inst}: {how}")),
                Err(e) => c.step(id, "stop", "failed", &format!("{inst}: {e}")),
            }
        }
        Ok(())
    }

    /// Fails the starts that did not become ready within their app's `start_timeout`.
    pub fn check_start_timeouts(&self, c: &Arc<Controller>, now: u64) {
        let set = ready_set(c, self.member_ids());
        let ready = |id: &str| set.contains(id);
        let late: Vec<(String, String, u64)> = {
            let groups = self.groups();
            groups
                .iter()
                .filter(|(_, g)| !g.failed && !g.offline)
                .filter_map(|(n, g)| Some((n, g, g.cfg.start_timeout?.as_millis() as u64)))
                .flat_map(|(n, g, limit)| {
                    g.members
                        .iter()
                        .filter(move |(_, m)| {
                            m.stopping.is_none() && !m.adopted && now.saturating_sub(m.started_ms) > limit
                        })
                        .map(move |(id, _)| (n.clone(), id.clone(), limit))
                })
                .filter(|(_, id, _)| !ready(id))
                .collect()
        };
        for (app, inst, limit) in late {
            let fresh = {
                let mut groups = self.groups();
                let g = groups.get_mut(&app).expect("listed");
                let fresh = !g.failed;
                g.failed = true;
                g.pending.clear();
                fresh
            };
            if !fresh {
                continue;
            }
            let d = decision("start_timeout", &app, Some(&inst), vec![], format!("{inst} not ready within {limit} ms"));
            let id = c.record(&d);
            match self.stop(&inst, StopReason::Shutdown) {
                Ok(how) => c.step(id, "stop", "ok", &how),
                Err(e) => c.step(id, "stop", "failed", &e),
            }
            self.maybe_escalate(c);
        }
    }

    /// Escalates (VM restart or failover hook) when the policy says so, at most once per
    /// `escalation_cooldown` — counted from the last `escalate` decision in the store, so a
    /// restarted supervisor never repeats one.
    pub fn maybe_escalate(&self, c: &Arc<Controller>) {
        let s = self.settings();
        let Some(policy) = s.escalation else { return };
        let views = self.app_views(c);
        let Some(e) = ha::escalate(policy, &views, s.count_offline) else {
            let failed: Vec<String> = views
                .iter()
                .filter(|v| v.state == AppState::Failed)
                .map(|v| format!("{}={}", v.name, v.priority))
                .collect();
            eprintln!(
                "jvmwatch: no escalation ({policy:?}): failed [{}] do not outrank the available apps",
                failed.join(", ")
            );
            return;
        };
        let now = now_ms();
        if let Ok(Some(last)) = c.store.last_decision_at("escalate") {
            if now.saturating_sub(last) < s.escalation_cooldown.as_millis() as u64 {
                eprintln!("jvmwatch: escalation due ({}) but within escalation_cooldown of the last one", e.reason);
                return;
            }
        }
        let hook = s.failover.clone().or(s.vm_restart.clone());
        let failed: Vec<&str> = e.failed.iter().map(|(n, _)| n.as_str()).collect();
        let mut d = decision(
            "escalate",
            &failed.join(","),
            None,
            hook.into_iter().map(Action::Hook).collect(),
            e.reason.clone(),
        );
        d.figures = e
            .failed
            .iter()
            .map(|(n, p)| (n, p, "failed"))
            .chain(e.available.iter().map(|(n, p)| (n, p, "available")))
            .map(|(n, p, side)| Figure {
                expr: format!("priority({n}) [{side}]"),
                instance: None,
                value: f64::from(*p),
                window_ms: None,
            })
            .collect();
        let id = c.record(&d);
        if d.actions.is_empty() {
            c.step(id, "escalate", "skipped", "no vm_restart or failover hook configured");
            return;
        }
        let c2 = Arc::clone(c);
        let _ = std::thread::Builder::new().name("jvmwatch-action".into()).spawn(move || {
            super::exec::carry_out(&c2, &d, id);
        });
    }

    /// Adopts children recorded by an earlier supervisor that still run, then starts each
    /// group up to its `initial` size.
    pub fn start_all(&self, c: &Arc<Controller>) {
        self.adopt(c);
        let mut groups = self.groups();
        for g in groups.values_mut() {
            let have = g.members.len() as u32;
            if g.offline {
                continue;
            }
            for _ in have..g.cfg.initial.max(g.cfg.min) {
                g.pending.push(0);
            }
        }
    }

    fn adopt(&self, c: &Arc<Controller>) {
        let rows = match c.store.children() {
            Ok(r) => r,
            Err(e) => return eprintln!("jvmwatch: {e}"),
        };
        for row in rows {
            let pidfd = is_our_child(&row).then(|| Pidfd::open(row.pid).ok()).flatten();
            let mut groups = self.groups();
            match (pidfd, groups.get_mut(&row.app)) {
                (Some(pidfd), Some(g)) => {
                    let pidfd = Arc::new(pidfd);
                    let slot = slot_of(&row.instance);
                    g.members.insert(
                        row.instance.clone(),
                        Member {
                            pid: row.pid,
                            pidfd: Some(pidfd.clone()),
                            ring: PathBuf::from(&row.ring),
                            slot,
                            started_ms: now_ms(),
                            stopping: None,
                            adopted: true,
                            health: None,
                        },
                    );
                    eprintln!("jvmwatch: adopted {} (pid {}) of app {}", row.instance, row.pid, row.app);
                    let tx = c.exit_sender();
                    let instance = row.instance.clone();
                    let _ = std::thread::Builder::new().name("jvmwatch-reaper".into()).spawn(move || {
                        pidfd.wait_exit(None);
                        let _ = tx.send(Exit { instance, status: "ended".into(), clean: false });
                    });
                }
                _ => {
                    drop(groups);
                    let _ = c.store.remove_child(&row.instance);
                    let d = decision(
                        "process_exit",
                        &row.app,
                        Some(&row.instance),
                        vec![],
                        format!("{} (pid {}) ended while the supervisor was down", row.instance, row.pid),
                    );
                    c.record(&d);
                }
            }
        }
    }

    /// When the next pending start is due (ms), if any.
    pub fn next_due(&self) -> Option<u64> {
        self.groups().values().filter(|g| !g.failed).flat_map(|g| g.pending.iter().copied()).min()
    }

    /// Starts the pending instances whose time has come.
    pub fn start_due(&self, c: &Arc<Controller>, now: u64) {
        // An app starts only once the apps it depends on are online.
        let online: Vec<String> =
            self.app_views(c).into_iter().filter(|v| v.state == AppState::Online).map(|v| v.name).collect();
        let order = self.start_order();
        let due: Vec<String> = {
            let mut groups = self.groups();
            let mut due = Vec::new();
            for n in &order {
                let Some(g) = groups.get_mut(n) else { continue };
                if g.failed || g.offline {
                    g.pending.clear();
                    continue;
                }
                if !g.cfg.depends_on.iter().all(|d| online.contains(d)) {
                    continue;
                }
                let before = g.pending.len();
                g.pending.retain(|t| *t > now);
                due.extend(std::iter::repeat_n(n.clone(), before - g.pending.len()));
            }
            due
        };
        for app in due {
            if let Err(e) = self.start_instance(c, &app) {
                // A start that fails (no such command, …) counts as a crash: backoff, then
                // `failed`; never a fork bomb.
                let d = decision("start_failed", &app, None, vec![], format!("cannot start an instance of {app}: {e}"));
                c.record(&d);
                self.crashed(c, &app, now_ms());
            }
        }
    }

    /// Launches one more instance of `app`.
    pub fn start_instance(&self, c: &Arc<Controller>, app: &str) -> Result<String, String> {
        let (cfg, slot) = {
            let groups = self.groups();
            let g = groups.get(app).ok_or_else(|| format!("no app {app}"))?;
            let used: Vec<u32> = g.members.values().map(|m| m.slot).collect();
            (g.cfg.clone(), (1..).find(|s| !used.contains(s)).unwrap_or(1))
        };
        let started = now_ms();
        let id = format!("{app}-{slot}-{started}");
        let ring = self.ring_dir.join(format!("{id}.ring"));
        let port = cfg.port_base.map(|b| b as u32 + slot);
        let subst = |s: &str| {
            let s = s.replace("${INSTANCE}", &slot.to_string());
            match port {
                Some(p) => s.replace("${PORT}", &p.to_string()),
                None => s,
            }
        };
        let argv: Vec<String> = cfg.command.iter().map(|a| subst(a)).collect();
        let (prog, rest) = argv.split_first().ok_or("empty command")?;
        let mut agent_opts = format!("path={}", ring.display());
        if let Some(extra) = &cfg.agent_options {
            agent_opts.push(',');
            agent_opts.push_str(extra);
        }
        let agent_arg = format!("-agentpath:{}={agent_opts}", self.agent.display());
        let app_arg = format!("-Djvmwatch.app={app}");
        let mut cmd = Command::new(prog);
        if Path::new(prog).file_name().is_some_and(|n| n == "java") {
            cmd.arg(&agent_arg).arg(&app_arg).args(rest);
        } else {
            // A launcher script: hand the agent to the JVM it starts.
            let mut opts = std::env::var("JAVA_TOOL_OPTIONS").unwrap_or_default();
            opts.push_str(&format!(" {agent_arg} {app_arg}"));
            cmd.args(rest).env("JAVA_TOOL_OPTIONS", opts.trim());
        }
        cmd.envs(&cfg.env).env("JVMWATCH_INSTANCE", slot.to_string()).env("JVMWATCH_APP", app);
        if let Some(p) = port {
            cmd.env("PORT", p.to_string());
        }
        if let Some(d) = &cfg.cwd {
            cmd.current_dir(d);
        }
        std::fs::create_dir_all(&self.log_dir).map_err(|e| format!("{}: {e}", self.log_dir.display()))?;
        let log_path = self.log_dir.join(format!("{id}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let mut child = cmd.spawn().map_err(|e| format!("{prog}: {e}"))?;
        let health = cfg.health.as_ref().map(|h| {
            HealthFlag::start(match h {
                Health::Url(u) => Health::Url(subst(u)),
                Health::Command(argv) => Health::Command(argv.iter().map(|a| subst(a)).collect()),
            })
        });
        let pid = child.id();
        let pidfd = Pidfd::open(pid).ok().map(Arc::new);
        let _ = c.store.add_child(&ChildRow {
            instance: id.clone(),
            app: app.into(),
            pid,
            ring: ring.display().to_string(),
        });
        self.groups().get_mut(app).map(|g| {
            g.members.insert(
                id.clone(),
                Member { pid, pidfd, ring, slot, started_ms: started, stopping: None, adopted: false, health },
            )
        });
        let tx = c.exit_sender();
        let instance = id.clone();
        let _ = std::thread::Builder::new().name("jvmwatch-reaper".into()).spawn(move || {
            let (status, clean) = match child.wait() {
                Ok(s) => (describe(&s), s.success()),
                Err(e) => (format!("unknown ({e})"), false),
            };
            let _ = tx.send(Exit { instance, status, clean });
        });
        eprintln!("jvmwatch: started {id} (pid {pid})");
        Ok(id)
    }

    /// A member's ring, pid and pidfd.
    pub fn member(&self, instance: &str) -> Option<(PathBuf, u32, Option<Arc<Pidfd>>)> {
        self.groups().values().find_map(|g| g.members.get(instance)).map(|m| (m.ring.clone(), m.pid, m.pidfd.clone()))
    }

    /// SIGTERM, then SIGKILL after the grace period. Returns once the process is gone (or
    /// could not be signalled).
    pub fn stop(&self, instance: &str, why: StopReason) -> Result<String, String> {
        let pidfd = {
            let mut groups = self.groups();
            let m = groups.values_mut().find_map(|g| g.members.get_mut(instance)).ok_or("not a running instance")?;
            m.stopping = Some(why);
            m.pidfd.clone().ok_or("no process handle")?
        };
        let grace = self.settings().grace;
        if !pidfd.signal(libc::SIGTERM) {
            return Ok("already gone".into());
        }
        if pidfd.wait_exit(Some(grace)) {
            return Ok(format!("stopped by SIGTERM within {}", humantime::format_duration(grace)));
        }
        pidfd.signal(libc::SIGKILL);
        pidfd.wait_exit(Some(Duration::from_secs(10)));
        Ok(format!("SIGKILL after {} grace", humantime::format_duration(grace)))
    }

    /// The newest running instance of `app` that is not being stopped.
    pub fn newest(&self, app: &str) -> Option<String> {
        let groups = self.groups();
        groups
            .get(app)?
            .members
            .iter()
            .filter(|(_, m)| m.stopping.is_none())
            .max_by_key(|(_, m)| m.started_ms)
            .map(|(id, _)| id.clone())
    }

    /// Whether `app` may grow by one.
    pub fn can_grow(&self, app: &str) -> bool {
        self.app_status().get(app).is_some_and(|s| s.instances < s.max)
    }

    /// Adds a pending start now.
    pub fn add_pending(&self, app: &str, at: u64) {
        if let Some(g) = self.groups().get_mut(app) {
            g.pending.push(at);
        }
    }

    /// A child ended: restart it (after backoff if it was not the supervisor's doing), or
    /// let it go (scaled down, shutting down, `run` ended cleanly).
    pub fn on_exit(&self, c: &Arc<Controller>, exit: Exit) {
        let _ = c.store.remove_child(&exit.instance);
        c.registry.set_exit_status(&exit.instance, &exit.status);
        let (app, member) = {
            let mut groups = self.groups();
            let Some((app, g)) = groups.iter_mut().find(|(_, g)| g.members.contains_key(&exit.instance)) else {
                return;
            };
            (app.clone(), g.members.remove(&exit.instance).expect("checked"))
        };
        if let Some(h) = &member.health {
            h.gone.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let now = now_ms();
        match member.stopping {
            Some(StopReason::Restart) => self.add_pending(&app, now),
            Some(StopReason::ScaleDown) | Some(StopReason::Shutdown) => {}
            None if exit.clean && self.single => {
                eprintln!("jvmwatch: {} {}; the run is over", exit.instance, exit.status);
                c.finished.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            None => {
                let d = decision(
                    "process_exit",
                    &app,
                    Some(&exit.instance),
                    vec![Action::Restart],
                    format!("{} (pid {}) {}", exit.instance, member.pid, exit.status),
                );
                let id = c.record(&d);
                let delay = self.crashed(c, &app, now);
                match delay {
                    Some(ms) => c.step(id, "restart", "scheduled", &format!("in {ms} ms (backoff)")),
                    None => c.step(id, "restart", "skipped", "group failed: too many restarts"),
                }
            }
        }
    }

    /// Counts an unexpected exit; schedules the replacement after backoff and returns the
    /// delay, or marks the group failed (running `on_failed` once) and returns None.
    fn crashed(&self, c: &Arc<Controller>, app: &str, now: u64) -> Option<u64> {
        let s = self.settings();
        let window = s.restart_window.as_millis() as u64;
        let (n, failed_now) = {
            let mut groups = self.groups();
            let g = groups.get_mut(app)?;
            g.crashes.push_back(now);
            while g.crashes.front().is_some_and(|t| now.saturating_sub(*t) > window) {
                g.crashes.pop_front();
            }
            let n = g.crashes.len() as u32;
            if n > s.max_restarts && !g.failed {
                g.failed = true;
                g.pending.clear();
                (n, true)
            } else {
                (n, false)
            }
        };
        if failed_now {
            self.maybe_escalate_later(c);
            let mut actions = vec![];
            if let Some(h) = &s.on_failed {
                actions.push(Action::Hook(h.clone()));
            }
            let d = decision(
                "group_failed",
                app,
                None,
                actions,
                format!(
                    "{n} unexpected exits within {}: more than max_restarts = {}; no more restarts",
                    humantime::format_duration(s.restart_window),
                    s.max_restarts
                ),
            );
            let id = c.record(&d);
            let c2 = Arc::clone(c);
            let _ = std::thread::Builder::new().name("jvmwatch-action".into()).spawn(move || {
                super::exec::carry_out(&c2, &d, id);
            });
            return None;
        }
        if self.groups().get(app).is_some_and(|g| g.failed) {
            return None;
        }
        let base = s.backoff_initial.as_millis() as u64;
        let delay = base.saturating_mul(1u64 << (n.saturating_sub(1)).min(20)).min(s.backoff_max.as_millis() as u64);
        self.add_pending(app, now + delay);
        Some(delay)
    }

    /// Escalation is judged after the `group_failed` decision is recorded (the caller holds
    /// no lock then): on the controller's loop thread at its next wake-up.
    fn maybe_escalate_later(&self, c: &Arc<Controller>) {
        c.escalate_pending.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops every instance (supervisor shutdown): dependents first, each app's instances in
    /// parallel.
    pub fn shutdown(&self) {
        for app in self.start_order().iter().rev() {
            let ids: Vec<String> =
                self.groups().get(app).map(|g| g.members.keys().cloned().collect()).unwrap_or_default();
            std::thread::scope(|sc| {
                for id in ids {
                    sc.spawn(move || {
                        let _ = self.stop(&id, StopReason::Shutdown);
                    });
                }
            });
        }
    }
}

/// Whether the process recorded in `row` still runs and is that JVM (not a reused pid):
/// its ring's writer lock is held and names the pid, or — a JVM whose supervisor was killed
/// before its agent made the ring — its command line (or `JAVA_TOOL_OPTIONS`) carries that
/// ring's path.
fn is_our_child(row: &ChildRow) -> bool {
    match jvmwatch_ring::Ring::open(Path::new(&row.ring)) {
        Ok(r) => r.writer_alive() && r.header().pid == row.pid,
        Err(_) => ["cmdline", "environ"].iter().any(|f| {
            std::fs::read(format!("/proc/{}/{f}", row.pid))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| String::from_utf8_lossy(arg).contains(&row.ring)))
        }),
    }
}

/// The slot number in an instance id `<app>-<slot>-<start ms>`.
fn slot_of(instance: &str) -> u32 {
    instance.rsplit('-').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A decision made by the supervisor itself (not by a rule).
pub fn decision(rule: &str, app: &str, instance: Option<&str>, actions: Vec<Action>, reason: String) -> Decision {
    Decision {
        at_ms: now_ms(),
        rule: rule.into(),
        app: app.into(),
        instance: instance.map(str::to_string),
        actions,
        figures: Vec::<Figure>::new(),
        reason,
    }
}

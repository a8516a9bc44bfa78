//! The controller at work: feeds the pure rules (`jvmwatch-controller`) from the followed
//! rings, records every decision in the store, publishes it (SSE, `/metrics`, API) and carries
//! it out; with a supervisor (`supervise`, `run`) it also launches, watches and restarts JVMs.
//!
//! Threads: one loop thread evaluates every [`TICK`] and wakes at once when a child exits
//! (each child has a reaper thread blocked in `waitpid`, or in `poll` on a pidfd for adopted
//! ones); each decision is carried out on its own thread, so a hanging hook or a slow heap
//! dump never stalls evaluation.

pub mod cli;
pub mod exec;
pub mod feed;
pub mod http;
pub mod proc;
pub mod supervisor;
pub mod tuning;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jvmwatch_controller::{evaluate, AppStatus, Config, Decision, EvalState, World};
use serde_json::{json, Value};

use crate::serve::registry::{Msg, Registry};
use crate::store::Store;

pub use supervisor::Supervisor;

/// How often rules are evaluated.
pub const TICK: Duration = Duration::from_millis(100);

/// A child process ended (from its reaper thread).
#[derive(Debug)]
pub struct Exit {
    /// Instance id.
    pub instance: String,
    /// `exited(3)`, `killed(SIGKILL)`, … (`ended` for an adopted process, whose status only
    /// its real parent sees).
    pub status: String,
    /// Exit code 0.
    pub clean: bool,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    jvmwatch_ring::now_ns() / 1_000_000
}

/// The controller: config, store, the registry it reads, and the supervisor, if any.
pub struct Controller {
    cfg: Mutex<Arc<Config>>,
    /// The rules file (for SIGHUP reloads), if any.
    pub cfg_path: Option<PathBuf>,
    /// The decision store.
    pub store: Store,
    /// The followed JVMs.
    pub registry: Arc<Registry>,
    /// Launches and watches JVMs (`supervise`, `run`); None for `serve --rules`.
    pub supervisor: Option<Supervisor>,
    counts: Mutex<BTreeMap<(String, String, String), u64>>,
    exits: Mutex<Option<Receiver<Exit>>>,
    exit_tx: Sender<Exit>,
    stop: AtomicBool,
    /// Set when `run`'s single JVM exited cleanly: the run is over.
    pub finished: AtomicBool,
    /// What the rules say now, for orchestrators: active rules and scale recommendations.
    exports: Mutex<Exports>,
    /// A group failed: judge escalation on the next loop wake-up.
    pub escalate_pending: AtomicBool,
    /// Usage records and license alerts (`[usage]`), when enabled.
    usage: Mutex<Option<crate::usage::collect::Collector>>,
    /// (app, kind) → the license alert condition holds.
    license_active: Mutex<BTreeMap<(String, String), bool>>,
    /// Dynamic priority tuning (`[tuning]`) of supervised JVMs.
    tuner: Mutex<tuning::Tuner>,
}

/// The rule states as exported: `jvmwatch_rule_active`, `jvmwatch_scale_recommendation`,
/// `GET /api/v1/apps/{app}/scale`.
#[derive(Debug, Default, Clone)]
pub struct Exports {
    /// (app, rule) → the rule's condition holds for the app, or for one of its JVMs.
    pub rule_active: BTreeMap<(String, String), bool>,
    /// app → the replica count its scale rules want.
    pub scale: BTreeMap<String, ScaleRecommendation>,
}

/// The replica count an app's scale rules would want.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScaleRecommendation {
    /// The app.
    pub app: String,
    /// Live instances now.
    pub current: u32,
    /// current + 1 while a scale_up rule holds, − 1 while only a scale_down rule holds,
    /// within the app's min/max when configured.
    pub desired: u32,
    /// The active scale rules and their conditions.
    pub reasons: Vec<String>,
}

/// Exports from the rule states of one evaluation.
pub fn exports(cfg: &Config, world: &World, state: &EvalState) -> Exports {
    let app_of: HashMap<&str, &str> = world.instances.iter().map(|i| (i.id.as_str(), i.app.as_str())).collect();
    let mut out = Exports::default();
    let mut live: BTreeMap<String, u32> = BTreeMap::new();
    for i in &world.instances {
        *live.entry(i.app.clone()).or_default() += u32::from(i.alive);
    }
    for r in &cfg.rules {
        for app in live.keys() {
            if r.app.as_deref().is_none_or(|a| a == app) {
                out.rule_active.insert((app.clone(), r.name.clone()), false);
            }
        }
    }
    let mut up: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut down: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in state.states().filter(|v| v.true_since_ms.is_some()) {
        let Some(rule) = cfg.rules.iter().find(|r| r.name == v.rule) else { continue };
        let app = app_of.get(v.key).copied().unwrap_or(v.key).to_string();
        out.rule_active.insert((app.clone(), rule.name.clone()), true);
        let why = format!("{}: {}", rule.name, rule.when_src);
        if rule.then.contains(&jvmwatch_controller::Action::ScaleUp) {
            up.entry(app.clone()).or_default().push(why.clone());
        }
        if rule.then.contains(&jvmwatch_controller::Action::ScaleDown) {
            down.entry(app).or_default().push(why);
        }
    }
    for (app, current) in live {
        let bounds = world.apps.get(&app).map(|a| (a.min, a.max)).or_else(|| cfg.app(&app).map(|a| (a.min, a.max)));
        let (mut desired, mut reasons) = (current, Vec::new());
        if let Some(r) = up.remove(&app) {
            desired = current + 1;
            reasons = r;
        } else if let Some(r) = down.remove(&app) {
            desired = current.saturating_sub(1);
            reasons = r;
        }
        if let Some((min, max)) = bounds {
            desired = desired.clamp(min, max.max(min));
        }
        out.scale.insert(app.clone(), ScaleRecommendation { app, current, desired, reasons });
    }
    out
}

impl Controller {
    /// A controller over `registry` with `cfg`; `supervise` adds a supervisor launching into
    /// the registry's directory with `agent`.
    pub fn new(
        cfg: Config,
        cfg_path: Option<PathBuf>,
        store: Store,
        registry: Arc<Registry>,
        supervisor: Option<Supervisor>,
    ) -> Arc<Controller> {
        let counts = store
            .counts()
            .unwrap_or_default()
            .into_iter()
            .map(|(a, r, x, n)| ((a, r, x), n))
            .collect::<BTreeMap<_, _>>();
        let (exit_tx, rx) = mpsc::channel();
        let usage = if cfg.usage.enabled {
            match crate::usage::collect::Collector::new(&cfg.usage, store.path(), now_ms() as i64) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("jvmwatch: usage records off: {e}");
                    None
                }
            }
        } else {
            None
        };
        Arc::new(Controller {
            usage: Mutex::new(usage),
            license_active: Mutex::new(BTreeMap::new()),
            tuner: Mutex::new(tuning::Tuner::default()),
            cfg: Mutex::new(Arc::new(cfg)),
            cfg_path,
            store,
            registry,
            supervisor,
            counts: Mutex::new(counts),
            exits: Mutex::new(Some(rx)),
            exit_tx,
            stop: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            exports: Mutex::new(Exports::default()),
            escalate_pending: AtomicBool::new(false),
        })
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the rules file; a bad new config is refused and the old one kept.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.cfg_path else { return Err("no config file to reload".into()) };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg = Config::parse(&text, path).map_err(|e| e.to_string())?;
        if let Some(s) = &self.supervisor {
            s.reconfigure(&cfg);
        }
        *self.cfg.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
        Ok(())
    }

    /// Where reaper threads report child exits.
    pub fn exit_sender(&self) -> Sender<Exit> {
        self.exit_tx.clone()
    }

    /// Stops the loop thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Records a decision, counts and publishes it; returns its store id (None if the store
    /// failed, which is reported and does not stop the controller).
    pub fn record(&self, d: &Decision) -> Option<i64> {
        let actions: Vec<String> = d.actions.iter().map(|a| a.name()).collect();
        let figures = serde_json::to_value(&d.figures).unwrap_or(Value::Null);
        let id = match self.store.record_decision(d) {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("jvmwatch: {e}");
                None
            }
        };
        {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            for a in &actions {
                *c.entry((d.app.clone(), d.rule.clone(), a.clone())).or_default() += 1;
            }
        }
        let msg = json!({
            "id": id, "at": crate::report::rfc3339(d.at_ms * 1_000_000), "at_ms": d.at_ms, "rule": d.rule,
            "app": d.app, "instance": d.instance, "actions": actions, "figures": figures, "reason": d.reason,
        });
        let jvm: Arc<str> = d.instance.clone().unwrap_or_else(|| d.app.clone()).into();
        let _ = self.registry.tx.send(Arc::new(Msg::new(jvm, None, "decision", msg.to_string())));
        id
    }

    /// Records one step of decision `id`.
    pub fn step(&self, id: Option<i64>, step: &str, outcome: &str, detail: &str) {
        if let Some(id) = id {
            if let Err(e) = self.store.record_step(id, now_ms(), step, outcome, detail) {
                eprintln!("jvmwatch: {e}");
            }
        }
    }

    /// The exports of the last evaluation.
    pub fn exports(&self) -> Exports {
        self.exports.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `jvmwatch_decisions_total{app,rule,action}`, `jvmwatch_rule_active{app,rule}` and
    /// `jvmwatch_scale_recommendation{app}` in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        use crate::serve::metrics::esc;
        let mut out = String::new();
        {
            let x = self.exports.lock().unwrap_or_else(|e| e.into_inner());
            out.push_str(
                "# HELP jvmwatch_rule_active 1 while a rule's condition holds for the app (or one of its JVMs).\n\
                 # TYPE jvmwatch_rule_active gauge\n",
            );
            for ((app, rule), on) in &x.rule_active {
                out.push_str(&format!(
                    "jvmwatch_rule_active{{app=\"{}\",rule=\"{}\"}} {}\n",
                    esc(app),
                    esc(rule),
                    u8::from(*on)
                ));
            }
            out.push_str(
                "# HELP jvmwatch_scale_recommendation The instance count the app's scale rules want.\n\
                 # TYPE jvmwatch_scale_recommendation gauge\n",
            );
            for (app, r) in &x.scale {
                out.push_str(&format!("jvmwatch_scale_recommendation{{app=\"{}\"}} {}\n", esc(app), r.desired));
            }
        }
        {
            let l = self.license_active.lock().unwrap_or_else(|e| e.into_inner());
            out.push_str(
                "# HELP jvmwatch_license_alert 1 while a license alert condition (docs/usage.md) holds for the app.\n\
                 # TYPE jvmwatch_license_alert gauge\n",
            );
            for ((app, kind), on) in l.iter() {
                out.push_str(&format!(
                    "jvmwatch_license_alert{{app=\"{}\",kind=\"{}\"}} {}\n",
                    esc(app),
                    esc(kind),
                    u8::from(*on)
                ));
            }
        }
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str(
            "# HELP jvmwatch_decisions_total Decisions taken by the controller, by app, rule and action.\n\
             # TYPE jvmwatch_decisions_total counter\n",
        );
        for ((app, rule, action), n) in c.iter() {
            out.push_str(&format!(
                "jvmwatch_decisions_total{{app=\"{}\",rule=\"{}\",action=\"{}\"}} {n}\n",
                crate::serve::metrics::esc(app),
                crate::serve::metrics::esc(rule),
                crate::serve::metrics::esc(action)
            ));
        }
        out
    }

    /// One usage tick: appends records at the end of each interval and records the license
    /// alerts that fire as `license:KIND` decisions (SSE, decision log, hooks).
    fn usage_tick(self: &Arc<Self>, now: u64, seen: &[crate::usage::collect::Seen]) {
        let (fired, active, hooks) = {
            let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
            let Some(c) = u.as_mut() else { return };
            let fired = c.tick(now as i64, seen);
            (fired, c.active_alerts(), c.cfg().alert_hooks.clone())
        };
        {
            let mut l = self.license_active.lock().unwrap_or_else(|e| e.into_inner());
            for v in l.values_mut() {
                *v = false;
            }
            for (app, kind) in active {
                l.insert((app, kind.to_string()), true);
            }
        }
        for a in fired {
            let d = Decision {
                at_ms: now,
                rule: format!("license:{}", a.kind),
                app: a.app.clone(),
                instance: a.instance.clone(),
                actions: hooks.iter().map(|h| jvmwatch_controller::Action::Hook(h.clone())).collect(),
                figures: vec![jvmwatch_controller::Figure {
                    expr: format!("{} (limit {})", a.kind, a.limit),
                    instance: a.instance.clone(),
                    value: a.value,
                    window_ms: None,
                }],
                reason: a.reason.clone(),
            };
            let id = self.record(&d);
            let me = Arc::clone(self);
            let _ =
                std::thread::Builder::new().name("jvmwatch-action".into()).spawn(move || exec::carry_out(&me, &d, id));
        }
    }

    /// One tuning tick (supervisor only): a cycle when due, or the restore after tuning was
    /// switched off; every change is recorded as a decision.
    fn tuning_tick(self: &Arc<Self>, now: u64, cfg: &Config) {
        let Some(s) = &self.supervisor else { return };
        let targets = s.tuning_targets();
        let made = self.tuner.lock().unwrap_or_else(|e| e.into_inner()).tick(now, &cfg.tuning, &targets);
        self.record_tuning(made);
    }

    /// The supervisor stops: tuned JVMs get their original nice values back (before they are
    /// stopped), and tuning makes no more changes.
    pub fn tuning_stop(self: &Arc<Self>) {
        let made = self.tuner.lock().unwrap_or_else(|e| e.into_inner()).stop(now_ms());
        self.record_tuning(made);
    }

    fn record_tuning(self: &Arc<Self>, made: Vec<tuning::Made>) {
        for (d, step) in made {
            let id = self.record(&d);
            if let Some((step, outcome, detail)) = step {
                self.step(id, step, outcome, &detail);
            }
            if !d.actions.is_empty() {
                let me = Arc::clone(self);
                let _ = std::thread::Builder::new()
                    .name("jvmwatch-action".into())
                    .spawn(move || exec::carry_out(&me, &d, id));
            }
        }
    }

    /// Starts the loop thread.
    pub fn start(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let me = Arc::clone(self);
        let rx = self.exits.lock().unwrap_or_else(|e| e.into_inner()).take().expect("controller started once");
        std::thread::Builder::new().name("jvmwatch-controller".into()).spawn(move || me.run(rx)).expect("spawn")
    }

    fn run(self: Arc<Self>, rx: Receiver<Exit>) {
        if let Some(s) = &self.supervisor {
            s.start_all(&self);
        }
        let mut world = World { bucket_bounds_ms: feed::bucket_bounds_ms(), ..World::default() };
        let mut state = EvalState::default();
        let mut cursors = HashMap::new();
        let mut last_sample = 0u64;
        let mut wanted = (self.config(), self.config().series());
        while !self.stop.load(Ordering::Relaxed) {
            // Wake for the next tick, or sooner for a start that is due (a restart after a
            // short backoff should not wait for the tick).
            let wait = match self.supervisor.as_ref().and_then(|s| s.next_due()) {
                Some(due) => Duration::from_millis(due.saturating_sub(now_ms())).min(TICK),
                None => TICK,
            };
            match rx.recv_timeout(wait) {
                Ok(exit) => {
                    if let Some(s) = &self.supervisor {
                        s.on_exit(&self, exit);
                    }
                    while let Ok(more) = rx.try_recv() {
                        if let Some(s) = &self.supervisor {
                            s.on_exit(&self, more);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let cfg = self.config();
            let now = now_ms();
            if let Some(s) = &self.supervisor {
                s.start_due(&self, now);
                s.check_start_timeouts(&self, now);
                if self.escalate_pending.swap(false, Ordering::Relaxed) {
                    s.maybe_escalate(&self);
                }
            }
            let sample_now = now.saturating_sub(last_sample) >= cfg.controller.sample_every.as_millis() as u64;
            if sample_now {
                last_sample = now;
            }
            // The series the rules read change only with the config (SIGHUP).
            if !Arc::ptr_eq(&wanted.0, &cfg) {
                wanted = (cfg.clone(), cfg.series());
            }
            let wanted_series = &wanted.1;
            {
                let jvms = self.registry.lock();
                let app_of = |j: &crate::serve::registry::Jvm| {
                    self.supervisor
                        .as_ref()
                        .and_then(|s| s.app_of(&j.id))
                        .or_else(|| (!j.live.app_name.is_empty()).then(|| j.live.app_name.clone()))
                        .unwrap_or_else(|| "default".into())
                };
                let tick = feed::Tick { wanted: wanted_series, history: &cfg.controller, sample_now, t_ms: now };
                feed::update(&mut world, &mut cursors, &jvms, &app_of, &tick);
                let seen: Vec<crate::usage::collect::Seen> = jvms
                    .values()
                    .filter(|j| j.is_live())
                    .map(|j| crate::usage::collect::Seen {
                        instance: j.id.to_string(),
                        app: app_of(j),
                        pid: j.header.pid,
                        heap_bytes: j.snapshot.as_ref().map_or(0, |s| s.heap_used as i64),
                        processor: j.host_facts.processor.as_ref().map(|(_, p)| p.clone()),
                        resources: j.host_facts.resources.as_ref().map(|(_, r)| r.clone()),
                    })
                    .collect();
                drop(jvms);
                self.usage_tick(now, &seen);
            }
            self.tuning_tick(now, &cfg);
            world.apps = match &self.supervisor {
                Some(s) => s.app_status(),
                None => BTreeMap::<String, AppStatus>::new(),
            };
            let decisions = evaluate(&cfg, &world, &mut state, now);
            *self.exports.lock().unwrap_or_else(|e| e.into_inner()) = exports(&cfg, &world, &state);
            for d in decisions {
                let id = self.record(&d);
                let me = Arc::clone(&self);
                let _ = std::thread::Builder::new()
                    .name("jvmwatch-action".into())
                    .spawn(move || exec::carry_out(&me, &d, id));
            }
        }
    }
}

//! Rule evaluation: `(config, world, state, now) -> decisions`.
//!
//! The caller builds a [`World`] (every instance with its [`History`], verdict and findings, and
//! the size of every app), keeps one [`EvalState`] across calls, and calls [`evaluate`] with the
//! current time. Nothing here reads a clock or does I/O, so a time sequence is a plain loop.
//!
//! Firing, per rule and scope key (the instance id for `jvm` scope, the app name for `app` scope):
//!
//! 1. The condition must be true at every evaluation for `for` (a false or absent result resets
//!    the timer).
//! 2. Then it fires when `cooldown` has passed since its last firing and `max_per` (sliding) allows.
//! 3. After firing it is latched: it fires again only after the condition was seen false — except
//!    rules whose actions are all `scale_up`/`scale_down`, which re-arm after the cooldown while
//!    the condition stays true (so sustained load keeps scaling at the allowed rate).
//! 4. `scale_up` is dropped when the app is at `max`, `scale_down` when at `min`; a decision left
//!    without actions is not made, and consumes no cooldown or `max_per` budget.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::ops::Range;

use serde::Serialize;

use crate::config::{Action, Config, Rule, Scope};
use crate::expr::{Agg, BinOp, CmpOp, Cond, Value};
use crate::text::{fmt_ms, fmt_num};
use crate::window::{window_range, HistPoint, History};

/// One JVM as the controller sees it.
#[derive(Clone, Debug, Default)]
pub struct Instance {
    /// Unique id (the state of `jvm`-scope rules is kept per id).
    pub id: String,
    /// The app it belongs to.
    pub app: String,
    /// The process is alive.
    pub alive: bool,
    /// `running`, `exited`, `killed` or `crashed`.
    pub verdict: String,
    /// `oom`, `deadlock`, `gc_thrash`, `heap_exhausted`, `hung`, ...
    pub findings: Vec<String>,
    /// Its series.
    pub history: History,
}

/// The size and bounds of an app, for clamping scale decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppStatus {
    /// App name.
    pub name: String,
    /// Instances it has now (running or starting).
    pub instances: u32,
    /// Fewest instances.
    pub min: u32,
    /// Most instances.
    pub max: u32,
}

/// Everything the controller looks at in one evaluation.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Every instance (live and dead).
    pub instances: Vec<Instance>,
    /// App sizes by name. An app missing here is clamped by its `[[app]]` min/max and the count of
    /// its live instances, or, when not configured either, by min 1 and no max.
    pub apps: BTreeMap<String, AppStatus>,
    /// Upper bound, in milliseconds, of each histogram bucket (index as in the ring); the last
    /// bucket is taken as open-ended. Empty: percentiles are absent.
    pub bucket_bounds_ms: Vec<f64>,
}

/// A decision: a rule fired.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Evaluation time, milliseconds.
    pub at_ms: u64,
    /// Rule name.
    pub rule: String,
    /// App the decision is about.
    pub app: String,
    /// Instance id (`jvm`-scope rules); None for `app`-scope rules.
    pub instance: Option<String>,
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// The inputs, with their windows.
    pub figures: Vec<Figure>,
    /// Human readable: `mean(app.latency, 5m) = 142.3 > 100 (held 0s)`.
    pub reason: String,
}

/// One input of a decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure {
    /// The expression, e.g. `mean(app.latency, 5m)`.
    pub expr: String,
    /// The instance it was computed for (None: app aggregate).
    pub instance: Option<String>,
    /// Its value.
    pub value: f64,
    /// Its window, when windowed.
    pub window_ms: Option<u64>,
}

/// What the controller remembers between evaluations: per rule and scope key, since when the
/// condition has been true, whether it is latched, and its recent firings. Keys that were not
/// evaluated in the last call (an instance gone, a rule removed) are dropped.
#[derive(Clone, Debug, Default)]
pub struct EvalState {
    rules: HashMap<String, HashMap<String, KeyState>>,
    generation: u64,
    scratch: Scratch,
}

#[derive(Clone, Debug, Default)]
struct KeyState {
    true_since: Option<u64>,
    latched: bool,
    last_fired: Option<u64>,
    recent: VecDeque<u64>,
    seen: u64,
}

/// A read-only view of one rule state (for export as metrics / JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleStateView<'a> {
    /// Rule name.
    pub rule: &'a str,
    /// Instance id or app name.
    pub key: &'a str,
    /// Since when the condition has been true (None: false at the last evaluation).
    pub true_since_ms: Option<u64>,
    /// Fired and waiting for the condition to go false.
    pub latched: bool,
    /// The last firing.
    pub last_fired_ms: Option<u64>,
}

impl EvalState {
    /// The states the controller holds (only keys whose condition was ever true).
    pub fn states(&self) -> impl Iterator<Item = RuleStateView<'_>> {
        self.rules.iter().flat_map(|(rule, keys)| {
            keys.iter().map(move |(key, k)| RuleStateView {
                rule,
                key,
                true_since_ms: k.true_since,
                latched: k.latched,
                last_fired_ms: k.last_fired,
            })
        })
    }

    /// How many (rule, key) states are held.
    pub fn len(&self) -> usize {
        self.rules.values().map(HashMap::len).sum()
    }

    /// Whether no state is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, Default)]
struct Scratch {
    buckets: Vec<u64>,
    peers: Vec<f64>,
    zcache: Vec<ZEntry>,
    /// The rule being evaluated (part of the z-score cache key).
    zrule: usize,
}

/// A cached `zscore` centre and scale: (rule, zscore id in the rule, app group, median and
/// scale), valid for one evaluation.
type ZEntry = (usize, usize, usize, Option<(f64, f64)>);

/// The instances of one app.
struct Group<'w> {
    app: &'w str,
    all: Vec<usize>,
    live: Vec<usize>,
}

struct Env<'w> {
    world: &'w World,
    groups: Vec<Group<'w>>,
    inst_group: Vec<usize>,
    now: u64,
}

#[derive(Clone, Copy)]
enum Target {
    Jvm(usize),
    App(usize),
}

type Figs = Option<Vec<Figure>>;

/// Evaluates every rule at `now_ms` and returns the decisions, in rule order then key order.
pub fn evaluate(cfg: &Config, world: &World, state: &mut EvalState, now_ms: u64) -> Vec<Decision> {
    state.generation = state.generation.wrapping_add(1);
    let gen = state.generation;
    let env = build_env(world, now_ms);
    let mut sc = std::mem::take(&mut state.scratch);
    let mut pending = vec![0i64; env.groups.len()];
    let mut out: Vec<(usize, Decision)> = Vec::new();
    let mut keys: Vec<HashMap<String, KeyState>> =
        cfg.rules.iter().map(|r| state.rules.remove(&r.name).unwrap_or_default()).collect();
    sc.zcache.clear();
    // JVM-scope rules instance by instance: one instance's history stays in the CPU caches
    // across all its rules (histories of many JVMs are far larger than the caches).
    let jvm_rules: Vec<usize> = (0..cfg.rules.len()).filter(|&r| cfg.rules[r].scope == Scope::Jvm).collect();
    for (i, inst) in world.instances.iter().enumerate() {
        for &r in &jvm_rules {
            let rule = &cfg.rules[r];
            if rule.app.as_deref().is_some_and(|a| a != inst.app) {
                continue;
            }
            sc.zrule = r;
            let ctx = Step { cfg, env: &env, rule, target: Target::Jvm(i), key: &inst.id, gen };
            if let Some(d) = ctx.run(&mut keys[r], &mut sc, &mut pending) {
                out.push((r, d));
            }
        }
    }
    for (r, rule) in cfg.rules.iter().enumerate().filter(|(_, rule)| rule.scope == Scope::App) {
        for (g, group) in env.groups.iter().enumerate() {
            if rule.app.as_deref().is_some_and(|a| a != group.app) {
                continue;
            }
            sc.zrule = r;
            let ctx = Step { cfg, env: &env, rule, target: Target::App(g), key: group.app, gen };
            if let Some(d) = ctx.run(&mut keys[r], &mut sc, &mut pending) {
                out.push((r, d));
            }
        }
    }
    // Rule order, then key order (a stable sort keeps instance and group order per rule).
    out.sort_by_key(|(r, _)| *r);
    for (rule, k) in cfg.rules.iter().zip(keys) {
        state.rules.insert(rule.name.clone(), k);
    }
    let out: Vec<Decision> = out.into_iter().map(|(_, d)| d).collect();
    state.scratch = sc;
    state.rules.retain(|name, keys| {
        keys.retain(|_, k| k.seen == gen);
        cfg.rules.iter().any(|r| r.name == *name)
    });
    out
}

fn build_env(world: &World, now: u64) -> Env<'_> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
    // Apps with instances, then apps known only by status; group order is by app name.
    let mut names: Vec<&str> = world.instances.iter().map(|i| i.app.as_str()).collect();
    names.extend(world.apps.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    for name in names {
        index.insert(name, groups.len());
        groups.push(Group { app: name, all: Vec::new(), live: Vec::new() });
    }
    let mut inst_group = Vec::with_capacity(world.instances.len());
    for (i, inst) in world.instances.iter().enumerate() {
        let g = index.get(inst.app.as_str()).copied().unwrap_or(0);
        inst_group.push(g);
        if let Some(group) = groups.get_mut(g) {
            group.all.push(i);
            if inst.alive {
                group.live.push(i);
            }
        }
    }
    Env { world, groups, inst_group, now }
}

/// One (rule, key) evaluation.
struct Step<'a, 'w> {
    cfg: &'a Config,
    env: &'a Env<'w>,
    rule: &'a Rule,
    target: Target,
    key: &'a str,
    gen: u64,
}

impl Step<'_, '_> {
    fn run(&self, keys: &mut HashMap<String, KeyState>, sc: &mut Scratch, pending: &mut [i64]) -> Option<Decision> {
        let (env, rule, now) = (self.env, self.rule, self.env.now);
        let truth = cond(env, sc, &mut None, self.target, &rule.when);
        if !truth {
            if let Some(ks) = keys.get_mut(self.key) {
                ks.seen = self.gen;
                ks.true_since = None;
                ks.latched = false;
            }
            return None;
        }
        if !keys.contains_key(self.key) {
            keys.insert(self.key.to_string(), KeyState::default());
        }
        let ks = keys.get_mut(self.key)?;
        ks.seen = self.gen;
        let since = *ks.true_since.get_or_insert(now);
        let held = now.saturating_sub(since);
        if held < ms(rule.hold) {
            return None;
        }
        let cooldown = ms(rule.cooldown);
        let cooled = ks.last_fired.map_or(true, |t| now.saturating_sub(t) >= cooldown);
        if ks.latched {
            if rule.scale_only() && cooled {
                ks.latched = false;
            } else {
                return None;
            }
        }
        if !cooled {
            return None;
        }
        if let Some((n, per)) = rule.max_per {
            let per = ms(per);
            while ks.recent.front().is_some_and(|&t| t.saturating_add(per) <= now) {
                ks.recent.pop_front();
            }
            if ks.recent.len() >= n as usize {
                return None;
            }
        }
        let group = match self.target {
            Target::Jvm(i) => env.inst_group.get(i).copied().unwrap_or(0),
            Target::App(g) => g,
        };
        let actions = self.clamp(group, pending);
        if actions.is_empty() {
            return None;
        }
        ks.latched = true;
        ks.last_fired = Some(now);
        if rule.max_per.is_some() {
            ks.recent.push_back(now);
        }
        let mut figs: Figs = Some(Vec::new());
        let mut reason = String::new();
        explain(env, sc, &mut figs, self.target, &rule.when, &mut reason);
        let _ = write!(reason, " (held {})", fmt_ms(held));
        let (app, instance) = match self.target {
            Target::Jvm(i) => {
                let inst = env.world.instances.get(i)?;
                (inst.app.clone(), Some(inst.id.clone()))
            }
            Target::App(g) => (env.groups.get(g)?.app.to_string(), None),
        };
        Some(Decision {
            at_ms: now,
            rule: rule.name.clone(),
            app,
            instance,
            actions,
            figures: figs.unwrap_or_default(),
            reason,
        })
    }

    /// The rule's actions without the scale steps the app's bounds forbid.
    fn clamp(&self, group: usize, pending: &mut [i64]) -> Vec<Action> {
        let env = self.env;
        let Some(g) = env.groups.get(group) else { return self.rule.then.clone() };
        let live = g.live.len() as i64;
        let (now_n, min, max) = match env.world.apps.get(g.app) {
            Some(s) => (i64::from(s.instances), i64::from(s.min), i64::from(s.max)),
            None => match self.cfg.app(g.app) {
                Some(a) => (live, i64::from(a.min), i64::from(a.max)),
                None => (live, 1, i64::MAX),
            },
        };
        let base = now_n + pending.get(group).copied().unwrap_or(0);
        let mut n = base;
        let mut out = Vec::with_capacity(self.rule.then.len());
        for a in &self.rule.then {
            match a {
                Action::ScaleUp if n >= max => {}
                Action::ScaleDown if n <= min => {}
                Action::ScaleUp => {
                    n += 1;
                    out.push(a.clone());
                }
                Action::ScaleDown => {
                    n -= 1;
                    out.push(a.clone());
                }
                _ => out.push(a.clone()),
            }
        }
        if !out.is_empty() {
            if let Some(p) = pending.get_mut(group) {
                *p += n - base;
            }
        }
        out
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Conditions

fn cond(env: &Env<'_>, sc: &mut Scratch, figs: &mut Figs, t: Target, c: &Cond) -> bool {
    match c {
        Cond::Or(parts) => parts.iter().any(|c| cond(env, sc, figs, t, c)),
        Cond::And(parts) => parts.iter().all(|c| cond(env, sc, figs, t, c)),
        Cond::Not(c) => !cond(env, sc, figs, t, c),
        Cond::Alive => match t {
            Target::Jvm(i) => env.world.instances.get(i).is_some_and(|x| x.alive),
            Target::App(g) => env.groups.get(g).is_some_and(|g| !g.live.is_empty()),
        },
        Cond::Verdict(words) => matching(env, t, |inst| words.contains(&inst.verdict)).is_some(),
        Cond::Finding(words) => matching(env, t, |inst| inst.findings.iter().any(|f| words.contains(f))).is_some(),
        Cond::Cmp(a, op, b) => {
            let x = value(env, sc, figs, t, a);
            let y = value(env, sc, figs, t, b);
            match (x, y) {
                (Some(x), Some(y)) => compare(x, *op, y),
                _ => false,
            }
        }
    }
}

/// The first instance of the target that satisfies `f` (app scope: any instance, live or dead).
fn matching<'w>(env: &Env<'w>, t: Target, f: impl Fn(&Instance) -> bool) -> Option<&'w Instance> {
    let world = env.world;
    match t {
        Target::Jvm(i) => world.instances.get(i).filter(|x| f(x)),
        Target::App(g) => env.groups.get(g)?.all.iter().filter_map(|&i| world.instances.get(i)).find(|x| f(x)),
    }
}

fn compare(x: f64, op: CmpOp, y: f64) -> bool {
    match op {
        CmpOp::Gt => x > y,
        CmpOp::Ge => x >= y,
        CmpOp::Lt => x < y,
        CmpOp::Le => x <= y,
        CmpOp::Eq => x == y,
        CmpOp::Ne => x != y,
    }
}

/// Writes why `c` is true, recording figures.
fn explain(env: &Env<'_>, sc: &mut Scratch, figs: &mut Figs, t: Target, c: &Cond, out: &mut String) {
    match c {
        Cond::Or(parts) => {
            let mut first = true;
            for p in parts {
                if cond(env, sc, &mut None, t, p) {
                    if !first {
                        out.push_str(" or ");
                    }
                    first = false;
                    explain(env, sc, figs, t, p, out);
                }
            }
        }
        Cond::And(parts) => {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push_str(" and ");
                }
                let paren = matches!(p, Cond::Or(_));
                if paren {
                    out.push('(');
                }
                explain(env, sc, figs, t, p, out);
                if paren {
                    out.push(')');
                }
            }
        }
        Cond::Not(_) | Cond::Alive => {
            let _ = write!(out, "{c}");
        }
        Cond::Verdict(words) => match matching(env, t, |inst| words.contains(&inst.verdict)) {
            Some(inst) if matches!(t, Target::App(_)) => {
                let _ = write!(out, "verdict {} ({})", inst.verdict, inst.id);
            }
            Some(inst) => {
                let _ = write!(out, "verdict {}", inst.verdict);
            }
            None => {
                let _ = write!(out, "{c}");
            }
        },
        Cond::Finding(words) => match matching(env, t, |inst| inst.findings.iter().any(|f| words.contains(f))) {
            Some(inst) => {
                let found: Vec<&str> = inst.findings.iter().filter(|f| words.contains(f)).map(String::as_str).collect();
                let _ = write!(out, "finding {}", found.join(", "));
                if matches!(t, Target::App(_)) {
                    let _ = write!(out, " ({})", inst.id);
                }
            }
            None => {
                let _ = write!(out, "{c}");
            }
        },
        Cond::Cmp(a, op, b) => {
            let x = value(env, sc, figs, t, a);
            let y = value(env, sc, figs, t, b);
            side(out, a, x);
            let _ = write!(out, " {op} ");
            side(out, b, y);
        }
    }
}

fn side(out: &mut String, v: &Value, x: Option<f64>) {
    let _ = write!(out, "{v}");
    if !matches!(v, Value::Num { .. }) {
        match x {
            Some(x) => {
                let _ = write!(out, " = {}", fmt_num(x));
            }
            None => out.push_str(" = absent"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn value(env: &Env<'_>, sc: &mut Scratch, figs: &mut Figs, t: Target, v: &Value) -> Option<f64> {
    let r = match v {
        Value::Num { v, .. } => return Some(*v),
        Value::Neg(a) => return value(env, sc, figs, t, a).map(|x| -x),
        Value::Bin(a, op, b) => {
            let x = value(env, sc, figs, t, a)?;
            let y = value(env, sc, figs, t, b)?;
            return finite(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
            });
        }
        Value::ZScore { inner, id } => zscore(env, sc, figs, t, inner, *id),
        Value::Last(_) | Value::Agg { .. } | Value::LastN { .. } => match t {
            Target::Jvm(i) => env.world.instances.get(i).and_then(|inst| leaf(env, &mut sc.buckets, &inst.history, v)),
            Target::App(g) => app_leaf(env, sc, g, v),
        },
    };
    if let (Some(f), Some(x)) = (figs.as_mut(), r) {
        let instance = match t {
            Target::Jvm(i) => env.world.instances.get(i).map(|x| x.id.clone()),
            Target::App(_) => None,
        };
        let window_ms = match v {
            Value::Agg { window_ms, .. } => Some(*window_ms),
            _ => None,
        };
        f.push(Figure { expr: v.to_string(), instance, value: x, window_ms });
    }
    r
}

/// Robust z-score of `inner` for instance `t` among the live instances of its app.
fn zscore(env: &Env<'_>, sc: &mut Scratch, figs: &mut Figs, t: Target, inner: &Value, id: usize) -> Option<f64> {
    let Target::Jvm(i) = t else { return None };
    let g = env.inst_group.get(i).copied()?;
    let rule = sc.zrule;
    let stats = match sc.zcache.iter().find(|e| e.0 == rule && e.1 == id && e.2 == g) {
        Some(e) => e.3,
        None => {
            let mut peers = std::mem::take(&mut sc.peers);
            peers.clear();
            for &j in env.groups.get(g).map_or(&[][..], |g| &g.live[..]) {
                if let Some(x) = value(env, sc, &mut None, Target::Jvm(j), inner) {
                    peers.push(x);
                }
            }
            let s = robust_center_scale(&mut peers);
            sc.peers = peers;
            sc.zcache.push((rule, id, g, s));
            s
        }
    };
    let (median, scale) = stats?;
    let x = value(env, sc, figs, t, inner)?;
    if scale > 0.0 {
        finite((x - median) / scale)
    } else if x == median {
        Some(0.0)
    } else {
        None
    }
}

/// Median and scale (MAD × 1.4826; when the MAD is 0, mean absolute deviation × 1.2533) of at
/// least 3 values; None with fewer.
fn robust_center_scale(v: &mut [f64]) -> Option<(f64, f64)> {
    if v.len() < 3 {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let median = median_sorted(v);
    for x in v.iter_mut() {
        *x = (*x - median).abs();
    }
    v.sort_unstable_by(f64::total_cmp);
    let mad = median_sorted(v) * 1.4826;
    if mad > 0.0 {
        return Some((median, mad));
    }
    let mean_ad = v.iter().sum::<f64>() / v.len() as f64 * 1.2533;
    Some((median, mean_ad))
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A series value for one instance.
fn leaf(env: &Env<'_>, buckets: &mut Vec<u64>, h: &History, v: &Value) -> Option<f64> {
    let now = env.now;
    match v {
        Value::Last(s) => {
            let dq = h.series(s)?;
            let r = window_range(dq, now, None, |p| p.0);
            dq.get(r.end.checked_sub(1)?).map(|p| p.1)
        }
        Value::LastN { max, series, n } => {
            let dq = h.series(series)?;
            let r = window_range(dq, now, None, |p| p.0);
            if r.len() < *n {
                return None;
            }
            let pts = dq.range(r.end - n..r.end).map(|p| p.1);
            Some(if *max { pts.fold(f64::MIN, f64::max) } else { pts.fold(f64::MAX, f64::min) })
        }
        Value::Agg { func, series, window_ms } => {
            if !h.covers(now, *window_ms) {
                return None;
            }
            match func {
                Agg::Mean | Agg::Count | Agg::Pct(_) => {
                    let dq = h.hist(series)?;
                    let r = window_range(dq, now, Some(*window_ms), |p| p.t_ms);
                    let resets = h.hist_reset_after(series, dq.get(r.start).map_or(0, |p| p.t_ms));
                    match func {
                        Agg::Pct(q) => {
                            let bounds = &env.world.bucket_bounds_ms;
                            if bounds.is_empty() {
                                return None;
                            }
                            buckets.clear();
                            buckets.resize(bounds.len(), 0);
                            hist_delta(dq, r, resets, Some(buckets))?;
                            percentile(buckets, bounds, *q)
                        }
                        Agg::Count => hist_delta(dq, r, resets, None).map(|(c, _)| c as f64),
                        _ => {
                            let (c, s) = hist_delta(dq, r, resets, None)?;
                            (c > 0).then(|| s / c as f64).and_then(finite)
                        }
                    }
                }
                _ => {
                    let s = h.series_store(series)?;
                    let r = window_range(s.points(), now, Some(*window_ms), |p| p.0);
                    gauge_agg(s, r, *func)
                }
            }
        }
        _ => None,
    }
}

/// avg/min/max/last/rate/increase over the points of `r`.
fn gauge_agg(s: &crate::series_store::Series, r: Range<usize>, func: Agg) -> Option<f64> {
    let dq = s.points();
    let n = r.len();
    if n == 0 {
        return None;
    }
    match func {
        Agg::Avg => finite(s.sum(r) / n as f64),
        Agg::Min => s.min_max(r).map(|m| m.0),
        Agg::Max => s.min_max(r).map(|m| m.1),
        Agg::Last => dq.get(r.end - 1).map(|p| p.1),
        Agg::Rate | Agg::Increase => {
            if n < 2 {
                return None;
            }
            let (first, last) = (dq.get(r.start)?, dq.get(r.end - 1)?);
            let inc = if s.reset_after(first.0) {
                let mut inc = 0.0;
                let mut prev: Option<f64> = None;
                for p in dq.range(r.clone()) {
                    if let Some(q) = prev {
                        // A drop is a counter reset: count from 0 after it.
                        inc += if p.1 >= q { p.1 - q } else { p.1 };
                    }
                    prev = Some(p.1);
                }
                inc
            } else {
                // No reset in the window: last − first.
                last.1 - first.1
            };
            if func == Agg::Increase {
                return finite(inc);
            }
            let secs = last.0.saturating_sub(first.0) as f64 / 1000.0;
            (secs > 0.0).then(|| inc / secs).and_then(finite)
        }
        Agg::Mean | Agg::Count | Agg::Pct(_) => None,
    }
}

/// The change of a cumulative histogram over the points of `r` (at least 2): Δcount and Δsum,
/// adding per-bucket deltas into `buckets` (indexes past its end go to its last slot). A drop of
/// the count is a reset: counting restarts from 0 after it.
fn hist_delta(
    dq: &VecDeque<HistPoint>,
    r: Range<usize>,
    resets: bool,
    mut buckets: Option<&mut Vec<u64>>,
) -> Option<(u64, f64)> {
    if r.len() < 2 {
        return None;
    }
    let mut count = 0u64;
    let mut sum = 0.0;
    let mut add = |base: Option<&HistPoint>, end: &HistPoint| {
        count = count.saturating_add(end.count.saturating_sub(base.map_or(0, |b| b.count)));
        sum += end.sum_ms - base.map_or(0.0, |b| b.sum_ms);
        if let Some(out) = buckets.as_deref_mut() {
            let last = out.len().saturating_sub(1);
            for j in end.bucket_range() {
                let d = end.bucket(j).saturating_sub(base.map_or(0, |b| b.bucket(j)));
                if let Some(slot) = out.get_mut(j.min(last)) {
                    *slot = slot.saturating_add(d);
                }
            }
        }
    };
    let mut base = dq.get(r.start);
    let mut prev = dq.get(r.start)?;
    if resets {
        for p in dq.range(r.start + 1..r.end) {
            if p.count < prev.count {
                add(base, prev);
                base = None;
            }
            prev = p;
        }
    } else {
        // No reset in the window (History tracks them): last − first.
        prev = dq.get(r.end - 1)?;
    }
    add(base, prev);
    Some((count, sum))
}

/// The `q`th percentile of per-bucket counts, interpolated linearly within the bucket; the last
/// bucket is open-ended and yields its lower bound.
fn percentile(buckets: &[u64], bounds: &[f64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q / 100.0 * total as f64;
    let mut cum = 0.0;
    let last = bounds.len().checked_sub(1)?;
    for (i, &d) in buckets.iter().enumerate() {
        if d == 0 {
            continue;
        }
        let d = d as f64;
        if cum + d >= rank {
            let lo = if i == 0 { 0.0 } else { bounds.get(i - 1).copied().unwrap_or(0.0) };
            let hi = bounds.get(i).copied().unwrap_or(f64::INFINITY);
            if i >= last || !hi.is_finite() {
                return finite(lo);
            }
            return finite(lo + (hi - lo) * (rank - cum) / d);
        }
        cum += d;
    }
    None
}

/// A series value for an app: per live instance, then combined.
fn app_leaf(env: &Env<'_>, sc: &mut Scratch, g: usize, v: &Value) -> Option<f64> {
    let group = env.groups.get(g)?;
    let insts = group.live.iter().filter_map(|&i| env.world.instances.get(i));
    enum Comb {
        Mean,
        Min,
        Max,
        Sum,
    }
    let comb = match v {
        Value::Last(_) => Comb::Mean,
        Value::LastN { max: true, .. } => Comb::Max,
        Value::LastN { max: false, .. } => Comb::Min,
        Value::Agg { func, series, window_ms } => match func {
            Agg::Avg | Agg::Last => Comb::Mean,
            Agg::Min => Comb::Min,
            Agg::Max => Comb::Max,
            Agg::Rate | Agg::Increase | Agg::Count => Comb::Sum,
            Agg::Mean | Agg::Pct(_) => return pooled(env, sc, insts, *func, series, *window_ms),
        },
        _ => return None,
    };
    let mut n = 0usize;
    let mut acc = 0.0;
    for inst in insts {
        let Some(x) = leaf(env, &mut sc.buckets, &inst.history, v) else { continue };
        acc = match (n, &comb) {
            (0, _) => x,
            (_, Comb::Mean | Comb::Sum) => acc + x,
            (_, Comb::Min) => acc.min(x),
            (_, Comb::Max) => acc.max(x),
        };
        n += 1;
    }
    match (n, comb) {
        (0, _) => None,
        (_, Comb::Mean) => finite(acc / n as f64),
        _ => finite(acc),
    }
}

/// `mean` / `pNN` over the pooled histogram deltas of the instances.
fn pooled<'w>(
    env: &Env<'w>,
    sc: &mut Scratch,
    insts: impl Iterator<Item = &'w Instance>,
    func: Agg,
    series: &str,
    window_ms: u64,
) -> Option<f64> {
    let bounds = &env.world.bucket_bounds_ms;
    let want_buckets = matches!(func, Agg::Pct(_));
    if want_buckets && bounds.is_empty() {
        return None;
    }
    sc.buckets.clear();
    sc.buckets.resize(bounds.len(), 0);
    let (mut count, mut sum, mut any) = (0u64, 0.0, false);
    for inst in insts {
        let h = &inst.history;
        if !h.covers(env.now, window_ms) {
            continue;
        }
        let Some(dq) = h.hist(series) else { continue };
        let r = window_range(dq, env.now, Some(window_ms), |p| p.t_ms);
        let b = if want_buckets { Some(&mut sc.buckets) } else { None };
        let resets = h.hist_reset_after(series, dq.get(r.start).map_or(0, |p| p.t_ms));
        if let Some((c, s)) = hist_delta(dq, r, resets, b) {
            count = count.saturating_add(c);
            sum += s;
            any = true;
        }
    }
    if !any {
        return None;
    }
    match func {
        Agg::Pct(q) => percentile(&sc.buckets, bounds, q),
        _ => (count > 0).then(|| sum / count as f64).and_then(finite),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_within_buckets() {
        let bounds = [1.0, 2.0, 4.0, 8.0, f64::INFINITY];
        // 10 values in (1, 2], 10 in (4, 8].
        let b = [0, 10, 0, 10, 0];
        assert_eq!(percentile(&b, &bounds, 50.0), Some(2.0));
        assert_eq!(percentile(&b, &bounds, 25.0), Some(1.5));
        assert_eq!(percentile(&b, &bounds, 75.0), Some(6.0));
        assert_eq!(percentile(&b, &bounds, 100.0), Some(8.0));
        // The open-ended last bucket gives its lower bound.
        assert_eq!(percentile(&[0, 0, 0, 0, 3], &bounds, 99.0), Some(8.0));
        assert_eq!(percentile(&[0; 5], &bounds, 50.0), None);
        assert_eq!(percentile(&[1], &[], 50.0), None);
    }

    #[test]
    fn hist_deltas_with_a_reset() {
        let dq: VecDeque<HistPoint> = [
            HistPoint::new(0, 10, 100.0, &[0, 10]),
            HistPoint::new(1, 15, 150.0, &[0, 15]),
            HistPoint::new(2, 3, 30.0, &[3, 0]),
            HistPoint::new(3, 5, 50.0, &[4, 1]),
        ]
        .into();
        let mut b = vec![0u64; 2];
        assert_eq!(hist_delta(&dq, 0..4, true, Some(&mut b)), Some((10, 100.0)));
        assert_eq!(b, [4, 6]);
        assert_eq!(hist_delta(&dq, 0..1, true, None), None);
    }

    #[test]
    fn robust_scale() {
        assert_eq!(robust_center_scale(&mut [1.0, 2.0]), None);
        let (m, s) = robust_center_scale(&mut [100.0, 102.0, 98.0, 101.0, 300.0]).unwrap();
        assert_eq!(m, 101.0);
        assert!((s - 1.4826).abs() < 1e-9);
        // MAD of 0: the mean absolute deviation takes over.
        let (m, s) = robust_center_scale(&mut [5.0, 5.0, 5.0, 5.0, 9.0]).unwrap();
        assert_eq!(m, 5.0);
        assert!((s - 0.8 * 1.2533).abs() < 1e-9);
    }

    #[test]
    fn app_scope_percentile_pools_buckets() {
        let text = "[[rule]]\nname = \"r\"\nscope = \"app\"\nwhen = \"p50(app.latency, 1m) > 0\"\nthen = [\"flag\"]\n";
        let cfg = Config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let mut world = World { bucket_bounds_ms: vec![1.0, 2.0, 4.0, 8.0, f64::INFINITY], ..World::default() };
        for (id, bucket) in [("a", 1usize), ("b", 3)] {
            let mut h = History::default();
            for t in 0..=60u64 {
                let mut b = [0u64; 5];
                b[bucket] = t;
                h.push_hist("app.latency", t * 1000, t, t as f64, &b);
            }
            world.instances.push(Instance {
                id: id.into(),
                app: "x".into(),
                alive: true,
                history: h,
                ..Instance::default()
            });
        }
        let d = evaluate(&cfg, &world, &mut EvalState::default(), 60_000);
        assert_eq!(d.len(), 1);
        // 60 values in (1, 2] and 60 in (4, 8]: the median is the top of (1, 2].
        assert_eq!(d[0].figures[0].value, 2.0);
        assert_eq!(d[0].reason, "p50(app.latency, 1m) = 2 > 0 (held 0s)");
    }
}

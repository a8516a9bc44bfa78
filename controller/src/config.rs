//! The rules file: TOML, read with serde, checked and compiled into a [`Config`].
//!
//! Every error is one line: `FILE:LINE:COLUMN: SECTION: key `KEY`: WHAT, expected ...`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::expr::{self, Cond, Limits};
use crate::text::fmt_ms;

/// The longest `[controller] history` allowed.
pub const MAX_HISTORY: Duration = Duration::from_secs(3600);
/// The shortest `[controller] sample_every` allowed (bounds the points per series).
pub const MIN_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A checked, compiled rules file.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `[controller]`.
    pub controller: ControllerCfg,
    /// `[supervisor]`.
    pub supervisor: SupervisorCfg,
    /// `[hooks.NAME]`.
    pub hooks: BTreeMap<String, Hook>,
    /// `[[app]]`, in file order.
    pub apps: Vec<AppCfg>,
    /// `[[rule]]`, in file order (evaluated in this order).
    pub rules: Vec<Rule>,
    /// `[usage]`: usage records and license policy (docs/usage.md).
    pub usage: UsageCfg,
    /// `[tuning]`: dynamic priority tuning of supervised JVMs (docs/usage.md).
    pub tuning: TuningCfg,
}

/// `[tuning]`: each cycle, network-serving supervised JVMs get one nice step more priority
/// and the others one step less, within `min_nice..=max_nice` (never real-time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TuningCfg {
    /// Tune at all (default false).
    pub enabled: bool,
    /// Time between cycles (default 5m, at least 100ms).
    pub cycle: Duration,
    /// The highest priority given: the lowest nice value (default -5, at least -20).
    pub min_nice: i32,
    /// The lowest priority given: the highest nice value (default 5, at most 19).
    pub max_nice: i32,
    /// Host CPU utilisation, percent, that counts as busy (default 90).
    pub busy_percent: u32,
    /// Busy cycles in a row before a `tuning:needs_resources` decision (default 3).
    pub busy_cycles: u32,
    /// Hook name (from `[hooks]`) run with the `tuning:needs_resources` decision.
    pub on_needs_resources: Option<String>,
}

impl Default for TuningCfg {
    fn default() -> TuningCfg {
        TuningCfg {
            enabled: false,
            cycle: Duration::from_secs(300),
            min_nice: -5,
            max_nice: 5,
            busy_percent: 90,
            busy_cycles: 3,
            on_needs_resources: None,
        }
    }
}

/// `[usage]`: how often usage records are appended, and where the policy and key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageCfg {
    /// Record usage at all (default true).
    pub enabled: bool,
    /// One record per JVM per `interval` (default 60s, at least 100ms).
    pub interval: Duration,
    /// HMAC key file: the chain head is signed after every append.
    pub key_file: Option<PathBuf>,
    /// License policy (TOML, docs/usage.md).
    pub policy: Option<PathBuf>,
    /// Host label (default: the host name).
    pub host: Option<String>,
    /// Datacenter label (default: empty).
    pub datacenter: Option<String>,
    /// Hook names (from `[hooks]`) that receive every license alert.
    pub alert_hooks: Vec<String>,
}

impl Default for UsageCfg {
    fn default() -> UsageCfg {
        UsageCfg {
            enabled: true,
            interval: Duration::from_secs(60),
            key_file: None,
            policy: None,
            host: None,
            datacenter: None,
            alert_hooks: Vec::new(),
        }
    }
}

/// `[controller]`: how much history the sidecar keeps per series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerCfg {
    /// Longest window kept per series (default 15m, at most 1h).
    pub history: Duration,
    /// How often the sidecar pushes points (default 1s, at least 100ms).
    pub sample_every: Duration,
}

impl Default for ControllerCfg {
    fn default() -> ControllerCfg {
        ControllerCfg { history: Duration::from_secs(900), sample_every: Duration::from_secs(1) }
    }
}

impl ControllerCfg {
    /// Points kept per series: `history / sample_every + 2`.
    pub fn max_points(&self) -> usize {
        let every = self.sample_every.as_millis().max(1);
        usize::try_from(self.history.as_millis() / every).unwrap_or(usize::MAX).saturating_add(2)
    }
}

/// `[supervisor]`: restart policy of the embedded supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorCfg {
    /// SIGTERM to SIGKILL (default 10s).
    pub grace: Duration,
    /// First restart delay (default 1s), doubling up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest restart delay (default 60s).
    pub backoff_max: Duration,
    /// Restarts allowed within `restart_window` before the group is `failed` (default 5).
    pub max_restarts: u32,
    /// The window for `max_restarts` (default 5m).
    pub restart_window: Duration,
    /// Hook run on a warning.
    pub on_warn: Option<String>,
    /// Hook run exactly once when a group fails.
    pub on_failed: Option<String>,
    /// The diagnose step also takes a heap dump (default false).
    pub heap_dump: bool,
    /// Time limit of the diagnose step (default 30s).
    pub diagnose_timeout: Duration,
    /// `serve --rules` may signal JVMs it did not start (default false).
    pub allow_signals: bool,
    /// When failed apps escalate to a VM restart or a failover (None: never).
    pub escalation: Option<crate::ha::Policy>,
    /// Offline apps count on the available side of the `sum` policy (default false).
    pub count_offline: bool,
    /// At most one escalation per this long (default 1h), across supervisor restarts.
    pub escalation_cooldown: Duration,
    /// Hook run to restart the VM on escalation.
    pub vm_restart: Option<String>,
    /// Hook run to fail over on escalation (with the failed apps named); used when set,
    /// else `vm_restart`.
    pub failover: Option<String>,
}

impl Default for SupervisorCfg {
    fn default() -> SupervisorCfg {
        SupervisorCfg {
            grace: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_restarts: 5,
            restart_window: Duration::from_secs(300),
            on_warn: None,
            on_failed: None,
            heap_dump: false,
            diagnose_timeout: Duration::from_secs(30),
            allow_signals: false,
            escalation: None,
            count_offline: false,
            escalation_cooldown: Duration::from_secs(3600),
            vm_restart: None,
            failover: None,
        }
    }
}

/// `[hooks.NAME]`: a command or a webhook the supervisor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// What to run.
    pub target: HookTarget,
    /// Time limit per attempt (default 10s).
    pub timeout: Duration,
    /// Extra attempts after a failure (default 0, at most 10).
    pub retries: u32,
}

/// A hook's target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookTarget {
    /// argv of a command.
    Command(Vec<String>),
    /// An `http://` URL to POST the decision to (`https://` is refused: there is no TLS client).
    Url(String),
}

/// `[[app]]`: a group of JVM instances the supervisor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCfg {
    /// Unique name.
    pub name: String,
    /// argv; `${PORT}` is replaced per instance.
    pub command: Vec<String>,
    /// Fewest instances (default 1).
    pub min: u32,
    /// Most instances (default `min`).
    pub max: u32,
    /// Instances at start (default `min`).
    pub initial: u32,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// `${PORT}` = `port_base + instance number`.
    pub port_base: Option<u16>,
    /// Extra agent options.
    pub agent_options: Option<String>,
    /// Weight in escalation decisions (default 0).
    pub priority: u32,
    /// Apps that must be online before this one starts (and that stop after it).
    pub depends_on: Vec<String>,
    /// A start that is not ready within this long fails (None: no limit).
    pub start_timeout: Option<Duration>,
    /// What "ready" means for this app's instances instead of the JVM's readiness probe.
    pub health: Option<Health>,
}

impl AppCfg {
    /// An app of one instance (min = max = initial = 1) running `command`, with every other
    /// setting at its default.
    pub fn new(name: &str, command: Vec<String>) -> AppCfg {
        AppCfg {
            name: name.into(),
            command,
            min: 1,
            max: 1,
            initial: 1,
            env: BTreeMap::new(),
            cwd: None,
            port_base: None,
            agent_options: None,
            priority: 0,
            depends_on: Vec::new(),
            start_timeout: None,
            health: None,
        }
    }
}

/// An app's own health check (`${PORT}` and `${INSTANCE}` are substituted per instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// `health_url`: a GET answered with 2xx within 2 s (`http://` only).
    Url(String),
    /// `health_command`: exits 0 within 5 s.
    Command(Vec<String>),
}

/// Where a rule is evaluated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Per instance (the default).
    #[default]
    Jvm,
    /// Once per app, over the aggregate of its live instances.
    App,
}

/// A compiled `[[rule]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Only instances of this app (None: every app).
    pub app: Option<String>,
    /// Per instance or per app.
    pub scope: Scope,
    /// The compiled condition.
    pub when: Cond,
    /// The condition as written.
    pub when_src: String,
    /// `for`: how long the condition must hold, continuously, before deciding.
    pub hold: Duration,
    /// Actions, in order.
    pub then: Vec<Action>,
    /// Least time between two decisions of this rule (per scope key).
    pub cooldown: Duration,
    /// At most N decisions per duration (sliding), per scope key.
    pub max_per: Option<(u32, Duration)>,
}

impl Rule {
    /// Whether every action scales (such rules re-arm after the cooldown while still true).
    pub fn scale_only(&self) -> bool {
        self.then.iter().all(|a| matches!(a, Action::ScaleUp | Action::ScaleDown))
    }
}

/// What a decision asks the supervisor (or an orchestrator) to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub enum Action {
    /// Stop and start the instance again.
    Restart,
    /// One more instance of the app.
    ScaleUp,
    /// One instance fewer.
    ScaleDown,
    /// Take a thread dump.
    ThreadDump,
    /// Take a heap dump.
    HeapDump,
    /// Only record (and export) the decision.
    Flag,
    /// Run the named hook.
    Hook(String),
}

const ACTIONS: &str = "restart, scale_up, scale_down, thread_dump, heap_dump, flag, hook:NAME";

impl Action {
    /// The name as written in `then`: `restart`, `scale_up`, `hook:page`, ...
    pub fn name(&self) -> String {
        match self {
            Action::Restart => "restart".into(),
            Action::ScaleUp => "scale_up".into(),
            Action::ScaleDown => "scale_down".into(),
            Action::ThreadDump => "thread_dump".into(),
            Action::HeapDump => "heap_dump".into(),
            Action::Flag => "flag".into(),
            Action::Hook(h) => format!("hook:{h}"),
        }
    }

    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "restart" => Action::Restart,
            "scale_up" => Action::ScaleUp,
            "scale_down" => Action::ScaleDown,
            "thread_dump" => Action::ThreadDump,
            "heap_dump" => Action::HeapDump,
            "flag" => Action::Flag,
            _ => Action::Hook(s.strip_prefix("hook:")?.to_string()),
        })
    }
}

impl From<Action> for String {
    fn from(a: Action) -> String {
        a.name()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A config error, with the place it was found.
///
/// Displays as one line: `rules.toml:14:8: rule "slow": key `when`: unknown function ...`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file as given to [`Config::parse`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// The section, e.g. `rule "slow"`, `hook "page"`, `[controller]`.
    pub section: Option<String>,
    /// The key, e.g. `when`.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(s) = &self.section {
            write!(f, "{s}: ")?;
        }
        if let Some(k) = &self.key {
            write!(f, "key `{k}`: ")?;
        }
        f.write_str(&self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// The file as serde reads it

type S<T> = Spanned<T>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    controller: RawController,
    #[serde(default)]
    supervisor: RawSupervisor,
    #[serde(default)]
    hooks: BTreeMap<String, RawHook>,
    #[serde(default)]
    app: Vec<RawApp>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    usage: RawUsage,
    #[serde(default)]
    tuning: RawTuning,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTuning {
    enabled: Option<bool>,
    cycle: Option<S<String>>,
    min_nice: Option<S<i32>>,
    max_nice: Option<S<i32>>,
    busy_percent: Option<S<u32>>,
    busy_cycles: Option<S<u32>>,
    on_needs_resources: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUsage {
    enabled: Option<bool>,
    interval: Option<S<String>>,
    key_file: Option<String>,
    policy: Option<String>,
    host: Option<String>,
    datacenter: Option<String>,
    #[serde(default)]
    alert_hooks: Vec<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawController {
    history: Option<S<String>>,
    sample_every: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    grace: Option<S<String>>,
    backoff_initial: Option<S<String>>,
    backoff_max: Option<S<String>>,
    max_restarts: Option<u32>,
    restart_window: Option<S<String>>,
    on_warn: Option<S<String>>,
    on_failed: Option<S<String>>,
    heap_dump: Option<bool>,
    diagnose_timeout: Option<S<String>>,
    allow_signals: Option<bool>,
    escalation: Option<S<String>>,
    count_offline: Option<bool>,
    escalation_cooldown: Option<S<String>>,
    vm_restart: Option<S<String>>,
    failover: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    command: Option<S<Vec<String>>>,
    url: Option<S<String>>,
    timeout: Option<S<String>>,
    retries: Option<S<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: S<String>,
    command: S<Vec<String>>,
    min: Option<S<u32>>,
    max: Option<S<u32>>,
    initial: Option<S<u32>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<S<String>>,
    port_base: Option<S<u16>>,
    agent_options: Option<String>,
    priority: Option<u32>,
    #[serde(default)]
    depends_on: Vec<S<String>>,
    start_timeout: Option<S<String>>,
    health_url: Option<S<String>>,
    health_command: Option<S<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: S<String>,
    app: Option<S<String>>,
    #[serde(default)]
    scope: Scope,
    when: S<String>,
    #[serde(rename = "for")]
    hold: Option<S<String>>,
    then: S<Vec<S<String>>>,
    cooldown: Option<S<String>>,
    max_per: Option<S<String>>,
}

// ---------------------------------------------------------------------------------------------
// Checking

struct Src<'a> {
    text: &'a str,
    file: String,
}

impl Src<'_> {
    fn err(&self, at: usize, section: Option<String>, key: Option<&str>, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, at);
        ConfigError { file: self.file.clone(), line, column, section, key: key.map(str::to_string), message }
    }

    fn dur(
        &self,
        v: &Option<S<String>>,
        default: Duration,
        sec: &Option<String>,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s.get_ref().trim()).map_err(|e| {
                self.err(
                    s.span().start,
                    sec.clone(),
                    Some(key),
                    format!("bad duration \"{}\" ({e}), expected e.g. \"100ms\", \"30s\", \"5m\"", s.get_ref()),
                )
            }),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

const NAME_RULE: &str = "expected letters, digits, `_`, `-` or `.` (at most 128)";

/// An app's name is part of file names and instance ids: letters, digits and `_` only. The
/// sidecar applies the same function to `run --app` and to every configured app.
pub fn valid_app_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const APP_NAME_RULE: &str = "expected letters, digits and `_` only (at most 128; it is part of file names and ids)";

impl Config {
    /// Parses and checks a rules file. `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let src = Src { text, file: path.display().to_string() };
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(&src, &e))?;
        check(&src, raw)
    }

    /// Every series key any rule reads (the sidecar needs to keep only these).
    pub fn series(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for r in &self.rules {
            r.when.collect_series(&mut out);
        }
        out
    }

    /// The app config by name.
    pub fn app(&self, name: &str) -> Option<&AppCfg> {
        self.apps.iter().find(|a| a.name == name)
    }
}

fn toml_error(src: &Src<'_>, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or(0, |s: Range<usize>| s.start);
    let message = e.message().trim().replace('\n', "; ");
    // The key: named by serde ("unknown field `x`", "missing field `x`"), else the key on the line.
    let named = ["unknown field `", "missing field `", "duplicate key `"]
        .iter()
        .find_map(|p| message.split_once(p).and_then(|(_, rest)| rest.split_once('`')).map(|(k, _)| k.to_string()));
    let key = named.or_else(|| key_on_line(src.text, at));
    src.err(at, section_at(src.text, at), key.as_deref(), message)
}

/// The `key` of a `key = value` line holding byte `at`.
fn key_on_line(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (k, _) = line.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))).then(|| k.into())
}

/// Names the table that holds byte `at`: `rule "slow"`, `app "shop"`, `hook "page"`, `[controller]`.
fn section_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    // Only headers on earlier lines: an error inside a header line is about the top level.
    let line_start = text.get(..at).and_then(|b| b.rfind('\n')).map_or(0, |i| i + 1);
    let mut header = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset >= line_start {
            break;
        }
        let t = line.trim();
        if t.starts_with('[') {
            header = Some((t.to_string(), offset));
        }
        offset += line.len();
    }
    let (h, start) = header?;
    let kind = match h.as_str() {
        "[[rule]]" => "rule",
        "[[app]]" => "app",
        _ => {
            if let Some(name) = h.strip_prefix("[hooks.").and_then(|r| r.strip_suffix(']')) {
                return Some(format!("hook \"{}\"", name.trim_matches('"')));
            }
            return Some(h);
        }
    };
    // Find `name = "..."` within this table.
    let body = &text[start..];
    for line in body.lines().skip(1) {
        let t = line.trim();
        if t.starts_with('[') {
            break;
        }
        if let Some((k, v)) = t.split_once('=') {
            if k.trim() == "name" {
                return Some(format!("{kind} \"{}\"", v.trim().trim_matches('"')));
            }
        }
    }
    Some(format!("[[{kind}]]"))
}

fn check(src: &Src<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
    let ctl_sec = Some("[controller]".to_string());
    let history = src.dur(&raw.controller.history, ControllerCfg::default().history, &ctl_sec, "history")?;
    let at = |v: &Option<S<String>>| v.as_ref().map_or(0, |s| s.span().start);
    if history.is_zero() || history > MAX_HISTORY {
        return Err(src.err(
            at(&raw.controller.history),
            ctl_sec,
            Some("history"),
            format!("history {} out of range, expected more than 0s and at most 1h", fmt_dur(history)),
        ));
    }
    let sample_every =
        src.dur(&raw.controller.sample_every, ControllerCfg::default().sample_every, &ctl_sec, "sample_every")?;
    if sample_every < MIN_SAMPLE_EVERY || sample_every > history {
        return Err(src.err(
            at(&raw.controller.sample_every),
            ctl_sec,
            Some("sample_every"),
            format!("sample_every {} out of range, expected 100ms..history", fmt_dur(sample_every)),
        ));
    }
    let controller = ControllerCfg { history, sample_every };

    let hooks = check_hooks(src, raw.hooks)?;
    let supervisor = check_supervisor(src, &raw.supervisor, &hooks)?;
    let apps = check_apps(src, raw.app)?;
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rule.len());
    for r in raw.rule {
        let rule = check_rule(src, r, &controller, &hooks, &apps, &rules)?;
        rules.push(rule);
    }
    let usage_sec = Some("[usage]".to_string());
    let interval = src.dur(&raw.usage.interval, UsageCfg::default().interval, &usage_sec, "interval")?;
    if interval < MIN_SAMPLE_EVERY {
        return Err(src.err(
            at(&raw.usage.interval),
            usage_sec,
            Some("interval"),
            format!("interval {} too short, expected at least 100ms", fmt_dur(interval)),
        ));
    }
    let mut alert_hooks = Vec::new();
    for h in &raw.usage.alert_hooks {
        if !hooks.contains_key(h.get_ref()) {
            return Err(src.err(
                h.span().start,
                usage_sec,
                Some("alert_hooks"),
                format!("unknown hook `{}`, define it under [hooks.{}]", h.get_ref(), h.get_ref()),
            ));
        }
        alert_hooks.push(h.get_ref().clone());
    }
    let usage = UsageCfg {
        enabled: raw.usage.enabled.unwrap_or(true),
        interval,
        key_file: raw.usage.key_file.map(PathBuf::from),
        policy: raw.usage.policy.map(PathBuf::from),
        host: raw.usage.host,
        datacenter: raw.usage.datacenter,
        alert_hooks,
    };
    let tuning = check_tuning(src, &raw.tuning, &hooks)?;
    Ok(Config { controller, supervisor, hooks, apps, rules, usage, tuning })
}

fn check_tuning(src: &Src<'_>, t: &RawTuning, hooks: &BTreeMap<String, Hook>) -> Result<TuningCfg, ConfigError> {
    let d = TuningCfg::default();
    let sec = Some("[tuning]".to_string());
    let cycle = src.dur(&t.cycle, d.cycle, &sec, "cycle")?;
    if cycle < MIN_SAMPLE_EVERY {
        let at = t.cycle.as_ref().map_or(0, |v| v.span().start);
        return Err(src.err(
            at,
            sec,
            Some("cycle"),
            format!("cycle {} too short, expected at least 100ms", fmt_dur(cycle)),
        ));
    }
    let pick = |v: &Option<S<i32>>, d: i32| v.as_ref().map_or(d, |v| *v.get_ref());
    let (min_nice, max_nice) = (pick(&t.min_nice, d.min_nice), pick(&t.max_nice, d.max_nice));
    for (key, v, n) in [("min_nice", &t.min_nice, min_nice), ("max_nice", &t.max_nice, max_nice)] {
        if !(-20..=19).contains(&n) {
            let at = v.as_ref().map_or(0, |v| v.span().start);
            return Err(src.err(at, sec, Some(key), format!("nice {n} out of range, expected -20..19")));
        }
    }
    if min_nice > max_nice {
        let at = t.min_nice.as_ref().or(t.max_nice.as_ref()).map_or(0, |v| v.span().start);
        return Err(src.err(
            at,
            sec,
            Some("min_nice"),
            format!("min_nice {min_nice} is above max_nice {max_nice}, expected min_nice <= max_nice"),
        ));
    }
    let busy_percent = t.busy_percent.as_ref().map_or(d.busy_percent, |v| *v.get_ref());
    if !(1..=100).contains(&busy_percent) {
        let at = t.busy_percent.as_ref().map_or(0, |v| v.span().start);
        return Err(src.err(at, sec, Some("busy_percent"), format!("{busy_percent} out of range, expected 1..100")));
    }
    let busy_cycles = t.busy_cycles.as_ref().map_or(d.busy_cycles, |v| *v.get_ref());
    if busy_cycles == 0 {
        let at = t.busy_cycles.as_ref().map_or(0, |v| v.span().start);
        return Err(src.err(at, sec, Some("busy_cycles"), "0 out of range, expected at least 1".to_string()));
    }
    let on_needs_resources = match &t.on_needs_resources {
        Some(h) if !hooks.contains_key(h.get_ref()) => {
            return Err(src.err(
                h.span().start,
                sec,
                Some("on_needs_resources"),
                format!("unknown hook `{}`, define it under [hooks.{}]", h.get_ref(), h.get_ref()),
            ))
        }
        h => h.as_ref().map(|h| h.get_ref().clone()),
    };
    Ok(TuningCfg {
        enabled: t.enabled.unwrap_or(false),
        cycle,
        min_nice,
        max_nice,
        busy_percent,
        busy_cycles,
        on_needs_resources,
    })
}

fn fmt_dur(d: Duration) -> String {
    fmt_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn check_hooks(src: &Src<'_>, raw: BTreeMap<String, RawHook>) -> Result<BTreeMap<String, Hook>, ConfigError> {
    let mut hooks = BTreeMap::new();
    for (name, h) in raw {
        let sec = Some(format!("hook \"{name}\""));
        // A place to point at when no key is at fault: the table header.
        let header = src.text.find(&format!("[hooks.{name}]")).unwrap_or(0);
        if !valid_name(&name) {
            return Err(src.err(header, sec, None, format!("bad hook name `{name}`, {NAME_RULE}")));
        }
        let target = match (h.command, h.url) {
            (Some(c), None) => {
                if c.get_ref().is_empty() || c.get_ref()[0].is_empty() {
                    return Err(src.err(
                        c.span().start,
                        sec,
                        Some("command"),
                        "empty command, expected [\"program\", \"arg\", ...]".into(),
                    ));
                }
                HookTarget::Command(c.into_inner())
            }
            (None, Some(u)) => {
                let s = u.get_ref().trim();
                if s.starts_with("https://") {
                    return Err(src.err(
                        u.span().start,
                        sec,
                        Some("url"),
                        format!("\"{s}\": https is not supported (no TLS client), expected http://HOST[:PORT]/PATH (e.g. a local relay)"),
                    ));
                }
                let rest = s.strip_prefix("http://");
                if rest.map_or(true, |r| r.is_empty() || r.contains(char::is_whitespace)) {
                    return Err(src.err(
                        u.span().start,
                        sec,
                        Some("url"),
                        format!("bad url \"{s}\", expected http://HOST[:PORT]/PATH"),
                    ));
                }
                HookTarget::Url(s.to_string())
            }
            (Some(c), Some(_)) => {
                return Err(src.err(
                    c.span().start,
                    sec,
                    Some("command"),
                    "both `command` and `url`, expected exactly one of them".into(),
                ))
            }
            (None, None) => {
                return Err(src.err(header, sec, None, "no `command` or `url`, expected exactly one of them".into()))
            }
        };
        let timeout = src.dur(&h.timeout, Duration::from_secs(10), &sec, "timeout")?;
        if timeout.is_zero() {
            let at = h.timeout.as_ref().map_or(header, |t| t.span().start);
            return Err(src.err(at, sec, Some("timeout"), "timeout of zero, expected a positive duration".into()));
        }
        let retries = match h.retries {
            Some(r) if *r.get_ref() > 10 => {
                return Err(src.err(
                    r.span().start,
                    sec,
                    Some("retries"),
                    format!("retries {} too many, expected 0..=10", r.get_ref()),
                ))
            }
            Some(r) => r.into_inner(),
            None => 0,
        };
        hooks.insert(name, Hook { target, timeout, retries });
    }
    Ok(hooks)
}

fn check_supervisor(
    src: &Src<'_>,
    s: &RawSupervisor,
    hooks: &BTreeMap<String, Hook>,
) -> Result<SupervisorCfg, ConfigError> {
    let d = SupervisorCfg::default();
    let sec = Some("[supervisor]".to_string());
    let backoff_initial = src.dur(&s.backoff_initial, d.backoff_initial, &sec, "backoff_initial")?;
    let backoff_max = src.dur(&s.backoff_max, d.backoff_max, &sec, "backoff_max")?;
    if backoff_initial > backoff_max {
        let at = s.backoff_initial.as_ref().or(s.backoff_max.as_ref()).map_or(0, |v| v.span().start);
        return Err(src.err(
            at,
            sec,
            Some("backoff_initial"),
            format!(
                "backoff_initial {} is longer than backoff_max {}, expected backoff_initial <= backoff_max",
                fmt_dur(backoff_initial),
                fmt_dur(backoff_max)
            ),
        ));
    }
    let restart_window = src.dur(&s.restart_window, d.restart_window, &sec, "restart_window")?;
    if restart_window.is_zero() {
        let at = s.restart_window.as_ref().map_or(0, |v| v.span().start);
        return Err(src.err(
            at,
            sec,
            Some("restart_window"),
            "restart_window of zero, expected a positive duration".into(),
        ));
    }
    let hook = |v: &Option<S<String>>, key: &str| -> Result<Option<String>, ConfigError> {
        match v {
            None => Ok(None),
            Some(h) if hooks.contains_key(h.get_ref()) => Ok(Some(h.get_ref().clone())),
            Some(h) => Err(src.err(h.span().start, sec.clone(), Some(key), unknown_hook(h.get_ref(), hooks))),
        }
    };
    Ok(SupervisorCfg {
        grace: src.dur(&s.grace, d.grace, &sec, "grace")?,
        backoff_initial,
        backoff_max,
        max_restarts: s.max_restarts.unwrap_or(d.max_restarts),
        restart_window,
        on_warn: hook(&s.on_warn, "on_warn")?,
        on_failed: hook(&s.on_failed, "on_failed")?,
        heap_dump: s.heap_dump.unwrap_or(d.heap_dump),
        diagnose_timeout: src.dur(&s.diagnose_timeout, d.diagnose_timeout, &sec, "diagnose_timeout")?,
        allow_signals: s.allow_signals.unwrap_or(d.allow_signals),
        escalation: match &s.escalation {
            None => None,
            Some(v) => match v.get_ref().as_str() {
                "highest" => Some(crate::ha::Policy::Highest),
                "sum" => Some(crate::ha::Policy::Sum),
                other => {
                    return Err(src.err(
                        v.span().start,
                        sec,
                        Some("escalation"),
                        format!("unknown escalation policy `{other}`, expected \"highest\" or \"sum\""),
                    ))
                }
            },
        },
        count_offline: s.count_offline.unwrap_or(d.count_offline),
        escalation_cooldown: src.dur(&s.escalation_cooldown, d.escalation_cooldown, &sec, "escalation_cooldown")?,
        vm_restart: hook(&s.vm_restart, "vm_restart")?,
        failover: hook(&s.failover, "failover")?,
    })
}

fn unknown_hook(name: &str, hooks: &BTreeMap<String, Hook>) -> String {
    if hooks.is_empty() {
        format!("unknown hook `{name}`, expected a hook defined as [hooks.{name}] (none are defined)")
    } else {
        let names: Vec<&str> = hooks.keys().map(String::as_str).collect();
        format!("unknown hook `{name}`, expected one of {}", names.join(", "))
    }
}

fn check_apps(src: &Src<'_>, raw: Vec<RawApp>) -> Result<Vec<AppCfg>, ConfigError> {
    let mut apps: Vec<AppCfg> = Vec::with_capacity(raw.len());
    let mut deps: Vec<(Vec<S<String>>, usize)> = Vec::with_capacity(raw.len());
    for a in raw {
        let name = a.name.get_ref().clone();
        let sec = Some(format!("app \"{name}\""));
        let name_at = a.name.span().start;
        if !valid_app_name(&name) {
            return Err(src.err(name_at, sec, Some("name"), format!("bad app name \"{name}\", {APP_NAME_RULE}")));
        }
        if apps.iter().any(|x| x.name == name) {
            return Err(src.err(
                name_at,
                sec,
                Some("name"),
                format!("duplicate app name \"{name}\", expected unique names"),
            ));
        }
        if a.command.get_ref().first().map_or(true, String::is_empty) {
            return Err(src.err(
                a.command.span().start,
                sec,
                Some("command"),
                "empty command, expected [\"java\", ...]".into(),
            ));
        }
        let min = a.min.as_ref().map_or(1, |m| *m.get_ref());
        let max = a.max.as_ref().map_or(min.max(1), |m| *m.get_ref());
        let max_at = a.max.as_ref().or(a.min.as_ref()).map_or(name_at, |m| m.span().start);
        if max == 0 {
            return Err(src.err(max_at, sec, Some("max"), "max of 0, expected at least 1".into()));
        }
        if min > max {
            let (at, key) = match &a.min {
                Some(m) => (m.span().start, "min"),
                None => (max_at, "max"),
            };
            return Err(src.err(
                at,
                sec,
                Some(key),
                format!("min {min} is greater than max {max}, expected min <= max"),
            ));
        }
        let initial = a.initial.as_ref().map_or(min, |i| *i.get_ref());
        if initial < min || initial > max {
            let at = a.initial.as_ref().map_or(max_at, |i| i.span().start);
            return Err(src.err(
                at,
                sec,
                Some("initial"),
                format!("initial {initial} out of range, expected min <= initial <= max ({min}..={max})"),
            ));
        }
        if let Some(p) = &a.port_base {
            if u32::from(*p.get_ref()) + max > 65_535 || *p.get_ref() == 0 {
                return Err(src.err(
                    p.span().start,
                    sec,
                    Some("port_base"),
                    format!(
                        "port_base {} leaves no room for {max} instances, expected 1..={}",
                        p.get_ref(),
                        65_535 - max
                    ),
                ));
            }
        }
        if let Some(k) = a.env.keys().find(|k| k.is_empty() || k.contains('=') || k.contains('\0')) {
            return Err(src.err(name_at, sec, Some("env"), format!("bad environment name \"{k}\", expected no `=`")));
        }
        apps.push(AppCfg {
            name,
            command: a.command.into_inner(),
            min,
            max,
            initial,
            env: a.env,
            cwd: a.cwd.map(|c| PathBuf::from(c.into_inner())),
            port_base: a.port_base.map(Spanned::into_inner),
            agent_options: a.agent_options,
            priority: a.priority.unwrap_or(0),
            depends_on: a.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
            start_timeout: match &a.start_timeout {
                None => None,
                Some(_) => Some(src.dur(&a.start_timeout, Duration::ZERO, &sec, "start_timeout")?),
            },
            health: match (&a.health_url, &a.health_command) {
                (Some(u), None) if u.get_ref().starts_with("http://") => Some(Health::Url(u.get_ref().clone())),
                (Some(u), None) => {
                    return Err(src.err(u.span().start, sec, Some("health_url"), "expected an http:// URL".into()))
                }
                (None, Some(c)) if !c.get_ref().is_empty() => Some(Health::Command(c.get_ref().clone())),
                (None, Some(c)) => {
                    return Err(src.err(c.span().start, sec, Some("health_command"), "empty command".into()))
                }
                (Some(u), Some(_)) => {
                    return Err(src.err(
                        u.span().start,
                        sec,
                        Some("health_url"),
                        "both health_url and health_command, expected one".into(),
                    ))
                }
                (None, None) => None,
            },
        });
        deps.push((a.depends_on, name_at));
    }
    // Dependencies name configured apps, and have no cycle.
    for (app, (ds, _)) in apps.iter().zip(&deps) {
        for d in ds {
            if apps.iter().all(|a| a.name != *d.get_ref()) {
                let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
                return Err(src.err(
                    d.span().start,
                    Some(format!("app \"{}\"", app.name)),
                    Some("depends_on"),
                    format!("unknown app `{}`, expected one of {}", d.get_ref(), names.join(", ")),
                ));
            }
        }
    }
    if let Err(cycle) = crate::ha::start_order(&apps) {
        let at = apps.iter().zip(&deps).find(|(a, _)| a.name == cycle[0]).map_or(0, |(_, (_, at))| *at);
        return Err(src.err(
            at,
            Some(format!("app \"{}\"", cycle[0])),
            Some("depends_on"),
            format!("dependency cycle {}, expected none", cycle.join(" -> ")),
        ));
    }
    Ok(apps)
}

/// Byte offset in the file of byte `at` of a string value (exact for plain one-line strings,
/// else the start of the value).
fn offset_in_string(text: &str, span: &Range<usize>, value: &str, at: usize) -> usize {
    let raw = text.get(span.clone()).unwrap_or("");
    let one_line =
        (raw.starts_with('"') && !raw.starts_with("\"\"\"")) || (raw.starts_with('\'') && !raw.starts_with("'''"));
    if one_line && raw.len() >= 2 && raw.get(1..raw.len() - 1) == Some(value) {
        span.start + 1 + at
    } else {
        span.start
    }
}

fn check_rule(
    src: &Src<'_>,
    r: RawRule,
    ctl: &ControllerCfg,
    hooks: &BTreeMap<String, Hook>,
    apps: &[AppCfg],
    prev: &[Rule],
) -> Result<Rule, ConfigError> {
    let name = r.name.get_ref().clone();
    let sec = Some(format!("rule \"{name}\""));
    let name_at = r.name.span().start;
    if !valid_name(&name) {
        return Err(src.err(name_at, sec, Some("name"), format!("bad rule name \"{name}\", {NAME_RULE}")));
    }
    if prev.iter().any(|x| x.name == name) {
        return Err(src.err(
            name_at,
            sec,
            Some("name"),
            format!("duplicate rule name \"{name}\", expected unique names"),
        ));
    }
    if let Some(a) = &r.app {
        if !apps.is_empty() && !apps.iter().any(|x| &x.name == a.get_ref()) {
            let names: Vec<&str> = apps.iter().map(|x| x.name.as_str()).collect();
            return Err(src.err(
                a.span().start,
                sec,
                Some("app"),
                format!("unknown app \"{}\", expected one of {}", a.get_ref(), names.join(", ")),
            ));
        }
    }
    let limits = Limits {
        max_window_ms: u64::try_from(ctl.history.as_millis()).unwrap_or(u64::MAX),
        max_points: ctl.max_points(),
        app_scope: r.scope == Scope::App,
    };
    let when_src = r.when.get_ref().clone();
    let when = expr::parse(&when_src, limits).map_err(|e| {
        let at = offset_in_string(src.text, &r.when.span(), &when_src, e.at);
        src.err(at, sec.clone(), Some("when"), e.msg)
    })?;
    let hold = src.dur(&r.hold, Duration::ZERO, &sec, "for")?;
    let cooldown = src.dur(&r.cooldown, Duration::ZERO, &sec, "cooldown")?;
    if r.then.get_ref().is_empty() {
        return Err(src.err(r.then.span().start, sec, Some("then"), format!("no actions, expected some of {ACTIONS}")));
    }
    let mut then = Vec::with_capacity(r.then.get_ref().len());
    for a in r.then.get_ref() {
        let at = a.span().start;
        let action = Action::parse(a.get_ref().trim()).ok_or_else(|| {
            src.err(
                at,
                sec.clone(),
                Some("then"),
                format!("unknown action `{}`, expected one of {ACTIONS}", a.get_ref()),
            )
        })?;
        match &action {
            Action::Hook(h) if !hooks.contains_key(h) => {
                return Err(src.err(at, sec, Some("then"), unknown_hook(h, hooks)));
            }
            Action::ScaleUp | Action::ScaleDown if r.scope != Scope::App => {
                return Err(src.err(
                    at,
                    sec,
                    Some("then"),
                    format!("`{}` needs scope = \"app\", expected restart, thread_dump, heap_dump, flag or hook:NAME in a jvm-scope rule", action.name()),
                ));
            }
            _ => {}
        }
        then.push(action);
    }
    let max_per = match &r.max_per {
        None => None,
        Some(m) => {
            let at = m.span().start;
            let bad = |what: &str| {
                src.err(
                    at,
                    sec.clone(),
                    Some("max_per"),
                    format!("{what} in \"{}\", expected N/DURATION with N >= 1, e.g. \"2/1m\"", m.get_ref()),
                )
            };
            let (n, d) = m.get_ref().split_once('/').ok_or_else(|| bad("no `/`"))?;
            let n: u32 = n.trim().parse().map_err(|_| bad("bad count"))?;
            let d = humantime::parse_duration(d.trim()).map_err(|_| bad("bad duration"))?;
            if n == 0 {
                return Err(bad("a count of zero"));
            }
            if d.is_zero() {
                return Err(bad("a duration of zero"));
            }
            Some((n, d))
        }
    };
    Ok(Rule {
        name,
        app: r.app.map(Spanned::into_inner),
        scope: r.scope,
        when,
        when_src,
        hold,
        then,
        cooldown,
        max_per,
    })
}

//! Agent options, parsed in two stages: the raw `key=value` list, then a typed [`Config`].
//! `docs/agent-options.md` documents every option; keep the two in step.

use std::path::PathBuf;
use std::time::Duration;

/// The agent's typed configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Directory for the ring file (`dir=`); `None`: the default directory.
    pub dir: Option<PathBuf>,
    /// Exact ring file path (`path=`); overrides `dir`.
    pub path: Option<PathBuf>,
    /// Event ring size in bytes (`size=`).
    pub size: u64,
    /// Sampler interval (`interval=`).
    pub interval: Duration,
    /// Refuse to start the JVM when the agent cannot start (`strict=`).
    pub strict: bool,
    /// Start the in-VM monitor (`monitor=`): GC notifications, deadlock checks, class and
    /// buffer-pool figures.
    pub monitor: bool,
    /// How the monitor learns each stop-the-world collection's details (`gc=`).
    pub gc: GcSource,
    /// With `gc=poll`: the monitor's fixed nap between reads (`gc-poll=DURATION`); `None`
    /// (`gc-poll=auto`): half the mean interval between collections, see `crate::gcwake`.
    pub gc_poll: Option<Duration>,
    /// How long the fine history tier lasts (`history=`); zero: no history region.
    pub history: Duration,
    /// Period of the stacks capture (`stacks=`); `None`: no stacks region, no captures.
    pub stacks: Option<Duration>,
}

/// Where the in-VM monitor takes a stop-the-world collection's details from (`gc=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcSource {
    /// `gc=poll` (default): after the JVMTI GC-finish event counted a collection, the monitor
    /// thread reads the collector's last collection through JMM (`crate::jmm`; `getLastGcInfo()`
    /// where the VM's JMM is not one it knows) and the cause from hsperfdata. Concurrent collectors'
    /// cycles (no JVMTI finish event) still come from notifications.
    Poll,
    /// `gc=notify`: a JMX GC notification for every collection (the JVM builds
    /// a notification object per collection: two to three times the CPU of `poll`, `bench/`).
    Notify,
}

/// Shortest `gc-poll=` period.
pub const MIN_GC_POLL: Duration = Duration::from_millis(5);
/// Longest `gc-poll=` period (the monitor reads at least once a second anyway).
pub const MAX_GC_POLL: Duration = Duration::from_secs(1);

/// Default `history=`: 15 minutes at the sampler interval.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(15 * 60);
/// Longest `history=`.
pub const MAX_HISTORY: Duration = Duration::from_secs(6 * 3600);
/// Default `stacks=`: a capture a minute.
pub const DEFAULT_STACKS: Duration = Duration::from_secs(60);
/// Step of the coarse history tier.
pub const COARSE_STEP: Duration = Duration::from_secs(10);
/// Slots of the coarse history tier: two hours at [`COARSE_STEP`].
pub const COARSE_SLOTS: u32 = 720;

impl Config {
    /// The history and stacks regions these options ask for.
    pub fn geometry(&self) -> jvmwatch_ring::Geometry {
        let fine = (self.history.as_nanos() / self.interval.as_nanos().max(1)) as u64;
        let fine = fine.min(jvmwatch_ring::layout::MAX_HISTORY_SLOTS) as u32;
        let step = COARSE_STEP.max(self.interval);
        jvmwatch_ring::Geometry {
            fine_slots: fine,
            coarse_slots: if fine > 0 { COARSE_SLOTS } else { 0 },
            coarse_step_ns: if fine > 0 { step.as_nanos() as u64 } else { 0 },
            stacks_size: if self.stacks.is_some() { jvmwatch_ring::layout::STACKS_SIZE } else { 0 },
        }
    }
}

/// Default event ring size: 4 MiB = 65,536 events.
pub const DEFAULT_SIZE: u64 = 4 << 20;
/// Smallest accepted `size=`.
pub const MIN_SIZE: u64 = 64 << 10;
/// Largest accepted `size=`.
pub const MAX_SIZE: u64 = 1 << 30;

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: None,
            path: None,
            size: DEFAULT_SIZE,
            interval: Duration::from_millis(100),
            strict: false,
            monitor: true,
            gc: GcSource::Poll,
            gc_poll: None,
            history: DEFAULT_HISTORY,
            stacks: Some(DEFAULT_STACKS),
        }
    }
}

/// One raw option: `key=value` (value may be empty for a bare `key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawOption<'a> {
    /// The key.
    pub key: &'a str,
    /// The value; `None` for a bare key.
    pub value: Option<&'a str>,
}

/// Stage 1: splits the `-agentpath:...=` string on commas.
pub fn split(options: &str) -> Vec<RawOption<'_>> {
    options
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => RawOption { key: k.trim(), value: Some(v.trim()) },
            None => RawOption { key: s.trim(), value: None },
        })
        .collect()
}

/// True if the raw options ask for `strict=true`, whatever else is wrong with them: a bad
/// option must still be able to refuse the start when the user asked for that.
pub fn wants_strict(raw: &[RawOption<'_>]) -> bool {
    raw.iter().any(|o| o.key == "strict" && o.value.map(parse_bool) == Some(Ok(true)))
}

/// Stage 2: the typed configuration, or one line saying what is wrong.
pub fn parse(raw: &[RawOption<'_>]) -> Result<Config, String> {
    let mut c = Config::default();
    let mut seen: Vec<&str> = Vec::new();
    for o in raw {
        if seen.contains(&o.key) {
            return Err(format!("option '{}' given twice", o.key));
        }
        seen.push(o.key);
        let value = |what: &str| -> Result<&str, String> {
            match o.value {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("option '{}' needs a value ({what})", o.key)),
            }
        };
        match o.key {
            "dir" => c.dir = Some(PathBuf::from(value("a directory")?)),
            "path" => c.path = Some(PathBuf::from(value("a file path")?)),
            "size" => {
                let v = value("a size such as 4M")?;
                let n = parse_size(v).ok_or_else(|| format!("size={v}: expected a size such as 64K, 4M or 1G"))?;
                if !(MIN_SIZE..=MAX_SIZE).contains(&n) {
                    return Err(format!("size={v}: must be between 64K and 1G"));
                }
                c.size = n;
            }
            "interval" => {
                let v = value("a duration such as 100ms")?;
                let d = parse_duration(v)
                    .ok_or_else(|| format!("interval={v}: expected a duration such as 100ms or 1s"))?;
                if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
                    return Err(format!("interval={v}: must be between 10ms and 60s"));
                }
                c.interval = d;
            }
            "strict" => {
                let v = value("true or false")?;
                c.strict = parse_bool(v).map_err(|_| format!("strict={v}: expected true or false"))?;
            }
            "monitor" => {
                let v = value("on or off")?;
                c.monitor = parse_bool(v).map_err(|_| format!("monitor={v}: expected on or off"))?;
            }
            "gc" => {
                c.gc = match value("poll or notify")? {
                    "poll" => GcSource::Poll,
                    "notify" => GcSource::Notify,
                    v => return Err(format!("gc={v}: expected poll or notify")),
                };
            }
            "gc-poll" => {
                let v = value("auto, or a period such as 100ms")?;
                c.gc_poll = if v == "auto" {
                    None
                } else {
                    let d = parse_duration(v)
                        .ok_or_else(|| format!("gc-poll={v}: expected auto or a period such as 100ms"))?;
                    if d < MIN_GC_POLL || d > MAX_GC_POLL {
                        return Err(format!("gc-poll={v}: must be between 5ms and 1s"));
                    }
                    Some(d)
                };
            }
            "history" => {
                let v = value("a duration such as 15m, or off")?;
                c.history = if parse_bool(v) == Ok(false) {
                    Duration::ZERO
                } else {
                    let d = parse_duration(v)
                        .ok_or_else(|| format!("history={v}: expected a duration such as 15m or 1h, or off"))?;
                    if d > MAX_HISTORY {
                        return Err(format!("history={v}: at most 6h"));
                    }
                    d
                };
            }
            "stacks" => {
                let v = value("a period such as 60s, or off")?;
                c.stacks = if parse_bool(v) == Ok(false) {
                    None
                } else {
                    let d = parse_duration(v)
                        .ok_or_else(|| format!("stacks={v}: expected a period such as 60s, or off"))?;
                    if d < Duration::from_secs(1) {
                        return Err(format!("stacks={v}: at least 1s"));
                    }
                    Some(d)
                };
            }
            k => {
                return Err(format!(
                    "unknown option '{k}' (known: dir, path, size, interval, strict, monitor, gc, gc-poll, history, stacks)"
                ))
            }
        }
    }
    if c.dir.is_some() && c.path.is_some() {
        return Err("give either dir= or path=, not both".into());
    }
    if c.gc_poll.is_some() && c.gc == GcSource::Notify {
        return Err("gc-poll= paces gc=poll; it has no meaning with gc=notify".into());
    }
    let slots = c.history.as_nanos() / c.interval.as_nanos().max(1);
    if slots > jvmwatch_ring::layout::MAX_HISTORY_SLOTS as u128 {
        return Err(format!(
            "history= / interval= is {slots} samples; at most {} (a longer history needs a longer interval)",
            jvmwatch_ring::layout::MAX_HISTORY_SLOTS
        ));
    }
    Ok(c)
}

fn parse_bool(v: &str) -> Result<bool, ()> {
    match v {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(()),
    }
}

/// `65536`, `64K`, `4M`, `1G` (binary units; a trailing `B` or `iB` is allowed).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim_end_matches("iB").trim_end_matches('B');
    let (num, mul) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&v[..i], 1 << 20),
        (i, 'g' | 'G') => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// `100ms`, `2s`, `1m`, or a bare number of milliseconds.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..split].parse().ok()?;
    match &v[split..] {
        "" | "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Config, String> {
        parse(&split(s))
    }

    #[test]
    fn history_and_stacks_options_shape_the_regions() {
        let g = p("").unwrap().geometry();
        assert_eq!((g.fine_slots, g.coarse_slots, g.coarse_step_ns), (9000, 720, 10_000_000_000));
        assert_eq!(g.stacks_size, jvmwatch_ring::layout::STACKS_SIZE);
        let g = p("history=off,stacks=off").unwrap().geometry();
        assert_eq!((g.fine_slots, g.coarse_slots, g.stacks_size), (0, 0, 0));
        assert_eq!(p("history=1h,interval=1s").unwrap().geometry().fine_slots, 3600);
        assert_eq!(p("stacks=5m").unwrap().stacks, Some(Duration::from_secs(300)));
        assert!(p("history=7h").unwrap_err().contains("at most 6h"));
        assert!(p("history=6h").unwrap_err().contains("216000 samples"), "6 h at 100 ms is too many slots");
        assert_eq!(p("history=6h,interval=1s").unwrap().geometry().fine_slots, 21600);
        assert!(p("stacks=10ms").unwrap_err().contains("at least 1s"));
        assert!(p("history=lots").unwrap_err().contains("history=lots"));
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(p("").unwrap(), Config::default());
        let c = p("dir=/x, size=8M,interval=250ms,strict=true").unwrap();
        assert_eq!(c.dir, Some(PathBuf::from("/x")));
        assert_eq!(c.size, 8 << 20);
        assert_eq!(c.interval, Duration::from_millis(250));
        assert!(c.strict);
        assert_eq!(p("interval=2s").unwrap().interval, Duration::from_secs(2));
        assert_eq!(p("size=65536").unwrap().size, 65536);
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(p("bogus=1").unwrap_err().contains("unknown option 'bogus'"));
        assert!(p("size=abc").unwrap_err().contains("size=abc"));
        assert!(p("size=1K").unwrap_err().contains("between"));
        assert!(p("size=99999999999999999999G").is_err());
        assert!(p("interval=5ms").unwrap_err().contains("between"));
        assert!(p("interval=fast").unwrap_err().contains("interval=fast"));
        assert!(p("dir=").unwrap_err().contains("needs a value"));
        assert!(p("dir=/a,path=/b").unwrap_err().contains("not both"));
        assert!(p("size=4M,size=8M").unwrap_err().contains("twice"));
        assert!(p("strict=maybe").unwrap_err().contains("strict=maybe"));
        assert!(p("monitor=sometimes").unwrap_err().contains("monitor=sometimes"));
        assert!(!p("monitor=off").unwrap().monitor);
        assert!(p("").unwrap().monitor);
    }

    #[test]
    fn gc_poll_is_auto_or_a_bounded_period() {
        assert_eq!(p("").unwrap().gc_poll, None);
        assert_eq!(p("gc-poll=auto").unwrap().gc_poll, None);
        assert_eq!(p("gc-poll=100ms").unwrap().gc_poll, Some(Duration::from_millis(100)));
        assert_eq!(p("gc=poll,gc-poll=1s").unwrap().gc_poll, Some(Duration::from_secs(1)));
        assert!(p("gc-poll=2ms").unwrap_err().contains("between 5ms and 1s"));
        assert!(p("gc-poll=2s").unwrap_err().contains("between 5ms and 1s"));
        assert!(p("gc-poll=often").unwrap_err().contains("gc-poll=often"));
        assert!(p("gc-poll=").unwrap_err().contains("needs a value"));
        assert!(p("gc=notify,gc-poll=100ms").unwrap_err().contains("gc=notify"));
        assert!(p("gc=notify,gc-poll=auto").is_ok());
    }

    #[test]
    fn strict_is_seen_even_when_other_options_are_bad() {
        assert!(wants_strict(&split("bogus,strict=true")));
        assert!(!wants_strict(&split("bogus,strict=false")));
    }
}

//! Application-aware HA, the pure part: app states, the order of starts and stops from
//! `depends_on`, and the escalation policies (`highest`, `sum`). The supervisor keeps the
//! states and carries out what these functions decide.

use serde::Serialize;

use crate::config::AppCfg;

/// What the supervisor reports of an app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    /// Instances launched, not all ready yet.
    Starting,
    /// Its instances are ready.
    Online,
    /// An instance exited unexpectedly; a restart is scheduled.
    Restarting,
    /// Restarts exhausted (`max_restarts` within `restart_window`) or a start timed out.
    Failed,
    /// Stopped on purpose; no monitoring-driven restarts.
    Offline,
}

/// How failed apps escalate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Escalate when a failed app's priority is the highest of all counted apps (ties
    /// escalate).
    Highest,
    /// Escalate when the failed apps' priorities add up to at least the available apps'
    /// (ties escalate).
    Sum,
}

/// One app as the policies see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppView {
    /// Name.
    pub name: String,
    /// Priority.
    pub priority: u32,
    /// State.
    pub state: AppState,
}

/// Why an escalation was decided: the policy and the priorities that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Escalation {
    /// The policy.
    pub policy: Policy,
    /// Failed apps with their priorities.
    pub failed: Vec<(String, u32)>,
    /// Available apps (online, starting, restarting; offline ones when they count) with
    /// their priorities.
    pub available: Vec<(String, u32)>,
    /// Human-readable reason.
    pub reason: String,
}

/// Whether `apps` call for an escalation under `policy`. `count_offline`: offline apps count
/// as available (for `sum`) and as candidates for the highest priority (for `highest`).
pub fn escalate(policy: Policy, apps: &[AppView], count_offline: bool) -> Option<Escalation> {
    let failed: Vec<(String, u32)> =
        apps.iter().filter(|a| a.state == AppState::Failed).map(|a| (a.name.clone(), a.priority)).collect();
    if failed.is_empty() {
        return None;
    }
    let counted = |a: &&AppView| a.state != AppState::Failed && (count_offline || a.state != AppState::Offline);
    let available: Vec<(String, u32)> = apps.iter().filter(counted).map(|a| (a.name.clone(), a.priority)).collect();
    let list = |v: &[(String, u32)]| v.iter().map(|(n, p)| format!("{n}={p}")).collect::<Vec<_>>().join(", ");
    let reason = match policy {
        Policy::Highest => {
            let top_failed = failed.iter().map(|f| f.1).max().unwrap_or(0);
            let top_other = available.iter().map(|a| a.1).max().unwrap_or(0);
            if top_failed < top_other {
                return None;
            }
            format!(
                "highest: failed [{}] reach priority {top_failed} >= {top_other}, the highest of the available [{}]",
                list(&failed),
                list(&available)
            )
        }
        Policy::Sum => {
            let f: u64 = failed.iter().map(|x| u64::from(x.1)).sum();
            let a: u64 = available.iter().map(|x| u64::from(x.1)).sum();
            if f < a {
                return None;
            }
            format!("sum: failed [{}] = {f} >= available [{}] = {a}", list(&failed), list(&available))
        }
    };
    Some(Escalation { policy, failed, available, reason })
}

/// App names in start order: every app after the apps it depends on, otherwise in file
/// order. Stops go in the reverse order. Err(the cycle, first name repeated at the end).
pub fn start_order(apps: &[AppCfg]) -> Result<Vec<String>, Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit(
        i: usize,
        apps: &[AppCfg],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        out: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Visiting => {
                let from = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].iter().map(|&p| apps[p].name.clone()).collect();
                cycle.push(apps[i].name.clone());
                return Err(cycle);
            }
            Mark::New => {}
        }
        marks[i] = Mark::Visiting;
        path.push(i);
        for d in &apps[i].depends_on {
            if let Some(j) = apps.iter().position(|a| a.name == *d) {
                visit(j, apps, marks, path, out)?;
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        out.push(apps[i].name.clone());
        Ok(())
    }
    let mut marks = vec![Mark::New; apps.len()];
    let mut out = Vec::with_capacity(apps.len());
    for i in 0..apps.len() {
        visit(i, apps, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AppState::*;

    fn v(name: &str, priority: u32, state: AppState) -> AppView {
        AppView { name: name.into(), priority, state }
    }

    #[test]
    fn policies_over_a_table_with_ties_and_offline_apps() {
        // (policy, apps, count_offline, escalates)
        let cases: Vec<(Policy, Vec<AppView>, bool, bool)> = vec![
            // The example: A=5 online, B=3 and C=3 failed.
            (Policy::Sum, vec![v("a", 5, Online), v("b", 3, Failed), v("c", 3, Failed)], false, true),
            (Policy::Highest, vec![v("a", 5, Online), v("b", 3, Failed), v("c", 3, Failed)], false, false),
            // C=6 failing alone escalates under both.
            (Policy::Sum, vec![v("a", 5, Online), v("b", 3, Online), v("c", 6, Failed)], false, false),
            (Policy::Highest, vec![v("a", 5, Online), v("b", 3, Online), v("c", 6, Failed)], false, true),
            (Policy::Sum, vec![v("a", 5, Online), v("c", 6, Failed)], false, true),
            // Ties escalate.
            (Policy::Sum, vec![v("a", 4, Online), v("b", 4, Failed)], false, true),
            (Policy::Highest, vec![v("a", 4, Online), v("b", 4, Failed)], false, true),
            // Nothing failed: never.
            (Policy::Sum, vec![v("a", 0, Online), v("b", 0, Starting)], false, false),
            (Policy::Highest, vec![v("a", 1, Offline)], true, false),
            // Offline apps count only when asked.
            (Policy::Sum, vec![v("a", 5, Offline), v("b", 3, Failed)], false, true),
            (Policy::Sum, vec![v("a", 5, Offline), v("b", 3, Failed)], true, false),
            (Policy::Highest, vec![v("a", 5, Offline), v("b", 3, Failed)], false, true),
            (Policy::Highest, vec![v("a", 5, Offline), v("b", 3, Failed)], true, false),
            // Restarting and starting apps are available.
            (Policy::Sum, vec![v("a", 5, Restarting), v("b", 3, Failed)], false, false),
            (Policy::Sum, vec![v("a", 5, Starting), v("b", 6, Failed)], false, true),
        ];
        for (i, (policy, apps, count_offline, want)) in cases.iter().enumerate() {
            let got = escalate(*policy, apps, *count_offline);
            assert_eq!(got.is_some(), *want, "case {i}: {policy:?} {apps:?} count_offline={count_offline}: {got:?}");
        }
        let e = escalate(Policy::Sum, &[v("a", 5, Online), v("b", 3, Failed), v("c", 3, Failed)], false).unwrap();
        assert_eq!(e.reason, "sum: failed [b=3, c=3] = 6 >= available [a=5] = 5");
        assert_eq!(e.failed, vec![("b".to_string(), 3), ("c".to_string(), 3)]);
    }

    fn app(name: &str, deps: &[&str]) -> AppCfg {
        AppCfg { depends_on: deps.iter().map(|d| d.to_string()).collect(), ..AppCfg::new(name, vec!["java".into()]) }
    }

    #[test]
    fn start_order_puts_dependencies_first_and_names_a_cycle() {
        let apps = [app("c", &["b"]), app("b", &["a"]), app("a", &[]), app("x", &[])];
        assert_eq!(start_order(&apps).unwrap(), ["a", "b", "c", "x"]);
        let cyc = [app("a", &["c"]), app("b", &["a"]), app("c", &["b"])];
        assert_eq!(start_order(&cyc).unwrap_err(), ["a", "c", "b", "a"]);
        assert_eq!(start_order(&[app("s", &["s"])]).unwrap_err(), ["s", "s"]);
    }

    #[test]
    fn config_errors_name_the_cycle_and_unknown_dependencies() {
        let text = "[[app]]\nname = \"a\"\ncommand = [\"java\"]\ndepends_on = [\"b\"]\n\
                    [[app]]\nname = \"b\"\ncommand = [\"java\"]\ndepends_on = [\"a\"]\n";
        let e = crate::Config::parse(text, std::path::Path::new("ha.toml")).unwrap_err().to_string();
        assert!(e.starts_with("ha.toml:2:") && e.contains("depends_on") && e.contains("a -> b -> a"), "{e}");
        let text = "[[app]]\nname = \"a\"\ncommand = [\"java\"]\ndepends_on = [\"zz\"]\n";
        let e = crate::Config::parse(text, std::path::Path::new("ha.toml")).unwrap_err().to_string();
        assert!(e.contains("ha.toml:4:") && e.contains("unknown app `zz`"), "{e}");
        let text = "[supervisor]\nescalation = \"most\"\n";
        let e = crate::Config::parse(text, std::path::Path::new("ha.toml")).unwrap_err().to_string();
        assert!(e.contains("escalation") && e.contains("\"highest\" or \"sum\""), "{e}");
    }
}

//! Shared helpers: the example config from docs/controller.md and a small simulator.
#![allow(dead_code)]

use std::path::Path;

use jvmwatch_controller::{evaluate, Action, AppStatus, Config, Decision, EvalState, History, Instance, World};

/// The ```toml block under "## A complete example" in docs/controller.md.
pub const DOC: &str = include_str!("../../docs/controller.md");

pub fn example_toml() -> &'static str {
    let after = DOC.split_once("## A complete example").expect("section").1;
    let start = after.find("```toml\n").expect("toml block") + "```toml\n".len();
    let len = after[start..].find("```").expect("end of block");
    &after[start..start + len]
}

pub fn example() -> Config {
    match Config::parse(example_toml(), Path::new("controller.md")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

pub struct Sim {
    pub cfg: Config,
    pub world: World,
    pub state: EvalState,
    pub log: Vec<Decision>,
}

impl Sim {
    /// The example config with only the named rules.
    pub fn with_rules(names: &[&str]) -> Sim {
        let mut cfg = example();
        cfg.rules.retain(|r| names.contains(&r.name.as_str()));
        assert_eq!(cfg.rules.len(), names.len(), "rules {names:?} in the example");
        Sim::new(cfg)
    }

    pub fn new(cfg: Config) -> Sim {
        Sim { cfg, world: World::default(), state: EvalState::default(), log: Vec::new() }
    }

    pub fn add(&mut self, id: &str, app: &str, alive: bool) {
        self.world.instances.push(Instance {
            id: id.into(),
            app: app.into(),
            alive,
            verdict: if alive { "running".into() } else { "killed".into() },
            findings: Vec::new(),
            history: History::for_config(&self.cfg.controller),
        });
    }

    pub fn inst(&mut self, id: &str) -> &mut Instance {
        self.world.instances.iter_mut().find(|i| i.id == id).expect("instance")
    }

    pub fn h(&mut self, id: &str) -> &mut History {
        &mut self.inst(id).history
    }

    pub fn status(&mut self, app: &str, instances: u32, min: u32, max: u32) {
        self.world.apps.insert(app.into(), AppStatus { name: app.into(), instances, min, max });
    }

    /// Evaluates at `t_s` seconds; applies scale decisions to the app status like a supervisor.
    pub fn eval(&mut self, t_s: u64) -> Vec<Decision> {
        let out = evaluate(&self.cfg, &self.world, &mut self.state, t_s * 1000);
        for d in &out {
            if let Some(s) = self.world.apps.get_mut(&d.app) {
                for a in &d.actions {
                    match a {
                        Action::ScaleUp => s.instances += 1,
                        Action::ScaleDown => s.instances -= 1,
                        _ => {}
                    }
                }
            }
        }
        self.log.extend(out.iter().cloned());
        out
    }

    /// Decision times (seconds) of a rule, optionally for one instance.
    pub fn times(&self, rule: &str, instance: Option<&str>) -> Vec<u64> {
        self.log
            .iter()
            .filter(|d| d.rule == rule && (instance.is_none() || d.instance.as_deref() == instance))
            .map(|d| d.at_ms / 1000)
            .collect()
    }
}

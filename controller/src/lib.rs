//! The pure jvmwatch controller: `(config, window state, now) -> decisions`.
//!
//! This crate holds no process, clock, file, network or thread. The caller (the supervisor or
//! `serve --rules` in the sidecar) owns time and I/O:
//!
//! 1. [`Config::parse`] reads the TOML rules file (apps, hooks, supervisor settings, rules) and
//!    compiles every rule's `when` expression once ([`expr`]).
//! 2. For each JVM it keeps a bounded [`History`] and pushes the figures named by
//!    [`Config::series`] every sample ([`window`]).
//! 3. It calls [`evaluate`] with a [`World`] (instances and app sizes), an [`EvalState`] it keeps
//!    between calls, and the current time; it gets back the [`Decision`]s to carry out ([`eval`]).
//!
//! See `docs/controller.md` for the grammar and the semantics.
#![forbid(unsafe_code)]

pub mod config;
pub mod eval;
pub mod expr;
pub mod ha;
pub mod series;
mod series_store;
pub mod window;

mod text;

pub use config::{
    Action, AppCfg, Config, ConfigError, ControllerCfg, Health, Hook, HookTarget, Rule, Scope, SupervisorCfg,
    TuningCfg, UsageCfg,
};
pub use eval::{evaluate, AppStatus, Decision, EvalState, Figure, Instance, World};
pub use expr::Cond;
pub use window::History;

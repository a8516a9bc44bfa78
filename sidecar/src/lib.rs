//! The jvmwatch sidecar: reads ring files written by the agent, without the JVM.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod agentpath;
pub mod appmetrics;
pub mod attach;
pub mod control;
pub mod demo;
pub mod findings;
pub mod history;
pub mod report;
pub mod retention;
pub mod serve;
pub mod stacks;
pub mod store;
pub mod text;
pub mod usage;

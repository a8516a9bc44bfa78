//! End-to-end tests: real JVMs with the real agent, the real `jvmwatch` binary, real files.
//! Run after `cargo build --release` (scripts/test.sh does both).

mod app_metrics;
mod attach;
mod bad_options;
mod cli;
mod collectors;
mod console;
mod controller;
mod deaths;
mod deploy;
mod docs;
mod facts;
mod history;
mod hostile_files;
mod jdk_matrix;
mod lifecycle;
mod monitoring;
mod package;
mod retention;
mod sampler;
mod serve;
mod tuning;
mod usage;

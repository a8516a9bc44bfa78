//! `jvmwatch`: the sidecar command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jvmwatch_sidecar::{control, demo, report, retention, serve, text};

/// Reads jvmwatch ring files — live, or after the JVM exited, was killed or crashed.
#[derive(Parser, Debug)]
#[command(name = "jvmwatch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Tell how a JVM is doing or how it died, from its ring file alone.
    Inspect {
        /// The ring file (or an archived one, FILE.ring.zst).
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// How many of the latest events to show.
        #[arg(long, default_value_t = 50, value_name = "N")]
        events: usize,
    },
    /// Follow every ring in a directory; serve JSON, SSE, Prometheus metrics and the console.
    Serve {
        /// Directory of ring files (default: the agent's default directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Address to listen on. Beyond loopback only with --token-file.
        #[arg(long, default_value = serve::DEFAULT_LISTEN, value_name = "ADDR")]
        listen: String,
        /// File holding the bearer token for changes (and for all requests beyond loopback).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Also follow ring files owned by other users (default: only your own).
        #[arg(long)]
        any_owner: bool,
        /// Require the bearer token for reads on loopback too (needs --token-file).
        #[arg(long, requires = "token_file")]
        token_for_reads: bool,
        /// Evaluate the rules of this config file over the followed JVMs; record decisions.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Where the decision store goes (with --rules), and the archive of dead rings.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        retention: ServiceRetention,
    },
    /// Launch and watch the apps of CONFIG with the agent; restart and scale them by its rules.
    Supervise {
        /// The config file (apps, rules, hooks; see docs/controller.md).
        config: PathBuf,
        #[command(flatten)]
        common: ControlArgs,
    },
    /// Take a supervised app offline (its JVMs stop, no restarts) or back online.
    App {
        /// `offline` or `online`.
        #[arg(value_parser = ["offline", "online"])]
        state: String,
        /// The app's name.
        name: String,
        /// Where `jvmwatch supervise` listens.
        #[arg(long, default_value = serve::DEFAULT_LISTEN, value_name = "ADDR")]
        addr: String,
        /// File holding the supervisor's bearer token.
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
    },
    /// Run one JVM under the agent and the supervisor: `jvmwatch run [--rules FILE] -- java ...`.
    Run {
        /// Rules (and hooks, supervisor settings) for this JVM.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// The app name of this JVM.
        #[arg(long, default_value = "app", value_name = "NAME")]
        app: String,
        #[command(flatten)]
        common: ControlArgs,
        /// The java command line.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Apply ring retention once: archive old dead rings (zstd), trim the archive by age and size.
    GcRings {
        /// Directory of ring files (default: the agent's default directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// State directory; the archive defaults to STATE_DIR/archive.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Only print what would be archived or deleted, and why; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object (the actions) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: RetentionArgs,
    },
    /// Run a bundled demo workload under the agent with the console; Ctrl-C stops both.
    Demo {
        /// Stop after this many seconds (0: run until Ctrl-C).
        #[arg(long, default_value_t = 0, value_name = "SECONDS")]
        seconds: u64,
        /// Where the ring file goes (default: the agent's default directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Address for the console.
        #[arg(long, default_value = serve::DEFAULT_LISTEN, value_name = "ADDR")]
        listen: String,
    },
}

/// Options shared by `supervise` and `run`.
#[derive(clap::Args, Debug)]
struct ControlArgs {
    /// Directory of ring files (default: the agent's default directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Where the decision store, the JVMs' logs and (by default) the archive of dead rings go.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Address to listen on. Beyond loopback only with --token-file.
    #[arg(long, default_value = serve::DEFAULT_LISTEN, value_name = "ADDR")]
    listen: String,
    /// File holding the bearer token for changes (and for all requests beyond loopback).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    retention: ServiceRetention,
}

/// Retention limits (see docs/retention.md).
#[derive(clap::Args, Debug, Clone)]
struct RetentionArgs {
    /// Dead rings kept per app in the ring directory; older ones are archived.
    #[arg(long, default_value_t = 10, value_name = "N")]
    keep_dead: usize,
    /// MiB of dead rings kept in the ring directory; the oldest beyond it are archived.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    max_dead_mb: u64,
    /// Where archived rings go [default: STATE_DIR/archive, STATE_DIR being --state-dir or
    /// $XDG_STATE_HOME/jvmwatch or ~/.local/state/jvmwatch].
    #[arg(long, value_name = "DIR")]
    archive_dir: Option<PathBuf>,
    /// Archived rings of JVMs that ended longer ago than this are deleted.
    #[arg(long, default_value = "30days", value_parser = humantime::parse_duration, value_name = "AGE")]
    archive_max_age: Duration,
    /// MiB the archive holds at most; the oldest archived rings beyond it are deleted.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    archive_max_mb: u64,
}

/// Retention inside `serve`, `supervise` and `run`.
#[derive(clap::Args, Debug, Clone)]
struct ServiceRetention {
    /// Never archive or delete rings (archived ones are still served).
    #[arg(long)]
    no_retention: bool,
    /// How often retention is applied.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    retention_interval: Duration,
    #[command(flatten)]
    limits: RetentionArgs,
}

impl RetentionArgs {
    fn settings(&self, dir: &Path, state_dir: Option<&Path>) -> retention::Settings {
        let archive_dir = self.archive_dir.clone().unwrap_or_else(|| match state_dir {
            Some(s) => s.join("archive"),
            None => retention::default_archive_dir(),
        });
        retention::Settings {
            dir: dir.to_path_buf(),
            archive_dir,
            limits: retention::Limits {
                keep_per_app: self.keep_dead,
                max_dead_bytes: self.max_dead_mb.saturating_mul(1 << 20),
                archive_max_age_ns: self.archive_max_age.as_nanos().min(u64::MAX as u128) as u64,
                archive_max_bytes: self.archive_max_mb.saturating_mul(1 << 20),
            },
        }
    }
}

impl ServiceRetention {
    fn service(&self, dir: &Path, state_dir: Option<&Path>) -> std::sync::Arc<retention::Service> {
        let every = (!self.no_retention).then_some(self.retention_interval.max(Duration::from_millis(100)));
        retention::Service::new(self.limits.settings(dir, state_dir), every)
    }
}

/// `jvmwatch gc-rings`: one pass; each action on its own line (or one JSON object).
fn gc_rings(s: &retention::Settings, dry_run: bool, json: bool) -> ExitCode {
    if !s.dir.is_dir() {
        eprintln!("jvmwatch: gc-rings: {} is not a directory", s.dir.display());
        return ExitCode::from(2);
    }
    let actions = retention::run_once(s, dry_run, |a| {
        if !json {
            println!("{}", a.line());
        }
    });
    let failed = actions.iter().filter(|a| a.error.is_some()).count();
    if json {
        let v = serde_json::json!({
            "dir": s.dir,
            "archive_dir": s.archive_dir,
            "dry_run": dry_run,
            "actions": actions,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("actions serialise"));
    } else if actions.is_empty() {
        println!("nothing to do: {} and {} are within the limits", s.dir.display(), s.archive_dir.display());
    }
    if failed > 0 {
        eprintln!("jvmwatch: gc-rings: {failed} action(s) failed");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn control(common: ControlArgs, cfg: Option<PathBuf>, mode: control::cli::Mode) -> ExitCode {
    let dir = common.dir.unwrap_or_else(jvmwatch_ring::default_dir);
    let retention = common.retention.service(&dir, common.state_dir.as_deref());
    let run = serve::Config::new(dir, &common.listen, common.token_file).and_then(|s| {
        control::cli::main(
            serve::Config { retention, ..s },
            cfg,
            common.state_dir.unwrap_or_else(control::cli::default_state_dir),
            mode,
        )
    });
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jvmwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Inspect { file, json, events } => match report::inspect(&file, events) {
            Ok(r) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&r).expect("report serialises"));
                } else {
                    print!("{}", text::render(&r));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jvmwatch: {}: {e}", file.display());
                ExitCode::from(2)
            }
        },
        Cmd::App { state, name, addr, token_file } => {
            match control::cli::set_app_state(&addr, &token_file, &name, &state) {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("jvmwatch: app {state} {name}: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Supervise { config, common } => control(common, Some(config), control::cli::Mode::Supervise),
        Cmd::Run { rules, app, common, command } => control(common, rules, control::cli::Mode::Run { app, command }),
        Cmd::GcRings { dir, state_dir, dry_run, json, limits } => {
            let dir = dir.unwrap_or_else(jvmwatch_ring::default_dir);
            gc_rings(&limits.settings(&dir, state_dir.as_deref()), dry_run, json)
        }
        Cmd::Serve { dir, listen, token_file, any_owner, token_for_reads, rules, state_dir, retention } => {
            let dir = dir.unwrap_or_else(jvmwatch_ring::default_dir);
            let retention = retention.service(&dir, state_dir.as_deref());
            let run = serve::Config::new(dir, &listen, token_file)
                .map(|c| serve::Config { any_owner, token_for_reads, retention, ..c })
                .and_then(|c| match rules {
                    Some(r) => control::cli::main(
                        c,
                        Some(r),
                        state_dir.unwrap_or_else(control::cli::default_state_dir),
                        control::cli::Mode::Serve,
                    ),
                    None => serve::main(c),
                });
            match run {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("jvmwatch: serve: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Demo { seconds, dir, listen } => {
            match demo::main(seconds, &dir.unwrap_or_else(jvmwatch_ring::default_dir), &listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("jvmwatch: demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! `jvmwatch`: the sidecar command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jvmwatch_sidecar::{attach, control, demo, report, serve, text};

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
        /// The ring file.
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
        /// Where the decision store goes (with --rules).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
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
    /// Load the agent into a running HotSpot JVM (JDK 11+): `jvmwatch attach PID [OPTION...]`.
    #[command(
        after_help = "Exit status: 0 attached, 3 already loaded (nothing changed), 2 any other error.\nWhat an attached agent cannot see: docs/agent-options.md, \"Attached agents\"."
    )]
    Attach {
        /// The JVM's process id, as seen from here (a JVM in a container works from the host).
        pid: u32,
        /// Agent options, as after `-agentpath:libjvmwatch.so=` (`dir=/x interval=1s` or `dir=/x,interval=1s`).
        #[arg(value_name = "OPTION")]
        options: Vec<String>,
        /// The agent library (default: libjvmwatch.so beside this binary, or in ../lib).
        #[arg(long, value_name = "PATH")]
        agent: Option<PathBuf>,
        /// How long to wait for the JVM's attach listener and for its reply.
        #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// As root: attach to a JVM of another user too (HotSpot accepts root; refused by default).
        #[arg(long)]
        any_user: bool,
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
    /// Where the decision store and the JVMs' logs go.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Address to listen on. Beyond loopback only with --token-file.
    #[arg(long, default_value = serve::DEFAULT_LISTEN, value_name = "ADDR")]
    listen: String,
    /// File holding the bearer token for changes (and for all requests beyond loopback).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

fn control(common: ControlArgs, cfg: Option<PathBuf>, mode: control::cli::Mode) -> ExitCode {
    let run =
        serve::Config::new(common.dir.unwrap_or_else(jvmwatch_ring::default_dir), &common.listen, common.token_file)
            .and_then(|s| {
                control::cli::main(s, cfg, common.state_dir.unwrap_or_else(control::cli::default_state_dir), mode)
            });
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jvmwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `jvmwatch attach`: exit 0 when the agent started, 3 when it was already loaded, 2 else.
fn attach_main(
    pid: u32,
    options: Vec<String>,
    agent: Option<PathBuf>,
    timeout: std::time::Duration,
    any_user: bool,
) -> ExitCode {
    let req = match agent.map(Ok).unwrap_or_else(attach::default_agent) {
        Ok(agent) => attach::Request { pid, options: options.join(","), agent, timeout, any_user },
        Err(e) => {
            eprintln!("jvmwatch: attach: {e}");
            return ExitCode::from(2);
        }
    };
    match attach::attach(&req) {
        Ok(a) => {
            let ns = if a.target.nspid != pid {
                format!(" (pid {} in its namespace)", a.target.nspid)
            } else {
                String::new()
            };
            println!("jvmwatch: attached to JVM {pid}{ns}");
            match a.ring {
                Some(r) => println!("ring: {}", r.display()),
                None => println!("ring: not found from here; the JVM's stderr names it"),
            }
            ExitCode::SUCCESS
        }
        Err(e @ attach::AttachError::AlreadyLoaded { .. }) => {
            eprintln!("jvmwatch: attach: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("jvmwatch: attach: {e}");
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
        Cmd::Serve { dir, listen, token_file, any_owner, token_for_reads, rules, state_dir } => {
            let run = serve::Config::new(dir.unwrap_or_else(jvmwatch_ring::default_dir), &listen, token_file)
                .map(|c| serve::Config { any_owner, token_for_reads, ..c })
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
        Cmd::Attach { pid, options, agent, timeout, any_user } => attach_main(pid, options, agent, timeout, any_user),
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

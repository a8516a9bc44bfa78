//! `jvmwatch`: the sidecar command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jvmwatch_sidecar::{demo, report, serve, text};

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
        Cmd::Serve { dir, listen, token_file, any_owner, token_for_reads } => {
            let run = serve::Config::new(dir.unwrap_or_else(jvmwatch_ring::default_dir), &listen, token_file)
                .map(|c| serve::Config { any_owner, token_for_reads, ..c })
                .and_then(serve::main);
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

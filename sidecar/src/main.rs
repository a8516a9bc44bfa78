//! `jvmwatch`: the sidecar command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jvmwatch_sidecar::{demo, report, text};

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
    /// Run a bundled demo workload under the agent, then inspect it.
    Demo {
        /// How long the workload runs.
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        seconds: u64,
        /// Where the ring file goes (default: the agent's default directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
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
        Cmd::Demo { seconds, dir } => match demo::main(seconds, &dir.unwrap_or_else(jvmwatch_ring::default_dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jvmwatch: demo: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

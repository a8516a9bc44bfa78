//! `jvmwatch`: the sidecar command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use jvmwatch_sidecar::{attach, control, demo, report, retention, serve, text};

/// Reads jvmwatch ring files — live, or after the JVM exited, was killed or crashed.
#[derive(Parser, Debug)]
#[command(name = "jvmwatch", version = env!("JVMWATCH_VERSION"), about, long_about = None, after_help = EX_MAIN)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Tell how a JVM is doing or how it died, from its ring file alone.
    #[command(after_help = EX_INSPECT)]
    Inspect {
        /// The ring file (or an archived one, FILE.ring.zst).
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// How many of the latest events to show.
        #[arg(long, default_value_t = 50, value_name = "N")]
        events: usize,
        /// Print the history region's series instead (a text table, or JSON arrays with --json).
        #[arg(long)]
        history: bool,
    },
    /// Follow every ring in a directory; serve JSON, SSE, Prometheus metrics and the console.
    #[command(after_help = EX_SERVE)]
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
    #[command(after_help = EX_SUPERVISE)]
    Supervise {
        /// The config file (apps, rules, hooks; see docs/controller.md).
        config: PathBuf,
        #[command(flatten)]
        common: ControlArgs,
    },
    /// Take a supervised app offline (its JVMs stop, no restarts) or back online.
    #[command(after_help = EX_APP)]
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
    #[command(after_help = EX_RUN)]
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
        after_help = EX_ATTACH
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
    /// Apply ring retention once: archive old dead rings (zstd), trim the archive by age and size.
    #[command(after_help = EX_GC_RINGS)]
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
    #[command(after_help = EX_DEMO)]
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
    /// Usage records: check their hash chain, export them as a signed bundle.
    #[command(after_help = EX_USAGE)]
    Usage {
        #[command(subcommand)]
        cmd: UsageCmd,
    },
    /// A usage and license report from this host's records and/or exported bundles.
    #[command(after_help = EX_REPORT)]
    Report {
        /// Start: RFC 3339, ms since the epoch, or an age such as 30d.
        #[arg(long, default_value = "30d", value_name = "TIME")]
        from: String,
        /// End (exclusive).
        #[arg(long, default_value = "now", value_name = "TIME")]
        to: String,
        /// Group JVMs by app, host or datacenter.
        #[arg(long, default_value = "app", value_parser = ["app", "host", "datacenter"])]
        group_by: String,
        /// Output format.
        #[arg(long, default_value = "html", value_parser = ["html", "csv", "json"])]
        format: String,
        /// The state directory whose records to read (default: the usual one, unless --bundle is given).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// An exported bundle (`jvmwatch usage export`); repeat for several hosts.
        #[arg(long, value_name = "FILE")]
        bundle: Vec<PathBuf>,
        /// Key file: bundles must carry a valid signature.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// License policy (licensed cores per group).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Headroom over the p95 for the suggested license, percent.
        #[arg(long, default_value_t = 20.0, value_name = "PCT")]
        headroom: f64,
        /// Time bucket over which a group's cores are summed.
        #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, value_name = "DURATION")]
        bucket: std::time::Duration,
        /// Write to this file instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the agent library's absolute path (beside this binary, or in ../lib).
    #[command(after_help = EX_AGENT_PATH)]
    AgentPath,
    /// Print a shell completion script.
    #[command(after_help = EX_COMPLETIONS)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages: DIR/jvmwatch.1 and DIR/jvmwatch-SUBCOMMAND.1.
    #[command(after_help = EX_MANPAGE)]
    Manpage {
        /// Directory to write them to (created if missing).
        dir: PathBuf,
    },
}

/// `jvmwatch usage ...`.
#[derive(Subcommand, Debug)]
enum UsageCmd {
    /// Check the records' hash chain (and signed heads); name the first bad record. Exit 1 if tampered.
    #[command(after_help = EX_USAGE)]
    Verify {
        /// The state directory (default: the usual one).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// HMAC key file: also check the signed chain heads.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the records of a time range as a bundle that `jvmwatch report --bundle` reads.
    #[command(after_help = EX_USAGE)]
    Export {
        /// The state directory (default: the usual one).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Start: RFC 3339, ms since the epoch, or an age such as 30d.
        #[arg(long, default_value = "30d", value_name = "TIME")]
        from: String,
        /// End (exclusive).
        #[arg(long, default_value = "now", value_name = "TIME")]
        to: String,
        /// HMAC key file: sign the bundle.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Write to this file instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

const EX_USAGE: &str = "\
Examples:
  jvmwatch usage verify                                   # the usual state directory
  jvmwatch usage verify --state-dir /var/lib/jvmwatch --key /etc/jvmwatch/usage.key --json
  jvmwatch usage export --state-dir /var/lib/jvmwatch --from 2026-11-01 --to 2026-12-01 \\
    --key /etc/jvmwatch/usage.key --output host1-2026-11.json
  jvmwatch usage export --from 7d --to now -o last-week.json";
const EX_REPORT: &str = "\
Examples:
  jvmwatch report --from 30d --output usage.html          # this host, last 30 days
  jvmwatch report --state-dir /var/lib/jvmwatch --from 2026-11-01 --to 2026-12-01 --group-by host --format csv
  jvmwatch report --bundle fra1.json --bundle fra2.json --key usage.key --group-by datacenter \\
    --policy license.toml --headroom 25 --bucket 5m --format json";
const EX_MAIN: &str = "\
Examples:
  java -agentpath:$(jvmwatch agent-path) -jar app.jar    # run a JVM with the agent
  jvmwatch serve                                        # console, JSON, SSE, /metrics on 127.0.0.1:7457
  jvmwatch inspect /dev/shm/jvmwatch-$(id -u)/*.ring     # how did it die?
  jvmwatch --version                                    # version and git revision (the agent's ring header has the same)";
const EX_INSPECT: &str = "\
Examples:
  jvmwatch inspect /dev/shm/jvmwatch-1000/4242-1700000000-ab12.ring
  jvmwatch inspect --json --events 200 app.ring | jq .verdict
  jvmwatch inspect --events 0 copy-from-prod.ring        # verdict and findings only
  jvmwatch inspect --history app.ring                    # the minutes before the end, as a table
  jvmwatch inspect --history --json app.ring | jq '.heap_after_gc[-10:]'
  jvmwatch inspect ~/.local/state/jvmwatch/archive/4242-1700000000-ab12.ring.zst   # an archived ring";
const EX_SERVE: &str = "\
Examples:
  jvmwatch serve                                         # the default ring directory, http://127.0.0.1:7457/
  jvmwatch serve --dir /var/run/jvmwatch --listen 127.0.0.1:9400
  jvmwatch serve --listen 0.0.0.0:7457 --token-file /etc/jvmwatch/token --token-for-reads
  jvmwatch serve --any-owner --dir /var/run/jvmwatch     # as root: every user's JVMs
  jvmwatch serve --rules rules.toml --state-dir /var/lib/jvmwatch
  jvmwatch serve --keep-dead 5 --max-dead-mb 64 --retention-interval 30s   # tighter retention of dead rings
  jvmwatch serve --archive-dir /var/lib/jvmwatch/archive --archive-max-age 7days --archive-max-mb 512
  jvmwatch serve --no-retention                          # keep every dead ring in the ring directory";
const EX_SUPERVISE: &str = "\
Examples:
  jvmwatch supervise jvmwatch.toml
  jvmwatch supervise --dir /var/run/jvmwatch --state-dir /var/lib/jvmwatch --listen 127.0.0.1:7457 \\
    --token-file /etc/jvmwatch/token /etc/jvmwatch/jvmwatch.toml
  jvmwatch supervise --keep-dead 3 --max-dead-mb 64 --retention-interval 5s jvmwatch.toml
  jvmwatch supervise --archive-dir /var/lib/jvmwatch/archive --archive-max-age 7days --archive-max-mb 512 jvmwatch.toml
  jvmwatch supervise --no-retention jvmwatch.toml";
const EX_APP: &str = "\
Examples:
  jvmwatch app offline shop --token-file /etc/jvmwatch/token
  jvmwatch app online shop --addr 127.0.0.1:7457 --token-file /etc/jvmwatch/token";
const EX_RUN: &str = "\
Examples:
  jvmwatch run -- java -jar app.jar
  jvmwatch run --rules rules.toml --app shop -- java -Xmx1g -jar shop.jar
  jvmwatch run --dir /var/run/jvmwatch --state-dir /var/lib/jvmwatch --listen 127.0.0.1:7458 \\
    --token-file /etc/jvmwatch/token -- java -jar app.jar
  jvmwatch run --keep-dead 3 --max-dead-mb 64 --retention-interval 5s -- java -jar app.jar
  jvmwatch run --archive-dir /var/lib/jvmwatch/archive --archive-max-age 7days --archive-max-mb 512 -- java -jar app.jar
  jvmwatch run --no-retention -- java -jar app.jar";
const EX_GC_RINGS: &str = "\
Examples:
  jvmwatch gc-rings --dry-run                            # what would be archived or deleted, and why
  jvmwatch gc-rings --dir /var/run/jvmwatch --state-dir /var/lib/jvmwatch
  jvmwatch gc-rings --keep-dead 3 --max-dead-mb 64 --json | jq '.actions[].reason'
  jvmwatch gc-rings --archive-dir /srv/rings --archive-max-age 7days --archive-max-mb 512";
const EX_DEMO: &str = "\
Examples:
  jvmwatch demo                                          # open http://127.0.0.1:7457/
  jvmwatch demo --seconds 60 --dir /tmp/jvmwatch-demo --listen 127.0.0.1:8080";
const EX_AGENT_PATH: &str = "\
Examples:
  java -agentpath:$(jvmwatch agent-path) -jar app.jar
  JAVA_TOOL_OPTIONS=\"-agentpath:$(jvmwatch agent-path)\" ./launcher-you-do-not-control
  JAVA_TOOL_OPTIONS=\"-agentpath:$(jvmwatch agent-path)=dir=/var/run/jvmwatch\" mvn test";
const EX_COMPLETIONS: &str = "\
Examples:
  jvmwatch completions bash > /etc/bash_completion.d/jvmwatch
  jvmwatch completions zsh > \"${fpath[1]}/_jvmwatch\"
  jvmwatch completions fish > ~/.config/fish/completions/jvmwatch.fish";
const EX_ATTACH: &str = "\
Examples:
  jvmwatch attach 4242                                   # default options; prints the ring's path
  jvmwatch attach 4242 interval=1s dir=/dev/shm/jvmwatch-1000
  jvmwatch attach --agent /opt/jvmwatch/lib/libjvmwatch.so --timeout 30s 4242
  sudo jvmwatch attach --any-user 4242                   # root, into another user's JVM

Exit status: 0 attached, 3 already loaded (nothing changed), 2 any other error.
What an attached agent cannot see: docs/agent-options.md, \"Attached agents\".";
const EX_MANPAGE: &str = "\
Examples:
  jvmwatch manpage /usr/local/share/man/man1 && man jvmwatch-serve";

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

/// This build's version and git revision; the agent of the same build writes the same string
/// into every ring header.
const VERSION: &str = env!("JVMWATCH_VERSION");

/// `DIR/jvmwatch.1` and one page per subcommand (`DIR/jvmwatch-inspect.1`, ...), from clap.
fn manpages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command();
    cmd.build();
    let write = |name: &str, c: clap::Command| -> std::io::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.1")), buf)
    };
    write("jvmwatch", cmd.clone())?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("jvmwatch-{}", sub.get_name());
        // clap names are `&'static str` here; a handful of strings, once per run.
        let (page, bin): (&'static str, &'static str) = (name.clone().leak(), name.replace('-', " ").leak());
        write(&name, sub.clone().name(page).bin_name(bin).version(VERSION))?;
    }
    Ok(())
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
        Cmd::Inspect { file, json, events: _, history: true } => match jvmwatch_sidecar::history::read(&file) {
            Ok((h, ins)) => {
                if json {
                    println!("{}", jvmwatch_sidecar::history::to_json(&h, &ins));
                } else {
                    print!("{}", jvmwatch_sidecar::history::to_text(&h, &ins, usize::MAX));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jvmwatch: {}: {e}", file.display());
                ExitCode::from(2)
            }
        },
        Cmd::Inspect { file, json, events, history: false } => match report::inspect(&file, events) {
            Ok(r) => {
                if r.agent_version != VERSION {
                    eprintln!(
                        "jvmwatch: warning: {} was written by agent {:?}, this is jvmwatch {VERSION}: \
                         fields may be missing or misread",
                        file.display(),
                        r.agent_version
                    );
                }
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
        Cmd::Usage { cmd } => {
            let run = match cmd {
                UsageCmd::Verify { state_dir, key, json } => jvmwatch_sidecar::usage::cli::verify(
                    &state_dir.unwrap_or_else(control::cli::default_state_dir),
                    key.as_deref(),
                    json,
                ),
                UsageCmd::Export { state_dir, from, to, key, output } => jvmwatch_sidecar::usage::cli::export(
                    &state_dir.unwrap_or_else(control::cli::default_state_dir),
                    &from,
                    &to,
                    key.as_deref(),
                    output.as_deref(),
                )
                .map(|()| true),
            };
            match run {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("jvmwatch: usage: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Report { from, to, group_by, format, state_dir, bundle, key, policy, headroom, bucket, output } => {
            let state_dir = state_dir.or_else(|| bundle.is_empty().then(control::cli::default_state_dir));
            let args = jvmwatch_sidecar::usage::cli::ReportArgs {
                from,
                to,
                group_by,
                format: format.clone(),
                state_dir,
                bundles: bundle,
                key_file: key,
                policy,
                headroom,
                bucket,
            };
            let run = jvmwatch_sidecar::usage::cli::build(&args)
                .and_then(|r| jvmwatch_sidecar::usage::cli::render(&r, &format))
                .and_then(|text| match &output {
                    Some(p) => std::fs::write(p, text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())),
                    None => {
                        print!("{text}");
                        Ok(())
                    }
                });
            match run {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("jvmwatch: report: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::AgentPath => match jvmwatch_sidecar::agentpath::agent_path() {
            Ok(p) => {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jvmwatch: agent-path: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "jvmwatch", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Cmd::Manpage { dir } => match manpages(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jvmwatch: manpage: {e}");
                ExitCode::FAILURE
            }
        },
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

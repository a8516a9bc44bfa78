//! The entry points that run a controller: `serve --rules`, `supervise`, `run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use jvmwatch_controller::{AppCfg, Config};

use super::{Controller, Supervisor};
use crate::serve::{self, registry::Registry, Server};
use crate::store::Store;

/// What to run.
pub enum Mode {
    /// `serve --rules`: judge the JVMs in the directory, launch nothing.
    Serve,
    /// `supervise CONFIG`: launch and watch the config's apps.
    Supervise,
    /// `run -- java …`: one JVM of one app.
    Run {
        /// The app's name.
        app: String,
        /// The command.
        command: Vec<String>,
    },
}

/// `jvmwatch app offline|online NAME`: one authenticated POST to a running supervisor.
pub fn set_app_state(addr: &str, token_file: &Path, app: &str, state: &str) -> Result<String> {
    let token = std::fs::read_to_string(token_file).with_context(|| format!("cannot read {}", token_file.display()))?;
    let sock: std::net::SocketAddr =
        addr.parse().with_context(|| format!("--addr {addr:?}: expected an address like 127.0.0.1:7457"))?;
    let auth = format!("Bearer {}", token.trim());
    let url = format!("http://{sock}/api/v1/apps/{app}/{state}");
    let r = super::http::request("POST", &url, &[("Authorization", &auth)], b"", Duration::from_secs(120))
        .map_err(|e| anyhow::anyhow!("cannot reach jvmwatch: {e}"))?;
    anyhow::ensure!(r.ok(), "HTTP {}: {}", r.status, r.body);
    Ok(format!("{app} is {state}"))
}

/// The default directory for the decision store and child logs.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Path::new(&d).join("jvmwatch");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Path::new(&h).join(".local/state/jvmwatch"),
        None => PathBuf::from("/var/lib/jvmwatch"),
    }
}

/// Reads and checks a config file (one-line error naming file, line and key).
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Config::parse(&text, path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs the service with a controller until Ctrl-C / SIGTERM (or, for `run`, the JVM's
/// clean exit). SIGHUP reloads the config file; a bad one is refused and the old one kept.
pub fn main(serve_cfg: serve::Config, cfg_path: Option<PathBuf>, state_dir: PathBuf, mode: Mode) -> Result<()> {
    let mut cfg = match &cfg_path {
        Some(p) => load(p)?,
        None => Config::default(),
    };
    if let Mode::Run { app, command } = &mode {
        anyhow::ensure!(cfg.apps.is_empty(), "`run` takes rules only; put [[app]] sections in a `supervise` config");
        cfg.apps.push(AppCfg::new(app, command.clone()));
    }
    if matches!(mode, Mode::Supervise) {
        anyhow::ensure!(
            !cfg.apps.is_empty(),
            "{}: no [[app]] to supervise",
            cfg_path.as_deref().unwrap_or(Path::new("?")).display()
        );
    }
    for a in &cfg.apps {
        anyhow::ensure!(
            jvmwatch_controller::config::valid_app_name(&a.name),
            "app name {:?}: use letters, digits and _ only, at most 128 (it is part of file names and ids)",
            a.name
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let store = Store::open(&state_dir.join("jvmwatch.db"))?;
    jvmwatch_ring::ensure_dir(&serve_cfg.dir).with_context(|| format!("cannot use {}", serve_cfg.dir.display()))?;
    let supervisor = match &mode {
        Mode::Serve => None,
        _ => Some(Supervisor::new(
            &cfg,
            serve_cfg.dir.clone(),
            &state_dir,
            crate::demo::agent_path()?,
            matches!(mode, Mode::Run { .. }),
        )),
    };
    let registry = Registry::new(serve_cfg.dir.clone(), serve_cfg.any_owner);
    let controller = Controller::new(cfg, cfg_path, store, registry.clone(), supervisor);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let dir = serve_cfg.dir.clone();
        let server = Server::start_with(serve_cfg, registry, Some(controller.clone())).await?;
        let looper = controller.start();
        eprintln!(
            "jvmwatch: controller on {} — decisions in {}; console and API on http://{}/",
            dir.display(),
            state_dir.display(),
            server.addr
        );
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let stop = serve::wait_for_signal();
        tokio::pin!(stop);
        let mut finished = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = hup.recv() => match controller.reload() {
                    Ok(()) => eprintln!("jvmwatch: config reloaded"),
                    Err(e) => eprintln!("jvmwatch: config not reloaded, the old one stays: {e}"),
                },
                _ = finished.tick() => if controller.finished.load(std::sync::atomic::Ordering::Relaxed) { break },
            }
        }
        eprintln!("jvmwatch: stopping");
        controller.stop();
        let c = Arc::clone(&controller);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(s) = &c.supervisor {
                c.tuning_stop();
                s.shutdown();
            }
            let _ = looper.join();
        })
        .await;
        server.stop().await;
        Ok(())
    })
}

use std::os::unix::fs::DirBuilderExt;

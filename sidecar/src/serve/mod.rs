//! `jvmwatch serve`: follows every ring in a directory and serves JSON, SSE, Prometheus
//! metrics, probes and the web console over HTTP.
//!
//! One tokio runtime on the current thread serves HTTP; one plain thread follows the rings
//! (see [`registry`]). Connections are bounded, header reads and stalled writes time out, and
//! a slow SSE subscriber is dropped rather than buffered for.

pub mod api;
pub mod metrics;
pub mod openmetrics;
pub mod registry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_io_timeout::TimeoutStream;

use self::api::App;
use self::registry::Registry;

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7457";
/// Open connections at most; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// A client must send its request head within this time.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that cannot make progress for this long drops the connection (a client that
/// stopped reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Typed configuration of the service.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory of ring files.
    pub dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Bearer token for mutating endpoints (and for all endpoints beyond loopback).
    pub token: Option<String>,
    /// Follow ring files owned by other users too.
    pub any_owner: bool,
    /// Require the token for reads on loopback too.
    pub token_for_reads: bool,
    /// Retention of dead rings and reads of the archive (off in [`Config::new`]'s default;
    /// the archive is read all the same).
    pub retention: Arc<crate::retention::Service>,
}

impl Config {
    /// Builds the config from raw CLI values; refuses a non-loopback address without a token.
    pub fn new(dir: PathBuf, listen: &str, token_file: Option<PathBuf>) -> Result<Config> {
        let listen: SocketAddr =
            listen.parse().with_context(|| format!("--listen {listen:?}: expected an address like 127.0.0.1:7457"))?;
        let token = match token_file {
            Some(f) => {
                let t =
                    std::fs::read_to_string(&f).with_context(|| format!("cannot read token file {}", f.display()))?;
                let t = t.trim().to_string();
                if t.len() < 16 {
                    bail!("token in {} is shorter than 16 characters", f.display());
                }
                Some(t)
            }
            None => None,
        };
        if !listen.ip().is_loopback() && token.is_none() {
            bail!("refusing to listen on {listen} beyond loopback without --token-file");
        }
        let retention = crate::retention::Service::new(
            crate::retention::Settings {
                dir: dir.clone(),
                archive_dir: crate::retention::default_archive_dir(),
                limits: crate::retention::DEFAULT_LIMITS,
            },
            None,
        );
        Ok(Config { dir, listen, token, any_owner: false, token_for_reads: false, retention })
    }
}

/// A running service.
pub struct Server {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The followed JVMs.
    pub registry: Arc<Registry>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    follower: std::thread::JoinHandle<()>,
    retention: Arc<crate::retention::Service>,
    retainer: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(cfg: Config) -> Result<Server> {
        let registry = Registry::new(cfg.dir.clone(), cfg.any_owner);
        Server::start_with(cfg, registry, None).await
    }

    /// Like [`Server::start`], over a registry made by the caller and with a controller.
    pub async fn start_with(
        cfg: Config,
        registry: Arc<Registry>,
        controller: Option<Arc<crate::control::Controller>>,
    ) -> Result<Server> {
        let follower = registry.follow();
        let retainer = cfg.retention.start(registry.clone());
        let listener =
            TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let app = Arc::new(App {
            registry: registry.clone(),
            token_for_reads: cfg.token_for_reads || !cfg.listen.ip().is_loopback(),
            listen: addr, // the real port when 0 was asked for
            token: cfg.token,
            sse_clients: AtomicUsize::new(0),
            controller,
            retention: cfg.retention.clone(),
        });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, api::router(app), rx));
        Ok(Server { addr, registry, shutdown, task, follower, retention: cfg.retention, retainer })
    }

    /// Stops accepting, closes connections and the follower.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.registry.stop();
        self.retention.stop();
        let retainer = self.retainer;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = self.follower.join();
            if let Some(r) = retainer {
                let _ = r.join();
            }
        })
        .await;
    }
}

async fn accept_loop(listener: TcpListener, router: axum::Router, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue; }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // over the limit: the stream is dropped, closing the connection
        };
        let _ = stream.set_nodelay(true);
        let mut io = TimeoutStream::new(stream);
        io.set_write_timeout(Some(WRITE_TIMEOUT));
        let svc = TowerToHyperService::new(router.clone());
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(Box::pin(io)), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
            drop(permit);
        });
    }
}

/// `jvmwatch serve`: runs until Ctrl-C / SIGTERM.
pub fn main(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        jvmwatch_ring::ensure_dir(&cfg.dir).with_context(|| format!("cannot use {}", cfg.dir.display()))?;
        let dir = cfg.dir.clone();
        let server = Server::start(cfg).await?;
        eprintln!("jvmwatch serve: following {} — console and API on http://{}/", dir.display(), server.addr);
        wait_for_signal().await;
        eprintln!("jvmwatch serve: stopping");
        server.stop().await;
        Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

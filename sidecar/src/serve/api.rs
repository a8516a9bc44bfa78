//! HTTP routes: JSON API, SSE streams, `/metrics`, probes and the console. `docs/http-api.md`
//! documents every route; keep both in step.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::registry::{event_msg, Msg, Registry, Subscription};
use crate::report;

/// Largest `limit` / `events` a client may ask for.
pub const MAX_LIMIT: u64 = 10_000;
/// Concurrent SSE subscribers; more get 503.
pub const MAX_SSE_CLIENTS: usize = 256;

/// Shared by all handlers.
pub struct App {
    /// The followed JVMs.
    pub registry: Arc<Registry>,
    /// Bearer token, if configured.
    pub token: Option<String>,
    /// Require the token on read endpoints too (listening beyond loopback, or asked for).
    pub token_for_reads: bool,
    /// The address the service listens on; on loopback, requests must name it (or
    /// `localhost`) in `Host`, and a browser's `Origin` must be one of those (DNS rebinding).
    pub listen: std::net::SocketAddr,
    /// SSE subscribers now.
    pub sse_clients: AtomicUsize,
    /// The controller (`serve --rules`, `supervise`, `run`), if any.
    pub controller: Option<Arc<crate::control::Controller>>,
    /// Retention of dead rings and the archive of compressed ones.
    pub retention: Arc<crate::retention::Service>,
}

type Shared = Arc<App>;

/// A JSON error response.
pub fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// An error from request checking; becomes a JSON error response.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// The router.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(console))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/jvms", get(list))
        .route("/api/v1/jvms/{id}", get(detail).delete(forget))
        .route("/api/v1/jvms/{id}/events", get(events))
        .route("/api/v1/jvms/{id}/metrics", get(app_metrics))
        .route("/api/v1/jvms/{id}/history", get(history))
        .route("/api/v1/jvms/{id}/stacks", get(stacks).post(capture_stacks))
        .route("/api/v1/jvms/{id}/live", get(probe_live))
        .route("/api/v1/jvms/{id}/ready", get(probe_ready))
        .route("/api/v1/jvms/{id}/stream", get(stream_one))
        .route("/api/v1/stream", get(stream_all))
        .route("/api/v1/decisions", get(decisions))
        .route("/api/v1/retention", get(retention))
        .route("/api/v1/archive", get(archive))
        .route("/api/v1/reports/usage", get(usage_report))
        .route("/api/v1/apps", get(apps))
        .route("/api/v1/apps/{app}/scale", get(app_scale))
        .route("/api/v1/apps/{app}/{state}", axum::routing::post(set_app_state))
        .route("/api/v1/live", get(app_live))
        .route("/api/v1/ready", get(app_ready))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
}

/// Compares in time independent of where the first difference is (only the length, which
/// is not secret, ends the comparison early).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// True when `authority` (`host[:port]` from a `Host` header or an `Origin`) names this
/// loopback service: `localhost`, `127.0.0.1`, `[::1]` or the listen IP, with its port.
pub fn local_authority(authority: &str, listen: std::net::SocketAddr) -> bool {
    // `[v6]:port`, `[v6]`, `host:port`, `host`, or a bare v6 address.
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return false,
            },
            None => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            _ => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().ok() == Some(listen.port()));
    let host_ok = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip == listen.ip());
    port_ok && host_ok
}

/// Refuses requests that a web page could make through DNS rebinding: on a loopback
/// listener, a `Host` or `Origin` that is not this service.
fn foreign_host(app: &App, h: &HeaderMap) -> Option<Response> {
    if !app.listen.ip().is_loopback() {
        return None; // beyond loopback every request needs the token anyway
    }
    if let Some(host) = h.get(header::HOST) {
        let ok = host.to_str().is_ok_and(|v| local_authority(v.trim(), app.listen));
        if !ok {
            return Some(error(StatusCode::FORBIDDEN, "Host is not this service's address"));
        }
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let v = origin.to_str().unwrap_or("");
        let authority = v.split_once("://").map(|(_, a)| a).unwrap_or("");
        if v != "null" && !local_authority(authority, app.listen) {
            return Some(error(StatusCode::FORBIDDEN, "cross-origin requests are refused"));
        }
    }
    None
}

async fn auth(State(app): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(refused) = foreign_host(&app, req.headers()) {
        return refused;
    }
    let mutating = req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD;
    let open_path = req.uri().path() == "/healthz";
    if !mutating && (!app.token_for_reads || open_path) {
        return next.run(req).await;
    }
    let Some(token) = &app.token else {
        return error(StatusCode::FORBIDDEN, "changes are disabled: start `jvmwatch serve` with --token-file");
    };
    let given =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
            r
        }
    }
}

use super::registry::valid_id;

/// Checks an id from the path; 400 for a malformed one, 404 for an unknown one.
fn known(app: &App, id: &str) -> Result<(), ApiError> {
    if !valid_id(id) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "malformed JVM id".into()));
    }
    if !app.registry.lock().contains_key(id) {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no such JVM: {id}")));
    }
    Ok(())
}

/// Parses an optional unsigned query parameter within `max`.
fn param(q: &HashMap<String, String>, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError(StatusCode::BAD_REQUEST, format!("{name}: expected an integer 0..={max}, got {v:?}"))),
        },
    }
}

type QueryResult = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

fn query(q: QueryResult) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))
}

async fn console() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(include_str!("console.html")))
}

async fn healthz(State(app): State<Shared>) -> Json<Value> {
    Json(json!({ "status": "ok", "jvms": app.registry.lock().len(), "dir": app.registry.dir }))
}

/// `/metrics`: Prometheus text format 0.0.4, or OpenMetrics 1.0.0 when `Accept` prefers it.
async fn metrics(State(app): State<Shared>, headers: HeaderMap) -> Response {
    use super::openmetrics;
    let mut text = app.registry.metrics_text().to_string();
    if let Some(c) = &app.controller {
        text.push_str(&c.metrics_text());
    }
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    if openmetrics::wanted(&accept) {
        ([(header::CONTENT_TYPE, openmetrics::CONTENT_TYPE)], openmetrics::from_text(&text)).into_response()
    } else {
        ([(header::CONTENT_TYPE, openmetrics::TEXT_CONTENT_TYPE)], text).into_response()
    }
}

fn controller(app: &App) -> Result<Arc<crate::control::Controller>, ApiError> {
    app.controller.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "no controller here: start `jvmwatch serve --rules FILE`, `supervise` or `run`".into(),
        )
    })
}

/// `GET /api/v1/decisions?since=RFC3339|MS&app=NAME&limit=N`: recorded decisions, oldest first.
async fn decisions(State(app): State<Shared>, q: QueryResult) -> Response {
    let (c, q) = match (controller(&app), query(q)) {
        (Ok(c), Ok(q)) => (c, q),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let since = match q.get("since") {
        None => 0,
        Some(v) => match v.parse::<u64>().ok().or_else(|| {
            humantime::parse_rfc3339_weak(v)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
        }) {
            Some(ms) => ms,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("since: expected ms since the epoch or RFC 3339, got {v:?}"),
                )
            }
        },
    };
    let limit = match param(&q, "limit", 100, MAX_LIMIT) {
        Ok(l) => l as u32,
        Err(e) => return e.into_response(),
    };
    let filter = q.get("app").cloned();
    match tokio::task::spawn_blocking(move || c.store.decisions(since, filter.as_deref(), limit)).await {
        Ok(Ok(d)) => Json(json!({ "decisions": d })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "store read failed"),
    }
}

/// `GET /api/v1/reports/usage?from=&to=&group_by=app|host|datacenter&format=json|csv|html&headroom=PCT&bucket=DUR`:
/// the usage report over this controller's records (docs/usage.md).
async fn usage_report(State(app): State<Shared>, q: QueryResult) -> Response {
    let (c, q) = match (controller(&app), query(q)) {
        (Ok(c), Ok(q)) => (c, q),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let get = |k: &str, d: &str| q.get(k).cloned().unwrap_or_else(|| d.to_string());
    let format = get("format", "json");
    let headroom = match get("headroom", "20").parse::<f64>() {
        Ok(h) if h >= 0.0 => h,
        _ => return error(StatusCode::BAD_REQUEST, "headroom: expected a percentage"),
    };
    let bucket = match humantime::parse_duration(&get("bucket", "1m")) {
        Ok(b) if !b.is_zero() => b,
        _ => return error(StatusCode::BAD_REQUEST, "bucket: expected a duration such as 1m"),
    };
    let args = crate::usage::cli::ReportArgs {
        from: get("from", "30d"),
        to: get("to", "now"),
        group_by: get("group_by", "app"),
        format: format.clone(),
        state_dir: c.store.path().parent().map(std::path::Path::to_path_buf),
        bundles: Vec::new(),
        key_file: None,
        policy: c.config().usage.policy.clone(),
        headroom,
        bucket,
    };
    let run = tokio::task::spawn_blocking(move || {
        crate::usage::cli::build(&args).and_then(|r| crate::usage::cli::render(&r, &args.format))
    })
    .await;
    let ctype = match format.as_str() {
        "html" => "text/html; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        _ => "application/json",
    };
    match run {
        Ok(Ok(body)) => ([(axum::http::header::CONTENT_TYPE, ctype)], body).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "report failed"),
    }
}

/// `GET /api/v1/apps/{app}/scale`: the instance count the app's scale rules want, and why.
async fn app_scale(State(app): State<Shared>, Path(name): Path<String>) -> Response {
    let c = match controller(&app) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match c.exports().scale.get(&name) {
        Some(r) => Json(r).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no JVM of app {name:?} is followed")),
    }
}

/// App-level probes for an orchestrator that does not know JVM ids:
/// `GET /api/v1/live?app=NAME` answers 503 when a live JVM of the app is hung or a restart was
/// decided for it (and 200 when none runs: the container's own exit covers a dead JVM);
/// `GET /api/v1/ready?app=NAME` answers 200 when at least one JVM of the app is ready.
async fn app_probe(app: Shared, q: QueryResult, ready: bool) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let Some(name) = q.get("app") else { return error(StatusCode::BAD_REQUEST, "app: required, e.g. ?app=shop") };
    let jvms = app.registry.lock();
    let alive: Vec<_> = jvms.values().filter(|j| j.alive && j.app() == name.as_str()).collect();
    let ok = if ready { alive.iter().any(|j| j.is_ready()) } else { alive.iter().all(|j| j.is_live()) };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let detail: Vec<Value> = alive
        .iter()
        .map(|j| json!({ "id": &*j.id, "live": j.is_live(), "ready": j.is_ready(), "restart_requested": j.restart_requested }))
        .collect();
    (status, Json(json!({ "ok": ok, "app": name, "jvms": detail }))).into_response()
}

async fn app_live(State(app): State<Shared>, q: QueryResult) -> Response {
    app_probe(app, q, false).await
}

async fn app_ready(State(app): State<Shared>, q: QueryResult) -> Response {
    app_probe(app, q, true).await
}

/// `GET /api/v1/apps`: the supervised apps: state, priority, dependencies, instances, last
/// decision (`[]` without a supervisor). Reads the store: off the async thread.
async fn apps(State(app): State<Shared>) -> Response {
    let c = match controller(&app) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let v = tokio::task::spawn_blocking(move || c.supervisor.as_ref().map_or(json!([]), |s| s.apps_json(&c))).await;
    match v {
        Ok(v) => Json(v).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "apps unavailable"),
    }
}

/// `POST /api/v1/apps/{app}/offline` and `.../online` (bearer token): take an app out of
/// service on purpose (its instances stop; no restarts) or back.
async fn set_app_state(State(app): State<Shared>, Path((name, state)): Path<(String, String)>) -> Response {
    let c = match controller(&app) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let offline = match state.as_str() {
        "offline" => true,
        "online" => false,
        _ => return error(StatusCode::NOT_FOUND, "no such route: expected .../offline or .../online"),
    };
    if c.supervisor.is_none() {
        return error(StatusCode::CONFLICT, "no supervisor here: apps are only taken offline under `supervise`");
    }
    let n = name.clone();
    let r = tokio::task::spawn_blocking(move || c.supervisor.as_ref().map(|s| s.set_offline(&c, &n, offline))).await;
    match r {
        Ok(Some(Ok(()))) => Json(json!({ "app": name, "state": state })).into_response(),
        Ok(Some(Err(e))) => error(StatusCode::NOT_FOUND, e),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "failed"),
    }
}

async fn list(State(app): State<Shared>) -> Json<Value> {
    Json(Value::Array(app.registry.lock().values().map(|j| j.summary()).collect()))
}

/// `GET /api/v1/retention`: retention settings and the recent archive/delete actions.
async fn retention(State(app): State<Shared>) -> Json<Value> {
    Json(app.retention.recent())
}

/// `GET /api/v1/archive`: the archived JVMs, newest first (reads each file's header page once).
async fn archive(State(app): State<Shared>) -> Response {
    let r = app.retention.clone();
    match tokio::task::spawn_blocking(move || r.list()).await {
        Ok(v) => Json(v).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "archive listing failed"),
    }
}

/// The archived ring of `id` when the service does not follow it (archived by retention).
fn archived(app: &App, id: &str) -> Option<PathBuf> {
    (valid_id(id) && !app.registry.lock().contains_key(id)).then(|| app.retention.archived_path(id)).flatten()
}

/// `GET /api/v1/jvms/{id}` of an archived JVM: its report from the archive, `"archived": true`.
async fn archived_detail(path: PathBuf, q: QueryResult) -> Response {
    let n = match query(q).and_then(|q| param(&q, "events", 50, MAX_LIMIT)) {
        Ok(n) => n as usize,
        Err(e) => return e.into_response(),
    };
    match tokio::task::spawn_blocking(move || report::inspect(&path, n)).await {
        Ok(Ok(mut r)) => {
            r.jvm.args = report::redact_args(&r.jvm.args);
            let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
            v["archived"] = json!(true);
            Json(v).into_response()
        }
        Ok(Err(e)) => error(StatusCode::GONE, format!("archived ring unreadable: {e}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "inspect failed"),
    }
}

async fn detail(State(app): State<Shared>, Path(id): Path<String>, q: QueryResult) -> Response {
    if let Some(path) = archived(&app, &id) {
        return archived_detail(path, q).await;
    }
    let (q, path, gone, seen) = match (query(q), known(&app, &id)) {
        (Ok(q), Ok(())) => {
            let jvms = app.registry.lock();
            let j = &jvms[id.as_str()];
            (q, j.path.clone(), j.gone.as_ref().map(|_| j.summary()), j.seen)
        }
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let n = match param(&q, "events", 50, MAX_LIMIT) {
        Ok(n) => n as usize,
        Err(e) => return e.into_response(),
    };
    if let Some(summary) = gone {
        return Json(summary).into_response();
    }
    match tokio::task::spawn_blocking(move || report::inspect_recent(&path, n, seen)).await {
        Ok(Ok(mut r)) => {
            r.jvm.args = report::redact_args(&r.jvm.args);
            Json(r).into_response()
        }
        Ok(Err(e)) => error(StatusCode::GONE, format!("ring unreadable: {e}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "inspect failed"),
    }
}

async fn events(State(app): State<Shared>, Path(id): Path<String>, q: QueryResult) -> Response {
    let is_archived = archived(&app, &id).is_some();
    let q = match query(q).and_then(|q| if is_archived { Ok(q) } else { known(&app, &id).map(|_| q) }) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let (since, limit) = match (param(&q, "since", 0, u64::MAX >> 2), param(&q, "limit", 100, MAX_LIMIT)) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    if is_archived {
        let r = app.retention.clone();
        let read = tokio::task::spawn_blocking(move || {
            let ring = r.open(&id).ok_or_else(|| "no longer archived".to_string())?.map_err(|e| e.to_string())?;
            let strings = ring.strings().map_err(|e| e.to_string())?;
            let s = ring.scan_limit(since, false, limit).map_err(|e| e.to_string())?;
            Ok::<_, String>(json!({
                "events": s.records.iter().map(|r| report::event_json(r, &strings)).collect::<Vec<_>>(),
                "next": s.next,
                "lost": s.lost(),
                "archived": true,
            }))
        })
        .await;
        return match read {
            Ok(Ok(v)) => Json(v).into_response(),
            Ok(Err(e)) => error(StatusCode::GONE, format!("archived ring unreadable: {e}")),
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "read failed"),
        };
    }
    // Take what is needed under the lock; read the file after releasing it.
    let (ring, alive, strings, kept) = {
        let jvms = app.registry.lock();
        let Some(j) = jvms.get(id.as_str()) else { return error(StatusCode::NOT_FOUND, format!("no such JVM: {id}")) };
        match j.ring() {
            Some(r) => (Some(r), j.alive, j.strings.clone(), Vec::new()),
            None => {
                let recs: Vec<_> = j.window.iter().filter(|r| r.seq >= since).take(limit as usize).copied().collect();
                (None, false, j.strings.clone(), recs)
            }
        }
    };
    let read = tokio::task::spawn_blocking(move || match ring {
        Some(ring) => ring.scan_limit(since, alive, limit).map(|s| {
            let lost = s.lost();
            (s.records, s.next, lost)
        }),
        None => {
            let next = kept.last().map(|r| r.seq + 1).unwrap_or(since);
            Ok((kept, next, 0))
        }
    })
    .await;
    let (records, next, lost) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error(StatusCode::GONE, format!("ring unreadable: {e}")),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "read failed"),
    };
    Json(json!({
        "events": records.iter().map(|r| report::event_json(r, &strings)).collect::<Vec<_>>(),
        "next": next,
        "lost": lost,
    }))
    .into_response()
}

async fn app_metrics(State(app): State<Shared>, Path(id): Path<String>, q: QueryResult) -> Response {
    let q = match query(q).and_then(|q| known(&app, &id).map(|_| q)) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let window = match param(&q, "window", super::registry::DEFAULT_WINDOW_S, super::registry::METRICS_HISTORY as u64) {
        Ok(w) if w > 0 => w,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "window: must be at least 1 second"),
        Err(e) => return e.into_response(),
    };
    let jvms = app.registry.lock();
    let j = &jvms[id.as_str()];
    Json(json!({ "window_s": window, "metrics": j.metrics_window(window) })).into_response()
}

/// The ring's path and pid, for the handlers that read the file outside the registry lock.
fn ring_of(app: &Shared, id: &str) -> Result<(PathBuf, u32, bool), Box<Response>> {
    if let Some(path) = archived(app, id) {
        return Ok((path, 0, false)); // archived by retention: dead, read from the archive
    }
    known(app, id).map_err(|e| Box::new(e.into_response()))?;
    let jvms = app.registry.lock();
    let j = &jvms[id];
    Ok((j.path.clone(), j.header.pid, j.alive))
}

/// `GET /api/v1/jvms/{id}/history`: the history region's series (what `inspect --history
/// --json` prints). Read outside the registry lock.
async fn history(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    let (path, _, _) = match ring_of(&app, &id) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    match tokio::task::spawn_blocking(move || crate::history::read(&path)).await {
        Ok(Ok((h, ins))) => Json(crate::history::to_json(&h, &ins)).into_response(),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn read_stacks(path: &std::path::Path) -> Result<Option<Value>, String> {
    let ring = crate::retention::archive::open(path).map_err(|e| e.to_string())?;
    let end = ring.live().map_err(|e| e.to_string())?.heartbeat_ns;
    Ok(ring.stacks().map_err(|e| e.to_string())?.map(|c| crate::stacks::to_json(&c, end)))
}

/// `GET /api/v1/jvms/{id}/stacks`: the last stacks capture in the ring (404 when none).
async fn stacks(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    let (path, _, _) = match ring_of(&app, &id) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    match tokio::task::spawn_blocking(move || read_stacks(&path)).await {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no stacks capture in this ring"),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Whether SIGQUIT to `pid` asks the ring's own JVM for a data dump, and nothing else: the
/// process must hold the ring file open (the header's pid is the writer's view; from another
/// pid namespace, or after the pid was reused, it names someone else) and must catch SIGQUIT
/// (a JVM started with `-Xrs` would be killed by it).
fn safe_to_signal(pid: u32, ring: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("pid {pid} is not visible from here ({e})"))?;
    let target = crate::attach::parse_status(pid, &status).ok_or_else(|| format!("pid {pid}: unreadable status"))?;
    let want = std::fs::metadata(ring).map_err(|e| format!("{}: {e}", ring.display()))?;
    let holds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("pid {pid}: cannot list its files ({e})"))?
        .flatten()
        .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino()));
    if !holds {
        return Err(format!("pid {pid} does not hold this ring open (another pid namespace, or a reused pid)"));
    }
    if !target.catches_sigquit {
        return Err(format!("pid {pid} does not catch SIGQUIT (-Xrs): the signal would kill it"));
    }
    Ok(())
}

/// `POST /api/v1/jvms/{id}/stacks` (bearer token): asks the live JVM for a capture now
/// (a data dump request, SIGQUIT, which also prints the JVM's own thread dump to its
/// stdout) and returns it once it is in the ring (within 5 s).
async fn capture_stacks(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    let (path, pid, alive) = match ring_of(&app, &id) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    if !alive {
        return error(StatusCode::CONFLICT, "the JVM is not running; GET shows its last capture");
    }
    let before = read_stacks(&path).ok().flatten().and_then(|v| v["captured_at"].as_str().map(String::from));
    if let Err(why) = safe_to_signal(pid, &path) {
        return error(StatusCode::CONFLICT, why);
    }
    // SAFETY: kill has no memory preconditions; `safe_to_signal` checked the target.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGQUIT) } != 0 {
        return error(StatusCode::CONFLICT, format!("cannot signal pid {pid}: {}", std::io::Error::last_os_error()));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let p = path.clone();
        if let Ok(Ok(Some(v))) = tokio::task::spawn_blocking(move || read_stacks(&p)).await {
            if v["captured_at"].as_str().map(String::from) != before && v["reason"] == "dump_request" {
                return Json(v).into_response();
            }
        }
    }
    error(StatusCode::GATEWAY_TIMEOUT, "no new capture within 5 s (stacks=off, or the JVM is stuck)")
}

async fn probe(app: Shared, id: String, ready: bool) -> Response {
    if let Err(e) = known(&app, &id) {
        return e.into_response();
    }
    let jvms = app.registry.lock();
    let j = &jvms[id.as_str()];
    let ok = if ready { j.is_ready() } else { j.is_live() };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ok": ok, "verdict": j.verdict, "findings": j.findings }))).into_response()
}

async fn probe_live(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    probe(app, id, false).await
}

async fn probe_ready(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    probe(app, id, true).await
}

async fn forget(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    if let Err(e) = known(&app, &id) {
        return e.into_response();
    }
    let path = {
        let jvms = app.registry.lock();
        let j = &jvms[id.as_str()];
        if j.alive {
            return error(StatusCode::CONFLICT, "the JVM is running; only a dead JVM's ring can be forgotten");
        }
        j.path.clone()
    };
    let archive = app.registry.dir.join("archive");
    let moved = jvmwatch_ring::ensure_dir(&archive).map_err(|e| e.to_string()).and_then(|()| {
        let to: PathBuf = archive.join(path.file_name().unwrap_or_default());
        match std::fs::rename(&path, &to) {
            Ok(()) => Ok(Some(to)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    });
    match moved {
        Ok(to) => {
            app.registry.forget(&id);
            Json(json!({ "forgotten": id, "archived_to": to })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot archive {}: {e}", path.display())),
    }
}

/// Decrements the SSE client count when a stream ends.
struct SseSlot(Shared);

impl Drop for SseSlot {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resume point from `Last-Event-ID`: `SEQ` (one JVM's stream) or `JVM/SEQ` (global stream).
fn last_event_id(h: &HeaderMap) -> Option<(Option<String>, u64)> {
    let v = h.get("last-event-id")?.to_str().ok()?.trim();
    match v.rsplit_once('/') {
        Some((jvm, seq)) => Some((Some(jvm.to_string()), seq.parse().ok()?)),
        None => Some((None, v.parse().ok()?)),
    }
}

/// Events one SSE resume replays at most. A client further behind gets the newest ones and
/// pages the rest from `/api/v1/jvms/{id}/events` (the `lost` it sees there tells it).
pub const MAX_REPLAY: u64 = 10_000;

/// Where the replay of one JVM's stream starts: after the client's `Last-Event-ID`.
struct Resume {
    jvm: Arc<str>,
    after: u64,
}

/// A stream response writes at most this much in one chunk: a tick's messages (about 40 at
/// 1,000 rings) go out in one write instead of one each.
const SSE_CHUNK: usize = 64 * 1024;
/// An idle stream gets a comment line this often, so proxies keep it open.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One subscriber's side of a stream.
struct Subscriber {
    rx: broadcast::Receiver<Arc<Msg>>,
    /// How long a stream may go without a frame before it gets a keep-alive comment
    /// ([`SSE_KEEP_ALIVE`]).
    keep_alive: Duration,
    /// `Some`: one JVM's stream.
    filter: Option<Arc<str>>,
    /// Per JVM: the highest sequence number the client has (from Last-Event-ID or replay).
    seen: HashMap<Arc<str>, u64>,
    /// The channel closed or the subscriber fell behind: end after what is pending.
    ended: bool,
}

impl Subscriber {
    /// Appends `m`'s frame to `out` unless it is for another JVM or the client has it.
    fn push(&self, m: &Msg, out: &mut Vec<u8>) {
        if self.filter.as_ref().is_some_and(|f| *f != m.jvm) {
            return;
        }
        // Skip what the client or the replay already has.
        if let (Some(s), Some(&last)) = (m.seq, self.seen.get(&m.jvm)) {
            if s <= last {
                return;
            }
        }
        m.frame_to(self.filter.is_none(), out);
    }

    /// The next chunk: waits for a message (or sends a keep-alive comment), then takes what
    /// else is queued, up to [`SSE_CHUNK`]. `None`: the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        // From the last frame sent, not from the last message received: one JVM's stream
        // skips every other JVM's messages and still gets its keep-alive.
        let keep_alive_at = tokio::time::Instant::now() + self.keep_alive;
        while out.is_empty() {
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(keep_alive_at, self.rx.recv()).await {
                Ok(Ok(m)) => self.push(&m, &mut out),
                Err(_elapsed) => return Some(Bytes::from_static(b":\n\n")),
                // A subscriber more than the broadcast buffer behind is dropped (it can
                // reconnect with Last-Event-ID).
                Ok(Err(_lagged_or_closed)) => return None,
            }
            while out.len() < SSE_CHUNK {
                match self.rx.try_recv() {
                    Ok(m) => self.push(&m, &mut out),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(_lagged_or_closed) => {
                        self.ended = true;
                        break;
                    }
                }
            }
        }
        Some(Bytes::from(out))
    }
}

/// The stream: `initial` (replayed) messages first, then live ones from `rx`, which was
/// subscribed BEFORE the replay was read, so nothing published in between is skipped; live
/// messages the replay (or the client) already has are dropped by sequence number. Frames
/// are written as the SSE format has them, several per chunk.
fn sse_response(
    slot: SseSlot,
    subscription: Subscription,
    filter: Option<Arc<str>>,
    initial: Vec<Arc<Msg>>,
    resumed: Vec<Resume>,
) -> Response {
    let global = filter.is_none();
    let mut seen: HashMap<Arc<str>, u64> = resumed.into_iter().map(|r| (r.jvm, r.after)).collect();
    for m in &initial {
        if let Some(s) = m.seq {
            let e = seen.entry(m.jvm.clone()).or_insert(s);
            *e = (*e).max(s);
        }
    }
    let mut head: Vec<Bytes> = Vec::new();
    let mut out = Vec::new();
    for m in &initial {
        m.frame_to(global, &mut out);
        if out.len() >= SSE_CHUNK {
            head.push(Bytes::from(std::mem::take(&mut out)));
        }
    }
    if !out.is_empty() {
        head.push(Bytes::from(out));
    }
    let Subscription { rx, interest } = subscription;
    let sub = Subscriber { rx, keep_alive: SSE_KEEP_ALIVE, filter, seen, ended: false };
    // The slot and the interest go with the stream: dropped (the slot counted free, the
    // interest withdrawn) when the stream ends.
    let live = stream::unfold((sub, (slot, interest)), |(mut sub, held)| async move {
        sub.next_chunk().await.map(|c| (c, (sub, held)))
    });
    let body = stream::iter(head).chain(live).map(Ok::<_, Infallible>);
    (
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// Takes an SSE client slot, or says there are too many.
fn sse_slot(app: &Shared) -> Result<SseSlot, ApiError> {
    if app.sse_clients.fetch_add(1, Ordering::Relaxed) >= MAX_SSE_CLIENTS {
        app.sse_clients.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "too many stream clients".into()));
    }
    Ok(SseSlot(app.clone()))
}

/// One JVM's snapshot message plus its events after `after` (at most [`MAX_REPLAY`]), read
/// back from its ring file outside the registry lock.
async fn replay(app: &App, id: &str, after: Option<u64>) -> (Vec<Arc<Msg>>, Option<Resume>) {
    let (snapshot, ring, key, alive, next_seq, strings) = {
        let jvms = app.registry.lock();
        let Some(j) = jvms.get(id) else { return (Vec::new(), None) };
        (Arc::new(j.snapshot_msg()), j.ring(), j.id.clone(), j.alive, j.next_seq, j.strings.clone())
    };
    let mut out = vec![snapshot];
    // A resume point beyond what the ring holds (a stale or forged id) means "up to date".
    let Some(after) = after.and_then(|a| a.min(next_seq.checked_sub(1)?).into()) else { return (out, None) };
    let resume = Resume { jvm: key.clone(), after };
    // `after` may be anything a client sent (u64::MAX included): no overflow, and no more
    // than MAX_REPLAY events whatever it says.
    let from = after.saturating_add(1).max(next_seq.saturating_sub(MAX_REPLAY));
    if let (Some(ring), true) = (ring, from < next_seq) {
        let n = next_seq - from;
        let read = tokio::task::spawn_blocking(move || ring.scan_limit(from, alive, n)).await;
        if let Ok(Ok(s)) = read {
            out.extend(s.records.iter().map(|r| Arc::new(event_msg(&key, r, &strings))));
        }
    }
    (out, Some(resume))
}

async fn stream_one(State(app): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(e) = known(&app, &id) {
        return e.into_response();
    }
    let slot = match sse_slot(&app) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let key: Arc<str> =
        app.registry.lock().get_key_value(id.as_str()).map(|(k, _)| k.clone()).unwrap_or_else(|| id.as_str().into());
    let sub = app.registry.subscribe(Some(key.clone()));
    let after = last_event_id(&headers).and_then(|(j, s)| (j.is_none() || j.as_deref() == Some(&id)).then_some(s));
    let (initial, resume) = replay(&app, &id, after).await;
    sse_response(slot, sub, Some(key), initial, resume.into_iter().collect())
}

async fn stream_all(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let slot = match sse_slot(&app) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let sub = app.registry.subscribe(None);
    let ids: Vec<Arc<str>> = app.registry.lock().keys().cloned().collect();
    let resume = last_event_id(&headers);
    let mut initial = Vec::new();
    let mut resumed = Vec::new();
    for id in ids {
        let after = match &resume {
            Some((Some(j), s)) if **j == *id => Some(*s),
            _ => None,
        };
        let (msgs, r) = replay(&app, &id, after).await;
        initial.extend(msgs);
        resumed.extend(r);
    }
    sse_response(slot, sub, None, initial, resumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("4258-1795611809072-14aae3a5"));
        assert!(!valid_id("../etc/passwd"));
        assert!(!valid_id(".hidden"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"a".repeat(129)));
    }

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(&[0u8; 256], &[]));
    }

    #[test]
    fn only_this_service_is_a_local_authority() {
        let listen: std::net::SocketAddr = "127.0.0.1:7457".parse().unwrap();
        for ok in ["127.0.0.1:7457", "localhost:7457", "LOCALHOST", "[::1]:7457", "127.0.0.1"] {
            assert!(local_authority(ok, listen), "{ok}");
        }
        for bad in ["evil.example:7457", "127.0.0.1:80", "attacker.com", "10.0.0.1:7457", "", "::1:7457x"] {
            assert!(!local_authority(bad, listen), "{bad}");
        }
    }

    fn msg(jvm: &str, seq: Option<u64>, kind: &'static str, data: &str) -> Arc<Msg> {
        Arc::new(Msg::new(jvm.into(), seq, kind, data.into()))
    }

    /// One JVM's stream: what is queued leaves in one chunk, without other JVMs' messages and
    /// without events the client already has; frames are as the SSE format has them.
    #[tokio::test]
    async fn a_subscriber_takes_what_is_queued_in_one_chunk_without_others_or_what_it_has() {
        let (tx, rx) = broadcast::channel(16);
        let a: Arc<str> = "1-a".into();
        let mut sub =
            Subscriber { rx, keep_alive: SSE_KEEP_ALIVE, filter: Some(a.clone()), seen: [(a, 5)].into(), ended: false };
        for m in [
            msg("1-a", Some(5), "gc_pause_end", r#"{"seq":5}"#),
            msg("2-b", Some(9), "gc_pause_end", r#"{"seq":9}"#),
            msg("1-a", Some(6), "gc_pause_end", r#"{"seq":6}"#),
            msg("1-a", None, "snapshot", "{\"s\":1}\n{\"s\":2}\r\n{\"s\":3}\r{\"s\":4}"),
        ] {
            tx.send(m).unwrap();
        }
        let chunk = sub.next_chunk().await.expect("a chunk");
        assert_eq!(
            std::str::from_utf8(&chunk).unwrap(),
            "event: gc_pause_end\ndata: {\"seq\":6}\nid: 6\n\nevent: snapshot\ndata: {\"s\":1}\ndata: {\"s\":2}\ndata: {\"s\":3}\ndata: {\"s\":4}\n\n"
        );
        // The all-JVM stream's frame names the JVM in its id.
        let mut out = Vec::new();
        msg("2-b", Some(9), "gc_cycle", "{}").frame_to(true, &mut out);
        assert_eq!(out, b"event: gc_cycle\ndata: {}\nid: 2-b/9\n\n");
        // A closed channel (the service stopping) ends the stream.
        drop(tx);
        assert!(sub.next_chunk().await.is_none());
    }

    /// A subscriber more than the buffer behind is dropped, not handed a stream with a hole.
    #[tokio::test]
    async fn a_subscriber_that_fell_behind_the_buffer_is_ended() {
        let (tx, rx) = broadcast::channel(2);
        let mut sub = Subscriber { rx, keep_alive: SSE_KEEP_ALIVE, filter: None, seen: HashMap::new(), ended: false };
        for seq in 0..3 {
            tx.send(msg("1-a", Some(seq), "gc_pause_end", "{}")).unwrap();
        }
        assert!(sub.next_chunk().await.is_none());
    }

    /// One JVM's stream gets its keep-alive comment while other JVMs' messages keep coming
    /// (they are skipped, and do not hold the comment back).
    #[tokio::test]
    async fn a_filtered_stream_gets_its_keep_alive_while_other_jvms_are_busy() {
        let (tx, rx) = broadcast::channel(64);
        let keep_alive = Duration::from_millis(50);
        let mut sub = Subscriber { rx, keep_alive, filter: Some("1-a".into()), seen: HashMap::new(), ended: false };
        // Another JVM's messages every 5 ms, for far longer than the keep-alive period.
        let busy = tokio::spawn(async move {
            for seq in 0..400 {
                let _ = tx.send(msg("2-b", Some(seq), "gc_pause_end", "{}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert_eq!(sub.next_chunk().await.as_deref(), Some(&b":\n\n"[..]));
        busy.abort();
    }
}

//! The HTTP server (DESIGN §7): answers Prometheus from the cache, never by running a
//! generator itself.
//!
//! - [`request`]: decoding and checking a `/targets` URL.
//! - [`targets`]: `GET /targets[/<path>]`: hit, miss, expired, reload, and the
//!   freshness extras (generator-aware freshness, refresh-ahead, wait on miss).
//! - [`debug`]: the `?debug=true` answers.
//! - [`error`]: [`error::TargetsError`], every other answer of `/targets` that is not
//!   targets, with its status, JSON body and headers.
//! - [`admin`]: the admin page at `/`.
//! - [`auth`]: optional basic and bearer authentication, per area.
//! - [`connection`]: HTTP/1.1 on each connection, with header and idle timeouts.
//! - [`listener`]: the connection limit and the write timeout.
//! - [`local`]: hot entries kept in the process for a second, kept coherent through
//!   Redis pub/sub.
//! - [`tls`]: HTTPS from PEM files, handshakes off the accept loop.
//! - [`prepared`]: a memo of recently requested URLs for the hit path.

pub mod admin;
pub mod auth;
pub mod connection;
pub mod debug;
pub mod error;
pub mod listener;
pub mod local;
pub mod prepared;
pub mod request;
pub mod targets;
pub mod tls;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::targets::PathIndex;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;

/// How the server answers; the CLI fills it from flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Prefix of every route: "" or "/something" (normalised by [`normalize_prefix`]).
    pub url_prefix: String,
    /// An entry older than this answers "cache expired" (`--cache-seconds`).
    pub cache_seconds: f64,
    /// Refresh an entry whose generators changed since it was made.
    pub generator_freshness: bool,
    /// Enqueue a refresh when a hit is older than this fraction of `cache_seconds`
    /// (0 turns it off).
    pub refresh_ahead: f64,
    /// How long a miss may wait for the worker's result before answering 503.
    pub wait_on_miss: Duration,
    /// How long after a reload of a path further reloads of it are refused.
    pub reload_cooldown: Duration,
    /// Who may use what (`--auth-file`); open by default.
    pub auth: Arc<auth::Auth>,
    /// How long hot entries are kept in this process (`--local-cache`; zero: never).
    pub local_cache: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            url_prefix: String::new(),
            cache_seconds: 300.0,
            generator_freshness: true,
            refresh_ahead: 0.75,
            wait_on_miss: Duration::ZERO,
            reload_cooldown: Duration::from_secs(10),
            auth: Arc::default(),
            local_cache: Duration::ZERO,
        }
    }
}

/// `"/sd/"` → `"/sd"`, `"sd"` → `"/sd"`, `""` or `"/"` → `""`.
pub fn normalize_prefix(raw: &str) -> String {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// What every handler shares.
pub struct App<S> {
    /// The cache and the job queue.
    pub store: Arc<S>,
    /// Request paths to their generators.
    pub index: Arc<PathIndex>,
    /// The process's metrics (shared with in-process workers under `serve`).
    pub metrics: Arc<Metrics>,
    /// How to answer.
    pub config: ServerConfig,
    /// `<url_prefix>/targets`.
    targets_route: String,
    prepared: prepared::PreparedMemo,
    /// Hot entries (see [`local`]); off unless `config.local_cache` is set and
    /// [`local::follow`] keeps it live.
    pub local: Arc<local::LocalCache>,
    cache_ops: targets::CacheOps,
}

impl<S: Store> App<S> {
    /// The shared state of the handlers; the local cache stays off until
    /// [`local::follow`] makes it live.
    pub fn new(
        store: Arc<S>,
        index: Arc<PathIndex>,
        metrics: Arc<Metrics>,
        config: ServerConfig,
    ) -> Arc<App<S>> {
        Arc::new(App {
            targets_route: format!("{}/targets", config.url_prefix),
            local: Arc::new(local::LocalCache::new(config.local_cache)),
            cache_ops: targets::CacheOps::new(&metrics),
            store,
            index,
            metrics,
            config,
            prepared: prepared::PreparedMemo::default(),
        })
    }
}

/// The routes, under the URL prefix.
pub fn router<S: Store>(app: Arc<App<S>>) -> Router {
    let p = app.config.url_prefix.clone();
    let admin_path = if p.is_empty() {
        "/".to_string()
    } else {
        p.clone()
    };
    let mut router = Router::new()
        .route(&format!("{p}/targets"), get(targets::handle::<S>))
        .route(&format!("{p}/targets/"), get(targets::handle::<S>))
        .route(&format!("{p}/targets/{{*rest}}"), get(targets::handle::<S>))
        .route(&admin_path, get(admin::page::<S>))
        .route(&format!("{p}/metrics"), get(metrics::<S>))
        .route(&format!("{p}/healthz"), get(healthz))
        .route(&format!("{p}/readyz"), get(readyz::<S>));
    if !p.is_empty() {
        router = router.route(&format!("{p}/"), get(admin::page::<S>));
    }
    router.fallback(not_found).with_state(app)
}

/// A JSON answer with `status`.
///
/// Encoding a `serde_json::Value` into memory does not fail (its keys are strings and
/// a `Vec` takes every write). Should it ever, the answer says so, as a 500 with a
/// fixed body and a log line, instead of `status` with an empty body.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(e) => {
            tracing::error!("cannot encode a JSON answer: {e}");
            json_bytes(
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error":"cannot encode the answer"}"#.to_vec(),
            )
        }
    }
}

fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// `{"error": message}` with `status`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// Ready when the store answers: a load balancer stops sending requests to a server
/// that lost Redis.
async fn readyz<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    let (status, mut body) = match app.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            serde_json::json!({ "status": "ready", "store": app.store.kind() }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "not ready", "store": app.store.kind(), "error": e.to_string() }),
        ),
    };
    // Which Redis node is the primary in use, and the failovers seen.
    if let Some(topology) = app.store.redis_topology() {
        body["redis"] = serde_json::to_value(topology).unwrap_or_default();
    }
    json(status, &body)
}

async fn metrics<S: Store>(
    State(app): State<Arc<App<S>>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(refusal) = app.config.auth.check(auth::Area::Metrics, &headers) {
        return *refusal;
    }
    metrics_response(&*app.store, &app.metrics).await
}

/// `/metrics`, with the queue gauges read from the store just before.
pub async fn metrics_response<S: Store>(store: &S, metrics: &Metrics) -> Response {
    if let Some(t) = store.redis_topology() {
        metrics.redis_topology(t.mode.as_str(), t.primary.as_deref(), t.failovers);
    }
    match store.queue_lengths().await {
        Ok((pending, processing)) => {
            metrics
                .queue_jobs
                .with_label_values(&["pending"])
                .set(pending as i64);
            metrics
                .queue_jobs
                .with_label_values(&["processing"])
                .set(processing as i64);
        }
        Err(e) => {
            metrics.store_errors.with_label_values(&["metrics"]).inc();
            tracing::debug!("cannot read queue lengths for /metrics: {e}");
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics.encode(),
    )
        .into_response()
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes the requests
/// in flight. At most `connection_limit` connections are open at once, each held to
/// `timeouts`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    connection_limit: usize,
    timeouts: connection::Timeouts,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener::LimitedListener::new(listener, connection_limit, timeouts.write);
    match tls {
        None => connection::serve_connections(listener, router, timeouts, shutdown).await,
        Some(acceptor) => {
            let listener = tls::TlsListener::new(listener, acceptor)?;
            connection::serve_connections(listener, router, timeouts, shutdown).await
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize_prefix;

    #[test]
    fn prefixes() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("sd"), "/sd");
        assert_eq!(normalize_prefix("/sd/"), "/sd");
        assert_eq!(normalize_prefix("/a/b"), "/a/b");
    }
}

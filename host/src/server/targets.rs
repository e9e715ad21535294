//! `GET /targets[/<path>]`: the seed semantics, plus three extras behind flags.
//!
//! | state | answer |
//! |---|---|
//! | fresh entry | 200, the cached `results` bytes as they are (no re-serialising) |
//! | no entry | enqueue, 503 `{"error": "cache miss"}` |
//! | entry older than `--cache-seconds` | enqueue, 503 `{"error": "cache expired"}` |
//! | unknown path | 404, nothing enqueued |
//!
//! Extras: a fresh entry whose generators changed since it was made is served while a
//! refresh is enqueued (generator-aware freshness); a fresh entry past
//! `--refresh-ahead` of its life is served while a refresh is enqueued (so a polled
//! path never expires); a miss may wait `--wait-on-miss` for the worker.

use super::auth::Area;
use super::prepared::Prepared;
use super::request::{self, RequestError};
use super::{App, json, json_error};
use crate::clock::now_unix;
use crate::metrics::Metrics;
use crate::store::{CoolingDown, NewJob, Store};
use crate::targets::TreeError;
use crate::wire::{ParsedEntry, TargetRequest};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prometheus::IntCounter;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An entry younger than this is not refreshed for a generator change: if servers and
/// workers disagree about a generator (a half-finished rollout), this bounds the
/// refreshes to one per path per this time instead of a tight loop.
const MIN_FRESHNESS_AGE: f64 = 5.0;

/// Seconds Prometheus (or a person) is told to wait after a 503.
const RETRY_AFTER: &str = "5";

/// Takes the whole request rather than `Uri` and `HeaderMap` extractors: those clone
/// the URI and every header on each request, and this is the hit path.
pub async fn handle<S: Store>(State(app): State<Arc<App<S>>>, request: Request) -> Response {
    let started = Instant::now();
    let (uri, headers) = (request.uri(), request.headers());
    let url = uri.path_and_query().map_or("", |pq| pq.as_str());
    let prepared = match app.prepared.get(url, &app.index) {
        // The memo holds only plain answers (never debug or reload).
        Some(p) => {
            if let Err(refusal) = app.config.auth.check(Area::Targets, headers) {
                return *refusal;
            }
            p
        }
        None => match prepare(&app, uri, headers).await {
            Ok(p) => {
                app.prepared.insert(url, p.clone());
                p
            }
            Err(response) => return response,
        },
    };
    let (status, response) = answer(&app, &prepared.req, &prepared.indexed.fingerprint).await;
    prepared.count(status);
    prepared.duration.observe(started.elapsed().as_secs_f64());
    response
}

/// Decodes the URL and finds its generators. Debug and reload requests, and every
/// refusal, are answered here (`Err`); a normal request becomes a [`Prepared`].
async fn prepare<S: Store>(
    app: &Arc<App<S>>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Arc<Prepared>, Response> {
    let raw_path = uri
        .path()
        .strip_prefix(app.targets_route.as_str())
        .unwrap_or("");
    let query = request::parse(raw_path, uri.query());
    // Who may ask is settled before anything else: a refused client learns nothing,
    // not even whether its URL was well-formed.
    let area = match &query {
        Ok(q) if q.reload => Area::Reload,
        Ok(q) if q.debug => Area::Admin,
        _ => Area::Targets,
    };
    app.config.auth.check(area, headers).map_err(|r| *r)?;
    let query = match query {
        Ok(q) => q,
        Err(RequestError::Invalid(msg)) => {
            app.metrics
                .path_requests
                .with_label_values(&["", "fail", "", ""])
                .inc();
            return Err(json_error(StatusCode::BAD_REQUEST, &msg));
        }
        Err(RequestError::NotFound) => return Err(path_not_found(app, raw_path)),
    };
    let indexed = match app.index.lookup(&query.path).await {
        Ok(i) => i,
        Err(TreeError::NotFound) => return Err(path_not_found(app, raw_path)),
        Err(TreeError::Io(msg)) => {
            tracing::error!("cannot read the target directory: {msg}");
            return Err(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the target directory",
            ));
        }
    };
    let req = TargetRequest::new(query.path, query.params);
    if query.reload {
        return Err(reload(app, &req).await);
    }
    if query.debug {
        return Err(super::debug::respond(app, &req, &indexed.fingerprint).await);
    }
    Ok(Arc::new(Prepared::new(req, indexed, &app.metrics)))
}

fn path_not_found<S: Store>(app: &App<S>, raw_path: &str) -> Response {
    app.metrics
        .path_requests
        .with_label_values(&["", "fail", "", ""])
        .inc();
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({
            "error": "path not found",
            "path": format!("/targets{}", if raw_path.is_empty() { "" } else { raw_path }),
        }),
    )
}

/// The normal answer and its `status` label.
async fn answer<S: Store>(
    app: &Arc<App<S>>,
    req: &TargetRequest,
    fingerprint: &str,
) -> (&'static str, Response) {
    let ops = &app.cache_ops;
    let entry = match app.local.get(&req.full_path) {
        Some(entry) => {
            app.metrics.local_cache_hits.inc();
            Some(entry)
        }
        None => {
            let epoch = app.local.epoch();
            match app.store.get_entry(&req.full_path).await {
                // Unreadable is treated as a miss: it is regenerated.
                Ok(Some(bytes)) => parse_entry(&bytes).map(|entry| {
                    let entry = Arc::new(entry);
                    app.local.insert(&req.full_path, entry.clone(), epoch);
                    entry
                }),
                Ok(None) => None,
                Err(e) => return ("fail", store_unavailable(app, "get", &e)),
            }
        }
    };
    if let Some(entry) = entry {
        match judge(app, &entry, fingerprint) {
            Judgement::Fresh { refresh } => {
                ops.hit.inc();
                if let Some(reason) = refresh {
                    enqueue_in_background(app, req, reason);
                }
                return ("success", targets_response(entry.results.clone()));
            }
            Judgement::Expired => {
                ops.expired.inc();
                if let Err(e) = enqueue(app, req, "expired").await {
                    return ("fail", store_unavailable(app, "enqueue", &e));
                }
                if let Some(results) = wait_for_result(app, req, fingerprint).await {
                    return ("success", targets_response(results));
                }
                return ("cache-expired", unavailable("cache expired"));
            }
        }
    }
    ops.miss.inc();
    if let Err(e) = enqueue(app, req, "miss").await {
        return ("fail", store_unavailable(app, "enqueue", &e));
    }
    if let Some(results) = wait_for_result(app, req, fingerprint).await {
        return ("success", targets_response(results));
    }
    ("cache-not-exist", unavailable("cache miss"))
}

/// The cache-operation counters of the hit path, resolved once (a label lookup hashes
/// the label and takes a lock on every request).
pub struct CacheOps {
    hit: IntCounter,
    miss: IntCounter,
    expired: IntCounter,
}

impl CacheOps {
    pub fn new(metrics: &Metrics) -> CacheOps {
        let op = |name: &str| metrics.cache_operations.with_label_values(&[name]);
        CacheOps {
            hit: op("hit"),
            miss: op("miss"),
            expired: op("expired"),
        }
    }
}

enum Judgement {
    /// Serve the entry's results; enqueue a refresh for `refresh` if set.
    Fresh {
        refresh: Option<&'static str>,
    },
    Expired,
}

/// An entry as fetched, or `None` (logged) when it cannot be read: a miss.
fn parse_entry(bytes: &Bytes) -> Option<ParsedEntry> {
    ParsedEntry::parse(bytes)
        .inspect_err(|e| tracing::warn!("unreadable cache entry, regenerating: {e}"))
        .ok()
}

fn judge<S: Store>(app: &App<S>, entry: &ParsedEntry, fingerprint: &str) -> Judgement {
    let age = now_unix() - entry.updated_timestamp;
    let config = &app.config;
    if age > config.cache_seconds {
        return Judgement::Expired;
    }
    let changed = config.generator_freshness
        && age > MIN_FRESHNESS_AGE
        && entry
            .fingerprint
            .as_deref()
            .is_some_and(|f| f != fingerprint.as_bytes());
    let refresh = if changed {
        Some("generator-changed")
    } else if config.refresh_ahead > 0.0 && age > config.cache_seconds * config.refresh_ahead {
        Some("refresh-ahead")
    } else {
        None
    };
    Judgement::Fresh { refresh }
}

fn targets_response(results: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        results,
    )
        .into_response()
}

fn unavailable(message: &str) -> Response {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    response
}

pub(super) fn store_unavailable<S: Store>(
    app: &App<S>,
    operation: &str,
    error: &crate::store::StoreError,
) -> Response {
    app.metrics
        .store_errors
        .with_label_values(&[operation])
        .inc();
    match error {
        // The store said no to this request (the embedded store's queue is full): a
        // client asking faster than the jobs run would write a warning per request.
        // The metric above counts them.
        crate::store::StoreError::Refused { .. } => {
            tracing::debug!("store {operation} refused: {error}")
        }
        _ => tracing::warn!("store {operation} failed: {error}"),
    }
    let mut response = json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "error": "store unavailable", "message": error.to_string() }),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    response
}

async fn enqueue<S: Store>(
    app: &App<S>,
    req: &TargetRequest,
    reason: &'static str,
) -> Result<bool, crate::store::StoreError> {
    let pushed = app
        .store
        .enqueue(&NewJob::from_job(&req.job(now_unix())))
        .await?;
    if pushed {
        app.metrics.jobs_enqueued.with_label_values(&[reason]).inc();
    }
    Ok(pushed)
}

/// A refresh behind a hit must not slow the hit down.
fn enqueue_in_background<S: Store>(app: &Arc<App<S>>, req: &TargetRequest, reason: &'static str) {
    let app = app.clone();
    let req = req.clone();
    tokio::spawn(async move {
        if let Err(e) = enqueue(&app, &req, reason).await {
            app.metrics
                .store_errors
                .with_label_values(&["enqueue"])
                .inc();
            tracing::warn!(full_path = %req.full_path, "cannot enqueue a {reason} refresh: {e}");
        }
    });
}

/// `--wait-on-miss`: polls the entry (5 ms, doubling up to 50 ms) until it is fresh or
/// the wait is over.
async fn wait_for_result<S: Store>(
    app: &App<S>,
    req: &TargetRequest,
    fingerprint: &str,
) -> Option<Bytes> {
    let wait = app.config.wait_on_miss;
    if wait.is_zero() {
        return None;
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut step = Duration::from_millis(5);
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(step.min(deadline - now)).await;
        step = (step * 2).min(Duration::from_millis(50));
        if let Ok(Some(bytes)) = app.store.get_entry(&req.full_path).await
            && let Some(entry) = parse_entry(&bytes)
            && let Judgement::Fresh { .. } = judge(app, &entry, fingerprint)
        {
            app.cache_ops.hit.inc();
            // The results are a slice of the entry: no copy, no re-serialising.
            return Some(entry.results);
        }
    }
}

async fn reload<S: Store>(app: &App<S>, req: &TargetRequest) -> Response {
    let outcome = match app
        .store
        .reload(
            &NewJob::from_job(&req.job(now_unix())),
            app.config.reload_cooldown,
        )
        .await
    {
        Ok(Ok(o)) => o,
        Ok(Err(CoolingDown(left))) => return cooling_down(req, left),
        Err(e) => return store_unavailable(app, "reload", &e),
    };
    // This server's copy goes at once; the others' when the script's publication
    // reaches them.
    app.local.invalidate(&req.full_path);
    if outcome.enqueued {
        app.metrics
            .jobs_enqueued
            .with_label_values(&["reload"])
            .inc();
    }
    json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "reload_initiated",
            "message": "Cache cleared and job enqueued for regeneration. Please try again without ?reload=true",
            "path": req.full_path,
            "cache_cleared": outcome.cache_cleared,
            "error_cache_cleared": outcome.error_cache_cleared,
            "job_enqueued": outcome.enqueued,
        }),
    )
}

/// 429 for a reload inside the path's cooldown: nothing was cleared or enqueued.
fn cooling_down(req: &TargetRequest, left: Duration) -> Response {
    let seconds = left.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({
            "error": "reload cooldown",
            "message": format!(
                "{} was reloaded moments ago; nothing was cleared. Retry the reload in {seconds}s, or request it without ?reload=true.",
                req.full_path
            ),
            "path": req.full_path,
            "retry_after_seconds": seconds,
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

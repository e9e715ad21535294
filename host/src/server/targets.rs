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
//!
//! Every answer that is not targets, a debug page ([`super::debug`]) or a reload
//! confirmation is a [`TargetsError`] (refusals, 404s, misses, store failures), which
//! writes its own status, body and headers.

use super::App;
use super::auth::Area;
use super::debug;
use super::error::TargetsError;
use super::json;
use super::prepared::Prepared;
use super::request::{self, RequestError};
use crate::clock::now_unix;
use crate::metrics::Metrics;
use crate::store::{CoolingDown, NewJob, Store, StoreError};
use crate::targets::{Indexed, TreeError};
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

/// Takes the whole request rather than `Uri` and `HeaderMap` extractors: those clone
/// the URI and every header on each request, and this is the hit path.
pub async fn handle<S: Store>(
    State(app): State<Arc<App<S>>>,
    request: Request,
) -> Result<Response, TargetsError> {
    let started = Instant::now();
    let (uri, headers) = (request.uri(), request.headers());
    let url = uri.path_and_query().map_or("", |pq| pq.as_str());
    let prepared = match app.prepared.get(url, &app.index) {
        // The memo holds only plain answers (never debug or reload).
        Some(p) => {
            app.config
                .auth
                .check(Area::Targets, headers)
                .map_err(TargetsError::Refused)?;
            p
        }
        None => match route(&app, uri, headers).await? {
            Route::Plain(p) => {
                app.prepared.insert(url, p.clone());
                p
            }
            Route::Debug(req, indexed) => {
                return debug::respond(&app, &req, &indexed.fingerprint).await;
            }
            Route::Reload(req) => return reload(&app, &req).await,
        },
    };
    let answer = answer(&app, &prepared.req, &prepared.indexed.fingerprint).await;
    prepared.count(match &answer {
        Ok(served) => {
            if let Some(targets) = served.targets {
                prepared.served_targets(targets);
            }
            "success"
        }
        Err(e) => e.status_label(),
    });
    prepared.duration.observe(started.elapsed().as_secs_f64());
    answer.map(|served| targets_response(served.results))
}

/// A 200's body and how many targets it holds (`None` for an entry that does not
/// say, which is not counted).
struct Served {
    results: Bytes,
    targets: Option<usize>,
}

impl Served {
    fn of(entry: &ParsedEntry) -> Served {
        Served {
            results: entry.results.clone(),
            targets: entry.targets,
        }
    }
}

/// What a well-formed, permitted request asks for.
enum Route {
    /// The targets: a hit, a miss or an expiry ([`answer`]).
    Plain(Arc<Prepared>),
    /// `?debug=true` ([`debug::respond`]), with the generators' fingerprint now.
    Debug(TargetRequest, Arc<Indexed>),
    /// `?reload=true` ([`reload`]).
    Reload(TargetRequest),
}

/// Decodes the URL, checks who may ask, and finds its generators.
async fn route<S: Store>(
    app: &Arc<App<S>>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Route, TargetsError> {
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
    app.config
        .auth
        .check(area, headers)
        .map_err(TargetsError::Refused)?;
    let query = match query {
        Ok(q) => q,
        Err(RequestError::Invalid(msg)) => {
            count_unknown_path(&app.metrics);
            return Err(TargetsError::BadRequest(msg));
        }
        Err(RequestError::NotFound) => return Err(path_not_found(app, raw_path)),
    };
    let indexed = match app.index.lookup(&query.path).await {
        Ok(i) => i,
        Err(TreeError::NotFound) => return Err(path_not_found(app, raw_path)),
        Err(TreeError::Io(msg)) => {
            tracing::error!("cannot read the target directory: {msg}");
            return Err(TargetsError::TreeUnreadable);
        }
        Err(e @ TreeError::NothingRunnable(_)) => {
            return Err(TargetsError::NothingRunnable {
                path: format!("/targets/{}", query.path.as_slash_path()),
                message: e.to_string(),
            });
        }
    };
    let req = TargetRequest::new(query.path, query.params);
    Ok(if query.reload {
        Route::Reload(req)
    } else if query.debug {
        Route::Debug(req, indexed)
    } else {
        Route::Plain(Arc::new(Prepared::new(req, indexed, &app.metrics)))
    })
}

/// A request that names no path of the tree is counted under no path (a label per
/// made-up URL would let any client grow the metrics).
fn count_unknown_path(metrics: &Metrics) {
    metrics
        .path_requests
        .with_label_values(&["", "fail", "", ""])
        .inc();
}

fn path_not_found<S: Store>(app: &App<S>, raw_path: &str) -> TargetsError {
    count_unknown_path(&app.metrics);
    TargetsError::PathNotFound {
        path: format!(
            "/targets{}",
            if raw_path.is_empty() { "" } else { raw_path }
        ),
    }
}

/// The normal answer: the cached results, or why there are none yet.
async fn answer<S: Store>(
    app: &Arc<App<S>>,
    req: &TargetRequest,
    fingerprint: &str,
) -> Result<Served, TargetsError> {
    let ops = &app.cache_ops;
    let Some(entry) = cached_entry(app, req).await? else {
        ops.miss.inc();
        return regenerate(app, req, fingerprint, "miss", TargetsError::CacheMiss).await;
    };
    match judge(app, &entry, fingerprint) {
        Judgement::Fresh { refresh } => {
            ops.hit.inc();
            if let Some(reason) = refresh {
                enqueue_in_background(app, req, reason);
            }
            Ok(Served::of(&entry))
        }
        Judgement::Expired => {
            ops.expired.inc();
            regenerate(app, req, fingerprint, "expired", TargetsError::CacheExpired).await
        }
    }
}

/// The path's entry: from this process's local cache, else from the store (kept
/// locally for the next request). An unreadable entry is treated as a miss: it is
/// regenerated.
async fn cached_entry<S: Store>(
    app: &App<S>,
    req: &TargetRequest,
) -> Result<Option<Arc<ParsedEntry>>, TargetsError> {
    if let Some(entry) = app.local.get(&req.full_path) {
        app.metrics.local_cache_hits.inc();
        return Ok(Some(entry));
    }
    let epoch = app.local.epoch();
    match app.store.get_entry(&req.full_path).await {
        Ok(Some(bytes)) => Ok(parse_entry(&bytes).map(|entry| {
            let entry = Arc::new(entry);
            app.local.insert(&req.full_path, entry.clone(), epoch);
            entry
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(TargetsError::store(&app.metrics, "get", &e)),
    }
}

/// A miss or an expiry: enqueue the job, then wait for its result if
/// `--wait-on-miss` allows, else answer `otherwise`.
async fn regenerate<S: Store>(
    app: &App<S>,
    req: &TargetRequest,
    fingerprint: &str,
    reason: &'static str,
    otherwise: TargetsError,
) -> Result<Served, TargetsError> {
    let job = new_job(req);
    enqueue(app, &job, reason)
        .await
        .map_err(|e| TargetsError::store(&app.metrics, "enqueue", &e))?;
    wait_for_result(app, req, fingerprint)
        .await
        .ok_or(otherwise)
}

/// The cache-operation counters of the hit path, resolved once (a label lookup hashes
/// the label and takes a lock on every request).
pub struct CacheOps {
    hit: IntCounter,
    miss: IntCounter,
    expired: IntCounter,
}

impl CacheOps {
    /// Resolves the three handles of `httpsd_cache_operations_total`.
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

/// The job for `req`, as queued, stamped now. Every job the server queues (miss,
/// expiry, refresh, reload) is made here. It cannot be empty: `wire::Job::to_json`
/// writes it with a JSON writer that cannot fail, where an `unwrap_or_default()` on
/// serde_json's `Result` would have queued `""` had encoding ever failed.
fn new_job(req: &TargetRequest) -> NewJob {
    NewJob::from_job(&req.job(now_unix()))
}

/// Queues `job`; counts it under `reason` when it was not queued already.
async fn enqueue<S: Store>(
    app: &App<S>,
    job: &NewJob,
    reason: &'static str,
) -> Result<bool, StoreError> {
    let pushed = app.store.enqueue(job).await?;
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
        if let Err(e) = enqueue(&app, &new_job(&req), reason).await {
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
) -> Option<Served> {
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
            return Some(Served::of(&entry));
        }
    }
}

/// `?reload=true`: clears the path's entry and error and enqueues a job, unless the
/// path was reloaded within `--reload-cooldown`.
async fn reload<S: Store>(app: &App<S>, req: &TargetRequest) -> Result<Response, TargetsError> {
    let job = new_job(req);
    let outcome = match app.store.reload(&job, app.config.reload_cooldown).await {
        Ok(Ok(o)) => o,
        Ok(Err(CoolingDown(left))) => {
            return Err(TargetsError::cooling_down(&req.full_path, left));
        }
        Err(e) => return Err(TargetsError::store(&app.metrics, "reload", &e)),
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
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "reload_initiated",
            "message": "Cache cleared and job enqueued for regeneration. Please try again without ?reload=true",
            "path": req.full_path,
            "cache_cleared": outcome.cache_cleared,
            "error_cache_cleared": outcome.error_cache_cleared,
            "job_enqueued": outcome.enqueued,
        }),
    ))
}

//! Every answer of `GET /targets[/<path>]` that is not the targets, a debug page or a
//! reload confirmation, as one type: [`TargetsError`].
//!
//! The handlers return `Result<Response, TargetsError>` (the shape of axum's
//! error-handling example), so a successful answer is never sent back as an `Err` and
//! each error's status code, JSON body and headers are written in one place.
//!
//! What an error costs besides its answer (a metric, a log line) happens where it is
//! made, in the constructors ([`TargetsError::store`]) or in the handler that has the
//! request's context; turning it into a response has no side effects.

use super::{json, json_error};
use crate::metrics::Metrics;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Seconds Prometheus (or a person) is told to wait after a 503.
const RETRY_AFTER: &str = "5";

/// Why `/targets` did not answer with targets.
#[derive(Debug)]
pub enum TargetsError {
    /// Refused by `--auth-file`: the answer [`super::auth`] made (401 or 403).
    Refused(Box<Response>),
    /// 400 `{"error": <why>}`: the URL is not a valid request.
    BadRequest(String),
    /// 404 `{"error": "path not found", "path": "/targets/<path>"}`.
    PathNotFound {
        /// The path as requested, under `/targets`.
        path: String,
    },
    /// 500: the target directory could not be read.
    TreeUnreadable,
    /// 500 `{"error": "no runnable generator", "path", "message"}`: the path holds
    /// files but no generator (an empty 200 would make Prometheus drop the job's
    /// targets; a 500 makes it keep them).
    NothingRunnable {
        /// The path, under `/targets`.
        path: String,
        /// The files it holds, named ([`crate::targets::TreeError::NothingRunnable`]).
        message: String,
    },
    /// 503 with `Retry-After`: the store failed or refused.
    StoreUnavailable {
        /// The store's error, for the body's `message`.
        message: String,
    },
    /// 503 with `Retry-After`: nothing cached yet; a job is queued.
    CacheMiss,
    /// 503 with `Retry-After`: the entry expired; a job is queued.
    CacheExpired,
    /// 429 with `Retry-After`: a reload of `path` inside its cooldown; nothing was
    /// cleared or enqueued.
    CoolingDown {
        /// The reloaded path's `full_path`.
        path: String,
        /// Whole seconds until a reload is allowed again (at least 1).
        seconds: u64,
    },
}

impl TargetsError {
    /// A failed store call during `operation`: counted, logged, and answered 503.
    pub fn store(metrics: &Metrics, operation: &str, error: &StoreError) -> TargetsError {
        metrics.store_errors.with_label_values(&[operation]).inc();
        match error {
            // The store said no to this request (the embedded store's queue is full):
            // a client asking faster than the jobs run would write a warning per
            // request. The metric above counts them.
            StoreError::Refused { .. } => {
                tracing::debug!("store {operation} refused: {error}")
            }
            _ => tracing::warn!("store {operation} failed: {error}"),
        }
        TargetsError::StoreUnavailable {
            message: error.to_string(),
        }
    }

    /// A reload of `path` refused for `left` more of its cooldown (told in whole
    /// seconds, at least one).
    pub fn cooling_down(path: &str, left: Duration) -> TargetsError {
        TargetsError::CoolingDown {
            path: path.to_string(),
            seconds: left.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    /// The `status` label of `httpsd_path_requests_total` for this answer.
    pub fn status_label(&self) -> &'static str {
        match self {
            TargetsError::CacheMiss => "cache-not-exist",
            TargetsError::CacheExpired => "cache-expired",
            _ => "fail",
        }
    }
}

impl IntoResponse for TargetsError {
    fn into_response(self) -> Response {
        match self {
            TargetsError::Refused(response) => *response,
            TargetsError::BadRequest(message) => json_error(StatusCode::BAD_REQUEST, &message),
            TargetsError::PathNotFound { path } => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "error": "path not found", "path": path }),
            ),
            TargetsError::TreeUnreadable => json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the target directory",
            ),
            TargetsError::NothingRunnable { path, message } => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({
                    "error": "no runnable generator",
                    "path": path,
                    "message": message,
                }),
            ),
            TargetsError::StoreUnavailable { message } => retry_after(
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "error": "store unavailable", "message": message }),
                ),
                HeaderValue::from_static(RETRY_AFTER),
            ),
            TargetsError::CacheMiss => unavailable("cache miss"),
            TargetsError::CacheExpired => unavailable("cache expired"),
            TargetsError::CoolingDown { path, seconds } => cooling_down(&path, seconds),
        }
    }
}

/// 503 `{"error": message}`, come back in [`RETRY_AFTER`] seconds.
fn unavailable(message: &str) -> Response {
    retry_after(
        json_error(StatusCode::SERVICE_UNAVAILABLE, message),
        HeaderValue::from_static(RETRY_AFTER),
    )
}

/// 429 for a reload inside the path's cooldown.
fn cooling_down(path: &str, seconds: u64) -> Response {
    let response = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({
            "error": "reload cooldown",
            "message": format!(
                "{path} was reloaded moments ago; nothing was cleared. Retry the reload in {seconds}s, or request it without ?reload=true."
            ),
            "path": path,
            "retry_after_seconds": seconds,
        }),
    );
    retry_after(response, HeaderValue::from(seconds))
}

fn retry_after(mut response: Response, value: HeaderValue) -> Response {
    response.headers_mut().insert(header::RETRY_AFTER, value);
    response
}

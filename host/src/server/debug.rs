//! `?debug=true`: the four shapes of the debug guide, with more detail.
//!
//! 1. `debug_info.normal_cache`: the cached answer, its age, whether it expired, and
//!    whether the generators changed since it was made;
//! 2. `debug_info.error_details`: the cached error with its traceback (both appear when
//!    a path has a last good answer and a newer error);
//! 3. `status: "processing"`: nothing cached yet, a worker is running the job (which
//!    worker, for how long);
//! 4. `status: "no_debug_info"`: nothing cached and nothing running (a queued job is
//!    shown as `job`).
//!
//! When there is a `debug_info`, it also carries `job` (queued or running) and
//! `last_run`: per generator, its time, fuel, memory, target count and guest log.

use super::error::TargetsError;
use super::{App, json};
use crate::clock::{human, iso8601, now_unix};
use crate::store::{DebugView, JobState, JobStatus, Store};
use crate::wire::{EntryView, TargetRequest};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

/// The debug answer of `req`; `fingerprint` is its generators' fingerprint now (to say
/// whether they changed since the cached entry was made).
pub async fn respond<S: Store>(
    app: &App<S>,
    req: &TargetRequest,
    fingerprint: &str,
) -> Result<Response, TargetsError> {
    let view = app
        .store
        .debug_view(&req.full_path)
        .await
        .map_err(|e| TargetsError::store(&app.metrics, "debug", &e))?;
    let requested = req.display_path();
    let now = now_unix();
    let mut info = Map::new();
    if let Some(bytes) = &view.entry {
        let normal = normal_cache(bytes, now, app.config.cache_seconds, fingerprint);
        info.insert("normal_cache".into(), normal);
    }
    if let Some(bytes) = &view.error {
        let details = error_details(bytes, now, &req.full_path);
        info.insert("error_details".into(), details);
    }
    let job = view.job.as_ref().map(|j| job_json(j, now));
    if info.is_empty() {
        let body = nothing_yet(&requested, view.job.as_ref(), job);
        return Ok(json(StatusCode::OK, &body));
    }
    add_job_and_runs(&mut info, job, &view);
    Ok(json(
        StatusCode::OK,
        &json!({
            "requested_path": requested,
            "full_path": req.full_path,
            "debug_info": info,
        }),
    ))
}

/// Shape 1: the cached answer, how old it is, whether it expired, and whether the
/// generators changed since it was made (entries from before fingerprints lack that).
fn normal_cache(bytes: &[u8], now: f64, cache_seconds: f64, fingerprint: &str) -> Value {
    let entry = match EntryView::parse(bytes) {
        Ok(entry) => entry,
        Err(e) => return json!({ "status": "unreadable", "error": e.to_string() }),
    };
    let age = now - entry.updated_timestamp;
    let results: Value = serde_json::from_str(entry.results).unwrap_or(Value::Null);
    let mut normal = json!({
        "status": "success",
        "updated_timestamp": iso8601(entry.updated_timestamp),
        "results": results,
        "cache_age_seconds": format!("{age:.1}s ago"),
        "age_seconds": age,
        "cache_seconds": cache_seconds,
        "expired": age > cache_seconds,
    });
    if let Some(made_with) = entry.fingerprint() {
        normal["generators"] = json!({
            "fingerprint_of_entry": made_with,
            "fingerprint_now": fingerprint,
            "changed_since": made_with != fingerprint,
        });
    }
    normal
}

/// Shape 2: the cached error as the worker wrote it, with its age in words.
fn error_details(bytes: &[u8], now: f64, full_path: &str) -> Value {
    let raw: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let updated = raw["updated_timestamp"].as_f64().unwrap_or(0.0);
    let mut details = match raw.get("error_details") {
        Some(Value::Object(d)) => d.clone(),
        _ => Map::new(),
    };
    details.insert("timestamp_human".into(), json!(human(updated)));
    details
        .entry("full_path")
        .or_insert_with(|| json!(full_path));
    details.insert(
        "error_age_seconds".into(),
        json!(format!("{:.1}s ago", now - updated)),
    );
    Value::Object(details)
}

/// The path's job, queued or running: by which worker, since when.
fn job_json(job: &JobStatus, now: f64) -> Value {
    json!({
        "state": job.state,
        "worker_id": job.worker_id,
        "since": iso8601(job.since),
        "for_seconds": ((now - job.since) * 10.0).round() / 10.0,
    })
}

/// Shapes 3 and 4, when nothing is cached: a running job is the guide's
/// "processing"; a queued one is still "no debug info" (nothing has happened yet),
/// with the job shown as an extra.
fn nothing_yet(requested: &str, status: Option<&JobStatus>, job: Option<Value>) -> Value {
    match (status, job) {
        (Some(status), Some(job)) if status.state == JobState::Running => json!({
            "requested_path": requested,
            "status": "processing",
            "message": format!(
                "Job is currently being processed by a worker ({}). Please wait a moment and try again.",
                status.worker_id
            ),
            "suggestion": "Wait a few seconds and retry with ?debug=true",
            "job": job,
        }),
        (_, job) => {
            let mut body = json!({
                "requested_path": requested,
                "status": "no_debug_info",
                "message": "No error information available yet. Please trigger job processing first.",
                "suggestion": "Try the request without ?debug=true first to trigger job processing, then retry with ?debug=true",
            });
            if let Some(job) = job {
                body["job"] = job;
            }
            body
        }
    }
}

/// The extras of a `debug_info`: the job, the last run's per-generator report, and
/// the recent runs (unreadable records are left out).
fn add_job_and_runs(info: &mut Map<String, Value>, job: Option<Value>, view: &DebugView) {
    if let Some(job) = job {
        info.insert("job".into(), job);
    }
    if let Some(run) = view
        .run
        .as_ref()
        .and_then(|r| serde_json::from_slice::<Value>(r).ok())
    {
        info.insert("last_run".into(), run);
    }
    let history: Vec<Value> = view
        .history
        .iter()
        .filter_map(|h| serde_json::from_slice(h).ok())
        .collect();
    if !history.is_empty() {
        info.insert("recent_runs".into(), Value::Array(history));
    }
}

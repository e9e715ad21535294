//! The admin page at `/`: every path of the tree with its state (fresh, stale, error,
//! queued, running, or never generated), its age, its last error, and links to its
//! targets, debug and reload. Server-rendered HTML, no scripts, no build step.

use super::App;
use crate::clock::now_unix;
use crate::store::{DebugView, JobState, Store};
use crate::wire::{EntryView, TargetRequest};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

/// Paths shown per page.
const PAGE: usize = 200;

pub async fn page<S: Store>(
    State(app): State<Arc<App<S>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = q
        .get("filter")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let paths = match app.index.all_paths().await {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the target directory: {e}"),
            )
                .into_response();
        }
    };
    let matching: Vec<_> = paths
        .into_iter()
        .filter(|p| filter.is_empty() || p.as_slash_path().contains(&filter))
        .collect();
    let total = matching.len();
    let shown: Vec<TargetRequest> = matching
        .into_iter()
        .skip(page * PAGE)
        .take(PAGE)
        .map(|p| TargetRequest::new(p, Vec::new()))
        .collect();
    let full_paths: Vec<String> = shown.iter().map(|r| r.full_path.clone()).collect();
    let (views, store_error) = match app.store.overview(&full_paths).await {
        Ok(v) => (v, None),
        Err(e) => (vec![DebugView::default(); shown.len()], Some(e.to_string())),
    };

    let prefix = &app.config.url_prefix;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>httpsd</title><style>\
         body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}\
         td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}\
         .fresh{{color:#170}}.stale{{color:#a60}}.error{{color:#b00}}.queued,.running{{color:#06a}}\
         </style></head><body><h1>httpsd</h1><p>store: {} · cache {}s · {} paths</p>",
        app.store.kind(),
        app.config.cache_seconds,
        total
    );
    if let Some(e) = store_error {
        let _ = write!(
            html,
            "<p class=\"error\">store unavailable: {}</p>",
            escape(&e)
        );
    }
    let _ = write!(
        html,
        "<form><input name=\"filter\" value=\"{}\" placeholder=\"filter paths\"> <button>filter</button></form>\
         <table><tr><th>path</th><th>state</th><th>age</th><th>targets</th><th>last error</th><th></th></tr>",
        escape(&filter)
    );
    let now = now_unix();
    for (req, view) in shown.iter().zip(&views) {
        let row = Row::of(view, now, app.config.cache_seconds);
        let href = format!("{prefix}{}", req.display_path());
        let _ = write!(
            html,
            "<tr><td><a href=\"{href}\">{}</a></td><td class=\"{state}\">{state}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><a href=\"{href}?debug=true\">debug</a> · <a href=\"{href}?reload=true\">reload</a></td></tr>",
            escape(&req.display_path()),
            row.age.map(|a| format!("{a:.0}s")).unwrap_or_default(),
            row.targets.map(|t| t.to_string()).unwrap_or_default(),
            escape(&row.error.unwrap_or_default()),
            state = row.state,
        );
    }
    html.push_str("</table>");
    if total > (page + 1) * PAGE {
        let _ = write!(
            html,
            "<p><a href=\"?filter={}&page={}\">next page</a></p>",
            escape(&filter),
            page + 1
        );
    }
    html.push_str("</body></html>");
    Html(html).into_response()
}

struct Row {
    state: &'static str,
    age: Option<f64>,
    targets: Option<usize>,
    error: Option<String>,
}

impl Row {
    fn of(view: &DebugView, now: f64, cache_seconds: f64) -> Row {
        let entry = view.entry.as_ref().and_then(|b| {
            let v = EntryView::parse(b).ok()?;
            let targets = serde_json::from_str::<Vec<crate::model::TargetGroup>>(v.results.get())
                .map(|g| g.iter().map(|g| g.targets.len()).sum())
                .ok();
            Some((v.updated_timestamp, targets))
        });
        let error = view.error.as_ref().and_then(|b| {
            let v: serde_json::Value = serde_json::from_slice(b).ok()?;
            let d = &v["error_details"];
            Some((
                v["updated_timestamp"].as_f64().unwrap_or(0.0),
                format!(
                    "{}: {}",
                    d["error_type"].as_str().unwrap_or("?"),
                    d["error_message"].as_str().unwrap_or("")
                ),
            ))
        });
        let age = entry.map(|(ts, _)| now - ts);
        let error_is_newer = match (&error, entry) {
            (Some((err_ts, _)), Some((ts, _))) => *err_ts >= ts,
            (Some(_), None) => true,
            _ => false,
        };
        let state = match (&view.job, age) {
            (Some(j), _) if j.state == JobState::Running => "running",
            (Some(_), _) => "queued",
            _ if error_is_newer => "error",
            (None, Some(a)) if a <= cache_seconds => "fresh",
            (None, Some(_)) => "stale",
            (None, None) => "never",
        };
        Row {
            state,
            age,
            targets: entry.and_then(|(_, t)| t),
            error: error.map(|(_, e)| e),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

//! The admin page at `/`: every path of the tree with its state (fresh, stale, error,
//! queued, running, or never generated), its age, its last run's duration and target
//! count, its last error linked to debug, and a reload button. Under each path, its
//! generators with the limits they ran under and the path's recent runs.
//!
//! Server-rendered HTML with no scripts and no build step, so it works wherever the
//! server does. Paged and filterable, because a tree can hold thousands of paths; only
//! the shown page is read from the store (one pipelined round trip per 256 paths).

use super::App;
use crate::clock::now_unix;
use crate::store::{DebugView, JobState, Store};
use crate::targets::TargetPath;
use crate::units::{format_duration, format_size};
use crate::wire::{EntryView, TargetRequest};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// Paths shown per page.
const PAGE: usize = 100;

/// Longest error message shown in the table (the rest is in debug).
const ERROR_CHARS: usize = 160;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
    table{border-collapse:collapse;width:100%}\
    td,th{padding:.3em .6em;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}\
    th{background:#f6f6f6}tr.detail td{border-bottom:2px solid #ccc;background:#fcfcfc}\
    .fresh{color:#170}.stale{color:#a60}.error{color:#b00}.queued,.running{color:#06a}.never{color:#888}\
    form.reload{display:inline;margin:0}details table{width:auto;margin:.4em 0}\
    summary{cursor:pointer;color:#555}.muted{color:#888}.nav a{margin-right:1em}";

/// `GET /` (or the URL prefix): the page of paths the `filter` and `page` query
/// parameters select.
pub async fn page<S: Store>(
    State(app): State<Arc<App<S>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(refusal) = app.config.auth.check(super::auth::Area::Admin, &headers) {
        return *refusal;
    }
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
    let selection = Selection::of(paths, &filter, page);
    let (views, store_error) = read_views(&*app.store, &selection.shown).await;
    let now = now_unix();
    let rows: Vec<Row> = views
        .iter()
        .map(|v| Row::of(v, now, app.config.cache_seconds))
        .collect();
    let mut html = String::with_capacity(4096 + selection.shown.len() * 1024);
    write_header(&mut html, &app, &selection, store_error.as_deref());
    write_filter(&mut html, &filter, &rows);
    html.push_str(
        "<table id=\"paths\"><tr><th>path</th><th>state</th><th>age</th><th>last run</th>\
         <th>targets</th><th>last error</th><th></th></tr>",
    );
    let prefix = &app.config.url_prefix;
    for ((req, view), row) in selection.shown.iter().zip(&views).zip(&rows) {
        write_row(&mut html, prefix, req, view, row, now);
    }
    html.push_str("</table>");
    write_pager(&mut html, &filter, selection.page, selection.pages);
    html.push_str("</body></html>");
    Html(html).into_response()
}

/// The paths matching the filter, and the page of them shown.
struct Selection {
    filter: String,
    /// Paths matching the filter, on all pages.
    total: usize,
    page: usize,
    pages: usize,
    shown: Vec<TargetRequest>,
}

impl Selection {
    /// `page` (from 0) of the paths containing `filter`; past the last page, the last.
    fn of(paths: Vec<TargetPath>, filter: &str, page: usize) -> Selection {
        let matching: Vec<_> = paths
            .into_iter()
            .filter(|p| filter.is_empty() || p.as_slash_path().contains(filter))
            .collect();
        let total = matching.len();
        let pages = total.div_ceil(PAGE).max(1);
        let page = page.min(pages - 1);
        let shown = matching
            .into_iter()
            .skip(page * PAGE)
            .take(PAGE)
            .map(|p| TargetRequest::new(p, Vec::new()))
            .collect();
        Selection {
            filter: filter.to_string(),
            total,
            page,
            pages,
            shown,
        }
    }
}

/// What the store holds for the shown paths, in one call; when the store is away, an
/// empty view per path and the error, so the page still lists the tree.
async fn read_views<S: Store>(
    store: &S,
    shown: &[TargetRequest],
) -> (Vec<DebugView>, Option<String>) {
    let full_paths: Vec<String> = shown.iter().map(|r| r.full_path.clone()).collect();
    match store.overview(&full_paths).await {
        Ok(v) => (v, None),
        Err(e) => (vec![DebugView::default(); shown.len()], Some(e.to_string())),
    }
}

/// The document head, the title line with the settings, and a store error if any.
fn write_header<S: Store>(
    html: &mut String,
    app: &App<S>,
    selection: &Selection,
    store_error: Option<&str>,
) {
    let filter = &selection.filter;
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>httpsd</title>\
         <style>{STYLE}</style></head><body><h1>httpsd</h1>\
         <p>store: {} · cache {}s · reload cooldown {} · {total} paths{}</p>",
        app.store.kind(),
        app.config.cache_seconds,
        format_duration(app.config.reload_cooldown),
        if filter.is_empty() {
            String::new()
        } else {
            format!(" matching “{}”", escape(filter))
        },
        total = selection.total,
    );
    if let Some(t) = app.store.redis_topology() {
        write_topology(html, &t);
    }
    if let Some(e) = store_error {
        let _ = write!(
            html,
            "<p class=\"error\" id=\"store-error\">store unavailable: {}</p>",
            escape(e)
        );
    }
}

/// The Redis line: mode, primary in use, failovers seen, and the sentinels or seed
/// nodes of the URL.
fn write_topology(html: &mut String, t: &crate::store::RedisTopology) {
    let mode = match t.mode {
        crate::store::RedisMode::Single => "one primary".to_string(),
        crate::store::RedisMode::Sentinel => format!(
            "Sentinel, master {}",
            escape(t.master_name.as_deref().unwrap_or(""))
        ),
        crate::store::RedisMode::Cluster => "Cluster".to_string(),
    };
    let nodes = if t.nodes.is_empty() {
        String::new()
    } else {
        let role = match t.mode {
            crate::store::RedisMode::Sentinel => "sentinels",
            _ => "seed nodes",
        };
        format!(" · {role}: {}", escape(&t.nodes.join(", ")))
    };
    let _ = write!(
        html,
        "<p id=\"redis-topology\">redis: {mode} · primary <b>{}</b> · {} failovers seen{nodes}</p>",
        escape(t.primary.as_deref().unwrap_or("not known yet")),
        t.failovers,
    );
}

/// The filter form and how many paths of this page are in each state.
fn write_filter(html: &mut String, filter: &str, rows: &[Row]) {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for r in rows {
        match counts.iter_mut().find(|(s, _)| *s == r.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.state, 1)),
        }
    }
    let _ = write!(
        html,
        "<form id=\"filter\"><input name=\"filter\" value=\"{}\" placeholder=\"filter paths\" autofocus> \
         <button>filter</button></form><p>this page: {}</p>",
        escape(filter),
        counts
            .iter()
            .map(|(s, n)| format!("<span class=\"{s}\">{n} {s}</span>"))
            .collect::<Vec<_>>()
            .join(" · ")
    );
}

fn write_row(
    html: &mut String,
    prefix: &str,
    req: &TargetRequest,
    view: &DebugView,
    row: &Row,
    now: f64,
) {
    let path = escape(&req.display_path());
    let href = format!("{prefix}{path}");
    let error = error_cell(row, &href);
    let reload = reload_button(view);
    let _ = write!(
        html,
        "<tr class=\"path\" data-path=\"{path}\" data-state=\"{state}\">\
         <td><a class=\"targets\" href=\"{href}\">{path}</a></td>\
         <td class=\"state {state}\">{state}{job}</td><td>{age}</td><td>{duration}</td>\
         <td>{targets}</td><td>{error}</td>\
         <td><a class=\"debug\" href=\"{href}?debug=true\">debug</a> \
         <form class=\"reload\" action=\"{href}\" method=\"get\">\
         <input type=\"hidden\" name=\"reload\" value=\"true\">{reload}</form></td></tr>",
        state = row.state,
        job = running_on(view, now),
        age = row.age.map(ago).unwrap_or_default(),
        duration = row.duration().map(millis).unwrap_or_default(),
        targets = row.targets.map(|t| t.to_string()).unwrap_or_default(),
    );
    write_details(html, &path, view, row);
}

/// The last error's type (linked to debug) and the start of its message.
fn error_cell(row: &Row, href: &str) -> String {
    let Some((kind, message)) = &row.error else {
        return String::new();
    };
    let short: String = message.chars().take(ERROR_CHARS).collect();
    format!(
        "<a class=\"error-type\" href=\"{href}?debug=true\">{}</a> {}{}",
        escape(kind),
        escape(&short),
        if short.len() < message.len() {
            "…"
        } else {
            ""
        }
    )
}

/// The reload button, disabled while the path's reload cooldown lasts.
fn reload_button(view: &DebugView) -> String {
    match view.reload_cooldown {
        Some(left) => format!(
            "<button disabled title=\"reloaded moments ago\">reload in {}s</button>",
            left.as_secs_f64().ceil() as u64
        ),
        None => "<button>reload</button>".to_string(),
    }
}

/// Which worker runs the path's job, and for how long.
fn running_on(view: &DebugView, now: f64) -> String {
    match &view.job {
        Some(j) if j.state == JobState::Running && !j.worker_id.is_empty() => format!(
            " <span class=\"muted\">on {} for {}</span>",
            escape(&j.worker_id),
            ago(now - j.since)
        ),
        _ => String::new(),
    }
}

/// The foldable row under a path: its generators and its recent runs, if any.
fn write_details(html: &mut String, path: &str, view: &DebugView, row: &Row) {
    let generators = view
        .run
        .as_ref()
        .and_then(|r| serde_json::from_slice::<Value>(r).ok())
        .and_then(|r| r["generators"].as_array().cloned())
        .unwrap_or_default();
    let history = &row.history;
    if generators.is_empty() && history.is_empty() {
        return;
    }
    let _ = write!(
        html,
        "<tr class=\"detail\" data-path=\"{path}\"><td colspan=\"7\"><details><summary>{} · {}</summary>",
        plural(generators.len(), "generator"),
        plural(history.len(), "recent run")
    );
    write_generators(html, &generators);
    write_history(html, history);
    html.push_str("</details></td></tr>");
}

/// The generators of the last run, with the limits each ran under.
fn write_generators(html: &mut String, generators: &[Value]) {
    if generators.is_empty() {
        return;
    }
    html.push_str(
        "<table class=\"generators\"><tr><th>generator</th><th>kind</th><th>time</th><th>fuel used</th>\
         <th>memory peak</th><th>targets</th><th>limits: fuel · timeout · memory · output · targets</th></tr>",
    );
    for g in generators {
        let limits = &g["limits"];
        let limit_text = if limits.is_object() {
            format!(
                "{} · {} · {} · {} · {}",
                limits["fuel"].as_u64().unwrap_or(0),
                escape(limits["timeout"].as_str().unwrap_or("?")),
                format_size(limits["memory_bytes"].as_u64().unwrap_or(0)),
                format_size(limits["max_output_bytes"].as_u64().unwrap_or(0)),
                limits["max_targets"].as_u64().unwrap_or(0),
            )
        } else {
            "<span class=\"muted\">not loaded</span>".to_string()
        };
        let outcome = match g["error"]["error_type"].as_str() {
            Some(kind) => format!("<span class=\"error\">{}</span>", escape(kind)),
            None => g["targets"].as_u64().unwrap_or(0).to_string(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{outcome}</td><td>{limit_text}</td></tr>",
            escape(g["generator"].as_str().unwrap_or("?")),
            escape(g["kind"].as_str().unwrap_or("?")),
            g["duration"]
                .as_f64()
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_default(),
            g["fuel_used"].as_u64().unwrap_or(0),
            format_size(g["memory_peak"].as_u64().unwrap_or(0)),
        );
    }
    html.push_str("</table>");
}

/// The path's recent runs, newest first.
fn write_history(html: &mut String, history: &[Value]) {
    if history.is_empty() {
        return;
    }
    html.push_str(
        "<table class=\"history\"><tr><th>finished</th><th>outcome</th><th>took</th>\
         <th>worker</th><th>attempt</th></tr>",
    );
    for h in history {
        let outcome = match h["error_type"].as_str() {
            Some(kind) => format!("<span class=\"error\">{}</span>", escape(kind)),
            None => format!(
                "<span class=\"fresh\">{} targets</span>",
                h["targets"].as_u64().unwrap_or(0)
            ),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{outcome}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            h["finished"]
                .as_f64()
                .map(|t| format!("{} UTC", crate::clock::human(t)))
                .unwrap_or_default(),
            h["processing_time"]
                .as_f64()
                .map(millis)
                .unwrap_or_default(),
            escape(h["worker_id"].as_str().unwrap_or("")),
            h["attempts"].as_u64().unwrap_or(1),
        );
    }
    html.push_str("</table>");
}

fn write_pager(html: &mut String, filter: &str, page: usize, pages: usize) {
    if pages <= 1 {
        return;
    }
    let link = |p: usize, text: &str| {
        format!(
            "<a href=\"?filter={}&amp;page={p}\">{text}</a>",
            form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
        )
    };
    let _ = write!(html, "<p class=\"nav\">page {} of {pages} ", page + 1);
    if page > 0 {
        html.push_str(&link(page - 1, "previous page"));
    }
    if page + 1 < pages {
        html.push_str(&link(page + 1, "next page"));
    }
    html.push_str("</p>");
}

struct Row {
    state: &'static str,
    age: Option<f64>,
    targets: Option<usize>,
    /// The last error's type and message, when it is newer than the entry.
    error: Option<(String, String)>,
    /// The path's recent runs, newest first.
    history: Vec<Value>,
}

impl Row {
    /// How long the last run took.
    fn duration(&self) -> Option<f64> {
        self.history.first()?["processing_time"].as_f64()
    }

    fn of(view: &DebugView, now: f64, cache_seconds: f64) -> Row {
        let entry = view.entry.as_ref().and_then(|b| {
            let v = EntryView::parse(b).ok()?;
            let meta = v.httpsd.as_ref();
            let targets = meta.and_then(|m| m.targets).or_else(|| {
                serde_json::from_str::<Vec<crate::model::TargetGroup>>(v.results)
                    .map(|g| g.iter().map(|g| g.targets.len()).sum())
                    .ok()
            });
            Some((v.updated_timestamp, targets))
        });
        let error = view.error.as_ref().and_then(|b| {
            let v: Value = serde_json::from_slice(b).ok()?;
            let d = &v["error_details"];
            Some((
                v["updated_timestamp"].as_f64().unwrap_or(0.0),
                d["error_type"].as_str().unwrap_or("?").to_string(),
                d["error_message"].as_str().unwrap_or("").to_string(),
            ))
        });
        let age = entry.map(|(ts, _)| now - ts);
        let error_is_newer = match (&error, entry) {
            (Some((err_ts, _, _)), Some((ts, _))) => *err_ts >= ts,
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
            history: view
                .history
                .iter()
                .filter_map(|h| serde_json::from_slice(h).ok())
                .collect(),
            targets: entry.and_then(|(_, t)| t),
            error: error
                .filter(|_| error_is_newer)
                .map(|(_, kind, message)| (kind, message)),
        }
    }
}

/// "4s", "3m 20s", "2h 5m" ago.
fn ago(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn millis(seconds: f64) -> String {
    let d = Duration::from_secs_f64(seconds.max(0.0));
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{:.2} s", seconds)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(4.2), "4s");
        assert_eq!(ago(200.0), "3m 20s");
        assert_eq!(ago(7500.0), "2h 5m");
        assert_eq!(ago(-1.0), "0s");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

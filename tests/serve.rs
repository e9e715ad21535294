//! `httpsd serve`: the same debug-guide scenarios in one process with the memory
//! store, no Redis anywhere; wait-on-miss; graceful shutdown.

mod support;

use support::scenario::{self, CACHE_SECONDS, Target};
use support::{Httpsd, eventually, get};

#[test]
fn debug_guide_scenarios_embedded() {
    let tree = scenario::tree();
    let serve = Httpsd::serve(
        tree.root(),
        &["--cache-seconds", CACHE_SECONDS, "--refresh-ahead", "0"],
    );
    let target = Target {
        port: serve.port,
        redis: None,
    };
    // Seed scenario 1: the first request is a miss (the in-process workers may finish
    // the job right after).
    let r = get(serve.port, "/targets/nodes").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json(), serde_json::json!({"error": "cache miss"}));
    scenario::walk(&target, None);
}

#[test]
fn wait_on_miss_answers_the_first_request() {
    let tree = scenario::tree();
    let serve = Httpsd::serve(tree.root(), &["--wait-on-miss", "20s"]);
    let r = get(serve.port, "/targets/nodes").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("10.1.1.11:9100"));
    // A failing path still answers 503 once the wait is over (no partial, no hang).
    let tree2 = scenario::tree();
    let short = Httpsd::serve(tree2.root(), &["--wait-on-miss", "300ms"]);
    let r = get(short.port, "/targets/broken").unwrap();
    assert_eq!(r.status, 503);
}

#[test]
fn sigterm_finishes_the_running_job_and_exits_cleanly() {
    let tree = scenario::tree();
    let mut serve = Httpsd::serve(tree.root(), &["--drain-timeout", "20s"]);
    // The slow generator runs for its 3 s timeout; SIGTERM arrives mid-run.
    assert_eq!(get(serve.port, "/targets/slow").unwrap().status, 503);
    eventually(30, "the slow job to run", || {
        let d = get(serve.port, "/targets/slow?debug=true").ok()?.json();
        (d["status"] == "processing").then_some(())
    });
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(30), Some(0));
    let logs = serve.logs();
    assert!(logs.contains("workers stopped"), "{logs}");
    assert!(
        !logs.contains("handing running jobs back"),
        "the running job had time to finish: {logs}"
    );
    let finished = serve.log_events("job finished");
    assert!(
        finished.iter().any(|e| e["full_path"] == "/targets/slow?"),
        "the running job finished before exit: {logs}"
    );
}

/// Generator-aware freshness: once a generator changes, the entry it made is stale. The
/// old answer is still served (never a 503) while a refresh is enqueued, and the new
/// targets arrive without `?reload=true` or a restart.
#[test]
fn a_changed_generator_refreshes_its_paths_without_a_reload() {
    let tree = support::Tree::new();
    let v1 = r#"[{"targets": ["10.0.0.1:9100"], "labels": {"job": "v1"}}]"#;
    let v2 = r#"[{"targets": ["10.0.0.2:9100"], "labels": {"job": "v2"}}]"#;
    tree.file("svc/hosts.json", v1);
    // Refresh-ahead off and a long cache life: only the fingerprint can cause a refresh.
    let serve = Httpsd::serve(
        tree.root(),
        &[
            "--wait-on-miss",
            "20s",
            "--cache-seconds",
            "3600",
            "--refresh-ahead",
            "0",
            "--tree-refresh",
            "200ms",
        ],
    );
    let first = get(serve.port, "/targets/svc").unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()[0]["labels"]["job"], "v1");

    tree.file("svc/hosts.json", v2);
    let mut statuses = Vec::new();
    eventually(30, "the changed generator's targets", || {
        let r = get(serve.port, "/targets/svc").ok()?;
        statuses.push(r.status);
        (r.status == 200 && r.json()[0]["labels"]["job"] == "v2").then_some(())
    });
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the old answer is served while the refresh runs: {statuses:?}"
    );
    let debug = get(serve.port, "/targets/svc?debug=true").unwrap().json();
    assert_eq!(
        debug["debug_info"]["normal_cache"]["generators"]["changed_since"], false,
        "{debug}"
    );
}

/// Refresh-ahead: a path that Prometheus keeps polling is regenerated before it
/// expires, so after its first fill it never answers a miss or an expiry.
#[test]
fn refresh_ahead_keeps_a_polled_path_fresh() {
    let tree = scenario::tree();
    let serve = Httpsd::serve(
        tree.root(),
        &[
            "--wait-on-miss",
            "20s",
            "--cache-seconds",
            "2",
            "--refresh-ahead",
            "0.5",
        ],
    );
    assert_eq!(get(serve.port, "/targets/nodes").unwrap().status, 200);
    let first_job = get(serve.port, "/targets/nodes?debug=true").unwrap().json()["debug_info"]
        ["last_run"]["job_id"]
        .clone();
    // Eight seconds of polling every 250 ms: four cache lifetimes.
    let mut statuses = Vec::new();
    for _ in 0..32 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        statuses.push(get(serve.port, "/targets/nodes").unwrap().status);
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a polled path never expires: {statuses:?}"
    );
    let debug = get(serve.port, "/targets/nodes?debug=true").unwrap().json();
    assert_ne!(
        debug["debug_info"]["last_run"]["job_id"], first_job,
        "the entry was regenerated meanwhile: {debug}"
    );
}

/// The admin page lists every path with its state, and filters.
#[test]
fn admin_page_shows_each_path_and_its_state() {
    let tree = scenario::tree();
    let serve = Httpsd::serve(tree.root(), &["--wait-on-miss", "20s"]);
    assert_eq!(get(serve.port, "/targets/nodes").unwrap().status, 200);
    assert_eq!(get(serve.port, "/targets/broken").unwrap().status, 503);
    eventually(30, "the broken path's error", || {
        let d = get(serve.port, "/targets/broken?debug=true").ok()?.json();
        d["debug_info"]["error_details"].is_object().then_some(())
    });
    let page = get(serve.port, "/").unwrap();
    assert_eq!(page.status, 200);
    let html = page.text();
    let row = |path: &str| -> String {
        let start = html
            .find(&format!("<tr class=\"path\" data-path=\"{path}\""))
            .unwrap_or_else(|| panic!("{path} is listed: {html}"));
        let end = html[start..]
            .find("</tr>")
            .map_or(html.len(), |e| start + e);
        html[start..end].to_string()
    };
    let nodes = row("/targets/nodes");
    assert!(nodes.contains("data-state=\"fresh\""), "{nodes}");
    assert!(nodes.contains("<td>9</td>"), "its target count: {nodes}");
    let broken = row("/targets/broken");
    assert!(broken.contains("data-state=\"error\""), "{broken}");
    assert!(broken.contains("GeneratorError"), "{broken}");
    assert!(broken.contains("/targets/broken?debug=true"), "{broken}");
    assert!(
        row("/targets/slow").contains("data-state=\"never\""),
        "{html}"
    );
    // Under each run path: its generators with their limits, and its run history.
    let detail_start = html
        .find("<tr class=\"detail\" data-path=\"/targets/nodes\"")
        .expect("a detail row for nodes");
    let detail = &html[detail_start..];
    let detail = &detail[..detail.find("</details>").unwrap_or(detail.len())];
    assert!(detail.contains("nodes/static-nodes.wasm"), "{detail}");
    assert!(
        detail.contains("10000000000 · 10s · 256 MiB"),
        "the limits it ran under: {detail}"
    );
    assert!(detail.contains("9 targets"), "the run history: {detail}");

    // A reload from the admin page's button, then the cooldown shows on the page.
    let reload = get(serve.port, "/targets/nodes?reload=true").unwrap();
    assert_eq!(reload.json()["status"], "reload_initiated");
    let again = get(serve.port, "/targets/nodes?reload=true").unwrap();
    assert_eq!(again.status, 429, "{}", again.text());
    assert_eq!(again.json()["error"], "reload cooldown");
    assert!(again.header("retry-after").is_some());
    let html = get(serve.port, "/").unwrap().text();
    let start = html
        .find("<tr class=\"path\" data-path=\"/targets/nodes\"")
        .expect("nodes listed");
    let nodes = &html[start..start + html[start..].find("</tr>").unwrap_or(0)];
    assert!(
        nodes.contains("<button disabled"),
        "the reload button waits out the cooldown: {nodes}"
    );

    let filtered = get(serve.port, "/?filter=node").unwrap().text();
    assert!(filtered.contains(">/targets/nodes</a>"), "{filtered}");
    assert!(!filtered.contains(">/targets/broken</a>"), "{filtered}");
}

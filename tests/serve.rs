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

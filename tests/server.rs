//! `httpsd server` + `httpsd worker` over a real Redis: the debug guide's scenarios,
//! with the Redis keys of the wire format asserted along the way; the URL prefix; a
//! server that starts before Redis and one that outlives a Redis restart.

mod support;

use support::scenario::{self, CACHE_SECONDS, Target};
use support::{Httpsd, RedisServer, eventually, get};

#[test]
fn debug_guide_scenarios_over_redis() {
    let redis = RedisServer::start();
    let tree = scenario::tree();
    let server = Httpsd::server(
        tree.root(),
        &redis.url(),
        &["--cache-seconds", CACHE_SECONDS, "--refresh-ahead", "0"],
    );
    let target = Target {
        port: server.port,
        redis: Some(&redis),
    };
    // No worker yet: the first request's job waits in the queue, observable.
    scenario::first_request_before_workers(&target);
    let worker = Httpsd::worker(tree.root(), &redis.url(), &["--num-workers", "2"]);
    scenario::walk(&target, Some(worker.port));
}

#[test]
fn url_prefix_applies_to_every_route() {
    let redis = RedisServer::start();
    let tree = scenario::tree();
    let server = Httpsd::server(tree.root(), &redis.url(), &["--url_prefix", "/sd/"]);
    let _worker = Httpsd::worker(tree.root(), &redis.url(), &["--worker-id", "w-prefix"]);
    let r = get(server.port, "/sd/targets/nodes").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    let r = eventually(60, "a 200 under the prefix", || {
        get(server.port, "/sd/targets/nodes")
            .ok()
            .filter(|r| r.status == 200)
    });
    assert!(r.text().contains("10.1.1.11:9100"));
    // The job carries no prefix: full_path is the same for every server.
    assert!(redis.get("/targets/nodes?").is_some());
    assert_eq!(get(server.port, "/targets/nodes").unwrap().status, 404);
    assert_eq!(get(server.port, "/sd/metrics").unwrap().status, 200);
    assert_eq!(get(server.port, "/sd/").unwrap().status, 200);
    let debug = get(server.port, "/sd/targets/nodes?debug=true")
        .unwrap()
        .json();
    assert_eq!(debug["debug_info"]["last_run"]["worker_id"], "w-prefix");
}

#[test]
fn server_and_worker_ride_out_a_redis_restart() {
    let mut redis = RedisServer::start();
    let tree = scenario::tree();
    let server = Httpsd::server(tree.root(), &redis.url(), &["--redis-timeout", "500ms"]);
    let worker = Httpsd::worker(tree.root(), &redis.url(), &["--num-workers", "1"]);
    eventually(60, "a first 200", || {
        get(server.port, "/targets/nodes")
            .ok()
            .filter(|r| r.status == 200)
    });
    assert_eq!(get(server.port, "/readyz").unwrap().status, 200);

    redis.stop();
    // During the outage: quick JSON 503s, not hangs, and readiness says so.
    let r = get(server.port, "/targets/nodes").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "store unavailable");
    assert_eq!(get(server.port, "/readyz").unwrap().status, 503);

    // Redis comes back empty (it keeps nothing on disk); neither process restarts.
    redis.restart();
    eventually(60, "a 200 after Redis returned", || {
        let r = get(server.port, "/targets/nodes").ok()?;
        (r.status == 200).then_some(())
    });
    assert_eq!(get(server.port, "/readyz").unwrap().status, 200);
    assert!(
        worker.logs().contains("cannot take jobs"),
        "the worker logs the outage instead of swallowing it"
    );
}

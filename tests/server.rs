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

    // Load throughout: 4 clients polling the path, recording each answer's status and
    // time (the figures go to docs/FAULTS.md; only the statuses are asserted).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = server.port;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = std::time::Instant::now();
                    let status = get(port, "/targets/nodes").map_or(0, |r| r.status);
                    seen.push((std::time::Instant::now(), status, t.elapsed()));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));

    redis.stop();
    let down = std::time::Instant::now();
    // During the outage: quick JSON 503s, not hangs, and readiness says so.
    let r = get(server.port, "/targets/nodes").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "store unavailable");
    assert_eq!(get(server.port, "/readyz").unwrap().status, 503);
    std::thread::sleep(std::time::Duration::from_secs(2));

    // Redis comes back empty (it keeps nothing on disk); neither process restarts.
    redis.restart();
    let up = std::time::Instant::now();
    eventually(60, "a 200 after Redis returned", || {
        let r = get(server.port, "/targets/nodes").ok()?;
        (r.status == 200).then_some(())
    });
    let back = up.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        seen.iter().all(|(_, s, _)| [200, 503].contains(s)),
        "every answer during the outage was a 200 or a JSON 503"
    );
    let mut outage: Vec<_> = seen
        .iter()
        .filter(|(at, _, _)| *at > down && *at < up)
        .map(|(_, _, took)| *took)
        .collect();
    outage.sort();
    assert!(!outage.is_empty());
    eprintln!(
        "OUTAGE: {} answers under load while Redis was down ({:.1} s), all 503; p50 {:.1} ms, max {:.1} ms; \
         first 200 {:.2} s after Redis returned (empty), no restart of server or worker; {} answers in all",
        outage.len(),
        (up - down).as_secs_f64(),
        outage[outage.len() / 2].as_secs_f64() * 1e3,
        outage[outage.len() - 1].as_secs_f64() * 1e3,
        back.as_secs_f64(),
        seen.len()
    );
    assert_eq!(get(server.port, "/readyz").unwrap().status, 200);
    assert!(
        worker.logs().contains("cannot take jobs"),
        "the worker logs the outage instead of swallowing it"
    );
}

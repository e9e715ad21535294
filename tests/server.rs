//! `httpsd server` + `httpsd worker` over a real Redis: the debug guide's scenarios,
//! with the Redis keys of the wire format asserted along the way; the URL prefix; a
//! server that starts before Redis and one that outlives a Redis restart.

mod support;

use support::certs::{Certs, s};
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
    // During the outage: quick JSON 503s, not hangs, and readiness says so. (For the
    // moment it takes the server to see its invalidation subscription drop, the local
    // cache may still answer with its copy, which is as fresh as a hit.)
    let r = eventually(5, "a 503 once Redis is gone", || {
        get(server.port, "/targets/nodes")
            .ok()
            .filter(|r| r.status == 503)
    });
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
    let local_answers = seen
        .iter()
        .filter(|(at, status, _)| *at > down && *at < up && *status == 200)
        .count();
    outage.sort();
    assert!(!outage.is_empty());
    eprintln!(
        "OUTAGE: {} answers under load while Redis was down ({:.1} s), all 503 but {local_answers} from the local cache \
         before its subscription dropped; p50 {:.1} ms, max {:.1} ms; \
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

/// The ACL user of docs/REDIS.md, as the `ACL SETUSER` arguments of its ACL-file line,
/// with `password` in place of the placeholder: the test runs the documented user.
fn documented_acl_user(password: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(support::repo().join("docs/REDIS.md")).unwrap();
    let line = doc
        .lines()
        .find(|l| l.starts_with("user httpsd on "))
        .expect("docs/REDIS.md has the ACL-file line of the httpsd user");
    line.split_whitespace()
        .skip(1)
        .map(|w| w.replace("REPLACE-WITH-A-LONG-PASSWORD", password))
        .collect()
}

#[test]
fn a_fleet_over_rediss_as_the_documented_acl_user() {
    let certs = Certs::new();
    let redis = RedisServer::start_secured(&certs);
    let password = "httpsd-pw-8c41e";
    let setuser: Vec<String> = ["ACL", "SETUSER"]
        .into_iter()
        .map(String::from)
        .chain(documented_acl_user(password))
        .collect();
    let args: Vec<&str> = setuser.iter().map(String::as_str).collect();
    redis.cmd::<()>(&args);

    let url = redis.url_as("httpsd", password);
    let ca = s(&certs.ca);
    // Refused clearly, without a restart loop or a leaked password: a wrong password,
    // a CA that is not trusted (the system roots do not know ours), plain redis:// to
    // the TLS port, and a CA file with a plain URL.
    let tree = scenario::tree();
    let refusals = [
        (
            redis.url_as("httpsd", "wrong-pw-0"),
            Some(ca),
            "AuthenticationFailed",
        ),
        (url.clone(), None, "certificate"),
        (url.replacen("rediss://", "redis://", 1), None, ""),
    ];
    for (bad_url, ca_arg, expected) in &refusals {
        let mut extra = vec!["--redis-timeout", "500ms"];
        if let Some(ca) = ca_arg {
            extra.extend(["--redis-ca", ca]);
        }
        let server = Httpsd::server(tree.root(), bad_url, &extra);
        let r = get(server.port, "/readyz").unwrap();
        assert_eq!(r.status, 503, "{bad_url}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(expected), "{bad_url}: {error}");
        let r = get(server.port, "/targets/nodes").unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["error"], "store unavailable");
        assert!(!server.logs().contains("wrong-pw-0"), "{}", server.logs());
    }
    let mut misconfigured = Httpsd::start(&[
        "server",
        s(tree.root()),
        "--redis-url",
        &redis.url().replacen("rediss://", "redis://", 1),
        "--redis-ca",
        ca,
    ]);
    assert_ne!(misconfigured.wait_exit(30), Some(0));
    assert!(
        misconfigured.logs().contains("need a rediss:// URL"),
        "{}",
        misconfigured.logs()
    );

    // The wrong password left its failed logins in ACL LOG; from here on it must stay
    // empty. The debug guide's walk-through, over TLS as the least-privileged user:
    redis.cmd::<()>(&["ACL", "LOG", "RESET"]);
    let server = Httpsd::server(
        tree.root(),
        &url,
        &[
            "--redis-ca",
            ca,
            "--cache-seconds",
            CACHE_SECONDS,
            "--refresh-ahead",
            "0",
        ],
    );
    assert_eq!(get(server.port, "/readyz").unwrap().status, 200);
    let target = Target {
        port: server.port,
        redis: Some(&redis),
    };
    scenario::first_request_before_workers(&target);
    let worker = Httpsd::worker(tree.root(), &url, &["--num-workers", "2", "--redis-ca", ca]);
    scenario::walk(&target, Some(worker.port));
    // Everything they sent was allowed to the documented user, and its password
    // appears in no log.
    let denied: Vec<redis::Value> = redis.cmd(&["ACL", "LOG"]);
    assert!(denied.is_empty(), "ACL LOG: {denied:?}");
    for p in [&server, &worker] {
        assert!(!p.logs().contains(password));
    }
}

#[test]
fn local_caches_stay_coherent_across_servers() {
    let mut redis = RedisServer::start();
    let tree = support::Tree::new();
    let v1 = r#"[{"targets": ["10.0.0.1:9100"], "labels": {"v": "1"}}]"#;
    let v2 = r#"[{"targets": ["10.0.0.2:9100"], "labels": {"v": "2"}}]"#;
    let file = tree.file("svc/list.json", v1);
    // An hour of local caching: only an invalidation can make a server drop its copy.
    let flags = [
        "--local-cache",
        "1h",
        "--reload-cooldown",
        "0",
        "--redis-timeout",
        "500ms",
    ];
    let a = Httpsd::server(tree.root(), &redis.url(), &flags);
    let b = Httpsd::server(tree.root(), &redis.url(), &flags);
    let _worker = Httpsd::worker(tree.root(), &redis.url(), &["--num-workers", "1"]);
    let serves = |port: u16, version: &str| {
        get(port, "/targets/svc")
            .ok()
            .is_some_and(|r| r.status == 200 && r.text().contains(&format!("\"v\":\"{version}\"")))
    };
    for s in [&a, &b] {
        eventually(60, "v1", || serves(s.port, "1").then_some(()));
        // Polled again: now from the local cache.
        assert!(serves(s.port, "1"));
    }
    let local_hits = |s: &Httpsd| {
        get(s.port, "/metrics")
            .unwrap()
            .text()
            .lines()
            .find_map(|l| l.strip_prefix("httpsd_local_cache_hits_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(local_hits(&b) >= 1.0, "b answered from its local cache");

    // A new answer, reloaded through A: B drops its copy as soon as the worker writes
    // (or the reload deletes), not an hour later.
    std::fs::write(&file, v2).unwrap();
    let r = get(a.port, "/targets/svc?reload=true").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(60, "A to serve v2", || serves(a.port, "2").then_some(()));
    eventually(5, "B to serve v2", || serves(b.port, "2").then_some(()));

    // While Redis is away, nothing is served from the local cache (invalidations could
    // be missed): a JSON 503, not the kept copy.
    redis.stop();
    eventually(10, "B to stop serving its copy", || {
        let r = get(b.port, "/targets/svc").ok()?;
        (r.status == 503).then_some(())
    });
    // Redis comes back empty; the path is generated again and served.
    redis.restart();
    eventually(60, "B to serve v2 again", || {
        serves(b.port, "2").then_some(())
    });
}

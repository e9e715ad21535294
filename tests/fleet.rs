//! A fleet on one Redis: several servers and worker processes. Consistent answers, at
//! most one job per path at a time, and no job lost to a SIGKILL or a SIGTERM.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::{Httpsd, RedisServer, Tree, eventually, get};

fn debug(port: u16, path: &str) -> Value {
    get(port, &format!("{path}?debug=true")).unwrap().json()
}

#[test]
fn two_servers_three_workers_consistent_and_never_twice_at_once() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    tree.wasm("nodes/static-nodes.wasm", "static-nodes");
    tree.wasm("cpu/bench.wasm", "bench-cpu");
    let flags = ["--cache-seconds", "1", "--refresh-ahead", "0"];
    let servers = [
        Httpsd::server(tree.root(), &redis.url(), &flags),
        Httpsd::server(tree.root(), &redis.url(), &flags),
    ];
    let workers: Vec<Httpsd> = (0..3)
        .map(|_| Httpsd::worker(tree.root(), &redis.url(), &["--num-workers", "2"]))
        .collect();

    // Both servers answer the same targets.
    let bodies: Vec<String> = servers
        .iter()
        .map(|s| {
            eventually(60, "a 200 from each server", || {
                get(s.port, "/targets/nodes")
                    .ok()
                    .filter(|r| r.status == 200)
            })
            .text()
        })
        .collect();
    assert_eq!(bodies[0], bodies[1]);

    // Every cpu path answered once: the component is compiled (slow in a debug build)
    // before the clock starts.
    let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    for k in 0..4 {
        eventually(120, "a first 200 for each cpu path", || {
            let r = get(ports[k % 2], &format!("/targets/cpu?n=30000000&k={k}")).ok()?;
            (r.status == 200).then_some(())
        });
    }

    // Four clients poll four CPU-heavy paths through both servers for a few seconds;
    // every path expires each second, so both servers keep enqueueing refreshes.
    let deadline = Instant::now() + Duration::from_secs(8);
    std::thread::scope(|scope| {
        for client in 0..4 {
            let ports = &ports;
            scope.spawn(move || {
                let mut i = 0;
                while Instant::now() < deadline {
                    let port = ports[(client + i) % 2];
                    let k = i % 4;
                    let r = get(port, &format!("/targets/cpu?n=30000000&k={k}")).unwrap();
                    assert!(r.status == 200 || r.status == 503, "{}", r.text());
                    i += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });

    // Line up every job's run from all workers' logs: per path, never two at once.
    let mut runs: BTreeMap<String, Vec<(f64, f64, String)>> = BTreeMap::new();
    for w in &workers {
        for e in w.log_events("job finished") {
            runs.entry(e["full_path"].as_str().unwrap().to_string())
                .or_default()
                .push((
                    e["started"].as_f64().unwrap(),
                    e["finished"].as_f64().unwrap(),
                    e["worker_id"].as_str().unwrap().to_string(),
                ));
        }
    }
    let cpu_runs: usize = runs
        .iter()
        .filter(|(p, _)| p.starts_with("/targets/cpu"))
        .map(|(_, r)| r.len())
        .sum();
    assert!(
        cpu_runs >= 8,
        "expected refreshes of the cpu paths, got {runs:?}"
    );
    let mut workers_used = BTreeSet::new();
    for (path, mut list) in runs {
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in list.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "{path} ran twice at once: {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
        workers_used.extend(list.into_iter().map(|r| r.2));
    }
    assert!(
        workers_used.len() >= 2,
        "one worker did everything: {workers_used:?}"
    );

    // And the two servers still agree.
    for k in 0..4 {
        let target = format!("/targets/cpu?n=30000000&k={k}");
        let a = eventually(30, "a 200 from server 1", || {
            get(ports[0], &target).ok().filter(|r| r.status == 200)
        });
        let b = eventually(30, "a 200 from server 2", || {
            get(ports[1], &target).ok().filter(|r| r.status == 200)
        });
        assert_eq!(a.json(), b.json());
    }
}

/// A tree whose one path sleeps until its 4 s wall clock stops it.
fn slow_tree() -> Tree {
    let tree = Tree::new();
    tree.wasm("slow/wait.wasm", "fixture-sleep-loop");
    tree.file("slow/wait.toml", "[limits]\ntimeout = \"4s\"\n");
    tree
}

/// Waits until a worker runs /targets/slow and returns its id.
fn running_worker(port: u16) -> String {
    let d = eventually(30, "a worker to run the slow job", || {
        let d = debug(port, "/targets/slow");
        (d["status"] == "processing").then_some(d)
    });
    d["job"]["worker_id"].as_str().unwrap().to_string()
}

#[test]
fn sigkilled_worker_does_not_lose_its_job() {
    let redis = RedisServer::start();
    let tree = slow_tree();
    let server = Httpsd::server(tree.root(), &redis.url(), &[]);
    let lease = ["--job-lease", "1s"];
    let mut workers: BTreeMap<String, Httpsd> = ["wA", "wB"]
        .into_iter()
        .map(|id| {
            let mut args = vec!["--worker-id", id];
            args.extend(lease);
            (
                id.to_string(),
                Httpsd::worker(tree.root(), &redis.url(), &args),
            )
        })
        .collect();

    assert_eq!(get(server.port, "/targets/slow").unwrap().status, 503);
    let victim = running_worker(server.port);
    let mut killed = workers.remove(&victim).unwrap();
    killed.signal("KILL");
    killed.wait_exit(10);
    let (survivor_id, survivor) = workers.into_iter().next().unwrap();

    // The lease runs out, the survivor's reaper requeues, the survivor runs it to its
    // end (the timeout): the job was not lost, and it was counted as a second attempt.
    let d = eventually(60, "the job to be finished by the survivor", || {
        let d = debug(server.port, "/targets/slow");
        d["debug_info"]["error_details"].is_object().then_some(d)
    });
    let err = &d["debug_info"]["error_details"];
    assert_eq!(err["error_type"], "TimeoutError", "{d}");
    assert_eq!(err["worker_id"], survivor_id.as_str());
    assert_eq!(d["debug_info"]["last_run"]["attempts"], 2, "{d}");
    eventually(10, "the lists to empty", || {
        let q: i64 = redis.cmd(&["LLEN", "target_generation_queue"]);
        let p: i64 = redis.cmd(&["LLEN", "target_generation_queue:processing"]);
        (q == 0 && p == 0).then_some(())
    });
    let metrics = get(survivor.port, "/metrics").unwrap().text();
    assert!(
        metrics.contains(&format!(
            "httpsd_jobs_requeued_total{{worker_id=\"{survivor_id}\"}} 1"
        )),
        "{metrics}"
    );
}

#[test]
fn a_job_that_keeps_losing_its_worker_is_given_up_after_max_attempts() {
    let redis = RedisServer::start();
    let tree = slow_tree();
    let server = Httpsd::server(tree.root(), &redis.url(), &[]);
    let args = ["--job-lease", "1s", "--max-attempts", "1"];
    let mut first = Httpsd::worker(tree.root(), &redis.url(), &args);
    assert_eq!(get(server.port, "/targets/slow").unwrap().status, 503);
    running_worker(server.port);
    first.signal("KILL");
    first.wait_exit(10);

    let _second = Httpsd::worker(tree.root(), &redis.url(), &args);
    let d = eventually(60, "the job to be given up", || {
        let d = debug(server.port, "/targets/slow");
        d["debug_info"]["error_details"].is_object().then_some(d)
    });
    let err = &d["debug_info"]["error_details"];
    assert_eq!(err["error_type"], "WorkerLostError", "{d}");
    assert!(
        err["error_message"]
            .as_str()
            .unwrap()
            .contains("after 1 attempts"),
        "{err}"
    );
}

#[test]
fn sigterm_hands_back_a_job_it_cannot_finish_in_time() {
    let redis = RedisServer::start();
    let tree = slow_tree();
    let server = Httpsd::server(tree.root(), &redis.url(), &[]);
    let mut leaving = Httpsd::worker(
        tree.root(),
        &redis.url(),
        &["--worker-id", "leaving", "--drain-timeout", "500ms"],
    );
    assert_eq!(get(server.port, "/targets/slow").unwrap().status, 503);
    assert_eq!(running_worker(server.port), "leaving");
    leaving.signal("TERM");
    assert_eq!(leaving.wait_exit(20), Some(0));
    assert!(leaving.logs().contains("handing running jobs back"));
    // Handed back, it is at the head of the queue, not counted as an attempt.
    let q: i64 = redis.cmd(&["LLEN", "target_generation_queue"]);
    assert_eq!(q, 1);

    let _next = Httpsd::worker(tree.root(), &redis.url(), &["--worker-id", "next"]);
    let d = eventually(60, "the next worker to finish it", || {
        let d = debug(server.port, "/targets/slow");
        d["debug_info"]["error_details"].is_object().then_some(d)
    });
    assert_eq!(d["debug_info"]["error_details"]["worker_id"], "next");
    assert_eq!(d["debug_info"]["last_run"]["attempts"], 1, "{d}");
}

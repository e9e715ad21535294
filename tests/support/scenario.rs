//! The debug guide's scenarios (seed 001) as one walk-through, run against a real
//! server: first request, processing, success, failure, expired, the hard-reload
//! workflow, plus unknown paths and metrics. `tests/server.rs` runs it on `httpsd
//! server` + `httpsd worker` over Redis (and also asserts the Redis keys);
//! `tests/serve.rs` runs it on `httpsd serve`.

use super::{RedisServer, Tree, eventually, get};
use serde_json::{Value, json};

/// The cache lifetime the walk-through's server must run with (`--cache-seconds`),
/// with `--refresh-ahead 0` so that expiry is observable.
pub const CACHE_SECONDS: &str = "4";

/// nodes/ (an example), broken/ (returns its error), slow/ (sleeps past a 3 s
/// timeout), mixed/ (a good static file and a failing generator).
pub fn tree() -> Tree {
    let t = Tree::new();
    t.wasm("nodes/static-nodes.wasm", "static-nodes");
    t.wasm("broken/inventory.wasm", "fixture-returns-error");
    t.wasm("slow/wait.wasm", "fixture-sleep-loop");
    t.file("slow/wait.toml", "[limits]\ntimeout = \"3s\"\n");
    t.file(
        "mixed/good.json",
        r#"[{"targets": ["10.0.0.1:9100"], "labels": {"job": "good"}}]"#,
    );
    t.wasm("mixed/bad.wasm", "fixture-returns-error");
    t
}

/// Where the walk-through runs.
pub struct Target<'a> {
    /// The HTTP port of the server (or of `httpsd serve`).
    pub port: u16,
    /// The Redis of the fleet: its keys are asserted too.
    pub redis: Option<&'a RedisServer>,
}

fn get_json(port: u16, target: &str) -> (u16, Value) {
    let r = get(port, target).unwrap_or_else(|e| panic!("GET {target}: {e}"));
    (r.status, r.json())
}

fn redis_json(redis: &RedisServer, key: &str) -> Option<Value> {
    redis.get(key).map(|s| {
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("{key} is not JSON ({e}): {s}"))
    })
}

/// What static-nodes returns.
fn assert_static_nodes(results: &Value) {
    let groups = results.as_array().expect("an array of target groups");
    assert_eq!(groups.len(), 3, "{results}");
    assert_eq!(
        groups[0],
        json!({"targets": ["10.1.1.11:9100", "10.1.1.12:9100", "10.1.1.13:9100"],
               "labels": {"job": "node", "dc": "fra1", "rack": "r01"}})
    );
    let targets: usize = groups
        .iter()
        .map(|g| g["targets"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(targets, 9);
}

/// Seed scenario 1, before any worker runs: a miss enqueues exactly one job.
pub fn first_request_before_workers(t: &Target) {
    let r = get(t.port, "/targets/nodes").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json(), json!({"error": "cache miss"}));
    assert!(r.header("retry-after").is_some());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let (status, again) = get_json(t.port, "/targets/nodes");
    assert_eq!((status, again), (503, json!({"error": "cache miss"})));

    let (_, debug) = get_json(t.port, "/targets/nodes?debug=true");
    assert_eq!(debug["status"], "no_debug_info", "{debug}");
    assert_eq!(debug["requested_path"], "/targets/nodes");
    assert!(
        debug["message"]
            .as_str()
            .unwrap()
            .contains("No error information")
    );
    assert_eq!(debug["job"]["state"], "queued", "{debug}");

    if let Some(redis) = t.redis {
        let queue: Vec<String> = redis.cmd(&["LRANGE", "target_generation_queue", "0", "-1"]);
        assert_eq!(queue.len(), 1, "two misses, one job: {queue:?}");
        let job: Value = serde_json::from_str(&queue[0]).unwrap();
        assert_eq!(job["full_path"], "/targets/nodes?");
        assert_eq!(job["path"], "nodes");
        assert_eq!(job["extra_args"], json!({}));
        assert!(
            job["job_id"]
                .as_str()
                .unwrap()
                .starts_with("/targets/nodes?:")
        );
        assert!(redis.get("/targets/nodes?").is_none());
    }
}

/// Everything after the workers are up.
pub fn walk(t: &Target, worker_metrics_port: Option<u16>) {
    success(t);
    processing_then_timeout(t);
    failure(t);
    all_or_nothing(t);
    expired(t);
    hard_reload(t);
    unknown_and_malformed(t);
    metrics(t, worker_metrics_port);
}

/// Seed scenario 3: the answer is the generator's, cached as the wire format says.
fn success(t: &Target) {
    let r = eventually(60, "/targets/nodes to answer 200", || {
        get(t.port, "/targets/nodes")
            .ok()
            .filter(|r| r.status == 200)
    });
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_static_nodes(&body);

    let (_, debug) = get_json(t.port, "/targets/nodes?debug=true");
    let normal = &debug["debug_info"]["normal_cache"];
    assert_eq!(debug["requested_path"], "/targets/nodes");
    assert_eq!(normal["status"], "success", "{debug}");
    assert_eq!(normal["results"], body);
    let age = normal["cache_age_seconds"].as_str().unwrap();
    assert!(age.ends_with("s ago") && age.contains('.'), "{age}");
    assert!(normal["updated_timestamp"].as_str().unwrap().contains('T'));
    assert_eq!(normal["expired"], false);
    let run = &debug["debug_info"]["last_run"];
    let gen0 = &run["generators"][0];
    assert_eq!(gen0["generator"], "nodes/static-nodes.wasm", "{run}");
    assert!(gen0["fuel_used"].as_u64().unwrap() > 0);
    assert!(gen0["duration"].as_f64().unwrap() > 0.0);
    assert_eq!(gen0["targets"], 9);
    assert!(!run["worker_id"].as_str().unwrap().is_empty());

    if let Some(redis) = t.redis {
        let entry = redis_json(redis, "/targets/nodes?").expect("the cache entry");
        assert_eq!(entry["results"], body);
        let ts = entry["updated_timestamp"].as_f64().unwrap();
        assert!(ts > 1.7e9, "unix seconds: {ts}");
        assert!(redis.get("error:/targets/nodes?").is_none());
        let ttl: i64 = redis.cmd(&["TTL", "/targets/nodes?"]);
        assert!(ttl > 4, "the entry outlives --cache-seconds: {ttl}");
        eventually(10, "the processing list to empty", || {
            (redis.cmd::<i64>(&["LLEN", "target_generation_queue:processing"]) == 0).then_some(())
        });
    }

    // Parameters are part of the cache key and reach the generator.
    eventually(60, "/targets/nodes?env=prod to answer 200", || {
        get(t.port, "/targets/nodes?env=prod")
            .ok()
            .filter(|r| r.status == 200)
    });
    if let Some(redis) = t.redis {
        assert!(redis.get("/targets/nodes?env=prod").is_some());
    }
}

/// Seed scenario 2: while a worker runs the job, debug says processing and who.
fn processing_then_timeout(t: &Target) {
    let (status, body) = get_json(t.port, "/targets/slow");
    assert_eq!((status, body), (503, json!({"error": "cache miss"})));
    let debug = eventually(30, "debug to show the job processing", || {
        let (_, d) = get_json(t.port, "/targets/slow?debug=true");
        (d["status"] == "processing").then_some(d)
    });
    assert_eq!(debug["job"]["state"], "running");
    let worker = debug["job"]["worker_id"].as_str().unwrap().to_string();
    assert!(!worker.is_empty());
    assert!(debug["message"].as_str().unwrap().contains(&worker));
    assert!(debug["suggestion"].as_str().unwrap().contains("debug=true"));

    // The sleep is stopped by the 3 s wall clock, with the guest's traceback.
    let debug = eventually(30, "the timeout to be cached", || {
        let (_, d) = get_json(t.port, "/targets/slow?debug=true");
        d["debug_info"]["error_details"].is_object().then_some(d)
    });
    let err = &debug["debug_info"]["error_details"];
    assert_eq!(err["error_type"], "TimeoutError", "{debug}");
    assert!(
        err["error_message"]
            .as_str()
            .unwrap()
            .contains("wall clock 3s"),
        "{err}"
    );
    let tb = err["traceback"].as_str().unwrap();
    assert!(tb.starts_with("Traceback (most recent call last):"), "{tb}");
    assert!(tb.contains("wait_for_inventory"), "{tb}");
    assert_eq!(err["worker_id"], worker.as_str());
    let (status, body) = get_json(t.port, "/targets/slow");
    assert_eq!((status, body), (503, json!({"error": "cache miss"})));
}

/// Seed scenario 4: a failing generator's error is cached with its details.
fn failure(t: &Target) {
    let (status, _) = get_json(t.port, "/targets/broken");
    assert_eq!(status, 503);
    let debug = eventually(30, "the error to be cached", || {
        let (_, d) = get_json(t.port, "/targets/broken?debug=true");
        d["debug_info"]["error_details"].is_object().then_some(d)
    });
    let err = &debug["debug_info"]["error_details"];
    assert_eq!(err["error_type"], "GeneratorError");
    assert_eq!(
        err["error_message"],
        "inventory cmdb unavailable: 503 from upstream"
    );
    assert!(
        err["traceback"]
            .as_str()
            .unwrap()
            .starts_with("Traceback (most recent call last):")
    );
    assert_eq!(err["full_path"], "/targets/broken?");
    assert_eq!(err["generator"], "broken/inventory.wasm");
    let human = err["timestamp_human"].as_str().unwrap();
    assert_eq!(human.len(), 19, "{human}");
    assert!(debug["debug_info"].get("normal_cache").is_none());
    let (status, body) = get_json(t.port, "/targets/broken");
    assert_eq!((status, body), (503, json!({"error": "cache miss"})));

    if let Some(redis) = t.redis {
        let e = redis_json(redis, "error:/targets/broken?").expect("the error entry");
        assert_eq!(e["status"], "error");
        assert!(e["updated_timestamp"].as_f64().unwrap() > 1.7e9);
        let d = &e["error_details"];
        for field in [
            "error_type",
            "error_message",
            "traceback",
            "worker_id",
            "job_id",
            "path",
            "extra_args",
            "timestamp",
            "processing_time",
        ] {
            assert!(d.get(field).is_some(), "error_details lacks {field}: {d}");
        }
        assert_eq!(d["path"], "broken");
        assert!(d["timestamp"].as_str().unwrap().contains('T'));
        assert!(d["processing_time"].as_f64().unwrap() >= 0.0);
        let ttl: i64 = redis.cmd(&["TTL", "error:/targets/broken?"]);
        assert!((3500..=3600).contains(&ttl), "error TTL {ttl}");
        assert!(redis.get("/targets/broken?").is_none());
    }
}

/// One failing generator fails the whole path: never a 200 with part of the targets.
fn all_or_nothing(t: &Target) {
    let (status, _) = get_json(t.port, "/targets/mixed");
    assert_eq!(status, 503);
    let debug = eventually(30, "mixed's error to be cached", || {
        let (_, d) = get_json(t.port, "/targets/mixed?debug=true");
        d["debug_info"]["error_details"].is_object().then_some(d)
    });
    assert_eq!(
        debug["debug_info"]["error_details"]["generator"],
        "mixed/bad.wasm"
    );
    for _ in 0..5 {
        let r = get(t.port, "/targets/mixed").unwrap();
        assert_eq!(r.status, 503, "partial targets served: {}", r.text());
    }
    if let Some(redis) = t.redis {
        assert!(redis.get("/targets/mixed?").is_none());
    }
}

/// Seed scenario 5: an entry older than --cache-seconds answers "cache expired", debug
/// still shows it, and a refresh replaces it.
fn expired(t: &Target) {
    let (_, debug) = get_json(t.port, "/targets/nodes?debug=true");
    let before = debug["debug_info"]["normal_cache"]["updated_timestamp"].clone();
    eventually(30, "the nodes entry to expire", || {
        let (_, d) = get_json(t.port, "/targets/nodes?debug=true");
        (d["debug_info"]["normal_cache"]["expired"] == true).then_some(())
    });
    let (status, body) = get_json(t.port, "/targets/nodes");
    // Right after the expired answer a worker may already have refreshed it.
    if status == 503 {
        assert_eq!(body, json!({"error": "cache expired"}));
    } else {
        assert_eq!(status, 200);
    }
    let (_, debug) = get_json(t.port, "/targets/nodes?debug=true");
    assert!(debug["debug_info"]["normal_cache"]["cache_age_seconds"].is_string());
    let after = eventually(30, "the expired entry to be refreshed", || {
        let (_, d) = get_json(t.port, "/targets/nodes?debug=true");
        let ts = d["debug_info"]["normal_cache"]["updated_timestamp"].clone();
        (ts != before && d["debug_info"]["normal_cache"]["expired"] == false).then_some(ts)
    });
    assert_ne!(after, before);
    let r = get(t.port, "/targets/nodes").unwrap();
    assert_eq!(r.status, 200);
    assert_static_nodes(&r.json());
}

/// The hard-reload workflow: clear, enqueue, fresh targets.
fn hard_reload(t: &Target) {
    let (_, debug) = get_json(t.port, "/targets/nodes?debug=true");
    let before = debug["debug_info"]["normal_cache"]["updated_timestamp"].clone();
    let (status, r) = get_json(t.port, "/targets/nodes?reload=true");
    assert_eq!(status, 200);
    assert_eq!(r["status"], "reload_initiated");
    assert_eq!(r["path"], "/targets/nodes?");
    assert_eq!(r["cache_cleared"], true);
    assert_eq!(r["error_cache_cleared"], false);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("without ?reload=true")
    );
    let after = eventually(30, "fresh targets after the reload", || {
        let (_, d) = get_json(t.port, "/targets/nodes?debug=true");
        let ts = d["debug_info"]["normal_cache"]["updated_timestamp"].clone();
        (ts.is_string() && ts != before).then_some(ts)
    });
    assert_ne!(after, before);
    let r = eventually(10, "a 200 after the reload", || {
        get(t.port, "/targets/nodes")
            .ok()
            .filter(|r| r.status == 200)
    });
    assert_static_nodes(&r.json());

    // Reloading a failed path clears its error.
    let (_, r) = get_json(t.port, "/targets/broken?reload=true");
    assert_eq!(r["error_cache_cleared"], true, "{r}");
    assert_eq!(r["cache_cleared"], false);
}

/// Unknown, hidden and malformed paths: clear JSON errors, nothing enqueued.
fn unknown_and_malformed(t: &Target) {
    let queued = |t: &Target| {
        t.redis.map(|r| {
            let keys: Vec<String> = r.cmd(&["KEYS", "*nope*"]);
            (
                r.cmd::<i64>(&["LLEN", "target_generation_queue"]),
                keys.len(),
            )
        })
    };
    let before = queued(t);
    for (target, status) in [
        ("/targets/nope", 404),
        ("/targets/nodes/nope", 404),
        ("/targets/_hidden", 404),
        ("/targets/.git", 404),
        ("/targets/%2e%2e/etc", 400),
        ("/targets/..%2f..%2fetc%2fpasswd", 400),
        ("/targets/nope%00", 400),
        ("/targets/%ff", 400),
        ("/targets/nodes?x=%zz", 400),
        ("/nope", 404),
    ] {
        let r = get(t.port, target).unwrap();
        assert_eq!(r.status, status, "{target}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{target}: {}", r.text());
    }
    let (_, r) = get_json(t.port, "/targets/nope?reload=true");
    assert_eq!(r["error"], "path not found");
    assert_eq!(queued(t), before, "an unknown path created a key or a job");
}

/// The seed's metric names, with the statuses the walk-through produced.
fn metrics(t: &Target, worker_metrics_port: Option<u16>) {
    let text = get(t.port, "/metrics").unwrap().text();
    for needle in [
        r#"httpsd_path_requests_total{l1_dir="nodes",l2_dir="",path="/targets/nodes",status="cache-not-exist"}"#,
        r#"httpsd_path_requests_total{l1_dir="nodes",l2_dir="",path="/targets/nodes",status="success"}"#,
        r#"httpsd_cache_operations_total{operation="miss"}"#,
        r#"httpsd_cache_operations_total{operation="hit"}"#,
        r#"httpsd_cache_operations_total{operation="expired"}"#,
        "httpsd_path_request_duration_seconds_bucket",
        r#"httpsd_update_queue_jobs{status="pending"}"#,
        r#"httpsd_update_queue_jobs{status="processing"}"#,
    ] {
        assert!(
            text.contains(needle),
            "server /metrics lacks {needle}:\n{text}"
        );
    }
    let worker_text = match worker_metrics_port {
        Some(port) => get(port, "/metrics").unwrap().text(),
        None => text,
    };
    for needle in [
        "httpsd_redis_worker_jobs_processed_total{status=\"success\"",
        "httpsd_redis_worker_jobs_processed_total{status=\"failure\"",
        r#"httpsd_generator_runs_total{generator="nodes/static-nodes.wasm",status="success"}"#,
        r#"httpsd_generator_runs_total{generator="broken/inventory.wasm",status="GeneratorError"}"#,
        r#"httpsd_generator_timeouts_total{generator="slow/wait.wasm"}"#,
        "httpsd_generator_fuel_consumed_total",
        "httpsd_generator_instantiate_seconds_bucket",
        r#"httpsd_path_last_generated_targets{path="/targets/nodes"} 9"#,
    ] {
        assert!(
            worker_text.contains(needle),
            "worker /metrics lacks {needle}:\n{worker_text}"
        );
    }
}

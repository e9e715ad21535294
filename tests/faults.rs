//! Faults, with real processes: workers killed with SIGKILL at random moments while
//! 1,000 jobs run. Every job must end with its result written, none lost; the figures
//! (kills, time to recover) are printed for docs/FAULTS.md.

mod support;

use std::time::{Duration, Instant};
use support::{Httpsd, RedisServer, Tree, eventually};

const JOBS: usize = 1_000;

/// `HTTPSD_SOAK=N` makes this a soak run: N times the jobs and kills of the SIGKILL
/// test, and N times the healthy rounds of the hostile-generator test (1 by default;
/// `HTTPSD_SOAK=10 cargo test --test faults -- --nocapture` runs about ten minutes).
fn soak() -> usize {
    std::env::var("HTTPSD_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}
/// About 20 ms of CPU per job: long enough that kills land on running jobs.
const WORK: &str = "20000000";

/// A small deterministic generator of "random" choices (no dependency, same run each
/// time).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Pushes `n` jobs for `/targets/<path>?<params>&i=<0..n>` straight into the queue, in
/// the wire format a server (or an old prometheus-http-sd) pushes; returns when the
/// push was done.
fn push_jobs(redis: &RedisServer, path: &str, params: &[(&str, &str)], n: usize) -> Instant {
    let mut conn = redis.connection().unwrap();
    let mut pipe = redis::pipe();
    for i in 0..n {
        let i = i.to_string();
        let mut extra = serde_json::Map::new();
        let mut query = String::new();
        for (k, v) in params.iter().chain([&("i", i.as_str())]) {
            extra.insert(k.to_string(), serde_json::Value::from(*v));
            query.push_str(&format!(
                "{}{k}={v}",
                if query.is_empty() { "" } else { "&" }
            ));
        }
        let full_path = format!("/targets/{path}?{query}");
        let job = serde_json::json!({
            "full_path": full_path,
            "path": path,
            "extra_args": extra,
            "job_id": format!("{full_path}:0"),
        });
        pipe.cmd("LPUSH")
            .arg("target_generation_queue")
            .arg(job.to_string());
    }
    let started = Instant::now();
    let _: () = pipe.query(&mut conn).unwrap();
    started
}

/// Keys matching `pattern` (cache entries of a set of jobs).
fn count_keys(redis: &RedisServer, pattern: &str) -> usize {
    redis.cmd::<Vec<String>>(&["KEYS", pattern]).len()
}

fn entries(redis: &RedisServer) -> usize {
    count_keys(redis, "/targets/cpu?*")
}

#[test]
fn sigkill_of_random_workers_during_1000_jobs_loses_none() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    tree.wasm("cpu/bench-cpu.wasm", "bench-cpu");
    let worker_args = [
        "--job-lease",
        "1s",
        "--max-attempts",
        "20",
        "--num-workers",
        "2",
        "--batch",
        "2",
    ];
    let start_worker = || Httpsd::worker(tree.root(), &redis.url(), &worker_args);
    let mut workers: Vec<Httpsd> = (0..3).map(|_| start_worker()).collect();

    let jobs = JOBS * soak();
    let started = push_jobs(&redis, "cpu", &[("n", WORK)], jobs);

    // Kill a random worker every 400-1000 ms, and start a new one in its place, until
    // 12 kills (per soak round) or all jobs done.
    let mut rng = Lcg(7);
    let mut kills = 0;
    let mut last_kill = started;
    while kills < 12 * soak() && entries(&redis) < jobs {
        std::thread::sleep(Duration::from_millis(400 + rng.next(600)));
        let victim = rng.next(workers.len() as u64) as usize;
        let mut killed = workers.swap_remove(victim);
        killed.signal("KILL");
        killed.wait_exit(10);
        drop(killed);
        last_kill = Instant::now();
        kills += 1;
        workers.push(start_worker());
    }
    let done_at_kills = entries(&redis);

    // Every job ends with its entry, none lost; the lists drain.
    eventually(240 * soak() as u64, "every job to be written", || {
        (entries(&redis) == jobs).then_some(())
    });
    let recovered = last_kill.elapsed();
    let total = started.elapsed();
    eventually(30, "the queue and processing lists to empty", || {
        let q: i64 = redis.cmd(&["LLEN", "target_generation_queue"]);
        let p: i64 = redis.cmd(&["LLEN", "target_generation_queue:processing"]);
        (q == 0 && p == 0).then_some(())
    });
    let errors: Vec<String> = redis.cmd(&["KEYS", "error:*"]);
    assert!(errors.is_empty(), "jobs ended in errors: {errors:?}");
    let requeued: u64 = workers
        .iter()
        .map(|w| {
            let text = support::get(w.port, "/metrics").unwrap().text();
            text.lines()
                .filter(|l| l.starts_with("httpsd_jobs_requeued_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        })
        .sum();
    eprintln!(
        "FAULTS: {jobs} jobs, {kills} SIGKILLs of random workers (3 running, each replaced at once), \
         {done_at_kills} written by the last kill; all {jobs} written, 0 lost, 0 errors; \
         the {} left at the last kill were all written {:.1} s later (lease 1 s); {:.1} s in all; \
         jobs requeued by the reapers of the workers alive at the end: {requeued}",
        jobs - done_at_kills,
        recovered.as_secs_f64(),
        total.as_secs_f64()
    );
    assert!(kills > 0);
}

/// (path, fixture crate, manifest, query, expected error_type)
const EVIL: &[(&str, &str, &str, &str, &str)] = &[
    (
        "spin",
        "fixture-infinite-loop",
        "[limits]\nfuel = 50000000\n",
        "",
        "TimeoutError",
    ),
    (
        "spin-wall",
        "fixture-infinite-loop",
        "[limits]\nfuel = 1000000000000\ntimeout = \"1s\"\n",
        "",
        "TimeoutError",
    ),
    (
        "sleep",
        "fixture-sleep-loop",
        "[limits]\ntimeout = \"1s\"\n",
        "",
        "TimeoutError",
    ),
    (
        "bomb",
        "fixture-memory-bomb",
        "[limits]\nmemory = \"32MiB\"\n",
        "",
        "MemoryError",
    ),
    ("deep", "fixture-stack-overflow", "", "", "Trap"),
    ("panic", "fixture-panic", "", "", "Trap"),
    ("huge", "fixture-huge-output", "", "", "InvalidOutput"),
    ("labels", "fixture-invalid-labels", "", "", "InvalidOutput"),
    (
        "file",
        "fixture-read-host-file",
        "",
        "?path=/etc/passwd",
        "GeneratorError",
    ),
    ("env", "fixture-read-env", "", "", "GeneratorError"),
];

/// Healthy jobs per measured round.
const ROUND: usize = 1000;

/// Runs `work` while a client polls each of `urls` and asks to reload it, every 20 ms;
/// returns what `work` returned and how many reloads were accepted.
fn while_hammered<T>(port: u16, urls: Vec<String>, work: impl FnOnce() -> T) -> (T, u64) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reloads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for url in &urls {
                    let _ = support::get(port, url);
                    let sep = if url.contains('?') { '&' } else { '?' };
                    let reload = format!("{url}{sep}reload=true");
                    if support::get(port, &reload).is_ok_and(|r| r.status == 200) {
                        reloads += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            reloads
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let out = work();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, client.join().unwrap())
}

/// Pushes `n` jobs for `/targets/healthy?round=..&i=..` and returns how long until
/// every one is written.
fn healthy_round(redis: &RedisServer, round: &str, n: usize) -> Duration {
    let started = push_jobs(redis, "healthy", &[("round", round)], n);
    let pattern = format!("/targets/healthy?round={round}&*");
    eventually(240, &format!("the {round} round of healthy jobs"), || {
        (count_keys(redis, &pattern) == n).then_some(())
    });
    started.elapsed()
}

#[test]
fn every_hostile_generator_ends_typed_through_the_worker_and_healthy_paths_keep_flowing() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    tree.wasm("healthy/static-nodes.wasm", "static-nodes");
    for (path, fixture, manifest, _, _) in EVIL {
        tree.wasm(&format!("evil/{path}/x.wasm"), fixture);
        if !manifest.is_empty() {
            tree.file(&format!("evil/{path}/x.toml"), manifest);
        }
    }
    let server = Httpsd::server(tree.root(), &redis.url(), &[]);
    let _worker = Httpsd::worker(tree.root(), &redis.url(), &[]);

    // Each one, through the server and the worker, ends as its typed error with a
    // traceback, cached; the path answers 503, never partial targets.
    for (path, _, _, query, expected) in EVIL {
        let url = format!("/targets/evil/{path}{query}");
        let err = eventually(120, &format!("the error of {url}"), || {
            let _ = support::get(server.port, &url);
            let sep = if query.is_empty() { '?' } else { '&' };
            let d = support::get(server.port, &format!("{url}{sep}debug=true"))
                .ok()?
                .json();
            let e = &d["debug_info"]["error_details"];
            e.is_object().then(|| e.clone())
        });
        assert_eq!(err["error_type"], *expected, "{url}: {err}");
        assert!(
            err["traceback"]
                .as_str()
                .unwrap()
                .starts_with("Traceback (most recent call last):"),
            "{url}: {err}"
        );
        assert_eq!(support::get(server.port, &url).unwrap().status, 503);
    }

    // Healthy jobs: alone; while a client hammers healthy cached paths (the request
    // load of an attack without its generators); and during the attack, the same client
    // polling every hostile path in a loop (a poll of a path with only an error runs it
    // again once its 5 s retry pause is over) and trying to reload each (the default 10 s
    // cooldown refuses most).
    let warm = healthy_round(&redis, "warm", 200);
    let round = ROUND * soak();
    let calm = healthy_round(&redis, "calm", round);
    let cached: Vec<String> = (0..EVIL.len())
        .map(|i| format!("/targets/healthy?round=warm&i={i}"))
        .collect();
    let (polled, _) = while_hammered(server.port, cached, || {
        healthy_round(&redis, "polled", round)
    });
    let evil: Vec<String> = EVIL
        .iter()
        .map(|(path, _, _, query, _)| format!("/targets/evil/{path}{query}"))
        .collect();
    let (attacked, reloads) = while_hammered(server.port, evil, || {
        healthy_round(&redis, "attacked", round)
    });
    assert!(reloads > 0);
    // Runs after the first of a generator that ran into its limits go to the
    // low-priority lane, and debug says so.
    for path in ["spin", "bomb"] {
        let url = format!("/targets/evil/{path}?reload=true");
        eventually(60, &format!("a low-priority run of {path}"), || {
            let _ = support::get(server.port, &url);
            let d = support::get(server.port, &format!("/targets/evil/{path}?debug=true"))
                .ok()?
                .json();
            (d["debug_info"]["last_run"]["generators"][0]["low_priority"] == true).then_some(())
        });
    }
    let rate = |d: Duration| round as f64 / d.as_secs_f64();
    eprintln!(
        "HOSTILE: {} hostile generators through server+worker, each a cached typed error with a traceback; \
         healthy jobs/s ({round} jobs, one worker, defaults): {:.0} alone, {:.0} while a client hammers cached \
         healthy paths, {:.0} during the attack ({:.2}x alone, {:.2}x the same request load without hostile \
         generators; {reloads} hostile reloads accepted meanwhile; warm-up round {:.1} s)",
        EVIL.len(),
        rate(calm),
        rate(polled),
        rate(attacked),
        rate(attacked) / rate(calm),
        rate(attacked) / rate(polled),
        warm.as_secs_f64()
    );
}

//! Redis that loses a machine. A server and two workers run on a Sentinel group and on
//! a six-node Redis Cluster; the primary holding httpsd's keys is SIGKILLed while four
//! clients poll and 200 jobs are in flight. Throughout, every answer is JSON, a 200
//! (from the last good data) or a quick 503; after the promotion every one of the 200
//! paths is served within a lease period, by the same processes (each saw the
//! failover: a restarted one would have counted none). The times from the kill are
//! printed (docs/FAULTS.md records them).

mod support;

use serde_json::Value;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Cluster, Httpsd, SentinelGroup, Tree, eventually, get, sample};

/// The fleet's job lease: the bound on how long after the promotion a path may stay
/// unserved.
const LEASE: Duration = Duration::from_secs(15);
/// Paths with a job in flight at the kill.
const PATHS: usize = 200;
/// Each job sleeps this long in its generator (two workers of four slots take about
/// 6 s for all 200).
const JOB_MS: u32 = 250;
/// The slowest answer allowed at any moment: the Redis timeout (2 s) with room. A
/// server that waited out the failover would take far longer.
const QUICK: Duration = Duration::from_secs(5);
/// A path every client also polls: cached before the kill.
const HOT: &str = "/targets/hot";

fn path(i: usize) -> String {
    format!("/targets/slow?ms={JOB_MS}&i={i}")
}

/// One answer a client got.
struct Seen {
    /// Since the kill (negative: before it).
    at: f64,
    target: String,
    status: u16,
    json: bool,
    /// The `error` of a JSON error answer.
    error: Option<String>,
    took: Duration,
}

/// The times a run measured, in seconds from the kill.
struct Times {
    promoted: f64,
    first_200: f64,
    last_path: f64,
}

fn fleet(url: &str) -> (Tree, Httpsd, Vec<Httpsd>) {
    let tree = Tree::new();
    tree.wasm("hot/static-nodes.wasm", "static-nodes");
    tree.wasm("slow/gen.wasm", "fixture-slow-answer");
    let lease = format!("{}s", LEASE.as_secs());
    let server = Httpsd::server(tree.root(), url, &["--job-lease", &lease]);
    let workers = (0..2)
        .map(|_| {
            let flags = ["--job-lease", &lease, "--num-workers", "4"];
            Httpsd::worker(tree.root(), url, &flags)
        })
        .collect();
    (tree, server, workers)
}

/// Sets the flag when dropped: the clients stop however the scenario ends (a failed
/// assertion inside the thread scope would otherwise wait for them for ever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Polls until `stop`: client `c` of 4 goes round its share of the paths, and every
/// fifth request is the hot path.
fn poll(
    port: u16,
    c: usize,
    kill: &Mutex<Option<Instant>>,
    stop: &AtomicBool,
    log: &Mutex<Vec<Seen>>,
) {
    let mine: Vec<String> = (c..PATHS).step_by(4).map(path).collect();
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let target = if k % 5 == 0 {
            HOT.to_string()
        } else {
            mine[(k - k / 5 - 1) % mine.len()].clone()
        };
        k += 1;
        let t = Instant::now();
        let reply = get(port, &target);
        let took = t.elapsed();
        let at = match *kill.lock().unwrap() {
            Some(killed) if t >= killed => (t - killed).as_secs_f64(),
            _ => -1.0,
        };
        let (status, body) = match &reply {
            Ok(r) => (r.status, serde_json::from_slice::<Value>(&r.body).ok()),
            Err(_) => (0, None),
        };
        let error = body
            .as_ref()
            .and_then(|b| b["error"].as_str().map(str::to_string));
        let json = body.is_some();
        log.lock().unwrap().push(Seen {
            at,
            target,
            status,
            json,
            error,
            took,
        });
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// When each path was first served after the kill.
fn first_served(log: &Mutex<Vec<Seen>>) -> Vec<Option<f64>> {
    let log = log.lock().unwrap();
    let mut first: Vec<Option<f64>> = vec![None; PATHS];
    for s in log.iter().filter(|s| s.at >= 0.0 && s.status == 200) {
        if let Some(i) = (0..PATHS).find(|&i| s.target == path(i)) {
            first[i].get_or_insert(s.at);
        }
    }
    first
}

/// What the clients were told about the paths not served by `by` seconds after the
/// kill, and the server's debug view of one of them: for a failure message.
fn late_paths(port: u16, log: &[Seen], first: &[Option<f64>], by: f64) -> String {
    let late: Vec<usize> = (0..PATHS)
        .filter(|&i| first[i].is_none_or(|t| t > by))
        .collect();
    let mut errors: Vec<(String, usize)> = Vec::new();
    for s in log.iter().filter(|s| s.at >= 0.0) {
        if late.iter().any(|&i| s.target == path(i)) {
            let e = format!("{} {:?}", s.status, s.error);
            match errors.iter_mut().find(|(k, _)| *k == e) {
                Some((_, n)) => *n += 1,
                None => errors.push((e, 1)),
            }
        }
    }
    let timeline: Vec<String> = late
        .first()
        .map(|&i| {
            log.iter()
                .filter(|s| s.target == path(i))
                .map(|s| format!("{:.2}s {} {:?}", s.at, s.status, s.error))
                .collect()
        })
        .unwrap_or_default();
    let debug = late
        .first()
        .and_then(|&i| get(port, &format!("{}&debug=true", path(i))).ok())
        .map(|r| r.text())
        .unwrap_or_default();
    format!(
        "{} late paths {late:?}; their answers after the kill: {errors:?}; the first's answers: {timeline:?}; its debug: {debug}",
        late.len()
    )
}

/// The queue's pending + processing jobs, from the server's `/metrics`.
fn jobs_in_flight(port: u16) -> u64 {
    let text = get(port, "/metrics").map(|r| r.text()).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("httpsd_update_queue_jobs{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The whole scenario on `url`: `kill` kills the primary holding httpsd's keys and
/// returns its port, `promoted` waits for the promotion and names the new primary's.
fn survive_failover(
    url: &str,
    kill: impl FnOnce() -> u16,
    promoted: impl FnOnce(u16) -> u16,
) -> Times {
    let (_tree, server, workers) = fleet(url);
    eventually(120, "the hot path cached", || {
        get(server.port, HOT).ok().filter(|r| r.status == 200)
    });
    eventually(120, "a first run of the slow generator", || {
        get(server.port, &path(PATHS))
            .ok()
            .filter(|r| r.status == 200)
    });

    let kill_at: Mutex<Option<Instant>> = Mutex::new(None);
    let log = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let (new_port, times) = std::thread::scope(|scope| {
        for c in 0..4 {
            let (kill_at, stop, log) = (&kill_at, &stop, &log);
            scope.spawn(move || poll(server.port, c, kill_at, stop, log));
        }
        let _stop = StopOnDrop(&stop);
        // The 200 jobs go in, eight requests at a time (some clients' polls enqueue
        // them first), while the workers are paused (SIGSTOP), so none is done before
        // the kill; the workers go on, take their first jobs, and the primary dies
        // with all 200 queued or running.
        for w in &workers {
            w.signal("STOP");
        }
        std::thread::scope(|enqueue| {
            for first in 0..8 {
                enqueue.spawn(move || {
                    for i in (first..PATHS).step_by(8) {
                        let r = get(server.port, &path(i)).expect("enqueue a path");
                        assert!(
                            r.status == 503 || r.status == 200,
                            "{}: {}",
                            path(i),
                            r.text()
                        );
                    }
                });
            }
        });
        for w in &workers {
            w.signal("CONT");
        }
        std::thread::sleep(Duration::from_millis(300));
        let in_flight = jobs_in_flight(server.port);
        let old_port = kill();
        let killed = Instant::now();
        *kill_at.lock().unwrap() = Some(killed);
        let new_port = promoted(old_port);
        let promoted = killed.elapsed().as_secs_f64();
        eprintln!(
            "{in_flight} jobs in flight; primary {old_port} killed; {new_port} promoted after {promoted:.1}s"
        );
        // Every path served once after the kill (a lease and a margin at most).
        let deadline = killed + Duration::from_secs_f64(promoted) + LEASE + Duration::from_secs(30);
        while Instant::now() < deadline && first_served(&log).iter().any(Option::is_none) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // A few more polls of the hot path, then the clients stop.
        std::thread::sleep(Duration::from_secs(1));
        let first = first_served(&log);
        let by = promoted + LEASE.as_secs_f64();
        if first.iter().any(|t| t.is_none_or(|t| t > by)) {
            let log = log.lock().unwrap();
            panic!(
                "not every path was served within a lease ({LEASE:?}) of the promotion: {}",
                late_paths(server.port, &log, &first, by)
            );
        }
        let last_path = first.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
        if last_path > promoted + 5.0 {
            // Not a failure: which healing took that long.
            let log = log.lock().unwrap();
            eprintln!(
                "served after promotion + 5s: {}",
                late_paths(server.port, &log, &first, promoted + 5.0)
            );
        }
        let first_200 = log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at >= 0.0 && s.status == 200)
            .map(|s| s.at)
            .fold(f64::INFINITY, f64::min);
        (
            new_port,
            Times {
                promoted,
                first_200,
                last_path,
            },
        )
    });

    let log = log.into_inner().unwrap();
    let bad: Vec<String> = log
        .iter()
        .filter(|s| !(s.json && (s.status == 200 || s.status == 503)) || s.took > QUICK)
        .map(|s| format!("{:.2}s {} -> {} in {:?}", s.at, s.target, s.status, s.took))
        .collect();
    assert!(
        bad.is_empty(),
        "answers that were not a quick JSON 200/503: {bad:?}"
    );
    let hot_after = log
        .iter()
        .filter(|s| s.target == HOT && s.at > times.promoted);
    assert!(
        hot_after.clone().any(|s| s.status == 200),
        "the hot path is served again after the promotion"
    );

    // The same processes lived through it: each saw the failover and uses the new
    // primary (a restarted process would have seen none).
    let ready = get(server.port, "/readyz").unwrap().json();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["redis"]["failovers"].as_u64() >= Some(1), "{ready}");
    assert_eq!(
        ready["redis"]["primary"],
        format!("127.0.0.1:{new_port}"),
        "{ready}"
    );
    for w in &workers {
        let metrics = eventually(20, "the worker's metrics show the failover", || {
            let text = get(w.port, "/metrics").ok()?.text();
            text.contains(&format!(
                "httpsd_redis_primary{{address=\"127.0.0.1:{new_port}\""
            ))
            .then_some(text)
        });
        let failovers = sample(&metrics, "httpsd_redis_failovers_total");
        assert!(failovers >= 1.0, "worker failovers: {failovers}");
    }
    // The admin page names the new primary, and the server's local cache is live
    // again: subscribed on the new primary, it answers hot paths without Redis.
    let page = get(server.port, "/").unwrap().text();
    assert!(
        page.contains("id=\"redis-topology\"") && page.contains(&format!("127.0.0.1:{new_port}")),
        "the admin page's Redis line"
    );
    let local_hits = || {
        let text = get(server.port, "/metrics").unwrap().text();
        sample(&text, "httpsd_local_cache_hits_total")
    };
    let before = local_hits();
    eventually(
        20,
        "hot-path hits from the local cache after the failover",
        || {
            for _ in 0..5 {
                get(server.port, HOT).ok()?;
            }
            (local_hits() > before).then_some(())
        },
    );
    let after: Vec<&Seen> = log.iter().filter(|s| s.at >= 0.0).collect();
    let served_503 = after.iter().filter(|s| s.status == 503).count();
    let slowest = after.iter().map(|s| s.took).max().unwrap_or_default();
    eprintln!(
        "kill -> promoted {:.1}s, -> first 200 {:.1}s, -> last of {PATHS} paths {:.1}s \
         ({} answers after the kill, {served_503} of them 503, the slowest {slowest:?})",
        times.promoted,
        times.first_200,
        times.last_path,
        after.len(),
    );
    times
}

#[test]
fn sentinel_failover_under_load_loses_no_path() {
    let group = Mutex::new(SentinelGroup::start("httpsd-primary"));
    let url = group.lock().unwrap().url();
    let times = survive_failover(
        &url,
        || group.lock().unwrap().kill_primary(),
        |old| group.lock().unwrap().wait_promoted(old, 60),
    );
    println!(
        "FAULTS sentinel: kill -> promoted {:.1}s, first 200 {:.1}s, last path {:.1}s",
        times.promoted, times.first_200, times.last_path
    );
}

#[test]
fn cluster_failover_under_load_loses_no_path() {
    let cluster = Mutex::new(Cluster::start());
    let url = cluster.lock().unwrap().url();
    let slot = cluster.lock().unwrap().slot_of("{httpsd}");
    let times = survive_failover(
        &url,
        || cluster.lock().unwrap().kill_primary_of(slot),
        |old| cluster.lock().unwrap().wait_promoted(slot, old, 60),
    );
    println!(
        "FAULTS cluster: kill -> promoted {:.1}s, first 200 {:.1}s, last path {:.1}s",
        times.promoted, times.first_200, times.last_path
    );
}

/// Over TLS with ACL users (`rediss+sentinel://`, `rediss+cluster://`): the sentinels
/// have a password of their own and every node refuses plain connections and the
/// `default` user. A server and a worker serve a path, the primary is killed, and a new
/// path is served through the promoted one.
fn secured_fleet_follows_a_failover(
    url: &str,
    ca: &std::path::Path,
    kill: impl FnOnce() -> u16,
    promoted: impl FnOnce(u16) -> u16,
) {
    let tree = Tree::new();
    tree.wasm("hot/static-nodes.wasm", "static-nodes");
    let ca = ca.to_str().expect("utf-8 path");
    let server = Httpsd::server(tree.root(), url, &["--redis-ca", ca]);
    let _worker = Httpsd::worker(tree.root(), url, &["--redis-ca", ca]);
    eventually(120, "a 200 over TLS", || {
        get(server.port, HOT).ok().filter(|r| r.status == 200)
    });
    let ready = get(server.port, "/readyz").unwrap().json();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(
        !server.logs().contains("httpsd-pw-4471") && !server.logs().contains("sentinel-pw-8812"),
        "a password was logged"
    );
    let old = kill();
    let new = promoted(old);
    eventually(60, "a new path served through the promoted primary", || {
        get(server.port, "/targets/hot?after=failover")
            .ok()
            .filter(|r| r.status == 200)
    });
    // The watcher looks once a second; the path may be served before it does.
    let want = format!("127.0.0.1:{new}");
    eventually(20, "/readyz names the promoted primary", || {
        let ready = get(server.port, "/readyz").ok()?.json();
        (ready["redis"]["primary"] == want.as_str() && ready["redis"]["failovers"] == 1)
            .then_some(())
    });
}

#[test]
fn sentinel_over_tls_with_acl_users_follows_a_failover() {
    let certs = support::certs::Certs::new();
    let group = Mutex::new(SentinelGroup::start_secured("httpsd-tls", &certs));
    let url = group.lock().unwrap().url();
    assert!(url.starts_with("rediss+sentinel://") && url.contains("sentinel_password="));
    secured_fleet_follows_a_failover(
        &url,
        &certs.ca,
        || group.lock().unwrap().kill_primary(),
        |old| group.lock().unwrap().wait_promoted(old, 60),
    );
}

#[test]
fn cluster_over_tls_with_acl_users_follows_a_failover() {
    let certs = support::certs::Certs::new();
    let cluster = Mutex::new(Cluster::start_secured(&certs));
    let url = cluster.lock().unwrap().url();
    assert!(url.starts_with("rediss+cluster://"));
    let slot = cluster.lock().unwrap().slot_of("{httpsd}");
    secured_fleet_follows_a_failover(
        &url,
        &certs.ca,
        || cluster.lock().unwrap().kill_primary_of(slot),
        |old| cluster.lock().unwrap().wait_promoted(slot, old, 60),
    );
}

/// The rest of a cluster's life: another shard's primary dies (httpsd's primary stays
/// the same, and it keeps serving once that shard's replica took over), and a reshard
/// moves httpsd's slot to another primary while a client polls (`ASK` and `TRYAGAIN`
/// while the keys move, `MOVED` after): every answer stays JSON, cached paths keep
/// their answers, new paths are served through the new owner, and the process names it.
#[test]
fn cluster_follows_a_reshard_and_the_loss_of_another_shard() {
    let mut cluster = Cluster::start();
    let url = cluster.url();
    let slot = cluster.slot_of("{httpsd}");
    let tree = Tree::new();
    tree.wasm("hot/static-nodes.wasm", "static-nodes");
    let server = Httpsd::server(tree.root(), &url, &[]);
    let _worker = Httpsd::worker(tree.root(), &url, &[]);
    let served = |target: &str| {
        eventually(60, "a 200", || {
            get(server.port, target).ok().filter(|r| r.status == 200)
        })
    };
    let cached: Vec<String> = (0..20).map(|i| format!("{HOT}?n={i}")).collect();
    for p in &cached {
        served(p);
    }
    let ours = cluster.primary_of_slot(slot);

    // Another shard's primary dies; its replica takes over.
    let other_slot = (slot + 8192) % 16384;
    let other = cluster.primary_of_slot(other_slot);
    assert_ne!(other, ours);
    cluster.kill(other);
    cluster.wait_promoted(other_slot, other, 60);
    served(&format!("{HOT}?after=other-shard"));
    let ready = get(server.port, "/readyz").unwrap().json();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(
        ready["redis"]["primary"],
        format!("127.0.0.1:{ours}"),
        "{ready}"
    );
    assert_eq!(ready["redis"]["failovers"], 0, "{ready}");

    // The reshard, with the cached paths polled between its batches.
    let to = [0, 5461, 10923, 16383]
        .map(|s| cluster.primary_of_slot(s))
        .into_iter()
        .find(|&p| p != ours)
        .expect("another primary");
    let mut answers = Vec::new();
    cluster.move_slot(slot, to, || {
        for p in &cached {
            if let Ok(r) = get(server.port, p) {
                answers.push((r.status, serde_json::from_slice::<Value>(&r.body).is_ok()));
            }
        }
    });
    assert!(
        !answers.is_empty(),
        "the slot moved in one batch: nothing was polled during it"
    );
    assert!(
        answers
            .iter()
            .all(|(status, json)| *json && (*status == 200 || *status == 503)),
        "answers during the reshard: {answers:?}"
    );
    for p in &cached {
        served(p);
    }
    served(&format!("{HOT}?after=reshard"));
    eventually(20, "/readyz names the slot's new owner", || {
        let ready = get(server.port, "/readyz").ok()?.json();
        (ready["redis"]["primary"] == format!("127.0.0.1:{to}").as_str()).then_some(())
    });
}

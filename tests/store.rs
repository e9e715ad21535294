//! One behaviour suite for the store trait, run against both backends: the in-memory
//! store of `httpsd serve` and the Redis store on a real `redis-server` started for the
//! test. Whatever one backend does, the other must do too.

mod support;

use httpsd::metrics::Metrics;
use httpsd::store::{
    CoolingDown, Finished, JobState, MemoryBounds, MemoryStore, NewJob, Outcome, RedisSettings,
    RedisStore, Retention, Store, StoreError, Taken,
};
use httpsd::targets::TargetPath;
use httpsd::wire::TargetRequest;
use httpsd::worker::finisher::{self, Done};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::RedisServer;

/// The `n`th job for `path` (same path, same full_path, distinct jobs).
fn job(path: &str, n: u32) -> NewJob {
    job_with(path, n, Vec::new())
}

fn job_with(path: &str, n: u32, params: Vec<(String, String)>) -> NewJob {
    let req = TargetRequest::new(TargetPath::parse(path).unwrap(), params);
    NewJob::from_job(&req.job(1_700_000_000.0 + f64::from(n) / 1000.0))
}

fn finished(job: &NewJob, taken: &Taken, outcome: Outcome) -> Finished {
    Finished {
        taken: taken.clone(),
        full_path: job.full_path.clone(),
        outcome,
        run: br#"{"ok":true}"#.to_vec(),
        summary: format!(r#"{{"job":"{}"}}"#, job.raw.len()).into_bytes(),
    }
}

fn entry(tag: &str) -> Outcome {
    Outcome::Entry(
        format!(
            r#"{{"updated_timestamp": 1.0, "results": [{{"targets": ["{tag}"], "labels": {{}}}}]}}"#
        )
        .into_bytes(),
    )
}

fn error(tag: &str) -> Outcome {
    Outcome::Error(format!(r#"{{"status": "error", "tag": "{tag}"}}"#).into_bytes())
}

const NO_WAIT: Duration = Duration::from_millis(10);

/// Runs each case on both backends, as `<case>::on_memory` and `<case>::on_redis`, so a
/// failure names the guarantee that broke and the backend it broke on. A case is an
/// `async fn` taking `make`, which builds a fresh, empty store with a given retention
/// (on Redis: on a `redis-server` of the test's own, emptied first).
macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn on_memory() {
                super::$case(httpsd::store::MemoryStore::new).await;
            }

            #[tokio::test]
            async fn on_redis() {
                let redis = super::RedisServer::start();
                let max_value_bytes = httpsd::store::DEFAULT_MAX_VALUE_BYTES;
                super::$case(|retention| super::redis_store(&redis, retention, max_value_bytes))
                    .await;
            }
        }
    )+};
}

on_both_backends!(
    one_job_per_path_is_queued,
    a_take_moves_the_oldest_job_to_processing_and_marks_it_running,
    a_finished_entry_is_written_and_frees_the_path,
    an_error_keeps_the_last_good_entry,
    a_failed_path_waits_for_the_retry_time_and_a_success_clears_its_error,
    a_reload_clears_the_entry_and_enqueues_unless_a_job_is_queued,
    a_reload_while_running_reruns_the_job_once_after_it,
    a_reload_clears_the_error_cache,
    a_reload_within_the_cooldown_is_refused,
    the_history_keeps_the_last_runs_newest_first,
    an_unrenewed_lease_is_orphaned_and_requeued_once,
    a_job_gone_from_processing_is_not_counted_lost,
    a_handed_back_job_is_taken_next_without_counting_an_attempt,
    an_unreadable_job_is_only_removed,
    a_blocked_take_wakes_when_a_job_is_pushed,
    an_empty_take_returns_nothing_after_its_wait,
    a_reachable_store_answers_ping,
);

/// How long after a failed run the cases below let a poll run the path again.
const RETRY: Duration = Duration::from_millis(300);

/// Leases short enough for a case to watch one expire.
fn short_leases() -> Retention {
    Retention {
        lease: Duration::from_millis(300),
        ..Retention::default()
    }
}

/// Dedupe: one queued-or-running job per full_path; other paths are independent.
async fn one_job_per_path_is_queued<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(Retention::default());
    let a = job("a", 1);
    assert!(s.enqueue(&a).await.unwrap());
    assert!(
        !s.enqueue(&job("a", 1)).await.unwrap(),
        "a second job for a queued path"
    );
    assert!(s.enqueue(&job("b", 1)).await.unwrap());
    assert_eq!(s.queue_lengths().await.unwrap(), (2, 0));
    let view = s.debug_view(&a.full_path).await.unwrap();
    assert_eq!(view.job.as_ref().map(|j| j.state), Some(JobState::Queued));
}

/// Take: oldest first, into processing, leased, marker says running with the worker;
/// no second job for the path while it runs.
async fn a_take_moves_the_oldest_job_to_processing_and_marks_it_running<S: Store>(
    make: impl Fn(Retention) -> S,
) {
    let s = make(Retention::default());
    let a = job("a", 1);
    assert!(s.enqueue(&a).await.unwrap());
    assert!(s.enqueue(&job("b", 1)).await.unwrap());
    let taken = s.take("w1", 1, NO_WAIT).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].raw, a.raw);
    assert_eq!(taken[0].attempts, 1);
    assert_eq!(s.queue_lengths().await.unwrap(), (1, 1));
    let status = s.debug_view(&a.full_path).await.unwrap().job.unwrap();
    assert_eq!(status.state, JobState::Running);
    assert_eq!(status.worker_id, "w1");
    assert!(
        !s.enqueue(&a).await.unwrap(),
        "a second job for a running path"
    );
}

/// Finish with an entry: written, out of processing, marker gone (enqueue works
/// again), the run report kept.
async fn a_finished_entry_is_written_and_frees_the_path<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(Retention::default());
    let a = job("a", 1);
    assert!(s.enqueue(&a).await.unwrap());
    assert!(s.enqueue(&job("b", 1)).await.unwrap());
    let taken = s.take("w1", 1, NO_WAIT).await.unwrap();
    assert_eq!(taken[0].raw, a.raw);
    s.finish(&[finished(&a, &taken[0], entry("x"))])
        .await
        .unwrap();
    assert_eq!(s.queue_lengths().await.unwrap(), (1, 0));
    let got = s.get_entry(&a.full_path).await.unwrap().unwrap();
    assert!(std::str::from_utf8(&got).unwrap().contains("\"x\""));
    let view = s.debug_view(&a.full_path).await.unwrap();
    assert!(view.job.is_none() && view.error.is_none());
    assert_eq!(view.run.as_deref(), Some(&br#"{"ok":true}"#[..]));
    assert!(
        s.enqueue(&job("a", 2)).await.unwrap(),
        "enqueue works again"
    );
}

/// An error keeps the last good entry (and a batch take returns every queued job).
async fn an_error_keeps_the_last_good_entry<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(Retention::default());
    let a = job("a", 1);
    write(&s, "a", entry("x")).await;
    assert!(s.enqueue(&job("b", 1)).await.unwrap());
    let a2 = job("a", 2);
    assert!(s.enqueue(&a2).await.unwrap());
    let b_and_a2 = s.take("w1", 8, NO_WAIT).await.unwrap();
    assert_eq!(b_and_a2.len(), 2, "a batch take returns every queued job");
    let t = b_and_a2.iter().find(|t| t.raw == a2.raw).unwrap();
    s.finish(&[finished(&a2, t, error("boom"))]).await.unwrap();
    let view = s.debug_view(&a.full_path).await.unwrap();
    assert!(
        view.entry.is_some(),
        "an error must not delete the last good entry"
    );
    assert!(
        std::str::from_utf8(view.error.as_ref().unwrap())
            .unwrap()
            .contains("boom")
    );
}

/// Right after a failure, polls do not run the path again; after the retry time they
/// do (a reload would at once), and the next success removes the error.
async fn a_failed_path_waits_for_the_retry_time_and_a_success_clears_its_error<S: Store>(
    make: impl Fn(Retention) -> S,
) {
    let s = make(Retention {
        retry: RETRY,
        ..Retention::default()
    });
    let a2 = job("a", 2);
    assert!(s.enqueue(&a2).await.unwrap());
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    s.finish(&[finished(&a2, &t, error("boom"))]).await.unwrap();
    let a3 = job("a", 3);
    assert!(
        !s.enqueue(&a3).await.unwrap(),
        "a path that just failed waits"
    );
    assert_eq!(s.queue_lengths().await.unwrap().0, 0, "nothing was queued");
    tokio::time::sleep(RETRY + Duration::from_millis(100)).await;
    assert!(s.enqueue(&a3).await.unwrap());
    let t = s.take("w2", 1, NO_WAIT).await.unwrap().remove(0);
    s.finish(&[finished(&a3, &t, entry("y"))]).await.unwrap();
    let view = s.debug_view(&a3.full_path).await.unwrap();
    assert!(view.error.is_none(), "success removes the error");
}

/// Reload: clears the entry and enqueues; a second reload while the job is still
/// queued does not enqueue again.
async fn a_reload_clears_the_entry_and_enqueues_unless_a_job_is_queued<S: Store>(
    make: impl Fn(Retention) -> S,
) {
    let s = make(Retention::default());
    let a = job("a", 1);
    write(&s, "a", entry("y")).await;
    let r = s
        .reload(&job("a", 4), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert!(
        r.cache_cleared && !r.error_cache_cleared && r.enqueued,
        "{r:?}"
    );
    assert!(s.get_entry(&a.full_path).await.unwrap().is_none());
    let r = s
        .reload(&job("a", 5), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert!(!r.cache_cleared && !r.enqueued, "{r:?}");
    assert_eq!(s.queue_lengths().await.unwrap(), (1, 0));
}

/// A reload while a job runs marks it to run again when it ends (its result is still
/// written), so the path never has two runs at once, however often it is reloaded.
async fn a_reload_while_running_reruns_the_job_once_after_it<S: Store>(
    make: impl Fn(Retention) -> S,
) {
    let s = make(Retention::default());
    let a = job("a", 1);
    let a4 = job("a", 4);
    let r = s.reload(&a4, Duration::ZERO).await.unwrap().unwrap();
    assert!(r.enqueued, "{r:?}");
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(t.raw, a4.raw);
    let r = s
        .reload(&job("a", 6), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert!(r.enqueued, "a reload while running schedules a run");
    assert_eq!(
        s.queue_lengths().await.unwrap(),
        (0, 1),
        "no second job beside the running one"
    );
    // Reloading again and again while it runs still adds nothing.
    for n in 7..10 {
        s.reload(&job("a", n), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(s.queue_lengths().await.unwrap(), (0, 1));
    // The running job ends: its result is written (reloads cannot keep a path
    // unanswered), and it is queued again, once.
    s.finish(&[finished(&a4, &t, entry("z"))]).await.unwrap();
    let kept = s.get_entry(&a.full_path).await.unwrap();
    assert!(
        kept.is_some_and(|e| std::str::from_utf8(&e).unwrap().contains("\"z\"")),
        "the run during the reloads is written"
    );
    assert_eq!(s.queue_lengths().await.unwrap(), (1, 0));
    assert_eq!(
        s.debug_view(&a.full_path)
            .await
            .unwrap()
            .job
            .map(|j| j.state),
        Some(JobState::Queued)
    );
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(t.raw, a4.raw, "the same job, run again");
    s.finish(&[finished(&a4, &t, entry("z2"))]).await.unwrap();
    assert!(s.get_entry(&a.full_path).await.unwrap().is_some());
    assert!(
        std::str::from_utf8(&s.get_entry(&a.full_path).await.unwrap().unwrap())
            .unwrap()
            .contains("\"z2\""),
        "the run after the reload replaces it"
    );
    assert!(s.debug_view(&a.full_path).await.unwrap().job.is_none());
    // A fresh job for the path later on.
    let a10 = job("a", 10);
    assert!(s.enqueue(&a10).await.unwrap());
}

/// A reload clears the path's error too (and says so), leaving no entry to clear.
async fn a_reload_clears_the_error_cache<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(Retention::default());
    write(&s, "b", error("b")).await;
    let b = s.debug_view(&job("b", 1).full_path).await.unwrap();
    let r = s
        .reload(&job("b", 2), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert!(
        b.error.is_some() && r.error_cache_cleared && !r.cache_cleared,
        "{r:?}"
    );
}

/// Reload cooldown: a second reload inside it is refused and changes nothing; the
/// admin page sees the cooldown; after it, reloads work again.
async fn a_reload_within_the_cooldown_is_refused<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(Retention::default());
    let c = job("c", 1);
    let cooldown = Duration::from_millis(400);
    let first = s.reload(&c, cooldown).await.unwrap();
    assert!(first.is_ok_and(|r| r.enqueued), "{first:?}");
    let lengths = s.queue_lengths().await.unwrap();
    match s.reload(&job("c", 2), cooldown).await.unwrap() {
        Err(CoolingDown(left)) => assert!(left <= cooldown && !left.is_zero(), "{left:?}"),
        other => panic!("a reload inside the cooldown is refused: {other:?}"),
    }
    assert_eq!(
        s.queue_lengths().await.unwrap(),
        lengths,
        "nothing enqueued"
    );
    let view = s.debug_view(&c.full_path).await.unwrap();
    assert!(view.reload_cooldown.is_some_and(|d| d <= cooldown));
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    assert!(
        s.debug_view(&c.full_path)
            .await
            .unwrap()
            .reload_cooldown
            .is_none()
    );
    assert!(s.reload(&job("c", 3), cooldown).await.unwrap().is_ok());
}

/// History: every finished run of a path, newest first, at most HISTORY_LEN.
async fn the_history_keeps_the_last_runs_newest_first<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(Retention::default());
    let h = job("h", 1);
    for n in 0..(httpsd::wire::HISTORY_LEN + 3) {
        let hn = job("h", n as u32 + 10);
        assert!(s.enqueue(&hn).await.unwrap(), "run {n} enqueued");
        let mut t = Vec::new();
        while !t.iter().any(|t: &Taken| t.raw == hn.raw) {
            let got = s.take("w1", 8, NO_WAIT).await.unwrap();
            assert!(!got.is_empty(), "the history job is in the queue");
            t.extend(got);
        }
        let done: Vec<Finished> = t
            .iter()
            .map(|t| {
                let mut f = finished(&hn, t, entry("h"));
                f.full_path =
                    serde_json::from_str::<serde_json::Value>(&t.raw).unwrap()["full_path"]
                        .as_str()
                        .unwrap()
                        .to_string();
                f.summary = format!("run {n}").into_bytes();
                f
            })
            .collect();
        s.finish(&done).await.unwrap();
    }
    let history = s.debug_view(&h.full_path).await.unwrap().history;
    assert_eq!(history.len(), httpsd::wire::HISTORY_LEN);
    assert_eq!(
        history[0].as_ref(),
        format!("run {}", httpsd::wire::HISTORY_LEN + 2).as_bytes()
    );
    assert_eq!(history[httpsd::wire::HISTORY_LEN - 1].as_ref(), b"run 3");
}

/// Orphans: a lease not renewed expires; the job goes back to the queue, once, and its
/// next take counts a second attempt. A renewed lease keeps its job.
async fn an_unrenewed_lease_is_orphaned_and_requeued_once<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(short_leases());
    let o = job("o", 1);
    let k = job("k", 1);
    s.enqueue(&o).await.unwrap();
    s.enqueue(&k).await.unwrap();
    let taken = s.take("w1", 2, NO_WAIT).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert!(
        s.orphans().await.unwrap().is_empty(),
        "fresh leases are not orphans"
    );
    let keep = taken.iter().find(|t| t.raw == k.raw).unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lost = s.heartbeat(std::slice::from_ref(keep)).await.unwrap();
        assert_eq!(lost, 0);
    }
    let orphans = s.orphans().await.unwrap();
    assert_eq!(
        orphans,
        vec![o.raw.clone()],
        "only the unrenewed job is orphaned"
    );
    let o_taken = taken.iter().find(|t| t.raw == o.raw).unwrap();
    assert_eq!(
        s.heartbeat(std::slice::from_ref(o_taken)).await.unwrap(),
        1,
        "a lease that expired while its job was in processing is lost"
    );
    assert!(s.requeue(&o.raw).await.unwrap());
    assert!(!s.requeue(&o.raw).await.unwrap(), "requeued once");
    assert!(
        !s.requeue(&k.raw).await.unwrap(),
        "a leased job is never requeued"
    );
    assert_eq!(
        s.debug_view(&o.full_path)
            .await
            .unwrap()
            .job
            .map(|j| j.state),
        Some(JobState::Queued)
    );
    let again = s.take("w2", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(again.raw, o.raw);
    assert_eq!(again.attempts, 2);
}

/// A heartbeat for a job gone from processing (it finished a moment ago) does not
/// count it lost, though its lease is gone.
async fn a_job_gone_from_processing_is_not_counted_lost<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(short_leases());
    let finished_lost = s
        .heartbeat(&[Taken {
            raw: "not in processing".into(),
            lease_id: "no-such-lease".into(),
            attempts: 1,
        }])
        .await
        .unwrap();
    assert_eq!(
        finished_lost, 0,
        "a job gone from processing (it finished a moment ago) is not lost"
    );
}

/// Hand back: to the head of the queue, not counted as an attempt (here a job on its
/// second attempt, taken again after its first lease expired).
async fn a_handed_back_job_is_taken_next_without_counting_an_attempt<S: Store>(
    make: impl Fn(Retention) -> S,
) {
    let retention = short_leases();
    let s = make(retention);
    let o = job("o", 1);
    let k = job("k", 1);
    s.enqueue(&o).await.unwrap();
    s.enqueue(&k).await.unwrap();
    assert_eq!(s.take("w1", 2, NO_WAIT).await.unwrap().len(), 2);
    tokio::time::sleep(retention.lease + Duration::from_millis(100)).await;
    assert!(s.requeue(&o.raw).await.unwrap());
    let again = s.take("w2", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!((again.raw.as_str(), again.attempts), (o.raw.as_str(), 2));
    s.hand_back(std::slice::from_ref(&again)).await.unwrap();
    assert_eq!(s.queue_lengths().await.unwrap(), (1, 1));
    let back = s.take("w3", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!((back.raw.as_str(), back.attempts), (o.raw.as_str(), 2));
}

/// Discard: an unreadable job is only removed (from processing, when it is there).
async fn an_unreadable_job_is_only_removed<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(Retention::default());
    let discard = |raw: &str| Finished {
        taken: Taken {
            raw: raw.into(),
            lease_id: "x".into(),
            attempts: 1,
        },
        full_path: String::new(),
        outcome: Outcome::Discard,
        run: Vec::new(),
        summary: Vec::new(),
    };
    s.finish(&[discard("not a job")]).await.unwrap();
    let junk = NewJob {
        full_path: "/targets/junk?".into(),
        raw: "not a job either".into(),
    };
    assert!(s.enqueue(&junk).await.unwrap());
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(t.raw, junk.raw);
    s.finish(&[discard(&t.raw)]).await.unwrap();
    assert_eq!(s.queue_lengths().await.unwrap(), (0, 0));
    assert!(s.get_entry(&junk.full_path).await.unwrap().is_none());
}

/// A blocked take wakes up when a job is pushed.
async fn a_blocked_take_wakes_when_a_job_is_pushed<S: Store>(make: impl Fn(Retention) -> S) {
    let s = Arc::new(make(Retention::default()));
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.take("w1", 1, Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let w = job("wake", 1);
    s.enqueue(&w).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(4), waiter)
        .await
        .expect("take woke up")
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].raw, w.raw);
}

/// An empty take returns empty after its wait.
async fn an_empty_take_returns_nothing_after_its_wait<S: Store>(make: impl Fn(Retention) -> S) {
    let s = make(Retention::default());
    assert!(s.take("w1", 1, NO_WAIT).await.unwrap().is_empty());
}

/// Readiness: a store that is there answers a ping.
async fn a_reachable_store_answers_ping<S: Store>(make: impl Fn(Retention) -> S) {
    make(Retention::default()).ping().await.unwrap();
}

/// The Redis keys themselves, as DESIGN §8 and the seeds name them, with their TTLs.
#[tokio::test]
async fn redis_wire_format() {
    let redis = RedisServer::start();
    let store = RedisStore::new(
        RedisSettings {
            url: redis.url(),
            ..RedisSettings::default()
        },
        Retention::default(),
    )
    .unwrap();
    let a = job_with("svc", 1, vec![("n".into(), "1".into())]);
    store.enqueue(&a).await.unwrap();
    let queued: Vec<String> = redis.cmd(&["LRANGE", "target_generation_queue", "0", "-1"]);
    assert_eq!(queued, vec![a.raw.clone()]);
    let j: serde_json::Value = serde_json::from_str(&queued[0]).unwrap();
    assert_eq!(j["full_path"], "/targets/svc?n=1");
    assert_eq!(j["path"], "svc");
    assert_eq!(j["extra_args"], serde_json::json!({"n": "1"}));
    assert_eq!(j["job_id"], "/targets/svc?n=1:1700000000");
    let marker_ttl: i64 = redis.cmd(&["TTL", "httpsd:job:/targets/svc?n=1"]);
    assert!(marker_ttl > 0, "markers carry a TTL");

    let t = store.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    let processing: Vec<String> =
        redis.cmd(&["LRANGE", "target_generation_queue:processing", "0", "-1"]);
    assert_eq!(processing, vec![a.raw.clone()]);
    let lease_ttl: i64 = redis.cmd(&["PTTL", &format!("httpsd:lease:{}", t.lease_id)]);
    assert!(lease_ttl > 0 && lease_ttl <= 30_000, "{lease_ttl}");

    store.finish(&[finished(&a, &t, error("e"))]).await.unwrap();
    let error_ttl: i64 = redis.cmd(&["TTL", "error:/targets/svc?n=1"]);
    assert!((3590..=3600).contains(&error_ttl), "error TTL {error_ttl}");
    let llen: i64 = redis.cmd(&["LLEN", "target_generation_queue:processing"]);
    assert_eq!(llen, 0);

    // Every key of our own has a TTL.
    let keys: Vec<String> = redis.cmd(&["KEYS", "httpsd:*"]);
    assert!(!keys.is_empty());
    for key in keys {
        let ttl: i64 = redis.cmd(&["TTL", &key]);
        assert!(ttl > 0, "{key} has no TTL");
    }

    // A job pushed by the old tool (no marker) is marked running when taken, so dedupe
    // covers it too, and it finishes cleanly.
    let old = r#"{"full_path": "/targets/old?", "path": "old", "extra_args": {}, "job_id": "/targets/old?:1"}"#;
    redis.cmd::<()>(&["LPUSH", "target_generation_queue", old]);
    let t = store.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(t.raw, old);
    let old_job = NewJob {
        full_path: "/targets/old?".into(),
        raw: old.into(),
    };
    assert!(!store.enqueue(&old_job).await.unwrap());
    store
        .finish(&[finished(&old_job, &t, entry("o"))])
        .await
        .unwrap();
    assert!(redis.get("/targets/old?").is_some());
    let cache_ttl: i64 = redis.cmd(&["TTL", "/targets/old?"]);
    assert!(
        cache_ttl > 3600,
        "the entry outlives --cache-seconds: {cache_ttl}"
    );
}

/// A Redis outage is a quick error, and the same store works again when Redis is back,
/// without being rebuilt.
#[tokio::test]
async fn redis_outage_is_an_error_then_recovers() {
    let mut redis = RedisServer::start();
    let store = RedisStore::new(
        RedisSettings {
            url: redis.url(),
            timeout: Duration::from_millis(500),
            ..RedisSettings::default()
        },
        Retention::default(),
    )
    .unwrap();
    store.ping().await.unwrap();
    redis.stop();
    // A hang guard, not a timing: every call must come back with an error.
    let during = tokio::time::timeout(Duration::from_secs(30), async {
        (
            store.get_entry("/targets/x?").await.is_err(),
            store.enqueue(&job("x", 1)).await.is_err(),
            store
                .take("w", 1, Duration::from_millis(100))
                .await
                .is_err(),
        )
    })
    .await
    .expect("store calls during an outage must not hang");
    assert_eq!(during, (true, true, true));
    redis.restart();
    let mut recovered = false;
    for _ in 0..200 {
        if store.ping().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the store did not recover after Redis came back");
    assert!(store.enqueue(&job("x", 2)).await.unwrap());
    assert_eq!(store.take("w", 1, NO_WAIT).await.unwrap().len(), 1);
}

/// A Redis store on `redis` (emptied first) with `max_value_bytes`.
fn redis_store(redis: &RedisServer, retention: Retention, max_value_bytes: u64) -> RedisStore {
    redis.flush();
    RedisStore::new(
        RedisSettings {
            url: redis.url(),
            max_value_bytes,
            ..RedisSettings::default()
        },
        retention,
    )
    .unwrap()
}

/// Runs one job for `path` to the end with `outcome`.
async fn write<S: Store>(s: &S, path: &str, outcome: Outcome) {
    let j = job(path, 1);
    assert!(s.enqueue(&j).await.unwrap(), "{path} enqueued");
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(t.raw, j.raw);
    s.finish(&[finished(&j, &t, outcome)]).await.unwrap();
}

async fn has_entry<S: Store>(s: &S, path: &str) -> bool {
    s.get_entry(&job(path, 1).full_path)
        .await
        .unwrap()
        .is_some()
}

/// An entry of about `len` bytes.
fn sized_entry(tag: &str, len: usize) -> Outcome {
    let Outcome::Entry(mut bytes) = entry(tag) else {
        unreachable!()
    };
    bytes.resize(len, b' ');
    Outcome::Entry(bytes)
}

fn metric(metrics: &Metrics, line_start: &str) -> Option<f64> {
    String::from_utf8(metrics.encode())
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// Writes `outcome` for `path` as a job that was never queued (no marker involved).
async fn put<S: Store>(s: &S, path: &str, outcome: Outcome) {
    let j = job(path, 100);
    let t = Taken {
        raw: j.raw.clone(),
        lease_id: format!("put-{path}"),
        attempts: 1,
    };
    s.finish(&[finished(&j, &t, outcome)]).await.unwrap();
}

/// The memory store keeps at most `max_paths` paths: past it the least recently used
/// (a cache hit counts as a use) goes, entry, error, run report and history together;
/// a path with a job queued or running never does.
#[tokio::test]
async fn memory_store_evicts_least_recently_used_paths_by_count() {
    let metrics = Metrics::new();
    let s = MemoryStore::with_bounds(
        Retention::default(),
        MemoryBounds {
            max_paths: 3,
            ..MemoryBounds::default()
        },
    )
    .with_metrics(metrics.memory_store());
    put(&s, "a", entry("a")).await;
    put(&s, "b", error("b")).await;
    put(&s, "c", entry("c")).await;
    assert_eq!(s.usage().paths, 3);
    let b = s.debug_view(&job("b", 1).full_path).await.unwrap();
    assert!(b.error.is_some() && b.run.is_some() && !b.history.is_empty());
    assert!(
        has_entry(&s, "a").await,
        "a read makes a the most recently used"
    );
    put(&s, "d", entry("d")).await;
    let b = s.debug_view(&job("b", 1).full_path).await.unwrap();
    assert!(
        b.entry.is_none() && b.error.is_none() && b.run.is_none() && b.history.is_empty(),
        "the least recently used path goes whole"
    );
    for p in ["a", "c", "d"] {
        assert!(has_entry(&s, p).await, "{p} is kept");
    }
    let usage = s.usage();
    assert_eq!((usage.paths, usage.evictions), (3, 1));

    // c gets a job; a and d are read: c is the least recently used, but while its job
    // is queued it is passed over, and a goes instead.
    let c2 = job("c", 2);
    assert!(s.enqueue(&c2).await.unwrap());
    for p in ["a", "d"] {
        assert!(has_entry(&s, p).await);
    }
    put(&s, "e", entry("e")).await;
    assert!(
        has_entry(&s, "c").await,
        "a path with a queued job is never evicted"
    );
    assert!(
        !has_entry(&s, "a").await,
        "the next least recently used went instead"
    );
    // The same while it runs.
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(t.raw, c2.raw);
    for p in ["d", "e"] {
        assert!(has_entry(&s, p).await);
    }
    put(&s, "f", entry("f")).await;
    assert!(
        has_entry(&s, "c").await,
        "a path with a running job is never evicted"
    );
    assert!(!has_entry(&s, "d").await);
    s.finish(&[finished(&c2, &t, entry("c2"))]).await.unwrap();
    let usage = s.usage();
    assert_eq!((usage.paths, usage.evictions), (3, 3));
    for p in ["c", "e", "f"] {
        assert!(has_entry(&s, p).await, "{p} is kept");
    }
    assert_eq!(
        metric(
            &metrics,
            "httpsd_memory_store_evictions_total{reason=\"paths\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(&metrics, "httpsd_memory_store_paths"),
        Some(3.0),
        "the gauge follows"
    );
    assert_eq!(
        metric(&metrics, "httpsd_memory_store_bytes"),
        Some(usage.bytes as f64)
    );
}

/// The memory store's queue is bounded too: a client asking for distinct parameter
/// sets faster than they run gets a refusal past `max_paths` queued jobs, not a queue
/// (and its markers) that grows without end; a taken job makes room again.
#[tokio::test]
async fn memory_store_refuses_jobs_past_its_queue_bound() {
    let s = MemoryStore::with_bounds(
        Retention::default(),
        MemoryBounds {
            max_paths: 2,
            ..MemoryBounds::default()
        },
    );
    assert!(s.enqueue(&job("a", 1)).await.unwrap());
    assert!(s.enqueue(&job("b", 1)).await.unwrap());
    match s.enqueue(&job("c", 1)).await {
        Err(StoreError::Refused { reason, .. }) => {
            assert!(reason.contains("queue is full"), "{reason}")
        }
        other => panic!("a third queued job: {other:?}"),
    }
    match s.reload(&job("c", 1), Duration::ZERO).await {
        Err(StoreError::Refused { .. }) => {}
        other => panic!("a reload past the bound: {other:?}"),
    }
    let taken = s.take("w", 1, Duration::from_millis(10)).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        s.enqueue(&job("c", 1)).await.unwrap(),
        "taking a job makes room"
    );
}

/// The memory store keeps at most `max_bytes`: past it the least recently used paths
/// go. One result larger than the whole bound is refused (its job fails alone) instead
/// of evicting everything else.
#[tokio::test]
async fn memory_store_evicts_least_recently_used_paths_by_bytes() {
    let metrics = Metrics::new();
    let max_bytes = 40_000;
    let s = MemoryStore::with_bounds(
        Retention::default(),
        MemoryBounds {
            max_bytes,
            ..MemoryBounds::default()
        },
    )
    .with_metrics(metrics.memory_store());
    for p in ["p1", "p2", "p3"] {
        write(&s, p, sized_entry(p, 10_000)).await;
    }
    let before = s.usage();
    assert_eq!(before.paths, 3);
    assert!(
        before.bytes > 30_000 && before.bytes <= max_bytes,
        "{before:?}"
    );
    assert!(has_entry(&s, "p1").await, "a read refreshes p1");
    write(&s, "p4", sized_entry("p4", 10_000)).await;
    assert!(
        !has_entry(&s, "p2").await,
        "the least recently used path went"
    );
    for p in ["p1", "p3", "p4"] {
        assert!(has_entry(&s, p).await, "{p} is kept");
    }
    let usage = s.usage();
    assert!(usage.bytes <= max_bytes, "{usage:?}");
    assert_eq!((usage.paths, usage.evictions), (3, 1));
    assert_eq!(
        metric(&metrics, "httpsd_memory_store_bytes"),
        Some(usage.bytes as f64)
    );
    assert_eq!(
        metric(
            &metrics,
            "httpsd_memory_store_evictions_total{reason=\"bytes\"}"
        ),
        Some(1.0)
    );

    // Larger than the whole bound alone: refused, naming the job; nothing written and
    // nothing evicted.
    let huge = job("huge", 1);
    assert!(s.enqueue(&huge).await.unwrap());
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    let small = job("small", 1);
    assert!(s.enqueue(&small).await.unwrap());
    let t_small = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    match s
        .finish(&[
            finished(&small, &t_small, entry("small")),
            finished(&huge, &t, sized_entry("huge", 50_000)),
        ])
        .await
    {
        Err(StoreError::Refused { item: Some(1), .. }) => {}
        other => panic!("an entry over the whole bound is refused: {other:?}"),
    }
    assert!(!has_entry(&s, "huge").await && !has_entry(&s, "small").await);
    assert_eq!(s.usage(), usage, "a refused batch changes nothing");
    for p in ["p1", "p3", "p4"] {
        assert!(has_entry(&s, p).await, "{p} is kept");
    }
}

/// One job whose result the store refuses (here: over the store's value limit) fails
/// alone: the rest of its group is written, and it gets a small StoreRefusedError
/// entry instead, without the group being retried for ever.
async fn refused_write_fails_only_its_own_job<S: Store>(s: S) {
    let s = Arc::new(s);
    a_batch_with_an_oversized_value_is_refused_whole(&*s).await;
    the_finisher_fails_only_the_refused_job(s).await;
}

/// A batch with an oversized value is refused as a whole, naming the job, before
/// anything of it is written.
async fn a_batch_with_an_oversized_value_is_refused_whole<S: Store>(s: &S) {
    let x = job("x", 1);
    let y = job("y", 1);
    s.enqueue(&x).await.unwrap();
    s.enqueue(&y).await.unwrap();
    let t = s.take("w1", 2, NO_WAIT).await.unwrap();
    let tx_ = t.iter().find(|t| t.raw == x.raw).unwrap();
    let ty = t.iter().find(|t| t.raw == y.raw).unwrap();
    match s
        .finish(&[
            finished(&x, tx_, entry("x")),
            finished(&y, ty, sized_entry("y", 64 << 10)),
        ])
        .await
    {
        Err(StoreError::Refused {
            item: Some(1),
            reason,
        }) => assert!(reason.contains("bytes"), "{reason}"),
        other => panic!("an oversized value is refused: {other:?}"),
    }
    assert!(
        !has_entry(s, "x").await,
        "nothing of a refused batch is written"
    );
    s.finish(&[finished(&x, tx_, entry("x")), finished(&y, ty, entry("y"))])
        .await
        .unwrap();
}

/// Through the worker's finisher: five jobs in one group, the third too large.
async fn the_finisher_fails_only_the_refused_job<S: Store>(s: Arc<S>) {
    let jobs: Vec<NewJob> = (0..5).map(|n| job(&format!("r{n}"), 1)).collect();
    for j in &jobs {
        assert!(s.enqueue(j).await.unwrap());
    }
    let taken = s.take("w1", 8, NO_WAIT).await.unwrap();
    assert_eq!(taken.len(), 5);
    let in_flight = Arc::new(Mutex::new(
        taken
            .iter()
            .map(|t| (t.lease_id.clone(), t.clone()))
            .collect::<HashMap<_, _>>(),
    ));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, j) in jobs.iter().enumerate() {
        let t = taken.iter().find(|t| t.raw == j.raw).unwrap();
        let outcome = if i == 2 {
            sized_entry("big", 64 << 10)
        } else {
            entry(&format!("ok{i}"))
        };
        tx.send(Done {
            worker_id: Arc::from("w1"),
            finished: finished(j, t, outcome),
        })
        .unwrap();
    }
    drop(tx);
    let metrics = Arc::new(Metrics::new());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::time::timeout(
        Duration::from_secs(20),
        finisher::run(s.clone(), metrics.clone(), in_flight.clone(), rx, stopped),
    )
    .await
    .expect("a refused write is not retried for ever");
    the_healthy_jobs_are_written_and_the_refused_one_failed(&*s, &jobs).await;
    assert_eq!(s.queue_lengths().await.unwrap(), (0, 0));
    assert!(in_flight.lock().unwrap().is_empty());
    let processed = |status: &str| {
        metric(
            &metrics,
            &format!(
                "httpsd_redis_worker_jobs_processed_total{{status=\"{status}\",worker_id=\"w1\"}}"
            ),
        )
    };
    assert_eq!(
        (processed("success"), processed("failure")),
        (Some(4.0), Some(1.0))
    );
}

/// After the finisher ran `jobs` (the third refused): the others' entries are written,
/// the third has a small StoreRefusedError entry and a history line saying so.
async fn the_healthy_jobs_are_written_and_the_refused_one_failed<S: Store>(s: &S, jobs: &[NewJob]) {
    for (i, j) in jobs.iter().enumerate() {
        let view = s.debug_view(&j.full_path).await.unwrap();
        assert!(view.job.is_none(), "job {i} is done with");
        if i == 2 {
            continue;
        }
        let got = view
            .entry
            .expect("the healthy jobs of the group are written");
        assert!(
            std::str::from_utf8(&got)
                .unwrap()
                .contains(&format!("ok{i}"))
        );
    }
    let refused = s.debug_view(&jobs[2].full_path).await.unwrap();
    assert!(refused.entry.is_none(), "the refused result is not written");
    let error_bytes = refused.error.expect("the refused job has an error entry");
    assert!(
        error_bytes.len() < 4096,
        "a small one: {}",
        error_bytes.len()
    );
    let error: serde_json::Value = serde_json::from_slice(&error_bytes).unwrap();
    assert_eq!(error["status"], "error");
    let details = &error["error_details"];
    assert_eq!(details["error_type"], "StoreRefusedError", "{error}");
    assert_eq!(details["path"], "r2");
    assert_eq!(details["job_id"], "/targets/r2?:1700000000");
    let message = details["error_message"].as_str().unwrap();
    assert!(
        message.contains("refused") && message.contains(&(64 << 10).to_string()),
        "{message}"
    );
    assert!(
        String::from_utf8_lossy(&refused.history[0]).contains("StoreRefusedError"),
        "the history says so too"
    );
}

#[tokio::test]
async fn memory_store_refused_write_fails_only_its_own_job() {
    refused_write_fails_only_its_own_job(MemoryStore::with_bounds(
        Retention::default(),
        MemoryBounds {
            max_value_bytes: 16 << 10,
            ..MemoryBounds::default()
        },
    ))
    .await;
}

#[tokio::test]
async fn redis_store_refused_write_fails_only_its_own_job() {
    let redis = RedisServer::start();
    refused_write_fails_only_its_own_job(redis_store(&redis, Retention::default(), 16 << 10)).await;
    // In the wire format's key, where the old tool's readers look too.
    let error_len: i64 = redis.cmd(&["STRLEN", "error:/targets/r2?"]);
    assert!(error_len > 0 && error_len < 4096, "{error_len}");
}

/// A client reloading a path while its job runs cannot keep it unanswered: the running
/// job's result is written, and the job runs once more for the reload.
async fn reload_while_running_keeps_the_result<S: Store>(s: S) {
    let p = job("slow", 1);
    assert!(s.enqueue(&p).await.unwrap());
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    for n in 2..6 {
        let r = s
            .reload(&job("slow", n), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert!(r.enqueued, "{r:?}");
    }
    assert_eq!(
        s.queue_lengths().await.unwrap(),
        (0, 1),
        "one run at a time"
    );
    s.finish(&[finished(&p, &t, entry("first"))]).await.unwrap();
    let got = s.get_entry(&p.full_path).await.unwrap();
    assert!(
        got.is_some_and(|e| std::str::from_utf8(&e).unwrap().contains("first")),
        "the finished run's result is served"
    );
    assert_eq!(
        s.queue_lengths().await.unwrap(),
        (1, 0),
        "and the job runs again, once"
    );
    let view = s.debug_view(&p.full_path).await.unwrap();
    assert_eq!(view.job.map(|j| j.state), Some(JobState::Queued));
    assert_eq!(view.history.len(), 1, "the run is recorded");

    // Reloaded again during the second run, which fails: its error is written too, and
    // a third run follows.
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(t.raw, p.raw);
    let r = s
        .reload(&job("slow", 7), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert!(r.cache_cleared && r.enqueued, "{r:?}");
    s.finish(&[finished(&p, &t, error("second"))])
        .await
        .unwrap();
    let view = s.debug_view(&p.full_path).await.unwrap();
    assert!(
        view.error
            .is_some_and(|e| std::str::from_utf8(&e).unwrap().contains("second")),
        "the failed run's error is written"
    );
    assert_eq!(view.job.map(|j| j.state), Some(JobState::Queued));
    let t = s.take("w1", 1, NO_WAIT).await.unwrap().remove(0);
    s.finish(&[finished(&p, &t, entry("third"))]).await.unwrap();
    let view = s.debug_view(&p.full_path).await.unwrap();
    assert!(view.entry.is_some() && view.error.is_none() && view.job.is_none());
    assert_eq!(view.history.len(), 3);
    assert_eq!(s.queue_lengths().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn memory_store_reload_while_running_keeps_the_result() {
    reload_while_running_keeps_the_result(MemoryStore::new(Retention::default())).await;
}

#[tokio::test]
async fn redis_store_reload_while_running_keeps_the_result() {
    let redis = RedisServer::start();
    reload_while_running_keeps_the_result(redis_store(
        &redis,
        Retention::default(),
        httpsd::store::DEFAULT_MAX_VALUE_BYTES,
    ))
    .await;
}

/// Redis refusing a command (here: out of memory) is `Refused`, not `Unavailable`: the
/// store answered, and retrying the same write will not help. The connection stays
/// usable.
#[tokio::test]
async fn redis_refusal_is_typed_apart_from_an_outage() {
    let redis = RedisServer::start();
    let store = redis_store(&redis, Retention::default(), 16 << 10);
    store.ping().await.unwrap();
    redis.cmd::<()>(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cmd::<()>(&["CONFIG", "SET", "maxmemory", "1"]);
    // take.lua's first command (LMOVE) may grow memory: refused. (A script whose first
    // command is a write of any kind may go on past maxmemory: Redis cannot stop it
    // half-way.)
    match store.take("w1", 1, NO_WAIT).await {
        Err(StoreError::Refused { item: None, reason }) => {
            assert!(reason.contains("OOM"), "{reason}")
        }
        other => panic!("an out-of-memory Redis refuses: {other:?}"),
    }
    redis.cmd::<()>(&["CONFIG", "SET", "maxmemory", "0"]);
    assert!(store.enqueue(&job("oom", 1)).await.unwrap());
    assert_eq!(store.queue_lengths().await.unwrap(), (1, 0));
}

/// After a Redis failover (replication is asynchronous) a path's marker can outlive
/// its job: a queued job gone from the queue, a running one gone from processing with
/// its lease, or a running one whose result (and so its release) was lost, left in
/// processing until its lease runs out. Such a marker blocks its path for less than a
/// lease (enqueue.lua looks once it is half a lease old), not for its TTL; a marker
/// whose job is still there keeps deduping however old, also in the moment between a
/// worker's BLMOVE and the script that leases the job.
#[tokio::test]
async fn redis_a_marker_whose_job_vanished_blocks_its_path_for_a_lease_at_most() {
    let redis = RedisServer::start();
    let s = redis_store(
        &redis,
        short_leases(),
        httpsd::store::DEFAULT_MAX_VALUE_BYTES,
    );
    let [queued, running, orphan, kept, moving] =
        ["lost-q", "lost-r", "orphan", "kept", "moving"].map(|p| job(p, 1));
    for j in [&running, &orphan] {
        assert!(s.enqueue(j).await.unwrap());
        assert_eq!(s.take("w1", 1, NO_WAIT).await.unwrap().len(), 1);
    }
    for j in [&queued, &kept, &moving] {
        assert!(s.enqueue(j).await.unwrap());
    }
    // The failover: the queued job is gone, the running one and its lease too, and
    // the orphan's lease (its finish was lost, the lease ran out).
    let cmd = |args: &[&str]| redis.cmd::<i64>(args);
    cmd(&["LREM", "target_generation_queue", "0", &queued.raw]);
    cmd(&[
        "LREM",
        "target_generation_queue:processing",
        "0",
        &running.raw,
    ]);
    let leases: Vec<String> = redis.cmd(&["KEYS", "httpsd:lease:*"]);
    for lease in leases {
        cmd(&["DEL", &lease]);
    }
    // A worker's BLMOVE has just moved this one; its lease comes next.
    cmd(&["LREM", "target_generation_queue", "0", &moving.raw]);
    cmd(&["LPUSH", "target_generation_queue:processing", &moving.raw]);
    for j in [&queued, &running, &orphan, &kept, &moving] {
        assert!(!s.enqueue(j).await.unwrap(), "a young marker dedupes");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (j, pushed) in [
        (&queued, true),
        (&running, true),
        (&orphan, true),
        (&kept, false),
        (&moving, false),
    ] {
        assert_eq!(s.enqueue(j).await.unwrap(), pushed, "{}", j.full_path);
    }
    let mut in_queue: Vec<String> = redis.cmd(&["LRANGE", "target_generation_queue", "0", "-1"]);
    in_queue.sort();
    let mut want = [&queued, &running, &orphan, &kept]
        .map(|j| j.raw.clone())
        .to_vec();
    want.sort();
    assert_eq!(in_queue, want, "each path has its one job again");
    let processing: Vec<String> =
        redis.cmd(&["LRANGE", "target_generation_queue:processing", "0", "-1"]);
    assert_eq!(
        processing,
        vec![moving.raw.clone()],
        "the orphan left processing"
    );
    let state = s
        .debug_view(&orphan.full_path)
        .await
        .unwrap()
        .job
        .map(|j| j.state);
    assert_eq!(state, Some(JobState::Queued));
}

//! Writes finished jobs back to the store in groups: whatever finished while the
//! previous write was under way goes into the next one (a group commit).
//!
//! Why not write per batch: a batch's results would wait for its slowest job (one
//! generator sleeping into its 10 s timeout would hold back the other seven answers),
//! and the store would see one small write per batch per loop. With one finisher per
//! process, a result is written as soon as its own job is done, and a busy worker sends
//! few, large writes.
//!
//! What one job writes cannot hold back the others. When the store refuses a write
//! ([`StoreError::Refused`]: a value over its size limit, Redis out of memory), the
//! group is split, the other jobs are written, and the refused job alone fails: a small
//! `StoreRefusedError` entry is written in place of its result ([`store_refused`]), and
//! should even that be refused, the job is only released (dropped from processing, its
//! path's marker cleared). An unreachable store is different: the same write will work
//! once it is back, so it is retried with a backoff.

use super::backoff::Backoff;
use super::inflight::{InFlight, lock};
use super::job::store_refused;
use crate::store::{Finished, Outcome, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Most results in one write.
const MAX_GROUP: usize = 128;

/// A finished job and the worker loop that ran it (for its metrics).
pub struct Done {
    /// The loop's worker id.
    pub worker_id: Arc<str>,
    /// What to write.
    pub finished: Finished,
}

/// How far the write of a job has fallen back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Its own result.
    Result,
    /// A `StoreRefusedError` in place of a refused result.
    Refused,
    /// Nothing: only dropped from processing, its marker cleared.
    Released,
}

/// Jobs to write in one call, and for each its worker and stage.
struct Group {
    finished: Vec<Finished>,
    meta: Vec<(Arc<str>, Stage)>,
}

impl Group {
    fn one(finished: Finished, worker_id: Arc<str>, stage: Stage) -> Group {
        Group {
            finished: vec![finished],
            meta: vec![(worker_id, stage)],
        }
    }
}

/// Writes what arrives on `rx` until every sender is gone and the channel is empty.
pub async fn run<S: Store>(
    store: Arc<S>,
    metrics: Arc<crate::metrics::Metrics>,
    in_flight: InFlight,
    mut rx: mpsc::UnboundedReceiver<Done>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut received: Vec<Done> = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut received, MAX_GROUP).await > 0 {
        let (meta, finished) = received
            .drain(..)
            .map(|d| ((d.worker_id, Stage::Result), d.finished))
            .unzip();
        write(
            &*store,
            &metrics,
            &in_flight,
            Group { finished, meta },
            &mut shutdown,
        )
        .await;
    }
}

/// Writes `group`, splitting it around refused jobs.
async fn write<S: Store>(
    store: &S,
    metrics: &crate::metrics::Metrics,
    in_flight: &InFlight,
    group: Group,
    shutdown: &mut watch::Receiver<bool>,
) {
    // Groups still to write; the last pushed is written first.
    let mut todo = vec![group];
    // At most a second between tries: finished results are the work most worth
    // saving, and after a Redis failover a write waiting out a longer backoff kept its
    // path unanswered for seconds after the new primary was up.
    let mut backoff = Backoff::up_to(Duration::from_secs(1));
    while let Some(mut g) = todo.pop() {
        match store.finish(&g.finished).await {
            Ok(()) => {
                backoff.reset();
                written(metrics, in_flight, &g);
            }
            Err(StoreError::Refused { reason, item }) => {
                let item = item
                    .filter(|i| *i < g.finished.len())
                    .or((g.finished.len() == 1).then_some(0));
                let Some(i) = item else {
                    // Somewhere in the group: halve it until the job is found. (Only a
                    // refusal by Redis itself, rare: the size limits are checked before
                    // sending and name the job.)
                    let half = g.finished.len() / 2;
                    let back = Group {
                        finished: g.finished.split_off(half),
                        meta: g.meta.split_off(half),
                    };
                    todo.push(back);
                    todo.push(g);
                    continue;
                };
                let refused = g.finished.remove(i);
                let (worker_id, stage) = g.meta.remove(i);
                metrics.store_errors.with_label_values(&["refused"]).inc();
                let lease_id = refused.taken.lease_id.clone();
                match fall_back(metrics, refused, worker_id, stage, &reason) {
                    Some(instead) => todo.push(instead),
                    // Given up: no more heartbeats, so the reaper can take it back.
                    None => {
                        lock(in_flight).remove(&lease_id);
                    }
                }
                // The others first.
                if !g.finished.is_empty() {
                    todo.push(g);
                }
            }
            // Results are only lost if the store stays away past the drain; until then,
            // retry. (The leases may expire meanwhile; a rerun elsewhere is harmless.)
            Err(e) => {
                metrics.store_errors.with_label_values(&["finish"]).inc();
                tracing::warn!(jobs = g.finished.len(), "cannot write results: {e}");
                backoff.wait(shutdown).await;
                todo.push(g);
            }
        }
    }
}

/// What to write in place of `refused`, or nothing when even releasing it was refused.
fn fall_back(
    metrics: &crate::metrics::Metrics,
    refused: Finished,
    worker_id: Arc<str>,
    stage: Stage,
    reason: &str,
) -> Option<Group> {
    let release = |f: Finished| Finished {
        outcome: Outcome::Discard,
        run: Vec::new(),
        summary: Vec::new(),
        ..f
    };
    match stage {
        Stage::Result if matches!(refused.outcome, Outcome::Discard) => {
            Some(Group::one(release(refused), worker_id, Stage::Released))
        }
        Stage::Result => {
            tracing::warn!(
                full_path = %refused.full_path,
                worker_id = %worker_id,
                "the store refused a job's result; writing a StoreRefusedError instead: {reason}"
            );
            let instead = store_refused(metrics, &refused, &worker_id, reason);
            Some(Group::one(instead, worker_id, Stage::Refused))
        }
        Stage::Refused => {
            tracing::error!(
                full_path = %refused.full_path,
                worker_id = %worker_id,
                "the store refused even the error entry of a refused result; releasing the job: {reason}"
            );
            Some(Group::one(release(refused), worker_id, Stage::Released))
        }
        Stage::Released => {
            tracing::error!(
                full_path = %refused.full_path,
                worker_id = %worker_id,
                "the store refused to release a job; its lease will expire and the reaper will queue it again: {reason}"
            );
            None
        }
    }
}

/// Bookkeeping for a group the store took.
fn written(metrics: &crate::metrics::Metrics, in_flight: &InFlight, g: &Group) {
    {
        let mut map = lock(in_flight);
        for f in &g.finished {
            map.remove(&f.taken.lease_id);
        }
    }
    for (f, (worker_id, stage)) in g.finished.iter().zip(&g.meta) {
        let status = match (stage, &f.outcome) {
            (_, Outcome::Discard) => "discarded",
            (Stage::Result, Outcome::Entry(_)) => "success",
            _ => "failure",
        };
        metrics
            .jobs_processed
            .with_label_values(&[worker_id, status])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::{Done, run};
    use crate::metrics::Metrics;
    use crate::store::{
        CoolingDown, DebugView, Finished, MemoryStore, NewJob, Outcome, ReloadOutcome, Retention,
        Store, StoreError, StoreResult, Taken,
    };
    use crate::targets::TargetPath;
    use crate::wire::TargetRequest;
    use bytes::Bytes;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A memory store whose `finish` fails as Redis's would when it refuses a write:
    /// `Refused` without saying which job, for any batch holding `path`'s entry (and,
    /// with `errors_too`, its error entry).
    struct Refusing {
        inner: MemoryStore,
        path: String,
        errors_too: bool,
    }

    impl Store for Refusing {
        fn kind(&self) -> &'static str {
            "refusing"
        }
        async fn get_entry(&self, full_path: &str) -> StoreResult<Option<Bytes>> {
            self.inner.get_entry(full_path).await
        }
        async fn debug_view(&self, full_path: &str) -> StoreResult<DebugView> {
            self.inner.debug_view(full_path).await
        }
        async fn overview(&self, full_paths: &[String]) -> StoreResult<Vec<DebugView>> {
            self.inner.overview(full_paths).await
        }
        async fn enqueue(&self, job: &NewJob) -> StoreResult<bool> {
            self.inner.enqueue(job).await
        }
        async fn reload(
            &self,
            job: &NewJob,
            cooldown: Duration,
        ) -> StoreResult<Result<ReloadOutcome, CoolingDown>> {
            self.inner.reload(job, cooldown).await
        }
        async fn take(
            &self,
            worker_id: &str,
            max: usize,
            wait: Duration,
        ) -> StoreResult<Vec<Taken>> {
            self.inner.take(worker_id, max, wait).await
        }
        async fn heartbeat(&self, running: &[Taken]) -> StoreResult<usize> {
            self.inner.heartbeat(running).await
        }
        async fn finish(&self, done: &[Finished]) -> StoreResult<()> {
            let refused = done.iter().any(|f| {
                f.full_path == self.path
                    && match f.outcome {
                        Outcome::Entry(_) => true,
                        Outcome::Error(_) => self.errors_too,
                        Outcome::Discard => false,
                    }
            });
            if refused {
                return Err(StoreError::Refused {
                    reason:
                        "Redis answered: OOM command not allowed when used memory > 'maxmemory'"
                            .into(),
                    item: None,
                });
            }
            self.inner.finish(done).await
        }
        async fn hand_back(&self, taken: &[Taken]) -> StoreResult<()> {
            self.inner.hand_back(taken).await
        }
        async fn orphans(&self) -> StoreResult<Vec<String>> {
            self.inner.orphans().await
        }
        async fn requeue(&self, raw: &str) -> StoreResult<bool> {
            self.inner.requeue(raw).await
        }
        async fn queue_lengths(&self) -> StoreResult<(u64, u64)> {
            self.inner.queue_lengths().await
        }
        async fn ping(&self) -> StoreResult<()> {
            self.inner.ping().await
        }
    }

    fn job(path: &str) -> NewJob {
        let req = TargetRequest::new(TargetPath::parse(path).unwrap(), Vec::new());
        NewJob::from_job(&req.job(1_700_000_000.0))
    }

    /// Runs the finisher over one group of nine jobs, `p4` refused; what the store
    /// holds for `p4` then, and the metrics.
    async fn nine_jobs(errors_too: bool) -> (Arc<Refusing>, Metrics) {
        let store = Arc::new(Refusing {
            inner: MemoryStore::new(Retention::default()),
            path: job("p4").full_path,
            errors_too,
        });
        let jobs: Vec<NewJob> = (0..9).map(|n| job(&format!("p{n}"))).collect();
        for j in &jobs {
            assert!(store.enqueue(j).await.unwrap());
        }
        let taken = store
            .take("w", 16, Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(taken.len(), 9);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for t in &taken {
            let j = jobs.iter().find(|j| j.raw == t.raw).unwrap();
            tx.send(Done {
                worker_id: Arc::from("w"),
                finished: Finished {
                    taken: t.clone(),
                    full_path: j.full_path.clone(),
                    outcome: Outcome::Entry(
                        br#"{"updated_timestamp": 1.0, "results": []}"#.to_vec(),
                    ),
                    run: b"{}".to_vec(),
                    summary: br#"{"processing_time": 0.5}"#.to_vec(),
                },
            })
            .unwrap();
        }
        drop(tx);
        let metrics = Arc::new(Metrics::new());
        let in_flight = Arc::new(Mutex::new(HashMap::new()));
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        tokio::time::timeout(
            Duration::from_secs(10),
            run(store.clone(), metrics.clone(), in_flight, rx, stopped),
        )
        .await
        .expect("refusals are not retried for ever");
        for j in jobs.iter().filter(|j| j.full_path != store.path) {
            let view = store.debug_view(&j.full_path).await.unwrap();
            assert!(
                view.entry.is_some() && view.job.is_none(),
                "{} written",
                j.full_path
            );
        }
        assert_eq!(store.queue_lengths().await.unwrap(), (0, 0));
        let metrics = Arc::into_inner(metrics).unwrap();
        (store, metrics)
    }

    fn processed(metrics: &Metrics, status: &str) -> u64 {
        metrics
            .jobs_processed
            .with_label_values(&["w", status])
            .get()
    }

    #[tokio::test]
    async fn a_refusal_without_the_job_named_is_narrowed_down_to_it() {
        let (store, metrics) = nine_jobs(false).await;
        let view = store.debug_view(&store.path).await.unwrap();
        assert!(view.entry.is_none() && view.job.is_none());
        let error: serde_json::Value = serde_json::from_slice(&view.error.unwrap()).unwrap();
        let details = &error["error_details"];
        assert_eq!(details["error_type"], super::super::job::STORE_REFUSED);
        assert!(
            details["error_message"].as_str().unwrap().contains("OOM"),
            "{error}"
        );
        assert_eq!(details["processing_time"], 0.5);
        assert_eq!(processed(&metrics, "success"), 8);
        assert_eq!(processed(&metrics, "failure"), 1);
    }

    #[tokio::test]
    async fn a_job_whose_error_is_refused_too_is_released() {
        let (store, metrics) = nine_jobs(true).await;
        let view = store.debug_view(&store.path).await.unwrap();
        assert!(
            view.entry.is_none() && view.error.is_none() && view.job.is_none(),
            "released: out of processing, marker cleared, nothing written"
        );
        assert_eq!(processed(&metrics, "success"), 8);
        assert_eq!(processed(&metrics, "discarded"), 1);
    }
}

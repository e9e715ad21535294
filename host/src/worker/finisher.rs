//! Writes finished jobs back to the store in groups: whatever finished while the
//! previous write was under way goes into the next one (a group commit).
//!
//! Why not write per batch: a batch's results would wait for its slowest job (one
//! generator sleeping into its 10 s timeout would hold back the other seven answers),
//! and the store would see one small write per batch per loop. With one finisher per
//! process, a result is written as soon as its own job is done, and a busy worker sends
//! few, large writes.

use super::pool::{Backoff, InFlight, lock};
use crate::store::{Finished, Outcome, Store};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Most results in one write.
const MAX_GROUP: usize = 128;

/// A finished job and the worker loop that ran it (for its metrics).
pub struct Done {
    pub worker_id: Arc<str>,
    pub finished: Finished,
}

/// Writes what arrives on `rx` until every sender is gone and the channel is empty.
pub async fn run<S: Store>(
    store: Arc<S>,
    metrics: Arc<crate::metrics::Metrics>,
    in_flight: InFlight,
    mut rx: mpsc::UnboundedReceiver<Done>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut group: Vec<Done> = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (workers, finished): (Vec<Arc<str>>, Vec<Finished>) =
            group.drain(..).map(|d| (d.worker_id, d.finished)).unzip();
        // Results are only lost if the store stays away past the drain; until then,
        // retry. (The leases may expire meanwhile; a rerun elsewhere is harmless.)
        let mut backoff = Backoff::new();
        while let Err(e) = store.finish(&finished).await {
            metrics.store_errors.with_label_values(&["finish"]).inc();
            tracing::warn!(jobs = finished.len(), "cannot write results: {e}");
            backoff.wait(&mut shutdown).await;
        }
        {
            let mut map = lock(&in_flight);
            for f in &finished {
                map.remove(&f.taken.lease_id);
            }
        }
        for (worker_id, f) in workers.iter().zip(&finished) {
            let status = match f.outcome {
                Outcome::Entry(_) => "success",
                Outcome::Error(_) => "failure",
                Outcome::Discard => "discarded",
            };
            metrics
                .jobs_processed
                .with_label_values(&[worker_id, status])
                .inc();
        }
    }
}

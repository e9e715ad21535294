//! The reaper: gives a dead worker's jobs to the living.
//!
//! A running job has a lease its worker renews every third of the lease time. When the
//! worker dies (SIGKILL, OOM, a lost machine) the lease expires and the job sits in
//! `target_generation_queue:processing` without one. Every worker process runs a reaper
//! (a pass every half lease); a job seen lease-less on two passes in a row (the second
//! [`CONFIRM_AFTER`] the first) goes back to the queue. The second look covers the
//! instant between a blocking `BLMOVE` and the script that leases the job; the store's
//! requeue checks the lease once more, atomically.

use crate::metrics::Metrics;
use crate::store::Store;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How soon a pass that found lease-less jobs looks again to confirm them. The second
/// look only has to outlast the moment between a BLMOVE and the script that leases
/// its job (a round trip); waiting a whole interval for it kept a job whose BLMOVE
/// answer a Redis failover lost unserved for up to a lease.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// Runs until `shutdown` turns true: a pass every `interval`, and one
/// [`CONFIRM_AFTER`] a pass that found suspects.
pub async fn run<S: Store>(
    store: Arc<S>,
    metrics: Arc<Metrics>,
    worker_id: String,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut suspects: HashSet<String> = HashSet::new();
    loop {
        let wait = if suspects.is_empty() {
            interval
        } else {
            interval.min(CONFIRM_AFTER)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        suspects = pass(&*store, &metrics, &worker_id, &suspects).await;
    }
}

/// One pass: requeues the orphans already suspected last time, returns the new
/// suspects.
pub async fn pass<S: Store>(
    store: &S,
    metrics: &Metrics,
    worker_id: &str,
    suspects: &HashSet<String>,
) -> HashSet<String> {
    let orphans = match store.orphans().await {
        Ok(o) => o,
        Err(e) => {
            metrics.store_errors.with_label_values(&["reap"]).inc();
            tracing::warn!("reaper cannot list orphaned jobs: {e}");
            return suspects.clone();
        }
    };
    let mut next = HashSet::new();
    for raw in orphans {
        if !suspects.contains(&raw) {
            next.insert(raw);
            continue;
        }
        match store.requeue(&raw).await {
            Ok(true) => {
                metrics.jobs_requeued.with_label_values(&[worker_id]).inc();
                tracing::warn!(job = %raw, "requeued a job whose worker stopped renewing its lease");
            }
            Ok(false) => {} // finished, or leased again, in the meantime
            Err(e) => {
                metrics.store_errors.with_label_values(&["requeue"]).inc();
                tracing::warn!("reaper cannot requeue a job: {e}");
                next.insert(raw);
            }
        }
    }
    next
}

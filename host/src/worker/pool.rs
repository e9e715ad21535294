//! A process's workers: `--num-workers` loops that take jobs, run them and write the
//! results back, plus the lease heartbeat and the reaper.
//!
//! Each loop takes up to `batch` jobs at once (one round trip when the queue is busy)
//! and runs each as a task of its own; each result goes to the process's
//! [`super::finisher`] as soon as its job is done. A loop only blocks on the queue when
//! it is empty, and keeps up to `depth` × `batch` jobs going, one slot per job: while
//! some run, more are taken, so neither the cores nor Redis wait on the other's round
//! trips, and a slow job holds only its own slot. A store
//! outage is waited out with a capped backoff, never a crash. On shutdown the loops
//! stop taking, running jobs get `drain_timeout` to finish, and whatever is still
//! running then is handed back to the queue for another worker.

use super::backoff::Backoff;
use super::finisher::{self, Done};
use super::inflight::{InFlight, lock};
use super::job::{JobContext, run_job};
use super::reaper;
use crate::store::{Store, Taken};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// How a process's workers run; the CLI fills it from flags.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// One loop per id (the `worker_id` of results, errors and metrics).
    pub worker_ids: Vec<String>,
    /// Jobs one loop takes and runs at once.
    pub batch: usize,
    /// Batches' worth of jobs one loop keeps going at once: `depth` × `batch` slots,
    /// one per running job.
    pub depth: usize,
    /// How long one blocking read of an empty queue waits (also how quickly a loop
    /// notices shutdown).
    pub poll: Duration,
    /// The lease time: heartbeats go out every third of it, the reaper runs once per it.
    pub lease: Duration,
    /// How long running jobs may finish after shutdown before they are handed back.
    pub drain_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_ids: vec![super::default_worker_id()],
            batch: 8,
            depth: 3,
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Runs the workers until `shutdown` turns true, then drains.
pub async fn run_pool<S: Store>(
    store: Arc<S>,
    ctx: Arc<JobContext>,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let in_flight: InFlight = Arc::new(Mutex::new(HashMap::new()));
    let helpers = Helpers::start(&store, &ctx, &config, &in_flight, &shutdown);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let finisher = tokio::spawn(finisher::run(
        store.clone(),
        ctx.metrics.clone(),
        in_flight.clone(),
        done_rx,
        shutdown.clone(),
    ));
    let loops = start_loops(&store, &ctx, &config, &in_flight, &done_tx, &shutdown);
    // The loops hold the only senders: once they are done, the finisher writes what is
    // left and stops.
    drop(done_tx);
    tracing::info!(
        workers = config.worker_ids.len(),
        store = store.kind(),
        "workers started"
    );

    let _ = shutdown.wait_for(|stop| *stop).await;
    tracing::info!(
        running = lock(&in_flight).len(),
        "shutting down: no new jobs; waiting for running ones"
    );
    drain(&*store, config.drain_timeout, &in_flight, loops, finisher).await;
    helpers.stop();
    tracing::info!("workers stopped");
}

/// The tasks beside the loops: the lease heartbeat and the reaper. Neither has
/// anything to finish, so they are stopped, not drained.
struct Helpers {
    heartbeat: JoinHandle<()>,
    reaper: JoinHandle<()>,
}

impl Helpers {
    fn start<S: Store>(
        store: &Arc<S>,
        ctx: &Arc<JobContext>,
        config: &WorkerConfig,
        in_flight: &InFlight,
        shutdown: &watch::Receiver<bool>,
    ) -> Helpers {
        let first_id = config.worker_ids.first().cloned().unwrap_or_default();
        Helpers {
            heartbeat: tokio::spawn(heartbeat(
                store.clone(),
                ctx.clone(),
                in_flight.clone(),
                config.lease / 3,
            )),
            reaper: tokio::spawn(reaper::run(
                store.clone(),
                ctx.metrics.clone(),
                first_id,
                // A pass every half lease: a job whose lease vanished (a dead worker,
                // or a Redis failover that lost a BLMOVE's answer) is back in the queue
                // within about half a lease of it (reaper.rs).
                config.lease / 2,
                shutdown.clone(),
            )),
        }
    }

    fn stop(self) {
        self.heartbeat.abort();
        self.reaper.abort();
    }
}

/// One [`worker_loop`] per worker id.
fn start_loops<S: Store>(
    store: &Arc<S>,
    ctx: &Arc<JobContext>,
    config: &WorkerConfig,
    in_flight: &InFlight,
    done: &mpsc::UnboundedSender<Done>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    config
        .worker_ids
        .iter()
        .map(|id| {
            tokio::spawn(worker_loop(
                store.clone(),
                ctx.clone(),
                Arc::from(id.as_str()),
                config.clone(),
                in_flight.clone(),
                done.clone(),
                shutdown.clone(),
            ))
        })
        .collect()
}

/// Lets the loops finish their running jobs and the finisher write them, for at most
/// `timeout`; past it, stops them all and hands what is still running back to the
/// queue, so another worker runs it instead of waiting out its lease.
async fn drain<S: Store>(
    store: &S,
    timeout: Duration,
    in_flight: &InFlight,
    loops: Vec<JoinHandle<()>>,
    finisher: JoinHandle<()>,
) {
    let mut aborts: Vec<_> = loops.iter().map(|h| h.abort_handle()).collect();
    aborts.push(finisher.abort_handle());
    let drained = async {
        futures::future::join_all(loops).await;
        let _ = finisher.await;
    };
    if tokio::time::timeout(timeout, drained).await.is_ok() {
        return;
    }
    aborts.iter().for_each(|a| a.abort());
    let left: Vec<Taken> = lock(in_flight).drain().map(|(_, t)| t).collect();
    tracing::warn!(
        jobs = left.len(),
        "drain timeout: handing running jobs back to the queue"
    );
    if let Err(e) = store.hand_back(&left).await {
        tracing::error!(
            "cannot hand jobs back (their leases will expire and the reaper will requeue them): {e}"
        );
    }
}

/// One worker loop: reserve slots, take that many jobs, start them, repeat until
/// shutdown; then wait for the jobs under way.
async fn worker_loop<S: Store>(
    store: Arc<S>,
    ctx: Arc<JobContext>,
    id: Arc<str>,
    config: WorkerConfig,
    in_flight: InFlight,
    done: mpsc::UnboundedSender<Done>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    let batch = config.batch.max(1);
    // One slot per job, `depth` batches' worth: a slow job holds only its own slot, so
    // a generator that runs into its timeout cannot hold back the jobs taken with it.
    let slots = Arc::new(Semaphore::new(config.depth.max(1) * batch));
    let mut jobs = JoinSet::new();
    while !*shutdown.borrow() {
        let Some(held) = reserve_slots(&slots, batch).await else {
            break;
        };
        while jobs.try_join_next().is_some() {}
        let taken = match store.take(&id, held.len(), config.poll).await {
            Ok(t) => {
                backoff.reset();
                t
            }
            Err(e) => {
                ctx.metrics.store_errors.with_label_values(&["take"]).inc();
                tracing::warn!(worker_id = %id, "cannot take jobs: {e}");
                backoff.wait(&mut shutdown).await;
                continue;
            }
        };
        lock(&in_flight).extend(taken.iter().map(|t| (t.lease_id.clone(), t.clone())));
        // Slots not needed (fewer jobs than asked for) are freed here.
        for (t, slot) in taken.into_iter().zip(held) {
            jobs.spawn(run_in_slot(ctx.clone(), id.clone(), t, done.clone(), slot));
        }
    }
    // Shutdown: the jobs under way finish (the pool's drain timeout bounds this;
    // dropping the set on abort stops them, and their jobs are handed back).
    while jobs.join_next().await.is_some() {}
}

/// A slot first, so no job is taken that cannot start at once; then as many more as
/// are free, up to `batch`. `None` once the semaphore is closed.
async fn reserve_slots(slots: &Arc<Semaphore>, batch: usize) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = slots.clone().acquire_owned().await.ok()?;
    let mut held = vec![first];
    while held.len() < batch {
        match slots.clone().try_acquire_owned() {
            Ok(p) => held.push(p),
            Err(_) => break,
        }
    }
    Some(held)
}

/// Runs one job, hands the result to the finisher, and frees the job's slot.
async fn run_in_slot(
    ctx: Arc<JobContext>,
    id: Arc<str>,
    taken: Taken,
    done: mpsc::UnboundedSender<Done>,
    slot: OwnedSemaphorePermit,
) {
    let finished = run_job(&ctx, &id, taken).await;
    // The finisher outlives the loops; if it is gone, the pool is being torn down and
    // the drain hands these jobs back.
    let _ = done.send(Done {
        worker_id: id,
        finished,
    });
    drop(slot);
}

async fn heartbeat<S: Store>(
    store: Arc<S>,
    ctx: Arc<JobContext>,
    in_flight: InFlight,
    every: Duration,
) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let running: Vec<Taken> = lock(&in_flight).values().cloned().collect();
        match store.heartbeat(&running).await {
            Ok(0) => {}
            Ok(lost) => tracing::warn!(
                jobs = lost,
                "leases expired before renewal (the store was slow or away); those jobs may run twice"
            ),
            Err(e) => {
                ctx.metrics
                    .store_errors
                    .with_label_values(&["heartbeat"])
                    .inc();
                tracing::warn!("cannot renew job leases: {e}");
            }
        }
    }
}

//! Where servers and workers meet: the cache, the error cache, the job queue, the
//! dedupe markers and job leases, behind one trait with two backends.
//!
//! - [`redis`]: the shared store of a fleet (`httpsd server` + `httpsd worker`), in the
//!   wire format of DESIGN §8. Every multi-key change is one Lua script, so a crash or a
//!   second process never sees half of it.
//! - [`memory`]: the embedded store of `httpsd serve`, one process, no Redis. Same
//!   semantics, checked by the same behaviour tests (`tests/store.rs`).
//!
//! The job life cycle, the same in both:
//!
//! 1. [`Store::enqueue`] pushes a job unless the path's marker says one is already
//!    queued or running (O(1) dedupe: at most one per `full_path`).
//! 2. [`Store::take`] moves jobs from the queue to the processing list and gives each
//!    a lease (kept alive by [`Store::heartbeat`]) and an attempt count.
//! 3. [`Store::finish`] writes the result or the error, drops the job from
//!    processing and clears the marker (or, when the path was reloaded while the job
//!    ran, queues the job once more).
//! 4. A worker that dies stops renewing its leases; [`Store::orphans`] finds jobs in
//!    processing without a lease and [`Store::requeue`] puts them back in the queue.

mod lru;
pub mod memory;
pub mod redis;

pub use memory::{MemoryBounds, MemoryStore, MemoryUsage};
pub use redis::{RedisMode, RedisSettings, RedisStore, RedisTls, RedisTopology};

use bytes::Bytes;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

pub(crate) use crate::sync::lock;

/// A store failure. Callers answer a 503 (server) or back off (worker).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time: the same call may work
    /// later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this version cannot read.
    #[error("unexpected answer from the store: {0}")]
    Protocol(String),
    /// The store is there and said no to this very write: a value over the size limit
    /// (checked here, before anything is sent), Redis out of memory, a script error.
    /// Sending the same again will not help; the worker fails the job instead
    /// (`worker/finisher.rs`).
    #[error("store refused: {reason}")]
    Refused {
        /// Why, in words: logged, and passed on (in a 503, or a refused job's error
        /// entry).
        reason: String,
        /// For [`Store::finish`]: the index in the batch of the job whose write was
        /// refused, when known (the local checks know it); `None`: somewhere in the
        /// batch. Nothing of a batch refused by a local check was written.
        item: Option<usize>,
    },
}

/// The default of the largest value (a cache entry, an error entry, a run report) a
/// store accepts; a larger one is refused before it is sent. Far under Redis's
/// `proto-max-bulk-len` (512 MB), past which Redis drops the connection.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 64 << 20;

/// `Err(Refused)` when a value of `f` is over `max` bytes.
pub(crate) fn check_value_sizes(index: usize, f: &Finished, max: u64) -> StoreResult<()> {
    let payload = match &f.outcome {
        Outcome::Entry(v) => ("cache entry", v.len()),
        Outcome::Error(v) => ("error entry", v.len()),
        Outcome::Discard => ("nothing", 0),
    };
    for (what, len) in [
        payload,
        ("run report", f.run.len()),
        ("history line", f.summary.len()),
    ] {
        if len as u64 > max {
            return Err(StoreError::Refused {
                reason: format!(
                    "its {what} is {len} bytes, over the store's limit of {max} bytes per value (--max-value-bytes)"
                ),
                item: Some(index),
            });
        }
    }
    Ok(())
}

/// The result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Lifetimes of what the store keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// How long a cache entry stays (it outlives `--cache-seconds`, which is what makes
    /// "cache expired" and debug's stale entry observable).
    pub cache: Duration,
    /// `error:<full_path>` (the old tool's 3600 s).
    pub error: Duration,
    /// A job's lease: a job whose worker has not renewed it for this long is orphaned.
    pub lease: Duration,
    /// A dedupe marker left behind by a job nobody finishes (a worker of another tool
    /// that does not know about markers, or an operator who emptied the queue).
    pub marker: Duration,
    /// After a failed run, a poll of the path does not run it again for this long (a
    /// reload does). A broken path polled in a tight loop then costs one run per this,
    /// not one per poll: without it, ten broken generators polled by one client cut a
    /// 2-core worker's healthy throughput to a twentieth (tests/faults.rs).
    pub retry: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            cache: Duration::from_secs(24 * 3600),
            error: crate::wire::ERROR_TTL,
            lease: Duration::from_secs(30),
            marker: Duration::from_secs(600),
            retry: Duration::from_secs(5),
        }
    }
}

/// Whether a path's one job is waiting or being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// In the queue, not taken by a worker yet.
    Queued,
    /// Taken by a worker: in the processing list.
    Running,
}

/// The dedupe marker of a path: its one queued-or-running job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    /// Queued or running.
    pub state: JobState,
    /// The worker running it (empty while queued).
    pub worker_id: String,
    /// Unix time of the last state change.
    pub since: f64,
}

/// A job taken from the queue by a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The job exactly as it sits in the lists (removing it needs the same bytes).
    pub raw: String,
    /// The lease's id (a hash of `raw`).
    pub lease_id: String,
    /// How many times this job has been taken, this time included.
    pub attempts: u32,
}

/// What a worker writes back for one job.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The job as it was taken (its bytes and lease id find it in processing).
    pub taken: Taken,
    /// The job's `full_path` (where the result goes).
    pub full_path: String,
    /// What to write for the path.
    pub outcome: Outcome,
    /// The per-generator report of the run, for debug.
    pub run: Vec<u8>,
    /// A one-line summary of the run for the path's history (empty: none).
    pub summary: Vec<u8>,
}

/// What a finished job leaves behind, already encoded.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A cache entry for `full_path`; the path's error is removed.
    Entry(Vec<u8>),
    /// An error entry for `error:<full_path>`; the last good entry stays.
    Error(Vec<u8>),
    /// Nothing to write (the job could not even be read, or what it made was refused
    /// twice): it is only removed from processing and its path's marker cleared.
    Discard,
}

/// Everything debug shows about a path, read in one round trip.
#[derive(Debug, Clone, Default)]
pub struct DebugView {
    /// The cache entry (`<full_path>`), JSON as stored; `None` when there is none.
    pub entry: Option<Bytes>,
    /// The error entry (`error:<full_path>`), JSON as stored; `None` when there is none.
    pub error: Option<Bytes>,
    /// The path's queued or running job (its dedupe marker); `None` when it has none.
    pub job: Option<JobStatus>,
    /// The last run's per-generator report, JSON; `None` when there is none.
    pub run: Option<Bytes>,
    /// The last runs' summaries, newest first.
    pub history: Vec<Bytes>,
    /// How long reloads of the path are still refused.
    pub reload_cooldown: Option<Duration>,
}

/// A reload refused because the path was reloaded less than `--reload-cooldown` ago;
/// the time until the next one is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoolingDown(pub Duration);

/// What a reload removed and whether it enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// A cache entry was deleted.
    pub cache_cleared: bool,
    /// An error entry was deleted.
    pub error_cache_cleared: bool,
    /// A job was queued, or the running one marked to run once more; `false` when a
    /// job was already waiting in the queue.
    pub enqueued: bool,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The job's `full_path`: the cache key, and the path whose marker dedupes it.
    pub full_path: String,
    /// The job's JSON ([`crate::wire::Job`]).
    pub raw: String,
}

impl NewJob {
    /// `job`, encoded for the queue. Cannot fail, and never yields an empty job: see
    /// [`crate::wire::Job::to_json`].
    pub fn from_job(job: &crate::wire::Job) -> NewJob {
        NewJob {
            full_path: job.full_path.clone(),
            raw: job.to_json(),
        }
    }
}

/// The store. Both backends are cheap to share behind an `Arc` and safe to call from
/// many tasks at once.
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and the admin page ("redis", "memory").
    fn kind(&self) -> &'static str;

    /// The cache entry of `full_path` (the hot path of every request: one round trip).
    fn get_entry(&self, full_path: &str)
    -> impl Future<Output = StoreResult<Option<Bytes>>> + Send;

    /// Entry, error, marker and last run report of `full_path`.
    fn debug_view(&self, full_path: &str) -> impl Future<Output = StoreResult<DebugView>> + Send;

    /// The entry timestamps, errors and markers of many paths (the admin page).
    fn overview(
        &self,
        full_paths: &[String],
    ) -> impl Future<Output = StoreResult<Vec<DebugView>>> + Send;

    /// Pushes `job` unless one is already queued or running for its path. `true` when
    /// pushed.
    fn enqueue(&self, job: &NewJob) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes the entry and the error of the job's path, then enqueues it; not when one
    /// is still queued (it will run after the reload anyway). When a job is running, no
    /// second one starts beside it: the running job's result is still written when it
    /// finishes (a client reloading a slow path again and again cannot keep it
    /// unanswered), and the job then runs once more, so the reload still gets a run
    /// that started after it. When the path was reloaded less than `cooldown` ago,
    /// changes nothing and says how long to wait (zero: no cooldown).
    fn reload(
        &self,
        job: &NewJob,
        cooldown: Duration,
    ) -> impl Future<Output = StoreResult<Result<ReloadOutcome, CoolingDown>>> + Send;

    /// Takes up to `max` jobs for `worker_id`, waiting up to `wait` for the first.
    fn take(
        &self,
        worker_id: &str,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = StoreResult<Vec<Taken>>> + Send;

    /// Renews the leases of running jobs (and their paths' markers). Returns how many
    /// leases had already expired while their job was still in processing (those jobs
    /// may be run again elsewhere).
    fn heartbeat(&self, running: &[Taken]) -> impl Future<Output = StoreResult<usize>> + Send;

    /// Writes results and errors, drops the jobs from processing, clears markers (or
    /// queues a job again whose path was reloaded while it ran): one round trip for the
    /// whole batch. A value over the store's size limit is refused before anything of
    /// the batch is written (`Refused` with the job's index); a refusal by the backend
    /// itself (`Refused` without an index) may leave part of the batch written, and
    /// writing it again is harmless.
    fn finish(&self, done: &[Finished]) -> impl Future<Output = StoreResult<()>> + Send;

    /// Puts taken jobs back at the head of the queue (a draining worker), not counted
    /// as attempts.
    fn hand_back(&self, taken: &[Taken]) -> impl Future<Output = StoreResult<()>> + Send;

    /// Jobs in processing whose lease is gone.
    fn orphans(&self) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// Moves an orphan back to the queue if it is still in processing and still has no
    /// lease. `true` when moved.
    fn requeue(&self, raw: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Lengths of the queue and of the processing list.
    fn queue_lengths(&self) -> impl Future<Output = StoreResult<(u64, u64)>> + Send;

    /// Readiness: the store answers.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// What other processes change, for a server's local cache
    /// (`server::local::follow`): a stream that never ends while the process lives.
    /// A store that no other process writes (the memory store) says nothing, so a local
    /// cache in front of it never goes live, which is right: it would save nothing.
    fn invalidations(&self) -> Invalidations {
        Box::pin(futures::stream::pending())
    }

    /// For a Redis store: the mode, the primary in use and the failovers seen
    /// (`/readyz`, `/metrics`, the admin page). `None` for a store without Redis.
    fn redis_topology(&self) -> Option<RedisTopology> {
        None
    }
}

/// See [`Store::invalidations`].
pub type Invalidations = std::pin::Pin<Box<dyn futures::Stream<Item = Invalidation> + Send>>;

/// One event of [`Store::invalidations`]. Between [`Invalidation::Live`] and
/// [`Invalidation::Lost`] every entry another process writes or deletes is named; outside
/// that window changes may be missed, so a cache must not trust what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// Listening from now on (again): what was kept before may have changed unseen.
    Live,
    /// This `full_path`'s entry was written or deleted.
    Path(String),
    /// Something changed, but the message could not be read: forget everything.
    Everything,
    /// No longer listening until the next [`Invalidation::Live`].
    Lost,
}

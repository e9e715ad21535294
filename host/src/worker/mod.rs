//! Workers: take jobs from the store, run the generators, write results back.
//!
//! - [`job`]: one job, from the queue entry to the encoded result or error.
//! - [`pool`]: the worker loops of one process, the lease heartbeat, and the drain on
//!   shutdown.
//! - [`finisher`]: writes finished jobs back to the store in groups.
//! - [`reaper`]: finds jobs whose worker died (no live lease) and puts them back in the
//!   queue.
//! - `inflight` and `backoff`: the running jobs' ledger and the wait after a failed
//!   store call, shared by the pool and the finisher (which therefore do not depend on
//!   each other).
//!
//! Dependencies point one way: `pool` → `finisher` → `job`, and both `pool` and
//! `finisher` → `inflight`, `backoff`.

mod backoff;
pub mod finisher;
mod inflight;
pub mod job;
pub mod pool;
pub mod reaper;

pub use job::JobContext;
pub use pool::{WorkerConfig, run_pool};

/// This process's default worker id: `<hostname>-<pid>`.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

//! Warm instances of the Python runner, kept per `.py` file between its runs.
//!
//! A run of the runner that starts from a fresh instance pays for the component's
//! instantiation (componentize-py links a dozen core modules through thousands of
//! imports) and for copying on write every page of its 24 MB snapshot the interpreter
//! touches: about two thirds of a small generator's run (`cargo bench --bench python`,
//! docs/PERFORMANCE.md). The runner loads the generator's module afresh on every run,
//! as prometheus-http-sd 3.x did, so an instance that ended cleanly can serve the next
//! run of the same file.
//!
//! What is shared, and with whom: only runs of one file at one version (one
//! [`super::Loaded`], so one manifest and one set of grants) share an instance, never
//! two generators. What a generator changes outside its module (another module's
//! globals, builtins) its own next runs may see, as in 3.x's one process. Each run has
//! its own log, limits, grants, deadline and fuel; the memory it grew stays, and is
//! still held to the generator's `memory` limit.
//!
//! When an instance is not kept: after a trap, a limit (fuel, wall clock, memory, the
//! runner's own stop), a run that ended past its deadline, or [`MAX_RUNS`] runs; when
//! its linear memory grew past [`MAX_MEMORY`]; and when [`WARM_TOTAL`] instances are
//! warm in the process already (each holds a slot of the pooling allocator and the
//! pages it touched). So warm instances hold at most `WARM_TOTAL × MAX_MEMORY` (256 MiB)
//! between runs; a small generator's hold about 3 MiB each.

use super::capability::RunState;
use super::log::RunLog;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::Store;
use wasmtime::component::Instance;

/// Idle instances one generator keeps: about the runs of it that are on a core at once.
const WARM_PER_GENERATOR: usize = 4;

/// Idle-or-warm instances the whole process keeps; the pooling allocator has this
/// many slots beyond the concurrent runs ([`super::engine::build`]).
pub const WARM_TOTAL: u32 = 8;

/// The most linear memory an instance may hold and still be kept: the runner starts
/// at about 18 MiB, so this leaves a generator 14 MiB of growth.
pub(super) const MAX_MEMORY: usize = 32 << 20;

/// Runs one instance serves before it is dropped, so whatever a generator leaves
/// behind in its interpreter does not build up without end.
pub(super) const MAX_RUNS: u32 = 1000;

/// The process's count of warm instances.
#[derive(Debug, Default)]
pub struct WarmCount(AtomicU32);

/// One of the [`WARM_TOTAL`] places, given back when its instance is dropped.
pub(super) struct WarmSlot(Arc<WarmCount>);

impl WarmSlot {
    fn take(count: &Arc<WarmCount>) -> Option<WarmSlot> {
        count
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < WARM_TOTAL).then_some(n + 1)
            })
            .ok()
            .map(|_| WarmSlot(count.clone()))
    }
}

impl Drop for WarmSlot {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An instance that ended its last run cleanly, with its store and the log its
/// stdout and stderr are wired to.
pub(super) struct Warm {
    pub store: Store<RunState>,
    pub instance: Instance,
    pub log: Arc<Mutex<RunLog>>,
    /// Runs it has served.
    pub runs: u32,
    pub slot: WarmSlot,
}

/// One generator's idle instances.
pub struct WarmPool {
    idle: Mutex<Vec<Warm>>,
    count: Arc<WarmCount>,
}

impl WarmPool {
    /// An empty pool whose instances count against the process's `count`.
    pub fn new(count: Arc<WarmCount>) -> WarmPool {
        WarmPool {
            idle: Mutex::new(Vec::new()),
            count,
        }
    }

    /// An idle instance, the most recently used first (its pages are the likeliest
    /// to be resident still).
    pub(super) fn take(&self) -> Option<Warm> {
        crate::sync::lock(&self.idle).pop()
    }

    /// Keeps an instance that ended cleanly after `runs` runs (`slot`: its place, if
    /// it was warm already), or drops it when the pool or the process is full.
    pub(super) fn keep(
        &self,
        store: Store<RunState>,
        instance: Instance,
        log: Arc<Mutex<RunLog>>,
        runs: u32,
        slot: Option<WarmSlot>,
    ) {
        if runs >= MAX_RUNS {
            return;
        }
        let mut idle = crate::sync::lock(&self.idle);
        if idle.len() >= WARM_PER_GENERATOR {
            return;
        }
        let Some(slot) = slot.or_else(|| WarmSlot::take(&self.count)) else {
            return;
        };
        idle.push(Warm {
            store,
            instance,
            log,
            runs,
            slot,
        });
    }

    /// Idle instances (tests).
    pub fn idle(&self) -> usize {
        crate::sync::lock(&self.idle).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_keeps_at_most_warm_total_slots() {
        let count = Arc::new(WarmCount::default());
        let slots: Vec<_> = (0..WARM_TOTAL)
            .map(|_| WarmSlot::take(&count).expect("a slot"))
            .collect();
        assert!(WarmSlot::take(&count).is_none());
        drop(slots);
        assert_eq!(count.0.load(Ordering::Acquire), 0);
        assert!(WarmSlot::take(&count).is_some());
    }
}

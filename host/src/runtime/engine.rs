//! The one wasmtime [`Engine`] of a process, and the epoch ticker that gives the
//! wall-clock limit its resolution.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of the wall-clock limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine: component model, fuel (the CPU budget), epoch interruption (the
/// wall clock), the pooling allocator (instantiation without mmap per run), and
/// backtraces with DWARF file:line for tracebacks.
///
/// `max_concurrent_runs` sizes the pool; the runtime never runs more at once, and keeps
/// at most [`super::warm::WARM_TOTAL`] warm instances of the Python runner beside them.
pub fn build(consume_fuel: bool, max_concurrent_runs: u32) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(consume_fuel)
        .epoch_interruption(true)
        // Enough frames to see through SDK glue into the author's code; a deep
        // recursion is summarised by the traceback renderer.
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(64))
        .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        // Deep but finite: the stack-overflow fixture must trap, not take the host.
        .max_wasm_stack(1 << 20);

    let runs = max_concurrent_runs.max(1);
    let instances = runs + super::warm::WARM_TOTAL;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        // A Rust component has a handful of core instances; componentize-py ones
        // have more. These bound the pool's reservations, not what is committed.
        .max_core_instances_per_component(50)
        .total_core_instances(instances * 50)
        .max_memories_per_component(8)
        .total_memories(instances * 8)
        .max_tables_per_component(16)
        .total_tables(instances * 16)
        .total_stacks(runs)
        .table_elements(100_000)
        .max_memory_size(4 << 30)
        // Components such as componentize-py's hold a large vmctx.
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        // A finished run's memory goes back to the kernel when the run ends
        // (`decommit_batch_size(1)`): batching the madvise calls kept up to 63 finished
        // slots' memory per thread resident (a burst of large runs stayed in RSS until
        // enough later runs came), and measured no faster here: static-nodes jobs/s
        // on one worker, 8 rounds each, medians 10,840 at 1 and 9,816 at 64; rack-fleet
        // 837 and 833 (tests/containment.rs: RSS 2 s after the threats 88 MiB at 1,
        // 268 MiB at 64, idle 53 MiB). The first pages of a memory are zeroed by hand
        // instead (a small generator touches little more).
        .decommit_batch_size(1)
        .linear_memory_keep_resident(64 << 10)
        .table_keep_resident(16 << 10);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread; it holds the engine weakly and ends when dropped or
    /// when the engine is gone. Errors only if the thread cannot be spawned.
    pub fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("httpsd-epoch".into())
            .spawn(move || {
                // The epoch follows the clock, not the count of sleeps: each sleep
                // overshoots (more so on a busy machine), and a drifting epoch let a
                // guest whose HTTP wait was cut just past its deadline return before the
                // epoch deadline stopped it, without its traceback.
                let started = std::time::Instant::now();
                let mut ticks: u128 = 0;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    let Some(engine) = engine.upgrade() else {
                        return;
                    };
                    let due = started.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                    while ticks < due {
                        engine.increment_epoch();
                        ticks += 1;
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Ticks to wait for `timeout`, rounded up, plus one because the next tick may come
/// at any moment.
pub fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = timeout.as_nanos().div_ceil(tick) + 1;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

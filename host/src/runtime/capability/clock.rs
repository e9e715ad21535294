//! The wall-clock capability: half of the `[limits] timeout`. Epoch interruption stops
//! a guest that is running wasm; it cannot stop one parked in a host call such as a
//! sleep. So the monotonic clock's `subscribe-*` functions are shadowed here to never
//! wait past the run's deadline: the sleep returns at the deadline, the next epoch
//! check traps, and the timeout keeps the guest's backtrace.

use super::RunState;
use std::time::{Duration, Instant};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host as _;

/// When one run's wall-clock limit runs out.
pub struct WallClock {
    deadline: Instant,
}

impl WallClock {
    /// `deadline` is the run's start plus its `[limits] timeout`.
    pub fn new(deadline: Instant) -> Self {
        WallClock { deadline }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Shadows `subscribe-duration` and `subscribe-instant` with waits cut at the deadline.
pub fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    clock.func_wrap(
        "subscribe-duration",
        |mut cx: StoreContextMut<'_, RunState>, (nanos,): (u64,)| {
            let capped = cap_wait(Duration::from_nanos(nanos), cx.data().clock.remaining());
            let pollable = cx.data_mut().clocks().subscribe_duration(capped)?;
            Ok((pollable,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut cx: StoreContextMut<'_, RunState>, (when,): (u64,)| {
            let remaining = cx.data().clock.remaining();
            let mut clocks = cx.data_mut().clocks();
            let now = clocks.now()?;
            let wait = cap_wait(Duration::from_nanos(when.saturating_sub(now)), remaining);
            let pollable: Resource<DynPollable> = clocks.subscribe_duration(wait)?;
            Ok((pollable,))
        },
    )?;
    Ok(())
}

/// Wait at most until the deadline, plus a millisecond so the epoch deadline has
/// certainly passed when the guest resumes; in nanoseconds.
fn cap_wait(wanted: Duration, remaining: Duration) -> u64 {
    let capped = wanted.min(remaining + Duration::from_millis(1));
    u64::try_from(capped.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_end_just_past_the_deadline() {
        let second = Duration::from_secs(1);
        assert_eq!(cap_wait(Duration::from_millis(5), second), 5_000_000);
        assert_eq!(cap_wait(Duration::from_secs(3600), second), 1_001_000_000);
        assert_eq!(cap_wait(Duration::MAX, Duration::ZERO), 1_000_000);
        let past = WallClock::new(Instant::now() - second);
        assert_eq!(past.remaining(), Duration::ZERO);
    }
}

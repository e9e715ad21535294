//! The wait between failed store calls, shared by the worker loops and the finisher:
//! a store outage is waited out, never a crash and never a tight retry loop.

use std::time::Duration;
use tokio::sync::watch;

/// Waits with a capped exponential backoff between failed store calls.
pub(super) struct Backoff {
    wait: Duration,
    max: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(super) fn new() -> Backoff {
        Backoff::up_to(Backoff::MAX)
    }

    /// Doubling up to `max` (at least the minimum).
    pub(super) fn up_to(max: Duration) -> Backoff {
        Backoff {
            wait: Backoff::MIN,
            max: max.max(Backoff::MIN),
        }
    }

    /// After a call that worked: the next failure waits the least again.
    pub(super) fn reset(&mut self) {
        self.wait = Backoff::MIN;
    }

    /// Waits the current time (cut short by `shutdown` changing), then doubles it up
    /// to the cap.
    pub(super) async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(self.wait) => {}
            _ = shutdown.changed() => {}
        }
        self.wait = (self.wait * 2).min(self.max);
    }
}

//! The wait between failed store calls, shared by the worker loops and the finisher:
//! a store outage is waited out, never a crash and never a tight retry loop.

use std::time::Duration;
use tokio::sync::watch;

/// Waits with a capped exponential backoff between failed store calls.
pub(super) struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(super) fn new() -> Backoff {
        Backoff(Backoff::MIN)
    }

    /// After a call that worked: the next failure waits the least again.
    pub(super) fn reset(&mut self) {
        self.0 = Backoff::MIN;
    }

    /// Waits the current time (cut short by `shutdown` changing), then doubles it up
    /// to the cap.
    pub(super) async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(self.0) => {}
            _ = shutdown.changed() => {}
        }
        self.0 = (self.0 * 2).min(Backoff::MAX);
    }
}

//! The jobs a process is running, by lease id: what the heartbeat renews, what the
//! finisher crosses off once a result is written, and what a drain hands back.
//!
//! Its own module so the pool (which fills it) and the finisher (which empties it)
//! share it without either reaching into the other.

use crate::store::Taken;
use crate::sync::unpoison;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Jobs being run by this process, by lease id. A plain shared map (the finisher's
/// callers, tests included, build and inspect it directly); lock it with [`lock`].
pub type InFlight = Arc<Mutex<HashMap<String, Taken>>>;

/// The map, even if a thread panicked while holding it: every change to it is a
/// single map operation, so it cannot be half-changed (see [`unpoison`]).
pub(super) fn lock(in_flight: &InFlight) -> MutexGuard<'_, HashMap<String, Taken>> {
    unpoison(in_flight.lock())
}

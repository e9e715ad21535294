//! The one way httpsd takes a lock whose last holder panicked: it goes on with the data.
//!
//! Every mutex and rwlock in httpsd guards a memo, a queue, a map or a run's log whose
//! every update is a single operation, so a panic elsewhere cannot leave it
//! half-changed. Refusing the lock (a panic in turn) or skipping it (a memo or a log
//! that silently stops working) would turn one failed request into a broken process.

use std::sync::{LockResult, Mutex, MutexGuard, PoisonError};

/// The guard, poisoned or not.
pub fn unpoison<G>(result: LockResult<G>) -> G {
    result.unwrap_or_else(PoisonError::into_inner)
}

/// Locks `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    unpoison(mutex.lock())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = Arc::new(Mutex::new(vec![1]));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("a holder panics");
        })
        .join();
        assert!(m.is_poisoned());
        super::lock(&m).push(2);
        assert_eq!(*super::lock(&m), [1, 2]);
    }
}

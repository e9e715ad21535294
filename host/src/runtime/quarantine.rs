//! Fair shares for expensive generators: one whose last run ran into its fuel,
//! wall-clock or memory limit, used most of its fuel, or took more than [`SLOW_RUN`]
//! of CPU runs on a thread of its own at the lowest CPU priority, so it cannot starve
//! the other generators of this process.
//!
//! Limits bound what one run may cost, but not what many runs cost together: ten
//! generators spinning to their fuel limit on a 2-core worker, rerun as Prometheus
//! polls and as reloads arrive, would take the cores from every healthy path. Fuel and
//! epochs cannot fix that (they stop a run, they do not rank it), so the kernel does:
//! the quarantine thread runs at nice 19, which the Linux scheduler gives about 1/70 of
//! a core's time against a busy normal thread, and all of a core when nothing else
//! wants it. A generator in quarantine still runs, with the same limits, and its
//! wall-clock limit still applies, so on a saturated worker it may now end at that
//! limit rather than at its fuel limit. One cheap run (under [`SLOW_RUN`], less than
//! half its fuel, no limit hit) lets it out again.
//!
//! CPU time counts, not only fuel: a trap deep in a guest costs the host far more than
//! the guest's fuel shows (rendering a 60-frame traceback with DWARF line numbers), and
//! so does checking a huge output. It is the run's own CPU time ([`CpuTimed`]), not
//! its wall-clock time: on a machine busy with other work every run takes longer, and
//! judging by the clock would send healthy generators to the lane, where they would be
//! slower still.
//!
//! The verdicts are per process (each worker learns on its own) and expire after
//! [`HOLD`], so a generator that was fixed is back to normal priority without a run.

use super::{ErrorKind, RunReport};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a generator stays in quarantine after its last expensive run.
pub const HOLD: Duration = Duration::from_secs(600);

/// A run that took more CPU than this (instantiation, call, validation, and the
/// host's work for a failure) is expensive. Healthy generators take microseconds to a
/// few milliseconds. Loading the component is not counted (`RunStats::cpu` leaves it
/// out; compiling happens on a blocking thread anyway).
pub const SLOW_RUN: Duration = Duration::from_millis(100);

/// Nice value of the quarantine thread: the lowest priority Linux has.
const NICE: i32 = 19;

/// The process's verdicts: which generators run in the low-priority lane, and that
/// lane's thread. Starts empty; the thread starts on the first quarantined run.
#[derive(Default)]
pub struct Quarantine {
    /// Generator file → until when it runs in quarantine.
    held: Mutex<HashMap<PathBuf, Instant>>,
    /// The quarantine thread's runtime, started on first use (`None` if it could not
    /// be started: then quarantined generators run as any other).
    lane: OnceLock<Option<tokio::runtime::Handle>>,
}

impl Quarantine {
    /// Where to run the generator at `path`: `Some(handle)` when it is in quarantine.
    pub fn lane(&self, path: &Path) -> Option<tokio::runtime::Handle> {
        let held = {
            let mut map = crate::sync::lock(&self.held);
            match map.get(path) {
                Some(until) if *until > Instant::now() => true,
                Some(_) => {
                    map.remove(path);
                    false
                }
                None => false,
            }
        };
        if !held {
            return None;
        }
        self.lane.get_or_init(start_lane).clone()
    }

    /// Learns from a finished run: an expensive one puts (or keeps) the generator in
    /// quarantine, a cheap one lets it out.
    pub fn record(&self, path: &Path, report: &RunReport) {
        let mut map = crate::sync::lock(&self.held);
        if is_expensive(report) {
            if !map.contains_key(path) {
                tracing::info!(
                    generator = %path.display(),
                    "generator ran into its limits: its runs go to the low-priority lane for now"
                );
            }
            map.insert(path.to_path_buf(), Instant::now() + HOLD);
        } else if map.remove(path).is_some() {
            tracing::info!(generator = %path.display(), "generator back to normal priority");
        }
    }

    /// Generators in quarantine now.
    #[cfg(test)]
    fn held(&self) -> usize {
        let now = Instant::now();
        let map = crate::sync::lock(&self.held);
        map.values().filter(|until| **until > now).count()
    }
}

/// A run that hit a resource limit, took longer than [`SLOW_RUN`], or used more than
/// half of its fuel.
fn is_expensive(report: &RunReport) -> bool {
    if let Err(e) = &report.result
        && matches!(e.kind, ErrorKind::Timeout | ErrorKind::Memory)
    {
        return true;
    }
    // `cpu` leaves out loading the component (the first run in a process pays for
    // reading and linking it).
    if report.stats.cpu > SLOW_RUN {
        return true;
    }
    let budget = report.stats.limits.map_or(0, |l| l.fuel);
    budget > 0 && report.stats.fuel_used > budget / 2
}

/// A future that also returns the CPU time its polls took, summed over every thread
/// that polled it (a task may move between the runtime's threads).
pub struct CpuTimed<F> {
    inner: std::pin::Pin<Box<F>>,
    spent: Duration,
}

impl<F: std::future::Future> CpuTimed<F> {
    /// Wraps `inner`; awaiting the result yields `inner`'s output and the CPU time spent
    /// polling it.
    pub fn new(inner: F) -> Self {
        CpuTimed {
            inner: Box::pin(inner),
            spent: Duration::ZERO,
        }
    }
}

impl<F: std::future::Future> std::future::Future for CpuTimed<F> {
    type Output = (F::Output, Duration);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let before = thread_cpu_time();
        let poll = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_time().saturating_sub(before);
        self.spent += spent;
        let total = self.spent;
        poll.map(|out| (out, total))
    }
}

/// CPU time of the calling thread so far.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Duration {
    Duration::ZERO
}

/// Starts the quarantine thread: a single-threaded runtime at the lowest priority,
/// alive for the rest of the process.
fn start_lane() -> Option<tokio::runtime::Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("httpsd-quarantine".into())
        .spawn(move || {
            lower_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the low-priority lane: {e}");
                    let _ = tx.send(None);
                    return;
                }
            };
            let _ = tx.send(Some(runtime.handle().clone()));
            // A current-thread runtime runs its tasks while this blocks.
            runtime.block_on(std::future::pending::<()>());
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the low-priority lane: {e}");
        return None;
    }
    rx.recv().ok().flatten()
}

/// Lowers this thread's CPU priority to the lane's.
fn lower_priority() {
    if let Err(e) = set_thread_nice(NICE) {
        tracing::warn!("cannot lower the low-priority lane's priority: {e}");
    }
}

/// Sets the calling thread's nice value (Linux keeps one per thread).
#[cfg(target_os = "linux")]
pub fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_thread_nice(_nice: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{GenError, Limits, RunStats};

    fn report(error: Option<ErrorKind>, fuel_used: u64) -> RunReport {
        timed(error, fuel_used, Duration::from_millis(1))
    }

    fn timed(error: Option<ErrorKind>, fuel_used: u64, cpu: Duration) -> RunReport {
        let path = Path::new("g.wasm");
        RunReport {
            result: match error {
                Some(kind) => Err(GenError::host(kind, path, "x")),
                None => Ok(Vec::new()),
            },
            stats: RunStats {
                fuel_used,
                cpu,
                // Wall-clock time does not count: a busy machine slows every run.
                duration: Duration::from_secs(5),
                limits: Some(Limits {
                    fuel: 1000,
                    ..Limits::default()
                }),
                ..RunStats::default()
            },
        }
    }

    #[test]
    fn expensive_runs_go_in_and_a_cheap_one_lets_out() {
        let q = Quarantine::default();
        let g = Path::new("/t/g.wasm");
        assert!(q.lane(g).is_none());
        q.record(g, &report(Some(ErrorKind::Timeout), 10));
        assert_eq!(q.held(), 1);
        let lane = q.lane(g).expect("a quarantined generator gets the lane");
        // The lane really runs tasks.
        let (tx, rx) = std::sync::mpsc::channel();
        lane.spawn(async move { tx.send(7).unwrap() });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
        q.record(g, &report(None, 10));
        assert!(q.lane(g).is_none());
        // Most of the fuel used, even with a success, counts as expensive; failures
        // that cost nothing do not.
        q.record(g, &report(None, 900));
        assert_eq!(q.held(), 1);
        q.record(g, &report(Some(ErrorKind::Trap), 1));
        assert_eq!(q.held(), 0);
        q.record(g, &report(Some(ErrorKind::Memory), 1));
        assert_eq!(q.held(), 1);
        q.record(g, &report(None, 1));
        // A run that took CPU counts, whatever its fuel (a trap whose traceback is
        // expensive to render).
        q.record(
            g,
            &timed(Some(ErrorKind::Trap), 1, Duration::from_millis(300)),
        );
        assert_eq!(q.held(), 1);
    }
}

//! Per-run limits and the store's resource limiter.
//!
//! Defaults come from the command line; a generator's manifest overrides them one by
//! one (see [`super::manifest`]).

use crate::units::{format_size, parse_duration, parse_size};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The limits one generator run is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// CPU budget in wasmtime fuel units (about one per wasm instruction).
    pub fuel: u64,
    /// Wall-clock budget for instantiation and the call, host calls included.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Total linear memory the instance may hold, in bytes.
    pub memory_bytes: u64,
    /// Upper bound on the answer size: the JSON bytes served, escapes included.
    pub max_output_bytes: u64,
    /// Upper bound on the number of targets over all groups.
    pub max_targets: u64,
    /// Captured log and stdout/stderr bytes kept per run; the rest is counted and dropped.
    pub max_log_bytes: u64,
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::units::format_duration(*d))
}

impl Default for Limits {
    /// Sized for real inventories: about a second of CPU (fuel 1e10), 10 s of wall clock (an inventory
    /// API may be slow), 256 MiB (a Python component needs tens of MiB to start), and an
    /// answer far beyond what one scrape config should carry.
    fn default() -> Self {
        Limits {
            fuel: 10_000_000_000,
            timeout: Duration::from_secs(10),
            memory_bytes: 256 << 20,
            max_output_bytes: 16 << 20,
            max_targets: 100_000,
            max_log_bytes: 64 << 10,
        }
    }
}

/// Limits as written in a manifest's `[limits]` table: every field optional, sizes and
/// durations as strings (`"64MiB"`, `"2s"`) or plain numbers.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// [`Limits::fuel`], in fuel units.
    pub fuel: Option<u64>,
    /// [`Limits::timeout`]: `"2s"`, `"500ms"`, or a number of seconds; must be above zero.
    pub timeout: Option<SizeOrText>,
    /// [`Limits::memory_bytes`]: `"64MiB"` or a number of bytes.
    pub memory: Option<SizeOrText>,
    /// [`Limits::max_output_bytes`]: `"1MiB"` or a number of bytes.
    pub max_output_bytes: Option<SizeOrText>,
    /// [`Limits::max_targets`].
    pub max_targets: Option<u64>,
    /// [`Limits::max_log_bytes`]: `"64KiB"` or a number of bytes.
    pub max_log_bytes: Option<SizeOrText>,
}

/// A TOML value that may be a number or a string with a unit.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum SizeOrText {
    /// A bare number: bytes for a size, whole seconds for a duration.
    Number(u64),
    /// A string such as `"64MiB"` or `"2s"`, parsed by [`crate::units`].
    Text(String),
}

impl SizeOrText {
    pub(super) fn size(&self) -> Result<u64, String> {
        match self {
            SizeOrText::Number(n) => Ok(*n),
            SizeOrText::Text(t) => parse_size(t),
        }
    }

    fn duration(&self) -> Result<Duration, String> {
        match self {
            SizeOrText::Number(n) => Ok(Duration::from_secs(*n)),
            SizeOrText::Text(t) => parse_duration(t),
        }
    }
}

/// Bytes of a guest's error message that are kept; the rest is cut. The message is
/// stored (twice: in `error_message` and in the traceback), logged and shown.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 16 << 10;

/// Resources (handles) a guest may hold at once: each is host memory outside its
/// memory cap, so the number is capped (wasmtime's default is 100,000). A generator
/// needs a handful per HTTP request.
pub const MAX_GUEST_HANDLES: usize = 4096;

/// The most bytes of header fields one wasi:http `fields` resource may hold in host
/// memory (wasi-http's default is 128 KiB); with [`MAX_GUEST_HANDLES`] it bounds what
/// headers can cost the host.
pub const MAX_HTTP_FIELDS_BYTES: usize = 16 << 10;

/// Parameter sets a `check-params` export may return, and the bytes the host lifts for
/// them (wasmtime's hostcall fuel: each pair costs 48 bytes plus its text).
pub const MAX_CHECK_PARAM_SETS: usize = 256;
/// The lift budget of a `check-params` call (see [`MAX_CHECK_PARAM_SETS`]), in place of
/// the answer-sized [`Limits::lift_budget`].
pub const CHECK_PARAMS_LIFT_BYTES: usize = 1 << 20;

impl Limits {
    /// The most bytes the host lifts out of the guest in one transfer (its answer, an
    /// error message, a log line, a write to stdout): wasmtime's hostcall fuel, which
    /// stops the copy as it goes, before the host holds more. It counts what the host
    /// allocates: each string's bytes plus 24 for the `String`, 48 per label pair and
    /// per group. A valid answer of `max_output_bytes` of JSON costs at most 8 times
    /// that (a one-character target is 4 bytes of JSON and 25 of fuel), so 8 times
    /// always lets a valid answer through and the validator says what is wrong with a
    /// bigger one; anything past it is an `InvalidOutput` without being copied.
    pub fn lift_budget(&self) -> usize {
        usize::try_from(self.max_output_bytes.saturating_mul(8))
            .unwrap_or(usize::MAX)
            .saturating_add(64 << 10)
    }

    /// The limits an answer is checked against ([`crate::validate`]).
    pub fn answer(&self) -> crate::validate::AnswerLimits {
        crate::validate::AnswerLimits {
            max_output_bytes: self.max_output_bytes,
            max_targets: self.max_targets,
        }
    }

    /// These limits with a manifest's overrides applied.
    pub fn with_overrides(mut self, o: &LimitOverrides) -> Result<Limits, String> {
        if let Some(fuel) = o.fuel {
            self.fuel = fuel;
        }
        if let Some(t) = &o.timeout {
            self.timeout = t.duration().map_err(|e| format!("limits.timeout: {e}"))?;
        }
        if let Some(m) = &o.memory {
            self.memory_bytes = m.size().map_err(|e| format!("limits.memory: {e}"))?;
        }
        if let Some(b) = &o.max_output_bytes {
            self.max_output_bytes = b
                .size()
                .map_err(|e| format!("limits.max_output_bytes: {e}"))?;
        }
        if let Some(n) = o.max_targets {
            self.max_targets = n;
        }
        if let Some(b) = &o.max_log_bytes {
            self.max_log_bytes = b.size().map_err(|e| format!("limits.max_log_bytes: {e}"))?;
        }
        if self.timeout.is_zero() {
            return Err("limits.timeout must be above zero".into());
        }
        Ok(self)
    }
}

/// A running guest hands its thread back to the scheduler after this much fuel (a few
/// milliseconds of CPU), so a CPU-bound generator shares the cores with every other
/// job instead of holding a worker thread until it ends. Without it, ten generators
/// spinning into their limits on a 2-core worker cut the healthy paths' throughput to
/// a trickle (tests/faults.rs).
pub const YIELD_EVERY_FUEL: u64 = 5_000_000;

/// Applies a run's limits to its fresh store: the memory cap (which also charges the
/// process's budget), the host's lift budget (`lift_budget` bytes), the handle cap, the
/// fuel and how often a guest yields, and the wall clock's epoch deadline. This is where
/// every limit of a run is set; `memory` finds the run's [`MemoryCap`] in the store's
/// data.
pub fn apply<T: 'static>(
    store: &mut wasmtime::Store<T>,
    limits: &Limits,
    lift_budget: usize,
    consume_fuel: bool,
    memory: fn(&mut T) -> &mut MemoryCap,
) -> wasmtime::Result<()> {
    store.limiter(move |data| memory(data));
    store.set_hostcall_fuel(lift_budget);
    // Every resource the guest holds (an HTTP request's fields, a stream, a pollable)
    // is host memory outside the memory cap: cap how many it may hold.
    store.set_max_component_handles(MAX_GUEST_HANDLES);
    if consume_fuel {
        store.set_fuel(limits.fuel)?;
        store.fuel_async_yield_interval(Some(YIELD_EVERY_FUEL))?;
    }
    store.epoch_deadline_trap();
    store.set_epoch_deadline(super::engine::deadline_ticks(limits.timeout));
    Ok(())
}

/// The store's [`wasmtime::ResourceLimiter`]: caps the instance's total linear memory
/// and remembers that it refused, so a guest that then aborts is reported as
/// `MemoryError` rather than as the trap its allocator ends in.
#[derive(Debug)]
pub struct MemoryCap {
    limit: usize,
    /// Bytes held over all memories of the instance (a component may have several).
    total: usize,
    /// Largest `total` seen: reported as the run's peak memory.
    pub peak: usize,
    /// Set when a growth was refused: the size it asked for.
    pub refused: Option<usize>,
    /// The process's budget, which this run's memory is charged against as it grows.
    budget: Option<Arc<MemoryBudget>>,
    /// Set when the growth was refused by the process's budget, not this run's limit.
    refused_by_budget: bool,
}

impl MemoryCap {
    /// A cap of `limit` bytes of linear memory for one run, not yet charged to any
    /// process budget (see [`MemoryCap::within`]).
    pub fn new(limit: u64) -> Self {
        MemoryCap {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            total: 0,
            peak: 0,
            refused: None,
            budget: None,
            refused_by_budget: false,
        }
    }

    /// Charges this run's memory against the process's `budget` too; what it charged is
    /// given back when the run's store is dropped.
    pub fn within(mut self, budget: Arc<MemoryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// A message for the error when a growth was refused.
    pub fn refusal(&self) -> Option<String> {
        self.refused.map(|wanted| match &self.budget {
            Some(budget) if self.refused_by_budget => format!(
                "the process's guest memory budget of {} (--guest-memory-budget), held by \
                 other runs (a growth of this run to {} was refused)",
                format_size(budget.limit as u64),
                format_size(wanted as u64)
            ),
            _ => format!(
                "{} (a growth to {} was refused)",
                format_size(self.limit as u64),
                format_size(wanted as u64)
            ),
        })
    }
}

impl Drop for MemoryCap {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.peak);
        }
    }
}

/// Linear memory all the runs of one process may hold together. Each run has its own
/// limit (`memory_bytes`), but 64 runs at 256 MiB each is 16 GiB: more than most
/// workers have, so a handful of generators that each stay inside their own limit could
/// get the process killed for memory, and every path it serves with it. Runs are charged
/// as their memory grows (not their limit up front, which would cap the concurrency of
/// small runs by what large ones might take), and a growth past the budget is refused:
/// that run ends as a `MemoryError` that says so, and the others go on.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    held: AtomicUsize,
}

/// The cgroup v2 `memory.max` of this process, if it has one (not `max`).
fn cgroup_memory_max() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.max", path.trim())).ok()?;
    max.trim().parse().ok()
}

impl MemoryBudget {
    /// A budget of `limit` bytes, nothing held yet; shared by every run of the process.
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            held: AtomicUsize::new(0),
        })
    }

    /// Half the memory this process may have: the machine's, or its cgroup's
    /// `memory.max` when that is lower (a container, a systemd unit with `MemoryMax=`).
    /// The default budget, which leaves the other half to the host's own work for the
    /// runs, the kernel and whatever else runs there.
    pub fn default_limit() -> u64 {
        // SAFETY: sysconf reads a system value and has no preconditions.
        let (pages, page) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let machine = match (u64::try_from(pages), u64::try_from(page)) {
            (Ok(pages), Ok(page)) if pages > 0 && page > 0 => pages.saturating_mul(page),
            _ => 16 << 30,
        };
        machine.min(cgroup_memory_max().unwrap_or(u64::MAX)) / 2
    }

    /// Takes `bytes` from the budget; false (and nothing taken) when they do not fit.
    fn charge(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes charged by the runs going now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total - current.min(self.total) + desired;
        if total > self.limit {
            self.refused = Some(total);
            return Ok(false);
        }
        // The budget holds each run's peak: wasm memories never shrink while it runs.
        if let Some(budget) = &self.budget
            && total > self.peak
            && !budget.charge(total - self.peak)
        {
            self.refused = Some(total);
            self.refused_by_budget = true;
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far past any real
        // generator and still small for the host.
        Ok(desired <= 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn overrides_apply_one_by_one() {
        let o: LimitOverrides =
            toml::from_str("fuel = 10\ntimeout = \"250ms\"\nmemory = \"64MiB\"").unwrap();
        let l = Limits::default().with_overrides(&o).unwrap();
        assert_eq!(l.fuel, 10);
        assert_eq!(l.timeout, Duration::from_millis(250));
        assert_eq!(l.memory_bytes, 64 << 20);
        assert_eq!(l.max_targets, Limits::default().max_targets);
        let bad: LimitOverrides = toml::from_str("timeout = \"soon\"").unwrap();
        assert!(Limits::default().with_overrides(&bad).is_err());
        assert!(toml::from_str::<LimitOverrides>("fule = 1").is_err());
    }

    #[test]
    fn memory_cap_counts_all_memories_and_remembers_refusal() {
        let mut cap = MemoryCap::new(100);
        assert!(cap.memory_growing(0, 60, None).unwrap());
        assert!(cap.memory_growing(0, 30, None).unwrap());
        assert!(!cap.memory_growing(30, 50, None).unwrap());
        assert_eq!(cap.refused, Some(110));
        assert_eq!(cap.peak, 90);
        assert!(cap.refusal().unwrap().contains("refused"));
    }

    #[test]
    fn memory_budget_is_shared_by_runs_and_given_back() {
        let budget = MemoryBudget::new(100);
        let mut a = MemoryCap::new(80).within(budget.clone());
        let mut b = MemoryCap::new(80).within(budget.clone());
        assert!(a.memory_growing(0, 60, None).unwrap());
        assert_eq!(budget.held(), 60);
        assert!(
            !b.memory_growing(0, 50, None).unwrap(),
            "a's 60 and b's 50 are over the budget"
        );
        assert!(b.refusal().unwrap().contains("budget"));
        assert!(b.memory_growing(0, 40, None).unwrap());
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(
            budget.held(),
            40,
            "a run gives back what it held when it ends"
        );
        // Its own limit still comes first, and says so.
        let mut c = MemoryCap::new(10).within(budget.clone());
        assert!(!c.memory_growing(0, 20, None).unwrap());
        assert!(!c.refusal().unwrap().contains("budget"));
        drop(b);
        drop(c);
        assert_eq!(budget.held(), 0);
    }
}

//! The sandbox: runs one generator component with fuel, wall-clock, memory and output
//! limits, and turns every way it can fail into a typed [`GenError`].
//!
//! One [`Runtime`] per process. It owns the wasmtime engine, the epoch ticker, the
//! linker, and the [`cache`] of compiled generators. [`Runtime::run`] is the whole life
//! of a job's call into a guest: load (usually a cache hit), a fresh store with the
//! limits set, instantiate from the `InstancePre`, call `generate`, validate.

pub mod cache;
pub mod compile;
pub mod connect;
pub mod engine;
pub mod error;
pub mod files;
pub mod host;
pub mod http;
pub mod limits;
pub mod log;
pub mod manifest;
pub mod quarantine;

pub use cache::{Loaded, Origin};
pub use error::{ErrorKind, GenError};
pub use limits::Limits;
pub use log::{LogLevel, LogLine};

use crate::model::TargetGroup;
use host::{Generator, RunState};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::Instance;
use wasmtime::{Engine, Store, WasmBacktrace};

/// How a [`Runtime`] is set up; the CLI fills it from flags.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Limits for generators whose manifest does not override them.
    pub defaults: Limits,
    /// Where precompiled artifacts live; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Runs allowed at once (sizes the pooling allocator); more wait their turn.
    pub max_concurrent_runs: u32,
    /// Fuel metering. Off only for benchmarks that measure its cost: without it the
    /// fuel limit is not enforced.
    pub consume_fuel: bool,
    /// What compiling one component may cost.
    pub compile: compile::CompileLimits,
    /// Where compiles run: the binary compiles in a child process of its own.
    pub compiler: compile::Compiler,
    /// Outbound HTTP connections open at once over all runs (each run has its own
    /// cap too, `[http] max_connections`).
    pub max_outbound_connections: u32,
    /// Linear memory all runs together may hold ([`limits::MemoryBudget`]).
    pub guest_memory_budget: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            defaults: Limits::default(),
            cache_dir: None,
            max_concurrent_runs: 64,
            consume_fuel: true,
            compile: compile::CompileLimits::default(),
            compiler: compile::Compiler::InProcess,
            max_outbound_connections: 256,
            guest_memory_budget: limits::MemoryBudget::default_limit(),
        }
    }
}

/// What one run did, successful or not.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunStats {
    /// Load (cache lookup or compile), instantiation and call.
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
    #[serde(serialize_with = "as_millis")]
    pub instantiate: Duration,
    pub fuel_used: u64,
    pub memory_peak: u64,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u64,
    /// Outbound HTTP requests the run made (refused ones included).
    pub http_requests: u32,
    /// Where the compiled component came from (absent when loading failed).
    pub origin: Option<Origin>,
    /// The limits the run was held to (defaults with the manifest applied; absent when
    /// loading failed before they were known). The admin page shows them per generator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// CPU time the run took on this host (the guest and the host's work for it, such
    /// as rendering a traceback), measured per poll: what the low-priority lane judges.
    #[serde(serialize_with = "as_millis")]
    pub cpu: Duration,
    /// Of which loading the component (reading, deserialising and linking it on first
    /// use in this process): not the generator's doing, so not judged.
    #[serde(skip)]
    pub load_cpu: Duration,
    /// It ran in the low-priority lane (it had recently run into its limits), which
    /// is why a busy worker may have stopped it at its wall-clock limit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub low_priority: bool,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub result: Result<Vec<TargetGroup>, GenError>,
    pub stats: RunStats,
}

/// The process's sandbox runtime. Cheap to share (`Arc`), safe to call concurrently.
pub struct Runtime {
    engine: Engine,
    cache: cache::ComponentCache,
    permits: tokio::sync::Semaphore,
    consume_fuel: bool,
    defaults: Limits,
    quarantine: quarantine::Quarantine,
    outbound: Arc<tokio::sync::Semaphore>,
    memory_budget: Arc<limits::MemoryBudget>,
    _ticker: engine::EpochTicker,
}

/// A running guest hands its thread back to the scheduler after this much fuel (a few
/// milliseconds of CPU), so a CPU-bound generator shares the cores with every other
/// job instead of holding a worker thread until it ends. Without it, ten generators
/// spinning into their limits on a 2-core worker cut the healthy paths' throughput to
/// a trickle (tests/faults.rs).
const YIELD_EVERY_FUEL: u64 = 5_000_000;

/// Extra wall-clock time before the last-resort timeout drops a run that the epoch
/// deadline did not stop (a host call that ignores the deadline).
const HARD_TIMEOUT_GRACE: Duration = Duration::from_millis(500);

type GuestCall<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = engine::build(config.consume_fuel, config.max_concurrent_runs)
            .map_err(|e| anyhow::anyhow!("cannot configure wasmtime: {e:#}"))?;
        let linker =
            host::linker(&engine).map_err(|e| anyhow::anyhow!("cannot build linker: {e:#}"))?;
        let cache = cache::ComponentCache::new(
            engine.clone(),
            linker,
            config.defaults,
            config.cache_dir.clone(),
            cache::CompileSettings {
                compiler: config.compiler.clone(),
                limits: config.compile,
                consume_fuel: config.consume_fuel,
            },
        )?;
        let ticker = engine::EpochTicker::start(&engine)?;
        Ok(Runtime {
            permits: tokio::sync::Semaphore::new(config.max_concurrent_runs.max(1) as usize),
            engine,
            cache,
            consume_fuel: config.consume_fuel,
            defaults: config.defaults,
            quarantine: quarantine::Quarantine::default(),
            outbound: Arc::new(tokio::sync::Semaphore::new(
                config.max_outbound_connections.max(1) as usize,
            )),
            memory_budget: limits::MemoryBudget::new(config.guest_memory_budget),
            _ticker: ticker,
        })
    }

    /// The limits for generators without a manifest (and for static files).
    pub fn defaults(&self) -> Limits {
        self.defaults
    }

    /// Loads (or finds in the cache) the generator at `path` without running it.
    pub async fn load(&self, path: &Path) -> Result<Arc<Loaded>, GenError> {
        self.cache.load(path).await
    }

    /// Runs the generator at `path` with `params` and validates its output.
    pub async fn run(&self, path: &Path, params: &[(String, String)]) -> RunReport {
        let params = params.to_vec();
        let (result, stats, limits) = self
            .in_sandbox(path, Transfer::Output, move |store, instance| {
                Box::pin(async move {
                    let generator = Generator::new(&mut *store, &instance)?;
                    generator.call_generate(store, &params).await
                })
            })
            .await;
        let result = result.and_then(|groups| {
            let groups: Vec<TargetGroup> = groups
                .into_iter()
                .map(|g| TargetGroup {
                    targets: g.targets,
                    labels: g.labels,
                })
                .collect();
            crate::validate::check_groups(&groups, &limits)
                .map_err(|e| GenError::host(ErrorKind::InvalidOutput, path, e.0))?;
            Ok(groups)
        });
        RunReport { result, stats }
    }

    /// Runs like [`Runtime::run`], but a generator that recently ran into its limits
    /// runs in the [`quarantine`]'s low-priority lane, so it cannot starve the others.
    pub async fn run_fairly(
        self: &Arc<Self>,
        path: &Path,
        params: &[(String, String)],
    ) -> RunReport {
        // The run's own CPU: what its polls took, less loading the component.
        let charged = |(mut report, cpu): (RunReport, Duration)| {
            report.stats.cpu = cpu.saturating_sub(report.stats.load_cpu);
            report
        };
        let report = match self.quarantine.lane(path) {
            None => charged(quarantine::CpuTimed::new(self.run(path, params)).await),
            Some(lane) => {
                let (runtime, owned_path, params) =
                    (self.clone(), path.to_path_buf(), params.to_vec());
                let task = lane.spawn(quarantine::CpuTimed::new(async move {
                    runtime.run(&owned_path, &params).await
                }));
                let mut report = match task.await {
                    Ok(timed) => charged(timed),
                    Err(e) => RunReport {
                        result: Err(GenError::host(
                            ErrorKind::Trap,
                            path,
                            format!("low-priority run failed: {e}"),
                        )),
                        stats: RunStats::default(),
                    },
                };
                report.stats.low_priority = true;
                report
            }
        };
        self.quarantine.record(path, &report);
        report
    }

    /// The parameter sets `httpsd check` should run `path` with: the manifest's
    /// `[check] params` when set, else the component's `check-params` export when it
    /// has one, else `None` (run once without parameters).
    pub async fn check_params(
        &self,
        path: &Path,
    ) -> Result<Option<Vec<Vec<(String, String)>>>, GenError> {
        let loaded = self.cache.load(path).await?;
        if let Some(queries) = &loaded.manifest.check.params {
            return Ok(Some(queries.iter().map(|q| parse_query(q)).collect()));
        }
        let Some(index) = loaded.check_export else {
            return Ok(None);
        };
        let (result, _, _) = self
            .in_sandbox(path, Transfer::CheckParams, move |store, instance| {
                Box::pin(async move {
                    let func = instance
                        .get_typed_func::<(), (Vec<Vec<(String, String)>>,)>(&mut *store, index)?;
                    let (sets,) = func.call_async(&mut *store, ()).await?;
                    Ok(Ok(sets))
                })
            })
            .await;
        let sets = result?;
        if sets.len() > limits::MAX_CHECK_PARAM_SETS {
            return Err(GenError::host(
                ErrorKind::InvalidOutput,
                path,
                format!(
                    "check-params returned {} parameter sets; at most {} are run",
                    sets.len(),
                    limits::MAX_CHECK_PARAM_SETS
                ),
            ));
        }
        Ok((!sets.is_empty()).then_some(sets))
    }

    /// Sets up a store with the generator's limits, instantiates it and runs `call`,
    /// all under the wall-clock limit, then sorts out the outcome.
    async fn in_sandbox<R, F>(
        &self,
        path: &Path,
        transfer: Transfer,
        call: F,
    ) -> (Result<R, GenError>, RunStats, Limits)
    where
        R: Send + 'static,
        F: for<'a> FnOnce(
                &'a mut Store<RunState>,
                Instance,
            ) -> GuestCall<'a, Result<R, host::WitError>>
            + Send,
    {
        let started = Instant::now();
        let mut stats = RunStats::default();
        // Loading first, without a run permit: a component compiling for a minute
        // (a limited job of its own, see `compile`) holds no slot of the runs.
        let (loaded, load_cpu) = quarantine::CpuTimed::new(self.cache.load_with_origin(path)).await;
        stats.load_cpu = load_cpu;
        let (loaded, origin) = match loaded {
            Ok(l) => l,
            Err(e) => {
                stats.duration = started.elapsed();
                return (Err(e), stats, Limits::default());
            }
        };
        stats.origin = Some(origin);
        let limits = loaded.limits;
        stats.limits = Some(limits);
        // Read at every run, so a rotated secret file is picked up without a reload.
        let secrets = match loaded.manifest.secret_pairs().await {
            Ok(s) => s,
            Err(e) => {
                stats.duration = started.elapsed();
                return (
                    Err(GenError::host(ErrorKind::LoadError, path, e)),
                    stats,
                    limits,
                );
            }
        };
        let _permit = self.permits.acquire().await;
        let redactions = log::redaction_list(&secrets);
        let name = path.display().to_string();
        let log = Arc::new(Mutex::new(
            log::RunLog::new(limits.max_log_bytes, name).with_secrets(redactions.clone()),
        ));
        let deadline = Instant::now() + limits.timeout;
        let grants = host::Grants {
            config: loaded.config.clone(),
            secrets,
            http: loaded.http.clone(),
            outbound: self.outbound.clone(),
        };
        let state = RunState::new(
            limits::MemoryCap::new(limits.memory_bytes).within(self.memory_budget.clone()),
            log.clone(),
            grants,
            deadline,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        let lift_budget = transfer.budget(&limits);
        store.set_hostcall_fuel(lift_budget);
        // Every resource the guest holds (an HTTP request's fields, a stream, a
        // pollable) is host memory outside the memory cap: cap how many it may hold.
        store.set_max_component_handles(limits::MAX_GUEST_HANDLES);
        if self.consume_fuel
            && let Err(e) = store
                .set_fuel(limits.fuel)
                .and_then(|()| store.fuel_async_yield_interval(Some(YIELD_EVERY_FUEL)))
        {
            stats.duration = started.elapsed();
            let err = GenError::host(ErrorKind::Trap, path, format!("cannot set fuel: {e}"));
            return (Err(err), stats, limits);
        }
        store.epoch_deadline_trap();
        store.set_epoch_deadline(engine::deadline_ticks(limits.timeout));

        let mut instantiate = Duration::ZERO;
        let outcome = tokio::time::timeout(limits.timeout + HARD_TIMEOUT_GRACE, async {
            let t0 = Instant::now();
            let instance = loaded
                .pre
                .instance_pre()
                .instantiate_async(&mut store)
                .await?;
            instantiate = t0.elapsed();
            call(&mut store, instance).await
        })
        .await;

        stats.instantiate = instantiate;
        if self.consume_fuel {
            stats.fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        }
        stats.memory_peak = store.data().memory.peak as u64;
        let memory_refusal = store.data().memory.refusal();
        let http_denied = store.data().http_denied().map(str::to_string);
        stats.http_requests = store.data().http_requests();
        drop(store);
        let (logs, dropped) = match log.lock() {
            Ok(mut l) => l.finish(),
            Err(_) => (Vec::new(), 0),
        };
        stats.logs = logs;
        stats.logs_dropped = dropped;

        let result = match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            // Its deadline passed while it waited in a host call (an HTTP request cut at
            // the deadline, say) and it returned before the epoch check stopped it: the
            // run ran out of time, whatever it then made of that.
            Ok(Ok(Err(guest_error))) if Instant::now() >= deadline => Err(GenError::guest(
                ErrorKind::Timeout,
                path,
                format!(
                    "Generator exceeded timeout limit: wall clock {} (it then returned: {})",
                    crate::units::format_duration(limits.timeout),
                    guest_words(&guest_error.message, &redactions)
                ),
                None,
            )),
            Ok(Ok(Err(guest_error))) => Err(GenError::returned(
                path,
                guest_words(&guest_error.message, &redactions),
            )),
            Ok(Err(trap)) if is_lift_refusal(&trap) => Err(GenError::guest(
                ErrorKind::InvalidOutput,
                path,
                transfer.refusal(&limits, lift_budget),
                trap.downcast_ref::<WasmBacktrace>(),
            )),
            Ok(Err(trap)) => {
                let (kind, mut message) =
                    error::classify_trap(&trap, memory_refusal, limits.fuel, limits.timeout);
                if kind == ErrorKind::Trap {
                    let tail = log::stderr_tail(&stats.logs, 3);
                    if !tail.is_empty() {
                        message = format!("{message}; guest stderr: {}", tail.join(" "));
                    }
                }
                let backtrace = trap.downcast_ref::<WasmBacktrace>();
                Err(GenError::guest(kind, path, message, backtrace))
            }
            Err(_elapsed) => Err(GenError::guest(
                ErrorKind::Timeout,
                path,
                format!(
                    "Generator exceeded timeout limit: wall clock {} (stopped while blocked in a host call; no wasm frames to show)",
                    crate::units::format_duration(limits.timeout)
                ),
                None,
            )),
        };
        // A failure after a refused request is about the refusal, whatever the guest
        // made of it (JavaScript's fetch says only "NetworkError").
        let result = match (result, http_denied) {
            (Err(e), Some(request)) if matches!(e.kind, ErrorKind::Generator | ErrorKind::Trap) => {
                Err(GenError::guest_kind(
                    ErrorKind::HttpDenied,
                    format!(
                        "{request} was refused: its host is not in the [http] allow list of this generator's manifest (the generator then failed: {})",
                        e.message
                    ),
                    e,
                ))
            }
            (result, _) => result,
        };
        // The guest's own words (its error message, a trap's stderr tail) leave the
        // sandbox here: no secret goes with them.
        let result = result.map_err(|mut e| {
            if !redactions.is_empty() {
                e.message = log::redact(&e.message, &redactions);
                e.traceback = log::redact(&e.traceback, &redactions);
            }
            // Bounded whatever path the words took (a trap's stderr tail, a wasi error).
            e.message = log::cut(&e.message, limits::MAX_ERROR_MESSAGE_BYTES).into_owned();
            e.traceback = log::cut(&e.traceback, 4 * limits::MAX_ERROR_MESSAGE_BYTES).into_owned();
            e
        });
        stats.duration = started.elapsed();
        (result, stats, limits)
    }
}

/// What a call hands back to the host, which sets how much of it the host lifts.
#[derive(Debug, Clone, Copy)]
enum Transfer {
    /// `generate`'s answer (or its error).
    Output,
    /// `check-params`' parameter sets.
    CheckParams,
}

impl Transfer {
    /// The hostcall fuel of the run: the most the host copies out of the guest in one
    /// transfer, this call's result or any host call the guest makes meanwhile.
    fn budget(self, limits: &Limits) -> usize {
        match self {
            Transfer::Output => limits.lift_budget(),
            Transfer::CheckParams => limits::CHECK_PARAMS_LIFT_BYTES,
        }
    }

    /// The message of an `InvalidOutput` for a transfer past the budget.
    fn refusal(self, limits: &Limits, budget: usize) -> String {
        let budget = crate::units::format_size(budget as u64);
        match self {
            // Which limit the answer breaks is not known (it was not read): only that
            // no answer within both could be this large.
            Transfer::Output => format!(
                "output exceeds what the max_output_bytes limit of {} and the max_targets limit of {} allow: the generator handed the host more than {budget} at once (its answer, an error message or a log line), and the host stopped copying there",
                crate::units::format_size(limits.max_output_bytes),
                limits.max_targets
            ),
            Transfer::CheckParams => format!(
                "check-params returned more than {budget}; at most {} parameter sets of that size are run",
                limits::MAX_CHECK_PARAM_SETS
            ),
        }
    }
}

/// Whether wasmtime stopped lifting a value out of the guest because it exceeded the
/// store's hostcall fuel (its own error type is private; its message is stable
/// within a wasmtime release, and tests/containment.rs fails if it changes).
fn is_lift_refusal(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// A guest's own words (its error message) as they leave the sandbox: secrets
/// redacted first (so a cut cannot leave half a secret), then cut to
/// [`limits::MAX_ERROR_MESSAGE_BYTES`] before anything else copies them.
fn guest_words(text: &str, redactions: &[String]) -> String {
    let redacted = if redactions.is_empty() {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(log::redact(text, redactions))
    };
    log::cut(&redacted, limits::MAX_ERROR_MESSAGE_BYTES).into_owned()
}

/// Parses a check query string (`env=prod&zone=a`) into ordered pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

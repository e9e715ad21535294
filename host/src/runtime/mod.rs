//! The sandbox: runs one generator component with fuel, wall-clock, memory and output
//! limits, and turns every way it can fail into a typed [`GenError`].
//!
//! One [`Runtime`] per process. It owns the wasmtime engine, the epoch ticker, the
//! linker, and the [`cache`] of compiled generators. [`Runtime::run`] is the whole life
//! of a job's call into a guest: load (usually a cache hit), a fresh store with the
//! limits set, instantiate from the `InstancePre`, call `generate`, validate.

pub mod cache;
pub mod capability;
pub mod compile;
pub mod engine;
pub mod error;
pub mod files;
pub mod limits;
pub mod manifest;
pub mod quarantine;
mod sandbox;
pub mod warm;

pub use cache::{Loaded, Origin};
pub use capability::log;
pub use error::{ErrorKind, GenError};
pub use limits::Limits;
pub use log::{LogLevel, LogLine};

use crate::model::TargetGroup;
use capability::{Generator, RunState};
use sandbox::{Sandbox, Transfer};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Instance;
use wasmtime::{Engine, Store};

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
    /// The Python runner component every `.py` generator runs in; `None`: `.py`
    /// generators fail to load, saying how to get it.
    pub python_runner: Option<PathBuf>,
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
            python_runner: None,
        }
    }
}

/// What one run did, successful or not.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunStats {
    /// Load (cache lookup or compile), instantiation and call.
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
    /// Instantiating the component for this run (part of `duration`); serialised, like
    /// the other durations, in milliseconds.
    #[serde(serialize_with = "as_millis")]
    pub instantiate: Duration,
    /// Fuel the guest burnt; 0 when fuel is not metered or the run never started.
    pub fuel_used: u64,
    /// Largest total linear memory the instance held, in bytes.
    pub memory_peak: u64,
    /// The run log's kept lines (guest log, stdout/stderr, host notes), secrets redacted.
    pub logs: Vec<LogLine>,
    /// Lines not kept because the log had reached `max_log_bytes`.
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

/// Who asked for a run, beyond its parameters.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// The generator's path in the target tree, as a `.py` generator's traceback names
    /// it; `None`: its file name.
    pub name: Option<String>,
    /// `httpsd check` runs it: a `.py` generator then runs `test_generate_targets`
    /// when it defines one.
    pub check: bool,
}

impl Invocation {
    /// The Python runner's script for a run of `loaded`, if it is one.
    fn script(&self, path: &Path, loaded: &Loaded) -> Option<capability::script::Script> {
        let source = loaded.script.clone()?;
        let name = self.name.clone().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Some(capability::script::Script {
            name,
            source,
            check: self.check,
        })
    }
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The validated target groups, or why there are none.
    pub result: Result<Vec<TargetGroup>, GenError>,
    /// What the run cost, whichever way it ended.
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

type GuestCall<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

impl Runtime {
    /// Builds the engine, the linker and the compiled-generator cache and starts the
    /// epoch ticker. Fails when wasmtime rejects the settings or the linker, the
    /// artifact directory cannot be created, or the ticker thread cannot start.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = engine::build(config.consume_fuel, config.max_concurrent_runs)
            .map_err(|e| anyhow::anyhow!("cannot configure wasmtime: {e:#}"))?;
        let linker = capability::linker(&engine)
            .map_err(|e| anyhow::anyhow!("cannot build linker: {e:#}"))?;
        let cache = cache::ComponentCache::new(
            engine.clone(),
            linker,
            config.defaults,
            config.cache_dir.clone(),
            config.python_runner.clone(),
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
        self.run_as(path, params, &Invocation::default()).await
    }

    /// [`Runtime::run`] for `invocation` (how the generator is named, whether `check`
    /// runs it).
    pub async fn run_as(
        &self,
        path: &Path,
        params: &[(String, String)],
        invocation: &Invocation,
    ) -> RunReport {
        let params = params.to_vec();
        let (result, stats, limits) = self
            .in_sandbox(
                path,
                invocation,
                Transfer::Output,
                move |store, instance| {
                    Box::pin(async move {
                        let generator = Generator::new(&mut *store, &instance)?;
                        generator.call_generate(store, &params).await
                    })
                },
            )
            .await;
        let result = result.and_then(|groups| {
            let groups: Vec<TargetGroup> = groups
                .into_iter()
                .map(|g| TargetGroup {
                    targets: g.targets,
                    labels: g.labels,
                })
                .collect();
            crate::validate::check_groups(&groups, limits.answer())
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
        invocation: &Invocation,
    ) -> RunReport {
        // The run's own CPU: what its polls took, less loading the component.
        let charged = |(mut report, cpu): (RunReport, Duration)| {
            report.stats.cpu = cpu.saturating_sub(report.stats.load_cpu);
            report
        };
        let report = match self.quarantine.lane(path) {
            None => charged(quarantine::CpuTimed::new(self.run_as(path, params, invocation)).await),
            Some(lane) => {
                let (runtime, owned_path, params, invocation) = (
                    self.clone(),
                    path.to_path_buf(),
                    params.to_vec(),
                    invocation.clone(),
                );
                let task = lane.spawn(quarantine::CpuTimed::new(async move {
                    runtime.run_as(&owned_path, &params, &invocation).await
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
            .in_sandbox(
                path,
                &Invocation::default(),
                Transfer::CheckParams,
                move |store, instance| {
                    Box::pin(async move {
                        let func = instance.get_typed_func::<(), (Vec<Vec<(String, String)>>,)>(
                            &mut *store,
                            index,
                        )?;
                        let (sets,) = func.call_async(&mut *store, ()).await?;
                        Ok(Ok(sets))
                    })
                },
            )
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

    /// One run in the sandbox: load the generator (without a run permit: a component
    /// compiling for a minute, a limited job of its own, holds no slot of the runs),
    /// read its secrets, then, holding a permit, the steps of [`sandbox`].
    async fn in_sandbox<R, F>(
        &self,
        path: &Path,
        invocation: &Invocation,
        transfer: Transfer,
        call: F,
    ) -> (Result<R, GenError>, RunStats, Limits)
    where
        R: Send + 'static,
        F: for<'a> FnOnce(
                &'a mut Store<RunState>,
                Instance,
            ) -> GuestCall<'a, Result<R, capability::WitError>>
            + Send,
    {
        let started = Instant::now();
        let mut stats = RunStats::default();
        let result = self
            .run_steps(path, invocation, transfer, call, &mut stats)
            .await;
        stats.duration = started.elapsed();
        let limits = stats.limits.unwrap_or_default();
        (result, stats, limits)
    }

    async fn run_steps<R, F>(
        &self,
        path: &Path,
        invocation: &Invocation,
        transfer: Transfer,
        call: F,
        stats: &mut RunStats,
    ) -> Result<R, GenError>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(
                &'a mut Store<RunState>,
                Instance,
            ) -> GuestCall<'a, Result<R, capability::WitError>>
            + Send,
    {
        let (loaded, load_cpu) = quarantine::CpuTimed::new(self.cache.load_with_origin(path)).await;
        stats.load_cpu = load_cpu;
        let (loaded, origin) = loaded?;
        stats.origin = Some(origin);
        stats.limits = Some(loaded.limits);
        // Read at every run, so a rotated secret file is picked up without a reload.
        let secrets = loaded
            .manifest
            .secret_pairs()
            .await
            .map_err(|e| GenError::host(ErrorKind::LoadError, path, e))?;
        let _permit = self.permits.acquire().await;
        let shared = sandbox::Shared {
            engine: &self.engine,
            outbound: self.outbound.clone(),
            memory_budget: self.memory_budget.clone(),
            consume_fuel: self.consume_fuel,
        };
        let script = invocation.script(path, &loaded);
        let mut sandbox = Sandbox::new(&shared, &loaded, secrets, transfer, path, script)?;
        let outcome = sandbox.call(&loaded, call, stats).await;
        let ended = sandbox.end(outcome, stats, &loaded);
        ended.result(path, &stats.logs)
    }
}

/// Parses a check query string (`env=prod&zone=a`) into ordered pairs.
pub use crate::query::parse as parse_query;

//! One run in the sandbox, as named steps: [`Sandbox::new`] (a fresh store with every
//! limit applied, or a warm one of the Python runner's, [`super::warm`]),
//! [`Sandbox::call`] (instantiate and call under the wall clock), [`Sandbox::end`] (what
//! the store saw), then [`classify`] the outcome, [`blame_denial`] on a refused HTTP
//! request, and [`redact_and_cut`] the guest's words on their way out.

use super::cache::Loaded;
use super::capability::script::{Script, ScriptFailure, ScriptRun, SoftLimits};
use super::capability::{Grants, RunState, WitError, log};
use super::error::{self, ErrorKind, GenError};
use super::limits::{self, Limits, MemoryBudget, MemoryCap};
use super::warm::{self, WarmSlot};
use super::{GuestCall, RunStats};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::Instance;
use wasmtime::{Engine, Store, WasmBacktrace};

/// Extra wall-clock time before the last-resort timeout drops a run that the epoch
/// deadline did not stop (a host call that ignores the deadline).
const HARD_TIMEOUT_GRACE: Duration = Duration::from_millis(500);

/// The file a `.py` run's wasm frames are named after in a trap's traceback.
const PYTHON_RUNNER_FRAMES: &str = "httpsd-python-runner.wasm";

/// What a call hands back to the host, which sets how much of it the host lifts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Transfer {
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

/// What the process shares with every run's store.
pub(super) struct Shared<'a> {
    pub engine: &'a Engine,
    pub outbound: Arc<tokio::sync::Semaphore>,
    pub memory_budget: Arc<MemoryBudget>,
    pub consume_fuel: bool,
}

/// One run's store and what is needed to judge how it ended.
pub(super) struct Sandbox {
    store: Store<RunState>,
    /// The instance, once made (a warm store has it from its earlier runs).
    instance: Option<Instance>,
    /// A warm store's runs before this one, and its place among the warm instances.
    warm: Option<(u32, WarmSlot)>,
    log: Arc<Mutex<log::RunLog>>,
    redactions: Vec<String>,
    deadline: Instant,
    limits: Limits,
    transfer: Transfer,
    lift_budget: usize,
    consume_fuel: bool,
}

/// How the call ended: the guest's value or error, a trap, or the last-resort timeout.
type CallOutcome<R> = Result<wasmtime::Result<Result<R, WitError>>, tokio::time::error::Elapsed>;

/// What the store saw, read before it is dropped.
pub(super) struct Ended<R> {
    outcome: CallOutcome<R>,
    memory_refusal: Option<String>,
    http_denied: Option<String>,
    /// A `.py` run's own report of its failure, and the limit it was told to stop at.
    script_failure: Option<ScriptFailure>,
    script_stopped: Option<String>,
    /// It was a run of the Python runner: a trap's wasm frames are the runner's.
    script: bool,
    redactions: Vec<String>,
    deadline: Instant,
    limits: Limits,
    transfer: Transfer,
    lift_budget: usize,
}

impl Sandbox {
    /// A fresh store for one run of `loaded` (of `script` when it is the Python
    /// runner), its log (redacting `secrets`) and every limit applied
    /// ([`limits::apply`]).
    pub fn new(
        shared: &Shared<'_>,
        loaded: &Loaded,
        secrets: Vec<(String, String)>,
        transfer: Transfer,
        path: &Path,
        script: Option<Script>,
    ) -> Result<Sandbox, GenError> {
        let limits = loaded.limits;
        let redactions = log::redaction_list(&secrets);
        let run_log = || {
            log::RunLog::new(limits.max_log_bytes, path.display().to_string())
                .with_secrets(redactions.clone())
        };
        let deadline = Instant::now() + limits.timeout;
        let grants = Grants {
            config: loaded.config.clone(),
            secrets,
            http: loaded.http.clone(),
            outbound: shared.outbound.clone(),
        };
        let fuel = if shared.consume_fuel { limits.fuel } else { 0 };
        let warm = script.as_ref().and_then(|_| loaded.warm.take());
        let script = ScriptRun::new(script, SoftLimits::new(deadline, limits.timeout, fuel));
        let (mut store, instance, warm, log) = match warm {
            Some(mut warm) => {
                *crate::sync::lock(&warm.log) = run_log();
                warm.store.data_mut().renew(grants, deadline, script);
                let runs = (warm.runs, warm.slot);
                (warm.store, Some(warm.instance), Some(runs), warm.log)
            }
            None => {
                let log = Arc::new(Mutex::new(run_log()));
                let memory =
                    MemoryCap::new(limits.memory_bytes).within(shared.memory_budget.clone());
                let state = RunState::new(memory, log.clone(), grants, deadline, script);
                (Store::new(shared.engine, state), None, None, log)
            }
        };
        let lift_budget = transfer.budget(&limits);
        limits::apply(&mut store, &limits, lift_budget, shared.consume_fuel, |s| {
            &mut s.memory
        })
        .map_err(|e| GenError::host(ErrorKind::Trap, path, format!("cannot set limits: {e}")))?;
        Ok(Sandbox {
            store,
            instance,
            warm,
            log,
            redactions,
            deadline,
            limits,
            transfer,
            lift_budget,
            consume_fuel: shared.consume_fuel,
        })
    }

    /// Instantiates the generator and runs `call`, under the epoch deadline and a
    /// last-resort timeout; how long instantiating took goes into `stats`.
    pub async fn call<R, F>(
        &mut self,
        loaded: &Loaded,
        call: F,
        stats: &mut RunStats,
    ) -> CallOutcome<R>
    where
        F: for<'a> FnOnce(&'a mut Store<RunState>, Instance) -> GuestCall<'a, Result<R, WitError>>
            + Send,
    {
        let mut instantiate = Duration::ZERO;
        let timeout = self.limits.timeout + HARD_TIMEOUT_GRACE;
        let store = &mut self.store;
        let made = &mut self.instance;
        let outcome = tokio::time::timeout(timeout, async {
            let instance = match *made {
                Some(warm) => warm,
                None => {
                    let t0 = Instant::now();
                    let instance = loaded
                        .pre
                        .instance_pre()
                        .instantiate_async(&mut *store)
                        .await?;
                    instantiate = t0.elapsed();
                    *made = Some(instance);
                    instance
                }
            };
            call(&mut *store, instance).await
        })
        .await;
        stats.instantiate = instantiate;
        outcome
    }

    /// Reads what the store saw (fuel, memory, HTTP requests, the log) into `stats`
    /// and drops it, so the run's memory goes back before the outcome is judged; or,
    /// for a Python runner's run that ended cleanly, keeps it warm in `loaded`.
    pub fn end<R>(
        self,
        outcome: CallOutcome<R>,
        stats: &mut RunStats,
        loaded: &Loaded,
    ) -> Ended<R> {
        let data = self.store.data();
        if self.consume_fuel {
            stats.fuel_used = self
                .limits
                .fuel
                .saturating_sub(self.store.get_fuel().unwrap_or(0));
        }
        stats.memory_peak = data.memory.peak as u64;
        stats.http_requests = data.http.requests();
        let memory_refusal = data.memory.refusal();
        let http_denied = data.http.denied().map(str::to_string);
        let script_failure = data.script.failure().cloned();
        let script_stopped = data.script.stopped().map(str::to_string);
        let script = data.script.is_script();
        // Returned by itself (its value or its error), inside every limit: the
        // interpreter is as the runner leaves it after any run.
        let clean = matches!(outcome, Ok(Ok(_)))
            && script
            && script_stopped.is_none()
            && memory_refusal.is_none()
            && data.memory.peak <= warm::MAX_MEMORY
            && Instant::now() < self.deadline;
        let instance = self.instance.filter(|_| clean);
        let (runs, slot) = match self.warm {
            Some((runs, slot)) => (runs + 1, Some(slot)),
            None => (1, None),
        };
        // The log is read before the store may serve another run, which empties it.
        let warm = match instance {
            Some(instance) => Some((self.store, instance)),
            None => {
                drop(self.store);
                None
            }
        };
        (stats.logs, stats.logs_dropped) = crate::sync::lock(&self.log).finish();
        if let Some((store, instance)) = warm {
            loaded
                .warm
                .keep(store, instance, self.log.clone(), runs, slot);
        }
        Ended {
            outcome,
            memory_refusal,
            http_denied,
            script_failure,
            script_stopped,
            script,
            redactions: self.redactions,
            deadline: self.deadline,
            limits: self.limits,
            transfer: self.transfer,
            lift_budget: self.lift_budget,
        }
    }
}

impl<R> Ended<R> {
    /// The run's result, every step applied: classified, a refused request blamed,
    /// the guest's words redacted and cut.
    pub fn result(self, path: &Path, logs: &[log::LogLine]) -> Result<R, GenError> {
        let (redactions, http_denied) = (self.redactions.clone(), self.http_denied.clone());
        let result = classify(self, path, logs, &redactions);
        let result = blame_denial(result, http_denied);
        result.map_err(|e| redact_and_cut(e, &redactions))
    }
}

/// Sorts out how the call ended: the guest's value, its own error, a limit (fuel, wall
/// clock, memory, the lift budget), or another trap.
fn classify<R>(
    ended: Ended<R>,
    path: &Path,
    logs: &[log::LogLine],
    redactions: &[String],
) -> Result<R, GenError> {
    let limits = ended.limits;
    // Whose wasm frames a trap shows: a `.py` run's are the interpreter's, in the
    // runner, not lines of the `.py` file.
    let frames_of = if ended.script {
        Path::new(PYTHON_RUNNER_FRAMES)
    } else {
        path
    };
    // A `.py` generator's exception, as the Python runner reported it.
    if let Ok(Ok(Err(guest_error))) = &ended.outcome
        && let Some(failure) = ended.script_failure
    {
        return Err(python_error(
            failure,
            ended.script_stopped,
            ended.memory_refusal.is_some(),
            guest_words(&guest_error.message, redactions),
        ));
    }
    match ended.outcome {
        Ok(Ok(Ok(value))) => Ok(value),
        // Its deadline passed while it waited in a host call (an HTTP request cut at
        // the deadline, say) and it returned before the epoch check stopped it: the
        // run ran out of time, whatever it then made of that.
        Ok(Ok(Err(guest_error))) if Instant::now() >= ended.deadline => Err(GenError::guest(
            ErrorKind::Timeout,
            path,
            format!(
                "Generator exceeded timeout limit: wall clock {} (it then returned: {})",
                crate::units::format_duration(limits.timeout),
                guest_words(&guest_error.message, redactions)
            ),
            None,
        )),
        Ok(Ok(Err(guest_error))) => Err(GenError::returned(
            path,
            guest_words(&guest_error.message, redactions),
        )),
        Ok(Err(trap)) if is_lift_refusal(&trap) => Err(GenError::guest(
            ErrorKind::InvalidOutput,
            frames_of,
            ended.transfer.refusal(&limits, ended.lift_budget),
            trap.downcast_ref::<WasmBacktrace>(),
        )),
        Ok(Err(trap)) => {
            let (kind, mut message) =
                error::classify_trap(&trap, ended.memory_refusal, limits.fuel, limits.timeout);
            if kind == ErrorKind::Trap {
                let tail = log::stderr_tail(logs, 3);
                if !tail.is_empty() {
                    message = format!("{message}; guest stderr: {}", tail.join(" "));
                }
            }
            let backtrace = trap.downcast_ref::<WasmBacktrace>();
            Err(GenError::guest(kind, frames_of, message, backtrace))
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
    }
}

/// The exception a `.py` generator ended in, in the terms prometheus-http-sd 3.x
/// cached it: `error_type` is its class name and the traceback is Python's. Its
/// `kind` is what it stands for: a `TimeoutError` the runner raised because the run
/// was told to stop is the run's timeout, a `MemoryError` after the memory cap refused
/// to grow is the cap; anything else is the generator's own error.
fn python_error(
    failure: ScriptFailure,
    stopped: Option<String>,
    memory_refused: bool,
    message: String,
) -> GenError {
    let ScriptFailure {
        error_type,
        traceback,
    } = failure;
    let (kind, message) = match (error_type.as_str(), stopped) {
        ("TimeoutError", Some(limit)) => (
            ErrorKind::Timeout,
            format!("Generator exceeded timeout limit: {limit}"),
        ),
        ("MemoryError", _) if memory_refused => (ErrorKind::Memory, message),
        ("InvalidOutput", _) => (ErrorKind::InvalidOutput, message),
        _ => (ErrorKind::Generator, message),
    };
    let exception = (kind == ErrorKind::Generator).then_some(error_type);
    GenError {
        kind,
        message,
        traceback,
        exception,
    }
}

/// A failure after a refused request is about the refusal, whatever the guest made of
/// it (JavaScript's fetch says only "NetworkError").
fn blame_denial<R>(result: Result<R, GenError>, denied: Option<String>) -> Result<R, GenError> {
    match (result, denied) {
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
    }
}

/// The guest's own words (its error message, a trap's stderr tail) leave the sandbox
/// here: no secret goes with them, and they are bounded whatever path they took.
fn redact_and_cut(mut e: GenError, redactions: &[String]) -> GenError {
    if !redactions.is_empty() {
        e.message = log::redact(&e.message, redactions);
        e.traceback = log::redact(&e.traceback, redactions);
    }
    e.message = log::cut(&e.message, limits::MAX_ERROR_MESSAGE_BYTES).into_owned();
    e.traceback = log::cut(&e.traceback, 4 * limits::MAX_ERROR_MESSAGE_BYTES).into_owned();
    e
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_words_are_redacted_before_they_are_cut() {
        let secret = "s3cr3t-token".to_string();
        let text = format!(
            "{}{secret}",
            "x".repeat(limits::MAX_ERROR_MESSAGE_BYTES - 4)
        );
        let words = guest_words(&text, std::slice::from_ref(&secret));
        assert!(
            !words.contains("s3cr"),
            "no piece of the secret survives the cut"
        );
        assert!(words.len() <= limits::MAX_ERROR_MESSAGE_BYTES + 64);
    }
}

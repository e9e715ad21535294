//! The script capability: what the Python runner (generators/python-runner) needs to run
//! one legacy `.py` generator and to report its end in Python's terms (the `script`
//! interface of wit/generator.wit).
//!
//! - `name`, `source`, `is-check`: the `.py` file of this run (read and bounded by the
//!   host when it changed, see `runtime::cache`), and whether `httpsd check` runs it.
//! - `time-left`, `should-stop`: a budget a little inside the hard limits (the wall
//!   clock less [`margin`], the fuel less a twentieth), so the runner stops a loop or a
//!   sleep in the Python frames that were running, and the `TimeoutError` shows the
//!   generator's own lines rather than the interpreter's. The hard limits stay the
//!   backstop: a guest that ignores the answer still ends at them.
//! - `failed`: the exception's class name and Python traceback, bounded here before the
//!   host keeps them (the runner then returns its error).
//! - `compiled`, `keep-compiled`: the file's bytecode, which the first run compiles and
//!   hands back (marshalled, bounded) and later runs load instead of compiling the text
//!   again: compiling is most of a small generator's run in the interpreter.
//!
//! Outside a `.py` run, `name` and `source` are empty and `failed` is ignored: an
//! ordinary component gains nothing by importing the interface.

use super::RunState;
use crate::runtime::limits::MAX_ERROR_MESSAGE_BYTES;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList, WasmStr};

/// The longest exception class name kept; a longer one is cut.
const MAX_ERROR_TYPE_BYTES: usize = 128;

/// The most of a traceback kept (the same bound as any guest traceback).
const MAX_TRACEBACK_BYTES: usize = 4 * MAX_ERROR_MESSAGE_BYTES;

/// The most bytecode kept for a file of `source_len` bytes: marshalled code runs a few
/// times the size of its text; more than this is not kept (each run then compiles).
fn max_bytecode_bytes(source_len: usize) -> usize {
    source_len
        .saturating_mul(8)
        .saturating_add(64 << 10)
        .min(32 << 20)
}

/// A `.py` file as every run of it until it changes shares it: its text, and its
/// bytecode once a run compiled it.
#[derive(Debug)]
pub struct Source {
    /// The file's text.
    pub text: Arc<str>,
    /// The bytecode the first run handed back, and the name it was compiled under
    /// (tracebacks carry it, so it is only reused under the same name).
    bytecode: Mutex<Option<(String, Arc<[u8]>)>>,
}

impl Source {
    /// A file's text, with no bytecode yet.
    pub fn new(text: Arc<str>) -> Source {
        Source {
            text,
            bytecode: Mutex::new(None),
        }
    }

    fn bytecode(&self, name: &str) -> Option<Arc<[u8]>> {
        let kept = crate::sync::lock(&self.bytecode);
        kept.as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, code)| code.clone())
    }

    /// Keeps `code` as the bytecode of this file under `name`, unless some is kept
    /// already: the first run's stays (no later run can replace it).
    fn keep(&self, name: &str, code: Arc<[u8]>) {
        let mut kept = crate::sync::lock(&self.bytecode);
        if kept.is_none() {
            *kept = Some((name.to_string(), code));
        }
    }
}

/// The `.py` generator one run executes.
#[derive(Debug, Clone)]
pub struct Script {
    /// Its path relative to the target tree, as tracebacks name it.
    pub name: String,
    /// Its text and bytecode (shared by every run until the file changes).
    pub source: Arc<Source>,
    /// `httpsd check` runs it: the runner calls `test_generate_targets` when defined.
    pub check: bool,
}

/// How a `.py` run ended in the runner's words: the exception's class name and its
/// Python traceback, both bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFailure {
    /// `ValueError`, `HTTPError`, `TimeoutError`...: only `[A-Za-z0-9_.]`, at most
    /// [`MAX_ERROR_TYPE_BYTES`].
    pub error_type: String,
    /// `Traceback (most recent call last):` and the generator's frames.
    pub traceback: String,
}

/// What a run's budget is, short of its hard limits.
#[derive(Debug, Clone, Copy)]
pub struct SoftLimits {
    /// When the runner should stop on its own: the deadline less [`margin`].
    pub soft_deadline: Instant,
    /// The wall-clock limit, to say which limit ran out.
    pub timeout: Duration,
    /// Fuel left below which the runner should stop; 0 when fuel is not metered.
    pub fuel_floor: u64,
    /// The fuel limit, to say which limit ran out.
    pub fuel: u64,
}

impl SoftLimits {
    /// A run that ends at `deadline` after `timeout`, with `fuel` (0: not metered).
    pub fn new(deadline: Instant, timeout: Duration, fuel: u64) -> SoftLimits {
        SoftLimits {
            soft_deadline: deadline.checked_sub(margin(timeout)).unwrap_or(deadline),
            timeout,
            fuel_floor: fuel / 20,
            fuel,
        }
    }
}

/// What the runner keeps back of the wall clock to stop and report: a tenth of the
/// limit, between 50 ms and 1 s.
pub fn margin(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// One run's script state.
pub struct ScriptRun {
    script: Option<Script>,
    limits: SoftLimits,
    /// The limit `should-stop` named, once it did.
    stopped: Option<String>,
    failure: Option<ScriptFailure>,
    /// `keep-compiled` was called: it is heard once per run, and the runner calls it
    /// before the generator's code runs, so that code cannot hand in bytecode of its own.
    offered: bool,
}

impl ScriptRun {
    /// `script` is `None` for a component that is not the Python runner.
    pub fn new(script: Option<Script>, limits: SoftLimits) -> Self {
        ScriptRun {
            script,
            limits,
            stopped: None,
            failure: None,
            offered: false,
        }
    }

    /// It runs a `.py` (the Python runner's run), not a component of its own.
    pub fn is_script(&self) -> bool {
        self.script.is_some()
    }

    /// The limit the run was told to stop at, if it was.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// What the runner reported before returning its error, if anything.
    pub fn failure(&self) -> Option<&ScriptFailure> {
        self.failure.as_ref()
    }

    fn time_left(&self, now: Instant) -> Duration {
        self.limits.soft_deadline.saturating_duration_since(now)
    }

    /// Which limit the run has reached, given the fuel it has left (`None` when fuel
    /// is not metered).
    fn should_stop(&mut self, now: Instant, fuel_left: Option<u64>) -> Option<String> {
        let why = if now >= self.limits.soft_deadline {
            Some(format!(
                "wall clock {}",
                crate::units::format_duration(self.limits.timeout)
            ))
        } else if fuel_left.is_some_and(|f| self.limits.fuel > 0 && f <= self.limits.fuel_floor) {
            Some(format!("fuel {}", self.limits.fuel))
        } else {
            None
        };
        if let Some(why) = &why {
            self.stopped.get_or_insert_with(|| why.clone());
        }
        why
    }

    fn record_failure(&mut self, failure: ScriptFailure) {
        if self.script.is_some() {
            self.failure = Some(failure);
        }
    }
}

impl ScriptFailure {
    /// What the runner reported, bounded in one pass (read in place from the guest:
    /// only the kept part is copied, and a cut traceback says how long it was).
    fn bounded(error_type: &str, traceback: &str) -> ScriptFailure {
        let cut = crate::runtime::log::cut;
        ScriptFailure {
            error_type: error_type_of(&cut(error_type, 4 * MAX_ERROR_TYPE_BYTES)),
            traceback: cut(traceback, MAX_TRACEBACK_BYTES).into_owned(),
        }
    }
}

/// A class name as the runner reported it, kept to the characters a (dotted) Python
/// name has and cut; an empty one is `Exception`.
fn error_type_of(reported: &str) -> String {
    let name: String = reported
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .take(MAX_ERROR_TYPE_BYTES)
        .collect();
    if name.is_empty() {
        "Exception".to_string()
    } else {
        name
    }
}

fn script_of<'a>(cx: &'a StoreContextMut<'_, RunState>) -> Option<&'a Script> {
    cx.data().script.script.as_ref()
}

/// Links the `script` interface.
pub fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    let mut script = linker.instance("httpsd:generator/script@0.1.0")?;
    script.func_wrap("name", |cx: StoreContextMut<'_, RunState>, (): ()| {
        Ok((script_of(&cx).map(|s| s.name.clone()).unwrap_or_default(),))
    })?;
    script.func_wrap("source", |cx: StoreContextMut<'_, RunState>, (): ()| {
        // The shared text itself: lowered into the guest without a copy on the host.
        Ok((script_of(&cx).map_or_else(|| Arc::<str>::from(""), |s| s.source.text.clone()),))
    })?;
    script.func_wrap("compiled", |cx: StoreContextMut<'_, RunState>, (): ()| {
        Ok((script_of(&cx).and_then(|s| s.source.bytecode(&s.name)),))
    })?;
    script.func_wrap(
        "keep-compiled",
        |mut cx: StoreContextMut<'_, RunState>, (code,): (WasmList<u8>,)| {
            let run = &mut cx.data_mut().script;
            if std::mem::replace(&mut run.offered, true) {
                return Ok(());
            }
            let Some(script) = run.script.clone() else {
                return Ok(());
            };
            // Measured in place; copied only when within the bound.
            let bytes = code.as_le_slice(&cx);
            if bytes.is_empty() || bytes.len() > max_bytecode_bytes(script.source.text.len()) {
                return Ok(());
            }
            let code: Arc<[u8]> = Arc::from(bytes);
            script.source.keep(&script.name, code);
            Ok(())
        },
    )?;
    script.func_wrap("is-check", |cx: StoreContextMut<'_, RunState>, (): ()| {
        Ok((script_of(&cx).is_some_and(|s| s.check),))
    })?;
    script.func_wrap("time-left", |cx: StoreContextMut<'_, RunState>, (): ()| {
        let left = cx.data().script.time_left(Instant::now());
        Ok((u64::try_from(left.as_nanos()).unwrap_or(u64::MAX),))
    })?;
    script.func_wrap(
        "should-stop",
        |mut cx: StoreContextMut<'_, RunState>, (): ()| {
            let fuel_left = cx.get_fuel().ok();
            Ok((cx.data_mut().script.should_stop(Instant::now(), fuel_left),))
        },
    )?;
    script.func_wrap(
        "failed",
        |mut cx: StoreContextMut<'_, RunState>, (error_type, traceback): (WasmStr, WasmStr)| {
            let failure = ScriptFailure::bounded(&error_type.to_str(&cx)?, &traceback.to_str(&cx)?);
            cx.data_mut().script.record_failure(failure);
            Ok(())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> Option<Script> {
        Some(Script {
            name: "apps/services.py".into(),
            source: Arc::new(Source::new(
                "def generate_targets(**kw):\n    return []\n".into(),
            )),
            check: false,
        })
    }

    #[test]
    fn the_first_bytecode_kept_stays_and_is_only_given_under_its_name() {
        let source = Source::new("x = 1\n".into());
        assert_eq!(source.bytecode("a.py"), None);
        source.keep("a.py", Arc::from(&b"first"[..]));
        source.keep("a.py", Arc::from(&b"second"[..]));
        assert_eq!(source.bytecode("a.py").as_deref(), Some(&b"first"[..]));
        assert_eq!(source.bytecode("b.py"), None);
        assert_eq!(max_bytecode_bytes(1000), 8000 + (64 << 10));
        assert_eq!(max_bytecode_bytes(usize::MAX), 32 << 20);
    }

    #[test]
    fn the_soft_deadline_keeps_a_margin_inside_the_hard_one() {
        let now = Instant::now();
        let limits = SoftLimits::new(now + Duration::from_secs(10), Duration::from_secs(10), 1000);
        assert_eq!(limits.soft_deadline, now + Duration::from_secs(9));
        assert_eq!(limits.fuel_floor, 50);
        assert_eq!(
            margin(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
        assert_eq!(margin(Duration::from_secs(60)), Duration::from_secs(1));
    }

    #[test]
    fn stops_at_the_wall_clock_or_near_the_end_of_the_fuel_and_remembers_why() {
        let start = Instant::now();
        let limits = SoftLimits::new(start + Duration::from_secs(2), Duration::from_secs(2), 1000);
        let mut run = ScriptRun::new(script(), limits);
        assert_eq!(run.should_stop(start, Some(900)), None);
        assert_eq!(run.stopped(), None);
        assert_eq!(
            run.should_stop(start, Some(50)).as_deref(),
            Some("fuel 1000")
        );
        assert_eq!(
            run.should_stop(start + Duration::from_secs(3), Some(900))
                .as_deref(),
            Some("wall clock 2s")
        );
        assert_eq!(run.stopped(), Some("fuel 1000"), "the first reason is kept");
        assert_eq!(
            run.time_left(start + Duration::from_secs(5)),
            Duration::ZERO
        );
        // Fuel not metered: only the clock stops it.
        let mut unmetered = ScriptRun::new(
            script(),
            SoftLimits::new(start + Duration::from_secs(2), Duration::from_secs(2), 0),
        );
        assert_eq!(unmetered.should_stop(start, Some(0)), None);
    }

    #[test]
    fn a_reported_failure_is_bounded_and_only_kept_for_a_script() {
        let limits = SoftLimits::new(Instant::now(), Duration::from_secs(1), 0);
        let mut run = ScriptRun::new(script(), limits);
        let huge = "x".repeat(10 * MAX_TRACEBACK_BYTES);
        run.record_failure(ScriptFailure::bounded(
            "requests.exceptions.HTTPError\n<b>",
            &huge,
        ));
        let failure = run.failure().unwrap();
        assert_eq!(failure.error_type, "requests.exceptions.HTTPErrorb");
        assert!(failure.traceback.len() <= MAX_TRACEBACK_BYTES + 64);
        // The length the guest handed over, not that of an earlier cut.
        assert!(
            failure
                .traceback
                .ends_with(&format!("[cut: {} bytes in all]", huge.len())),
            "{}",
            &failure.traceback[failure.traceback.len() - 40..]
        );
        run.record_failure(ScriptFailure::bounded("", "t"));
        assert_eq!(run.failure().unwrap().error_type, "Exception");
        run.record_failure(ScriptFailure::bounded(&"A".repeat(1000), "t"));
        assert_eq!(
            run.failure().unwrap().error_type.len(),
            MAX_ERROR_TYPE_BYTES
        );

        let mut component = ScriptRun::new(None, limits);
        component.record_failure(ScriptFailure::bounded("ValueError", "t"));
        assert!(component.failure().is_none());
    }
}

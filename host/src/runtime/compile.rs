//! Compiling a component: a limited job, like a run.
//!
//! Cranelift's work grows with what the component asks of it, and a crafted component
//! of a few megabytes can take a minute and gigabytes to compile. That work happens
//! before any run limit applies and cannot be interrupted in-process, so the binary
//! compiles in a child process of its own (`httpsd compile-component`, hidden): it reads
//! the component from its stdin, compiles it with the same engine settings and writes
//! the precompiled artifact, under a memory cap (`RLIMIT_DATA`), a CPU cap
//! (`RLIMIT_CPU`) and a wall-clock budget after which it is killed, at low CPU priority
//! so the serving threads keep the cores. The parent loads the artifact, after checking
//! its size.
//!
//! Library users without the binary (benchmarks, the runtime tests) compile in-process
//! on a blocking thread: the size cap and the wall-clock budget still apply to the
//! caller, but the compile itself runs on to its end.

use crate::units::{format_duration, format_size};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use wasmtime::Engine;
use wasmtime::component::Component;

/// What compiling one component may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// The largest component file read (componentize-py's are about 40 MB).
    pub max_component_bytes: u64,
    /// Wall-clock budget of one compile.
    pub timeout: Duration,
    /// Memory the compiling process may hold (its heap and private mappings).
    pub memory_bytes: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            max_component_bytes: 128 << 20,
            timeout: Duration::from_secs(60),
            memory_bytes: 2 << 30,
        }
    }
}

/// Where compiles run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiler {
    /// In a child process: this executable, run as `compile-component`.
    Subprocess(PathBuf),
    /// On a blocking thread of this process (library use).
    InProcess,
}

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "compile-component";

/// Nice value of the compiling process: below the serving threads.
const NICE: i32 = 10;

/// Compiles `bytes` as `engine` would, within `limits`, and returns the component and
/// whether its artifact was written to `artifact` (the child writes it; in-process the
/// caller serialises it if it wants it). The error is the message of a `LoadError`.
pub async fn compile(
    engine: &Engine,
    compiler: &Compiler,
    consume_fuel: bool,
    limits: CompileLimits,
    bytes: Vec<u8>,
    artifact: Option<&Path>,
) -> Result<(Component, bool), String> {
    if bytes.len() as u64 > limits.max_component_bytes {
        return Err(format!(
            "component is larger than the {} compile limit",
            format_size(limits.max_component_bytes)
        ));
    }
    let exe = match compiler {
        Compiler::InProcess => return in_process(engine, limits, bytes).await.map(|c| (c, false)),
        Compiler::Subprocess(exe) => exe,
    };
    static SCRATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = match artifact {
        Some(a) => a.with_extension(format!("compiling-{}-{n}", std::process::id())),
        None => std::env::temp_dir().join(format!("httpsd-compile-{}-{n}", std::process::id())),
    };
    let component = match in_child(exe, consume_fuel, limits, bytes, &scratch).await {
        Ok(()) => load_artifact(engine, &scratch, limits),
        Err(e) => Err(e),
    };
    // The loaded component maps the file; renaming or removing it does not matter to it.
    let kept = match (&component, artifact) {
        (Ok(_), Some(a)) => std::fs::rename(&scratch, a).is_ok(),
        _ => false,
    };
    if !kept {
        let _ = std::fs::remove_file(&scratch);
    }
    component.map(|c| (c, kept))
}

async fn in_process(
    engine: &Engine,
    limits: CompileLimits,
    bytes: Vec<u8>,
) -> Result<Component, String> {
    let engine = engine.clone();
    let task = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes));
    match tokio::time::timeout(limits.timeout, task).await {
        Ok(Ok(Ok(c))) => Ok(c),
        Ok(Ok(Err(e))) => Err(invalid(&e)),
        Ok(Err(e)) => Err(format!("compiler task failed: {e}")),
        Err(_) => Err(over_time(limits)),
    }
}

fn invalid(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    format!(
        "not a valid WebAssembly component: {}",
        text.lines().next().unwrap_or(&text)
    )
}

fn over_time(limits: CompileLimits) -> String {
    format!(
        "compiling the component took longer than the {} compile limit",
        format_duration(limits.timeout)
    )
}

/// Runs `exe compile-component` with the limits set in the child before it starts.
async fn in_child(
    exe: &Path,
    consume_fuel: bool,
    limits: CompileLimits,
    bytes: Vec<u8>,
    artifact: &Path,
) -> Result<(), String> {
    let mut child = limited_command(exe, consume_fuel, limits, artifact)
        .spawn()
        .map_err(|e| format!("cannot start the compiler process {}: {e}", exe.display()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or("the compiler process has no stdin")?;
    let run = async move {
        // A child that dies early closes its stdin: its exit status says why.
        let _ = stdin.write_all(&bytes).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(limits.timeout, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("the compiler process failed: {e}")),
        // Dropping the future drops the child, which kills it (kill_on_drop).
        Err(_) => return Err(over_time(limits)),
    };
    if output.status.success() {
        return Ok(());
    }
    Err(why_it_failed(&output, limits))
}

/// `httpsd compile-component` with its input on stdin, its memory (`RLIMIT_DATA`) and
/// CPU (`RLIMIT_CPU`) limited and at a lower priority, killed when dropped.
fn limited_command(
    exe: &Path,
    consume_fuel: bool,
    limits: CompileLimits,
    artifact: &Path,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(exe);
    command
        .arg(SUBCOMMAND)
        .arg("--fuel")
        .arg(if consume_fuel { "on" } else { "off" })
        .arg(artifact)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let memory = limits.memory_bytes;
    // CPU time may be twice the wall clock on two cores (parallel compilation); this is
    // a backstop, the wall-clock budget is the limit.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let cpu_seconds = limits
        .timeout
        .as_secs()
        .saturating_add(1)
        .saturating_mul(cores);
    // SAFETY: between fork and exec the closure only calls setrlimit and setpriority,
    // which are async-signal-safe, and touches no memory shared with other threads.
    unsafe {
        command.pre_exec(move || {
            set_limit(libc::RLIMIT_DATA, memory)?;
            set_limit(libc::RLIMIT_CPU, cpu_seconds)?;
            libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
            Ok(())
        });
    }
    command
}

/// Why a compile child failed, in an operator's terms: over its time or memory limit,
/// stopped by a signal, or the compiler's own last words.
fn why_it_failed(output: &std::process::Output, limits: CompileLimits) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    use std::os::unix::process::ExitStatusExt;
    match output.status.signal() {
        Some(libc::SIGXCPU | libc::SIGKILL) => over_time(limits),
        // An allocation refused under RLIMIT_DATA aborts (or faults in a thread
        // that cannot report it).
        Some(signal @ (libc::SIGABRT | libc::SIGSEGV | libc::SIGBUS)) => format!(
            "compiling the component needed more than the {} compile memory limit (the compiler stopped with signal {signal})",
            format_size(limits.memory_bytes)
        ),
        Some(signal) => format!(
            "the compiler process was stopped by signal {signal} (compile memory limit {}): {said}",
            format_size(limits.memory_bytes)
        ),
        None if said.contains("memory allocation") || said.contains("out of memory") => format!(
            "compiling the component needed more than the {} compile memory limit",
            format_size(limits.memory_bytes)
        ),
        None => crate::runtime::log::cut(said, 2048).into_owned(),
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: a valid pointer to an initialised rlimit for the duration of the call.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Loads a precompiled artifact (one the child wrote, or one from the cache
/// directory), refusing one far larger than any compile of an allowed component
/// produces.
pub(super) fn load_artifact(
    engine: &Engine,
    artifact: &Path,
    limits: CompileLimits,
) -> Result<Component, String> {
    let max = limits.max_component_bytes.saturating_mul(16);
    let len = std::fs::metadata(artifact)
        .map_err(|e| format!("the compiler wrote no artifact: {e}"))?
        .len();
    if len > max {
        return Err(format!(
            "the compiled component is larger than {} (16 times the compile limit)",
            format_size(max)
        ));
    }
    // SAFETY: the file was written by `Component::serialize` of an engine with the same
    // settings (our compiler process, or an earlier run with the same compatibility
    // hash in the file name); a truncated, foreign or mismatched file fails
    // deserialisation's own checks.
    unsafe { Component::deserialize_file(engine, artifact) }
        .map_err(|e| format!("cannot load the compiled component: {e:#}"))
}

/// The child's side: reads a component from stdin (at most `max_bytes`), compiles it
/// with the engine settings of a run, and writes the artifact to `output`.
pub fn child_main(consume_fuel: bool, output: &Path, max_bytes: u64) -> Result<(), String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the component: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err("component too large".into());
    }
    let engine = super::engine::build(consume_fuel, 1)
        .map_err(|e| format!("cannot configure wasmtime: {e:#}"))?;
    let component = Component::new(&engine, &bytes).map_err(|e| invalid(&e))?;
    let artifact = component
        .serialize()
        .map_err(|e| format!("cannot serialise the compiled component: {e:#}"))?;
    std::fs::write(output, artifact).map_err(|e| format!("cannot write {}: {e}", output.display()))
}

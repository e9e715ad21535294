//! What a generator can reach from inside the sandbox, and nothing more: one module per
//! capability, each owning its manifest section (if it has one), its per-run state, its
//! host functions, its linker registration and its unit tests.
//!
//! | capability | module | manifest | what the guest gets |
//! |---|---|---|---|
//! | log | [`log`] | — | the `log` import and stdout/stderr, captured per run, bounded |
//! | config | [`config`] | `[config]` | `config.get` / `config.all` |
//! | secrets | [`secrets`] | `[secrets]` | `config.secret`, redacted from everything a run leaves |
//! | outbound HTTP | [`http`] | `[http]` | wasi:http behind the allow-list and its caps |
//! | wall clock | [`clock`] | `[limits] timeout` | monotonic-clock waits cut at the run's deadline |
//! | script | [`script`] | — | the Python runner's `.py` file and its budget, a failure in Python's terms |
//!
//! Everything else WASI offers is there but denied: a [`WasiCtx`] with no files, no
//! environment, no arguments and no sockets.
//!
//! A run's state ([`RunState`]) is composed from the capabilities' states. To add a
//! capability: write its module (state, host functions, an `add_to_linker`, tests),
//! add its state to [`RunState`] and its `add_to_linker` to [`CAPABILITIES`].

pub mod clock;
pub mod config;
pub mod http;
pub mod log;
pub mod script;
pub mod secrets;

use super::limits::MemoryCap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The host side of `wit/generator.wit`, generated; its items are documented there.
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "generator",
        exports: { default: async },
    });
}

pub use bindings::*;

pub use self::httpsd::generator::types::{Error as WitError, TargetGroup as WitTargetGroup};

/// What a generator's manifest grants one run: config values, secrets, HTTP hosts.
pub struct Grants {
    /// `[config]` values, sorted by key; shared by every run of the generator.
    pub config: Arc<[(String, String)]>,
    /// `[secrets]` as `(key, value)`, read for this run; the run's log redacts them.
    pub secrets: Vec<(String, String)>,
    /// The `[http]` allow-list and caps; empty when the manifest has no `[http]`.
    pub http: Arc<http::HttpGrant>,
    /// The process's outbound connection slots, shared by every run.
    pub outbound: Arc<tokio::sync::Semaphore>,
}

/// Everything a store knows about its one run: the denied WASI base and each
/// capability's state.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The run's memory limiter: its peak and any refused growth are read after the run.
    pub memory: MemoryCap,
    /// The guest's log and captured stdout/stderr, written to the run's shared log.
    pub log: log::GuestLog,
    config: config::Config,
    secrets: secrets::Secrets,
    /// Outbound HTTP: the request count and a refused request are read after the run.
    pub http: http::OutboundHttp,
    clock: clock::WallClock,
    /// The `.py` generator a Python runner run executes, and how it reported its end.
    pub script: script::ScriptRun,
}

impl RunState {
    /// The state of one run: WASI with no files, environment, arguments or sockets,
    /// stdout and stderr going to `run_log`, and the grants' capabilities. `deadline`
    /// ends HTTP waits and clock sleeps with the run; `script` is what a run of the
    /// Python runner executes.
    pub fn new(
        memory: MemoryCap,
        run_log: Arc<Mutex<log::RunLog>>,
        grants: Grants,
        deadline: Instant,
        script: script::ScriptRun,
    ) -> Self {
        let log = log::GuestLog::new(run_log);
        let wasi = WasiCtxBuilder::new()
            .stdout(log.capture(log::Stream::Stdout))
            .stderr(log.capture(log::Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            memory,
            http: http::OutboundHttp::new(grants.http, deadline, &log, grants.outbound),
            log,
            config: config::Config::new(grants.config),
            secrets: secrets::Secrets::new(grants.secrets),
            clock: clock::WallClock::new(deadline),
            script,
        }
    }
}

impl RunState {
    /// The state of a warm instance's next run ([`crate::runtime::warm`]): new grants,
    /// deadline and script run, HTTP and clock state; the WASI context and resource
    /// table stay (the guest holds handles into them, its stdout among them), as do
    /// the memory cap (the memory it charged is still held) and the log it writes to
    /// (which the caller empties).
    pub fn renew(&mut self, grants: Grants, deadline: Instant, script: script::ScriptRun) {
        self.http = http::OutboundHttp::new(grants.http, deadline, &self.log, grants.outbound);
        self.config = config::Config::new(grants.config);
        self.secrets = secrets::Secrets::new(grants.secrets);
        self.clock = clock::WallClock::new(deadline);
        self.script = script;
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl self::httpsd::generator::types::Host for RunState {}

/// A capability's linker registration.
type AddToLinker = fn(&mut Linker<RunState>) -> wasmtime::Result<()>;

/// Each capability's linker registration, run after the WASI base and the world's own
/// imports are linked (with shadowing allowed, so a capability may replace a default
/// import with its bounded version).
const CAPABILITIES: &[AddToLinker] = &[
    log::add_to_linker,
    config::add_to_linker,
    secrets::add_to_linker,
    http::add_to_linker,
    clock::add_to_linker,
    script::add_to_linker,
];

/// Builds the linker every generator is instantiated against: WASI p2 (denied by
/// default, see [`RunState::new`]), the world's imports, then each capability.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<RunState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Generator::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
    linker.allow_shadowing(true);
    for add in CAPABILITIES {
        add(&mut linker)?;
    }
    linker.allow_shadowing(false);
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every capability links: a generator that imports all of them instantiates
    /// against this linker (the runtime tests do that with real components).
    #[test]
    fn the_linker_builds_with_every_capability() {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        assert!(linker(&engine).is_ok());
    }
}

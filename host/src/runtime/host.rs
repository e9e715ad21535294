//! What a generator can reach from inside the sandbox, and nothing more.
//!
//! The store's data ([`RunState`]) carries a WASI context with no files, no
//! environment, no arguments and no sockets, plus our own imports: `log` (captured per
//! run) and `config` (the manifest's values and secrets). Outbound HTTP goes through
//! wasi:http and the manifest's allow-list ([`super::http`]). stdout and stderr are captured into the
//! same bounded run log, so a `println!` or a panic message is visible in `?debug=true`.
//!
//! The wall-clock limit has two halves. Epoch interruption stops a guest that is
//! running wasm; it cannot stop one that is parked in a host call such as a sleep. So
//! the monotonic-clock `subscribe-*` functions are shadowed here to never wait past the
//! run's deadline: the sleep returns at the deadline, the next epoch check traps, and
//! the timeout keeps the guest's backtrace.

use super::log::{LogLevel, RunLog, Stream};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable, WasmStr};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host as _;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::http::{HttpGrant, HttpPolicy};
use super::limits::MemoryCap;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "generator",
    exports: { default: async },
});

pub use self::httpsd::generator::types::{Error as WitError, TargetGroup as WitTargetGroup};

/// What a generator's manifest grants one run: config values, secrets, HTTP hosts.
pub struct Grants {
    pub config: Arc<[(String, String)]>,
    pub secrets: Vec<(String, String)>,
    pub http: Arc<HttpGrant>,
    /// The process's outbound connection slots, shared by every run.
    pub outbound: Arc<tokio::sync::Semaphore>,
}

/// Everything a store knows about its one run.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    /// Decides which requests go out; cuts their waits to the deadline.
    http_policy: HttpPolicy,
    pub memory: MemoryCap,
    pub log: Arc<Mutex<RunLog>>,
    config: Arc<[(String, String)]>,
    secrets: Vec<(String, String)>,
    /// When the wall-clock limit runs out; host calls never wait past it.
    deadline: Instant,
}

impl RunState {
    pub fn new(
        memory: MemoryCap,
        log: Arc<Mutex<RunLog>>,
        grants: Grants,
        deadline: Instant,
    ) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(Capture {
                log: log.clone(),
                stream: Stream::Stdout,
            })
            .stderr(Capture {
                log: log.clone(),
                stream: Stream::Stderr,
            })
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(super::limits::MAX_HTTP_FIELDS_BYTES);
                http
            },
            http_policy: HttpPolicy::new(grants.http, deadline, log.clone(), grants.outbound),
            memory,
            log,
            config: grants.config,
            secrets: grants.secrets,
            deadline,
        }
    }

    /// The first HTTP request the allow-list refused in this run, if any.
    pub fn http_denied(&self) -> Option<&str> {
        self.http_policy.denied.as_deref()
    }

    /// Outbound HTTP requests made so far.
    pub fn http_requests(&self) -> u32 {
        self.http_policy.requests()
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
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

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_policy,
        }
    }
}

impl self::httpsd::generator::types::Host for RunState {}

impl self::httpsd::generator::log::Host for RunState {
    /// Not used: [`linker`] shadows it with [`log_line`], which reads the message in
    /// place instead of taking it as a `String` the host has already copied.
    fn log(&mut self, level: self::httpsd::generator::log::Level, message: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(log_level(level), &message);
        }
    }
}

fn log_level(level: self::httpsd::generator::log::Level) -> LogLevel {
    use self::httpsd::generator::log::Level as L;
    match level {
        L::Trace => LogLevel::Trace,
        L::Debug => LogLevel::Debug,
        L::Info => LogLevel::Info,
        L::Warn => LogLevel::Warn,
        L::Error => LogLevel::Error,
    }
}

/// The `log` import, reading the guest's message where it lies in linear memory
/// ([`WasmStr`]): a line the run log has no room for is counted without the host ever
/// copying it, so a guest logging a 100 MiB line costs the host nothing.
fn log_line(
    cx: StoreContextMut<'_, RunState>,
    (level, message): (self::httpsd::generator::log::Level, WasmStr),
) -> wasmtime::Result<()> {
    let text = message.to_str(&cx)?;
    if let Ok(mut log) = cx.data().log.lock() {
        log.push(log_level(level), &text);
    }
    Ok(())
}

impl self::httpsd::generator::config::Host for RunState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.config.to_vec()
    }

    fn secret(&mut self, key: String) -> Option<String> {
        self.secrets
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
}

/// Builds the linker every generator is instantiated against: WASI p2 (denied by
/// default, see [`RunState::new`]), the clock shadowing, and our imports.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<RunState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // Every generator gets wasi:http; the policy refuses what its manifest does not allow.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Generator::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;

    linker.allow_shadowing(true);
    linker
        .instance("httpsd:generator/log@0.1.0")?
        .func_wrap("log", log_line)?;
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    clock.func_wrap(
        "subscribe-duration",
        |mut cx: StoreContextMut<'_, RunState>, (nanos,): (u64,)| {
            let capped = cap_wait(Duration::from_nanos(nanos), cx.data().remaining());
            let pollable = cx.data_mut().clocks().subscribe_duration(capped)?;
            Ok((pollable,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut cx: StoreContextMut<'_, RunState>, (when,): (u64,)| {
            let remaining = cx.data().remaining();
            let mut clocks = cx.data_mut().clocks();
            let now = clocks.now()?;
            let wait = cap_wait(Duration::from_nanos(when.saturating_sub(now)), remaining);
            let pollable: Resource<DynPollable> = clocks.subscribe_duration(wait)?;
            Ok((pollable,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// Wait at most until the deadline, plus a millisecond so the epoch deadline has
/// certainly passed when the guest resumes.
fn cap_wait(wanted: Duration, remaining: Duration) -> u64 {
    let capped = wanted.min(remaining + Duration::from_millis(1));
    u64::try_from(capped.as_nanos()).unwrap_or(u64::MAX)
}

/// The guest's stdout or stderr: appended to the run log, bounded, never blocking and
/// never failing (a guest that prints too much loses lines, not its run).
struct Capture {
    log: Arc<Mutex<RunLog>>,
    stream: Stream,
}

impl Capture {
    fn append(&self, bytes: &[u8]) {
        if let Ok(mut log) = self.log.lock() {
            log.append_output(self.stream, bytes);
        }
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(CaptureWriter(Capture {
            log: self.log.clone(),
            stream: self.stream,
        }))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(Capture {
            log: self.log.clone(),
            stream: self.stream,
        })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

struct CaptureWriter(Capture);

impl tokio::io::AsyncWrite for CaptureWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

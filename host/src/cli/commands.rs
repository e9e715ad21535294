//! Wiring for `httpsd server`, `httpsd worker`, `httpsd serve` and `httpsd check`:
//! which store, which parts, how they stop, and the one runtime they run on
//! ([`block_on`]).
//!
//! SIGTERM and SIGINT stop every command gracefully: the server finishes the requests
//! in flight, workers stop taking jobs and drain (see [`crate::worker::pool`]).

use super::{CheckArgs, OutputFormat, ServeArgs, ServerArgs, WorkerArgs};
use crate::check;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::server::{self, App};
use crate::store::{MemoryStore, RedisStore, Retention, Store};
use crate::targets::{PathIndex, TargetTree};
use crate::worker::{self, JobContext};
use anyhow::Context;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Runs `main` on a tokio runtime with at most `threads` worker threads and at most one
/// per core (0: one per core), and turns what it returns into the exit status. The one
/// place a command's runtime is built.
///
/// The seed's `--threads 64` sized a pool of blocking request threads. An async runtime
/// serves any number of requests with one thread per core, and threads beyond that
/// only add scheduling: on 2 cores, 64 workers served about 12% fewer cache hits than
/// 2 (wrk, 50 connections). So the flag is a ceiling, and lowering it below the core
/// count still works.
pub fn block_on<F>(threads: usize, main: F) -> ExitCode
where
    F: std::future::Future,
    F::Output: CommandOutcome,
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = runtime_threads(threads, cores);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().worker_threads(workers);
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("httpsd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Reported while the runtime is still up, as before it is dropped.
    runtime.block_on(main).exit_code()
}

/// What a command returns, as an exit status.
pub trait CommandOutcome {
    /// The status the process exits with, after reporting a failure if there was one.
    fn exit_code(self) -> ExitCode;
}

/// `server`, `worker`, `serve`: an error is logged and printed.
impl CommandOutcome for anyhow::Result<()> {
    fn exit_code(self) -> ExitCode {
        match self {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("httpsd: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// `check`: it has printed its report and chosen its status itself.
impl CommandOutcome for ExitCode {
    fn exit_code(self) -> ExitCode {
        self
    }
}

/// `httpsd check DIR`: the flags as [`check::CheckOptions`], then [`check::run`].
pub async fn check(args: CheckArgs) -> ExitCode {
    let options = check::CheckOptions {
        dir: args.dir,
        path: args.path,
        params: args.params,
        format: match args.format {
            OutputFormat::Text => check::OutputFormat::Text,
            OutputFormat::Json => check::OutputFormat::Json,
        },
        verbose: args.verbose,
        runtime: args.runtime.config(),
    };
    check::run(options).await
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

fn open_tree(dir: &std::path::Path) -> anyhow::Result<TargetTree> {
    TargetTree::open(dir).with_context(|| format!("cannot open target directory {}", dir.display()))
}

async fn bind(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))
}

/// Says at start-up whether the store answers; a server or worker still starts
/// without it and recovers when it comes back.
async fn check_store<S: Store>(store: &S) {
    match store.ping().await {
        Ok(()) => tracing::info!(store = store.kind(), "store reachable"),
        Err(e) => tracing::warn!(
            store = store.kind(),
            "store not reachable yet, serving 503s until it is: {e}"
        ),
    }
}

/// Open connections the worker's metrics endpoint allows (scrapers and probes).
const METRICS_CONNECTION_LIMIT: usize = 64;

/// `httpsd server DIR`.
pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let tree = open_tree(&args.dir)?;
    let store = Arc::new(RedisStore::new(
        args.redis.settings(),
        Retention {
            lease: args.job_lease.max(Duration::from_millis(300)),
            ..Retention::default()
        },
    )?);
    check_store(&*store).await;
    let app = App::new(
        store,
        PathIndex::new(tree, args.tree.tree_refresh),
        Arc::new(Metrics::new()),
        args.http.config().map_err(anyhow::Error::msg)?,
    );
    tokio::spawn(server::local::follow(app.store.clone(), app.local.clone()));
    let tls = args.http.tls().map_err(anyhow::Error::msg)?;
    let listener = bind(&args.http.host, args.http.port).await?;
    announce(&listener, &app.config.url_prefix, "server", tls.is_some());
    server::serve(
        listener,
        args.http.connection_limit,
        args.http.timeouts(),
        tls,
        server::router(app),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// `httpsd worker DIR`.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let tree = open_tree(&args.dir)?;
    let settings = crate::store::RedisSettings {
        max_value_bytes: args.pool.max_value_bytes,
        ..args.redis.settings()
    };
    let store = Arc::new(RedisStore::new(settings, args.pool.retention())?);
    check_store(&*store).await;
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(JobContext {
        runtime: Arc::new(Runtime::new(args.pool.runtime.config())?),
        index: PathIndex::new(tree, args.tree.tree_refresh),
        metrics: metrics.clone(),
        max_attempts: args.pool.max_attempts,
    });

    let listener = bind(&args.metrics_host, args.metrics_port).await?;
    tracing::info!(
        "worker metrics on http://{}/metrics",
        listener.local_addr()?
    );
    let metrics_app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get({
                let store = store.clone();
                let metrics = metrics.clone();
                move || async move { server::metrics_response(&*store, &metrics).await }
            }),
        )
        .route(
            "/healthz",
            axum::routing::get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        );
    // The same connection limits and timeouts as the server's, so idle or slow
    // scrapers cannot pile up on the worker either.
    let metrics_server = tokio::spawn(server::serve(
        listener,
        METRICS_CONNECTION_LIMIT,
        server::connection::Timeouts::default(),
        None,
        metrics_app,
        std::future::pending(),
    ));

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    worker::run_pool(store, ctx, args.pool.worker_config(), stopped).await;
    metrics_server.abort();
    Ok(())
}

/// `httpsd serve DIR`: the server and a worker pool in one process, memory store.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let tree = open_tree(&args.dir)?;
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(
        MemoryStore::with_bounds(
            args.pool.retention(),
            args.memory_store.bounds(args.pool.max_value_bytes),
        )
        .with_metrics(metrics.memory_store()),
    );
    let index = PathIndex::new(tree, args.tree.tree_refresh);
    let ctx = Arc::new(JobContext {
        runtime: Arc::new(Runtime::new(args.pool.runtime.config())?),
        index: index.clone(),
        metrics: metrics.clone(),
        max_attempts: args.pool.max_attempts,
    });
    let config = crate::server::ServerConfig {
        // The memory store is in this process already.
        local_cache: std::time::Duration::ZERO,
        ..args.http.config().map_err(anyhow::Error::msg)?
    };
    let app = App::new(store.clone(), index, metrics, config);
    let tls = args.http.tls().map_err(anyhow::Error::msg)?;
    let listener = bind(&args.http.host, args.http.port).await?;
    announce(&listener, &app.config.url_prefix, "serve", tls.is_some());

    let (stop, stopped) = watch::channel(false);
    // Generators run on threads of their own, at a lower priority than the threads
    // that answer HTTP: whatever a run makes the host do (compile, lift, validate), a
    // request for a cached path is answered first.
    let runs = run_threads()?;
    let pool = runs.handle.spawn(worker::run_pool(
        store,
        ctx,
        args.pool.worker_config(),
        stopped,
    ));
    server::serve(
        listener,
        args.http.connection_limit,
        args.http.timeouts(),
        tls,
        server::router(app),
        async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        },
    )
    .await?;
    pool.await.context("worker pool task failed")?;
    Ok(())
}

/// Nice value of the threads that run generators in `httpsd serve` (the HTTP threads
/// keep 0): about a third of a core's share against a busy HTTP thread, and all of
/// the core when HTTP is idle.
const RUN_NICE: i32 = 5;

/// The runtime `httpsd serve` runs generators on: one thread per core, lower priority.
fn run_threads() -> anyhow::Result<RunThreads> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("httpsd-run")
        .on_thread_start(|| {
            if let Err(e) = crate::runtime::quarantine::set_thread_nice(RUN_NICE) {
                tracing::debug!("cannot lower a run thread's priority: {e}");
            }
        })
        .build()
        .map(|rt| RunThreads {
            handle: rt.handle().clone(),
            runtime: Some(rt),
        })
        .context("cannot start the generator runtime")
}

/// A runtime owned by async code: dropping a tokio runtime inside another one panics,
/// so it is shut down in the background instead.
struct RunThreads {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for RunThreads {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Raises this process's open-file limit to its hard limit: a worker's budget of
/// descriptors (docs/SECURITY.md) is the connections it serves, the outbound
/// connections of its runs and the compiles in flight, and distributions' default soft
/// limit of 1024 is below that.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to an rlimit for the duration of each call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn announce(listener: &tokio::net::TcpListener, prefix: &str, what: &str, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    match listener.local_addr() {
        Ok(addr) => tracing::info!(
            "httpsd {what} listening on {scheme}://{addr}{prefix}/ (targets at {scheme}://{addr}{prefix}/targets/<path>)"
        ),
        Err(e) => tracing::warn!("cannot read the listening address: {e}"),
    }
}

/// `httpsd new NAME`: writes the crate and says what to do next.
pub fn new(args: &super::NewArgs) -> ExitCode {
    if args.lang == super::NewLang::Python {
        return new_python(args);
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(&args.name));
    let spec = super::new::NewCrate {
        name: &args.name,
        dir: &dir,
        sdk: args.sdk.as_deref(),
    };
    match super::new::create(&spec) {
        Ok(files) => {
            println!("created {} with:", dir.display());
            for f in files.iter().filter(|f| !f.starts_with("vendor/")) {
                println!("  {f}");
            }
            if files.iter().any(|f| f.starts_with("vendor/")) {
                println!("  vendor/ (a copy of the generator SDK and the WIT world)");
            }
            let wasm = super::new::component_file(&args.name);
            println!(
                "\nnext:\n  cd {dir}\n  cargo build --release --target wasm32-wasip2\n  \
                 mkdir -p /srv/targets/{name} && cp target/wasm32-wasip2/release/{wasm} /srv/targets/{name}/{name}.wasm && cp {name}.toml /srv/targets/{name}/\n  \
                 httpsd check /srv/targets --path {name}",
                dir = dir.display(),
                name = args.name,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("httpsd new: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `httpsd new NAME --lang python`.
fn new_python(args: &super::NewArgs) -> ExitCode {
    let dir = args.dir.clone().unwrap_or_else(|| ".".into());
    match super::new::create_python(&args.name, &dir) {
        Ok(files) => {
            println!("created:");
            for f in &files {
                println!("  {}", f.display());
            }
            println!(
                "\nnext:\n  mkdir -p /srv/targets/{name} && cp {py} {toml} /srv/targets/{name}/\n  \
                 httpsd check /srv/targets --path {name}",
                name = args.name,
                py = files[0].display(),
                toml = files[1].display(),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("httpsd new: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Worker threads for `--threads` on a machine with `cores` cores.
fn runtime_threads(threads: usize, cores: usize) -> usize {
    match threads {
        0 => cores,
        n => n.min(cores),
    }
    .max(1)
}

#[cfg(test)]
mod thread_tests {
    use super::runtime_threads;

    #[test]
    fn threads_are_capped_at_the_core_count() {
        assert_eq!(runtime_threads(64, 2), 2);
        assert_eq!(runtime_threads(0, 8), 8);
        assert_eq!(runtime_threads(1, 8), 1);
        assert_eq!(runtime_threads(0, 0), 1);
    }
}

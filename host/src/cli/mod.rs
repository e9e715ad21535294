//! The command line: `httpsd <command>`. Flags follow the seeds (DESIGN §10); every
//! flag has an environment fallback so a systemd unit or a container can set it.
//!
//! This file holds the flags; [`commands`] wires the parts together for `server`,
//! `worker` and `serve`.

pub mod commands;
pub mod new;

use crate::runtime::compile::{CompileLimits, Compiler};
use crate::runtime::{Limits, RuntimeConfig};
use crate::units::{parse_duration, parse_size};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// The whole command line: global logging flags and one command.
#[derive(Debug, Parser)]
#[command(
    name = "httpsd",
    version,
    about = "Prometheus HTTP service discovery with sandboxed WebAssembly target generators"
)]
pub struct Cli {
    /// Log level: a name (trace, debug, info, warn, error) or a Python logging number
    /// (10, 20, 30, 40, 50), as the tool this one replaces took it.
    #[arg(long, global = true, env = "HTTPSD_LOG_LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: tracing::Level,

    /// Log format on stderr.
    #[arg(long, global = true, env = "HTTPSD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr (`--log-format`): human-readable lines, or one
/// JSON object per line for a log collector.
// No `///` on the variants: clap would make them possible-value help, which switches
// every `--help` (this flag is global) to the long layout.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The commands of `httpsd`; each carries its own flags.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP server and an in-process worker pool with an in-memory store: one process,
    /// no Redis. The quickest way to run httpsd on one machine.
    Serve(ServeArgs),
    /// HTTP server only: answers from the Redis cache and enqueues jobs. Run as many as
    /// you like behind a load balancer.
    #[command(alias = "server-only")]
    Server(ServerArgs),
    /// Worker pool only: takes jobs from Redis, runs the generators, writes results.
    /// Run as many as you like, on as many machines.
    #[command(alias = "worker-only")]
    Worker(WorkerArgs),
    /// Run every generator once in the sandbox, validate, and print what each returned.
    /// Exits non-zero if any generator fails.
    Check(CheckArgs),
    /// Write a new Rust generator crate (with a copy of the SDK) that builds to a
    /// component and passes `httpsd check` as it is.
    New(NewArgs),
    /// Internal: compile one component from stdin in a process of its own, under the
    /// limits its parent set (see runtime/compile.rs).
    #[command(name = "compile-component", hide = true)]
    CompileComponent(CompileComponentArgs),
}

/// `httpsd compile-component --fuel on|off OUTPUT` (run by httpsd itself).
#[derive(Debug, Args)]
pub struct CompileComponentArgs {
    /// Whether the engine meters fuel (it must match the parent's).
    #[arg(long, value_parser = ["on", "off"])]
    pub fuel: String,
    /// Where to write the precompiled artifact.
    pub output: PathBuf,
}

impl CompileComponentArgs {
    /// Runs the child side of an out-of-process compile and returns its exit code; on
    /// failure the reason is the one line on stderr, for the parent to report. The size
    /// cap here is only a backstop (at least 1 GiB): the parent enforces
    /// `--max-component-bytes` before it writes to our stdin.
    pub fn run(&self) -> std::process::ExitCode {
        let max = crate::runtime::compile::CompileLimits::default()
            .max_component_bytes
            .max(1 << 30);
        match crate::runtime::compile::child_main(self.fuel == "on", &self.output, max) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// `httpsd new NAME`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The generator's name (letters, digits, '-' and '_').
    pub name: String,

    /// rust: a crate that builds to a component (in ./NAME); python: a drop-in
    /// NAME.py and its manifest NAME.toml (in the current directory), no build step.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: NewLang,

    /// Where to create it (default: ./NAME for rust, . for python). A Rust crate's
    /// directory must not exist yet; Python files are never overwritten.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// Depend on this generator-sdk checkout instead of a copy of the SDK.
    #[arg(long, value_name = "PATH")]
    pub sdk: Option<PathBuf>,
}

/// What `httpsd new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewLang {
    /// A Rust crate using the generator SDK.
    Rust,
    /// A prometheus-http-sd style `.py` file, run as it is.
    Python,
}

/// `httpsd server DIR`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The target directory.
    pub dir: PathBuf,
    /// Listening, freshness, auth and TLS flags.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Where the shared cache and job queue live.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// How often the target directory is re-read.
    #[command(flatten)]
    pub tree: TreeArgs,
    /// The workers' --job-lease (the same variable): a path's dedupe marker older than
    /// this must still have its job in the queue or running, else a poll enqueues the
    /// path again (a job lost in a Redis failover then blocks its path for a lease at
    /// most).
    #[arg(long, env = "HTTPSD_JOB_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub job_lease: Duration,
}

/// `httpsd worker DIR`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The target directory.
    pub dir: PathBuf,
    /// The worker pool and its sandbox.
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Where the job queue and the shared cache live.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// How often the target directory is re-read.
    #[command(flatten)]
    pub tree: TreeArgs,
    /// Address of the worker's /metrics endpoint.
    #[arg(long, env = "HTTPSD_METRICS_HOST", default_value = "127.0.0.1")]
    pub metrics_host: String,
    /// Port of the worker's /metrics endpoint (0 picks a free one and logs it).
    #[arg(long, env = "HTTPSD_METRICS_PORT", default_value_t = 8081)]
    pub metrics_port: u16,
}

/// `httpsd serve DIR`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The target directory.
    pub dir: PathBuf,
    /// Listening, freshness, auth and TLS flags.
    #[command(flatten)]
    pub http: HttpArgs,
    /// The in-process worker pool and its sandbox.
    #[command(flatten)]
    pub pool: PoolArgs,
    /// How often the target directory is re-read.
    #[command(flatten)]
    pub tree: TreeArgs,
    /// The bounds of the in-memory store that stands in for Redis.
    #[command(flatten)]
    pub memory_store: MemoryStoreArgs,
}

/// The bounds of `httpsd serve`'s in-memory store.
#[derive(Debug, Clone, Args)]
pub struct MemoryStoreArgs {
    /// Most paths (each query string is a path of its own) whose answer, error, run
    /// report and history the in-memory store keeps; past it the least recently used
    /// are evicted (never one with a job queued or running).
    #[arg(long, env = "HTTPSD_MEMORY_STORE_MAX_PATHS", default_value_t = 10_000)]
    pub memory_store_max_paths: usize,

    /// Most bytes of answers, errors, run reports and histories the in-memory store
    /// keeps; past it the least recently used paths are evicted. A result that would not
    /// fit even alone fails its job (StoreRefusedError).
    #[arg(long, env = "HTTPSD_MEMORY_STORE_MAX_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub memory_store_max_bytes: u64,
}

impl MemoryStoreArgs {
    /// The store's bounds, with `max_value_bytes` taken from the pool's
    /// `--max-value-bytes`; a 0 flag is raised to 1.
    pub fn bounds(&self, max_value_bytes: u64) -> crate::store::MemoryBounds {
        crate::store::MemoryBounds {
            max_paths: self.memory_store_max_paths.max(1),
            max_bytes: self.memory_store_max_bytes.max(1),
            max_value_bytes,
        }
    }
}

/// The HTTP side: the seed's server flags plus the freshness extras.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address to listen on.
    #[arg(long, env = "HTTPSD_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "HTTPSD_PORT", default_value_t = 8080)]
    pub port: u16,

    /// An entry older than this many seconds answers "cache expired" and is refreshed.
    #[arg(long, env = "HTTPSD_CACHE_SECONDS", default_value_t = 300.0)]
    pub cache_seconds: f64,

    /// Open client connections allowed at once; more wait to be accepted.
    #[arg(long, env = "HTTPSD_CONNECTION_LIMIT", default_value_t = 1000)]
    pub connection_limit: usize,

    /// A client must send a request's line and headers within this long, and a
    /// keep-alive connection idle this long is closed: slow or silent clients cannot
    /// keep --connection-limit slots.
    #[arg(long, env = "HTTPSD_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// A connection whose client reads none of an answer for this long is closed.
    #[arg(long, env = "HTTPSD_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// Most worker threads of the server's async runtime (the seed's request threads).
    /// It never uses more than one per core; 0 means one per core.
    #[arg(long, env = "HTTPSD_THREADS", default_value_t = 64)]
    pub threads: usize,

    /// A prefix for every route, e.g. /sd (then /sd/targets/...).
    #[arg(
        long = "url_prefix",
        alias = "url-prefix",
        env = "HTTPSD_URL_PREFIX",
        default_value = ""
    )]
    pub url_prefix: String,

    /// Refresh a cached answer as soon as one of its generators (or manifests) changes,
    /// instead of at expiry. The changed answer is served until the refresh lands.
    #[arg(long, env = "HTTPSD_GENERATOR_FRESHNESS", default_value_t = true, action = clap::ArgAction::Set)]
    pub generator_freshness: bool,

    /// Refresh a polled answer once it is older than this fraction of --cache-seconds,
    /// so a steadily scraped path never expires. 0 turns it off.
    #[arg(long, env = "HTTPSD_REFRESH_AHEAD", default_value_t = 0.75)]
    pub refresh_ahead: f64,

    /// On a miss, wait up to this long (e.g. 2s) for the worker and answer 200 if it
    /// finishes in time. 0 answers the 503 at once, as the seed does.
    #[arg(long, env = "HTTPSD_WAIT_ON_MISS", default_value = "0ms", value_parser = parse_duration)]
    pub wait_on_miss: Duration,

    /// After a `?reload=true` of a path, further reloads of it are refused (429) for
    /// this long, so reload cannot be used to flood the workers. 0 turns it off.
    #[arg(long, env = "HTTPSD_RELOAD_COOLDOWN", default_value = "10s", value_parser = parse_duration)]
    pub reload_cooldown: Duration,

    /// `httpsd server`: keep answers polled more than once a second in the process for
    /// this long, so a hot path costs one Redis round trip per this instead of one per
    /// request. Writes and reloads reach every server's copy at once through Redis
    /// pub/sub; nothing is served past --cache-seconds. 0 turns it off.
    #[arg(long, env = "HTTPSD_LOCAL_CACHE", default_value = "1s", value_parser = parse_duration)]
    pub local_cache: Duration,

    /// A TOML file of credentials (basic users, bearer tokens) for /targets, the admin
    /// page with debug, reload and /metrics, each separately (see docs/SECURITY.md).
    /// Without it, everything is open.
    #[arg(long, env = "HTTPSD_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "HTTPSD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "HTTPSD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl HttpArgs {
    /// Per-connection time limits.
    pub fn timeouts(&self) -> crate::server::connection::Timeouts {
        crate::server::connection::Timeouts {
            header: self.header_timeout.max(Duration::from_millis(1)),
            write: self.write_timeout.max(Duration::from_millis(1)),
        }
    }

    /// The TLS acceptor when --tls-cert and --tls-key are given.
    pub fn tls(&self) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => crate::server::tls::acceptor(cert, key).map(Some),
            _ => Ok(None),
        }
    }
}

impl HttpArgs {
    /// The server's settings from these flags, loading `--auth-file` if given (an
    /// unreadable or invalid file is the error). Out-of-range numbers are clamped: a
    /// negative `--cache-seconds` is 0, `--refresh-ahead` is kept within 0..=1.
    pub fn config(&self) -> Result<crate::server::ServerConfig, String> {
        let auth = match &self.auth_file {
            Some(path) => crate::server::auth::Auth::load(path)?,
            None => crate::server::auth::Auth::default(),
        };
        Ok(crate::server::ServerConfig {
            auth: std::sync::Arc::new(auth),
            url_prefix: crate::server::normalize_prefix(&self.url_prefix),
            cache_seconds: self.cache_seconds.max(0.0),
            generator_freshness: self.generator_freshness,
            refresh_ahead: self.refresh_ahead.clamp(0.0, 1.0),
            wait_on_miss: self.wait_on_miss,
            reload_cooldown: self.reload_cooldown,
            local_cache: self.local_cache,
        })
    }
}

/// How to reach Redis.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL: redis://[user:password@]host:port/db, or rediss:// for TLS. A user
    /// and password log in as that ACL user; a password alone is Redis AUTH.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://localhost:6379/0",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// For rediss://: PEM file of the CA certificates to trust instead of the system's
    /// roots (a private CA).
    #[arg(long, env = "HTTPSD_REDIS_CA")]
    pub redis_ca: Option<PathBuf>,

    /// For rediss:// to a Redis that checks clients (tls-auth-clients): our PEM
    /// certificate (with --redis-client-key).
    #[arg(long, env = "HTTPSD_REDIS_CLIENT_CERT", requires = "redis_client_key")]
    pub redis_client_cert: Option<PathBuf>,

    /// The PEM private key of --redis-client-cert.
    #[arg(long, env = "HTTPSD_REDIS_CLIENT_KEY", requires = "redis_client_cert")]
    pub redis_client_key: Option<PathBuf>,

    /// Connect and command timeout for Redis; a slower Redis counts as unavailable.
    #[arg(long, env = "HTTPSD_REDIS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Redis connections shared by all commands (each multiplexes many concurrent
    /// commands; fewer connections pipeline more).
    #[arg(long, env = "HTTPSD_REDIS_POOL_SIZE", default_value_t = 1)]
    pub redis_pool_size: u32,
}

impl RedisArgs {
    /// The store's connection settings. `max_value_bytes` is the store's default; a
    /// worker overrides it with its `--max-value-bytes`.
    pub fn settings(&self) -> crate::store::RedisSettings {
        crate::store::RedisSettings {
            url: self.redis_url.clone(),
            timeout: self.redis_timeout,
            pool_size: self.redis_pool_size,
            tls: crate::store::RedisTls {
                ca: self.redis_ca.clone(),
                client_cert: self.redis_client_cert.clone(),
                client_key: self.redis_client_key.clone(),
            },
            // The worker sets its --max-value-bytes; a server writes no values.
            max_value_bytes: crate::store::DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// How the target tree is watched.
#[derive(Debug, Clone, Args)]
pub struct TreeArgs {
    /// How long the list of generators under a path is trusted before the directory is
    /// read again: a new, changed or removed generator is seen within this time.
    #[arg(long, env = "HTTPSD_TREE_REFRESH", default_value = "1s", value_parser = parse_duration)]
    pub tree_refresh: Duration,
}

/// The worker pool.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Run one worker with this id (then --num-workers is ignored, as in the seed).
    #[arg(long, env = "HTTPSD_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Workers in the pool (ids <hostname>-<pid>-<n>).
    #[arg(long, env = "HTTPSD_NUM_WORKERS", default_value_t = 4)]
    pub num_workers: usize,

    /// Jobs one worker takes and runs at once when the queue is busy.
    #[arg(long, env = "HTTPSD_BATCH", default_value_t = 8)]
    pub batch: usize,

    /// A running job's lease: renewed every third of it; a job whose worker stops
    /// renewing it is run again by another worker after about two of these.
    #[arg(long, env = "HTTPSD_JOB_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub job_lease: Duration,

    /// A job taken this many times without finishing (its workers kept dying) is given
    /// up on and cached as a WorkerLostError.
    #[arg(long, env = "HTTPSD_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,

    /// On SIGTERM, how long running jobs may finish before they are handed back to the
    /// queue.
    #[arg(long, env = "HTTPSD_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// How long a generated answer stays in the store (it outlives --cache-seconds so an
    /// expired answer can still be shown by debug).
    #[arg(long, env = "HTTPSD_CACHE_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub cache_retention: Duration,

    /// The largest value (an answer, an error, a run report) written to the store; a
    /// job whose result is larger fails with a StoreRefusedError instead, and nothing
    /// that size is sent to Redis.
    #[arg(long, env = "HTTPSD_MAX_VALUE_BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub max_value_bytes: u64,

    /// The sandbox the workers run generators in.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl PoolArgs {
    /// The pool's settings: one worker named `--worker-id`, or `--num-workers` of them
    /// named `<hostname>-<pid>-<n>`. `--batch` is at least 1 and the lease at least
    /// 300 ms.
    pub fn worker_config(&self) -> crate::worker::WorkerConfig {
        let worker_ids = match &self.worker_id {
            Some(id) => vec![id.clone()],
            None => {
                let base = crate::worker::default_worker_id();
                (0..self.num_workers.max(1))
                    .map(|i| format!("{base}-{i}"))
                    .collect()
            }
        };
        crate::worker::WorkerConfig {
            worker_ids,
            batch: self.batch.max(1),
            lease: self.job_lease.max(Duration::from_millis(300)),
            drain_timeout: self.drain_timeout,
            ..crate::worker::WorkerConfig::default()
        }
    }

    /// How long the store keeps answers and leases, from `--cache-retention` (at least
    /// 1 s) and `--job-lease` (at least 300 ms); the other lifetimes are the defaults.
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            cache: self.cache_retention.max(Duration::from_secs(1)),
            lease: self.job_lease.max(Duration::from_millis(300)),
            ..crate::store::Retention::default()
        }
    }
}

/// `httpsd check DIR`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The target directory.
    pub dir: PathBuf,

    /// Check only the generators under this request path (as in /targets/<path>).
    #[arg(long, default_value = "")]
    pub path: String,

    /// A query parameter for every `.wasm` and `.py` generator, as key=value; repeatable. Without
    /// any, each generator runs with its own check parameters (manifest `[check]
    /// params`, or its `check-params` export), or once with none.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,

    /// Output format: one line per run, or one JSON document for CI.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,

    /// Also print the guest's log lines of successful runs (failed runs always show them).
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// The sandbox and default limits the generators are checked under.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `httpsd check --format`; mirrors [`crate::check::OutputFormat`], which knows
/// nothing of clap.
// No `///` on the variants: clap would make them possible-value help, which switches
// `httpsd check --help` to the long layout.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Sandbox settings shared by every command that runs generators. A generator's
/// manifest overrides the limits for that generator.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Default CPU budget per run, in fuel units (about one per wasm instruction).
    #[arg(long, env = "HTTPSD_FUEL", default_value_t = Limits::default().fuel)]
    pub fuel: u64,

    /// Default wall-clock limit per run (e.g. 500ms, 10s).
    #[arg(long, env = "HTTPSD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Default memory limit per run (e.g. 64MiB).
    #[arg(long, env = "HTTPSD_MEMORY_LIMIT", default_value = "256MiB", value_parser = parse_size)]
    pub memory_limit: u64,

    /// Default limit on one generator's answer size.
    #[arg(long, env = "HTTPSD_MAX_OUTPUT_BYTES", default_value = "16MiB", value_parser = parse_size)]
    pub max_output_bytes: u64,

    /// Default limit on one generator's number of targets.
    #[arg(long, env = "HTTPSD_MAX_TARGETS", default_value_t = Limits::default().max_targets)]
    pub max_targets: u64,

    /// Where precompiled generators are kept, so a restart does not recompile.
    /// Default: $XDG_CACHE_HOME/httpsd or ~/.cache/httpsd.
    #[arg(long, env = "HTTPSD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Keep compiled generators in memory only.
    #[arg(long, env = "HTTPSD_NO_ARTIFACT_CACHE")]
    pub no_artifact_cache: bool,

    /// Generator runs allowed at once in this process; more wait their turn.
    #[arg(long, env = "HTTPSD_MAX_CONCURRENT_RUNS", default_value_t = 64)]
    pub max_concurrent_runs: u32,

    /// Largest component file compiled.
    #[arg(long, env = "HTTPSD_MAX_COMPONENT_BYTES", default_value = "128MiB", value_parser = parse_size)]
    pub max_component_bytes: u64,

    /// Wall-clock budget for compiling one component (in a process of its own).
    #[arg(long, env = "HTTPSD_COMPILE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub compile_timeout: Duration,

    /// Memory the process compiling one component may use.
    #[arg(long, env = "HTTPSD_COMPILE_MEMORY", default_value = "2GiB", value_parser = parse_size)]
    pub compile_memory: u64,

    /// Outbound HTTP connections generators may have open at once in this process
    /// (each run also has its own cap, the manifest's `[http] max_connections`).
    #[arg(long, env = "HTTPSD_MAX_OUTBOUND_CONNECTIONS", default_value_t = 256)]
    pub max_outbound_connections: u32,

    /// Linear memory all generator runs in this process may hold together; a run whose
    /// growth would pass it ends as a MemoryError. Default: half the machine's memory.
    #[arg(long, env = "HTTPSD_GUEST_MEMORY_BUDGET", value_parser = parse_size)]
    pub guest_memory_budget: Option<u64>,

    /// The Python runner component that runs `.py` generators (scripts/python-runner
    /// builds it). Default: httpsd-python-runner.wasm next to this binary, or in
    /// ../share/httpsd/ from it.
    #[arg(long, env = "HTTPSD_PYTHON_RUNNER")]
    pub python_runner: Option<PathBuf>,
}

impl RuntimeArgs {
    /// The runtime's settings. Fuel metering is always on; compiles run in a child
    /// process of this binary (in-process only if its path cannot be found); no
    /// artifact cache directory when `--no-artifact-cache` is set or none can be found.
    pub fn config(&self) -> RuntimeConfig {
        let cache_dir = if self.no_artifact_cache {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache_dir)
        };
        RuntimeConfig {
            defaults: Limits {
                fuel: self.fuel,
                timeout: self.timeout,
                memory_bytes: self.memory_limit,
                max_output_bytes: self.max_output_bytes,
                max_targets: self.max_targets,
                ..Limits::default()
            },
            cache_dir,
            max_concurrent_runs: self.max_concurrent_runs,
            consume_fuel: true,
            compile: CompileLimits {
                max_component_bytes: self.max_component_bytes,
                timeout: self.compile_timeout,
                memory_bytes: self.compile_memory,
            },
            // These flags belong to the httpsd binary, which compiles in a child
            // process of itself (`compile-component`).
            compiler: std::env::current_exe()
                .map(Compiler::Subprocess)
                .unwrap_or(Compiler::InProcess),
            max_outbound_connections: self.max_outbound_connections,
            guest_memory_budget: self
                .guest_memory_budget
                .unwrap_or_else(crate::runtime::limits::MemoryBudget::default_limit),
            python_runner: self.python_runner.clone().or_else(installed_python_runner),
        }
    }
}

/// The file name of the Python runner component, as scripts/python-runner writes it.
pub const PYTHON_RUNNER_FILE: &str = "httpsd-python-runner.wasm";

/// The Python runner installed with this binary: next to it (a build directory, a
/// release archive) or in `../share/httpsd/` from it (a packaged install). It is a
/// file of its own rather than embedded, so building httpsd needs no Python tooling
/// and the binary stays small; a missing runner is a load error of each `.py`
/// generator that says how to get it, never a silent empty answer.
fn installed_python_runner() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join(PYTHON_RUNNER_FILE),
        dir.join("../share/httpsd").join(PYTHON_RUNNER_FILE),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("httpsd"))
}

fn parse_param(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

fn parse_log_level(raw: &str) -> Result<tracing::Level, String> {
    use tracing::Level;
    Ok(match raw.trim().to_ascii_lowercase().as_str() {
        "trace" | "5" => Level::TRACE,
        "debug" | "10" => Level::DEBUG,
        "info" | "20" => Level::INFO,
        "warn" | "warning" | "30" => Level::WARN,
        "error" | "critical" | "40" | "50" => Level::ERROR,
        other => return Err(format!("unknown log level {other:?}")),
    })
}

/// Sets up `tracing` on stderr.
pub fn init_logging(level: tracing::Level, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy()
        // Cranelift and wasmtime are chatty at debug level; keep them out unless asked.
        .add_directive("cranelift_codegen=warn".parse().expect("static directive"))
        .add_directive("wasmtime=warn".parse().expect("static directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_levels() {
        assert_eq!(parse_param("env=prod"), Ok(("env".into(), "prod".into())));
        assert_eq!(parse_param("q=a=b"), Ok(("q".into(), "a=b".into())));
        assert!(parse_param("=x").is_err());
        assert!(parse_param("novalue").is_err());
        assert_eq!(parse_log_level("20"), Ok(tracing::Level::INFO));
        assert_eq!(parse_log_level("WARNING"), Ok(tracing::Level::WARN));
        assert!(parse_log_level("loud").is_err());
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "httpsd",
            "check",
            "/t",
            "--param",
            "env=prod",
            "--timeout",
            "2s",
            "--format",
            "json",
        ])
        .unwrap();
        let Command::Check(c) = cli.command else {
            panic!("expected check");
        };
        assert_eq!(c.params, vec![("env".to_string(), "prod".to_string())]);
        assert_eq!(c.runtime.config().defaults.timeout, Duration::from_secs(2));
        assert_eq!(c.format, OutputFormat::Json);
    }

    #[test]
    fn seed_flags_and_defaults() {
        let cli =
            Cli::try_parse_from(["httpsd", "server-only", "/t", "--url_prefix", "/sd/"]).unwrap();
        let Command::Server(s) = cli.command else {
            panic!("expected server");
        };
        assert_eq!(s.http.host, "127.0.0.1");
        assert_eq!(s.http.port, 8080);
        assert_eq!(s.http.cache_seconds, 300.0);
        assert_eq!(s.http.connection_limit, 1000);
        assert_eq!(s.http.threads, 64);
        assert_eq!(s.http.config().unwrap().url_prefix, "/sd");
        assert_eq!(s.redis.redis_url, "redis://localhost:6379/0");
        assert!(s.http.generator_freshness);

        let cli = Cli::try_parse_from([
            "httpsd",
            "worker",
            "/t",
            "--worker-id",
            "w1",
            "--num-workers",
            "9",
            "--log-level",
            "20",
        ])
        .unwrap();
        assert_eq!(cli.log_level, tracing::Level::INFO);
        let Command::Worker(w) = cli.command else {
            panic!("expected worker");
        };
        assert_eq!(w.pool.worker_config().worker_ids, vec!["w1".to_string()]);
        assert_eq!(w.metrics_port, 8081);

        let cli = Cli::try_parse_from(["httpsd", "worker-only", "/t"]).unwrap();
        let Command::Worker(w) = cli.command else {
            panic!("expected worker");
        };
        assert_eq!(w.pool.worker_config().worker_ids.len(), 4);

        let cli = Cli::try_parse_from([
            "httpsd",
            "serve",
            "/t",
            "--url-prefix",
            "x",
            "--generator-freshness",
            "false",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(s.http.config().unwrap().url_prefix, "/x");
        assert!(!s.http.generator_freshness);
        assert_eq!(
            s.memory_store.bounds(s.pool.max_value_bytes),
            crate::store::MemoryBounds::default(),
            "the flags' defaults are the store's"
        );

        let cli = Cli::try_parse_from([
            "httpsd",
            "serve",
            "/t",
            "--memory-store-max-paths",
            "50",
            "--memory-store-max-bytes",
            "1MiB",
            "--max-value-bytes",
            "64KiB",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("expected serve");
        };
        let bounds = s.memory_store.bounds(s.pool.max_value_bytes);
        assert_eq!(
            (bounds.max_paths, bounds.max_bytes, bounds.max_value_bytes),
            (50, 1 << 20, 64 << 10)
        );
    }
}

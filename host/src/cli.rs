//! The command line: `httpsd <command>`. Flags follow the seeds (DESIGN §10); every
//! flag has an environment fallback so a systemd unit or a container can set it.

use crate::runtime::{Limits, RuntimeConfig};
use crate::units::{parse_duration, parse_size};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

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

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every generator once in the sandbox, validate, and print what each returned.
    /// Exits non-zero if any generator fails.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The target directory.
    pub dir: PathBuf,

    /// Check only the generators under this request path (as in /targets/<path>).
    #[arg(long, default_value = "")]
    pub path: String,

    /// A query parameter for every `.wasm` generator, as key=value; repeatable. Without
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

    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

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
}

impl RuntimeArgs {
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
        }
    }
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
        let Command::Check(c) = cli.command;
        assert_eq!(c.params, vec![("env".to_string(), "prod".to_string())]);
        assert_eq!(c.runtime.config().defaults.timeout, Duration::from_secs(2));
        assert_eq!(c.format, OutputFormat::Json);
    }
}

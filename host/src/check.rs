//! `httpsd check DIR`: every generator under a path, run once (or once per check
//! parameter set) in the same sandbox and limits the workers use.
//!
//! One line per run with targets, groups, time and fuel; failures print their error
//! type, message, traceback and the guest's log. Exit status 0 only when every run
//! succeeded, so CI can gate a deploy of the targets directory on it.
//!
//! The command line sits above this module: `cli::commands::check` turns the flags
//! into [`CheckOptions`] and runs [`run`] on the process's one runtime helper. This
//! module knows nothing of clap or of runtimes.

use crate::runtime::{Runtime, RuntimeConfig};
use crate::targets::run::{failed_report, run_one};
use crate::targets::{GeneratorFile, GeneratorReport, TargetPath, TargetTree};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// What to check and how to report it.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The target directory.
    pub dir: PathBuf,
    /// Only the generators under this request path ("" for all).
    pub path: String,
    /// Query parameters for every `.wasm` and `.py` generator; empty: each generator's own check
    /// parameters.
    pub params: Vec<(String, String)>,
    /// Text for people, JSON for CI; also how a setup error before any run is printed.
    pub format: OutputFormat,
    /// Also print the guest's log lines of successful runs.
    pub verbose: bool,
    /// The sandbox and its default limits.
    pub runtime: RuntimeConfig,
}

/// How the reports are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One line per run, then a summary line.
    Text,
    /// One JSON document, for CI.
    Json,
}

/// The whole `check` command; returns the process exit code.
pub async fn run(args: CheckOptions) -> ExitCode {
    match check(&args).await {
        Ok(reports) => {
            let failed = reports.iter().filter(|r| r.error.is_some()).count();
            let printed = match args.format {
                OutputFormat::Text => print_text(&reports, args.verbose),
                OutputFormat::Json => print_json(&reports),
            };
            if let Err(e) = printed {
                eprintln!("httpsd check: cannot write output: {e}");
                return ExitCode::FAILURE;
            }
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            match args.format {
                OutputFormat::Text => eprintln!("httpsd check: {message}"),
                OutputFormat::Json => {
                    println!("{}", serde_json::json!({"ok": false, "error": message}))
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs the checks and returns one report per run, in generator order.
pub async fn check(args: &CheckOptions) -> Result<Vec<GeneratorReport>, String> {
    let tree = TargetTree::open(&args.dir)
        .map_err(|e| format!("cannot open target directory {}: {e}", args.dir.display()))?;
    let path = TargetPath::parse(&args.path).map_err(|e| format!("--path {:?}: {e}", args.path))?;
    let generators = tree
        .generators(&path)
        .map_err(|e| format!("--path {:?}: {e}", args.path))?;
    if generators.is_empty() {
        return Err(format!(
            "no generators under {}",
            tree.root().join(path.as_slash_path()).display()
        ));
    }
    let runtime = Arc::new(
        Runtime::new(args.runtime.clone())
            .map_err(|e| format!("cannot start the sandbox: {e:#}"))?,
    );

    let runs = generators.into_iter().map(|generator| {
        let runtime = runtime.clone();
        let explicit = args.params.clone();
        tokio::spawn(async move { check_one(&runtime, generator, explicit).await })
    });
    let mut reports = Vec::new();
    for joined in futures::future::join_all(runs).await {
        reports.extend(joined.map_err(|e| format!("check task failed: {e}"))?);
    }
    Ok(reports)
}

/// The runs of one generator: with `--param`s if given, else its own check params.
async fn check_one(
    runtime: &Arc<Runtime>,
    generator: GeneratorFile,
    explicit: Vec<(String, String)>,
) -> Vec<GeneratorReport> {
    let param_sets = if !generator.kind.runs_in_sandbox() || !explicit.is_empty() {
        vec![explicit]
    } else {
        match runtime.check_params(&generator.abs).await {
            Ok(Some(sets)) => sets,
            Ok(None) => vec![Vec::new()],
            // A generator that cannot even say its check params fails the check
            // with that error.
            Err(error) => {
                return vec![failed_report(
                    &generator,
                    Vec::new(),
                    Default::default(),
                    error,
                )];
            }
        }
    };
    let mut reports = Vec::with_capacity(param_sets.len());
    for params in param_sets {
        let (report, _) = run_one(runtime, generator.clone(), params, true).await;
        reports.push(report);
    }
    reports
}

fn print_text(reports: &[GeneratorReport], verbose: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let width = reports.iter().map(|r| label(r).len()).max().unwrap_or(0);
    for r in reports {
        let name = label(r);
        match &r.error {
            None => {
                let fuel = if r.kind.runs_in_sandbox() {
                    format!("  fuel {}", r.stats.fuel_used)
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "ok    {name:<width$}  {:>7} targets  {:>5} groups  {:>9.2} ms{fuel}",
                    r.targets,
                    r.groups,
                    r.stats.duration.as_secs_f64() * 1e3,
                )?;
                if verbose {
                    print_logs(&mut out, r)?;
                }
            }
            Some(e) => {
                writeln!(
                    out,
                    "FAIL  {name:<width$}  {}: {}",
                    e.error_type(),
                    e.message
                )?;
                for line in e.traceback.lines() {
                    writeln!(out, "      {line}")?;
                }
                print_logs(&mut out, r)?;
            }
        }
    }
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    let generators = {
        let mut names: Vec<&str> = reports.iter().map(|r| r.generator.as_str()).collect();
        names.dedup();
        names.len()
    };
    writeln!(
        out,
        "{} runs of {generators} generators: {} ok, {failed} failed",
        reports.len(),
        reports.len() - failed
    )
}

fn print_logs(out: &mut impl Write, r: &GeneratorReport) -> std::io::Result<()> {
    for line in &r.stats.logs {
        let level = serde_json::to_value(line.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        writeln!(out, "      | {level}: {}", line.message)?;
    }
    if r.stats.logs_dropped > 0 {
        writeln!(out, "      | ({} more lines dropped)", r.stats.logs_dropped)?;
    }
    Ok(())
}

/// `dir/gen.wasm?env=prod`: the generator and the params it ran with.
fn label(r: &GeneratorReport) -> String {
    if r.params.is_empty() {
        r.generator.clone()
    } else {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(r.params.iter())
            .finish();
        format!("{}?{query}", r.generator)
    }
}

fn print_json(reports: &[GeneratorReport]) -> std::io::Result<()> {
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    let doc = serde_json::json!({
        "ok": failed == 0,
        "runs": reports,
        "summary": {"runs": reports.len(), "failed": failed},
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)
}

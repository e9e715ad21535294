//! Running every generator under a path: concurrently, merged in a fixed order, all or
//! nothing.

use super::static_file::{self, Format};
use super::tree::{GeneratorFile, GeneratorKind};
use crate::model::TargetGroup;
use crate::runtime::{GenError, Invocation, RunStats, Runtime};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// What one generator did during a path's run: the per-generator detail of
/// `?debug=true` and of `httpsd check`.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorReport {
    /// The generator's path relative to the target root.
    pub generator: String,
    /// Component or static file.
    pub kind: GeneratorKind,
    /// The query parameters it ran with; always empty for a static file.
    pub params: Vec<(String, String)>,
    /// Target groups it returned; 0 when it failed.
    pub groups: usize,
    /// Targets over all those groups; 0 when it failed.
    pub targets: usize,
    /// Time, fuel, memory and log of the run (a static file has only time and limits);
    /// serialised inline.
    #[serde(flatten)]
    pub stats: RunStats,
    /// Why it failed; `None` when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<GenError>,
}

/// The first failing generator of a path, by generator order.
#[derive(Debug, Clone, Serialize)]
pub struct PathFailure {
    /// The failing generator's path relative to the target root.
    pub generator: String,
    /// Its error; serialised inline (`error_type`, `error_message`, `traceback`).
    #[serde(flatten)]
    pub error: GenError,
}

/// A path's answer (or its failure) and what each generator did.
#[derive(Debug, Clone)]
pub struct PathOutcome {
    /// Every generator's groups merged in generator order, or the first failure.
    pub result: Result<Vec<TargetGroup>, PathFailure>,
    /// One report per generator, in generator order, whether it succeeded or not.
    pub reports: Vec<GeneratorReport>,
}

/// Runs `generators` concurrently and merges their groups in the given order (sorted by
/// relative path by [`super::TargetTree::generators`]). Params reach `.wasm` and `.py`
/// generators only; static files have no use for them. If any generator fails, the path fails: a
/// partial answer would make Prometheus drop the missing targets.
pub async fn run_path(
    runtime: &Arc<Runtime>,
    generators: &[GeneratorFile],
    params: &[(String, String)],
) -> PathOutcome {
    if let [only] = generators {
        // One generator (the common case): no task to spawn, nothing to merge.
        let (report, groups) = run_one(runtime, only.clone(), params.to_vec(), false).await;
        let result = match (&report.error, groups) {
            (Some(error), _) => Err(PathFailure {
                generator: report.generator.clone(),
                error: error.clone(),
            }),
            (None, groups) => Ok(groups.unwrap_or_default()),
        };
        return PathOutcome {
            result,
            reports: vec![report],
        };
    }
    let runs = generators.iter().cloned().map(|g| {
        let runtime = runtime.clone();
        let params = params.to_vec();
        // Spawned so CPU-bound guests of one path use every core.
        tokio::spawn(async move { run_one(&runtime, g, params, false).await })
    });
    let mut reports = Vec::with_capacity(generators.len());
    let mut groups_by_generator = Vec::with_capacity(generators.len());
    for (handle, generator) in futures::future::join_all(runs)
        .await
        .into_iter()
        .zip(generators)
    {
        let (report, groups) = match handle {
            Ok(done) => done,
            Err(join_error) => {
                // A panic in the host while running a generator: report, do not crash.
                let error = GenError::host(
                    crate::runtime::ErrorKind::Trap,
                    &generator.abs,
                    format!("host task failed: {join_error}"),
                );
                (
                    failed_report(generator, Vec::new(), RunStats::default(), error),
                    None,
                )
            }
        };
        reports.push(report);
        groups_by_generator.push(groups);
    }

    let failure = reports.iter().find_map(|r| {
        r.error.clone().map(|error| PathFailure {
            generator: r.generator.clone(),
            error,
        })
    });
    let result = match failure {
        Some(f) => Err(f),
        None => Ok(groups_by_generator
            .into_iter()
            .flatten()
            .flatten()
            .collect()),
    };
    PathOutcome { result, reports }
}

/// Runs one generator (or parses one static file) and reports; `check`: for `httpsd
/// check` (a `.py` generator then runs its `test_generate_targets`).
pub async fn run_one(
    runtime: &Arc<Runtime>,
    generator: GeneratorFile,
    params: Vec<(String, String)>,
    check: bool,
) -> (GeneratorReport, Option<Vec<TargetGroup>>) {
    let (result, stats) = match generator.kind {
        GeneratorKind::Wasm | GeneratorKind::Python => {
            let invocation = Invocation {
                name: Some(generator.rel.clone()),
                check,
            };
            let report = runtime
                .run_fairly(&generator.abs, &params, &invocation)
                .await;
            (report.result, report.stats)
        }
        GeneratorKind::Json | GeneratorKind::Yaml => {
            let started = Instant::now();
            let format = if generator.kind == GeneratorKind::Json {
                Format::Json
            } else {
                Format::Yaml
            };
            let path = generator.abs.clone();
            let limits = runtime.defaults();
            let result =
                tokio::task::spawn_blocking(move || static_file::load(&path, format, &limits))
                    .await
                    .unwrap_or_else(|e| {
                        Err(GenError::host(
                            crate::runtime::ErrorKind::LoadError,
                            &generator.abs,
                            format!("reader task failed: {e}"),
                        ))
                    });
            let stats = RunStats {
                duration: started.elapsed(),
                limits: Some(limits),
                ..RunStats::default()
            };
            (result, stats)
        }
    };
    let params = if generator.kind.runs_in_sandbox() {
        params
    } else {
        Vec::new()
    };
    match result {
        Ok(groups) => {
            let report = GeneratorReport {
                generator: generator.rel.clone(),
                kind: generator.kind,
                params,
                groups: groups.len(),
                targets: groups.iter().map(|g| g.targets.len()).sum(),
                stats,
                error: None,
            };
            (report, Some(groups))
        }
        Err(error) => (failed_report(&generator, params, stats, error), None),
    }
}

/// A report for a generator that failed before or during its run.
pub fn failed_report(
    generator: &GeneratorFile,
    params: Vec<(String, String)>,
    stats: RunStats,
    error: GenError,
) -> GeneratorReport {
    GeneratorReport {
        generator: generator.rel.clone(),
        kind: generator.kind,
        params,
        groups: 0,
        targets: 0,
        stats,
        error: Some(error),
    }
}

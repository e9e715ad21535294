//! One job, from the raw queue entry to what is written back: parse it, find the
//! generators under its path, run them, and encode the cache entry or the error entry
//! (DESIGN §8) and the per-generator run report that `?debug=true` shows.

use crate::clock::{iso8601, now_unix};
use crate::metrics::Metrics;
use crate::runtime::{ErrorKind, Runtime};
use crate::store::{Finished, Outcome, Taken};
use crate::targets::{GeneratorReport, PathIndex, TreeError, run_path};
use crate::wire::{self, EntryMeta, ErrorDetails, ErrorEntry, Job};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// What every job needs, shared by a process's workers.
pub struct JobContext {
    pub runtime: Arc<Runtime>,
    pub index: Arc<PathIndex>,
    pub metrics: Arc<Metrics>,
    /// A job taken more often than this (its workers kept dying) is given up on.
    pub max_attempts: u32,
}

/// The `error_type` of a job given up on after too many attempts.
pub const WORKER_LOST: &str = "WorkerLostError";

/// The `error_type` of a job whose result the store refused (too large, or Redis out
/// of memory): see [`store_refused`].
pub const STORE_REFUSED: &str = "StoreRefusedError";

/// Most bytes of the store's reason quoted in a [`STORE_REFUSED`] message.
const MAX_REFUSAL_REASON: usize = 512;

/// A run report larger than this is not kept with a [`STORE_REFUSED`] error (it may be
/// what was refused).
const MAX_REFUSED_RUN_REPORT: usize = 16 << 10;

/// What to write instead of `refused`, whose result the store refused for `reason`: a
/// small error entry in the wire format (the path's last good entry stays, as after
/// any failure), the run report only if small, and a history line. Its size is bounded
/// whatever was refused.
pub fn store_refused(refused: &Finished, worker_id: &str, reason: &str) -> Finished {
    let job: Option<Job> = serde_json::from_str(&refused.taken.raw).ok();
    let what = match &refused.outcome {
        Outcome::Entry(v) => format!("a cache entry of {} bytes", v.len()),
        Outcome::Error(v) => format!("an error entry of {} bytes", v.len()),
        Outcome::Discard => "nothing".to_string(),
    };
    let mut reason = reason.to_string();
    if reason.len() > MAX_REFUSAL_REASON {
        let mut end = MAX_REFUSAL_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    let message = format!(
        "the store refused this job's result ({what}, with a run report of {} bytes): {reason}",
        refused.run.len()
    );
    // The original run's time, from its history line.
    let processing_time = serde_json::from_slice::<serde_json::Value>(&refused.summary)
        .ok()
        .and_then(|v| v["processing_time"].as_f64())
        .unwrap_or(0.0);
    let now = now_unix();
    let job_id = job.as_ref().map(|j| j.job_id.clone()).unwrap_or_default();
    let details = ErrorDetails {
        error_type: STORE_REFUSED.to_string(),
        traceback: format!(
            "Traceback (most recent call last):\n  File \"{}\", in <worker>\n{STORE_REFUSED}: {message}",
            refused.full_path
        ),
        error_message: message,
        worker_id: worker_id.to_string(),
        job_id: job_id.clone(),
        path: job.as_ref().map(|j| j.path.clone()).unwrap_or_default(),
        extra_args: job.map(|j| j.extra_args).unwrap_or_default(),
        timestamp: iso8601(now),
        processing_time,
        generator: None,
        full_path: Some(refused.full_path.clone()),
    };
    let summary = serde_json::to_vec(&RunSummary {
        finished: now,
        job_id: &job_id,
        worker_id,
        attempts: refused.taken.attempts,
        processing_time,
        targets: None,
        error_type: Some(STORE_REFUSED),
    })
    .unwrap_or_default();
    Finished {
        taken: refused.taken.clone(),
        full_path: refused.full_path.clone(),
        outcome: Outcome::Error(ErrorEntry::new(now, details).to_vec()),
        run: if refused.run.len() <= MAX_REFUSED_RUN_REPORT {
            refused.run.clone()
        } else {
            Vec::new()
        },
        summary,
    }
}

/// `httpsd:run:<full_path>`: what the last run of a path did.
#[derive(Debug, Serialize)]
pub struct RunRecord<'a> {
    pub job_id: &'a str,
    pub worker_id: &'a str,
    pub attempts: u32,
    pub finished: f64,
    pub processing_time: f64,
    pub ok: bool,
    pub fingerprint: &'a str,
    pub generators: &'a [GeneratorReport],
}

/// `httpsd:history:<full_path>`: one line per run, for the admin page's history.
#[derive(Debug, Serialize)]
pub struct RunSummary<'a> {
    pub finished: f64,
    pub job_id: &'a str,
    pub worker_id: &'a str,
    pub attempts: u32,
    pub processing_time: f64,
    /// Targets written (a success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<usize>,
    /// Why it failed (a failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'a str>,
}

/// How a run ended, for its summary.
enum Ended<'a> {
    Targets(usize),
    Failed(&'a str),
}

/// Runs the job `taken` as `worker_id` and returns what to write back.
pub async fn run_job(ctx: &JobContext, worker_id: &str, taken: Taken) -> Finished {
    let started = Instant::now();
    let started_unix = now_unix();
    let finished = run(ctx, worker_id, taken, started).await;
    // Start and end in wall-clock time: lets an operator (and the multi-process test)
    // line up jobs across workers.
    tracing::debug!(
        full_path = %finished.full_path,
        worker_id,
        attempts = finished.taken.attempts,
        started = started_unix,
        finished = now_unix(),
        "job finished"
    );
    finished
}

async fn run(ctx: &JobContext, worker_id: &str, taken: Taken, started: Instant) -> Finished {
    let job: Job = match serde_json::from_str(&taken.raw) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(job = %taken.raw, "dropping a queue entry that is not a job: {e}");
            return Finished {
                taken,
                full_path: String::new(),
                outcome: Outcome::Discard,
                run: Vec::new(),
                summary: Vec::new(),
            };
        }
    };
    let failed = |error_type: &str, message: String, generator: Option<String>| {
        let details = ErrorDetails {
            error_type: error_type.to_string(),
            traceback: format!(
                "Traceback (most recent call last):\n  File \"{}\", in <worker>\n{error_type}: {message}",
                job.full_path
            ),
            error_message: message,
            worker_id: worker_id.to_string(),
            job_id: job.job_id.clone(),
            path: job.path.clone(),
            extra_args: job.extra_args.clone(),
            timestamp: iso8601(now_unix()),
            processing_time: started.elapsed().as_secs_f64(),
            generator,
            full_path: Some(job.full_path.clone()),
        };
        ErrorEntry::new(now_unix(), details).to_vec()
    };
    let finish = |outcome: Outcome, run: Vec<u8>, ended: Ended| {
        let (targets, error_type) = match ended {
            Ended::Targets(n) => (Some(n), None),
            Ended::Failed(t) => (None, Some(t)),
        };
        let summary = serde_json::to_vec(&RunSummary {
            finished: now_unix(),
            job_id: &job.job_id,
            worker_id,
            attempts: taken.attempts,
            processing_time: started.elapsed().as_secs_f64(),
            targets,
            error_type,
        })
        .unwrap_or_default();
        Finished {
            taken: taken.clone(),
            full_path: job.full_path.clone(),
            outcome,
            run,
            summary,
        }
    };

    if taken.attempts > ctx.max_attempts {
        let message = format!(
            "job abandoned after {} attempts: each time its worker stopped before finishing it (killed, out of memory, or cut off from the store)",
            taken.attempts - 1
        );
        tracing::error!(full_path = %job.full_path, "{message}");
        return finish(
            Outcome::Error(failed(WORKER_LOST, message, None)),
            Vec::new(),
            Ended::Failed(WORKER_LOST),
        );
    }
    let request = match job.request() {
        Ok(r) => r,
        Err(e) => {
            return finish(
                Outcome::Error(failed(ErrorKind::LoadError.as_str(), e, None)),
                Vec::new(),
                Ended::Failed(ErrorKind::LoadError.as_str()),
            );
        }
    };
    let indexed = match ctx.index.lookup(&request.path).await {
        Ok(i) => i,
        Err(e) => {
            let message = match e {
                TreeError::NotFound => format!("no generator answers {}", request.display_path()),
                TreeError::Io(msg) => msg,
            };
            return finish(
                Outcome::Error(failed(ErrorKind::LoadError.as_str(), message, None)),
                Vec::new(),
                Ended::Failed(ErrorKind::LoadError.as_str()),
            );
        }
    };

    let outcome = run_path(&ctx.runtime, &indexed.generators, &request.params).await;
    record_generators(&ctx.metrics, &outcome.reports);
    let processing_time = started.elapsed().as_secs_f64();
    let now = now_unix();
    let run = serde_json::to_vec(&RunRecord {
        job_id: &job.job_id,
        worker_id,
        attempts: taken.attempts,
        finished: now,
        processing_time,
        ok: outcome.result.is_ok(),
        fingerprint: &indexed.fingerprint,
        generators: &outcome.reports,
    })
    .unwrap_or_default();

    let (written, ended) = match outcome.result {
        Ok(groups) => {
            let targets = groups.iter().map(|g| g.targets.len()).sum();
            ctx.metrics
                .path_last_generated_targets
                .with_label_values(&[&request.display_path()])
                .set(targets as i64);
            let meta = EntryMeta {
                fingerprint: indexed.fingerprint.clone(),
                job_id: job.job_id.clone(),
                worker_id: worker_id.to_string(),
                processing_time,
                targets,
            };
            (
                Outcome::Entry(wire::encode_entry(now, &groups, &meta)),
                Ended::Targets(targets),
            )
        }
        Err(failure) => {
            tracing::warn!(
                full_path = %job.full_path,
                generator = %failure.generator,
                error_type = %failure.error.kind,
                "generation failed: {}",
                failure.error.message
            );
            let kind = failure.error.kind;
            let details = ErrorDetails {
                error_type: kind.as_str().to_string(),
                error_message: failure.error.message,
                traceback: failure.error.traceback,
                worker_id: worker_id.to_string(),
                job_id: job.job_id.clone(),
                path: job.path.clone(),
                extra_args: job.extra_args.clone(),
                timestamp: iso8601(now),
                processing_time,
                generator: Some(failure.generator),
                full_path: Some(job.full_path.clone()),
            };
            (
                Outcome::Error(ErrorEntry::new(now, details).to_vec()),
                Ended::Failed(kind.as_str()),
            )
        }
    };
    finish(written, run, ended)
}

fn record_generators(metrics: &Metrics, reports: &[GeneratorReport]) {
    for r in reports {
        let name = r.generator.as_str();
        let m = metrics.generator(name);
        match &r.error {
            None => {
                m.success.inc();
                m.targets.set(r.targets as i64);
            }
            Some(e) => {
                metrics
                    .generator_runs
                    .with_label_values(&[name, e.kind.as_str()])
                    .inc();
                if e.kind == ErrorKind::Timeout {
                    m.timeouts.inc();
                }
            }
        }
        m.duration.observe(r.stats.duration.as_secs_f64());
        if r.kind == crate::targets::GeneratorKind::Wasm {
            m.instantiate.observe(r.stats.instantiate.as_secs_f64());
            m.fuel.inc_by(r.stats.fuel_used);
            m.cpu.inc_by(r.stats.cpu.as_secs_f64());
            m.memory_peak
                .set(i64::try_from(r.stats.memory_peak).unwrap_or(i64::MAX));
            m.log_dropped.inc_by(r.stats.logs_dropped);
            m.http_requests.inc_by(u64::from(r.stats.http_requests));
        }
    }
}

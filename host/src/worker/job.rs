//! One job, from the raw queue entry to what is written back: parse it, find the
//! generators under its path, run them, and encode the cache entry or the error entry
//! (DESIGN §8) and the per-generator run report that `?debug=true` shows.

use crate::clock::{iso8601, now_unix};
use crate::metrics::Metrics;
use crate::model::TargetGroup;
use crate::runtime::{ErrorKind, Runtime};
use crate::store::{Finished, Outcome, Taken};
use crate::targets::run::{PathFailure, PathOutcome};
use crate::targets::{GeneratorReport, Indexed, PathIndex, TreeError, run_path};
use crate::wire::{self, EntryMeta, ErrorDetails, ErrorEntry, Job, TargetRequest};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// What every job needs, shared by a process's workers.
pub struct JobContext {
    /// The sandbox the generators run in.
    pub runtime: Arc<Runtime>,
    /// Request paths to their generators.
    pub index: Arc<PathIndex>,
    /// The process's metrics.
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
pub fn store_refused(
    metrics: &Metrics,
    refused: &Finished,
    worker_id: &str,
    reason: &str,
) -> Finished {
    let job: Option<Job> = serde_json::from_str(&refused.taken.raw).ok();
    let what = match &refused.outcome {
        Outcome::Entry(v) => format!("a cache entry of {} bytes", v.len()),
        Outcome::Error(v) => format!("an error entry of {} bytes", v.len()),
        Outcome::Discard => "nothing".to_string(),
    };
    let reason = shorten_reason(reason);
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
    let summary = RunSummary {
        finished: now,
        job_id: &job_id,
        worker_id,
        attempts: refused.taken.attempts,
        processing_time,
        targets: None,
        error_type: Some(STORE_REFUSED),
    };
    let summary = encode_record(metrics, "history line", &refused.full_path, &summary);
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

/// The store's reason, cut to [`MAX_REFUSAL_REASON`] bytes (at a character boundary)
/// so a refusal quoting what it refused cannot make the error entry large in turn.
fn shorten_reason(reason: &str) -> String {
    let mut reason = reason.to_string();
    if reason.len() > MAX_REFUSAL_REASON {
        let mut end = MAX_REFUSAL_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    reason
}

/// `httpsd:run:<full_path>`: what the last run of a path did.
#[derive(Debug, Serialize)]
pub struct RunRecord<'a> {
    /// The job's id.
    pub job_id: &'a str,
    /// Who ran it.
    pub worker_id: &'a str,
    /// How often it was taken, this time included.
    pub attempts: u32,
    /// Unix time it ended.
    pub finished: f64,
    /// Seconds it took.
    pub processing_time: f64,
    /// Whether every generator succeeded.
    pub ok: bool,
    /// The generators' fingerprint it ran with.
    pub fingerprint: &'a str,
    /// What each generator did.
    pub generators: &'a [GeneratorReport],
}

/// `httpsd:history:<full_path>`: one line per run, for the admin page's history.
#[derive(Debug, Serialize)]
pub struct RunSummary<'a> {
    /// Unix time it ended.
    pub finished: f64,
    /// The job's id.
    pub job_id: &'a str,
    /// Who ran it.
    pub worker_id: &'a str,
    /// How often it was taken, this time included.
    pub attempts: u32,
    /// Seconds it took.
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

/// The steps of one job: read it, give up on it if its workers kept dying, find its
/// generators, run them, and encode what they made.
async fn run(ctx: &JobContext, worker_id: &str, taken: Taken, started: Instant) -> Finished {
    let Some(job) = read_job(&taken) else {
        return discard(taken);
    };
    let attempt = Attempt {
        ctx,
        worker_id,
        taken,
        job,
        started,
    };
    if attempt.taken.attempts > ctx.max_attempts {
        return attempt.abandon();
    }
    let (request, indexed) = match attempt.locate().await {
        Ok(found) => found,
        Err(message) => return attempt.load_failed(message),
    };
    let outcome = run_path(&ctx.runtime, &indexed.generators, &request.params).await;
    record_generators(&ctx.metrics, &outcome.reports);
    attempt.conclude(&request, &indexed, outcome)
}

/// The job in a queue entry, or `None` (logged) when the entry is not a job.
fn read_job(taken: &Taken) -> Option<Job> {
    serde_json::from_str(&taken.raw)
        .inspect_err(
            |e| tracing::error!(job = %taken.raw, "dropping a queue entry that is not a job: {e}"),
        )
        .ok()
}

/// A queue entry that is not a job: only removed from processing.
fn discard(taken: Taken) -> Finished {
    Finished {
        taken,
        full_path: String::new(),
        outcome: Outcome::Discard,
        run: Vec::new(),
        summary: Vec::new(),
    }
}

/// One attempt at a job that could be read: what every step needs to say who ran
/// what, and for how long.
struct Attempt<'a> {
    ctx: &'a JobContext,
    worker_id: &'a str,
    taken: Taken,
    job: Job,
    started: Instant,
}

impl Attempt<'_> {
    /// Taken more often than `max_attempts`: each of its workers stopped before
    /// finishing it, and this one would most likely too.
    fn abandon(self) -> Finished {
        let message = format!(
            "job abandoned after {} attempts: each time its worker stopped before finishing it (killed, out of memory, or cut off from the store)",
            self.taken.attempts - 1
        );
        tracing::error!(full_path = %self.job.full_path, "{message}");
        let entry = self.error_entry(WORKER_LOST, message, None);
        self.finish(
            Outcome::Error(entry),
            Vec::new(),
            Ended::Failed(WORKER_LOST),
        )
    }

    /// The request the job names and the generators under its path, or why there are
    /// none (a `LoadError` message).
    async fn locate(&self) -> Result<(TargetRequest, Arc<Indexed>), String> {
        let request = self.job.request()?;
        match self.ctx.index.lookup(&request.path).await {
            Ok(indexed) => Ok((request, indexed)),
            Err(TreeError::NotFound) => {
                Err(format!("no generator answers {}", request.display_path()))
            }
            Err(TreeError::Io(msg)) => Err(msg),
            Err(e @ TreeError::NothingRunnable(_)) => Err(e.to_string()),
        }
    }

    fn load_failed(self, message: String) -> Finished {
        let kind = ErrorKind::LoadError.as_str();
        let entry = self.error_entry(kind, message, None);
        self.finish(Outcome::Error(entry), Vec::new(), Ended::Failed(kind))
    }

    /// What the generators made, encoded: the cache entry or the error entry, and the
    /// run report.
    fn conclude(
        self,
        request: &TargetRequest,
        indexed: &Indexed,
        outcome: PathOutcome,
    ) -> Finished {
        let processing_time = self.started.elapsed().as_secs_f64();
        let now = now_unix();
        let run = self.run_report(now, processing_time, &indexed.fingerprint, &outcome);
        let (written, ended) = match outcome.result {
            Ok(groups) => self.entry(request, &indexed.fingerprint, now, processing_time, &groups),
            Err(failure) => self.failure(failure, now, processing_time),
        };
        self.finish(written, run, ended)
    }

    /// The per-generator report `?debug=true` shows as `last_run`.
    fn run_report(
        &self,
        now: f64,
        processing_time: f64,
        fingerprint: &str,
        outcome: &PathOutcome,
    ) -> Vec<u8> {
        let record = RunRecord {
            job_id: &self.job.job_id,
            worker_id: self.worker_id,
            attempts: self.taken.attempts,
            finished: now,
            processing_time,
            ok: outcome.result.is_ok(),
            fingerprint,
            generators: &outcome.reports,
        };
        encode_record(
            &self.ctx.metrics,
            "run report",
            &self.job.full_path,
            &record,
        )
    }

    /// A success: the cache entry, and the path's target gauge.
    fn entry(
        &self,
        request: &TargetRequest,
        fingerprint: &str,
        now: f64,
        processing_time: f64,
        groups: &[TargetGroup],
    ) -> (Outcome, Ended<'static>) {
        let targets = groups.iter().map(|g| g.targets.len()).sum();
        self.ctx
            .metrics
            .path_last_generated_targets
            .with_label_values(&[&request.display_path()])
            .set(targets as i64);
        let meta = EntryMeta {
            fingerprint: fingerprint.to_string(),
            job_id: self.job.job_id.clone(),
            worker_id: self.worker_id.to_string(),
            processing_time,
            targets,
        };
        (
            Outcome::Entry(wire::encode_entry(now, groups, &meta)),
            Ended::Targets(targets),
        )
    }

    /// A generator failed: the error entry with its traceback.
    fn failure(
        &self,
        failure: PathFailure,
        now: f64,
        processing_time: f64,
    ) -> (Outcome, Ended<'static>) {
        tracing::warn!(
            full_path = %self.job.full_path,
            generator = %failure.generator,
            error_type = %failure.error.error_type(),
            "generation failed: {}",
            failure.error.message
        );
        let kind = failure.error.kind;
        let details = ErrorDetails {
            error_type: failure.error.error_type().to_string(),
            error_message: failure.error.message,
            traceback: failure.error.traceback,
            worker_id: self.worker_id.to_string(),
            job_id: self.job.job_id.clone(),
            path: self.job.path.clone(),
            extra_args: self.job.extra_args.clone(),
            timestamp: iso8601(now),
            processing_time,
            generator: Some(failure.generator),
            full_path: Some(self.job.full_path.clone()),
        };
        (
            Outcome::Error(ErrorEntry::new(now, details).to_vec()),
            Ended::Failed(kind.as_str()),
        )
    }

    /// An error entry for a failure of the worker's own (not a generator's), with a
    /// one-frame traceback naming the path.
    fn error_entry(&self, error_type: &str, message: String, generator: Option<String>) -> Vec<u8> {
        let job = &self.job;
        let details = ErrorDetails {
            error_type: error_type.to_string(),
            traceback: format!(
                "Traceback (most recent call last):\n  File \"{}\", in <worker>\n{error_type}: {message}",
                job.full_path
            ),
            error_message: message,
            worker_id: self.worker_id.to_string(),
            job_id: job.job_id.clone(),
            path: job.path.clone(),
            extra_args: job.extra_args.clone(),
            timestamp: iso8601(now_unix()),
            processing_time: self.started.elapsed().as_secs_f64(),
            generator,
            full_path: Some(job.full_path.clone()),
        };
        ErrorEntry::new(now_unix(), details).to_vec()
    }

    /// What to write back: `outcome`, the run report, and the history line.
    fn finish(self, outcome: Outcome, run: Vec<u8>, ended: Ended) -> Finished {
        let (targets, error_type) = match ended {
            Ended::Targets(n) => (Some(n), None),
            Ended::Failed(t) => (None, Some(t)),
        };
        let summary = RunSummary {
            finished: now_unix(),
            job_id: &self.job.job_id,
            worker_id: self.worker_id,
            attempts: self.taken.attempts,
            processing_time: self.started.elapsed().as_secs_f64(),
            targets,
            error_type,
        };
        let summary = encode_record(
            &self.ctx.metrics,
            "history line",
            &self.job.full_path,
            &summary,
        );
        Finished {
            taken: self.taken,
            full_path: self.job.full_path,
            outcome,
            run,
            summary,
        }
    }
}

/// Encodes a run report or a history line.
///
/// These hold strings, numbers and generator reports, which serde_json always
/// encodes; should it ever refuse, the record is left out (an empty `run` or `summary`
/// is "none" to the store: no report, no history line), and that is an error logged
/// and counted as `httpsd_store_errors_total{operation="encode"}`, never a blank
/// record written in silence. The job's result itself is written either way.
fn encode_record<T: Serialize>(
    metrics: &Metrics,
    what: &str,
    full_path: &str,
    record: &T,
) -> Vec<u8> {
    match serde_json::to_vec(record) {
        Ok(bytes) => bytes,
        Err(e) => {
            metrics.store_errors.with_label_values(&["encode"]).inc();
            tracing::error!(full_path, "cannot encode the {what}; leaving it out: {e}");
            Vec::new()
        }
    }
}

fn record_generators(metrics: &Metrics, reports: &[GeneratorReport]) {
    for r in reports {
        let name = r.generator.as_str();
        let m = metrics.generator(name);
        match &r.error {
            None => {
                m.success.inc();
                m.targets.set(r.targets as i64);
                m.requests_success.inc();
                m.last_generated_targets.set(r.targets as i64);
            }
            Some(e) => {
                m.requests_fail.inc();
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
        if r.kind.runs_in_sandbox() {
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

//! Metrics in the Prometheus text format (DESIGN §11). Names of the old tool are kept so
//! dashboards and alerts carry over; per-generator metrics are ours.
//!
//! One [`Metrics`] per process with its own registry: `httpsd serve` shares it between
//! the server and the in-process workers, so one `/metrics` shows both.

use crate::sync::unpoison;
use prometheus::{
    Counter, CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One generator's metric handles, looked up once: a worker records five metrics per
/// generator per job, and a label lookup hashes and locks each time.
pub struct GeneratorMetrics {
    /// Successful runs (`httpsd_generator_runs_total{status="success"}`).
    pub success: IntCounter,
    /// Time of a whole run.
    pub duration: Histogram,
    /// Time to instantiate the component.
    pub instantiate: Histogram,
    /// Targets of the last successful run.
    pub targets: IntGauge,
    /// Fuel used.
    pub fuel: IntCounter,
    /// Runs stopped by the fuel or wall-clock limit.
    pub timeouts: IntCounter,
    /// What runs cost the host: CPU (the guest's and the host's work for it), the
    /// last run's guest memory, log lines dropped, outbound HTTP requests.
    pub cpu: Counter,
    /// See `cpu`.
    pub memory_peak: IntGauge,
    /// See `cpu`.
    pub log_dropped: IntCounter,
    /// See `cpu`.
    pub http_requests: IntCounter,
    /// prometheus-http-sd 3.0.6's names, for the dashboards built on them:
    /// `httpsd_generator_requests_total{status="success"}`,
    pub requests_success: IntCounter,
    /// `{status="fail"}`,
    pub requests_fail: IntCounter,
    /// and `httpsd_generator_last_generated_targets` (the same count as `targets`).
    pub last_generated_targets: IntGauge,
}

/// The embedded store's metrics (`httpsd serve` only: registered when its store asks,
/// so `server` and `worker` do not show them).
#[derive(Clone)]
pub struct MemoryStoreMetrics {
    /// `{reason}`: paths (over --memory-store-max-paths), bytes (over
    /// --memory-store-max-bytes).
    pub evictions: IntCounterVec,
    /// Bytes of entries, errors, run reports and histories held.
    pub bytes: IntGauge,
    /// Paths held.
    pub paths: IntGauge,
}

/// Most generators whose handles are remembered; past that the memo starts over.
const MAX_REMEMBERED_GENERATORS: usize = 10_000;

/// Every metric of the process, registered in its own registry; the families are
/// public so callers record with `with_label_values` (or the memoised handles of
/// [`Metrics::generator`] on the worker's per-run path).
pub struct Metrics {
    registry: Registry,
    generators: Mutex<HashMap<String, Arc<GeneratorMetrics>>>,
    /// `{path, status, l1_dir, l2_dir}`; status: success, fail, cache-not-exist,
    /// cache-expired.
    pub path_requests: IntCounterVec,
    /// `{path}`: time to answer a target path request.
    pub path_request_duration: HistogramVec,
    /// `{path}`: targets in the last generated answer of a path.
    pub path_last_generated_targets: IntGaugeVec,
    /// `{operation}`: hit, miss, expired.
    pub cache_operations: IntCounterVec,
    /// Cache lookups answered from the server's local cache, without Redis (a subset
    /// of the hits and expiries above).
    pub local_cache_hits: IntCounter,
    /// `{worker_id, status}`: success, failure, discarded (a queue entry that is not a job).
    pub jobs_processed: IntCounterVec,
    /// `{status}`: pending, processing. Set when `/metrics` is read.
    pub queue_jobs: IntGaugeVec,
    /// `{generator, status}`: success or the error type.
    pub generator_runs: IntCounterVec,
    /// `{generator}`: time of one run. This and the families below are labelled by
    /// generator; record through [`Metrics::generator`].
    pub generator_duration: HistogramVec,
    /// `{generator}`: time to instantiate the component.
    pub generator_instantiate: HistogramVec,
    /// `{generator}`: targets of the last successful run.
    pub generator_targets: IntGaugeVec,
    /// `{generator}`: fuel used.
    pub generator_fuel: IntCounterVec,
    /// `{generator}`: runs stopped by the fuel or wall-clock limit.
    pub generator_timeouts: IntCounterVec,
    /// `{generator}`: CPU seconds of its runs on this host.
    pub generator_cpu: CounterVec,
    /// `{generator}`: linear memory of the last run at its peak.
    pub generator_memory_peak: IntGaugeVec,
    /// `{generator}`: log lines dropped past the run's log budget.
    pub generator_log_dropped: IntCounterVec,
    /// `{generator}`: outbound HTTP requests made.
    pub generator_http_requests: IntCounterVec,
    /// `{generator,status}` (success, fail): prometheus-http-sd 3.x's run counter.
    pub generator_requests: IntCounterVec,
    /// `{generator}`: prometheus-http-sd 3.x's name for the last run's target count.
    pub generator_last_generated_targets: IntGaugeVec,
    /// `{reason}`: refresh-ahead, generator-changed, reload, miss, expired.
    pub jobs_enqueued: IntCounterVec,
    /// Jobs the reaper moved back to the queue after their worker vanished.
    pub jobs_requeued: IntCounterVec,
    /// `{operation}`: store failures seen by this process.
    pub store_errors: IntCounterVec,
    memory_store: OnceLock<MemoryStoreMetrics>,
    redis: OnceLock<(IntCounter, IntGaugeVec)>,
}

fn plain_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn plain_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn float_counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

/// Buckets of `httpsd_path_request_duration_seconds`: a hit is answered in well under a
/// millisecond, a miss that waits for the worker in up to a second.
const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Buckets of generator run and instantiate times: from a static file to a generator
/// that sleeps into its timeout.
const RUN_BUCKETS: &[f64] = &[
    0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The server's families: requests for target paths and their cache lookups.
struct RequestFamilies {
    path_requests: IntCounterVec,
    path_request_duration: HistogramVec,
    path_last_generated_targets: IntGaugeVec,
    cache_operations: IntCounterVec,
    local_cache_hits: IntCounter,
}

impl RequestFamilies {
    fn register(r: &Registry) -> RequestFamilies {
        RequestFamilies {
            path_requests: counter(
                r,
                "httpsd_path_requests_total",
                "Requests for target paths, by answer.",
                &["path", "status", "l1_dir", "l2_dir"],
            ),
            path_request_duration: histogram(
                r,
                "httpsd_path_request_duration_seconds",
                "Time to answer a target path request.",
                &["path"],
                REQUEST_BUCKETS.to_vec(),
            ),
            path_last_generated_targets: gauge(
                r,
                "httpsd_path_last_generated_targets",
                "Targets in the last generated answer of a path.",
                &["path"],
            ),
            cache_operations: counter(
                r,
                "httpsd_cache_operations_total",
                "Cache lookups, by outcome.",
                &["operation"],
            ),
            local_cache_hits: plain_counter(
                r,
                "httpsd_local_cache_hits_total",
                "Cache lookups answered from the server's local cache (--local-cache), without Redis.",
            ),
        }
    }
}

/// The queue's families: jobs enqueued, run, requeued and waiting, and the store
/// failures on the way.
struct JobFamilies {
    jobs_processed: IntCounterVec,
    queue_jobs: IntGaugeVec,
    jobs_enqueued: IntCounterVec,
    jobs_requeued: IntCounterVec,
    store_errors: IntCounterVec,
}

impl JobFamilies {
    fn register(r: &Registry) -> JobFamilies {
        JobFamilies {
            jobs_processed: counter(
                r,
                "httpsd_redis_worker_jobs_processed_total",
                "Jobs run by workers, by outcome.",
                &["worker_id", "status"],
            ),
            queue_jobs: gauge(
                r,
                "httpsd_update_queue_jobs",
                "Jobs in the queue (pending) and being run (processing).",
                &["status"],
            ),
            jobs_enqueued: counter(
                r,
                "httpsd_jobs_enqueued_total",
                "Jobs enqueued by this server, by reason.",
                &["reason"],
            ),
            jobs_requeued: counter(
                r,
                "httpsd_jobs_requeued_total",
                "Orphaned jobs moved back to the queue by this worker's reaper.",
                &["worker_id"],
            ),
            store_errors: counter(
                r,
                "httpsd_store_errors_total",
                "Failed store operations.",
                &["operation"],
            ),
        }
    }
}

/// The per-generator families, all labelled `{generator}` (runs also `{status}`).
struct GeneratorFamilies {
    runs: IntCounterVec,
    duration: HistogramVec,
    instantiate: HistogramVec,
    targets: IntGaugeVec,
    fuel: IntCounterVec,
    timeouts: IntCounterVec,
    cpu: CounterVec,
    memory_peak: IntGaugeVec,
    log_dropped: IntCounterVec,
    http_requests: IntCounterVec,
    requests: IntCounterVec,
    last_generated_targets: IntGaugeVec,
}

impl GeneratorFamilies {
    fn register(r: &Registry) -> GeneratorFamilies {
        let g = &["generator"];
        GeneratorFamilies {
            runs: counter(
                r,
                "httpsd_generator_runs_total",
                "Generator runs, by outcome (success or the error type).",
                &["generator", "status"],
            ),
            duration: histogram(
                r,
                "httpsd_generator_run_duration_seconds",
                "Time of one generator run (load, instantiate, call, validate).",
                g,
                RUN_BUCKETS.to_vec(),
            ),
            instantiate: histogram(
                r,
                "httpsd_generator_instantiate_seconds",
                "Time to instantiate a generator component.",
                g,
                RUN_BUCKETS.to_vec(),
            ),
            targets: gauge(
                r,
                "httpsd_generator_last_targets",
                "Targets returned by a generator's last successful run.",
                g,
            ),
            fuel: counter(
                r,
                "httpsd_generator_fuel_consumed_total",
                "Fuel (about one unit per wasm instruction) used by a generator.",
                g,
            ),
            timeouts: counter(
                r,
                "httpsd_generator_timeouts_total",
                "Generator runs stopped by the fuel or wall-clock limit.",
                g,
            ),
            cpu: float_counter(
                r,
                "httpsd_generator_cpu_seconds_total",
                "CPU time of a generator's runs on this host: the guest and the host's work for it (lifting, validating, rendering a traceback), without loading the component.",
                g,
            ),
            memory_peak: gauge(
                r,
                "httpsd_generator_memory_peak_bytes",
                "Linear memory a generator's last run held at its peak.",
                g,
            ),
            log_dropped: counter(
                r,
                "httpsd_generator_log_lines_dropped_total",
                "Guest log and stdout/stderr lines dropped past the run's max_log_bytes.",
                g,
            ),
            http_requests: counter(
                r,
                "httpsd_generator_http_requests_total",
                "Outbound HTTP requests a generator's runs made (refused ones included).",
                g,
            ),
            requests: counter(
                r,
                "httpsd_generator_requests_total",
                "The total count that this generator executed, status can be success/fail (prometheus-http-sd 3.x's name; httpsd_generator_runs_total says which error).",
                &["generator", "status"],
            ),
            last_generated_targets: gauge(
                r,
                "httpsd_generator_last_generated_targets",
                "The target count that this generator gets during its last execution (prometheus-http-sd 3.x's name for httpsd_generator_last_targets).",
                g,
            ),
        }
    }
}

impl Metrics {
    /// A registry with every family of the server and the workers. The families are
    /// registered in groups (`RequestFamilies`, `JobFamilies`, `GeneratorFamilies`);
    /// the exposition sorts them by name, so the grouping does not show in `/metrics`.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = RequestFamilies::register(&registry);
        let jobs = JobFamilies::register(&registry);
        let generators = GeneratorFamilies::register(&registry);
        Metrics {
            path_requests: requests.path_requests,
            path_request_duration: requests.path_request_duration,
            path_last_generated_targets: requests.path_last_generated_targets,
            cache_operations: requests.cache_operations,
            local_cache_hits: requests.local_cache_hits,
            jobs_processed: jobs.jobs_processed,
            queue_jobs: jobs.queue_jobs,
            jobs_enqueued: jobs.jobs_enqueued,
            jobs_requeued: jobs.jobs_requeued,
            store_errors: jobs.store_errors,
            generator_runs: generators.runs,
            generator_duration: generators.duration,
            generator_instantiate: generators.instantiate,
            generator_targets: generators.targets,
            generator_fuel: generators.fuel,
            generator_timeouts: generators.timeouts,
            generator_cpu: generators.cpu,
            generator_memory_peak: generators.memory_peak,
            generator_log_dropped: generators.log_dropped,
            generator_http_requests: generators.http_requests,
            generator_requests: generators.requests,
            generator_last_generated_targets: generators.last_generated_targets,
            registry,
            generators: Mutex::new(HashMap::new()),
            memory_store: OnceLock::new(),
            redis: OnceLock::new(),
        }
    }

    /// The memory store's handles, registered on the first call.
    pub fn memory_store(&self) -> MemoryStoreMetrics {
        self.memory_store
            .get_or_init(|| MemoryStoreMetrics {
                evictions: counter(
                    &self.registry,
                    "httpsd_memory_store_evictions_total",
                    "Paths evicted from the memory store (httpsd serve), least recently used first, by the bound they were over.",
                    &["reason"],
                ),
                bytes: plain_gauge(
                    &self.registry,
                    "httpsd_memory_store_bytes",
                    "Bytes of entries, errors, run reports and histories held by the memory store (httpsd serve).",
                ),
                paths: plain_gauge(
                    &self.registry,
                    "httpsd_memory_store_paths",
                    "Paths held by the memory store (httpsd serve).",
                ),
            })
            .clone()
    }

    /// Shows the Redis topology a server or worker uses: `httpsd_redis_failovers_total`
    /// (`failovers`: changes of the primary this process has seen) and
    /// `httpsd_redis_primary{mode, address}` = 1 for the primary in use. Registered on
    /// the first call (only processes on Redis show them); called before each
    /// exposition.
    pub fn redis_topology(&self, mode: &str, primary: Option<&str>, failovers: u64) {
        let (counter, gauge) = self.redis.get_or_init(|| {
            (
                plain_counter(
                    &self.registry,
                    "httpsd_redis_failovers_total",
                    "Changes of the Redis primary (Sentinel or Cluster failovers) this process has seen.",
                ),
                gauge(
                    &self.registry,
                    "httpsd_redis_primary",
                    "1 for the Redis node this process uses as the primary (for a cluster: of httpsd's hash slot).",
                    &["mode", "address"],
                ),
            )
        });
        let seen = counter.get();
        if failovers > seen {
            counter.inc_by(failovers - seen);
        }
        gauge.reset();
        if let Some(address) = primary {
            gauge.with_label_values(&[mode, address]).set(1);
        }
    }

    /// The handles of generator `name` (its path relative to the root).
    pub fn generator(&self, name: &str) -> Arc<GeneratorMetrics> {
        let mut memo = unpoison(self.generators.lock());
        if let Some(found) = memo.get(name) {
            return found.clone();
        }
        if memo.len() >= MAX_REMEMBERED_GENERATORS {
            memo.clear();
        }
        let handles = Arc::new(GeneratorMetrics {
            success: self.generator_runs.with_label_values(&[name, "success"]),
            duration: self.generator_duration.with_label_values(&[name]),
            instantiate: self.generator_instantiate.with_label_values(&[name]),
            targets: self.generator_targets.with_label_values(&[name]),
            fuel: self.generator_fuel.with_label_values(&[name]),
            timeouts: self.generator_timeouts.with_label_values(&[name]),
            cpu: self.generator_cpu.with_label_values(&[name]),
            memory_peak: self.generator_memory_peak.with_label_values(&[name]),
            log_dropped: self.generator_log_dropped.with_label_values(&[name]),
            http_requests: self.generator_http_requests.with_label_values(&[name]),
            requests_success: self
                .generator_requests
                .with_label_values(&[name, "success"]),
            requests_fail: self.generator_requests.with_label_values(&[name, "fail"]),
            last_generated_targets: self
                .generator_last_generated_targets
                .with_label_values(&[name]),
        });
        memo.insert(name.to_string(), handles.clone());
        handles
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The `l1_dir` and `l2_dir` labels: the first two segments of a path.
pub fn dir_labels(path: &crate::targets::TargetPath) -> (&str, &str) {
    let s = path.segments();
    (
        s.first().map_or("", String::as_str),
        s.get(1).map_or("", String::as_str),
    )
}

//! The Redis wire format (DESIGN §8), shared with prometheus-http-sd 3.x so a mixed
//! fleet of old and new servers and workers works on one Redis.
//!
//! Keys of the old tool keep their names and shapes; fields of our own are extra (old
//! readers ignore them). Keys only httpsd uses live under [`PREFIX`] and all carry a TTL.

use crate::model::TargetGroup;
use crate::targets::TargetPath;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;

/// Pending jobs: producers LPUSH, consumers take from the right.
pub const QUEUE: &str = "target_generation_queue";
/// Jobs being run.
pub const PROCESSING: &str = "target_generation_queue:processing";
/// How long a cached error lives (the old tool's value).
pub const ERROR_TTL: Duration = Duration::from_secs(3600);

// Every key prefix and channel name is spelled once, here. Rust builds keys from these
// consts, and the Lua scripts get them as `local` definitions that
// `store/redis/scripts.rs` generates from [`SCRIPT_NAMES`], so the two cannot drift
// apart. The strings themselves are binding: they are the wire format the old tool and
// older httpsd processes of a mixed fleet read and write.

/// The literal of [`PREFIX`], as a macro so the names under it can be built with
/// `concat!` (which takes literals, not consts) and the prefix is still spelled once.
macro_rules! httpsd_prefix {
    () => {
        "httpsd:"
    };
}

/// The common prefix of httpsd's own keys (dedupe markers, leases, attempts, runs).
pub const PREFIX: &str = httpsd_prefix!();
/// `<full_path>`: a path's cache entry is its `full_path` itself, the old tool's key
/// (on a Redis Cluster every key gets a hash tag in front, store/redis/keys.rs).
pub const ENTRY_PREFIX: &str = "";
/// `error:<full_path>`: a path's last error, the old tool's key.
pub const ERROR_PREFIX: &str = "error:";
/// `httpsd:job:<full_path>`: a path's dedupe marker.
pub const MARKER_PREFIX: &str = concat!(httpsd_prefix!(), "job:");
/// `httpsd:lease:<job id>`: a running job's lease (the id is the sha1 of the job).
pub const LEASE_PREFIX: &str = concat!(httpsd_prefix!(), "lease:");
/// `httpsd:attempts:<job id>`: how often a job without a marker of its own was taken.
pub const ATTEMPTS_PREFIX: &str = concat!(httpsd_prefix!(), "attempts:");
/// `httpsd:run:<full_path>`: the last run's report.
pub const RUN_PREFIX: &str = concat!(httpsd_prefix!(), "run:");
/// `httpsd:history:<full_path>`: the last runs' summaries.
pub const HISTORY_PREFIX: &str = concat!(httpsd_prefix!(), "history:");
/// `httpsd:reload:<full_path>`: a reload's cooldown.
pub const RELOAD_PREFIX: &str = concat!(httpsd_prefix!(), "reload:");
/// `httpsd:retry:<full_path>`: set after a failed run; polls do not run the path again
/// while it lives.
pub const RETRY_PREFIX: &str = concat!(httpsd_prefix!(), "retry:");
/// The channel the scripts publish the `full_path` of every entry written or deleted
/// on, for the servers' local caches (`server/local.rs`).
pub const INVALIDATE_CHANNEL: &str = concat!(httpsd_prefix!(), "invalidate");

/// The names above that the Lua scripts use, each under the name of its Rust const:
/// the scripts see `local MARKER_PREFIX = "httpsd:job:"` and so on, and spell no key
/// of their own. (The queue and the processing list reach them as `KEYS`.)
pub const SCRIPT_NAMES: [(&str, &str); 10] = [
    ("ENTRY_PREFIX", ENTRY_PREFIX),
    ("ERROR_PREFIX", ERROR_PREFIX),
    ("MARKER_PREFIX", MARKER_PREFIX),
    ("LEASE_PREFIX", LEASE_PREFIX),
    ("ATTEMPTS_PREFIX", ATTEMPTS_PREFIX),
    ("RUN_PREFIX", RUN_PREFIX),
    ("HISTORY_PREFIX", HISTORY_PREFIX),
    ("RELOAD_PREFIX", RELOAD_PREFIX),
    ("RETRY_PREFIX", RETRY_PREFIX),
    ("INVALIDATE_CHANNEL", INVALIDATE_CHANNEL),
];

/// `error:<full_path>`.
pub fn error_key(full_path: &str) -> String {
    format!("{ERROR_PREFIX}{full_path}")
}

/// `httpsd:job:<full_path>`: the dedupe marker, a hash with the state (queued or
/// running) of the one job allowed per path.
pub fn marker_key(full_path: &str) -> String {
    format!("{MARKER_PREFIX}{full_path}")
}

/// `httpsd:run:<full_path>`: what the last run did, per generator (for debug).
pub fn run_key(full_path: &str) -> String {
    format!("{RUN_PREFIX}{full_path}")
}

/// `httpsd:history:<full_path>`: a list of the last [`HISTORY_LEN`] runs' summaries,
/// newest first (the admin page's run history).
pub fn history_key(full_path: &str) -> String {
    format!("{HISTORY_PREFIX}{full_path}")
}

/// Runs kept in a path's history.
pub const HISTORY_LEN: usize = 20;

/// `httpsd:reload:<full_path>`: set for `--reload-cooldown` by a reload; while it
/// exists, reloads of the path are refused.
pub fn reload_key(full_path: &str) -> String {
    format!("{RELOAD_PREFIX}{full_path}")
}

/// The parameters that steer httpsd itself; never passed to generators, never part of
/// the cache key.
pub const CONTROL_PARAMS: [&str; 2] = ["debug", "reload"];

/// What a request asks for, as the cache and the queue know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRequest {
    /// The target path, without the `/targets` prefix.
    pub path: TargetPath,
    /// Query parameters in request order, repeats kept, control parameters removed.
    pub params: Vec<(String, String)>,
    /// `/targets/<path>?<query>`: the cache key, with the `?` always present.
    pub full_path: String,
}

impl TargetRequest {
    /// The request for `path` with `params`: control parameters (`debug`, `reload`) are
    /// dropped, and `full_path` is built from what is left, form-urlencoded.
    pub fn new(path: TargetPath, params: Vec<(String, String)>) -> TargetRequest {
        let params: Vec<(String, String)> = params
            .into_iter()
            .filter(|(k, _)| !CONTROL_PARAMS.contains(&k.as_str()))
            .collect();
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let full_path = format!("/targets/{}?{query}", path.as_slash_path());
        TargetRequest {
            path,
            params,
            full_path,
        }
    }

    /// `/targets/<path>` without the query: the `path` label of metrics.
    pub fn display_path(&self) -> String {
        format!("/targets/{}", self.path.as_slash_path())
    }

    /// Recovers the request from a job's `full_path` (what a worker runs).
    pub fn from_full_path(full_path: &str) -> Result<TargetRequest, String> {
        let (path, query) = full_path.split_once('?').unwrap_or((full_path, ""));
        let rest = path
            .strip_prefix("/targets")
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| format!("full_path {full_path:?} does not start with /targets"))?;
        let path = TargetPath::parse(rest).map_err(|e| format!("{full_path:?}: {e}"))?;
        Ok(TargetRequest::new(path, crate::query::parse(query)))
    }

    /// The job that regenerates this request.
    pub fn job(&self, now: f64) -> Job {
        let mut extra_args = serde_json::Map::new();
        for (k, v) in &self.params {
            // The old tool's dict keeps the first value of a repeated key; `params`
            // carries them all for httpsd workers.
            extra_args
                .entry(k.clone())
                .or_insert_with(|| serde_json::Value::String(v.clone()));
        }
        Job {
            full_path: self.full_path.clone(),
            path: self.path.as_slash_path(),
            extra_args,
            job_id: format!("{}:{}", self.full_path, now as u64),
            params: Some(self.params.clone()),
            enqueued_at: Some(now),
        }
    }
}

/// A queued job: `{"full_path", "path", "extra_args", "job_id"}` plus our extras.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// `/targets/<path>?<query>`: the cache key the result is written to.
    pub full_path: String,
    /// The target path without `/targets/`, e.g. `a/b` (empty for the root).
    pub path: String,
    /// The query parameters as a dict, first value of a repeated key (the old tool's
    /// form; its jobs may hold non-string values).
    #[serde(default)]
    pub extra_args: serde_json::Map<String, serde_json::Value>,
    /// `<full_path>:<unix seconds>` (empty for a job without one).
    #[serde(default)]
    pub job_id: String,
    /// The parameters in order with repeats (extra_args is a dict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<(String, String)>>,
    /// When it was enqueued; also makes two jobs for one path distinct in the lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<f64>,
}

impl Job {
    /// The job as it is queued: the JSON serde_json writes for it, byte for byte (a test
    /// compares the two), written by [`JsonOut`], which cannot fail. So there is no
    /// error to swallow, and no empty job is ever queued: the old
    /// `to_string(..).unwrap_or_default()` would have queued `""` had serde_json ever
    /// failed. A field added to [`Job`] must be added here too (the test catches it).
    pub fn to_json(&self) -> String {
        let mut out = JsonOut::with_capacity(256 + self.full_path.len() * 3);
        out.raw("{\"full_path\":");
        out.str(&self.full_path);
        out.raw(",\"path\":");
        out.str(&self.path);
        out.raw(",\"extra_args\":");
        out.map(&self.extra_args);
        out.raw(",\"job_id\":");
        out.str(&self.job_id);
        if let Some(params) = &self.params {
            out.raw(",\"params\":[");
            for (i, (k, v)) in params.iter().enumerate() {
                out.raw(if i == 0 { "[" } else { ",[" });
                out.str(k);
                out.raw(",");
                out.str(v);
                out.raw("]");
            }
            out.raw("]");
        }
        if let Some(at) = self.enqueued_at {
            out.raw(",\"enqueued_at\":");
            out.f64(at);
        }
        out.raw("}");
        out.finish()
    }

    /// The request to run. A job from an old server has no `params`: its `extra_args`
    /// are used instead, non-string values in their JSON form.
    pub fn request(&self) -> Result<TargetRequest, String> {
        let from_path = TargetRequest::from_full_path(&self.full_path)?;
        let params = match &self.params {
            Some(p) => p.clone(),
            None => self
                .extra_args
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        };
        Ok(TargetRequest {
            params,
            ..from_path
        })
    }
}

/// What httpsd adds to a cache entry (old readers ignore it).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct EntryMeta {
    /// The generators' fingerprint when they made this entry (see
    /// [`crate::targets::fingerprint`]).
    pub fingerprint: String,
    /// The `job_id` of the job that made it.
    pub job_id: String,
    /// The worker that ran the job.
    pub worker_id: String,
    /// How long the run took, in seconds.
    pub processing_time: f64,
    /// Targets in `results`, summed over all groups.
    pub targets: usize,
}

/// Writes `{"updated_timestamp", "httpsd", "results"}`, in the layout
/// [`EntryView::parse_own`] reads fast. Written by [`JsonOut`], byte for byte what
/// serde_json writes for the same data: it cannot fail, so no empty entry is ever
/// written in place of one that failed to encode.
pub fn encode_entry(updated: f64, results: &[TargetGroup], meta: &EntryMeta) -> Vec<u8> {
    let mut out = JsonOut::with_capacity(crate::model::json_array_bytes(results) + 256);
    out.raw("{\"updated_timestamp\":");
    out.f64(updated);
    out.raw(",\"httpsd\":{\"fingerprint\":");
    out.str(&meta.fingerprint);
    out.raw(",\"job_id\":");
    out.str(&meta.job_id);
    out.raw(",\"worker_id\":");
    out.str(&meta.worker_id);
    out.raw(",\"processing_time\":");
    out.f64(meta.processing_time);
    out.raw(",\"targets\":");
    out.uint(meta.targets as u64);
    out.raw("},\"results\":[");
    for (i, group) in results.iter().enumerate() {
        out.raw(if i == 0 {
            "{\"targets\":["
        } else {
            ",{\"targets\":["
        });
        for (j, target) in group.targets.iter().enumerate() {
            if j > 0 {
                out.raw(",");
            }
            out.str(target);
        }
        out.raw("],\"labels\":{");
        for (j, (name, value)) in group.labels.iter().enumerate() {
            if j > 0 {
                out.raw(",");
            }
            out.str(name);
            out.raw(":");
            out.str(value);
        }
        out.raw("}}");
    }
    out.raw("]}");
    out.finish().into_bytes()
}

/// A compact JSON writer whose methods cannot fail, for what httpsd writes to Redis
/// (jobs, cache entries, error entries). It writes exactly what serde_json writes for
/// the same data, which the tests check: strings escaped as serde_json escapes them
/// (`"`, `\` and control characters, nothing else), numbers as serde_json formats
/// them, and a non-finite float as `null`, as serde_json does. serde_json's own
/// `to_string` returns a `Result` for errors that cannot happen with these types
/// (every map key is a string, no `Serialize` impl refuses), and swallowing it with
/// `unwrap_or_default()` would have written an empty value instead.
struct JsonOut(String);

impl JsonOut {
    fn with_capacity(bytes: usize) -> JsonOut {
        JsonOut(String::with_capacity(bytes))
    }

    fn finish(self) -> String {
        self.0
    }

    /// JSON text as it is (punctuation and field names).
    fn raw(&mut self, text: &str) {
        self.0.push_str(text);
    }

    /// A string literal.
    fn str(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.0.push('"');
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            // `i` is at an ASCII byte, so both slices end on a character boundary.
            self.0.push_str(&s[start..i]);
            if escape.is_empty() {
                self.0.push_str("\\u00");
                self.0.push(char::from(HEX[usize::from(b >> 4)]));
                self.0.push(char::from(HEX[usize::from(b & 0xf)]));
            } else {
                self.0.push_str(escape);
            }
            start = i + 1;
        }
        self.0.push_str(&s[start..]);
        self.0.push('"');
    }

    /// A float as serde_json writes it: its shortest form, or `null` when not finite.
    fn f64(&mut self, x: f64) {
        match serde_json::Number::from_f64(x) {
            Some(n) => self.0.push_str(&n.to_string()),
            None => self.0.push_str("null"),
        }
    }

    fn uint(&mut self, n: u64) {
        self.0.push_str(&n.to_string());
    }

    fn map(&mut self, map: &serde_json::Map<String, serde_json::Value>) {
        self.0.push('{');
        for (i, (k, v)) in map.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.str(k);
            self.0.push(':');
            self.value(v);
        }
        self.0.push('}');
    }

    fn value(&mut self, value: &serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::Null => self.raw("null"),
            Value::Bool(b) => self.raw(if *b { "true" } else { "false" }),
            // A Number is finite by construction; its Display is serde_json's own form.
            Value::Number(n) => self.0.push_str(&n.to_string()),
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.0.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.0.push(',');
                    }
                    self.value(item);
                }
                self.0.push(']');
            }
            Value::Object(map) => self.map(map),
        }
    }
}

/// A cache entry as read on the request path: the results stay raw JSON text so a hit
/// never re-serialises them.
#[derive(Debug)]
pub struct EntryView<'a> {
    /// When the entry was written, in Unix seconds.
    pub updated_timestamp: f64,
    /// The `results` array as written.
    pub results: &'a str,
    /// httpsd's section; `None` in entries of other writers (prometheus-http-sd).
    pub httpsd: Option<EntryMetaView<'a>>,
}

/// Any writer's entry (prometheus-http-sd's too): field order free, every byte parsed.
#[derive(Deserialize)]
struct AnyEntry<'a> {
    updated_timestamp: f64,
    #[serde(borrow)]
    results: &'a RawValue,
    #[serde(default)]
    httpsd: Option<EntryMetaView<'a>>,
}

/// The part of an entry's `httpsd` section ([`EntryMeta`]) the request path reads.
#[derive(Debug, Deserialize)]
pub struct EntryMetaView<'a> {
    /// The generators' fingerprint when they made the entry; `None` when absent.
    #[serde(default, borrow)]
    pub fingerprint: Option<&'a str>,
    /// Targets in `results` (absent in entries of other writers: count them then).
    #[serde(default)]
    pub targets: Option<usize>,
}

impl<'a> EntryView<'a> {
    /// Reads a cache entry of any writer, borrowing from `bytes`. Err when it is not
    /// JSON with `updated_timestamp` and `results`.
    pub fn parse(bytes: &'a [u8]) -> Result<EntryView<'a>, serde_json::Error> {
        if let Some(view) = Self::parse_own(bytes) {
            return Ok(view);
        }
        let any: AnyEntry = serde_json::from_slice(bytes)?;
        Ok(EntryView {
            updated_timestamp: any.updated_timestamp,
            results: any.results.get(),
            httpsd: any.httpsd,
        })
    }

    /// The layout [`encode_entry`] writes, `{"updated_timestamp":T,"httpsd":{..},
    /// "results":[..]}`: the two small fields are parsed and the results are taken as
    /// the rest, unscanned. On a large answer the scan would be most of a cache hit's
    /// CPU; the bytes were written by a worker that serialised them itself. Anything
    /// else (another writer, another order) returns `None` and is parsed in full.
    fn parse_own(bytes: &'a [u8]) -> Option<EntryView<'a>> {
        fn field<'de, T: Deserialize<'de>>(rest: &'de [u8], name: &[u8]) -> Option<(T, &'de [u8])> {
            let rest = rest.strip_prefix(name)?;
            let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
            let value = values.next()?.ok()?;
            Some((value, rest.get(values.byte_offset()..)?))
        }
        let (updated_timestamp, rest) = field::<f64>(bytes, b"{\"updated_timestamp\":")?;
        let (meta, rest) = field::<EntryMetaView>(rest, b",\"httpsd\":")?;
        let results = rest.strip_prefix(b",\"results\":")?.strip_suffix(b"}")?;
        if !(results.starts_with(b"[") && results.ends_with(b"]")) {
            return None;
        }
        Some(EntryView {
            updated_timestamp,
            results: std::str::from_utf8(results).ok()?,
            httpsd: Some(meta),
        })
    }

    /// The generators' fingerprint the entry was made with; `None` for an entry
    /// without one (another writer's).
    pub fn fingerprint(&self) -> Option<&'a str> {
        self.httpsd.as_ref().and_then(|m| m.fingerprint)
    }
}

/// A cache entry parsed once, owning what the hit path needs: the server's local cache
/// keeps these, so a hit it answers costs no parse at all, only reading a timestamp.
#[derive(Debug)]
pub struct ParsedEntry {
    /// When the entry was written, in Unix seconds.
    pub updated_timestamp: f64,
    /// A slice of the fetched bytes too: parsing allocates nothing per request.
    pub fingerprint: Option<bytes::Bytes>,
    /// The `results` array as written: a slice of the fetched bytes, no copy.
    pub results: bytes::Bytes,
    /// Bytes of the whole entry as fetched (what keeping it costs in memory).
    pub size: usize,
    /// Targets in `results`, summed over the groups, as the worker that wrote it
    /// counted them; `None` for another writer's entry (prometheus-http-sd 3.x writes
    /// no count, and counting on every fetch would put a second parse on the hit path).
    pub targets: Option<usize>,
}

impl ParsedEntry {
    /// Parses a fetched entry as [`EntryView::parse`] does, keeping slices of `bytes`.
    pub fn parse(bytes: &bytes::Bytes) -> Result<ParsedEntry, serde_json::Error> {
        let view = EntryView::parse(bytes)?;
        let targets = view.httpsd.as_ref().and_then(|m| m.targets);
        Ok(ParsedEntry {
            updated_timestamp: view.updated_timestamp,
            fingerprint: view.fingerprint().map(|f| bytes.slice_ref(f.as_bytes())),
            results: bytes.slice_ref(view.results.as_bytes()),
            size: bytes.len(),
            targets,
        })
    }
}

/// `error_details` of `error:<full_path>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetails {
    /// The kind of failure, e.g. `TimeoutError`, `GeneratorError`, `StoreRefusedError`.
    pub error_type: String,
    /// What went wrong, in one message.
    pub error_message: String,
    /// The generator's traceback, or for a failure of the worker's own a one-frame
    /// Python-style one naming the path.
    pub traceback: String,
    /// The worker that ran the job.
    pub worker_id: String,
    /// The job's `job_id`.
    pub job_id: String,
    /// The job's `path` (`a/b`, without `/targets/`).
    pub path: String,
    /// The job's `extra_args`.
    #[serde(default)]
    pub extra_args: serde_json::Map<String, serde_json::Value>,
    /// ISO 8601.
    pub timestamp: String,
    /// How long the run took, in seconds.
    pub processing_time: f64,
    /// Ours: the generator that failed (relative to the root); `None` when the failure
    /// was not a generator's, and in the old tool's entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// Ours: the job's `full_path`; `None` in the old tool's entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_path: Option<String>,
}

/// `{"updated_timestamp", "status": "error", "error_details"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// When the error was written, in Unix seconds.
    pub updated_timestamp: f64,
    /// Always `"error"`.
    pub status: String,
    /// What failed.
    pub error_details: ErrorDetails,
}

impl ErrorEntry {
    /// An entry with status `"error"`, written at `updated` (Unix seconds).
    pub fn new(updated: f64, details: ErrorDetails) -> ErrorEntry {
        ErrorEntry {
            updated_timestamp: updated,
            status: "error".into(),
            error_details: details,
        }
    }

    /// The entry as written to `error:<full_path>`: what serde_json writes for it, byte
    /// for byte, written by [`JsonOut`], which cannot fail (so no empty error entry is
    /// ever written). A field added to [`ErrorEntry`] or [`ErrorDetails`] must be added
    /// here too (a test catches it).
    pub fn to_vec(&self) -> Vec<u8> {
        let d = &self.error_details;
        let mut out = JsonOut::with_capacity(
            512 + d.error_message.len() + d.traceback.len() + d.job_id.len() * 2,
        );
        out.raw("{\"updated_timestamp\":");
        out.f64(self.updated_timestamp);
        out.raw(",\"status\":");
        out.str(&self.status);
        out.raw(",\"error_details\":{");
        let strings = [
            ("error_type", &d.error_type),
            ("error_message", &d.error_message),
            ("traceback", &d.traceback),
            ("worker_id", &d.worker_id),
            ("job_id", &d.job_id),
            ("path", &d.path),
        ];
        for (i, (name, value)) in strings.into_iter().enumerate() {
            out.raw(if i == 0 { "\"" } else { ",\"" });
            out.raw(name);
            out.raw("\":");
            out.str(value);
        }
        out.raw(",\"extra_args\":");
        out.map(&d.extra_args);
        out.raw(",\"timestamp\":");
        out.str(&d.timestamp);
        out.raw(",\"processing_time\":");
        out.f64(d.processing_time);
        for (name, value) in [("generator", &d.generator), ("full_path", &d.full_path)] {
            if let Some(value) = value {
                out.raw(",\"");
                out.raw(name);
                out.raw("\":");
                out.str(value);
            }
        }
        out.raw("}}");
        out.finish().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, params: &[(&str, &str)]) -> TargetRequest {
        TargetRequest::new(
            TargetPath::parse(path).unwrap(),
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn full_path_has_question_mark_and_no_control_params() {
        assert_eq!(req("svc", &[]).full_path, "/targets/svc?");
        assert_eq!(req("", &[]).full_path, "/targets/?");
        let r = req(
            "a/b",
            &[
                ("env", "prod"),
                ("debug", "true"),
                ("zone", "x y"),
                ("env", "dev"),
            ],
        );
        assert_eq!(r.full_path, "/targets/a/b?env=prod&zone=x+y&env=dev");
        assert_eq!(r.display_path(), "/targets/a/b");
        assert_eq!(TargetRequest::from_full_path(&r.full_path).unwrap(), r);
        assert!(TargetRequest::from_full_path("/other?").is_err());
        assert!(TargetRequest::from_full_path("/targetsx?").is_err());
        assert!(TargetRequest::from_full_path("/targets/../etc?").is_err());
    }

    #[test]
    fn job_round_trips_and_old_jobs_use_extra_args() {
        let r = req("svc", &[("env", "prod"), ("env", "dev")]);
        let job = r.job(1_700_000_000.5);
        assert_eq!(job.job_id, "/targets/svc?env=prod&env=dev:1700000000");
        let json = job.to_json();
        let back: Job = serde_json::from_str(&json).unwrap();
        assert_eq!(back.request().unwrap(), r);
        assert_eq!(back.extra_args["env"], "prod");

        let old: Job = serde_json::from_str(
            r#"{"full_path": "/targets/svc?env=prod", "path": "svc", "extra_args": {"env": "prod", "n": 3}, "job_id": "x"}"#,
        )
        .unwrap();
        let r = old.request().unwrap();
        assert_eq!(r.path.as_slash_path(), "svc");
        assert_eq!(
            r.params,
            vec![("env".into(), "prod".into()), ("n".into(), "3".into())]
        );
    }

    #[test]
    fn entry_results_stay_raw() {
        let groups = vec![TargetGroup {
            targets: vec!["a:1".into()],
            labels: vec![("job".into(), "x".into())],
        }];
        let meta = EntryMeta {
            fingerprint: "abc".into(),
            ..EntryMeta::default()
        };
        let bytes = encode_entry(12.5, &groups, &meta);
        let view = EntryView::parse(&bytes).unwrap();
        assert_eq!(view.updated_timestamp, 12.5);
        assert_eq!(
            view.results,
            r#"[{"targets":["a:1"],"labels":{"job":"x"}}]"#
        );
        assert_eq!(view.fingerprint(), Some("abc"));
        assert!(
            EntryView::parse_own(&bytes).is_some(),
            "our own layout takes the fast path"
        );
        // An entry written by the old tool has no httpsd section.
        let old = br#"{"updated_timestamp": 1.0, "results": []}"#;
        assert!(EntryView::parse_own(old).is_none());
        assert_eq!(EntryView::parse(old).unwrap().fingerprint(), None);
        // Another field order, or our prefix with anything odd after it, is parsed in full.
        let reordered = br#"{"results":[{"targets":["b:2"],"labels":{}}],"updated_timestamp":3}"#;
        assert_eq!(EntryView::parse(reordered).unwrap().updated_timestamp, 3.0);
        let extra = br#"{"updated_timestamp":1,"httpsd":{},"results":[],"more":1}"#;
        assert!(EntryView::parse_own(extra).is_none());
        assert_eq!(EntryView::parse(extra).unwrap().results, "[]");
        let broken = br#"{"updated_timestamp":1,"httpsd":{"fingerprint":"a"},"results":[}"#;
        assert!(EntryView::parse(broken).is_err());
    }

    /// Strings that take every escape serde_json has, and some it does not.
    fn awkward() -> String {
        let mut s: String = (0u8..0x20).map(char::from).collect();
        s.push_str("\"quoted\" back\\slash /slash \u{7f} é 日本 🦀 </script>");
        s
    }

    #[test]
    fn jobs_encode_exactly_as_serde_json_and_never_empty() {
        let mut extra_args = serde_json::Map::new();
        extra_args.insert(awkward(), serde_json::Value::String(awkward()));
        extra_args.insert(
            "n".into(),
            serde_json::json!([null, true, false, 3, -4, 2.5, 1e300, {"k": [1.0]}]),
        );
        let mut jobs = vec![
            req("svc", &[("env", "prod"), ("env", "dev")]).job(1_700_000_000.5),
            Job {
                full_path: awkward(),
                path: awkward(),
                extra_args,
                job_id: String::new(),
                params: Some(vec![(awkward(), String::new())]),
                enqueued_at: Some(0.1),
            },
        ];
        for at in [
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(1e-7),
            Some(-0.0),
        ] {
            jobs.push(Job {
                enqueued_at: at,
                params: at.map(|_| Vec::new()),
                ..jobs[0].clone()
            });
        }
        for job in &jobs {
            let ours = job.to_json();
            assert_eq!(ours, serde_json::to_string(job).unwrap());
            assert!(!ours.is_empty());
            serde_json::from_str::<Job>(&ours).unwrap();
        }
    }

    #[test]
    fn entries_encode_exactly_as_serde_json() {
        #[derive(Serialize)]
        struct Reference<'a> {
            updated_timestamp: f64,
            httpsd: &'a EntryMeta,
            results: &'a [TargetGroup],
        }
        let meta = EntryMeta {
            fingerprint: awkward(),
            job_id: "/targets/a?:1".into(),
            worker_id: "w1".into(),
            processing_time: 0.125,
            targets: 3,
        };
        let groups = [
            TargetGroup {
                targets: vec!["a:1".into(), awkward()],
                labels: vec![("job".into(), awkward()), ("job".into(), "twice".into())],
            },
            TargetGroup {
                targets: Vec::new(),
                labels: Vec::new(),
            },
        ];
        for (updated, results) in [(12.5, &groups[..]), (f64::NAN, &[][..])] {
            let reference = Reference {
                updated_timestamp: updated,
                httpsd: &meta,
                results,
            };
            assert_eq!(
                String::from_utf8(encode_entry(updated, results, &meta)).unwrap(),
                serde_json::to_string(&reference).unwrap()
            );
        }
    }

    #[test]
    fn error_entries_encode_exactly_as_serde_json() {
        let mut extra_args = serde_json::Map::new();
        extra_args.insert("env".into(), serde_json::Value::String(awkward()));
        let details = ErrorDetails {
            error_type: "GeneratorError".into(),
            error_message: awkward(),
            traceback: format!("Traceback:\n{}", awkward()),
            worker_id: "w1".into(),
            job_id: "/targets/a?:1".into(),
            path: "a".into(),
            extra_args,
            timestamp: "2024-01-01T00:00:00Z".into(),
            processing_time: 1.5,
            generator: Some("gen.wasm".into()),
            full_path: Some("/targets/a?".into()),
        };
        let without = ErrorDetails {
            generator: None,
            full_path: None,
            ..details.clone()
        };
        for details in [details, without] {
            let entry = ErrorEntry::new(1_700_000_000.25, details);
            assert_eq!(entry.to_vec(), serde_json::to_vec(&entry).unwrap());
        }
    }

    /// The names are the wire format: the old tool and older httpsd processes of a mixed
    /// fleet read and write these very keys.
    #[test]
    fn key_names_are_the_wire_format() {
        assert_eq!(PREFIX, "httpsd:");
        assert_eq!(ERROR_PREFIX, "error:");
        assert_eq!(MARKER_PREFIX, "httpsd:job:");
        assert_eq!(LEASE_PREFIX, "httpsd:lease:");
        assert_eq!(ATTEMPTS_PREFIX, "httpsd:attempts:");
        assert_eq!(RUN_PREFIX, "httpsd:run:");
        assert_eq!(HISTORY_PREFIX, "httpsd:history:");
        assert_eq!(RELOAD_PREFIX, "httpsd:reload:");
        assert_eq!(RETRY_PREFIX, "httpsd:retry:");
        assert_eq!(INVALIDATE_CHANNEL, "httpsd:invalidate");
        assert_eq!(error_key("/targets/a?"), "error:/targets/a?");
        assert_eq!(marker_key("/targets/a?"), "httpsd:job:/targets/a?");
        assert_eq!(run_key("/targets/a?"), "httpsd:run:/targets/a?");
        assert_eq!(history_key("/targets/a?"), "httpsd:history:/targets/a?");
        assert_eq!(reload_key("/targets/a?"), "httpsd:reload:/targets/a?");
    }
}

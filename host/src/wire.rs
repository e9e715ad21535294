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
/// The common prefix of httpsd's own keys (dedupe markers, leases, attempts, runs).
pub const PREFIX: &str = "httpsd:";

/// `error:<full_path>`.
pub fn error_key(full_path: &str) -> String {
    format!("error:{full_path}")
}

/// `httpsd:job:<full_path>`: the dedupe marker, a hash with the state (queued or
/// running) of the one job allowed per path.
pub fn marker_key(full_path: &str) -> String {
    format!("{PREFIX}job:{full_path}")
}

/// `httpsd:run:<full_path>`: what the last run did, per generator (for debug).
pub fn run_key(full_path: &str) -> String {
    format!("{PREFIX}run:{full_path}")
}

/// `httpsd:history:<full_path>`: a list of the last [`HISTORY_LEN`] runs' summaries,
/// newest first (the admin page's run history).
pub fn history_key(full_path: &str) -> String {
    format!("{PREFIX}history:{full_path}")
}

/// Runs kept in a path's history.
pub const HISTORY_LEN: usize = 20;

/// `httpsd:reload:<full_path>`: set for `--reload-cooldown` by a reload; while it
/// exists, reloads of the path are refused.
pub fn reload_key(full_path: &str) -> String {
    format!("{PREFIX}reload:{full_path}")
}

/// The parameters that steer httpsd itself; never passed to generators, never part of
/// the cache key.
pub const CONTROL_PARAMS: [&str; 2] = ["debug", "reload"];

/// What a request asks for, as the cache and the queue know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRequest {
    pub path: TargetPath,
    /// Query parameters in request order, repeats kept, control parameters removed.
    pub params: Vec<(String, String)>,
    /// `/targets/<path>?<query>`: the cache key, with the `?` always present.
    pub full_path: String,
}

impl TargetRequest {
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
        Ok(TargetRequest::new(path, crate::runtime::parse_query(query)))
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
    pub full_path: String,
    pub path: String,
    #[serde(default)]
    pub extra_args: serde_json::Map<String, serde_json::Value>,
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
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
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
    pub job_id: String,
    pub worker_id: String,
    pub processing_time: f64,
    pub targets: usize,
}

/// Writes `{"updated_timestamp", "results", "httpsd"}`.
pub fn encode_entry(updated: f64, results: &[TargetGroup], meta: &EntryMeta) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        updated_timestamp: f64,
        httpsd: &'a EntryMeta,
        results: &'a [TargetGroup],
    }
    serde_json::to_vec(&Out {
        updated_timestamp: updated,
        httpsd: meta,
        results,
    })
    .unwrap_or_default()
}

/// A cache entry as read on the request path: the results stay raw JSON text so a hit
/// never re-serialises them.
#[derive(Debug)]
pub struct EntryView<'a> {
    pub updated_timestamp: f64,
    /// The `results` array as written.
    pub results: &'a str,
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

#[derive(Debug, Deserialize)]
pub struct EntryMetaView<'a> {
    #[serde(default, borrow)]
    pub fingerprint: Option<&'a str>,
    /// Targets in `results` (absent in entries of other writers: count them then).
    #[serde(default)]
    pub targets: Option<usize>,
}

impl<'a> EntryView<'a> {
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

    pub fn fingerprint(&self) -> Option<&'a str> {
        self.httpsd.as_ref().and_then(|m| m.fingerprint)
    }
}

/// A cache entry parsed once, owning what the hit path needs: the server's local cache
/// keeps these, so a hit it answers costs no parse at all, only reading a timestamp.
#[derive(Debug)]
pub struct ParsedEntry {
    pub updated_timestamp: f64,
    /// A slice of the fetched bytes too: parsing allocates nothing per request.
    pub fingerprint: Option<bytes::Bytes>,
    /// The `results` array as written: a slice of the fetched bytes, no copy.
    pub results: bytes::Bytes,
    /// Bytes of the whole entry as fetched (what keeping it costs in memory).
    pub size: usize,
}

impl ParsedEntry {
    pub fn parse(bytes: &bytes::Bytes) -> Result<ParsedEntry, serde_json::Error> {
        let view = EntryView::parse(bytes)?;
        Ok(ParsedEntry {
            updated_timestamp: view.updated_timestamp,
            fingerprint: view.fingerprint().map(|f| bytes.slice_ref(f.as_bytes())),
            results: bytes.slice_ref(view.results.as_bytes()),
            size: bytes.len(),
        })
    }
}

/// `error_details` of `error:<full_path>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetails {
    pub error_type: String,
    pub error_message: String,
    pub traceback: String,
    pub worker_id: String,
    pub job_id: String,
    pub path: String,
    #[serde(default)]
    pub extra_args: serde_json::Map<String, serde_json::Value>,
    /// ISO 8601.
    pub timestamp: String,
    pub processing_time: f64,
    /// Ours: the generator that failed (relative to the root), and the full path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_path: Option<String>,
}

/// `{"updated_timestamp", "status": "error", "error_details"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEntry {
    pub updated_timestamp: f64,
    pub status: String,
    pub error_details: ErrorDetails,
}

impl ErrorEntry {
    pub fn new(updated: f64, details: ErrorDetails) -> ErrorEntry {
        ErrorEntry {
            updated_timestamp: updated,
            status: "error".into(),
            error_details: details,
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
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
}

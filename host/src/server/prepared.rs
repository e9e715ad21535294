//! A memo of recently requested `/targets` URLs: the decoded request, its generators
//! and its metric handles, so a cache hit for a URL Prometheus polls again and again
//! skips decoding, the tree lookup and the metric label lookups. Entries live as long
//! as the tree index trusts its generator list (`--tree-refresh`), and the memo is
//! bounded, so random URLs cannot grow it.

use crate::metrics::{Metrics, dir_labels};
use crate::sync::unpoison;
use crate::targets::{Indexed, PathIndex};
use crate::wire::TargetRequest;
use prometheus::{Histogram, IntCounter, IntGauge};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Most URLs remembered; past that the memo starts over.
const MAX_URLS: usize = 10_000;

/// One URL's request, generators and metrics.
pub struct Prepared {
    /// The decoded request.
    pub req: TargetRequest,
    /// Its generators and their fingerprint.
    pub indexed: Arc<Indexed>,
    success: IntCounter,
    fail: IntCounter,
    miss: IntCounter,
    expired: IntCounter,
    /// `httpsd_path_request_duration_seconds{path}`.
    pub duration: Histogram,
    /// `httpsd_path_last_generated_targets{path}`, set on every 200 as 3.x's server did.
    last_targets: IntGauge,
}

impl Prepared {
    /// Looks up the URL's metric handles once.
    pub fn new(req: TargetRequest, indexed: Arc<Indexed>, metrics: &Metrics) -> Prepared {
        let display = req.display_path();
        let (l1, l2) = dir_labels(&req.path);
        let counter = |status: &str| {
            metrics
                .path_requests
                .with_label_values(&[display.as_str(), status, l1, l2])
        };
        Prepared {
            success: counter("success"),
            fail: counter("fail"),
            miss: counter("cache-not-exist"),
            expired: counter("cache-expired"),
            duration: metrics
                .path_request_duration
                .with_label_values(&[display.as_str()]),
            last_targets: metrics
                .path_last_generated_targets
                .with_label_values(&[display.as_str()]),
            req,
            indexed,
        }
    }

    /// A 200 served `targets` targets.
    pub fn served_targets(&self, targets: usize) {
        self.last_targets
            .set(i64::try_from(targets).unwrap_or(i64::MAX));
    }

    /// Counts one answer by its `status` label.
    pub fn count(&self, status: &str) {
        match status {
            "success" => self.success.inc(),
            "cache-not-exist" => self.miss.inc(),
            "cache-expired" => self.expired.inc(),
            _ => self.fail.inc(),
        }
    }
}

/// URL (path and query as received) to its [`Prepared`], bounded (`MAX_URLS`).
#[derive(Default)]
pub struct PreparedMemo {
    map: RwLock<HashMap<String, Arc<Prepared>>>,
}

impl PreparedMemo {
    /// The memo entry of `url` (path and query as received), if still current.
    pub fn get(&self, url: &str, index: &PathIndex) -> Option<Arc<Prepared>> {
        let map = unpoison(self.map.read());
        map.get(url)
            .filter(|p| index.is_current(&p.indexed))
            .cloned()
    }

    /// Remembers `url`; a full memo starts over (random URLs cannot grow it).
    pub fn insert(&self, url: &str, prepared: Arc<Prepared>) {
        let mut map = unpoison(self.map.write());
        if map.len() >= MAX_URLS {
            map.clear();
        }
        map.insert(url.to_string(), prepared);
    }
}

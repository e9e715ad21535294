//! The embedded store of `httpsd serve`: the same semantics as the Redis store, in one
//! process's memory. Expiry is checked on read and swept when orphans are looked for
//! (the worker's reaper does that periodically).
//!
//! Bounded, since one process holds everything: at most [`MemoryBounds::max_paths`]
//! paths and [`MemoryBounds::max_bytes`] bytes of cache entries, errors, run reports
//! and histories. Past either, the least recently used paths are evicted, each whole
//! (entry, error, run report and history together); a path with a job queued or
//! running is never evicted. The order is a segmented LRU (`lru.rs`): a path's first
//! cache hit protects it from a flood of paths asked for once, and every hit, write and
//! eviction is O(1). A result that could not fit even alone, or a value over
//! [`MemoryBounds::max_value_bytes`], is refused ([`StoreError::Refused`]) and fails
//! only its own job, instead of evicting everything else.

use super::lru::{Lru, Slot};
use super::{
    CoolingDown, DebugView, Finished, JobState, JobStatus, NewJob, Outcome, ReloadOutcome,
    Retention, Store, StoreError, StoreResult, Taken, check_value_sizes,
};
use crate::clock::now_unix;
use crate::metrics::MemoryStoreMetrics;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How much the memory store holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBounds {
    /// Paths with an entry, an error, a run report or a history.
    pub max_paths: usize,
    /// Bytes of their keys, entries, errors, run reports and histories (plus a small
    /// fixed cost per path, [`PATH_OVERHEAD`]).
    pub max_bytes: u64,
    /// The largest single value (entry, error, run report).
    pub max_value_bytes: u64,
}

impl Default for MemoryBounds {
    fn default() -> Self {
        MemoryBounds {
            max_paths: 10_000,
            max_bytes: 256 << 20,
            max_value_bytes: super::DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// What one path costs beyond its key and values, in the byte count (its map entry,
/// its recency node, the timestamps): an estimate, so many tiny paths count too.
pub const PATH_OVERHEAD: usize = 256;

/// What the memory store holds now, and how many paths it has evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// Paths held (with an entry, an error, a run report or a history).
    pub paths: usize,
    /// Their byte count, as counted against [`MemoryBounds::max_bytes`].
    pub bytes: u64,
    /// Paths evicted by the bounds since the store was made (expiry not counted).
    pub evictions: u64,
}

struct Marker {
    state: JobState,
    lease_id: String,
    raw: String,
    worker_id: String,
    since: f64,
    expires: Instant,
    /// The path was reloaded while this job ran: when it ends its result is written
    /// and it runs once more (at most one run per path at a time).
    rerun: bool,
}

/// A value and when it expires.
struct Timed {
    value: Bytes,
    expires: Instant,
}

/// A kept copy of `value`, for a field of [`PathData`].
fn timed(value: &[u8], expires: Instant) -> Option<Timed> {
    Some(Timed {
        value: Bytes::copy_from_slice(value),
        expires,
    })
}

fn live(value: &Option<Timed>, now: Instant) -> Option<&Bytes> {
    value.as_ref().filter(|t| t.expires > now).map(|t| &t.value)
}

fn len_of(value: &Option<Timed>) -> usize {
    value.as_ref().map_or(0, |t| t.value.len())
}

/// Everything kept about one path, evicted together.
struct PathData {
    entry: Option<Timed>,
    error: Option<Timed>,
    run: Option<Timed>,
    /// Run summaries, newest first, and when the list expires.
    history: VecDeque<Bytes>,
    history_expires: Instant,
    /// Its place in the recency order.
    slot: Slot,
    /// What it counts against [`MemoryBounds::max_bytes`] (see [`PathData::size`]).
    bytes: usize,
}

impl PathData {
    fn history_bytes(&self) -> usize {
        self.history.iter().map(Bytes::len).sum()
    }

    /// Its byte count: the key twice (map and recency list), the values, the overhead.
    fn size(&self, key_len: usize) -> usize {
        PATH_OVERHEAD
            + 2 * key_len
            + len_of(&self.entry)
            + len_of(&self.error)
            + len_of(&self.run)
            + self.history_bytes()
    }

    fn is_empty(&self) -> bool {
        self.entry.is_none()
            && self.error.is_none()
            && self.run.is_none()
            && self.history.is_empty()
    }

    /// Drops what has expired.
    fn expire(&mut self, now: Instant) {
        for value in [&mut self.entry, &mut self.error, &mut self.run] {
            if value.as_ref().is_some_and(|t| t.expires <= now) {
                *value = None;
            }
        }
        if self.history_expires <= now {
            self.history.clear();
        }
    }

    /// Records a finished run: its report and its history line.
    fn record_run(&mut self, f: &Finished, now: Instant, ttl: Duration) {
        self.run = timed(&f.run, now + ttl);
        if !f.summary.is_empty() {
            self.history.push_front(Bytes::copy_from_slice(&f.summary));
            self.history.truncate(crate::wire::HISTORY_LEN);
            self.history_expires = now + ttl;
        }
    }
}

/// Why a path was evicted (the `reason` label of the metric).
#[derive(Clone, Copy)]
enum Pressure {
    Paths,
    Bytes,
}

#[derive(Default)]
struct State {
    /// Entries, errors, run reports and histories by full_path.
    paths: HashMap<String, PathData>,
    /// The keys of `paths`, most recently used first.
    lru: Lru,
    /// The sum of the paths' byte counts.
    bytes: usize,
    evictions: u64,
    /// Paths whose last run failed, until when polls do not run them again.
    retry: HashMap<String, Instant>,
    queue: VecDeque<String>,
    processing: VecDeque<String>,
    markers: HashMap<String, Marker>,
    leases: HashMap<String, Instant>,
    attempts: HashMap<String, u32>,
    /// When each path's reload cooldown ends.
    reloads: HashMap<String, Instant>,
}

impl State {
    /// The live cache entry of `full_path`; a hit makes the path the most recently
    /// used (O(1)).
    fn hit(&mut self, full_path: &str) -> Option<Bytes> {
        let path = self.paths.get(full_path)?;
        let entry = live(&path.entry, Instant::now())?.clone();
        self.lru.touch(path.slot);
        Some(entry)
    }

    fn marker(&self, full_path: &str) -> Option<&Marker> {
        self.markers
            .get(full_path)
            .filter(|m| m.expires > Instant::now())
    }

    fn status(&self, full_path: &str) -> Option<JobStatus> {
        self.marker(full_path).map(|m| JobStatus {
            state: m.state,
            worker_id: m.worker_id.clone(),
            since: m.since,
        })
    }

    fn view(&self, full_path: &str) -> DebugView {
        let now = Instant::now();
        let path = self.paths.get(full_path);
        let value =
            |pick: fn(&PathData) -> &Option<Timed>| path.and_then(|p| live(pick(p), now)).cloned();
        DebugView {
            entry: value(|p| &p.entry),
            error: value(|p| &p.error),
            job: self.status(full_path),
            run: value(|p| &p.run),
            history: path
                .filter(|p| p.history_expires > now)
                .map(|p| p.history.iter().cloned().collect())
                .unwrap_or_default(),
            reload_cooldown: self
                .reloads
                .get(full_path)
                .filter(|until| **until > now)
                .map(|until| *until - now),
        }
    }

    /// Changes what is kept about `full_path` (adding the path if new), then counts its
    /// bytes again and makes it the most recently used; a path left with nothing is
    /// dropped.
    fn update(&mut self, full_path: &str, change: impl FnOnce(&mut PathData)) {
        if !self.paths.contains_key(full_path) {
            let slot = self.lru.push_front(full_path.to_string());
            self.paths.insert(
                full_path.to_string(),
                PathData {
                    entry: None,
                    error: None,
                    run: None,
                    history: VecDeque::new(),
                    history_expires: Instant::now(),
                    slot,
                    bytes: 0,
                },
            );
        }
        let Some(path) = self.paths.get_mut(full_path) else {
            return;
        };
        change(path);
        let before = path.bytes;
        path.bytes = path.size(full_path.len());
        self.bytes = self.bytes - before + path.bytes;
        // A write is not a use: only a hit protects a path (`lru.rs`).
        self.lru.refresh(path.slot);
        if path.is_empty() {
            self.drop_path(full_path);
        }
    }

    fn drop_path(&mut self, full_path: &str) {
        if let Some(path) = self.paths.remove(full_path) {
            self.lru.remove(path.slot);
            self.bytes -= path.bytes;
        }
    }

    /// Removes the live entry (`error` false) or error of `full_path`; whether there
    /// was one.
    fn remove(&mut self, full_path: &str, error: bool) -> bool {
        let now = Instant::now();
        let Some(path) = self.paths.get(full_path) else {
            return false;
        };
        let value = if error { &path.error } else { &path.entry };
        if value.is_none() {
            return false;
        }
        let was_live = live(value, now).is_some();
        self.update(full_path, |p| {
            if error {
                p.error = None;
            } else {
                p.entry = None;
            }
        });
        was_live
    }

    /// The byte count `full_path` would have with `f` written: what the bound must
    /// leave room for.
    fn size_with(&self, f: &Finished) -> usize {
        let now = Instant::now();
        let path = self.paths.get(&f.full_path);
        let kept = |pick: fn(&PathData) -> &Option<Timed>| {
            path.and_then(|p| live(pick(p), now)).map_or(0, Bytes::len)
        };
        let (entry, error) = match &f.outcome {
            Outcome::Entry(e) => (e.len(), 0),
            Outcome::Error(e) => (kept(|p| &p.entry), e.len()),
            Outcome::Discard => (kept(|p| &p.entry), kept(|p| &p.error)),
        };
        let history = path
            .filter(|p| p.history_expires > now)
            .map_or(0, PathData::history_bytes);
        PATH_OVERHEAD
            + 2 * f.full_path.len()
            + entry
            + error
            + f.run.len()
            + history
            + f.summary.len()
    }

    /// Evicts paths in the order of `lru.rs` (on probation first, least recently used
    /// first) until both bounds hold, passing over (and refreshing) paths with a job
    /// queued or running and the paths in `written` (results written just now, which
    /// must not be lost before anyone has read them). Returns the evictions by reason.
    fn evict(&mut self, bounds: &MemoryBounds, written: &[&str]) -> Vec<Pressure> {
        let mut evicted = Vec::new();
        // Paths passed over in each segment (probation, protected): once every path of
        // a segment was, the next candidates come from the other.
        let mut passed = [0usize; 2];
        loop {
            let pressure = if self.paths.len() > bounds.max_paths {
                Pressure::Paths
            } else if self.bytes as u64 > bounds.max_bytes {
                Pressure::Bytes
            } else {
                break;
            };
            // Every path left has a job or was just written: nothing can go now (the
            // next write tries again).
            let Some((slot, key)) = [false, true]
                .into_iter()
                .filter(|p| passed[usize::from(*p)] < self.lru.len_of(*p))
                .find_map(|p| self.lru.back_of(p))
            else {
                break;
            };
            let key = key.to_string();
            if self.marker(&key).is_some() || written.contains(&key.as_str()) {
                passed[usize::from(self.lru.is_protected(slot))] += 1;
                self.lru.refresh(slot);
                continue;
            }
            self.drop_path(&key);
            self.evictions += 1;
            evicted.push(pressure);
        }
        evicted
    }

    fn push(&mut self, job: &NewJob, marker_ttl: Duration) {
        self.queue.push_front(job.raw.clone());
        self.markers.insert(
            job.full_path.clone(),
            Marker {
                state: JobState::Queued,
                lease_id: lease_id(&job.raw),
                raw: job.raw.clone(),
                worker_id: String::new(),
                since: now_unix(),
                expires: Instant::now() + marker_ttl,
                rerun: false,
            },
        );
    }

    /// The marker of the job `raw`, if the marker still belongs to it.
    fn marker_of(&mut self, raw: &str, id: &str) -> Option<&mut Marker> {
        let full_path = full_path_of(raw)?;
        self.markers
            .get_mut(&full_path)
            .filter(|m| m.lease_id == id)
    }

    fn processing_contains(&self, raw: &str) -> bool {
        self.processing.iter().any(|r| r == raw)
    }

    fn remove_processing(&mut self, raw: &str) -> bool {
        match self.processing.iter().position(|r| r == raw) {
            Some(i) => {
                self.processing.remove(i);
                true
            }
            None => false,
        }
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let mut emptied = Vec::new();
        let mut bytes = 0;
        for (key, path) in &mut self.paths {
            path.expire(now);
            path.bytes = path.size(key.len());
            bytes += path.bytes;
            if path.is_empty() {
                emptied.push(key.clone());
            }
        }
        self.bytes = bytes;
        for key in emptied {
            self.drop_path(&key);
        }
        self.markers.retain(|_, m| m.expires > now);
        self.leases.retain(|_, exp| *exp > now);
        self.retry.retain(|_, until| *until > now);
        self.reloads.retain(|_, until| *until > now);
    }

    fn usage(&self) -> MemoryUsage {
        MemoryUsage {
            paths: self.paths.len(),
            bytes: self.bytes as u64,
            evictions: self.evictions,
        }
    }
}

/// The in-process store.
pub struct MemoryStore {
    state: Mutex<State>,
    /// Wakes a waiting [`Store::take`] when a job is pushed.
    pushed: tokio::sync::Notify,
    retention: Retention,
    bounds: MemoryBounds,
    metrics: Option<MemoryStoreMetrics>,
}

impl MemoryStore {
    /// A store with the default [`MemoryBounds`].
    pub fn new(retention: Retention) -> MemoryStore {
        MemoryStore::with_bounds(retention, MemoryBounds::default())
    }

    /// A store with `bounds`.
    pub fn with_bounds(retention: Retention, bounds: MemoryBounds) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            pushed: tokio::sync::Notify::new(),
            retention,
            bounds,
            metrics: None,
        }
    }

    /// Reports evictions and the bytes and paths held on these metrics.
    pub fn with_metrics(mut self, metrics: MemoryStoreMetrics) -> MemoryStore {
        metrics.bytes.set(0);
        metrics.paths.set(0);
        self.metrics = Some(metrics);
        self
    }

    /// The queue holds at most `max_paths` jobs: each queued path will need a place
    /// among the paths, and a client asking for many distinct parameter sets faster than
    /// they run must not grow the queue (and its markers) without end. A job past the
    /// bound is refused (the server answers 503 with the reason, and Prometheus retries).
    fn check_queue_room(&self, s: &State) -> StoreResult<()> {
        if s.queue.len() < self.bounds.max_paths {
            return Ok(());
        }
        Err(StoreError::Refused {
            reason: format!(
                "the job queue is full ({} jobs waiting, the --memory-store-max-paths bound)",
                s.queue.len()
            ),
            item: None,
        })
    }

    /// The bounds the store was made with.
    pub fn bounds(&self) -> MemoryBounds {
        self.bounds
    }

    /// The paths and bytes held now, and the evictions so far.
    pub fn usage(&self) -> MemoryUsage {
        self.lock().usage()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        super::lock(&self.state)
    }

    /// Sets the gauges and counts `evicted`.
    fn publish(&self, s: &State, evicted: &[Pressure]) {
        let Some(m) = &self.metrics else {
            return;
        };
        m.bytes.set(s.bytes as i64);
        m.paths.set(s.paths.len() as i64);
        for p in evicted {
            let reason = match p {
                Pressure::Paths => "paths",
                Pressure::Bytes => "bytes",
            };
            m.evictions.with_label_values(&[reason]).inc();
        }
    }

    fn take_now(&self, worker_id: &str, max: usize) -> Vec<Taken> {
        let mut s = self.lock();
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(raw) = s.queue.pop_back() else {
                break;
            };
            s.processing.push_front(raw.clone());
            let id = lease_id(&raw);
            s.leases
                .insert(id.clone(), Instant::now() + self.retention.lease);
            let attempts = {
                let a = s.attempts.entry(id.clone()).or_insert(0);
                *a += 1;
                *a
            };
            let marker_ttl = self.retention.marker;
            if let Some(full_path) = full_path_of(&raw) {
                let marker = s.markers.entry(full_path).or_insert_with(|| Marker {
                    state: JobState::Running,
                    lease_id: id.clone(),
                    raw: raw.clone(),
                    worker_id: String::new(),
                    since: 0.0,
                    expires: Instant::now(),
                    rerun: false,
                });
                if marker.lease_id == id || marker.expires <= Instant::now() {
                    marker.state = JobState::Running;
                    marker.lease_id = id.clone();
                    marker.raw = raw.clone();
                    marker.worker_id = worker_id.to_string();
                    marker.since = now_unix();
                    marker.expires = Instant::now() + marker_ttl;
                }
            }
            taken.push(Taken {
                raw,
                lease_id: id,
                attempts,
            });
        }
        taken
    }
}

/// The lease id of a job: a hash of its bytes, as the Redis store's `sha1hex`.
fn lease_id(raw: &str) -> String {
    blake3::hash(raw.as_bytes()).to_hex()[..40].to_string()
}

fn full_path_of(raw: &str) -> Option<String> {
    serde_json::from_str::<crate::wire::Job>(raw)
        .ok()
        .map(|j| j.full_path)
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn get_entry(&self, full_path: &str) -> StoreResult<Option<Bytes>> {
        Ok(self.lock().hit(full_path))
    }

    async fn debug_view(&self, full_path: &str) -> StoreResult<DebugView> {
        Ok(self.lock().view(full_path))
    }

    async fn overview(&self, full_paths: &[String]) -> StoreResult<Vec<DebugView>> {
        let s = self.lock();
        Ok(full_paths.iter().map(|p| s.view(p)).collect())
    }

    async fn enqueue(&self, job: &NewJob) -> StoreResult<bool> {
        {
            let mut s = self.lock();
            let now = Instant::now();
            let failed_recently = s.retry.get(&job.full_path).is_some_and(|t| *t > now);
            if failed_recently || s.marker(&job.full_path).is_some() {
                return Ok(false);
            }
            s.retry.remove(&job.full_path);
            self.check_queue_room(&s)?;
            s.push(job, self.retention.marker);
        }
        self.pushed.notify_one();
        Ok(true)
    }

    async fn reload(
        &self,
        job: &NewJob,
        cooldown: Duration,
    ) -> StoreResult<Result<ReloadOutcome, CoolingDown>> {
        let outcome = {
            let mut s = self.lock();
            let now = Instant::now();
            if !cooldown.is_zero() {
                if let Some(until) = s.reloads.get(&job.full_path).filter(|u| **u > now) {
                    return Ok(Err(CoolingDown(*until - now)));
                }
                s.reloads.insert(job.full_path.clone(), now + cooldown);
            }
            let cache_cleared = s.remove(&job.full_path, false);
            let error_cache_cleared = s.remove(&job.full_path, true);
            s.retry.remove(&job.full_path);
            let current = s.marker(&job.full_path).map(|m| (m.state, m.raw.clone()));
            let mut enqueued = true;
            match current {
                Some((JobState::Queued, raw)) if s.queue.contains(&raw) => enqueued = false,
                Some((JobState::Running, raw)) if s.processing_contains(&raw) => {
                    if let Some(m) = s.markers.get_mut(&job.full_path) {
                        m.rerun = true;
                    }
                }
                _ => {
                    self.check_queue_room(&s)?;
                    s.push(job, self.retention.marker);
                }
            }
            self.publish(&s, &[]);
            ReloadOutcome {
                cache_cleared,
                error_cache_cleared,
                enqueued,
            }
        };
        if outcome.enqueued {
            self.pushed.notify_one();
        }
        Ok(Ok(outcome))
    }

    async fn take(&self, worker_id: &str, max: usize, wait: Duration) -> StoreResult<Vec<Taken>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a push in between is not missed.
            let notified = self.pushed.notified();
            let taken = self.take_now(worker_id, max.max(1));
            if !taken.is_empty() {
                return Ok(taken);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn heartbeat(&self, running: &[Taken]) -> StoreResult<usize> {
        let mut s = self.lock();
        let now = Instant::now();
        let mut lost = 0;
        for t in running {
            let state = &mut *s;
            match state.leases.get_mut(&t.lease_id) {
                Some(exp) if *exp > now => *exp = now + self.retention.lease,
                // Without a lease but still in processing: lost. (Gone from processing:
                // it finished a moment ago.)
                _ if state.processing.contains(&t.raw) => lost += 1,
                _ => {}
            }
            if let Some(m) = s.marker_of(&t.raw, &t.lease_id) {
                m.expires = now + self.retention.marker;
            }
        }
        Ok(lost)
    }

    async fn finish(&self, done: &[Finished]) -> StoreResult<()> {
        let mut repushed = false;
        {
            let mut s = self.lock();
            // Everything is checked before anything is written: a refused batch leaves
            // no trace, and the caller writes the others again without the refused one.
            for (i, f) in done.iter().enumerate() {
                if matches!(f.outcome, Outcome::Discard) {
                    continue;
                }
                check_value_sizes(i, f, self.bounds.max_value_bytes)?;
                let size = s.size_with(f);
                if size as u64 > self.bounds.max_bytes {
                    return Err(StoreError::Refused {
                        reason: format!(
                            "with it the path would hold {size} bytes, over the memory store's bound of {} bytes for everything (--memory-store-max-bytes)",
                            self.bounds.max_bytes
                        ),
                        item: Some(i),
                    });
                }
            }
            let now = Instant::now();
            let (cache_ttl, error_ttl) = (self.retention.cache, self.retention.error);
            for f in done {
                s.remove_processing(&f.taken.raw);
                s.leases.remove(&f.taken.lease_id);
                s.attempts.remove(&f.taken.lease_id);
                // Some(rerun) when the path's marker is this job's, running. (Queued
                // again, by the reaper or a hand-back, it stays: the job will run.)
                let mine = s
                    .markers
                    .get(&f.full_path)
                    .filter(|m| m.lease_id == f.taken.lease_id && m.state == JobState::Running)
                    .map(|m| m.rerun);
                match &f.outcome {
                    Outcome::Discard => {}
                    Outcome::Entry(entry) => s.update(&f.full_path, |p| {
                        p.entry = timed(entry, now + cache_ttl);
                        p.error = None;
                        p.record_run(f, now, cache_ttl);
                    }),
                    Outcome::Error(error) => {
                        s.update(&f.full_path, |p| {
                            p.error = timed(error, now + error_ttl);
                            p.record_run(f, now, cache_ttl);
                        });
                        s.retry
                            .insert(f.full_path.clone(), now + self.retention.retry);
                    }
                }
                match mine {
                    // Reloaded while it ran: its result is written all the same (a
                    // client reloading a slow path cannot keep it unanswered), and it
                    // runs once more for the reload.
                    Some(true) => {
                        let job = NewJob {
                            full_path: f.full_path.clone(),
                            raw: f.taken.raw.clone(),
                        };
                        s.push(&job, self.retention.marker);
                        repushed = true;
                    }
                    Some(false) => {
                        s.markers.remove(&f.full_path);
                    }
                    None => {}
                }
            }
            let written: Vec<&str> = done.iter().map(|f| f.full_path.as_str()).collect();
            let evicted = s.evict(&self.bounds, &written);
            self.publish(&s, &evicted);
        }
        if repushed {
            self.pushed.notify_one();
        }
        Ok(())
    }

    async fn hand_back(&self, taken: &[Taken]) -> StoreResult<()> {
        let mut pushed = false;
        {
            let mut s = self.lock();
            for t in taken {
                if s.remove_processing(&t.raw) {
                    s.queue.push_back(t.raw.clone());
                    pushed = true;
                }
                s.leases.remove(&t.lease_id);
                if let Some(a) = s.attempts.get_mut(&t.lease_id) {
                    *a = a.saturating_sub(1);
                }
                if let Some(m) = s.marker_of(&t.raw, &t.lease_id) {
                    m.state = JobState::Queued;
                    m.worker_id.clear();
                    m.since = now_unix();
                }
            }
        }
        if pushed {
            self.pushed.notify_one();
        }
        Ok(())
    }

    async fn orphans(&self) -> StoreResult<Vec<String>> {
        let mut s = self.lock();
        s.sweep();
        self.publish(&s, &[]);
        let s = &*s;
        Ok(s.processing
            .iter()
            .filter(|raw| !s.leases.contains_key(&lease_id(raw)))
            .cloned()
            .collect())
    }

    async fn requeue(&self, raw: &str) -> StoreResult<bool> {
        let moved = {
            let mut s = self.lock();
            let id = lease_id(raw);
            let leased = s.leases.get(&id).is_some_and(|exp| *exp > Instant::now());
            if leased || !s.remove_processing(raw) {
                false
            } else {
                s.queue.push_back(raw.to_string());
                if let Some(m) = s.marker_of(raw, &id) {
                    m.state = JobState::Queued;
                    m.worker_id.clear();
                    m.since = now_unix();
                }
                true
            }
        };
        if moved {
            self.pushed.notify_one();
        }
        Ok(moved)
    }

    async fn queue_lengths(&self) -> StoreResult<(u64, u64)> {
        let s = self.lock();
        Ok((s.queue.len() as u64, s.processing.len() as u64))
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

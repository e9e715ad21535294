//! The embedded store of `httpsd serve`: the same semantics as the Redis store, in one
//! process's memory. Expiry is checked on read and swept when orphans are looked for
//! (the worker's reaper does that periodically), so memory stays bounded by the live
//! paths.

use super::{
    CoolingDown, DebugView, Finished, JobState, JobStatus, NewJob, Outcome, ReloadOutcome,
    Retention, Store, StoreResult, Taken,
};
use crate::clock::now_unix;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct Marker {
    state: JobState,
    lease_id: String,
    raw: String,
    worker_id: String,
    since: f64,
    expires: Instant,
    /// The path was reloaded while this job ran: its result predates the reload, so it
    /// is not written and the job runs again (at most one run per path at a time).
    rerun: bool,
}

#[derive(Default)]
struct State {
    /// Cache entries, errors and run reports by their Redis key names.
    kv: HashMap<String, (Bytes, Instant)>,
    /// Paths whose last run failed, until when polls do not run them again.
    retry: HashMap<String, Instant>,
    queue: VecDeque<String>,
    processing: VecDeque<String>,
    markers: HashMap<String, Marker>,
    leases: HashMap<String, Instant>,
    attempts: HashMap<String, u32>,
    /// Run summaries per path, newest first, and when the list expires.
    history: HashMap<String, (VecDeque<Bytes>, Instant)>,
    /// When each path's reload cooldown ends.
    reloads: HashMap<String, Instant>,
}

impl State {
    fn get(&self, key: &str) -> Option<Bytes> {
        let now = Instant::now();
        self.kv
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(b, _)| b.clone())
    }

    fn remove(&mut self, key: &str) -> bool {
        let now = Instant::now();
        matches!(self.kv.remove(key), Some((_, exp)) if exp > now)
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
        DebugView {
            entry: self.get(full_path),
            error: self.get(&crate::wire::error_key(full_path)),
            job: self.status(full_path),
            run: self.get(&crate::wire::run_key(full_path)),
            history: self
                .history
                .get(full_path)
                .filter(|(_, exp)| *exp > now)
                .map(|(runs, _)| runs.iter().cloned().collect())
                .unwrap_or_default(),
            reload_cooldown: self
                .reloads
                .get(full_path)
                .filter(|until| **until > now)
                .map(|until| *until - now),
        }
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
        self.kv.retain(|_, (_, exp)| *exp > now);
        self.markers.retain(|_, m| m.expires > now);
        self.leases.retain(|_, exp| *exp > now);
        self.history.retain(|_, (_, exp)| *exp > now);
        self.reloads.retain(|_, until| *until > now);
    }
}

/// The in-process store.
pub struct MemoryStore {
    state: Mutex<State>,
    /// Wakes a waiting [`Store::take`] when a job is pushed.
    pushed: tokio::sync::Notify,
    retention: Retention,
}

impl MemoryStore {
    pub fn new(retention: Retention) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            pushed: tokio::sync::Notify::new(),
            retention,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        Ok(self.lock().get(full_path))
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
            let cache_cleared = s.remove(&job.full_path);
            let error_cache_cleared = s.remove(&crate::wire::error_key(&job.full_path));
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
                _ => s.push(job, self.retention.marker),
            }
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
            let now = Instant::now();
            for f in done {
                s.remove_processing(&f.taken.raw);
                s.leases.remove(&f.taken.lease_id);
                s.attempts.remove(&f.taken.lease_id);
                // Some(rerun) when the path's marker is this job's.
                let mine = s
                    .markers
                    .get(&f.full_path)
                    .filter(|m| m.lease_id == f.taken.lease_id)
                    .map(|m| m.rerun);
                if mine == Some(true) {
                    let job = NewJob {
                        full_path: f.full_path.clone(),
                        raw: f.taken.raw.clone(),
                    };
                    s.push(&job, self.retention.marker);
                    repushed = true;
                    continue;
                }
                let error_key = crate::wire::error_key(&f.full_path);
                match &f.outcome {
                    Outcome::Discard => continue,
                    Outcome::Entry(entry) => {
                        s.kv.insert(
                            f.full_path.clone(),
                            (Bytes::from(entry.clone()), now + self.retention.cache),
                        );
                        s.kv.remove(&error_key);
                    }
                    Outcome::Error(error) => {
                        s.kv.insert(
                            error_key,
                            (Bytes::from(error.clone()), now + self.retention.error),
                        );
                        s.retry
                            .insert(f.full_path.clone(), now + self.retention.retry);
                    }
                }
                s.kv.insert(
                    crate::wire::run_key(&f.full_path),
                    (Bytes::from(f.run.clone()), now + self.retention.cache),
                );
                if !f.summary.is_empty() {
                    let (runs, expires) = s
                        .history
                        .entry(f.full_path.clone())
                        .or_insert_with(|| (VecDeque::new(), now));
                    runs.push_front(Bytes::from(f.summary.clone()));
                    runs.truncate(crate::wire::HISTORY_LEN);
                    *expires = now + self.retention.cache;
                }
                if mine.is_some() {
                    s.markers.remove(&f.full_path);
                }
            }
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

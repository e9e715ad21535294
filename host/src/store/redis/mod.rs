//! The Redis store: the shared state of a fleet, in the wire format of DESIGN §8.
//!
//! One file per concern: `settings` (how to reach Redis, TLS), `endpoint` (the URL
//! forms: one primary, Sentinel, Cluster), `backend` (a connection to the primary in
//! each form), `sentinel` and `cluster` (finding the primary and following its
//! failovers), `topology` (the primary in use, failovers seen), `keys` (the key
//! layout: the 3.x names, or behind a hash tag on a cluster), `pool` (connections and
//! the outage gate), `scripts` (the Lua scripts, which see the key names of `wire.rs`),
//! `replies` (Redis's answers read into the store's types), `invalidations` (the
//! servers' feed of changed entries), and here the [`Store`] impl, which only says
//! which command or script does what.

mod backend;
mod cluster;
mod endpoint;
mod invalidations;
mod keys;
mod pool;
mod replies;
mod scripts;
mod sentinel;
mod settings;
mod topology;

pub use settings::{RedisSettings, RedisTls, redact_url};
pub use topology::{RedisMode, RedisTopology};

use super::{
    CoolingDown, DebugView, Finished, Invalidations, NewJob, Outcome, ReloadOutcome, Retention,
    Store, StoreError, StoreResult, Taken, check_value_sizes,
};
use crate::clock::now_unix;
use crate::wire;
use backend::Backend;
use bytes::Bytes;
use keys::Keys;
use pool::{Pool, on_conn, unavailable};
use redis::{RedisError, Script, ScriptInvocation, Value};
use scripts::Scripts;
use std::sync::Arc;
use std::time::Duration;

/// Most bytes of values sent in one `finish.lua` call: a group of large results goes
/// in several calls (each atomic), so no request nears Redis's query-buffer limit
/// (`client-query-buffer-limit`, 1 GB, past which it drops the connection).
const FINISH_CALL_BYTES: usize = 64 << 20;

/// Paths read per round trip of [`Store::overview`].
const OVERVIEW_CHUNK: usize = 256;

/// The [`Store`] of a fleet: every server and worker shares one Redis.
pub struct RedisStore {
    pool: Pool,
    scripts: Scripts,
    keys: Keys,
    /// See [`RedisSettings::max_value_bytes`].
    max_value_bytes: u64,
    retention: Retention,
}

/// A duration in whole milliseconds, at least 1 (a TTL of 0 would be an error in
/// Redis).
fn ms(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

/// The bytes of values one finished job sends.
fn value_bytes(f: &Finished) -> usize {
    let payload = match &f.outcome {
        Outcome::Entry(v) | Outcome::Error(v) => v.len(),
        Outcome::Discard => 0,
    };
    payload + f.run.len() + f.summary.len()
}

impl RedisStore {
    /// Sets up the pool without connecting: a server or worker starts while Redis is
    /// down and serves 503s (or waits) until it is back. Fails only for settings that
    /// can never work (a bad URL, an unreadable certificate).
    pub fn new(settings: RedisSettings, retention: Retention) -> StoreResult<RedisStore> {
        let endpoint = endpoint::parse(&settings)?;
        let backend = Backend::new(endpoint, settings.timeout).map_err(|e| {
            StoreError::Unavailable(format!(
                "invalid Redis settings for {}: {e}",
                redact_url(&settings.url)
            ))
        })?;
        let keys = backend.keys();
        Ok(RedisStore {
            pool: Pool::new(Arc::new(backend), settings.timeout, settings.pool_size),
            scripts: Scripts::new(keys),
            keys,
            max_value_bytes: settings.max_value_bytes,
            retention,
        })
    }

    /// `enqueue.lua` or `reload.lua` with the arguments both take: the queue, the
    /// processing list, the job's path, the job, now and the marker TTL.
    fn push_invocation<'s>(&self, script: &'s Script, job: &NewJob) -> ScriptInvocation<'s> {
        let mut invocation = script.key(self.keys.queue());
        invocation
            .key(self.keys.processing())
            .arg(&job.full_path)
            .arg(&job.raw)
            .arg(now_unix())
            .arg(ms(self.retention.marker));
        invocation
    }

    /// The blocking half of [`Store::take`]: waits for one job with BLMOVE.
    async fn take_blocking(&self, worker_id: &str, wait: Duration) -> StoreResult<Vec<Taken>> {
        let mut conn = self.pool.blocking_conn(wait).await?;
        let moved: Result<Option<String>, RedisError> = redis::cmd("BLMOVE")
            .arg(self.keys.queue())
            .arg(self.keys.processing())
            .arg("RIGHT")
            .arg("LEFT")
            .arg(wait.as_secs_f64().max(0.01))
            .query_async(&mut conn.0)
            .await;
        self.pool.keep_blocking(conn, &moved);
        let Some(raw) = moved.map_err(unavailable)? else {
            return Ok(Vec::new());
        };
        // Between BLMOVE and this script the job has no lease; the reaper waits a
        // whole lease period before it calls a job orphaned, so it is not taken twice.
        let (lease_id, attempts): (String, u32) = on_conn!(self.pool, |c| {
            self.scripts
                .start
                .key(self.keys.processing())
                .arg(&raw)
                .arg(worker_id)
                .arg(now_unix())
                .arg(ms(self.retention.lease))
                .arg(ms(self.retention.marker))
                .invoke_async(c)
                .await
        })?;
        Ok(vec![Taken {
            raw,
            lease_id,
            attempts,
        }])
    }

    /// One `finish.lua` call.
    async fn finish_call(&self, done: &[Finished]) -> StoreResult<()> {
        let mut invocation = self.scripts.finish.key(self.keys.processing());
        invocation
            .key(self.keys.queue())
            .arg(ms(self.retention.cache))
            .arg(ms(self.retention.error))
            .arg(wire::HISTORY_LEN)
            .arg(now_unix())
            .arg(ms(self.retention.marker))
            .arg(ms(self.retention.retry));
        for f in done {
            let (kind, payload) = match &f.outcome {
                Outcome::Entry(entry) => ("1", entry.as_slice()),
                Outcome::Error(error) => ("0", error.as_slice()),
                Outcome::Discard => ("x", &[][..]),
            };
            invocation
                .arg(&f.taken.raw)
                .arg(&f.taken.lease_id)
                .arg(&f.full_path)
                .arg(kind)
                .arg(payload)
                .arg(f.run.as_slice())
                .arg(f.summary.as_slice());
        }
        on_conn!(self.pool, |c| invocation.invoke_async::<()>(c).await)
    }

    /// The overview of up to [`OVERVIEW_CHUNK`] paths, in one pipelined round trip.
    async fn overview_chunk(&self, full_paths: &[String]) -> StoreResult<Vec<DebugView>> {
        let mut pipe = redis::pipe();
        let k = self.keys;
        for fp in full_paths {
            pipe.cmd("GET").arg(k.entry(fp));
            pipe.cmd("GET").arg(k.of(wire::error_key(fp)));
            pipe.cmd("HGETALL").arg(k.of(wire::marker_key(fp)));
            pipe.cmd("GET").arg(k.of(wire::run_key(fp)));
            pipe.cmd("LRANGE")
                .arg(k.of(wire::history_key(fp)))
                .arg(0)
                .arg(wire::HISTORY_LEN - 1);
            pipe.cmd("PTTL").arg(k.of(wire::reload_key(fp)));
        }
        let rows: Vec<replies::OverviewRow> = on_conn!(self.pool, |c| pipe.query_async(c).await)?;
        Ok(rows.into_iter().map(replies::debug_view).collect())
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn get_entry(&self, full_path: &str) -> StoreResult<Option<Bytes>> {
        let value: Option<Vec<u8>> = on_conn!(self.pool, |c| redis::cmd("GET")
            .arg(self.keys.entry(full_path))
            .query_async(c)
            .await)?;
        Ok(value.map(Bytes::from))
    }

    async fn debug_view(&self, full_path: &str) -> StoreResult<DebugView> {
        Ok(self
            .overview(&[full_path.to_string()])
            .await?
            .pop()
            .unwrap_or_default())
    }

    async fn overview(&self, full_paths: &[String]) -> StoreResult<Vec<DebugView>> {
        let mut views = Vec::with_capacity(full_paths.len());
        for chunk in full_paths.chunks(OVERVIEW_CHUNK) {
            views.extend(self.overview_chunk(chunk).await?);
        }
        Ok(views)
    }

    async fn enqueue(&self, job: &NewJob) -> StoreResult<bool> {
        let mut invocation = self.push_invocation(&self.scripts.enqueue, job);
        // A marker older than half a lease must still have its job (enqueue.lua): a
        // job lost in a failover blocks its path for less than a lease.
        invocation.arg(self.retention.lease.as_secs_f64() / 2.0);
        let pushed: i64 = on_conn!(self.pool, |c| invocation.invoke_async(c).await)?;
        Ok(pushed == 1)
    }

    async fn reload(
        &self,
        job: &NewJob,
        cooldown: Duration,
    ) -> StoreResult<Result<ReloadOutcome, CoolingDown>> {
        let mut invocation = self.push_invocation(&self.scripts.reload, job);
        // 0 (no cooldown) must stay 0, not ms()'s minimum of 1.
        invocation.arg(cooldown.as_millis().min(u64::MAX as u128) as u64);
        let answer: Vec<i64> = on_conn!(self.pool, |c| invocation.invoke_async(c).await)?;
        replies::reload(&answer)
    }

    async fn take(&self, worker_id: &str, max: usize, wait: Duration) -> StoreResult<Vec<Taken>> {
        // First whatever is there, in one round trip; block only when the queue is empty.
        let flat: Vec<Value> = on_conn!(self.pool, |c| {
            self.scripts
                .take
                .key(self.keys.queue())
                .key(self.keys.processing())
                .arg(max.max(1))
                .arg(worker_id)
                .arg(now_unix())
                .arg(ms(self.retention.lease))
                .arg(ms(self.retention.marker))
                .invoke_async(c)
                .await
        })?;
        if flat.is_empty() {
            return self.take_blocking(worker_id, wait).await;
        }
        replies::taken(&flat)
    }

    async fn heartbeat(&self, running: &[Taken]) -> StoreResult<usize> {
        if running.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.scripts.heartbeat.key(self.keys.processing());
        invocation
            .arg(ms(self.retention.lease))
            .arg(ms(self.retention.marker));
        for t in running {
            invocation.arg(&t.raw);
        }
        on_conn!(self.pool, |c| invocation.invoke_async(c).await)
    }

    async fn finish(&self, done: &[Finished]) -> StoreResult<()> {
        // Nothing over the limit is sent: Redis would refuse it at best and drop the
        // shared connection at worst.
        for (i, f) in done.iter().enumerate() {
            check_value_sizes(i, f, self.max_value_bytes)?;
        }
        let mut rest = done;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && (n == 0 || bytes + value_bytes(&rest[n]) <= FINISH_CALL_BYTES) {
                bytes += value_bytes(&rest[n]);
                n += 1;
            }
            let (call, later) = rest.split_at(n);
            self.finish_call(call).await?;
            rest = later;
        }
        Ok(())
    }

    async fn hand_back(&self, taken: &[Taken]) -> StoreResult<()> {
        for t in taken {
            on_conn!(self.pool, |c| {
                self.scripts
                    .hand_back
                    .key(self.keys.queue())
                    .key(self.keys.processing())
                    .arg(&t.raw)
                    .arg(&t.lease_id)
                    .arg(now_unix())
                    .invoke_async::<()>(c)
                    .await
            })?;
        }
        Ok(())
    }

    async fn orphans(&self) -> StoreResult<Vec<String>> {
        on_conn!(self.pool, |c| self
            .scripts
            .orphans
            .key(self.keys.processing())
            .invoke_async(c)
            .await)
    }

    async fn requeue(&self, raw: &str) -> StoreResult<bool> {
        let moved: i64 = on_conn!(self.pool, |c| {
            self.scripts
                .requeue
                .key(self.keys.queue())
                .key(self.keys.processing())
                .arg(raw)
                .arg(now_unix())
                .invoke_async(c)
                .await
        })?;
        Ok(moved == 1)
    }

    async fn queue_lengths(&self) -> StoreResult<(u64, u64)> {
        on_conn!(self.pool, |c| {
            redis::pipe()
                .cmd("LLEN")
                .arg(self.keys.queue())
                .cmd("LLEN")
                .arg(self.keys.processing())
                .query_async(c)
                .await
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        // On a cluster, PING would go to every primary: one shard down that holds
        // none of httpsd's keys would make every server unready. Ask the node of
        // httpsd's slot instead.
        let ping = if self.pool.backend().topology.mode() == RedisMode::Cluster {
            redis::cmd("EXISTS").arg(self.keys.queue()).clone()
        } else {
            redis::cmd("PING")
        };
        on_conn!(self.pool, |c| ping.query_async::<Value>(c).await).map(drop)
    }

    fn invalidations(&self) -> Invalidations {
        invalidations::follow(self.pool.backend().clone())
    }

    fn redis_topology(&self) -> Option<RedisTopology> {
        Some(self.pool.backend().topology.snapshot())
    }
}

//! The Redis store: the shared state of a fleet, in the wire format of DESIGN §8.
//!
//! Two kinds of connections, because one blocking read would stall everything
//! multiplexed behind it:
//!
//! - a bb8 pool of multiplexed connections for every ordinary command, each with a
//!   response timeout, so a Redis outage turns into a quick error, never a hang (the
//!   pool connects and replaces broken connections; callers share a few of them, see
//!   `slots`);
//! - for [`Store::take`]'s blocking `BLMOVE`, connections of their own whose response
//!   timeout is longer than the block.
//!
//! Every change that touches more than one key is a Lua script (`lua/*.lua`, with
//! `lua/common.lua` prepended), so no other process ever sees half of it.

use super::{
    CoolingDown, DebugView, Finished, JobState, JobStatus, NewJob, Outcome, ReloadOutcome,
    Retention, Store, StoreError, StoreResult, Taken, check_value_sizes,
};
use crate::clock::now_unix;
use crate::wire::{self, PROCESSING, QUEUE};
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ErrorKind, RedisError, Script, ScriptInvocation,
    ServerErrorKind, Value,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Runs `$body` with `$c` bound to a pooled connection, marking the connection broken
/// when the command failed at the connection level.
macro_rules! on_conn {
    ($self:ident, |$c:ident| $body:expr) => {{
        let mut pooled = $self.conn().await?;
        let $c = &mut pooled.conn;
        let result = $body;
        pooled.check(result)
    }};
}

macro_rules! script {
    ($name:literal) => {
        concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $name, ".lua"))
        )
    };
}

struct Scripts {
    enqueue: Script,
    reload: Script,
    take: Script,
    start: Script,
    heartbeat: Script,
    finish: Script,
    hand_back: Script,
    orphans: Script,
    requeue: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            enqueue: Script::new(script!("enqueue")),
            reload: Script::new(script!("reload")),
            take: Script::new(script!("take")),
            start: Script::new(script!("start")),
            heartbeat: Script::new(script!("heartbeat")),
            finish: Script::new(script!("finish")),
            hand_back: Script::new(script!("hand_back")),
            orphans: Script::new(script!("orphans")),
            requeue: Script::new(script!("requeue")),
        }
    }
}

/// How to reach Redis, and how long to wait for it.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` (TLS), with an optional `user:password@` for Redis
    /// AUTH or an ACL user.
    pub url: String,
    /// Connect and response timeout of ordinary commands, and how long a caller waits
    /// for a pooled connection.
    pub timeout: Duration,
    /// Connections shared by all commands (each multiplexes many concurrent commands;
    /// fewer connections mean more pipelining).
    pub pool_size: u32,
    /// Certificates for `rediss://`; without them the system's trusted roots are used.
    pub tls: RedisTls,
    /// The largest value written (a cache entry, an error entry, a run report): a
    /// larger one is refused here, before it is sent. Past Redis's own
    /// `proto-max-bulk-len` Redis would drop the connection, and with it every command
    /// multiplexed on it.
    pub max_value_bytes: u64,
}

/// PEM files for a `rediss://` connection.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    /// CA certificates to trust instead of the system's roots (a private CA).
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for a Redis that asks for them (`tls-auth-clients`).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl RedisTls {
    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }
}

/// The URL with its password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:[secret]{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish()
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: "redis://localhost:6379/0".into(),
            timeout: Duration::from_secs(2),
            pool_size: 1,
            tls: RedisTls::default(),
            max_value_bytes: super::DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// The client for `settings`: a plain URL as it is, or a `rediss://` one with the
/// certificate files read now, so a wrong path is an error at start-up, not a stream
/// of connection failures.
fn client(settings: &RedisSettings) -> StoreResult<Client> {
    let invalid = |what: String| {
        StoreError::Unavailable(format!(
            "invalid Redis settings for {}: {what}",
            redact_url(&settings.url)
        ))
    };
    let tls = &settings.tls;
    if tls.is_empty() {
        return Client::open(settings.url.as_str()).map_err(|e| invalid(e.to_string()));
    }
    if !settings.url.starts_with("rediss://") {
        return Err(invalid(
            "--redis-ca, --redis-client-cert and --redis-client-key need a rediss:// URL".into(),
        ));
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))
    };
    let client_tls = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "--redis-client-cert and --redis-client-key go together".into(),
            ));
        }
    };
    let root_cert = tls.ca.as_ref().map(read).transpose()?;
    Client::build_with_tls(
        settings.url.as_str(),
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| invalid(e.to_string()))
}

/// A pooled connection that remembers whether it failed at the connection level.
/// Cloning shares the connection (redis-rs multiplexes the clones' commands on it).
#[derive(Clone)]
pub struct PooledConn {
    conn: MultiplexedConnection,
    broken: Arc<AtomicBool>,
}

impl PooledConn {
    /// Converts a command's result, marking the connection broken when the command
    /// failed at the connection level (bb8 then replaces it). Redis refusing the
    /// command itself is [`StoreError::Refused`], anything else `Unavailable`.
    fn check<T>(&self, result: Result<T, RedisError>) -> StoreResult<T> {
        if let Err(e) = &result
            && is_connection_error(e)
        {
            self.broken.store(true, Ordering::Relaxed);
        }
        result.map_err(|e| {
            if is_refusal(&e) {
                StoreError::Refused {
                    reason: format!("Redis answered: {e}"),
                    item: None,
                }
            } else {
                unavailable(e)
            }
        })
    }
}

/// bb8's manager for [`PooledConn`]. bb8-redis's own manager never reports a broken
/// connection, so after a Redis restart the pool would hand out dead connections for
/// ever; this one drops a connection once a command on it failed at the connection
/// level, and bb8 replaces it.
struct Manager {
    client: Client,
    config: AsyncConnectionConfig,
    /// Why the last connection attempt failed (wrong password, untrusted certificate,
    /// refused): bb8 only reports "timed out" to the caller, and an operator looking at
    /// `/readyz` needs the cause.
    last_error: Arc<Mutex<Option<String>>>,
}

impl bb8::ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = RedisError;

    async fn connect(&self) -> Result<PooledConn, RedisError> {
        let connected = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await;
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            connected.as_ref().err().map(|e| e.to_string());
        let conn = connected?;
        Ok(PooledConn {
            conn,
            broken: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn is_valid(&self, conn: &mut PooledConn) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(&mut conn.conn).await
    }

    fn has_broken(&self, conn: &mut PooledConn) -> bool {
        conn.broken.load(Ordering::Relaxed)
    }
}

/// bb8 reports connection failures here; the default sink drops them silently.
#[derive(Debug, Clone, Copy)]
struct LogSink;

impl bb8::ErrorSink<RedisError> for LogSink {
    fn sink(&self, error: RedisError) {
        tracing::warn!("redis connection failed: {error}");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<RedisError>> {
        Box::new(*self)
    }
}

pub struct RedisStore {
    client: Client,
    pool: bb8::Pool<Manager>,
    /// Connections in use, shared by every caller: taking one is a clone, not a pool
    /// checkout (no lock wait, no timer per command), and concurrent commands on one
    /// connection are pipelined, which is what keeps Redis's own CPU per request low.
    /// A slot whose connection broke is refilled from the pool.
    slots: Vec<Mutex<Option<PooledConn>>>,
    next_slot: std::sync::atomic::AtomicUsize,
    /// Set when getting a connection failed: Redis is unreachable. Until a connection
    /// works again, one caller at a time (holding `probe`) tries; the others fail at
    /// once, so an outage costs each request microseconds instead of the connect
    /// timeout.
    down: AtomicBool,
    probe: tokio::sync::Mutex<()>,
    /// Idle connections for blocking reads, reused between takes.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    scripts: Scripts,
    settings: RedisSettings,
    retention: Retention,
    /// Shared with the pool's [`Manager`].
    last_error: Arc<Mutex<Option<String>>>,
}

fn lock_slot(slot: &Mutex<Option<PooledConn>>) -> std::sync::MutexGuard<'_, Option<PooledConn>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Redis answered, and refused this very command: a script error (`ERR`), an aborted
/// script, or out of memory (`OOM`, past `maxmemory` with nothing it may evict). Not a
/// failover or a busy server (`LOADING`, `READONLY`, `MASTERDOWN`, `TRYAGAIN`, `BUSY`),
/// which pass, nor a missing permission, which an operator fixes: those stay
/// `Unavailable`, and a worker retries them.
fn is_refusal(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::ResponseError | ServerErrorKind::ExecAbort) => true,
        ErrorKind::Extension => e.code() == Some("OOM"),
        _ => false,
    }
}

/// Most bytes of values sent in one `finish.lua` call: a group of large results goes
/// in several calls (each atomic), so no request nears Redis's query-buffer limit
/// (`client-query-buffer-limit`, 1 GB, past which it drops the connection).
const FINISH_CALL_BYTES: usize = 64 << 20;

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout()
}

fn ms(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

impl RedisStore {
    /// Sets up the pool without connecting: a server or worker starts while Redis is
    /// down and serves 503s (or waits) until it is back.
    pub fn new(settings: RedisSettings, retention: Retention) -> StoreResult<RedisStore> {
        let client = client(&settings)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout));
        let last_error = Arc::new(Mutex::new(None));
        let pool = bb8::Pool::builder()
            .max_size(settings.pool_size.max(1))
            .connection_timeout(settings.timeout)
            // A PING per checkout would double every request's round trips; broken
            // connections are found by `has_broken` instead.
            .test_on_check_out(false)
            // The slots hold clones of pooled connections; bb8 must not close them
            // for being idle in the pool.
            .idle_timeout(None)
            .max_lifetime(None)
            .error_sink(Box::new(LogSink))
            .build_unchecked(Manager {
                client: client.clone(),
                config,
                last_error: last_error.clone(),
            });
        let slots = (0..settings.pool_size.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        Ok(RedisStore {
            client,
            pool,
            slots,
            next_slot: std::sync::atomic::AtomicUsize::new(0),
            down: AtomicBool::new(false),
            probe: tokio::sync::Mutex::new(()),
            blocking: Mutex::new(Vec::new()),
            scripts: Scripts::new(),
            settings,
            retention,
            last_error,
        })
    }

    /// The client, for connections of other kinds (the local cache's subscription).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `": <why the last connection attempt failed>"`, or nothing.
    fn last_cause(&self) -> String {
        let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        last.as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    }

    /// A connection for one command: a slot's shared connection, refilled from the
    /// pool (connecting if need be, waiting at most the timeout) when it broke.
    async fn conn(&self) -> StoreResult<PooledConn> {
        let i = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        if let Some(c) = lock_slot(&self.slots[i])
            .as_ref()
            .filter(|c| !c.broken.load(Ordering::Relaxed))
        {
            return Ok(c.clone());
        }
        let _probing = if self.down.load(Ordering::Relaxed) {
            match self.probe.try_lock() {
                Ok(guard) => Some(guard),
                Err(_) => {
                    let cause = self.last_cause();
                    return Err(StoreError::Unavailable(format!(
                        "Redis is unreachable (reconnecting){cause}"
                    )));
                }
            }
        } else {
            None
        };
        let pooled = self.pool.get().await.map_err(|e| {
            self.down.store(true, Ordering::Relaxed);
            match e {
                bb8::RunError::User(e) => unavailable(e),
                bb8::RunError::TimedOut => {
                    let cause = self.last_cause();
                    StoreError::Unavailable(format!(
                        "no Redis connection within {}{cause}",
                        crate::units::format_duration(self.settings.timeout)
                    ))
                }
            }
        })?;
        self.down.store(false, Ordering::Relaxed);
        let conn = (*pooled).clone();
        *lock_slot(&self.slots[i]) = Some(conn.clone());
        Ok(conn)
    }

    async fn blocking_conn(&self, wait: Duration) -> StoreResult<MultiplexedConnection> {
        if let Some(conn) = self.blocking.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(wait + self.settings.timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)
    }

    /// `enqueue.lua` or `reload.lua` with the arguments both take: the queue, the job's
    /// path, the job, now and the marker TTL.
    fn push_invocation<'s>(&self, script: &'s Script, job: &NewJob) -> ScriptInvocation<'s> {
        let mut invocation = script.key(QUEUE);
        invocation
            .arg(&job.full_path)
            .arg(&job.raw)
            .arg(now_unix())
            .arg(ms(self.retention.marker));
        invocation
    }

    /// The blocking half of [`Store::take`]: waits for one job with BLMOVE.
    async fn take_blocking(&self, worker_id: &str, wait: Duration) -> StoreResult<Vec<Taken>> {
        let mut conn = self.blocking_conn(wait).await?;
        let moved: Result<Option<String>, RedisError> = redis::cmd("BLMOVE")
            .arg(QUEUE)
            .arg(PROCESSING)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(wait.as_secs_f64().max(0.01))
            .query_async(&mut conn)
            .await;
        match &moved {
            Err(e) if is_connection_error(e) => {} // drop the connection
            _ => {
                if let Ok(mut idle) = self.blocking.lock() {
                    idle.push(conn);
                }
            }
        }
        let Some(raw) = moved.map_err(unavailable)? else {
            return Ok(Vec::new());
        };
        // Between BLMOVE and this script the job has no lease; the reaper waits a
        // whole lease period before it calls a job orphaned, so it is not taken twice.
        let (lease_id, attempts): (String, u32) = on_conn!(self, |c| {
            self.scripts
                .start
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
}

/// Reads a marker hash (HGETALL) into a status.
fn job_status(fields: HashMap<String, String>) -> Option<JobStatus> {
    let state = match fields.get("state")?.as_str() {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        _ => return None,
    };
    Some(JobStatus {
        state,
        worker_id: fields.get("worker").cloned().unwrap_or_default(),
        since: fields
            .get("since")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
    })
}

fn bytes_of(v: Option<Vec<u8>>) -> Option<Bytes> {
    v.map(Bytes::from)
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
    /// One `finish.lua` call.
    async fn finish_call(&self, done: &[Finished]) -> StoreResult<()> {
        let mut invocation = self.scripts.finish.key(PROCESSING);
        invocation
            .key(QUEUE)
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
        on_conn!(self, |c| invocation.invoke_async::<()>(c).await)
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn get_entry(&self, full_path: &str) -> StoreResult<Option<Bytes>> {
        let value: Option<Vec<u8>> = on_conn!(self, |c| redis::cmd("GET")
            .arg(full_path)
            .query_async(c)
            .await)?;
        Ok(bytes_of(value))
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
        // Pipelined in chunks: one round trip per 256 paths.
        for chunk in full_paths.chunks(256) {
            let mut pipe = redis::pipe();
            for fp in chunk {
                pipe.cmd("GET").arg(fp);
                pipe.cmd("GET").arg(wire::error_key(fp));
                pipe.cmd("HGETALL").arg(wire::marker_key(fp));
                pipe.cmd("GET").arg(wire::run_key(fp));
                pipe.cmd("LRANGE")
                    .arg(wire::history_key(fp))
                    .arg(0)
                    .arg(wire::HISTORY_LEN - 1);
                pipe.cmd("PTTL").arg(wire::reload_key(fp));
            }
            #[allow(clippy::type_complexity)]
            let rows: Vec<(
                Option<Vec<u8>>,
                Option<Vec<u8>>,
                HashMap<String, String>,
                Option<Vec<u8>>,
                Vec<Vec<u8>>,
                i64,
            )> = on_conn!(self, |c| pipe.query_async(c).await)?;
            views.extend(rows.into_iter().map(
                |(entry, error, marker, run, history, cooldown_ms)| DebugView {
                    entry: bytes_of(entry),
                    error: bytes_of(error),
                    job: job_status(marker),
                    run: bytes_of(run),
                    history: history.into_iter().map(Bytes::from).collect(),
                    // PTTL: -2 no key, -1 no expiry (never set so by httpsd).
                    reload_cooldown: u64::try_from(cooldown_ms).ok().map(Duration::from_millis),
                },
            ));
        }
        Ok(views)
    }

    async fn enqueue(&self, job: &NewJob) -> StoreResult<bool> {
        let invocation = self.push_invocation(&self.scripts.enqueue, job);
        let pushed: i64 = on_conn!(self, |c| invocation.invoke_async(c).await)?;
        Ok(pushed == 1)
    }

    async fn reload(
        &self,
        job: &NewJob,
        cooldown: Duration,
    ) -> StoreResult<Result<ReloadOutcome, CoolingDown>> {
        let mut invocation = self.push_invocation(&self.scripts.reload, job);
        invocation.key(PROCESSING);
        // 0 (no cooldown) must stay 0, not ms()'s minimum of 1.
        invocation.arg(cooldown.as_millis().min(u64::MAX as u128) as u64);
        let answer: Vec<i64> = on_conn!(self, |c| invocation.invoke_async(c).await)?;
        match answer[..] {
            [-1, left] => Ok(Err(CoolingDown(Duration::from_millis(
                u64::try_from(left).unwrap_or(0),
            )))),
            [cache, error, enqueued] => Ok(Ok(ReloadOutcome {
                cache_cleared: cache > 0,
                error_cache_cleared: error > 0,
                enqueued: enqueued > 0,
            })),
            _ => Err(StoreError::Protocol(format!("reload returned {answer:?}"))),
        }
    }

    async fn take(&self, worker_id: &str, max: usize, wait: Duration) -> StoreResult<Vec<Taken>> {
        // First whatever is there, in one round trip; block only when the queue is empty.
        let flat: Vec<Value> = on_conn!(self, |c| {
            self.scripts
                .take
                .key(QUEUE)
                .key(PROCESSING)
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
        let mut taken = Vec::with_capacity(flat.len() / 3);
        for triple in flat.chunks(3) {
            let [raw, id, attempts] = triple else {
                return Err(StoreError::Protocol(
                    "take returned a partial triple".into(),
                ));
            };
            let parse = |v: &Value| -> StoreResult<String> {
                redis::from_redis_value_ref::<String>(v)
                    .map_err(|e| StoreError::Protocol(format!("take: {e}")))
            };
            taken.push(Taken {
                raw: parse(raw)?,
                lease_id: parse(id)?,
                attempts: redis::from_redis_value_ref::<u32>(attempts)
                    .map_err(|e| StoreError::Protocol(format!("take: {e}")))?,
            });
        }
        Ok(taken)
    }

    async fn heartbeat(&self, running: &[Taken]) -> StoreResult<usize> {
        if running.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.scripts.heartbeat.key(PROCESSING);
        invocation
            .arg(ms(self.retention.lease))
            .arg(ms(self.retention.marker));
        for t in running {
            invocation.arg(&t.raw);
        }
        let lost: usize = on_conn!(self, |c| invocation.invoke_async(c).await)?;
        Ok(lost)
    }

    async fn finish(&self, done: &[Finished]) -> StoreResult<()> {
        // Nothing over the limit is sent: Redis would refuse it at best and drop the
        // shared connection at worst.
        for (i, f) in done.iter().enumerate() {
            check_value_sizes(i, f, self.settings.max_value_bytes)?;
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
            on_conn!(self, |c| {
                self.scripts
                    .hand_back
                    .key(QUEUE)
                    .key(PROCESSING)
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
        on_conn!(self, |c| self
            .scripts
            .orphans
            .key(PROCESSING)
            .invoke_async(c)
            .await)
    }

    async fn requeue(&self, raw: &str) -> StoreResult<bool> {
        let moved: i64 = on_conn!(self, |c| {
            self.scripts
                .requeue
                .key(QUEUE)
                .key(PROCESSING)
                .arg(raw)
                .arg(now_unix())
                .invoke_async(c)
                .await
        })?;
        Ok(moved == 1)
    }

    async fn queue_lengths(&self) -> StoreResult<(u64, u64)> {
        on_conn!(self, |c| {
            redis::pipe()
                .cmd("LLEN")
                .arg(QUEUE)
                .cmd("LLEN")
                .arg(PROCESSING)
                .query_async(c)
                .await
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        on_conn!(self, |c| redis::cmd("PING").query_async::<()>(c).await)
    }
}

#[cfg(test)]
mod tests {
    use super::{RedisSettings, redact_url};

    #[test]
    fn passwords_stay_out_of_printed_urls() {
        assert_eq!(
            redact_url("rediss://httpsd:s3cret@redis:6380/0"),
            "rediss://httpsd:[secret]@redis:6380/0"
        );
        assert_eq!(
            redact_url("redis://:s3cret@localhost/0"),
            "redis://:[secret]@localhost/0"
        );
        assert_eq!(
            redact_url("redis://localhost:6379/0"),
            "redis://localhost:6379/0"
        );
        assert_eq!(redact_url("redis://a:b@c@h/0"), "redis://a:[secret]@h/0");
        let settings = RedisSettings {
            url: "redis://u:pw-77@h/0".into(),
            ..Default::default()
        };
        assert!(!format!("{settings:?}").contains("pw-77"));
    }
}

//! The Redis store's connections, and the outage gate in front of them.
//!
//! Two kinds of connections, because one blocking read would stall everything
//! multiplexed behind it:
//!
//! - a few shared multiplexed connections for every ordinary command, each with a
//!   response timeout, so a Redis outage turns into a quick error, never a hang (bb8's
//!   manager makes them; a broken one, or one to a primary a failover replaced, is
//!   replaced; see [`Pool::conn`]);
//! - for [`Store::take`](crate::store::Store::take)'s blocking `BLMOVE`, connections of
//!   their own whose response timeout is longer than the block
//!   ([`Pool::blocking_conn`]).
//!
//! While Redis is unreachable, the gate lets one caller at a time try to connect and
//! fails the others at once: an outage then costs a request microseconds, not the
//! connect timeout.

use super::backend::{Backend, Conn};
use crate::store::{StoreError, StoreResult, lock};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, ServerErrorKind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `$body` with `$c` bound to a connection of `$pool` (a [`Pool`]), marking the
/// connection broken when the command failed at the connection level, and converts the
/// result into a [`StoreResult`] (see [`PooledConn::check`]). A macro, not a method
/// taking a closure: the body is an `async` block borrowing the connection, and the
/// future must stay `Send` for the [`Store`](crate::store::Store) trait.
macro_rules! on_conn {
    ($pool:expr, |$c:ident| $body:expr) => {{
        let mut pooled = $pool.conn().await?;
        let $c = &mut pooled.conn;
        let result = $body;
        pooled.check(result)
    }};
}
pub(super) use on_conn;

/// `Pool::down_in` while Redis is reachable (no generation reaches it).
const UP: u64 = u64::MAX;

/// A pooled connection that remembers whether it failed at the connection level, and
/// the topology generation it was made in (a failover since makes it stale).
/// Cloning shares the connection (redis-rs multiplexes the clones' commands on it).
#[derive(Clone)]
pub(super) struct PooledConn {
    pub(super) conn: Conn,
    broken: Arc<AtomicBool>,
    generation: u64,
}

impl PooledConn {
    /// Converts a command's result, marking the connection broken when the command
    /// failed at the connection level (bb8 then replaces it). Redis refusing the
    /// command itself is [`StoreError::Refused`], anything else `Unavailable`.
    pub(super) fn check<T>(&self, result: Result<T, RedisError>) -> StoreResult<T> {
        // A cluster connection mends itself node by node (and a failover is the
        // topology watcher's to see); one to a single node is replaced.
        if let Err(e) = &result
            && is_connection_error(e)
            && matches!(self.conn, Conn::Node(_))
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

    fn is_broken(&self, generation: u64) -> bool {
        self.broken.load(Ordering::Relaxed) || self.generation != generation
    }
}

/// A connection-level failure: the connection is no good any more (unlike a command
/// Redis answered with an error, after which it still is). `READONLY` and `MASTERDOWN`
/// count: the node was the primary when we connected and is a replica now (a Sentinel
/// failover), so the next connection must ask where the primary went.
pub(super) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
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

pub(super) fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// bb8's manager for [`PooledConn`]: connects through the [`Backend`] (to the primary
/// the sentinels name, or to the cluster), and calls a connection broken once a
/// command on it failed at the connection level or a failover made it stale.
/// (bb8-redis's own manager never reports a broken connection: after a Redis restart
/// it would hand out dead connections for ever.)
struct Manager {
    backend: Arc<Backend>,
    config: AsyncConnectionConfig,
    timeout: Duration,
    /// Why the last connection attempt failed (wrong password, untrusted certificate,
    /// refused): bb8 only reports "timed out" to the caller, and an operator looking at
    /// `/readyz` needs the cause.
    last_error: Arc<Mutex<Option<String>>>,
}

impl bb8::ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = RedisError;

    async fn connect(&self) -> Result<PooledConn, RedisError> {
        let generation = self.backend.topology.generation();
        let connected = self.backend.connect(&self.config, self.timeout).await;
        *lock(&self.last_error) = connected.as_ref().err().map(|e| e.to_string());
        Ok(PooledConn {
            conn: connected?,
            broken: Arc::new(AtomicBool::new(false)),
            generation,
        })
    }

    async fn is_valid(&self, conn: &mut PooledConn) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(&mut conn.conn).await
    }

    fn has_broken(&self, conn: &mut PooledConn) -> bool {
        conn.is_broken(self.backend.topology.generation())
    }
}

/// One shared connection and the lock its refill takes, so that callers who all find
/// it broken at once (every request after a failover) wait for one new connection
/// instead of each opening its own.
#[derive(Default)]
struct Slot {
    conn: Mutex<Option<PooledConn>>,
    refill: tokio::sync::Mutex<()>,
}

impl Slot {
    fn get(&self, generation: u64) -> Option<PooledConn> {
        lock(&self.conn)
            .as_ref()
            .filter(|c| !c.is_broken(generation))
            .cloned()
    }
}

/// Every connection of one [`RedisStore`](super::RedisStore).
pub(super) struct Pool {
    backend: Arc<Backend>,
    pool: bb8::Pool<Manager>,
    /// Connections in use, shared by every caller: taking one is a clone, not a pool
    /// checkout (no lock wait, no timer per command), and concurrent commands on one
    /// connection are pipelined, which is what keeps Redis's own CPU per request low.
    /// A slot whose connection broke is refilled (one caller at a time: `refill`).
    slots: Vec<Slot>,
    next_slot: AtomicUsize,
    /// The outage gate: the topology generation in which getting a connection failed
    /// ([`UP`] when the last attempt worked). While it is the current generation,
    /// Redis is unreachable: until a connection works again, one caller at a time
    /// (holding `probe`) tries, and the others fail at once. A failover since (a new
    /// primary) opens the gate to everyone again.
    down_in: AtomicU64,
    probe: tokio::sync::Mutex<()>,
    /// Idle connections for blocking reads, reused between takes (with the topology
    /// generation they were made in).
    blocking: Mutex<Vec<(MultiplexedConnection, u64)>>,
    /// Connect and response timeout, and the longest wait for a pooled connection.
    timeout: Duration,
    /// Shared with the pool's [`Manager`].
    last_error: Arc<Mutex<Option<String>>>,
}

impl Pool {
    /// `size` shared connections to `client`, none of them opened yet: a server or
    /// worker starts while Redis is down and serves 503s (or waits) until it is back.
    pub(super) fn new(backend: Arc<Backend>, timeout: Duration, size: u32) -> Pool {
        let size = size.max(1);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let last_error = Arc::new(Mutex::new(None));
        // bb8 makes the connections (its manager, `dedicated_connection`); the slots
        // hold them (see `conn`), so the pool itself keeps none.
        let pool = bb8::Pool::builder()
            .max_size(size)
            .connection_timeout(timeout)
            .build_unchecked(Manager {
                backend: backend.clone(),
                config,
                timeout,
                last_error: last_error.clone(),
            });
        Pool {
            backend,
            pool,
            slots: (0..size).map(|_| Slot::default()).collect(),
            next_slot: AtomicUsize::new(0),
            down_in: AtomicU64::new(UP),
            probe: tokio::sync::Mutex::new(()),
            blocking: Mutex::new(Vec::new()),
            timeout,
            last_error,
        }
    }

    pub(super) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// `": <why the last connection attempt failed>"`, or nothing.
    fn last_cause(&self) -> String {
        lock(&self.last_error)
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    }

    /// A connection for one command: a slot's shared connection, refilled (connecting,
    /// at most the timeout) when it broke or a failover made it stale.
    ///
    /// The refill is the manager's connect itself (bb8's `dedicated_connection`), not
    /// a pool checkout: bb8's `get` waits out its whole timeout when a connect fails,
    /// even with its retries off, so a caller that tried the dead primary of a
    /// failover kept waiting while the new one was up. A failed connect is now this
    /// caller's quick error, and the next caller (behind the outage gate) tries again.
    pub(super) async fn conn(&self) -> StoreResult<PooledConn> {
        let slot = &self.slots[self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(conn) = slot.get(self.backend.topology.generation()) {
            return Ok(conn);
        }
        let probing = self.pass_gate()?;
        let _refilling = slot.refill.lock().await;
        // Another caller may have refilled it while this one waited, or failed to:
        // then Redis is down, and this caller does not try again behind it (a
        // connect to an unreachable host takes the whole timeout; a queue of callers
        // trying one after the other would wait that long each).
        if let Some(conn) = slot.get(self.backend.topology.generation()) {
            return Ok(conn);
        }
        if probing.is_none() && self.pass_gate()?.is_some() {
            return Err(self.unreachable());
        }
        let connected = tokio::time::timeout(self.timeout, self.pool.dedicated_connection()).await;
        let conn = match connected {
            Ok(Ok(conn)) => conn,
            failed => {
                self.down_in
                    .store(self.backend.topology.generation(), Ordering::Relaxed);
                return Err(match failed {
                    Ok(Err(e)) => {
                        tracing::warn!("redis connection failed: {e}");
                        unavailable(e)
                    }
                    _ => StoreError::Unavailable(format!(
                        "no Redis connection within {}{}",
                        crate::units::format_duration(self.timeout),
                        self.last_cause()
                    )),
                });
            }
        };
        self.down_in.store(UP, Ordering::Relaxed);
        *lock(&slot.conn) = Some(conn.clone());
        Ok(conn)
    }

    /// The outage gate: while Redis is down, the one caller that may try to connect
    /// gets the probe's guard (held until its attempt ends), the others an error at
    /// once. While Redis is up, everyone passes (`None`).
    fn pass_gate(&self) -> StoreResult<Option<tokio::sync::MutexGuard<'_, ()>>> {
        // Up, or down was the old primary (the new one is worth trying by everyone).
        if self.down_in.load(Ordering::Relaxed) != self.backend.topology.generation() {
            return Ok(None);
        }
        match self.probe.try_lock() {
            Ok(guard) => Ok(Some(guard)),
            Err(_) => Err(self.unreachable()),
        }
    }

    fn unreachable(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "Redis is unreachable (reconnecting){}",
            self.last_cause()
        ))
    }

    /// A connection of its own for a command blocking up to `wait`: an idle one, or a
    /// new one whose response timeout outlasts the block.
    pub(super) async fn blocking_conn(
        &self,
        wait: Duration,
    ) -> StoreResult<(MultiplexedConnection, u64)> {
        let generation = self.backend.topology.generation();
        let idle = {
            let mut idle = lock(&self.blocking);
            idle.retain(|(_, g)| *g == generation);
            idle.pop()
        };
        if let Some(conn) = idle {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(wait + self.timeout));
        let conn = self.backend.node(&config).await.map_err(unavailable)?;
        Ok((conn, generation))
    }

    /// Keeps a blocking connection for the next take, unless its command failed at the
    /// connection level (then it is dropped).
    pub(super) fn keep_blocking<T>(
        &self,
        conn: (MultiplexedConnection, u64),
        result: &Result<T, RedisError>,
    ) {
        match result {
            Err(e) if is_connection_error(e) => {}
            _ => lock(&self.blocking).push(conn),
        }
    }
}

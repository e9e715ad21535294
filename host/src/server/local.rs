//! The server's local cache: hot entries kept in this process for `--local-cache`
//! (1 s), so a path polled many times a second costs one Redis round trip per second
//! instead of one per request.
//!
//! It only saves the trip to Redis; it does not change what is served. An entry is
//! kept as Redis holds it, parsed once ([`ParsedEntry`]: the `results` bytes as they
//! are, the timestamp and fingerprint), and every request still judges it by its own
//! `updated_timestamp` (fresh, refresh-ahead, expired), so nothing older than
//! `--cache-seconds` is ever served. What it could get wrong is an entry that changed
//! in Redis meanwhile (a worker wrote a new answer, a reload deleted it). For that:
//!
//! - httpsd's scripts publish the `full_path` of every entry they write or delete on
//!   [`CHANNEL`] (`finish.lua`, `reload.lua`), and each server evicts it on receipt
//!   ([`subscribe`]): a reload through one server reaches all of them in about a
//!   network round trip;
//! - while the subscription is down (Redis restarting, a network split), the local
//!   cache is emptied and bypassed, since invalidations may be missed; it comes back
//!   once subscribed again;
//! - a fetch that raced an invalidation is not kept (an epoch counter, bumped by every
//!   invalidation, must be the same before and after the fetch);
//! - nothing is kept longer than `--local-cache`, which bounds staleness in a mixed
//!   fleet whose old prometheus-http-sd workers publish nothing.

use crate::sync::unpoison;
use crate::wire::ParsedEntry;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The Redis channel of invalidations: each message is one `full_path`.
pub const CHANNEL: &str = crate::wire::INVALIDATE_CHANNEL;

/// Most bytes of entries kept at once; past it new entries are not kept until old
/// ones expire (entries live only `--local-cache`, so this is the hot set's size).
pub const MAX_BYTES: usize = 256 << 20;

/// Hot entries kept in this process for `--local-cache`, kept coherent by
/// [`subscribe`] (see the module documentation).
pub struct LocalCache {
    ttl: Duration,
    /// Subscribed to invalidations: only then may entries be kept and served.
    live: AtomicBool,
    /// Bumped by every invalidation (and by going live or dead).
    epoch: AtomicU64,
    entries: RwLock<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, (Arc<ParsedEntry>, Instant)>,
    bytes: usize,
    /// Inserts since expired entries were last swept out.
    inserts: usize,
}

/// Expired entries are swept out every this many inserts (and when the byte budget is
/// reached), so paths polled once do not stay in memory.
const SWEEP_EVERY: usize = 1024;

impl Entries {
    fn sweep(&mut self, ttl: Duration) {
        self.map.retain(|_, (_, at)| at.elapsed() < ttl);
        self.bytes = self.map.values().map(|(e, _)| e.size).sum();
        self.inserts = 0;
    }
}

impl LocalCache {
    /// A cache keeping entries for `ttl`; zero turns it off. It serves nothing until
    /// [`set_live`](Self::set_live) says invalidations are being received.
    pub fn new(ttl: Duration) -> LocalCache {
        LocalCache {
            ttl,
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            entries: RwLock::new(Entries::default()),
        }
    }

    /// A cache that never keeps anything (the memory store is local already).
    pub fn off() -> LocalCache {
        LocalCache::new(Duration::ZERO)
    }

    /// Whether `--local-cache` is set at all.
    pub fn is_enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The entry of `full_path`, if kept and younger than the TTL.
    pub fn get(&self, full_path: &str) -> Option<Arc<ParsedEntry>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = unpoison(self.entries.read());
        let (entry, at) = entries.map.get(full_path)?;
        (at.elapsed() < self.ttl).then(|| entry.clone())
    }

    /// Call before fetching from Redis; pass the result to [`insert`](Self::insert).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps `entry`, fetched after [`epoch`](Self::epoch) returned `epoch`, unless an
    /// invalidation came in meanwhile (the fetch may have read what it invalidated).
    pub fn insert(&self, full_path: &str, entry: Arc<ParsedEntry>, epoch: u64) {
        // Never live when disabled (`set_live`).
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        let mut entries = unpoison(self.entries.write());
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        entries.inserts += 1;
        if entries.inserts >= SWEEP_EVERY || entries.bytes + entry.size > MAX_BYTES {
            entries.sweep(self.ttl);
            if entries.bytes + entry.size > MAX_BYTES {
                return;
            }
        }
        entries.bytes += entry.size;
        if let Some((old, _)) = entries
            .map
            .insert(full_path.to_string(), (entry, Instant::now()))
        {
            entries.bytes -= old.size;
        }
    }

    /// Drops `full_path` (it changed in Redis).
    pub fn invalidate(&self, full_path: &str) {
        let mut entries = unpoison(self.entries.write());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some((old, _)) = entries.map.remove(full_path) {
            entries.bytes -= old.size;
        }
    }

    /// Whether invalidations are being received. Either way the cache starts empty:
    /// whatever it held may have changed while nobody was listening.
    pub fn set_live(&self, live: bool) {
        let mut entries = unpoison(self.entries.write());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        *entries = Entries::default();
        self.live
            .store(live && self.is_enabled(), Ordering::Release);
    }
}

/// Keeps `cache` in step with Redis for the life of the process: subscribes to
/// [`CHANNEL`] on its own connection, evicts what each message names, and, whenever
/// the subscription is lost, empties and bypasses the cache until it is back.
pub async fn subscribe(client: redis::Client, cache: std::sync::Arc<LocalCache>) {
    use futures::StreamExt;
    if !cache.is_enabled() {
        return;
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(5), subscribed).await {
            Ok(Ok(mut pubsub)) => {
                backoff = Duration::from_millis(100);
                cache.set_live(true);
                tracing::info!("local cache on: invalidations subscribed");
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    match message.get_payload::<String>() {
                        Ok(full_path) => cache.invalidate(&full_path),
                        // Unreadable: we cannot tell what changed, so forget everything.
                        Err(_) => cache.set_live(true),
                    }
                }
                cache.set_live(false);
                tracing::warn!("local cache off: the invalidation subscription was lost");
            }
            Ok(Err(e)) => {
                cache.set_live(false);
                tracing::debug!("cannot subscribe to invalidations: {e}");
            }
            Err(_) => {
                cache.set_live(false);
                tracing::debug!("cannot subscribe to invalidations: timed out");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry whose results are `results`.
    fn entry(results: &str) -> Arc<ParsedEntry> {
        let raw = format!(r#"{{"updated_timestamp":1.0,"results":{results}}}"#);
        Arc::new(ParsedEntry::parse(&bytes::Bytes::from(raw)).unwrap())
    }

    fn results(e: Option<Arc<ParsedEntry>>) -> Option<String> {
        e.map(|e| String::from_utf8_lossy(&e.results).into_owned())
    }

    #[test]
    fn serves_only_while_live_fresh_and_not_invalidated() {
        let c = LocalCache::new(Duration::from_secs(60));
        let e = c.epoch();
        c.insert("/targets/a?", entry("[\"x\"]"), e);
        assert!(c.get("/targets/a?").is_none(), "not live yet: nothing kept");
        c.set_live(true);
        let e = c.epoch();
        c.insert("/targets/a?", entry("[\"x\"]"), e);
        assert_eq!(results(c.get("/targets/a?")).as_deref(), Some(r#"["x"]"#));
        c.invalidate("/targets/a?");
        assert!(c.get("/targets/a?").is_none());
        // A fetch that started before an invalidation is not kept.
        let e = c.epoch();
        c.invalidate("/targets/other?");
        c.insert("/targets/a?", entry("[\"old\"]"), e);
        assert!(c.get("/targets/a?").is_none());
        // Losing the subscription empties and bypasses it.
        let e = c.epoch();
        c.insert("/targets/a?", entry("[\"y\"]"), e);
        c.set_live(false);
        assert!(c.get("/targets/a?").is_none());
        c.set_live(true);
        assert!(c.get("/targets/a?").is_none());
    }

    #[test]
    fn entries_expire_and_off_keeps_nothing() {
        let c = LocalCache::new(Duration::from_millis(20));
        c.set_live(true);
        c.insert("/targets/a?", entry("[\"x\"]"), c.epoch());
        assert!(c.get("/targets/a?").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(c.get("/targets/a?").is_none());
        let off = LocalCache::off();
        off.set_live(true);
        off.insert("/targets/a?", entry("[\"x\"]"), off.epoch());
        assert!(off.get("/targets/a?").is_none());
    }
}

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
//!   the invalidation channel (`finish.lua`, `reload.lua`), the Redis store hands them
//!   to each server as [`Store::invalidations`], and it evicts each on receipt
//!   ([`follow`]): a reload through one server reaches all of them in about a
//!   network round trip;
//! - while the subscription is down (Redis restarting, a network split), the local
//!   cache is emptied and bypassed, since invalidations may be missed; it comes back
//!   once the store follows again;
//! - a fetch that raced an invalidation is not kept (an epoch counter, bumped by every
//!   invalidation, must be the same before and after the fetch);
//! - nothing is kept longer than `--local-cache`, which bounds staleness in a mixed
//!   fleet whose old prometheus-http-sd workers publish nothing.

use crate::store::{Invalidation, Invalidations, Store};
use crate::sync::unpoison;
use crate::wire::ParsedEntry;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most bytes of entries kept at once; past it new entries are not kept until old
/// ones expire (entries live only `--local-cache`, so this is the hot set's size).
pub const MAX_BYTES: usize = 256 << 20;

/// Hot entries kept in this process for `--local-cache`, kept coherent by
/// [`follow`] (see the module documentation).
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

    /// Whether invalidations are being received, so entries may be kept and served.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
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

/// Keeps `cache` in step with the store for the life of the process: evicts what
/// each invalidation names and, whenever the store stops telling (Redis restarting, a
/// network split), empties and bypasses the cache until it tells again.
pub async fn follow<S: Store>(store: Arc<S>, cache: Arc<LocalCache>) {
    if !cache.is_enabled() {
        return;
    }
    apply(store.invalidations(), &cache).await;
}

/// Applies each event of `events` to `cache`.
async fn apply(mut events: Invalidations, cache: &LocalCache) {
    use futures::StreamExt;
    while let Some(event) = events.next().await {
        match event {
            Invalidation::Live => {
                cache.set_live(true);
                tracing::info!("local cache on: invalidations followed");
            }
            Invalidation::Path(full_path) => cache.invalidate(&full_path),
            // Unreadable: we cannot tell what changed, so forget everything.
            Invalidation::Everything => cache.set_live(true),
            Invalidation::Lost => {
                if cache.is_live() {
                    tracing::warn!("local cache off: invalidations are not being received");
                }
                cache.set_live(false);
            }
        }
    }
    cache.set_live(false);
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

    /// The events a store hands over, in order, as a stream that then ends.
    fn events(list: Vec<Invalidation>) -> Invalidations {
        Box::pin(futures::stream::iter(list))
    }

    #[tokio::test]
    async fn follows_the_stores_events() {
        let c = LocalCache::new(Duration::from_secs(60));
        // Live, then a path of another process: only that path is evicted.
        c.set_live(true);
        c.insert("/targets/a?", entry("[\"a\"]"), c.epoch());
        c.insert("/targets/b?", entry("[\"b\"]"), c.epoch());
        let c = Arc::new(c);
        let feed = events(vec![Invalidation::Path("/targets/a?".into())]);
        // The stream ends after it: a feed that ends is a feed lost, so the cache is off.
        apply(feed, &c).await;
        assert!(!c.is_live());
        assert!(c.get("/targets/b?").is_none());

        // Live again; an unreadable message forgets everything but stays live.
        c.set_live(true);
        c.insert("/targets/a?", entry("[\"a\"]"), c.epoch());
        c.insert("/targets/b?", entry("[\"b\"]"), c.epoch());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let feed: Invalidations = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (e, rx))
        }));
        let follower = tokio::spawn({
            let c = c.clone();
            async move { apply(feed, &c).await }
        });
        let settle = || tokio::time::sleep(Duration::from_millis(20));
        tx.send(Invalidation::Live).unwrap();
        settle().await;
        assert!(c.is_live());
        c.insert("/targets/a?", entry("[\"a\"]"), c.epoch());
        c.insert("/targets/b?", entry("[\"b\"]"), c.epoch());
        tx.send(Invalidation::Path("/targets/a?".into())).unwrap();
        settle().await;
        assert!(c.get("/targets/a?").is_none(), "the named path is evicted");
        assert!(c.get("/targets/b?").is_some(), "the others stay");
        tx.send(Invalidation::Everything).unwrap();
        settle().await;
        assert!(c.is_live());
        assert!(
            c.get("/targets/b?").is_none(),
            "an unreadable message forgets all"
        );
        c.insert("/targets/b?", entry("[\"b\"]"), c.epoch());
        tx.send(Invalidation::Lost).unwrap();
        settle().await;
        assert!(!c.is_live());
        assert!(c.get("/targets/b?").is_none(), "lost: nothing served");
        drop(tx);
        follower.await.unwrap();
    }

    #[tokio::test]
    async fn a_store_without_other_writers_never_turns_it_on() {
        let store = Arc::new(crate::store::MemoryStore::new(Default::default()));
        let c = Arc::new(LocalCache::new(Duration::from_secs(60)));
        let follower = tokio::spawn(follow(store, c.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!c.is_live());
        follower.abort();
    }
}

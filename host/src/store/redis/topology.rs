//! Which node is the primary in use, and every change of it.
//!
//! With Sentinel or a Cluster the primary can move. Whoever learns where it is now
//! (a connect asking the sentinels, the watchers of `sentinel.rs` and `cluster.rs`)
//! reports it here; a different primary than the last one is a failover. It bumps the
//! generation, and everything tied to the old primary goes: the pool's connections
//! (the old primary may take writes for seconds before it learns it was demoted, and
//! those writes are lost), idle blocking connections, and the invalidation
//! subscription, so a server's local cache never trusts a feed from a node that no
//! longer gets the writes.

use crate::store::lock;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

/// How the store reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One primary (`redis://`).
    Single,
    /// A Sentinel group (`redis+sentinel://`).
    Sentinel,
    /// A Redis Cluster (`redis+cluster://`).
    Cluster,
}

impl RedisMode {
    /// The name `/readyz` and the metrics' `mode` label use.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Single => "single",
            RedisMode::Sentinel => "sentinel",
            RedisMode::Cluster => "cluster",
        }
    }
}

/// What `/readyz`, `/metrics` and the admin page say about Redis.
#[derive(Debug, Clone, Serialize)]
pub struct RedisTopology {
    /// One primary, Sentinel or Cluster.
    pub mode: RedisMode,
    /// `host:port` of the primary in use (for a cluster: of httpsd's hash slot); `None`
    /// until first known.
    pub primary: Option<String>,
    /// Changes of the primary this process has seen.
    pub failovers: u64,
    /// The sentinels or the cluster's seed nodes from the URL (empty for one primary).
    pub nodes: Vec<String>,
    /// The Sentinel master name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_name: Option<String>,
}

/// The shared state (see the module documentation).
pub(super) struct Topology {
    mode: RedisMode,
    nodes: Vec<String>,
    master_name: Option<String>,
    primary: Mutex<Option<String>>,
    failovers: AtomicU64,
    /// The generation: bumped by every failover. Read on every command (an atomic, not
    /// the channel's lock); `changed` wakes those who wait for it.
    generation: AtomicU64,
    changed: watch::Sender<u64>,
}

impl Topology {
    pub(super) fn new(mode: RedisMode, nodes: Vec<String>, master_name: Option<String>) -> Self {
        Topology {
            mode,
            nodes,
            master_name,
            primary: Mutex::new(None),
            failovers: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            changed: watch::Sender::new(0),
        }
    }

    pub(super) fn mode(&self) -> RedisMode {
        self.mode
    }

    /// The current generation: a connection made in an older one is dropped.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Wakes on every failover.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The last primary seen.
    pub(super) fn primary(&self) -> Option<String> {
        lock(&self.primary).clone()
    }

    /// `primary` is the primary now. A different one than before is a failover: the
    /// generation moves on. Returns whether it was one.
    pub(super) fn observe(&self, primary: &str) -> bool {
        let mut known = lock(&self.primary);
        let failover = match known.as_deref() {
            Some(old) if old == primary => return false,
            Some(old) => {
                tracing::warn!(old, new = primary, "redis primary changed (failover)");
                true
            }
            None => {
                tracing::info!(primary, "redis primary found");
                false
            }
        };
        *known = Some(primary.to_string());
        drop(known);
        if failover {
            self.failovers.fetch_add(1, Ordering::Relaxed);
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            self.changed.send_replace(generation);
        }
        failover
    }

    /// What the operator sees.
    pub(super) fn snapshot(&self) -> RedisTopology {
        RedisTopology {
            mode: self.mode,
            primary: self.primary(),
            failovers: self.failovers.load(Ordering::Relaxed),
            nodes: self.nodes.clone(),
            master_name: self.master_name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_primary_is_a_failover_and_the_first_one_is_not() {
        let t = Topology::new(RedisMode::Sentinel, vec![], Some("m".into()));
        assert!(!t.observe("10.0.0.1:6379"));
        assert!(!t.observe("10.0.0.1:6379"));
        assert_eq!(t.generation(), 0);
        assert!(t.observe("10.0.0.2:6379"));
        assert_eq!(t.generation(), 1);
        let seen = t.snapshot();
        assert_eq!(seen.failovers, 1);
        assert_eq!(seen.primary.as_deref(), Some("10.0.0.2:6379"));
    }

    #[test]
    fn readyz_and_the_metrics_name_modes_alike() {
        for mode in [RedisMode::Single, RedisMode::Sentinel, RedisMode::Cluster] {
            let json = serde_json::to_value(mode).unwrap_or_default();
            assert_eq!(json, mode.as_str());
        }
    }
}

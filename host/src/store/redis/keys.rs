//! Where the store's keys are: the names of `wire.rs`, as they are for one primary or a
//! Sentinel group (the 3.x wire format), or each behind the hash tag [`CLUSTER_TAG`] on
//! a Redis Cluster.
//!
//! On a cluster a script or a queue move may only touch keys of one hash slot. Every
//! change httpsd makes spans the queue, the processing list, markers, leases and
//! entries at once, atomically, so all of them share one slot: `{httpsd}`. One primary
//! (and its replicas) then holds httpsd's whole data set, which for service discovery
//! is small (thousands of paths of a few KB); the cluster gives failover, not
//! sharding. The 3.x names cannot carry a tag, so a fleet mixed with
//! prometheus-http-sd needs one primary or Sentinel (docs/REDIS.md).

use crate::wire;
use std::borrow::Cow;

/// The hash tag every key carries on a cluster.
pub(super) const CLUSTER_TAG: &str = "{httpsd}";

/// The key space of one store.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keys {
    /// Put in front of every name: "" or [`CLUSTER_TAG`].
    space: &'static str,
}

impl Keys {
    /// The 3.x names, as they are.
    pub(super) const PLAIN: Keys = Keys { space: "" };
    /// Every name behind [`CLUSTER_TAG`].
    pub(super) const CLUSTER: Keys = Keys { space: CLUSTER_TAG };

    /// `name` in this key space.
    pub(super) fn of<'a>(&self, name: impl Into<Cow<'a, str>>) -> Cow<'a, str> {
        let name = name.into();
        if self.space.is_empty() {
            name
        } else {
            Cow::Owned(format!("{}{name}", self.space))
        }
    }

    pub(super) fn queue(&self) -> Cow<'static, str> {
        self.of(wire::QUEUE)
    }

    pub(super) fn processing(&self) -> Cow<'static, str> {
        self.of(wire::PROCESSING)
    }

    /// A path's cache entry: its `full_path` itself in the 3.x format.
    pub(super) fn entry<'a>(&self, full_path: &'a str) -> Cow<'a, str> {
        self.of(full_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_are_the_3x_names_and_cluster_keys_share_one_slot() {
        assert_eq!(Keys::PLAIN.queue(), wire::QUEUE);
        assert_eq!(Keys::PLAIN.entry("/targets/a?"), "/targets/a?");
        let fp = "/targets/a?x=1";
        let keys = [
            Keys::CLUSTER.queue().into_owned(),
            Keys::CLUSTER.processing().into_owned(),
            Keys::CLUSTER.entry(fp).into_owned(),
            Keys::CLUSTER.of(wire::marker_key(fp)).into_owned(),
        ];
        let slot = super::super::cluster::slot(keys[0].as_bytes());
        for k in &keys {
            assert!(k.starts_with(CLUSTER_TAG), "{k}");
            assert_eq!(super::super::cluster::slot(k.as_bytes()), slot, "{k}");
        }
    }
}

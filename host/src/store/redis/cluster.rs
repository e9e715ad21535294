//! A Redis Cluster: every key of httpsd carries the hash tag `{httpsd}` (see
//! `keys.rs` and docs/REDIS.md), so all of them live in one slot, served by one primary
//! at a time. redis-rs's cluster connection follows `MOVED`/`ASK` and retries
//! `TRYAGAIN`/`CLUSTERDOWN`; this watcher asks the seed nodes once a second which node
//! serves our slot, so a failover is seen within about a second: the pool then starts
//! over with a fresh slot map, and the invalidation subscription moves to the new
//! primary.

use super::endpoint::{NodeAddr, NodeTemplate};
use super::keys::CLUSTER_TAG;
use super::topology::Topology;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, Value};
use std::sync::Weak;
use std::time::Duration;

/// How often the watcher asks who serves httpsd's slot.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Hash slots of a cluster.
const SLOTS: u16 = 16384;

/// The seed nodes of a cluster and how to reach any node.
pub(super) struct Seeds {
    pub(super) seeds: Vec<NodeAddr>,
    pub(super) nodes: NodeTemplate,
    pub(super) timeout: Duration,
}

impl Seeds {
    /// The primary serving httpsd's slot, as the first seed that answers sees it.
    pub(super) async fn primary(&self) -> RedisResult<NodeAddr> {
        let slot = slot(CLUSTER_TAG.as_bytes());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let mut why = Vec::new();
        for seed in &self.seeds {
            let answer = async {
                let mut conn = self
                    .nodes
                    .client(seed)?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async::<Vec<Value>>(&mut conn)
                    .await
            };
            match answer.await {
                Ok(ranges) => match serving(&ranges, slot) {
                    Some(addr) => return Ok(addr),
                    None => why.push(format!("{seed}: slot {slot} is not served")),
                },
                Err(e) => why.push(format!("{seed}: {e}")),
            }
        }
        Err(RedisError::from((
            ErrorKind::Client,
            "cluster",
            format!(
                "no node named the primary of httpsd's slot ({})",
                why.join("; ")
            ),
        )))
    }
}

/// The primary of `slot` in a `CLUSTER SLOTS` answer: `[start, end, [host, port,
/// id], replicas...]` per range.
fn serving(ranges: &[Value], slot: u16) -> Option<NodeAddr> {
    ranges.iter().find_map(|range| {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        if !(*start..=*end).contains(&i64::from(slot)) {
            return None;
        }
        let host = match primary.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let Value::Int(port) = primary.get(1)? else {
            return None;
        };
        Some(NodeAddr {
            host,
            port: u16::try_from(*port).ok()?,
        })
    })
}

/// The hash slot of a key (CRC16/XMODEM of its hash tag, or of the key without one),
/// as Redis computes it.
pub(super) fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

/// Asks once a [`LOOK_EVERY`] which node serves httpsd's slot, until the store is gone.
pub(super) async fn watch(seeds: Weak<Seeds>, topology: Weak<Topology>) {
    loop {
        let (Some(s), Some(t)) = (seeds.upgrade(), topology.upgrade()) else {
            return;
        };
        match s.primary().await {
            Ok(addr) => {
                t.observe(&addr.to_string());
            }
            Err(e) => tracing::debug!("cluster: {e}"),
        }
        drop((s, t));
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_ones_redis_computes() {
        // CLUSTER KEYSLOT answers of Redis 7.0.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        // An empty tag does not count: the whole key is hashed.
        assert_ne!(slot(b"{}foo"), slot(b"foo"));
        assert_eq!(slot(b"{httpsd}target_generation_queue"), slot(b"httpsd"));
    }

    #[test]
    fn the_primary_of_a_slot_is_read_from_cluster_slots() {
        let node = |port| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let ranges = vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(7000),
                node(7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node(7001)]),
        ];
        assert_eq!(serving(&ranges, 5460).map(|a| a.port), Some(7000));
        assert_eq!(serving(&ranges, 9000).map(|a| a.port), Some(7001));
        assert_eq!(serving(&ranges[..1], 9000), None);
    }
}

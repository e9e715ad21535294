//! A Sentinel group: which node is the primary of our master, asked of the sentinels
//! (every connect asks again, so a reconnect after a failover reaches the new one), and
//! a watcher that hears `+switch-master` (or notices on its next look, once a second)
//! and reports the change to the topology at once.

use super::endpoint::{NodeAddr, NodeTemplate};
use super::topology::Topology;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, Value};
use std::sync::Weak;
use std::time::Duration;

/// How often the watcher asks the sentinels even when it heard nothing (a
/// `+switch-master` sent while it was reconnecting is not repeated).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The sentinels of one master.
pub(super) struct Sentinels {
    pub(super) sentinels: Vec<NodeAddr>,
    pub(super) master: String,
    pub(super) nodes: NodeTemplate,
    pub(super) sentinel: NodeTemplate,
    pub(super) timeout: Duration,
}

fn error(what: String) -> RedisError {
    RedisError::from((ErrorKind::Client, "sentinel", what))
}

impl Sentinels {
    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
    }

    /// The primary the first sentinel that knows names.
    pub(super) async fn primary(&self) -> RedisResult<NodeAddr> {
        let mut why = Vec::new();
        for s in &self.sentinels {
            match self.ask(s).await {
                Ok(Some(addr)) => return Ok(addr),
                Ok(None) => why.push(format!("{s}: no master named {:?}", self.master)),
                Err(e) => why.push(format!("{s}: {e}")),
            }
        }
        Err(error(format!(
            "no sentinel named the primary ({})",
            why.join("; ")
        )))
    }

    async fn ask(&self, s: &NodeAddr) -> RedisResult<Option<NodeAddr>> {
        let mut conn = self
            .sentinel
            .client(s)?
            .get_multiplexed_async_connection_with_config(&self.config())
            .await?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query_async(&mut conn)
            .await?;
        Ok(addr.map(|(host, port)| NodeAddr { host, port }))
    }

    /// A connection to the primary, checked with `ROLE`: a sentinel's answer can be a
    /// moment old, and a demoted node must not get our writes.
    pub(super) async fn connect(
        &self,
        topology: &Topology,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        let addr = self.primary().await?;
        let mut conn = self
            .nodes
            .client(&addr)?
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        let is_master = matches!(role.first(), Some(Value::BulkString(r)) if r == b"master");
        if !is_master {
            return Err(error(format!("{addr} is not a primary (yet)")));
        }
        topology.observe(&addr.to_string());
        Ok(conn)
    }
}

/// Follows the sentinels until the store is gone: subscribed to `+switch-master` on one
/// sentinel at a time (the next one when it fails), asking for the primary on every
/// event and once a [`LOOK_EVERY`].
pub(super) async fn watch(sentinels: Weak<Sentinels>, topology: Weak<Topology>) {
    let mut next = 0usize;
    loop {
        let (Some(s), Some(t)) = (sentinels.upgrade(), topology.upgrade()) else {
            return;
        };
        let at = s.sentinels[next % s.sentinels.len()].clone();
        next += 1;
        let subscribed = tokio::time::timeout(s.timeout, async {
            let mut pubsub = s.sentinel.client(&at)?.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, RedisError>(pubsub)
        })
        .await;
        look(&s, &t).await;
        let Ok(Ok(mut pubsub)) = subscribed else {
            drop((s, t));
            tokio::time::sleep(LOOK_EVERY).await;
            continue;
        };
        drop((s, t));
        let mut events = pubsub.on_message();
        loop {
            let heard = tokio::select! {
                m = events.next() => match m {
                    Some(m) => Some(m),
                    None => break,
                },
                _ = tokio::time::sleep(LOOK_EVERY) => None,
            };
            let (Some(s), Some(t)) = (sentinels.upgrade(), topology.upgrade()) else {
                return;
            };
            if let Some(m) = heard {
                let payload: String = m.get_payload().unwrap_or_default();
                if payload.split(' ').next() != Some(s.master.as_str()) {
                    continue;
                }
                tracing::info!(sentinel = %at, "sentinel: {payload}");
            }
            look(&s, &t).await;
        }
    }
}

/// Asks for the primary and reports it.
async fn look(s: &Sentinels, t: &Topology) {
    match s.primary().await {
        Ok(addr) => {
            t.observe(&addr.to_string());
        }
        Err(e) => tracing::debug!("sentinel: {e}"),
    }
}

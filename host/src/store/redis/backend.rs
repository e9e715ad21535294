//! The deployment behind the pool: how a connection to the primary is made in each
//! mode, and the watcher that follows failovers (started with the first connection,
//! inside the runtime, ended when the store is dropped).

use super::cluster::Seeds;
use super::endpoint::Endpoint;
use super::keys::Keys;
use super::sentinel::Sentinels;
use super::topology::{RedisMode, Topology};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::sync::{Arc, Once};
use std::time::Duration;

/// A connection of the pool: to one node, or to a cluster (which routes each command
/// to the node of its key's slot).
#[derive(Clone)]
pub(super) enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

enum Kind {
    Single(Box<Client>),
    Sentinel(Arc<Sentinels>),
    Cluster(Arc<Seeds>, Box<ClusterClient>),
}

/// See the module documentation.
pub(super) struct Backend {
    kind: Kind,
    pub(super) topology: Arc<Topology>,
    watching: Once,
}

impl Backend {
    pub(super) fn new(endpoint: Endpoint, timeout: Duration) -> RedisResult<Backend> {
        let (kind, topology) = match endpoint {
            Endpoint::Single(client) => {
                let topology = Topology::new(RedisMode::Single, Vec::new(), None);
                let addr = client.get_connection_info().addr().to_string();
                topology.observe(&addr);
                (Kind::Single(Box::new(client)), topology)
            }
            Endpoint::Sentinel {
                sentinels,
                master,
                nodes,
                sentinel,
            } => {
                let names = sentinels.iter().map(|s| s.to_string()).collect();
                let topology = Topology::new(RedisMode::Sentinel, names, Some(master.clone()));
                let sentinels = Sentinels {
                    sentinels,
                    master,
                    nodes,
                    sentinel,
                    timeout,
                };
                (Kind::Sentinel(Arc::new(sentinels)), topology)
            }
            Endpoint::Cluster { seeds, nodes } => {
                let names = seeds.iter().map(|s| s.to_string()).collect();
                let topology = Topology::new(RedisMode::Cluster, names, None);
                let client = nodes.cluster(&seeds, timeout)?;
                let seeds = Seeds {
                    seeds,
                    nodes,
                    timeout,
                };
                (Kind::Cluster(Arc::new(seeds), Box::new(client)), topology)
            }
        };
        Ok(Backend {
            kind,
            topology: Arc::new(topology),
            watching: Once::new(),
        })
    }

    /// The key space of this deployment.
    pub(super) fn keys(&self) -> Keys {
        match self.kind {
            Kind::Cluster(..) => Keys::CLUSTER,
            _ => Keys::PLAIN,
        }
    }

    /// Starts following failovers (once; a no-op for one primary). Call inside the
    /// runtime.
    fn watch(&self) {
        self.watching.call_once(|| {
            let topology = Arc::downgrade(&self.topology);
            match &self.kind {
                Kind::Single(_) => {}
                Kind::Sentinel(s) => {
                    tokio::spawn(super::sentinel::watch(Arc::downgrade(s), topology));
                }
                Kind::Cluster(s, _) => {
                    tokio::spawn(super::cluster::watch(Arc::downgrade(s), topology));
                }
            }
        });
    }

    /// A connection for ordinary commands: to the primary, or to the cluster.
    pub(super) async fn connect(
        &self,
        config: &AsyncConnectionConfig,
        timeout: Duration,
    ) -> RedisResult<Conn> {
        self.watch();
        match &self.kind {
            Kind::Cluster(_, client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                Ok(Conn::Cluster(
                    client.get_async_connection_with_config(config).await?,
                ))
            }
            _ => Ok(Conn::Node(self.node(config).await?)),
        }
    }

    /// A connection to the one node that is the primary now (for a cluster: of
    /// httpsd's slot): what a blocking read or a subscription needs.
    pub(super) async fn node(
        &self,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        self.watch();
        match &self.kind {
            Kind::Single(client) => {
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await
            }
            Kind::Sentinel(s) => s.connect(&self.topology, config).await,
            Kind::Cluster(..) => {
                self.primary_client()
                    .await?
                    .get_multiplexed_async_connection_with_config(config)
                    .await
            }
        }
    }

    /// A client for the primary now (for a subscription, which needs a connection of
    /// its own).
    pub(super) async fn primary_client(&self) -> RedisResult<Client> {
        self.watch();
        let (addr, nodes) = match &self.kind {
            Kind::Single(client) => return Ok(Client::clone(client)),
            Kind::Sentinel(s) => (s.primary().await?, &s.nodes),
            Kind::Cluster(s, _) => (s.primary().await?, &s.nodes),
        };
        self.topology.observe(&addr.to_string());
        nodes.client(&addr)
    }
}

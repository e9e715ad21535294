//! Where Redis is: the three forms of `--redis-url`, read once at start-up.
//!
//! - `redis://` / `rediss://`: one primary (the 3.x form);
//! - `redis+sentinel://[user:pass@]h1:26379,h2,h3/<master>/<db>`: ask the sentinels
//!   which node is the primary of `<master>`, and ask again after a failover;
//! - `redis+cluster://[user:pass@]h1:p1,h2:p2,...`: a Redis Cluster.
//!
//! The `rediss+` forms speak TLS to every node (and to the sentinels). Credentials
//! before the `@` log in to the data nodes; sentinels that have a password of their own
//! get it from `?sentinel_username=...&sentinel_password=...`.
//!
//! A node the sentinels or the cluster name is reached as `host:port` with the URL's
//! scheme, credentials, database and certificate files: [`NodeTemplate`].

use super::settings::{RedisSettings, redact_url};
use crate::store::{StoreError, StoreResult};
use redis::{Client, RedisResult};

/// The default port of a sentinel named without one.
const SENTINEL_PORT: u16 = 26379;
/// The default port of a data node named without one.
const REDIS_PORT: u16 = 6379;

/// A `host:port` a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeAddr {
    pub(super) host: String,
    pub(super) port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How to open a connection to any node of a deployment: the scheme, the login (as
/// the URL spelled it, still percent-encoded), the database and the certificate files,
/// read once.
#[derive(Clone)]
pub(super) struct NodeTemplate {
    tls: bool,
    userinfo: String,
    db: i64,
    certs: Option<Certs>,
}

/// The bytes of `--redis-ca`, `--redis-client-cert` and `--redis-client-key`.
#[derive(Clone)]
struct Certs {
    client: Option<(Vec<u8>, Vec<u8>)>,
    root: Option<Vec<u8>>,
}

impl Certs {
    fn tls(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .clone()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert,
                    client_key: key,
                }),
            root_cert: self.root.clone(),
        }
    }
}

impl NodeTemplate {
    /// The URL of `node` (with the login: never print it, see [`redact_url`]).
    pub(super) fn url(&self, node: &NodeAddr) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let at = if self.userinfo.is_empty() { "" } else { "@" };
        format!("{scheme}://{}{at}{node}/{}", self.userinfo, self.db)
    }

    /// A client for `node`.
    pub(super) fn client(&self, node: &NodeAddr) -> RedisResult<Client> {
        match &self.certs {
            None => Client::open(self.url(node)),
            Some(certs) => Client::build_with_tls(self.url(node), certs.tls()),
        }
    }

    /// A cluster client starting from `seeds`.
    pub(super) fn cluster(
        &self,
        seeds: &[NodeAddr],
        timeout: std::time::Duration,
    ) -> RedisResult<redis::cluster::ClusterClient> {
        let mut builder = redis::cluster::ClusterClient::builder(seeds.iter().map(|n| self.url(n)))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            // A dead primary's requests fail quickly (the server answers 503 and the
            // worker backs off) instead of waiting inside the client: the topology
            // watcher finds the promoted replica (store/redis/topology.rs).
            .retries(2)
            .min_retry_wait(50)
            .max_retry_wait(250);
        if let Some(certs) = &self.certs {
            builder = builder.certs(certs.tls());
        }
        builder.build()
    }
}

/// The deployment a `--redis-url` names.
pub(super) enum Endpoint {
    /// One primary, as `redis://` always meant.
    Single(Client),
    /// A Sentinel group watching `master`.
    Sentinel {
        sentinels: Vec<NodeAddr>,
        master: String,
        /// For the data nodes.
        nodes: NodeTemplate,
        /// For the sentinels (their own login, no database).
        sentinel: NodeTemplate,
    },
    /// A Redis Cluster, found from `seeds`.
    Cluster {
        seeds: Vec<NodeAddr>,
        nodes: NodeTemplate,
    },
}

/// Reads `settings`' URL and certificate files. Errors name the URL without its
/// password.
pub(super) fn parse(settings: &RedisSettings) -> StoreResult<Endpoint> {
    let invalid = |what: String| {
        StoreError::Unavailable(format!(
            "invalid Redis settings for {}: {what}",
            redact_url(&settings.url)
        ))
    };
    let (scheme, rest) = settings.url.split_once("://").ok_or_else(|| {
        invalid("not a URL (redis://, rediss://, redis+sentinel://, redis+cluster://)".into())
    })?;
    let (tls, kind) = match scheme {
        "redis" | "rediss" => return single(settings).map_err(invalid).map(Endpoint::Single),
        "redis+sentinel" => (false, "sentinel"),
        "rediss+sentinel" => (true, "sentinel"),
        "redis+cluster" => (false, "cluster"),
        "rediss+cluster" => (true, "cluster"),
        other => return Err(invalid(format!("unknown scheme {other}://"))),
    };
    let certs = read_certs(settings, tls).map_err(invalid)?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (u.to_string(), h),
        None => (String::new(), authority),
    };
    let default_port = if kind == "sentinel" {
        SENTINEL_PORT
    } else {
        REDIS_PORT
    };
    let addrs = hosts
        .split(',')
        .map(|h| node_addr(h, default_port))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let template = |userinfo: String, db: i64| NodeTemplate {
        tls,
        userinfo,
        db,
        certs: certs.clone(),
    };
    if kind == "cluster" {
        if segments.any(|s| s != "0") {
            return Err(invalid("a cluster has only database 0".into()));
        }
        return Ok(Endpoint::Cluster {
            seeds: addrs,
            nodes: template(userinfo, 0),
        });
    }
    let master = segments
        .next()
        .ok_or_else(|| invalid("name the master: redis+sentinel://hosts/<master>/<db>".into()))?
        .to_string();
    let db = match segments.next() {
        None => 0,
        Some(db) => db
            .parse()
            .map_err(|_| invalid(format!("database {db:?} is not a number")))?,
    };
    let sentinel_login = sentinel_userinfo(query).map_err(invalid)?;
    Ok(Endpoint::Sentinel {
        sentinels: addrs,
        master,
        nodes: template(userinfo, db),
        sentinel: template(sentinel_login, 0),
    })
}

/// `host[:port]` or `[v6]:port`.
fn node_addr(s: &str, default_port: u16) -> Result<NodeAddr, String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed ["))?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("a host is missing in {s:?}"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().map_err(|_| format!("{s:?}: bad port"))?,
    };
    Ok(NodeAddr {
        host: host.to_string(),
        port,
    })
}

/// The sentinels' own login from the query (`sentinel_username`, `sentinel_password`),
/// as URL userinfo.
fn sentinel_userinfo(query: &str) -> Result<String, String> {
    let (mut user, mut password) = (String::new(), None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sentinel_username" => user = v.to_string(),
            "sentinel_password" => password = Some(v.to_string()),
            _ => {
                return Err(format!(
                    "unknown parameter {k:?} (sentinel_username, sentinel_password)"
                ));
            }
        }
    }
    Ok(match password {
        Some(p) => format!("{user}:{p}"),
        None if user.is_empty() => String::new(),
        None => user,
    })
}

/// The certificate files, read now; `None` without TLS. Files without TLS are an error.
fn read_certs(settings: &RedisSettings, tls: bool) -> Result<Option<Certs>, String> {
    let files = &settings.tls;
    let given = files.ca.is_some() || files.client_cert.is_some() || files.client_key.is_some();
    if !tls {
        if given {
            return Err(
                "--redis-ca, --redis-client-cert and --redis-client-key need a rediss:// URL (or rediss+sentinel://, rediss+cluster://)".into(),
            );
        }
        return Ok(None);
    }
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let client = match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        (None, None) => None,
        _ => return Err("--redis-client-cert and --redis-client-key go together".into()),
    };
    let root = files.ca.as_ref().map(read).transpose()?;
    Ok(Some(Certs { client, root }))
}

/// The client of a `redis://` or `rediss://` URL, as 3.x took it.
fn single(settings: &RedisSettings) -> Result<Client, String> {
    let tls = settings.url.starts_with("rediss://");
    match read_certs(settings, tls)? {
        Some(certs) if certs.client.is_some() || certs.root.is_some() => {
            Client::build_with_tls(settings.url.as_str(), certs.tls()).map_err(|e| e.to_string())
        }
        _ => Client::open(settings.url.as_str()).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> StoreResult<Endpoint> {
        parse(&RedisSettings {
            url: url.into(),
            ..Default::default()
        })
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_database() {
        let Ok(Endpoint::Sentinel {
            sentinels,
            master,
            nodes,
            sentinel,
        }) = parsed(
            "redis+sentinel://u:p%40w@s1:26380,s2,[::1]:26381/mymaster/3?sentinel_password=sp",
        )
        else {
            panic!("not a sentinel endpoint");
        };
        let names: Vec<String> = sentinels.iter().map(|s| s.to_string()).collect();
        assert_eq!(names, ["s1:26380", "s2:26379", "[::1]:26381"]);
        assert_eq!(master, "mymaster");
        let primary = NodeAddr {
            host: "10.0.0.5".into(),
            port: 6380,
        };
        assert_eq!(nodes.url(&primary), "redis://u:p%40w@10.0.0.5:6380/3");
        assert_eq!(sentinel.url(&sentinels[0]), "redis://:sp@s1:26380/0");
    }

    #[test]
    fn cluster_urls_name_seed_nodes() {
        let Ok(Endpoint::Cluster { seeds, nodes }) = parsed("rediss+cluster://h1:7000,h2:7001")
        else {
            panic!("not a cluster endpoint");
        };
        assert_eq!(seeds.len(), 2);
        assert_eq!(nodes.url(&seeds[1]), "rediss://h2:7001/0");
    }

    #[test]
    fn bad_urls_are_refused_at_start_up_without_their_password() {
        for (url, why) in [
            ("redis+sentinel://:pw-9@s1,s2", "name the master"),
            ("redis+sentinel://s1/m/x", "not a number"),
            ("redis+cluster://h1:7000/2", "only database 0"),
            ("redis+cluster://h1:port", "bad port"),
            ("redis+sentinel://s1/m?password=pw-9", "unknown parameter"),
            ("memcached://h1", "unknown scheme"),
        ] {
            let Err(e) = parsed(url) else {
                panic!("{url} was accepted")
            };
            let e = e.to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("pw-9"), "{url}: {e}");
        }
    }
}

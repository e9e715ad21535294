//! Replicated Redis topologies for the failover tests, made of real `redis-server`
//! processes on free loopback ports: a Sentinel group (a primary, one replica, three
//! sentinels) and a cluster (three primaries with a replica each). Everything they
//! write (sentinel configs, cluster node files, replication transfers, logs) stays in
//! one temp dir, and every process is killed when the topology is dropped. (The
//! machine's own Redis on 6379 is never touched.)
//!
//! The tests kill primaries on purpose, so the helpers ask the topology itself who
//! serves what (sentinels, `CLUSTER SLOTS`) instead of remembering the initial layout.
//!
//! Each topology also comes secured (`start_secured`), like
//! [`RedisServer::start_secured`](super::RedisServer::start_secured): every process
//! speaks only TLS, with one certificate signed by the test CA, also for replication,
//! the cluster bus and sentinel links; data nodes have no usable `default` user but
//! `admin` (which replicas, sentinels and these helpers log in as) and
//! [`HTTPSD_USER`] (for the process under test); sentinels want a password of their own.

use super::certs::Certs;
use super::free_port;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a topology may take to converge. Generous: the suite runs many test
/// binaries at once on small machines, and sentinels or cluster gossip that are late by
/// a few timer ticks are not a failure.
const CONVERGE_SECS: u64 = 60;

/// A process that does not answer PING within this long after it was spawned is
/// reported (with its log) rather than waited on forever.
const PROCESS_UP_SECS: u64 = 20;

/// What every data node (not sentinels) runs with: loopback only, nothing persisted,
/// and diskless replication without delay, so a replica gets its first copy at once
/// instead of after the default 5 s wait for more replicas to join the transfer.
const DATA_NODE_ARGS: &[&str] = &[
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--repl-diskless-sync",
    "yes",
    "--repl-diskless-sync-delay",
    "0",
];

/// The password of the secured data nodes' `admin` user (all commands), which
/// replicas, sentinels and the helpers here log in as.
const ADMIN_PASSWORD: &str = "admin-pw-5512";

/// The ACL user of the secured data nodes meant for httpsd, the one in the URLs of
/// `url()`. It may do everything: the secured tests are about reaching the nodes
/// through TLS and logins, not about which commands httpsd needs.
pub const HTTPSD_USER: &str = "httpsd";
pub const HTTPSD_PASSWORD: &str = "httpsd-pw-4471";

/// The password of the secured sentinels themselves (`requirepass`), which they also
/// use with each other (`sentinel sentinel-pass`: without it a sentinel would send its
/// own `requirepass`, the same here, but only by a fallback kept for old configs).
pub const SENTINEL_PASSWORD: &str = "sentinel-pw-8812";

/// A Redis Sentinel deployment: a primary, one replica that follows it, and three
/// sentinels monitoring it with quorum 2, so killing the primary makes the sentinels
/// promote the replica within a few seconds.
pub struct SentinelGroup {
    master_name: String,
    // Sentinels first (fields drop in order): killed before the data nodes, they never
    // see those go down and start a failover during teardown.
    sentinels: Vec<Node>,
    /// The initial primary, then the replica (roles change after a failover).
    data: Vec<Node>,
    /// How the helpers reach the data nodes, and the sentinels.
    data_dial: Dial,
    sentinel_dial: Dial,
    secured: bool,
    dir: tempfile::TempDir,
}

impl SentinelGroup {
    /// Starts the group monitoring `master_name` and returns once the replica is in
    /// sync and every sentinel knows the primary, the replica and the two other
    /// sentinels, which is what a failover needs; panics after a bound with the state
    /// it last saw and the processes' logs.
    pub fn start(master_name: &str) -> SentinelGroup {
        SentinelGroup::launch(master_name, None)
    }

    /// [`start`](Self::start), secured (see the module's doc): TLS only everywhere,
    /// ACL users on the data nodes, a password on the sentinels.
    pub fn start_secured(master_name: &str, certs: &Certs) -> SentinelGroup {
        SentinelGroup::launch(master_name, Some(certs))
    }

    fn launch(master_name: &str, certs: Option<&Certs>) -> SentinelGroup {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dial = Dial::new(certs, "admin", ADMIN_PASSWORD);
        let sentinel_dial = Dial::new(certs, "", SENTINEL_PASSWORD);
        let data_args = |port: u16| {
            let mut args = data_node_listen(port, certs);
            args.extend(strings(&["--dir", path_str(dir.path())]));
            args.extend(strings(DATA_NODE_ARGS));
            args
        };
        let primary = Node::launch(dir.path(), "primary", free_port, &data_dial, &data_args);
        let primary_port = primary.port;
        let replica = Node::launch(dir.path(), "replica", free_port, &data_dial, |port| {
            let mut args = data_args(port);
            args.extend([
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary_port.to_string(),
            ]);
            args
        });
        let mut data = vec![primary, replica];

        // The replica first: a sentinel learns of replicas from the primary's INFO,
        // which it reads at once on connecting but then only every 10 s.
        let replica_port = data[1].port;
        let mut last = String::new();
        wait_for(CONVERGE_SECS, || {
            let info = data_dial.query::<String>(replica_port, &["INFO", "replication"]);
            last = format!("{info:?}");
            let up = info.is_ok_and(|i| info_field(&i, "master_link_status") == Some("up"));
            up.then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the replica on {replica_port} did not sync with the primary on \
                 {primary_port} within {CONVERGE_SECS}s; INFO replication: {last}\n{}",
                logs(&data)
            )
        });

        let mut sentinels = Vec::new();
        for i in 1..=3 {
            // Sentinel rewrites its config file (state, discovered peers), so each gets
            // a fresh writable one.
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let name = format!("sentinel-{i}");
            let sentinel = Node::launch(dir.path(), &name, free_port, &sentinel_dial, |port| {
                let text = sentinel_conf(port, dir.path(), master_name, primary_port, certs);
                std::fs::write(&conf, text).expect("write sentinel config");
                strings(&[path_str(&conf), "--sentinel"])
            });
            sentinels.push(sentinel);
        }

        let mut last = Vec::new();
        wait_for(CONVERGE_SECS, || {
            last = sentinels
                .iter()
                .map(|s| {
                    let state = sentinel_master(&sentinel_dial, s.port, master_name);
                    let ready = state.as_ref().is_ok_and(|m| {
                        field(m, "num-slaves").and_then(|n| n.parse::<u32>().ok()) >= Some(1)
                            && field(m, "num-other-sentinels") == Some("2")
                    });
                    (s.port, ready, state)
                })
                .collect();
            last.iter().all(|(_, ready, _)| *ready).then_some(())
        })
        .unwrap_or_else(|| {
            let mut seen = String::new();
            for (port, _, state) in &last {
                let _ = writeln!(seen, "sentinel {port}: {state:?}");
            }
            data.append(&mut sentinels);
            panic!(
                "the sentinels did not all see master {master_name:?} with a replica and \
                 two other sentinels within {CONVERGE_SECS}s; SENTINEL master:\n{seen}{}",
                logs(&data)
            )
        });

        SentinelGroup {
            master_name: master_name.to_string(),
            sentinels,
            data,
            data_dial,
            sentinel_dial,
            secured: certs.is_some(),
            dir,
        }
    }

    /// The URL for httpsd: every sentinel, the master's name, database 0. Secured:
    /// `rediss+` (TLS to sentinels and data nodes), [`HTTPSD_USER`] for the data nodes
    /// before the `@`, and the sentinels' password in the query.
    pub fn url(&self) -> String {
        let (hosts, name) = (hosts(&self.sentinels), &self.master_name);
        if self.secured {
            format!(
                "rediss+sentinel://{HTTPSD_USER}:{HTTPSD_PASSWORD}@{hosts}/{name}/0\
                 ?sentinel_password={SENTINEL_PASSWORD}"
            )
        } else {
            format!("redis+sentinel://{hosts}/{name}/0")
        }
    }

    pub fn sentinel_ports(&self) -> [u16; 3] {
        [
            self.sentinels[0].port,
            self.sentinels[1].port,
            self.sentinels[2].port,
        ]
    }

    /// The ports of the two data nodes: the initial primary, then the initial replica.
    pub fn data_ports(&self) -> [u16; 2] {
        [self.data[0].port, self.data[1].port]
    }

    /// The primary's port as the first sentinel that answers reports it (during a
    /// failover, sentinels may still name the old one: see
    /// [`wait_promoted`](Self::wait_promoted)).
    pub fn primary_port(&self) -> u16 {
        let mut errors = Vec::new();
        for s in &self.sentinels {
            match sentinel_primary(&self.sentinel_dial, s.port, &self.master_name) {
                Ok(Some(port)) => return port,
                other => errors.push(format!("sentinel {}: {other:?}", s.port)),
            }
        }
        panic!(
            "no sentinel named the primary of {:?}: {errors:?}",
            self.master_name
        )
    }

    /// SIGKILLs the data node the sentinels name as primary (no shutdown, no
    /// goodbye to the replica: the way a crashed host looks) and returns its port. It
    /// is not restarted.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        let node = self
            .data
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("the sentinels name {port}, not one of our data nodes"));
        assert!(
            node.kill(),
            "the sentinels still name {port} as primary, but it is already dead \
             (wait_promoted after a kill)"
        );
        port
    }

    /// Waits until every sentinel names a primary other than `old_port` and that node
    /// answers `ROLE` with `master`, and returns its port; panics after `secs`. Every
    /// sentinel, not just one: a client may ask any of them, and one still naming the
    /// dead node would send it there.
    pub fn wait_promoted(&self, old_port: u16, secs: u64) -> u16 {
        let mut last = String::new();
        let found = wait_for(secs, || {
            let named: Vec<_> = self
                .sentinels
                .iter()
                .map(|s| sentinel_primary(&self.sentinel_dial, s.port, &self.master_name))
                .collect();
            last = format!("{named:?}");
            let first = match named.first() {
                Some(Ok(Some(p))) => *p,
                _ => return None,
            };
            let agreed = named
                .iter()
                .all(|n| matches!(n, Ok(Some(p)) if *p == first));
            let master = role(&self.data_dial, first).is_ok_and(|r| r == "master");
            (agreed && first != old_port && master).then_some(first)
        });
        found.unwrap_or_else(|| {
            panic!(
                "the sentinels did not promote a new primary in place of {old_port} \
                 within {secs}s; they last named (per sentinel): {last}\n{}",
                self.logs()
            )
        })
    }

    /// Runs one command on the data node on `port` (secured: as `admin`) and returns
    /// its answer.
    pub fn node_cmd<T: redis::FromRedisValue>(&self, port: u16, args: &[&str]) -> T {
        self.data_dial
            .query(port, args)
            .unwrap_or_else(|e| panic!("redis on {port}: {args:?}: {e}"))
    }

    /// The temp dir holding the configs and the processes' logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of every process's log, for failure messages.
    pub fn logs(&self) -> String {
        logs(self.data.iter().chain(&self.sentinels))
    }
}

/// A Redis Cluster of six nodes, three primaries with one replica each, covering all
/// 16384 slots, with a 2 s node timeout so a killed primary's replica takes over within
/// a few seconds.
pub struct Cluster {
    nodes: Vec<Node>,
    /// How the helpers reach the nodes.
    dial: Dial,
    secured: bool,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts six nodes, joins them with `redis-cli --cluster create`, and returns
    /// once every node says `cluster_state:ok`, knows all six with their roles, and
    /// every replica is in sync; panics after a bound with the state it last saw,
    /// redis-cli's output and the nodes' logs.
    pub fn start() -> Cluster {
        Cluster::launch(None)
    }

    /// [`start`](Self::start), secured (see the module's doc): TLS only, for clients,
    /// replication and the cluster bus alike, and ACL users.
    pub fn start_secured(certs: &Certs) -> Cluster {
        Cluster::launch(Some(certs))
    }

    fn launch(certs: Option<&Certs>) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let dial = Dial::new(certs, "admin", ADMIN_PASSWORD);
        let mut nodes = Vec::new();
        for i in 1..=6 {
            let name = format!("node-{i}");
            let node = Node::launch(dir.path(), &name, cluster_port, &dial, |port| {
                let conf = dir.path().join(format!("nodes-{port}.conf"));
                let mut args = data_node_listen(port, certs);
                if certs.is_some() {
                    args.extend(strings(&["--tls-cluster", "yes"]));
                }
                args.extend(strings(&["--dir", path_str(dir.path())]));
                args.extend(strings(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ]));
                args.extend(["--cluster-config-file".into(), path_str(&conf).into()]);
                args.extend(strings(DATA_NODE_ARGS));
                args
            });
            nodes.push(node);
        }

        let created = create_cluster(dir.path(), &nodes, certs);
        let mut last = Vec::new();
        wait_for(CONVERGE_SECS, || {
            last = nodes
                .iter()
                .map(|n| (n.port, cluster_node_ready(&dial, n.port)))
                .collect();
            last.iter().all(|(_, r)| r.is_ok()).then_some(())
        })
        .unwrap_or_else(|| {
            let mut seen = String::new();
            for (port, r) in &last {
                let _ = writeln!(seen, "node {port}: {r:?}");
            }
            panic!(
                "the cluster did not converge within {CONVERGE_SECS}s:\n{seen}\
                 redis-cli --cluster create said:\n{created}\n{}",
                logs(&nodes)
            )
        });
        Cluster {
            nodes,
            dial,
            secured: certs.is_some(),
            dir,
        }
    }

    /// The URL for httpsd: every node as a seed. Secured: `rediss+` and
    /// [`HTTPSD_USER`].
    pub fn url(&self) -> String {
        let hosts = hosts(&self.nodes);
        if self.secured {
            format!("rediss+cluster://{HTTPSD_USER}:{HTTPSD_PASSWORD}@{hosts}")
        } else {
            format!("redis+cluster://{hosts}")
        }
    }

    /// The ports of all six nodes, killed ones included.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The port of the primary serving `slot`, as the first live node that answers
    /// `CLUSTER SLOTS` sees it (right after a kill that may still be the dead node).
    pub fn primary_of_slot(&self, slot: u16) -> u16 {
        let mut errors = Vec::new();
        for n in self.live() {
            match slot_primary(&self.dial, n.port, slot) {
                Ok(Some(port)) => return port,
                other => errors.push(format!("node {}: {other:?}", n.port)),
            }
        }
        panic!("no live node named the primary of slot {slot}: {errors:?}")
    }

    /// The hash slot of `key`, from a live node (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let mut errors = Vec::new();
        for n in self.live() {
            match self.dial.query::<i64>(n.port, &["CLUSTER", "KEYSLOT", key]) {
                Ok(slot) => return slot as u16,
                Err(e) => errors.push(format!("node {}: {e}", n.port)),
            }
        }
        panic!("no live node answered CLUSTER KEYSLOT {key:?}: {errors:?}")
    }

    /// SIGKILLs the primary serving `slot` (see [`kill`](Self::kill)) and returns its
    /// port.
    pub fn kill_primary_of(&mut self, slot: u16) -> u16 {
        let port = self.primary_of_slot(slot);
        self.kill(port);
        port
    }

    /// SIGKILLs the node on `port` (a crash, not a shutdown). It is not restarted.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("{port} is not a node of this cluster"));
        assert!(node.kill(), "the node on {port} was already dead");
    }

    /// Waits until every live node names a primary other than `old_port` for `slot`,
    /// and that node answers `ROLE` with `master`, claims the slot itself and says
    /// `cluster_state:ok`; returns its port, or panics after `secs`. Every live node,
    /// not just one: a client may start from any of them.
    pub fn wait_promoted(&self, slot: u16, old_port: u16, secs: u64) -> u16 {
        let mut last = String::new();
        let found = wait_for(secs, || {
            let named: Vec<_> = self
                .live()
                .map(|n| (n.port, slot_primary(&self.dial, n.port, slot)))
                .collect();
            last = format!("{named:?}");
            let first = match named.first() {
                Some((_, Ok(Some(p)))) => *p,
                _ => return None,
            };
            let agreed = named
                .iter()
                .all(|(_, n)| matches!(n, Ok(Some(p)) if *p == first));
            let ready = agreed
                && first != old_port
                && role(&self.dial, first).is_ok_and(|r| r == "master")
                && cluster_state_ok(&self.dial, first);
            ready.then_some(first)
        });
        found.unwrap_or_else(|| {
            panic!(
                "the cluster did not promote a new primary for slot {slot} in place of \
                 {old_port} within {secs}s; the live nodes last named (node, primary): \
                 {last}\n{}",
                self.logs()
            )
        })
    }

    /// Moves `slot` and its keys from its primary to the primary on `to_port`, the
    /// way `redis-cli --cluster reshard` does (IMPORTING/MIGRATING, `MIGRATE` in
    /// batches, then `SETSLOT NODE` on every primary): while it runs, clients of the
    /// slot get `ASK` for keys already moved and `TRYAGAIN` for commands spanning both
    /// sides, and `MOVED` once it is done. `pause` runs between batches, so a test can
    /// watch clients in the middle. Plain clusters only (`MIGRATE` here sends no
    /// login).
    pub fn move_slot(&self, slot: u16, to_port: u16, mut pause: impl FnMut()) {
        assert!(!self.secured, "move_slot is for plain clusters");
        let from_port = self.primary_of_slot(slot);
        assert_ne!(from_port, to_port, "slot {slot} is on {to_port} already");
        let id = |port: u16| self.node_cmd::<String>(port, &["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from_port), id(to_port));
        let slot_s = slot.to_string();
        self.node_cmd::<()>(
            to_port,
            &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id],
        );
        self.node_cmd::<()>(
            from_port,
            &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id],
        );
        loop {
            let keys: Vec<String> =
                self.node_cmd(from_port, &["CLUSTER", "GETKEYSINSLOT", &slot_s, "20"]);
            if keys.is_empty() {
                break;
            }
            let to = to_port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &to, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            self.node_cmd::<redis::Value>(from_port, &args);
            pause();
        }
        // The new owner first, then the old one, then the rest (as redis-cli does).
        let mut order = vec![to_port, from_port];
        order.extend(
            self.live()
                .map(|n| n.port)
                .filter(|p| *p != to_port && *p != from_port),
        );
        for port in order {
            if role(&self.dial, port).is_ok_and(|r| r == "master") {
                self.node_cmd::<()>(port, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]);
            }
        }
    }

    /// Runs one command on the node on `port` (secured: as `admin`) and returns its
    /// answer.
    pub fn node_cmd<T: redis::FromRedisValue>(&self, port: u16, args: &[&str]) -> T {
        self.dial
            .query(port, args)
            .unwrap_or_else(|e| panic!("redis on {port}: {args:?}: {e}"))
    }

    /// The temp dir holding the node files and the processes' logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        logs(&self.nodes)
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }
}

/// One `redis-server` process of a topology (a data node or a sentinel), its output
/// kept in a log file; killed when dropped.
struct Node {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// Starts `redis-server <args(port)>` on a port from `pick` and waits until it is
    /// the one answering there (reached through `dial`). A free port can be taken by
    /// another test between the probe and redis-server's bind (the server then exits,
    /// or someone else answers), so a few other ports are tried before giving up.
    fn launch(
        dir: &Path,
        name: &str,
        pick: impl Fn() -> u16,
        dial: &Dial,
        mut args: impl FnMut(u16) -> Vec<String>,
    ) -> Node {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = pick();
            let log = dir.join(format!("{name}-{port}.log"));
            let out = std::fs::File::create(&log).expect("create a log file");
            let err = out.try_clone().expect("clone the log file");
            let child = Command::new("redis-server")
                .args(args(port))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start redis-server (scripts/test installs it)");
            let mut node = Node {
                port,
                child: Some(child),
                log,
            };
            match node.wait_up(dial) {
                Ok(()) => return node,
                Err(why) => failures.push(format!("{name} on {port}: {why}\n{}", node.tail())),
            }
        }
        panic!("could not start {name}:\n{}", failures.join("\n"))
    }

    /// Waits until this process answers on its port, checked by its pid so a server of
    /// someone else's that won the race for the port is not mistaken for it.
    fn wait_up(&mut self, dial: &Dial) -> Result<(), String> {
        let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(PROCESS_UP_SECS);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!("exited at start ({status})"));
            }
            if let Ok(info) = dial.query::<String>(self.port, &["INFO", "server"]) {
                if info_field(&info, "process_id") == Some(pid.to_string().as_str()) {
                    return Ok(());
                }
                self.kill();
                return Err("another process answers on its port".into());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("no answer within {PROCESS_UP_SECS}s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap; false if it was already dead.
    fn kill(&mut self) -> bool {
        match self.child.take() {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                true
            }
            None => false,
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!(
            "--- {} (last {} lines)\n{}",
            self.log.display(),
            lines.len() - start,
            lines[start..].join("\n")
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn logs<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> String {
    nodes
        .into_iter()
        .map(Node::tail)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A port for a cluster node: the cluster bus listens on port + 10000, so both must be
/// free (and the port below 55536 for the sum to be one).
fn cluster_port() -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        if port < 55535
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port p with p + 10000 free as well")
}

/// `redis-cli --cluster create` over `nodes` (the first three become primaries), bounded
/// in time; returns its output, or panics with it. Secured, redis-cli talks TLS and
/// logs in as `admin`.
fn create_cluster(dir: &Path, nodes: &[Node], certs: Option<&Certs>) -> String {
    let out_path = dir.join("cluster-create.log");
    let out = std::fs::File::create(&out_path).expect("create a log file");
    let err = out.try_clone().expect("clone the log file");
    let mut cmd = Command::new("redis-cli");
    if let Some(certs) = certs {
        cmd.args(["--tls", "--cacert", path_str(&certs.ca)]).args([
            "--user",
            "admin",
            "--pass",
            ADMIN_PASSWORD,
            "--no-auth-warning",
        ]);
    }
    cmd.arg("--cluster").arg("create");
    for n in nodes {
        cmd.arg(format!("127.0.0.1:{}", n.port));
    }
    let mut child = cmd
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start redis-cli (scripts/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(CONVERGE_SECS);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for redis-cli") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => output,
        Some(s) => panic!(
            "redis-cli --cluster create failed ({s}):\n{output}\n{}",
            logs(nodes)
        ),
        None => panic!(
            "redis-cli --cluster create did not finish within {CONVERGE_SECS}s:\n{output}\n{}",
            logs(nodes)
        ),
    }
}

/// Ok once the node on `port` is fit for a failover test: `cluster_state:ok`, six nodes
/// known and connected, three primaries and three replicas with none suspected or
/// failed, and, for a replica, its link to its primary up. Err says what is missing.
fn cluster_node_ready(dial: &Dial, port: u16) -> Result<(), String> {
    let info = dial
        .query::<String>(port, &["CLUSTER", "INFO"])
        .map_err(|e| e.to_string())?;
    if info_field(&info, "cluster_state") != Some("ok") {
        return Err(format!(
            "cluster_state:{}",
            info_field(&info, "cluster_state").unwrap_or("?")
        ));
    }
    let nodes = dial
        .query::<String>(port, &["CLUSTER", "NODES"])
        .map_err(|e| e.to_string())?;
    let mut primaries = 0;
    let mut replicas = 0;
    for line in nodes.lines().filter(|l| !l.trim().is_empty()) {
        // <id> <ip:port@bus> <flags> <primary id> <ping> <pong> <epoch> <link> <slots...>
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(flags), Some(link)) = (fields.get(2), fields.get(7)) else {
            return Err(format!("odd CLUSTER NODES line: {line}"));
        };
        let flags: Vec<&str> = flags.split(',').collect();
        let unwell = ["fail", "fail?", "handshake", "noaddr"];
        if flags.iter().any(|f| unwell.contains(f)) || *link != "connected" {
            return Err(format!("not settled: {line}"));
        }
        if flags.contains(&"master") {
            primaries += 1;
        } else if flags.contains(&"slave") {
            replicas += 1;
        }
    }
    if (primaries, replicas) != (3, 3) {
        return Err(format!(
            "knows {primaries} primaries and {replicas} replicas:\n{nodes}"
        ));
    }
    let repl = dial
        .query::<String>(port, &["INFO", "replication"])
        .map_err(|e| e.to_string())?;
    if info_field(&repl, "role") == Some("slave")
        && info_field(&repl, "master_link_status") != Some("up")
    {
        return Err(format!(
            "replica with master_link_status:{}",
            info_field(&repl, "master_link_status").unwrap_or("?")
        ));
    }
    Ok(())
}

fn cluster_state_ok(dial: &Dial, port: u16) -> bool {
    dial.query::<String>(port, &["CLUSTER", "INFO"])
        .is_ok_and(|i| info_field(&i, "cluster_state") == Some("ok"))
}

/// The primary of `slot` in the `CLUSTER SLOTS` answer of the node on `port`; None if
/// no range holds it (the slot is uncovered in that node's view).
fn slot_primary(dial: &Dial, port: u16, slot: u16) -> redis::RedisResult<Option<u16>> {
    let ranges = dial.query::<Vec<redis::Value>>(port, &["CLUSTER", "SLOTS"])?;
    for range in ranges {
        // [start, end, [ip, port, id, ...] of the primary, replicas...]
        let redis::Value::Array(items) = range else {
            continue;
        };
        let (Some(start), Some(end)) = (items.first().and_then(int), items.get(1).and_then(int))
        else {
            continue;
        };
        if !(start..=end).contains(&i64::from(slot)) {
            continue;
        }
        if let Some(redis::Value::Array(primary)) = items.get(2) {
            return Ok(primary.get(1).and_then(int).map(|p| p as u16));
        }
    }
    Ok(None)
}

/// `127.0.0.1:<port>` of each of `nodes`, comma-separated: the hosts of a URL.
fn hosts(nodes: &[Node]) -> String {
    let hosts: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    hosts.join(",")
}

/// The first word of `ROLE` ("master", "slave" or "sentinel").
fn role(dial: &Dial, port: u16) -> redis::RedisResult<String> {
    let answer = dial.query::<Vec<redis::Value>>(port, &["ROLE"])?;
    answer
        .first()
        .and_then(text)
        .ok_or_else(|| (redis::ErrorKind::Client, "empty ROLE answer").into())
}

/// `SENTINEL get-master-addr-by-name`: the port of the primary that sentinel names,
/// None if it does not know `name`.
fn sentinel_primary(dial: &Dial, port: u16, name: &str) -> redis::RedisResult<Option<u16>> {
    let addr =
        dial.query::<Option<Vec<String>>>(port, &["SENTINEL", "get-master-addr-by-name", name])?;
    Ok(addr.and_then(|a| a.get(1).and_then(|p| p.parse().ok())))
}

/// `SENTINEL master <name>` as field/value pairs.
fn sentinel_master(
    dial: &Dial,
    port: u16,
    name: &str,
) -> redis::RedisResult<Vec<(String, String)>> {
    let flat = dial.query::<Vec<String>>(port, &["SENTINEL", "master", name])?;
    Ok(flat
        .chunks(2)
        .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
        .collect())
}

fn field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The listening arguments of a data node on `port`. Plain: that port. Secured: TLS
/// only on it, for replication too (the replica's link to its primary, and sentinels
/// reading INFO), logins required (`default` off), and a replica logs in to its
/// primary as `admin`, whichever node that is after a failover.
fn data_node_listen(port: u16, certs: Option<&Certs>) -> Vec<String> {
    let port = port.to_string();
    let Some(certs) = certs else {
        return strings(&["--port", &port]);
    };
    let mut args = strings(&["--port", "0", "--tls-port", &port]);
    args.extend(strings(&[
        "--tls-cert-file",
        path_str(&certs.cert),
        "--tls-key-file",
        path_str(&certs.key),
        "--tls-ca-cert-file",
        path_str(&certs.ca),
        "--tls-auth-clients",
        "no",
        "--tls-replication",
        "yes",
        "--masteruser",
        "admin",
        "--masterauth",
        ADMIN_PASSWORD,
    ]));
    // One `user` directive per `--user`: the words after it are its ACL rules.
    let admin_pass = format!(">{ADMIN_PASSWORD}");
    let httpsd_pass = format!(">{HTTPSD_PASSWORD}");
    for rules in [
        vec!["default", "off"],
        vec!["admin", "on", &admin_pass, "~*", "&*", "+@all"],
        vec![HTTPSD_USER, "on", &httpsd_pass, "~*", "&*", "+@all"],
    ] {
        args.push("--user".into());
        args.extend(strings(&rules));
    }
    args
}

/// The config file of a sentinel on `port` that monitors `master_name`, first served
/// on `primary_port`: failure detection in 1 s, a failover may take 10 s. Secured: TLS
/// only on `port`, and `tls-replication yes`, which is what makes a sentinel talk TLS
/// on its own links, to the data nodes and to the other sentinels alike; it logs in to
/// the data nodes as `admin`, asks its clients for [`SENTINEL_PASSWORD`], and gives it
/// to the other sentinels (which ask the same).
fn sentinel_conf(
    port: u16,
    dir: &Path,
    master_name: &str,
    primary_port: u16,
    certs: Option<&Certs>,
) -> String {
    let mut text = match certs {
        None => format!("port {port}\n"),
        Some(certs) => format!(
            "port 0\n\
             tls-port {port}\n\
             tls-cert-file {cert}\n\
             tls-key-file {key}\n\
             tls-ca-cert-file {ca}\n\
             tls-auth-clients no\n\
             tls-replication yes\n\
             requirepass {SENTINEL_PASSWORD}\n\
             sentinel sentinel-pass {SENTINEL_PASSWORD}\n",
            cert = path_str(&certs.cert),
            key = path_str(&certs.key),
            ca = path_str(&certs.ca),
        ),
    };
    let _ = write!(
        text,
        "bind 127.0.0.1\n\
         dir {dir}\n\
         sentinel resolve-hostnames no\n\
         sentinel monitor {master_name} 127.0.0.1 {primary_port} 2\n\
         sentinel down-after-milliseconds {master_name} 1000\n\
         sentinel failover-timeout {master_name} 10000\n\
         sentinel parallel-syncs {master_name} 1\n",
        dir = path_str(dir),
    );
    if certs.is_some() {
        // After `sentinel monitor`: they configure the master it declares.
        let _ = write!(
            text,
            "sentinel auth-user {master_name} admin\n\
             sentinel auth-pass {master_name} {ADMIN_PASSWORD}\n"
        );
    }
    text
}

/// How the helpers reach one kind of process: plain without a login, or (secured) TLS
/// trusting the test CA and logged in: as `admin` on data nodes, with
/// [`SENTINEL_PASSWORD`] on sentinels.
struct Dial {
    /// The URL before the host: `redis://`, or `rediss://user:password@`.
    prefix: String,
    /// The CA certificate (PEM) to trust; Some exactly for `rediss://`.
    ca: Option<Vec<u8>>,
}

impl Dial {
    /// Plain when `certs` is None; else TLS, logged in as `user` (empty: only a
    /// password, for the `default` user) with `password`.
    fn new(certs: Option<&Certs>, user: &str, password: &str) -> Dial {
        match certs {
            None => Dial {
                prefix: "redis://".into(),
                ca: None,
            },
            Some(certs) => Dial {
                prefix: format!("rediss://{user}:{password}@"),
                ca: Some(std::fs::read(&certs.ca).expect("read the test CA")),
            },
        }
    }

    /// One command on the process on `port`, on a fresh connection with short
    /// timeouts: the tests kill processes, and a dead one must fail a poll, not hang
    /// it.
    fn query<T: redis::FromRedisValue>(&self, port: u16, args: &[&str]) -> redis::RedisResult<T> {
        let url = format!("{}127.0.0.1:{port}", self.prefix);
        let client = match &self.ca {
            None => redis::Client::open(url)?,
            Some(ca) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            )?,
        };
        let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        con.set_read_timeout(Some(Duration::from_secs(5)))?;
        con.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut con)
    }
}

/// A `field:value` line of an INFO answer.
fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

fn int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(i) => Some(*i),
        _ => text(v)?.parse().ok(),
    }
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Polls `f` every 100 ms for up to `secs`; None if it never returned Some. (Unlike
/// `support::eventually`, the caller builds the panic message from what it last saw.)
fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

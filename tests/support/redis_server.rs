//! A real `redis-server` for one test: on a free port, keeping nothing on disk, stopped
//! when dropped. (The machine's own Redis on 6379 is never touched.) A secured one
//! speaks only TLS and has no default user.

use super::certs::{Certs, s};
use super::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of the secured server's `admin` user (all commands), which the
/// helpers below use.
const ADMIN_PASSWORD: &str = "admin-pw-5512";

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// TLS only, with `default` off: the CA to trust and the server's cert and key.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::launch(None)
    }

    /// TLS on its port (no plain port), a certificate signed by `certs`' CA, and no
    /// usable `default` user: every client must log in as an ACL user.
    pub fn start_secured(certs: &Certs) -> RedisServer {
        RedisServer::launch(Some((
            certs.ca.clone(),
            certs.cert.clone(),
            certs.key.clone(),
        )))
    }

    fn launch(tls: Option<(PathBuf, PathBuf, PathBuf)>) -> RedisServer {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer {
            port,
            child: None,
            tls,
            _dir: dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
            Some((ca, cert, key)) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .args(["--tls-cert-file", s(cert), "--tls-key-file", s(key)])
                    .args(["--tls-ca-cert-file", s(ca), "--tls-auth-clients", "no"])
                    .args(["--user", "default", "off"])
                    .args(["--user", "admin", "on"])
                    .arg(format!(">{ADMIN_PASSWORD}"))
                    .args(["~*", "&*", "+@all"]);
            }
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", self._dir.path().to_str().expect("utf-8 temp path")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = self.connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL for httpsd: plain, or for a secured server `rediss://` without a user
    /// (see [`url_as`](Self::url_as)).
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}/0", self.port),
            Some(_) => format!("rediss://127.0.0.1:{}/0", self.port),
        }
    }

    /// The `rediss://` URL of a secured server, logged in as `user`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("rediss://{user}:{password}@127.0.0.1:{}/0", self.port)
    }

    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = match &self.tls {
            None => redis::Client::open(self.url())?,
            Some((ca, _, _)) => redis::Client::build_with_tls(
                self.url_as("admin", ADMIN_PASSWORD),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca)?),
                },
            )?,
        };
        client.get_connection()
    }

    /// Runs one command and returns its answer.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = self.connection().expect("connect to the test redis");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// A string key, if present.
    pub fn get(&self, key: &str) -> Option<String> {
        self.cmd::<Option<String>>(&["GET", key])
    }

    pub fn flush(&self) {
        self.cmd::<()>(&["FLUSHALL"]);
    }

    /// Stops the server (data is lost: nothing is kept on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

//! Real `httpsd` processes for the end-to-end tests: started with the binary cargo
//! built, their stderr kept in a file for the assertions that read logs, killed when
//! dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

pub struct Httpsd {
    child: Option<Child>,
    pub port: u16,
    /// The URL prefix the process serves under ("" for none).
    pub prefix: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Httpsd {
    /// `httpsd <args...>`, with a private artifact cache and JSON debug logs.
    pub fn start(args: &[&str]) -> Httpsd {
        Httpsd::start_on(0, args)
    }

    /// Like [`start`](Self::start); `port` is what [`wait_ready`](Self::wait_ready)
    /// polls (the caller put it in `args`).
    pub fn start_on(port: u16, args: &[&str]) -> Httpsd {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_httpsd"))
            .args(["--log-level", "debug", "--log-format", "json"])
            .args(args)
            .env("HTTPSD_CACHE_DIR", dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start httpsd");
        let prefix = args
            .iter()
            .position(|a| *a == "--url_prefix" || *a == "--url-prefix")
            .and_then(|i| args.get(i + 1))
            .map(|p| format!("/{}", p.trim_matches('/')))
            .filter(|p| p != "/")
            .unwrap_or_default();
        Httpsd {
            child: Some(child),
            port,
            prefix,
            log,
            _dir: dir,
        }
    }

    /// `httpsd server DIR` on a free port.
    pub fn server(root: &Path, redis_url: &str, extra: &[&str]) -> Httpsd {
        let port = free_port();
        let port_s = port.to_string();
        let mut args = vec!["server", root.to_str().expect("utf-8 path")];
        args.extend(["--port", &port_s, "--redis-url", redis_url]);
        args.extend(extra);
        let s = Httpsd::start_on(port, &args);
        s.wait_ready();
        s
    }

    /// `httpsd worker DIR` with its metrics on a free port.
    pub fn worker(root: &Path, redis_url: &str, extra: &[&str]) -> Httpsd {
        let port = free_port();
        let port_s = port.to_string();
        let mut args = vec!["worker", root.to_str().expect("utf-8 path")];
        args.extend(["--metrics-port", &port_s, "--redis-url", redis_url]);
        args.extend(extra);
        let w = Httpsd::start_on(port, &args);
        w.wait_ready();
        w
    }

    /// `httpsd serve DIR` on a free port.
    pub fn serve(root: &Path, extra: &[&str]) -> Httpsd {
        let port = free_port();
        let port_s = port.to_string();
        let mut args = vec!["serve", root.to_str().expect("utf-8 path")];
        args.extend(["--port", &port_s]);
        args.extend(extra);
        let s = Httpsd::start_on(port, &args);
        s.wait_ready();
        s
    }

    /// Waits until `/healthz` answers on `port`.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = format!("{}/healthz", self.prefix);
            if super::get(self.port, &health).is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "httpsd did not become ready; its log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines whose message is `message`, as their `fields` objects.
    pub fn log_events(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == message)
            .map(|v| v["fields"].clone())
            .collect()
    }

    /// Sends a signal (`kill -<sig>`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "httpsd did not exit within {secs}s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Httpsd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

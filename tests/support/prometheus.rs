//! A real Prometheus (Debian's `prometheus` package) for the end-to-end tests: started
//! on a free port with a config of the test's making and a private TSDB directory,
//! killed when dropped.

use super::{eventually, free_port, get};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The Prometheus binary: `$PROMETHEUS`, or `prometheus` on the PATH.
pub fn binary() -> PathBuf {
    std::env::var_os("PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| "prometheus".into())
}

pub struct Prometheus {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (a YAML document) and waits until it is ready.
    pub fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let port = free_port();
        let child = Command::new(binary())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (scripts/test installs Debian's prometheus package): {e}",
                    binary().display()
                )
            });
        let p = Prometheus {
            child: Some(child),
            port,
            log,
            _dir: dir,
        };
        eventually(60, "Prometheus to be ready", || {
            get(port, "/-/ready")
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ())
        });
        p
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The active targets of scrape pool `pool`, from `/api/v1/targets`.
    pub fn active_targets(&self, pool: &str) -> Vec<Value> {
        let Ok(r) = get(self.port, "/api/v1/targets?state=active") else {
            return Vec::new();
        };
        r.json()["data"]["activeTargets"]
            .as_array()
            .map(|targets| {
                targets
                    .iter()
                    .filter(|t| t["scrapePool"] == pool)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

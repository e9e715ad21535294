//! Optional authentication and TLS, with real clients: curl with `-u`, a bearer header
//! and `--cacert`, and a real Prometheus whose `http_sd_configs` carry `basic_auth`,
//! `authorization` or `tls_config`.

mod support;

use std::process::Command;
use support::certs::{Certs, s};
use support::prometheus::Prometheus;
use support::{Httpsd, Tree, eventually};

const AUTH: &str = r#"
[targets]
bearer = ["sd-token-0c1d"]
basic = { prometheus = "sd-pass-77" }

[admin]
basic = { ops = "ops-pass-31" }

[reload]
bearer = ["reload-token-9e"]

[metrics]
bearer = ["scrape-token-4a"]
"#;

/// `curl -s` with `args`; returns (status, body).
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn setup() -> (Tree, Httpsd) {
    let tree = Tree::new();
    tree.wasm("nodes/static-nodes.wasm", "static-nodes");
    let auth = tree.file("_auth.toml", AUTH);
    let serve = Httpsd::serve(
        tree.root(),
        &[
            "--auth-file",
            auth.to_str().unwrap(),
            "--wait-on-miss",
            "20s",
        ],
    );
    (tree, serve)
}

#[test]
fn each_area_takes_its_own_credentials_with_curl() {
    let (_tree, serve) = setup();
    let base = format!("http://127.0.0.1:{}", serve.port);
    let targets = format!("{base}/targets/nodes");

    // Nothing: 401 with a JSON error and a challenge.
    let (status, body) = curl(&[], &targets);
    assert_eq!(status, 401, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "unauthorized");
    let (_, headers) = curl(&["-D", "-", "-o", "/dev/null"], &targets);
    assert!(headers.contains("www-authenticate: Basic"), "{headers}");

    // Prometheus's two ways in, and wrong ones.
    let (status, body) = curl(&["-u", "prometheus:sd-pass-77"], &targets);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("10.1.1.11:9100"), "{body}");
    let (status, _) = curl(&["-H", "Authorization: Bearer sd-token-0c1d"], &targets);
    assert_eq!(status, 200);
    assert_eq!(curl(&["-u", "prometheus:wrong"], &targets).0, 401);
    assert_eq!(curl(&["-H", "Authorization: Bearer nope"], &targets).0, 401);
    // The operator's credentials are not Prometheus's, and the other way round.
    assert_eq!(curl(&["-u", "ops:ops-pass-31"], &targets).0, 401);

    // Debug and the admin page take the admin credentials only.
    let debug = format!("{targets}?debug=true");
    assert_eq!(curl(&["-u", "prometheus:sd-pass-77"], &debug).0, 401);
    let (status, body) = curl(&["-u", "ops:ops-pass-31"], &debug);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("debug_info"), "{body}");
    assert_eq!(curl(&[], &format!("{base}/")).0, 401);
    let (status, page) = curl(&["-u", "ops:ops-pass-31"], &format!("{base}/"));
    assert_eq!(status, 200);
    assert!(page.contains("/targets/nodes"), "{page}");

    // Reload takes its own token; an admin who may debug may not reload.
    let reload = format!("{targets}?reload=true");
    assert_eq!(curl(&["-u", "ops:ops-pass-31"], &reload).0, 401);
    let (status, body) = curl(&["-H", "Authorization: Bearer reload-token-9e"], &reload);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("reload_initiated"), "{body}");

    // Metrics take theirs; health stays open for load balancers.
    assert_eq!(curl(&[], &format!("{base}/metrics")).0, 401);
    let (status, metrics) = curl(
        &["-H", "Authorization: Bearer scrape-token-4a"],
        &format!("{base}/metrics"),
    );
    assert_eq!(status, 200);
    assert!(metrics.contains("httpsd_"), "{metrics}");
    assert_eq!(curl(&[], &format!("{base}/healthz")).0, 200);
    // A refused request learns nothing about its URL, not even that it is malformed.
    assert_eq!(curl(&[], &format!("{base}/targets/%2e%2e")).0, 401);
    // No credential reaches the log.
    let logs = serve.logs();
    for secret in [
        "sd-token-0c1d",
        "sd-pass-77",
        "ops-pass-31",
        "reload-token-9e",
    ] {
        assert!(!logs.contains(secret), "{secret} in the log");
    }
}

#[test]
fn prometheus_discovers_targets_with_basic_auth_and_with_a_bearer_token() {
    let (_tree, serve) = setup();
    let config = format!(
        "global:\n  scrape_interval: 1h\n\
         scrape_configs:\n\
         \x20 - job_name: basic\n    http_sd_configs:\n\
         \x20     - url: 'http://127.0.0.1:{port}/targets/nodes'\n\
         \x20       refresh_interval: 1s\n\
         \x20       basic_auth: {{username: prometheus, password: sd-pass-77}}\n\
         \x20 - job_name: bearer\n    http_sd_configs:\n\
         \x20     - url: 'http://127.0.0.1:{port}/targets/nodes'\n\
         \x20       refresh_interval: 1s\n\
         \x20       authorization: {{credentials: sd-token-0c1d}}\n\
         \x20 - job_name: wrong\n    http_sd_configs:\n\
         \x20     - url: 'http://127.0.0.1:{port}/targets/nodes'\n\
         \x20       refresh_interval: 1s\n\
         \x20       basic_auth: {{username: prometheus, password: not-it}}\n",
        port = serve.port
    );
    let prometheus = Prometheus::start(&config);
    for pool in ["basic", "bearer"] {
        let found = eventually(60, &format!("Prometheus's {pool} pool"), || {
            let t = prometheus.active_targets(pool);
            (t.len() == 9).then_some(t)
        });
        assert!(
            found
                .iter()
                .any(|t| t["discoveredLabels"]["__address__"] == "10.1.1.11:9100"),
            "{pool}: {found:?}"
        );
    }
    // The wrong password gets nothing, and Prometheus says why.
    eventually(30, "Prometheus to log the refused refresh", || {
        prometheus.logs().contains("401").then_some(())
    });
    assert!(prometheus.active_targets("wrong").is_empty());
}

#[test]
fn https_with_auth_for_curl_and_for_prometheus() {
    let tree = Tree::new();
    tree.wasm("nodes/static-nodes.wasm", "static-nodes");
    let auth = tree.file("_auth.toml", AUTH);
    let certs = Certs::new();
    let (cert, key, ca) = (s(&certs.cert), s(&certs.key), s(&certs.ca));
    let port = support::free_port();
    let port_s = port.to_string();
    let _serve = Httpsd::start_on(
        port,
        &[
            "serve",
            tree.root().to_str().unwrap(),
            "--port",
            &port_s,
            "--auth-file",
            auth.to_str().unwrap(),
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--wait-on-miss",
            "20s",
        ],
    );
    let base = format!("https://127.0.0.1:{port}");
    eventually(30, "httpsd to answer over TLS", || {
        (curl(&["--cacert", ca], &format!("{base}/healthz")).0 == 200).then_some(())
    });
    // A client that opens a connection and never says a word does not hold up others:
    // handshakes run off the accept loop.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();

    let targets = format!("{base}/targets/nodes");
    let (status, body) = curl(&["--cacert", ca, "-u", "prometheus:sd-pass-77"], &targets);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("10.1.1.11:9100"), "{body}");
    assert_eq!(curl(&["--cacert", ca], &targets).0, 401);
    // Without trusting the certificate, curl refuses; plain HTTP gets no answer.
    assert_eq!(curl(&["-u", "prometheus:sd-pass-77"], &targets).0, 0);
    let plain = format!("http://127.0.0.1:{port}/targets/nodes");
    assert_ne!(curl(&["-u", "prometheus:sd-pass-77"], &plain).0, 200);

    let prometheus = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1h\n\
         scrape_configs:\n\
         \x20 - job_name: tls\n    http_sd_configs:\n\
         \x20     - url: '{targets}'\n\
         \x20       refresh_interval: 1s\n\
         \x20       basic_auth: {{username: prometheus, password: sd-pass-77}}\n\
         \x20       tls_config: {{ca_file: '{ca}'}}\n"
    ));
    let found = eventually(60, "Prometheus's tls pool", || {
        let t = prometheus.active_targets("tls");
        (t.len() == 9).then_some(t)
    });
    assert!(
        found
            .iter()
            .any(|t| t["discoveredLabels"]["__address__"] == "10.2.1.14:9100"),
        "{found:?}"
    );
}

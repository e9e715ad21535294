//! A real Prometheus (Debian's package) discovers its targets from httpsd through
//! `http_sd_configs`, once from `httpsd serve` and once from `httpsd server` + `httpsd
//! worker` over Redis. Asserted from Prometheus's own `/api/v1/targets`: every target
//! with its labels; `job`, `__metrics_path__` and `__scheme__` set by a generator are
//! honoured; a generator change is picked up without a restart; and when a generator
//! starts failing, Prometheus keeps the targets it had.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use support::prometheus::Prometheus;
use support::{Httpsd, RedisServer, Tree, eventually, get};

/// What Prometheus polls: parameters reach the wasm generator, the static file ignores
/// them.
const SD_PATH: &str = "/targets/apps?env=prod&region=eu-west-1";

const API_V1: &str = r#"[{"targets": ["127.0.0.1:9999"],
  "labels": {"job": "payments", "team": "pay", "__metrics_path__": "/custom/metrics", "__scheme__": "https"}}]"#;
const API_V2: &str = r#"[{"targets": ["127.0.0.1:9999", "127.0.0.2:9999"],
  "labels": {"job": "payments", "team": "pay", "__metrics_path__": "/custom/metrics", "__scheme__": "https"}}]"#;

fn tree() -> Tree {
    let t = Tree::new();
    t.wasm("apps/regional.wasm", "regional-services");
    t.file("apps/payments.json", API_V1);
    t
}

fn prometheus_for(httpsd_port: u16) -> Prometheus {
    Prometheus::start(&format!(
        "global:\n  scrape_interval: 1h\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: httpsd\n    http_sd_configs:\n\
         \x20     - url: 'http://127.0.0.1:{httpsd_port}{SD_PATH}'\n\
         \x20       refresh_interval: 1s\n"
    ))
}

/// The active targets, by address: (job label, scrape URL, other labels).
fn discovered(p: &Prometheus) -> BTreeMap<String, (String, String, BTreeMap<String, String>)> {
    p.active_targets("httpsd")
        .into_iter()
        .map(|t| {
            let labels: BTreeMap<String, String> = t["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (
                t["discoveredLabels"]["__address__"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                (
                    labels.get("job").cloned().unwrap_or_default(),
                    t["scrapeUrl"].as_str().unwrap_or("").to_string(),
                    labels,
                ),
            )
        })
        .collect()
}

fn walk(httpsd_port: u16, tree: &Tree) {
    let prom = prometheus_for(httpsd_port);

    // 1. Every generated target, with its labels. The regional generator gives 3
    // services × 3 prod replicas in eu-west-1; the static file one target.
    let targets = eventually(60, "Prometheus to discover the targets", || {
        let d = discovered(&prom);
        (d.len() == 10).then_some(d)
    });
    for service in ["api", "billing", "search"] {
        for i in 1..=3 {
            let port = match service {
                "api" => 8443,
                "billing" => 9090,
                _ => 9200,
            };
            let address = format!("{service}-{i}.eu-west-1.prod.internal:{port}");
            let (job, url, labels) = targets
                .get(&address)
                .unwrap_or_else(|| panic!("{address} discovered: {targets:?}"));
            assert_eq!(job, service, "the generator's job label wins");
            assert_eq!(labels.get("env").map(String::as_str), Some("prod"));
            assert_eq!(labels.get("region").map(String::as_str), Some("eu-west-1"));
            let scheme = if service == "api" { "https" } else { "http" };
            assert_eq!(url, &format!("{scheme}://{address}/metrics"), "__scheme__");
        }
    }
    let (job, url, labels) = &targets["127.0.0.1:9999"];
    assert_eq!(job, "payments");
    assert_eq!(labels.get("team").map(String::as_str), Some("pay"));
    assert_eq!(
        url, "https://127.0.0.1:9999/custom/metrics",
        "__scheme__ and __metrics_path__"
    );

    // 2. A changed generator is picked up: no reload, no restart of anything.
    tree.file("apps/payments.json", API_V2);
    let targets = eventually(60, "Prometheus to see the changed generator", || {
        let d = discovered(&prom);
        d.contains_key("127.0.0.2:9999").then_some(d)
    });
    assert_eq!(targets.len(), 11, "{targets:?}");
    assert_eq!(targets["127.0.0.2:9999"].0, "payments");

    // 3. The generator starts failing: httpsd caches the error and stops answering 200
    // for the path (never a partial answer), and Prometheus keeps what it had.
    tree.wasm("apps/regional.wasm", "fixture-returns-error");
    eventually(60, "httpsd to refuse the failing path", || {
        let r = get(httpsd_port, SD_PATH).ok()?;
        let debug = get(httpsd_port, &format!("{SD_PATH}&debug=true"))
            .ok()?
            .json();
        (r.status == 503 && debug["debug_info"]["error_details"]["error_type"] == "GeneratorError")
            .then_some(())
    });
    // Several of Prometheus's refreshes (1 s each) against the failing path.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(
        get(httpsd_port, SD_PATH).map(|r| r.status).ok(),
        Some(503),
        "still failing"
    );
    let kept = discovered(&prom);
    assert_eq!(
        kept, targets,
        "Prometheus keeps its previous targets while the generator fails"
    );
    let logs = prom.logs();
    assert!(
        logs.contains("503") || logs.contains("Unable to refresh target groups"),
        "Prometheus saw the failures: {logs}"
    );
}

#[test]
fn prometheus_discovers_from_httpsd_serve() {
    let tree = tree();
    let serve = Httpsd::serve(
        tree.root(),
        &["--cache-seconds", "3", "--tree-refresh", "200ms"],
    );
    walk(serve.port, &tree);
}

#[test]
fn prometheus_discovers_from_server_and_worker_over_redis() {
    let redis = RedisServer::start();
    let tree = tree();
    let flags = ["--cache-seconds", "3", "--tree-refresh", "200ms"];
    let server = Httpsd::server(tree.root(), &redis.url(), &flags);
    let _worker = Httpsd::worker(tree.root(), &redis.url(), &["--num-workers", "2"]);
    walk(server.port, &tree);
    // The answer Prometheus took came from Redis, in the wire format.
    let entry: Value = serde_json::from_str(
        &redis
            .get("/targets/apps?env=prod&region=eu-west-1")
            .expect("the cache entry of the polled path"),
    )
    .expect("JSON entry");
    assert!(entry["results"].is_array(), "{entry}");
    assert!(
        redis
            .get("error:/targets/apps?env=prod&region=eu-west-1")
            .is_some()
    );
}

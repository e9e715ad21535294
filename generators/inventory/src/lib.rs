//! Example: asks an inventory API for its hosts and turns them into target groups.
//!
//! The inventory answers `GET <url>/hosts` with a JSON list:
//!
//! ```json
//! [{"name": "web-1", "address": "10.0.0.1", "role": "web", "dc": "fra1",
//!   "exporters": {"node": 9100, "nginx": 9113}, "labels": {"team": "shop"}}]
//! ```
//!
//! Each (exporter, dc) pair becomes one target group, `job` = the exporter, labels from
//! the host's `dc`, `role` and `labels`; hosts whose labels differ get groups of their
//! own, because a group's labels apply to all its targets. Groups come out sorted, so
//! an unchanged inventory gives Prometheus an unchanged answer.
//!
//! Manifest (`inventory.toml` next to `inventory.wasm`):
//!
//! ```toml
//! [config]
//! url = "http://inventory.internal:8080"
//! [http]
//! allow = ["inventory.internal:8080"]
//! [secrets]
//! token = { env = "INVENTORY_TOKEN" }   # optional: sent as a bearer token
//! ```
//!
//! Query parameters: `?dc=fra1` and `?role=web` filter (each may repeat), `?exporter=node`
//! keeps one exporter.

use generator_sdk::{Params, Result, TargetGroup, bail, config, http, log};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
struct Host {
    name: String,
    address: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    dc: String,
    /// Exporter name to port.
    #[serde(default)]
    exporters: BTreeMap<String, u16>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn generate(params: &Params) -> Result<Vec<TargetGroup>> {
    let base = config::require("url")?;
    let mut request = http::get(&format!("{}/hosts", base.trim_end_matches('/')))
        .header("accept", "application/json");
    // The token is optional: an inventory on a private network may not want one.
    if let Ok(token) = config::secret("token") {
        request = request.bearer(&token);
    }
    let hosts: Vec<Host> = request.send()?.json()?;
    log::info(&format!("inventory {base}: {} hosts", hosts.len()));

    let wanted = |key: &str, value: &str| {
        let filter: Vec<&str> = params.get_all(key).collect();
        filter.is_empty() || filter.contains(&value)
    };
    let exporter_filter = params.get("exporter");
    // (job, dc, role, extra labels) -> targets; BTreeMap keeps the output ordered.
    type Key = (String, String, String, Vec<(String, String)>);
    let mut groups: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for host in &hosts {
        if !wanted("dc", &host.dc) || !wanted("role", &host.role) {
            continue;
        }
        if host.address.is_empty() {
            bail!("inventory host {:?} has no address", host.name);
        }
        for (exporter, port) in &host.exporters {
            if exporter_filter.is_some_and(|e| e != exporter) {
                continue;
            }
            let extra = host.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let key = (exporter.clone(), host.dc.clone(), host.role.clone(), extra);
            groups
                .entry(key)
                .or_default()
                .push(format!("{}:{port}", host.address));
        }
    }
    Ok(groups
        .into_iter()
        .map(|((job, dc, role, extra), mut targets)| {
            targets.sort();
            let mut group = TargetGroup::new().targets(targets).job(job);
            if !dc.is_empty() {
                group = group.label("dc", dc);
            }
            if !role.is_empty() {
                group = group.label("role", role);
            }
            for (k, v) in extra {
                group = group.label(k, v);
            }
            group
        })
        .collect())
}

generator_sdk::export_generator!(generate);

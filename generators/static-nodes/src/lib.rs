//! A fixed node-exporter fleet: what a hand-kept `targets.json` holds, as code.
//!
//! Starting from a static list is the usual first step; moving it into a generator
//! lets the list grow logic (per-datacenter labels here) without changing Prometheus.

use generator_sdk::{Params, Result, TargetGroup};

/// (datacenter, rack, hosts)
const FLEET: &[(&str, &str, &[&str])] = &[
    ("fra1", "r01", &["10.1.1.11", "10.1.1.12", "10.1.1.13"]),
    ("fra1", "r02", &["10.1.2.11", "10.1.2.12"]),
    ("ams2", "r01", &["10.2.1.11", "10.2.1.12", "10.2.1.13", "10.2.1.14"]),
];

fn generate(_params: &Params) -> Result<Vec<TargetGroup>> {
    Ok(FLEET
        .iter()
        .map(|(dc, rack, hosts)| {
            TargetGroup::new()
                .targets(hosts.iter().map(|h| format!("{h}:9100")))
                .job("node")
                .label("dc", *dc)
                .label("rack", *rack)
        })
        .collect())
}

generator_sdk::export_generator!(generate);

//! Thousands of targets computed from the manifest's `[config]`.
//!
//! A datacenter laid out as racks of identical hosts, each running several
//! exporters. `rack-fleet.toml` next to the `.wasm` says how big; the defaults give
//! 40 racks x 48 hosts x 2 exporters = 3,840 targets in 80 groups.

use generator_sdk::{Params, Result, TargetGroup, bail, config};

fn generate(params: &Params) -> Result<Vec<TargetGroup>> {
    let racks: u32 = config::parse("racks")?.unwrap_or(40);
    let hosts: u32 = config::parse("hosts_per_rack")?.unwrap_or(48);
    let site = config::get("site").unwrap_or_else(|| "dc1".to_string());
    let exporters = config::get("exporters").unwrap_or_else(|| "node:9100,process:9256".into());
    // `?exporter=node` narrows the answer to one exporter.
    let only = params.get("exporter");

    if racks == 0 || racks > 250 || hosts == 0 || hosts > 250 {
        bail!("racks and hosts_per_rack must be 1..=250 (got {racks} and {hosts})");
    }

    let mut groups = Vec::new();
    for spec in exporters.split(',') {
        let Some((name, port)) = spec.trim().split_once(':') else {
            bail!("exporter {spec:?} is not name:port");
        };
        let port: u16 = port.parse().map_err(|e| generator_sdk::Error::msg(format!("exporter {name}: port: {e}")))?;
        if only.is_some_and(|o| o != name) {
            continue;
        }
        for rack in 1..=racks {
            // 10.<site octet>.<rack>.<host>: one /24 per rack.
            let targets = (1..=hosts).map(|h| format!("10.20.{rack}.{}:{port}", h + 10));
            groups.push(
                TargetGroup::new()
                    .targets(targets)
                    .job(name)
                    .label("site", site.as_str())
                    .label("rack", format!("r{rack:03}")),
            );
        }
    }
    generator_sdk::info!("{} groups across {racks} racks", groups.len());
    Ok(groups)
}

generator_sdk::export_generator!(generate, check = ["", "exporter=node"]);

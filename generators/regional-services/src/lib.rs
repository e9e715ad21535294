//! Request parameters shape the answer: `?env=prod&region=eu-west-1`.
//!
//! One generator serves every environment and region; Prometheus picks with the
//! query string in its `http_sd_configs` URL. Repeated `region` parameters select
//! several regions at once.

use generator_sdk::{Params, Result, TargetGroup, bail};

const SERVICES: &[(&str, u16)] = &[("api", 8443), ("billing", 9090), ("search", 9200)];
const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "ap-south-1"];

fn generate(params: &Params) -> Result<Vec<TargetGroup>> {
    let env = params.get_or("env", "staging");
    if !matches!(env, "prod" | "staging" | "dev") {
        bail!("unknown env {env:?}: expected prod, staging or dev");
    }
    let mut regions: Vec<&str> = params.get_all("region").collect();
    if regions.is_empty() {
        regions = REGIONS.to_vec();
    }
    let replicas: usize = if env == "prod" { 3 } else { 1 };

    let mut groups = Vec::new();
    for region in regions {
        if !REGIONS.contains(&region) {
            bail!("unknown region {region:?}");
        }
        generator_sdk::debug!("building {env} targets for {region}");
        for (service, port) in SERVICES {
            let targets = (1..=replicas).map(|i| format!("{service}-{i}.{region}.{env}.internal:{port}"));
            groups.push(
                TargetGroup::new()
                    .targets(targets)
                    .job(*service)
                    .scheme(if *port == 8443 { "https" } else { "http" })
                    .label("env", env)
                    .label("region", region),
            );
        }
    }
    generator_sdk::info!("{} groups for env={env}", groups.len());
    Ok(groups)
}

generator_sdk::export_generator!(
    generate,
    check = ["env=prod&region=eu-west-1", "env=staging&region=us-east-1&region=ap-south-1"]
);

//! The static-file parser: any bytes in a `.json` or `.yaml` generator. What it accepts
//! must be exactly what Prometheus accepts, and must read back unchanged.
#![no_main]

use httpsd::runtime::Limits;
use httpsd::targets::static_file::{Format, parse_groups};
use httpsd::validate::is_valid_label_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_output_bytes: 1 << 16,
        max_targets: 1000,
        ..Limits::default()
    };
    for format in [Format::Json, Format::Yaml] {
        let Ok(groups) = parse_groups(data, format, &limits) else {
            continue;
        };
        let json = serde_json::to_value(&groups).expect("accepted groups serialise");
        let items = json.as_array().expect("an array");
        let targets: usize = groups.iter().map(|g| g.targets.len()).sum();
        assert!(targets as u64 <= limits.max_targets);
        for group in items {
            let group = group.as_object().expect("each group is an object");
            assert!(
                group.keys().all(|k| k == "targets" || k == "labels"),
                "{group:?}"
            );
            let targets = group["targets"].as_array().expect("targets");
            assert!(
                targets
                    .iter()
                    .all(|t| t.as_str().is_some_and(|t| !t.trim().is_empty()))
            );
            for (name, value) in group["labels"].as_object().expect("labels") {
                assert!(is_valid_label_name(name), "{name:?}");
                assert!(value.is_string(), "{name}: {value}");
            }
        }
        let written = serde_json::to_vec(&groups).expect("serialise");
        let again = parse_groups(&written, Format::Json, &Limits::default())
            .expect("what we accepted and wrote reads back");
        assert_eq!(again, groups);
    }
});

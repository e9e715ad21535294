//! The output validator and the cache entry: arbitrary target groups, as a generator
//! could return them. Accepted groups must satisfy Prometheus's rules, and the cache
//! entry written for them must read back (on the hit path's fast parser) as the same
//! JSON; arbitrary bytes in Redis must never crash the reader.
#![no_main]

use httpsd::model::TargetGroup;
use httpsd::runtime::Limits;
use httpsd::validate::{check_groups, is_valid_label_name};
use httpsd::wire::{EntryMeta, EntryView, encode_entry};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    groups: Vec<(Vec<String>, Vec<(String, String)>)>,
    max_targets: u8,
    max_output_bytes: u16,
    raw_entry: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let _ = EntryView::parse(&input.raw_entry);

    let groups: Vec<TargetGroup> = input
        .groups
        .into_iter()
        .map(|(targets, labels)| TargetGroup { targets, labels })
        .collect();
    let limits = Limits {
        max_targets: u64::from(input.max_targets),
        max_output_bytes: u64::from(input.max_output_bytes),
        ..Limits::default()
    };
    let Ok(()) = check_groups(&groups, limits.answer()) else {
        return;
    };
    let targets: usize = groups.iter().map(|g| g.targets.len()).sum();
    assert!(targets as u64 <= limits.max_targets);
    for g in &groups {
        assert!(g.targets.iter().all(|t| !t.trim().is_empty()));
        for (n, (name, _)) in g.labels.iter().enumerate() {
            assert!(is_valid_label_name(name), "{name:?}");
            assert!(g.labels[..n].iter().all(|(other, _)| other != name));
        }
    }
    let entry = encode_entry(1.5, &groups, &EntryMeta::default());
    let view = EntryView::parse(&entry).expect("our own entry parses");
    assert_eq!(view.updated_timestamp, 1.5);
    let served: serde_json::Value =
        serde_json::from_str(view.results).expect("served results are JSON");
    assert_eq!(served, serde_json::to_value(&groups).expect("serialise"));
});

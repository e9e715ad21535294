//! `httpsd check` as a user runs it: the real binary on real target directories.

mod support;

use std::process::{Command, Output};
use support::{Tree, example_tree};

/// `httpsd check ROOT EXTRA...`. The artifact cache is shared by this binary's checks
/// (the example tree holds a `.py`, and the Python runner is worth compiling once), in
/// a directory of the test build, not the user's.
fn check(root: &std::path::Path, extra: &[&str]) -> Output {
    support::python_runner();
    let cache = support::guest_target_dir().join("check-cli-artifacts");
    Command::new(env!("CARGO_BIN_EXE_httpsd"))
        .arg("check")
        .arg(root)
        .arg("--cache-dir")
        .arg(&cache)
        // Two checks may compile the 24 MB runner at once on a busy machine.
        .args(["--compile-timeout", "300s"])
        .args(extra)
        .output()
        .expect("run httpsd check")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn examples_and_static_files_pass_with_counts() {
    let t = example_tree();
    let out = check(t.root(), &[]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One line per run; rack-fleet runs its two check-params sets from its export.
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line for {needle} in:\n{text}"))
            .to_string()
    };
    assert!(
        line("fleet/rack-fleet.wasm ").contains("3840 targets"),
        "{text}"
    );
    assert!(
        line("fleet/rack-fleet.wasm?exporter=node").contains("1920 targets"),
        "{text}"
    );
    assert!(
        line("nodes/static-nodes.wasm").contains("9 targets"),
        "{text}"
    );
    assert!(line("legacy/hosts.json").contains("2 targets"), "{text}");
    assert!(line("legacy/switches.yaml").contains("2 targets"), "{text}");
    // The .py runs its test_generate_targets (dc=ams1): 3 hosts, two jobs.
    assert!(line("python/exporters.py").contains("6 targets"), "{text}");
    assert!(
        line("services/regional-services.wasm?env=prod&region=eu-west-1").contains("9 targets")
    );
    assert!(line("nodes/static-nodes.wasm").contains(" fuel "), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("8 runs of 6 generators: 8 ok, 0 failed"),
        "{text}"
    );
}

#[test]
fn one_broken_generator_fails_the_check_and_is_named() {
    let t = example_tree();
    t.wasm("broken/panics.wasm", "fixture-panic");
    let out = check(t.root(), &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let fail = text
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_else(|| panic!("no FAIL line:\n{text}"));
    assert!(fail.contains("broken/panics.wasm"), "{fail}");
    assert!(fail.contains("Trap:"), "{fail}");
    assert!(
        text.contains("Traceback (most recent call last):"),
        "{text}"
    );
    assert!(text.contains("inventory port must be a number"), "{text}");
    assert!(
        text.contains("9 runs of 7 generators: 8 ok, 1 failed"),
        "{text}"
    );
}

#[test]
fn json_output_params_and_path_for_ci() {
    let t = example_tree();
    let out = check(
        t.root(),
        &[
            "--path",
            "services",
            "--param",
            "env=dev",
            "--param",
            "region=ap-south-1",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["ok"], true);
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["generator"], "services/regional-services.wasm");
    assert_eq!(runs[0]["targets"], 3);
    assert!(runs[0]["fuel_used"].as_u64().unwrap() > 0);
    assert!(
        runs[0]["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "3 groups for env=dev")
    );

    // A failure in JSON carries the error fields of the wire format.
    let t = Tree::new();
    t.file("bad.json", "{\"targets\": []}");
    let out = check(t.root(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["runs"][0]["error"]["error_type"], "InvalidOutput");
    assert!(
        doc["runs"][0]["error"]["traceback"]
            .as_str()
            .unwrap()
            .starts_with("Traceback")
    );
}

#[test]
fn bad_directories_and_paths_are_clear_errors() {
    let t = example_tree();
    for (args, needle) in [
        (vec!["--path", "nope"], "path not found"),
        (vec!["--path", "../etc"], "not allowed"),
    ] {
        let out = check(t.root(), &args);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
    let out = check(&t.root().join("missing"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open target directory"));
}

/// `httpsd new NAME` writes a crate that builds to a component and passes `httpsd
/// check` as it is, its manifest included.
#[test]
fn a_new_generator_builds_and_passes_check() {
    let work = tempfile::tempdir().unwrap();
    let krate = work.path().join("my-inventory");
    let out = Command::new(env!("CARGO_BIN_EXE_httpsd"))
        .args(["new", "my-inventory", "--dir"])
        .arg(&krate)
        .output()
        .expect("run httpsd new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("cargo build --release --target wasm32-wasip2"));
    // It will not overwrite.
    let again = Command::new(env!("CARGO_BIN_EXE_httpsd"))
        .args(["new", "my-inventory", "--dir"])
        .arg(&krate)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // Built as its README says (sharing the guests' target dir to reuse wit-bindgen).
    let target = support::guest_target_dir();
    support::build_guests(&krate, &target);
    let t = Tree::new();
    std::fs::create_dir_all(t.path("inventory")).unwrap();
    std::fs::copy(
        target.join("wasm32-wasip2/release/my_inventory.wasm"),
        t.path("inventory/my-inventory.wasm"),
    )
    .unwrap();
    std::fs::copy(
        krate.join("my-inventory.toml"),
        t.path("inventory/my-inventory.toml"),
    )
    .unwrap();

    let out = check(t.root(), &["--format", "json"]);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert!(out.status.success(), "{report:#}");
    let text = report.to_string();
    // Its two check-params sets ran.
    assert!(text.contains("3 targets for prod"), "{report:#}");
    assert!(text.contains("1 targets for staging"), "{report:#}");

    // And served: the manifest's port reached it.
    let serve = support::Httpsd::serve(t.root(), &["--wait-on-miss", "20s"]);
    let r = support::get(serve.port, "/targets/inventory?env=prod").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!([{"targets": ["app-1.prod.internal:8080", "app-2.prod.internal:8080",
            "app-3.prod.internal:8080"], "labels": {"job": "app", "env": "prod"}}])
    );
}

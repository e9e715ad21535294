//! The sandbox, end to end: real components built from `generators/`, run by the same
//! `Runtime` the workers use. Every adversarial fixture must end in its typed error
//! with a traceback, and the runtime must serve the next run normally.

mod support;

use httpsd::runtime::{ErrorKind, GenError, Limits, Origin, RunReport, Runtime, RuntimeConfig};
use httpsd::targets::{TargetPath, TargetTree, run_path};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{Tree, component, example_tree};

/// Small limits so the fixtures hit them fast: 50M fuel, 1 s wall clock, 32 MiB.
fn tight() -> RuntimeConfig {
    RuntimeConfig {
        defaults: Limits {
            fuel: 50_000_000,
            timeout: Duration::from_secs(1),
            memory_bytes: 32 << 20,
            max_output_bytes: 1 << 20,
            max_targets: 10_000,
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    }
}

/// Guards against a hang (a limit that does not hold) without asserting on timing.
async fn run(rt: &Runtime, path: &Path, params: &[(&str, &str)]) -> RunReport {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::time::timeout(Duration::from_secs(120), rt.run(path, &params))
        .await
        .expect("a run must end: the sandbox limits did not stop it")
}

fn expect_err(report: &RunReport, kind: ErrorKind) -> GenError {
    match &report.result {
        Ok(groups) => panic!("expected {kind}, got {} groups", groups.len()),
        Err(e) => {
            assert_eq!(e.kind, kind, "{e}\n{}", e.traceback);
            assert!(
                e.traceback
                    .starts_with("Traceback (most recent call last):\n"),
                "{}",
                e.traceback
            );
            assert!(
                e.traceback.ends_with(&format!("{kind}: {}", e.message)),
                "{}",
                e.traceback
            );
            e.clone()
        }
    }
}

/// True when the traceback names this source file of the fixture with a line number:
/// function names from the name section and file:line from DWARF both worked.
fn has_frame(tb: &str, file: &str, func: &str) -> bool {
    tb.lines()
        .any(|l| l.contains(file) && l.contains(", line ") && l.contains(func))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_ends_in_its_typed_error_and_the_runtime_keeps_serving() {
    let rt = Runtime::new(tight()).unwrap();
    let tree = Tree::new();

    // Infinite CPU loop: fuel runs out first (50M fuel is far below 1 s of CPU).
    let spin = tree.wasm("spin.wasm", "fixture-infinite-loop");
    let r = run(&rt, &spin, &[]).await;
    let e = expect_err(&r, ErrorKind::Timeout);
    assert_eq!(e.message, "Generator exceeded timeout limit: fuel 50000000");
    assert!(
        has_frame(&e.traceback, "infinite-loop/src/lib.rs", "spin"),
        "{}",
        e.traceback
    );
    assert!(r.stats.fuel_used <= 50_000_000);

    // The same loop with plenty of fuel: the wall clock (epoch deadline) stops it.
    let spin_long = tree.wasm("spin-long.wasm", "fixture-infinite-loop");
    tree.file(
        "spin-long.toml",
        "[limits]\nfuel = 1000000000000\ntimeout = \"300ms\"\n",
    );
    let r = run(&rt, &spin_long, &[]).await;
    let e = expect_err(&r, ErrorKind::Timeout);
    assert_eq!(
        e.message,
        "Generator exceeded timeout limit: wall clock 300ms"
    );
    assert!(
        has_frame(&e.traceback, "infinite-loop/src/lib.rs", "spin"),
        "{}",
        e.traceback
    );

    // Blocked in a host call (sleep): the wall clock still stops it, and the timeout
    // keeps the guest's backtrace down to the sleeping function.
    let sleeper = tree.wasm("sleeper.wasm", "fixture-sleep-loop");
    let r = run(&rt, &sleeper, &[]).await;
    let e = expect_err(&r, ErrorKind::Timeout);
    assert_eq!(e.message, "Generator exceeded timeout limit: wall clock 1s");
    assert!(
        has_frame(&e.traceback, "sleep-loop/src/lib.rs", "wait_for_inventory"),
        "{}",
        e.traceback
    );
    assert!(e.traceback.contains("sleep"), "{}", e.traceback);
    assert!(
        r.stats
            .logs
            .iter()
            .any(|l| l.message.contains("never answers"))
    );

    // Memory bomb: the cap refuses growth; reported as MemoryError, not as the abort
    // the guest's allocator ends in.
    let bomb = tree.wasm("bomb.wasm", "fixture-memory-bomb");
    let r = run(&rt, &bomb, &[]).await;
    let e = expect_err(&r, ErrorKind::Memory);
    assert!(
        e.message
            .starts_with("Generator exceeded memory limit: 32 MiB"),
        "{}",
        e.message
    );
    assert!(
        has_frame(&e.traceback, "memory-bomb/src/lib.rs", "hoard"),
        "{}",
        e.traceback
    );
    assert!(r.stats.memory_peak <= 32 << 20);

    // Unbounded recursion: the engine's stack limit, as a Trap; the repeated frame is
    // summarised.
    let deep = tree.wasm("deep.wasm", "fixture-stack-overflow");
    let r = run(&rt, &deep, &[]).await;
    let e = expect_err(&r, ErrorKind::Trap);
    assert!(e.message.contains("call stack exhausted"), "{}", e.message);
    assert!(
        e.traceback.contains("[Previous line repeated"),
        "{}",
        e.traceback
    );
    assert!(
        has_frame(&e.traceback, "stack-overflow/src/lib.rs", "descend"),
        "{}",
        e.traceback
    );

    // Panic: a Trap whose message carries the panic text from the guest's stderr.
    let panics = tree.wasm("panics.wasm", "fixture-panic");
    let r = run(&rt, &panics, &[]).await;
    let e = expect_err(&r, ErrorKind::Trap);
    assert!(e.message.contains("unreachable"), "{}", e.message);
    assert!(
        e.message.contains("inventory port must be a number"),
        "{}",
        e.message
    );
    assert!(
        has_frame(&e.traceback, "panic/src/lib.rs", "parse_inventory"),
        "{}",
        e.traceback
    );

    // Huge output: stopped by the target-count limit (given the CPU and memory to
    // build 200,000 targets).
    let huge = tree.wasm("huge.wasm", "fixture-huge-output");
    tree.file(
        "huge.toml",
        "[limits]\nfuel = 5000000000\nmemory = \"128MiB\"\n",
    );
    let e = expect_err(&run(&rt, &huge, &[]).await, ErrorKind::InvalidOutput);
    assert!(
        e.message.contains("max_targets limit of 10000"),
        "{}",
        e.message
    );
    // ... and by the byte limit when the count is allowed.
    tree.file(
        "huge.toml",
        "[limits]\nfuel = 5000000000\nmemory = \"128MiB\"\nmax_targets = 1000000\nmax_output_bytes = \"1MiB\"\n",
    );
    let e = expect_err(&run(&rt, &huge, &[]).await, ErrorKind::InvalidOutput);
    assert!(
        e.message.contains("max_output_bytes limit of 1 MiB"),
        "{}",
        e.message
    );

    // Invalid labels: InvalidOutput naming the group and the label.
    let labels = tree.wasm("labels.wasm", "fixture-invalid-labels");
    let e = expect_err(&run(&rt, &labels, &[]).await, ErrorKind::InvalidOutput);
    assert!(e.message.contains("target group 1"), "{}", e.message);
    assert!(e.message.contains("team-name"), "{}", e.message);

    // The generator's own error: GeneratorError with its message; params reached it.
    let err = tree.wasm("err.wasm", "fixture-returns-error");
    let e = expect_err(
        &run(&rt, &err, &[("source", "netbox")]).await,
        ErrorKind::Generator,
    );
    assert_eq!(e.message, "inventory netbox unavailable: 503 from upstream");

    // A host file: no preopened directories, so the read fails inside the guest.
    let reader = tree.wasm("reader.wasm", "fixture-read-host-file");
    let secret = tree.file("secret.txt", "s3cr3t");
    for target in ["/etc/passwd", secret.to_str().unwrap()] {
        let r = run(&rt, &reader, &[("path", target)]).await;
        let e = expect_err(&r, ErrorKind::Generator);
        assert!(
            e.message.starts_with(&format!("cannot read {target}: ")),
            "{}",
            e.message
        );
    }

    // Environment and arguments: none visible.
    let env = tree.wasm("env.wasm", "fixture-read-env");
    // SAFETY: set before any thread of this test reads the environment of the host
    // process; the guest must not see it either way.
    unsafe { std::env::set_var("HTTPSD_TEST_SECRET", "hunter2") };
    let e = expect_err(&run(&rt, &env, &[]).await, ErrorKind::Generator);
    assert!(
        e.message.contains("0 variables, 0 arguments"),
        "{}",
        e.message
    );

    // After all of that, the same runtime serves a normal generator normally.
    let ok = tree.wasm("nodes.wasm", "static-nodes");
    let r = run(&rt, &ok, &[]).await;
    let groups = r
        .result
        .expect("a healthy generator runs after the fixtures");
    assert_eq!(groups.len(), 3);
    assert_eq!(groups.iter().map(|g| g.targets.len()).sum::<usize>(), 9);
    assert!(r.stats.fuel_used > 0);
}

#[tokio::test]
async fn load_errors_are_typed() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let tree = Tree::new();

    let garbage = tree.file("garbage.wasm", "this is not wasm");
    let e = expect_err(&run(&rt, &garbage, &[]).await, ErrorKind::LoadError);
    assert!(
        e.message.contains("not a valid WebAssembly component"),
        "{}",
        e.message
    );

    // A valid core module, but not a component.
    let core = tree.path("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let e = expect_err(&run(&rt, &core, &[]).await, ErrorKind::LoadError);
    assert!(
        e.message.contains("not a valid WebAssembly component"),
        "{}",
        e.message
    );

    // A manifest with a typo is an error naming the file and key, not a silent default.
    let typo = tree.wasm("typo.wasm", "static-nodes");
    tree.file("typo.toml", "[limits]\ntimeuot = \"1s\"\n");
    let e = expect_err(&run(&rt, &typo, &[]).await, ErrorKind::LoadError);
    assert!(
        e.message.contains("typo.toml") && e.message.contains("timeuot"),
        "{}",
        e.message
    );

    let missing = tree.path("missing.wasm");
    expect_err(&run(&rt, &missing, &[]).await, ErrorKind::LoadError);
}

/// The process's guest memory budget is shared by all runs: a run whose growth would
/// pass it ends as a MemoryError that names the budget (not its own limit), and what a
/// run held is given back when it ends, so the next run has the whole budget again.
#[tokio::test]
async fn a_run_past_the_process_memory_budget_is_a_memory_error() {
    let rt = Runtime::new(RuntimeConfig {
        guest_memory_budget: 24 << 20,
        ..tight()
    })
    .unwrap();
    let tree = Tree::new();
    let bomb = tree.wasm("bomb.wasm", "fixture-memory-bomb");
    let healthy = tree.wasm("ok.wasm", "static-nodes");
    for _ in 0..3 {
        let r = run(&rt, &bomb, &[]).await;
        let e = expect_err(&r, ErrorKind::Memory);
        assert!(
            e.message.contains("guest memory budget of 24 MiB"),
            "{}",
            e.message
        );
        assert!(r.stats.memory_peak <= 24 << 20);
        let ok = run(&rt, &healthy, &[]).await;
        assert!(ok.result.is_ok(), "{:?}", ok.result.err());
    }
}

#[tokio::test]
async fn changes_are_picked_up_without_restart_and_artifacts_survive_one() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let tree = Tree::new();
    let gen_path = tree.wasm("g.wasm", "static-nodes");

    let first = Runtime::new(config.clone()).unwrap();
    assert_eq!(
        first.load(&gen_path).await.unwrap().origin,
        Origin::Compiled
    );
    let r = run(&first, &gen_path, &[]).await;
    assert_eq!(r.result.unwrap().len(), 3);

    // Replace the file in place: the next run uses the new component.
    std::fs::copy(component("regional-services"), &gen_path).unwrap();
    let r = run(
        &first,
        &gen_path,
        &[("env", "prod"), ("region", "eu-west-1")],
    )
    .await;
    let groups = r.result.unwrap();
    assert_eq!(
        groups.len(),
        3,
        "regional-services answers one group per service"
    );
    assert!(
        groups[0]
            .labels
            .contains(&("region".into(), "eu-west-1".into()))
    );

    // A manifest appearing next to it is picked up too.
    tree.file("g.toml", "[limits]\nmax_targets = 2\n");
    let e = expect_err(
        &run(&first, &gen_path, &[("env", "prod")]).await,
        ErrorKind::InvalidOutput,
    );
    assert!(
        e.message.contains("max_targets limit of 2"),
        "{}",
        e.message
    );
    drop(first);

    // A new process (a new Runtime on the same cache dir) compiles nothing.
    let second = Runtime::new(config).unwrap();
    let loaded = second.load(&gen_path).await.unwrap();
    assert_eq!(loaded.origin, Origin::Artifact);
    let other = tree.wasm("h.wasm", "static-nodes");
    assert_eq!(second.load(&other).await.unwrap().origin, Origin::Artifact);

    // Within a process, a second file with the same content shares the compilation.
    let third = Runtime::new(RuntimeConfig::default()).unwrap();
    assert_eq!(third.load(&other).await.unwrap().origin, Origin::Compiled);
    let copy = tree.wasm("copy.wasm", "static-nodes");
    assert_eq!(third.load(&copy).await.unwrap().origin, Origin::Memory);
}

#[tokio::test]
async fn config_logs_and_check_params_reach_the_guest() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let tree = Tree::new();
    let fleet = tree.wasm("fleet.wasm", "rack-fleet");
    tree.file(
        "fleet.toml",
        "[config]\nracks = 3\nhosts_per_rack = 4\nsite = \"ams2\"\nexporters = \"node:9100\"\n",
    );
    let r = run(&rt, &fleet, &[]).await;
    let groups = r.result.unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(groups.iter().map(|g| g.targets.len()).sum::<usize>(), 12);
    assert!(groups[0].labels.contains(&("site".into(), "ams2".into())));
    assert!(
        r.stats
            .logs
            .iter()
            .any(|l| l.message == "3 groups across 3 racks"),
        "{:?}",
        r.stats.logs
    );

    // check-params from the component's export...
    let services = tree.wasm("services.wasm", "regional-services");
    let sets = rt.check_params(&services).await.unwrap().unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(
        sets[0],
        vec![
            ("env".into(), "prod".into()),
            ("region".into(), "eu-west-1".into())
        ]
    );
    // ... overridden by the manifest.
    tree.file("services.toml", "[check]\nparams = [\"env=dev\"]\n");
    let sets = rt.check_params(&services).await.unwrap().unwrap();
    assert_eq!(sets, vec![vec![("env".to_string(), "dev".to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_is_the_ordered_union_of_its_generators_all_or_nothing() {
    let rt = Arc::new(
        Runtime::new(RuntimeConfig {
            python_runner: Some(support::python_runner().to_path_buf()),
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let t = example_tree();
    let tree = TargetTree::open(t.root()).unwrap();
    let params = vec![("env".to_string(), "prod".to_string())];

    let gens = tree.generators(&TargetPath::root()).unwrap();
    let names: Vec<&str> = gens.iter().map(|g| g.rel.as_str()).collect();
    assert_eq!(
        names,
        [
            "fleet/rack-fleet.wasm",
            "legacy/hosts.json",
            "legacy/switches.yaml",
            "nodes/static-nodes.wasm",
            "python/exporters.py",
            "services/regional-services.wasm"
        ]
    );
    let first = run_path(&rt, &gens, &params).await;
    let groups = first.result.clone().unwrap();
    // 80 fleet groups, 1 + 1 static, 3 nodes, 2 of the .py, 3 services x 3 regions
    // (env=prod).
    assert_eq!(groups.len(), 80 + 1 + 1 + 3 + 2 + 9);
    assert_eq!(first.reports.len(), 6);
    // Params reach .wasm and .py generators only.
    assert!(first.reports[1].params.is_empty());
    assert_eq!(first.reports[4].params, params);
    assert_eq!(first.reports[5].params, params);
    // Deterministic: the same order on every run, whatever finished first.
    for _ in 0..3 {
        assert_eq!(run_path(&rt, &gens, &params).await.result.unwrap(), groups);
    }

    // One broken generator fails the whole path, naming it.
    t.file("legacy/broken.json", "[{\"targets\": [");
    let gens = tree
        .generators(&TargetPath::parse("legacy").unwrap())
        .unwrap();
    let outcome = run_path(&rt, &gens, &[]).await;
    let failure = outcome.result.unwrap_err();
    assert_eq!(failure.generator, "legacy/broken.json");
    assert_eq!(failure.error.kind, ErrorKind::JsonDecode);
    // The healthy ones still ran and reported.
    assert!(outcome.reports.iter().filter(|r| r.error.is_none()).count() == 2);
}

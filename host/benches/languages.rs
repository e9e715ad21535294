//! Generators in other languages: what a Python (componentize-py) or JavaScript
//! (componentize-js) component costs next to the Rust one, for the same fixed fleet
//! (the static-nodes example in each language). Prints Markdown.
//!
//! Usage: `cargo bench -p httpsd --bench languages -- <rust.wasm> <python.wasm> <js.wasm>`;
//! `scripts/bench languages` builds the three and writes docs/BENCHMARKS.md.
//!
//! Per component: compiling it cold, loading it from the precompiled artifact after a
//! restart, the first run after that load (instantiate+call), and then the steady state
//! of instantiate+call (every run a fresh instance, as in production).

use httpsd::runtime::{Origin, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RUNS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

struct Row {
    size: u64,
    cold: Duration,
    artifact: Duration,
    first: Duration,
    p50: Duration,
    p99: Duration,
    instantiate: Duration,
}

async fn measure(wasm: &Path) -> Row {
    let cache = tempfile::tempdir().expect("tempdir");
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let cold_rt = Runtime::new(config.clone()).expect("runtime");
    let cold = cold_rt.load(wasm).await.expect("load");
    assert_eq!(cold.origin, Origin::Compiled);
    let cold_time = cold.load_time;
    drop(cold_rt);

    // A restart: a new runtime on the same cache directory.
    let rt = Runtime::new(config).expect("runtime");
    let warm = rt.load(wasm).await.expect("load");
    assert_eq!(warm.origin, Origin::Artifact);
    let t = Instant::now();
    let first = rt.run(wasm, &[]).await;
    let first_time = t.elapsed();
    assert!(first.result.is_ok(), "{:?}", first.result.err());

    let mut total = Vec::with_capacity(RUNS);
    let mut inst = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = rt.run(wasm, &[]).await;
        total.push(t.elapsed());
        assert!(r.result.is_ok(), "{:?}", r.result.err());
        assert_eq!(r.result.as_ref().map(|g| g.len()).unwrap_or(0), 3);
        inst.push(r.stats.instantiate);
    }
    total.sort();
    inst.sort();
    Row {
        size: std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0),
        cold: cold_time,
        artifact: warm.load_time,
        first: first_time,
        p50: percentile(&total, 0.5),
        p99: percentile(&total, 0.99),
        instantiate: percentile(&inst, 0.5),
    }
}

fn main() {
    // cargo bench adds its own `--bench` flag.
    let paths: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    assert_eq!(
        paths.len(),
        3,
        "usage: languages <rust.wasm> <python.wasm> <js.wasm>"
    );
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let rows: Vec<(&str, Row)> = tokio.block_on(async {
        let mut rows = Vec::new();
        for (name, path) in ["Rust", "Python", "JavaScript"].into_iter().zip(&paths) {
            rows.push((name, measure(path).await));
        }
        rows
    });
    let rust_p50 = rows[0].1.p50.as_secs_f64();
    println!(
        "| static-nodes in | component | compile cold | restart: load artifact | first run after load | instantiate+call p50 / p99 | of which instantiate p50 | p50 vs Rust |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, r) in &rows {
        println!(
            "| {name} | {:.1} MB | {} | {} | {} | {} / {} | {} | {:.0}× |",
            r.size as f64 / 1e6,
            ms(r.cold),
            ms(r.artifact),
            ms(r.first),
            ms(r.p50),
            ms(r.p99),
            ms(r.instantiate),
            r.p50.as_secs_f64() / rust_p50
        );
    }
}

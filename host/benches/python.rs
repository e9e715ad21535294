//! A drop-in `.py` generator in the Python runner: what one run costs alone and under
//! concurrent runs, and the page faults each run takes (a run of the runner starts from
//! its 24 MB snapshot, copied on write). Prints Markdown.
//!
//! Usage: `cargo bench -p httpsd --bench python -- <httpsd-python-runner.wasm>
//! [concurrency]`; it writes its own `gen.py` (the 10-group file of
//! `scripts/bench performance`) into a temporary tree.

use httpsd::runtime::{Runtime, RuntimeConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 300;

/// The process's minor page faults so far (/proc/self/stat, field 10).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces: count fields after its closing parenthesis.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(7))
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn generator(dir: &Path) -> std::path::PathBuf {
    let groups: Vec<String> = (0..10)
        .map(|i| {
            format!(
                "{{\"targets\": [\"10.0.0.{i}:9100\"], \"labels\": {{\"job\": \"node\", \"rack\": \"r{:02}\", \"dc\": \"fra1\"}}}}",
                i % 40
            )
        })
        .collect();
    let path = dir.join("gen.py");
    std::fs::write(
        &path,
        format!(
            "def generate_targets(**kwargs):\n    return [{}]\n",
            groups.join(", ")
        ),
    )
    .expect("write gen.py");
    path
}

struct Round {
    p50: Duration,
    p99: Duration,
    instantiate: Duration,
    runs_per_s: f64,
    faults_per_run: f64,
    fuel: u64,
    memory: u64,
}

async fn round(rt: &Arc<Runtime>, generator_path: &Path, concurrency: usize) -> Round {
    let per_task = RUNS.div_ceil(concurrency);
    let faults = minor_faults();
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let rt = rt.clone();
            let generator_path = generator_path.to_path_buf();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let t = Instant::now();
                    let r = rt.run(&generator_path, &[]).await;
                    let took = t.elapsed();
                    assert_eq!(
                        r.result.as_ref().map(|g| g.len()).ok(),
                        Some(10),
                        "{:?}",
                        r.result.err()
                    );
                    times.push((
                        took,
                        r.stats.instantiate,
                        r.stats.fuel_used,
                        r.stats.memory_peak,
                    ));
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let wall = started.elapsed();
    let faults = minor_faults() - faults;
    let mut total: Vec<Duration> = all.iter().map(|r| r.0).collect();
    let mut inst: Vec<Duration> = all.iter().map(|r| r.1).collect();
    total.sort();
    inst.sort();
    Round {
        p50: percentile(&total, 0.5),
        p99: percentile(&total, 0.99),
        instantiate: percentile(&inst, 0.5),
        runs_per_s: all.len() as f64 / wall.as_secs_f64(),
        faults_per_run: faults as f64 / all.len() as f64,
        fuel: all.iter().map(|r| r.2).min().unwrap_or(0),
        memory: all.iter().map(|r| r.3).max().unwrap_or(0),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runner = args
        .first()
        .expect("usage: python <httpsd-python-runner.wasm> [concurrency]");
    let concurrency: usize = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(64);
    let tree = tempfile::tempdir().expect("tempdir");
    let generator_path = generator(tree.path());
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let rows = tokio.block_on(async {
        let rt = Arc::new(
            Runtime::new(RuntimeConfig {
                python_runner: Some(runner.into()),
                // The runner's compiled artifact, kept between runs of the bench when
                // asked (compiling it takes most of a minute).
                cache_dir: std::env::var_os("HTTPSD_CACHE_DIR").map(Into::into),
                ..RuntimeConfig::default()
            })
            .expect("runtime"),
        );
        let first = rt.run(&generator_path, &[]).await;
        assert!(first.result.is_ok(), "{:?}", first.result.err());
        let mut rows = Vec::new();
        for c in [1, concurrency] {
            rows.push((c, round(&rt, &generator_path, c).await));
        }
        rows
    });
    println!(
        "| runs at once | run p50 / p99 | instantiate p50 | runs/s | page faults per run | fuel per run | linear memory |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (c, r) in rows {
        println!(
            "| {c} | {} / {} | {} | {:.0} | {:.0} | {:.2} M | {:.1} MiB |",
            ms(r.p50),
            ms(r.p99),
            ms(r.instantiate),
            r.runs_per_s,
            r.faults_per_run,
            r.fuel as f64 / 1e6,
            r.memory as f64 / (1 << 20) as f64
        );
    }
}

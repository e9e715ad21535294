//! Runtime benchmark: instantiate+call latency, runs/s on one core, compile cold vs
//! precompiled-artifact load, and the cost of fuel metering. Prints Markdown.
//!
//! Usage: `cargo bench -p httpsd --bench runtime -- <dir with static_nodes.wasm and
//! bench_cpu.wasm>`; `scripts/bench` builds those and writes docs/BENCHMARKS.md.

use httpsd::runtime::{Origin, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn latency(rt: &Runtime, wasm: &Path, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut total = Vec::with_capacity(n);
    let mut inst = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = rt.run(wasm, &[]).await;
        total.push(t.elapsed());
        assert!(r.result.is_ok(), "{:?}", r.result.err());
        inst.push(r.stats.instantiate);
    }
    total.sort();
    inst.sort();
    (total, inst)
}

async fn cpu_median(
    rt: &Runtime,
    wasm: &Path,
    params: &[(String, String)],
    runs: usize,
) -> Duration {
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let r = rt.run(wasm, params).await;
        assert!(r.result.is_ok(), "{:?}", r.result.err());
        times.push(t.elapsed());
    }
    times.sort();
    percentile(&times, 0.5)
}

/// Median run time with fuel on and off, in seconds: `rounds` interleaved rounds of
/// `runs` runs each, so machine noise hits both alike.
async fn fuel_on_off(
    fuel: &Runtime,
    nofuel: &Runtime,
    wasm: &Path,
    params: &[(String, String)],
    rounds: usize,
    runs: usize,
) -> (f64, f64) {
    let _ = cpu_median(fuel, wasm, params, 2).await;
    let _ = cpu_median(nofuel, wasm, params, 2).await;
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        on.push(cpu_median(fuel, wasm, params, runs).await);
        off.push(cpu_median(nofuel, wasm, params, runs).await);
    }
    on.sort();
    off.sort();
    (
        percentile(&on, 0.5).as_secs_f64(),
        percentile(&off, 0.5).as_secs_f64(),
    )
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: runtime <components dir>"),
    );
    let trivial = dir.join("static_nodes.wasm");
    let cpu = dir.join("bench_cpu.wasm");
    let fleet = dir.join("rack_fleet.wasm");
    // One core: a current-thread runtime, runs one after another.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        let cache = tempfile::tempdir().expect("tempdir");
        let config = RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..RuntimeConfig::default()
        };

        // Compile cold, then a "restart" that loads the precompiled artifact.
        let cold_rt = Runtime::new(config.clone()).expect("runtime");
        let cold = cold_rt.load(&trivial).await.expect("load");
        assert_eq!(cold.origin, Origin::Compiled);
        let cold_time = cold.load_time;
        drop(cold_rt);
        let warm_rt = Runtime::new(config.clone()).expect("runtime");
        let warm = warm_rt.load(&trivial).await.expect("load");
        let warm_origin = warm.origin;
        let warm_time = warm.load_time;

        // Latency of load(cache hit)+instantiate+call+validate, and instantiate alone.
        let _ = latency(&warm_rt, &trivial, 2_000).await; // warm-up
        let (total, inst) = latency(&warm_rt, &trivial, 20_000).await;

        // Throughput on one core for 3 s.
        let start = Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < Duration::from_secs(3) {
            let r = warm_rt.run(&trivial, &[]).await;
            assert!(r.result.is_ok());
            runs += 1;
        }
        let per_sec = runs as f64 / start.elapsed().as_secs_f64();

        // Fuel on vs off, interleaved so machine noise hits both alike.
        let fuel_rt = Runtime::new(config.clone()).expect("runtime");
        let nofuel_rt = Runtime::new(RuntimeConfig {
            consume_fuel: false,
            ..config.clone()
        })
        .expect("runtime");
        let hash_loop = vec![("n".to_string(), "20000000".to_string())];
        let (on, off) = fuel_on_off(&fuel_rt, &nofuel_rt, &cpu, &hash_loop, 5, 3).await;
        // rack-fleet: string formatting and allocation, the shape of real generator work.
        let (fleet_on, fleet_off) = fuel_on_off(&fuel_rt, &nofuel_rt, &fleet, &[], 5, 40).await;

        println!("| measurement | result |");
        println!("|---|---|");
        println!(
            "| instantiate+call, trivial generator (static-nodes), p50 / p99 | {} / {} |",
            us(percentile(&total, 0.5)),
            us(percentile(&total, 0.99))
        );
        println!(
            "| of which instantiation alone, p50 / p99 | {} / {} |",
            us(percentile(&inst, 0.5)),
            us(percentile(&inst, 0.99))
        );
        println!("| runs/s on one core (sequential, 3 s) | {per_sec:.0} |");
        println!(
            "| compile cold (static-nodes, 2.5 MB component) | {} |",
            ms(cold_time)
        );
        println!(
            "| restart with warm artifact cache: load | {} ({:?}: nothing recompiled) |",
            ms(warm_time),
            warm_origin
        );
        println!(
            "| CPU-bound generator (bench-cpu, n=2e7), fuel off / on | {} / {} |",
            ms(Duration::from_secs_f64(off)),
            ms(Duration::from_secs_f64(on))
        );
        println!(
            "| fuel overhead, hash loop | {:+.1}% |",
            (on / off - 1.0) * 100.0
        );
        println!(
            "| rack-fleet (3,840 targets), fuel off / on | {} / {} |",
            ms(Duration::from_secs_f64(fleet_off)),
            ms(Duration::from_secs_f64(fleet_on))
        );
        println!(
            "| fuel overhead, rack-fleet | {:+.1}% |",
            (fleet_on / fleet_off - 1.0) * 100.0
        );
    });
}

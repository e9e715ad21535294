//! Containment: generators that stay inside every guest limit and try to make the
//! *host* do the work — lift a huge answer or error, validate quadratically, escape six
//! bytes for one, flood the log, open thousands of sockets, stall a TLS handshake,
//! name a FIFO as a secret, hand over a component that takes a minute to compile, and,
//! as a drop-in `.py`, flood stdout, raise a 32 MiB exception or offer the host
//! megabytes of bytecode again and again. Each
//! must end as a typed error (or a bounded answer) within its limits, through `httpsd
//! check`, through a real `httpsd serve` and through a real server and worker on Redis,
//! while a healthy path is polled ten times a second and the host's RSS, open
//! descriptors and log are measured.

mod support;

use serde_json::Value;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Httpsd, RedisServer, Tree, eventually, get, sample};

/// How a threat must end.
#[derive(Debug, Clone, Copy)]
enum Ends {
    /// A cached error of this type whose message contains the text.
    Error(&'static str, &'static str),
    /// A 200 answer (the threat is in what the host does on the side: the log).
    Answer,
}

struct Threat {
    /// The request path, also the directory under the tree.
    path: &'static str,
    ends_in_serve: Ends,
    /// What `httpsd check` says (it also runs `check-params`).
    ends_in_check: Ends,
}

const THREATS: &[Threat] = &[
    Threat {
        path: "huge-error",
        ends_in_serve: Ends::Error("GeneratorError", "[cut: "),
        ends_in_check: Ends::Error("GeneratorError", "[cut: "),
    },
    Threat {
        path: "wide-output",
        ends_in_serve: Ends::Error("InvalidOutput", "max_output_bytes"),
        ends_in_check: Ends::Error("InvalidOutput", "max_output_bytes"),
    },
    Threat {
        path: "quadratic-labels",
        ends_in_serve: Ends::Error("InvalidOutput", "appears twice"),
        ends_in_check: Ends::Error("InvalidOutput", "appears twice"),
    },
    Threat {
        path: "escaped-output",
        ends_in_serve: Ends::Error("InvalidOutput", "as JSON"),
        ends_in_check: Ends::Error("InvalidOutput", "as JSON"),
    },
    Threat {
        path: "log-flood",
        ends_in_serve: Ends::Answer,
        ends_in_check: Ends::Answer,
    },
    Threat {
        path: "socket-flood",
        ends_in_serve: Ends::Error("Trap", "handle limit exceeded"),
        ends_in_check: Ends::Error("Trap", "handle limit exceeded"),
    },
    Threat {
        path: "tls-stall",
        ends_in_serve: Ends::Error("TimeoutError", "wall clock 2s"),
        ends_in_check: Ends::Error("TimeoutError", "wall clock 2s"),
    },
    Threat {
        path: "fifo-secret",
        ends_in_serve: Ends::Error("LoadError", "not a regular file"),
        ends_in_check: Ends::Error("LoadError", "not a regular file"),
    },
    Threat {
        path: "compile-bomb",
        ends_in_serve: Ends::Error("LoadError", "compile "),
        ends_in_check: Ends::Error("LoadError", "compile "),
    },
    Threat {
        path: "check-params-flood",
        ends_in_serve: Ends::Answer,
        ends_in_check: Ends::Error("InvalidOutput", "check-params"),
    },
    // A drop-in `.py`: an 8 MiB line and 20,000 more to stdout, then an exception
    // whose message (and so its traceback) is 32 MiB.
    Threat {
        path: "py-flood",
        ends_in_serve: Ends::Error("ValueError", "[cut: "),
        ends_in_check: Ends::Error("ValueError", "[cut: "),
    },
    // A `.py` that offers the host 8 MiB of "bytecode", twenty times a run (the host
    // measures each offer in place; componentize-py's own copy of it is the guest's).
    Threat {
        path: "py-bytecode",
        ends_in_serve: Ends::Answer,
        ends_in_check: Ends::Answer,
    },
];

const PY_FLOOD: &str = r#"def generate_targets(**kwargs):
    print("y" * (8 << 20))
    for i in range(20000):
        print("line", i)
    raise ValueError("x" * (32 << 20))
"#;

const PY_BYTECODE: &str = r#"from wit_world.imports import script

def generate_targets(**kwargs):
    blob = b"\0" * (8 << 20)
    for _ in range(20):
        script.keep_compiled(blob)
    return [{"targets": ["kept:1"]}]
"#;

/// The compile budget the tests give httpsd, so the compile bomb ends in seconds; the
/// honest components (small, but compiled by a debug build, several at once on a
/// shared machine) need far less, even with the bomb holding a compile slot.
const COMPILE_TIMEOUT: &str = "15s";

/// A TCP server that accepts connections and never answers: what the socket flood
/// connects to, and a TLS server whose handshake never comes.
struct BlackHole {
    port: u16,
    accepted: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        *count.lock().unwrap() += 1;
                        // Bounded: the test process has descriptors to keep too.
                        if held.len() < 4000 {
                            held.push(s);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
                // Closed by the other side: forget it.
                held.retain(|s| {
                    let mut b = [0u8; 1];
                    s.set_nonblocking(true).ok();
                    !matches!((&*s).read(&mut b), Ok(0))
                });
            }
        });
        BlackHole {
            port,
            accepted,
            stop,
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The tree: `healthy/` (static-nodes) and one directory per threat.
fn threat_tree(hole: &BlackHole) -> Tree {
    let t = Tree::new();
    t.wasm("healthy/static-nodes.wasm", "static-nodes");
    for name in [
        "huge-error",
        "wide-output",
        "quadratic-labels",
        "escaped-output",
        "log-flood",
        "check-params-flood",
    ] {
        t.wasm(&format!("{name}/gen.wasm"), &format!("fixture-{name}"));
    }
    t.wasm("socket-flood/gen.wasm", "fixture-socket-flood");
    t.file(
        "socket-flood/gen.toml",
        &format!(
            "[limits]\ntimeout = \"3s\"\n[config]\nurl = \"http://127.0.0.1:{port}/\"\ncount = 20000\n[http]\nallow = [\"127.0.0.1:{port}\"]\n",
            port = hole.port
        ),
    );
    t.wasm("tls-stall/gen.wasm", "fixture-tls-stall");
    t.file(
        "tls-stall/gen.toml",
        &format!(
            "[limits]\ntimeout = \"2s\"\n[config]\nurl = \"https://127.0.0.1:{port}/hosts\"\n[http]\nallow = [\"127.0.0.1:{port}\"]\n",
            port = hole.port
        ),
    );
    let fifo = t.path("fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    t.wasm("fifo-secret/gen.wasm", "static-nodes");
    t.file(
        "fifo-secret/gen.toml",
        &format!(
            "[secrets]\ntoken = {{ file = {:?} }}\n",
            fifo.to_str().unwrap()
        ),
    );
    // The Python runner next to the binary, where httpsd finds it.
    support::python_runner();
    t.file("py-flood/gen.py", PY_FLOOD);
    t.file("py-bytecode/gen.py", PY_BYTECODE);
    let bomb = t.path("compile-bomb/gen.wasm");
    std::fs::create_dir_all(bomb.parent().unwrap()).unwrap();
    std::fs::write(&bomb, support::bomb::compile_bomb()).unwrap();
    t
}

/// The peak of a process's resident memory and open descriptors, sampled every 20 ms
/// (the kernel's own VmHWM gives the RSS peak between samples too).
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Peaks>>,
}

/// The most a process held while sampled.
#[derive(Debug, Clone, Copy, Default)]
struct Peaks {
    /// Resident memory, KiB.
    rss: u64,
    fds: usize,
    threads: u64,
}

/// A number from `/proc/<pid>/status` (`VmRSS:` in KiB, `Threads:`).
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time a process has used, user and system, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (in parentheses, which may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / per_second
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut p = Peaks::default();
            while !flag.load(Ordering::Relaxed) {
                p.rss = p.rss.max(status_field(pid, "VmRSS:"));
                p.fds = p.fds.max(open_fds(pid));
                p.threads = p.threads.max(status_field(pid, "Threads:"));
                std::thread::sleep(Duration::from_millis(20));
            }
            p
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Polls `/targets/healthy` ten times a second until stopped; returns every status.
struct Poller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<u16>>>,
}

impl Poller {
    fn start(port: u16) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                statuses.push(get(port, "/targets/healthy").map_or(0, |r| r.status));
                std::thread::sleep(Duration::from_millis(100).saturating_sub(started.elapsed()));
            }
            statuses
        });
        Poller {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<u16> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Waits until `path` has an outcome: its cached error or a 200.
fn outcome(port: u16, path: &str) -> Result<Value, Value> {
    eventually(120, &format!("/targets/{path} to end"), || {
        let r = get(port, &format!("/targets/{path}")).ok()?;
        if r.status == 200 {
            return Some(Ok(r.json()));
        }
        let d = get(port, &format!("/targets/{path}?debug=true"))
            .ok()?
            .json();
        let err = &d["debug_info"]["error_details"];
        err.is_object().then(|| Err(err.clone()))
    })
}

fn assert_ends(path: &str, ends: Ends, got: &Result<Value, Value>) {
    match (ends, got) {
        (Ends::Answer, Ok(body)) => assert!(body.is_array(), "{path}: {body}"),
        (Ends::Error(kind, text), Err(e)) => {
            assert_eq!(e["error_type"], kind, "{path}: {e}");
            let message = e["error_message"].as_str().unwrap_or("");
            assert!(message.contains(text), "{path}: {message}");
            // The guest's words are bounded whatever it handed over.
            assert!(message.len() <= 17 << 10, "{path}: {} bytes", message.len());
            let traceback = e["traceback"].as_str().unwrap_or("");
            assert!(traceback.len() <= 80 << 10, "{path}: {}", traceback.len());
            // A timeout while blocked in a host call (the TLS handshake) keeps the
            // guest's frames, as a timeout in a sleep does.
            if path == "tls-stall" {
                assert!(
                    traceback.contains("fetch_inventory")
                        && traceback.contains("tls-stall/src/lib.rs"),
                    "{path}: {traceback}"
                );
            }
        }
        (ends, got) => panic!("{path}: expected {ends:?}, got {got:?}"),
    }
}

/// Requests every threat at once while the healthy path is polled, and checks how each
/// ends and what `measured` (a pid) held meanwhile and after.
/// `metrics_port` is where `measured` shows its generator metrics.
fn under_attack(port: u16, measured: u32, metrics_port: u16, ends: impl Fn(&Threat) -> Ends) {
    eventually(60, "the healthy path to answer", || {
        get(port, "/targets/healthy")
            .ok()
            .filter(|r| r.status == 200)
    });
    std::thread::sleep(Duration::from_millis(500));
    let idle = status_field(measured, "VmRSS:");
    let cpu_before = cpu_seconds(measured);
    let sampler = Sampler::start(measured);
    let poller = Poller::start(port);
    let started = Instant::now();
    for t in THREATS {
        let r = get(port, &format!("/targets/{}", t.path)).unwrap();
        assert!(matches!(r.status, 200 | 503), "{}: {}", t.path, r.status);
    }
    let ended: Vec<(String, Result<Value, Value>, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = THREATS
            .iter()
            .map(|t| {
                s.spawn(move || (t.path.to_string(), outcome(port, t.path), started.elapsed()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The compile bomb again: its failure is remembered, not compiled once more.
    let again = get(port, "/targets/compile-bomb?reload=true").unwrap();
    assert!(matches!(again.status, 200 | 503), "{}", again.status);
    let bomb = outcome(port, "compile-bomb").unwrap_err();
    assert!(
        bomb["error_message"]
            .as_str()
            .unwrap()
            .contains("not retried"),
        "{bomb}"
    );
    let statuses = poller.finish();
    let Peaks {
        rss: peak,
        fds,
        threads,
    } = sampler.finish();
    let cpu = cpu_seconds(measured) - cpu_before;
    std::thread::sleep(Duration::from_secs(2));
    let after = status_field(measured, "VmRSS:");
    let metrics = get(metrics_port, "/metrics").unwrap().text();
    for ((path, got, took), t) in ended.iter().zip(THREATS) {
        // The host's CPU for the threat's runs, guest and host side together.
        let run_cpu: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("httpsd_generator_cpu_seconds_total{")
                    && l.contains(&format!("generator=\"{path}/"))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        eprintln!(
            "  {path:<20} {:<16} after {:>5.1} s, {run_cpu:>5.2} s of CPU in its runs",
            match got {
                Ok(_) => "200".to_string(),
                Err(e) => e["error_type"].as_str().unwrap_or("?").to_string(),
            },
            took.as_secs_f64()
        );
        assert_ends(path, ends(t), got);
    }
    let bad: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        bad.is_empty(),
        "the healthy path answered {} of {} polls with something else: {bad:?}",
        bad.len(),
        statuses.len()
    );
    eprintln!(
        "  healthy path: {} of {} polls answered 200; RSS idle {} MiB, peak {} MiB, 2 s after {} MiB; peak open fds {fds}, threads {threads}; CPU {cpu:.1} s",
        statuses.len(),
        statuses.len(),
        idle >> 10,
        peak >> 10,
        after >> 10
    );
    assert!(
        peak < idle + (512 << 10),
        "peak RSS {} MiB over idle {} MiB + 512 MiB",
        peak >> 10,
        idle >> 10
    );
    assert!(fds < 1000, "{fds} open descriptors");
    // What the runs used is given back, not only bounded at the peak.
    assert!(
        after < idle + (256 << 10),
        "RSS 2 s after the threats {} MiB, idle {} MiB",
        after >> 10,
        idle >> 10
    );
}

#[test]
fn every_threat_ends_typed_through_check() {
    let hole = BlackHole::start();
    let tree = threat_tree(&hole);
    let cache = tempfile::tempdir().unwrap();
    for t in THREATS {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_httpsd"))
            .args(["check", tree.root().to_str().unwrap(), "--path", t.path])
            .args(["--format", "json", "--compile-timeout", COMPILE_TIMEOUT])
            .args(["--cache-dir", cache.path().to_str().unwrap()])
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{}: {e}\n{}", t.path, String::from_utf8_lossy(&out.stderr))
        });
        let run = &doc["runs"][0];
        let got = match run.get("error") {
            Some(e) if e.is_object() => Err(e.clone()),
            _ => Ok(Value::Array(Vec::new())),
        };
        eprintln!(
            "  check {:<20} {}",
            t.path,
            got.as_ref()
                .err()
                .map_or("ok", |e| e["error_type"].as_str().unwrap_or("?"))
        );
        assert_ends(t.path, t.ends_in_check, &got);
        // What the check printed is bounded too (the log flood, the huge error).
        assert!(
            out.stdout.len() < 1 << 20,
            "{}: {} bytes",
            t.path,
            out.stdout.len()
        );
    }
}

#[test]
fn threats_at_once_leave_serve_answering_within_its_budget() {
    let hole = BlackHole::start();
    let tree = threat_tree(&hole);
    let serve = Httpsd::serve(
        tree.root(),
        &["--compile-timeout", COMPILE_TIMEOUT, "--wait-on-miss", "0s"],
    );
    eprintln!("httpsd serve under {} threats at once:", THREATS.len());
    under_attack(serve.port, serve.pid(), serve.port, |t| t.ends_in_serve);
    let accepted = *hole.accepted.lock().unwrap();
    assert!(
        accepted <= 256 + 16,
        "the socket flood opened {accepted} connections"
    );
    // A million guest lines and a 16 MiB one did not reach httpsd's own log.
    let log = std::fs::metadata(&serve.log).unwrap().len();
    assert!(log < 4 << 20, "httpsd's log grew to {log} bytes");
    eprintln!(
        "  sockets the flood got: {accepted}; httpsd's log: {} KiB",
        log >> 10
    );
}

#[test]
fn threats_at_once_leave_a_fleet_answering_within_its_budget() {
    let hole = BlackHole::start();
    let tree = threat_tree(&hole);
    let redis = RedisServer::start();
    let server = Httpsd::server(tree.root(), &redis.url(), &[]);
    let worker = Httpsd::worker(
        tree.root(),
        &redis.url(),
        &["--compile-timeout", COMPILE_TIMEOUT],
    );
    eprintln!(
        "httpsd server + worker on Redis under {} threats at once (worker measured):",
        THREATS.len()
    );
    under_attack(server.port, worker.pid(), worker.port, |t| t.ends_in_serve);
    let log = std::fs::metadata(&worker.log).unwrap().len();
    assert!(log < 4 << 20, "the worker's log grew to {log} bytes");
}

/// A tree with one slow path (2 s a run) and the healthy one.
fn slow_tree() -> Tree {
    let t = Tree::new();
    t.wasm("healthy/static-nodes.wasm", "static-nodes");
    t.wasm("slow/gen.wasm", "fixture-slow-answer");
    t
}

/// A client reloads the slow path just past each cooldown (1 s) for 20 s, and polls it
/// between reloads: a reload while a run is going must not throw that run's answer
/// away, so the path is answered 200 within the first runs, not never.
fn reloads_cannot_starve(port: u16) {
    let started = Instant::now();
    let mut answered = None;
    let mut reloads = 0;
    while started.elapsed() < Duration::from_secs(20) {
        let r = get(port, "/targets/slow?reload=true").unwrap();
        if r.status != 429 {
            reloads += 1;
        }
        std::thread::sleep(Duration::from_millis(1100));
        if get(port, "/targets/slow").unwrap().status == 200 {
            answered = Some(started.elapsed());
            break;
        }
    }
    let answered = answered.unwrap_or_else(|| {
        panic!("reloaded {reloads} times, once per cooldown: /targets/slow never answered 200")
    });
    eprintln!(
        "  reloaded once per cooldown: answered after {:.1} s and {reloads} reloads",
        answered.as_secs_f64()
    );
}

#[test]
fn reloads_once_per_cooldown_cannot_starve_a_slow_path_in_serve() {
    let tree = slow_tree();
    let serve = Httpsd::serve(
        tree.root(),
        &["--reload-cooldown", "1s", "--wait-on-miss", "0s"],
    );
    reloads_cannot_starve(serve.port);
}

#[test]
fn reloads_once_per_cooldown_cannot_starve_a_slow_path_in_a_fleet() {
    let tree = slow_tree();
    let redis = RedisServer::start();
    let server = Httpsd::server(
        tree.root(),
        &redis.url(),
        &["--reload-cooldown", "1s", "--wait-on-miss", "0s"],
    );
    let _worker = Httpsd::worker(tree.root(), &redis.url(), &[]);
    reloads_cannot_starve(server.port);
}

/// Many distinct parameter sets, asked faster than they run: the embedded store keeps
/// at most its bound of paths (evicting the least recently used), its queue refuses
/// jobs past the same bound, and the process's memory stays where it was, while the
/// healthy path answers every poll.
#[test]
fn many_parameter_sets_stay_within_the_embedded_stores_bounds() {
    let t = Tree::new();
    t.wasm("healthy/static-nodes.wasm", "static-nodes");
    t.wasm("cpu/gen.wasm", "bench-cpu");
    let serve = Httpsd::serve(
        t.root(),
        &["--memory-store-max-paths", "200", "--wait-on-miss", "0s"],
    );
    eventually(60, "the healthy path to answer", || {
        get(serve.port, "/targets/healthy")
            .ok()
            .filter(|r| r.status == 200)
    });
    let idle = status_field(serve.pid(), "VmRSS:");
    let sampler = Sampler::start(serve.pid());
    let poller = Poller::start(serve.port);
    // 4 clients, 3,000 distinct sets each; a long value makes each key and answer big.
    let padding = "x".repeat(2000);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|c| {
                let padding = &padding;
                s.spawn(move || {
                    (0..3000)
                        .map(|i| {
                            let path = format!("/targets/cpu?n={}&pad={padding}", c * 3000 + i);
                            get(serve.port, &path).map_or(0, |r| r.status)
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let polls = poller.finish();
    let Peaks { rss: peak, fds, .. } = sampler.finish();
    std::thread::sleep(Duration::from_secs(2));
    let after = status_field(serve.pid(), "VmRSS:");
    let metrics = get(serve.port, "/metrics").unwrap().text();
    let paths = sample(&metrics, "httpsd_memory_store_paths");
    let evicted = sample(
        &metrics,
        "httpsd_memory_store_evictions_total{reason=\"paths\"}",
    );
    let refused = statuses.iter().filter(|s| **s == 503).count();
    eprintln!(
        "  12,000 parameter sets: {} answered 200, {refused} 503; store holds {paths} paths, {evicted} evicted; RSS idle {} MiB, peak {} MiB, 2 s after {} MiB; peak fds {fds}",
        statuses.iter().filter(|s| **s == 200).count(),
        idle >> 10,
        peak >> 10,
        after >> 10
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 503)),
        "every request is answered or refused cleanly"
    );
    assert!(paths <= 200.0, "the store holds {paths} paths");
    assert!(evicted > 0.0, "nothing was evicted:\n{metrics}");
    assert!(polls.iter().all(|s| *s == 200), "healthy path: {polls:?}");
    assert!(peak < idle + (512 << 10), "peak RSS {} MiB", peak >> 10);
}

//! Shared helpers for the end-to-end tests: build the example and fixture generators
//! from source (no `.wasm` is committed), and lay out target directories.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Builds every crate of `generators/` for wasm32-wasip2 (once per test binary; cargo's
/// own lock serialises concurrent binaries) and returns the directory of `.wasm` files.
pub fn components() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = guest_target_dir();
        build_guests(&repo().join("generators"), &target);
        target.join("wasm32-wasip2").join("release")
    })
}

/// The target directory of guest builds: one of its own, because the outer `cargo
/// test` holds the lock on the main one.
pub fn guest_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("guests")
}

/// `cargo build --release --target wasm32-wasip2` in `dir`, into `target`; panics if
/// the build fails.
pub fn build_guests(dir: &Path, target: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target)
        // Settings meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("run cargo to build generators");
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed",
        dir.display()
    );
}

/// The built component of crate `name` (`static-nodes`, `fixture-panic`, ...).
pub fn component(name: &str) -> PathBuf {
    let path = components().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A temporary target directory.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().expect("create a temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Copies the component of crate `name` to `rel` (e.g. `nodes/static.wasm`).
    pub fn wasm(&self, rel: &str, name: &str) -> PathBuf {
        let dest = self.path(rel);
        std::fs::create_dir_all(dest.parent().expect("rel has a parent")).expect("mkdir");
        std::fs::copy(component(name), &dest).expect("copy component");
        dest
    }

    /// Copies the component file `from` to `rel`.
    pub fn copy(&self, rel: &str, from: &Path) -> PathBuf {
        let dest = self.path(rel);
        std::fs::create_dir_all(dest.parent().expect("rel has a parent")).expect("mkdir");
        std::fs::copy(from, &dest).expect("copy component");
        dest
    }

    /// Writes a text file (a static generator or a manifest) at `rel`.
    pub fn file(&self, rel: &str, text: &str) -> PathBuf {
        let dest = self.path(rel);
        std::fs::create_dir_all(dest.parent().expect("rel has a parent")).expect("mkdir");
        std::fs::write(&dest, text).expect("write file");
        dest
    }
}

/// The demo tree of the README: `generators/demo-targets/` with the example
/// components copied in where its `_components` file says.
pub fn example_tree() -> Tree {
    let t = Tree::new();
    let demo = repo().join("generators/demo-targets");
    copy_dir(&demo, t.root());
    let listing = std::fs::read_to_string(demo.join("_components")).expect("read _components");
    for line in listing
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut parts = line.split_whitespace();
        let (Some(rel), Some(krate)) = (parts.next(), parts.next()) else {
            panic!("bad line in _components: {line:?}");
        };
        t.wasm(rel, krate);
    }
    t
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

pub mod bomb;
pub mod browser;
pub mod certs;
pub mod http;
pub mod inventory;
pub mod process;
pub mod prometheus;
pub mod redis_server;
pub mod redis_topology;

#[allow(unused_imports)]
pub use http::{Reply, get, request};
#[allow(unused_imports)]
pub use process::{Httpsd, free_port};
#[allow(unused_imports)]
pub use redis_server::RedisServer;
#[allow(unused_imports)]
pub use redis_topology::{Cluster, SentinelGroup};

/// The value of one sample in a Prometheus text exposition (0 when it is absent).
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `secs` seconds with
/// `what` (the tests wait on real processes; a bound turns a hang into a failure).
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub mod scenario;

/// A build tool for non-Rust generators: `$ENV` when set, else `name` on the PATH.
/// Missing is a failure, not a skip: `scripts/test` installs both (componentize-py from
/// PyPI, componentize-js from npm) and exports their paths.
pub fn tool(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} not found: run ./scripts/test (it installs it) or set {env} to its path")
    })
}

/// Builds the Python and JavaScript examples (`generators/python/inventory`,
/// `generators/javascript/inventory`) once per test binary and returns their
/// components: (python, javascript).
pub fn language_components() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = guest_target_dir().join("languages");
        let wit_http = out.join("wit-http");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).expect("mkdir");
        run(Command::new(repo().join("scripts/wit-http")).arg(&wit_http));
        let python = out.join("inventory-py.wasm");
        run(Command::new(tool("COMPONENTIZE_PY", "componentize-py"))
            .current_dir(repo().join("generators/python/inventory"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-d")
            .arg(&wit_http)
            .args(["-w", "generator-http", "componentize", "app", "-o"])
            .arg(&python));
        let javascript = out.join("inventory-js.wasm");
        run(Command::new(tool("COMPONENTIZE_JS", "componentize-js"))
            .current_dir(repo().join("generators/javascript/inventory"))
            .arg("--wit")
            .arg(repo().join("wit"))
            .args(["-n", "generator", "-o"])
            .arg(&javascript)
            .arg("app.js"));
        (python, javascript)
    })
}

/// Builds the Python runner (scripts/python-runner, once per test binary; the script
/// itself skips an unchanged build and serialises concurrent ones) next to the httpsd
/// binary under test, where httpsd finds it; returns its path.
pub fn python_runner() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Path::new(env!("CARGO_BIN_EXE_httpsd"))
            .parent()
            .expect("the binary has a directory")
            .join("httpsd-python-runner.wasm");
        run(Command::new(repo().join("scripts/python-runner"))
            .env(
                "COMPONENTIZE_PY",
                tool("COMPONENTIZE_PY", "componentize-py"),
            )
            .arg(&out));
        out
    })
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! prometheus-http-sd style `.py` generators, dropped into a target tree unchanged and
//! run by httpsd's Python runner (generators/python-runner, docs/PYTHON.md): the exact
//! answers they give, the Python errors they end in (class name and traceback), the
//! limits that stop them in their own lines, and the sandbox they cannot leave; through
//! `httpsd serve`, a server and a worker on Redis, `httpsd check` and `httpsd new --lang
//! python`. And the answers are those prometheus-http-sd 3.0.6 itself gives for the same
//! files, installed from PyPI and run beside httpsd.
//!
//! Real processes throughout: httpsd, redis-server, prometheus-http-sd in a throwaway
//! venv, and the loopback inventory API of support/inventory.rs (token-protected, so
//! the generators' auth headers are checked by a real server).

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::inventory::Inventory;
use support::{Httpsd, RedisServer, Tree, eventually, get};

/// The bearer token the inventory API asks for on `/hosts`.
const TOKEN: &str = "legacy-inventory-token-3f1d";

// ---------------------------------------------------------------------------------------
// The generators, as a prometheus-http-sd user wrote them. `@URL@` and `@TOKEN@` are
// replaced by the inventory's URL and token when the tree is written (3.x has no
// manifest to carry them, so the legacy files hold them inline).

/// Standard library only (json, ipaddress, datetime, collections); `?env=` becomes a
/// label.
const STATIC_PY: &str = r#"import collections
import datetime
import ipaddress
import json

SUBNET = ipaddress.ip_network("10.20.0.0/29")
PORTS = json.loads('{"web": 9100, "db": 9187}')


def generate_targets(**kwargs):
    env = kwargs.get("env", "dev")
    by_role = collections.OrderedDict()
    for i, host in enumerate(SUBNET.hosts()):
        role = "web" if i % 2 == 0 else "db"
        by_role.setdefault(role, []).append(f"{host}:{PORTS[role]}")
    since = datetime.date(2024, 2, 28) + datetime.timedelta(days=2)
    return [
        {"targets": targets, "labels": {"job": role, "env": env, "since": since.isoformat()}}
        for role, targets in by_role.items()
    ]
"#;

/// The query as kwargs: the first value of a repeated key, percent-decoded.
const PARAMS_PY: &str = r#"def generate_targets(**kwargs):
    zone = kwargs.get("zone", "none")
    return [
        {
            "targets": [f"{zone}.example.com:9100"],
            "labels": {"zone": zone, "name": kwargs.get("name", ""), "keys": ",".join(sorted(kwargs))},
        }
    ]
"#;

/// Serves one target; `test_generate_targets` (what `httpsd check` runs) two others.
const CHECKED_PY: &str = r#"def generate_targets(**kwargs):
    return [{"targets": ["served.example.com:9100"], "labels": {"mode": "generate"}}]


def test_generate_targets():
    print("test_generate_targets ran")
    return [
        {
            "targets": ["check-1.example.com:9100", "check-2.example.com:9100"],
            "labels": {"mode": "test"},
        }
    ]
"#;

/// PyYAML on an inline document.
const YAML_PY: &str = r#"import yaml

DOC = """
groups:
  - job: switch
    targets: [sw-1.example.com:9116, sw-2.example.com:9116]
    labels: {rack: r1, env: staging}
  - job: pdu
    targets:
      - pdu-1.example.com:161
"""


def generate_targets(**kwargs):
    return [
        {"targets": g["targets"], "labels": {"job": g["job"], **g.get("labels", {})}}
        for g in yaml.safe_load(DOC)["groups"]
    ]
"#;

/// `urllib.request.urlopen` with an Authorization header, against the inventory.
const URLLIB_PY: &str = r#"import json
import urllib.request

INVENTORY = "@URL@"


def generate_targets(**kwargs):
    request = urllib.request.Request(
        INVENTORY + "/hosts", headers={"Authorization": "Bearer @TOKEN@"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        hosts = json.load(response)
    return [
        {
            "targets": [f"{h['address']}:{h['exporters']['node']}"],
            "labels": {"name": h["name"], "dc": h["dc"]},
        }
        for h in hosts
    ]
"#;

/// `requests.get(...)` with headers, an `AuthBase` subclass and a timeout,
/// `.raise_for_status()` and `.json()`; `?dc=` filters.
const REQUESTS_PY: &str = r#"import requests
from requests.auth import AuthBase

INVENTORY = "@URL@"


class Bearer(AuthBase):
    def __init__(self, token):
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def generate_targets(**kwargs):
    response = requests.get(
        f"{INVENTORY}/hosts",
        headers={"Accept": "application/json"},
        auth=Bearer("@TOKEN@"),
        timeout=5,
    )
    response.raise_for_status()
    jobs = {}
    for host in response.json():
        if kwargs.get("dc") not in (None, host["dc"]):
            continue
        for exporter, port in sorted(host["exporters"].items()):
            jobs.setdefault(exporter, []).append(f"{host['address']}:{port}")
    return [{"targets": t, "labels": {"job": job}} for job, t in sorted(jobs.items())]
"#;

/// httpsd's own module: the URL from `[config]`, the token from `[secrets]` (httpsd
/// only: 3.x has no `httpsd` module).
const CONFIGURED_PY: &str = r#"import json
import urllib.request

import httpsd


def generate_targets(**kwargs):
    request = urllib.request.Request(
        httpsd.config("url") + "/hosts",
        headers={"Authorization": "Bearer " + httpsd.secret("token")},
    )
    hosts = json.loads(urllib.request.urlopen(request, timeout=5).read())
    return [
        {
            "targets": sorted(h["address"] + ":9100" for h in hosts),
            "labels": {"site": httpsd.config("site", "nowhere"), "count": str(len(hosts))},
        }
    ]
"#;

/// `requests` with `params=` to a URL the inventory does not know: a 404, which
/// `.raise_for_status()` turns into an `HTTPError`.
const HTTP404_PY: &str = r#"import requests


def generate_targets(**kwargs):
    response = requests.get(
        "@URL@/hosts", params={"dc": "fra1", "role": ["web", "db"]}, timeout=5
    )
    response.raise_for_status()
    return response.json()
"#;

/// urllib to the inventory with a manifest that allows nothing.
const REFUSED_URLLIB_PY: &str = r#"import urllib.request


def generate_targets(**kwargs):
    return urllib.request.urlopen("@URL@/refused/hosts", timeout=5).read()
"#;

/// requests to the inventory with a manifest that allows another port only.
const REFUSED_REQUESTS_PY: &str = r#"import requests


def generate_targets(**kwargs):
    return requests.get("@URL@/refused/hosts", timeout=5).json()
"#;

const RAISES_PY: &str = r#"import logging

log = logging.getLogger(__name__)


def generate_targets(**kwargs):
    log.info("asking the inventory")
    raise ValueError("inventory said no")
"#;

/// An endless loop in a helper, under a 2 s timeout.
const LOOP_PY: &str = r#"def spin():
    n = 0
    while True:
        n += 1


def generate_targets(**kwargs):
    spin()
    return []
"#;

/// A sleep far past its 2 s timeout.
const SLEEP_PY: &str = r#"import time


def generate_targets(**kwargs):
    time.sleep(100)
    return []
"#;

/// Allocates without bound under a 64 MiB memory limit.
const MEMBOMB_PY: &str = r#"def generate_targets(**kwargs):
    hoard = []
    while True:
        hoard.append(bytes(1 << 20))
"#;

/// Reads a file of the host.
const HOSTFILE_PY: &str = r#"def generate_targets(**kwargs):
    with open("/etc/passwd") as f:
        first = f.readline()
    return [{"targets": ["hostfile.example.com:9100"], "labels": {"line": first}}]
"#;

/// Reads the environment: the sandbox grants none, so it sees none.
const ENV_PY: &str = r#"import os


def generate_targets(**kwargs):
    return [
        {
            "targets": ["env.example.com:9100"],
            "labels": {"n": str(len(os.environ)), "home": os.environ.get("HOME", "unset")},
        }
    ]
"#;

// ---------------------------------------------------------------------------------------
// The trees

/// The 1-based number of the first line of `source` containing `needle`.
fn line_of(source: &str, needle: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} is not in the generator"))
}

/// `source` with the inventory's URL and token in place.
fn fill(source: &str, api: &Inventory) -> String {
    source
        .replace("@URL@", &api.url())
        .replace("@TOKEN@", TOKEN)
}

/// `[http] allow` for the inventory.
fn allow_inventory(api: &Inventory) -> String {
    format!("[http]\nallow = [\"127.0.0.1:{}\"]\n", api.port)
}

/// The generators both httpsd and prometheus-http-sd 3.x run: one per directory, so
/// each path's answer is one generator's. Manifests are `_NAME.toml` (3.x skips `_`
/// names and refuses any other file it does not know) unless `plain_manifest`, which
/// names urllib's `urllib_gen.toml` to show httpsd reads both names.
fn write_portable(tree: &Tree, api: &Inventory, plain_manifest: bool) {
    tree.file("apps/static/static.py", STATIC_PY);
    tree.file("apps/params/params.py", PARAMS_PY);
    tree.file("apps/checked/checked.py", CHECKED_PY);
    tree.file("apps/yaml/yaml_gen.py", YAML_PY);
    tree.file("http/urllib/urllib_gen.py", &fill(URLLIB_PY, api));
    let urllib_manifest = if plain_manifest {
        "http/urllib/urllib_gen.toml"
    } else {
        "http/urllib/_urllib_gen.toml"
    };
    tree.file(urllib_manifest, &allow_inventory(api));
    tree.file("http/requests/requests_gen.py", &fill(REQUESTS_PY, api));
    tree.file("http/requests/_requests_gen.toml", &allow_inventory(api));
}

/// Every generator of this file: the portable ones, httpsd's own module, the failing
/// ones (each in a directory of its own), and a directory with nothing runnable.
fn full_tree(api: &Inventory) -> Tree {
    let tree = Tree::new();
    write_portable(&tree, api, true);
    let secret = tree.file("_secrets/token", TOKEN);
    tree.file("http/configured/configured.py", CONFIGURED_PY);
    tree.file(
        "http/configured/configured.toml",
        &format!(
            "[config]\nurl = \"{}\"\nsite = \"lab\"\n\n{}\n[secrets]\ntoken = {{ file = \"{}\" }}\n",
            api.url(),
            allow_inventory(api),
            secret.display()
        ),
    );
    tree.file("sandbox/env/env.py", ENV_PY);
    tree.file("errors/raises/raises.py", RAISES_PY);
    tree.file("errors/loop/loop.py", LOOP_PY);
    // Fuel to spare: about a second of CPU is 1e10, so the default could end the loop
    // before its 2 s wall clock on a fast or idle machine; this run is about the clock.
    tree.file(
        "errors/loop/_loop.toml",
        "[limits]\ntimeout = \"2s\"\nfuel = 1000000000000\n",
    );
    tree.file("errors/sleep/sleep.py", SLEEP_PY);
    tree.file("errors/sleep/_sleep.toml", "[limits]\ntimeout = \"2s\"\n");
    tree.file("errors/membomb/membomb.py", MEMBOMB_PY);
    tree.file(
        "errors/membomb/membomb.toml",
        "[limits]\nmemory = \"64MiB\"\n",
    );
    tree.file("errors/hostfile/hostfile.py", HOSTFILE_PY);
    tree.file("errors/http404/http404.py", &fill(HTTP404_PY, api));
    tree.file("errors/http404/http404.toml", &allow_inventory(api));
    tree.file("errors/refused-bare/bare.py", &fill(REFUSED_URLLIB_PY, api));
    tree.file(
        "errors/refused-other/other.py",
        &fill(REFUSED_REQUESTS_PY, api),
    );
    tree.file(
        "errors/refused-other/other.toml",
        &format!("[http]\nallow = [\"127.0.0.1:{}\"]\n", support::free_port()),
    );
    tree.file("readme/README.txt", "Nothing to run here.\n");
    tree
}

// ---------------------------------------------------------------------------------------
// What the good paths answer, computed by hand from the generators above

fn static_groups(env: &str) -> Value {
    json!([
        {"targets": ["10.20.0.1:9100", "10.20.0.3:9100", "10.20.0.5:9100"],
         "labels": {"job": "web", "env": env, "since": "2024-03-01"}},
        {"targets": ["10.20.0.2:9187", "10.20.0.4:9187", "10.20.0.6:9187"],
         "labels": {"job": "db", "env": env, "since": "2024-03-01"}}
    ])
}

/// The paths both httpsd and 3.x answer that need no network, with their answers.
fn local_paths() -> Vec<(&'static str, Value)> {
    vec![
        ("/targets/apps/static?env=prod", static_groups("prod")),
        ("/targets/apps/static", static_groups("dev")),
        (
            "/targets/apps/params?zone=a&zone=b&name=x%2Fy",
            json!([{"targets": ["a.example.com:9100"],
                    "labels": {"zone": "a", "name": "x/y", "keys": "name,zone"}}]),
        ),
        (
            "/targets/apps/checked",
            json!([{"targets": ["served.example.com:9100"], "labels": {"mode": "generate"}}]),
        ),
        (
            "/targets/apps/yaml",
            json!([
                {"targets": ["sw-1.example.com:9116", "sw-2.example.com:9116"],
                 "labels": {"job": "switch", "rack": "r1", "env": "staging"}},
                {"targets": ["pdu-1.example.com:161"], "labels": {"job": "pdu"}}
            ]),
        ),
    ]
}

/// The paths both httpsd and 3.x answer from the inventory API, with their answers.
fn inventory_paths() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/targets/http/urllib",
            json!([
                {"targets": ["10.0.0.1:9100"], "labels": {"name": "web-1", "dc": "fra1"}},
                {"targets": ["10.0.0.2:9100"], "labels": {"name": "web-2", "dc": "fra1"}},
                {"targets": ["10.0.1.1:9100"], "labels": {"name": "db-1", "dc": "ams1"}},
                {"targets": ["10.0.2.1:9100"], "labels": {"name": "edge-1", "dc": "ams1"}}
            ]),
        ),
        (
            "/targets/http/requests?dc=ams1",
            json!([
                {"targets": ["10.0.1.1:9100", "10.0.2.1:9100"], "labels": {"job": "node"}},
                {"targets": ["10.0.1.1:9187"], "labels": {"job": "postgres"}}
            ]),
        ),
    ]
}

/// The inventory path only httpsd answers: `httpsd.config` and `httpsd.secret`.
fn configured_path() -> (&'static str, Value) {
    (
        "/targets/http/configured",
        json!([{"targets": ["10.0.0.1:9100", "10.0.0.2:9100", "10.0.1.1:9100", "10.0.2.1:9100"],
                "labels": {"site": "lab", "count": "4"}}]),
    )
}

/// The empty environment, seen from inside.
fn env_path() -> (&'static str, Value) {
    (
        "/targets/sandbox/env",
        json!([{"targets": ["env.example.com:9100"], "labels": {"n": "0", "home": "unset"}}]),
    )
}

/// Every good path of [`full_tree`].
fn good_paths() -> Vec<(&'static str, Value)> {
    let mut paths = local_paths();
    paths.extend(inventory_paths());
    paths.extend([configured_path(), env_path()]);
    paths
}

// ---------------------------------------------------------------------------------------
// Asking httpsd

/// The artifact cache every httpsd of this file shares (`--cache-dir`), with the
/// Python runner built and compiled into it once, before any test starts an httpsd.
/// Each process compiling the tens-of-MB runner itself, all tests at once, would take
/// longer than the 60 s compile limit on a small machine.
fn runner_cache() -> &'static str {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    let dir = CACHE.get_or_init(|| {
        support::python_runner();
        let dir = support::guest_target_dir().join("python-test-cache");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the shared artifact cache");
        let tree = Tree::new();
        tree.file(
            "warm/warm.py",
            "def generate_targets(**kwargs):\n    return [{\"targets\": [\"warm:1\"]}]\n",
        );
        let out = Command::new(env!("CARGO_BIN_EXE_httpsd"))
            .arg("check")
            .arg(tree.root())
            .arg("--cache-dir")
            .arg(&dir)
            .args(["--compile-timeout", "600s"])
            .output()
            .expect("run httpsd check to compile the Python runner");
        assert!(
            out.status.success(),
            "compiling the Python runner failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    });
    utf8(dir)
}

/// `httpsd serve` on `root`, on the shared artifact cache.
fn serve_tree(root: &Path) -> Httpsd {
    Httpsd::serve(root, &["--cache-dir", runner_cache()])
}

/// Polls `path` until it answers 200 (`Ok`, the body) or its error is cached (`Err`,
/// the error details).
fn answer_or_error(port: u16, path: &str) -> Result<Value, Value> {
    eventually(240, &format!("{path} to answer 200 or fail"), || {
        let r = get(port, path).ok()?;
        if r.status == 200 {
            return Some(Ok(r.json()));
        }
        error_of(port, path).map(Err)
    })
}

/// Polls `path` until it answers 200 and returns the body; panics with the error if its
/// run failed.
fn targets(port: u16, path: &str) -> Value {
    answer_or_error(port, path).unwrap_or_else(|e| panic!("{path} failed: {e:#}"))
}

/// How `path`'s answer differs from `expected`, if it does.
fn mismatch(path: &str, got: Result<Value, Value>, expected: &Value) -> Option<String> {
    match got {
        Ok(v) if &v == expected => None,
        Ok(v) => Some(format!("{path}: answered {v}\n  expected {expected}")),
        Err(e) => Some(format!(
            "{path}: failed with {}: {}\n{}",
            e["error_type"],
            e["error_message"],
            e["traceback"].as_str().unwrap_or_default()
        )),
    }
}

/// Asserts every `(path, answer)` of `paths` on the httpsd at `port`; every path is
/// asked before failing, so the message lists all that differ.
fn assert_answers(port: u16, paths: &[(&str, Value)]) {
    let wrong: Vec<String> = paths
        .iter()
        .filter_map(|(path, expected)| mismatch(path, answer_or_error(port, path), expected))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} paths are wrong:\n{}",
        wrong.len(),
        paths.len(),
        wrong.join("\n\n")
    );
}

/// `path?debug=true` (or `&debug=true`).
fn debug(port: u16, path: &str) -> Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    get(port, &format!("{path}{sep}debug=true"))
        .unwrap_or_else(|e| panic!("GET {path} with debug: {e}"))
        .json()
}

/// The cached error of `path`, if there is one yet.
fn error_of(port: u16, path: &str) -> Option<Value> {
    let e = &debug(port, path)["debug_info"]["error_details"];
    e.is_object().then(|| e.clone())
}

/// Asks for `path` (a miss enqueues its run), then polls `?debug=true` until its error
/// is cached, and returns the error details.
fn cached_error(port: u16, path: &str) -> Value {
    let _ = get(port, path);
    eventually(120, &format!("the error of {path}"), || {
        error_of(port, path)
    })
}

fn text(e: &Value, key: &str) -> String {
    e[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {e:#}"))
        .to_string()
}

/// The line number of the frame `File "<file>", line N, in <func>` of a traceback.
fn frame_line(traceback: &str, file: &str, func: &str) -> Option<usize> {
    let prefix = format!("File \"{file}\", line ");
    traceback.lines().find_map(|l| {
        let (n, f) = l.trim().strip_prefix(&prefix)?.split_once(", in ")?;
        (f == func).then(|| n.parse().ok()).flatten()
    })
}

/// `httpsd ARGS` on the shared artifact cache.
fn httpsd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_httpsd"))
        .args(args)
        .env("HTTPSD_CACHE_DIR", runner_cache())
        .output()
        .unwrap_or_else(|e| panic!("cannot run httpsd {args:?}: {e}"))
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

// ---------------------------------------------------------------------------------------
// httpsd serve

/// The generators that need no network answer exactly what they compute (stdlib,
/// kwargs from the query, PyYAML); the environment is empty inside; a directory of
/// files none of which runs is a 500 naming them, never an empty 200.
#[test]
fn serve_answers_legacy_py_generators_with_their_exact_targets() {
    let api = Inventory::start(Some(TOKEN));
    let tree = full_tree(&api);
    let serve = serve_tree(tree.root());

    let mut paths = local_paths();
    paths.push(env_path());
    assert_answers(serve.port, &paths);

    let r = get(serve.port, "/targets/readme").expect("GET /targets/readme");
    assert_eq!(r.status, 500, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], "no runnable generator", "{body}");
    assert!(text(&body, "message").contains("README.txt"), "{body}");
}

/// `urllib.request.urlopen` and `requests.get` reach an inventory the manifest allows,
/// with the Authorization header the generator set (inline, through a `requests` auth
/// class, and from `httpsd.secret`), and make exactly the expected targets.
#[test]
fn serve_runs_urllib_and_requests_generators_against_an_allowed_inventory() {
    let api = Inventory::start(Some(TOKEN));
    let tree = full_tree(&api);
    let serve = serve_tree(tree.root());

    let mut paths = inventory_paths();
    paths.push(configured_path());
    assert_answers(serve.port, &paths);
    let bearer = format!("Bearer {TOKEN}");
    let authorized = api
        .seen()
        .iter()
        .filter(|s| s.path == "/hosts" && s.authorization.as_deref() == Some(&bearer))
        .count();
    assert!(authorized >= 3, "{:?}", api.seen());
}

/// A 404 is `requests`' `HTTPError` (and `params=` reached the server encoded); a host
/// outside the allow list is refused before any connection, as an `HttpDeniedError`
/// whose message names the allow list.
#[test]
fn serve_caches_http_errors_and_refusals_of_py_generators() {
    let api = Inventory::start(Some(TOKEN));
    let tree = full_tree(&api);
    let serve = serve_tree(tree.root());
    let port = serve.port;

    let e = cached_error(port, "/targets/errors/http404");
    assert_eq!(e["error_type"], "HTTPError", "{e:#}");
    let url = format!("{}/hosts?dc=fra1&role=web&role=db", api.url());
    assert_eq!(
        e["error_message"],
        format!("404 Client Error: Not Found for url: {url}"),
        "{e:#}"
    );
    assert_eq!(
        frame_line(
            &text(&e, "traceback"),
            "errors/http404/http404.py",
            "generate_targets"
        ),
        Some(line_of(HTTP404_PY, "raise_for_status")),
        "{e:#}"
    );
    assert!(
        api.seen()
            .iter()
            .any(|s| s.path == "/hosts?dc=fra1&role=web&role=db"),
        "{:?}",
        api.seen()
    );

    assert_refused(port, &api);
}

/// An exception is cached with its class as `error_type` and a Python traceback naming
/// the file as it sits in the tree; the memory cap is a `MemoryError`, a host file an
/// `OSError` that shows nothing of the file. Each in its own path.
#[test]
fn serve_caches_python_exceptions_with_their_class_and_traceback() {
    let api = Inventory::start(Some(TOKEN));
    let tree = full_tree(&api);
    let serve = serve_tree(tree.root());
    let port = serve.port;

    let e = cached_error(port, "/targets/errors/raises");
    assert_eq!(e["error_type"], "ValueError", "{e:#}");
    assert_eq!(e["error_message"], "inventory said no", "{e:#}");
    let tb = text(&e, "traceback");
    assert!(tb.starts_with("Traceback (most recent call last):"), "{tb}");
    assert_eq!(
        frame_line(&tb, "errors/raises/raises.py", "generate_targets"),
        Some(line_of(RAISES_PY, "raise ValueError")),
        "{tb}"
    );
    assert!(tb.ends_with("ValueError: inventory said no"), "{tb}");
    // What it logged before failing is in the run log.
    let logs = debug(port, "/targets/errors/raises").to_string();
    assert!(logs.contains("asking the inventory"), "{logs}");

    let e = cached_error(port, "/targets/errors/membomb");
    assert_eq!(e["error_type"], "MemoryError", "{e:#}");
    let tb = text(&e, "traceback");
    assert_eq!(
        frame_line(&tb, "errors/membomb/membomb.py", "generate_targets"),
        Some(line_of(MEMBOMB_PY, "hoard.append")),
        "{tb}"
    );

    assert_no_host_file(port);
}

/// No `[http]` table, or another host allowed: refused before any connection.
fn assert_refused(port: u16, api: &Inventory) {
    for path in [
        "/targets/errors/refused-bare",
        "/targets/errors/refused-other",
    ] {
        let e = cached_error(port, path);
        assert_eq!(e["error_type"], "HttpDeniedError", "{path}: {e:#}");
        let message = text(&e, "error_message");
        assert!(message.contains("allow list"), "{path}: {message}");
        assert!(message.contains("/refused/hosts"), "{path}: {message}");
        let r = get(port, path).expect("GET a refused path");
        assert_eq!(
            r.status,
            503,
            "{path}: never a partial answer: {}",
            r.text()
        );
    }
    assert!(
        api.seen().iter().all(|s| !s.path.starts_with("/refused")),
        "a refused request reached the inventory: {:?}",
        api.seen()
    );
}

/// `open("/etc/passwd")` is an OSError of some kind, and nothing of the file shows.
fn assert_no_host_file(port: u16) {
    let path = "/targets/errors/hostfile";
    let e = cached_error(port, path);
    let kind = text(&e, "error_type");
    assert!(
        ["FileNotFoundError", "PermissionError", "OSError"].contains(&kind.as_str()),
        "{e:#}"
    );
    let tb = text(&e, "traceback");
    assert_eq!(
        frame_line(&tb, "errors/hostfile/hostfile.py", "generate_targets"),
        Some(line_of(HOSTFILE_PY, "open(")),
        "{tb}"
    );
    let plain = get(port, path).expect("GET the host file path").text();
    let debugged = debug(port, path).to_string();
    for answer in [plain, debugged] {
        assert!(!answer.contains("root:"), "{answer}");
    }
}

/// The state of a path's run, from `?debug=true`.
#[derive(Debug, PartialEq)]
enum Run {
    Processing,
    Failed,
    Other,
}

/// Where `path`'s run is: running, failed (its error cached), or neither yet.
fn run_state(port: u16, path: &str) -> Run {
    let d = debug(port, path);
    if d["debug_info"]["error_details"].is_object() {
        Run::Failed
    } else if d["status"] == "processing" {
        Run::Processing
    } else {
        Run::Other
    }
}

/// An endless loop and a 100 s sleep under a 2 s timeout end as `TimeoutError`s whose
/// tracebacks show the Python function and line they were stopped in, within their
/// limit; while both run, a cached good path keeps answering and new runs of another
/// path complete.
#[test]
fn loops_and_sleeps_end_as_timeouts_in_their_own_lines_while_good_paths_answer() {
    let api = Inventory::start(Some(TOKEN));
    let tree = full_tree(&api);
    let serve = serve_tree(tree.root());
    let port = serve.port;
    let good = "/targets/apps/static?env=prod";
    // Warm: the runner compiled before any clock starts.
    assert_eq!(targets(port, good), static_groups("prod"));

    let (looping, sleeping) = ("/targets/errors/loop", "/targets/errors/sleep");
    let started = Instant::now();
    for path in [looping, sleeping] {
        let r = get(port, path).expect("GET a slow path");
        assert_eq!(r.status, 503, "{path}: {}", r.text());
    }
    let mut ended: [Option<Duration>; 2] = [None, None];
    // New runs completed while both slow runs were running.
    let mut fresh = 0;
    while ended.iter().any(Option::is_none) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the slow paths never ended"
        );
        let states = [run_state(port, looping), run_state(port, sleeping)];
        for (i, s) in states.iter().enumerate() {
            if *s == Run::Failed && ended[i].is_none() {
                ended[i] = Some(started.elapsed());
            }
        }
        let r = get(port, good).expect("GET the good path");
        assert_eq!(
            r.status,
            200,
            "the good path during the timeouts: {}",
            r.text()
        );
        assert_eq!(r.json(), static_groups("prod"));
        // A new query is a new run: asked while both slow runs were running, and
        // answered while they still were.
        if states.iter().all(|s| *s == Run::Processing) {
            let path = format!("/targets/apps/params?zone=during-{fresh}");
            let r = get(port, &path).expect("GET a fresh path");
            let still = [run_state(port, looping), run_state(port, sleeping)];
            if r.status == 200 && still.iter().all(|s| *s == Run::Processing) {
                assert_eq!(r.json()[0]["labels"]["zone"], format!("during-{fresh}"));
                fresh += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        fresh >= 1,
        "no new run completed while the loop and the sleep ran"
    );

    let e = cached_error(port, looping);
    assert_timeout(&e, ended[0]);
    let tb = text(&e, "traceback");
    let stopped = frame_line(&tb, "errors/loop/loop.py", "spin");
    let loop_lines = [line_of(LOOP_PY, "while True"), line_of(LOOP_PY, "n += 1")];
    assert!(
        stopped.is_some_and(|n| loop_lines.contains(&n)),
        "stopped in the loop of spin(): {tb}"
    );
    assert_eq!(
        frame_line(&tb, "errors/loop/loop.py", "generate_targets"),
        Some(line_of(LOOP_PY, "    spin()")),
        "{tb}"
    );

    let e = cached_error(port, sleeping);
    assert_timeout(&e, ended[1]);
    let tb = text(&e, "traceback");
    assert_eq!(
        frame_line(&tb, "errors/sleep/sleep.py", "generate_targets"),
        Some(line_of(SLEEP_PY, "time.sleep(100)")),
        "{tb}"
    );
}

/// A `TimeoutError` of the 2 s wall clock, that ended well within 10 s of being asked.
fn assert_timeout(e: &Value, ended: Option<Duration>) {
    assert_eq!(e["error_type"], "TimeoutError", "{e:#}");
    assert_eq!(
        e["error_message"], "Generator exceeded timeout limit: wall clock 2s",
        "{e:#}"
    );
    let tb = text(e, "traceback");
    assert!(
        tb.ends_with("TimeoutError: Generator exceeded timeout limit: wall clock 2s"),
        "{tb}"
    );
    let took = ended.expect("the run ended");
    assert!(took < Duration::from_secs(10), "ended after {took:?}");
    let processing = e["processing_time"].as_f64().unwrap_or(f64::MAX);
    assert!(processing < 10.0, "ran {processing} s: {e:#}");
}

// ---------------------------------------------------------------------------------------
// httpsd server + worker

/// The same good paths through a server and a worker on a real Redis: the worker runs
/// the `.py` files, the server answers what they made.
#[test]
fn server_and_worker_on_redis_answer_the_same_targets() {
    let api = Inventory::start(Some(TOKEN));
    let tree = full_tree(&api);
    let redis = RedisServer::start();
    let server = Httpsd::server(tree.root(), &redis.url(), &[]);
    let _worker = Httpsd::worker(tree.root(), &redis.url(), &["--cache-dir", runner_cache()]);

    assert_answers(server.port, &good_paths());
    let e = cached_error(server.port, "/targets/errors/raises");
    assert_eq!(e["error_type"], "ValueError", "{e:#}");
}

// ---------------------------------------------------------------------------------------
// httpsd check and httpsd new

/// `httpsd check` calls `test_generate_targets` where a file defines it: two targets
/// and its print, where `generate_targets` would give one.
#[test]
fn check_runs_test_generate_targets() {
    let api = Inventory::start(Some(TOKEN));
    let tree = full_tree(&api);
    let root = utf8(tree.root());
    let out = httpsd(&["check", root, "--path", "apps", "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{report:#}");
    let runs = report["runs"].as_array().expect("a list of runs");
    assert_eq!(runs.len(), 4, "{report:#}");
    let checked = runs
        .iter()
        .find(|r| r["generator"] == "apps/checked/checked.py")
        .unwrap_or_else(|| panic!("no run of checked.py: {report:#}"));
    assert_eq!(checked["kind"], "python", "{checked:#}");
    assert_eq!(checked["targets"], 2, "{checked:#}");
    assert!(
        checked["logs"]
            .to_string()
            .contains("test_generate_targets ran"),
        "{checked:#}"
    );
}

/// `httpsd new svc --lang python` writes a generator and its manifest that pass `httpsd
/// check` as they are.
#[test]
fn a_new_python_generator_passes_check() {
    let work = tempfile::tempdir().expect("a work dir");
    let dir = work.path().join("svc");
    let out = httpsd(&["new", "svc", "--lang", "python", "--dir", utf8(&dir)]);
    assert!(
        out.status.success(),
        "httpsd new: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("svc.py").is_file() && dir.join("svc.toml").is_file());

    let out = httpsd(&["check", utf8(&dir), "--format", "json"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "httpsd check: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&report).expect("check's JSON report");
    assert_eq!(report["runs"][0]["generator"], "svc.py", "{report:#}");
    assert_eq!(report["runs"][0]["targets"], 3, "{report:#}");
}

// ---------------------------------------------------------------------------------------
// prometheus-http-sd 3.0.6

/// The version the answers are compared with.
const PHSD: &str = "prometheus-http-sd==3.0.6";
/// The real `requests` for 3.x (httpsd's runner carries its own, of this version).
const REQUESTS: &str = "requests==2.32.3";

/// A process of prometheus-http-sd, killed when dropped; its output in a file.
struct PyProcess {
    child: Child,
    log: PathBuf,
}

impl PyProcess {
    fn start(program: &Path, args: &[&str], log: PathBuf) -> PyProcess {
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("a log file");
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        PyProcess { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A venv with prometheus-http-sd 3.0.6 (and requests) from PyPI; its `bin/`.
fn install_prometheus_http_sd(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 is needed to install prometheus-http-sd (apt-get install python3)");
    assert!(
        made.status.success(),
        "python3 -m venv failed (apt-get install python3-venv): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pip = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "-q",
            "--disable-pip-version-check",
            PHSD,
            REQUESTS,
        ])
        .output()
        .expect("run pip");
    assert!(
        pip.status.success(),
        "pip install {PHSD} {REQUESTS} failed (PyPI is needed):\n{}\n{}",
        String::from_utf8_lossy(&pip.stdout),
        String::from_utf8_lossy(&pip.stderr)
    );
    venv.join("bin")
}

/// prometheus-http-sd's server and worker on a Redis of their own, over a tree.
struct Legacy {
    server: PyProcess,
    worker: PyProcess,
    /// The server's HTTP port.
    port: u16,
}

impl Legacy {
    /// Starts both from the venv's `bin`, with their logs in `logs`; returns once the
    /// server accepts connections.
    fn start(bin: &Path, root: &Path, redis: &str, logs: &Path) -> Legacy {
        let port = support::free_port();
        let (port_s, metrics) = (port.to_string(), support::free_port().to_string());
        let root = utf8(root);
        let common = [
            "--host",
            "127.0.0.1",
            "--redis-url",
            redis,
            "--log-level",
            "30",
        ];
        let server = PyProcess::start(
            &bin.join("prometheus-http-sd-server"),
            &[
                &common[..],
                &["--port", &port_s, "--cache-seconds", "3600", root],
            ]
            .concat(),
            logs.join("server.log"),
        );
        let worker = PyProcess::start(
            &bin.join("prometheus-http-sd-worker"),
            &[
                &common[..],
                &["--port", &metrics, "--num-workers", "2", root],
            ]
            .concat(),
            logs.join("worker.log"),
        );
        let legacy = Legacy {
            server,
            worker,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(port, "/").is_err() {
            assert!(
                Instant::now() < deadline,
                "prometheus-http-sd-server did not listen:\n{}",
                legacy.server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        legacy
    }

    /// Polls `path` until it answers a JSON list (a miss is `{"error": "cache miss"}`
    /// with status 200).
    fn answer(&self, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = String::from("no answer");
        loop {
            if let Ok(r) = get(self.port, path) {
                match serde_json::from_slice::<Value>(&r.body) {
                    Ok(v) if v.is_array() => return v,
                    _ => last = format!("{} {}", r.status, r.text()),
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus-http-sd never answered {path} with a list; last: {last}\n\
                 server log:\n{}\nworker log:\n{}",
                self.server.log(),
                self.worker.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// On a tree holding only the portable generators (its manifests `_`-named, as 3.x
/// needs), every path answers in httpsd exactly what prometheus-http-sd 3.0.6's server
/// and worker answer: the same JSON value, query parameters included.
#[test]
fn answers_equal_prometheus_http_sd_3_0_6_on_the_same_files() {
    runner_cache();
    // 3.x skips any path with a component starting with `.` or `_`, its root's own
    // included: no `.tmpXXXX` directory here.
    let work = tempfile::Builder::new()
        .prefix("httpsd-parity-")
        .tempdir()
        .expect("a work dir");
    let bin = install_prometheus_http_sd(work.path());
    let api = Inventory::start(Some(TOKEN));
    let tree = Tree {
        dir: tempfile::Builder::new()
            .prefix("httpsd-parity-tree-")
            .tempdir()
            .expect("a tree dir"),
    };
    write_portable(&tree, &api, false);

    let redis = RedisServer::start();
    let legacy = Legacy::start(&bin, tree.root(), &redis.url(), work.path());
    let serve = serve_tree(tree.root());

    let mut paths = local_paths();
    paths.extend(inventory_paths());
    let mut wrong = Vec::new();
    for (path, expected) in &paths {
        let theirs = legacy.answer(path);
        // 3.x's answer is the reference; that it is also ours by hand checks the test.
        assert_eq!(&theirs, expected, "{path}: prometheus-http-sd's answer");
        wrong.extend(mismatch(path, answer_or_error(serve.port, path), &theirs));
    }
    assert!(
        wrong.is_empty(),
        "httpsd differs from prometheus-http-sd 3.0.6 on {} of {} paths:\n{}",
        wrong.len(),
        paths.len(),
        wrong.join("\n\n")
    );
}

/// A run's generator and what it printed, through the runtime the worker uses.
async fn run_py(
    rt: &httpsd::runtime::Runtime,
    path: &Path,
    n: &str,
) -> (Vec<String>, Vec<String>, Duration) {
    let report = rt.run(path, &[("n".to_string(), n.to_string())]).await;
    let groups = report
        .result
        .unwrap_or_else(|e| panic!("{} failed: {e:?}", path.display()));
    let targets = groups.into_iter().flat_map(|g| g.targets).collect();
    let printed = report
        .stats
        .logs
        .iter()
        .map(|l| l.message.clone())
        .filter(|m| m.starts_with("run "))
        .collect();
    (targets, printed, report.stats.instantiate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instances_serve_later_runs_of_a_file_with_a_fresh_module_and_log() {
    use httpsd::runtime::{Runtime, RuntimeConfig};
    let rt = Runtime::new(RuntimeConfig {
        python_runner: Some(support::python_runner().to_path_buf()),
        cache_dir: Some(PathBuf::from(runner_cache())),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let tree = Tree::new();
    // A module global counts the calls in this module: 1 on every run if the module is
    // loaded afresh, as 3.x did, even when the instance is warm.
    let count = tree.file(
        "count.py",
        "calls = 0\n\ndef generate_targets(**kwargs):\n    global calls\n    calls += 1\n    print('run', kwargs['n'])\n    return [{'targets': [f\"call{calls}:{kwargs['n']}\"]}]\n",
    );
    let (targets, printed, _) = run_py(&rt, &count, "1").await;
    assert_eq!(targets, ["call1:1"]);
    assert_eq!(printed, ["run 1"]);
    let loaded = rt.load(&count).await.expect("load");
    assert_eq!(
        loaded.warm.idle(),
        1,
        "a clean run leaves its instance warm"
    );
    for n in ["2", "3"] {
        let (targets, printed, instantiate) = run_py(&rt, &count, n).await;
        assert_eq!(
            targets,
            [format!("call1:{n}")],
            "a fresh module on every run"
        );
        assert_eq!(
            printed,
            [format!("run {n}")],
            "only this run's output in its log"
        );
        assert_eq!(
            instantiate,
            Duration::ZERO,
            "run {n} used the warm instance"
        );
    }

    // A changed file is a new entry: its own code, not the old bytecode, and no warm
    // instance of the old version.
    std::fs::write(
        &count,
        "def generate_targets(**kwargs):\n    print('run', kwargs['n'])\n    return [{'targets': ['changed:' + kwargs['n']]}]\n",
    )
    .expect("rewrite count.py");
    let (targets, _, instantiate) = run_py(&rt, &count, "4").await;
    assert_eq!(targets, ["changed:4"]);
    assert!(instantiate > Duration::ZERO, "the new version starts cold");

    // A generator that offers bytecode of its own (garbage) to the host, on a cold run
    // and on warm ones: the host keeps only the runner's first offer, so every run
    // still runs the file's real code.
    let poison = tree.file(
        "poison.py",
        "from wit_world.imports import script\n\ndef generate_targets(**kwargs):\n    script.keep_compiled(b'\\x00garbage')\n    print('run', kwargs['n'])\n    return [{'targets': ['real:' + kwargs['n']]}]\n",
    );
    for n in ["1", "2", "3"] {
        let (targets, _, _) = run_py(&rt, &poison, n).await;
        assert_eq!(targets, [format!("real:{n}")]);
    }

    // Not kept: an instance whose run hit a limit, or whose memory grew past what a
    // warm instance may hold.
    let slow = tree.file(
        "slow.py",
        "def generate_targets(**kwargs):\n    while True:\n        pass\n",
    );
    tree.file("slow.toml", "[limits]\ntimeout = \"1s\"\n");
    let report = rt.run(&slow, &[]).await;
    assert_eq!(
        report.result.unwrap_err().kind,
        httpsd::runtime::ErrorKind::Timeout
    );
    assert_eq!(rt.load(&slow).await.expect("load").warm.idle(), 0);
    let big = tree.file(
        "big.py",
        "def generate_targets(**kwargs):\n    hold = bytearray(48 << 20)\n    return [{'targets': ['big:%d' % len(hold)]}]\n",
    );
    let report = rt.run(&big, &[]).await;
    assert!(report.result.is_ok(), "{:?}", report.result.err());
    assert_eq!(rt.load(&big).await.expect("load").warm.idle(), 0);
}

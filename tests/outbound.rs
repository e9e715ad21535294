//! Generators that do real work: outbound HTTP through the allow-list, secrets kept out
//! of everything a run leaves behind, timeouts on a slow inventory. Real `httpsd`
//! processes, real components, a real HTTP server on loopback (support/inventory.rs).

mod support;

use serde_json::{Value, json};
use support::inventory::Inventory;
use support::{Httpsd, RedisServer, Tree, eventually, get};

/// The target groups the inventory example makes of the inventory's hosts, in order.
fn expected_groups() -> Value {
    json!([
        {"targets": ["10.0.0.1:9113", "10.0.0.2:9113"],
         "labels": {"job": "nginx", "dc": "fra1", "role": "web", "team": "shop"}},
        {"targets": ["10.0.1.1:9100"],
         "labels": {"job": "node", "dc": "ams1", "role": "db", "team": "data"}},
        {"targets": ["10.0.2.1:9100"],
         "labels": {"job": "node", "dc": "ams1", "role": "edge"}},
        {"targets": ["10.0.0.1:9100", "10.0.0.2:9100"],
         "labels": {"job": "node", "dc": "fra1", "role": "web", "team": "shop"}},
        {"targets": ["10.0.1.1:9187"],
         "labels": {"job": "postgres", "dc": "ams1", "role": "db", "team": "data"}}
    ])
}

/// `rel/inventory.wasm` with a manifest pointing it at `url`, allowed to reach `allow`.
fn inventory_generator(tree: &Tree, rel: &str, url: &str, allow: &str, extra: &str) {
    tree.wasm(&format!("{rel}/inventory.wasm"), "inventory");
    tree.file(
        &format!("{rel}/inventory.toml"),
        &format!("[config]\nurl = \"{url}\"\n\n[http]\nallow = [\"{allow}\"]\n{extra}"),
    );
}

/// Polls `path?debug=true` until its error is cached, and returns the error details.
fn cached_error(port: u16, path: &str) -> Value {
    let _ = get(port, path);
    let sep = if path.contains('?') { '&' } else { '?' };
    eventually(60, &format!("the error of {path}"), || {
        let d = get(port, &format!("{path}{sep}debug=true")).ok()?.json();
        let e = &d["debug_info"]["error_details"];
        e.is_object().then(|| e.clone())
    })
}

/// Polls `path` until it answers 200 and returns the body.
fn targets(port: u16, path: &str) -> Value {
    eventually(60, &format!("{path} to answer 200"), || {
        let r = get(port, path).ok()?;
        (r.status == 200).then(|| r.json())
    })
}

#[test]
fn a_rust_generator_turns_an_inventory_api_into_target_groups() {
    let api = Inventory::start(None);
    let tree = Tree::new();
    let port = api.port.to_string();
    inventory_generator(&tree, "inv", &api.url(), &format!("127.0.0.1:{port}"), "");
    let serve = Httpsd::serve(tree.root(), &[]);

    assert_eq!(targets(serve.port, "/targets/inv"), expected_groups());
    // Query parameters filter what the inventory returned.
    let fra1 = targets(serve.port, "/targets/inv?dc=fra1&exporter=node");
    assert_eq!(
        fra1,
        json!([{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"],
                "labels": {"job": "node", "dc": "fra1", "role": "web", "team": "shop"}}])
    );
    assert!(api.seen().iter().all(|s| s.path == "/hosts"));

    // The request shows in the run's log in ?debug=true.
    let d = get(serve.port, "/targets/inv?debug=true").unwrap().json();
    let logs = d["debug_info"]["last_run"]["generators"][0]["logs"].to_string();
    assert!(
        logs.contains(&format!("GET {}/hosts -> 200", api.url())),
        "{d}"
    );
    assert!(logs.contains("inventory http://127.0.0.1"), "{logs}");
}

#[test]
fn a_host_outside_the_allow_list_is_refused_before_any_connection() {
    let api = Inventory::start(None);
    let tree = Tree::new();
    // Allowed: another port of the same host only.
    let other = support::free_port();
    inventory_generator(
        &tree,
        "denied",
        &api.url(),
        &format!("127.0.0.1:{other}"),
        "",
    );
    // No [http] table at all: nothing is reachable.
    tree.wasm("bare/inventory.wasm", "inventory");
    tree.file(
        "bare/inventory.toml",
        &format!("[config]\nurl = \"{}\"\n", api.url()),
    );
    let serve = Httpsd::serve(tree.root(), &[]);

    for path in ["/targets/denied", "/targets/bare"] {
        let err = cached_error(serve.port, path);
        assert_eq!(err["error_type"], "HttpDeniedError", "{err}");
        let message = err["error_message"].as_str().unwrap();
        assert!(
            message.contains(&format!("GET {}/hosts was refused", api.url())),
            "{message}"
        );
        assert!(message.contains("[http] allow list"), "{message}");
        // What the generator itself made of the refusal (the SDK's words) is kept.
        assert!(message.contains("denied by httpsd"), "{message}");
        assert!(
            err["traceback"]
                .as_str()
                .unwrap()
                .starts_with("Traceback (most recent call last):"),
            "{err}"
        );
        let r = get(serve.port, path).unwrap();
        assert_eq!(r.status, 503, "never a partial or empty answer");
    }
    assert!(
        api.seen().is_empty(),
        "no refused request reached the server: {:?}",
        api.seen()
    );
}

#[test]
fn an_allowed_name_leading_to_loopback_needs_private_networks() {
    // DNS rebinding: the allow-list names a host, its DNS (which the generator's author
    // may control) points at the worker's own loopback. Refused before connecting,
    // unless the manifest lists the range.
    let api = Inventory::start(None);
    let tree = Tree::new();
    let url = format!("http://localhost:{}", api.port);
    let allow = format!("localhost:{}", api.port);
    inventory_generator(&tree, "rebound", &url, &allow, "");
    inventory_generator(
        &tree,
        "listed",
        &url,
        &allow,
        "private_networks = [\"127.0.0.0/8\", \"::1\"]\n",
    );
    let serve = Httpsd::serve(tree.root(), &[]);

    let err = cached_error(serve.port, "/targets/rebound");
    assert_ne!(
        err["error_type"], "HttpDeniedError",
        "the allow-list let it through: {err}"
    );
    let d = get(serve.port, "/targets/rebound?debug=true")
        .unwrap()
        .json();
    let logs = d["debug_info"]["last_run"]["generators"][0]["logs"].to_string();
    assert!(logs.contains("resolves to"), "{logs}");
    assert!(logs.contains("private_networks"), "{logs}");
    assert!(api.seen().is_empty(), "{:?}", api.seen());

    assert_eq!(targets(serve.port, "/targets/listed"), expected_groups());
    assert!(!api.seen().is_empty());
}

#[test]
fn a_slow_inventory_ends_in_a_timeout_with_the_guest_traceback() {
    let api = Inventory::start(None);
    let tree = Tree::new();
    let allow = format!("127.0.0.1:{}", api.port);
    inventory_generator(
        &tree,
        "slow",
        &format!("{}/slow", api.url()),
        &allow,
        "\n[limits]\ntimeout = \"1s\"\n",
    );
    // A response larger than the manifest allows is refused, not read into memory.
    inventory_generator(
        &tree,
        "big",
        &format!("{}/big", api.url()),
        &allow,
        "max_response_bytes = \"1MiB\"\n",
    );
    let serve = Httpsd::serve(tree.root(), &[]);

    let err = cached_error(serve.port, "/targets/slow");
    assert_eq!(err["error_type"], "TimeoutError", "{err}");
    assert!(
        err["error_message"]
            .as_str()
            .unwrap()
            .contains("wall clock 1s"),
        "{err}"
    );
    let tb = err["traceback"].as_str().unwrap();
    // The request's wait was cut at the deadline and the guest stopped in wasm, in the
    // SDK's HTTP client called from the generator: frames, not the last-resort timeout
    // that drops a run stuck in a host call.
    assert!(tb.contains("generate"), "{tb}");
    assert!(tb.contains("http"), "{tb}");
    assert!(!tb.contains("no wasm frames"), "{tb}");

    let err = cached_error(serve.port, "/targets/big");
    assert_eq!(err["error_type"], "GeneratorError", "{err}");
    assert!(
        err["error_message"]
            .as_str()
            .unwrap()
            .contains("response body too large"),
        "{err}"
    );
}

#[test]
fn secrets_reach_the_generator_and_nothing_else() {
    const TOKEN: &str = "s3cr3t-inventory-token-7f9a";
    let api = Inventory::start(Some(TOKEN));
    let redis = RedisServer::start();
    let tree = Tree::new();
    let secret_file = tree.file("_secrets/token", &format!("{TOKEN}\n"));
    let secrets = format!(
        "\n[secrets]\ntoken = {{ file = \"{}\" }}\n",
        secret_file.display()
    );
    let allow = format!("127.0.0.1:{}", api.port);
    // Succeeds only with the token; the inventory checks it.
    inventory_generator(&tree, "good", &api.url(), &allow, &secrets);
    // The inventory answers 403 and repeats the Authorization header, so the token is
    // in the generator's error message.
    inventory_generator(
        &tree,
        "echo",
        &format!("{}/echo", api.url()),
        &allow,
        &secrets,
    );
    // A generator that logs, prints and returns its secret.
    tree.wasm("leaky/leaky.wasm", "fixture-leaky-secret");
    tree.file("leaky/leaky.toml", &secrets);
    let server = Httpsd::server(tree.root(), &redis.url(), &[]);
    let worker = Httpsd::worker(tree.root(), &redis.url(), &[]);

    assert_eq!(targets(server.port, "/targets/good"), expected_groups());
    let bearer = format!("Bearer {TOKEN}");
    assert!(
        api.seen()
            .iter()
            .any(|s| s.authorization.as_deref() == Some(bearer.as_str())),
        "the generator sent the secret to the inventory"
    );
    assert_eq!(
        targets(server.port, "/targets/leaky?ok=1"),
        json!([{"targets": ["127.0.0.1:9100"], "labels": {}}])
    );

    let echo = cached_error(server.port, "/targets/echo");
    assert_eq!(echo["error_type"], "GeneratorError", "{echo}");
    assert!(
        echo["error_message"]
            .as_str()
            .unwrap()
            .contains("forbidden for authorization Bearer [secret]"),
        "{echo}"
    );
    let leaky = cached_error(server.port, "/targets/leaky");
    assert_eq!(
        leaky["error_message"],
        "cannot authenticate with token [secret]"
    );

    // Everything the runs left behind, searched for the token.
    let mut everywhere = vec![("server log", server.logs()), ("worker log", worker.logs())];
    for path in [
        "/targets/good",
        "/targets/echo",
        "/targets/leaky",
        "/targets/leaky?ok=1",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let debug = get(server.port, &format!("{path}{sep}debug=true")).unwrap();
        everywhere.push(("debug", debug.text()));
    }
    let admin = get(server.port, "/").unwrap();
    everywhere.push(("admin page", admin.text()));
    let keys: Vec<String> = redis.cmd(&["KEYS", "*"]);
    for key in &keys {
        let kind: String = redis.cmd(&["TYPE", key]);
        let value = match kind.as_str() {
            "string" => redis.get(key).unwrap_or_default(),
            "list" => redis
                .cmd::<Vec<String>>(&["LRANGE", key, "0", "-1"])
                .join("\n"),
            "hash" => redis.cmd::<Vec<String>>(&["HGETALL", key]).join("\n"),
            _ => String::new(),
        };
        everywhere.push(("redis", format!("{key} {value}")));
    }
    for (place, text) in &everywhere {
        assert!(
            !text.contains(TOKEN),
            "the secret leaked into the {place}: {text}"
        );
    }
    // The redactions really happened where the secret would have been.
    let leaky_debug = get(server.port, "/targets/leaky?ok=1&debug=true")
        .unwrap()
        .text();
    assert!(
        leaky_debug.contains("the token is [secret]"),
        "{leaky_debug}"
    );
    assert!(
        leaky_debug.contains("stdout: token=[secret]"),
        "{leaky_debug}"
    );
    assert!(
        keys.iter().any(|k| k == "error:/targets/leaky?"),
        "the error entry exists (and was searched): {keys:?}"
    );
}

#[test]
fn python_and_javascript_generators_fetch_from_the_inventory_too() {
    const TOKEN: &str = "py-js-token-51c2";
    let (python, javascript) = support::language_components();
    let api = Inventory::start(Some(TOKEN));
    let tree = Tree::new();
    let secret_file = tree.file("_secrets/token", TOKEN);
    let allowed = format!(
        "[config]\nurl = \"{}\"\n[http]\nallow = [\"127.0.0.1:{}\"]\n[secrets]\ntoken = {{ file = \"{}\" }}\n",
        api.url(),
        api.port,
        secret_file.display()
    );
    let refused = format!(
        "[config]\nurl = \"{}\"\n[http]\nallow = [\"127.0.0.1:{}\"]\n",
        api.url(),
        support::free_port()
    );
    for (lang, component) in [("py", python), ("js", javascript)] {
        tree.copy(&format!("{lang}/inventory.wasm"), component);
        tree.file(&format!("{lang}/inventory.toml"), &allowed);
        tree.copy(&format!("{lang}-denied/inventory.wasm"), component);
        tree.file(&format!("{lang}-denied/inventory.toml"), &refused);
    }
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let serve = Httpsd::serve(tree.root(), &["--cache-dir", cache_dir]);

    // The same groups as the Rust example, from the token-protected inventory: the
    // secret reached both guests, and the inventory saw it.
    for lang in ["py", "js"] {
        let got = eventually(240, &format!("the {lang} generator's targets"), || {
            let r = get(serve.port, &format!("/targets/{lang}")).ok()?;
            (r.status == 200).then(|| r.json())
        });
        assert_eq!(got, expected_groups(), "{lang}");
        let filtered = targets(serve.port, &format!("/targets/{lang}?dc=ams1&role=db"));
        assert_eq!(filtered.as_array().unwrap().len(), 2, "{lang}: {filtered}");
        let err = cached_error(serve.port, &format!("/targets/{lang}-denied"));
        assert_eq!(err["error_type"], "HttpDeniedError", "{lang}: {err}");
    }
    let authorized = api
        .seen()
        .iter()
        .filter(|s| s.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")))
        .count();
    assert!(authorized >= 4, "{:?}", api.seen());

    // A second process on the same cache directory loads the tens-of-MB components
    // from their precompiled artifacts instead of compiling them again.
    drop(serve);
    let again = Httpsd::serve(tree.root(), &["--cache-dir", cache_dir]);
    for lang in ["py", "js"] {
        let path = format!("/targets/{lang}?dc=fra1");
        assert_eq!(targets(again.port, &path).as_array().unwrap().len(), 2);
        let d = get(again.port, &format!("{path}&debug=true"))
            .unwrap()
            .json();
        let run = &d["debug_info"]["last_run"]["generators"][0];
        assert_eq!(run["origin"], "artifact", "{lang}: {d}");
        assert!(!d.to_string().contains(TOKEN), "{lang}: {d}");
    }
}

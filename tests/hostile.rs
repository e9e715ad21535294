//! Hostile URLs against a real `httpsd server` on a real Redis: traversal in every
//! encoding, symlinks out of the root, NUL and control bytes, hidden and `_` paths,
//! oversized paths and queries, too many parameters, invalid UTF-8. Each must get a
//! 4xx, none may read outside the root, and none may create a Redis key or a job.

mod support;

use support::http::get_raw;
use support::{Httpsd, RedisServer, Tree, eventually, get};

/// Request targets a hostile client might send, as raw bytes.
fn hostile_targets() -> Vec<Vec<u8>> {
    let mut t: Vec<Vec<u8>> = [
        // Traversal, plain and encoded.
        "/targets/..",
        "/targets/../etc/passwd",
        "/targets/nodes/../..",
        "/targets/%2e%2e",
        "/targets/%2E%2E/%2E%2E/etc/passwd",
        "/targets/.%2e",
        "/targets/%2e.",
        "/targets/nodes/..%2f..%2fetc",
        "/targets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/targets/..%5c..%5cetc",
        "/targets/%5c..%5c..",
        "/targets/%252e%252e",
        "/targets/%252e%252e%252fetc",
        "/targets/%c0%ae%c0%ae",
        "/targets/%c0%af",
        "/targets/%e0%80%ae%e0%80%ae",
        "/targets//etc/passwd",
        "/targets/nodes/./../../etc",
        "/targets/%2fetc%2fpasswd",
        "/targets/nodes%2f..%2f..%2f..%2fetc",
        // Symlinks out of the root (a directory and a file).
        "/targets/escape",
        "/targets/escape/targets",
        "/targets/leak",
        // NUL and control bytes.
        "/targets/%00",
        // A decoded `?` would split the cache key in the wrong place (found by fuzzing).
        "/targets/nodes%3Fx",
        "/targets/nodes%00",
        "/targets/nodes%00.wasm",
        "/targets/nodes?env=%00",
        "/targets/nodes?%00=x",
        "/targets/nodes%0d%0aSet-Cookie:%20x",
        "/targets/nodes?x=%0d%0aSet-Cookie:%20y",
        // Hidden and underscore paths.
        "/targets/_lib",
        "/targets/_lib/helper",
        "/targets/.hidden",
        "/targets/%2ehidden",
        "/targets/nodes/.hidden",
        "/targets/%5flib",
        // Malformed escapes.
        "/targets/%",
        "/targets/%zz",
        "/targets/nodes?x=%",
        "/targets/nodes?x=%g1",
        // Unknown paths (a plain 404, still no job).
        "/targets/does-not-exist",
        "/targets/nodes/static-nodes.wasm/more",
        // Reload and debug on all of the above kinds.
        "/targets/..?reload=true",
        "/targets/%2e%2e?debug=true",
        "/targets/_lib?reload=true",
        "/targets/.hidden?debug=true",
        "/targets/does-not-exist?reload=true",
        "/targets/escape?reload=true",
        "/targets/%00?reload=true",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // Oversized path and query, too many parameters.
    t.push(format!("/targets/{}", "a".repeat(10_000)).into_bytes());
    t.push(format!("/targets/{}", "a/".repeat(2_000)).into_bytes());
    t.push(format!("/targets/nodes?q={}", "x".repeat(5_000)).into_bytes());
    t.push(format!("/targets/nodes?{}", "k=v&".repeat(100)).into_bytes());
    t.push(format!("/targets/nodes?reload=true&{}", "k=v&".repeat(100)).into_bytes());
    // Invalid UTF-8, raw and escaped.
    t.push(b"/targets/\xff\xfe".to_vec());
    t.push(b"/targets/nodes?x=\xff".to_vec());
    t.push(b"/targets/%ff%fe".to_vec());
    t.push(b"/targets/nodes?x=%ff".to_vec());
    t.push(b"/targets/nodes?%c3=1".to_vec());
    // Raw backslashes and spaces.
    t.push(b"/targets/..\\..\\etc".to_vec());
    t
}

#[test]
fn hostile_urls_are_refused_without_reading_outside_or_creating_keys() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    tree.wasm("nodes/static-nodes.wasm", "static-nodes");
    tree.file(
        "_lib/helper.json",
        r#"[{"targets": ["7.7.7.7:1"], "labels": {}}]"#,
    );
    tree.file(
        ".hidden/secret.json",
        r#"[{"targets": ["8.8.8.8:1"], "labels": {}}]"#,
    );
    // A directory and a file outside the root, reachable only through symlinks.
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("targets")).unwrap();
    let outside_file = outside.path().join("targets/leak.json");
    std::fs::write(
        &outside_file,
        r#"[{"targets": ["6.6.6.6:9100"], "labels": {}}]"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), tree.path("escape")).unwrap();
    std::os::unix::fs::symlink(&outside_file, tree.path("leak.json")).unwrap();

    let server = Httpsd::server(tree.root(), &redis.url(), &[]);
    let keys_before: i64 = redis.cmd(&["DBSIZE"]);
    assert_eq!(keys_before, 0);

    let targets = hostile_targets();
    let mut by_us = 0;
    for target in &targets {
        let shown = String::from_utf8_lossy(&target[..target.len().min(80)]).into_owned();
        let r = get_raw(server.port, target).unwrap_or_else(|e| panic!("{shown}: no answer: {e}"));
        assert!(
            (400..500).contains(&r.status),
            "{shown}: answered {} {}",
            r.status,
            r.text()
        );
        // httpsd's own refusals are JSON with an error; a request hyper's parser
        // refuses before routing (a raw byte it does not allow in a URI) gets its bare
        // 400, which is as harmless.
        if !r.body.is_empty() {
            let body = r.json();
            assert!(body["error"].is_string(), "{shown}: {body}");
            assert_eq!(
                r.header("content-type"),
                Some("application/json"),
                "{shown}"
            );
            by_us += 1;
        }
        let keys: Vec<String> = redis.cmd(&["KEYS", "*"]);
        assert!(keys.is_empty(), "{shown} created {keys:?}");
    }
    eprintln!(
        "{} hostile URLs: all refused with a 4xx ({by_us} by httpsd with a JSON error, {} by the HTTP parser), 0 Redis keys",
        targets.len(),
        targets.len() - by_us
    );
    assert!(by_us >= targets.len() - 5, "most refusals are httpsd's own");
    // The server is still fine.
    assert_eq!(get(server.port, "/healthz").unwrap().status, 200);

    // With a worker, the whole tree answers without what lies outside the root or in
    // hidden and `_` paths.
    let _worker = Httpsd::worker(tree.root(), &redis.url(), &[]);
    let body = eventually(60, "the root to answer", || {
        let r = get(server.port, "/targets").ok()?;
        (r.status == 200).then(|| r.text())
    });
    assert!(body.contains("10.1.1.11:9100"), "{body}");
    for absent in ["6.6.6.6", "7.7.7.7", "8.8.8.8"] {
        assert!(!body.contains(absent), "{absent} leaked into {body}");
    }
}

/// Reads until the server closes the connection (EOF or reset) and returns what came,
/// or `None` if it is still open after `secs`.
fn read_until_closed(stream: &mut std::net::TcpStream, secs: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(secs)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(got),
            Err(_) => return None,
        }
    }
}

#[test]
fn slow_and_idle_clients_cannot_hold_the_connection_slots() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let tree = Tree::new();
    tree.wasm("nodes/static-nodes.wasm", "static-nodes");
    // An answer of about 8 MB (one label value), so a client that does not read it
    // fills the socket buffers.
    let big = format!(
        r#"[{{"targets": ["10.9.9.9:9100"], "labels": {{"blob": "{}"}}}}]"#,
        "x".repeat(8 << 20)
    );
    tree.file("big/blob.json", &big);
    let server = Httpsd::serve(
        tree.root(),
        &[
            "--connection-limit",
            "4",
            "--header-timeout",
            "1s",
            "--write-timeout",
            "1s",
            "--wait-on-miss",
            "20s",
        ],
    );
    let port = server.port;
    assert_eq!(get(port, "/targets/nodes").unwrap().status, 200);
    assert_eq!(get(port, "/targets/big").unwrap().status, 200);

    // Every slot taken by a client that never finishes a request: two silent ones and
    // two that trickle a header a byte at a time (slowloris).
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let trickling: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let _ = s.write_all(b"GET /targets/nodes HTTP/1.1\r\nHost: x\r\nX-Slow: ");
                for _ in 0..100 {
                    std::thread::sleep(Duration::from_millis(100));
                    if s.write_all(b"a").is_err() {
                        break;
                    }
                }
                read_until_closed(&mut s, 10)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // A real client gets its answer once the server has closed them, not never.
    let r = get(port, "/targets/nodes").unwrap();
    let waited = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    for s in &mut silent {
        assert!(
            read_until_closed(s, 10).is_some(),
            "a silent client was closed"
        );
    }
    for t in trickling {
        let got = t.join().unwrap();
        let got = got.expect("a trickling client was closed");
        // Closed with an answer or without, but never served the targets.
        assert!(!String::from_utf8_lossy(&got).contains("10.1.1.11"));
    }

    // A keep-alive connection left idle after a request is closed too.
    let mut keep = TcpStream::connect(("127.0.0.1", port)).unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let idle_started = Instant::now();
    let got = read_until_closed(&mut keep, 10).expect("the idle keep-alive connection was closed");
    let idle_closed = idle_started.elapsed();
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));

    // A client that asks for 8 MB answers and reads none: its writes stall, and the
    // connection is closed after --write-timeout instead of holding its slot.
    let hogs: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let request = b"GET /targets/big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(8);
            s.write_all(&request).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let hogged = Instant::now();
    let r = get(port, "/targets/nodes").unwrap();
    let hog_wait = hogged.elapsed();
    assert_eq!(r.status, 200);
    // A hog accepted only when another's slot came free starts stalling later; by now
    // every one has stalled for longer than the timeout. Reading now must find each
    // closed, short of what it asked for (reading earlier would let the writes go on).
    std::thread::sleep(Duration::from_secs(4));
    for mut s in hogs {
        let got = read_until_closed(&mut s, 20).expect("a client that does not read was closed");
        assert!(
            got.len() < 8 * big.len(),
            "it was not sent everything it asked for"
        );
    }
    eprintln!(
        "SLOW CLIENTS: --connection-limit 4, --header-timeout 1s, --write-timeout 1s: with 2 silent and 2 \
         trickling clients holding every slot, a real request was answered after {:.2} s; an idle keep-alive \
         connection was closed after {:.2} s; with 4 clients not reading 8 MB answers, after {:.2} s",
        waited.as_secs_f64(),
        idle_closed.as_secs_f64(),
        hog_wait.as_secs_f64()
    );
}

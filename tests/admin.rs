//! The admin page in a real browser: headless Chromium driven through chromedriver
//! loads the page of a tree with a thousand paths, finds a path with the filter, follows
//! its debug link, presses its reload button, and sees the reload protection. Also
//! leaves a screenshot of the page with paths in different states (docs/admin-page.png
//! is one, taken with HTTPSD_ADMIN_SCREENSHOT=docs/admin-page.png).

mod support;

use support::browser::Browser;
use support::{Httpsd, Tree, eventually, get};

const BULK: usize = 1000;

fn tree() -> Tree {
    let t = Tree::new();
    t.wasm("nodes/static-nodes.wasm", "static-nodes");
    t.wasm("services/regional.wasm", "regional-services");
    t.wasm("inventory/cmdb.wasm", "fixture-returns-error");
    t.wasm("slow/wait.wasm", "fixture-sleep-loop");
    t.file("slow/wait.toml", "[limits]\ntimeout = \"20s\"\n");
    t.file(
        "legacy/hosts.json",
        r#"[{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"job": "legacy"}}]"#,
    );
    t.file("legacy/switches.yaml", "- targets: ['10.9.0.1:9116']\n");
    // A thousand more paths, sorted after the others: the page must stay usable.
    for i in 0..BULK {
        t.file(
            &format!("zz-bulk/app-{i:04}.json"),
            &format!(
                r#"[{{"targets": ["10.20.{}.{}:8080"], "labels": {{}}}}]"#,
                i / 250,
                i % 250
            ),
        );
    }
    t
}

/// The CSS selector of the row of `path`.
fn row(path: &str) -> String {
    format!("tr.path[data-path=\"{path}\"]")
}

/// The CSS selector of `what` in the row of `path`.
fn in_row(path: &str, what: &str) -> String {
    format!("{} {what}", row(path))
}

/// The CSS selector of `what` in the generators-and-history row under `path`.
fn in_detail(path: &str, what: &str) -> String {
    format!("tr.detail[data-path=\"{path}\"] {what}")
}

/// The state the page shows for `path` (its row's `data-state`).
fn state_of(browser: &Browser, path: &str) -> Option<String> {
    let found = browser.find(&row(path));
    browser.attribute(&found, "data-state")
}

#[test]
fn admin_page_in_headless_chromium() {
    let tree = tree();
    let serve = Httpsd::serve(
        tree.root(),
        &[
            "--wait-on-miss",
            "20s",
            "--cache-seconds",
            "600",
            "--reload-cooldown",
            "60s",
        ],
    );
    let base = format!("http://127.0.0.1:{}", serve.port);
    for path in [
        "/targets/nodes",
        "/targets/services?env=prod",
        "/targets/legacy",
    ] {
        assert_eq!(get(serve.port, path).unwrap().status, 200, "{path}");
    }
    assert_eq!(get(serve.port, "/targets/services").unwrap().status, 200);
    assert_eq!(get(serve.port, "/targets/inventory").unwrap().status, 503);
    eventually(30, "the inventory error", || {
        let d = get(serve.port, "/targets/inventory?debug=true")
            .ok()?
            .json();
        d["debug_info"]["error_details"].is_object().then_some(())
    });

    let browser = Browser::start();
    browser.goto(&format!("{base}/"));
    let text = browser.body_text();
    // The root, six directories, six generator files, and zz-bulk with its thousand.
    let total = BULK + 13;
    assert!(
        text.contains(&format!("{total} paths")),
        "every path is counted: {}",
        &text[..text.len().min(400)]
    );
    assert!(text.contains("page 1 of 11"), "paged");
    // The thousand paths do not all go to the browser at once.
    assert!(
        browser
            .try_find(&row("/targets/zz-bulk/app-0999"))
            .is_none()
    );

    // Find a path with the filter.
    let input = browser.find("form#filter input[name=filter]");
    browser.type_into(&input, "app-0999");
    browser.click(&browser.find("form#filter button"));
    eventually(10, "the filtered page", || {
        browser.url().contains("filter=app-0999").then_some(())
    });
    assert_eq!(
        state_of(&browser, "/targets/zz-bulk/app-0999").as_deref(),
        Some("never")
    );
    assert!(browser.body_text().contains("1 paths matching"));

    // The nodes path: fresh, 9 targets; its debug link shows the cached answer.
    browser.goto(&format!("{base}/?filter=nodes"));
    assert_eq!(
        state_of(&browser, "/targets/nodes").as_deref(),
        Some("fresh")
    );
    browser.click(&browser.find(&in_row("/targets/nodes", "a.debug")));
    let debug = browser.body_json();
    assert_eq!(debug["full_path"], "/targets/nodes?");
    assert!(
        debug["debug_info"]["normal_cache"]["results"].is_array(),
        "{debug}"
    );
    browser.back();

    // The error path's error type links to its debug answer.
    browser.goto(&format!("{base}/?filter=inventory"));
    assert_eq!(
        state_of(&browser, "/targets/inventory").as_deref(),
        Some("error")
    );
    browser.click(&browser.find(&in_row("/targets/inventory", "a.error-type")));
    let debug = browser.body_json();
    assert_eq!(
        debug["debug_info"]["error_details"]["error_type"],
        "GeneratorError"
    );

    // Press reload: the reload answer, then fresh targets from a new run.
    browser.goto(&format!("{base}/?filter=nodes"));
    let before =
        get(serve.port, "/targets/nodes?debug=true").unwrap().json()["debug_info"]["normal_cache"]
            ["updated_timestamp"]
            .clone();
    browser.click(&browser.find(&in_row("/targets/nodes", "form.reload button")));
    let answer = browser.body_json();
    assert_eq!(answer["status"], "reload_initiated", "{answer}");
    assert_eq!(answer["cache_cleared"], true);
    eventually(30, "the reloaded path to be fresh again", || {
        let d = get(serve.port, "/targets/nodes?debug=true").ok()?.json();
        let ts = &d["debug_info"]["normal_cache"]["updated_timestamp"];
        (ts.is_string() && *ts != before).then_some(())
    });
    // The reload protection: the button now waits out the cooldown, and the server
    // refuses a reload anyway.
    browser.goto(&format!("{base}/?filter=nodes"));
    let button = browser.find(&in_row("/targets/nodes", "form.reload button"));
    assert!(
        browser.attribute(&button, "disabled").is_some(),
        "the button is disabled"
    );
    let refused = get(serve.port, "/targets/nodes?reload=true").unwrap();
    assert_eq!(refused.status, 429);

    // A screenshot with paths in every state: fresh, error, never, running (the slow
    // generator runs for 20 s), stale (a changed generator).
    assert_eq!(get(serve.port, "/targets/slow").unwrap().status, 503);
    eventually(30, "the slow job to run", || {
        let d = get(serve.port, "/targets/slow?debug=true").ok()?.json();
        (d["status"] == "processing").then_some(())
    });
    browser.goto(&format!("{base}/"));
    assert_eq!(
        state_of(&browser, "/targets/slow").as_deref(),
        Some("running")
    );
    // Open one path's generators and run history.
    browser.click(&browser.find(&in_detail("/targets/nodes", "summary")));
    let generators = browser.find(&in_detail("/targets/nodes", "table.generators"));
    let shown = browser.text(&generators);
    assert!(
        shown.contains("nodes/static-nodes.wasm") && shown.contains("10000000000 · 10s"),
        "the generator and its limits, once opened: {shown}"
    );
    let png = browser.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
    let out = std::env::var_os("HTTPSD_ADMIN_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-page.png")
        });
    std::fs::write(&out, &png).expect("write the screenshot");
}

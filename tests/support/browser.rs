//! Headless Chromium (Debian's `chromium`), driven through chromedriver (Debian's
//! `chromium-driver`) with the W3C WebDriver protocol: a real browser loads the page,
//! follows links and presses buttons, as an operator would.

use super::{eventually, free_port, get, request};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Option<Child>,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session.
    pub fn start() -> Browser {
        let port = free_port();
        let driver =
            Command::new(std::env::var_os("CHROMEDRIVER").unwrap_or_else(|| "chromedriver".into()))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "start chromedriver (scripts/test installs Debian's chromium-driver): {e}"
                    )
                });
        eventually(30, "chromedriver to be ready", || {
            let r = get(port, "/status").ok()?;
            (r.json()["value"]["ready"] == true).then_some(())
        });
        let profile = tempfile::tempdir().expect("temp dir");
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        // Root in a container needs --no-sandbox; the network flags keep Chromium from
        // reaching for Google's services on a machine without internet.
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.path().display())],
            }
        }}});
        let mut browser = Browser {
            driver: Some(driver),
            port,
            session: String::new(),
            _profile: profile,
        };
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; panics with the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let r = request(self.port, method, path, body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let v = r.json();
        assert_eq!(r.status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.session_call("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn back(&self) {
        self.session_call("POST", "/back", Some(json!({})));
    }

    /// The page's text as rendered (for a JSON answer, the JSON). Retried while a
    /// navigation replaces the page under it (a stale element).
    pub fn body_text(&self) -> String {
        eventually(10, "the page's text", || {
            let body = self.try_find("body")?;
            let r = request(
                self.port,
                "GET",
                &format!("/session/{}/element/{}/text", self.session, body.0),
                None,
            )
            .ok()?;
            (r.status == 200).then(|| r.json()["value"].as_str().unwrap_or("").to_string())
        })
    }

    /// The page's text as JSON, once the page shows JSON (after a click that
    /// navigates to a JSON answer).
    pub fn body_json(&self) -> Value {
        eventually(10, "a JSON page", || {
            serde_json::from_str(&self.body_text()).ok()
        })
    }

    /// An element's text as rendered: empty while it is hidden.
    pub fn text(&self, e: &Element) -> String {
        self.session_call("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn find(&self, css: &str) -> Element {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element matches {css:?} on {}", self.url()))
    }

    pub fn try_find(&self, css: &str) -> Option<Element> {
        let r = request(
            self.port,
            "POST",
            &format!("/session/{}/element", self.session),
            Some(&json!({"using": "css selector", "value": css}).to_string()),
        )
        .ok()?;
        (r.status == 200)
            .then(|| r.json()["value"][ELEMENT].as_str().map(str::to_string))
            .flatten()
            .map(Element)
    }

    pub fn click(&self, e: &Element) {
        self.session_call("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    pub fn type_into(&self, e: &Element, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        );
    }

    pub fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        self.session_call("GET", &format!("/element/{}/attribute/{name}", e.0), None)
            .as_str()
            .map(str::to_string)
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.session_call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("WebDriver screenshots are base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        if let Some(mut d) = self.driver.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

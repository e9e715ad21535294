//! Outbound HTTP from a generator: ask an inventory for its hosts.
//!
//! httpsd lets a generator reach only the hosts its manifest lists; anything else is
//! refused before a connection is made, and the error says so:
//!
//! ```toml
//! [http]
//! allow = ["inventory.internal:8080"]   # host, host:port, host:*, *.domain
//! ```
//!
//! ```no_run
//! use generator_sdk::{http, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct Host { address: String }
//!
//! fn hosts() -> Result<Vec<Host>> {
//!     http::get_json("http://inventory.internal:8080/hosts")
//! }
//! ```
//!
//! Requests are blocking and count against the run's wall-clock limit: a request still
//! waiting when the limit runs out ends the run with a `TimeoutError`. Response bodies
//! are capped by the manifest's `max_response_bytes`.

use crate::{Error, Result};
use std::time::Duration;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// GETs `url` and decodes its JSON body; any status other than 2xx is an error that
/// shows the status and the start of the body.
pub fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<T> {
    get(url).header("accept", "application/json").send()?.json()
}

/// A GET request to build on: headers, a bearer token, a timeout. [`Request::send`]
/// sends it.
pub fn get(url: &str) -> Request {
    Request::new("GET", url)
}

/// A POST request with a body.
pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Request {
    let mut r = Request::new("POST", url);
    r.body = body.into();
    r
}

/// An HTTP request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

/// A response, its body read in full.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    url: String,
}

impl Request {
    fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// Adds a header (a name may repeat).
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Request {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// `Authorization: Bearer <token>`, typically a secret from the manifest:
    /// `http::get(url).bearer(&config::secret("token")?)`.
    pub fn bearer(self, token: &str) -> Request {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Limits the wait to connect, for the first byte and between body chunks. The
    /// run's own wall-clock limit applies in any case.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response> {
        let url = Url::parse(&self.url)?;
        let fail = |what: &str| Error::msg(format!("{} {}: {what}", self.method, self.url));

        let headers = Fields::new();
        for (name, value) in &self.headers {
            headers
                .append(name, value)
                .map_err(|e| fail(&format!("header {name:?}: {e:?}")))?;
        }
        let request = OutgoingRequest::new(headers);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            other => Method::Other(other.to_string()),
        };
        let set = |ok: std::result::Result<(), ()>, what: &str| ok.map_err(|()| fail(what));
        set(request.set_method(&method), "bad method")?;
        set(request.set_scheme(Some(&url.scheme)), "bad scheme")?;
        set(request.set_authority(Some(&url.authority)), "bad host")?;
        set(request.set_path_with_query(Some(&url.path)), "bad path")?;

        let options = self.timeout.map(|t| {
            let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            let options = RequestOptions::new();
            // Refusals only mean "not supported"; the host's own limits still apply.
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            let _ = options.set_between_bytes_timeout(Some(nanos));
            options
        });
        let outgoing = request.body().map_err(|()| fail("no request body"))?;
        if !self.body.is_empty() {
            let stream = outgoing.write().map_err(|()| fail("no body stream"))?;
            for chunk in self.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| fail(&format!("writing the body: {e:?}")))?;
            }
            drop(stream);
        }
        let pending = outgoing_handler::handle(request, options)
            .map_err(|code| fail(&describe(&code, &url.authority)))?;
        OutgoingBody::finish(outgoing, None)
            .map_err(|code| fail(&describe(&code, &url.authority)))?;

        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(fail(&describe(&code, &url.authority))),
            Some(Err(())) | None => return Err(fail("no response")),
        };
        let status = response.status();
        let headers = response.headers().entries();
        let body = response.consume().map_err(|()| fail("no response body"))?;
        let bytes = read_body(&body).map_err(|e| fail(&e))?;
        let _ = IncomingBody::finish(body);
        Ok(Response {
            status,
            headers,
            body: bytes,
            url: self.url,
        })
    }
}

fn read_body(body: &IncomingBody) -> std::result::Result<Vec<u8>, String> {
    let stream = body.stream().map_err(|()| "no body stream".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                let detail = match wasip2::http::types::http_error_code(&e) {
                    Some(code) => describe(&code, ""),
                    None => e.to_debug_string(),
                };
                return Err(format!("reading the response body: {detail}"));
            }
        }
    }
    Ok(bytes)
}

/// The error codes a generator author will meet, in words.
fn describe(code: &ErrorCode, authority: &str) -> String {
    match code {
        ErrorCode::HttpRequestDenied => format!(
            "denied by httpsd: {authority} is not in the [http] allow list of this generator's manifest"
        ),
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTimeout => "timed out connecting".into(),
        ErrorCode::ConnectionReadTimeout => "timed out waiting for data".into(),
        ErrorCode::DnsError(e) => format!(
            "cannot resolve the host name ({})",
            e.rcode.clone().unwrap_or_default()
        ),
        ErrorCode::HttpResponseBodySize(n) => format!(
            "response body too large{} (the manifest's [http] max_response_bytes)",
            n.map(|n| format!(": {n} bytes")).unwrap_or_default()
        ),
        ErrorCode::TlsCertificateError => "TLS certificate not trusted".into(),
        other => format!("{other:?}"),
    }
}

impl Response {
    /// The first value of header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::msg(format!("{}: body is not UTF-8: {e}", self.url)))
    }

    /// Fails unless the status is 2xx, with the status and the start of the body.
    pub fn error_for_status(self) -> Result<Response> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let body = String::from_utf8_lossy(&self.body);
        let start: String = body.chars().take(200).collect();
        Err(Error::msg(format!(
            "{} answered {}: {start}",
            self.url, self.status
        )))
    }

    /// Decodes a 2xx body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let ok = self.error_for_status()?;
        serde_json::from_slice(&ok.body)
            .map_err(|e| Error::msg(format!("{}: invalid JSON: {e}", ok.url)))
    }
}

/// The parts of a URL wasi:http wants.
struct Url {
    scheme: Scheme,
    authority: String,
    path: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url> {
        let bad = || Error::msg(format!("not an http(s) URL: {url:?}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(bad()),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(Url {
            scheme,
            authority: authority.to_string(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let u = Url::parse("http://inventory:8080/hosts?dc=1").unwrap();
        assert!(matches!(u.scheme, Scheme::Http));
        assert_eq!(u.authority, "inventory:8080");
        assert_eq!(u.path, "/hosts?dc=1");
        let u = Url::parse("HTTPS://api.example.com").unwrap();
        assert!(matches!(u.scheme, Scheme::Https));
        assert_eq!(u.path, "/");
        assert_eq!(Url::parse("https://x?a=b").unwrap().path, "/?a=b");
        for bad in ["ftp://x/", "inventory/hosts", "http:///x", "http://user@x/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}

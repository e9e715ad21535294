//! Outbound HTTP for generators: `wasi:http/outgoing-handler`, behind an allow-list.
//!
//! Every generator gets the wasi:http imports linked (a JavaScript component imports
//! them whether or not it calls `fetch`), and every request passes through
//! [`HttpPolicy::send_request`] first. A request goes out only when its host and port
//! are in the generator's own `[http] allow` list; otherwise the guest gets wasi:http's
//! `HTTP-request-denied` error code and the run log says which host was refused and why.
//!
//! A request is part of the run: its connect, first-byte and between-bytes timeouts
//! are cut to the run's wall-clock deadline (plus a little, so that the guest, when it
//! gets control back, hits the epoch deadline and stops with a `TimeoutError` and its
//! traceback, rather than treating a timeout as an ordinary error). A response body is
//! capped at `max_response_bytes`, checked against `Content-Length` up front and counted
//! while it streams. A run has at most `max_connections` open and makes at most
//! `max_requests`; the process shares `--max-outbound-connections`. The connection
//! itself (where a name may lead, TLS) is [`connect`]'s.

pub mod connect;

use super::RunState;
use super::log::{GuestLog, LogLevel, RunLog};
use crate::runtime::engine::EPOCH_TICK;
use crate::runtime::limits::SizeOrText;
use connect::{IoFuture, Network};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Linker;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Largest response body by default: an inventory answer for a very large fleet.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;

/// The longest a request may wait to connect, for its first byte, or between two body
/// chunks, whatever the guest asks for (the run's deadline usually comes first).
const MAX_WAIT: Duration = Duration::from_secs(30);

/// How long past the run's deadline a request may still wait: long enough that the
/// epoch deadline (which trails the wall-clock one by up to two ticks) has passed when
/// the guest resumes, so it stops with a traceback.
const DEADLINE_GRACE: Duration = EPOCH_TICK.saturating_mul(3);

/// Connections one run may have open at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// Requests one run may make in all, by default.
pub const DEFAULT_MAX_REQUESTS: u32 = 1000;

/// The `[http]` table of a manifest, as written.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// `host`, `host:port`, `host:*`, `*.domain[:port]`, `[v6]:port`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Largest response body (`"16MiB"` or bytes); default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: Option<SizeOrText>,
    /// Connections open at once in one run (more wait for one to close).
    pub max_connections: Option<u32>,
    /// Requests in all in one run (more are refused).
    pub max_requests: Option<u32>,
    /// Address ranges (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`) that an allowed *name* may
    /// resolve to. Without them a name must lead to public addresses: a generator's
    /// author controls its names' DNS, and could point one at the worker's own
    /// services. An allowed address literal needs no entry here.
    #[serde(default)]
    pub private_networks: Vec<String>,
}

/// What a generator may reach, parsed from its manifest once per load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    allow: Vec<Allowed>,
    /// Largest response body in bytes, checked against `Content-Length` and as it streams.
    pub max_response_bytes: u64,
    /// Connections one run may have open at once; more wait for one to close.
    pub max_connections: u32,
    /// Requests one run may attempt in all (denied ones count too); the rest are refused.
    pub max_requests: u32,
    /// Ranges an allowed name may resolve into besides public addresses.
    pub private_networks: Vec<Network>,
}

impl Default for HttpGrant {
    /// No manifest, no `[http]`: nothing is reachable.
    fn default() -> Self {
        HttpGrant {
            allow: Vec::new(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_requests: DEFAULT_MAX_REQUESTS,
            private_networks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Lower-cased; IPv6 addresses keep their brackets, as URIs write them.
    Exact(String),
    /// `*.example.com` is stored as `.example.com`: any name below it, not itself.
    Below(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    /// No port written: the scheme's own (80 for http, 443 for https).
    SchemeDefault,
    Any,
    Exactly(u16),
}

impl HttpGrant {
    /// Parses a manifest's `[http]` table; the error names the entry at fault.
    pub fn from_section(section: &HttpSection) -> Result<HttpGrant, String> {
        let allow = section
            .allow
            .iter()
            .map(|entry| parse_allowed(entry).map_err(|e| format!("http.allow {entry:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let max_response_bytes = match &section.max_response_bytes {
            Some(v) => v
                .size()
                .map_err(|e| format!("http.max_response_bytes: {e}"))?,
            None => DEFAULT_MAX_RESPONSE_BYTES,
        };
        let private_networks = section
            .private_networks
            .iter()
            .map(|n| Network::parse(n).map_err(|e| format!("http.private_networks {n:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let positive = |name: &str, v: Option<u32>, default: u32| match v {
            Some(0) => Err(format!("http.{name} must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        Ok(HttpGrant {
            allow,
            max_response_bytes,
            max_connections: positive(
                "max_connections",
                section.max_connections,
                DEFAULT_MAX_CONNECTIONS,
            )?,
            max_requests: positive("max_requests", section.max_requests, DEFAULT_MAX_REQUESTS)?,
            private_networks,
        })
    }

    /// Whether a request to `uri` may go out.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        let host = authority.host().to_ascii_lowercase();
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        let port = authority.port_u16().unwrap_or(default_port);
        self.allow.iter().any(|a| {
            let host_ok = match &a.host {
                HostPattern::Exact(h) => *h == host,
                HostPattern::Below(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            };
            let port_ok = match a.port {
                PortPattern::SchemeDefault => port == default_port,
                PortPattern::Any => true,
                PortPattern::Exactly(p) => p == port,
            };
            host_ok && port_ok
        })
    }
}

fn parse_allowed(entry: &str) -> Result<Allowed, String> {
    let entry = entry.trim();
    if entry.contains("://") || entry.contains('/') {
        return Err("write a host or host:port, without a scheme or a path".into());
    }
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected :port after ]")?),
        };
        (format!("[{v6}]"), port)
    } else {
        match entry.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (entry.to_string(), None),
        }
    };
    let port = match port {
        None => PortPattern::SchemeDefault,
        Some("*") => PortPattern::Any,
        Some(p) => PortPattern::Exactly(
            p.parse()
                .map_err(|_| format!("{p:?} is not a port (1-65535 or *)"))?,
        ),
    };
    let host = host.to_ascii_lowercase();
    let valid = |h: &str| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    let host = if let Some(domain) = host.strip_prefix("*.") {
        if !valid(domain) {
            return Err(format!("{domain:?} is not a host name"));
        }
        HostPattern::Below(format!(".{domain}"))
    } else if host.starts_with('[') || valid(&host) {
        HostPattern::Exact(host)
    } else {
        return Err(format!(
            "{host:?} is not a host name (a wildcard is only allowed as a leading *.)"
        ));
    };
    Ok(Allowed { host, port })
}

/// The outbound HTTP capability's per-run state: wasi:http's context (its header
/// fields capped at [`crate::runtime::limits::MAX_HTTP_FIELDS_BYTES`]) and the policy
/// every request passes through.
pub struct OutboundHttp {
    ctx: WasiHttpCtx,
    policy: HttpPolicy,
}

impl OutboundHttp {
    /// One run's outbound HTTP under `grant`: every wait is cut to `deadline`, requests
    /// are noted in `log`'s run log, and `process` holds the process-wide connection
    /// slots (`--max-outbound-connections`).
    pub fn new(
        grant: Arc<HttpGrant>,
        deadline: Instant,
        log: &GuestLog,
        process: Arc<Semaphore>,
    ) -> Self {
        let mut ctx = WasiHttpCtx::new();
        ctx.set_field_size_limit(crate::runtime::limits::MAX_HTTP_FIELDS_BYTES);
        OutboundHttp {
            ctx,
            policy: HttpPolicy::new(grant, deadline, log.shared(), process),
        }
    }

    /// The first HTTP request the allow-list refused in this run, if any.
    pub fn denied(&self) -> Option<&str> {
        self.policy.denied.as_deref()
    }

    /// Outbound HTTP requests made so far.
    pub fn requests(&self) -> u32 {
        self.policy.requests()
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.policy,
        }
    }
}

/// Every generator gets wasi:http (a JavaScript component imports it whether or not it
/// calls `fetch`); the policy refuses what its manifest does not allow.
pub fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}

/// One run's view of its grant: the allow-list, the deadline every wait is cut to,
/// the connection caps, and the run log that records each request.
pub struct HttpPolicy {
    grant: Arc<HttpGrant>,
    deadline: Instant,
    log: Arc<Mutex<RunLog>>,
    /// This run's open connections ([`HttpGrant::max_connections`]).
    connections: Arc<Semaphore>,
    /// The process's open outbound connections (`--max-outbound-connections`).
    process: Arc<Semaphore>,
    /// Requests made so far ([`HttpGrant::max_requests`]).
    requests: u32,
    /// The first request refused, as `METHOD url`: if the run then fails, this is why.
    pub denied: Option<String>,
}

impl HttpPolicy {
    /// A policy with no request made yet; `process` is the process-wide connection
    /// slots, shared by every run.
    pub fn new(
        grant: Arc<HttpGrant>,
        deadline: Instant,
        log: Arc<Mutex<RunLog>>,
        process: Arc<Semaphore>,
    ) -> Self {
        HttpPolicy {
            connections: Arc::new(Semaphore::new(grant.max_connections as usize)),
            grant,
            deadline,
            log,
            process,
            requests: 0,
            denied: None,
        }
    }

    /// Requests made so far in this run (refused ones included).
    pub fn requests(&self) -> u32 {
        self.requests
    }

    fn note(log: &Mutex<RunLog>, level: LogLevel, message: String) {
        crate::sync::lock(log).push(level, &message);
    }
}

type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

impl WasiHttpHooks for HttpPolicy {
    /// Every outgoing request of the guest: admitted or refused here, then sent by
    /// [`Outgoing::send`].
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _default_io: IoFuture,
    ) -> SendFuture {
        let outgoing = Outgoing {
            method: request.method().clone(),
            uri: request.uri().clone(),
            log: self.log.clone(),
            deadline: self.deadline,
            grant: self.grant.clone(),
            run_slots: self.connections.clone(),
            process_slots: self.process.clone(),
            started: Instant::now(),
        };
        if let Err(refused) = self.admit(&outgoing) {
            return Box::new(async move { Err(refused) });
        }
        let waits = outgoing.waits(options);
        Box::new(outgoing.send(request, waits))
    }
}

impl HttpPolicy {
    /// Counts the request, and refuses it (with a note in the run log) when its host is
    /// not in the allow-list or the run has made `max_requests` already.
    fn admit(&mut self, out: &Outgoing) -> Result<(), HttpError> {
        let (method, uri) = (&out.method, &out.uri);
        self.requests = self.requests.saturating_add(1);
        if !self.grant.allows(uri) {
            let target = uri.authority().map_or("", |a| a.as_str());
            out.note(
                LogLevel::Warn,
                format!(
                    "http {method} {uri} denied: {target} is not in the [http] allow list of this generator's manifest"
                ),
            );
            self.denied.get_or_insert_with(|| format!("{method} {uri}"));
            return Err(HttpError::HttpRequestDenied);
        }
        if self.requests > self.grant.max_requests {
            out.note(
                LogLevel::Warn,
                format!(
                    "http {method} {uri} refused: this run already made {} requests ([http] max_requests)",
                    self.grant.max_requests
                ),
            );
            return Err(HttpError::ConnectionLimitReached);
        }
        Ok(())
    }
}

/// One admitted request on its way out: what it needs once the guest's call has
/// returned its future (the policy itself stays with the store).
struct Outgoing {
    method: http::Method,
    uri: http::Uri,
    log: Arc<Mutex<RunLog>>,
    deadline: Instant,
    grant: Arc<HttpGrant>,
    run_slots: Arc<Semaphore>,
    process_slots: Arc<Semaphore>,
    started: Instant,
}

impl Outgoing {
    /// What is left of the run, plus a little so the guest wakes past its deadline.
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now()) + DEADLINE_GRACE
    }

    /// The guest's timeouts (or [`MAX_WAIT`]), each cut to what is left of the run.
    fn waits(&self, options: Option<RequestOptions>) -> connect::Waits {
        let cut =
            |asked: Option<Duration>| asked.unwrap_or(MAX_WAIT).min(MAX_WAIT).min(self.left());
        connect::Waits {
            connect: cut(options.and_then(|o| o.connect_timeout)),
            first_byte: cut(options.and_then(|o| o.first_byte_timeout)),
            between_bytes: cut(options.and_then(|o| o.between_bytes_timeout)),
            max_body: self.grant.max_response_bytes,
        }
    }

    fn note(&self, level: LogLevel, message: String) {
        HttpPolicy::note(&self.log, level, message);
    }

    /// `e`, after a note of why the request failed.
    fn fail(&self, e: HttpError, why: &str) -> HttpError {
        self.note(
            LogLevel::Warn,
            format!(
                "http {} {} failed after {:.1} ms: {why}",
                self.method,
                self.uri,
                self.started.elapsed().as_secs_f64() * 1e3
            ),
        );
        e
    }

    /// A connection slot of the run and one of the process, waited for no longer than
    /// the run may wait; held until the connection closes.
    async fn slots(&self) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), HttpError> {
        let slots = async {
            let run = self.run_slots.clone().acquire_owned().await;
            let process = self.process_slots.clone().acquire_owned().await;
            (run, process)
        };
        match tokio::time::timeout(self.left(), slots).await {
            Ok((Ok(run), Ok(process))) => Ok((run, process)),
            _ => Err(self.fail(
                HttpError::ConnectionLimitReached,
                "no connection slot came free before the run's deadline ([http] max_connections, --max-outbound-connections)",
            )),
        }
    }

    /// Takes the slots, resolves and checks where the name leads, connects (TLS when
    /// asked) and sends; the response's declared length is checked against the cap.
    async fn send(
        self,
        request: http::Request<WasiBody>,
        waits: connect::Waits,
    ) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
        let permits = self.slots().await?;
        let (host, port, tls) = endpoint(&self.uri).ok_or(HttpError::HttpRequestUriInvalid)?;
        let addrs = connect::resolve(&host, port, &self.grant.private_networks, waits.connect)
            .await
            .map_err(|(e, why)| self.fail(e, &why))?;
        let waits = connect::Waits {
            connect: waits.connect.min(self.left()),
            ..waits
        };
        let tls_name = tls.then(|| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        });
        let (response, io) = connect::send(request, &addrs, tls_name.as_deref(), waits)
            .await
            .map_err(|e| {
                let why = e.to_string();
                self.fail(e, &why)
            })?;
        self.check_length(&response, waits.max_body)?;
        self.note(
            LogLevel::Info,
            format!(
                "http {} {} -> {} in {:.1} ms",
                self.method,
                self.uri,
                response.status().as_u16(),
                self.started.elapsed().as_secs_f64() * 1e3
            ),
        );
        // The slots go when the connection does (or when the run's store drops it).
        let io: IoFuture = Box::new(async move {
            let _permits = permits;
            Pin::from(io).await
        });
        Ok((response, io))
    }

    /// A response whose `Content-Length` is over the cap is refused before its body.
    fn check_length(&self, response: &http::Response<WasiBody>, cap: u64) -> Result<(), HttpError> {
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(len) if len > cap => {
                self.note(
                    LogLevel::Warn,
                    format!(
                        "http {} {}: response of {len} bytes refused (max_response_bytes is {cap})",
                        self.method, self.uri
                    ),
                );
                Err(HttpError::HttpResponseBodySize(Some(len)))
            }
            _ => Ok(()),
        }
    }
}

/// The host (lower-cased, IPv6 in brackets), port and whether TLS is used.
fn endpoint(uri: &http::Uri) -> Option<(String, u16, bool)> {
    let authority = uri.authority()?;
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Some((authority.host().to_ascii_lowercase(), port, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(allow: &[&str]) -> HttpGrant {
        HttpGrant::from_section(&HttpSection {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            ..HttpSection::default()
        })
        .unwrap()
    }

    fn allowed(g: &HttpGrant, url: &str) -> bool {
        g.allows(&url.parse().unwrap())
    }

    #[test]
    fn hosts_and_ports_match_as_written() {
        let g = grant(&[
            "Inventory.internal",
            "127.0.0.1:8080",
            "*.svc.local:*",
            "[::1]:9000",
        ]);
        assert!(allowed(&g, "http://inventory.internal/hosts"));
        assert!(allowed(&g, "https://INVENTORY.internal/hosts"));
        assert!(
            !allowed(&g, "http://inventory.internal:8080/"),
            "no port = the scheme's own"
        );
        assert!(allowed(&g, "http://127.0.0.1:8080/x"));
        assert!(!allowed(&g, "http://127.0.0.1:8081/x"));
        assert!(!allowed(&g, "http://127.0.0.1/x"));
        assert!(allowed(&g, "http://a.b.svc.local:1234/"));
        assert!(
            !allowed(&g, "http://svc.local/"),
            "a wildcard is for names below"
        );
        assert!(!allowed(&g, "http://evilsvc.local/"));
        assert!(allowed(&g, "http://[::1]:9000/"));
        assert!(!allowed(&g, "http://inventory.internal.evil.com/"));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!allowed(&HttpGrant::default(), "http://127.0.0.1/"));
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        for bad in [
            "http://x.com",
            "x.com/path",
            "x.com:http",
            "*x.com",
            "a*.x.com",
            "[::1",
            "",
        ] {
            let err = HttpGrant::from_section(&HttpSection {
                allow: vec![bad.to_string()],
                ..HttpSection::default()
            })
            .unwrap_err();
            assert!(err.contains("http.allow"), "{bad}: {err}");
        }
    }
}

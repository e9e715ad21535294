//! Opening the connection of a generator's outbound HTTP request, once the allow-list
//! has let it through ([`super`]): resolve the name, check where it points,
//! connect to the address that was checked, TLS, and hand the request to hyper.
//!
//! Why not wasmtime-wasi-http's own sender: it resolves the name itself when it
//! connects, so a name on the allow-list could resolve to 127.0.0.1 or to a private
//! address (DNS rebinding: the generator's author controls the name's DNS) and reach
//! the worker's own services; and its TLS handshake has no timeout of its own, so a
//! server that accepts and never answers held the guest past its deadline, and the run
//! ended by the last-resort timeout without the guest's frames. Here every step is cut
//! to the run's deadline and the connection goes to the address that was checked.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// The future that drives a connection after the response head arrived.
pub type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// An address range, `10.0.0.0/8` or `fd00::/8` (a plain address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `addr` or `addr/prefix` (IPv6 optionally in brackets); the error says
    /// which part is wrong, for the manifest's error message.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{p:?} is not a prefix length (0-{max})"))?,
        };
        Ok(Network { addr, prefix })
    }

    /// Whether `ip` is in the range; an IPv4 address carried in IPv6 (`::ffff:a.b.c.d`,
    /// NAT64) counts as that IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// An IPv4 address carried in IPv6 (`::ffff:127.0.0.1`, NAT64's `64:ff9b::/96`) is
/// judged as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Whether `ip` is on the public internet: not loopback, private, link-local, shared
/// (CGNAT), unspecified, multicast, broadcast, documentation or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || (first == 0x2001 && v6.segments()[1] == 0xdb8))
        }
    }
}

/// Resolves `host` (a name, or an address literal) to the addresses a request may
/// connect to. A literal is used as written: the allow-list named it. A name's
/// addresses must be public or inside one of `private`, and all of them are checked:
/// one that is not is refused, with the name and the address in the error.
pub async fn resolve(
    host: &str,
    port: u16,
    private: &[Network],
    wait: Duration,
) -> Result<Vec<SocketAddr>, (HttpError, String)> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = match tokio::time::timeout(wait, tokio::net::lookup_host((bare, port))).await {
        Err(_) => {
            return Err((
                HttpError::DnsTimeout,
                format!("looking up {bare} timed out"),
            ));
        }
        Ok(Err(e)) => {
            return Err((
                HttpError::DestinationNotFound,
                format!("cannot resolve {bare}: {e}"),
            ));
        }
        Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
    };
    if found.is_empty() {
        return Err((
            HttpError::DestinationNotFound,
            format!("{bare} has no address"),
        ));
    }
    if let Some(bad) = found
        .iter()
        .find(|a| !is_public(a.ip()) && !private.iter().any(|n| n.contains(a.ip())))
    {
        return Err((
            HttpError::DestinationIpProhibited,
            format!(
                "{bare} resolves to {}, a loopback, private or reserved address: a name may only lead there if the manifest's [http] private_networks lists it",
                bad.ip()
            ),
        ));
    }
    Ok(found)
}

/// The waits of one request, each already cut to the run's deadline, and the most
/// body it may receive.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// TCP connect, TLS handshake and HTTP handshake together.
    pub connect: Duration,
    /// From sending the request until the response head has arrived.
    pub first_byte: Duration,
    /// The longest silence while the response body streams.
    pub between_bytes: Duration,
    /// Response body bytes (`[http] max_response_bytes`).
    pub max_body: u64,
}

/// Connects to one of `addrs` (in order), does TLS when `tls_name` is set, sends
/// `request` and returns the response head and the future that drives the connection.
pub async fn send(
    mut request: http::Request<WasiBody>,
    addrs: &[SocketAddr],
    tls_name: Option<&str>,
    waits: Waits,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let (mut sender, conn) = tokio::time::timeout(waits.connect, handshake(addrs, tls_name))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;
    to_origin_form(&mut request)?;
    let respond = tokio::time::timeout(waits.first_byte, sender.send_request(request));
    let mut respond = std::pin::pin!(respond);
    let mut conn = Some(conn);
    // Drive the connection while waiting for the response head.
    let head = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = respond.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if let Some(c) = conn.as_mut()
            && let Poll::Ready(done) = Pin::new(c).poll(cx)
        {
            conn = None;
            if let Err(e) = done {
                return Poll::Ready(Ok(Err(e)));
            }
            return respond.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
    .map_err(|_| HttpError::ConnectionReadTimeout)?
    .map_err(HttpError::from)?;
    let io: IoFuture = Box::new(async move {
        match conn {
            Some(c) => c.await.map_err(HttpError::from),
            None => Ok(()),
        }
    });
    Ok((bounded(head, &waits), io))
}

/// TCP to the first address that answers, TLS over it when `tls_name` is set, and the
/// HTTP/1 handshake: everything the connect timeout covers.
async fn handshake(
    addrs: &[SocketAddr],
    tls_name: Option<&str>,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<WasiBody>,
        hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, WasiBody>,
    ),
    HttpError,
> {
    let tcp = connect_any(addrs).await?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Stream> = match tls_name {
        None => Box::new(tcp),
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.to_string())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let tls = tokio_rustls::TlsConnector::from(tls_config())
                .connect(name, tcp)
                .await
                .map_err(HttpError::Tls)?;
            Box::new(tls)
        }
    };
    hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(HttpError::from)
}

/// The request line carries only the path: the authority is in the Host header.
fn to_origin_form(request: &mut http::Request<WasiBody>) -> Result<(), HttpError> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    Ok(())
}

/// The response with its body bounded: time between bytes and the size cap.
fn bounded(head: http::Response<hyper::body::Incoming>, waits: &Waits) -> http::Response<WasiBody> {
    let between = waits.between_bytes.max(Duration::from_millis(1));
    head.map(|incoming| {
        BoundedBody {
            incoming,
            between,
            timer: Box::pin(tokio::time::sleep(between)),
            seen: 0,
            cap: waits.max_body,
        }
        .boxed_unsync()
    })
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, HttpError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            HttpError::ConnectionRefused
        }
        Some(e) => HttpError::Connect(e),
        None => HttpError::DestinationNotFound,
    })
}

/// The TLS client settings: the webpki roots (as wasmtime-wasi-http's own sender), and
/// the ring provider the rest of httpsd uses.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(roots.clone())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth()
                });
            Arc::new(config)
        })
        .clone()
}

/// A response body that fails when no bytes come for `between`, or once more than
/// `cap` bytes came through (a chunked answer, or one whose `Content-Length` was not
/// the truth).
struct BoundedBody {
    incoming: hyper::body::Incoming,
    between: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    seen: u64,
    cap: u64,
}

impl Body for BoundedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if self.seen > self.cap {
                    return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                        self.seen,
                    )))));
                }
                let next = tokio::time::Instant::now() + self.between;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_and_private_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn networks_match_by_prefix() {
        let n = Network::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.255.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.0.0.1")));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = Network::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe00::1")));
        let odd = Network::parse("172.16.0.0/12").unwrap();
        assert!(odd.contains(ip("172.31.255.255")) && !odd.contains(ip("172.32.0.0")));
        for bad in ["10.0.0.0/33", "x/8", "fd00::/129", ""] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_name_leading_to_loopback_is_refused_unless_listed() {
        let wait = Duration::from_secs(5);
        let (err, why) = resolve("localhost", 80, &[], wait).await.unwrap_err();
        assert!(matches!(err, HttpError::DestinationIpProhibited), "{why}");
        assert!(why.contains("private_networks"), "{why}");
        let listed = [
            Network::parse("127.0.0.0/8").unwrap(),
            Network::parse("::1").unwrap(),
        ];
        assert!(
            !resolve("localhost", 80, &listed, wait)
                .await
                .unwrap()
                .is_empty()
        );
        // A literal is what the allow-list named: no lookup, no check.
        assert_eq!(
            resolve("127.0.0.1", 8080, &[], wait).await.unwrap(),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]", 9000, &[], wait).await.unwrap(),
            vec!["[::1]:9000".parse().unwrap()]
        );
    }
}

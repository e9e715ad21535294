//! Serving connections: HTTP/1.1 on each accepted connection, with the time limits that
//! keep slow and idle clients from holding the server's connection slots.
//!
//! `axum::serve` gives hyper no timer, so hyper's header timeout never fires there: a
//! client that opens a connection and trickles a header a byte a minute, or a
//! keep-alive connection left idle, would hold one of `--connection-limit` slots for
//! ever, and a thousand of them would lock everyone else out. Here every connection
//! gets:
//!
//! - `--header-timeout`: the request line and headers must arrive within it, counted
//!   from when the connection starts waiting for a request; that also closes a
//!   keep-alive connection idle for that long (hyper starts the same timer between
//!   requests);
//! - `--write-timeout`: a response write that makes no progress for this long (a
//!   client that stopped reading) ends the connection; see [`super::listener`].
//!
//! Only HTTP/1.1 is served: Prometheus's HTTP SD client speaks it (our TLS offers only
//! `http/1.1` in ALPN), and HTTP/2's idle streams would need limits of their own.

use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// Per-connection time limits (`--header-timeout`, `--write-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest wait for a request's line and headers, or between requests.
    pub header: Duration,
    /// Longest a response write may wait for the client to read.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            write: Duration::from_secs(30),
        }
    }
}

/// Accepts connections from `listener` and serves `router` on each until `shutdown`
/// resolves; then stops accepting, lets the requests in flight finish (idle
/// connections close at once) and returns when every connection is closed.
pub async fn serve_connections<L>(
    mut listener: L,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true);
    // Closing `stop` tells every connection to shut down gracefully; each connection
    // holds a `done` receiver, so `done_tx.closed()` resolves once all are gone.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, _addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let (mut stop_rx, done_rx) = (stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            let mut conn = pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_end(result),
                _ = stop_rx.changed() => {
                    conn.as_mut().graceful_shutdown();
                    log_end(conn.await);
                }
            }
            drop(done_rx);
        });
    }
    drop(listener);
    drop(stop_rx);
    drop(done_rx);
    // Dropping the sender wakes every `changed()` with an error: shut down now.
    drop(stop_tx);
    done_tx.closed().await;
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Timeouts, resets and malformed requests end here: ordinary on the internet,
        // and the client has had its answer (or a 400/408) where one was possible.
        tracing::debug!("connection ended: {e}");
    }
}

//! The serving benchmark's baseline (DESIGN §13): the smallest axum handler that does
//! one Redis GET and returns the bytes. httpsd's cache-hit path is measured against it
//! in the same run (`scripts/bench`); nothing in httpsd uses this.
//!
//! `one_get_baseline <redis-url> <port> <key> [--memory]`
//!
//! With `--memory` it reads the key once at start and answers every request with those
//! bytes: the ceiling of any server on the machine, since no Redis round trip is left
//! (what a local cache can at best approach).

use axum::Router;
use axum::http::header;
use axum::routing::get;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let port: u16 = args.next().unwrap_or_else(|| "8090".into()).parse()?;
    let key = args.next().unwrap_or_else(|| "/targets/nodes?".into());
    let memory = args.next().as_deref() == Some("--memory");
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    if memory {
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        let body = bytes::Bytes::from(value.unwrap_or_default());
        let handler = move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        };
        axum::serve(listener, Router::new().fallback(get(handler))).await?;
        return Ok(());
    }
    let handler = move || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .ok()
                .flatten();
            (
                [(header::CONTENT_TYPE, "application/json")],
                value.unwrap_or_default(),
            )
        }
    };
    axum::serve(listener, Router::new().fallback(get(handler))).await?;
    Ok(())
}

//! The invalidation feed of a fleet: `finish.lua` and `reload.lua` publish the
//! `full_path` of every entry they write or delete on [`INVALIDATE_CHANNEL`]; this
//! subscribes on a connection of its own (a subscribed connection can do nothing else)
//! and turns what arrives, and every loss and return of the subscription, into
//! [`Invalidation`]s.

use crate::store::{Invalidation, Invalidations};
use crate::wire::INVALIDATE_CHANNEL;
use futures::StreamExt;
use redis::Client;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events held for a slow reader before the subscription itself waits; Redis then
/// buffers for us, and past its `client-output-buffer-limit pubsub` it drops the
/// connection, which the reader sees as [`Invalidation::Lost`]: nothing is missed
/// silently.
const BUFFERED: usize = 1024;

/// How long one attempt to subscribe may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts following the channel on the current runtime; the task ends when the stream
/// is dropped.
pub(super) fn follow(client: Client) -> Invalidations {
    let (tx, rx) = mpsc::channel(BUFFERED);
    tokio::spawn(subscribe_forever(client, tx));
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    }))
}

/// Subscribes, forwards, and after every loss retries with a backoff (100 ms doubling
/// to 5 s), until the reader is gone.
async fn subscribe_forever(client: Client, tx: mpsc::Sender<Invalidation>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(INVALIDATE_CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let lost = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await {
            Ok(Ok(mut pubsub)) => {
                backoff = Duration::from_millis(100);
                if tx.send(Invalidation::Live).await.is_err() {
                    return;
                }
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let event = match message.get_payload::<String>() {
                        Ok(full_path) => Invalidation::Path(full_path),
                        Err(_) => Invalidation::Everything,
                    };
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                "the subscription was lost".to_string()
            }
            Ok(Err(e)) => format!("cannot subscribe: {e}"),
            Err(_) => "cannot subscribe: timed out".to_string(),
        };
        tracing::debug!("invalidations: {lost}");
        if tx.send(Invalidation::Lost).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

//! The invalidation feed of a fleet: `finish.lua` and `reload.lua` publish the
//! `full_path` of every entry they write or delete on [`INVALIDATE_CHANNEL`]; this
//! subscribes on a connection of its own (a subscribed connection can do nothing else)
//! and turns what arrives, and every loss and return of the subscription, into
//! [`Invalidation`]s.
//!
//! It subscribes on the primary in use (with Sentinel or a Cluster: the one the
//! topology names now), and drops the subscription at every failover: a node that is
//! no longer the primary no longer sees the writes, and a server's local cache must not
//! trust a feed that can miss them. The loss is reported ([`Invalidation::Lost`]) and
//! the next subscription goes to the new primary.

use super::backend::Backend;
use crate::store::{Invalidation, Invalidations};
use crate::wire::INVALIDATE_CHANNEL;
use futures::StreamExt;
use std::sync::{Arc, Weak};
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
/// is dropped (or the store is).
pub(super) fn follow(backend: Arc<Backend>) -> Invalidations {
    let (tx, rx) = mpsc::channel(BUFFERED);
    tokio::spawn(subscribe_forever(Arc::downgrade(&backend), tx));
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    }))
}

/// Subscribes, forwards, and after every loss (or failover) retries with a backoff
/// (100 ms doubling to 5 s), until the reader or the store is gone.
async fn subscribe_forever(backend: Weak<Backend>, tx: mpsc::Sender<Invalidation>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(store) = backend.upgrade() else {
            return;
        };
        let mut failovers = store.topology.subscribe();
        let generation = *failovers.borrow_and_update();
        let subscribed = async {
            let mut pubsub = store.primary_client().await?.get_async_pubsub().await?;
            pubsub.subscribe(INVALIDATE_CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let attempt = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await;
        drop(store);
        let lost = match attempt {
            // Subscribed on a node that stopped being the primary meanwhile.
            Ok(Ok(_)) if *failovers.borrow() != generation => "a failover".to_string(),
            Ok(Ok(mut pubsub)) => {
                backoff = Duration::from_millis(100);
                if tx.send(Invalidation::Live).await.is_err() {
                    return;
                }
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        m = messages.next() => m,
                        _ = failovers.changed() => break "a failover".to_string(),
                    };
                    let Some(message) = message else {
                        break "the subscription was lost".to_string();
                    };
                    let event = match message.get_payload::<String>() {
                        Ok(full_path) => Invalidation::Path(full_path),
                        Err(_) => Invalidation::Everything,
                    };
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
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

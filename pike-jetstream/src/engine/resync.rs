//! Catching up live routes after NATS comes back. Republished copies of
//! stored messages travel as core NATS messages: at most once, so those
//! published while this node was cut off from NATS never arrive. When the
//! node's cluster health turns ready again, the newest message of every
//! alias stream the node serves is read from the stream and handed to the
//! node as if it had just arrived: a connection behind it sees the gap and
//! reads the rest ("gap detection on the live path"), one already past it
//! drops it by its sequence number.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use pike_api::server::{self as api, StoredMessage};

use super::{JetStreamEngine, key, stored_message};
use crate::health::Health;

/// Alias streams read at once during a catch-up.
pub(crate) const RESYNC_CONCURRENCY: usize = 16;

/// Watches the engine's health every `every`; after each return to ready,
/// catches up every served alias stream. Ends with the engine.
pub(super) async fn watch(engine: Weak<JetStreamEngine>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_ready = true;
    loop {
        ticker.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let ready = matches!(engine.cluster.health(), Health::Ready);
        if ready && !was_ready {
            let (streams, caught_up) = engine.resync().await;
            tracing::info!(streams, caught_up, "NATS is back: live routes caught up");
        }
        was_ready = ready;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl JetStreamEngine {
    /// Hands the newest message of every served alias stream to the node.
    /// Returns (streams looked at, messages handed over).
    pub(crate) async fn resync(self: &Arc<Self>) -> (usize, usize) {
        let streams = self.routes.streams();
        let looked_at = streams.len();
        let handed = futures_util::stream::iter(streams)
            .map(|stream| self.catch_up(stream))
            .buffer_unordered(RESYNC_CONCURRENCY)
            .fold(0, |n, handed| async move { n + usize::from(handed) })
            .await;
        (looked_at, handed)
    }

    /// Hands the newest unexpired message of `stream` to the node; false
    /// when there is none or the read failed (the next message or login
    /// catches up then).
    async fn catch_up(&self, stream: api::StreamKey) -> bool {
        let Ok(cluster_key) = key(&stream) else {
            return false;
        };
        match self.cluster.last(&cluster_key).await {
            Ok(Some(message)) if !message.expired(now_ms()) => {
                let message: Arc<StoredMessage> = Arc::new(stored_message(message));
                self.node.stored(&stream, message);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(alias = %stream.alias, error = %e, "catch-up read failed");
                false
            }
        }
    }
}

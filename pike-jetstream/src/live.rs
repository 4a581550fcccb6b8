//! Live routing: each node subscribes to `live.<app>.<biz>.<alias>` for the
//! aliases it serves, so NATS interest is the route table (plan §4.2). The
//! stream republishes every stored message there; transient pushes are
//! published there directly.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_nats::{HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures_util::Stream;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::keys::StreamKey;
use crate::message::{
    LogMessage, MessageMeta, NATS_LAST_SEQUENCE, NATS_SEQUENCE, PIKE_TRANSIENT, header_u64,
};

/// A message on an alias's live subject.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum LiveMessage {
    /// The republished copy of a stored message. It may arrive twice (after
    /// a NATS restart) or not at all (interest not propagated yet, NATS
    /// down): dedup by `seq`, and read the log when `seq` jumps.
    Stored {
        /// The message, with its `seq` and `cursor`.
        message: LogMessage,
        /// Cursor of the previous message of the alias (`Nats-Last-Sequence`;
        /// 0 for the first).
        previous_cursor: u64,
    },
    /// A transient push: never stored, at most once.
    Transient {
        /// Message id and priority (no expiry).
        meta: MessageMeta,
        /// The payload.
        payload: Bytes,
        /// The node that published it.
        origin: String,
    },
}

impl LiveMessage {
    fn parse(message: Message) -> Option<Self> {
        let headers = message.headers?;
        if let Some(origin) = headers.get(PIKE_TRANSIENT) {
            return Some(Self::Transient {
                meta: MessageMeta::from_headers(&headers),
                payload: message.payload,
                origin: origin.as_str().to_owned(),
            });
        }
        let cursor = header_u64(&headers, NATS_SEQUENCE)?;
        Some(Self::Stored {
            previous_cursor: header_u64(&headers, NATS_LAST_SEQUENCE).unwrap_or(0),
            message: LogMessage::parse(cursor, &headers, message.payload)?,
        })
    }
}

/// The live messages of one alias. Messages that are neither a republished
/// stored message nor a transient push are skipped.
#[derive(Debug)]
pub struct LiveStream {
    subscriber: Subscriber,
}

impl Stream for LiveStream {
    type Item = LiveMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LiveMessage>> {
        loop {
            match Pin::new(&mut self.subscriber).poll_next(cx) {
                Poll::Ready(Some(message)) => {
                    if let Some(live) = LiveMessage::parse(message) {
                        return Poll::Ready(Some(live));
                    }
                    tracing::debug!("skipped a live message that is not Pike's");
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Cluster {
    /// Subscribes this node to the live messages of `key`; resolves once
    /// this node's NATS server has the subscription. Other servers learn the
    /// interest a little later (up to ~0.8 s after bursts of thousands of
    /// subscriptions): read the log once more after a short settle time.
    /// Dropping the stream unsubscribes.
    pub async fn subscribe_live(&self, key: &StreamKey) -> Result<LiveStream> {
        let subscriber = self.subscribe_flushed(key.live_subject(), "live").await?;
        Ok(LiveStream { subscriber })
    }

    /// Subscribes to `subject` and flushes, so that this node's NATS server
    /// has the subscription when it resolves (`what` names it in errors).
    pub(crate) async fn subscribe_flushed(
        &self,
        subject: String,
        what: &str,
    ) -> Result<Subscriber> {
        self.ensure_ready()?;
        let subscriber = self
            .client()
            .subscribe(subject)
            .await
            .map_err(|e| Error::Unavailable(format!("{what} subscribe: {e}")))?;
        tokio::time::timeout(self.config().request_timeout, self.client().flush())
            .await
            .map_err(|_| Error::Unavailable(format!("{what} subscribe: flush timed out")))?
            .map_err(|e| Error::Unavailable(format!("{what} subscribe: flush: {e}")))?;
        Ok(subscriber)
    }

    /// Publishes a transient (not stored) push on the live subject of `key`:
    /// every node subscribed to it gets it, at most once. Refused with
    /// [`Error::Unavailable`] while disconnected (never buffered to arrive
    /// stale). `meta.expires_at_ms` is not sent.
    pub async fn publish_transient(
        &self,
        key: &StreamKey,
        meta: MessageMeta,
        payload: Bytes,
    ) -> Result<()> {
        crate::log::check_payload(&payload)?;
        self.ensure_ready()?;
        let mut headers = HeaderMap::new();
        MessageMeta {
            expires_at_ms: 0,
            ..meta
        }
        .to_headers(&mut headers);
        // The value names the publishing node, whose own subscription
        // skips the echo (it delivered locally already).
        headers.insert(PIKE_TRANSIENT, self.node());
        self.client()
            .publish_with_headers(key.live_subject(), headers, payload)
            .await
            .map_err(|e| Error::Unavailable(format!("transient publish: {e}")))
    }
}

//! Presence claims in `PIKE_PRESENCE` (per-key TTL, compare-and-set, the
//! last claim wins) and the per-node control subject `ctl.<node>` that a
//! takeover is signalled on (plan §4.5, §7).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::Subscriber;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result, is_cas_conflict};
use crate::keys::{LoginKey, PRESENCE_BUCKET, check_node};

/// Compare-and-set attempts of one claim or release.
pub const MAX_CLAIM_ATTEMPTS: u32 = 8;
/// Longest holder token, in bytes.
pub const MAX_HOLDER_TOKEN_BYTES: usize = 256;
/// Largest control message, in bytes.
pub const MAX_CONTROL_BYTES: usize = 64 * 1024;

/// Who holds a login: a connection on a node.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Holder {
    /// The node's name.
    pub node: String,
    /// The node process's boot id (tells a restarted node from the old one).
    pub boot: u64,
    /// The connection's token (unique per connection).
    pub token: String,
    /// When the claim was made, ms since the Unix epoch.
    pub since_ms: u64,
}

impl Holder {
    fn encode(&self) -> Bytes {
        Bytes::from(
            serde_json::json!({
                "node": self.node, "boot": self.boot, "token": self.token, "since_ms": self.since_ms,
            })
            .to_string(),
        )
    }

    fn decode(value: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(value).ok()?;
        Some(Self {
            node: v.get("node")?.as_str()?.to_owned(),
            boot: v.get("boot")?.as_u64()?,
            token: v.get("token")?.as_str()?.to_owned(),
            since_ms: v.get("since_ms")?.as_u64()?,
        })
    }

    fn same_connection(&self, other: &Self) -> bool {
        self.node == other.node && self.boot == other.boot && self.token == other.token
    }

    fn check(&self) -> Result<()> {
        check_node(&self.node)?;
        if self.token.is_empty() || self.token.len() > MAX_HOLDER_TOKEN_BYTES {
            return Err(Error::Invalid(format!(
                "holder token must be 1..={MAX_HOLDER_TOKEN_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

/// What [`Cluster::claim_unless_newer`] did.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ClaimOutcome {
    /// `me` holds the login now; the holder it replaced, if another
    /// connection held it (its node is to be told).
    Held(Option<Holder>),
    /// A newer connection holds the login: nothing was written.
    Lost(Holder),
}

/// A key's revision (0: absent) and holder (None: absent, released,
/// expired, unreadable).
type Current = (u64, Option<Holder>);

/// Messages sent to this node's `ctl.<node>` subject.
#[derive(Debug)]
pub struct ControlStream {
    subscriber: Subscriber,
}

impl Stream for ControlStream {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        Pin::new(&mut self.subscriber)
            .poll_next(cx)
            .map(|m| m.map(|m| m.payload))
    }
}

impl Cluster {
    /// Claims `login` for `me` (per-key TTL `presence_ttl`) and returns the
    /// holder it replaced, if another connection held it. Claiming again
    /// with the same holder refreshes the TTL and returns `None`. Races are
    /// settled by compare-and-set: the last claim wins. The caller tells the
    /// previous holder's node ([`Cluster::send_control`]).
    pub async fn claim(&self, login: &LoginKey, me: &Holder) -> Result<Option<Holder>> {
        me.check()?;
        self.ensure_ready()?;
        let key = login.kv_key();
        let deadline = Instant::now() + self.config().append_timeout;
        for attempt in 0..MAX_CLAIM_ATTEMPTS {
            let (revision, current) = self.presence_read(&key, attempt > 0, deadline).await?;
            let previous = current.filter(|h| !h.same_connection(me));
            match self
                .presence_write(&key, me.encode(), revision, deadline)
                .await?
            {
                true => return Ok(previous),
                false => tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=5))).await,
            }
        }
        Err(Error::Unavailable(format!(
            "claim: {MAX_CLAIM_ATTEMPTS} compare-and-set conflicts in a row"
        )))
    }

    /// Claims `login` for `me` unless another connection whose claim is
    /// newer (a larger [`Holder::since_ms`], or the same) holds it: a
    /// renewal, or a claim retried after a failure, never takes a login
    /// back from a newer connection. Refreshes the TTL when `me` holds it.
    pub async fn claim_unless_newer(&self, login: &LoginKey, me: &Holder) -> Result<ClaimOutcome> {
        me.check()?;
        self.ensure_ready()?;
        let key = login.kv_key();
        let deadline = Instant::now() + self.config().append_timeout;
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            let (revision, current) = self.presence_read(&key, true, deadline).await?;
            let previous = current.filter(|h| !h.same_connection(me));
            if let Some(newer) = previous.as_ref().filter(|h| h.since_ms >= me.since_ms) {
                return Ok(ClaimOutcome::Lost(newer.clone()));
            }
            if self
                .presence_write(&key, me.encode(), revision, deadline)
                .await?
            {
                return Ok(ClaimOutcome::Held(previous));
            }
        }
        Err(Error::Unavailable(format!(
            "claim: {MAX_CLAIM_ATTEMPTS} compare-and-set conflicts in a row"
        )))
    }

    /// Drops the claim on `login` if `me` still holds it; returns whether it
    /// did. A late release never removes a newer holder.
    pub async fn release(&self, login: &LoginKey, me: &Holder) -> Result<bool> {
        self.ensure_ready()?;
        let key = login.kv_key();
        let deadline = Instant::now() + self.config().append_timeout;
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            // From the stream leader: a lagging replica could miss our own
            // claim and leave it to expire.
            let (revision, current) = self.presence_read(&key, true, deadline).await?;
            match current {
                Some(h) if h.same_connection(me) => {}
                _ => return Ok(false),
            }
            let result = tokio::time::timeout_at(
                deadline,
                self.presence_kv()
                    .delete_expect_revision(&key, Some(revision)),
            )
            .await
            .map_err(|_| Error::Unavailable("release: timed out".into()))?;
            match result {
                Ok(()) => return Ok(true),
                Err(e) if is_cas_conflict(&e) => {}
                Err(e) => return Err(Error::from_nats("release", &e)),
            }
        }
        Err(Error::Unavailable(format!(
            "release: {MAX_CLAIM_ATTEMPTS} compare-and-set conflicts in a row"
        )))
    }

    /// Who holds `login` now (a replica's view, possibly a moment behind).
    pub async fn holder(&self, login: &LoginKey) -> Result<Option<Holder>> {
        self.ensure_ready()?;
        let deadline = Instant::now() + self.config().request_timeout;
        Ok(self
            .presence_read(&login.kv_key(), false, deadline)
            .await?
            .1)
    }

    /// Sends `payload` to node `node`'s control subject `ctl.<node>` (core
    /// NATS, at most once; nothing is buffered while disconnected).
    pub async fn send_control(&self, node: &str, payload: Bytes) -> Result<()> {
        check_node(node)?;
        if payload.len() > MAX_CONTROL_BYTES {
            return Err(Error::Invalid(format!(
                "control message is {} bytes, the limit is {MAX_CONTROL_BYTES}",
                payload.len()
            )));
        }
        self.ensure_ready()?;
        self.client()
            .publish(format!("ctl.{node}"), payload)
            .await
            .map_err(|e| Error::Unavailable(format!("control: {e}")))?;
        self.flushed("control").await
    }

    /// Subscribes to this node's control subject `ctl.<node>`; resolves once
    /// the node's NATS server has the subscription.
    pub async fn control(&self) -> Result<ControlStream> {
        self.ensure_ready()?;
        let subscriber = self
            .client()
            .subscribe(format!("ctl.{}", self.node()))
            .await
            .map_err(|e| Error::Unavailable(format!("control subscribe: {e}")))?;
        self.flushed("control").await?;
        Ok(ControlStream { subscriber })
    }

    /// Reads a presence key: a direct get, or the stream leader (`leader`).
    async fn presence_read(&self, key: &str, leader: bool, deadline: Instant) -> Result<Current> {
        let store = self.presence_kv();
        if !leader {
            let entry = tokio::time::timeout_at(deadline, store.entry(key))
                .await
                .map_err(|_| Error::Unavailable("presence: timed out".into()))?
                .map_err(|e| Error::from_nats("presence", &e))?;
            return Ok(match entry {
                None => (0, None),
                Some(e) if e.operation == kv::Operation::Put => {
                    (e.revision, Holder::decode(&e.value))
                }
                Some(e) => (e.revision, None),
            });
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=5))).await;
        let subject = format!("$KV.{PRESENCE_BUCKET}.{key}");
        let message = tokio::time::timeout_at(
            deadline,
            store.stream.get_last_raw_message_by_subject(&subject),
        )
        .await
        .map_err(|_| Error::Unavailable("presence: timed out".into()))?;
        Ok(match message {
            Ok(m) => {
                let put = m.headers.get("KV-Operation").is_none()
                    && m.headers.get("Nats-Marker-Reason").is_none();
                (
                    m.sequence,
                    put.then(|| Holder::decode(&m.payload)).flatten(),
                )
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => (0, None),
            Err(e) => return Err(Error::from_nats("presence", &e)),
        })
    }

    /// Writes `value` at `key` with the presence TTL if the key is still at
    /// `revision`; `false` on a conflict. async-nats has no
    /// `update_with_ttl`: a publish with both headers (plan §4.5).
    async fn presence_write(
        &self,
        key: &str,
        value: Bytes,
        revision: u64,
        deadline: Instant,
    ) -> Result<bool> {
        let ttl = Duration::from_secs(self.config().presence_ttl.as_secs().max(1));
        let message = PublishMessage::build()
            .payload(value)
            .expected_last_subject_sequence(revision)
            .ttl(ttl);
        let subject = format!("$KV.{PRESENCE_BUCKET}.{key}");
        let outcome = tokio::time::timeout_at(deadline, async {
            match self.js().send_publish(subject, message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|_| Error::Unavailable("presence write: timed out".into()))?;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence || is_cas_conflict(&e) => {
                Ok(false)
            }
            Err(e) => Err(Error::from_nats("presence write", &e)),
        }
    }
}

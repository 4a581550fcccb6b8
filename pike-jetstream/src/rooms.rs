//! Live rooms across nodes (docs/cluster.md "Rooms across nodes"): each
//! node subscribes to `room.<app>.<room>` while its room has members, so
//! NATS interest is the route table of rooms too.
//!
//! - a **droppable** message is published on `room.<app>.<room>` with core
//!   NATS: at most once, never stored;
//! - a **reliable** message is stored in the stream `PIKE_ROOMS` (subject
//!   `rm.<app>.<room>`, replicated, `sync_interval: always` like the
//!   downlink) and republished by the stream to `room.<app>.<room>` with its
//!   stream sequence and the previous one of the room, so a node sees a gap
//!   and reads what it missed by batched direct get
//!   ([`Cluster::read_room`]).
//!
//! Every message names the node that published it (`Pike-Origin`), whose
//! own subscription skips it (that node published it to its room already).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, StatusCode, Subscriber};
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::config::ClusterConfig;
use crate::direct_get::{self, MAX_BATCH};
use crate::error::{Error, Result, is_transient};
use crate::keys::check_id;
use crate::log::MAX_APPEND_ATTEMPTS;
use crate::message::{NATS_LAST_SEQUENCE, NATS_SEQUENCE, PIKE_PRIO, header_u64};
use crate::tok::tok;

/// The stream of reliable room messages.
pub const ROOMS_STREAM: &str = "PIKE_ROOMS";
/// Names the publishing node of a room message.
const PIKE_ORIGIN: &str = "Pike-Origin";
/// Pause between bootstrap attempts while JetStream is not ready.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// One room of one app: `(app, room name)`.
#[derive(Clone, Debug, Eq, PartialEq, Hash)]
pub struct RoomKey {
    app: String,
    room: String,
    /// `<tok app>.<tok room>`.
    tokens: String,
}

impl RoomKey {
    /// Validates the ids (non-empty, at most [`MAX_ID_BYTES`](crate::MAX_ID_BYTES) each).
    pub fn new(app: &str, room: &str) -> Result<Self> {
        check_id("app", app)?;
        check_id("room", room)?;
        Ok(Self {
            tokens: format!("{}.{}", tok(app), tok(room)),
            app: app.to_owned(),
            room: room.to_owned(),
        })
    }

    /// The app id.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The room name.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// `rm.<app>.<room>`: the subject reliable messages are stored under.
    pub fn stored_subject(&self) -> String {
        format!("rm.{}", self.tokens)
    }

    /// `room.<app>.<room>`: the subject the nodes with members subscribe to.
    pub fn live_subject(&self) -> String {
        format!("room.{}", self.tokens)
    }
}

/// Where a stored reliable room message sits in `PIKE_ROOMS`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RoomCursor {
    /// Its stream sequence.
    pub cursor: u64,
    /// The stream sequence of the room's previous reliable message (0 when
    /// unknown or none); above the last one a node applied: a gap.
    pub previous: u64,
}

/// A room message as a node receives it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RoomLiveMessage {
    /// `Some` for a reliable (stored) message, `None` for a droppable one.
    pub stored: Option<RoomCursor>,
    /// The node that published it.
    pub origin: String,
    /// Its priority.
    pub priority: u32,
    /// The payload.
    pub payload: Bytes,
}

impl RoomLiveMessage {
    fn parse(headers: &HeaderMap, payload: Bytes) -> Option<Self> {
        let origin = headers.get(PIKE_ORIGIN)?.as_str().to_owned();
        let stored = header_u64(headers, NATS_SEQUENCE).map(|cursor| RoomCursor {
            cursor,
            previous: header_u64(headers, NATS_LAST_SEQUENCE).unwrap_or(0),
        });
        Some(Self {
            stored,
            origin,
            priority: header_u64(headers, PIKE_PRIO)
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0),
            payload,
        })
    }
}

/// The live messages of one room on this node. Messages without
/// `Pike-Origin` (not Pike's) are skipped. Dropping it unsubscribes.
#[derive(Debug)]
pub struct RoomStream {
    subscriber: Subscriber,
}

impl Stream for RoomStream {
    type Item = RoomLiveMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.subscriber).poll_next(cx) {
                Poll::Ready(Some(message)) => {
                    let headers = message.headers.unwrap_or_default();
                    if let Some(live) = RoomLiveMessage::parse(&headers, message.payload) {
                        return Poll::Ready(Some(live));
                    }
                    tracing::debug!("skipped a room message that is not Pike's");
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Where a room read starts.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RoomReadFrom {
    /// After this stream sequence.
    After(u64),
    /// At or after this time, unix milliseconds (the server's clock).
    Since(u64),
}

/// The stream `PIKE_ROOMS`: reliable room messages, republished `rm.>` →
/// `room.>`, kept `room_max_age` and at most `room_max_messages_per_subject`
/// per room (a node reads back only what it missed in the last moments).
pub(crate) fn rooms_config(config: &ClusterConfig) -> stream::Config {
    stream::Config {
        name: ROOMS_STREAM.into(),
        subjects: vec!["rm.>".into()],
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: config.room_max_age,
        max_messages_per_subject: config.room_max_messages_per_subject,
        duplicate_window: config.dedup_window,
        allow_direct: true,
        republish: Some(stream::Republish {
            source: "rm.>".into(),
            destination: "room.>".into(),
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// Creates `PIKE_ROOMS`, or opens it when it exists (with any
/// configuration), before `deadline`.
pub(crate) async fn bootstrap(
    js: &jetstream::Context,
    config: &ClusterConfig,
    deadline: Instant,
) -> Result<()> {
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, js.get_or_create_stream(rooms_config(config))).await
        {
            Err(_) => break,
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last_error = e.to_string(),
        }
        tracing::debug!(%last_error, "bootstrap: rooms stream not ready, retrying");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Err(Error::Unavailable(format!(
        "creating {ROOMS_STREAM} timed out (last error: {last_error})"
    )))
}

/// `unix_ms` as RFC 3339 in UTC (`1970-01-01T00:00:00.000Z`).
pub(crate) fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        unix_ms % 1000
    )
}

impl Cluster {
    /// Publishes a room message. Reliable: stored in `PIKE_ROOMS` (retried
    /// under one msg id until `append_timeout`, so it is stored once) and
    /// resolves with its stream sequence once acked by a quorum. Droppable:
    /// sent on the room's live subject (at most once), `None`. Refused with
    /// [`Error::Unavailable`] while disconnected (never buffered).
    pub async fn publish_room(
        &self,
        key: &RoomKey,
        reliable: bool,
        priority: u32,
        payload: Bytes,
    ) -> Result<Option<u64>> {
        crate::log::check_payload(&payload)?;
        self.ensure_ready()?;
        let mut headers = HeaderMap::new();
        headers.insert(PIKE_ORIGIN, self.node());
        if priority != 0 {
            headers.insert(PIKE_PRIO, priority.to_string().as_str());
        }
        if !reliable {
            self.client()
                .publish_with_headers(key.live_subject(), headers, payload)
                .await
                .map_err(|e| Error::Unavailable(format!("room publish: {e}")))?;
            return Ok(None);
        }
        let msg_id = format!("{}:{:016x}", self.node(), fastrand::u64(..));
        let subject = key.stored_subject();
        let deadline = Instant::now() + self.config().append_timeout;
        let mut last_error = String::new();
        for attempt in 0..MAX_APPEND_ATTEMPTS {
            self.ensure_ready()?;
            let message = PublishMessage::build()
                .headers(headers.clone())
                .payload(payload.clone())
                .message_id(&msg_id);
            let outcome = self.publish_acked(&subject, message, deadline).await;
            match outcome {
                Err(_) => {
                    last_error = "ack timed out".into();
                    break;
                }
                Ok(Ok(ack)) => {
                    self.probe().succeeded();
                    return Ok(Some(ack.sequence));
                }
                Ok(Err(e)) if is_transient(&e) => {
                    tracing::debug!(subject, attempt, error = %e, "room publish retried");
                    last_error = e.to_string();
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50 + fastrand::u64(0..50))).await;
                }
                Ok(Err(e)) => return Err(Error::Failed(format!("room publish: {e}"))),
            }
        }
        Err(Error::Unavailable(format!(
            "room publish not confirmed (last error: {last_error})"
        )))
    }

    /// Subscribes this node to the live messages of `key`; resolves once
    /// this node's NATS server has the subscription (the other servers learn
    /// it a little later: read the room once more after a short settle
    /// time).
    pub async fn subscribe_room(&self, key: &RoomKey) -> Result<RoomStream> {
        let subscriber = self.subscribe_flushed(key.live_subject(), "room").await?;
        Ok(RoomStream { subscriber })
    }

    /// The stream sequence of the room's newest reliable message (0: none),
    /// by direct get (any replica).
    pub async fn room_last_cursor(&self, key: &RoomKey) -> Result<u64> {
        self.ensure_ready()?;
        let body = serde_json::json!({ "last_by_subj": key.stored_subject() });
        let reply = tokio::time::timeout(
            self.config().request_timeout,
            self.client().request(
                format!("$JS.API.DIRECT.GET.{ROOMS_STREAM}"),
                Bytes::from(body.to_string()),
            ),
        )
        .await
        .map_err(|_| Error::Unavailable("room last: timed out".into()))?
        .map_err(|e| Error::Unavailable(format!("room last: {e}")))?;
        match reply.status {
            Some(StatusCode::NOT_FOUND) => Ok(0),
            None | Some(StatusCode::OK) => reply
                .headers
                .as_ref()
                .and_then(|h| header_u64(h, NATS_SEQUENCE))
                .ok_or_else(|| Error::Failed("room last: a reply without Nats-Sequence".into())),
            Some(status) => Err(Error::Unavailable(format!(
                "room last: status {}",
                status.as_u16()
            ))),
        }
    }

    /// Up to `max` (at most [`MAX_BATCH`]) reliable messages of `key` from
    /// `from`, in stream order (batched direct get, any replica).
    pub async fn read_room(
        &self,
        key: &RoomKey,
        from: RoomReadFrom,
        max: usize,
    ) -> Result<Vec<RoomLiveMessage>> {
        self.ensure_ready()?;
        let (client, subject) = (self.client(), key.stored_subject());
        let timeout = self.config().request_timeout;
        let max = max.min(MAX_BATCH);
        let batch = match from {
            RoomReadFrom::After(cursor) => {
                direct_get::next_by_subject(
                    client,
                    ROOMS_STREAM,
                    &subject,
                    cursor + 1,
                    max,
                    timeout,
                )
                .await?
            }
            RoomReadFrom::Since(unix_ms) => {
                let start = rfc3339(unix_ms);
                direct_get::next_by_subject_since(
                    client,
                    ROOMS_STREAM,
                    &subject,
                    &start,
                    max,
                    timeout,
                )
                .await?
            }
        };
        Ok(batch
            .messages
            .into_iter()
            .filter_map(|raw| {
                let mut message = RoomLiveMessage::parse(&raw.headers, raw.payload)?;
                message.stored = Some(RoomCursor {
                    cursor: raw.cursor,
                    previous: 0,
                });
                Some(message)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MAX_ID_BYTES;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn room_subjects() {
        let key = RoomKey::new("demo", "live:42").unwrap();
        assert_eq!(key.stored_subject(), "rm.demo.live=3A42");
        assert_eq!(key.live_subject(), "room.demo.live=3A42");
        assert!(RoomKey::new("demo", "").is_err());
        assert!(RoomKey::new("demo", &"x".repeat(MAX_ID_BYTES + 1)).is_err());
    }
}

//! The downlink log: appends with a dense per-alias sequence by
//! compare-and-set on the subject, deduplicated by msg id; reads by batched
//! direct get (plan §5, §6).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind};
use bytes::Bytes;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::direct_get::{self, MAX_BATCH};
use crate::error::{Error, Result, is_cas_conflict, is_transient};
use crate::keys::{DOWNLINK_STREAM, StreamKey};
use crate::message::{LogMessage, MessageMeta, PIKE_SEQ, header_u64};

/// Longest caller msg id (the idempotency key), in bytes.
pub const MAX_MSG_ID_BYTES: usize = 256;
/// Largest payload of one appended message (the servers' `max_payload` is 1 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 512 * 1024;
/// Attempts of one append (conflicts and transient errors) before giving up.
pub const MAX_APPEND_ATTEMPTS: u32 = 64;
/// Aliases whose last (stream seq, Pike-Seq) a node remembers; when full,
/// idle lanes are dropped.
pub const MAX_LANES: usize = 4096;

/// The outcome of an append.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Appended {
    /// Per-alias sequence number of the stored message.
    pub seq: u64,
    /// Its stream sequence (the engine cursor).
    pub cursor: u64,
    /// True when an earlier append with the same msg id had stored it: this
    /// is that append's outcome, nothing was stored twice.
    pub duplicate: bool,
}

/// The newest message of an alias stream.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Tail {
    /// Its per-alias sequence number; 0 when the alias has no message.
    pub seq: u64,
    /// Its cursor (stream sequence); 0 when the alias has no message.
    pub cursor: u64,
}

/// Messages read from one alias stream.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ReadBatch {
    /// In stream order (and so in `seq` order).
    pub messages: Vec<LogMessage>,
    /// Cursor of the last message looked at (also of any skipped foreign
    /// one); the next read starts after it. Equals the `after` of the read
    /// when nothing was found.
    pub last_cursor: u64,
    /// How many messages of the alias follow this batch (0: up to date).
    pub pending: u64,
}

/// Per-alias append lanes: appends to one alias are serialized on a node
/// (fewer CAS conflicts), each lane caching the alias's last
/// (stream seq, Pike-Seq).
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    lanes: Mutex<HashMap<String, Lane>>,
}

/// One alias's lane: its last (stream seq, Pike-Seq) when known.
type Lane = Arc<tokio::sync::Mutex<Option<(u64, u64)>>>;

impl Lanes {
    fn lane(&self, subject: &str) -> Lane {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = lanes.get(subject) {
            return lane.clone();
        }
        if lanes.len() >= MAX_LANES {
            lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
        }
        let lane = Arc::new(tokio::sync::Mutex::new(None));
        if lanes.len() < MAX_LANES {
            lanes.insert(subject.to_owned(), lane.clone());
        }
        lane
    }
}

/// A pause of 1–5 ms (after a conflict) or 100–250 ms (after a transient error).
fn backoff(conflict: bool) -> Duration {
    if conflict {
        Duration::from_millis(fastrand::u64(1..=5))
    } else {
        Duration::from_millis(fastrand::u64(100..=250))
    }
}

/// Refuses a payload over [`MAX_PAYLOAD_BYTES`].
pub(crate) fn check_payload(payload: &Bytes) -> Result<()> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::Invalid(format!(
            "payload is {} bytes, the limit is {MAX_PAYLOAD_BYTES}",
            payload.len()
        )));
    }
    Ok(())
}

impl Cluster {
    /// Publishes `message` to the stream and waits for its ack, both within
    /// `deadline` (`Err(Elapsed)` past it). The ack future's own timeout
    /// starts at its first poll: it is bounded by the deadline instead
    /// (plan §14.3).
    pub(crate) async fn publish_acked(
        &self,
        subject: &str,
        message: PublishMessage,
        deadline: Instant,
    ) -> Result<
        Result<
            async_nats::jetstream::publish::PublishAck,
            async_nats::jetstream::context::PublishError,
        >,
        tokio::time::error::Elapsed,
    > {
        tokio::time::timeout_at(deadline, async {
            match self.js().send_publish(subject.to_owned(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Appends `payload` to the alias stream `key` and resolves once it is
    /// durable (acked by the stream's replicas), with the next dense per-alias
    /// sequence number.
    ///
    /// `msg_id` is the idempotency key (`Nats-Msg-Id`, scoped to the alias):
    /// an append repeated with the same `msg_id` within the dedup window
    /// returns the first outcome (`duplicate: true`) and stores nothing.
    ///
    /// Bounded by `append_timeout` and [`MAX_APPEND_ATTEMPTS`]; on
    /// [`Error::Unavailable`] the outcome is unknown and the append may be
    /// retried with the same `msg_id`.
    pub async fn append(
        &self,
        key: &StreamKey,
        msg_id: &str,
        meta: MessageMeta,
        payload: Bytes,
    ) -> Result<Appended> {
        if msg_id.is_empty() || msg_id.len() > MAX_MSG_ID_BYTES {
            return Err(Error::Invalid(format!(
                "msg id must be 1..={MAX_MSG_ID_BYTES} bytes"
            )));
        }
        check_payload(&payload)?;
        self.ensure_ready()?;
        let subject = key.log_subject();
        let nats_msg_id = format!("{}:{}", crate::tok::tok(msg_id), key.tokens());
        let deadline = Instant::now() + self.config().append_timeout;
        let lane = self.lanes().lane(&subject);
        let mut last = tokio::time::timeout_at(deadline, lane.lock())
            .await
            .map_err(|_| Error::Unavailable("append: lane busy past the deadline".into()))?;
        let mut last_error = String::new();
        for attempt in 0..MAX_APPEND_ATTEMPTS {
            self.ensure_ready()?;
            let (last_cursor, last_seq) = match *last {
                Some(cached) => cached,
                None => match self.last_of(&subject, attempt > 0, deadline).await {
                    Ok(found) => found,
                    Err(e @ (Error::Failed(_) | Error::Invalid(_))) => return Err(e),
                    Err(e) => {
                        last_error = e.to_string();
                        if Instant::now() >= deadline {
                            break;
                        }
                        tokio::time::sleep(backoff(false)).await;
                        continue;
                    }
                },
            };
            let seq = last_seq + 1;
            let mut headers = HeaderMap::new();
            meta.to_headers(&mut headers);
            headers.insert(PIKE_SEQ, seq.to_string().as_str());
            let message = PublishMessage::build()
                .headers(headers)
                .payload(payload.clone())
                .message_id(&nats_msg_id)
                .expected_last_subject_sequence(last_cursor);
            let outcome = self.publish_acked(&subject, message, deadline).await;
            match outcome {
                Err(_) => {
                    last_error = "ack timed out".into();
                    break;
                }
                Ok(Ok(ack)) if !ack.duplicate => {
                    self.probe().succeeded();
                    *last = Some((ack.sequence, seq));
                    return Ok(Appended {
                        seq,
                        cursor: ack.sequence,
                        duplicate: false,
                    });
                }
                Ok(Ok(ack)) => {
                    // Stored by an earlier attempt (or call) with this msg
                    // id: report that message's sequence number.
                    *last = None;
                    let seq = self.seq_at(ack.sequence, deadline).await?;
                    return Ok(Appended {
                        seq,
                        cursor: ack.sequence,
                        duplicate: true,
                    });
                }
                Ok(Err(e)) => {
                    *last = None;
                    let conflict =
                        e.kind() == PublishErrorKind::WrongLastSequence || is_cas_conflict(&e);
                    if !conflict && !is_transient(&e) {
                        return Err(Error::Failed(format!("append: {e}")));
                    }
                    tracing::debug!(subject, attempt, conflict, error = %e, "append retried");
                    last_error = e.to_string();
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(backoff(conflict)).await;
                }
            }
        }
        Err(Error::Unavailable(format!(
            "append not confirmed (last error: {last_error}); retry with the same msg id"
        )))
    }

    /// (stream seq, Pike-Seq) of the last message of `subject`, (0, 0) when
    /// it has none. `leader`: read from the stream leader (after a conflict:
    /// a direct get may come from a lagging replica, plan §14.2).
    async fn last_of(&self, subject: &str, leader: bool, deadline: Instant) -> Result<(u64, u64)> {
        let message = if leader {
            match tokio::time::timeout_at(
                deadline,
                self.downlink().get_last_raw_message_by_subject(subject),
            )
            .await
            {
                Err(_) => return Err(Error::Unavailable("last message: timed out".into())),
                Ok(Ok(m)) => m,
                Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    return Ok((0, 0));
                }
                Ok(Err(e)) => return Err(Error::from_nats("last message", &e)),
            }
        } else {
            match tokio::time::timeout_at(
                deadline,
                self.downlink().direct_get_last_for_subject(subject),
            )
            .await
            {
                Err(_) => return Err(Error::Unavailable("last message: timed out".into())),
                Ok(Ok(m)) => m,
                Ok(Err(e)) if e.kind() == DirectGetErrorKind::NotFound => return Ok((0, 0)),
                Ok(Err(e)) => return Err(Error::from_nats("last message", &e)),
            }
        };
        let seq = header_u64(&message.headers, PIKE_SEQ).ok_or_else(|| {
            Error::Failed(format!(
                "message {} of {subject} has no {PIKE_SEQ} header",
                message.sequence
            ))
        })?;
        Ok((message.sequence, seq))
    }

    /// The Pike-Seq of the message at stream sequence `cursor` (leader read).
    async fn seq_at(&self, cursor: u64, deadline: Instant) -> Result<u64> {
        let message = tokio::time::timeout_at(deadline, self.downlink().get_raw_message(cursor))
            .await
            .map_err(|_| Error::Unavailable("message get timed out".into()))?
            .map_err(|e| Error::from_nats("message get", &e))?;
        header_u64(&message.headers, PIKE_SEQ)
            .ok_or_else(|| Error::Failed(format!("message {cursor} has no {PIKE_SEQ} header")))
    }

    /// The newest message of `key` (for a login's `last_seq`), by one direct
    /// get: any replica answers, one may lag slightly behind.
    pub async fn tail(&self, key: &StreamKey) -> Result<Tail> {
        self.ensure_ready()?;
        let deadline = Instant::now() + self.config().request_timeout;
        let (cursor, seq) = self.last_of(&key.log_subject(), false, deadline).await?;
        Ok(Tail { seq, cursor })
    }

    /// The newest message of `key`, if it has one, by one direct get (any
    /// replica answers). Used to catch up a live route after NATS came
    /// back (republished copies sent meanwhile are lost).
    pub async fn last(&self, key: &StreamKey) -> Result<Option<LogMessage>> {
        self.ensure_ready()?;
        let subject = key.log_subject();
        let message = match tokio::time::timeout(
            self.config().request_timeout,
            self.downlink().direct_get_last_for_subject(subject.clone()),
        )
        .await
        {
            Err(_) => return Err(Error::Unavailable("last message: timed out".into())),
            Ok(Ok(m)) => m,
            Ok(Err(e)) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
            Ok(Err(e)) => return Err(Error::from_nats("last message", &e)),
        };
        Ok(LogMessage::parse(
            message.sequence,
            &message.headers,
            message.payload,
        ))
    }

    /// Up to `max` (at most [`MAX_BATCH`]) messages of the alias stream `key`
    /// with a cursor above `after_cursor`, in order, by one batched direct
    /// get (any replica answers; one may lag slightly behind). Expired
    /// messages are included: see [`LogMessage::expired`].
    pub async fn read(&self, key: &StreamKey, after_cursor: u64, max: usize) -> Result<ReadBatch> {
        self.ensure_ready()?;
        let max = max.clamp(1, MAX_BATCH);
        let batch = direct_get::next_by_subject(
            self.client(),
            DOWNLINK_STREAM,
            &key.log_subject(),
            after_cursor.saturating_add(1),
            max,
            self.config().request_timeout,
        )
        .await?;
        let mut out = ReadBatch {
            messages: Vec::with_capacity(batch.messages.len()),
            last_cursor: after_cursor,
            pending: batch.pending,
        };
        for raw in batch.messages {
            out.last_cursor = out.last_cursor.max(raw.cursor);
            match LogMessage::parse(raw.cursor, &raw.headers, raw.payload) {
                Some(message) => out.messages.push(message),
                None => tracing::warn!(cursor = raw.cursor, "skipped a message without Pike-Seq"),
            }
        }
        Ok(out)
    }
}

//! The batched direct get (server 2.11+): up to `batch` messages of one
//! subject from a stream sequence on, answered by any replica, without a
//! consumer (plan §5, §6). async-nats 0.51 has no API for it: a raw request.

use std::time::Duration;

use async_nats::{Client, HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::message::{NATS_SEQUENCE, header_u64};

/// Largest batch one request asks for.
pub const MAX_BATCH: usize = 1024;

/// One raw message of a batch.
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) cursor: u64,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

/// The answer to one batched direct get.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) messages: Vec<Raw>,
    /// `Nats-Num-Pending` of the last message: how many messages of the
    /// subject follow the batch (0 when it reached the end).
    pub(crate) pending: u64,
}

/// `$JS.API.DIRECT.GET.<stream>` with `{"seq": from, "next_by_subj": subject,
/// "batch": max}`; the replies end with status 204 (end of batch) or 404
/// (nothing at or after `from`).
pub(crate) async fn next_by_subject(
    client: &Client,
    stream: &str,
    subject: &str,
    from: u64,
    max: usize,
    timeout: Duration,
) -> Result<Batch> {
    let max = max.clamp(1, MAX_BATCH);
    let body = serde_json::json!({ "seq": from.max(1), "next_by_subj": subject, "batch": max });
    batch(client, stream, body, max, timeout).await
}

/// Up to `max` messages of `subject` stored at or after `start_time`
/// (RFC 3339): the same request with `start_time` in place of `seq`.
pub(crate) async fn next_by_subject_since(
    client: &Client,
    stream: &str,
    subject: &str,
    start_time: &str,
    max: usize,
    timeout: Duration,
) -> Result<Batch> {
    let max = max.clamp(1, MAX_BATCH);
    let body =
        serde_json::json!({ "start_time": start_time, "next_by_subj": subject, "batch": max });
    batch(client, stream, body, max, timeout).await
}

/// One batched direct get with the request `body` (asking for `max`).
async fn batch(
    client: &Client,
    stream: &str,
    body: serde_json::Value,
    max: usize,
    timeout: Duration,
) -> Result<Batch> {
    let deadline = tokio::time::Instant::now() + timeout;
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Error::Unavailable(format!("direct get: subscribe: {e}")))?;
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            Bytes::from(body.to_string()),
        )
        .await
        .map_err(|e| Error::Unavailable(format!("direct get: publish: {e}")))?;
    let mut batch = Batch::default();
    // At most `max` messages and one end-of-batch status.
    for _ in 0..=max {
        let reply = match tokio::time::timeout_at(deadline, replies.next()).await {
            Err(_) => return Err(Error::Unavailable("direct get timed out".into())),
            Ok(None) => return Err(Error::Unavailable("direct get: connection closed".into())),
            Ok(Some(reply)) => reply,
        };
        match reply.status {
            None | Some(StatusCode::OK) => {
                let headers = reply.headers.unwrap_or_default();
                let Some(cursor) = header_u64(&headers, NATS_SEQUENCE) else {
                    return Err(Error::Failed(
                        "direct get: a reply without Nats-Sequence".into(),
                    ));
                };
                batch.pending = header_u64(&headers, "Nats-Num-Pending").unwrap_or(0);
                batch.messages.push(Raw {
                    cursor,
                    headers,
                    payload: reply.payload,
                });
            }
            Some(StatusCode::NOT_FOUND) => return Ok(batch),
            Some(status) if status.as_u16() == 204 => return Ok(batch),
            Some(StatusCode::NO_RESPONDERS) => {
                return Err(Error::Unavailable("direct get: no responders".into()));
            }
            Some(status) => {
                return Err(Error::Unavailable(format!(
                    "direct get: status {} {}",
                    status.as_u16(),
                    reply.description.unwrap_or_default()
                )));
            }
        }
    }
    Ok(batch)
}

//! Delivered uplink messages in the KV bucket `PIKE_UPLINKS`, one key per
//! message (`<app>.<biz>.<alias>.<idempotency key>`, [`tok`] tokens), its
//! value the route that took it; kept `uplink_record_max_age`.
//!
//! Both calls retry a transient error (a node restarting and catching up,
//! a leader election) until `append_timeout`, at most
//! [`MAX_RECORD_ATTEMPTS`] tries: a record that fails after the backend
//! took the message makes the device send it again, and the backend see
//! it twice.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::keys::StreamKey;
use crate::tok::tok;

/// Longest idempotency key, bytes.
pub const MAX_UPLINK_KEY_BYTES: usize = 256;

/// Most tries of one uplink record write or lookup.
pub const MAX_RECORD_ATTEMPTS: u32 = 32;

/// Pause before another try: 100–250 ms, jittered so that the gateways'
/// retries after one node's restart spread out.
fn pause() -> Duration {
    Duration::from_millis(fastrand::u64(100..=250))
}

fn key_of(stream: &StreamKey, key: &str) -> Result<String> {
    if key.is_empty() || key.len() > MAX_UPLINK_KEY_BYTES {
        return Err(Error::Invalid(format!(
            "an uplink key must be 1..={MAX_UPLINK_KEY_BYTES} bytes"
        )));
    }
    Ok(format!("{}.{}", stream.tokens(), tok(key)))
}

impl Cluster {
    /// The route that took the uplink message `key` of `stream`, if it was
    /// delivered (within the record's lifetime).
    pub async fn uplink_record(&self, stream: &StreamKey, key: &str) -> Result<Option<String>> {
        self.ensure_ready()?;
        let key = key_of(stream, key)?;
        let deadline = Instant::now() + self.config().append_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match tokio::time::timeout(
                self.config().request_timeout,
                self.uplinks_kv().get(&key),
            )
            .await
            {
                Ok(Ok(entry)) => {
                    return Ok(entry.map(|value| String::from_utf8_lossy(&value).into_owned()));
                }
                Ok(Err(e)) => Error::from_nats("uplink record", &e),
                Err(_) => Error::Unavailable("uplink record: timed out".into()),
            };
            if !retry(&error, attempt, deadline) {
                return Err(error);
            }
            tokio::time::sleep(pause()).await;
            self.ensure_ready()?;
        }
    }

    /// Records that the uplink message `key` of `stream` was delivered to
    /// `route` (durable, replicated, before the client is acked).
    pub async fn record_uplink(&self, stream: &StreamKey, key: &str, route: &str) -> Result<()> {
        self.ensure_ready()?;
        let key = key_of(stream, key)?;
        let value = Bytes::from(route.to_owned());
        let deadline = Instant::now() + self.config().append_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Writing the same value again is harmless: the record says
            // "delivered" either way.
            let error =
                match tokio::time::timeout_at(deadline, self.uplinks_kv().put(&key, value.clone()))
                    .await
                {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => Error::from_nats("record uplink", &e),
                    Err(_) => Error::Unavailable("record uplink: timed out".into()),
                };
            if !retry(&error, attempt, deadline) {
                return Err(error);
            }
            tracing::debug!(attempt, %error, "record uplink retried");
            tokio::time::sleep(pause()).await;
            self.ensure_ready()?;
        }
    }
}

/// Whether to try again after `error` on try `attempt`: a transient error
/// with tries and time left (a pause included).
fn retry(error: &Error, attempt: u32, deadline: Instant) -> bool {
    matches!(error, Error::Unavailable(_))
        && attempt < MAX_RECORD_ATTEMPTS
        && Instant::now() + Duration::from_millis(250) < deadline
}

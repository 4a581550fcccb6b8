//! Delivered uplink messages in the KV bucket `PIKE_UPLINKS`, one key per
//! message (`<app>.<biz>.<alias>.<idempotency key>`, [`tok`] tokens), its
//! value the route that took it; kept `uplink_record_max_age`.

use bytes::Bytes;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::keys::StreamKey;
use crate::tok::tok;

/// Longest idempotency key, bytes.
pub const MAX_UPLINK_KEY_BYTES: usize = 256;

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
        let entry =
            tokio::time::timeout(self.config().request_timeout, self.uplinks_kv().get(&key))
                .await
                .map_err(|_| Error::Unavailable("uplink record: timed out".into()))?
                .map_err(|e| Error::from_nats("uplink record", &e))?;
        Ok(entry.map(|value| String::from_utf8_lossy(&value).into_owned()))
    }

    /// Records that the uplink message `key` of `stream` was delivered to
    /// `route` (durable, replicated, before the client is acked).
    pub async fn record_uplink(&self, stream: &StreamKey, key: &str, route: &str) -> Result<()> {
        self.ensure_ready()?;
        let key = key_of(stream, key)?;
        tokio::time::timeout(
            self.config().append_timeout,
            self.uplinks_kv().put(&key, Bytes::from(route.to_owned())),
        )
        .await
        .map_err(|_| Error::Unavailable("record uplink: timed out".into()))?
        .map_err(|e| Error::from_nats("record uplink", &e))?;
        Ok(())
    }
}

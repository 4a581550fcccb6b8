//! Per-device acked positions in `PIKE_POSITIONS`, moved forward only by
//! compare-and-set (plan §4.4).

use std::time::Duration;

use async_nats::jetstream::kv::{self, UpdateErrorKind};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result, is_cas_conflict};
use crate::keys::{LoginKey, POSITIONS_BUCKET};

/// Compare-and-set attempts of one ack before it gives up.
pub const MAX_ACK_ATTEMPTS: u32 = 20;

/// Where a device is in an alias stream.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Position {
    /// Epoch of the downlink log the numbers belong to.
    pub epoch: u64,
    /// Last acked per-alias sequence number.
    pub seq: u64,
    /// Cursor (stream sequence) of that message; reads resume after it.
    pub cursor: u64,
}

/// What an ack did.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum AckOutcome {
    /// The stored position moved to the acked one.
    Moved,
    /// Nothing to do: the stored position is at or past it, or the ack
    /// belongs to another epoch than the log's.
    Stale,
}

impl Position {
    fn encode(self) -> Bytes {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.cursor.to_be_bytes());
        Bytes::from(out)
    }

    fn decode(value: &[u8]) -> Option<Self> {
        let field = |i: usize| {
            value
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        (value.len() == 24).then_some(())?;
        Some(Self {
            epoch: field(0)?,
            seq: field(1)?,
            cursor: field(2)?,
        })
    }
}

/// The stored value of a key: its revision (0: absent) and position (None:
/// absent, deleted or unreadable).
type Current = (u64, Option<Position>);

fn operation_is_put(headers: &async_nats::HeaderMap) -> bool {
    headers.get("KV-Operation").is_none() && headers.get("Nats-Marker-Reason").is_none()
}

impl Cluster {
    /// Records that the device of `login` acked up to `at`. Forward only: a
    /// lower or equal seq in the same epoch, or an epoch other than the
    /// log's, is a no-op ([`AckOutcome::Stale`]). Concurrent acks of one key
    /// are resolved by compare-and-set; the highest wins.
    pub async fn ack(&self, login: &LoginKey, at: Position) -> Result<AckOutcome> {
        self.ensure_ready()?;
        if at.epoch != self.epoch() {
            return Ok(AckOutcome::Stale);
        }
        let key = login.kv_key();
        let store = self.positions_kv();
        let deadline = Instant::now() + self.config().append_timeout;
        let mut conflicts = 0;
        for attempt in 0..MAX_ACK_ATTEMPTS {
            // First read: a direct get (any replica, maybe stale); after a
            // conflict, the stream leader after a jittered pause (§14.2).
            let (revision, current) = if attempt == 0 {
                self.position_entry(store, &key, deadline).await?
            } else {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=5))).await;
                self.position_leader(store, &key, deadline).await?
            };
            if let Some(current) = current
                && current.epoch == at.epoch
                && current.seq >= at.seq
            {
                return Ok(AckOutcome::Stale);
            }
            let result =
                tokio::time::timeout_at(deadline, store.update(&key, at.encode(), revision))
                    .await
                    .map_err(|_| Error::Unavailable("ack: timed out".into()))?;
            match result {
                Ok(_) => return Ok(AckOutcome::Moved),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision || is_cas_conflict(&e) => {
                    conflicts += 1;
                }
                Err(e) => return Err(Error::from_nats("ack", &e)),
            }
        }
        Err(Error::Unavailable(format!(
            "ack: {conflicts} compare-and-set conflicts in a row"
        )))
    }

    /// The stored position of the device of `login`, if any.
    pub async fn position(&self, login: &LoginKey) -> Result<Option<Position>> {
        self.ensure_ready()?;
        let deadline = Instant::now() + self.config().request_timeout;
        Ok(self
            .position_entry(self.positions_kv(), &login.kv_key(), deadline)
            .await?
            .1)
    }

    async fn position_entry(
        &self,
        store: &kv::Store,
        key: &str,
        deadline: Instant,
    ) -> Result<Current> {
        let entry = tokio::time::timeout_at(deadline, store.entry(key))
            .await
            .map_err(|_| Error::Unavailable("position: timed out".into()))?
            .map_err(|e| Error::from_nats("position", &e))?;
        Ok(match entry {
            None => (0, None),
            Some(e) if e.operation == kv::Operation::Put => {
                (e.revision, Position::decode(&e.value))
            }
            Some(e) => (e.revision, None),
        })
    }

    async fn position_leader(
        &self,
        store: &kv::Store,
        key: &str,
        deadline: Instant,
    ) -> Result<Current> {
        let subject = format!("$KV.{POSITIONS_BUCKET}.{key}");
        let message = tokio::time::timeout_at(
            deadline,
            store.stream.get_last_raw_message_by_subject(&subject),
        )
        .await
        .map_err(|_| Error::Unavailable("position: timed out".into()))?;
        Ok(match message {
            Ok(m) if operation_is_put(&m.headers) => (m.sequence, Position::decode(&m.payload)),
            Ok(m) => (m.sequence, None),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => (0, None),
            Err(e) => return Err(Error::from_nats("position", &e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_roundtrip() {
        let p = Position {
            epoch: 7,
            seq: 42,
            cursor: 1 << 40,
        };
        assert_eq!(Position::decode(&p.encode()), Some(p));
        assert_eq!(Position::decode(b"short"), None);
        assert_eq!(Position::decode(&[0u8; 25]), None);
    }
}

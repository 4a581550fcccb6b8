//! [`Inbox`] on the downlink stream: appends with dense per-alias sequence
//! numbers, reads by batched direct get, positions in `PIKE_POSITIONS`.

use futures_util::{StreamExt as _, TryStreamExt as _};
use pike_api::server::engine::{AppendPush, EngineError, Inbox, LoginStart, Position};
use pike_api::server::{self as api, Appended, BoxFuture, ReadBatch};

use super::{JetStreamEngine, engine_error, key, stored_message};
use crate::keys::{LoginKey, StreamKey};
use crate::message::MessageMeta;
use crate::positions;

/// Appends of one push in flight at once (a tag push reaches many aliases).
const APPEND_CONCURRENCY: usize = 32;

/// Direct gets one read makes at most while every message it finds is
/// expired or already delivered (each returns up to a batch).
const MAX_READ_ROUNDS: usize = 16;

/// Reads that found nothing although the alias has newer messages (a
/// replica behind its leader) are tried again this many times.
const LAGGING_REPLICA_RETRIES: usize = 5;

/// Gateway-wide message ids of reliable pushes: random below 2^62
/// ([`api::TRANSIENT_ID_MIN`]: the transient range starts there).
fn message_id() -> u64 {
    fastrand::u64(1..api::TRANSIENT_ID_MIN)
}

/// A push's msg id when the caller gave none: only the engine's own
/// retries of this append are deduplicated.
fn fresh_msg_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl JetStreamEngine {
    /// Up to `max` unexpired messages after `after`; `last_seq` is the
    /// alias's newest sequence number as far as the reads saw (dense
    /// numbers: the last message read plus those pending after it).
    async fn read_after(
        &self,
        key: &StreamKey,
        after: Position,
        max: usize,
        now_ms: u64,
    ) -> Result<ReadBatch, EngineError> {
        let mut out = ReadBatch {
            last_seq: after.seq,
            ..ReadBatch::default()
        };
        let mut cursor = after.cursor;
        let mut lagging = 0;
        for _ in 0..MAX_READ_ROUNDS {
            let batch = self
                .cluster
                .read(key, cursor, max)
                .await
                .map_err(engine_error)?;
            let newest = batch.messages.last().map(|m| m.seq);
            for message in batch.messages {
                if message.seq <= after.seq || message.expired(now_ms) {
                    continue;
                }
                if out.first_seq == 0 {
                    out.first_seq = message.seq;
                }
                out.messages.push(stored_message(message));
            }
            if let Some(newest) = newest {
                out.last_seq = out.last_seq.max(newest.saturating_add(batch.pending));
            }
            if !out.messages.is_empty() {
                break;
            }
            if newest.is_none() {
                // Nothing after the cursor on this replica: is the alias
                // really at its end, or is the replica behind?
                let tail = self.cluster.tail(key).await.map_err(engine_error)?;
                if tail.cursor <= cursor || lagging == LAGGING_REPLICA_RETRIES {
                    // `last_seq` stays at `after`: the caller skips nothing
                    // it has not seen.
                    break;
                }
                lagging += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                continue;
            }
            if batch.pending == 0 {
                break;
            }
            cursor = batch.last_cursor;
        }
        if out.first_seq == 0 {
            out.first_seq = out.last_seq.saturating_add(1);
        }
        Ok(out)
    }
}

impl Inbox for JetStreamEngine {
    fn epoch(&self) -> u64 {
        self.cluster.epoch()
    }

    fn append(&self, push: AppendPush) -> BoxFuture<'_, Result<Vec<Appended>, EngineError>> {
        Box::pin(async move {
            let msg_id = push.id.unwrap_or_else(fresh_msg_id);
            let message_id = message_id();
            let msg_id = &msg_id;
            futures_util::stream::iter(push.items)
                .map(|item| async move {
                    let key = key(&item.stream)?;
                    let meta = MessageMeta {
                        message_id,
                        priority: item.priority,
                        expires_at_ms: item.expires_at_ms,
                        receipt: item.receipt,
                    };
                    let done = self
                        .cluster
                        .append(&key, msg_id, meta, item.payload)
                        .await
                        .map_err(engine_error)?;
                    Ok::<_, EngineError>(Appended {
                        seq: done.seq,
                        cursor: done.cursor,
                        message_id,
                    })
                })
                .buffered(APPEND_CONCURRENCY)
                .try_collect()
                .await
        })
    }

    fn read(
        &self,
        stream: api::StreamKey,
        after: Position,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, EngineError>> {
        Box::pin(async move { self.read_after(&key(&stream)?, after, max, now_ms).await })
    }

    fn position(
        &self,
        stream: api::StreamKey,
        device: String,
    ) -> BoxFuture<'_, Result<Option<Position>, EngineError>> {
        Box::pin(async move {
            let login = LoginKey::of(key(&stream)?, &device).map_err(engine_error)?;
            let epoch = self.cluster.epoch();
            Ok(self
                .cluster
                .position(&login)
                .await
                .map_err(engine_error)?
                .filter(|p| p.epoch == epoch)
                .map(|p| Position {
                    seq: p.seq,
                    cursor: p.cursor,
                }))
        })
    }

    fn login(
        &self,
        stream: api::StreamKey,
        device: String,
        last_acked: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<LoginStart, EngineError>> {
        Box::pin(async move {
            let key = key(&stream)?;
            let login = LoginKey::of(key.clone(), &device).map_err(engine_error)?;
            let epoch = self.cluster.epoch();
            let position = self
                .cluster
                .position(&login)
                .await
                .map_err(engine_error)?
                .filter(|p| p.epoch == epoch)
                .map(|p| Position {
                    seq: p.seq,
                    cursor: p.cursor,
                });
            // The client's word may be ahead of the saved position (acks
            // not saved yet): resume after it, reading from the saved
            // cursor (a lower bound) and skipping what it acked.
            let start_after = match position {
                Some(saved) if saved.seq >= last_acked => saved,
                Some(saved) => Position {
                    seq: last_acked,
                    cursor: saved.cursor,
                },
                None => Position {
                    seq: last_acked,
                    cursor: 0,
                },
            };
            self.cluster
                .touch_alias(&stream.app, &stream.biz, &stream.alias)
                .await
                .map_err(engine_error)?;
            let batch = self.read_after(&key, start_after, max, now_ms).await?;
            Ok(LoginStart {
                position,
                start_after,
                batch,
            })
        })
    }

    fn ack(
        &self,
        stream: api::StreamKey,
        device: String,
        at: Position,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let login = LoginKey::of(key(&stream)?, &device).map_err(engine_error)?;
            let at = positions::Position {
                epoch: self.cluster.epoch(),
                seq: at.seq,
                cursor: at.cursor,
            };
            self.cluster
                .ack(&login, at)
                .await
                .map(drop)
                .map_err(engine_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliable_ids_stay_below_the_transient_range() {
        for _ in 0..10_000 {
            let id = message_id();
            assert!(id >= 1 && !api::is_transient_id(id), "{id}");
        }
    }
}

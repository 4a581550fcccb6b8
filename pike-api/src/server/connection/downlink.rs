//! Reliable downlink of a connection's logins: notifications of stored
//! messages, store reads to fill the window, pushes and acks.

use std::sync::Arc;

use pike_channel::{Push, StreamId};
use tokio::time::Instant;

use super::{Conn, Work, now};

/// Reads in a row that do not find an announced message before the
/// connection believes the store (the message expired on the way).
const MAX_UNCONFIRMED_READS: u8 = 8;
use crate::server::clock::unix_ms;
use crate::server::engine::{EngineError, Position};
use crate::server::receipts::ReceiptMessage;
use crate::server::store::{ReadBatch, StoredMessage, StreamKey};
use crate::server::trace;

impl Conn {
    /// Reads the store after the stream's position even when no newer
    /// message is known (unless a read is in flight already).
    pub(super) fn catch_up(&mut self, stream: StreamId) {
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        if state.reading {
            return;
        }
        state.reading = true;
        let hub = self.hub.clone();
        let key = state.key.clone();
        let after = Position {
            seq: state.next_seq - 1,
            cursor: state.read_cursor,
        };
        self.start(Box::pin(async move {
            let result = hub
                .engine
                .inbox
                .read(key, after, hub.config.read_batch, unix_ms())
                .await;
            Work::Read { stream, result }
        }));
    }

    /// A reliable message was stored in `key`.
    pub(super) fn stored(&mut self, key: &StreamKey, message: Arc<StoredMessage>) {
        let targets: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| &s.key == key)
            .map(|(id, _)| *id)
            .collect();
        for stream in targets {
            let Some(state) = self.streams.get_mut(&stream) else {
                continue;
            };
            state.last_known = state.last_known.max(message.seq);
            let direct =
                !state.reading && state.next_seq == message.seq && self.channel.can_push(stream);
            if direct {
                self.push_reliable(stream, &message);
            }
            self.fill(stream);
        }
    }

    /// Starts a store read if `stream` is behind and has window room.
    pub(super) fn fill(&mut self, stream: StreamId) {
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        if state.reading || state.next_seq > state.last_known || !self.channel.can_push(stream) {
            return;
        }
        self.catch_up(stream);
    }

    pub(super) fn read_done(&mut self, stream: StreamId, result: Result<ReadBatch, EngineError>) {
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        state.reading = false;
        let batch = match result {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "store read failed");
                metrics::counter!(crate::server::metric_families::ERRORS_TOTAL, "kind" => "store")
                    .increment(1);
                return;
            }
        };
        if batch.messages.is_empty() {
            if batch.last_seq >= state.last_known
                || state.unconfirmed_reads >= MAX_UNCONFIRMED_READS
            {
                // Everything after next_seq expired or was evicted.
                state.last_known = state.last_known.max(batch.last_seq);
                state.next_seq = state.next_seq.max(state.last_known + 1);
                state.unconfirmed_reads = 0;
                return;
            }
            // A message was announced that the read did not see yet (it
            // raced the read, or a replica is behind): skip only what the
            // engine says is gone, and read again.
            state.unconfirmed_reads += 1;
            state.next_seq = state.next_seq.max(batch.last_seq + 1);
            self.fill(stream);
            return;
        }
        state.unconfirmed_reads = 0;
        state.last_known = state.last_known.max(batch.last_seq);
        for message in batch.messages {
            if message.seq < self.streams.get(&stream).map_or(u64::MAX, |s| s.next_seq) {
                continue;
            }
            if !self.channel.can_push(stream) {
                break;
            }
            self.push_reliable(stream, &message);
        }
        self.fill(stream);
    }

    pub(super) fn push_reliable(&mut self, stream: StreamId, message: &StoredMessage) {
        let push = Push::new(message.payload.clone())
            .priority(message.priority)
            .expires_at_ms(message.expires_at_ms);
        match self.channel.push(stream, message.seq, push, now()) {
            Ok(()) => {
                self.hub.hot.reliable_sent.increment(1);
                if let Some(state) = self.streams.get_mut(&stream) {
                    state.next_seq = message.seq + 1;
                    state.read_cursor = message.cursor;
                    state.sent_at.get_or_insert_with(Box::default).push_back((
                        message.seq,
                        message.cursor,
                        Instant::now(),
                    ));
                }
                trace::lock(&self.trace).downlink(
                    unix_ms(),
                    stream.value(),
                    message.seq,
                    message.message_id,
                );
                if let Some(state) = self.streams.get(&stream) {
                    if message.receipt
                        && let Some(hook) = self.hub.receipts.as_deref()
                    {
                        // The log says it wants receipts: this node may
                        // not have taken the push (a cluster).
                        hook.adopt(
                            &state.key,
                            &ReceiptMessage {
                                message_id: message.message_id,
                                seq: message.seq,
                                expires_at_ms: message.expires_at_ms,
                            },
                        );
                    }
                    if let Some(hook) = self.hub.receipts_for(&state.key) {
                        hook.delivered(&state.key, self.device_id(), message.seq);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "push refused"),
        }
    }

    pub(super) fn acked(&mut self, stream: StreamId, seq: u64) {
        trace::lock(&self.trace).ack(unix_ms(), stream.value(), seq);
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        let at = Instant::now();
        // The cursor of the acked message when this connection sent it;
        // else (an ack of what an earlier connection was sent) the last
        // one known below it, which an engine reads on from and skips.
        let mut acked = Position {
            seq,
            cursor: state.acked.cursor,
        };
        if let Some(sent_at) = state.sent_at.as_mut() {
            while let Some(&(s, cursor, sent)) = sent_at.front() {
                if s > seq {
                    break;
                }
                sent_at.pop_front();
                acked.cursor = cursor;
                metrics::counter!(crate::server::metric_families::DOWNLINK_ACKED_TOTAL)
                    .increment(1);
                metrics::histogram!(crate::server::metric_families::DOWNLINK_ACK_SECONDS)
                    .record((at - sent).as_secs_f64());
            }
        }
        if acked.seq <= state.acked.seq {
            // Nothing new to save (a repeated or stale ack).
            self.fill(stream);
            return;
        }
        state.acked = acked;
        if let Some(hook) = self.hub.receipts_for(&state.key) {
            hook.acked(
                &state.key,
                self.channel.client_hello().device_id.as_str(),
                seq,
            );
        }
        let hub = self.hub.clone();
        let key = state.key.clone();
        let device = self.device_id().to_owned();
        self.start(Box::pin(async move {
            if let Err(e) = hub.engine.inbox.ack(key, device, acked).await {
                tracing::warn!(error = %e, "saving a device position failed");
            }
            Work::Done
        }));
        self.fill(stream);
    }
}

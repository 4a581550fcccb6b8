//! Uplink on the server side: each message is reported once per connection;
//! resends of a reported message are answered from memory, never reported
//! again.

use std::time::Instant;

use proto::channel::{Uplink, UplinkAck};
use proto::tunnel::ErrorCode;

use super::{ServerChannel, ServerEvent};
use crate::error::ReplyError;
use crate::frame_types;
use crate::ids::StreamId;
use crate::message::Message;

/// The outcome of an uplink message, for [`ServerChannel::ack_uplink`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct UplinkResult {
    code: ErrorCode,
    message: String,
    route_id: String,
}

impl UplinkResult {
    /// The backend accepted the message.
    pub fn accepted() -> Self {
        Self {
            code: ErrorCode::Unspecified,
            message: String::new(),
            route_id: String::new(),
        }
    }

    /// The gateway or backend refused the message for good.
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            route_id: String::new(),
        }
    }

    /// Tells the client its uplink now goes to another backend instance.
    #[must_use]
    pub fn with_route_id(mut self, route_id: impl Into<String>) -> Self {
        self.route_id = route_id.into();
        self
    }
}

impl ServerChannel {
    pub(super) fn handle_uplink(&mut self, m: Uplink, _now: Instant) {
        let stream = StreamId::new(m.stream);
        if !self.require_active(stream, frame_types::UPLINK) {
            return;
        }
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if entry.uplink_pending.contains(&m.seq) {
            self.stats.uplink_duplicates += 1;
            return;
        }
        if let Some((code, message)) = entry.uplink_results.get(&m.seq).cloned() {
            self.stats.uplink_duplicates += 1;
            let ack = UplinkAck {
                stream: m.stream,
                seq: m.seq,
                code: code.into(),
                message,
                route_id: String::new(),
            };
            self.transmit(&Message::UplinkAck(ack));
            return;
        }
        entry.uplink_pending.insert(m.seq);
        self.events.push_back(ServerEvent::Uplink {
            stream,
            seq: m.seq,
            idempotency_key: m.idempotency_key,
            payload: m.payload,
        });
    }

    /// Acks a reported uplink message with its outcome.
    pub fn ack_uplink(
        &mut self,
        stream: StreamId,
        seq: u64,
        result: UplinkResult,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        let memory = self.config.uplink_dedup_memory;
        let entry = self.active_stream(stream)?;
        if !entry.uplink_pending.remove(&seq) {
            return Err(ReplyError::NoPendingUplink { stream, seq });
        }
        entry.remember_result(seq, result.code, result.message.clone(), memory);
        let ack = UplinkAck {
            stream: stream.value(),
            seq,
            code: result.code.into(),
            message: result.message,
            route_id: result.route_id,
        };
        self.transmit(&Message::UplinkAck(ack));
        Ok(())
    }
}

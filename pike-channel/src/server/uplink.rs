//! Uplink on the server side: each message is reported once per connection;
//! resends of a reported message are answered from memory, never reported
//! again.
//!
//! Numbering: a client numbers the uplink messages of a login 1, 2, 3, ...
//! in send order, and a message keeps its number on every resend (also
//! after a reconnect and re-login). Per stream per connection the machine
//! answers seq 0 with `UPLINK_ACK INVALID_ARGUMENT`; a seq that is pending
//! (reported, not acked) gets no answer now (it is answered when done); a
//! seq whose result is remembered is answered from memory; any other seq
//! must be above the highest seq accepted for delivery on this connection,
//! else it is answered `UPLINK_ACK INVALID_ARGUMENT` and not reported, so
//! the backend gets a stream's messages in seq order. Gaps in the numbering
//! are allowed (messages the client gave up on).
//!
//! Two bounds keep what a client can make the gateway hold in check: the
//! uplink window (messages reported and not acked per stream, advertised in
//! the login result; a client beyond it is closed with `PROTOCOL`), and the
//! pending bytes of the connection (a message beyond them is answered at
//! once with `RATE_LIMITED`).

use std::time::Instant;

use proto::channel::{Uplink, UplinkAck};
use proto::tunnel::ErrorCode;

use super::limits::{MAX_IDEMPOTENCY_KEY_LEN, check_id};
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
    pub(super) fn handle_uplink(&mut self, m: Uplink, now: Instant) {
        let stream = StreamId::new(m.stream);
        if !self.require_active(stream, frame_types::UPLINK) {
            return;
        }
        let window = self.config.uplink_window;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if m.seq == 0 {
            self.stats.uplink_out_of_order += 1;
            let message =
                "uplink seq must be at least 1 (a login numbers its uplink messages 1, 2, 3, ...)"
                    .to_owned();
            self.send_uplink_ack(stream, m.seq, ErrorCode::InvalidArgument, message);
            return;
        }
        if entry.uplink_is_pending(m.seq) {
            self.stats.uplink_duplicates += 1;
            return;
        }
        if let Some((code, message)) = entry.uplink_result(m.seq) {
            self.stats.uplink_duplicates += 1;
            self.send_uplink_ack(stream, m.seq, code, message);
            return;
        }
        let highest = entry.uplink_accepted();
        if m.seq <= highest {
            self.stats.uplink_out_of_order += 1;
            let message = format!(
                "uplink seq {} is not above {highest}, the highest accepted on this login; \
                 uplink messages are delivered in seq order",
                m.seq
            );
            self.send_uplink_ack(stream, m.seq, ErrorCode::InvalidArgument, message);
            return;
        }
        if entry.uplink_pending_count() >= window as usize {
            let message = format!(
                "uplink window of stream {stream} exceeded: more than {window} messages unacked"
            );
            tracing::debug!(%stream, window, "client ignored the uplink window");
            self.close(ErrorCode::Protocol, message, now);
            return;
        }
        if let Err(message) = check_id(
            "idempotency_key",
            &m.idempotency_key,
            MAX_IDEMPOTENCY_KEY_LEN,
        ) {
            self.send_uplink_ack(stream, m.seq, ErrorCode::InvalidArgument, message);
            return;
        }
        let size = m.payload.len();
        let limit = self.config.uplink_pending_bytes;
        if self.uplink_pending_bytes > 0 && self.uplink_pending_bytes + size > limit {
            self.stats.uplink_refused += 1;
            let message = format!(
                "the connection has {} uplink bytes waiting for the backend (limit {limit}); retry later",
                self.uplink_pending_bytes
            );
            self.send_uplink_ack(stream, m.seq, ErrorCode::RateLimited, message);
            return;
        }
        self.uplink_pending_bytes += size;
        entry.accept_uplink(m.seq, size);
        self.events.push_back(ServerEvent::Uplink {
            stream,
            seq: m.seq,
            idempotency_key: m.idempotency_key,
            payload: m.payload,
            first_attempt: m.first_attempt,
        });
    }

    fn send_uplink_ack(&mut self, stream: StreamId, seq: u64, code: ErrorCode, message: String) {
        let ack = UplinkAck {
            stream: stream.value(),
            seq,
            code: code.into(),
            message,
            route_id: String::new(),
        };
        self.transmit(&Message::UplinkAck(ack));
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
        let Some(size) = entry.take_pending_uplink(seq) else {
            return Err(ReplyError::NoPendingUplink { stream, seq });
        };
        entry.remember_result(seq, result.code, result.message.clone(), memory);
        self.uplink_pending_bytes = self.uplink_pending_bytes.saturating_sub(size);
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

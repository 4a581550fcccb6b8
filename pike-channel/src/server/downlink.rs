//! Downlink on the server side: reliable pushes with a per-stream in-flight
//! window and cumulative acks, and transient pushes.

use std::time::Instant;

use bytes::Bytes;
use proto::channel::{Downlink, DownlinkAck};
use proto::tunnel::ErrorCode;

use super::{ServerChannel, ServerEvent};
use crate::error::PushError;
use crate::frame_types;
use crate::ids::StreamId;
use crate::message::Message;

/// A downlink message to push (everything but the stream and sequence).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Push {
    /// Gateway-assigned message id (tracing, push API answers).
    pub message_id: u64,
    /// Priority, 0 = normal; higher is more urgent.
    pub priority: u32,
    /// Expiry, unix milliseconds (0 = none).
    pub expires_at_ms: u64,
    /// The business payload.
    pub payload: Bytes,
}

impl Push {
    /// A message with this payload and default metadata.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Sets the message id.
    #[must_use]
    pub fn message_id(mut self, id: u64) -> Self {
        self.message_id = id;
        self
    }

    /// Sets the priority.
    #[must_use]
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the expiry (unix milliseconds).
    #[must_use]
    pub fn expires_at_ms(mut self, at: u64) -> Self {
        self.expires_at_ms = at;
        self
    }
}

impl ServerChannel {
    /// Pushes a reliable message with sequence number `seq` (above every
    /// sequence pushed on this stream on this connection). Sequences are
    /// strictly increasing per stream per connection; a skipped number
    /// means the log no longer holds it (expired, evicted), and the client
    /// reports it as a gap. The client acks cumulatively, covering gaps
    /// ([`ServerEvent::Acked`]); until then the message counts against the
    /// stream's window.
    pub fn push(
        &mut self,
        stream: StreamId,
        seq: u64,
        message: Push,
        _now: Instant,
    ) -> Result<(), PushError> {
        if self.is_closed() {
            return Err(PushError::Closed);
        }
        let window = self.config.downlink_window;
        let entry = self
            .streams
            .get_mut(&stream)
            .filter(|s| s.is_active())
            .ok_or(PushError::NotLoggedIn(stream))?;
        if seq == 0 || seq <= entry.last_pushed {
            return Err(PushError::SeqNotIncreasing {
                stream,
                seq,
                last: entry.last_pushed,
            });
        }
        if entry.in_flight.len() >= window as usize {
            return Err(PushError::WindowFull { stream, window });
        }
        entry.last_pushed = seq;
        entry.in_flight.push_back(seq);
        self.send_downlink(stream, seq, message);
        Ok(())
    }

    /// Pushes a transient message: not stored, never acked, not counted in
    /// the window.
    pub fn push_transient(
        &mut self,
        stream: StreamId,
        message: Push,
        _now: Instant,
    ) -> Result<(), PushError> {
        if self.is_closed() {
            return Err(PushError::Closed);
        }
        if !self.streams.get(&stream).is_some_and(|s| s.is_active()) {
            return Err(PushError::NotLoggedIn(stream));
        }
        self.send_downlink(stream, 0, message);
        Ok(())
    }

    /// Reliable messages of `stream` pushed and not acked yet.
    pub fn in_flight(&self, stream: StreamId) -> Option<usize> {
        self.streams.get(&stream).map(|s| s.in_flight.len())
    }

    /// Whether a reliable push to `stream` fits the window now.
    pub fn can_push(&self, stream: StreamId) -> bool {
        self.streams.get(&stream).is_some_and(|s| {
            s.is_active() && s.in_flight.len() < self.config.downlink_window as usize
        })
    }

    /// The highest sequence `stream`'s client acked on this connection.
    pub fn acked(&self, stream: StreamId) -> Option<u64> {
        self.streams.get(&stream).map(|s| s.acked)
    }

    fn send_downlink(&mut self, stream: StreamId, seq: u64, message: Push) {
        self.stats.pushed += 1;
        let downlink = Downlink {
            stream: stream.value(),
            seq,
            message_id: message.message_id,
            priority: message.priority,
            expires_at_ms: message.expires_at_ms,
            payload: message.payload,
        };
        self.transmit(&Message::Downlink(downlink));
    }

    /// A cumulative ack: the client needs no message of the stream with a
    /// sequence at or below `seq` again (received, or skipped as a gap).
    ///
    /// A stream that is not logged in (unknown, or its login is still
    /// pending) is answered `ERROR NOT_LOGGED_IN`; a `seq` above the highest
    /// sequence sent on the stream on this connection is answered `ERROR
    /// INVALID_ARGUMENT` and ignored (a position from an earlier connection
    /// goes in `Login.last_acked_seq`). Sequence 0 and acks at or below the
    /// acked position are silent no-ops (clients re-ack duplicates).
    pub(super) fn handle_downlink_ack(&mut self, m: DownlinkAck) {
        let stream = StreamId::new(m.stream);
        if !self.require_active(stream, frame_types::DOWNLINK_ACK) {
            self.stats.acks_not_logged_in += 1;
            return;
        }
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let sent = entry.last_pushed;
        if m.seq > sent {
            self.stats.acks_above_sent += 1;
            let message = ack_above_sent(m.seq, sent, stream);
            self.error_frame(
                ErrorCode::InvalidArgument,
                &message,
                stream,
                frame_types::DOWNLINK_ACK,
            );
            return;
        }
        if entry.on_ack(m.seq) {
            self.events
                .push_back(ServerEvent::Acked { stream, seq: m.seq });
        }
    }
}

/// The error text for an ack of a sequence this connection never sent.
fn ack_above_sent(seq: u64, sent: u64, stream: StreamId) -> String {
    format!(
        "ack {seq} is above {sent}, the highest seq sent on stream {stream} on this connection; \
         a position from an earlier connection goes in Login.last_acked_seq"
    )
}

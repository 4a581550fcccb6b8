//! Uplink per stream (seed 6.2.2): a send window of in-flight messages, a
//! queue beyond it, per-message ack timeouts, and resend after a reconnect
//! in the original order with the same sequence numbers and idempotency
//! keys.
//!
//! An ack timeout does not fail the message while the channel may still
//! deliver it: it is counted for the inspection and stays in flight. A
//! message fails only when the server refuses it, when it has been
//! transmitted `max_send_attempts` times, or when its login goes away.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::channel::{Uplink, UplinkAck};
use proto::tunnel::ErrorCode;

use super::{ClientChannel, Event, SendFailureReason};
use crate::error::SendError;
use crate::ids::{SendId, StreamId};
use crate::message::Message;

/// One unacked message.
#[derive(Debug)]
struct PendingSend {
    id: SendId,
    seq: u64,
    key: String,
    /// `key` is new: generated here (unique per login) or vouched for by
    /// the caller ([`ClientChannel::send_new_key`]); its first transmission
    /// is flagged `first_attempt`.
    new_key: bool,
    payload: Bytes,
    /// Transmissions so far.
    attempts: u32,
    /// When it was sent on the current connection (None = not sent on it).
    sent_at: Option<Instant>,
    /// Its ack timeout was already counted on this connection.
    timed_out: bool,
}

/// Send side of one stream's uplink. The messages sent on the current
/// connection are always a prefix of `queue` (sending goes in order).
#[derive(Debug)]
pub(super) struct UplinkQueue {
    /// Random per-login prefix of generated idempotency keys.
    key_prefix: u64,
    next_seq: u64,
    queue: VecDeque<PendingSend>,
    in_flight: u32,
    /// The uplink window the server advertised in the last login result (0:
    /// none; the configured window applies alone).
    pub(super) server_window: u32,
}

impl UplinkQueue {
    pub(super) fn new(key_prefix: u64) -> Self {
        Self {
            key_prefix,
            next_seq: 1,
            queue: VecDeque::new(),
            in_flight: 0,
            server_window: 0,
        }
    }

    /// The window in effect: the configured one, narrowed to the server's.
    fn window(&self, configured: u32) -> u32 {
        match self.server_window {
            0 => configured,
            advertised => configured.min(advertised),
        }
    }

    pub(super) fn in_flight(&self) -> u32 {
        self.in_flight
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// The earliest ack timeout not counted yet.
    pub(super) fn next_timeout(&self, timeout: Duration) -> Option<Instant> {
        self.queue
            .iter()
            .take_while(|p| p.sent_at.is_some())
            .filter(|p| !p.timed_out)
            .filter_map(|p| p.sent_at)
            .min()
            .map(|sent| sent + timeout)
    }

    pub(super) fn on_link_lost(&mut self) {
        for pending in &mut self.queue {
            pending.sent_at = None;
            pending.timed_out = false;
        }
        self.in_flight = 0;
    }

    /// Removes every message, returning ids and sequence numbers in order.
    pub(super) fn drain(&mut self) -> Vec<(SendId, u64)> {
        self.in_flight = 0;
        self.queue.drain(..).map(|p| (p.id, p.seq)).collect()
    }
}

impl ClientChannel {
    /// Queues an uplink message on `stream`'s login.
    ///
    /// The message gets the next sequence number of the stream and
    /// `idempotency_key` (or a generated one, unique per login) and keeps both
    /// on every resend. It is transmitted as soon as the stream is logged in
    /// and its send window has room; the outcome arrives as
    /// [`Event::SendSuccess`] or [`Event::SendFailure`] with the returned id.
    ///
    /// Every send first checks the heartbeat: if the outstanding ping has
    /// timed out, the link is declared dead at once (the message waits for
    /// the reconnect).
    pub fn send(
        &mut self,
        stream: StreamId,
        payload: impl Into<Bytes>,
        idempotency_key: Option<String>,
        now: Instant,
    ) -> Result<SendId, SendError> {
        let new_key = idempotency_key.is_none();
        self.queue_send(stream, payload.into(), idempotency_key, new_key, now)
    }

    /// Queues an uplink message like [`send`](Self::send) with `key`, the
    /// caller vouching that no one sent `key` before (it made it unique,
    /// say from a random prefix, and has not placed it on another channel).
    /// Like a generated key, its first transmission then says so
    /// (`Uplink.first_attempt`) and the gateway skips its dedup lookup; its
    /// resends do not. A key that may have been sent before (by an earlier
    /// process, on another connection) must go through
    /// [`send`](Self::send): wrongly vouched, only this message is at stake
    /// (the backend may get it twice).
    pub fn send_new_key(
        &mut self,
        stream: StreamId,
        payload: impl Into<Bytes>,
        key: String,
        now: Instant,
    ) -> Result<SendId, SendError> {
        self.queue_send(stream, payload.into(), Some(key), true, now)
    }

    fn queue_send(
        &mut self,
        stream: StreamId,
        payload: Bytes,
        idempotency_key: Option<String>,
        new_key: bool,
        now: Instant,
    ) -> Result<SendId, SendError> {
        if matches!(self.state(), super::ConnectionState::Closed) {
            return Err(SendError::Stopped);
        }
        let limit = self.config.max_queued_sends;
        let entry = self
            .logins
            .get_mut(&stream)
            .ok_or(SendError::UnknownStream(stream))?;
        if entry.uplink.len() >= limit {
            return Err(SendError::QueueFull { stream, limit });
        }
        let id = SendId::new(self.next_send_id);
        self.next_send_id += 1;
        let queue = &mut entry.uplink;
        let seq = queue.next_seq;
        queue.next_seq += 1;
        let key = idempotency_key.unwrap_or_else(|| format!("{:016x}-{seq}", queue.key_prefix));
        queue.queue.push_back(PendingSend {
            id,
            seq,
            key,
            new_key,
            payload,
            attempts: 0,
            sent_at: None,
            timed_out: false,
        });
        if !self.check_heartbeat(now) {
            self.pump_uplink(stream, now);
        }
        self.update_timers();
        Ok(id)
    }

    /// Uplink messages of `stream` sent on the current connection and not
    /// acked yet.
    pub fn in_flight(&self, stream: StreamId) -> Option<u32> {
        self.logins.get(&stream).map(|l| l.uplink.in_flight())
    }

    /// Uplink messages of `stream` not acked yet (in flight plus queued).
    pub fn pending_sends(&self, stream: StreamId) -> Option<usize> {
        self.logins.get(&stream).map(|l| l.uplink.len())
    }

    /// Transmits queued messages of `stream` while its window has room.
    pub(super) fn pump_uplink(&mut self, stream: StreamId, now: Instant) {
        if !self.link.is_connected() {
            return;
        }
        let configured = self.config.send_window;
        let max_attempts = self.config.max_send_attempts;
        loop {
            let Some(entry) = self.logins.get_mut(&stream) else {
                return;
            };
            if !entry.is_active() || entry.uplink.in_flight >= entry.uplink.window(configured) {
                return;
            }
            let queue = &mut entry.uplink;
            let index = queue.in_flight as usize;
            let Some(pending) = queue.queue.get_mut(index) else {
                return;
            };
            if pending.attempts >= max_attempts {
                let attempts = pending.attempts;
                let Some(failed) = queue.queue.remove(index) else {
                    return;
                };
                self.events.push_back(Event::SendFailure {
                    stream,
                    id: failed.id,
                    seq: failed.seq,
                    reason: SendFailureReason::MaxAttempts { attempts },
                });
                continue;
            }
            let resend = pending.attempts > 0;
            pending.attempts += 1;
            pending.sent_at = Some(now);
            pending.timed_out = false;
            queue.in_flight += 1;
            let uplink = Uplink {
                stream: stream.value(),
                seq: pending.seq,
                idempotency_key: pending.key.clone(),
                payload: pending.payload.clone(),
                // No connection carried it and no earlier process can have
                // sent its key: the gateway need not look the key up.
                first_attempt: !resend && pending.new_key,
            };
            self.stats.uplink_sent += 1;
            if resend {
                self.stats.uplink_resent += 1;
            }
            self.transmit(&Message::Uplink(uplink), now);
        }
    }

    pub(super) fn handle_uplink_ack(&mut self, m: UplinkAck, now: Instant) {
        let stream = StreamId::new(m.stream);
        let Some(entry) = self.logins.get_mut(&stream) else {
            self.stats.unknown_target_frames += 1;
            return;
        };
        if !m.route_id.is_empty() {
            entry.params.route_id.clone_from(&m.route_id);
        }
        let queue = &mut entry.uplink;
        let in_flight = queue.in_flight as usize;
        let Some(index) = queue
            .queue
            .iter()
            .take(in_flight)
            .position(|p| p.seq == m.seq)
        else {
            return; // an ack for a message acked already (resend raced the ack)
        };
        let Some(acked) = queue.queue.remove(index) else {
            return;
        };
        queue.in_flight -= 1;
        self.record_success();
        let code = m.code();
        let event = if code == ErrorCode::Unspecified {
            Event::SendSuccess {
                stream,
                id: acked.id,
                seq: acked.seq,
            }
        } else {
            Event::SendFailure {
                stream,
                id: acked.id,
                seq: acked.seq,
                reason: SendFailureReason::Rejected {
                    code,
                    message: m.message,
                },
            }
        };
        self.events.push_back(event);
        self.pump_uplink(stream, now);
    }

    /// Counts the ack timeouts that expired; they stay in flight.
    pub(super) fn on_send_timer(&mut self, now: Instant) {
        if !self.link.is_connected() {
            return;
        }
        let timeout = self.config.send_timeout;
        let mut expired = 0u32;
        for entry in self.logins.values_mut() {
            for pending in entry
                .uplink
                .queue
                .iter_mut()
                .take_while(|p| p.sent_at.is_some())
            {
                if !pending.timed_out && pending.sent_at.is_some_and(|sent| sent + timeout <= now) {
                    pending.timed_out = true;
                    expired += 1;
                }
            }
        }
        for _ in 0..expired {
            self.stats.send_timeouts += 1;
            tracing::debug!("uplink ack timeout");
            if self.record_timeout(now) {
                return;
            }
        }
    }
}

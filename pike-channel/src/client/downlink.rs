//! Reliable downlink per stream: dedup by sequence number, in-order
//! delivery, gap reports, coalesced cumulative acks. An ack of `seq` means
//! the client needs no message with a sequence at or below it again
//! (received, or skipped as a gap), so after a gap the ack covers the
//! skipped numbers. Transient messages (sequence 0) are delivered and never
//! acked.
//!
//! The position survives reconnects: the re-login reports the last delivered
//! sequence, the server redelivers from there, and anything at or below it is
//! dropped as a duplicate, so the business sees each reliable message once.

use std::time::Instant;

use proto::channel::{Downlink, DownlinkAck};

use super::{ClientChannel, Delivery, Event};
use crate::ids::StreamId;
use crate::message::Message;

/// What to do with an incoming reliable or transient message.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum Incoming {
    /// Sequence 0: deliver, never ack.
    Transient,
    /// Already delivered: drop (but ack again).
    Duplicate,
    /// The next one: deliver.
    InOrder,
    /// Sequence numbers were skipped: report the gap, deliver.
    AfterGap {
        /// The sequence number that was expected.
        expected: u64,
    },
}

/// Receive side of one stream's downlink.
#[derive(Debug)]
pub(super) struct DownlinkReceiver {
    /// Highest sequence delivered to the business.
    delivered: u64,
    /// Highest sequence acked to the server (by an ack or a login).
    acked: u64,
    /// Deliveries since the last ack.
    unacked: u32,
    /// When the coalesced ack is due.
    ack_due: Option<Instant>,
    /// A duplicate arrived: ack again even if nothing new was delivered.
    reack: bool,
}

impl DownlinkReceiver {
    pub(super) fn new(position: u64) -> Self {
        Self {
            delivered: position,
            acked: position,
            unacked: 0,
            ack_due: None,
            reack: false,
        }
    }

    pub(super) fn delivered(&self) -> u64 {
        self.delivered
    }

    pub(super) fn ack_due(&self) -> Option<Instant> {
        self.ack_due
    }

    /// Classifies `seq` and advances the position.
    pub(super) fn receive(&mut self, seq: u64, ack_at: Instant) -> Incoming {
        if seq == 0 {
            return Incoming::Transient;
        }
        self.ack_due.get_or_insert(ack_at);
        if seq <= self.delivered {
            self.reack = true;
            return Incoming::Duplicate;
        }
        let expected = self.delivered + 1;
        self.delivered = seq;
        self.unacked += 1;
        if seq == expected {
            Incoming::InOrder
        } else {
            Incoming::AfterGap { expected }
        }
    }

    pub(super) fn unacked(&self) -> u32 {
        self.unacked
    }

    /// The cumulative ack to send now, if one is needed.
    pub(super) fn take_ack(&mut self) -> Option<u64> {
        self.ack_due = None;
        let reack = std::mem::take(&mut self.reack);
        if self.delivered > self.acked || reack {
            self.acked = self.delivered;
            self.unacked = 0;
            return Some(self.delivered);
        }
        None
    }

    /// A login carries the position: it acts as an ack. Returns it.
    pub(super) fn on_login_sent(&mut self) -> u64 {
        self.acked = self.delivered;
        self.unacked = 0;
        self.ack_due = None;
        self.reack = false;
        self.delivered
    }

    pub(super) fn on_link_lost(&mut self) {
        self.ack_due = None;
        self.reack = false;
    }
}

impl ClientChannel {
    pub(super) fn handle_downlink(&mut self, m: Downlink, now: Instant) {
        let stream = StreamId::new(m.stream);
        let ack_at = now + self.config.ack_delay;
        let Some(entry) = self.logins.get_mut(&stream) else {
            self.stats.unknown_target_frames += 1;
            return;
        };
        let incoming = entry.downlink.receive(m.seq, ack_at);
        let ack_now = entry.downlink.unacked() >= self.config.ack_threshold;
        let delivery = Delivery {
            stream,
            seq: m.seq,
            message_id: m.message_id,
            priority: m.priority,
            expires_at_ms: m.expires_at_ms,
            payload: m.payload,
        };
        match incoming {
            Incoming::Transient => {
                self.stats.transient_delivered += 1;
                self.events.push_back(Event::Received(delivery));
            }
            Incoming::Duplicate => {
                self.stats.duplicates_dropped += 1;
                tracing::trace!(%stream, seq = m.seq, "duplicate downlink dropped");
            }
            Incoming::InOrder => {
                self.stats.delivered += 1;
                self.events.push_back(Event::Received(delivery));
            }
            Incoming::AfterGap { expected } => {
                self.stats.gaps += 1;
                self.stats.delivered += 1;
                tracing::debug!(%stream, expected, got = m.seq, "downlink gap");
                self.events.push_back(Event::Gap {
                    stream,
                    expected,
                    got: m.seq,
                });
                self.events.push_back(Event::Received(delivery));
            }
        }
        if ack_now {
            self.send_ack(stream, now);
        }
    }

    pub(super) fn on_ack_timer(&mut self, now: Instant) {
        if !self.link.is_connected() {
            return;
        }
        let due: Vec<StreamId> = self
            .logins
            .iter()
            .filter(|(_, l)| l.is_active() && l.downlink.ack_due().is_some_and(|at| at <= now))
            .map(|(s, _)| *s)
            .collect();
        for stream in due {
            self.send_ack(stream, now);
        }
    }

    /// Sends `stream`'s cumulative ack if one is due. Only an active
    /// login acks: the server answers an ack for a login it has not
    /// accepted with `NOT_LOGGED_IN` (which makes an active login log in
    /// again), and a login on its way carries the position itself.
    fn send_ack(&mut self, stream: StreamId, now: Instant) {
        let Some(seq) = self
            .logins
            .get_mut(&stream)
            .filter(|l| l.is_active())
            .and_then(|l| l.downlink.take_ack())
        else {
            return;
        };
        self.stats.acks_sent += 1;
        self.transmit(
            &Message::DownlinkAck(DownlinkAck {
                stream: stream.value(),
                seq,
            }),
            now,
        );
    }

    /// The highest reliable downlink sequence delivered on `stream` (what
    /// the next login reports; save it to resume in a later session).
    pub fn last_delivered(&self, stream: StreamId) -> Option<u64> {
        self.logins.get(&stream).map(|l| l.downlink.delivered())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_and_ack() {
        let t = crate::tests::util::origin();
        let mut d = DownlinkReceiver::new(0);
        assert_eq!(d.receive(0, t), Incoming::Transient);
        assert_eq!(d.ack_due(), None);
        assert_eq!(d.receive(1, t), Incoming::InOrder);
        assert_eq!(d.receive(1, t), Incoming::Duplicate);
        assert_eq!(d.receive(4, t), Incoming::AfterGap { expected: 2 });
        assert_eq!(d.receive(3, t), Incoming::Duplicate);
        assert_eq!(d.unacked(), 2);
        assert_eq!(d.take_ack(), Some(4));
        assert_eq!(d.take_ack(), None);
        assert_eq!(d.receive(2, t), Incoming::Duplicate);
        assert_eq!(d.take_ack(), Some(4), "a duplicate is acked again");
        assert_eq!(d.on_login_sent(), 4);
    }
}

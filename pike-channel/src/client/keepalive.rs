//! Heartbeat (seed 5.3.1): a ping only when the link has been idle in either
//! direction for the interval, so no heartbeat while data flows both ways; a
//! ping unanswered for the timeout means the link is dead. Every uplink send
//! also checks the outstanding ping, so a dead link is found at once rather
//! than at the next timer.

use std::time::{Duration, Instant};

use proto::channel::{Ping, Pong};

use super::{ClientChannel, DisconnectReason};
use crate::message::Message;

/// Heartbeat bookkeeping of one connection.
#[derive(Debug)]
pub(super) struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    last_tx: Option<Instant>,
    last_rx: Option<Instant>,
    /// When the outstanding ping was sent.
    ping: Option<Instant>,
}

impl KeepAlive {
    pub(super) fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            last_tx: None,
            last_rx: None,
            ping: None,
        }
    }

    /// A fresh connection at `now` with these parameters.
    pub(super) fn reset(&mut self, interval: Duration, timeout: Duration, now: Instant) {
        *self = Self {
            interval,
            timeout,
            last_tx: Some(now),
            last_rx: Some(now),
            ping: None,
        };
    }

    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When a ping is due: once either direction has been idle for the
    /// interval (`min(last_tx, last_rx) + interval`). None while a ping is
    /// outstanding.
    pub(super) fn next_ping_at(&self) -> Option<Instant> {
        if self.ping.is_some() {
            return None;
        }
        let last = self.last_tx?.min(self.last_rx?);
        Some(last + self.interval)
    }

    /// When the outstanding ping times out.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.ping.map(|sent| sent + self.timeout)
    }

    /// Whether the outstanding ping has timed out at `now`.
    pub(super) fn is_dead(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// Any frame from the server proves the link alive.
    pub(super) fn on_receive(&mut self, now: Instant) {
        self.last_rx = Some(now);
        self.ping = None;
    }

    pub(super) fn on_transmit(&mut self, now: Instant) {
        self.last_tx = Some(now);
    }

    fn on_ping_sent(&mut self, now: Instant) {
        self.ping = Some(now);
    }
}

impl ClientChannel {
    pub(super) fn on_heartbeat_timer(&mut self, now: Instant) {
        if !self.link.is_connected() {
            return;
        }
        if self.keepalive.next_ping_at().is_some_and(|due| due <= now) {
            // Nonce 0: the body is empty and a ping is 2 bytes on the wire. Any
            // frame from the server answers it, so nothing needs matching.
            self.transmit(&Message::Ping(Ping { nonce: 0 }), now);
            self.keepalive.on_ping_sent(now);
            self.stats.pings_sent += 1;
        }
    }

    pub(super) fn on_heartbeat_timeout(&mut self, now: Instant) {
        if self.link.is_connected() && self.keepalive.is_dead(now) {
            self.heartbeat_dead(now);
        }
    }

    /// The check made on every uplink send: if the outstanding ping has
    /// timed out, declare the link dead now. Returns whether it was.
    pub(super) fn check_heartbeat(&mut self, now: Instant) -> bool {
        if self.link.is_connected() && self.keepalive.is_dead(now) {
            self.heartbeat_dead(now);
            return true;
        }
        false
    }

    fn heartbeat_dead(&mut self, now: Instant) {
        tracing::debug!("heartbeat timeout: link dead");
        self.stats.heartbeat_timeouts += 1;
        if self.record_timeout(now) {
            return;
        }
        self.lose_link(DisconnectReason::HeartbeatTimeout, None, true, now);
    }

    pub(super) fn handle_ping(&mut self, m: Ping, now: Instant) {
        self.transmit(&Message::Pong(Pong { nonce: m.nonce }), now);
    }

    pub(super) fn handle_pong(&mut self, _m: Pong) {
        // `on_receive` already cleared the outstanding ping: any frame counts.
        self.stats.pongs_received += 1;
        self.record_success();
    }
}

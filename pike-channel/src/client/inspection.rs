//! Channel inspection (seed 5.3.3): a periodic timer, with the heartbeat
//! interval as period, that (a) restarts a channel that is neither stopped
//! nor usable and has nothing pending that would repair it, and (b) a
//! counter of consecutive send/receive timeouts (uplink ack timeouts,
//! heartbeat timeouts) that force-closes and restarts the channel when it
//! reaches the configured threshold. Any uplink ack or pong resets it.

use std::time::Instant;

use super::{ClientChannel, DisconnectReason, Event};
use crate::timer::ClientTimer;

/// The timeout counter.
#[derive(Debug, Default)]
pub(super) struct Inspection {
    consecutive_timeouts: u32,
}

impl Inspection {
    pub(super) fn consecutive(&self) -> u32 {
        self.consecutive_timeouts
    }

    pub(super) fn reset(&mut self) {
        self.consecutive_timeouts = 0;
    }
}

impl ClientChannel {
    /// Arms the next inspection tick one heartbeat interval from `now`.
    pub(super) fn arm_inspection(&mut self, now: Instant) {
        self.timers
            .set(ClientTimer::Inspection, now + self.keepalive.interval());
    }

    pub(super) fn on_inspection_timer(&mut self, now: Instant) {
        if !self.is_running() {
            return;
        }
        self.arm_inspection(now);
        if let Some((id, since)) = self.connecting_since() {
            if now.saturating_duration_since(since) >= self.config.connect_timeout {
                tracing::debug!(%id, "inspection: dial stuck; restarting");
                self.stats.forced_restarts += 1;
                self.events.push_back(Event::Disconnect {
                    id,
                    reason: DisconnectReason::ConnectTimeout,
                    close: None,
                });
                self.begin_connect(now);
            }
            return;
        }
        if self.is_backing_off() && self.reconnect_at().is_none() {
            tracing::debug!("inspection: down with no reconnect pending; forcing a connect");
            self.stats.forced_restarts += 1;
            self.begin_connect(now);
            return;
        }
        // The heartbeat check of the seed's "heartbeat patrol": normally the
        // timeout timer has already fired.
        self.check_heartbeat(now);
    }

    /// Counts a send/receive timeout. At the threshold the channel is force
    /// closed and dialled again at once; returns whether that happened.
    pub(super) fn record_timeout(&mut self, now: Instant) -> bool {
        self.inspection.consecutive_timeouts += 1;
        if self.inspection.consecutive_timeouts < self.config.max_consecutive_timeouts {
            return false;
        }
        tracing::debug!(
            timeouts = self.inspection.consecutive_timeouts,
            "inspection: too many consecutive timeouts; forcing a restart"
        );
        self.inspection.reset();
        self.stats.forced_restarts += 1;
        self.tear_down(DisconnectReason::TooManyTimeouts, None, true, now);
        self.begin_connect(now);
        true
    }

    /// A timed operation succeeded (uplink ack, pong).
    pub(super) fn record_success(&mut self) {
        self.inspection.reset();
    }
}

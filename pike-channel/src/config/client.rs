//! Client-side settings.

use std::time::Duration;

use tunnelkit::{BackoffConfig, FibonacciBackoff};

use super::{check_count, check_duration};
use crate::error::ConfigError;

/// Settings of a [`ClientChannel`](crate::ClientChannel).
///
/// The defaults and the reasons for them are in `docs/channel.md`; in short:
/// the heartbeat stays well below the 5-minute carrier NAT timeout that
/// Hermes measured, reconnects back off along a capped Fibonacci sequence
/// with jitter, and the first reconnect after a long-lived connection drops
/// is spread over a window so that a server crash does not cause a
/// synchronized reconnect storm.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff: BackoffConfig,
    pub(crate) reconnect_spread: Duration,
    pub(crate) stable_period: Duration,
    pub(crate) crash_window_retries: u8,
    pub(crate) ack_delay: Duration,
    pub(crate) ack_threshold: u32,
    pub(crate) send_window: u32,
    pub(crate) send_timeout: Duration,
    pub(crate) max_send_attempts: u32,
    pub(crate) max_queued_sends: usize,
    pub(crate) max_consecutive_timeouts: u32,
    pub(crate) room_pull_wait: Duration,
    pub(crate) room_pull_grace: Duration,
    pub(crate) room_pull_max: u32,
    pub(crate) login_retry_delay: Duration,
    pub(crate) credential_refresh_margin: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            reconnect_spread: Duration::from_secs(10),
            stable_period: Duration::from_secs(30),
            crash_window_retries: 3,
            ack_delay: Duration::from_millis(20),
            ack_threshold: 32,
            send_window: 16,
            send_timeout: Duration::from_secs(10),
            max_send_attempts: 5,
            max_queued_sends: 1024,
            max_consecutive_timeouts: 3,
            room_pull_wait: Duration::from_secs(30),
            room_pull_grace: Duration::from_secs(5),
            room_pull_max: 100,
            login_retry_delay: Duration::from_secs(5),
            credential_refresh_margin: Duration::from_secs(60),
        }
    }
}

impl ClientConfig {
    /// Heartbeat interval: a ping is sent once either direction has been idle
    /// this long. Default 60 s, bounds 1 s ..= 1 h. A non-zero
    /// `heartbeat_interval_ms` in the server hello overrides it. The channel
    /// inspection timer runs with the same period.
    pub fn heartbeat_interval(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        self.heartbeat_interval = check_duration(
            "heartbeat_interval",
            value,
            Duration::from_secs(1),
            Duration::from_secs(3600),
            "1 s ..= 1 h",
        )?;
        Ok(self)
    }

    /// Heartbeat timeout: a ping not answered by any frame within this time
    /// means the link is dead. Default 20 s, bounds 1 s ..= 10 min. A
    /// non-zero `heartbeat_timeout_ms` in the server hello overrides it.
    pub fn heartbeat_timeout(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        self.heartbeat_timeout = check_duration(
            "heartbeat_timeout",
            value,
            Duration::from_secs(1),
            Duration::from_secs(600),
            "1 s ..= 10 min",
        )?;
        Ok(self)
    }

    /// A dial the driver has not reported on after this long counts as stuck;
    /// the next inspection tick aborts it and dials again. Default 30 s,
    /// bounds 1 s ..= 10 min.
    pub fn connect_timeout(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        self.connect_timeout = check_duration(
            "connect_timeout",
            value,
            Duration::from_secs(1),
            Duration::from_secs(600),
            "1 s ..= 10 min",
        )?;
        Ok(self)
    }

    /// Reconnect backoff (`tunnelkit::FibonacciBackoff`): after the `n`-th
    /// consecutive failure the delay is `base * fib(n)` (1, 1, 2, 3, 5, ...),
    /// drawn uniformly in `[d * (1 - jitter), d * (1 + jitter)]` and capped
    /// at `max`. Defaults 1 s, 60 s, 0.5; bounds: base 10 ms ..= 1 h, base
    /// <= max <= 24 h, jitter 0.0 ..= 1.0.
    pub fn backoff(
        &mut self,
        base: Duration,
        max: Duration,
        jitter: f64,
    ) -> Result<&mut Self, ConfigError> {
        let base = check_duration(
            "backoff_base",
            base,
            Duration::from_millis(10),
            Duration::from_secs(3600),
            "10 ms ..= 1 h",
        )?;
        let max = check_duration(
            "backoff_max",
            max,
            base,
            Duration::from_secs(86_400),
            "base ..= 24 h",
        )?;
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ConfigError::OutOfBounds {
                setting: "backoff_jitter",
                detail: "0.0 ..= 1.0",
            });
        }
        let mut backoff = self.backoff;
        backoff.unit(base).cap(max).jitter(jitter);
        FibonacciBackoff::new(backoff, 0).map_err(|_| ConfigError::OutOfBounds {
            setting: "backoff",
            detail: "rejected by tunnelkit::FibonacciBackoff",
        })?;
        self.backoff = backoff;
        Ok(self)
    }

    /// The first reconnect after losing a stable connection waits a delay
    /// picked uniformly in `[0, spread]`, unless the server advised a range
    /// (hello, go-away or close). Spreads the reconnects of many clients that
    /// lose a server at the same moment. Default 10 s, bounds 0 ..= 10 min.
    pub fn reconnect_spread(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        self.reconnect_spread = check_duration(
            "reconnect_spread",
            value,
            Duration::ZERO,
            Duration::from_secs(600),
            "0 ..= 10 min",
        )?;
        Ok(self)
    }

    /// After losing a stable connection, this many dials that fail in a row
    /// are each retried at a delay drawn again in the crash window the
    /// server's hello advised (a restarted gateway is often not listening
    /// yet for the first of its clients), before the Fibonacci backoff
    /// takes over. 0: the backoff at once. Default 3, bounds 0 ..= 10.
    pub fn crash_window_retries(&mut self, value: u8) -> Result<&mut Self, ConfigError> {
        self.crash_window_retries = check_count("crash_window_retries", value, 0, 10, "0 ..= 10")?;
        Ok(self)
    }

    /// A connection that stayed up this long resets the backoff. Default
    /// 30 s, bounds 1 s ..= 1 h.
    pub fn stable_period(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        self.stable_period = check_duration(
            "stable_period",
            value,
            Duration::from_secs(1),
            Duration::from_secs(3600),
            "1 s ..= 1 h",
        )?;
        self.backoff.stable_period(self.stable_period);
        Ok(self)
    }

    /// Downlink acks are coalesced: one cumulative ack at most `delay` after
    /// the first unacked delivery, or at once when `threshold` deliveries are
    /// unacked. Defaults 20 ms and 32; bounds 0 ..= 10 s and 1 ..= 65536.
    pub fn downlink_ack(
        &mut self,
        delay: Duration,
        threshold: u32,
    ) -> Result<&mut Self, ConfigError> {
        let delay = check_duration(
            "ack_delay",
            delay,
            Duration::ZERO,
            Duration::from_secs(10),
            "0 ..= 10 s",
        )?;
        let threshold = check_count("ack_threshold", threshold, 1, 65_536, "1 ..= 65536")?;
        self.ack_delay = delay;
        self.ack_threshold = threshold;
        Ok(self)
    }

    /// Uplink messages in flight (sent, not acked) per stream. Default 16,
    /// bounds 1 ..= 65536; 1 reproduces the seed's naive one-at-a-time
    /// scheme. A server that advertises a smaller window in its login
    /// result narrows it for that login.
    pub fn send_window(&mut self, value: u32) -> Result<&mut Self, ConfigError> {
        self.send_window = check_count("send_window", value, 1, 65_536, "1 ..= 65536")?;
        Ok(self)
    }

    /// An in-flight uplink message without an ack after this long counts as
    /// a send timeout (for the inspection); it stays pending. Default 10 s,
    /// bounds 100 ms ..= 1 h.
    pub fn send_timeout(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        self.send_timeout = check_duration(
            "send_timeout",
            value,
            Duration::from_millis(100),
            Duration::from_secs(3600),
            "100 ms ..= 1 h",
        )?;
        Ok(self)
    }

    /// Transmissions of one uplink message (first send plus resends after
    /// reconnects) before it is reported as failed. Default 5, bounds
    /// 1 ..= 1000.
    pub fn max_send_attempts(&mut self, value: u32) -> Result<&mut Self, ConfigError> {
        self.max_send_attempts = check_count("max_send_attempts", value, 1, 1000, "1 ..= 1000")?;
        Ok(self)
    }

    /// Unacked uplink messages kept per stream (in flight plus queued).
    /// Default 1024, bounds 1 ..= 1 048 576.
    pub fn max_queued_sends(&mut self, value: usize) -> Result<&mut Self, ConfigError> {
        self.max_queued_sends =
            check_count("max_queued_sends", value, 1, 1 << 20, "1 ..= 1048576")?;
        Ok(self)
    }

    /// Consecutive send/receive timeouts (uplink ack timeouts, heartbeat
    /// timeouts) that force the channel closed and restarted. Default 3,
    /// bounds 1 ..= 1000.
    pub fn max_consecutive_timeouts(&mut self, value: u32) -> Result<&mut Self, ConfigError> {
        self.max_consecutive_timeouts =
            check_count("max_consecutive_timeouts", value, 1, 1000, "1 ..= 1000")?;
        Ok(self)
    }

    /// Room pulls: long-poll `wait` sent to the server, extra `grace` before
    /// the client re-pulls on silence, and `max` messages per batch (0 =
    /// server default). Defaults 30 s, 5 s, 100; bounds wait 0 ..= 10 min,
    /// grace 100 ms ..= 1 min.
    pub fn room_pull(
        &mut self,
        wait: Duration,
        grace: Duration,
        max: u32,
    ) -> Result<&mut Self, ConfigError> {
        let wait = check_duration(
            "room_pull_wait",
            wait,
            Duration::ZERO,
            Duration::from_secs(600),
            "0 ..= 10 min",
        )?;
        let grace = check_duration(
            "room_pull_grace",
            grace,
            Duration::from_millis(100),
            Duration::from_secs(60),
            "100 ms ..= 1 min",
        )?;
        self.room_pull_wait = wait;
        self.room_pull_grace = grace;
        self.room_pull_max = max;
        Ok(self)
    }

    /// Delay before a login refused with a transient error (internal,
    /// overloaded, rate limited, backend unavailable) is sent again. Default
    /// 5 s, bounds 100 ms ..= 10 min.
    pub fn login_retry_delay(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        self.login_retry_delay = check_duration(
            "login_retry_delay",
            value,
            Duration::from_millis(100),
            Duration::from_secs(600),
            "100 ms ..= 10 min",
        )?;
        Ok(self)
    }

    /// How long before a login's credential expires the application is
    /// asked for a fresh one ([`Event::CredentialExpiring`](crate::Event::CredentialExpiring));
    /// at most half the credential's remaining validity. Default 60 s,
    /// bounds 1 s ..= 1 h.
    pub fn credential_refresh_margin(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        self.credential_refresh_margin = check_duration(
            "credential_refresh_margin",
            value,
            Duration::from_secs(1),
            Duration::from_secs(3600),
            "1 s ..= 1 h",
        )?;
        Ok(self)
    }

    /// The configured heartbeat interval (before any server override).
    pub fn get_heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// The configured heartbeat timeout (before any server override).
    pub fn get_heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// The configured send window.
    pub fn get_send_window(&self) -> u32 {
        self.send_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_validate() {
        let mut c = ClientConfig::default();
        assert!(c.heartbeat_interval(Duration::ZERO).is_err());
        assert!(c.heartbeat_interval(Duration::from_secs(30)).is_ok());
        assert_eq!(c.get_heartbeat_interval(), Duration::from_secs(30));
        assert!(
            c.backoff(Duration::from_secs(2), Duration::from_secs(1), 0.5)
                .is_err()
        );
        assert!(
            c.backoff(Duration::from_secs(1), Duration::from_secs(1), 1.5)
                .is_err()
        );
        assert!(
            c.backoff(Duration::from_secs(1), Duration::from_secs(1), f64::NAN)
                .is_err()
        );
        assert!(c.send_window(0).is_err());
        assert!(c.send_window(1).is_ok());
        assert!(c.downlink_ack(Duration::from_millis(5), 0).is_err());
        assert!(c.max_send_attempts(0).is_err());
        assert!(
            c.room_pull(Duration::from_secs(601), Duration::from_secs(1), 0)
                .is_err()
        );
        let err = c.max_consecutive_timeouts(0).unwrap_err();
        assert!(err.to_string().contains("max_consecutive_timeouts"));
    }
}

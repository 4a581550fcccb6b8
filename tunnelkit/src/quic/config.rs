//! QUIC settings shared by the client transport and the listener.

use std::{sync::Arc, time::Duration};

use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::ConfigError;

/// Settings of a [`QuicTransport`](crate::QuicTransport) or a
/// [`QuicListener`](crate::QuicListener).
///
/// Defaults and why:
/// - `max_idle_timeout` **10 minutes**: well above any application heartbeat period (Hermes
///   uses 120 s), so liveness is the application's decision, not QUIC's; it only reclaims
///   truly dead connections.
/// - `keep_alive_interval` **off**: the application heartbeat already keeps NAT bindings warm
///   and proves the peer is alive; transport pings would cost mobile battery for nothing.
/// - `handshake_timeout` **10 s**: bounds a client connect (QUIC to a closed UDP port gets no
///   error, only silence) and, on the listener, how long a peer may take to finish the
///   handshake and write on its stream.
/// - `linger` **5 s**: how long a dropped [`QuicStream`](crate::QuicStream) keeps the
///   connection open so the peer receives the data written before the drop.
/// - `max_pending_handshakes` **1024** (listener only): connections still in the handshake
///   beyond this are refused, which bounds the memory a flood of half-open connections uses.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    max_idle_timeout: Duration,
    keep_alive_interval: Option<Duration>,
    handshake_timeout: Duration,
    linger: Duration,
    max_pending_handshakes: usize,
}

impl QuicConfig {
    /// Closes a connection that received nothing for this long. At least 1 ms.
    pub fn max_idle_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.max_idle_timeout = timeout;
        self
    }

    /// Sends a QUIC PING after this much quiet time; `None` disables it. Must be shorter than
    /// the idle timeout.
    pub fn keep_alive_interval(&mut self, interval: Option<Duration>) -> &mut Self {
        self.keep_alive_interval = interval;
        self
    }

    /// Limit on the handshake (client: until the stream is open; listener: until the peer has
    /// written on its stream). Greater than zero.
    pub fn handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a dropped [`QuicStream`](crate::QuicStream) waits for the peer to acknowledge
    /// the data written before closing the connection. Zero closes at once and may lose
    /// unacknowledged data.
    pub fn linger(&mut self, linger: Duration) -> &mut Self {
        self.linger = linger;
        self
    }

    /// Listener only: how many connections may be in the handshake at once. Greater than zero.
    pub fn max_pending_handshakes(&mut self, max: usize) -> &mut Self {
        self.max_pending_handshakes = max;
        self
    }

    /// Checks the values and returns the validated settings.
    pub(crate) fn validate(&self) -> Result<ValidQuicConfig, ConfigError> {
        if self.max_idle_timeout < Duration::from_millis(1) {
            return Err(ConfigError::OutOfBounds {
                name: "max_idle_timeout",
                reason: "must be at least 1 ms",
            });
        }
        let idle =
            IdleTimeout::try_from(self.max_idle_timeout).map_err(|_| ConfigError::OutOfBounds {
                name: "max_idle_timeout",
                reason: "must be below 2^62 milliseconds",
            })?;
        if let Some(interval) = self.keep_alive_interval
            && (interval.is_zero() || interval >= self.max_idle_timeout)
        {
            return Err(ConfigError::OutOfBounds {
                name: "keep_alive_interval",
                reason: "must be greater than zero and shorter than max_idle_timeout",
            });
        }
        if self.handshake_timeout.is_zero() {
            return Err(ConfigError::OutOfBounds {
                name: "handshake_timeout",
                reason: "must be greater than zero",
            });
        }
        if self.max_pending_handshakes == 0 {
            return Err(ConfigError::OutOfBounds {
                name: "max_pending_handshakes",
                reason: "must be greater than zero",
            });
        }
        Ok(ValidQuicConfig {
            idle,
            keep_alive_interval: self.keep_alive_interval,
            handshake_timeout: self.handshake_timeout,
            linger: self.linger,
            max_pending_handshakes: self.max_pending_handshakes,
        })
    }
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            max_idle_timeout: Duration::from_secs(10 * 60),
            keep_alive_interval: None,
            handshake_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(5),
            max_pending_handshakes: 1024,
        }
    }
}

/// A [`QuicConfig`] whose values were checked.
#[derive(Clone, Debug)]
pub(crate) struct ValidQuicConfig {
    idle: IdleTimeout,
    keep_alive_interval: Option<Duration>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) linger: Duration,
    pub(crate) max_pending_handshakes: usize,
}

impl ValidQuicConfig {
    /// Transport parameters for a client: it opens one bidirectional stream and accepts none.
    pub(crate) fn client_transport(&self) -> Arc<TransportConfig> {
        let mut transport = self.base_transport();
        transport.max_concurrent_bidi_streams(VarInt::from_u32(0));
        Arc::new(transport)
    }

    /// Transport parameters for a server: it accepts exactly one bidirectional stream per
    /// connection, so a peer cannot make it buffer many.
    pub(crate) fn server_transport(&self) -> Arc<TransportConfig> {
        let mut transport = self.base_transport();
        transport.max_concurrent_bidi_streams(VarInt::from_u32(1));
        Arc::new(transport)
    }

    fn base_transport(&self) -> TransportConfig {
        let mut transport = TransportConfig::default();
        transport
            .max_idle_timeout(Some(self.idle))
            .keep_alive_interval(self.keep_alive_interval)
            .max_concurrent_uni_streams(VarInt::from_u32(0));
        transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let valid = QuicConfig::default().validate().unwrap();
        assert_eq!(valid.handshake_timeout, Duration::from_secs(10));
        assert_eq!(valid.linger, Duration::from_secs(5));
    }

    #[test]
    fn keep_alive_must_be_below_idle_timeout() {
        let mut config = QuicConfig::default();
        config
            .max_idle_timeout(Duration::from_secs(30))
            .keep_alive_interval(Some(Duration::from_secs(30)));
        assert!(matches!(
            config.validate(),
            Err(ConfigError::OutOfBounds {
                name: "keep_alive_interval",
                ..
            })
        ));
        config.keep_alive_interval(Some(Duration::from_secs(10)));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn zero_values_are_rejected() {
        let mut config = QuicConfig::default();
        config.max_idle_timeout(Duration::from_micros(10));
        assert!(config.validate().is_err());

        let mut config = QuicConfig::default();
        config.handshake_timeout(Duration::ZERO);
        assert!(config.validate().is_err());

        let mut config = QuicConfig::default();
        config.max_pending_handshakes(0);
        assert!(config.validate().is_err());
    }
}

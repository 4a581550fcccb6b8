//! `[mqtt]`: the MQTT listeners and their limits (`docs/mqtt.md`,
//! `docs/config.md`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Largest `max_packet_size` accepted (MQTT's own ceiling is 256 MiB; a
/// gateway has no use for more than the Pike frame limit's default).
pub const MAX_PACKET_SIZE_CEILING: usize = 1 << 20;

/// The MQTT access section. Off in configuration files unless `listen` or
/// `tls_listen` is set; the zero-config gateway listens on
/// `127.0.0.1:1883` ([`MqttSection::zero_config`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSection {
    /// Plain MQTT over TCP (`""` or absent: off). Refused off loopback
    /// unless `listen.allow_plain_non_loopback`.
    #[serde(with = "crate::config::optional_addr")]
    pub listen: Option<SocketAddr>,
    /// MQTT over TLS, with the gateway's TLS identity (`[tls]`).
    #[serde(with = "crate::config::optional_addr")]
    pub tls_listen: Option<SocketAddr>,
    /// Largest MQTT packet accepted, in bytes (remaining length), checked
    /// on the fixed header before the packet is buffered.
    pub max_packet_size: usize,
    /// Seconds a new connection has to send its CONNECT (TLS included).
    pub connect_timeout_secs: u32,
    /// MQTT connections at once on this node; more are refused.
    pub max_connections: usize,
    /// Sessions (live connections and kept persistent sessions) on this
    /// node; a new one beyond it is refused.
    pub max_sessions: usize,
    /// Downlink PUBLISHes in flight (unacknowledged QoS 1) per connection;
    /// MQTT 5's Receive Maximum lowers it.
    pub max_inflight: u16,
    /// The longest keep alive honoured, in seconds; 0 or longer keep
    /// alives are replaced by it.
    pub max_keep_alive_secs: u16,
    /// How long a persistent session outlives its connection, in seconds
    /// (3.1.1), and the cap of MQTT 5's Session Expiry Interval.
    pub max_session_expiry_secs: u32,
}

impl MqttSection {
    /// The section of a configuration file that has none: both listeners
    /// off.
    pub fn off() -> Self {
        Self {
            listen: None,
            tls_listen: None,
            max_packet_size: 64 * 1024,
            connect_timeout_secs: 10,
            max_connections: 100_000,
            max_sessions: 200_000,
            max_inflight: 32,
            max_keep_alive_secs: 1200,
            max_session_expiry_secs: 2 * 3600,
        }
    }

    /// The zero-config gateway's section: plain MQTT on `127.0.0.1:1883`.
    pub fn zero_config() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            ..Self::off()
        }
    }

    /// Whether a listener is configured.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || self.tls_listen.is_some()
    }

    /// The CONNECT deadline.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.into())
    }

    /// Checks the values; `allow_plain_non_loopback` is
    /// `listen.allow_plain_non_loopback`.
    pub(crate) fn validate(&self, allow_plain_non_loopback: bool) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("mqtt.{m}")));
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
            && !allow_plain_non_loopback
        {
            return invalid(format!(
                "listen = {addr}: plain MQTT off loopback needs listen.allow_plain_non_loopback = true (or use tls_listen)"
            ));
        }
        if !(128..=MAX_PACKET_SIZE_CEILING).contains(&self.max_packet_size) {
            return invalid(format!(
                "max_packet_size must be 128 to {MAX_PACKET_SIZE_CEILING}"
            ));
        }
        if self.connect_timeout_secs == 0 {
            return invalid("connect_timeout_secs must be at least 1".into());
        }
        if self.max_connections == 0 || self.max_sessions == 0 {
            return invalid("max_connections and max_sessions must be at least 1".into());
        }
        if !(1..=512).contains(&self.max_inflight) {
            return invalid("max_inflight must be 1 to 512 (the gateway's downlink window)".into());
        }
        if self.max_keep_alive_secs == 0 {
            return invalid("max_keep_alive_secs must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for MqttSection {
    fn default() -> Self {
        Self::off()
    }
}

//! Server-side settings.

use std::time::Duration;

use proto::tunnel::ServerHello;

use super::{check_count, check_duration};
use crate::error::ConfigError;

/// Settings of a [`ServerChannel`](crate::ServerChannel).
///
/// The heartbeat values are what the gateway advertises in its
/// `ServerHello` ([`ServerConfig::fill_hello`]); the idle timeout defaults
/// to what a client following them needs at worst (interval + timeout) plus
/// slack for latency and scheduling.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) idle_slack: Duration,
    pub(crate) downlink_window: u32,
    pub(crate) go_away_grace: Duration,
    pub(crate) uplink_dedup_memory: usize,
    pub(crate) login_timeout: Option<Duration>,
    pub(crate) max_logins: usize,
    pub(crate) uplink_window: u32,
    pub(crate) uplink_pending_bytes: usize,
    pub(crate) log_epoch: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(20),
            idle_timeout: None,
            idle_slack: Duration::from_secs(10),
            downlink_window: 512,
            go_away_grace: Duration::from_secs(30),
            uplink_dedup_memory: 256,
            login_timeout: Some(Duration::from_secs(30)),
            max_logins: 32,
            uplink_window: 64,
            uplink_pending_bytes: 4 << 20,
            log_epoch: 0,
        }
    }
}

impl ServerConfig {
    /// Heartbeat interval and timeout advertised to clients. Defaults 60 s
    /// and 20 s; bounds 1 s ..= 1 h and 1 s ..= 10 min.
    pub fn heartbeat(
        &mut self,
        interval: Duration,
        timeout: Duration,
    ) -> Result<&mut Self, ConfigError> {
        let interval = check_duration(
            "heartbeat_interval",
            interval,
            Duration::from_secs(1),
            Duration::from_secs(3600),
            "1 s ..= 1 h",
        )?;
        let timeout = check_duration(
            "heartbeat_timeout",
            timeout,
            Duration::from_secs(1),
            Duration::from_secs(600),
            "1 s ..= 10 min",
        )?;
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        Ok(self)
    }

    /// The epoch of the gateway's downlink log, sent in every
    /// `LoginResult` (`docs/protocol.md`, "Epochs"): sequence numbers and
    /// acked positions belong to it, and it changes only when the log is
    /// recreated. Default 0: no epoch (clients never reset their
    /// positions).
    pub fn log_epoch(&mut self, epoch: u64) -> &mut Self {
        self.log_epoch = epoch;
        self
    }

    /// Close a connection that sent nothing for this long. Default: the
    /// advertised interval + timeout + 10 s of slack (90 s with the default
    /// heartbeat). Must be above interval + timeout, at most 2 h.
    pub fn idle_timeout(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        let floor = self.heartbeat_interval + self.heartbeat_timeout;
        self.idle_timeout = Some(check_duration(
            "idle_timeout",
            value,
            floor,
            Duration::from_secs(7200),
            "heartbeat interval + timeout ..= 2 h",
        )?);
        Ok(self)
    }

    /// Reliable downlink messages in flight (pushed, not acked) per stream
    /// before [`push`](crate::ServerChannel::push) refuses with
    /// [`PushError::WindowFull`](crate::PushError::WindowFull). Default 512,
    /// bounds 1 ..= 1 048 576.
    pub fn downlink_window(&mut self, value: u32) -> Result<&mut Self, ConfigError> {
        self.downlink_window = check_count("downlink_window", value, 1, 1 << 20, "1 ..= 1048576")?;
        Ok(self)
    }

    /// After a go-away, close the connection if the client has not left
    /// within this time. Default 30 s, bounds 1 s ..= 10 min.
    pub fn go_away_grace(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        self.go_away_grace = check_duration(
            "go_away_grace",
            value,
            Duration::from_secs(1),
            Duration::from_secs(600),
            "1 s ..= 10 min",
        )?;
        Ok(self)
    }

    /// Acked uplink sequence numbers remembered per stream to answer resends
    /// with the original result. Default 256, bounds 1 ..= 65536.
    pub fn uplink_dedup_memory(&mut self, value: usize) -> Result<&mut Self, ConfigError> {
        self.uplink_dedup_memory =
            check_count("uplink_dedup_memory", value, 1, 65_536, "1 ..= 65536")?;
        Ok(self)
    }

    /// Close a connection on which no business is logged in this long after
    /// its handshake, with `IDLE_TIMEOUT`, whether or not it pings: a
    /// connection costs a slot under the connection limit and memory, and
    /// one that never logs in serves nobody. `None` turns the deadline off.
    /// Default 30 s, bounds 100 ms ..= 1 h.
    pub fn login_timeout(&mut self, value: Option<Duration>) -> Result<&mut Self, ConfigError> {
        self.login_timeout = value
            .map(|value| {
                check_duration(
                    "login_timeout",
                    value,
                    Duration::from_millis(100),
                    Duration::from_secs(3600),
                    "100 ms ..= 1 h",
                )
            })
            .transpose()?;
        Ok(self)
    }

    /// The login timeout in effect (`None`: off).
    pub fn get_login_timeout(&self) -> Option<Duration> {
        self.login_timeout
    }

    /// Logins per connection (accepted or waiting for the gateway's
    /// answer). A login beyond it is refused with `LIMIT_EXCEEDED` (the
    /// client's login fails; a logout frees a slot). Default 32, bounds
    /// 1 ..= 1024.
    pub fn max_logins(&mut self, value: usize) -> Result<&mut Self, ConfigError> {
        self.max_logins = check_count("max_logins", value, 1, 1024, "1 ..= 1024")?;
        Ok(self)
    }

    /// Uplink window per stream, advertised in every login result: the most
    /// uplink messages a client may have sent and not seen acked at once.
    /// A client sending beyond it broke the protocol and is closed with
    /// `PROTOCOL`. Default 64 (the client's own default window is 16),
    /// bounds 1 ..= 65536.
    pub fn uplink_window(&mut self, value: u32) -> Result<&mut Self, ConfigError> {
        self.uplink_window = check_count("uplink_window", value, 1, 65_536, "1 ..= 65536")?;
        Ok(self)
    }

    /// Payload bytes of the uplink messages reported to the gateway and not
    /// acked yet, per connection (every stream together): what the gateway
    /// holds for the connection while its backend works. A message that
    /// would go beyond it is answered at once with `RATE_LIMITED` (the
    /// client's send fails; it may retry), except when nothing is pending
    /// (a message up to the frame limit always gets through alone).
    /// Default 4 MiB, bounds 1 KiB ..= 1 GiB.
    pub fn uplink_pending_bytes(&mut self, value: usize) -> Result<&mut Self, ConfigError> {
        self.uplink_pending_bytes = check_count(
            "uplink_pending_bytes",
            value,
            1024,
            1 << 30,
            "1 KiB ..= 1 GiB",
        )?;
        Ok(self)
    }

    /// The configured logins per connection.
    pub fn get_max_logins(&self) -> usize {
        self.max_logins
    }

    /// The configured uplink window.
    pub fn get_uplink_window(&self) -> u32 {
        self.uplink_window
    }

    /// The configured uplink bytes pending per connection.
    pub fn get_uplink_pending_bytes(&self) -> usize {
        self.uplink_pending_bytes
    }

    /// The idle timeout in effect.
    pub fn get_idle_timeout(&self) -> Duration {
        self.idle_timeout
            .unwrap_or(self.heartbeat_interval + self.heartbeat_timeout + self.idle_slack)
    }

    /// Writes the advertised heartbeat parameters into a hello.
    pub fn fill_hello(&self, hello: &mut ServerHello) {
        hello.heartbeat_interval_ms = millis_u32(self.heartbeat_interval);
        hello.heartbeat_timeout_ms = millis_u32(self.heartbeat_timeout);
    }
}

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeout_defaults_to_advertised_plus_slack() {
        let mut c = ServerConfig::default();
        assert_eq!(c.get_idle_timeout(), Duration::from_secs(90));
        c.heartbeat(Duration::from_secs(10), Duration::from_secs(5))
            .unwrap();
        assert_eq!(c.get_idle_timeout(), Duration::from_secs(25));
        assert!(c.idle_timeout(Duration::from_secs(14)).is_err());
        c.idle_timeout(Duration::from_secs(40)).unwrap();
        assert_eq!(c.get_idle_timeout(), Duration::from_secs(40));
        let mut hello = ServerHello::default();
        c.fill_hello(&mut hello);
        assert_eq!(
            (hello.heartbeat_interval_ms, hello.heartbeat_timeout_ms),
            (10_000, 5_000)
        );
    }

    #[test]
    fn login_timeout_defaults_to_30_s_and_is_bounded() {
        let mut c = ServerConfig::default();
        assert_eq!(c.get_login_timeout(), Some(Duration::from_secs(30)));
        assert!(c.login_timeout(Some(Duration::from_millis(99))).is_err());
        assert!(c.login_timeout(Some(Duration::from_secs(3601))).is_err());
        assert_eq!(c.get_login_timeout(), Some(Duration::from_secs(30)));
        c.login_timeout(None).unwrap();
        assert_eq!(c.get_login_timeout(), None);
    }

    #[test]
    fn request_limits_have_defaults_and_bounds() {
        let mut c = ServerConfig::default();
        assert_eq!(c.get_max_logins(), 32);
        assert_eq!(c.get_uplink_window(), 64);
        assert_eq!(c.get_uplink_pending_bytes(), 4 << 20);
        assert!(c.max_logins(0).is_err());
        assert!(c.max_logins(1025).is_err());
        assert!(c.uplink_window(0).is_err());
        assert!(c.uplink_pending_bytes(1023).is_err());
        c.max_logins(2).unwrap().uplink_window(3).unwrap();
        assert_eq!((c.get_max_logins(), c.get_uplink_window()), (2, 3));
    }
}

//! Settings of the drivers.

use std::time::Duration;

use crate::error::ConfigError;

/// Settings shared by [`ClientDriver`](crate::ClientDriver) and
/// [`ServerDriver`](crate::ServerDriver).
///
/// | Setting | Default | Why |
/// |---|---|---|
/// | `event_capacity` | 256 | Events queued per subscriber (client) or per connection (server) before the driver stops reading the socket. Large enough for a burst of a full uplink window and acks; tokio's channel allocates slots lazily, so an idle connection pays nothing for it. |
/// | `close_timeout` | 5 s | How long a closing connection may take to write its close frame and shut down (TLS close_notify, QUIC FIN) before it is dropped. |
/// | `max_idle_buffer` | 64 KiB | A read or write buffer that grew above this for a large frame is given back once empty, so a million idle connections hold only tokio-util's 8 KiB per direction. |
#[derive(Clone, Copy, Debug)]
pub struct DriverConfig {
    pub(crate) event_capacity: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) max_idle_buffer: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            event_capacity: 256,
            close_timeout: Duration::from_secs(5),
            max_idle_buffer: 64 * 1024,
        }
    }
}

impl DriverConfig {
    /// Events queued per subscriber or connection before backpressure.
    /// Bounds: 1 ..= 1,048,576.
    pub fn event_capacity(&mut self, value: usize) -> Result<&mut Self, ConfigError> {
        if !(1..=1 << 20).contains(&value) {
            return Err(ConfigError::OutOfBounds {
                setting: "event_capacity",
                detail: "1 ..= 1048576",
            });
        }
        self.event_capacity = value;
        Ok(self)
    }

    /// Time allowed to write a close frame and shut a connection down.
    /// Bounds: 10 ms ..= 1 min.
    pub fn close_timeout(&mut self, value: Duration) -> Result<&mut Self, ConfigError> {
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&value) {
            return Err(ConfigError::OutOfBounds {
                setting: "close_timeout",
                detail: "10 ms ..= 1 min",
            });
        }
        self.close_timeout = value;
        Ok(self)
    }

    /// Buffer capacity above which an empty buffer is given back. Bounds:
    /// 8 KiB ..= 64 MiB.
    pub fn max_idle_buffer(&mut self, value: usize) -> Result<&mut Self, ConfigError> {
        if !(8 * 1024..=64 << 20).contains(&value) {
            return Err(ConfigError::OutOfBounds {
                setting: "max_idle_buffer",
                detail: "8 KiB ..= 64 MiB",
            });
        }
        self.max_idle_buffer = value;
        Ok(self)
    }

    /// The event capacity in effect.
    pub fn get_event_capacity(&self) -> usize {
        self.event_capacity
    }
}

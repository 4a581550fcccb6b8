//! Configuration of both sides. Every setting has a documented default and
//! bounds; setters reject out-of-range values with a [`ConfigError`] instead
//! of panicking. Configurations are meant to be shared as `Arc<_>` between
//! the channels of one process.

mod client;
mod server;

use std::time::Duration;

pub use self::client::ClientConfig;
pub use self::server::ServerConfig;
use crate::error::ConfigError;

/// Checks `value` against `[min, max]`.
fn check_duration(
    setting: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
    detail: &'static str,
) -> Result<Duration, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfBounds { setting, detail });
    }
    Ok(value)
}

/// Checks `value` against `[min, max]`.
fn check_count<T: PartialOrd>(
    setting: &'static str,
    value: T,
    min: T,
    max: T,
    detail: &'static str,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfBounds { setting, detail });
    }
    Ok(value)
}

//! Tunnel configuration: limits, timeouts and compression preferences.

use std::time::Duration;

use proto::tunnel::Compression;

use crate::codec::{DEFAULT_MAX_FRAME_LENGTH, FrameCodec, FrameCodecBuilder};
use crate::compression::DEFAULT_COMPRESSION_THRESHOLD;
use crate::handshake::DEFAULT_HANDSHAKE_TIMEOUT;
use crate::varint::MAX_VARINT_VALUE;

/// Smallest accepted maximum frame length: enough for every control frame.
pub const MIN_MAX_FRAME_LENGTH: usize = 1024;

/// A configuration value out of its allowed range.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is outside its documented bounds.
    #[error("{name} must be between {min} and {max}, got {value}")]
    OutOfBounds {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: u64,
        /// Lowest allowed value.
        min: u64,
        /// Highest allowed value.
        max: u64,
    },
}

/// Settings of one side of a tunnel. Cheap to clone; share it behind an
/// `Arc` when many connections use it.
#[derive(Clone, Debug)]
pub struct TunnelConfig {
    max_frame_length: usize,
    handshake_timeout: Duration,
    compressions: Vec<Compression>,
    compression_threshold: usize,
}

impl TunnelConfig {
    /// Largest frame body accepted from the peer (default 1 MiB; between
    /// 1 KiB and 2^28 - 1 bytes). Advertised to the peer in the hello.
    pub fn max_frame_length(&mut self, len: usize) -> Result<&mut Self, ConfigError> {
        if !(MIN_MAX_FRAME_LENGTH..=MAX_VARINT_VALUE).contains(&len) {
            return Err(ConfigError::OutOfBounds {
                name: "max_frame_length",
                value: len as u64,
                min: MIN_MAX_FRAME_LENGTH as u64,
                max: MAX_VARINT_VALUE as u64,
            });
        }
        self.max_frame_length = len;
        Ok(self)
    }

    /// Time from the first byte to a finished handshake (default 10 s).
    pub fn handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Compression algorithms, most preferred first (default: LZ4). A client
    /// offers them; a server picks its first one that the client offered.
    /// An empty list turns compression off.
    pub fn compressions(&mut self, compressions: Vec<Compression>) -> &mut Self {
        self.compressions = compressions;
        self
    }

    /// Smallest body worth compressing (default 1024 bytes).
    pub fn compression_threshold(&mut self, len: usize) -> &mut Self {
        self.compression_threshold = len;
        self
    }

    /// The configured receive limit.
    pub fn get_max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The configured handshake timeout.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The configured compression preferences.
    pub fn get_compressions(&self) -> &[Compression] {
        &self.compressions
    }

    /// A codec for a connection that has not finished its handshake yet
    /// (no compression, our receive limit).
    pub(crate) fn codec(&self) -> FrameCodec {
        FrameCodecBuilder::default()
            .max_frame_length(self.max_frame_length)
            .compression_threshold(self.compression_threshold)
            .build()
    }
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            compressions: vec![Compression::Lz4],
            compression_threshold: DEFAULT_COMPRESSION_THRESHOLD,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_frame_length_is_bounded() {
        let mut config = TunnelConfig::default();
        assert!(config.max_frame_length(512).is_err());
        assert!(config.max_frame_length(MAX_VARINT_VALUE + 1).is_err());
        assert_eq!(
            config
                .max_frame_length(4096)
                .unwrap()
                .get_max_frame_length(),
            4096
        );
    }
}

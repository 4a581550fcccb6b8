//! Errors of the frame layer.

use std::io;

use proto::tunnel::ErrorCode;

use crate::frame::FrameType;

/// Malformed or unacceptable bytes from the peer.
///
/// Every variant maps to a wire [`ErrorCode`] (see [`FrameError::code`]) so the
/// receiver can tell the peer why it closes the connection.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The header names a type this protocol version does not define.
    #[error("frame type {0:#04x} is not defined")]
    UnknownFrameType(u8),
    /// The header has the reserved bit set.
    #[error("reserved flag bit set in frame header {0:#04x}")]
    ReservedFlag(u8),
    /// The length prefix runs past four bytes.
    #[error("frame length prefix is longer than 4 bytes")]
    LengthTooLong,
    /// The length prefix has redundant padding bytes.
    #[error("frame length prefix is not minimally encoded")]
    NonMinimalLength,
    /// The declared length is above the receiver's limit. Checked before any
    /// allocation.
    #[error("frame of {len} bytes exceeds the maximum frame length of {max}")]
    FrameTooLarge {
        /// The declared (or decompressed) body length.
        len: usize,
        /// The receiver's limit.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("connection closed inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the partial frame that had arrived.
        buffered: usize,
    },
    /// A compressed frame arrived but no compression was negotiated.
    #[error("compressed frame received but compression was not negotiated")]
    CompressionNotNegotiated,
    /// A compressed body did not decompress.
    #[error("compressed frame body is corrupt: {0}")]
    Decompression(String),
    /// The body is not a valid protobuf message of the type the frame names.
    #[error("malformed {ty} frame body: {source}")]
    MalformedBody {
        /// The frame's type.
        ty: FrameType,
        /// What the protobuf decoder reported.
        source: prost::DecodeError,
    },
}

impl FrameError {
    /// The wire code to send in a close frame for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownFrameType(_) => ErrorCode::UnknownFrameType,
            Self::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::CompressionNotNegotiated | Self::Decompression(_) => ErrorCode::Decompression,
            Self::ReservedFlag(_)
            | Self::LengthTooLong
            | Self::NonMinimalLength
            | Self::Truncated { .. }
            | Self::MalformedBody { .. } => ErrorCode::MalformedFrame,
        }
    }
}

/// Error of the frame codec: malformed input, or the I/O beneath failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The peer sent bytes that are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Reading or writing the underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl CodecError {
    /// The frame error, if the peer's bytes were at fault.
    pub fn as_frame(&self) -> Option<&FrameError> {
        match self {
            Self::Frame(e) => Some(e),
            Self::Io(_) => None,
        }
    }
}

impl From<CodecError> for io::Error {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Io(e) => e,
            CodecError::Frame(e) => Self::new(io::ErrorKind::InvalidData, e),
        }
    }
}

//! Error types, one per kind of operation.

use proto::tunnel::ErrorCode;
use tntunnel::{FrameError, FrameType};

use crate::StreamId;

/// A frame the channel layer cannot accept from the peer.
///
/// Every variant maps to the close code sent to the peer
/// ([`ChannelError::code`]).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The body did not decode (or another frame-level fault).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An application frame type the Pike channel does not define.
    #[error("frame type {0:#04x} is not a Pike channel message")]
    UnknownFrameType(u8),
    /// A known frame that is not allowed here (a hello after the handshake, a
    /// server-to-client message sent by the client, ...).
    #[error("unexpected {0} frame")]
    UnexpectedFrame(FrameType),
}

impl ChannelError {
    /// The wire code to close the connection with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Frame(e) => e.code(),
            Self::UnknownFrameType(_) => ErrorCode::UnknownFrameType,
            Self::UnexpectedFrame(_) => ErrorCode::Protocol,
        }
    }
}

/// A configuration value out of its allowed range.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The value is outside the documented bounds of the setting.
    #[error("{setting} is out of bounds: {detail}")]
    OutOfBounds {
        /// Name of the setting.
        setting: &'static str,
        /// What the bounds are.
        detail: &'static str,
    },
}

/// Why [`ClientChannel::send`](crate::ClientChannel::send) refused a message.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No login with this stream id (never logged in, logged out, or removed
    /// after an authentication failure).
    #[error("stream {0} is not logged in")]
    UnknownStream(StreamId),
    /// The channel was stopped; start it again first.
    #[error("the channel is stopped")]
    Stopped,
    /// The per-stream queue of unacknowledged messages is full.
    #[error("send queue of stream {stream} is full ({limit} messages)")]
    QueueFull {
        /// The stream.
        stream: StreamId,
        /// The configured limit.
        limit: usize,
    },
}

/// An operation named a stream (client side) that has no login.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("stream {0} is not logged in")]
pub struct UnknownStream(pub StreamId);

/// Why [`ServerChannel::push`](crate::ServerChannel::push) refused a message.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The stream is not logged in (or its login is not accepted yet).
    #[error("stream {0} is not logged in")]
    NotLoggedIn(StreamId),
    /// The stream already has the configured number of unacked reliable
    /// messages in flight; push again after an [`Acked`](crate::ServerEvent::Acked).
    #[error("downlink window of stream {stream} is full ({window} in flight)")]
    WindowFull {
        /// The stream.
        stream: StreamId,
        /// The configured window.
        window: u32,
    },
    /// A reliable push needs a sequence number above the last one pushed.
    #[error("sequence {seq} is not above the last pushed sequence {last} on stream {stream}")]
    SeqNotIncreasing {
        /// The stream.
        stream: StreamId,
        /// The refused sequence number.
        seq: u64,
        /// The last sequence number pushed on this connection.
        last: u64,
    },
    /// The connection is closed.
    #[error("the connection is closed")]
    Closed,
}

/// A server-side answer that does not match a pending request.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// No login of this stream waits for an answer.
    #[error("no login of stream {0} is pending")]
    NoPendingLogin(StreamId),
    /// The stream is not logged in.
    #[error("stream {0} is not logged in")]
    NotLoggedIn(StreamId),
    /// No uplink message with this sequence number waits for an ack.
    #[error("uplink {seq} of stream {stream} is not pending")]
    NoPendingUplink {
        /// The stream.
        stream: StreamId,
        /// The sequence number.
        seq: u64,
    },
    /// A pre-encoded frame handed to
    /// [`room_batch_frame`](crate::ServerChannel::room_batch_frame) is not a
    /// room batch.
    #[error("frame type {0} is not a room batch")]
    NotRoomBatch(FrameType),
    /// The connection is closed.
    #[error("the connection is closed")]
    Closed,
}

//! What the client machine tells its driver and its businesses.

use std::time::Duration;

use bytes::Bytes;
use proto::channel::RoomMessage;
use proto::tunnel::ErrorCode;
use tntunnel::Frame;

use crate::ids::{ConnectionId, SendId, StreamId};

/// Output of [`ClientChannel::poll_event`](crate::ClientChannel::poll_event).
///
/// Three groups, in one queue so that their order is kept:
///
/// - **actions** for the driver: [`Connect`](Self::Connect) (dial now) and
///   [`Disconnect`](Self::Disconnect) (close that connection or abort that
///   dial);
/// - **connectivity** of the channel: [`Connecting`](Self::Connecting),
///   [`Connected`](Self::Connected), [`Disconnected`](Self::Disconnected),
///   [`Reconnecting`](Self::Reconnecting), [`Stopped`](Self::Stopped); these
///   never mean a message was lost;
/// - **per-business** events, which name a stream ([`Event::stream`]).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Action: dial now (TCP/TLS/QUIC plus the tunnel handshake), then report
    /// with [`handle_connected`](crate::ClientChannel::handle_connected) or
    /// [`handle_connect_failed`](crate::ClientChannel::handle_connect_failed).
    Connect {
        /// The dial to report about.
        id: ConnectionId,
        /// Endpoints advised by the server ("host:port", preferred first) for
        /// this dial; empty means the driver's configured endpoints.
        endpoints: Vec<String>,
    },
    /// Action: close connection `id` (or abort the dial), after sending
    /// `close` if given. No report is expected.
    Disconnect {
        /// The connection or dial to drop.
        id: ConnectionId,
        /// Why.
        reason: DisconnectReason,
        /// A close frame to write before closing, if any.
        close: Option<Frame>,
    },
    /// Connectivity: a dial started (`attempt` 0 is the first dial after
    /// start; later ones count reconnects since the channel was last stable).
    Connecting {
        /// Reconnect attempt number.
        attempt: u32,
    },
    /// Connectivity: the connection is up; logins are being sent.
    Connected {
        /// The server's connection token (key of the signaling trace).
        connection_token: String,
    },
    /// Connectivity: an established connection was lost.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// Connectivity: the next dial is scheduled after `delay`.
    Reconnecting {
        /// The attempt the dial will be.
        attempt: u32,
        /// The backoff delay.
        delay: Duration,
    },
    /// Connectivity: the channel was stopped by the user.
    Stopped,
    /// Connectivity: the server refused this client for good, in a
    /// handshake refusal or a close whose code is not retryable
    /// ([`ErrorCode::is_retryable`]: unknown app, unsupported version, bad
    /// credential, ...). Every login failed first
    /// ([`LoginFailed`](Self::LoginFailed) with this code and message); the
    /// channel stops dialing until the next
    /// [`login`](crate::ClientChannel::login) or
    /// [`start`](crate::ClientChannel::start).
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's reason.
        message: String,
    },
    /// A login was accepted (after every (re)connect).
    LoginOk {
        /// The business.
        stream: StreamId,
        /// The route id now in use (stored and reported on re-login).
        route_id: String,
        /// The epoch of the server's downlink log (0: the server has
        /// none). Save it beside the delivered position and resume with
        /// [`LoginParams::in_epoch`](crate::LoginParams::in_epoch).
        epoch: u64,
        /// The epoch differs from the one the position belonged to: the log
        /// was recreated, sequence numbers start afresh and the server
        /// ignored the old position (forget it and anything deduplicated by
        /// it).
        positions_reset: bool,
    },
    /// A login was refused for good (bad or expired credential, forbidden,
    /// invalid), or ended by the server for good (`REPLACED`: the same
    /// device logged in to this business and alias on a newer connection):
    /// the login is removed; pending sends fail first.
    LoginFailed {
        /// The business.
        stream: StreamId,
        /// The server's code.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// The business logged out ([`logout`](crate::ClientChannel::logout)):
    /// the last event of its stream, after the failures of its pending sends.
    LoggedOut {
        /// The business.
        stream: StreamId,
    },
    /// A login was refused with a transient error; it is sent again after
    /// `delay`.
    LoginRetry {
        /// The business.
        stream: StreamId,
        /// The server's code.
        code: ErrorCode,
        /// The server's detail.
        message: String,
        /// When the login is retried.
        delay: Duration,
    },
    /// The login's credential expires soon (at `expires_at_ms`, the
    /// server's wall clock): pass a fresh one to
    /// [`refresh_credential`](crate::ClientChannel::refresh_credential), or
    /// the server ends the login at expiry ([`LoginFailed`](Self::LoginFailed)
    /// with `TOKEN_EXPIRED`). Emitted once per credential.
    CredentialExpiring {
        /// The business.
        stream: StreamId,
        /// When the credential expires, unix milliseconds.
        expires_at_ms: u64,
    },
    /// The server accepted the fresh credential: the login goes on and now
    /// expires at `expires_at_ms` (0 = never).
    CredentialRefreshed {
        /// The business.
        stream: StreamId,
        /// The new expiry, unix milliseconds (0 = none).
        expires_at_ms: u64,
    },
    /// The server refused the fresh credential: the login goes on until its
    /// current expiry; another credential may be passed meanwhile.
    CredentialRefreshFailed {
        /// The business.
        stream: StreamId,
        /// The server's code.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// Answer to [`update_tags`](crate::ClientChannel::update_tags).
    TagsResult {
        /// The business.
        stream: StreamId,
        /// The request id returned by `update_tags`.
        request_id: u32,
        /// `Unspecified` on success.
        code: ErrorCode,
        /// Detail on failure.
        message: String,
        /// All tags bound after the change.
        tags: Vec<String>,
    },
    /// A downlink message for the business, exactly once and in order for
    /// reliable messages.
    Received(Delivery),
    /// Reliable downlink skipped sequence numbers (expired or dropped on the
    /// server); delivery continues from `got`.
    Gap {
        /// The business.
        stream: StreamId,
        /// The sequence number that was expected.
        expected: u64,
        /// The sequence number that arrived.
        got: u64,
    },
    /// An uplink message was accepted by the business backend.
    SendSuccess {
        /// The business.
        stream: StreamId,
        /// The send call.
        id: SendId,
        /// Its uplink sequence number.
        seq: u64,
    },
    /// An uplink message definitively failed.
    SendFailure {
        /// The business.
        stream: StreamId,
        /// The send call.
        id: SendId,
        /// Its uplink sequence number.
        seq: u64,
        /// Why.
        reason: SendFailureReason,
    },
    /// A room join was accepted; pulls follow.
    RoomJoined {
        /// The business.
        stream: StreamId,
        /// The room.
        room: String,
        /// Oldest offset still in the room's ring.
        head: u64,
        /// Offset the next room message will get.
        tail: u64,
    },
    /// A room join was refused; the room is forgotten.
    RoomJoinFailed {
        /// The business.
        stream: StreamId,
        /// The room.
        room: String,
        /// The server's code.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// Room messages of one batch, each offset at most once, in the batch's
    /// order (highest priority first, then by offset).
    RoomMessages {
        /// The business.
        stream: StreamId,
        /// The room.
        room: String,
        /// The messages.
        messages: Vec<RoomMessage>,
        /// How many messages the client missed (the ring overtook its offset).
        missed: u64,
    },
    /// The server answered a request with an error frame (the connection
    /// stays up).
    ServerError {
        /// The stream concerned, if any.
        stream: Option<StreamId>,
        /// The code.
        code: ErrorCode,
        /// The detail.
        message: String,
        /// Frame type of the failed request.
        frame_type: u32,
    },
}

impl Event {
    /// The business this event belongs to; `None` for actions and
    /// connectivity events.
    pub fn stream(&self) -> Option<StreamId> {
        match self {
            Self::Connect { .. }
            | Self::Disconnect { .. }
            | Self::Connecting { .. }
            | Self::Connected { .. }
            | Self::Disconnected { .. }
            | Self::Reconnecting { .. }
            | Self::Stopped
            | Self::Refused { .. } => None,
            Self::LoginOk { stream, .. }
            | Self::LoginFailed { stream, .. }
            | Self::LoggedOut { stream }
            | Self::LoginRetry { stream, .. }
            | Self::CredentialExpiring { stream, .. }
            | Self::CredentialRefreshed { stream, .. }
            | Self::CredentialRefreshFailed { stream, .. }
            | Self::TagsResult { stream, .. }
            | Self::Gap { stream, .. }
            | Self::SendSuccess { stream, .. }
            | Self::SendFailure { stream, .. }
            | Self::RoomJoined { stream, .. }
            | Self::RoomJoinFailed { stream, .. }
            | Self::RoomMessages { stream, .. } => Some(*stream),
            Self::Received(delivery) => Some(delivery.stream),
            Self::ServerError { stream, .. } => *stream,
        }
    }

    /// Whether this is the last event of its stream (the login is gone:
    /// [`LoggedOut`](Self::LoggedOut) or [`LoginFailed`](Self::LoginFailed)).
    pub fn ends_stream(&self) -> bool {
        matches!(self, Self::LoggedOut { .. } | Self::LoginFailed { .. })
    }

    /// Whether this is an action the driver must carry out.
    pub fn is_action(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Disconnect { .. })
    }
}

/// One downlink message handed to the business.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Delivery {
    /// The business.
    pub stream: StreamId,
    /// Per-stream sequence number; 0 for transient messages.
    pub seq: u64,
    /// Gateway-assigned message id.
    pub message_id: u64,
    /// Priority (0 = normal).
    pub priority: u32,
    /// Expiry, unix milliseconds (0 = none).
    pub expires_at_ms: u64,
    /// The business payload.
    pub payload: Bytes,
}

impl Delivery {
    /// Whether this is a transient (not stored, never acked) message.
    pub fn is_transient(&self) -> bool {
        self.seq == 0
    }
}

/// Why an established connection was lost or dropped.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The driver reported a transport error or end of stream.
    Transport(String),
    /// The dial did not complete within the connect timeout (found by the
    /// inspection).
    ConnectTimeout,
    /// A ping went unanswered for the heartbeat timeout.
    HeartbeatTimeout,
    /// Too many consecutive send/receive timeouts: forced restart.
    TooManyTimeouts,
    /// The server sent a go-away.
    GoAway {
        /// The server's code.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// The server closed the connection with a close frame.
    ClosedByServer {
        /// The server's code.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// The server broke the protocol; the client closed with `code`.
    ProtocolError {
        /// The close code sent.
        code: ErrorCode,
        /// What was wrong.
        message: String,
    },
    /// The user stopped the channel.
    Stopped,
    /// The user restarted the channel.
    Restart,
    /// The driver reported a connection the machine no longer wants (a dial
    /// that completed after it was abandoned).
    Stale,
}

/// Why an uplink message failed.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum SendFailureReason {
    /// The gateway or the business backend refused it.
    Rejected {
        /// The code of the ack.
        code: ErrorCode,
        /// The detail of the ack.
        message: String,
    },
    /// It was transmitted the configured maximum number of times without an
    /// ack.
    MaxAttempts {
        /// Transmissions made.
        attempts: u32,
    },
    /// The login it belonged to is gone (logout or authentication failure).
    LoginGone,
}

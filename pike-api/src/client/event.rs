//! What a [`PikeClient`](super::PikeClient) reports.

use std::time::Duration;

use bytes::Bytes;
use pike_channel::{Delivery, DisconnectReason};
use proto::channel::RoomMessage;
use proto::tunnel::ErrorCode;

use super::error::Error;

/// Lifecycle state of a [`PikeClient`](super::PikeClient), after the
/// seed's state machine: the state the last lifecycle event announced.
///
/// ```text
/// Idle ──start()──► Starting (OnStart) ──auth ok──► Running ──stop()──► Stopped (OnStop)
///                      │                                                  │
///                      └──auth failed──► Stopped (OnStop) ◄───────────────┘
///                   Stopped ──start() / restart()──► Starting (OnStart)
/// ```
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum ClientState {
    /// Created, never started.
    Idle,
    /// `OnStart` was reported: the business login is under way.
    Starting,
    /// `Running`: the login was accepted; messages flow.
    Running,
    /// `OnStop` was reported (stopped, or the login was refused).
    Stopped,
}

/// Why a client stopped.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum StopReason {
    /// [`stop`](super::PikeClient::stop) was called.
    Stopped,
    /// The business login was refused for good (bad or expired credential,
    /// forbidden, invalid), or the gateway refused the whole connection for
    /// good (unknown app, unsupported protocol version), or a newer
    /// connection of the same device took the login (`REPLACED`; start the
    /// client again to take it back): the server's code
    /// is one that reconnecting cannot fix
    /// ([`ErrorCode::is_retryable`](proto::tunnel::ErrorCode::is_retryable)
    /// is false, or a login-level refusal), and the client does not retry.
    /// Network failures never end here: the client reconnects on its own.
    AuthFailed {
        /// The server's code.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// The channel went away under the client (its driver ended).
    ChannelClosed,
}

/// A downlink message delivered to the business.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// Sequence number in the business's stream (1, 2, 3, ...); 0 for a
    /// transient message.
    pub seq: u64,
    /// Gateway-assigned message id.
    pub message_id: u64,
    /// Priority (0 = normal).
    pub priority: u32,
    /// Expiry, unix milliseconds (0 = none).
    pub expires_at_ms: u64,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// Whether the message is transient (at most once, never stored).
    pub fn is_transient(&self) -> bool {
        self.seq == 0
    }
}

impl From<Delivery> for Message {
    fn from(d: Delivery) -> Self {
        Self {
            seq: d.seq,
            message_id: d.message_id,
            priority: d.priority,
            expires_at_ms: d.expires_at_ms,
            payload: d.payload,
        }
    }
}

/// What a [`PikeClient`](super::PikeClient) reports, in order.
///
/// Lifecycle events carry the seed's state names (`OnStart`, `Running`,
/// `OnReceive`, `OnSendSuccess`, `OnSendFailure`, `OnStop`); connectivity
/// events of the channel the client currently uses (`Connecting`,
/// `Reconnecting`, `Connected`, `Disconnected`) are reported separately and
/// never mean that a message was lost.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The client started (or restarted); the business login follows.
    OnStart,
    /// The login was accepted: the client runs.
    Running {
        /// The route id in use (sticky uplink routing).
        route_id: String,
    },
    /// A downlink message. Reliable messages arrive exactly once and in
    /// order, across reconnects, restarts and channel switches.
    OnReceive(Message),
    /// An uplink message was accepted by the business backend.
    OnSendSuccess {
        /// The id returned by [`send`](super::PikeClient::send).
        id: u64,
        /// Its idempotency key.
        key: String,
    },
    /// An uplink message failed for good.
    OnSendFailure {
        /// The id returned by [`send`](super::PikeClient::send).
        id: u64,
        /// Its idempotency key.
        key: String,
        /// Why.
        error: Error,
    },
    /// The client stopped.
    OnStop {
        /// Why.
        reason: StopReason,
    },
    /// Connectivity: the channel dials.
    Connecting {
        /// Reconnect attempt (0 = first dial).
        attempt: u32,
    },
    /// Connectivity: the channel waits `delay` before dialing again.
    Reconnecting {
        /// The attempt the next dial will be.
        attempt: u32,
        /// The backoff delay.
        delay: Duration,
    },
    /// Connectivity: the channel is connected.
    Connected {
        /// The server's connection token.
        connection_token: String,
    },
    /// Connectivity: the channel lost its connection (it reconnects).
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// Reliable downlink skipped sequence numbers (expired or dropped on
    /// the server); delivery continues from `got`.
    Gap {
        /// The sequence number expected.
        expected: u64,
        /// The one that arrived.
        got: u64,
    },
    /// A batch of a joined live room (see
    /// [`PikeClient::join_room`](super::PikeClient::join_room)): each offset
    /// once, highest priority first, then by offset.
    RoomMessages {
        /// The room.
        room: String,
        /// The messages (`class` tells reliable from droppable).
        messages: Vec<RoomMessage>,
        /// Messages the business will not get: the room's ring overwrote
        /// them (or they expired) before they could be delivered.
        missed: u64,
    },
    /// The credential expires soon (at `expires_at_ms`, the gateway's
    /// clock) and no fresh one came from the
    /// [`CredentialProvider`](super::CredentialProvider) (none configured,
    /// or it had none): call [`set_credential`](super::PikeClient::set_credential)
    /// before then, or the client stops (`OnStop` with `TOKEN_EXPIRED`).
    CredentialExpiring {
        /// When the credential expires, unix milliseconds.
        expires_at_ms: u64,
    },
    /// The gateway accepted a fresh credential; the login went on
    /// untouched and now expires at `expires_at_ms` (0 = never).
    CredentialRefreshed {
        /// The new expiry, unix milliseconds (0 = none).
        expires_at_ms: u64,
    },
    /// The gateway refused the fresh credential; the login goes on until
    /// the current credential expires.
    CredentialRefreshFailed {
        /// The gateway's code.
        code: ErrorCode,
        /// The gateway's detail.
        message: String,
    },
    /// The gateway refused to rejoin a room after a reconnect (the room is
    /// left).
    RoomJoinFailed {
        /// The room.
        room: String,
        /// The server's code.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
}

impl ClientEvent {
    /// Whether this is a connectivity event of the channel.
    pub fn is_connectivity(&self) -> bool {
        matches!(
            self,
            Self::Connecting { .. }
                | Self::Reconnecting { .. }
                | Self::Connected { .. }
                | Self::Disconnected { .. }
        )
    }
}

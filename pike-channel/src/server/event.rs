//! What the server machine tells the gateway.

use std::time::Duration;

use bytes::Bytes;
use proto::tunnel::ErrorCode;

use crate::ids::StreamId;

/// Output of [`ServerChannel::poll_event`](crate::ServerChannel::poll_event):
/// requests for the gateway to decide on, and the end of the connection.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A business wants to log in: authenticate, then call
    /// [`accept_login`](crate::ServerChannel::accept_login) or
    /// [`reject_login`](crate::ServerChannel::reject_login).
    LoginRequested {
        /// The client's stream id for this login.
        stream: StreamId,
        /// Business id.
        biz: String,
        /// The business identity.
        alias: String,
        /// The credential to check.
        credential: String,
        /// The route id the client saved (sticky routing); may be empty.
        route_id: String,
        /// The position this device acknowledges (the login acts as an ack
        /// of it): redeliver what follows the larger of it and the
        /// device's stored position.
        last_acked_seq: u64,
        /// The log epoch `last_acked_seq` belongs to (0: unknown). When it
        /// is not the gateway's own ([`ServerConfig::log_epoch`](crate::ServerConfig::log_epoch)),
        /// `last_acked_seq` counts from another log: ignore it.
        epoch: u64,
        /// A send-only login: deliver it nothing (`Login.send_only`).
        send_only: bool,
    },
    /// The business logged out.
    LoggedOut {
        /// The stream.
        stream: StreamId,
    },
    /// The client sent a fresh credential for a login accepted with an
    /// expiry ([`accept_login_until`](crate::ServerChannel::accept_login_until)).
    /// Check that `biz` and `alias` are the login's and authenticate the
    /// credential, then call
    /// [`accept_refresh`](crate::ServerChannel::accept_refresh) (with the
    /// new expiry) or [`reject_refresh`](crate::ServerChannel::reject_refresh).
    /// The login goes on meanwhile; one refresh per stream is reported at a
    /// time.
    CredentialRefresh {
        /// The stream.
        stream: StreamId,
        /// Business id the client names (must be the login's).
        biz: String,
        /// Alias the client names (must be the login's).
        alias: String,
        /// The fresh credential.
        credential: String,
    },
    /// The login's credential expired without a refresh: the machine
    /// dropped the stream and sent the client an `ERROR` `TOKEN_EXPIRED`
    /// naming it. Free what the login holds, as for
    /// [`LoggedOut`](Self::LoggedOut).
    LoginExpired {
        /// The stream.
        stream: StreamId,
    },
    /// The gateway ended the login with
    /// [`end_login`](crate::ServerChannel::end_login): the machine dropped
    /// the stream and sent the client an `ERROR` with `code` naming it.
    /// Free what the login holds, as for [`LoggedOut`](Self::LoggedOut).
    LoginEnded {
        /// The stream.
        stream: StreamId,
        /// Why (e.g. `REPLACED`).
        code: ErrorCode,
    },
    /// Tags to bind/unbind; answer with
    /// [`tags_result`](crate::ServerChannel::tags_result).
    TagsRequested {
        /// The stream.
        stream: StreamId,
        /// The request id to echo.
        request_id: u32,
        /// Tags to bind.
        bind: Vec<String>,
        /// Tags to unbind.
        unbind: Vec<String>,
    },
    /// The client needs no reliable message of `stream` up to `seq` again
    /// (cumulative: received, or skipped as a gap). `seq` is at most the
    /// highest sequence pushed on this connection.
    Acked {
        /// The stream.
        stream: StreamId,
        /// Highest sequence received or skipped by the client.
        seq: u64,
    },
    /// A new uplink message; deliver it to the backend (in order per stream)
    /// and answer with [`ack_uplink`](crate::ServerChannel::ack_uplink).
    /// Resends of a message already reported are not reported again.
    Uplink {
        /// The stream.
        stream: StreamId,
        /// Its per-login sequence number.
        seq: u64,
        /// Idempotency key, stable across resends and reconnects.
        idempotency_key: String,
        /// The payload.
        payload: Bytes,
        /// The client says no connection carried this message before and
        /// its key is one it generated (`Uplink.first_attempt`): no outcome
        /// can be recorded for the key, so looking it up before the backend
        /// call may be skipped. Only the client's own message is at stake
        /// if it is wrong.
        first_attempt: bool,
    },
    /// The client joins a room; answer with
    /// [`room_joined`](crate::ServerChannel::room_joined) or
    /// [`room_join_failed`](crate::ServerChannel::room_join_failed).
    RoomJoin {
        /// The stream.
        stream: StreamId,
        /// The room.
        room: String,
    },
    /// The client left a room.
    RoomLeave {
        /// The stream.
        stream: StreamId,
        /// The room.
        room: String,
    },
    /// The client pulls a room from `offset`; answer with
    /// [`room_batch`](crate::ServerChannel::room_batch) when there is data,
    /// or not at all when `wait` passes without any.
    RoomPull {
        /// The stream.
        stream: StreamId,
        /// The room.
        room: String,
        /// First offset wanted.
        offset: u64,
        /// Most messages wanted (0 = gateway default).
        max: u32,
        /// How long the pull may be held for new data.
        wait: Duration,
    },
    /// The connection is finished: the driver writes out what
    /// [`poll_transmit`](crate::ServerChannel::poll_transmit) still holds
    /// (the close frame), then closes the socket; the gateway frees what it
    /// holds for `streams`. The machine holds no timers from now on.
    Closed {
        /// The close code.
        code: ErrorCode,
        /// The detail.
        message: String,
        /// Who ended it.
        initiator: CloseInitiator,
        /// Streams that were logged in (or waiting for a login answer).
        streams: Vec<StreamId>,
    },
}

/// Who ended a server-side connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum CloseInitiator {
    /// This side (idle timeout, protocol error, go-away grace, `close`).
    Local,
    /// The client sent a close frame.
    Peer,
    /// The driver reported the transport gone.
    Transport,
}

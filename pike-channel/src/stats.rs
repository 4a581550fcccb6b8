//! Counters exposed for inspection, metrics and tests.

/// Counters of a [`ClientChannel`](crate::ClientChannel).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Dials started (first connect and reconnects).
    pub connect_attempts: u64,
    /// Dials reported failed.
    pub connect_failures: u64,
    /// Connections established.
    pub connections: u64,
    /// Frames queued for the server.
    pub frames_sent: u64,
    /// Frames received from the server.
    pub frames_received: u64,
    /// Frames received while not connected (ignored).
    pub stale_frames: u64,
    /// Pings sent.
    pub pings_sent: u64,
    /// Pongs received.
    pub pongs_received: u64,
    /// Pings that went unanswered for the heartbeat timeout.
    pub heartbeat_timeouts: u64,
    /// Reliable downlink messages delivered to businesses.
    pub delivered: u64,
    /// Transient downlink messages delivered.
    pub transient_delivered: u64,
    /// Redelivered downlink messages dropped as duplicates.
    pub duplicates_dropped: u64,
    /// Gaps reported.
    pub gaps: u64,
    /// Cumulative downlink acks sent.
    pub acks_sent: u64,
    /// Uplink transmissions (first sends and resends).
    pub uplink_sent: u64,
    /// Uplink resends after a reconnect.
    pub uplink_resent: u64,
    /// Uplink messages whose ack did not arrive within the send timeout.
    pub send_timeouts: u64,
    /// Restarts forced by the inspection (stuck dial, too many timeouts,
    /// stuck down state).
    pub forced_restarts: u64,
    /// Room pulls sent.
    pub room_pulls: u64,
    /// Room pulls re-sent because the long poll stayed silent.
    pub room_pull_timeouts: u64,
    /// Frames naming a stream or room the client does not know (ignored).
    pub unknown_target_frames: u64,
}

/// Counters of a [`ServerChannel`](crate::ServerChannel).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Frames received from the client.
    pub frames_received: u64,
    /// Frames queued for the client.
    pub frames_sent: u64,
    /// Pings answered.
    pub pings: u64,
    /// Downlink messages pushed (reliable and transient).
    pub pushed: u64,
    /// Uplink resends answered without a new event.
    pub uplink_duplicates: u64,
    /// Uplink messages refused with `RATE_LIMITED` because the connection's
    /// pending uplink bytes were at their bound.
    pub uplink_refused: u64,
    /// Uplink messages refused with `INVALID_ARGUMENT` for their seq: 0, or
    /// not above the highest accepted on their stream on this connection.
    pub uplink_out_of_order: u64,
    /// Requests answered with an error frame.
    pub error_frames: u64,
    /// Downlink acks for a stream that is not logged in (unknown, or its
    /// login still pending), answered `ERROR NOT_LOGGED_IN`.
    pub acks_not_logged_in: u64,
    /// Downlink acks above the highest sequence sent on their stream on
    /// this connection, answered `ERROR INVALID_ARGUMENT` and ignored.
    pub acks_above_sent: u64,
}

//! The client side of a Pike channel: one [`ClientChannel`] per connection,
//! shared by the business logins on it.

mod connection;
mod credential;
mod downlink;
mod event;
mod inspection;
mod keepalive;
mod login;
mod room;
mod uplink;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::channel::Error as ErrorFrame;
use proto::tunnel::ErrorCode;
use tntunnel::Frame;

pub use self::connection::ConnectionState;
use self::connection::Link;
pub use self::event::{Delivery, DisconnectReason, Event, SendFailureReason};
use self::inspection::Inspection;
use self::keepalive::KeepAlive;
use self::login::LoginEntry;
pub use self::login::LoginParams;
use self::room::RoomEntry;
use crate::config::ClientConfig;
use crate::ids::StreamId;
use crate::message::Message;
use crate::stats::ClientStats;
use crate::timer::{ClientTimer, ClientTimers, TimerKind};

/// The client-side state machine of one Pike channel (sans-IO).
///
/// It owns the connection lifecycle (dial, reconnect with backoff,
/// keep-alive, inspection), the business logins sharing the connection, the
/// reliable downlink (dedup, order, coalesced cumulative acks, gap reports),
/// the windowed uplink (acks, timeouts, resend after reconnect) and the room
/// pull loops. It performs no I/O and never reads the clock.
///
/// # Driving it
///
/// Like `quinn_proto::Connection`, its methods fall into groups:
///
/// - **commands** from the application: [`start`](Self::start),
///   [`stop`](Self::stop), [`restart`](Self::restart),
///   [`login`](Self::login), [`logout`](Self::logout),
///   [`send`](Self::send), [`update_tags`](Self::update_tags),
///   [`join_room`](Self::join_room), [`leave_room`](Self::leave_room);
/// - **inputs** from the driver: [`handle_connected`](Self::handle_connected),
///   [`handle_connect_failed`](Self::handle_connect_failed),
///   [`handle_disconnected`](Self::handle_disconnected),
///   [`handle_frame`](Self::handle_frame),
///   [`handle_timeout`](Self::handle_timeout);
/// - **outputs**, to drain after every input:
///   [`poll_transmit`](Self::poll_transmit) (frames for the current
///   connection), [`poll_event`](Self::poll_event) (actions, connectivity and
///   business events, in order), and [`poll_timeout`](Self::poll_timeout)
///   (when to call `handle_timeout` next).
///
/// Every input takes `now`; callers must pass non-decreasing instants. The
/// driver carries out [`Event::Connect`] and [`Event::Disconnect`] in the
/// order they are polled; frames from `poll_transmit` always belong to the
/// connection most recently reported with `handle_connected`.
#[derive(Debug)]
pub struct ClientChannel {
    config: Arc<ClientConfig>,
    rng: fastrand::Rng,
    timers: ClientTimers,
    link: Link,
    keepalive: KeepAlive,
    inspection: Inspection,
    logins: BTreeMap<StreamId, LoginEntry>,
    rooms: BTreeMap<(StreamId, String), RoomEntry>,
    transmit: VecDeque<Frame>,
    events: VecDeque<Event>,
    stats: ClientStats,
    next_stream: u32,
    next_send_id: u64,
    next_request_id: u32,
}

impl ClientChannel {
    /// A channel in the [`Idle`](ConnectionState::Idle) state; nothing
    /// happens until [`start`](Self::start).
    ///
    /// `seed` seeds the only randomness (backoff jitter, reconnect spread,
    /// idempotency-key prefixes). Drivers pass a random value,
    /// e.g. `fastrand::u64(..)`; tests pass fixed ones. Channels that share a
    /// seed reconnect in lockstep, so never give many channels the same seed.
    pub fn new(config: Arc<ClientConfig>, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let link = Link::new(&config, rng.u64(..));
        let keepalive = KeepAlive::new(config.heartbeat_interval, config.heartbeat_timeout);
        Self {
            config,
            rng,
            timers: ClientTimers::new(),
            link,
            keepalive,
            inspection: Inspection::default(),
            logins: BTreeMap::new(),
            rooms: BTreeMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: ClientStats::default(),
            next_stream: 0,
            next_send_id: 1,
            next_request_id: 1,
        }
    }

    /// Feeds a frame received on the current connection.
    ///
    /// A frame that does not decode, or a client-to-server message, makes the
    /// client close the connection with the matching code
    /// ([`DisconnectReason::ProtocolError`]) and reconnect.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) {
        if !self.link.is_connected() {
            self.stats.stale_frames += 1;
            return;
        }
        self.stats.frames_received += 1;
        self.keepalive.on_receive(now);
        match Message::decode(&frame) {
            Ok(message) => self.dispatch(message, now),
            Err(error) => {
                tracing::debug!(%error, "malformed frame from server");
                self.protocol_error(error.code(), error.to_string(), now);
            }
        }
        self.update_timers();
    }

    /// Runs the timers that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for &timer in ClientTimer::VALUES {
            if !self.timers.is_expired(timer, now) {
                continue;
            }
            self.timers.stop(timer);
            tracing::trace!(?timer, "timeout");
            match timer {
                ClientTimer::Reconnect => self.on_reconnect_timer(now),
                ClientTimer::Heartbeat => self.on_heartbeat_timer(now),
                ClientTimer::HeartbeatTimeout => self.on_heartbeat_timeout(now),
                ClientTimer::Inspection => self.on_inspection_timer(now),
                ClientTimer::AckDelay => self.on_ack_timer(now),
                ClientTimer::SendTimeout => self.on_send_timer(now),
                ClientTimer::RoomPull => self.on_room_pull_timer(now),
                ClientTimer::LoginRetry => self.on_login_retry_timer(now),
                ClientTimer::CredentialRefresh => self.on_credential_timer(now),
            }
        }
        self.update_timers();
    }

    /// The next frame to write to the current connection.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmit.pop_front()
    }

    /// The next event (actions first in the order they were decided).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Counters for inspection and tests.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The heartbeat interval and timeout in effect (the server's advertised
    /// values once connected, the configured ones before).
    pub fn heartbeat(&self) -> (Duration, Duration) {
        (self.keepalive.interval(), self.keepalive.timeout())
    }

    /// Consecutive send/receive timeouts counted by the inspection.
    pub fn consecutive_timeouts(&self) -> u32 {
        self.inspection.consecutive()
    }

    /// Decodes and routes one message from the server.
    fn dispatch(&mut self, message: Message, now: Instant) {
        match message {
            Message::LoginResult(m) => self.handle_login_result(m, now),
            Message::TagsResult(m) => self.handle_tags_result(m),
            Message::Downlink(m) => self.handle_downlink(m, now),
            Message::UplinkAck(m) => self.handle_uplink_ack(m, now),
            Message::RoomJoinResult(m) => self.handle_room_join_result(m, now),
            Message::RoomBatch(m) => self.handle_room_batch(m, now),
            Message::Ping(m) => self.handle_ping(m, now),
            Message::Pong(m) => self.handle_pong(m),
            Message::GoAway(m) => self.handle_go_away(m, now),
            Message::Close(m) => self.handle_close(m, now),
            Message::Error(m) => self.handle_error_frame(m, now),
            other => {
                let ty = other.frame_type();
                self.protocol_error(
                    ErrorCode::Protocol,
                    format!("unexpected {ty} frame from the server"),
                    now,
                );
            }
        }
    }

    /// An error frame: report it; a stream the server forgot logs in again;
    /// a login whose credential expired ends.
    fn handle_error_frame(&mut self, m: ErrorFrame, now: Instant) {
        let code = m.code();
        let stream = m.stream.map(StreamId::new);
        if code == ErrorCode::TokenExpired
            && let Some(stream) = stream
            && self.logins.contains_key(&stream)
        {
            self.on_login_expired(stream, m.message);
            return;
        }
        if code == ErrorCode::Replaced
            && let Some(stream) = stream
            && self.logins.contains_key(&stream)
        {
            // The same device logged in to this business and alias on a
            // newer connection, which keeps it: final for this login
            // (logging in again would take it back, and the other would
            // do the same).
            tracing::debug!(%stream, "login replaced by a newer connection");
            self.remove_login(stream);
            self.events.push_back(Event::LoginFailed {
                stream,
                code,
                message: m.message,
            });
            return;
        }
        if code == ErrorCode::NotLoggedIn
            && let Some(stream) = stream
            && self.logins.get(&stream).is_some_and(LoginEntry::is_active)
        {
            tracing::debug!(%stream, "server lost the login; logging in again");
            self.send_login(stream, now);
        }
        self.events.push_back(Event::ServerError {
            stream,
            code,
            message: m.message,
            frame_type: m.frame_type,
        });
    }

    /// Queues a message on the current connection.
    fn transmit(&mut self, message: &Message, now: Instant) {
        self.transmit.push_back(message.to_frame());
        self.stats.frames_sent += 1;
        self.keepalive.on_transmit(now);
    }

    /// Recomputes the timers derived from per-stream and per-room state.
    fn update_timers(&mut self) {
        if !self.link.is_connected() {
            for timer in [
                ClientTimer::Heartbeat,
                ClientTimer::HeartbeatTimeout,
                ClientTimer::AckDelay,
                ClientTimer::SendTimeout,
                ClientTimer::RoomPull,
                ClientTimer::LoginRetry,
                ClientTimer::CredentialRefresh,
            ] {
                self.timers.stop(timer);
            }
            return;
        }
        self.timers
            .set_or_stop(ClientTimer::Heartbeat, self.keepalive.next_ping_at());
        self.timers
            .set_or_stop(ClientTimer::HeartbeatTimeout, self.keepalive.deadline());
        let ack = self
            .logins
            .values()
            .filter(|l| l.is_active())
            .filter_map(|l| l.downlink.ack_due())
            .min();
        self.timers.set_or_stop(ClientTimer::AckDelay, ack);
        let send_timeout = self.config.send_timeout;
        let send = self
            .logins
            .values()
            .filter_map(|l| l.uplink.next_timeout(send_timeout))
            .min();
        self.timers.set_or_stop(ClientTimer::SendTimeout, send);
        let pull = self
            .rooms
            .values()
            .filter_map(RoomEntry::pull_deadline)
            .min();
        self.timers.set_or_stop(ClientTimer::RoomPull, pull);
        let retry = self.logins.values().filter_map(LoginEntry::retry_at).min();
        self.timers.set_or_stop(ClientTimer::LoginRetry, retry);
        let ask = self.next_credential_ask();
        self.timers.set_or_stop(ClientTimer::CredentialRefresh, ask);
    }
}

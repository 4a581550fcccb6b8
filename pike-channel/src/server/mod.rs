//! The server side of a Pike channel: one [`ServerChannel`] per accepted
//! connection, after the tunnel handshake.

mod credential;
mod downlink;
mod event;
pub mod limits;
mod login;
mod room;
mod stream;
mod uplink;
mod uplink_results;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use proto::channel::{Error as ErrorFrame, GoAway, Pong};
use proto::tunnel::{ClientHello, ErrorCode, ReconnectAdvice};
use tntunnel::Frame;

pub use self::credential::CredentialExpiry;
pub use self::downlink::Push;
pub use self::event::{CloseInitiator, ServerEvent};
use self::stream::{ServerStream, StreamMap};
pub use self::uplink::UplinkResult;
use crate::config::ServerConfig;
use crate::error::ChannelError;
use crate::ids::StreamId;
use crate::message::Message;
use crate::stats::ServerStats;
use crate::timer::{ServerTimer, ServerTimers, TimerKind};

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum State {
    Open,
    /// A go-away was sent; the connection closes when the client leaves or
    /// the grace period ends.
    Draining,
    Closed,
}

/// The server-side state machine of one Pike channel connection (sans-IO).
///
/// It parses the client's frames into [`ServerEvent`]s for the gateway
/// (login requests, uplink, acks, room requests), turns the gateway's
/// answers and pushes into frames, answers pings, and closes idle or
/// misbehaving connections. Like the client it performs no I/O and never
/// reads the clock: feed it with [`handle_frame`](Self::handle_frame) and
/// [`handle_timeout`](Self::handle_timeout), drain
/// [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event)
/// and [`poll_timeout`](Self::poll_timeout) after every input.
///
/// After [`ServerEvent::Closed`] the machine holds no timers and no streams;
/// the driver writes out the remaining frames (the close frame) and drops
/// the connection.
#[derive(Debug)]
pub struct ServerChannel {
    config: Arc<ServerConfig>,
    hello: ClientHello,
    state: State,
    timers: ServerTimers,
    /// Logins by stream id; see [`StreamMap`] (one login is the common
    /// case, and an idle connection is the common state).
    streams: StreamMap,
    /// Frames to write; unallocated once drained.
    transmit: VecDeque<Frame>,
    /// Events for the gateway; unallocated once drained.
    events: VecDeque<ServerEvent>,
    stats: ServerStats,
    /// Payload bytes of uplink messages reported and not acked yet (every
    /// stream), bounded by [`ServerConfig::uplink_pending_bytes`].
    uplink_pending_bytes: usize,
}

impl ServerChannel {
    /// A machine for a connection whose handshake just completed with the
    /// client's `hello`. The idle timer and the login deadline start at
    /// `now`.
    pub fn new(config: Arc<ServerConfig>, hello: ClientHello, now: Instant) -> Self {
        let mut timers = ServerTimers::new();
        timers.set(ServerTimer::Idle, now + config.get_idle_timeout());
        if let Some(limit) = config.login_timeout {
            timers.set(ServerTimer::Login, now + limit);
        }
        Self {
            config,
            hello,
            state: State::Open,
            timers,
            streams: StreamMap::default(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: ServerStats::default(),
            uplink_pending_bytes: 0,
        }
    }

    /// Feeds a frame received from the client.
    ///
    /// A frame that does not decode, a server-to-client message or a hello
    /// closes the connection with the matching code.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.stats.frames_received += 1;
        self.timers
            .set(ServerTimer::Idle, now + self.config.get_idle_timeout());
        let message = match Message::decode(&frame) {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, "malformed frame from client");
                self.close(error.code(), error.to_string(), now);
                return;
            }
        };
        match message {
            Message::Login(m) => self.handle_login(m, now),
            Message::Logout(m) => self.handle_logout(m),
            Message::Tags(m) => self.handle_tags(m, now),
            Message::DownlinkAck(m) => self.handle_downlink_ack(m),
            Message::Uplink(m) => self.handle_uplink(m, now),
            Message::RoomJoin(m) => self.handle_room_join(m, now),
            Message::RoomLeave(m) => self.handle_room_leave(m, now),
            Message::RoomPull(m) => self.handle_room_pull(m, now),
            Message::Ping(m) => {
                self.stats.pings += 1;
                self.transmit(&Message::Pong(Pong { nonce: m.nonce }));
            }
            Message::Pong(_) => {}
            Message::Close(m) => {
                let code = m.code();
                self.finish(code, m.message, CloseInitiator::Peer);
            }
            other => {
                let error = ChannelError::UnexpectedFrame(other.frame_type());
                self.close(error.code(), error.to_string(), now);
            }
        }
    }

    /// The driver's report: the transport is gone (read error, end of
    /// stream). Emits [`ServerEvent::Closed`].
    pub fn handle_connection_lost(&mut self, _now: Instant) {
        if self.state != State::Closed {
            self.finish(
                ErrorCode::Unspecified,
                "connection lost".to_owned(),
                CloseInitiator::Transport,
            );
        }
    }

    /// Runs the timers that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for &timer in ServerTimer::VALUES {
            if !self.timers.is_expired(timer, now) {
                continue;
            }
            self.timers.stop(timer);
            tracing::trace!(?timer, "timeout");
            match timer {
                ServerTimer::Idle => {
                    tracing::debug!(device = %self.hello.device_id, "idle timeout");
                    self.close(
                        ErrorCode::IdleTimeout,
                        "no heartbeat or data within the idle timeout".to_owned(),
                        now,
                    );
                }
                ServerTimer::Drain => {
                    self.close(
                        ErrorCode::GoingAway,
                        "go-away grace period over".to_owned(),
                        now,
                    );
                }
                ServerTimer::Login => self.login_deadline(now),
                ServerTimer::LoginExpiry => self.expire_logins(now),
            }
        }
    }

    /// The login deadline passed: closes the connection unless a business
    /// is logged in (a login still waiting for the gateway's answer does
    /// not count).
    fn login_deadline(&mut self, now: Instant) {
        if self.logged_in().next().is_some() {
            return;
        }
        let limit = self.config.login_timeout.unwrap_or_default();
        tracing::debug!(device = %self.hello.device_id, ?limit, "login timeout");
        self.close(
            ErrorCode::IdleTimeout,
            format!("no business logged in within the login timeout ({limit:?})"),
            now,
        );
    }

    /// Asks the client to reconnect, possibly elsewhere
    /// (`advice.endpoints`) after a delay in `[min, max]`; the connection is
    /// closed if the client has not left after the configured grace.
    pub fn go_away(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
        advice: Option<ReconnectAdvice>,
        now: Instant,
    ) {
        if self.state != State::Open {
            return;
        }
        let go_away = GoAway {
            code: code.into(),
            message: message.into(),
            reconnect: advice,
        };
        self.transmit(&Message::GoAway(go_away));
        self.state = State::Draining;
        self.timers
            .set(ServerTimer::Drain, now + self.config.go_away_grace);
    }

    /// Closes the connection with a close frame carrying `code`.
    pub fn close(&mut self, code: ErrorCode, message: impl Into<String>, _now: Instant) {
        if self.state == State::Closed {
            return;
        }
        let message = message.into();
        self.transmit.push_back(Frame::close(code, message.clone()));
        self.stats.frames_sent += 1;
        self.finish(code, message, CloseInitiator::Local);
    }

    /// The next frame to write to the client.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        let frame = self.transmit.pop_front();
        if frame.is_none() {
            release(&mut self.transmit);
        }
        frame
    }

    /// The next event for the gateway.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        let event = self.events.pop_front();
        if event.is_none() {
            release(&mut self.events);
        }
        event
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next
    /// (`None` once closed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// The client's hello (app id, device id, SDK).
    pub fn client_hello(&self) -> &ClientHello {
        &self.hello
    }

    /// Whether the connection is finished.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the machine holds anything: streams, timers or queued output.
    /// False once closed and drained (the resources are freed).
    pub fn holds_resources(&self) -> bool {
        !self.streams.is_empty()
            || !self.timers.is_empty()
            || !self.transmit.is_empty()
            || !self.events.is_empty()
    }

    /// Streams logged in (accepted) on this connection.
    pub fn logged_in(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.streams
            .iter()
            .filter(|(_, s)| s.is_active())
            .map(|(id, _)| id)
    }

    /// Payload bytes of uplink messages reported to the gateway and not
    /// acked yet, on every stream.
    pub fn uplink_pending_bytes(&self) -> usize {
        self.uplink_pending_bytes
    }

    /// Counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    fn transmit(&mut self, message: &Message) {
        if self.state == State::Closed {
            return;
        }
        self.stats.frames_sent += 1;
        self.transmit.push_back(message.to_frame());
    }

    /// Answers a request with an error frame; the connection stays up.
    fn error_frame(
        &mut self,
        code: ErrorCode,
        message: &str,
        stream: StreamId,
        frame_type: tntunnel::FrameType,
    ) {
        self.stats.error_frames += 1;
        let error = ErrorFrame {
            code: code.into(),
            message: message.to_owned(),
            stream: Some(stream.value()),
            frame_type: u32::from(frame_type.code()),
        };
        self.transmit(&Message::Error(error));
    }

    /// `stream` is logged in; otherwise answers NOT_LOGGED_IN and returns
    /// false.
    fn require_active(&mut self, stream: StreamId, frame_type: tntunnel::FrameType) -> bool {
        if self
            .streams
            .get(&stream)
            .is_some_and(ServerStream::is_active)
        {
            return true;
        }
        self.error_frame(
            ErrorCode::NotLoggedIn,
            "stream is not logged in",
            stream,
            frame_type,
        );
        false
    }

    /// Ends the connection: frees streams and timers, reports Closed.
    fn finish(&mut self, code: ErrorCode, message: String, initiator: CloseInitiator) {
        self.state = State::Closed;
        self.timers.stop_all();
        self.uplink_pending_bytes = 0;
        let streams = self.streams.take_ids();
        self.events.push_back(ServerEvent::Closed {
            code,
            message,
            initiator,
            streams,
        });
    }
}

/// Gives back the memory of a drained queue: a connection holds one of
/// each for its whole life and is idle most of it.
fn release<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() != 0 {
        *queue = VecDeque::new();
    }
}

/// Frame types a client never sends (server-to-client messages).
#[cfg(test)]
pub(crate) const SERVER_ONLY_TYPES: [tntunnel::FrameType; 8] = [
    crate::frame_types::LOGIN_RESULT,
    crate::frame_types::TAGS_RESULT,
    crate::frame_types::DOWNLINK,
    crate::frame_types::UPLINK_ACK,
    crate::frame_types::ROOM_JOIN_RESULT,
    crate::frame_types::ROOM_BATCH,
    crate::frame_types::GO_AWAY,
    crate::frame_types::ERROR,
];

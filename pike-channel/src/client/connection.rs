//! Connection lifecycle: start/stop/restart, dial reports, loss, and the
//! reconnect schedule (Fibonacci backoff with jitter, server advice, spread
//! after a stable connection).
//!
//! ```text
//!  Idle --start--> Connecting --connected--> Connected
//!                    ^   |                      |
//!                    |   | failed               | lost / dead / go-away
//!       backoff over |   v                      v
//!                  Backoff <--------------------+
//!  any --stop--> Closed --start--> Connecting
//!  Connecting / Connected --refused for good--> Closed --login / start--> Connecting
//! ```
//!
//! "Refused for good": a handshake refusal or close whose code is not
//! retryable ([`ErrorCode::is_retryable`]), e.g. `UNKNOWN_APP`.

use std::time::{Duration, Instant};

use proto::channel::GoAway;
use proto::tunnel::{Close, ErrorCode, ReconnectAdvice, ServerHello};
use tntunnel::Frame;

use super::{ClientChannel, DisconnectReason, Event};
use tunnelkit::{BackoffConfig, FibonacciBackoff};

use crate::backoff::uniform;
use crate::config::ClientConfig;
use crate::ids::ConnectionId;
use crate::timer::ClientTimer;

/// Where the channel's connection stands.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Created, not started.
    Idle,
    /// A dial is in progress.
    Connecting,
    /// Connected (logins may still be pending).
    Connected,
    /// Waiting for the backoff delay before the next dial.
    Reconnecting,
    /// Stopped by the user; [`start`](ClientChannel::start) again to resume.
    Closed,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Idle,
    Connecting { id: ConnectionId, since: Instant },
    Connected { id: ConnectionId, since: Instant },
    Backoff,
    Closed,
}

/// Lifecycle state of the client's connection.
#[derive(Debug)]
pub(super) struct Link {
    phase: Phase,
    next_id: u64,
    backoff: FibonacciBackoff,
    /// Reconnect attempts since the channel was last stable (0 = first dial).
    attempt: u32,
    /// Advice from a go-away or close frame, for the next reconnect only.
    advice_once: Option<ReconnectAdvice>,
    /// Advice from the server hello, for the reconnect after this connection.
    hello_advice: Option<ReconnectAdvice>,
    /// The crash window the last hello advised, kept after a stable
    /// connection was lost until a dial connects: the first
    /// `crash_window_retries` failed dials (counted by `attempt`) are
    /// retried at a delay drawn in it again instead of the Fibonacci
    /// backoff's first steps (the window is the server's own estimate of
    /// how fast its replacement takes every client back).
    crash_window: Option<ReconnectAdvice>,
    /// The current connection counts as stable whatever its age (go-away).
    force_stable: bool,
    /// Closed because the server refused the client for good (not by the
    /// user): the next login dials again.
    refused: bool,
    connection_token: String,
    /// When the current connection's hello arrived and the server's
    /// wall-clock time in it (unknown when the hello carried none).
    server_clock: Option<(Instant, u64)>,
}

impl Link {
    pub(super) fn new(config: &ClientConfig, seed: u64) -> Self {
        Self {
            phase: Phase::Idle,
            next_id: 1,
            backoff: fibonacci(config.backoff, seed),
            attempt: 0,
            advice_once: None,
            hello_advice: None,
            crash_window: None,
            force_stable: false,
            refused: false,
            connection_token: String::new(),
            server_clock: None,
        }
    }

    pub(super) fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    /// The hello's server time and when it arrived.
    pub(super) fn server_clock(&self) -> Option<(Instant, u64)> {
        self.server_clock
    }

    fn current_id(&self) -> Option<ConnectionId> {
        match self.phase {
            Phase::Connecting { id, .. } | Phase::Connected { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// The Fibonacci backoff for `config`.
fn fibonacci(config: BackoffConfig, seed: u64) -> FibonacciBackoff {
    match FibonacciBackoff::new(config, seed) {
        Ok(backoff) => backoff,
        // `ClientConfig` is built from the (valid) default and changed only by
        // `ClientConfig::backoff`, which stores values this constructor accepted.
        Err(error) => unreachable!("validated backoff configuration rejected: {error}"),
    }
}

/// Advice worth following: a delay range or endpoints.
fn meaningful(advice: Option<ReconnectAdvice>) -> Option<ReconnectAdvice> {
    advice.filter(|a| a.max_delay_ms > 0 || !a.endpoints.is_empty())
}

impl ClientChannel {
    /// Starts the channel: dials at once. No-op unless
    /// [`Idle`](ConnectionState::Idle) or [`Closed`](ConnectionState::Closed).
    pub fn start(&mut self, now: Instant) {
        if !matches!(self.link.phase, Phase::Idle | Phase::Closed) {
            return;
        }
        self.link.refused = false;
        self.link.backoff.reset();
        self.link.attempt = 0;
        self.link.crash_window = None;
        self.inspection.reset();
        self.arm_inspection(now);
        self.begin_connect(now);
        self.update_timers();
    }

    /// Stops the channel: closes the connection (or aborts the dial), stops
    /// reconnecting and every timer, and emits [`Event::Stopped`].
    ///
    /// Logins, downlink positions, unacked uplink messages and rooms are
    /// kept: [`start`](Self::start) resumes where the channel left off.
    /// Use [`logout`](Self::logout) first to drop a business for good.
    pub fn stop(&mut self, now: Instant) {
        if matches!(self.link.phase, Phase::Closed) {
            return;
        }
        let close = Frame::close(ErrorCode::Unspecified, "client stopped");
        self.tear_down(DisconnectReason::Stopped, Some(close), true, now);
        self.link.phase = Phase::Closed;
        self.link.refused = false;
        self.timers.stop_all();
        self.events.push_back(Event::Stopped);
    }

    /// Drops the current connection (if any) and dials again at once, with
    /// the backoff reset. Starts a stopped or idle channel.
    pub fn restart(&mut self, now: Instant) {
        if matches!(self.link.phase, Phase::Idle | Phase::Closed) {
            self.start(now);
            return;
        }
        let close = Frame::close(ErrorCode::Unspecified, "client restart");
        self.tear_down(DisconnectReason::Restart, Some(close), true, now);
        self.link.backoff.reset();
        self.link.attempt = 0;
        self.link.crash_window = None;
        self.inspection.reset();
        self.begin_connect(now);
        self.update_timers();
    }

    /// Hint that the network changed (e.g. Wi-Fi to cellular): while waiting
    /// out a backoff, dial at once. A local event, not correlated between
    /// devices, so it may skip the delay.
    pub fn reconnect_now(&mut self, now: Instant) {
        if matches!(self.link.phase, Phase::Backoff) {
            self.begin_connect(now);
            self.update_timers();
        }
    }

    /// The driver's report: dial `id` succeeded and the tunnel handshake
    /// returned `hello`. Logins are sent at once.
    ///
    /// A report about a dial the machine abandoned is answered with
    /// [`Event::Disconnect`] (reason [`DisconnectReason::Stale`]).
    pub fn handle_connected(&mut self, id: ConnectionId, hello: &ServerHello, now: Instant) {
        let Phase::Connecting { id: current, .. } = self.link.phase else {
            self.reject_stale(id);
            return;
        };
        if current != id {
            self.reject_stale(id);
            return;
        }
        self.link.phase = Phase::Connected { id, since: now };
        self.link
            .connection_token
            .clone_from(&hello.connection_token);
        self.link.hello_advice = meaningful(hello.reconnect.clone());
        self.link.crash_window = None;
        self.link.server_clock = (hello.server_time_ms != 0).then_some((now, hello.server_time_ms));
        self.stats.connections += 1;
        let interval = match hello.heartbeat_interval_ms {
            0 => self.config.heartbeat_interval,
            ms => Duration::from_millis(u64::from(ms)).max(Duration::from_secs(1)),
        };
        let timeout = match hello.heartbeat_timeout_ms {
            0 => self.config.heartbeat_timeout,
            ms => Duration::from_millis(u64::from(ms)).max(Duration::from_secs(1)),
        };
        let period_changed = interval != self.keepalive.interval();
        self.keepalive.reset(interval, timeout, now);
        if period_changed {
            self.arm_inspection(now);
        }
        tracing::debug!(%id, token = %hello.connection_token, ?interval, ?timeout, "connected");
        self.events.push_back(Event::Connected {
            connection_token: hello.connection_token.clone(),
        });
        self.login_all(now);
        self.update_timers();
    }

    /// The driver's report: dial `id` failed. Schedules the next attempt.
    pub fn handle_connect_failed(&mut self, id: ConnectionId, now: Instant) {
        let Phase::Connecting { id: current, .. } = self.link.phase else {
            return;
        };
        if current != id {
            return;
        }
        self.stats.connect_failures += 1;
        self.link.phase = Phase::Backoff;
        self.schedule_reconnect(None, now);
        self.update_timers();
    }

    /// The driver's report: the server refused dial `id` during the
    /// handshake with a close frame (`code`, `message`).
    ///
    /// A code after which reconnecting cannot help
    /// ([`ErrorCode::is_retryable`] is false: unknown app, unsupported
    /// version, ...) ends the channel's attempts: see
    /// [`Event::Refused`]. Otherwise its reconnect advice, if any, sets the
    /// next delay (uniform in its range) and the endpoints of the next dial,
    /// as after a close on a live connection; without advice this is
    /// [`handle_connect_failed`](Self::handle_connect_failed).
    pub fn handle_connect_refused(
        &mut self,
        id: ConnectionId,
        code: ErrorCode,
        message: String,
        advice: Option<ReconnectAdvice>,
        now: Instant,
    ) {
        let current =
            matches!(self.link.phase, Phase::Connecting { id: current, .. } if current == id);
        if current && !code.is_retryable() {
            self.stats.connect_failures += 1;
            self.refused_for_good(code, message);
            return;
        }
        if current && let Some(advice) = meaningful(advice) {
            self.link.advice_once = Some(advice);
        }
        self.handle_connect_failed(id, now);
    }

    /// The server refused this client for good (a code that is not
    /// retryable, in a handshake refusal or a close): every login fails
    /// with the server's code and message (pending sends first), the
    /// channel stops dialing and reports [`Event::Refused`]. The next
    /// [`login`](Self::login) or [`start`](Self::start) dials again.
    fn refused_for_good(&mut self, code: ErrorCode, message: String) {
        tracing::debug!(?code, %message, "refused for good; not reconnecting");
        self.link.phase = Phase::Closed;
        self.link.refused = true;
        self.timers.stop_all();
        let streams: Vec<_> = self.logins.keys().copied().collect();
        for stream in streams {
            self.remove_login(stream);
            self.events.push_back(Event::LoginFailed {
                stream,
                code,
                message: message.clone(),
            });
        }
        self.events.push_back(Event::Refused { code, message });
    }

    /// The driver's report: connection `id` ended (transport error, end of
    /// stream). Reports about older connections are ignored.
    pub fn handle_disconnected(
        &mut self,
        id: ConnectionId,
        reason: DisconnectReason,
        now: Instant,
    ) {
        match self.link.phase {
            Phase::Connected { id: current, .. } if current == id => {
                self.lose_link(reason, None, false, now);
            }
            Phase::Connecting { id: current, .. } if current == id => {
                self.handle_connect_failed(id, now)
            }
            _ => {}
        }
        self.update_timers();
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        match self.link.phase {
            Phase::Idle => ConnectionState::Idle,
            Phase::Connecting { .. } => ConnectionState::Connecting,
            Phase::Connected { .. } => ConnectionState::Connected,
            Phase::Backoff => ConnectionState::Reconnecting,
            Phase::Closed => ConnectionState::Closed,
        }
    }

    /// The current dial or connection, if any.
    pub fn connection_id(&self) -> Option<ConnectionId> {
        self.link.current_id()
    }

    /// The server's token of the current (or last) connection.
    pub fn connection_token(&self) -> &str {
        &self.link.connection_token
    }

    /// When the next reconnect dial is due, while waiting out a backoff.
    pub fn reconnect_at(&self) -> Option<Instant> {
        self.timers.get(ClientTimer::Reconnect)
    }

    fn reject_stale(&mut self, id: ConnectionId) {
        tracing::debug!(%id, "stale connection report");
        self.events.push_back(Event::Disconnect {
            id,
            reason: DisconnectReason::Stale,
            close: None,
        });
    }

    /// Starts a dial now.
    pub(super) fn begin_connect(&mut self, now: Instant) {
        let id = ConnectionId::new(self.link.next_id);
        self.link.next_id += 1;
        self.link.phase = Phase::Connecting { id, since: now };
        self.timers.stop(ClientTimer::Reconnect);
        self.stats.connect_attempts += 1;
        let endpoints = self
            .link
            .advice_once
            .take()
            .map(|a| a.endpoints)
            .unwrap_or_default();
        self.events.push_back(Event::Connecting {
            attempt: self.link.attempt,
        });
        self.events.push_back(Event::Connect { id, endpoints });
    }

    pub(super) fn on_reconnect_timer(&mut self, now: Instant) {
        if matches!(self.link.phase, Phase::Backoff) {
            self.begin_connect(now);
        }
    }

    /// Forgets everything tied to the current connection. Returns when the
    /// lost connection had been established.
    pub(super) fn tear_down(
        &mut self,
        reason: DisconnectReason,
        close: Option<Frame>,
        notify_driver: bool,
        now: Instant,
    ) -> Option<Instant> {
        let (id, since) = match self.link.phase {
            Phase::Connecting { id, .. } => (Some(id), None),
            Phase::Connected { id, since } => (Some(id), Some(since)),
            _ => (None, None),
        };
        if notify_driver && let Some(id) = id {
            let close = if since.is_some() { close } else { None };
            self.events.push_back(Event::Disconnect {
                id,
                reason: reason.clone(),
                close,
            });
        }
        self.transmit.clear();
        self.keepalive
            .reset(self.keepalive.interval(), self.keepalive.timeout(), now);
        for login in self.logins.values_mut() {
            login.on_link_lost();
        }
        for room in self.rooms.values_mut() {
            room.on_link_lost();
        }
        if since.is_some() {
            tracing::debug!(?reason, "disconnected");
            self.events.push_back(Event::Disconnected { reason });
        }
        self.link.phase = Phase::Backoff;
        since
    }

    /// The connection is gone: tear down and schedule the reconnect.
    pub(super) fn lose_link(
        &mut self,
        reason: DisconnectReason,
        close: Option<Frame>,
        notify_driver: bool,
        now: Instant,
    ) {
        let since = self.tear_down(reason, close, notify_driver, now);
        self.schedule_reconnect(since, now);
    }

    /// Picks the delay before the next dial and arms the reconnect timer.
    ///
    /// - Advice from a go-away or close frame wins (uniform in its range).
    /// - After losing a connection that stayed up for the stable period, the
    ///   backoff resets and the delay is uniform in the hello's advice range,
    ///   or in `[0, reconnect_spread]`: this spreads clients that lose one
    ///   server at the same moment.
    /// - The first `crash_window_retries` (default 3) dials that fail in a row after
    ///   such a loss, when the hello advised the window, are retried at a
    ///   delay drawn in that window again: a restarted gateway is often not
    ///   listening yet for the first few of its clients, and the Fibonacci
    ///   backoff's first step (0.5 to 1.5 s) would make them the stragglers
    ///   of the storm.
    /// - Otherwise (dial failed, or the connection flapped) the next
    ///   Fibonacci delay with jitter.
    fn schedule_reconnect(&mut self, connected_since: Option<Instant>, now: Instant) {
        let forced = std::mem::take(&mut self.link.force_stable);
        let stable = connected_since.is_some_and(|since| {
            forced || now.saturating_duration_since(since) >= self.config.stable_period
        });
        if stable {
            self.link.backoff.reset();
            self.link.attempt = 0;
        }
        let hello_advice = if connected_since.is_some() {
            self.link.hello_advice.take()
        } else {
            None
        };
        // A failed dial after a stable loss: `attempt` counts the dials
        // since the loss (1 was its spread).
        let crash_retry = connected_since.is_none()
            && self.link.attempt <= u32::from(self.config.crash_window_retries);
        let delay = match (self.link.advice_once.as_ref(), stable) {
            (Some(advice), _) if advice.max_delay_ms > 0 => advised_delay(&mut self.rng, advice),
            (_, true) => match hello_advice {
                Some(advice) => {
                    if self.link.advice_once.is_none() && !advice.endpoints.is_empty() {
                        self.link.advice_once = Some(advice.clone());
                    }
                    if advice.max_delay_ms > 0 {
                        let delay = advised_delay(&mut self.rng, &advice);
                        self.link.crash_window = Some(advice);
                        delay
                    } else {
                        uniform(&mut self.rng, Duration::ZERO, self.config.reconnect_spread)
                    }
                }
                None => uniform(&mut self.rng, Duration::ZERO, self.config.reconnect_spread),
            },
            (_, false) => match self.link.crash_window.as_ref().filter(|_| crash_retry) {
                Some(window) => advised_delay(&mut self.rng, window),
                None => self.link.backoff.next_delay(),
            },
        };
        self.link.attempt += 1;
        self.link.phase = Phase::Backoff;
        self.timers.set(ClientTimer::Reconnect, now + delay);
        tracing::debug!(attempt = self.link.attempt, ?delay, "reconnect scheduled");
        self.events.push_back(Event::Reconnecting {
            attempt: self.link.attempt,
            delay,
        });
    }

    pub(super) fn handle_go_away(&mut self, m: GoAway, now: Instant) {
        let code = m.code();
        tracing::debug!(?code, message = %m.message, "go-away");
        self.link.advice_once = meaningful(m.reconnect);
        // A deliberate server action on a working connection: treat it as
        // stable so the backoff restarts, and spread the reconnects.
        self.link.force_stable = true;
        self.lose_link(
            DisconnectReason::GoAway {
                code,
                message: m.message,
            },
            None,
            true,
            now,
        );
    }

    pub(super) fn handle_close(&mut self, m: Close, now: Instant) {
        let code = m.code();
        tracing::debug!(?code, message = %m.message, "closed by server");
        if !code.is_retryable() {
            self.tear_down(
                DisconnectReason::ClosedByServer {
                    code,
                    message: m.message.clone(),
                },
                None,
                true,
                now,
            );
            self.refused_for_good(code, m.message);
            return;
        }
        self.link.advice_once = meaningful(m.reconnect);
        self.lose_link(
            DisconnectReason::ClosedByServer {
                code,
                message: m.message,
            },
            None,
            true,
            now,
        );
    }

    /// The server broke the protocol: close with `code` and reconnect.
    pub(super) fn protocol_error(&mut self, code: ErrorCode, message: String, now: Instant) {
        let close = Frame::close(code, message.clone());
        self.lose_link(
            DisconnectReason::ProtocolError { code, message },
            Some(close),
            true,
            now,
        );
    }

    /// When the current dial started, if one is in progress.
    pub(super) fn connecting_since(&self) -> Option<(ConnectionId, Instant)> {
        match self.link.phase {
            Phase::Connecting { id, since } => Some((id, since)),
            _ => None,
        }
    }

    /// Whether the channel should be connected (started, not stopped).
    pub(super) fn is_running(&self) -> bool {
        !matches!(self.link.phase, Phase::Idle | Phase::Closed)
    }

    /// Whether the channel stopped because the server refused it for good
    /// (not stopped by the user).
    pub(super) fn is_refused(&self) -> bool {
        self.link.refused && matches!(self.link.phase, Phase::Closed)
    }

    /// Whether the channel waits out a backoff.
    pub(super) fn is_backing_off(&self) -> bool {
        matches!(self.link.phase, Phase::Backoff)
    }

    /// Drops the pending reconnect timer without a dial: the stuck state the
    /// inspection exists to repair (a lost timer, a driver that never ran
    /// it).
    #[cfg(test)]
    pub(crate) fn lose_reconnect_timer_for_test(&mut self) {
        self.timers.stop(ClientTimer::Reconnect);
    }
}

/// A delay drawn uniformly in the range `advice` gives.
fn advised_delay(rng: &mut fastrand::Rng, advice: &ReconnectAdvice) -> Duration {
    let min = Duration::from_millis(u64::from(advice.min_delay_ms));
    let max = Duration::from_millis(u64::from(advice.max_delay_ms));
    uniform(rng, min, max)
}

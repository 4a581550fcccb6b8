//! The client driver: one task per [`ClientChannel`], owning its connection.
//!
//! Like quinn's `ConnectionDriver`, the driver is a future that, on every
//! wake, feeds the machine (dial results, frames, the timer), carries out its
//! actions (dial, drop), writes what it wants to send (all frames fed, one
//! flush), re-arms one timer from `poll_timeout`, and hands the events to
//! the subscribers. Commands go through a cloneable [`ClientHandle`] that
//! locks the machine briefly (never across an await) and wakes the driver,
//! so they return synchronously.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;
use proto::tunnel::ServerHello;
use tntunnel::{Frame, FramedTunnel, HandshakeError};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_util::sync::PollSender;
use tracing::{Instrument, Span};

use super::config::DriverConfig;
use super::connector::{ConnectError, Connected, Connector};
use super::util::{Clock, ReadEnd, lock, pump_transmit, trim_buffers};
use crate::error::{SendError, UnknownStream};
use crate::{
    ClientChannel, ClientConfig, ConnectionId, ConnectionState, DisconnectReason, Event,
    LoginParams, SendId, StreamId,
};

/// Rounds of work per wake before yielding to other tasks.
const MAX_ROUNDS: usize = 32;
/// Frames read per round.
const MAX_FRAMES_PER_ROUND: usize = 64;

/// Which events a subscriber receives.
///
/// Every subscriber also receives the connectivity events (`Connecting`,
/// `Connected`, `Disconnected`, `Reconnecting`, `Stopped`) and server errors
/// that name no stream.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum EventFilter {
    /// The events of one business. The subscription ends (the receiver
    /// yields `None`) after the stream's last event
    /// ([`Event::ends_stream`]).
    Stream(StreamId),
    /// Connectivity events only.
    Connectivity,
    /// Every event except the driver's actions.
    All,
}

impl EventFilter {
    fn wants(self, stream: Option<StreamId>) -> bool {
        match (self, stream) {
            (_, None) | (Self::All, Some(_)) => true,
            (Self::Stream(mine), Some(stream)) => mine == stream,
            (Self::Connectivity, Some(_)) => false,
        }
    }
}

/// Events for one subscriber of a client channel, in the machine's order.
///
/// Bounded ([`DriverConfig::event_capacity`]): while a subscriber's queue is
/// full the driver stops reading from the connection (backpressure; nothing
/// is dropped), which also holds back the other businesses sharing the
/// channel. Consume promptly, or give a slow business its own channel.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<Event>,
}

impl EventReceiver {
    /// The next event; `None` once the subscription ended (the stream's login
    /// ended, or the driver finished).
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Polls for the next event.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl Stream for EventReceiver {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

/// Whether the receiving side of `tx` is gone.
pub(super) fn receiver_gone<T: Send>(tx: &PollSender<T>) -> bool {
    tx.get_ref().is_none_or(mpsc::Sender::is_closed)
}

struct Subscriber {
    filter: EventFilter,
    tx: PollSender<Event>,
}

/// What the driver and the handles share.
struct State {
    channel: ClientChannel,
    clock: Clock,
    subscribers: Vec<Subscriber>,
    /// Events taken from the machine, waiting for subscriber capacity.
    pending: VecDeque<Event>,
    capacity: usize,
    driver: Option<Waker>,
    /// Some handle is alive.
    handles_alive: bool,
    /// The driver future completed or was dropped.
    finished: bool,
}

impl State {
    fn wake(&mut self) {
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }

    fn subscribe(&mut self, filter: EventFilter) -> EventReceiver {
        let (tx, rx) = mpsc::channel(self.capacity);
        self.subscribers.push(Subscriber {
            filter,
            tx: PollSender::new(tx),
        });
        EventReceiver { rx }
    }

    /// Hands pending events to their subscribers, in order, while every
    /// target has room. Returns whether any event was handed over.
    fn dispatch(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Some(event) = self.pending.front() {
            let stream = event.stream();
            let mut ready = true;
            for sub in self.subscribers.iter_mut() {
                if !sub.filter.wants(stream) {
                    continue;
                }
                match sub.tx.poll_reserve(cx) {
                    Poll::Ready(Ok(())) => {}
                    // The receiver is gone: the subscriber is removed below.
                    Poll::Ready(Err(_)) => {}
                    Poll::Pending => ready = false,
                }
            }
            self.subscribers.retain(|sub| !receiver_gone(&sub.tx));
            if !ready {
                return progress;
            }
            let Some(event) = self.pending.pop_front() else {
                break;
            };
            progress = true;
            let targets: Vec<usize> = (0..self.subscribers.len())
                .filter(|&i| self.subscribers[i].filter.wants(stream))
                .collect();
            if targets.is_empty() {
                tracing::trace!(?event, "event without subscriber dropped");
            }
            let ends = event.ends_stream().then_some(stream).flatten();
            if let Some((&last, rest)) = targets.split_last() {
                for &i in rest {
                    let _ = self.subscribers[i].tx.send_item(event.clone());
                }
                let _ = self.subscribers[last].tx.send_item(event);
            }
            if let Some(stream) = ends {
                self.subscribers
                    .retain(|sub| sub.filter != EventFilter::Stream(stream));
            }
        }
        progress
    }
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// Keeps the driver alive; the last one dropped stops the channel.
struct HandleRef {
    shared: Arc<Shared>,
}

impl Drop for HandleRef {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.handles_alive = false;
        state.wake();
    }
}

/// A cheap, cloneable handle to a client channel run by a [`ClientDriver`].
///
/// Every command locks the machine for the duration of the call (never
/// across an await), runs it with the current time and wakes the driver;
/// results are returned synchronously. When the last handle is dropped the
/// driver stops the channel (close frame, then the socket) and finishes.
#[derive(Clone)]
pub struct ClientHandle {
    inner: Arc<HandleRef>,
}

impl ClientHandle {
    fn command<R>(&self, f: impl FnOnce(&mut ClientChannel, Instant) -> R) -> R {
        let mut state = self.inner.shared.lock();
        let now = state.clock.now();
        let result = f(&mut state.channel, now);
        state.wake();
        result
    }

    /// Starts the channel: it dials at once and keeps a connection up until
    /// [`stop`](Self::stop).
    pub fn start(&self) {
        self.command(|c, now| c.start(now));
    }

    /// Stops the channel (close frame, no reconnect). Logins, positions and
    /// unacked uplink are kept for the next [`start`](Self::start).
    pub fn stop(&self) {
        self.command(|c, now| c.stop(now));
    }

    /// Drops the connection and dials again at once.
    pub fn restart(&self) {
        self.command(|c, now| c.restart(now));
    }

    /// Network-change hint: while waiting out a backoff, dial now.
    pub fn reconnect_now(&self) {
        self.command(|c, now| c.reconnect_now(now));
    }

    /// Adds a business login and subscribes to its events in one step, so
    /// that no event of the new stream can be missed. The receiver also gets
    /// the connectivity events, and ends after the stream's last event.
    pub fn login(&self, params: LoginParams) -> (StreamId, EventReceiver) {
        let mut state = self.inner.shared.lock();
        let now = state.clock.now();
        let stream = state.channel.login(params, now);
        let events = state.subscribe(EventFilter::Stream(stream));
        state.wake();
        (stream, events)
    }

    /// Logs a business out; its pending sends fail, then
    /// [`Event::LoggedOut`] ends its subscriptions.
    pub fn logout(&self, stream: StreamId) -> Result<(), UnknownStream> {
        self.command(|c, now| c.logout(stream, now))
    }

    /// Replaces the credential of the next (re-)login of `stream`.
    pub fn set_credential(
        &self,
        stream: StreamId,
        credential: impl Into<String>,
    ) -> Result<(), UnknownStream> {
        self.command(|c, _| c.set_credential(stream, credential))
    }

    /// Replaces the credential of `stream` and refreshes the live login
    /// with it (see [`ClientChannel::refresh_credential`]).
    pub fn refresh_credential(
        &self,
        stream: StreamId,
        credential: impl Into<String>,
    ) -> Result<(), UnknownStream> {
        self.command(|c, now| c.refresh_credential(stream, credential, now))
    }

    /// Queues an uplink message (see [`ClientChannel::send`]); the outcome
    /// arrives as [`Event::SendSuccess`] or [`Event::SendFailure`].
    pub fn send(
        &self,
        stream: StreamId,
        payload: impl Into<Bytes>,
        idempotency_key: Option<String>,
    ) -> Result<SendId, SendError> {
        self.command(|c, now| c.send(stream, payload, idempotency_key, now))
    }

    /// Queues an uplink message whose `key` the caller vouches is new (see
    /// [`ClientChannel::send_new_key`]).
    pub fn send_new_key(
        &self,
        stream: StreamId,
        payload: impl Into<Bytes>,
        key: String,
    ) -> Result<SendId, SendError> {
        self.command(|c, now| c.send_new_key(stream, payload, key, now))
    }

    /// Binds and unbinds tags; answered by [`Event::TagsResult`].
    pub fn update_tags(
        &self,
        stream: StreamId,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> Result<u32, UnknownStream> {
        self.command(|c, now| c.update_tags(stream, bind, unbind, now))
    }

    /// Joins a room and starts its pull loop (see
    /// [`ClientChannel::join_room`]).
    pub fn join_room(
        &self,
        stream: StreamId,
        room: impl Into<String>,
        from: Option<u64>,
    ) -> Result<(), UnknownStream> {
        self.command(|c, now| c.join_room(stream, room, from, now))
    }

    /// Leaves a room.
    pub fn leave_room(&self, stream: StreamId, room: &str) -> Result<(), UnknownStream> {
        self.command(|c, now| c.leave_room(stream, room, now))
    }

    /// A new subscription.
    pub fn subscribe(&self, filter: EventFilter) -> EventReceiver {
        self.inner.shared.lock().subscribe(filter)
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        self.inner.shared.lock().channel.state()
    }

    /// Reads the machine (stats, positions, route ids, pending sends).
    pub fn inspect<R>(&self, f: impl FnOnce(&ClientChannel) -> R) -> R {
        f(&self.inner.shared.lock().channel)
    }

    /// Whether the driver has finished (or was dropped): commands then have
    /// no effect on any connection.
    pub fn is_finished(&self) -> bool {
        self.inner.shared.lock().finished
    }

    /// Whether both handles drive the same channel.
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.shared.lock();
        f.debug_struct("ClientHandle")
            .field("state", &state.channel.state())
            .field("connection_token", &state.channel.connection_token())
            .field("subscribers", &state.subscribers.len())
            .finish_non_exhaustive()
    }
}

type DialFuture<Io> = Pin<Box<dyn Future<Output = Result<Connected<Io>, ConnectError>> + Send>>;

struct Dial<Io> {
    id: ConnectionId,
    future: DialFuture<Io>,
}

struct Live<Io> {
    id: ConnectionId,
    framed: FramedTunnel<Io>,
    span: Span,
    needs_flush: bool,
}

/// The future that runs a [`ClientChannel`] over connections opened by a
/// [`Connector`]. Spawn it (or use [`spawn_client`]); it completes after the
/// last [`ClientHandle`] is dropped and the channel is stopped.
#[must_use = "the driver does nothing unless polled or spawned"]
pub struct ClientDriver<C: Connector> {
    shared: Arc<Shared>,
    connector: Arc<C>,
    config: DriverConfig,
    conn: Option<Live<C::Io>>,
    dial: Option<Dial<C::Io>>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    stopping: bool,
}

impl<C: Connector> ClientDriver<C> {
    /// A driver for `channel` (usually still idle: call
    /// [`ClientHandle::start`]) dialing through `connector`.
    pub fn new(
        channel: ClientChannel,
        connector: C,
        config: &DriverConfig,
    ) -> (Self, ClientHandle) {
        let state = State {
            channel,
            clock: Clock::new(),
            subscribers: Vec::new(),
            pending: VecDeque::new(),
            capacity: config.event_capacity,
            driver: None,
            handles_alive: true,
            finished: false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
        });
        let handle = ClientHandle {
            inner: Arc::new(HandleRef {
                shared: Arc::clone(&shared),
            }),
        };
        let driver = Self {
            shared,
            connector: Arc::new(connector),
            config: *config,
            conn: None,
            dial: None,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            timer_at: None,
            stopping: false,
        };
        (driver, handle)
    }

    /// Feeds a completed dial to the machine.
    fn poll_dial(&mut self, cx: &mut Context<'_>, state: &mut State, now: Instant) -> bool {
        let Some(dial) = self.dial.as_mut() else {
            return false;
        };
        let Poll::Ready(result) = dial.future.as_mut().poll(cx) else {
            return false;
        };
        let id = dial.id;
        self.dial = None;
        match result {
            Ok(connected) => {
                let token = connected.hello.connection_token.clone();
                let span = tracing::debug_span!(
                    "conn",
                    conn.id = %id,
                    peer.addr = ?connected.peer,
                    transport = connected.transport,
                    token = %token,
                );
                span.in_scope(|| tracing::debug!("connected"));
                if let Some(old) = self.conn.take() {
                    // The machine dials only when it has no connection.
                    self.close_in_background(old, None);
                }
                let hello: ServerHello = connected.hello;
                self.conn = Some(Live {
                    id,
                    framed: connected.framed,
                    span,
                    needs_flush: false,
                });
                state.channel.handle_connected(id, &hello, now);
            }
            Err(ConnectError::Handshake(HandshakeError::Rejected {
                code,
                message,
                reconnect,
            })) => {
                tracing::debug!(conn.id = %id, ?code, %message, "refused by the server");
                state
                    .channel
                    .handle_connect_refused(id, code, message, reconnect, now);
            }
            Err(error) => {
                tracing::debug!(conn.id = %id, %error, "dial failed");
                state.channel.handle_connect_failed(id, now);
            }
        }
        true
    }

    /// Runs the machine's timer when it is due, and re-arms it.
    fn poll_timer(&mut self, cx: &mut Context<'_>, state: &mut State, now: Instant) -> bool {
        let mut fired = false;
        for _ in 0..2 {
            let deadline = state.channel.poll_timeout();
            if deadline != self.timer_at {
                if let Some(deadline) = deadline {
                    self.timer
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(deadline));
                }
                self.timer_at = deadline;
            }
            let Some(deadline) = self.timer_at else {
                return fired;
            };
            if deadline > now && self.timer.as_mut().poll(cx).is_pending() {
                return fired;
            }
            state.channel.handle_timeout(now);
            self.timer_at = None;
            fired = true;
        }
        fired
    }

    /// Takes the machine's events: actions are carried out now, the rest
    /// queue for the subscribers.
    fn drain_events(&mut self, state: &mut State) -> bool {
        let mut progress = false;
        while let Some(event) = state.channel.poll_event() {
            progress = true;
            match event {
                Event::Connect { id, endpoints } => self.start_dial(id, endpoints),
                Event::Disconnect { id, reason, close } => self.disconnect(id, &reason, close),
                other => state.pending.push_back(other),
            }
        }
        progress
    }

    fn start_dial(&mut self, id: ConnectionId, endpoints: Vec<String>) {
        tracing::debug!(conn.id = %id, ?endpoints, "dialing");
        let connector = Arc::clone(&self.connector);
        let span = tracing::debug_span!("dial", conn.id = %id);
        let future = async move { connector.connect(&endpoints).await }.instrument(span);
        // The machine abandons any earlier dial before asking for a new one.
        self.dial = Some(Dial {
            id,
            future: Box::pin(future),
        });
    }

    fn disconnect(&mut self, id: ConnectionId, reason: &DisconnectReason, close: Option<Frame>) {
        if self.dial.as_ref().is_some_and(|d| d.id == id) {
            tracing::debug!(conn.id = %id, ?reason, "dial abandoned");
            self.dial = None;
        }
        if self.conn.as_ref().is_some_and(|c| c.id == id)
            && let Some(conn) = self.conn.take()
        {
            conn.span
                .in_scope(|| tracing::debug!(?reason, "closing connection"));
            self.close_in_background(conn, close);
        }
    }

    /// Writes `close` (if any) after what is buffered, shuts the stream
    /// down, all bounded by the close timeout, in a task of its own.
    fn close_in_background(&self, conn: Live<C::Io>, close: Option<Frame>) {
        let timeout = self.config.close_timeout;
        let mut framed = conn.framed;
        let task = async move {
            use futures_util::SinkExt as _;
            let close = async {
                if let Some(frame) = close {
                    framed.feed(frame).await?;
                }
                framed.close().await
            };
            match tokio::time::timeout(timeout, close).await {
                Ok(Ok(())) => tracing::trace!("connection closed"),
                Ok(Err(error)) => tracing::debug!(%error, "error while closing"),
                Err(_) => tracing::debug!(?timeout, "close timed out"),
            }
        };
        tokio::spawn(task.instrument(conn.span));
    }

    /// The connection is gone: tell the machine, drop the socket.
    fn lose(&mut self, state: &mut State, end: ReadEnd, now: Instant) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let enter = conn.span.enter();
        match end {
            ReadEnd::Gone(message) => {
                tracing::debug!(%message, "connection lost");
                state.channel.handle_disconnected(
                    conn.id,
                    DisconnectReason::Transport(message),
                    now,
                );
            }
            ReadEnd::Protocol(error) => {
                tracing::debug!(%error, "malformed frame from the server");
                let code = error.code();
                let message = error.to_string();
                state.channel.handle_disconnected(
                    conn.id,
                    DisconnectReason::ProtocolError {
                        code,
                        message: message.clone(),
                    },
                    now,
                );
                drop(enter);
                self.close_in_background(conn, Some(Frame::close(code, message)));
            }
        }
    }

    /// Writes the machine's frames: all fed, one flush.
    fn poll_write(&mut self, cx: &mut Context<'_>, state: &mut State, now: Instant) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            // Nothing to write to: the machine clears its queue when it
            // loses a connection, so this only drops stragglers.
            while state.channel.poll_transmit().is_some() {}
            return false;
        };
        let enter = conn.span.enter();
        let (progress, failure) = pump_transmit(
            &mut conn.framed,
            &mut conn.needs_flush,
            self.config.max_idle_buffer,
            cx,
            || state.channel.poll_transmit(),
        );
        drop(enter);
        if let Some(error) = failure {
            self.lose(state, ReadEnd::from_error(error), now);
            return true;
        }
        progress
    }

    /// Reads frames into the machine, unless events wait for subscribers.
    fn poll_read(&mut self, cx: &mut Context<'_>, state: &mut State, now: Instant) -> bool {
        if !state.pending.is_empty() {
            return false;
        }
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let id = conn.id;
        let mut progress = false;
        let mut end = None;
        {
            let _enter = conn.span.enter();
            for _ in 0..MAX_FRAMES_PER_ROUND {
                match Pin::new(&mut conn.framed).poll_next(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        progress = true;
                        tracing::trace!(ty = %frame.ty, len = frame.body.len(), "frame in");
                        state.channel.handle_frame(frame, now);
                        if state.channel.connection_id() != Some(id)
                            || state.channel.state() != ConnectionState::Connected
                        {
                            break;
                        }
                    }
                    Poll::Ready(Some(Err(error))) => {
                        end = Some(ReadEnd::from_error(error));
                        break;
                    }
                    Poll::Ready(None) => {
                        end = Some(ReadEnd::eof());
                        break;
                    }
                    Poll::Pending => {
                        trim_buffers(&mut conn.framed, self.config.max_idle_buffer);
                        break;
                    }
                }
            }
        }
        if let Some(end) = end {
            self.lose(state, end, now);
            return true;
        }
        progress
    }
}

impl<C: Connector> Future for ClientDriver<C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let shared = Arc::clone(&this.shared);
        let mut state = shared.lock();
        if !state
            .driver
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.driver = Some(cx.waker().clone());
        }
        for _ in 0..MAX_ROUNDS {
            let now = state.clock.now();
            let mut progress = false;
            if !state.handles_alive && !this.stopping {
                tracing::debug!("every handle dropped; stopping the channel");
                this.stopping = true;
                state.channel.stop(now);
                progress = true;
            }
            progress |= this.poll_dial(cx, &mut state, now);
            progress |= this.poll_timer(cx, &mut state, now);
            progress |= this.drain_events(&mut state);
            progress |= state.dispatch(cx);
            progress |= this.poll_write(cx, &mut state, now);
            progress |= this.poll_read(cx, &mut state, now);
            progress |= this.drain_events(&mut state);
            if this.stopping
                && this.conn.is_none()
                && this.dial.is_none()
                && (state.pending.is_empty() || !progress)
            {
                state.finished = true;
                state.pending.clear();
                state.subscribers.clear();
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Still busy: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<C: Connector> Drop for ClientDriver<C> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.finished = true;
        state.driver = None;
        // Ends every subscription.
        state.subscribers.clear();
    }
}

impl<C: Connector> fmt::Debug for ClientDriver<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientDriver")
            .field("conn", &self.conn.as_ref().map(|c| c.id))
            .field("dial", &self.dial.as_ref().map(|d| d.id))
            .field("timer_at", &self.timer_at)
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

/// Builds a channel from `config` (seeded randomly), spawns its driver on
/// the current tokio runtime, instrumented with the current span, and
/// returns the handle. Call [`ClientHandle::start`] to connect.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn spawn_client<C: Connector>(
    config: Arc<ClientConfig>,
    connector: C,
    driver: &DriverConfig,
) -> ClientHandle {
    let channel = ClientChannel::new(config, fastrand::u64(..));
    let (driver, handle) = ClientDriver::new(channel, connector, driver);
    tokio::spawn(driver.instrument(Span::current()));
    handle
}

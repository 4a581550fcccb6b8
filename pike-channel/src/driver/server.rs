//! The server driver: one task per accepted connection, running a
//! [`ServerChannel`] over the framed tunnel.
//!
//! The gateway receives the connection's [`ServerEvent`]s from a bounded
//! queue ([`ServerEvents`]) and answers through a cloneable
//! [`ServerHandle`] whose methods lock the machine briefly and return
//! synchronously (quinn style). Per connection the driver holds the machine,
//! the framed socket (tokio-util's 8 KiB buffers, given back after large
//! frames) and one timer.
//!
//! Overflow policy: when the event queue is full the driver stops reading
//! from the client (TCP/QUIC flow control then slows the client down) but
//! keeps writing and running its timers. Nothing is dropped. A gateway that
//! stays behind for longer than the idle timeout gets the connection closed
//! with `IDLE_TIMEOUT`.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_util::{Sink, Stream};
use proto::channel::RoomBatch;
use proto::tunnel::{ClientHello, ErrorCode, ReconnectAdvice};
use tntunnel::FramedTunnel;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_util::sync::PollSender;
use tracing::{Instrument, Span};

use super::client::receiver_gone;
use super::config::DriverConfig;
use super::util::{Clock, ReadEnd, lock, pump_transmit, trim_buffers};
use crate::error::{PushError, ReplyError};
use crate::{Push, ServerChannel, ServerEvent, StreamId, UplinkResult};

/// Rounds of work per wake before yielding to other tasks.
const MAX_ROUNDS: usize = 32;
/// Frames read per round.
const MAX_FRAMES_PER_ROUND: usize = 64;

/// The events of one server connection, in order; the last one is
/// [`ServerEvent::Closed`], after which the stream ends (`None`). It also
/// ends if the driver is dropped or gives up writing the close after the
/// close timeout: treat `None` as closed.
///
/// Dropping it tells the driver that the gateway is gone: the connection is
/// closed with `GOING_AWAY` at its next activity.
#[derive(Debug)]
pub struct ServerEvents {
    rx: mpsc::Receiver<ServerEvent>,
}

impl ServerEvents {
    /// The next event; `None` once the connection is finished.
    pub async fn recv(&mut self) -> Option<ServerEvent> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<ServerEvent> {
        self.rx.try_recv().ok()
    }

    /// Polls for the next event.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ServerEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Stream for ServerEvents {
    type Item = ServerEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ServerEvent>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

struct State {
    channel: ServerChannel,
    clock: Clock,
    driver: Option<Waker>,
    finished: bool,
}

impl State {
    fn wake(&mut self) {
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
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

/// A cheap, cloneable handle to answer and push on one server connection.
///
/// Each method locks the connection's machine for the call, applies it with
/// the current time and wakes the driver, which writes the frames out.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Runs `f` on the machine with the current time, then wakes the driver:
    /// for anything the named methods do not cover.
    pub fn with<R>(&self, f: impl FnOnce(&mut ServerChannel, Instant) -> R) -> R {
        let mut state = self.shared.lock();
        let now = state.clock.now();
        let result = f(&mut state.channel, now);
        state.wake();
        result
    }

    /// Accepts a pending login (see [`ServerChannel::accept_login`]).
    pub fn accept_login(
        &self,
        stream: StreamId,
        route_id: impl Into<String>,
        last_seq: u64,
    ) -> Result<(), ReplyError> {
        self.with(|c, now| c.accept_login(stream, route_id, last_seq, now))
    }

    /// Refuses a pending login.
    pub fn reject_login(
        &self,
        stream: StreamId,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), ReplyError> {
        self.with(|c, now| c.reject_login(stream, code, message, now))
    }

    /// Pushes a reliable message (`seq` must grow; window-limited).
    pub fn push(&self, stream: StreamId, seq: u64, message: Push) -> Result<(), PushError> {
        self.with(|c, now| c.push(stream, seq, message, now))
    }

    /// Pushes a transient message (not acked, not windowed).
    pub fn push_transient(&self, stream: StreamId, message: Push) -> Result<(), PushError> {
        self.with(|c, now| c.push_transient(stream, message, now))
    }

    /// Whether a reliable push on `stream` fits the window now.
    pub fn can_push(&self, stream: StreamId) -> bool {
        self.shared.lock().channel.can_push(stream)
    }

    /// Acks an uplink message.
    pub fn ack_uplink(
        &self,
        stream: StreamId,
        seq: u64,
        result: UplinkResult,
    ) -> Result<(), ReplyError> {
        self.with(|c, now| c.ack_uplink(stream, seq, result, now))
    }

    /// Answers a tags request.
    pub fn tags_result(
        &self,
        stream: StreamId,
        request_id: u32,
        code: ErrorCode,
        message: impl Into<String>,
        tags: Vec<String>,
    ) -> Result<(), ReplyError> {
        self.with(|c, now| c.tags_result(stream, request_id, code, message, tags, now))
    }

    /// Accepts a room join.
    pub fn room_joined(
        &self,
        stream: StreamId,
        room: impl Into<String>,
        head: u64,
        tail: u64,
    ) -> Result<(), ReplyError> {
        self.with(|c, now| c.room_joined(stream, room, head, tail, now))
    }

    /// Refuses a room join.
    pub fn room_join_failed(
        &self,
        stream: StreamId,
        room: impl Into<String>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), ReplyError> {
        self.with(|c, now| c.room_join_failed(stream, room, code, message, now))
    }

    /// Answers a room pull (or pushes a batch in push mode).
    pub fn room_batch(&self, stream: StreamId, batch: RoomBatch) -> Result<(), ReplyError> {
        self.with(|c, now| c.room_batch(stream, batch, now))
    }

    /// Asks the client to reconnect (elsewhere); closes after the grace.
    pub fn go_away(
        &self,
        code: ErrorCode,
        message: impl Into<String>,
        advice: Option<ReconnectAdvice>,
    ) {
        self.with(|c, now| c.go_away(code, message, advice, now));
    }

    /// Closes the connection with a close frame.
    pub fn close(&self, code: ErrorCode, message: impl Into<String>) {
        self.with(|c, now| c.close(code, message, now));
    }

    /// The client's hello.
    pub fn client_hello(&self) -> ClientHello {
        self.shared.lock().channel.client_hello().clone()
    }

    /// Whether the connection is closed (or its driver gone).
    pub fn is_closed(&self) -> bool {
        let state = self.shared.lock();
        state.finished || state.channel.is_closed()
    }

    /// Whether both handles belong to the same connection.
    pub fn same_connection(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("ServerHandle")
            .field("device_id", &state.channel.client_hello().device_id)
            .field("closed", &state.channel.is_closed())
            .finish_non_exhaustive()
    }
}

/// The future that runs one accepted connection: see the module docs.
/// Completes once the connection is closed and the close frame written (or
/// the close timeout passed).
#[must_use = "the driver does nothing unless polled or spawned"]
pub struct ServerDriver<S> {
    shared: Arc<Shared>,
    framed: FramedTunnel<S>,
    events: PollSender<ServerEvent>,
    pending: VecDeque<ServerEvent>,
    config: DriverConfig,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    needs_flush: bool,
    /// The transport failed: nothing more can be read or written.
    broken: bool,
    /// Set once the machine is closed: the latest time to finish.
    close_deadline: Option<Instant>,
}

impl<S> ServerDriver<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// A driver for `channel` over `framed` (the tunnel handshake done),
    /// with the gateway's handle and event queue.
    pub fn new(
        framed: FramedTunnel<S>,
        channel: ServerChannel,
        config: &DriverConfig,
    ) -> (Self, ServerHandle, ServerEvents) {
        let (tx, rx) = mpsc::channel(config.event_capacity);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                channel,
                clock: Clock::new(),
                driver: None,
                finished: false,
            }),
        });
        let handle = ServerHandle {
            shared: Arc::clone(&shared),
        };
        let driver = Self {
            shared,
            framed,
            events: PollSender::new(tx),
            pending: VecDeque::new(),
            config: *config,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            timer_at: None,
            needs_flush: false,
            broken: false,
            close_deadline: None,
        };
        (driver, handle, ServerEvents { rx })
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>, state: &mut State, now: Instant) -> bool {
        let deadline = state.channel.poll_timeout().or(self.close_deadline);
        if deadline != self.timer_at {
            if let Some(deadline) = deadline {
                self.timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(deadline));
            }
            self.timer_at = deadline;
        }
        let Some(deadline) = self.timer_at else {
            return false;
        };
        if deadline > now && self.timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if state.channel.poll_timeout().is_some() {
            state.channel.handle_timeout(now);
        }
        self.timer_at = None;
        true
    }

    fn drain_events(&mut self, state: &mut State) -> bool {
        let mut progress = false;
        while let Some(event) = state.channel.poll_event() {
            progress = true;
            self.pending.push_back(event);
        }
        progress
    }

    fn dispatch(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while !self.pending.is_empty() {
            match self.events.poll_reserve(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(event) = self.pending.pop_front() {
                        let _ = self.events.send_item(event);
                    }
                    progress = true;
                }
                Poll::Ready(Err(_)) => {
                    // The gateway dropped the queue: nobody to tell.
                    self.pending.clear();
                    return true;
                }
                Poll::Pending => break,
            }
        }
        progress
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, state: &mut State, now: Instant) -> bool {
        if self.broken {
            while state.channel.poll_transmit().is_some() {}
            return false;
        }
        let (progress, failure) = pump_transmit(
            &mut self.framed,
            &mut self.needs_flush,
            self.config.max_idle_buffer,
            cx,
            || state.channel.poll_transmit(),
        );
        if let Some(error) = failure {
            tracing::debug!(%error, "write failed");
            self.broken = true;
            state.channel.handle_connection_lost(now);
            return true;
        }
        progress
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, state: &mut State, now: Instant) -> bool {
        if self.broken || !self.pending.is_empty() || state.channel.is_closed() {
            return false;
        }
        let mut progress = false;
        for _ in 0..MAX_FRAMES_PER_ROUND {
            match Pin::new(&mut self.framed).poll_next(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    progress = true;
                    tracing::trace!(ty = %frame.ty, len = frame.body.len(), "frame in");
                    state.channel.handle_frame(frame, now);
                    if state.channel.is_closed() {
                        break;
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    self.end(state, ReadEnd::from_error(error), now);
                    return true;
                }
                Poll::Ready(None) => {
                    self.end(state, ReadEnd::eof(), now);
                    return true;
                }
                Poll::Pending => {
                    trim_buffers(&mut self.framed, self.config.max_idle_buffer);
                    break;
                }
            }
        }
        progress
    }

    fn end(&mut self, state: &mut State, end: ReadEnd, now: Instant) {
        match end {
            ReadEnd::Gone(message) => {
                tracing::debug!(%message, "client gone");
                self.broken = true;
                state.channel.handle_connection_lost(now);
            }
            ReadEnd::Protocol(error) => {
                tracing::debug!(%error, "malformed frame from the client");
                state.channel.close(error.code(), error.to_string(), now);
            }
        }
    }

    /// After the machine closed: flush, shut down. Ready when finished.
    fn poll_finish(&mut self, cx: &mut Context<'_>, state: &State, now: Instant) -> Poll<()> {
        let deadline = *self
            .close_deadline
            .get_or_insert(now + self.config.close_timeout);
        if now >= deadline {
            tracing::debug!("close timed out");
            return Poll::Ready(());
        }
        if !self.pending.is_empty() && !receiver_gone(&self.events) {
            return Poll::Pending;
        }
        if self.broken {
            return Poll::Ready(());
        }
        if state.channel.holds_resources() || self.needs_flush {
            return Poll::Pending;
        }
        match Pin::new(&mut self.framed).poll_close(cx) {
            Poll::Ready(result) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "shutdown failed");
                }
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S> Future for ServerDriver<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
            if !state.channel.is_closed() && receiver_gone(&this.events) {
                tracing::debug!("gateway dropped the connection's events; closing");
                state
                    .channel
                    .close(ErrorCode::GoingAway, "gateway stopped", now);
                progress = true;
            }
            progress |= this.poll_timer(cx, &mut state, now);
            progress |= this.drain_events(&mut state);
            progress |= this.dispatch(cx);
            progress |= this.poll_write(cx, &mut state, now);
            progress |= this.poll_read(cx, &mut state, now);
            progress |= this.drain_events(&mut state);
            progress |= this.dispatch(cx);
            if state.channel.is_closed() {
                let first = this.close_deadline.is_none();
                if this.poll_finish(cx, &state, now).is_ready() {
                    state.finished = true;
                    return Poll::Ready(());
                }
                progress |= first;
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S> Drop for ServerDriver<S> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.finished = true;
        state.driver = None;
    }
}

impl<S> fmt::Debug for ServerDriver<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerDriver")
            .field("pending", &self.pending.len())
            .field("timer_at", &self.timer_at)
            .field("broken", &self.broken)
            .field("close_deadline", &self.close_deadline)
            .finish_non_exhaustive()
    }
}

/// Spawns the driver of one accepted connection on the current runtime,
/// instrumented with the current span (open a `conn` span around the call),
/// and returns the gateway's handle and event queue.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn serve_connection<S>(
    framed: FramedTunnel<S>,
    channel: ServerChannel,
    config: &DriverConfig,
) -> (ServerHandle, ServerEvents)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (driver, handle, events) = ServerDriver::new(framed, channel, config);
    tokio::spawn(driver.instrument(Span::current()));
    (handle, events)
}

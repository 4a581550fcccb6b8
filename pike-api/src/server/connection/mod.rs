//! One task per client connection: it owns the socket and the connection's
//! [`ServerChannel`], and does the gateway's work for it: logins, resume
//! from the store, reliable and transient downlink, ordered uplink to the
//! backend, tags, trace and metrics.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{Sink, SinkExt, StreamExt};
use pike_channel::{ServerChannel, StreamId};
use proto::tunnel::{ClientHello, Compression};
use tntunnel::{CodecError, FramedTunnel};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::auth::{AuthError, LoginGrant};
use super::clock::unix_ms;
use super::engine::{EngineError, Position};
use super::hub::Hub;
use super::login_expiry::RefreshDone;
use super::registry::{ConnEntry, ConnId, ConnShared};
use super::room::ConnRooms;
use super::small_map::SmallMap;
use super::store::{BoxFuture, ReadBatch, StreamKey};
use super::trace::{self, SharedTrace};
use super::uplink::UplinkError;

mod commands;
mod downlink;
mod events;
mod interests;
mod io;
mod login;
mod uplink;

use self::interests::Interests;
use self::io::poll_next_work;
pub(crate) use self::io::release_idle_buffers;
use self::uplink::UplinkQueue;

/// A connection that passed the hello, ready to run.
pub(crate) struct Accepted<S> {
    /// Boxed: the stream type is sized for TLS (about 1.3 KiB), and the
    /// connection future would otherwise hold it twice.
    pub(crate) framed: Box<FramedTunnel<S>>,
    pub(crate) hello: ClientHello,
    pub(crate) token: String,
    pub(crate) peer: SocketAddr,
    pub(crate) transport: &'static str,
    /// The connection's slot under the gateway's limit.
    pub(crate) guard: tunnelkit::ConnGuard,
}

/// The outcome of background work started by the connection task.
enum Work {
    Login {
        stream: StreamId,
        biz: String,
        alias: String,
        result: Result<Box<LoginReady>, AuthError>,
    },
    Read {
        stream: StreamId,
        result: Result<ReadBatch, EngineError>,
    },
    Uplink {
        stream: StreamId,
        seq: u64,
        result: Result<String, UplinkError>,
    },
    Tags {
        stream: StreamId,
        request_id: u32,
        result: Result<Vec<String>, EngineError>,
    },
    Refresh(RefreshDone),
    Done,
}

/// What a granted login needs to start.
struct LoginReady {
    route_id: String,
    start_after: Position,
    /// The device's saved position (zero if none).
    saved: Position,
    batch: ReadBatch,
    grant: LoginGrant,
    /// Given back if the login is not granted after all (none for a
    /// send-only login).
    interests: Option<Interests>,
    /// A send-only login (`Login.send_only`): no downlink recipient.
    send_only: bool,
}

/// Reliable downlink state of one login.
struct StreamState {
    key: StreamKey,
    /// The next sequence number to push.
    next_seq: u64,
    /// The engine cursor of message `next_seq - 1`: reads go on after it.
    read_cursor: u64,
    /// The highest position saved for the device.
    acked: Position,
    /// The highest sequence known to exist in the store.
    last_known: u64,
    /// A store read is in flight.
    reading: bool,
    /// Reads in a row that found nothing although a newer message was
    /// announced.
    unconfirmed_reads: u8,
    /// In-flight messages (sequence number, engine cursor, push time), for
    /// the acked position and the ack latency metric. Allocated at the
    /// login's first push and given back when the connection idles with it
    /// empty (see [`Conn::release_idle_logins`]): an idle login holds 8
    /// bytes, not the deque's 32.
    #[allow(clippy::box_collection)]
    sent_at: Option<Box<VecDeque<(u64, u64, Instant)>>>,
    /// The login's business id and alias are `key.biz` and `key.alias`.
    /// Boxed, like `sent_at` and the uplink queue, so that the state fits a
    /// 160-byte map entry (see the test `a_logins_state_fits_a_160_byte_entry`).
    route_id: Box<str>,
    /// Uplink messages waiting for their turn (delivered one at a time);
    /// allocated and given back like `sent_at`.
    uplink: Option<Box<UplinkQueue>>,
    /// The login's credential proves the device id: it gets device pushes.
    device_verified: bool,
    /// A send-only login: no downlink, no engine subscriptions.
    send_only: bool,
}

/// Runs one connection to its end.
///
/// Not an async fn: an async fn keeps its arguments in its future for the
/// whole of its life, and the connection's future is the biggest part of an
/// idle connection's memory. The setup runs here, in [`start`], before the
/// future exists, so that its temporaries (the hello, the registry entry)
/// and the arguments take no room in the future; `accepted` comes boxed and
/// is freed in `start` (≈ 310 bytes per connection otherwise). The
/// connection is registered when `run` returns: the future must be polled
/// to its end (spawned) for the registry to let go of it, as a connection
/// whose task is dropped at runtime shutdown never is.
pub(crate) fn run<S>(
    hub: Arc<Hub>,
    accepted: Box<Accepted<S>>,
) -> impl Future<Output = ()> + Send + use<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Started {
        mut conn,
        mut framed,
        span,
        guard,
    } = start(hub, accepted);
    // What the block captures stays in the future for its whole life, and a
    // captured value moved into a local takes room twice: the span is
    // entered by hand rather than moved into `Instrumented` (and kept only
    // when debug tracing is on: 8 bytes instead of 40), and the guard is
    // dropped in place at the end.
    async move {
        {
            let mut drive = std::pin::pin!(conn.drive(&mut framed));
            std::future::poll_fn(|cx| {
                let _entered = span.as_deref().map(tracing::Span::enter);
                drive.as_mut().poll(cx)
            })
            .await;
        }
        conn.release_all();
        if let Some(transport) = conn.hub.registry.remove(conn.id) {
            metrics::gauge!(crate::server::metric_families::CONNECTIONS, "transport" => transport)
                .decrement(1.0);
        }
        drop(guard);
    }
}

/// A registered connection, ready to drive.
struct Started<S> {
    conn: Conn,
    framed: Box<FramedTunnel<S>>,
    /// The connection's span, if debug tracing is on.
    span: Option<Box<tracing::Span>>,
    guard: tunnelkit::ConnGuard,
}

/// Registers an accepted connection and builds its state.
fn start<S>(hub: Arc<Hub>, accepted: Box<Accepted<S>>) -> Started<S> {
    let Accepted {
        framed,
        hello,
        token,
        peer,
        transport,
        guard,
    } = *accepted;
    let token: Arc<str> = token.into();
    let id = hub.next_connection_id();
    let shared = Arc::new(ConnShared::new(hub.config.command_queue));
    let trace = SharedTrace::default();
    trace::lock(&trace).record(
        unix_ms(),
        "hello",
        format!(
            "app={} device={} sdk={}/{} transport={transport} peer={peer}",
            hello.app_id, hello.device_id, hello.sdk_name, hello.sdk_version
        ),
    );
    hub.registry.insert(
        id,
        ConnEntry {
            app: hello.app_id.clone(),
            device_id: hello.device_id.clone(),
            token: token.clone(),
            transport,
            peer,
            connected_at_ms: unix_ms(),
            shared: shared.clone(),
            logins: Vec::new(),
            trace: trace.clone(),
        },
    );
    metrics::gauge!(crate::server::metric_families::CONNECTIONS, "transport" => transport)
        .increment(1.0);
    metrics::counter!(crate::server::metric_families::CONNECTIONS_TOTAL, "transport" => transport)
        .increment(1);

    let now = Instant::now();
    // The channel keeps the hello for the connection's life and is asked
    // only for its app and device id from here on: the rest (versions,
    // compressions, the SDK's name and version, the resume token) served
    // the handshake and the trace's first event. Small allocations each,
    // ≈ 50 bytes per connection together.
    let hello = ClientHello {
        app_id: hello.app_id,
        device_id: hello.device_id,
        ..ClientHello::default()
    };
    let channel = ServerChannel::new(hub.config.channel.clone(), hello, now.into_std());
    let codec = framed.codec();
    let room_codec = (
        codec.compression(),
        u32::try_from(codec.compression_threshold()).unwrap_or(u32::MAX),
    );
    let conn = Conn {
        hub,
        id,
        shared,
        token,
        channel,
        streams: SmallMap::default(),
        work: None,
        trace,
        connected_at: now,
        ready_reported: false,
        settle_buffers: false,
        pings_seen: 0,
        rooms: None,
        room_codec,
    };
    // A root span: `start` runs in the handshake's task and span, which
    // end before the connection does.
    let span = tracing::debug_span!(parent: None, "conn", conn.token = %conn.token, peer.addr = %peer, transport);
    let span = (!span.is_disabled()).then(|| Box::new(span));
    Started {
        conn,
        framed,
        span,
        guard,
    }
}

struct Conn {
    hub: Arc<Hub>,
    id: ConnId,
    /// What other tasks hand over to this connection, and its wake-up.
    shared: Arc<ConnShared>,
    /// Shared with the registry's entry (one allocation, not two).
    token: Arc<str>,
    /// Also the connection's app and device id (its client hello).
    channel: ServerChannel,
    /// Logins by stream: one is the common case.
    streams: SmallMap<StreamId, StreamState>,
    /// Background work in flight; created on demand and dropped when it
    /// runs dry (an idle connection has none: the set costs ≈ 150 bytes).
    /// Boxed: 8 bytes of the connection's future instead of 24.
    work: Option<Box<FuturesUnordered<BoxFuture<'static, Work>>>>,
    trace: SharedTrace,
    connected_at: Instant,
    ready_reported: bool,
    /// A login was granted: the codec's buffers go back once they are
    /// empty (see the drive loop).
    settle_buffers: bool,
    /// Heartbeats seen so far (saturating at `u32::MAX`, four billion:
    /// beyond it every heartbeat counts as new).
    pings_seen: u32,
    /// Live rooms joined by this connection's logins: none for most
    /// connections, so created at the first join (or pull) and dropped
    /// when the last room is left (96 bytes of every connection's future
    /// otherwise).
    rooms: Option<Box<ConnRooms>>,
    /// The codec's compression and its threshold, for room batches.
    room_codec: (Compression, u32),
}

impl Conn {
    async fn drive<S>(&mut self, framed: &mut FramedTunnel<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        // One timer for the connection's life, re-armed only when the
        // machine's deadline moves: a fresh timer per turn of the loop
        // would cost two trips into the runtime's timer wheel per wake-up
        // (a delivery, say).
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        // Whether the timer runs (its deadline is then the machine's).
        let mut armed = false;
        loop {
            self.process_events();
            // Writes what the machine wants sent: in one poll when the
            // socket takes it all (no timer armed, no write state kept),
            // otherwise the rest under the write timeout.
            let sent = {
                let mut wrote = false;
                let first =
                    std::future::poll_fn(|cx| Poll::Ready(self.poll_send(framed, cx, &mut wrote)))
                        .await;
                match first {
                    Poll::Ready(result) => self.sent(result),
                    Poll::Pending => Box::pin(self.flush_slow(framed, wrote)).await,
                }
            };
            if !sent {
                self.channel.handle_connection_lost(now());
                self.process_events();
                break;
            }
            if self.channel.is_closed() {
                break;
            }
            if std::mem::take(&mut self.settle_buffers) {
                // A device that just logged in is most often idle next (until
                // its heartbeat, which would release them too): give back
                // the buffers the login and its answer grew (≈ 260 bytes
                // per connection). A busy one grows them again once.
                release_idle_buffers(framed);
            }
            {
                let deadline = self.channel.poll_timeout().map(Instant::from_std);
                if deadline != armed.then(|| timer.deadline()) {
                    if let Some(at) = deadline {
                        timer.as_mut().reset(at);
                    }
                    armed = deadline.is_some();
                }
            }
            tokio::select! {
                frame = framed.next() => match frame {
                    Some(Ok(frame)) => {
                        self.channel.handle_frame(frame, now());
                        if self.note_heartbeats() {
                            // A heartbeat is what an idle connection
                            // sends: give back the buffers of its last
                            // busy moment (the login, say) until it has
                            // more to say. Busy connections keep theirs.
                            release_idle_buffers(framed);
                            self.shared.release_idle_commands();
                            self.release_idle_logins();
                        }
                    }
                    Some(Err(CodecError::Frame(e))) => {
                        self.record("protocol-error", e.to_string());
                        self.channel.close(e.code(), e.to_string(), now());
                    }
                    Some(Err(e)) => {
                        self.record("transport-error", e.to_string());
                        self.channel.handle_connection_lost(now());
                    }
                    None => self.channel.handle_connection_lost(now()),
                },
                () = std::future::poll_fn(|cx| self.shared.poll_woken(cx)) => {
                    for (key, message) in self.shared.take() {
                        self.stored(&key, message);
                    }
                    if self.shared.take_rooms_ready()
                        && let Some(rooms) = &mut self.rooms
                    {
                        rooms.ready(&mut self.channel, Instant::now());
                    }
                    while let Some((command, depth)) = self.shared.next_command() {
                        self.hub.hot.command_queue_depth.record(depth as f64);
                        self.command(command);
                    }
                }
                Some(work) = std::future::poll_fn(|cx| poll_next_work(&mut self.work, cx)),
                    if self.work.is_some() => {
                    if self.work.as_ref().is_some_and(|work| work.is_empty()) {
                        self.work = None;
                    }
                    self.finish(work);
                }
                () = &mut timer, if armed => {
                    armed = false;
                    self.channel.handle_timeout(now());
                }
            }
        }
        self.shared.close_commands();
        // Whatever the machine still holds (a close frame) goes out, briefly
        // (boxed: the connection's future is not sized for its last words).
        let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(frame) = self.channel.poll_transmit() {
                if framed.feed(frame).await.is_err() {
                    return;
                }
            }
            let _ = framed.close().await;
        }))
        .await;
    }

    /// The rest of a write that the socket made wait (see the flush in
    /// [`drive`](Self::drive)): under the write timeout, boxed by the
    /// caller. `false` when the peer is gone or did not take the bytes in
    /// time. The common case, a socket that takes everything at once,
    /// completes in one poll and never comes here: the connection's future,
    /// held for the connection's whole life, is not sized for this path (the
    /// timer and the write's state were ≈ 260 bytes of every idle
    /// connection).
    async fn flush_slow<S>(&mut self, framed: &mut FramedTunnel<S>, mut wrote: bool) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let write_timeout = self.hub.config.write_timeout;
        let rest = std::future::poll_fn(|cx| self.poll_send(framed, cx, &mut wrote));
        match tokio::time::timeout(write_timeout, rest).await {
            Ok(result) => self.sent(result),
            Err(_) => {
                metrics::counter!(crate::server::metric_families::SLOW_CONSUMER_CLOSED_TOTAL)
                    .increment(1);
                self.record("close", "slow consumer: write timed out".into());
                false
            }
        }
    }

    /// Whether a write went out; records why not.
    fn sent(&self, result: Result<(), CodecError>) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                self.record("transport-error", e.to_string());
                false
            }
        }
    }

    /// Moves the machine's frames into the codec while it takes them, then
    /// flushes if any was written (`wrote`, kept across polls).
    fn poll_send<S>(
        &mut self,
        framed: &mut FramedTunnel<S>,
        cx: &mut Context<'_>,
        wrote: &mut bool,
    ) -> Poll<Result<(), CodecError>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        loop {
            ready!(Pin::new(&mut *framed).poll_ready(cx))?;
            let Some(frame) = self.channel.poll_transmit() else {
                break;
            };
            Pin::new(&mut *framed).start_send(frame)?;
            *wrote = true;
        }
        if *wrote {
            ready!(Pin::new(&mut *framed).poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Runs `work` in the background; its outcome comes back to
    /// [`finish`](Self::finish).
    fn start(&mut self, work: BoxFuture<'static, Work>) {
        self.work
            .get_or_insert_with(|| Box::new(FuturesUnordered::new()))
            .push(work);
    }

    fn process_events(&mut self) {
        while let Some(event) = self.channel.poll_event() {
            self.event(event);
        }
    }

    fn app(&self) -> &str {
        &self.channel.client_hello().app_id
    }

    fn device_id(&self) -> &str {
        &self.channel.client_hello().device_id
    }

    /// Gives back the per-login buffers of the connection's last busy
    /// moment, an empty in-flight ring and an empty uplink queue (at an idle
    /// connection's heartbeat, as the codec's buffers): a busy login keeps
    /// them rather than allocating them again for every message.
    fn release_idle_logins(&mut self) {
        self.streams.for_each_value_mut(|state| {
            if state.sent_at.as_ref().is_some_and(|ring| ring.is_empty()) {
                state.sent_at = None;
            }
            if state.uplink.as_ref().is_some_and(|queue| queue.is_idle()) {
                state.uplink = None;
            }
        });
    }

    /// Traces new heartbeats; whether there were any.
    fn note_heartbeats(&mut self) -> bool {
        let pings = self.channel.stats().pings;
        if pings > u64::from(self.pings_seen) {
            self.pings_seen = u32::try_from(pings).unwrap_or(u32::MAX);
            trace::lock(&self.trace).heartbeat(unix_ms(), pings);
            return true;
        }
        false
    }

    fn record(&self, signal: &'static str, detail: String) {
        trace::lock(&self.trace).record(unix_ms(), signal, detail);
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use tntunnel::SecureStream;
    use tokio::net::TcpStream;

    use super::*;

    /// The size of the future a two-argument async fn returns.
    fn future_size<A, B, F: Future>(_: fn(A, B) -> F) -> usize {
        size_of::<F>()
    }

    /// The largest connection future whose tokio task cell stays at 1,024
    /// bytes (tokio 1.54: a 32-byte header, 32 bytes of core fields, a
    /// 48-byte trailer, 128-byte alignment), jemalloc's 1,024-byte class.
    /// Eight bytes more and the cell is 1,152 bytes, served from the
    /// 1,280-byte class: 256 bytes more for every connection the gateway
    /// holds.
    const TASK_BUDGET: usize = 912;

    #[test]
    fn a_connections_future_fits_a_1024_byte_task() {
        let size = future_size(run::<SecureStream<TcpStream>>);
        assert!(
            size <= TASK_BUDGET,
            "the connection future is {size} bytes, over its budget of {TASK_BUDGET}: \
             box what only a rare path needs (see `Conn::flush_slow`, `Conn::rooms`)"
        );
    }

    /// A login's state is an entry of the connection's `SmallMap` with its
    /// 4-byte stream id: at most 160 bytes, jemalloc's 160-byte class (the
    /// next is 192).
    #[test]
    fn a_logins_state_fits_a_160_byte_entry() {
        let entry = size_of::<(StreamId, StreamState)>();
        assert!(
            entry <= 160,
            "a login's map entry is {entry} bytes, over 160"
        );
    }
}

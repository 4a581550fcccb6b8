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
use proto::tunnel::ClientHello;
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
use self::io::next_work;
pub(crate) use self::io::release_idle_buffers;
use self::uplink::PendingUplink;

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
    /// the acked position and the ack latency metric.
    sent_at: VecDeque<(u64, u64, Instant)>,
    /// The login's business id and alias are `key.biz` and `key.alias`.
    route_id: String,
    /// Uplink messages waiting for their turn (delivered one at a time).
    uplink_queue: VecDeque<PendingUplink>,
    uplink_busy: bool,
    /// The login's credential proves the device id: it gets device pushes.
    device_verified: bool,
    /// A send-only login: no downlink, no engine subscriptions.
    send_only: bool,
}

/// Runs one connection to its end.
///
/// `accepted` comes boxed: an async fn keeps its arguments in its future for
/// the whole of its life, and the connection's future is the biggest part
/// of an idle connection's memory. The setup runs in [`start`], a plain
/// function, so that its temporaries (the hello, the registry entry) take
/// no room in the future either; the box itself moves into `start` and is
/// freed there (a box only moved out of would stay allocated, empty, as
/// long as the future lives: ≈ 310 bytes per connection).
pub(crate) async fn run<S>(hub: Arc<Hub>, accepted: Box<Accepted<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Started {
        mut conn,
        mut framed,
        shared,
        span,
        transport,
        guard: _guard,
    } = start(hub, accepted);
    tracing::Instrument::instrument(conn.drive(&mut framed, shared), span).await;

    conn.release_all();
    conn.hub.registry.remove(conn.id);
    metrics::gauge!(crate::server::metric_families::CONNECTIONS, "transport" => transport)
        .decrement(1.0);
}

/// A registered connection, ready to drive.
struct Started<S> {
    conn: Conn,
    framed: Box<FramedTunnel<S>>,
    shared: Arc<ConnShared>,
    span: tracing::Span,
    transport: &'static str,
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
    let channel = ServerChannel::new(hub.config.channel.clone(), hello, now.into_std());
    let codec = framed.codec();
    let rooms = ConnRooms::new(
        id,
        shared.clone(),
        (codec.compression(), codec.compression_threshold()),
        hub.config.max_room_joins,
    );
    let conn = Conn {
        hub,
        id,
        token,
        channel,
        streams: SmallMap::default(),
        work: None,
        trace,
        connected_at: now,
        ready_reported: false,
        pings_seen: 0,
        rooms,
    };
    let span = tracing::debug_span!("conn", conn.token = %conn.token, peer.addr = %peer, transport);
    Started {
        conn,
        framed,
        shared,
        span,
        transport,
        guard,
    }
}

struct Conn {
    hub: Arc<Hub>,
    id: ConnId,
    token: String,
    /// Also the connection's app and device id (its client hello).
    channel: ServerChannel,
    /// Logins by stream: one is the common case.
    streams: SmallMap<StreamId, StreamState>,
    /// Background work in flight; created on demand and dropped when it
    /// runs dry (an idle connection has none: the set costs ≈ 150 bytes).
    work: Option<FuturesUnordered<BoxFuture<'static, Work>>>,
    trace: SharedTrace,
    connected_at: Instant,
    ready_reported: bool,
    pings_seen: u64,
    /// Live rooms joined by this connection's logins.
    rooms: ConnRooms,
}

impl Conn {
    async fn drive<S>(&mut self, framed: &mut FramedTunnel<S>, shared: Arc<ConnShared>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        // One timer for the connection's life, re-armed only when the
        // machine's deadline moves: a fresh timer per turn of the loop
        // would cost two trips into the runtime's timer wheel per wake-up
        // (a delivery, say).
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            self.process_events();
            if !self.flush(framed).await {
                self.channel.handle_connection_lost(now());
                self.process_events();
                break;
            }
            if self.channel.is_closed() {
                break;
            }
            let deadline = self.channel.poll_timeout().map(Instant::from_std);
            if deadline != armed {
                if let Some(at) = deadline {
                    timer.as_mut().reset(at);
                }
                armed = deadline;
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
                            shared.release_idle_commands();
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
                () = shared.notify.notified() => {
                    for (key, message) in shared.take() {
                        self.stored(&key, message);
                    }
                    if shared.take_rooms_ready() {
                        self.rooms.ready(&mut self.channel, Instant::now());
                    }
                    while let Some((command, depth)) = shared.next_command() {
                        self.hub.hot.command_queue_depth.record(depth as f64);
                        self.command(command);
                    }
                }
                Some(work) = next_work(&mut self.work), if self.work.is_some() => {
                    if self.work.as_ref().is_some_and(FuturesUnordered::is_empty) {
                        self.work = None;
                    }
                    self.finish(work);
                }
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.channel.handle_timeout(now());
                }
            }
        }
        shared.close_commands();
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

    /// Writes what the machine wants sent; `false` when the peer is gone or
    /// did not take the bytes within the write timeout.
    ///
    /// The common case, a socket that takes everything at once, completes in
    /// one poll and arms no timer. Only a write that has to wait runs under
    /// the write timeout, in a boxed future: the connection's future, held
    /// for the connection's whole life, is not sized for the slow path (the
    /// timer and the write's state were ≈ 260 bytes of every idle
    /// connection).
    async fn flush<S>(&mut self, framed: &mut FramedTunnel<S>) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut wrote = false;
        let first =
            std::future::poll_fn(|cx| Poll::Ready(self.poll_send(framed, cx, &mut wrote))).await;
        let result = match first {
            Poll::Ready(result) => result,
            Poll::Pending => {
                let write_timeout = self.hub.config.write_timeout;
                let rest = std::future::poll_fn(|cx| self.poll_send(framed, cx, &mut wrote));
                match Box::pin(tokio::time::timeout(write_timeout, rest)).await {
                    Ok(result) => result,
                    Err(_) => {
                        metrics::counter!(
                            crate::server::metric_families::SLOW_CONSUMER_CLOSED_TOTAL
                        )
                        .increment(1);
                        self.record("close", "slow consumer: write timed out".into());
                        return false;
                    }
                }
            }
        };
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
            .get_or_insert_with(FuturesUnordered::new)
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

    /// Traces new heartbeats; whether there were any.
    fn note_heartbeats(&mut self) -> bool {
        let pings = self.channel.stats().pings;
        if pings > self.pings_seen {
            self.pings_seen = pings;
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

    /// The largest connection future whose tokio task cell stays at 1,280
    /// bytes (tokio 1.54: a 32-byte header, 32 bytes of core fields, a
    /// 48-byte trailer, 128-byte alignment). Eight bytes more and the cell
    /// is 1,408 bytes, which jemalloc serves from its 1,536-byte class:
    /// 256 bytes more for every connection the gateway holds.
    const TASK_BUDGET: usize = 1_168;

    #[test]
    fn a_connections_future_fits_a_1280_byte_task() {
        let size = future_size(run::<SecureStream<TcpStream>>);
        assert!(
            size <= TASK_BUDGET,
            "the connection future is {size} bytes, over its budget of {TASK_BUDGET}: \
             box what only a rare path needs (see `Conn::flush`)"
        );
    }
}

//! One task per client connection: it owns the socket and the connection's
//! [`ServerChannel`], and does the gateway's work for it: logins, resume
//! from the store, reliable and transient downlink, ordered uplink to the
//! backend, tags, trace and metrics.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use pike_channel::{Push, ServerChannel, ServerEvent, StreamId};
use proto::tunnel::{ClientHello, ErrorCode};
use tntunnel::{CodecError, FramedTunnel};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::auth::{AuthError, LoginGrant, LoginRequest};
use super::hub::{Hub, unix_ms};
use super::login_expiry::{self, RefreshDone};
use super::registry::{ConnCommand, ConnEntry, ConnId, ConnShared, LoginInfo};
use super::room::{ConnRooms, JoinOutcome};
use super::small_map::SmallMap;
use super::store::{BoxFuture, ReadBatch, StoreError, StoredMessage, StreamKey};
use super::trace::{self, SharedTrace};
use super::uplink::UplinkError;

mod uplink;

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
        result: Result<LoginReady, AuthError>,
    },
    Read {
        stream: StreamId,
        result: Result<ReadBatch, StoreError>,
    },
    Uplink {
        stream: StreamId,
        seq: u64,
        result: Result<String, UplinkError>,
    },
    Tags {
        stream: StreamId,
        request_id: u32,
        result: Result<Vec<String>, StoreError>,
    },
    Refresh(RefreshDone),
    Done,
}

/// What a granted login needs to start.
struct LoginReady {
    route_id: String,
    start_after: u64,
    batch: ReadBatch,
    grant: LoginGrant,
    /// A send-only login (`Login.send_only`): no downlink recipient.
    send_only: bool,
}

/// Reliable downlink state of one login.
struct StreamState {
    key: StreamKey,
    /// The next sequence number to push.
    next_seq: u64,
    /// The highest sequence known to exist in the store.
    last_known: u64,
    /// A store read is in flight.
    reading: bool,
    /// Push times of in-flight messages, for the ack latency metric.
    sent_at: VecDeque<(u64, Instant)>,
    /// The login's business id and alias are `key.biz` and `key.alias`.
    route_id: String,
    /// Uplink messages waiting for their turn (delivered one at a time).
    uplink_queue: VecDeque<PendingUplink>,
    uplink_busy: bool,
    /// The login's credential proves the device id: it gets device pushes.
    device_verified: bool,
}

/// Runs one connection to its end.
///
/// `accepted` comes boxed: an async fn keeps its arguments in its future for
/// the whole of its life, and the connection's future is the biggest part
/// of an idle connection's memory. The setup runs in [`start`], a plain
/// function, so that its temporaries (the hello, the registry entry) take
/// no room in the future either.
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
    } = start(hub, *accepted);
    tracing::Instrument::instrument(conn.drive(&mut framed, shared), span).await;

    conn.hub.registry.remove(conn.id);
    metrics::gauge!("pike_connections", "transport" => transport).decrement(1.0);
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
fn start<S>(hub: Arc<Hub>, accepted: Accepted<S>) -> Started<S> {
    let Accepted {
        framed,
        hello,
        token,
        peer,
        transport,
        guard,
    } = accepted;
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
    metrics::gauge!("pike_connections", "transport" => transport).increment(1.0);
    metrics::counter!("pike_connections_total", "transport" => transport).increment(1);

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
                        metrics::histogram!("pike_command_queue_depth").record(depth as f64);
                        self.command(command);
                    }
                }
                Some(work) = next_work(&mut self.work), if self.work.is_some() => {
                    if self.work.as_ref().is_some_and(FuturesUnordered::is_empty) {
                        self.work = None;
                    }
                    self.finish(work);
                }
                () = sleep_until(deadline) => self.channel.handle_timeout(now()),
            }
        }
        shared.close_commands();
        // Whatever the machine still holds (a close frame) goes out, briefly.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(frame) = self.channel.poll_transmit() {
                if framed.feed(frame).await.is_err() {
                    return;
                }
            }
            let _ = framed.close().await;
        })
        .await;
    }

    /// Writes what the machine wants sent; `false` when the peer is gone or
    /// did not take the bytes within the write timeout.
    async fn flush<S>(&mut self, framed: &mut FramedTunnel<S>) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut wrote = false;
        let write = async {
            while let Some(frame) = self.channel.poll_transmit() {
                framed.feed(frame).await?;
                wrote = true;
            }
            if wrote {
                framed.flush().await?;
            }
            Ok::<_, CodecError>(())
        };
        match tokio::time::timeout(self.hub.config.write_timeout, write).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.record("transport-error", e.to_string());
                false
            }
            Err(_) => {
                metrics::counter!("pike_slow_consumer_closed_total").increment(1);
                self.record("close", "slow consumer: write timed out".into());
                false
            }
        }
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

    fn event(&mut self, event: ServerEvent) {
        match event {
            ServerEvent::LoginRequested {
                stream,
                biz,
                alias,
                credential,
                route_id,
                last_acked_seq,
                send_only,
            } => {
                let resume = (route_id, last_acked_seq, send_only);
                self.login(stream, biz, alias, credential, resume);
            }
            ServerEvent::LoggedOut { stream } => {
                self.record("logout", format!("stream={}", stream.value()));
                self.end_login(stream);
            }
            ServerEvent::LoginExpired { stream } => {
                self.record("login-expired", format!("stream={}", stream.value()));
                self.end_login(stream);
            }
            ServerEvent::CredentialRefresh {
                stream,
                biz,
                alias,
                credential,
            } => {
                let login = self.streams.get(&stream).map(|s| &s.key);
                if let Some(check) = login_expiry::start_refresh(
                    &self.hub,
                    &mut self.channel,
                    login,
                    &self.token,
                    stream,
                    biz,
                    alias,
                    credential,
                ) {
                    self.start(Box::pin(async move { Work::Refresh(check.await) }));
                }
            }
            ServerEvent::TagsRequested {
                stream,
                request_id,
                bind,
                unbind,
            } => {
                let Some(state) = self.streams.get(&stream) else {
                    return;
                };
                self.record(
                    "tags",
                    format!("stream={} bind={bind:?} unbind={unbind:?}", stream.value()),
                );
                let hub = self.hub.clone();
                let (app, biz, alias) = (
                    self.app().to_owned(),
                    state.key.biz.clone(),
                    state.key.alias.clone(),
                );
                self.start(Box::pin(async move {
                    let result = hub.store.update_tags(app, biz, alias, bind, unbind).await;
                    Work::Tags {
                        stream,
                        request_id,
                        result,
                    }
                }));
            }
            ServerEvent::Acked { stream, seq } => self.acked(stream, seq),
            ServerEvent::Uplink {
                stream,
                seq,
                idempotency_key,
                payload,
            } => self.uplink(stream, seq, idempotency_key, payload),
            ServerEvent::RoomJoin { stream, room } => {
                // The app id is the channel's (borrowed mutably here).
                let app = self.app().to_owned();
                let outcome = self.rooms.join(
                    &self.hub.rooms,
                    &app,
                    &mut self.channel,
                    stream,
                    room.clone(),
                    Instant::now(),
                );
                let detail = match outcome {
                    JoinOutcome::Joined { head, tail } => format!("head={head} tail={tail}"),
                    JoinOutcome::Refused { code, message } => {
                        format!("refused {code:?}: {message}")
                    }
                };
                self.record(
                    "room-join",
                    format!("stream={} room={room} {detail}", stream.value()),
                );
            }
            ServerEvent::RoomLeave { stream, room }
                if self.rooms.leave(stream, &room, Instant::now()) =>
            {
                self.record(
                    "room-leave",
                    format!("stream={} room={room}", stream.value()),
                );
            }
            ServerEvent::RoomPull {
                stream,
                room,
                offset,
                max,
                wait,
            } => {
                self.rooms.pull(
                    &mut self.channel,
                    stream,
                    &room,
                    offset,
                    max,
                    wait,
                    Instant::now(),
                );
            }
            ServerEvent::Closed {
                code,
                message,
                initiator,
                ..
            } => {
                self.record("close", format!("code={code:?} by={initiator:?} {message}"));
                self.rooms.leave_all(Instant::now());
            }
            _ => {}
        }
    }

    fn login(
        &mut self,
        stream: StreamId,
        biz: String,
        alias: String,
        credential: String,
        (saved_route, last_acked, send_only): (String, u64, bool),
    ) {
        // Traced once the authenticator has answered: an unauthenticated
        // biz and alias are the client's word only.
        metrics::counter!("pike_login_requests_total").increment(1);
        let hub = self.hub.clone();
        let request = LoginRequest {
            app: self.app().to_owned(),
            device_id: self.device_id().to_owned(),
            connection_token: self.token.clone(),
            biz: biz.clone(),
            alias: alias.clone(),
            credential,
        };
        self.start(Box::pin(async move {
            let result = async {
                let auth = hub.auth.clone();
                let grant = auth.oneshot(request.clone()).await?;
                let key = StreamKey::new(&request.app, &request.biz, &request.alias);
                let snapshot = hub
                    .store
                    .login(
                        key,
                        request.device_id.clone(),
                        last_acked,
                        hub.config.read_batch,
                        unix_ms(),
                    )
                    .await
                    .map_err(internal)?;
                let (start_after, batch) = (snapshot.start_after, snapshot.batch);
                let route_id = hub
                    .uplink
                    .route(&request.app, &request.biz, &saved_route, None)
                    .unwrap_or_default();
                Ok(LoginReady {
                    route_id,
                    start_after,
                    batch,
                    grant,
                    send_only,
                })
            }
            .await;
            Work::Login {
                stream,
                biz,
                alias,
                result,
            }
        }));
    }

    fn finish(&mut self, work: Work) {
        match work {
            Work::Login {
                stream,
                biz,
                alias,
                result,
            } => match result {
                Ok(ready) => self.login_granted(stream, biz, alias, ready),
                Err(e) => {
                    metrics::counter!("pike_logins_total", "result" => "refused").increment(1);
                    self.record(
                        "auth",
                        format!(
                            "stream={} refused {:?}: {}",
                            stream.value(),
                            e.code,
                            e.message
                        ),
                    );
                    let _ = self.channel.reject_login(stream, e.code, e.message, now());
                }
            },
            Work::Read { stream, result } => self.read_done(stream, result),
            Work::Uplink {
                stream,
                seq,
                result,
            } => self.uplink_done(stream, seq, result),
            Work::Tags {
                stream,
                request_id,
                result,
            } => {
                let (code, message, tags) = match result {
                    Ok(tags) => (ErrorCode::Unspecified, String::new(), tags),
                    Err(e) => (ErrorCode::Internal, e.to_string(), Vec::new()),
                };
                let _ = self
                    .channel
                    .tags_result(stream, request_id, code, message, tags, now());
            }
            Work::Refresh(done) => {
                let verified = self.streams.get(&done.stream()).map(|s| s.device_verified);
                let detail = login_expiry::finish_refresh(&mut self.channel, verified, done);
                self.record("refresh", detail);
            }
            Work::Done => {}
        }
    }

    /// Frees what a login held (logout or expiry).
    fn end_login(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
        self.hub.registry.remove_login(self.id, stream);
        self.rooms.logged_out(stream, Instant::now());
    }

    fn login_granted(&mut self, stream: StreamId, biz: String, alias: String, ready: LoginReady) {
        let expiry = login_expiry::expiry(&ready.grant);
        if self
            .channel
            .accept_login_until(
                stream,
                ready.route_id.clone(),
                ready.batch.last_seq,
                expiry,
                now(),
            )
            .is_err()
        {
            return;
        }
        self.record(
            "auth",
            format!("stream={} biz={biz} alias={alias} granted", stream.value()),
        );
        metrics::counter!("pike_logins_total", "result" => "ok").increment(1);
        if !self.ready_reported {
            self.ready_reported = true;
            metrics::histogram!("pike_channel_ready_seconds")
                .record(self.connected_at.elapsed().as_secs_f64());
        }
        self.record(
            "alias-bind",
            format!(
                "stream={} biz={biz} alias={alias} route={} resume_after={} last_seq={} device_verified={} expires_at_ms={} send_only={}",
                stream.value(),
                ready.route_id,
                ready.start_after,
                ready.batch.last_seq,
                ready.grant.device_verified,
                ready.grant.expires_at_ms,
                ready.send_only
            ),
        );
        // A send-only login is no recipient: not registered for pushes,
        // and its backlog is not read (`docs/protocol.md`, `send_only`).
        if !ready.send_only {
            self.hub.registry.add_login(
                self.id,
                LoginInfo {
                    stream,
                    biz: biz.clone(),
                    alias: alias.clone(),
                    route_id: ready.route_id.clone(),
                    since_ms: unix_ms(),
                    device_verified: ready.grant.device_verified,
                },
            );
        }
        let key = StreamKey::new(self.app(), biz, alias);
        self.streams.insert(
            stream,
            StreamState {
                key,
                next_seq: ready.start_after + 1,
                last_known: ready.batch.last_seq,
                reading: true,
                sent_at: VecDeque::new(),
                route_id: ready.route_id,
                uplink_queue: VecDeque::new(),
                uplink_busy: false,
                device_verified: ready.grant.device_verified,
            },
        );
        if ready.send_only {
            return;
        }
        self.read_done(stream, Ok(ready.batch));
        // The login's read happened before it was registered for
        // notifications: read once more so that a message stored in between
        // is not left waiting for the next push.
        self.catch_up(stream);
    }

    /// Reads the store after the stream's position even when no newer
    /// message is known (unless a read is in flight already).
    fn catch_up(&mut self, stream: StreamId) {
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        if state.reading {
            return;
        }
        state.reading = true;
        let hub = self.hub.clone();
        let key = state.key.clone();
        let after = state.next_seq - 1;
        self.start(Box::pin(async move {
            let result = hub
                .store
                .read(key, after, hub.config.read_batch, unix_ms())
                .await;
            Work::Read { stream, result }
        }));
    }

    /// A reliable message was stored in `key`.
    fn stored(&mut self, key: &StreamKey, message: Arc<StoredMessage>) {
        let targets: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| &s.key == key)
            .map(|(id, _)| *id)
            .collect();
        for stream in targets {
            let Some(state) = self.streams.get_mut(&stream) else {
                continue;
            };
            state.last_known = state.last_known.max(message.seq);
            let direct =
                !state.reading && state.next_seq == message.seq && self.channel.can_push(stream);
            if direct {
                self.push_reliable(stream, &message);
            }
            self.fill(stream);
        }
    }

    /// Starts a store read if `stream` is behind and has window room.
    fn fill(&mut self, stream: StreamId) {
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        if state.reading || state.next_seq > state.last_known || !self.channel.can_push(stream) {
            return;
        }
        self.catch_up(stream);
    }

    fn read_done(&mut self, stream: StreamId, result: Result<ReadBatch, StoreError>) {
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        state.reading = false;
        let batch = match result {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "store read failed");
                metrics::counter!("pike_errors_total", "kind" => "store").increment(1);
                return;
            }
        };
        state.last_known = state.last_known.max(batch.last_seq);
        if batch.messages.is_empty() {
            // Everything after next_seq expired or was evicted.
            state.next_seq = state.next_seq.max(state.last_known + 1);
            return;
        }
        for message in batch.messages {
            if message.seq < self.streams.get(&stream).map_or(u64::MAX, |s| s.next_seq) {
                continue;
            }
            if !self.channel.can_push(stream) {
                break;
            }
            self.push_reliable(stream, &message);
        }
        self.fill(stream);
    }

    fn push_reliable(&mut self, stream: StreamId, message: &StoredMessage) {
        let push = Push::new(message.payload.clone())
            .priority(message.priority)
            .expires_at_ms(message.expires_at_ms);
        match self.channel.push(stream, message.seq, push, now()) {
            Ok(()) => {
                metrics::counter!("pike_downlink_sent_total", "kind" => "reliable").increment(1);
                if let Some(state) = self.streams.get_mut(&stream) {
                    state.next_seq = message.seq + 1;
                    state.sent_at.push_back((message.seq, Instant::now()));
                }
                trace::lock(&self.trace).downlink(
                    unix_ms(),
                    stream.value(),
                    message.seq,
                    message.message_id,
                );
            }
            Err(e) => tracing::debug!(error = %e, "push refused"),
        }
    }

    fn acked(&mut self, stream: StreamId, seq: u64) {
        trace::lock(&self.trace).ack(unix_ms(), stream.value(), seq);
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        let at = Instant::now();
        while let Some(&(s, sent)) = state.sent_at.front() {
            if s > seq {
                break;
            }
            state.sent_at.pop_front();
            metrics::counter!("pike_downlink_acked_total").increment(1);
            metrics::histogram!("pike_downlink_ack_seconds").record((at - sent).as_secs_f64());
        }
        let hub = self.hub.clone();
        let key = state.key.clone();
        let device = self.device_id().to_owned();
        self.start(Box::pin(async move {
            if let Err(e) = hub.store.set_position(key, device, seq).await {
                tracing::warn!(error = %e, "saving a device position failed");
            }
            Work::Done
        }));
        self.fill(stream);
    }

    fn command(&mut self, command: ConnCommand) {
        match command {
            ConnCommand::Transient {
                biz,
                alias,
                message_id,
                priority,
                payload,
            } => {
                let targets: Vec<StreamId> = self
                    .streams
                    .iter()
                    .filter(|(_, s)| {
                        // No alias: a push to the device, for logins that
                        // proved the device id only.
                        s.key.biz == biz
                            && alias
                                .as_ref()
                                .map_or(s.device_verified, |a| *a == s.key.alias)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for stream in targets {
                    let push = Push::new(payload.clone())
                        .message_id(message_id)
                        .priority(priority);
                    if self.channel.push_transient(stream, push, now()).is_ok() {
                        metrics::counter!("pike_downlink_sent_total", "kind" => "transient")
                            .increment(1);
                        trace::lock(&self.trace).transient(unix_ms(), stream.value(), message_id);
                    }
                }
            }
            ConnCommand::GoAway { advice } => {
                self.record(
                    "go-away",
                    format!(
                        "reconnect in {}..{} ms",
                        advice.min_delay_ms, advice.max_delay_ms
                    ),
                );
                self.channel.go_away(
                    ErrorCode::GoingAway,
                    "the gateway is shutting down",
                    Some(advice),
                    now(),
                );
            }
            ConnCommand::Close { code, message } => {
                self.channel.close(code, message, now());
            }
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

fn internal(e: StoreError) -> AuthError {
    AuthError::new(ErrorCode::Internal, e.to_string())
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The next finished piece of background work (pending while none runs).
async fn next_work(work: &mut Option<FuturesUnordered<BoxFuture<'static, Work>>>) -> Option<Work> {
    match work {
        Some(set) if !set.is_empty() => set.next().await,
        _ => std::future::pending().await,
    }
}

/// Gives back empty codec buffers: tokio-util's `Framed` starts with 8 KiB
/// per direction, and a buffer keeps the capacity of the largest frame it
/// held, which an idle connection would hold for its whole life. An
/// unallocated buffer grows again for the next frame (the codec reserves
/// what a frame needs).
pub(crate) fn release_idle_buffers<S>(framed: &mut FramedTunnel<S>) {
    if framed.read_buffer().is_empty() && framed.read_buffer().capacity() != 0 {
        *framed.read_buffer_mut() = bytes::BytesMut::new();
    }
    if framed.write_buffer().is_empty() && framed.write_buffer().capacity() != 0 {
        *framed.write_buffer_mut() = bytes::BytesMut::new();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! The virtual-clock harness (quinn `Pair` style).
//!
//! A [`Pair`] wires one [`ClientChannel`] to server machines in memory: the
//! harness plays the driver on both sides (it dials when the client says
//! `Connect`, creates a [`ServerChannel`] per connection, closes sockets on
//! `Disconnect` / `Closed`) and a [`FakeGateway`] plays the gateway
//! (authenticates logins, stores reliable downlink per alias and redelivers
//! it from the client's position, dedups uplink by idempotency key, runs
//! rooms with held long polls).
//!
//! The network is a pair of ordered queues per connection with a fixed
//! one-way latency, like a TCP stream. Faults:
//!
//! - `loss`: each frame, with this probability (seeded), resets the
//!   connection: in-flight frames are dropped and both sides learn of the
//!   reset one latency later (frames are never silently lost on a stream);
//! - `blackhole`: every frame and close is silently dropped, no one is told
//!   (a dead path with sockets still "established"); dials fail after the
//!   dial timeout;
//! - `server_up = false`: dials are refused;
//! - `dial_hangs`: dials never complete nor fail (a stuck driver).
//!
//! [`Pair::step`] jumps virtual time to the next thing that happens (a
//! timer of any machine, a frame arrival, a dial result); hours of virtual
//! time take milliseconds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::channel::{RoomBatch, RoomClass, RoomMessage};
use proto::tunnel::{ClientHello, ErrorCode, ReconnectAdvice, ServerHello};
use tntunnel::Frame;

use crate::{
    ClientChannel, ClientConfig, ConnectionId, Delivery, DisconnectReason, Event, Push,
    ServerChannel, ServerConfig, ServerEvent, StreamId, UplinkResult,
};

/// The fixed origin of virtual time (read once from the OS clock: `Instant`
/// has no other constructor).
pub(crate) fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    *ORIGIN.get_or_init(Instant::now)
}

/// A tracing subscriber for the current test (`RUST_LOG=pike_channel=debug`).
pub(crate) fn subscribe() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .finish();
    tracing::subscriber::set_default(subscriber)
}

/// Seconds as a `Duration`.
pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Milliseconds as a `Duration`.
pub(crate) fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// The servers' wall clock at virtual instant `t`, unix milliseconds.
pub(crate) fn unix_ms_at(t: Instant) -> u64 {
    1_700_000_000_000 + u64::try_from((t - origin()).as_millis()).unwrap_or(u64::MAX)
}

#[derive(Clone, Debug)]
enum Packet {
    Frame(Frame),
    /// Orderly close by the sender, after its frames.
    Fin,
    /// The connection was reset.
    Reset,
}

#[derive(Debug)]
enum Scheduled {
    DialOk(ConnectionId),
    DialFailed(ConnectionId),
}

/// One connection: the server machine and the two directions of the wire.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: ConnectionId,
    pub(crate) server: ServerChannel,
    to_server: VecDeque<(Instant, Packet)>,
    to_client: VecDeque<(Instant, Packet)>,
    /// The client still uses this connection.
    client_attached: bool,
    /// The server side got its end (Closed reported).
    server_done: bool,
    /// Reset: nothing more goes through.
    dead: bool,
}

/// Client, network, server machines and fake gateway.
#[derive(Debug)]
pub(crate) struct Pair {
    pub(crate) time: Instant,
    pub(crate) client: ClientChannel,
    /// Every event the client emitted, with its time.
    pub(crate) client_events: Vec<(Instant, Event)>,
    /// Every frame the client transmitted: time, type code, bytes on the
    /// wire.
    pub(crate) client_sent: Vec<(Instant, u8, usize)>,
    pub(crate) conns: Vec<Conn>,
    /// Server machines that finished, with their `Closed` event.
    pub(crate) closed_servers: Vec<(Instant, ServerEvent, bool)>,
    pub(crate) gateway: FakeGateway,
    pub(crate) server_config: Arc<ServerConfig>,
    pub(crate) latency: Duration,
    pub(crate) loss: f64,
    pub(crate) blackhole: bool,
    pub(crate) server_up: bool,
    pub(crate) dial_hangs: bool,
    /// The next this many dials hang (then dials behave normally).
    pub(crate) hang_dials: u32,
    pub(crate) dial_timeout: Duration,
    /// Dials succeed even while blackholed (then nothing gets through).
    pub(crate) dial_through_blackhole: bool,
    /// Advice put in every server hello.
    pub(crate) hello_advice: Option<ReconnectAdvice>,
    scheduled: Vec<(Instant, Scheduled)>,
    rng: fastrand::Rng,
    connections_made: u64,
    steps: u64,
}

impl Pair {
    /// A pair with default configurations, 20 ms one-way latency, no faults.
    pub(crate) fn new() -> Self {
        Self::with_config(ClientConfig::default(), ServerConfig::default(), 1)
    }

    pub(crate) fn with_config(client: ClientConfig, server: ServerConfig, seed: u64) -> Self {
        Self {
            time: origin(),
            client: ClientChannel::new(Arc::new(client), seed),
            client_events: Vec::new(),
            client_sent: Vec::new(),
            conns: Vec::new(),
            closed_servers: Vec::new(),
            gateway: FakeGateway::default(),
            server_config: Arc::new(server),
            latency: ms(20),
            loss: 0.0,
            blackhole: false,
            server_up: true,
            dial_hangs: false,
            hang_dials: 0,
            dial_timeout: secs(10),
            dial_through_blackhole: false,
            hello_advice: None,
            scheduled: Vec::new(),
            rng: fastrand::Rng::with_seed(seed ^ 0x5eed),
            connections_made: 0,
            steps: 0,
        }
    }

    // === client commands (run at the current virtual time, then flushed) ===

    pub(crate) fn start(&mut self) {
        self.client.start(self.time);
        self.flush();
    }

    pub(crate) fn login(&mut self, biz: &str, alias: &str) -> StreamId {
        let stream = self.client.login(
            crate::LoginParams::new(biz, alias, format!("cred:{alias}")),
            self.time,
        );
        self.flush();
        stream
    }

    pub(crate) fn send(&mut self, stream: StreamId, payload: &str) -> crate::SendId {
        let id = self
            .client
            .send(
                stream,
                Bytes::copy_from_slice(payload.as_bytes()),
                Some(format!("key-{payload}")),
                self.time,
            )
            .expect("send accepted");
        self.flush();
        id
    }

    /// The gateway stores a reliable message for `alias` and pushes it if
    /// the alias is online.
    pub(crate) fn push(&mut self, alias: &str, payload: &str) -> u64 {
        let seq = self
            .gateway
            .store(alias, Bytes::copy_from_slice(payload.as_bytes()));
        self.pump_gateway();
        seq
    }

    /// The gateway stores a reliable message without pushing it yet.
    pub(crate) fn gateway_store_only(&mut self, alias: &str, payload: &str) -> u64 {
        self.gateway
            .store(alias, Bytes::copy_from_slice(payload.as_bytes()))
    }

    /// The gateway pushes what it can.
    pub(crate) fn pump(&mut self) {
        self.pump_gateway();
    }

    /// The gateway ends every login of `alias` with `code` (as a takeover
    /// does); returns how many it ended.
    pub(crate) fn end_login(&mut self, alias: &str, code: ErrorCode) -> usize {
        let now = self.time;
        let mut ended = 0;
        for conn in self.conns.iter_mut().filter(|c| !c.dead && !c.server_done) {
            for stream in self.gateway.streams_of(conn.id, alias) {
                if conn
                    .server
                    .end_login(stream, code, "ended by the gateway", now)
                {
                    ended += 1;
                }
            }
        }
        self.flush();
        ended
    }

    /// The gateway pushes a transient message to every online stream of
    /// `alias`.
    pub(crate) fn push_transient(&mut self, alias: &str, payload: &str) {
        let now = self.time;
        for conn in self.conns.iter_mut().filter(|c| !c.dead && !c.server_done) {
            for stream in self.gateway.streams_of(conn.id, alias) {
                let _ =
                    conn.server
                        .push_transient(stream, Push::new(payload.as_bytes().to_vec()), now);
            }
        }
        self.flush();
    }

    /// A message published to a room: answers held pulls.
    pub(crate) fn publish(&mut self, room: &str, payload: &str) -> u64 {
        let offset = self.gateway.publish(room, payload);
        self.pump_gateway();
        offset
    }

    /// Drops the current connection abruptly (both sides told after one
    /// latency), e.g. a NAT rebinding or a server crash.
    pub(crate) fn kill_connection(&mut self) {
        let at = self.time + self.latency;
        for conn in self.conns.iter_mut().filter(|c| !c.dead) {
            reset(conn, at);
        }
    }

    // === driving ===

    /// The earliest moment something happens.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        let mut next = self.client.poll_timeout();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for conn in &self.conns {
            consider(conn.server.poll_timeout());
            consider(conn.to_server.front().map(|(t, _)| *t));
            consider(conn.to_client.front().map(|(t, _)| *t));
        }
        consider(self.scheduled.iter().map(|(t, _)| *t).min());
        next
    }

    /// Advances to the next wakeup if it is at or before `limit` and handles
    /// everything due then. Returns whether it did.
    pub(crate) fn step_until(&mut self, limit: Instant) -> bool {
        self.steps += 1;
        assert!(self.steps < 5_000_000, "harness livelock");
        let Some(next) = self.next_wakeup() else {
            self.time = self.time.max(limit);
            return false;
        };
        if next > limit {
            self.time = self.time.max(limit);
            return false;
        }
        self.time = self.time.max(next);
        let now = self.time;

        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.scheduled)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.scheduled = rest;
        for (_, action) in due {
            self.run_scheduled(action);
        }
        self.deliver(now);
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        for conn in &mut self.conns {
            if conn.server.poll_timeout().is_some_and(|t| t <= now) {
                conn.server.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// One step, whenever it is.
    pub(crate) fn step(&mut self) -> bool {
        self.step_until(self.time + secs(365 * 24 * 3600))
    }

    /// Runs until nothing happens for a settle window of 200 ms (frames
    /// delivered, acks flushed; only the slow periodic timers remain), at
    /// most 10 minutes of virtual time.
    pub(crate) fn drive(&mut self) {
        let bound = self.time + secs(600);
        while self.time < bound {
            let settle = (self.time + ms(200)).min(bound);
            if !self.step_until(settle) && self.next_wakeup().is_none_or(|t| t > settle) {
                return;
            }
        }
    }

    /// Runs for `d` of virtual time.
    pub(crate) fn drive_for(&mut self, d: Duration) {
        let end = self.time + d;
        while self.step_until(end) {}
    }

    /// Runs until `done` holds (checked after every step) or `limit` of
    /// virtual time passes; returns whether `done` held.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        let end = self.time + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step_until(end) {
                return done(self);
            }
        }
    }

    /// Runs until the client notices it is no longer connected.
    pub(crate) fn wait_disconnected(&mut self) {
        let ok = self.run_until(secs(600), |p| {
            p.client.state() != crate::ConnectionState::Connected
        });
        assert!(ok, "client did not notice the disconnect");
    }

    /// Runs until the client is connected and every login is active.
    pub(crate) fn connect_and_login(&mut self) {
        let ok = self.run_until(secs(120), |p| {
            p.client.state() == crate::ConnectionState::Connected
                && p.client.streams().all(|s| p.client.is_logged_in(s))
        });
        assert!(ok, "client did not connect and log in");
    }

    // === inspection helpers ===

    /// Reliable and transient messages the business received on `stream`.
    pub(crate) fn deliveries(&self, stream: StreamId) -> Vec<Delivery> {
        self.client_events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Received(d) if d.stream == stream => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    /// Events matching `pred`, with their times.
    pub(crate) fn events_where(&self, pred: impl Fn(&Event) -> bool) -> Vec<(Instant, Event)> {
        self.client_events
            .iter()
            .filter(|(_, e)| pred(e))
            .cloned()
            .collect()
    }

    /// Number of client frames of type `ty` sent in `[from, to)`.
    pub(crate) fn sent_count(&self, ty: tntunnel::FrameType, from: Instant, to: Instant) -> usize {
        self.client_sent
            .iter()
            .filter(|(t, c, _)| *c == ty.code() && *t >= from && *t < to)
            .count()
    }

    /// The connection the client currently uses.
    pub(crate) fn current_conn(&mut self) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.client_attached && !c.dead)
    }

    // === internals ===

    fn run_scheduled(&mut self, action: Scheduled) {
        let now = self.time;
        match action {
            Scheduled::DialOk(id) => {
                self.connections_made += 1;
                let mut hello = ServerHello {
                    connection_token: format!("conn-{}", self.connections_made),
                    reconnect: self.hello_advice.clone(),
                    server_time_ms: unix_ms_at(now),
                    ..ServerHello::default()
                };
                self.server_config.fill_hello(&mut hello);
                let client_hello = ClientHello {
                    device_id: "dev-1".into(),
                    ..ClientHello::default()
                };
                let server = ServerChannel::new(self.server_config.clone(), client_hello, now);
                self.conns.push(Conn {
                    id,
                    server,
                    to_server: VecDeque::new(),
                    to_client: VecDeque::new(),
                    client_attached: true,
                    server_done: false,
                    dead: false,
                });
                self.client.handle_connected(id, &hello, now);
            }
            Scheduled::DialFailed(id) => self.client.handle_connect_failed(id, now),
        }
    }

    /// Delivers every packet due at `now`, in order per direction.
    fn deliver(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            while let Some((t, _)) = self.conns[i].to_server.front() {
                if *t > now {
                    break;
                }
                let Some((_, packet)) = self.conns[i].to_server.pop_front() else {
                    break;
                };
                let conn = &mut self.conns[i];
                match packet {
                    Packet::Frame(frame) => conn.server.handle_frame(frame, now),
                    Packet::Fin | Packet::Reset => conn.server.handle_connection_lost(now),
                }
            }
            while let Some((t, _)) = self.conns[i].to_client.front() {
                if *t > now {
                    break;
                }
                let Some((_, packet)) = self.conns[i].to_client.pop_front() else {
                    break;
                };
                let conn = &mut self.conns[i];
                if !conn.client_attached {
                    continue;
                }
                match packet {
                    Packet::Frame(frame) => self.client.handle_frame(frame, now),
                    Packet::Fin => {
                        conn.client_attached = false;
                        self.client.handle_disconnected(
                            conn.id,
                            DisconnectReason::Transport("eof".into()),
                            now,
                        );
                    }
                    Packet::Reset => {
                        conn.client_attached = false;
                        self.client.handle_disconnected(
                            conn.id,
                            DisconnectReason::Transport("reset".into()),
                            now,
                        );
                    }
                }
            }
        }
    }

    /// Drains every machine's output until nothing moves.
    pub(crate) fn flush(&mut self) {
        let now = self.time;
        loop {
            let mut progress = false;
            // Client frames go to the current connection.
            while let Some(frame) = self.client.poll_transmit() {
                progress = true;
                self.client_sent
                    .push((now, frame.ty.code(), frame.encoded_len()));
                let (latency, blackhole, loss) = (self.latency, self.blackhole, self.loss);
                let lost = loss > 0.0 && self.rng.f64() < loss;
                if let Some(conn) = self.conns.iter_mut().find(|c| c.client_attached) {
                    send(
                        conn,
                        Direction::ToServer,
                        Packet::Frame(frame),
                        now,
                        latency,
                        blackhole,
                        lost,
                    );
                }
            }
            while let Some(event) = self.client.poll_event() {
                progress = true;
                self.client_action(&event);
                self.client_events.push((now, event));
            }
            for i in 0..self.conns.len() {
                while let Some(frame) = self.conns[i].server.poll_transmit() {
                    progress = true;
                    let lost = self.loss > 0.0 && self.rng.f64() < self.loss;
                    let (latency, blackhole) = (self.latency, self.blackhole);
                    send(
                        &mut self.conns[i],
                        Direction::ToClient,
                        Packet::Frame(frame),
                        now,
                        latency,
                        blackhole,
                        lost,
                    );
                }
                while let Some(event) = self.conns[i].server.poll_event() {
                    progress = true;
                    let conn = &mut self.conns[i];
                    if let ServerEvent::Closed { .. } = &event {
                        conn.server_done = true;
                        let (latency, blackhole) = (self.latency, self.blackhole);
                        send(
                            conn,
                            Direction::ToClient,
                            Packet::Fin,
                            now,
                            latency,
                            blackhole,
                            false,
                        );
                        let holds = conn.server.holds_resources();
                        self.closed_servers.push((now, event.clone(), holds));
                    }
                    self.gateway.handle(conn.id, &mut conn.server, event, now);
                }
            }
            if !progress {
                break;
            }
        }
        // Forget finished connections.
        self.conns.retain(|c| {
            !(c.server_done
                && !c.client_attached
                && c.to_server.is_empty()
                && c.to_client.is_empty())
                && !(c.dead && c.to_server.is_empty() && c.to_client.is_empty())
        });
    }

    fn pump_gateway(&mut self) {
        let now = self.time;
        for conn in self.conns.iter_mut().filter(|c| !c.dead && !c.server_done) {
            self.gateway.pump(conn.id, &mut conn.server, now);
        }
        self.flush();
    }

    /// The driver's part: carry out Connect and Disconnect.
    fn client_action(&mut self, event: &Event) {
        let now = self.time;
        match event {
            Event::Connect { id, .. } => {
                if self.dial_hangs {
                    return;
                }
                if self.hang_dials > 0 {
                    self.hang_dials -= 1;
                    return;
                }
                if self.blackhole && !self.dial_through_blackhole {
                    self.scheduled
                        .push((now + self.dial_timeout, Scheduled::DialFailed(*id)));
                } else if self.server_up {
                    self.scheduled
                        .push((now + 2 * self.latency, Scheduled::DialOk(*id)));
                } else {
                    self.scheduled
                        .push((now + 2 * self.latency, Scheduled::DialFailed(*id)));
                }
            }
            Event::Disconnect { id, close, .. } => {
                self.scheduled.retain(|(_, s)| !matches!(s, Scheduled::DialOk(d) | Scheduled::DialFailed(d) if d == id));
                let (latency, blackhole) = (self.latency, self.blackhole);
                if let Some(conn) = self.conns.iter_mut().find(|c| c.id == *id) {
                    conn.client_attached = false;
                    conn.to_client.clear();
                    if let Some(close) = close {
                        send(
                            conn,
                            Direction::ToServer,
                            Packet::Frame(close.clone()),
                            now,
                            latency,
                            blackhole,
                            false,
                        );
                    }
                    send(
                        conn,
                        Direction::ToServer,
                        Packet::Fin,
                        now,
                        latency,
                        blackhole,
                        false,
                    );
                }
            }
            _ => {}
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    ToServer,
    ToClient,
}

fn send(
    conn: &mut Conn,
    dir: Direction,
    packet: Packet,
    now: Instant,
    latency: Duration,
    blackhole: bool,
    lost: bool,
) {
    if conn.dead || blackhole {
        return;
    }
    if lost {
        reset(conn, now + latency);
        return;
    }
    let queue = match dir {
        Direction::ToServer => &mut conn.to_server,
        Direction::ToClient => &mut conn.to_client,
    };
    queue.push_back((now + latency, packet));
}

fn reset(conn: &mut Conn, at: Instant) {
    conn.dead = true;
    conn.to_server.clear();
    conn.to_client.clear();
    if !conn.server_done {
        conn.to_server.push_back((at, Packet::Reset));
    }
    if conn.client_attached {
        conn.to_client.push_back((at, Packet::Reset));
    }
}

/// The gateway's part, minimal: authentication, a per-alias store of
/// reliable downlink with acked positions, uplink dedup by idempotency key,
/// rooms with held long polls.
#[derive(Debug)]
pub(crate) struct FakeGateway {
    /// Refuse every login with this code.
    pub(crate) reject: Option<ErrorCode>,
    /// Route id handed out.
    pub(crate) route_id: String,
    /// Ack uplink at once (else hold them: no ack ever).
    pub(crate) ack_uplink: bool,
    /// Refuse every uplink with this code.
    pub(crate) reject_uplink: Option<ErrorCode>,
    /// Redeliver from the gateway's own acked position instead of the
    /// position the client reports (more duplicates for the client to drop).
    pub(crate) redeliver_from_gateway_ack: bool,
    /// Answer room pulls (else stay silent like a long poll that times out).
    pub(crate) answer_pulls: bool,
    /// The epoch of the gateway's log: a login from another (nonzero)
    /// epoch has its position ignored, as a real gateway does.
    pub(crate) log_epoch: u64,
    /// Stored reliable downlink per alias: (seq, payload).
    pub(crate) store: BTreeMap<String, Vec<(u64, Bytes)>>,
    /// Highest acked per alias.
    pub(crate) acked: BTreeMap<String, u64>,
    /// Every login request: (alias, route id, last acked seq).
    pub(crate) logins: Vec<(String, String, u64)>,
    /// Every uplink event: (alias, seq, key) — what the server machine
    /// reported, per connection.
    pub(crate) uplinks_seen: Vec<(String, u64, String)>,
    /// `first_attempt` of each of `uplinks_seen`, in the same order.
    pub(crate) first_attempts_seen: Vec<bool>,
    /// What the backend received: deduped by idempotency key.
    pub(crate) backend: Vec<(String, u64, String)>,
    /// Room rings.
    pub(crate) rooms: BTreeMap<String, Vec<RoomMessage>>,
    /// Every pull: (time, room, offset).
    pub(crate) pulls: Vec<(Instant, String, u64)>,
    /// Held pulls: (conn, stream, room, offset).
    held: Vec<(ConnectionId, StreamId, String, u64)>,
    /// Logged-in sessions: (conn, stream) → (alias, next seq to push).
    sessions: BTreeMap<(ConnectionId, StreamId), (String, u64)>,
    /// Highest uplink seq delivered to the backend per alias (order check).
    pub(crate) backend_order_violations: u64,
    /// Credential validity granted per alias (logins and refreshes); other
    /// aliases' logins never expire.
    pub(crate) credential_ttl: BTreeMap<String, Duration>,
    /// Refuse every credential refresh with this code.
    pub(crate) reject_refresh: Option<ErrorCode>,
    /// The credential of every login request, in order.
    pub(crate) login_credentials: Vec<String>,
    /// Every credential refresh: (time, alias, credential).
    pub(crate) refreshes: Vec<(Instant, String, String)>,
    /// Every login that expired: (time, alias).
    pub(crate) expired: Vec<(Instant, String)>,
    /// Every login the gateway ended: (time, alias, code).
    pub(crate) ended: Vec<(Instant, String, ErrorCode)>,
}

impl Default for FakeGateway {
    fn default() -> Self {
        Self {
            reject: None,
            route_id: "route-1".into(),
            ack_uplink: true,
            reject_uplink: None,
            redeliver_from_gateway_ack: false,
            answer_pulls: true,
            log_epoch: 0,
            store: BTreeMap::new(),
            acked: BTreeMap::new(),
            logins: Vec::new(),
            uplinks_seen: Vec::new(),
            first_attempts_seen: Vec::new(),
            backend: Vec::new(),
            rooms: BTreeMap::new(),
            pulls: Vec::new(),
            held: Vec::new(),
            sessions: BTreeMap::new(),
            backend_order_violations: 0,
            credential_ttl: BTreeMap::new(),
            reject_refresh: None,
            login_credentials: Vec::new(),
            refreshes: Vec::new(),
            expired: Vec::new(),
            ended: Vec::new(),
        }
    }
}

impl FakeGateway {
    fn store(&mut self, alias: &str, payload: Bytes) -> u64 {
        let list = self.store.entry(alias.to_owned()).or_default();
        let seq = list.last().map_or(1, |(s, _)| s + 1);
        list.push((seq, payload));
        seq
    }

    fn publish(&mut self, room: &str, payload: &str) -> u64 {
        let ring = self.rooms.entry(room.to_owned()).or_default();
        let offset = ring.len() as u64;
        ring.push(RoomMessage {
            offset,
            class: RoomClass::Reliable.into(),
            priority: 0,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        });
        offset
    }

    /// The expiry of a credential for `alias` granted at `now`.
    fn expiry(&self, alias: &str, now: Instant) -> Option<crate::CredentialExpiry> {
        let ttl = self.credential_ttl.get(alias)?;
        Some(crate::CredentialExpiry::at_unix_ms(
            unix_ms_at(now + *ttl),
            now,
            unix_ms_at(now),
        ))
    }

    fn streams_of(&self, conn: ConnectionId, alias: &str) -> Vec<StreamId> {
        self.sessions
            .iter()
            .filter(|((c, _), (a, _))| *c == conn && a == alias)
            .map(|((_, s), _)| *s)
            .collect()
    }

    /// Pushes stored messages to every session of `conn` while windows
    /// allow; answers held pulls that have data now.
    fn pump(&mut self, conn: ConnectionId, server: &mut ServerChannel, now: Instant) {
        let keys: Vec<_> = self
            .sessions
            .keys()
            .filter(|(c, _)| *c == conn)
            .copied()
            .collect();
        for key in keys {
            let Some((alias, next)) = self.sessions.get(&key).cloned() else {
                continue;
            };
            let mut next = next;
            for (seq, payload) in self.store.get(&alias).into_iter().flatten() {
                if *seq < next {
                    continue;
                }
                if !server.can_push(key.1) {
                    break;
                }
                server
                    .push(
                        key.1,
                        *seq,
                        Push::new(payload.clone()).message_id(*seq),
                        now,
                    )
                    .expect("push");
                next = seq + 1;
            }
            if let Some(session) = self.sessions.get_mut(&key) {
                session.1 = next;
            }
        }
        let held = std::mem::take(&mut self.held);
        for (c, stream, room, offset) in held {
            if c != conn || !self.answer_pull(server, stream, &room, offset, now) {
                self.held.push((c, stream, room, offset));
            }
        }
    }

    /// Answers a pull if the room has data at `offset`.
    fn answer_pull(
        &mut self,
        server: &mut ServerChannel,
        stream: StreamId,
        room: &str,
        offset: u64,
        now: Instant,
    ) -> bool {
        if !self.answer_pulls {
            return false;
        }
        let ring = self.rooms.get(room).map(Vec::as_slice).unwrap_or_default();
        let messages: Vec<_> = ring
            .iter()
            .filter(|m| m.offset >= offset)
            .cloned()
            .collect();
        if messages.is_empty() {
            return false;
        }
        let next_offset = ring.len() as u64;
        let batch = RoomBatch {
            room: room.to_owned(),
            messages,
            missed: 0,
            next_offset,
            ..RoomBatch::default()
        };
        server.room_batch(stream, batch, now).is_ok()
    }

    fn handle(
        &mut self,
        conn: ConnectionId,
        server: &mut ServerChannel,
        event: ServerEvent,
        now: Instant,
    ) {
        match event {
            ServerEvent::LoginRequested {
                stream,
                alias,
                credential,
                route_id,
                last_acked_seq,
                epoch,
                ..
            } => {
                self.logins.push((alias.clone(), route_id, last_acked_seq));
                let last_acked_seq = if epoch != 0 && epoch != self.log_epoch {
                    0
                } else {
                    last_acked_seq
                };
                self.login_credentials.push(credential);
                if let Some(code) = self.reject {
                    server
                        .reject_login(stream, code, "refused", now)
                        .expect("reject");
                    return;
                }
                let last_seq = self
                    .store
                    .get(&alias)
                    .and_then(|l| l.last())
                    .map_or(0, |(s, _)| *s);
                let expiry = self.expiry(&alias, now);
                server
                    .accept_login_until(stream, self.route_id.clone(), last_seq, expiry, now)
                    .expect("accept");
                let from = if self.redeliver_from_gateway_ack {
                    self.acked
                        .get(&alias)
                        .copied()
                        .unwrap_or(0)
                        .min(last_acked_seq)
                } else {
                    last_acked_seq
                };
                self.sessions.insert((conn, stream), (alias, from + 1));
                self.pump(conn, server, now);
            }
            ServerEvent::LoggedOut { stream } => {
                self.sessions.remove(&(conn, stream));
            }
            ServerEvent::CredentialRefresh {
                stream,
                alias,
                credential,
                ..
            } => {
                self.refreshes.push((now, alias.clone(), credential));
                if let Some(code) = self.reject_refresh {
                    server
                        .reject_refresh(stream, code, "refused", now)
                        .expect("reject refresh");
                } else {
                    let expiry = self.expiry(&alias, now);
                    server
                        .accept_refresh(stream, expiry, now)
                        .expect("accept refresh");
                }
            }
            ServerEvent::LoginExpired { stream } => {
                if let Some((alias, _)) = self.sessions.remove(&(conn, stream)) {
                    self.expired.push((now, alias));
                }
            }
            ServerEvent::LoginEnded { stream, code } => {
                if let Some((alias, _)) = self.sessions.remove(&(conn, stream)) {
                    self.ended.push((now, alias, code));
                }
            }
            ServerEvent::Acked { stream, seq } => {
                if let Some((alias, _)) = self.sessions.get(&(conn, stream)) {
                    let acked = self.acked.entry(alias.clone()).or_default();
                    *acked = (*acked).max(seq);
                }
                self.pump(conn, server, now);
            }
            ServerEvent::Uplink {
                stream,
                seq,
                idempotency_key,
                first_attempt,
                ..
            } => {
                let alias = self
                    .sessions
                    .get(&(conn, stream))
                    .map(|(a, _)| a.clone())
                    .unwrap_or_default();
                self.uplinks_seen
                    .push((alias.clone(), seq, idempotency_key.clone()));
                self.first_attempts_seen.push(first_attempt);
                if !self.backend.iter().any(|(_, _, k)| *k == idempotency_key) {
                    if self
                        .backend
                        .iter()
                        .filter(|(a, _, _)| *a == alias)
                        .any(|(_, s, _)| *s >= seq)
                    {
                        self.backend_order_violations += 1;
                    }
                    self.backend.push((alias, seq, idempotency_key));
                }
                if let Some(code) = self.reject_uplink {
                    server
                        .ack_uplink(stream, seq, UplinkResult::rejected(code, "refused"), now)
                        .expect("ack");
                } else if self.ack_uplink {
                    server
                        .ack_uplink(stream, seq, UplinkResult::accepted(), now)
                        .expect("ack");
                }
            }
            ServerEvent::RoomJoin { stream, room } => {
                let tail = self.rooms.get(&room).map_or(0, |r| r.len() as u64);
                server
                    .room_joined(stream, room, 0, tail, now)
                    .expect("join");
            }
            ServerEvent::RoomPull {
                stream,
                room,
                offset,
                ..
            } => {
                self.pulls.push((now, room.clone(), offset));
                self.held
                    .retain(|(c, s, r, _)| !(*c == conn && *s == stream && *r == room));
                if !self.answer_pull(server, stream, &room, offset, now) {
                    self.held.push((conn, stream, room, offset));
                }
            }
            ServerEvent::TagsRequested {
                stream,
                request_id,
                bind,
                ..
            } => {
                server
                    .tags_result(stream, request_id, ErrorCode::Unspecified, "", bind, now)
                    .expect("tags");
            }
            ServerEvent::Closed { .. } => {
                self.sessions.retain(|(c, _), _| *c != conn);
                self.held.retain(|(c, _, _, _)| *c != conn);
            }
            _ => {}
        }
    }
}

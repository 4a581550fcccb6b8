//! Test support (feature `_test-util`, private, not part of the API): a
//! small in-memory gateway served over real loopback listeners, TLS
//! identities, connectors for each transport, and a tracing guard.
//!
//! The [`TestGateway`] accepts logins whose credential equals the one it was
//! built with (others get `AUTH_FAILED`), keeps a per-alias log of reliable
//! downlink with sequence numbers and redelivers it from each login's
//! `last_acked_seq`, records uplink in arrival order, deduplicated by
//! idempotency key (per alias), and acks each uplink after recording it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use proto::tunnel::{ClientHello, ErrorCode};
use tntunnel::tls::{Fingerprint, TlsClientConfig, TlsServerConfig};
use tntunnel::{ClientSecurity, ServerSecurity};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tunnelkit::{
    Acceptor, AcceptorConfig, Dialer, DialerConfig, Listener, QuicConfig, QuicListener,
    QuicTransport, TcpConfig, TcpListener, TcpTransport,
};

use crate::{
    AcceptOptions, BoxConnector, HelloDecision, Push, ServerConnection, ServerEvent, ServerHandle,
    StreamId, TunnelConnector, UplinkResult, spawn_accept_loop,
};

/// A tracing subscriber for the current thread (`RUST_LOG=pike_channel=debug`).
pub fn trace_init() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .finish();
    tracing::subscriber::set_default(subscriber)
}

/// The three ways a gateway is reached.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Wire {
    Tcp,
    Tls,
    Quic,
}

/// A self-signed identity in a temporary directory, and its pin.
#[derive(Debug)]
pub struct TestTls {
    pub server: TlsServerConfig,
    pub fingerprint: Fingerprint,
    _dir: tempfile::TempDir,
}

impl TestTls {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (server, fingerprint) =
            TlsServerConfig::self_signed_in(dir.path(), ["localhost".to_owned()])
                .await
                .expect("self-signed identity");
        Self {
            server,
            fingerprint,
            _dir: dir,
        }
    }

    pub fn client(&self) -> TlsClientConfig {
        TlsClientConfig::pinned([self.fingerprint]).expect("pinned config")
    }
}

/// A connector to `addr` over `wire`, with `device_id` in the hello.
pub fn connector(wire: Wire, addr: SocketAddr, tls: &TestTls, device_id: &str) -> BoxConnector {
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: device_id.into(),
        ..ClientHello::default()
    };
    match wire {
        Wire::Tcp | Wire::Tls => {
            let transport = TcpTransport::new(TcpConfig::default()).expect("tcp transport");
            let dialer = Dialer::new(transport, DialerConfig::default()).expect("dialer");
            let connector = TunnelConnector::new(dialer, vec![addr], hello);
            if wire == Wire::Tls {
                BoxConnector::new(
                    connector.security(ClientSecurity::Tls(tls.client()), "localhost"),
                )
            } else {
                BoxConnector::new(connector)
            }
        }
        Wire::Quic => {
            let transport = QuicTransport::new(
                tls.client().rustls_config(),
                "localhost",
                &QuicConfig::default(),
            )
            .expect("quic transport");
            let dialer = Dialer::new(transport, DialerConfig::default()).expect("dialer");
            BoxConnector::new(TunnelConnector::new(dialer, vec![addr], hello))
        }
    }
}

/// One login request the gateway saw.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LoginRecord {
    /// The gateway's number for the connection.
    pub conn: u64,
    pub biz: String,
    pub alias: String,
    pub route_id: String,
    pub last_acked_seq: u64,
    pub accepted: bool,
}

#[derive(Debug)]
struct Session {
    alias: String,
    /// Next sequence number to push.
    next: u64,
}

#[derive(Debug)]
struct Conn {
    handle: ServerHandle,
    token: String,
    device_id: String,
    streams: BTreeMap<StreamId, Session>,
}

#[derive(Debug, Default)]
struct State {
    credential: String,
    log: BTreeMap<String, Vec<(u64, Bytes)>>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    backend: BTreeMap<String, Vec<Bytes>>,
    keys: HashSet<(String, String)>,
    uplink_events: u64,
    first_attempt_repeats: u64,
    logins: Vec<LoginRecord>,
    acked: BTreeMap<String, u64>,
    connections_made: u64,
}

impl State {
    /// Pushes stored messages to every session of `conn` while windows
    /// allow.
    fn pump(&mut self, conn: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for (stream, session) in c.streams.iter_mut() {
            let Some(log) = self.log.get(&session.alias) else {
                continue;
            };
            let from = session.next;
            for (seq, payload) in log.iter().filter(|(s, _)| *s >= from) {
                if !c.handle.can_push(*stream) {
                    break;
                }
                if c.handle
                    .push(*stream, *seq, Push::new(payload.clone()).message_id(*seq))
                    .is_err()
                {
                    break;
                }
                session.next = seq + 1;
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

/// The in-memory gateway; cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct TestGateway {
    inner: Arc<Inner>,
}

impl TestGateway {
    /// A gateway accepting logins with `credential`.
    pub fn new(credential: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    credential: credential.to_owned(),
                    ..State::default()
                }),
                changed: watch::channel(0).0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.inner.changed.send_modify(|v| *v += 1);
    }

    /// Serves on a fresh listener bound to `addr` over `wire`.
    pub async fn bind(
        &self,
        wire: Wire,
        addr: SocketAddr,
        tls: &TestTls,
    ) -> io::Result<TestServer> {
        match wire {
            Wire::Tcp => {
                let listener = TcpListener::bind(addr).map_err(io::Error::other)?;
                Ok(self.serve(listener, ServerSecurity::Plain))
            }
            Wire::Tls => {
                let listener = TcpListener::bind(addr).map_err(io::Error::other)?;
                Ok(self.serve(listener, ServerSecurity::Tls(tls.server.clone())))
            }
            Wire::Quic => {
                let listener =
                    QuicListener::bind(addr, tls.server.rustls_config(), &QuicConfig::default())
                        .map_err(io::Error::other)?;
                Ok(self.serve(listener, ServerSecurity::Plain))
            }
        }
    }

    /// Serves on `listener`.
    pub fn serve<L: Listener>(&self, listener: L, security: ServerSecurity) -> TestServer {
        self.serve_with(listener, AcceptOptions::new(security))
    }

    /// Serves on `listener` with `options`.
    pub fn serve_with<L: Listener>(&self, listener: L, options: AcceptOptions) -> TestServer {
        let addr = listener.local_addr().expect("local address");
        let acceptor = Acceptor::new(listener, &AcceptorConfig::default()).expect("acceptor");
        let mut accept = spawn_accept_loop(acceptor, options, |_, _| HelloDecision::accept());
        let (kill, mut killed) = oneshot::channel::<()>();
        let gateway = self.clone();
        let task = tokio::spawn(async move {
            let mut handlers = JoinSet::new();
            loop {
                tokio::select! {
                    conn = accept.next() => match conn {
                        Some(conn) => {
                            handlers.spawn(gateway.clone().run_connection(conn));
                        }
                        None => break,
                    },
                    Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
                    _ = &mut killed => break,
                }
            }
            accept.abort();
            handlers.abort_all();
            while handlers.join_next().await.is_some() {}
            accept.wait().await;
        });
        TestServer {
            addr,
            kill: Some(kill),
            task,
        }
    }

    async fn run_connection(self, conn: ServerConnection) {
        let ServerConnection {
            handle,
            mut events,
            info,
            ..
        } = conn;
        let id = {
            let mut state = self.lock();
            let id = state.next_conn;
            state.next_conn += 1;
            state.connections_made += 1;
            state.conns.insert(
                id,
                Conn {
                    handle,
                    token: info.connection_token.clone(),
                    device_id: info.hello.device_id.clone(),
                    streams: BTreeMap::new(),
                },
            );
            id
        };
        self.changed();
        while let Some(event) = events.recv().await {
            self.on_event(id, event);
            self.changed();
        }
        self.lock().conns.remove(&id);
        self.changed();
    }

    fn on_event(&self, id: u64, event: ServerEvent) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(conn) = state.conns.get_mut(&id) else {
            return;
        };
        let handle = conn.handle.clone();
        match event {
            ServerEvent::LoginRequested {
                stream,
                biz,
                alias,
                credential,
                route_id,
                last_acked_seq,
                ..
            } => {
                let accepted = credential == state.credential;
                state.logins.push(LoginRecord {
                    conn: id,
                    biz: biz.clone(),
                    alias: alias.clone(),
                    route_id,
                    last_acked_seq,
                    accepted,
                });
                if !accepted {
                    let _ = handle.reject_login(stream, ErrorCode::AuthFailed, "bad credential");
                    return;
                }
                let last_seq = state
                    .log
                    .get(&alias)
                    .and_then(|l| l.last())
                    .map_or(0, |(s, _)| *s);
                let _ = handle.accept_login(stream, format!("route-{biz}"), last_seq);
                conn.streams.insert(
                    stream,
                    Session {
                        alias,
                        next: last_acked_seq + 1,
                    },
                );
                state.pump(id);
            }
            ServerEvent::LoggedOut { stream } => {
                conn.streams.remove(&stream);
            }
            ServerEvent::Acked { stream, seq } => {
                if let Some(session) = conn.streams.get(&stream) {
                    let acked = state.acked.entry(session.alias.clone()).or_default();
                    *acked = (*acked).max(seq);
                }
                state.pump(id);
            }
            ServerEvent::Uplink {
                stream,
                seq,
                idempotency_key,
                payload,
                first_attempt,
            } => {
                state.uplink_events += 1;
                let alias = conn
                    .streams
                    .get(&stream)
                    .map(|s| s.alias.clone())
                    .unwrap_or_default();
                if state.keys.insert((alias.clone(), idempotency_key)) {
                    state.backend.entry(alias).or_default().push(payload);
                } else if first_attempt {
                    state.first_attempt_repeats += 1;
                }
                let _ = handle.ack_uplink(stream, seq, UplinkResult::accepted());
            }
            ServerEvent::TagsRequested {
                stream,
                request_id,
                bind,
                ..
            } => {
                let _ = handle.tags_result(stream, request_id, ErrorCode::Unspecified, "", bind);
            }
            ServerEvent::RoomJoin { stream, room } => {
                let _ = handle.room_joined(stream, room, 0, 0);
            }
            ServerEvent::Closed { .. } => conn.streams.clear(),
            _ => {}
        }
    }

    /// Stores a reliable message for `alias` and pushes it to every online
    /// session of the alias. Returns its sequence number.
    pub fn push(&self, alias: &str, payload: impl Into<Bytes>) -> u64 {
        let seq = {
            let mut state = self.lock();
            let log = state.log.entry(alias.to_owned()).or_default();
            let seq = log.last().map_or(1, |(s, _)| s + 1);
            log.push((seq, payload.into()));
            let conns: Vec<u64> = state.conns.keys().copied().collect();
            for conn in conns {
                state.pump(conn);
            }
            seq
        };
        self.changed();
        seq
    }

    /// Sends a transient message to every online session of `alias`;
    /// returns how many got it.
    pub fn push_transient(&self, alias: &str, payload: impl Into<Bytes>) -> usize {
        let payload = payload.into();
        let state = self.lock();
        let mut sent = 0;
        for conn in state.conns.values() {
            for (stream, session) in &conn.streams {
                if session.alias == alias
                    && conn
                        .handle
                        .push_transient(*stream, Push::new(payload.clone()))
                        .is_ok()
                {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// What the backend received from `alias`, deduplicated, in arrival
    /// order (payloads as text).
    pub fn uplinks(&self, alias: &str) -> Vec<String> {
        self.lock()
            .backend
            .get(alias)
            .map(|v| {
                v.iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Uplink events the server machines reported (duplicates included).
    pub fn uplink_events(&self) -> u64 {
        self.lock().uplink_events
    }

    /// Uplink events flagged `first_attempt` whose key this gateway had
    /// already recorded for the alias (a client bug: always 0 for ours).
    pub fn first_attempt_repeats(&self) -> u64 {
        self.lock().first_attempt_repeats
    }

    /// Every login request so far.
    pub fn logins(&self) -> Vec<LoginRecord> {
        self.lock().logins.clone()
    }

    /// Highest downlink sequence acked for `alias`.
    pub fn acked(&self, alias: &str) -> u64 {
        self.lock().acked.get(alias).copied().unwrap_or(0)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Connections accepted since the start.
    pub fn connections_made(&self) -> u64 {
        self.lock().connections_made
    }

    /// Connection tokens of the connections where `alias` is logged in.
    pub fn tokens_of(&self, alias: &str) -> Vec<String> {
        self.lock()
            .conns
            .values()
            .filter(|c| c.streams.values().any(|s| s.alias == alias))
            .map(|c| c.token.clone())
            .collect()
    }

    /// Device ids of the open connections.
    pub fn devices(&self) -> Vec<String> {
        self.lock()
            .conns
            .values()
            .map(|c| c.device_id.clone())
            .collect()
    }

    /// Waits until `done` holds, re-checking after every gateway change, at
    /// most `limit`. Returns whether it held.
    pub async fn wait_until(&self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let mut changes = self.inner.changed.subscribe();
        let wait = async {
            loop {
                if done(self) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok() || done(self)
    }
}

/// A running test server. Dropping it kills it (like [`TestServer::kill`],
/// without waiting).
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    kill: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the server like a crash: the listener is closed and every
    /// connection dropped without a close frame. Returns once the listening
    /// socket is closed, so the port can be bound again.
    pub async fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! Shared by the end-to-end tests: the real `pike-server` binary started on
//! loopback with a config file in a temporary directory (addresses read from
//! its banner, killed when the guard drops), real `PikeClient`s over TCP,
//! TLS and QUIC, the HTTP API through reqwest, and tiny in-process webhook
//! backends that record what they receive.
//!
//! Nothing here sleeps to fix a race: every wait is bounded by [`LIMIT`] and
//! waits for an event, an answer or (for process start and stop only) a
//! condition polled at a short interval.
#![allow(dead_code, unreachable_pub)]

pub mod backend;
pub mod process;
pub mod receipt_backend;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pike_api::proto::tunnel::ClientHello;
pub use pike_api::proto::tunnel::ErrorCode;
use pike_api::tntunnel::ClientSecurity;
use pike_api::tntunnel::tls::{Fingerprint, TlsClientConfig};
use pike_api::tunnelkit::{
    Dialer, DialerConfig, QuicConfig, QuicTransport, TcpConfig, TcpTransport,
};
pub use pike_api::{
    BoxConnector, ChannelProxy, ClientConfig, ClientEvent, ClientOptions, ClientState,
    DisconnectReason, Message, PikeClient, Sending, StopReason, TunnelConnector,
};
use pike_server::config::{App, Biz, Config};
use pike_server::token::{Claims, mint};
use serde_json::Value;

pub use backend::Backends;
pub use process::Server;
pub use receipt_backend::ReceiptBackend;

/// Bound on every single wait (a hang detector; nothing sleeps for it).
pub const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `future` for at most [`LIMIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    within_for(LIMIT, what, future).await
}

/// Awaits `future` for at most `limit`.
pub async fn within_for<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
}

/// Installs the process-wide rustls provider (ring) once: reqwest and the
/// TLS/QUIC connectors need one.
pub fn crypto_init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Unix seconds now.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------
// Configuration

/// One app of the test configuration: id, API key and token secret derived
/// from the id.
pub fn app(id: &str, biz: Vec<Biz>) -> App {
    App {
        id: id.to_owned(),
        api_key: api_key(id),
        token_secret: token_secret(id),
        biz,
        require_device_claim: false,
        allowed_origins: Vec::new(),
    }
}

/// A business without backends.
pub fn biz(id: &str) -> Biz {
    Biz {
        id: id.to_owned(),
        uplink_webhooks: Vec::new(),
        auth_webhook: None,
        webhook_timeout_ms: 5_000,
        uplink_batch_max: 1,
        uplink_batch_concurrency: 4,
        receipt_webhook: None,
        receipts_default: false,
    }
}

/// A business whose uplink goes to `webhooks`.
pub fn biz_with_webhooks(id: &str, webhooks: Vec<String>, timeout_ms: u64) -> Biz {
    Biz {
        uplink_webhooks: webhooks,
        webhook_timeout_ms: timeout_ms,
        ..biz(id)
    }
}

/// The API key of test app `app`.
pub fn api_key(app: &str) -> String {
    format!("pk_{app}_0123456789abcdef")
}

/// The token secret of test app `app`.
pub fn token_secret(app: &str) -> String {
    format!("secret-{app}-0123456789abcdef")
}

/// A configuration serving `apps` with every listener on `127.0.0.1:0`
/// (the data dir is filled in by [`Server::start`]).
pub fn config(apps: Vec<App>) -> Config {
    let mut config = Config {
        apps,
        ..Config::default()
    };
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    config.listen.tcp = Some(any);
    config.listen.tls = Some(any);
    config.listen.quic = Some(any);
    config.listen.http = Some(any);
    config
}

/// A valid credential (one hour) for `alias` of `biz` in `app`, signed with
/// the app's secret.
pub fn token(app: &str, biz: &str, alias: &str) -> String {
    mint(
        &Claims::new(app, biz, alias, unix_secs(), 3_600),
        token_secret(app).as_bytes(),
    )
}

// ---------------------------------------------------------------------------
// Clients

/// How a client reaches the gateway.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Wire {
    Tcp,
    Tls,
    Quic,
}

/// Channel settings for tests: quick reconnects (10 ms .. 200 ms backoff,
/// 50 ms spread) so a restarted server is found again at once.
pub fn fast_reconnect() -> ClientConfig {
    let mut config = ClientConfig::default();
    config
        .backoff(Duration::from_millis(10), Duration::from_millis(200), 0.5)
        .expect("backoff")
        .reconnect_spread(Duration::from_millis(50))
        .expect("spread");
    config
}

/// A connector of `app`/`device` to `addr` over `wire`; TLS and QUIC pin
/// `fingerprint` (the one the server printed).
pub fn connector(
    wire: Wire,
    addr: SocketAddr,
    fingerprint: Fingerprint,
    app: &str,
    device: &str,
) -> BoxConnector {
    crypto_init();
    let hello = ClientHello {
        app_id: app.to_owned(),
        device_id: device.to_owned(),
        ..ClientHello::default()
    };
    let pinned = || TlsClientConfig::pinned([fingerprint]).expect("pinned TLS config");
    match wire {
        Wire::Tcp | Wire::Tls => {
            let transport = TcpTransport::new(TcpConfig::default()).expect("tcp transport");
            let dialer = Dialer::new(transport, DialerConfig::default()).expect("dialer");
            let connector = TunnelConnector::new(dialer, vec![addr], hello);
            if wire == Wire::Tls {
                BoxConnector::new(connector.security(ClientSecurity::Tls(pinned()), "localhost"))
            } else {
                BoxConnector::new(connector)
            }
        }
        Wire::Quic => {
            let transport = QuicTransport::new(
                pinned().rustls_config(),
                "localhost",
                &QuicConfig::default(),
            )
            .expect("quic transport");
            let dialer = Dialer::new(transport, DialerConfig::default()).expect("dialer");
            BoxConnector::new(TunnelConnector::new(dialer, vec![addr], hello))
        }
    }
}

/// The client's next event (at most [`LIMIT`] away).
pub async fn next(client: &PikeClient) -> ClientEvent {
    within("the client's next event", client.next_event())
        .await
        .expect("the client's task is alive")
}

/// Skips events until one matches; returns it and the skipped ones.
pub async fn until(
    client: &PikeClient,
    pred: impl Fn(&ClientEvent) -> bool,
) -> (ClientEvent, Vec<ClientEvent>) {
    let mut skipped = Vec::new();
    loop {
        let event = next(client).await;
        if pred(&event) {
            return (event, skipped);
        }
        skipped.push(event);
    }
}

/// What a started client reported on its way to `Running`.
#[derive(Clone, Debug)]
pub struct Started {
    /// The route id of the login.
    pub route_id: String,
    /// The token of the connection it logged in on, if the client dialed
    /// it (a login on a channel that was up already sees no `Connected`).
    pub connection: Option<String>,
}

impl Started {
    /// The connection token; the client must have dialed.
    pub fn connection_token(&self) -> &str {
        self.connection
            .as_deref()
            .expect("a Connected event before Running")
    }
}

/// Starts `client` and waits for `Running`: only `OnStart` and connectivity
/// may come before it.
pub async fn start(client: &PikeClient) -> Started {
    client.start();
    let (event, before) = until(client, |e| {
        matches!(e, ClientEvent::Running { .. } | ClientEvent::OnStop { .. })
    })
    .await;
    let ClientEvent::Running { route_id } = event else {
        panic!("the login was refused: {event:?} after {before:?}");
    };
    assert!(
        before
            .iter()
            .all(|e| e.is_connectivity() || *e == ClientEvent::OnStart),
        "{before:?}"
    );
    let connection = before.iter().rev().find_map(|e| match e {
        ClientEvent::Connected { connection_token } => Some(connection_token.clone()),
        _ => None,
    });
    Started {
        route_id,
        connection,
    }
}

/// Starts `client` and expects its login to be refused: `OnStart`, then
/// `OnStop` with `AuthFailed`; returns the code.
pub async fn refused(client: &PikeClient) -> (ErrorCode, String) {
    client.start();
    let (event, before) = until(client, |e| {
        !e.is_connectivity() && *e != ClientEvent::OnStart
    })
    .await;
    assert!(before.contains(&ClientEvent::OnStart), "{before:?}");
    match event {
        ClientEvent::OnStop {
            reason: StopReason::AuthFailed { code, message },
        } => {
            assert_eq!(client.state(), ClientState::Stopped);
            (code, message)
        }
        other => panic!("expected OnStop(AuthFailed), got {other:?} after {before:?}"),
    }
}

/// The next downlink message; any lifecycle event other than `OnReceive`
/// and `OnSendSuccess` fails the test (connectivity events are skipped).
pub async fn next_message(client: &PikeClient) -> Message {
    loop {
        match next(client).await {
            ClientEvent::OnReceive(message) => return message,
            ClientEvent::OnSendSuccess { .. } => {}
            event if event.is_connectivity() => {}
            other => panic!("unexpected event {other:?} while waiting for a message"),
        }
    }
}

/// The payload as text.
pub fn text(message: &Message) -> String {
    String::from_utf8_lossy(&message.payload).into_owned()
}

// ---------------------------------------------------------------------------
// HTTP API

/// The HTTP API of one app on a running server.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// An HTTP answer: status and JSON body (`Value::Null` if not JSON).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Api {
    /// The API at `http` with `key`, on a fresh connection pool.
    pub fn new(http: SocketAddr, key: &str) -> Self {
        crypto_init();
        Self {
            http: reqwest::Client::builder()
                .timeout(LIMIT)
                .build()
                .expect("http client"),
            base: format!("http://{http}"),
            key: key.to_owned(),
        }
    }

    /// `POST path` with a JSON body; transport errors are returned.
    pub async fn try_post(&self, path: &str, body: &Value) -> Result<Answer, reqwest::Error> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        answer(response).await
    }

    /// `POST path`; panics on transport errors.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.try_post(path, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `GET path` with the key.
    pub async fn get(&self, path: &str) -> Answer {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        answer(response)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A push that must succeed (200); returns the receipt.
    pub async fn push(&self, body: Value) -> Value {
        let answer = self.post("/v1/push", &body).await;
        assert_eq!(answer.status, 200, "push {body} answered {answer:?}");
        answer.body
    }

    /// A reliable push of `payload` to `alias` of `biz`; returns the receipt.
    pub async fn push_alias(&self, biz: &str, alias: &str, payload: &str) -> Value {
        self.push(serde_json::json!({"biz": biz, "alias": alias, "payload": payload}))
            .await
    }

    /// The trace of a connection: (signal, detail) oldest first, or the
    /// status when it is not 200.
    pub async fn trace(&self, token: &str) -> Result<Vec<(String, String)>, Answer> {
        let answer = self.get(&format!("/v1/connections/{token}/trace")).await;
        if answer.status != 200 {
            return Err(answer);
        }
        let events = answer.body["events"].as_array().expect("trace events");
        Ok(events
            .iter()
            .map(|e| {
                (
                    e["signal"].as_str().expect("signal").to_owned(),
                    e["detail"].as_str().expect("detail").to_owned(),
                )
            })
            .collect())
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> Metrics {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status().as_u16(), 200);
        Metrics::parse(&response.text().await.expect("metrics text"))
    }
}

async fn answer(response: reqwest::Response) -> Result<Answer, reqwest::Error> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok(Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

/// Samples of a Prometheus text exposition: (name, labels) -> value.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// Parses the text format (comments skipped).
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label pair");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            samples.push((name, labels, value));
        }
        Self { samples }
    }

    /// Sum of the samples named `name` whose labels include `labels`; 0 if
    /// there is none (a counter not incremented yet is not exported).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

/// The newest lines of a child's output, for failure messages.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    const KEEP: usize = 200;

    pub fn push(&mut self, line: String) {
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub fn dump(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Polls `check` every 20 ms until it holds (at most [`LIMIT`]).
pub async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if check().await {
                return;
            }
        }
    })
    .await;
}

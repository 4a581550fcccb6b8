//! Shared by the HTTP API tests: a real `Gateway` on 127.0.0.1 (in-memory
//! store unless a test picks another), the router served by
//! `pike_server::http::serve` as the binary serves it, real Pike clients
//! (the pike-channel driver over TCP) for the online cases, requests with
//! reqwest.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use pike_api::server::{Gateway, GatewayBuilder};
use pike_channel::proto::tunnel::{ClientHello, ErrorCode};
use pike_channel::{
    ClientConfig, ClientHandle, Delivery, DisconnectReason, DriverConfig, Event, EventReceiver,
    LoginParams, StreamId, TunnelConnector, spawn_client,
};
use pike_server::apps::AppDirectory;
use pike_server::config::{App, Config};
use pike_server::http::{HttpState, ServeConfig, router, serve};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};

pub const DEMO_KEY: &str = "pk_demo_0123456789abcdef";
pub const DEMO_SECRET: &str = "demo-secret-0123456789abcdef";
pub const OTHER_KEY: &str = "pk_other_0123456789abcdef";
/// The web origins of the app `demo` (`allowed_origins`).
pub const DEMO_ORIGINS: &[&str] = &["https://shop.example", "https://*.demo.example"];
/// The web origins of the app `other`.
pub const OTHER_ORIGINS: &[&str] = &["https://other.example"];

/// Longest wait for anything in these tests (a bound, not a sleep).
pub const PATIENCE: Duration = Duration::from_secs(10);

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The process-wide Prometheus recorder, installed once with the binary's
/// settings (histograms with buckets). The gateway takes a few counter
/// handles when it is built: a test that reads them calls this first.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            pike_server::metric_families::recorder_builder()
                .expect("the binary's recorder settings")
                .install_recorder()
                .expect("install the recorder")
        })
        .clone()
}

pub fn apps() -> AppDirectory {
    let app = |id: &str, key: &str, secret: &str, origins: &[&str]| App {
        id: id.into(),
        api_key: key.into(),
        token_secret: secret.into(),
        biz: Vec::new(),
        require_device_claim: false,
        allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
    };
    let config = Config {
        apps: vec![
            app("demo", DEMO_KEY, DEMO_SECRET, DEMO_ORIGINS),
            app(
                "other",
                OTHER_KEY,
                "other-secret-0123456789abcdef",
                OTHER_ORIGINS,
            ),
        ],
        ..Config::default()
    };
    AppDirectory::from_config(&config, None)
}

/// A gateway and its HTTP API on loopback.
pub struct Harness {
    pub base: String,
    pub http: reqwest::Client,
    pub gateway: SocketAddr,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub serving: Option<JoinHandle<()>>,
}

/// An answer: status, headers and the body as JSON (every answer of the
/// API but `/metrics` is JSON, errors included).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_else(|| {
            panic!("no error.code in {}", self.body);
        })
    }

    pub fn error_message(&self) -> &str {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message in {}", self.body))
    }

    /// The `error.field` of a 400, if any.
    pub fn error_field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.error_code(), code, "{self:?}");
        assert!(!self.error_message().is_empty(), "{self:?}");
        assert_eq!(
            self.headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{self:?}"
        );
    }

    #[track_caller]
    pub fn receipt(&self) -> (u64, u64, u64) {
        assert_eq!(self.status, 200, "{self:?}");
        let id = self.body["message_id"]
            .as_str()
            .unwrap_or_else(|| panic!("message_id is not a string: {}", self.body));
        assert!(id.parse::<u64>().is_ok(), "message_id {id:?} is not a u64");
        let n = |field: &str| {
            self.body[field]
                .as_u64()
                .unwrap_or_else(|| panic!("{field} missing in {}", self.body))
        };
        (n("stored"), n("online"), n("dropped"))
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|builder| builder).await
    }

    pub async fn start_with(customize: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> Self {
        Self::start_custom(customize, |state| state, ServeConfig::default()).await
    }

    /// A harness whose gateway, HTTP state and HTTP server limits the test
    /// picks.
    pub async fn start_custom(
        customize: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
        http: impl FnOnce(HttpState) -> HttpState,
        serve_config: ServeConfig,
    ) -> Self {
        static CRYPTO: Once = Once::new();
        CRYPTO.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let builder = Gateway::builder()
            .tcp("127.0.0.1:0".parse().expect("addr"))
            .apps(["demo".to_owned(), "other".to_owned()]);
        let gateway = customize(builder).bind().await.expect("bind the gateway");
        let tcp = gateway
            .local_addrs()
            .into_iter()
            .find_map(|(transport, addr)| (transport == "tcp").then_some(addr))
            .expect("a tcp listener");
        let state = http(HttpState::new(
            gateway.push_handle(),
            apps(),
            Some(metrics_handle()),
        ));
        let (shutdown, signal) = oneshot::channel::<()>();
        let serving = tokio::spawn(gateway.serve_with_shutdown(async move {
            let _ = signal.await;
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind http");
        let base = format!("http://{}", listener.local_addr().expect("http addr"));
        tokio::spawn(serve(
            listener,
            router(state),
            serve_config,
            std::future::pending(),
        ));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        Self {
            base,
            http,
            gateway: tcp,
            shutdown: Some(shutdown),
            serving: Some(serving),
        }
    }

    /// Shuts the gateway down and waits until it has stopped serving.
    pub async fn shut_down_gateway(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(serving) = self.serving.take() {
            within("gateway shutdown", serving)
                .await
                .expect("gateway task");
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = within("http request", request.send())
            .await
            .expect("http request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("response body");
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "status {status}: body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.send(self.http.get(self.url(path)).bearer_auth(key))
            .await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Reply {
        self.post_raw(path, key, "application/json", body.to_string())
            .await
    }

    pub async fn post_raw(&self, path: &str, key: &str, content_type: &str, body: String) -> Reply {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(key)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body),
        )
        .await
    }

    pub async fn push(&self, body: Value) -> Reply {
        self.post("/v1/push", DEMO_KEY, &body).await
    }

    pub async fn text(&self, path: &str) -> (u16, Option<String>, String) {
        let response = within("http request", self.http.get(self.url(path)).send())
            .await
            .expect("http request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, content_type, response.text().await.expect("body"))
    }

    /// A Pike client of `app` on `device`, logged in to `biz` as `alias`.
    pub async fn client(&self, app: &str, device: &str, biz: &str, alias: &str) -> TestClient {
        let hello = ClientHello {
            app_id: app.into(),
            device_id: device.into(),
            ..ClientHello::default()
        };
        let transport = TcpTransport::new(TcpConfig::default()).expect("tcp transport");
        let dialer = Dialer::new(transport, DialerConfig::default()).expect("dialer");
        let connector = TunnelConnector::new(dialer, vec![self.gateway], hello);
        self.client_over(connector, biz, alias).await
    }

    /// A client logged in to `biz` as `alias` through `connector`.
    pub async fn client_over<C: pike_channel::Connector>(
        &self,
        connector: C,
        biz: &str,
        alias: &str,
    ) -> TestClient {
        let handle = spawn_client(
            Arc::new(ClientConfig::default()),
            connector,
            &DriverConfig::default(),
        );
        let (stream, mut events) = handle.login(LoginParams::new(biz, alias, "credential"));
        handle.start();
        let mut token = None;
        within("login", async {
            loop {
                match events.recv().await.expect("client events") {
                    Event::Connected { connection_token } => token = Some(connection_token),
                    Event::LoginOk { .. } => break,
                    Event::LoginFailed { code, message, .. } => {
                        panic!("login failed: {code:?} {message}")
                    }
                    _ => {}
                }
            }
        })
        .await;
        TestClient {
            handle,
            stream,
            events,
            token: token.expect("connected before the login"),
        }
    }
}

/// A connected, logged-in Pike client.
pub struct TestClient {
    pub handle: ClientHandle,
    pub stream: StreamId,
    pub events: EventReceiver,
    /// The connection token (key of its trace).
    pub token: String,
}

impl TestClient {
    pub async fn next_delivery(&mut self) -> Delivery {
        within("a downlink message", async {
            loop {
                if let Event::Received(delivery) = self.events.recv().await.expect("client events")
                {
                    return delivery;
                }
            }
        })
        .await
    }

    /// Waits until the server closes the connection with a close frame;
    /// returns its code and message.
    pub async fn closed_by_server(&mut self) -> (ErrorCode, String) {
        within("a close from the server", async {
            loop {
                if let Event::Disconnected {
                    reason: DisconnectReason::ClosedByServer { code, message },
                } = self.events.recv().await.expect("client events")
                {
                    return (code, message);
                }
            }
        })
        .await
    }

    /// Waits until the client is connected and logged in again; returns the
    /// new connection token.
    pub async fn logged_in_again(&mut self) -> String {
        within("a new login", async {
            let mut token = None;
            loop {
                match self.events.recv().await.expect("client events") {
                    Event::Connected { connection_token } => token = Some(connection_token),
                    Event::LoginOk { .. } => {
                        if let Some(token) = token {
                            return token;
                        }
                    }
                    _ => {}
                }
            }
        })
        .await
    }

    pub async fn bind_tags(&mut self, tags: &[&str]) {
        let tags = tags.iter().map(|t| (*t).to_owned()).collect();
        self.handle
            .update_tags(self.stream, tags, Vec::new())
            .expect("update tags");
        within("tags result", async {
            loop {
                if let Event::TagsResult { code, message, .. } =
                    self.events.recv().await.expect("client events")
                {
                    assert_eq!(code, ErrorCode::Unspecified, "tags refused: {message}");
                    return;
                }
            }
        })
        .await;
    }
}

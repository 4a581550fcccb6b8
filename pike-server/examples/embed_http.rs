//! Embed the reference gateway's parts in your own server and add an HTTP
//! route of your own next to the standard API (`/v1/...`, `/healthz`,
//! `/metrics`). Runs on loopback, calls three routes, and exits.
//!
//! ```sh
//! cargo run -p pike-server --example embed_http
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use pike_api::server::{Gateway, PushHandle};
use pike_server::apps::AppDirectory;
use pike_server::auth::TokenAuthenticator;
use pike_server::config::{App, Config};
use pike_server::http::{HttpState, ServeConfig, router, serve};
use pike_server::store::{RedbStore, StoreConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

type Error = Box<dyn std::error::Error + Send + Sync>;

const API_KEY: &str = "pk_example_0123456789";

/// The route of our own: a summary for an ops dashboard.
async fn summary(State(push): State<PushHandle>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "connections": push.connection_count(),
        "chat_u42_online": push.presence("demo", "chat", "u42").len(),
    }))
}

/// One HTTP/1.1 request on a fresh connection; the status and the body.
async fn request(addr: SocketAddr, head: &str, body: &str) -> Result<(u16, String), Error> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let auth = format!("Authorization: Bearer {API_KEY}");
    let text = format!(
        "{head} HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(text.as_bytes()).await?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await?;
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // The process's TLS provider, as the binary installs it (ring only).
    let _ = rustls::crypto::ring::default_provider().install_default();

    // One app, configured in code instead of pike.toml.
    let app = App {
        id: "demo".into(),
        api_key: API_KEY.into(),
        token_secret: "example-secret-0123456789".into(),
        biz: Vec::new(),
        require_device_claim: false,
        allowed_origins: Vec::new(),
    };
    let config = Config {
        apps: vec![app],
        ..Config::default()
    };
    let apps = Arc::new(AppDirectory::from_config(&config, None));

    // The gateway: the reference store and credential check.
    let data = tempfile::tempdir()?;
    let store = RedbStore::open(data.path().join("pike.redb"), StoreConfig::default())?;
    let http_client = reqwest::Client::builder().no_proxy().build()?;
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse()?)
        .apps(apps.ids().map(str::to_owned))
        .authenticator(TokenAuthenticator::new(apps.clone(), http_client))
        .store(Arc::new(store))
        .bind()
        .await?;
    println!("devices connect to {}", gateway.local_addrs()[0].1);
    let push = gateway.push_handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.serve_with_shutdown(async move {
        let _ = stopped.await;
    }));

    // The HTTP API with one more route, served with the API's limits.
    let ours = Router::new()
        .route("/ops/summary", get(summary))
        .with_state(push.clone());
    let api = router(HttpState::new(push, (*apps).clone(), None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = listener.local_addr()?;
    let (stop_http, http_stopped) = oneshot::channel::<()>();
    let http_task = tokio::spawn(serve(
        listener,
        ours.merge(api),
        ServeConfig::default(),
        async move {
            let _ = http_stopped.await;
        },
    ));
    println!("HTTP on http://{http}");

    let (status, body) = request(http, "GET /healthz", "").await?;
    println!("GET /healthz -> {status} {body}");
    assert_eq!(status, 200);
    let push_body = r#"{"biz":"chat","alias":"u42","payload":"hello"}"#;
    let (status, body) = request(http, "POST /v1/push", push_body).await?;
    println!("POST /v1/push -> {status} {body}");
    assert_eq!(status, 200);
    let (status, body) = request(http, "GET /ops/summary", "").await?;
    println!("GET /ops/summary -> {status} {body}");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"chat_u42_online":0,"connections":0}"#)
    );

    let _ = (stop_http.send(()), stop.send(()));
    http_task.await?;
    serving.await?;
    Ok(())
}

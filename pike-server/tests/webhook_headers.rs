//! Uplink webhooks against real local HTTP backends: client-controlled
//! strings with control characters reach the backend percent-encoded (the
//! request always builds), and a request that does not build fails the
//! message without taking the backend out of rotation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use bytes::Bytes;
use pike_api::server::{UplinkHandler, UplinkRequest};
use pike_server::apps::AppDirectory;
use pike_server::config::{App, Biz, Config};
use pike_server::webhook::WebhookUplink;

const PATIENCE: Duration = Duration::from_secs(10);

/// A backend that records the headers and body of every request and
/// answers 200.
#[derive(Clone, Default)]
struct Backend {
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Backend {
    /// Serves on loopback; returns its uplink URL.
    async fn start(&self) -> String {
        let seen = self.seen.clone();
        let app = Router::new().route(
            "/pike/uplink",
            post(move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().expect("lock").push((headers, body));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let url = format!(
            "http://{}/pike/uplink",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Webhooks of app `demo`, biz `chat`, to `urls` (route `r<i>` is
/// `urls[i]`).
fn uplink(urls: Vec<String>) -> WebhookUplink {
    let config = Config {
        apps: vec![App {
            id: "demo".into(),
            api_key: "pk_demo_0123456789abcdef".into(),
            token_secret: "demo-secret-0123456789abcdef".into(),
            biz: vec![Biz {
                id: "chat".into(),
                uplink_webhooks: urls,
                auth_webhook: None,
                webhook_timeout_ms: 5_000,
                uplink_batch_max: 1,
                uplink_batch_concurrency: 4,
                receipt_webhook: None,
                receipts_default: false,
            }],
            require_device_claim: false,
            allowed_origins: Vec::new(),
        }],
        ..Config::default()
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    WebhookUplink::new(&AppDirectory::from_config(&config, None), client)
}

fn request(alias: &str, key: &str, device: &str) -> UplinkRequest {
    UplinkRequest {
        app: "demo".into(),
        biz: "chat".into(),
        alias: alias.into(),
        device_id: device.into(),
        connection_token: "conn-1".into(),
        route_id: "r0".into(),
        seq: 7,
        idempotency_key: key.into(),
        payload: Bytes::from_static(b"hello"),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// Control characters (and `%`, space, non-ASCII) in the alias, device id
/// and idempotency key reach the backend percent-encoded; the message is
/// delivered and the backend stays the login's route.
#[tokio::test]
async fn client_strings_with_control_characters_reach_the_backend_encoded() {
    let (first, second) = (Backend::default(), Backend::default());
    let uplink = uplink(vec![first.start().await, second.start().await]);

    let outcome = tokio::time::timeout(
        PATIENCE,
        uplink.deliver(request("u\n42", "key\r\n\u{1}é%", "d 1")),
    )
    .await
    .expect("the backend answers");
    assert!(outcome.is_ok(), "{outcome:?}");

    let requests = first.requests();
    assert_eq!(requests.len(), 1, "the backend got the message");
    let (headers, body) = &requests[0];
    assert_eq!(header(headers, "idempotency-key"), "key%0D%0A%01%C3%A9%25");
    assert_eq!(header(headers, "pike-alias"), "u%0A42");
    assert_eq!(header(headers, "pike-device"), "d%201");
    assert_eq!(header(headers, "pike-app"), "demo", "plain ids unchanged");
    assert_eq!(header(headers, "pike-seq"), "7");
    assert_eq!(&body[..], b"hello");
    assert!(second.requests().is_empty());

    // Still healthy: the login keeps its route.
    assert_eq!(
        uplink.route("demo", "chat", "r0", None).as_deref(),
        Some("r0")
    );
}

/// A request that cannot be built (here a webhook URL that is not a URL)
/// is the gateway's fault: the message fails without a retry elsewhere,
/// and the backend is not taken out of rotation.
#[tokio::test]
async fn a_request_that_does_not_build_is_not_a_backend_failure() {
    let good = Backend::default();
    let uplink = uplink(vec!["http://not a host/".into(), good.start().await]);

    let err = tokio::time::timeout(PATIENCE, uplink.deliver(request("u42", "k1", "d1")))
        .await
        .expect("no wait")
        .expect_err("the request does not build");
    assert!(!err.route_failed, "not the backend's failure: {err:?}");
    assert!(err.message.contains("could not build"), "{err:?}");
    assert!(good.requests().is_empty(), "not retried elsewhere");
    assert_eq!(
        uplink.route("demo", "chat", "r0", None).as_deref(),
        Some("r0"),
        "the route stays in rotation"
    );
}

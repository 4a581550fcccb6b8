//! Sends arbitrary requests to the real HTTP API router (the one the binary
//! serves) in front of a real in-memory gateway: a route picked from the
//! API's (with an arbitrary path segment or query where the route has
//! one), a method, and an arbitrary body.
//!
//! Nothing may panic, no answer may be a 500, and every error answer is
//! the documented JSON error body (`{"error": {"code", "message"}}`).
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use pike_api::server::Gateway;
use pike_server::apps::AppDirectory;
use pike_server::config::{App, Config};
use pike_server::http::{HttpState, router};
use tower::ServiceExt;

const KEY: &str = "pk_fuzz_0123456789abcdef";

#[derive(Arbitrary, Debug)]
struct Input {
    route: u8,
    method: u8,
    segment: String,
    query: String,
    authorized: bool,
    body: Vec<u8>,
}

struct World {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let router = runtime.block_on(async {
            let gateway = Gateway::builder()
                .tcp("127.0.0.1:0".parse().expect("an address"))
                .apps(["fuzz".to_owned()])
                .bind()
                .await
                .expect("a gateway on loopback");
            let config = Config {
                apps: vec![App {
                    id: "fuzz".into(),
                    api_key: KEY.into(),
                    token_secret: "fuzz-secret-0123456789abcdef".into(),
                    biz: Vec::new(),
                    require_device_claim: false,
                    allowed_origins: Vec::new(),
                }],
                ..Config::default()
            };
            let state = HttpState::new(
                gateway.push_handle(),
                AppDirectory::from_config(&config, None),
                None,
            );
            // Served for the whole run (on this thread, while a request runs).
            tokio::spawn(gateway.serve_with_shutdown(std::future::pending::<()>()));
            router(state)
        });
        World { runtime, router }
    })
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let world = world();
    let segment = percent_encode(&input.segment);
    let query = percent_encode(&input.query);
    let uri = match input.route % 12 {
        0 => "/v1/push".to_owned(),
        1 => "/v1/push/batch".to_owned(),
        2 => format!("/v1/presence?biz={segment}&alias={query}"),
        3 => format!("/v1/connections?limit={segment}&cursor={query}"),
        4 => format!("/v1/connections/{segment}/trace"),
        5 => "/v1/tokens".to_owned(),
        6 => "/v1/disconnect".to_owned(),
        7 => "/v1/rooms".to_owned(),
        8 => format!("/v1/rooms/{segment}"),
        9 => format!("/v1/rooms/{segment}/publish"),
        10 => "/healthz".to_owned(),
        _ => format!("/{segment}?{query}"),
    };
    let method = match input.method % 4 {
        0 => Method::POST,
        1 => Method::GET,
        2 => Method::PUT,
        _ => Method::DELETE,
    };
    let mut request = Request::builder()
        .method(method)
        .uri(&uri)
        .header(header::CONTENT_TYPE, "application/json");
    if input.authorized {
        request = request.header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    }
    let Ok(request) = request.body(Body::from(input.body)) else {
        return;
    };
    let (status, body) = world.runtime.block_on(async {
        let response = world
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .expect("a body");
        (status, body)
    });
    assert_ne!(
        status.as_u16(),
        500,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    if status.is_client_error() || status.is_server_error() {
        let json: serde_json::Value = serde_json::from_slice(&body).expect("error bodies are JSON");
        assert!(json["error"]["code"].is_string(), "{uri}: {json}");
        assert!(json["error"]["message"].is_string(), "{uri}: {json}");
    }
});

//! The gateway's HTTP API: JSON under `/v1`, authenticated by a per-app
//! bearer API key (the key names the app, so an app only ever sees its own
//! data), plus `/healthz` and `/metrics` without authentication.
//!
//! | Method and path | What |
//! |---|---|
//! | `POST /v1/push` | push to an alias, aliases, a tag, a device or the whole app |
//! | `POST /v1/push/batch` | up to 1,000 pushes in one request, done in order |
//! | `GET /v1/presence?biz=&alias=` | the connections logged in as an alias |
//! | `GET /v1/connections?limit=&cursor=` | the app's connections, a page at a time |
//! | `GET /v1/connections/{token}/trace` | the signals of one connection |
//! | `POST /v1/rooms/{room}/publish` | publish into a live room (droppable or reliable) |
//! | `GET /v1/rooms` | the app's live rooms with their members and counters |
//! | `GET /v1/rooms/{room}` | one live room |
//! | `POST /v1/tokens` | mint a client credential |
//! | `POST /v1/disconnect` | close the connections of a device, an alias, or one connection |
//! | `GET /v1/stats` | connections per transport, message rates, SLA indicators, recent history |
//! | `GET /dashboard/` | the dashboard page and its files (no key: the page signs in) |
//! | `GET /healthz` | liveness and connection count |
//! | `GET /metrics` | Prometheus text format |
//!
//! Every 4xx and 5xx answer has the body
//! `{"error": {"code": "...", "message": "..."}}` ([`ErrorCode`]), plus
//! `"field"` naming the field at fault of a `400 invalid_request`. The
//! reference, with examples, is `docs/http-api.md`; the OpenAPI 3.1
//! description is `docs/openapi.yaml`.
//!
//! [`serve`] runs the router with the limits of a public port (open
//! connections, header-read and write timeouts); the router itself limits
//! requests in flight, their duration and body size ([`HttpState`]).
//!
//! ```no_run
//! # async fn example(push: pike_api::server::PushHandle, apps: pike_server::apps::AppDirectory) {
//! use pike_server::http::{HttpState, ServeConfig, router, serve};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9380").await.unwrap();
//! let router = router(HttpState::new(push, apps, None));
//! serve(listener, router, ServeConfig::default(), std::future::pending()).await;
//! # }
//! ```

mod dashboard;
mod device_socket;
mod disconnect;
mod error;
mod extract;
mod guard;
mod hello_gate;
mod messages;
pub mod model;
mod ops;
mod presence;
mod push;
mod push_socket;
mod rooms;
mod serve;
mod state;
mod stats;
mod tokens;
mod trace;
mod validate;
mod ws_stream;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use dashboard::DASHBOARD_CSP;
pub use device_socket::DEVICE_SUBPROTOCOL;
pub use disconnect::MAX_DISCONNECT_REASON;
pub use error::{ApiError, ErrorCode};
pub use presence::{DEFAULT_CONNECTIONS_LIMIT, MAX_CONNECTIONS_LIMIT};
pub use push::{BATCH_BODY_LIMIT_FACTOR, MAX_BATCH_PUSHES, batch_body_limit};
pub use push_socket::{IDLE_TIMEOUT, MAX_QUEUED_BATCHES, PING_EVERY, PUSH_SUBPROTOCOL};
pub use serve::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_HTTP_CONNECTIONS, DEFAULT_WRITE_TIMEOUT, ServeConfig,
    serve,
};
pub use state::{
    DEFAULT_BODY_LIMIT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_PUSH_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT, HttpState,
};
pub use tokens::{DEFAULT_TOKEN_TTL_SECS, MAX_TOKEN_TTL_SECS};
pub use validate::{MAX_ALIAS_LEN, MAX_BIZ_LEN, MAX_ID_LEN, MAX_TTL_SECS};

/// The HTTP API's router, ready for `axum::serve`.
pub fn router(state: HttpState) -> Router {
    let body_limit = state.body_limit();
    Router::new()
        .route("/v1/push", post(push::push))
        // Its own, larger body limit: the route's layer overrides the
        // router's.
        .route(
            "/v1/push/batch",
            post(push::push_batch).layer(DefaultBodyLimit::max(batch_body_limit(body_limit))),
        )
        .route("/v1/push/ws", get(push_socket::push_socket))
        .route("/v1/ws", get(device_socket::device_socket))
        .route("/v1/presence", get(presence::presence))
        .route("/v1/connections", get(presence::connections))
        .route("/v1/connections/{token}/trace", get(trace::trace))
        .route("/v1/tokens", post(tokens::mint_token))
        .route("/v1/disconnect", post(disconnect::disconnect))
        .route("/v1/rooms", get(rooms::list))
        .route("/v1/rooms/{room}", get(rooms::get))
        .route("/v1/rooms/{room}/publish", post(rooms::publish))
        .route("/v1/stats", get(stats::stats))
        .route("/dashboard", get(dashboard::redirect))
        .route("/dashboard/", get(dashboard::index))
        .route("/dashboard/{file}", get(dashboard::file))
        .route("/v1/messages/{message_id}", get(messages::status))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .method_not_allowed_fallback(ops::method_not_allowed)
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn(ops::track))
        .with_state(state)
}

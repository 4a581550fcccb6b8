//! `/healthz`, `/metrics`, the JSON fallbacks (404, 405) and request
//! metrics.

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pike_api::server::engine::EngineHealth;

use super::error::{ApiError, ErrorCode};
use super::model::HealthResponse;
use super::state::HttpState;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// 200 `ok` while the engine serves; 503 `unavailable` with the reason
/// while a cluster node cannot reach NATS (the embedded engine is always
/// ready). The connection count is this gateway's.
pub(crate) async fn healthz(State(state): State<HttpState>) -> Response {
    let push = state.push_handle();
    let connections = push.connection_count();
    match push.engine_health() {
        EngineHealth::Ready => Json(HealthResponse {
            status: "ok".to_owned(),
            connections,
            reason: None,
        })
        .into_response(),
        EngineHealth::Unavailable(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthResponse {
                status: "unavailable".to_owned(),
                connections,
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

pub(crate) async fn metrics(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let Some(handle) = state.metrics() else {
        return Err(ApiError::not_found(
            "metrics are not enabled on this gateway (no Prometheus recorder)",
        ));
    };
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    metrics::gauge!(crate::metric_families::RUNTIME_ALIVE_TASKS).set(tasks as f64);
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_TEXT),
    );
    Ok(response)
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see docs/http-api.md")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take this method (see the Allow header)",
    )
}

/// Counts requests (`pike_http_requests_total{route, status}`) and times
/// them (`pike_http_request_duration_seconds{route}`); `route` is the
/// route's pattern, or `unmatched`, so labels stay few.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(crate::metric_families::HTTP_REQUEST_DURATION_SECONDS, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(crate::metric_families::HTTP_REQUESTS_TOTAL, "route" => route, "status" => status)
        .increment(1);
    response
}

//! The per-request limits: requests in flight and the request timeout.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};
use super::state::HttpState;

/// Refuses a request beyond [`HttpState::max_in_flight`] with
/// `503 overloaded`, and answers `503 timeout` to one that takes longer
/// than [`HttpState::request_timeout`] (reading its body included). A push
/// cut short by the timeout may still be stored: its commit and delivery
/// run on without the request (see `PushHandle::push`).
pub(crate) async fn guard(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_slot) = state.in_flight().try_acquire() else {
        metrics::counter!(crate::metric_families::HTTP_REFUSED_TOTAL, "reason" => "in_flight")
            .increment(1);
        return ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "the gateway is handling {} requests, its limit; retry later",
                state.max_in_flight()
            ),
        )
        .into_response();
    };
    let timeout = state.request_timeout();
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!(crate::metric_families::HTTP_REFUSED_TOTAL, "reason" => "timeout")
                .increment(1);
            ApiError::new(
                ErrorCode::Timeout,
                format!(
                    "the request took longer than {} ms; a push may still have been stored, and is then delivered",
                    timeout.as_millis()
                ),
            )
            .into_response()
        }
    }
}

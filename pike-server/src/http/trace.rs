//! `GET /v1/connections/{token}/trace`.

use axum::Json;
use axum::extract::State;

use super::error::ApiError;
use super::extract::{ApiPath, Caller};
use super::model::{TraceEventBody, TraceResponse};
use super::state::HttpState;

pub(crate) async fn trace(
    State(state): State<HttpState>,
    caller: Caller,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<TraceResponse>, ApiError> {
    // A token of another app is "not found" too: an app learns nothing of
    // another app's connections.
    let view = state
        .push_handle()
        .cluster_trace(&caller.app, &token)
        .await?;
    let (nodes_answered, nodes_expected) = (view.nodes_answered, view.nodes_expected);
    let Some(events) = view.value else {
        return Err(ApiError::not_found(
            "no connection with this token (open or recently closed) in this app",
        ));
    };
    Ok(Json(TraceResponse {
        token,
        events: events
            .into_iter()
            .map(|e| TraceEventBody {
                at_ms: e.at_ms,
                signal: e.signal.to_owned(),
                detail: e.detail,
            })
            .collect(),
        nodes_answered,
        nodes_expected,
    }))
}

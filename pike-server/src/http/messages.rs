//! `GET /v1/messages/{message_id}`: a receipt message's status, merged from
//! the records of every gateway node that answered (`docs/receipts.md`,
//! "The status query"; one node: its own).

use axum::Json;
use axum::extract::State;
use pike_api::server::MessageStatus;

use super::error::ApiError;
use super::extract::{ApiPath, Caller};
use super::model::{DeviceStatusBody, MessageStatusResponse};
use super::state::HttpState;

pub(crate) async fn status(
    State(state): State<HttpState>,
    caller: Caller,
    ApiPath(message_id): ApiPath<String>,
) -> Result<Json<MessageStatusResponse>, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "no status for this message id in this app (it did not ask for receipts, is past its retention, or no gateway node that answered has a record of it)",
        )
    };
    let id: u64 = message_id.parse().map_err(|_| not_found())?;
    if state.receipts().is_none() {
        return Err(not_found());
    }
    // Every node (bounded by the engine's view window): the node that took
    // the push and those that served its devices each hold a record.
    let view = state
        .push_handle()
        .cluster_message_status(&caller.app, id)
        .await?;
    let partial = !view.complete();
    let record = view.value.ok_or_else(not_found)?;
    Ok(Json(body(&record, partial, crate::unix_ms())))
}

fn body(record: &MessageStatus, partial: bool, now_ms: u64) -> MessageStatusResponse {
    MessageStatusResponse {
        message_id: record.message_id.to_string(),
        biz: record.biz.clone(),
        reliable: record.reliable,
        stored: record.reliable && record.expires_at_ms > now_ms,
        created_at: record.created_at_ms,
        expires_at: record.expires_at_ms,
        expired: record.expired,
        pending: record.pending(),
        partial,
        devices: record
            .devices
            .iter()
            .map(|d| DeviceStatusBody {
                alias: d.alias.clone(),
                device: d.device.clone(),
                delivered_at: d.delivered_at,
                acked_at: d.acked_at,
                expired_at: d.expired_at,
                dropped_at: d.dropped_at,
            })
            .collect(),
    }
}

//! `GET /v1/presence` and `GET /v1/connections`.

use axum::Json;
use axum::extract::State;

use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::model::{
    Connection, ConnectionsQuery, ConnectionsResponse, PresenceQuery, PresenceResponse,
};
use super::state::HttpState;

/// Connections listed by default.
pub const DEFAULT_CONNECTIONS_LIMIT: usize = 100;
/// Most connections listed at once.
pub const MAX_CONNECTIONS_LIMIT: usize = 10_000;

pub(crate) async fn presence(
    State(state): State<HttpState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PresenceQuery>,
) -> Result<Json<PresenceResponse>, ApiError> {
    if query.biz.is_empty() || query.alias.is_empty() {
        return Err(ApiError::invalid("`biz` and `alias` must not be empty"));
    }
    let connections: Vec<Connection> = state
        .push_handle()
        .presence(&caller.app, &query.biz, &query.alias)
        .into_iter()
        .map(Connection::from)
        .collect();
    Ok(Json(PresenceResponse {
        online: !connections.is_empty(),
        connections,
    }))
}

pub(crate) async fn connections(
    State(state): State<HttpState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ConnectionsQuery>,
) -> Result<Json<ConnectionsResponse>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_CONNECTIONS_LIMIT);
    if !(1..=MAX_CONNECTIONS_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "`limit` must be between 1 and {MAX_CONNECTIONS_LIMIT}"
        )));
    }
    // The library lists and sorts every connection of the app before
    // truncating, so asking for all of them costs nothing more and gives
    // the total.
    let mut all = state.push_handle().connections(&caller.app, usize::MAX);
    let total = all.len();
    all.truncate(limit);
    Ok(Json(ConnectionsResponse {
        total,
        connections: all.into_iter().map(Connection::from).collect(),
    }))
}

//! `GET /v1/presence` and `GET /v1/connections`.

use axum::Json;
use axum::extract::State;

use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::model::{
    Connection, ConnectionsQuery, ConnectionsResponse, PresenceQuery, PresenceResponse,
};
use super::state::HttpState;
use super::validate;

/// Connections listed per page by default.
pub const DEFAULT_CONNECTIONS_LIMIT: usize = 100;
/// Most connections listed per page (a page is built under the registry's
/// lock: its size, not the number of connections, bounds the time held).
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000;

pub(crate) async fn presence(
    State(state): State<HttpState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PresenceQuery>,
) -> Result<Json<PresenceResponse>, ApiError> {
    validate::biz("biz", &query.biz)?;
    validate::alias("alias", &query.alias)?;
    let view = state
        .push_handle()
        .cluster_presence(&caller.app, &query.biz, &query.alias)
        .await?;
    let connections: Vec<Connection> = view.value.into_iter().map(Connection::from).collect();
    Ok(Json(PresenceResponse {
        online: !connections.is_empty(),
        connections,
        nodes_answered: view.nodes_answered,
        nodes_expected: view.nodes_expected,
    }))
}

pub(crate) async fn connections(
    State(state): State<HttpState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ConnectionsQuery>,
) -> Result<Json<ConnectionsResponse>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_CONNECTIONS_LIMIT);
    if !(1..=MAX_CONNECTIONS_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("`limit` must be between 1 and {MAX_CONNECTIONS_LIMIT}"),
        ));
    }
    let after = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(parse_cursor(cursor)?),
    };
    let view = state
        .push_handle()
        .cluster_connections_page(&caller.app, after, limit)
        .await?;
    let page = view.value;
    Ok(Json(ConnectionsResponse {
        total: page.total,
        connections: page.connections.into_iter().map(Connection::from).collect(),
        next_cursor: page.next.map(|next| next.to_string()),
        nodes_answered: view.nodes_answered,
        nodes_expected: view.nodes_expected,
    }))
}

/// Most digits of a cursor (`docs/openapi.yaml`: `^[0-9]{1,19}$`; a
/// cursor this API gives is a connection sequence number, far below
/// 10^19).
const MAX_CURSOR_DIGITS: usize = 19;

/// A `cursor`: 1 to [`MAX_CURSOR_DIGITS`] ASCII digits, nothing else (no
/// sign, no spaces), as the schema says.
fn parse_cursor(cursor: &str) -> Result<u64, ApiError> {
    let digits = !cursor.is_empty()
        && cursor.len() <= MAX_CURSOR_DIGITS
        && cursor.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| cursor.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::invalid_field(
                "cursor",
                "`cursor` is not a cursor this API gave (`next_cursor` of the previous page)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_one_to_nineteen_digits() {
        assert_eq!(parse_cursor("0").unwrap(), 0);
        assert_eq!(parse_cursor("1871").unwrap(), 1871);
        assert_eq!(
            parse_cursor("9999999999999999999").unwrap(),
            9_999_999_999_999_999_999
        );
        for bad in [
            "",
            "+5",
            "-5",
            " 5",
            "5 ",
            "5\n",
            "0x10",
            "10000000000000000000",
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad:?}");
        }
    }
}

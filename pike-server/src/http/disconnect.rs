//! `POST /v1/disconnect`: close the connections of a device, of an alias or
//! one connection.

use axum::Json;
use axum::extract::State;
use pike_api::server::DisconnectTarget;

use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::model::{DisconnectBody, DisconnectResponse};
use super::state::HttpState;
use super::validate;

/// Longest `reason` accepted, bytes (it travels in the close frame).
pub const MAX_DISCONNECT_REASON: usize = 256;

/// The close message when the request gives no `reason`.
const DEFAULT_REASON: &str = "disconnected by the app";

pub(crate) async fn disconnect(
    State(state): State<HttpState>,
    caller: Caller,
    ApiJson(body): ApiJson<DisconnectBody>,
) -> Result<Json<DisconnectResponse>, ApiError> {
    let (target, reason) = to_target(body)?;
    let view = state
        .push_handle()
        .cluster_disconnect(&caller.app, &target, &reason)
        .await?;
    let disconnected = view.value;
    tracing::info!(app = %caller.app, ?target, disconnected, "disconnect requested");
    Ok(Json(DisconnectResponse {
        disconnected,
        nodes_answered: view.nodes_answered,
        nodes_expected: view.nodes_expected,
    }))
}

/// Validates a disconnect body: exactly one target, and the reason.
fn to_target(body: DisconnectBody) -> Result<(DisconnectTarget, String), ApiError> {
    let reason = match body.reason {
        None => DEFAULT_REASON.to_owned(),
        Some(reason) => {
            if reason.len() > MAX_DISCONNECT_REASON || reason.chars().any(char::is_control) {
                return Err(ApiError::invalid_field(
                    "reason",
                    format!(
                        "`reason` has at most {MAX_DISCONNECT_REASON} bytes and no control characters"
                    ),
                ));
            }
            reason
        }
    };
    let target = match (body.device, body.biz, body.alias, body.connection) {
        (Some(device), None, None, None) => {
            DisconnectTarget::Device(validate::owned_id("device", &device)?)
        }
        (None, Some(biz), Some(alias), None) => DisconnectTarget::Alias {
            biz: validate::biz("biz", &biz).map(|()| biz)?,
            alias: validate::owned_alias("alias", &alias)?,
        },
        (None, None, None, Some(token)) => {
            DisconnectTarget::Connection(validate::owned_id("connection", &token)?)
        }
        (None, Some(_), None, None) => {
            return Err(ApiError::invalid_field("alias", "`biz` needs `alias`"));
        }
        (None, None, Some(_), None) => {
            return Err(ApiError::invalid_field("biz", "`alias` needs `biz`"));
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one target: `device`, `biz` with `alias`, or `connection`",
            ));
        }
    };
    Ok((target, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> DisconnectBody {
        DisconnectBody::default()
    }

    #[test]
    fn exactly_one_target() {
        let (target, reason) = to_target(DisconnectBody {
            device: Some("d1".into()),
            ..body()
        })
        .unwrap();
        assert_eq!(target, DisconnectTarget::Device("d1".into()));
        assert_eq!(reason, DEFAULT_REASON);
        let (target, _) = to_target(DisconnectBody {
            biz: Some("chat".into()),
            alias: Some("u42".into()),
            ..body()
        })
        .unwrap();
        assert_eq!(
            target,
            DisconnectTarget::Alias {
                biz: "chat".into(),
                alias: "u42".into()
            }
        );
        assert!(to_target(body()).is_err());
        let both = DisconnectBody {
            device: Some("d1".into()),
            connection: Some("t".into()),
            ..body()
        };
        assert!(to_target(both).is_err());
        let err = to_target(DisconnectBody {
            alias: Some("u42".into()),
            ..body()
        })
        .unwrap_err();
        assert_eq!(err.field(), Some("biz"));
        let err = to_target(DisconnectBody {
            device: Some("d1".into()),
            reason: Some("x".repeat(MAX_DISCONNECT_REASON + 1)),
            ..body()
        })
        .unwrap_err();
        assert_eq!(err.field(), Some("reason"));
    }
}

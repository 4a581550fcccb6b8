//! `POST /v1/push`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use pike_api::server::{Delivery, PushReceipt, PushRequest, Target};

use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::model::{PushBody, PushResponse};
use super::state::HttpState;

pub(crate) async fn push(
    State(state): State<HttpState>,
    caller: Caller,
    ApiJson(body): ApiJson<PushBody>,
) -> Result<Json<PushResponse>, ApiError> {
    let request = to_request(caller.app, body)?;
    let receipt = state.push_handle().push(request).await?;
    Ok(Json(response(&receipt)))
}

fn response(receipt: &PushReceipt) -> PushResponse {
    PushResponse {
        message_id: receipt.message_id.to_string(),
        stored: receipt.stored,
        online: receipt.online,
        dropped: receipt.dropped,
    }
}

/// Validates a push body into the library's request.
fn to_request(app: String, body: PushBody) -> Result<PushRequest, ApiError> {
    if body.biz.is_empty() {
        return Err(ApiError::invalid("`biz` must not be empty"));
    }
    let target = target(&body)?;
    let payload = match (body.payload, body.payload_base64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(encoded)) => STANDARD
            .decode(encoded.as_bytes())
            .map(Bytes::from)
            .map_err(|e| ApiError::invalid(format!("`payload_base64` is not base64: {e}")))?,
        (None, None) => {
            return Err(ApiError::invalid(
                "a payload is required: `payload` (text) or `payload_base64`",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give either `payload` or `payload_base64`, not both",
            ));
        }
    };
    let delivery = match (body.reliable.unwrap_or(true), body.ttl_secs) {
        (true, Some(0)) => return Err(ApiError::invalid("`ttl_secs` must be at least 1")),
        (true, ttl) => Delivery::Reliable {
            ttl: ttl.map(Duration::from_secs),
        },
        (false, None) => Delivery::Transient,
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "`ttl_secs` applies to reliable pushes only; a transient push is never stored",
            ));
        }
    };
    Ok(PushRequest {
        app,
        biz: body.biz,
        target,
        payload,
        delivery,
        priority: body.priority.unwrap_or(0),
    })
}

/// The one target of a push body.
fn target(body: &PushBody) -> Result<Target, ApiError> {
    let mut targets = Vec::with_capacity(1);
    if let Some(alias) = &body.alias {
        targets.push(Target::Alias(non_empty("alias", alias)?));
    }
    if let Some(aliases) = &body.aliases {
        if aliases.is_empty() {
            return Err(ApiError::invalid("`aliases` must not be empty"));
        }
        let mut unique: Vec<String> = Vec::with_capacity(aliases.len());
        let mut seen = std::collections::HashSet::with_capacity(aliases.len());
        for alias in aliases {
            let alias = non_empty("aliases[]", alias)?;
            if seen.insert(alias.clone()) {
                unique.push(alias);
            }
        }
        targets.push(Target::Aliases(unique));
    }
    if let Some(tag) = &body.tag {
        targets.push(Target::Tag(non_empty("tag", tag)?));
    }
    if let Some(device) = &body.device {
        targets.push(Target::Device(non_empty("device", device)?));
    }
    if body.all == Some(true) {
        targets.push(Target::App);
    }
    match targets.len() {
        1 => Ok(targets.remove(0)),
        0 => Err(ApiError::invalid(
            "a target is required: one of `alias`, `aliases`, `tag`, `device` or `all: true`",
        )),
        _ => Err(ApiError::invalid(
            "give exactly one target: `alias`, `aliases`, `tag`, `device` or `all: true`",
        )),
    }
}

fn non_empty(field: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() {
        Err(ApiError::invalid(format!("`{field}` must not be empty")))
    } else {
        Ok(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> PushBody {
        PushBody {
            biz: "chat".into(),
            alias: Some("u42".into()),
            payload: Some("hi".into()),
            ..PushBody::default()
        }
    }

    #[test]
    fn defaults_are_reliable_priority_zero() {
        let request = to_request("demo".into(), body()).unwrap();
        assert_eq!(request.target, Target::Alias("u42".into()));
        assert_eq!(request.delivery, Delivery::Reliable { ttl: None });
        assert_eq!(request.priority, 0);
        assert_eq!(&request.payload[..], b"hi");
    }

    #[test]
    fn duplicate_aliases_count_once() {
        let request = to_request(
            "demo".into(),
            PushBody {
                alias: None,
                aliases: Some(vec!["a".into(), "b".into(), "a".into()]),
                ..body()
            },
        )
        .unwrap();
        assert_eq!(
            request.target,
            Target::Aliases(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn all_false_is_no_target() {
        let err = to_request(
            "demo".into(),
            PushBody {
                alias: None,
                all: Some(false),
                ..body()
            },
        )
        .unwrap_err();
        assert!(err.message().contains("target is required"), "{err}");
    }

    #[test]
    fn transient_with_ttl_is_refused() {
        let err = to_request(
            "demo".into(),
            PushBody {
                reliable: Some(false),
                ttl_secs: Some(5),
                ..body()
            },
        )
        .unwrap_err();
        assert!(err.message().contains("ttl_secs"), "{err}");
    }
}

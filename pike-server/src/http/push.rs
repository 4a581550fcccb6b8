//! `POST /v1/push` and `POST /v1/push/batch`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use pike_api::server::{Delivery, PushReceipt, PushRequest, Target};

use super::error::{ApiError, ErrorCode};
use super::extract::{ApiJson, Caller};
use super::model::{PushBatchBody, PushBatchResponse, PushBatchResult, PushBody, PushResponse};
use super::state::HttpState;
use super::validate::{self, MAX_TTL_SECS};

/// Most pushes in one `POST /v1/push/batch`.
pub const MAX_BATCH_PUSHES: usize = 1000;

/// The body limit of `POST /v1/push/batch` is this many times the API's
/// (4 MiB by default), so that [`MAX_BATCH_PUSHES`] pushes of 1 KiB
/// payloads fit, even in base64.
pub const BATCH_BODY_LIMIT_FACTOR: usize = 4;

/// The largest body of `POST /v1/push/batch` when the API's limit is
/// `body_limit`.
pub fn batch_body_limit(body_limit: usize) -> usize {
    body_limit.saturating_mul(BATCH_BODY_LIMIT_FACTOR)
}

/// `POST /v1/push`: one push.
pub(crate) async fn push(
    State(state): State<HttpState>,
    caller: Caller,
    ApiJson(body): ApiJson<PushBody>,
) -> Result<Json<PushResponse>, ApiError> {
    let asked = body.receipt;
    let mut request = to_request(caller.app, body, state.push_handle().max_payload_len())?;
    request.receipt = state.receipt_wanted(&request, asked);
    let receipt = state.push_handle().push(request).await?;
    Ok(Json(response(&receipt)))
}

/// `POST /v1/push/batch`: validates every item first (the first invalid
/// one refuses the whole request, naming its index, and nothing is
/// pushed), then pushes them in order, answering one result per item; an
/// item that fails does not stop the ones after it. The reliable items are
/// stored in one commit ([`PushHandle::push_batch`](pike_api::server::PushHandle::push_batch)).
pub(crate) async fn push_batch(
    State(state): State<HttpState>,
    caller: Caller,
    body: Result<ApiJson<PushBatchBody>, ApiError>,
) -> Result<Json<PushBatchResponse>, ApiError> {
    let ApiJson(body) = body.map_err(|e| batch_rejection(e, state.body_limit()))?;
    let push = state.push_handle();
    let asked: Vec<Option<bool>> = body.pushes.iter().map(|p| p.receipt).collect();
    let mut requests = batch_requests(&caller.app, body, push.max_payload_len())?;
    for (request, asked) in requests.iter_mut().zip(asked) {
        request.receipt = state.receipt_wanted(request, asked);
    }
    let results = push
        .push_batch(requests)
        .await
        .into_iter()
        .map(|outcome| match outcome {
            Ok(receipt) => PushBatchResult::Pushed(response(&receipt)),
            Err(e) => PushBatchResult::Failed(ApiError::from(e).body()),
        })
        .collect();
    Ok(Json(PushBatchResponse { results }))
}

/// The batch's rejection: a body over the limit names the batch limit.
fn batch_rejection(error: ApiError, body_limit: usize) -> ApiError {
    if error.code() == ErrorCode::PayloadTooLarge {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request body is larger than the batch limit of {} bytes; split the batch",
                batch_body_limit(body_limit)
            ),
        )
    } else {
        error
    }
}

/// Validates every item of a batch into the library's requests: the
/// first invalid item is the error, prefixed with `pushes[i]: ` (and its
/// field with `pushes[i].`).
fn batch_requests(
    app: &str,
    body: PushBatchBody,
    max_payload: usize,
) -> Result<Vec<PushRequest>, ApiError> {
    check_batch_len(body.pushes.len())?;
    body.pushes
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            to_request(app.to_owned(), item, max_payload)
                .and_then(check_batch_item)
                .map_err(|e| item_error(index, e))
        })
        .collect()
}

/// A batch holds 1 to [`MAX_BATCH_PUSHES`] pushes.
pub(crate) fn check_batch_len(count: usize) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::invalid_field(
            "pushes",
            "`pushes` must not be empty",
        ));
    }
    if count > MAX_BATCH_PUSHES {
        return Err(ApiError::invalid_field(
            "pushes",
            format!(
                "`pushes` has {count} items, more than the limit of {MAX_BATCH_PUSHES}; split the batch"
            ),
        ));
    }
    Ok(())
}

/// What a batch refuses up front (the library refuses it only when
/// pushing, so that nothing of the batch is pushed): a reliable push to a
/// device.
pub(crate) fn check_batch_item(request: PushRequest) -> Result<PushRequest, ApiError> {
    if matches!(request.target, Target::Device(_))
        && matches!(request.delivery, Delivery::Reliable { .. })
    {
        Err(ApiError::invalid_field(
            "reliable",
            "a push to a device is transient only; to reach one device reliably, log it in under an alias of its own",
        ))
    } else {
        Ok(request)
    }
}

/// An invalid batch item's error: prefixed with `pushes[i]: `, its field
/// with `pushes[i].`.
pub(crate) fn item_error(index: usize, e: ApiError) -> ApiError {
    let error = ApiError::invalid(format!("pushes[{index}]: {}", e.message()));
    match e.field() {
        Some(field) => error.with_field(format!("pushes[{index}].{field}")),
        None => error.with_field(format!("pushes[{index}]")),
    }
}

/// The receipt as JSON.
fn response(receipt: &PushReceipt) -> PushResponse {
    PushResponse {
        message_id: receipt.message_id.to_string(),
        stored: receipt.stored,
        online: receipt.online,
        dropped: receipt.dropped,
    }
}

/// The payload of a push or publish body: `payload` (text) or
/// `payload_base64`, exactly one, of at most `max` bytes (decoded).
pub(crate) fn payload(
    text: Option<String>,
    base64: Option<String>,
    max: usize,
) -> Result<Bytes, ApiError> {
    let (field, bytes) = match (text, base64) {
        (Some(text), None) => ("payload", Bytes::from(text)),
        (None, Some(encoded)) => (
            "payload_base64",
            STANDARD
                .decode(encoded.as_bytes())
                .map(Bytes::from)
                .map_err(|e| {
                    ApiError::invalid_field(
                        "payload_base64",
                        format!("`payload_base64` is not base64: {e}"),
                    )
                })?,
        ),
        (None, None) => {
            return Err(ApiError::invalid_field(
                "payload",
                "a payload is required: `payload` (text) or `payload_base64`",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "payload",
                "give either `payload` or `payload_base64`, not both",
            ));
        }
    };
    payload_len(field, bytes.len(), max)?;
    Ok(bytes)
}

/// A payload of `len` bytes (in `field`) is at most `max`.
pub(crate) fn payload_len(field: &str, len: usize, max: usize) -> Result<(), ApiError> {
    if len > max {
        return Err(ApiError::invalid_field(
            field,
            format!(
                "the payload is {len} bytes, more than the limit of {max} (what a device's downlink frame carries)"
            ),
        ));
    }
    Ok(())
}

/// Validates a push body into the library's request; payloads above
/// `max_payload` bytes are refused.
fn to_request(app: String, body: PushBody, max_payload: usize) -> Result<PushRequest, ApiError> {
    validate::biz("biz", &body.biz)?;
    let target = target(&body)?;
    let payload = payload(body.payload, body.payload_base64, max_payload)?;
    let delivery = delivery(body.reliable.unwrap_or(true), body.ttl_secs)?;
    Ok(PushRequest {
        app,
        biz: body.biz,
        target,
        payload,
        delivery,
        priority: body.priority.unwrap_or(0),
        receipt: false,
    })
}

/// A push's delivery from its `reliable` flag and `ttl_secs`.
pub(crate) fn delivery(reliable: bool, ttl_secs: Option<u64>) -> Result<Delivery, ApiError> {
    match (reliable, ttl_secs) {
        (true, Some(ttl)) if !(1..=MAX_TTL_SECS).contains(&ttl) => Err(ApiError::invalid_field(
            "ttl_secs",
            format!("`ttl_secs` must be between 1 and {MAX_TTL_SECS} (ten years)"),
        )),
        (true, ttl) => Ok(Delivery::Reliable {
            ttl: ttl.map(Duration::from_secs),
        }),
        (false, None) => Ok(Delivery::Transient),
        (false, Some(_)) => Err(ApiError::invalid_field(
            "ttl_secs",
            "`ttl_secs` applies to reliable pushes only; a transient push is never stored",
        )),
    }
}

/// `aliases` validated (each named `field[i]`), duplicates dropped, order
/// kept; an empty list is refused.
pub(crate) fn unique_aliases(field: &str, aliases: &[String]) -> Result<Vec<String>, ApiError> {
    if aliases.is_empty() {
        return Err(ApiError::invalid_field(
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    let mut unique: Vec<String> = Vec::with_capacity(aliases.len());
    let mut seen = std::collections::HashSet::with_capacity(aliases.len());
    for (i, alias) in aliases.iter().enumerate() {
        let alias = validate::owned_alias(&format!("{field}[{i}]"), alias)?;
        if seen.insert(alias.clone()) {
            unique.push(alias);
        }
    }
    Ok(unique)
}

/// The one target of a push body.
fn target(body: &PushBody) -> Result<Target, ApiError> {
    let mut targets = Vec::with_capacity(1);
    if let Some(alias) = &body.alias {
        targets.push(Target::Alias(validate::owned_alias("alias", alias)?));
    }
    if let Some(aliases) = &body.aliases {
        targets.push(Target::Aliases(unique_aliases("aliases", aliases)?));
    }
    if let Some(tag) = &body.tag {
        targets.push(Target::Tag(validate::owned_id("tag", tag)?));
    }
    if let Some(device) = &body.device {
        targets.push(Target::Device(validate::owned_id("device", device)?));
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

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn to_request(app: String, body: PushBody) -> Result<PushRequest, ApiError> {
        super::to_request(app, body, MAX)
    }

    fn batch_requests(app: &str, body: PushBatchBody) -> Result<Vec<PushRequest>, ApiError> {
        super::batch_requests(app, body, MAX)
    }

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

    #[test]
    fn bad_fields_are_named() {
        let long = "x".repeat(validate::MAX_ID_LEN + 1);
        let cases = [
            (
                PushBody {
                    alias: Some(long.clone()),
                    ..body()
                },
                "alias",
            ),
            (
                PushBody {
                    biz: "chat\r\n".into(),
                    ..body()
                },
                "biz",
            ),
            (
                PushBody {
                    alias: None,
                    aliases: Some(vec!["a".into(), long.clone()]),
                    ..body()
                },
                "aliases[1]",
            ),
            (
                PushBody {
                    alias: None,
                    tag: Some(long.clone()),
                    ..body()
                },
                "tag",
            ),
            (
                PushBody {
                    ttl_secs: Some(MAX_TTL_SECS + 1),
                    ..body()
                },
                "ttl_secs",
            ),
            (
                PushBody {
                    payload: Some("x".repeat(MAX + 1)),
                    ..body()
                },
                "payload",
            ),
        ];
        for (bad, field) in cases {
            let err = to_request("demo".into(), bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
            assert_eq!(err.field(), Some(field), "{err}");
        }
        let batch = PushBatchBody {
            pushes: vec![
                body(),
                PushBody {
                    alias: Some(long),
                    ..body()
                },
            ],
        };
        let err = batch_requests("demo", batch).unwrap_err();
        assert_eq!(err.field(), Some("pushes[1].alias"), "{err}");
        assert!(err.message().starts_with("pushes[1]: "), "{err}");
    }

    #[test]
    fn a_batch_names_its_first_invalid_item() {
        let bad = PushBody {
            payload: None,
            ..body()
        };
        let device = PushBody {
            alias: None,
            device: Some("d1".into()),
            ..body()
        };
        let batch = |pushes| PushBatchBody { pushes };
        let err = batch_requests("demo", batch(vec![body(), bad.clone(), bad])).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert!(err.message().starts_with("pushes[1]: "), "{err}");
        let err = batch_requests("demo", batch(vec![device])).unwrap_err();
        assert!(err.message().starts_with("pushes[0]: "), "{err}");
        assert!(err.message().contains("transient only"), "{err}");
        assert!(batch_requests("demo", batch(Vec::new())).is_err());
        assert!(batch_requests("demo", batch(vec![body(); MAX_BATCH_PUSHES + 1])).is_err());
        let requests = batch_requests("demo", batch(vec![body(); MAX_BATCH_PUSHES])).unwrap();
        assert_eq!(requests.len(), MAX_BATCH_PUSHES);
    }
}

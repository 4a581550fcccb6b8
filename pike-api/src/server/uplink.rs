//! Uplink delivery to business backends: sticky routes (seed 6.2.1) and
//! serial, ordered delivery per login (seed 6.2.2).

use bytes::Bytes;
use proto::tunnel::ErrorCode;

use super::store::BoxFuture;

/// One uplink message on its way to a backend.
#[derive(Clone, Debug)]
pub struct UplinkRequest {
    /// App id.
    pub app: String,
    /// Business id.
    pub biz: String,
    /// The sender's alias.
    pub alias: String,
    /// The sender's device.
    pub device_id: String,
    /// The sending connection's token.
    pub connection_token: String,
    /// The backend instance the login is bound to.
    pub route_id: String,
    /// Per-login sequence number.
    pub seq: u64,
    /// Idempotency key, stable across resends.
    pub idempotency_key: String,
    /// The payload.
    pub payload: Bytes,
}

/// Why a backend did not take a message.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct UplinkError {
    /// The code the client gets if the gateway gives up.
    pub code: ErrorCode,
    /// Detail.
    pub message: String,
    /// `true` when the route itself failed (unreachable, 5xx, timeout): the
    /// gateway picks another route and tries again. `false` when the backend
    /// refused the message (4xx): the client is told at once.
    pub route_failed: bool,
}

/// Where uplink goes. Implementations balance logins over backend
/// instances and deliver to the instance a route id names.
pub trait UplinkHandler: Send + Sync + 'static {
    /// The route for a login: `saved` if that instance is still healthy,
    /// else a newly balanced one. `None` when the business has no backend.
    fn route(&self, app: &str, biz: &str, saved: &str, avoid: Option<&str>) -> Option<String>;

    /// Delivers one message to `request.route_id`; resolves when the backend
    /// accepted (2xx) or refused it.
    fn deliver(&self, request: UplinkRequest) -> BoxFuture<'_, Result<(), UplinkError>>;
}

/// Refuses every uplink: a gateway without backends.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoUplink;

impl UplinkHandler for NoUplink {
    fn route(&self, _app: &str, _biz: &str, _saved: &str, _avoid: Option<&str>) -> Option<String> {
        None
    }

    fn deliver(&self, _request: UplinkRequest) -> BoxFuture<'_, Result<(), UplinkError>> {
        Box::pin(async {
            Err(UplinkError {
                code: ErrorCode::BackendUnavailable,
                message: "no uplink backend is configured".into(),
                route_failed: false,
            })
        })
    }
}

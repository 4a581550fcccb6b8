//! The error model: every 4xx and 5xx answer carries
//! `{"error": {"code": "...", "message": "..."}}`, plus `"field"` naming
//! the offending field of a `400 invalid_request` when there is one.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pike_api::server::engine::EngineError;
use pike_api::server::{PushError, RoomError, RoomScope};

use super::model::{ErrorBody, ErrorDetail};

/// The machine-readable `error.code` of an HTTP API error; each maps to one
/// HTTP status.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: malformed JSON, wrong content type, a missing, extra or invalid
    /// field or query parameter.
    InvalidRequest,
    /// 401: no `Authorization: Bearer <api key>` header, or an unknown key.
    Unauthorized,
    /// 403: the request is understood and not allowed: a device WebSocket
    /// (`GET /v1/ws`) from a web page whose `Origin` no app allows.
    Forbidden,
    /// 404: unknown route, or a resource the app does not have (a
    /// connection token of another app is not found either).
    NotFound,
    /// 405: the route exists, the method does not (see `Allow`).
    MethodNotAllowed,
    /// 413: the request body is larger than the limit.
    PayloadTooLarge,
    /// 422: a tag or whole-app push reaches more aliases than the gateway's
    /// limit (use a room).
    TooManyRecipients,
    /// 429: the app is at its own quota (live rooms of the app); nothing
    /// was done; retry once the app uses less (idle rooms go away).
    QuotaExceeded,
    /// 503: a live room's reliable store is full; nothing was dropped to
    /// make room, the message was not taken; retry later.
    RoomFull,
    /// 503: the store failed or the gateway is shutting down; nothing was
    /// done; retry (on another gateway when shutting down).
    Unavailable,
    /// 503: the HTTP server is at its limit of open connections or of
    /// requests in flight; nothing was done; retry later.
    Overloaded,
    /// 503: the request took longer than the request timeout; a push may
    /// still have been stored (and is then delivered).
    Timeout,
    /// 500: a bug.
    Internal,
}

impl ErrorCode {
    /// The code as it appears in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::TooManyRecipients => "too_many_recipients",
            Self::QuotaExceeded => "quota_exceeded",
            Self::RoomFull => "room_full",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status of the code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRecipients => StatusCode::UNPROCESSABLE_ENTITY,
            Self::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::RoomFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An HTTP API error: a code, a human-readable message and, for invalid
/// input, the field at fault.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// `400 invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// `400 invalid_request` about `field` (a JSON field or query
    /// parameter, e.g. `alias` or `pushes[2].tag`).
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(message).with_field(field)
    }

    /// This error, about `field`.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// `401 unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), Json(self.body())).into_response();
        if self.code == ErrorCode::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="pike""#),
            );
        }
        response
    }
}

impl From<PushError> for ApiError {
    fn from(error: PushError) -> Self {
        match error {
            PushError::Invalid(message) => Self::invalid(message),
            e @ PushError::PayloadTooLarge { .. } => Self::invalid_field("payload", e.to_string()),
            e @ PushError::TooManyRecipients { .. } => {
                Self::new(ErrorCode::TooManyRecipients, e.to_string())
            }
            PushError::Store(e) => {
                tracing::error!(error = %e, "push failed: store error");
                Self::new(
                    ErrorCode::Unavailable,
                    "the message store is unavailable; nothing was pushed; retry later",
                )
            }
            PushError::ShuttingDown => Self::new(
                ErrorCode::Unavailable,
                "the gateway is shutting down; nothing was pushed; retry on another gateway",
            ),
            PushError::Unavailable(reason) => Self::new(
                ErrorCode::Unavailable,
                format!("{reason}; nothing was pushed; retry later"),
            ),
            e @ PushError::UnknownBiz { .. } => Self::not_found(format!(
                "{e}: nothing was pushed (its configured businesses are the only ones devices can log in to)"
            ))
            .with_field("biz"),
            e => {
                tracing::error!(error = %e, "push failed");
                Self::new(ErrorCode::Internal, "the push failed unexpectedly")
            }
        }
    }
}

impl From<EngineError> for ApiError {
    /// A cluster-wide view that could not be asked (the cluster engine
    /// cannot reach NATS): 503, retry later.
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Unavailable(reason) => Self::new(
                ErrorCode::Unavailable,
                format!("the cluster is unreachable ({reason}); retry later"),
            ),
            EngineError::Failed(reason) => {
                tracing::error!(error = %reason, "cluster view failed");
                Self::new(ErrorCode::Internal, "the cluster view failed unexpectedly")
            }
        }
    }
}

impl From<RoomError> for ApiError {
    fn from(error: RoomError) -> Self {
        match error {
            RoomError::Invalid(message) => Self::invalid(message),
            e @ RoomError::ReliableFull { .. } => Self::new(ErrorCode::RoomFull, e.to_string()),
            e @ RoomError::TooManyRooms {
                scope: RoomScope::App,
                ..
            } => Self::new(ErrorCode::QuotaExceeded, e.to_string()),
            e @ RoomError::TooManyRooms { .. } => Self::new(ErrorCode::Unavailable, e.to_string()),
            RoomError::ShuttingDown => Self::new(
                ErrorCode::Unavailable,
                "the gateway is shutting down; nothing was published; retry on another gateway",
            ),
            e @ RoomError::Unavailable(_) => Self::new(ErrorCode::Unavailable, e.to_string()),
            e => {
                tracing::error!(error = %e, "room publish failed");
                Self::new(ErrorCode::Internal, "the publish failed unexpectedly")
            }
        }
    }
}

//! Extractors whose rejections are [`ApiError`]s (JSON bodies) rather than
//! axum's plain-text defaults, and the bearer-key authentication.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};
use super::state::HttpState;

/// The app calling, from `Authorization: Bearer <api key>`.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// App id.
    pub(crate) app: String,
    /// The app's token secret (for minting client credentials).
    pub(crate) token_secret: String,
}

impl FromRequestParts<HttpState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing Authorization header; send `Authorization: Bearer <api key>`",
            ));
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|key| !key.is_empty());
        let Some(key) = key else {
            return Err(ApiError::unauthorized(
                "the Authorization header is not `Bearer <api key>`",
            ));
        };
        match state.apps().app_for_api_key(key) {
            Some(app) => Ok(Self {
                app: app.id.clone(),
                token_secret: app.token_secret.clone(),
            }),
            None => Err(ApiError::unauthorized("unknown API key")),
        }
    }
}

/// A JSON body; malformed JSON, a wrong content type, a missing, extra or
/// mistyped field are `400 invalid_request`, a body over the limit is
/// `413 payload_too_large`.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<HttpState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &HttpState) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection, state.body_limit())),
        }
    }
}

fn json_rejection(rejection: &JsonRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        );
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::invalid("expected a JSON body with `Content-Type: application/json`")
        }
        other => ApiError::invalid(other.body_text()),
    }
}

/// Query parameters; invalid or unknown ones are `400 invalid_request`.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| Self(value))
            .map_err(|rejection| ApiError::invalid(rejection.body_text()))
    }
}

/// Path parameters; undecodable ones are `400 invalid_request`.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection| ApiError::invalid(rejection.body_text()))
    }
}

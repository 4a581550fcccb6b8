//! `POST /v1/tokens`: mint a client credential for backends without a JWT
//! library.

use axum::Json;

use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::model::{TokenRequest, TokenResponse};
use crate::token::{Claims, mint};

/// Validity of a minted credential by default, seconds (one day).
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 86_400;
/// Longest validity of a minted credential, seconds (30 days).
pub const MAX_TOKEN_TTL_SECS: u64 = 30 * 86_400;

pub(crate) async fn mint_token(
    caller: Caller,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    super::validate::id("biz", &body.biz)?;
    super::validate::id("alias", &body.alias)?;
    let ttl = body.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid_field(
            "ttl_secs",
            format!("`ttl_secs` must be between 1 and {MAX_TOKEN_TTL_SECS} (30 days)"),
        ));
    }
    let claims = Claims::new(&caller.app, &body.biz, &body.alias, unix_secs(), ttl);
    let token = mint(&claims, caller.token_secret.as_bytes());
    Ok(Json(TokenResponse {
        token,
        expires_at: claims.exp,
    }))
}

/// Wall-clock time, unix seconds.
fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

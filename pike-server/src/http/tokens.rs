//! `POST /v1/tokens`: mint a client credential for backends without a JWT
//! library, optionally bound to one device (`device`).

use axum::Json;

use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::model::{TokenRequest, TokenResponse};
use crate::token::{Claims, MAX_TOKEN_LEN, mint};

/// Validity of a minted credential by default, seconds (one day).
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 86_400;
/// Longest validity of a minted credential, seconds (30 days).
pub const MAX_TOKEN_TTL_SECS: u64 = 30 * 86_400;

pub(crate) async fn mint_token(
    caller: Caller,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    super::validate::biz("biz", &body.biz)?;
    super::validate::alias("alias", &body.alias)?;
    let ttl = body.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid_field(
            "ttl_secs",
            format!("`ttl_secs` must be between 1 and {MAX_TOKEN_TTL_SECS} (30 days)"),
        ));
    }
    let mut claims = Claims::new(&caller.app, &body.biz, &body.alias, unix_secs(), ttl);
    if let Some(device) = body.device {
        if device.is_empty() {
            return Err(ApiError::invalid(
                "`device` must not be empty (leave it out for a credential of any device)",
            ));
        }
        claims = claims.with_device(device);
    }
    let token = mint(&claims, caller.token_secret.as_bytes());
    if token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::invalid(format!(
            "the credential would be {} bytes long, over the {MAX_TOKEN_LEN} a gateway accepts: shorten `biz`, `alias` or `device`",
            token.len()
        )));
    }
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

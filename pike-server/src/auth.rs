//! The gateway's login check: the credential must be a valid HS256 token of
//! the connection's app for the business and alias, and, when the business
//! has an `auth_webhook`, the webhook must approve.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pike_api::server::{AuthError, BoxFuture, LoginGrant, LoginRequest};
use proto::tunnel::ErrorCode;
use tower::Service;

use crate::apps::AppDirectory;
use crate::token::{Scope, verify};

/// Verifies client credentials (and asks auth webhooks).
#[derive(Clone, Debug)]
pub struct TokenAuthenticator {
    apps: Arc<AppDirectory>,
    client: reqwest::Client,
}

impl TokenAuthenticator {
    /// An authenticator for the apps of `apps`.
    pub fn new(apps: Arc<AppDirectory>, client: reqwest::Client) -> Self {
        Self { apps, client }
    }
}

impl Service<LoginRequest> for TokenAuthenticator {
    type Response = LoginGrant;
    type Error = AuthError;
    type Future = BoxFuture<'static, Result<LoginGrant, AuthError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), AuthError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LoginRequest) -> Self::Future {
        let apps = self.apps.clone();
        let client = self.client.clone();
        Box::pin(async move {
            let Some(app) = apps.app(&request.app) else {
                return Err(AuthError::new(
                    ErrorCode::AuthFailed,
                    format!("unknown app {:?}", request.app),
                ));
            };
            if request.biz.is_empty() || request.alias.is_empty() {
                return Err(AuthError::new(
                    ErrorCode::InvalidArgument,
                    "biz and alias must not be empty",
                ));
            }
            let biz = apps.biz(&request.app, &request.biz);
            if !app.biz.is_empty() && biz.is_none() {
                return Err(AuthError::new(
                    ErrorCode::Forbidden,
                    format!("unknown biz {:?}", request.biz),
                ));
            }
            let scope = Scope {
                app: &request.app,
                biz: &request.biz,
                alias: &request.alias,
            };
            let claims = verify(
                &request.credential,
                app.token_secret.as_bytes(),
                &scope,
                unix_secs(),
            )
            .map_err(|e| AuthError::new(e.code(), e.to_string()))?;
            if let Some(url) = biz.and_then(|b| b.auth_webhook.as_ref()) {
                let timeout = Duration::from_millis(biz.map_or(5_000, |b| b.webhook_timeout_ms));
                let body = serde_json::json!({
                    "app": request.app,
                    "biz": request.biz,
                    "alias": request.alias,
                    "device_id": request.device_id,
                    "connection_token": request.connection_token,
                });
                let response = client
                    .post(url)
                    .timeout(timeout)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .map_err(|e| {
                        AuthError::new(
                            ErrorCode::Internal,
                            format!("auth webhook unreachable: {e}"),
                        )
                    })?;
                let status = response.status();
                if status == 401 || status == 403 {
                    return Err(AuthError::new(
                        ErrorCode::Forbidden,
                        format!("auth webhook refused: {status}"),
                    ));
                }
                if !status.is_success() {
                    return Err(AuthError::new(
                        ErrorCode::Internal,
                        format!("auth webhook answered {status}"),
                    ));
                }
            }
            Ok(LoginGrant {
                expires_at_ms: claims.exp.saturating_mul(1000),
            })
        })
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

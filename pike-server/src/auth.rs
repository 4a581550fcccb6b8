//! The gateway's login check: the credential must be a valid HS256 token of
//! the connection's app for the business and alias (and, if it names a
//! device, for the connection's device id), and, when the business has an
//! `auth_webhook`, the webhook must approve.
//!
//! The grant carries the credential's expiry (its `exp` plus the
//! [`LEEWAY_SECS`] of clock skew the check tolerates: the moment the same
//! credential would be refused), after which the gateway ends the login
//! unless the client refreshed it, and whether the credential proves the
//! device id (a `device` claim), which decides who receives the pushes
//! addressed to a device.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pike_api::server::{AuthError, BoxFuture, LoginGrant, LoginRequest};
use proto::tunnel::ErrorCode;
use tower::Service;

use crate::apps::AppDirectory;
use crate::token::{LEEWAY_SECS, Scope, verify};

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
            let device_verified = claims
                .check_device(&request.device_id)
                .map_err(|e| AuthError::new(e.code(), e.to_string()))?;
            if app.require_device_claim && !device_verified {
                return Err(AuthError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "app {:?} requires credentials bound to a device (a `device` claim)",
                        request.app
                    ),
                ));
            }
            if let Some(url) = biz.and_then(|b| b.auth_webhook.as_ref()) {
                let timeout = Duration::from_millis(biz.map_or(5_000, |b| b.webhook_timeout_ms));
                let body = serde_json::json!({
                    "app": request.app,
                    "biz": request.biz,
                    "alias": request.alias,
                    "device_id": request.device_id,
                    "device_verified": device_verified,
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
            Ok(LoginGrant::default()
                .with_expiry(grant_expiry_ms(claims.exp))
                .with_device_verified(device_verified))
        })
    }
}

/// When a login with a credential expiring at `exp` (unix seconds) ends:
/// the last moment [`verify`] accepts it, in unix milliseconds.
fn grant_expiry_ms(exp: u64) -> u64 {
    exp.saturating_add(LEEWAY_SECS).saturating_mul(1000)
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{App, Config};
    use crate::token::{Claims, mint};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn authenticator(require_device_claim: bool) -> TokenAuthenticator {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config {
            apps: vec![App {
                id: "demo".into(),
                api_key: "pk_0123456789abcdef".into(),
                token_secret: SECRET.into(),
                biz: Vec::new(),
                require_device_claim,
                allowed_origins: Vec::new(),
            }],
            ..Config::default()
        };
        TokenAuthenticator::new(
            Arc::new(AppDirectory::from_config(&config, None)),
            reqwest::Client::new(),
        )
    }

    fn request(device_id: &str, claims: &Claims) -> LoginRequest {
        LoginRequest {
            app: "demo".into(),
            device_id: device_id.into(),
            connection_token: "t".into(),
            biz: "chat".into(),
            alias: "u42".into(),
            credential: mint(claims, SECRET.as_bytes()),
        }
    }

    async fn login(
        auth: &mut TokenAuthenticator,
        device_id: &str,
        claims: &Claims,
    ) -> Result<LoginGrant, AuthError> {
        auth.call(request(device_id, claims)).await
    }

    #[tokio::test]
    async fn the_grant_carries_the_expiry_and_the_device_binding() {
        let mut auth = authenticator(false);
        let now = unix_secs();
        let claims = Claims::new("demo", "chat", "u42", now, 600);
        let grant = login(&mut auth, "phone-1", &claims).await.unwrap();
        assert_eq!(grant.expires_at_ms, (now + 600 + LEEWAY_SECS) * 1000);
        assert!(!grant.device_verified, "no device claim: not bound");

        let bound = claims.clone().with_device("phone-1");
        let grant = login(&mut auth, "phone-1", &bound).await.unwrap();
        assert!(grant.device_verified);

        // A credential of another device is refused on this one.
        let err = login(&mut auth, "phone-2", &bound).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden, "{err}");
        assert!(err.message.contains("device"), "{err}");
    }

    #[tokio::test]
    async fn an_app_may_require_device_bound_credentials() {
        let mut auth = authenticator(true);
        let claims = Claims::new("demo", "chat", "u42", unix_secs(), 600);
        let err = login(&mut auth, "phone-1", &claims).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(err.message.contains("bound to a device"), "{err}");
        let grant = login(&mut auth, "phone-1", &claims.with_device("phone-1"))
            .await
            .unwrap();
        assert!(grant.device_verified);
    }
}

//! Login authentication: a `tower::Service` deciding each business login.

use std::task::{Context, Poll};

use proto::tunnel::ErrorCode;
use tower::Service;

use super::store::BoxFuture;

/// A business asks to log in on a connection.
#[derive(Clone, Debug)]
pub struct LoginRequest {
    /// The connection's app (from its hello).
    pub app: String,
    /// The connection's device id (from its hello).
    pub device_id: String,
    /// The connection token.
    pub connection_token: String,
    /// Business id.
    pub biz: String,
    /// Alias to bind.
    pub alias: String,
    /// The credential the client presented.
    pub credential: String,
}

/// A granted login.
///
/// Build it with [`LoginGrant::default`] (never expires, device not
/// verified) and the `with_*` methods.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LoginGrant {
    /// When the credential expires, unix milliseconds (0 = never). The
    /// client learns it in its login result, and the gateway ends the login
    /// with `TOKEN_EXPIRED` at that moment unless the client refreshed its
    /// credential (a fresh credential goes through the authenticator again,
    /// and its grant's expiry replaces this one).
    pub expires_at_ms: u64,
    /// The credential proves the connection's device id (e.g. a `device`
    /// claim equal to the hello's device id). Only such logins receive
    /// pushes addressed to the device ([`Target::Device`](super::Target::Device));
    /// every login receives the pushes to its alias.
    pub device_verified: bool,
}

impl LoginGrant {
    /// This grant, expiring at `expires_at_ms` (unix milliseconds; 0 =
    /// never).
    #[must_use]
    pub fn with_expiry(mut self, expires_at_ms: u64) -> Self {
        self.expires_at_ms = expires_at_ms;
        self
    }

    /// This grant, with the device id proven (`true`) or not.
    #[must_use]
    pub fn with_device_verified(mut self, verified: bool) -> Self {
        self.device_verified = verified;
        self
    }
}

/// A refused login: the code the client gets (`AUTH_FAILED`,
/// `TOKEN_EXPIRED` and `FORBIDDEN` are final; other codes make the client
/// retry).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct AuthError {
    /// The wire code.
    pub code: ErrorCode,
    /// Detail for the client and the connection trace.
    pub message: String,
}

impl AuthError {
    /// A refusal with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The boxed authenticator a gateway holds.
pub type BoxAuthenticator = tower::util::BoxCloneSyncService<LoginRequest, LoginGrant, AuthError>;

/// Grants every login and trusts every device id. For tests and closed
/// networks only: any client may bind any alias and receive the pushes of
/// any device id it claims.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Service<LoginRequest> for AllowAll {
    type Response = LoginGrant;
    type Error = AuthError;
    type Future = BoxFuture<'static, Result<LoginGrant, AuthError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), AuthError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: LoginRequest) -> Self::Future {
        Box::pin(async { Ok(LoginGrant::default().with_device_verified(true)) })
    }
}

/// Authenticates with a plain function (handy for token checks that need no
/// I/O).
#[derive(Clone, Debug)]
pub struct FnAuthenticator<F>(pub F);

impl<F> Service<LoginRequest> for FnAuthenticator<F>
where
    F: Fn(&LoginRequest) -> Result<LoginGrant, AuthError> + Clone + Send + 'static,
{
    type Response = LoginGrant;
    type Error = AuthError;
    type Future = std::future::Ready<Result<LoginGrant, AuthError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), AuthError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: LoginRequest) -> Self::Future {
        std::future::ready((self.0)(&req))
    }
}

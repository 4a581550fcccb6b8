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
#[derive(Clone, Debug, Default)]
pub struct LoginGrant {
    /// When the credential expires, unix milliseconds (0 = unknown).
    pub expires_at_ms: u64,
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

/// Grants every login. For tests and closed networks only: any client may
/// bind any alias.
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
        Box::pin(async { Ok(LoginGrant::default()) })
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

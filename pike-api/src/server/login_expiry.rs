//! Credential expiry of live logins, for the connection task.
//!
//! A login granted with an expiry ([`LoginGrant::expires_at_ms`]) is
//! accepted with it: the client learns it from its login result, and the
//! connection's machine ends the login with `TOKEN_EXPIRED` when it passes
//! (`ServerEvent::LoginExpired`). Before that the client may present a
//! fresh credential on the same stream (`ServerEvent::CredentialRefresh`):
//! it goes through the authenticator like a login for the same app, device,
//! business and alias, and its grant's expiry replaces the old one. A fresh
//! credential must keep the login's device binding (a login that receives
//! the device's pushes cannot keep them with a credential that does not
//! prove the device, nor gain them by a refresh).

use std::sync::Arc;

use pike_channel::{CredentialExpiry, ServerChannel, StreamId};
use proto::tunnel::ErrorCode;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::auth::{AuthError, LoginGrant, LoginRequest};
use super::clock::unix_ms;
use super::hub::Hub;
use super::store::{BoxFuture, StreamKey};

/// The outcome of a credential check started by [`start_refresh`].
#[derive(Debug)]
pub(super) struct RefreshDone {
    stream: StreamId,
    result: Result<LoginGrant, AuthError>,
}

impl RefreshDone {
    /// The stream refreshed.
    pub(super) fn stream(&self) -> StreamId {
        self.stream
    }
}

/// The machine's expiry for a login granted with `grant`.
pub(super) fn expiry(grant: &LoginGrant) -> Option<CredentialExpiry> {
    (grant.expires_at_ms != 0).then(|| {
        CredentialExpiry::at_unix_ms(grant.expires_at_ms, Instant::now().into_std(), unix_ms())
    })
}

/// Starts checking the fresh `credential` of `stream`, logged in as `login`
/// (`None`: not logged in any more). A refresh naming another business or
/// alias is refused at once (`FORBIDDEN`) and starts nothing.
#[allow(clippy::too_many_arguments)]
pub(super) fn start_refresh(
    hub: &Arc<Hub>,
    channel: &mut ServerChannel,
    login: Option<&StreamKey>,
    token: &str,
    stream: StreamId,
    biz: String,
    alias: String,
    credential: String,
) -> Option<BoxFuture<'static, RefreshDone>> {
    let Some(key) = login else {
        let _ = channel.reject_refresh(
            stream,
            ErrorCode::NotLoggedIn,
            "not logged in",
            Instant::now().into_std(),
        );
        return None;
    };
    if key.biz != biz || key.alias != alias {
        let _ = channel.reject_refresh(
            stream,
            ErrorCode::Forbidden,
            "a refresh keeps the login's business and alias",
            Instant::now().into_std(),
        );
        return None;
    }
    let request = LoginRequest {
        app: channel.client_hello().app_id.clone(),
        device_id: channel.client_hello().device_id.clone(),
        connection_token: token.to_owned(),
        biz,
        alias,
        credential,
    };
    let auth = hub.auth.clone();
    Some(Box::pin(async move {
        RefreshDone {
            stream,
            result: auth.oneshot(request).await,
        }
    }))
}

/// Answers a finished refresh on the machine; `device_verified` is the
/// login's binding (`None`: the login is gone). Returns the trace detail.
pub(super) fn finish_refresh(
    channel: &mut ServerChannel,
    device_verified: Option<bool>,
    done: RefreshDone,
) -> String {
    let now = Instant::now().into_std();
    let stream = done.stream;
    let outcome = match (done.result, device_verified) {
        (_, None) => Err(AuthError::new(ErrorCode::NotLoggedIn, "the login ended")),
        (Ok(grant), Some(verified)) if grant.device_verified != verified => Err(AuthError::new(
            ErrorCode::Forbidden,
            "a fresh credential must keep the login's device binding",
        )),
        (result, Some(_)) => result,
    };
    match outcome {
        Ok(grant) => {
            let _ = channel.accept_refresh(stream, expiry(&grant), now);
            format!(
                "stream={} refreshed expires_at_ms={}",
                stream.value(),
                grant.expires_at_ms
            )
        }
        Err(e) => {
            let _ = channel.reject_refresh(stream, e.code, e.message.clone(), now);
            format!(
                "stream={} refused {:?}: {}",
                stream.value(),
                e.code,
                e.message
            )
        }
    }
}

//! Credential refresh: shortly before the gateway would end the login
//! because its credential expires, the client asks the application's
//! [`CredentialProvider`] for a fresh one and refreshes the live login with
//! it, on the same connection and stream: nothing is redelivered or lost.
//! Without a provider (or when it has none to give) the application is told
//! with [`ClientEvent::CredentialExpiring`] and may call
//! [`PikeClient::set_credential`](super::PikeClient::set_credential).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use pike_channel::Event;

use super::Actor;
use crate::client::event::ClientEvent;

/// The longest a [`CredentialProvider`] may take; after it, the call counts
/// as having no credential to give.
pub const CREDENTIAL_PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a [`CredentialProvider`] is asked for: a fresh credential of `biz`
/// and `alias` (and the device's id, if the gateway binds credentials to
/// devices), because the current one expires at `expires_at_ms`.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct CredentialRequest {
    /// The business.
    pub biz: String,
    /// The alias.
    pub alias: String,
    /// When the current credential expires, unix milliseconds (the
    /// gateway's clock).
    pub expires_at_ms: u64,
}

/// Where a client gets fresh credentials: an async function of a
/// [`CredentialRequest`] returning the credential, or `None` when there is
/// none to give (the client then reports
/// [`ClientEvent::CredentialExpiring`]). Called at most once at a time per
/// client, and given [`CREDENTIAL_PROVIDER_TIMEOUT`] to answer.
///
/// ```
/// use pike_api::{ClientOptions, CredentialProvider};
///
/// let options = ClientOptions::new("chat", "u42", "first credential").credential_provider(
///     CredentialProvider::new(|request| async move {
///         // Ask the app's backend for a credential of request.alias ...
///         Some(format!("fresh credential for {}", request.alias))
///     }),
/// );
/// # drop(options);
/// ```
#[derive(Clone)]
pub struct CredentialProvider(
    Arc<dyn Fn(CredentialRequest) -> BoxFuture<'static, Option<String>> + Send + Sync>,
);

impl CredentialProvider {
    /// A provider calling `provide`.
    pub fn new<F, Fut>(provide: F) -> Self
    where
        F: Fn(CredentialRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<String>> + Send + 'static,
    {
        Self(Arc::new(move |request| provide(request).boxed()))
    }

    fn call(&self, request: CredentialRequest) -> BoxFuture<'static, Option<String>> {
        (self.0)(request)
    }
}

impl fmt::Debug for CredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialProvider(..)")
    }
}

/// Providers are equal when they are the same provider (clones).
impl PartialEq for CredentialProvider {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CredentialProvider {}

/// A provider call in flight: the expiry it is for, and its answer.
pub(super) type Pending = BoxFuture<'static, (u64, Option<String>)>;

/// The answer of the provider call in flight (pending while none runs).
pub(super) async fn next_fresh(pending: &mut Option<Pending>) -> (u64, Option<String>) {
    match pending {
        Some(call) => {
            let answer = call.await;
            *pending = None;
            answer
        }
        None => std::future::pending().await,
    }
}

impl Actor {
    /// A credential event of the current binding.
    pub(super) async fn on_credential_event(&mut self, event: Event) {
        match event {
            Event::CredentialExpiring { expires_at_ms, .. } => {
                let Some(provider) = self.options.credential_provider.clone() else {
                    self.emit(ClientEvent::CredentialExpiring { expires_at_ms })
                        .await;
                    return;
                };
                if self.fresh.is_some() {
                    return;
                }
                tracing::debug!(expires_at_ms, "asking for a fresh credential");
                let call = provider.call(CredentialRequest {
                    biz: self.options.biz.clone(),
                    alias: self.options.alias.clone(),
                    expires_at_ms,
                });
                self.fresh = Some(Box::pin(async move {
                    let fresh = tokio::time::timeout(CREDENTIAL_PROVIDER_TIMEOUT, call)
                        .await
                        .ok()
                        .flatten();
                    (expires_at_ms, fresh)
                }));
            }
            Event::CredentialRefreshed { expires_at_ms, .. } => {
                self.emit(ClientEvent::CredentialRefreshed { expires_at_ms })
                    .await;
            }
            Event::CredentialRefreshFailed { code, message, .. } => {
                self.emit(ClientEvent::CredentialRefreshFailed { code, message })
                    .await;
            }
            _ => {}
        }
    }

    /// The provider answered (`None`: no credential, or too late).
    pub(super) async fn on_fresh_credential(&mut self, expires_at_ms: u64, fresh: Option<String>) {
        match fresh {
            Some(credential) => self.use_credential(credential),
            None => {
                tracing::debug!("no fresh credential from the provider");
                self.emit(ClientEvent::CredentialExpiring { expires_at_ms })
                    .await;
            }
        }
    }

    /// Uses `credential` from now on: for the next logins, and as a refresh
    /// of every live login whose credential expires.
    pub(super) fn use_credential(&mut self, credential: String) {
        self.options.credential.clone_from(&credential);
        for binding in self.bindings.values() {
            let _ = binding
                .channel
                .refresh_credential(binding.stream, credential.clone());
        }
    }
}

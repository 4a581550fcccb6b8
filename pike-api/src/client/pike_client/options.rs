//! What a business is and what it gets back: [`ClientOptions`] (who, and a
//! saved [`Session`] to resume), [`SendReceipt`] and the [`Sending`] future
//! of one uplink message.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::CredentialProvider;
#[cfg(doc)]
use super::PikeClient;
#[cfg(doc)]
use crate::client::ClientEvent;
use crate::client::error::{Error, ErrorKind};

/// Who a business is: biz id, alias, credential, and optionally a saved
/// session to resume and where fresh credentials come from.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClientOptions {
    pub(crate) biz: String,
    pub(crate) alias: String,
    pub(crate) credential: String,
    pub(crate) route_id: String,
    pub(crate) last_delivered: u64,
    pub(crate) epoch: u64,
    pub(crate) credential_provider: Option<CredentialProvider>,
    pub(crate) send_only: bool,
}

impl ClientOptions {
    /// A business `biz` with identity `alias`, logging in with `credential`.
    pub fn new(
        biz: impl Into<String>,
        alias: impl Into<String>,
        credential: impl Into<String>,
    ) -> Self {
        Self {
            biz: biz.into(),
            alias: alias.into(),
            credential: credential.into(),
            route_id: String::new(),
            last_delivered: 0,
            epoch: 0,
            credential_provider: None,
            send_only: false,
        }
    }

    /// Where fresh credentials come from: shortly before the gateway would
    /// end the login because its credential expires (the gateway tells the
    /// expiry at login), the client asks `provider` and refreshes the live
    /// login with the answer, without interrupting it. Without a provider
    /// the client reports [`ClientEvent::CredentialExpiring`](crate::client::ClientEvent::CredentialExpiring) instead; the
    /// login ends (`OnStop` with `TOKEN_EXPIRED`) unless
    /// [`PikeClient::set_credential`](super::PikeClient::set_credential) is called in time.
    #[must_use]
    pub fn credential_provider(mut self, provider: CredentialProvider) -> Self {
        self.credential_provider = Some(provider);
        self
    }

    /// Logs in send-only: the client sends uplink (and gets its answers)
    /// but is no downlink recipient: the gateway delivers it no reliable
    /// backlog and no pushes (`Login.send_only` in `docs/protocol.md`). For
    /// tools that only send, so that they neither receive the alias's
    /// messages nor leave them unacknowledged.
    #[must_use]
    pub fn send_only(mut self) -> Self {
        self.send_only = true;
        self
    }

    /// Resumes a saved session (see [`PikeClient::session`](super::PikeClient::session)): the route id
    /// and the last reliable sequence delivered; the gateway redelivers from
    /// there and nothing at or below it is delivered again.
    #[must_use]
    pub fn resume(mut self, route_id: impl Into<String>, last_delivered: u64) -> Self {
        self.route_id = route_id.into();
        self.last_delivered = last_delivered;
        self
    }

    /// The log epoch of the saved session ([`Session::epoch`]): a gateway
    /// whose log has another epoch (it was recreated since) ignores the
    /// saved position, and the client starts its sequence numbers afresh.
    #[must_use]
    pub fn epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }
}

/// What the business needs to resume in a later process: pass it to
/// [`ClientOptions::resume`].
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Session {
    /// The route id in use (sticky uplink routing).
    pub route_id: String,
    /// The last reliable downlink sequence delivered to the business.
    pub last_delivered: u64,
    /// The epoch of the gateway's log that `last_delivered` belongs to
    /// (0: none known yet); pass it to [`ClientOptions::epoch`].
    pub epoch: u64,
}

/// A successful send: the message was accepted by the business backend.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct SendReceipt {
    /// The id [`PikeClient::send`](super::PikeClient::send) returned.
    pub id: u64,
    /// The idempotency key the gateway deduplicated by.
    pub key: String,
}

/// An uplink message on its way; resolves when the backend accepted it
/// (`Ok`) or it failed for good (`Err`). The same outcome is reported as
/// [`ClientEvent::OnSendSuccess`] or [`ClientEvent::OnSendFailure`].
/// Dropping it does not cancel the send.
#[must_use = "the outcome is only known by awaiting it (or from the events)"]
pub struct Sending {
    pub(super) id: u64,
    pub(super) key: String,
    pub(super) rx: oneshot::Receiver<Result<SendReceipt, Error>>,
}

impl Sending {
    /// The send's id (as in the events).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The idempotency key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Future for Sending {
    type Output = Result<SendReceipt, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        Pin::new(&mut this.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::ChannelClosed,
                    "the client was dropped",
                ))
            })
        })
    }
}

impl fmt::Debug for Sending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sending")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

//! Credential expiry and refresh on the server side.
//!
//! A login accepted with an expiry
//! ([`accept_login_until`](ServerChannel::accept_login_until)) ends at that
//! instant: the machine drops the stream, tells the client with an `ERROR`
//! frame `TOKEN_EXPIRED` naming the stream, and reports
//! [`ServerEvent::LoginExpired`]. Before that the client may refresh its
//! credential by sending `LOGIN` again on the same, still active stream: the
//! machine reports [`ServerEvent::CredentialRefresh`], and the gateway
//! answers with [`accept_refresh`](ServerChannel::accept_refresh) (a
//! `LOGIN_RESULT` with the new expiry; the login goes on untouched: no
//! message is redelivered or lost) or
//! [`reject_refresh`](ServerChannel::reject_refresh) (the login keeps its
//! old expiry).

use std::time::{Duration, Instant};

use proto::channel::LoginResult;
use proto::tunnel::ErrorCode;

use super::{ServerChannel, ServerEvent};
use crate::error::ReplyError;
use crate::frame_types;
use crate::ids::StreamId;
use crate::message::Message;
use crate::timer::ServerTimer;

/// Expiries further away than this are held at this distance (ten years):
/// `Instant` arithmetic has no room for `u64::MAX` milliseconds.
const FARTHEST: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// When a login's credential expires: the instant the server machine ends
/// the login (on the gateway's clock) and the same moment as wall-clock
/// time, which the client gets in its login result.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct CredentialExpiry {
    /// The machine ends the login at this instant.
    pub at: Instant,
    /// The same moment, unix milliseconds (sent to the client).
    pub unix_ms: u64,
}

impl CredentialExpiry {
    /// The expiry at wall-clock `unix_ms`, seen at `now` whose wall-clock
    /// time is `now_unix_ms`. A moment already past expires at `now`; one
    /// more than ten years away is held at ten years.
    pub fn at_unix_ms(unix_ms: u64, now: Instant, now_unix_ms: u64) -> Self {
        let left = Duration::from_millis(unix_ms.saturating_sub(now_unix_ms)).min(FARTHEST);
        Self {
            at: now.checked_add(left).unwrap_or(now),
            unix_ms,
        }
    }
}

impl ServerChannel {
    /// A `LOGIN` on a stream that is logged in with an expiring credential:
    /// a refresh. Returns `false` when it is not one (the caller answers
    /// `ALREADY_LOGGED_IN`).
    pub(super) fn handle_refresh(
        &mut self,
        stream: StreamId,
        biz: String,
        alias: String,
        credential: String,
    ) -> bool {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return false;
        };
        if !entry.is_active() || entry.expiry.is_none() || entry.refreshing {
            return false;
        }
        entry.refreshing = true;
        self.events.push_back(ServerEvent::CredentialRefresh {
            stream,
            biz,
            alias,
            credential,
        });
        true
    }

    /// Accepts a [`ServerEvent::CredentialRefresh`]: the login now expires
    /// at `expiry` (never, with `None`), and the client is told so in a
    /// `LOGIN_RESULT`.
    pub fn accept_refresh(
        &mut self,
        stream: StreamId,
        expiry: Option<CredentialExpiry>,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        let entry = self.refreshing_stream(stream)?;
        entry.refreshing = false;
        entry.expiry = expiry.map(|e| e.at);
        let result = LoginResult {
            stream: stream.value(),
            code: ErrorCode::Unspecified.into(),
            expires_at_ms: expiry.map_or(0, |e| e.unix_ms),
            ..LoginResult::default()
        };
        self.transmit(&Message::LoginResult(result));
        self.arm_login_expiry();
        Ok(())
    }

    /// Refuses a [`ServerEvent::CredentialRefresh`] with `code`: the client
    /// gets a `LOGIN_RESULT` with it, and the login keeps its old expiry.
    pub fn reject_refresh(
        &mut self,
        stream: StreamId,
        code: ErrorCode,
        message: impl Into<String>,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        let entry = self.refreshing_stream(stream)?;
        entry.refreshing = false;
        let result = LoginResult {
            stream: stream.value(),
            code: code.into(),
            message: message.into(),
            ..LoginResult::default()
        };
        self.transmit(&Message::LoginResult(result));
        Ok(())
    }

    /// When the login of `stream` expires, if it is logged in with an
    /// expiring credential.
    pub fn login_expiry(&self, stream: StreamId) -> Option<Instant> {
        self.streams
            .get(&stream)
            .filter(|s| s.is_active())
            .and_then(|s| s.expiry)
    }

    /// Ends the logins whose credential expired at or before `now`.
    pub(super) fn expire_logins(&mut self, now: Instant) {
        let expired: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.is_active() && s.expiry.is_some_and(|at| at <= now))
            .map(|(id, _)| id)
            .collect();
        for stream in expired {
            tracing::debug!(%stream, "login credential expired");
            self.remove_stream(stream);
            self.error_frame(
                ErrorCode::TokenExpired,
                "the login's credential expired; log in again with a fresh one",
                stream,
                frame_types::LOGIN,
            );
            self.events.push_back(ServerEvent::LoginExpired { stream });
        }
        self.arm_login_expiry();
    }

    /// Arms the expiry timer for the earliest expiring login.
    pub(super) fn arm_login_expiry(&mut self) {
        if self.is_closed() {
            return;
        }
        let next = self
            .streams
            .iter()
            .filter(|(_, s)| s.is_active())
            .filter_map(|(_, s)| s.expiry)
            .min();
        self.timers.set_or_stop(ServerTimer::LoginExpiry, next);
    }

    fn refreshing_stream(
        &mut self,
        stream: StreamId,
    ) -> Result<&mut super::stream::ServerStream, ReplyError> {
        let entry = self.active_stream(stream)?;
        if !entry.refreshing {
            return Err(ReplyError::NoPendingLogin(stream));
        }
        Ok(entry)
    }
}

//! Credential expiry and refresh on the client side.
//!
//! A login result may carry the credential's expiry (`expires_at_ms`, the
//! server's wall clock). The client places it on its own clock through the
//! server time of the hello, and shortly before it
//! ([`ClientConfig::credential_refresh_margin`](crate::ClientConfig::credential_refresh_margin),
//! at most half the time left) asks the application for a fresh credential
//! with [`Event::CredentialExpiring`]. The application answers with
//! [`refresh_credential`](ClientChannel::refresh_credential): the client
//! sends `LOGIN` again on the same, active stream, and the server's
//! `LOGIN_RESULT` moves the expiry ([`Event::CredentialRefreshed`]) or
//! refuses the credential ([`Event::CredentialRefreshFailed`]; the login
//! goes on until its old expiry). The login itself is never interrupted: no
//! message is lost or delivered twice. Without a refresh the server ends
//! the login at expiry with `TOKEN_EXPIRED` ([`Event::LoginFailed`]).

use std::time::{Duration, Instant};

use proto::channel::{Login, LoginResult};
use proto::tunnel::ErrorCode;

use super::login::LoginState;
use super::{ClientChannel, Event};
use crate::error::UnknownStream;
use crate::ids::StreamId;
use crate::message::Message;

/// Expiries further away than this are held at this distance (ten years).
const FARTHEST: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A login's credential expiry as the client schedules it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct Expiry {
    /// The server's wall-clock expiry, unix milliseconds.
    pub(super) unix_ms: u64,
    /// When the application is asked for a fresh credential (`None` when
    /// the server's clock is unknown: the hello carried no time).
    pub(super) ask_at: Option<Instant>,
}

/// Where a login's credential refresh stands.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(super) enum Refresh {
    /// Nothing to do (or not due yet).
    #[default]
    Idle,
    /// [`Event::CredentialExpiring`] was emitted; waiting for the app.
    Asked,
    /// A fresh credential arrived while the login was in flight: sent as a
    /// refresh once the login is accepted.
    Queued,
    /// The refresh was sent; waiting for its result. `again`: a newer
    /// credential arrived meanwhile and goes out after the result.
    Sent {
        /// Send the (newer) credential again after the result.
        again: bool,
    },
}

impl Expiry {
    /// The expiry `unix_ms` told by the server whose wall clock reads
    /// `server_now_ms` at `now` (if known), asked for `margin` ahead (at
    /// most half the time left).
    pub(super) fn new(
        unix_ms: u64,
        server_now_ms: Option<u64>,
        now: Instant,
        margin: Duration,
    ) -> Option<Self> {
        if unix_ms == 0 {
            return None;
        }
        let ask_at = server_now_ms.map(|server_now| {
            let left = Duration::from_millis(unix_ms.saturating_sub(server_now)).min(FARTHEST);
            let lead = margin.min(left / 2);
            now.checked_add(left - lead).unwrap_or(now)
        });
        Some(Self { unix_ms, ask_at })
    }
}

impl ClientChannel {
    /// Replaces the credential of `stream` with a fresh one (e.g. after
    /// [`Event::CredentialExpiring`]). A login accepted with an expiry is
    /// refreshed on the server at once, without interrupting it; otherwise
    /// the credential is used by the next (re-)login.
    pub fn refresh_credential(
        &mut self,
        stream: StreamId,
        credential: impl Into<String>,
        now: Instant,
    ) -> Result<(), UnknownStream> {
        let connected = self.link.is_connected();
        let entry = self.logins.get_mut(&stream).ok_or(UnknownStream(stream))?;
        entry.params.credential = credential.into();
        match (entry.state, entry.refresh) {
            (LoginState::Active, Refresh::Sent { .. }) => {
                entry.refresh = Refresh::Sent { again: true };
            }
            (LoginState::Active, _) if connected && entry.expiry.is_some() => {
                self.send_refresh(stream, now);
            }
            (LoginState::Awaiting, _) => entry.refresh = Refresh::Queued,
            _ => entry.refresh = Refresh::Idle,
        }
        self.update_timers();
        Ok(())
    }

    /// The credential expiry of `stream`'s login as the server last told it
    /// (unix milliseconds), if it expires.
    pub fn credential_expires_at_ms(&self, stream: StreamId) -> Option<u64> {
        self.logins
            .get(&stream)
            .and_then(|l| l.expiry)
            .map(|e| e.unix_ms)
    }

    /// The server's wall-clock time at `now`, from the hello's server time.
    pub(super) fn server_now_ms(&self, now: Instant) -> Option<u64> {
        let (since, server_ms) = self.link.server_clock()?;
        let elapsed = u64::try_from(now.saturating_duration_since(since).as_millis()).ok()?;
        Some(server_ms.saturating_add(elapsed))
    }

    /// A login was accepted with `expires_at_ms`: schedule the refresh, and
    /// send a fresh credential that arrived while the login was in flight.
    pub(super) fn on_login_expiry(&mut self, stream: StreamId, expires_at_ms: u64, now: Instant) {
        let expiry = Expiry::new(
            expires_at_ms,
            self.server_now_ms(now),
            now,
            self.config.credential_refresh_margin,
        );
        let Some(entry) = self.logins.get_mut(&stream) else {
            return;
        };
        entry.expiry = expiry;
        let queued = entry.refresh == Refresh::Queued;
        entry.refresh = Refresh::Idle;
        if queued && expiry.is_some() {
            self.send_refresh(stream, now);
        }
    }

    /// The answer to a refresh (a login result on an active stream).
    pub(super) fn handle_refresh_result(&mut self, m: LoginResult, now: Instant) {
        let stream = StreamId::new(m.stream);
        let server_now = self.server_now_ms(now);
        let margin = self.config.credential_refresh_margin;
        let Some(entry) = self.logins.get_mut(&stream) else {
            return;
        };
        let again = matches!(entry.refresh, Refresh::Sent { again: true });
        let code = m.code();
        if code == ErrorCode::Unspecified {
            entry.expiry = Expiry::new(m.expires_at_ms, server_now, now, margin);
            entry.refresh = Refresh::Idle;
            tracing::debug!(%stream, expires_at_ms = m.expires_at_ms, "credential refreshed");
            self.events.push_back(Event::CredentialRefreshed {
                stream,
                expires_at_ms: m.expires_at_ms,
            });
        } else {
            // No more asking: the application knows, and may refresh again.
            entry.refresh = Refresh::Asked;
            tracing::debug!(%stream, ?code, "credential refresh refused");
            self.events.push_back(Event::CredentialRefreshFailed {
                stream,
                code,
                message: m.message,
            });
        }
        if again && self.logins.get(&stream).is_some_and(|l| l.expiry.is_some()) {
            self.send_refresh(stream, now);
        }
    }

    /// Asks the application for fresh credentials that are due.
    pub(super) fn on_credential_timer(&mut self, now: Instant) {
        if !self.link.is_connected() {
            return;
        }
        for (&stream, entry) in &mut self.logins {
            if entry.state != LoginState::Active || entry.refresh != Refresh::Idle {
                continue;
            }
            let Some(expiry) = entry.expiry else {
                continue;
            };
            if expiry.ask_at.is_some_and(|at| at <= now) {
                entry.refresh = Refresh::Asked;
                tracing::debug!(%stream, expires_at_ms = expiry.unix_ms, "credential expiring");
                self.events.push_back(Event::CredentialExpiring {
                    stream,
                    expires_at_ms: expiry.unix_ms,
                });
            }
        }
    }

    /// The earliest moment the application must be asked for a credential.
    pub(super) fn next_credential_ask(&self) -> Option<Instant> {
        self.logins
            .values()
            .filter(|l| l.state == LoginState::Active && l.refresh == Refresh::Idle)
            .filter_map(|l| l.expiry.and_then(|e| e.ask_at))
            .min()
    }

    /// The server ended a login because its credential expired.
    pub(super) fn on_login_expired(&mut self, stream: StreamId, message: String) {
        tracing::debug!(%stream, "login expired");
        self.remove_login(stream);
        self.events.push_back(Event::LoginFailed {
            stream,
            code: ErrorCode::TokenExpired,
            message,
        });
    }

    /// Sends `stream`'s current credential as a refresh (a `LOGIN` on the
    /// active stream).
    fn send_refresh(&mut self, stream: StreamId, now: Instant) {
        let Some(entry) = self.logins.get_mut(&stream) else {
            return;
        };
        entry.refresh = Refresh::Sent { again: false };
        let login = Login {
            stream: stream.value(),
            biz: entry.params.biz.clone(),
            alias: entry.params.alias.clone(),
            credential: entry.params.credential.clone(),
            ..Login::default()
        };
        self.transmit(&Message::Login(login), now);
    }
}

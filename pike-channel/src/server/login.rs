//! Logins, logouts and tags on the server side.

use std::time::Instant;

use proto::channel::{Login, LoginResult, Logout, Tags, TagsResult};
use proto::tunnel::ErrorCode;

use super::credential::CredentialExpiry;
use super::limits::{
    MAX_CREDENTIAL_LEN, MAX_ROUTE_ID_LEN, MAX_TAG_LEN, MAX_TAGS_PER_REQUEST, check_alias,
    check_biz, check_id, check_opaque,
};
use super::stream::{ServerStream, StreamPhase};
use super::{ServerChannel, ServerEvent};
use crate::error::ReplyError;
use crate::frame_types;
use crate::ids::StreamId;
use crate::message::Message;

impl ServerChannel {
    pub(super) fn handle_login(&mut self, m: Login, _now: Instant) {
        let stream = StreamId::new(m.stream);
        if self.streams.contains_key(&stream) {
            if self.handle_refresh(stream, m.biz, m.alias, m.credential) {
                return;
            }
            self.error_frame(
                ErrorCode::AlreadyLoggedIn,
                "stream is already logged in",
                stream,
                frame_types::LOGIN,
            );
            return;
        }
        if let Err(message) = check_login(&m) {
            self.refuse_login(stream, ErrorCode::InvalidArgument, message);
            return;
        }
        let max = self.config.max_logins;
        if self.streams.len() >= max {
            self.refuse_login(
                stream,
                ErrorCode::LimitExceeded,
                format!("at most {max} logins per connection; log one out first"),
            );
            return;
        }
        self.streams.insert(stream, ServerStream::new());
        self.events.push_back(ServerEvent::LoginRequested {
            stream,
            biz: m.biz,
            alias: m.alias,
            credential: m.credential,
            route_id: m.route_id,
            last_acked_seq: m.last_acked_seq,
            epoch: m.epoch,
            send_only: m.send_only,
        });
    }

    /// A logout ends a logged-in stream. A logout of a stream whose login
    /// is still pending is ignored: every `LOGIN` gets exactly one
    /// `LOGIN_RESULT`, and a client that gave the login up answers an
    /// accepting result with `LOGOUT` (docs/protocol.md, "Login").
    pub(super) fn handle_logout(&mut self, m: Logout) {
        let stream = StreamId::new(m.stream);
        if !self
            .streams
            .get(&stream)
            .is_some_and(ServerStream::is_active)
        {
            return;
        }
        if self.remove_stream(stream) {
            self.events.push_back(ServerEvent::LoggedOut { stream });
        }
    }

    /// Forgets `stream` and what it holds (its uplink bytes in flight, its
    /// expiry timer); returns whether it was there.
    pub(super) fn remove_stream(&mut self, stream: StreamId) -> bool {
        let Some(gone) = self.streams.remove(&stream) else {
            return false;
        };
        self.uplink_pending_bytes = self
            .uplink_pending_bytes
            .saturating_sub(gone.uplink_pending_bytes());
        if gone.expiry.is_some() {
            self.arm_login_expiry();
        }
        true
    }

    /// Ends the logged-in `stream` from the server's side: the client gets
    /// an `ERROR` with `code` naming the stream (for `REPLACED`: the same
    /// device logged in to this business and alias on a newer connection),
    /// the connection and its other logins go on, and the gateway gets
    /// [`ServerEvent::LoginEnded`] to free what the login holds. Returns
    /// false (and does nothing) when `stream` is not logged in.
    pub fn end_login(
        &mut self,
        stream: StreamId,
        code: ErrorCode,
        message: impl Into<String>,
        _now: Instant,
    ) -> bool {
        if self.is_closed()
            || !self
                .streams
                .get(&stream)
                .is_some_and(ServerStream::is_active)
        {
            return false;
        }
        self.remove_stream(stream);
        self.error_frame(code, &message.into(), stream, frame_types::LOGIN);
        self.events
            .push_back(ServerEvent::LoginEnded { stream, code });
        true
    }

    pub(super) fn handle_tags(&mut self, m: Tags, _now: Instant) {
        let stream = StreamId::new(m.stream);
        if !self.require_active(stream, frame_types::TAGS) {
            return;
        }
        if let Err(message) = check_tags(&m) {
            let result = TagsResult {
                stream: m.stream,
                request_id: m.request_id,
                code: ErrorCode::InvalidArgument.into(),
                message,
                tags: Vec::new(),
            };
            self.transmit(&Message::TagsResult(result));
            return;
        }
        self.events.push_back(ServerEvent::TagsRequested {
            stream,
            request_id: m.request_id,
            bind: m.bind,
            unbind: m.unbind,
        });
    }

    /// Accepts a pending login: the client stores `route_id` for sticky
    /// routing; `last_seq` is the last sequence assigned on the stream (0 if
    /// none). Push the messages after the client's `last_acked_seq` next.
    /// The login never expires; see
    /// [`accept_login_until`](Self::accept_login_until).
    pub fn accept_login(
        &mut self,
        stream: StreamId,
        route_id: impl Into<String>,
        last_seq: u64,
        now: Instant,
    ) -> Result<(), ReplyError> {
        self.accept_login_until(stream, route_id, last_seq, None, now)
    }

    /// Accepts a pending login like [`accept_login`](Self::accept_login),
    /// with the credential's `expiry`: the client learns it from the login
    /// result, and the login ends at `expiry.at` (an `ERROR`
    /// `TOKEN_EXPIRED` for the stream, then [`ServerEvent::LoginExpired`])
    /// unless the client refreshes its credential before
    /// ([`ServerEvent::CredentialRefresh`]).
    pub fn accept_login_until(
        &mut self,
        stream: StreamId,
        route_id: impl Into<String>,
        last_seq: u64,
        expiry: Option<CredentialExpiry>,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        let entry = self.pending_login(stream)?;
        entry.phase = StreamPhase::Active;
        entry.expiry = expiry.map(|e| e.at);
        self.timers.stop(crate::timer::ServerTimer::Login);
        let result = LoginResult {
            stream: stream.value(),
            code: ErrorCode::Unspecified.into(),
            route_id: route_id.into(),
            last_seq,
            uplink_window: self.config.uplink_window,
            expires_at_ms: expiry.map_or(0, |e| e.unix_ms),
            epoch: self.config.log_epoch,
            ..LoginResult::default()
        };
        self.transmit(&Message::LoginResult(result));
        if expiry.is_some() {
            self.arm_login_expiry();
        }
        Ok(())
    }

    /// Refuses a pending login with `code` (AUTH_FAILED, TOKEN_EXPIRED,
    /// FORBIDDEN make the client give up; other codes make it retry).
    pub fn reject_login(
        &mut self,
        stream: StreamId,
        code: ErrorCode,
        message: impl Into<String>,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        self.pending_login(stream)?;
        self.streams.remove(&stream);
        self.refuse_login(stream, code, message.into());
        Ok(())
    }

    /// Sends a failed login result (the stream holds no state).
    fn refuse_login(&mut self, stream: StreamId, code: ErrorCode, message: String) {
        let result = LoginResult {
            stream: stream.value(),
            code: code.into(),
            message,
            ..LoginResult::default()
        };
        self.transmit(&Message::LoginResult(result));
    }

    /// Answers a [`ServerEvent::TagsRequested`]: `code` `Unspecified` with
    /// every tag bound after the change, or an error code.
    pub fn tags_result(
        &mut self,
        stream: StreamId,
        request_id: u32,
        code: ErrorCode,
        message: impl Into<String>,
        tags: Vec<String>,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        self.active_stream(stream)?;
        let result = TagsResult {
            stream: stream.value(),
            request_id,
            code: code.into(),
            message: message.into(),
            tags,
        };
        self.transmit(&Message::TagsResult(result));
        Ok(())
    }

    fn pending_login(&mut self, stream: StreamId) -> Result<&mut ServerStream, ReplyError> {
        if self.is_closed() {
            return Err(ReplyError::Closed);
        }
        self.streams
            .get_mut(&stream)
            .filter(|s| s.phase == StreamPhase::Pending)
            .ok_or(ReplyError::NoPendingLogin(stream))
    }

    pub(super) fn active_stream(
        &mut self,
        stream: StreamId,
    ) -> Result<&mut ServerStream, ReplyError> {
        if self.is_closed() {
            return Err(ReplyError::Closed);
        }
        self.streams
            .get_mut(&stream)
            .filter(|s| s.is_active())
            .ok_or(ReplyError::NotLoggedIn(stream))
    }
}

/// Checks a login's fields against [`limits`](super::limits).
fn check_login(m: &Login) -> Result<(), String> {
    check_biz(&m.biz)?;
    check_alias(&m.alias)?;
    check_opaque("credential", &m.credential, MAX_CREDENTIAL_LEN)?;
    check_opaque("route_id", &m.route_id, MAX_ROUTE_ID_LEN)
}

/// Checks a tag request against [`limits`](super::limits).
fn check_tags(m: &Tags) -> Result<(), String> {
    let count = m.bind.len() + m.unbind.len();
    if count > MAX_TAGS_PER_REQUEST {
        return Err(format!(
            "the request names {count} tags, more than the limit of {MAX_TAGS_PER_REQUEST}"
        ));
    }
    m.bind
        .iter()
        .chain(&m.unbind)
        .try_for_each(|tag| check_id("tag", tag, MAX_TAG_LEN))
}

//! Business logins sharing the connection: login/logout, the sticky route id
//! (seed 6.2.1: stored from the result, reported on every re-login), tags,
//! and re-login after every reconnect with the last delivered downlink
//! position.

use std::time::Instant;

use proto::channel::{Login, LoginResult, Logout, Tags, TagsResult};
use proto::tunnel::ErrorCode;

use super::credential::{Expiry, Refresh};
use super::downlink::DownlinkReceiver;
use super::uplink::UplinkQueue;
use super::{ClientChannel, Event, SendFailureReason};
use crate::error::UnknownStream;
use crate::ids::StreamId;
use crate::message::Message;

/// What a business logs in with.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LoginParams {
    /// Business id, e.g. `"chat"`.
    pub biz: String,
    /// The business's identity (push id), e.g. `"u42"`.
    pub alias: String,
    /// Signed credential for (app, biz, alias).
    pub credential: String,
    /// A route id saved from an earlier session (sticky uplink routing);
    /// empty for none.
    pub route_id: String,
    /// The downlink position saved from an earlier session (0 for none).
    pub last_acked_seq: u64,
    /// A send-only login: it sends uplink but is no downlink recipient
    /// (`Login.send_only`, see `docs/protocol.md`).
    pub send_only: bool,
    /// The epoch of the server's downlink log that `last_acked_seq`
    /// belongs to (0: unknown), from [`Event::LoginOk`]. A server whose log
    /// has another epoch ignores `last_acked_seq`.
    pub epoch: u64,
}

impl LoginParams {
    /// Parameters for a first login.
    pub fn new(
        biz: impl Into<String>,
        alias: impl Into<String>,
        credential: impl Into<String>,
    ) -> Self {
        Self {
            biz: biz.into(),
            alias: alias.into(),
            credential: credential.into(),
            ..Self::default()
        }
    }

    /// Resumes a saved session: route id and downlink position.
    #[must_use]
    pub fn resume(mut self, route_id: impl Into<String>, last_acked_seq: u64) -> Self {
        self.route_id = route_id.into();
        self.last_acked_seq = last_acked_seq;
        self
    }

    /// The log epoch the saved position belongs to ([`Event::LoginOk`]'s
    /// `epoch`, saved beside it).
    #[must_use]
    pub fn in_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// Makes this a send-only login: the server delivers it nothing (no
    /// reliable backlog, no pushes), so a tool that only sends does not
    /// receive, and leave unacknowledged, the alias's messages.
    #[must_use]
    pub fn send_only(mut self) -> Self {
        self.send_only = true;
        self
    }
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum LoginState {
    /// Not sent on the current connection (or no connection).
    Offline,
    /// Sent; waiting for the result.
    Awaiting,
    /// Accepted on the current connection.
    Active,
    /// Refused with a transient error; sent again at this time.
    RetryAt(Instant),
}

/// One business login and its per-stream state.
#[derive(Debug)]
pub(super) struct LoginEntry {
    pub(super) params: LoginParams,
    pub(super) state: LoginState,
    pub(super) downlink: DownlinkReceiver,
    pub(super) uplink: UplinkQueue,
    /// Tag requests not answered yet (sent again after a re-login).
    pub(super) tags: Vec<Tags>,
    /// The credential's expiry on the current connection, if it expires.
    pub(super) expiry: Option<Expiry>,
    /// Where the credential refresh stands.
    pub(super) refresh: Refresh,
}

impl LoginEntry {
    pub(super) fn is_active(&self) -> bool {
        self.state == LoginState::Active
    }

    pub(super) fn retry_at(&self) -> Option<Instant> {
        match self.state {
            LoginState::RetryAt(at) => Some(at),
            _ => None,
        }
    }

    pub(super) fn on_link_lost(&mut self) {
        self.state = LoginState::Offline;
        // The re-login carries the newest credential and learns its expiry.
        self.expiry = None;
        self.refresh = Refresh::Idle;
        self.downlink.on_link_lost();
        self.uplink.on_link_lost();
    }
}

/// Codes after which logging in again cannot help: the login is removed.
fn is_fatal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::AuthFailed
            | ErrorCode::TokenExpired
            | ErrorCode::Forbidden
            | ErrorCode::InvalidArgument
            | ErrorCode::UnknownApp
            | ErrorCode::LimitExceeded
    )
}

impl ClientChannel {
    /// Adds a business login; it is sent now if connected, else on connect,
    /// and again after every reconnect. Returns its stream id (1, 2, 3, ...,
    /// never reused by this channel). A channel the server refused for good
    /// ([`Event::Refused`]) dials again for it.
    pub fn login(&mut self, params: LoginParams, now: Instant) -> StreamId {
        let stream = StreamId::new(self.next_stream);
        self.next_stream += 1;
        let entry = LoginEntry {
            downlink: DownlinkReceiver::new(params.last_acked_seq),
            uplink: UplinkQueue::new(self.rng.u64(..)),
            params,
            state: LoginState::Offline,
            tags: Vec::new(),
            expiry: None,
            refresh: Refresh::Idle,
        };
        self.logins.insert(stream, entry);
        if self.link.is_connected() {
            self.send_login(stream, now);
        } else if self.is_refused() {
            self.start(now);
        }
        self.update_timers();
        stream
    }

    /// Removes a business login: tells the server if connected, fails its
    /// pending sends ([`SendFailureReason::LoginGone`]), forgets its rooms,
    /// and emits [`Event::LoggedOut`] after those failures.
    pub fn logout(&mut self, stream: StreamId, now: Instant) -> Result<(), UnknownStream> {
        let entry = self.logins.get(&stream).ok_or(UnknownStream(stream))?;
        if self.link.is_connected()
            && matches!(entry.state, LoginState::Awaiting | LoginState::Active)
        {
            self.transmit(
                &Message::Logout(Logout {
                    stream: stream.value(),
                }),
                now,
            );
        }
        self.remove_login(stream);
        self.events.push_back(Event::LoggedOut { stream });
        self.update_timers();
        Ok(())
    }

    /// Replaces the credential used by the next (re-)login, without
    /// refreshing a live login (see
    /// [`refresh_credential`](Self::refresh_credential)).
    pub fn set_credential(
        &mut self,
        stream: StreamId,
        credential: impl Into<String>,
    ) -> Result<(), UnknownStream> {
        let entry = self.logins.get_mut(&stream).ok_or(UnknownStream(stream))?;
        entry.params.credential = credential.into();
        Ok(())
    }

    /// Binds and unbinds tags of a business's identity; answered by
    /// [`Event::TagsResult`] with the returned request id. Sent once the
    /// login is active; re-sent after a re-login until answered.
    pub fn update_tags(
        &mut self,
        stream: StreamId,
        bind: Vec<String>,
        unbind: Vec<String>,
        now: Instant,
    ) -> Result<u32, UnknownStream> {
        let request_id = self.next_request_id;
        let entry = self.logins.get_mut(&stream).ok_or(UnknownStream(stream))?;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        let tags = Tags {
            stream: stream.value(),
            request_id,
            bind,
            unbind,
        };
        entry.tags.push(tags.clone());
        if entry.is_active() && self.link.is_connected() {
            self.transmit(&Message::Tags(tags), now);
        }
        self.update_timers();
        Ok(request_id)
    }

    /// The streams currently configured (whatever their login state).
    pub fn streams(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.logins.keys().copied()
    }

    /// Whether `stream`'s login is accepted on the current connection.
    pub fn is_logged_in(&self, stream: StreamId) -> bool {
        self.link.is_connected() && self.logins.get(&stream).is_some_and(LoginEntry::is_active)
    }

    /// The log epoch stored for `stream` (0 before a server told one).
    pub fn epoch(&self, stream: StreamId) -> Option<u64> {
        self.logins.get(&stream).map(|l| l.params.epoch)
    }

    /// The route id stored for `stream` (empty before the first result).
    pub fn route_id(&self, stream: StreamId) -> Option<&str> {
        self.logins.get(&stream).map(|l| l.params.route_id.as_str())
    }

    /// Sends the login of every stream (after a connect).
    pub(super) fn login_all(&mut self, now: Instant) {
        let streams: Vec<StreamId> = self.logins.keys().copied().collect();
        for stream in streams {
            self.send_login(stream, now);
        }
    }

    /// Sends `stream`'s login with its route id and downlink position.
    pub(super) fn send_login(&mut self, stream: StreamId, now: Instant) {
        let Some(entry) = self.logins.get_mut(&stream) else {
            return;
        };
        entry.state = LoginState::Awaiting;
        let last_acked_seq = entry.downlink.on_login_sent();
        let login = Login {
            stream: stream.value(),
            biz: entry.params.biz.clone(),
            alias: entry.params.alias.clone(),
            credential: entry.params.credential.clone(),
            route_id: entry.params.route_id.clone(),
            last_acked_seq,
            send_only: entry.params.send_only,
            epoch: entry.params.epoch,
        };
        self.transmit(&Message::Login(login), now);
    }

    pub(super) fn handle_login_result(&mut self, m: LoginResult, now: Instant) {
        let stream = StreamId::new(m.stream);
        let Some(entry) = self.logins.get_mut(&stream) else {
            self.stats.unknown_target_frames += 1;
            if m.code() == ErrorCode::Unspecified {
                // A login the client gave up (say a refresh that crossed the
                // server's expiry and logged in anew): end it.
                self.transmit(
                    &Message::Logout(Logout {
                        stream: stream.value(),
                    }),
                    now,
                );
            }
            return;
        };
        if entry.state == LoginState::Active && matches!(entry.refresh, Refresh::Sent { .. }) {
            self.handle_refresh_result(m, now);
            return;
        }
        if entry.state != LoginState::Awaiting {
            return;
        }
        let code = m.code();
        if code == ErrorCode::Unspecified {
            entry.state = LoginState::Active;
            entry.uplink.server_window = m.uplink_window;
            if !m.route_id.is_empty() {
                entry.params.route_id.clone_from(&m.route_id);
            }
            // Another epoch: the log was recreated, its sequence numbers
            // start afresh and the server ignored our position.
            let positions_reset =
                m.epoch != 0 && entry.params.epoch != 0 && m.epoch != entry.params.epoch;
            if positions_reset {
                entry.downlink = DownlinkReceiver::new(0);
            }
            if m.epoch != 0 {
                entry.params.epoch = m.epoch;
            }
            let route_id = entry.params.route_id.clone();
            let tags = entry.tags.clone();
            tracing::debug!(%stream, %route_id, epoch = m.epoch, positions_reset, "login ok");
            self.events.push_back(Event::LoginOk {
                stream,
                route_id,
                epoch: entry.params.epoch,
                positions_reset,
            });
            for request in tags {
                self.transmit(&Message::Tags(request), now);
            }
            self.pump_uplink(stream, now);
            self.rejoin_rooms(stream, now);
            self.on_login_expiry(stream, m.expires_at_ms, now);
        } else if is_fatal(code) {
            tracing::debug!(%stream, ?code, "login refused");
            self.remove_login(stream);
            self.events.push_back(Event::LoginFailed {
                stream,
                code,
                message: m.message,
            });
        } else {
            let delay = self.config.login_retry_delay;
            entry.state = LoginState::RetryAt(now + delay);
            self.events.push_back(Event::LoginRetry {
                stream,
                code,
                message: m.message,
                delay,
            });
        }
    }

    pub(super) fn on_login_retry_timer(&mut self, now: Instant) {
        if !self.link.is_connected() {
            return;
        }
        let due: Vec<StreamId> = self
            .logins
            .iter()
            .filter(|(_, l)| l.retry_at().is_some_and(|at| at <= now))
            .map(|(s, _)| *s)
            .collect();
        for stream in due {
            self.send_login(stream, now);
        }
    }

    pub(super) fn handle_tags_result(&mut self, m: TagsResult) {
        let stream = StreamId::new(m.stream);
        let Some(entry) = self.logins.get_mut(&stream) else {
            self.stats.unknown_target_frames += 1;
            return;
        };
        let before = entry.tags.len();
        entry.tags.retain(|t| t.request_id != m.request_id);
        if entry.tags.len() == before {
            return; // an answer to a request answered already
        }
        let code = m.code();
        self.events.push_back(Event::TagsResult {
            stream,
            request_id: m.request_id,
            code,
            message: m.message,
            tags: m.tags,
        });
    }

    /// Forgets a login: pending sends fail, rooms are dropped.
    pub(super) fn remove_login(&mut self, stream: StreamId) {
        let Some(mut entry) = self.logins.remove(&stream) else {
            return;
        };
        for (id, seq) in entry.uplink.drain() {
            self.events.push_back(Event::SendFailure {
                stream,
                id,
                seq,
                reason: SendFailureReason::LoginGone,
            });
        }
        self.rooms.retain(|(s, _), _| *s != stream);
    }
}

//! Dispatch: what the channel machine reports and what background work
//! finished, each turned into the connection's next step.

use std::sync::Arc;

use pike_channel::ServerEvent;
use proto::tunnel::{Compression, ErrorCode};
use tokio::time::Instant;

use super::{Conn, Work, now};
use crate::server::hub::Hub;
use crate::server::login_expiry;
use crate::server::registry::{ConnId, ConnShared};
use crate::server::room::{ConnRooms, JoinOutcome};

impl Conn {
    pub(super) fn event(&mut self, event: ServerEvent) {
        match event {
            ServerEvent::LoginRequested {
                stream,
                biz,
                alias,
                credential,
                route_id,
                last_acked_seq,
                epoch,
                send_only,
            } => {
                // A position from another log (recreated since) counts for
                // nothing: the device's stored position decides.
                let ours = self.hub.engine.inbox.epoch();
                let last_acked = if epoch != 0 && ours != 0 && epoch != ours {
                    self.record(
                        "login-epoch-mismatch",
                        format!("client={epoch} server={ours} ignored last_acked={last_acked_seq}"),
                    );
                    0
                } else {
                    last_acked_seq
                };
                let resume = (route_id, last_acked, send_only);
                self.login(stream, biz, alias, credential, resume);
            }
            ServerEvent::LoggedOut { stream } => {
                self.record("logout", format!("stream={}", stream.value()));
                self.end_login(stream);
            }
            ServerEvent::LoginExpired { stream } => {
                self.record("login-expired", format!("stream={}", stream.value()));
                self.end_login(stream);
            }
            ServerEvent::LoginEnded { stream, code } => {
                self.record(
                    "login-ended",
                    format!("stream={} code={}", stream.value(), code.as_str_name()),
                );
                self.end_login(stream);
            }
            ServerEvent::CredentialRefresh {
                stream,
                biz,
                alias,
                credential,
            } => {
                let login = self.streams.get(&stream).map(|s| &s.key);
                if let Some(check) = login_expiry::start_refresh(
                    &self.hub,
                    &mut self.channel,
                    login,
                    &self.token,
                    stream,
                    biz,
                    alias,
                    credential,
                ) {
                    self.start(Box::pin(async move { Work::Refresh(check.await) }));
                }
            }
            ServerEvent::TagsRequested {
                stream,
                request_id,
                bind,
                unbind,
            } => {
                let Some(state) = self.streams.get(&stream) else {
                    return;
                };
                self.record(
                    "tags",
                    format!("stream={} bind={bind:?} unbind={unbind:?}", stream.value()),
                );
                let hub = self.hub.clone();
                let (app, biz, alias) = (
                    self.app().to_owned(),
                    state.key.biz.clone(),
                    state.key.alias.clone(),
                );
                self.start(Box::pin(async move {
                    let result = hub
                        .engine
                        .directory
                        .update_tags(app, biz, alias, bind, unbind)
                        .await;
                    Work::Tags {
                        stream,
                        request_id,
                        result,
                    }
                }));
            }
            ServerEvent::Acked { stream, seq } => self.acked(stream, seq),
            ServerEvent::Uplink {
                stream,
                seq,
                idempotency_key,
                payload,
                first_attempt,
            } => self.uplink(stream, seq, idempotency_key, payload, first_attempt),
            ServerEvent::RoomJoin { stream, room } => {
                // The app id is the channel's (borrowed mutably here).
                let app = self.app().to_owned();
                let rooms = rooms_slot(
                    &mut self.rooms,
                    &self.hub,
                    self.id,
                    &self.shared,
                    self.room_codec,
                );
                let outcome = rooms.join(
                    &self.hub.rooms,
                    &app,
                    &mut self.channel,
                    stream,
                    room.clone(),
                    Instant::now(),
                );
                let detail = match outcome {
                    JoinOutcome::Joined { head, tail } => format!("head={head} tail={tail}"),
                    JoinOutcome::Refused { code, message } => {
                        format!("refused {code:?}: {message}")
                    }
                };
                self.record(
                    "room-join",
                    format!("stream={} room={room} {detail}", stream.value()),
                );
                self.drop_rooms_if_empty();
            }
            ServerEvent::RoomLeave { stream, room }
                if self
                    .rooms
                    .as_mut()
                    .is_some_and(|rooms| rooms.leave(stream, &room, Instant::now())) =>
            {
                self.record(
                    "room-leave",
                    format!("stream={} room={room}", stream.value()),
                );
                self.drop_rooms_if_empty();
            }
            ServerEvent::RoomPull {
                stream,
                room,
                offset,
                max,
                wait,
            } => {
                rooms_slot(
                    &mut self.rooms,
                    &self.hub,
                    self.id,
                    &self.shared,
                    self.room_codec,
                )
                .pull(
                    &mut self.channel,
                    stream,
                    &room,
                    offset,
                    max,
                    wait,
                    Instant::now(),
                );
                self.drop_rooms_if_empty();
            }
            ServerEvent::Closed {
                code,
                message,
                initiator,
                ..
            } => {
                self.record("close", format!("code={code:?} by={initiator:?} {message}"));
                if let Some(mut rooms) = self.rooms.take() {
                    rooms.leave_all(Instant::now());
                }
            }
            _ => {}
        }
    }

    pub(super) fn finish(&mut self, work: Work) {
        match work {
            Work::Login {
                stream,
                biz,
                alias,
                result,
            } => match result {
                Ok(ready) => self.login_granted(stream, biz, alias, *ready),
                Err(e) => {
                    metrics::counter!(crate::server::metric_families::LOGINS_TOTAL, "result" => "refused").increment(1);
                    self.record(
                        "auth",
                        format!(
                            "stream={} refused {:?}: {}",
                            stream.value(),
                            e.code,
                            e.message
                        ),
                    );
                    let _ = self.channel.reject_login(stream, e.code, e.message, now());
                }
            },
            Work::Read { stream, result } => self.read_done(stream, result),
            Work::Uplink {
                stream,
                seq,
                result,
            } => self.uplink_done(stream, seq, result),
            Work::Tags {
                stream,
                request_id,
                result,
            } => {
                let (code, message, tags) = match result {
                    Ok(tags) => (ErrorCode::Unspecified, String::new(), tags),
                    Err(e) => (ErrorCode::Internal, e.to_string(), Vec::new()),
                };
                let _ = self
                    .channel
                    .tags_result(stream, request_id, code, message, tags, now());
            }
            Work::Refresh(done) => {
                let verified = self.streams.get(&done.stream()).map(|s| s.device_verified);
                let detail = login_expiry::finish_refresh(&mut self.channel, verified, done);
                self.record("refresh", detail);
            }
            Work::Done => {}
        }
    }

    /// Drops the connection's rooms once none is joined.
    pub(super) fn drop_rooms_if_empty(&mut self) {
        if self.rooms.as_ref().is_some_and(|rooms| rooms.is_empty()) {
            self.rooms = None;
        }
    }
}

/// The connection's rooms, created at their first use (a join, or a pull
/// to refuse). Fields of the connection rather than `&mut Conn`, so that
/// the channel stays free to borrow beside it.
fn rooms_slot<'a>(
    slot: &'a mut Option<Box<ConnRooms>>,
    hub: &Hub,
    id: ConnId,
    shared: &Arc<ConnShared>,
    (compression, threshold): (Compression, u32),
) -> &'a mut ConnRooms {
    slot.get_or_insert_with(|| {
        Box::new(ConnRooms::new(
            id,
            shared.clone(),
            (compression, threshold as usize),
            hub.config.max_room_joins,
        ))
    })
}

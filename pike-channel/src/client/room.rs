//! Live-room client (seed 6.1.2): join, then a pull loop by offset. A batch
//! is handed to the business and the client pulls again at once from the
//! batch's next offset; when the room has nothing new the server holds the
//! pull and says nothing, so after `wait + grace` of silence the client pulls
//! again. The offset is kept client-side, across reconnects (the room is
//! rejoined and pulling resumes from it), and each offset is delivered once.

use std::collections::HashSet;
use std::time::Instant;

use proto::channel::{RoomBatch, RoomJoin, RoomJoinResult, RoomLeave, RoomPull};
use proto::tunnel::ErrorCode;

use super::{ClientChannel, Event};
use crate::error::UnknownStream;
use crate::ids::StreamId;
use crate::message::Message;

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum RoomPhase {
    /// Join not sent on the current connection.
    Offline,
    /// Join sent, no result yet.
    Joining,
    /// Joined; pulling.
    Joined,
}

/// Client state of one joined room.
#[derive(Debug)]
pub(super) struct RoomEntry {
    phase: RoomPhase,
    /// Next offset wanted; `None` until the first join result (then the
    /// room's tail, i.e. live messages only).
    offset: Option<u64>,
    /// When the outstanding pull is given up and re-sent.
    pull_deadline: Option<Instant>,
}

impl RoomEntry {
    pub(super) fn pull_deadline(&self) -> Option<Instant> {
        self.pull_deadline
    }

    pub(super) fn on_link_lost(&mut self) {
        self.phase = RoomPhase::Offline;
        self.pull_deadline = None;
    }
}

impl ClientChannel {
    /// Joins `room` on `stream`'s login and starts pulling, from `from` or,
    /// when `None`, from the room's tail (live messages only). Joining a room
    /// joined already does nothing.
    pub fn join_room(
        &mut self,
        stream: StreamId,
        room: impl Into<String>,
        from: Option<u64>,
        now: Instant,
    ) -> Result<(), UnknownStream> {
        let entry = self.logins.get(&stream).ok_or(UnknownStream(stream))?;
        let active = entry.is_active() && self.link.is_connected();
        let room = room.into();
        let key = (stream, room.clone());
        if self.rooms.contains_key(&key) {
            return Ok(());
        }
        self.rooms.insert(
            key,
            RoomEntry {
                phase: RoomPhase::Offline,
                offset: from,
                pull_deadline: None,
            },
        );
        if active {
            self.send_room_join(stream, room, now);
        }
        self.update_timers();
        Ok(())
    }

    /// Leaves `room`: stops pulling and tells the server if connected.
    pub fn leave_room(
        &mut self,
        stream: StreamId,
        room: &str,
        now: Instant,
    ) -> Result<(), UnknownStream> {
        let entry = self.logins.get(&stream).ok_or(UnknownStream(stream))?;
        let active = entry.is_active() && self.link.is_connected();
        if self.rooms.remove(&(stream, room.to_owned())).is_some() && active {
            let leave = RoomLeave {
                stream: stream.value(),
                room: room.to_owned(),
            };
            self.transmit(&Message::RoomLeave(leave), now);
        }
        self.update_timers();
        Ok(())
    }

    /// The next offset `stream` will pull from `room` (None before the first
    /// join result when joined at the tail, or if not joined).
    pub fn room_offset(&self, stream: StreamId, room: &str) -> Option<u64> {
        self.rooms
            .get(&(stream, room.to_owned()))
            .and_then(|r| r.offset)
    }

    /// After a login result: join (again) every room of the stream.
    pub(super) fn rejoin_rooms(&mut self, stream: StreamId, now: Instant) {
        let rooms: Vec<String> = self
            .rooms
            .iter()
            .filter(|((s, _), r)| *s == stream && r.phase == RoomPhase::Offline)
            .map(|((_, room), _)| room.clone())
            .collect();
        for room in rooms {
            self.send_room_join(stream, room, now);
        }
    }

    fn send_room_join(&mut self, stream: StreamId, room: String, now: Instant) {
        if let Some(entry) = self.rooms.get_mut(&(stream, room.clone())) {
            entry.phase = RoomPhase::Joining;
            self.transmit(
                &Message::RoomJoin(RoomJoin {
                    stream: stream.value(),
                    room,
                }),
                now,
            );
        }
    }

    pub(super) fn handle_room_join_result(&mut self, m: RoomJoinResult, now: Instant) {
        let stream = StreamId::new(m.stream);
        let key = (stream, m.room.clone());
        let Some(entry) = self.rooms.get_mut(&key) else {
            self.stats.unknown_target_frames += 1;
            return;
        };
        if entry.phase != RoomPhase::Joining {
            return;
        }
        let code = m.code();
        if code != ErrorCode::Unspecified {
            self.rooms.remove(&key);
            self.events.push_back(Event::RoomJoinFailed {
                stream,
                room: m.room,
                code,
                message: m.message,
            });
            return;
        }
        entry.phase = RoomPhase::Joined;
        entry.offset.get_or_insert(m.tail);
        self.events.push_back(Event::RoomJoined {
            stream,
            room: m.room.clone(),
            head: m.head,
            tail: m.tail,
        });
        self.send_room_pull(stream, m.room, now);
    }

    fn send_room_pull(&mut self, stream: StreamId, room: String, now: Instant) {
        let deadline = now + self.config.room_pull_wait + self.config.room_pull_grace;
        let wait_ms = u32::try_from(self.config.room_pull_wait.as_millis()).unwrap_or(u32::MAX);
        let max = self.config.room_pull_max;
        let Some(entry) = self.rooms.get_mut(&(stream, room.clone())) else {
            return;
        };
        let offset = entry.offset.unwrap_or(0);
        entry.pull_deadline = Some(deadline);
        self.stats.room_pulls += 1;
        let pull = RoomPull {
            stream: stream.value(),
            room,
            offset,
            max,
            wait_ms,
        };
        self.transmit(&Message::RoomPull(pull), now);
    }

    pub(super) fn handle_room_batch(&mut self, m: RoomBatch, now: Instant) {
        // A pulled batch answers its stream's pull; a pushed batch goes to
        // every stream of this connection that joined the room.
        let targets: Vec<StreamId> = if !m.pushed {
            vec![StreamId::new(m.stream)]
        } else {
            self.rooms
                .keys()
                .filter(|(_, room)| *room == m.room)
                .map(|(s, _)| *s)
                .collect()
        };
        let mut known = false;
        for stream in targets {
            let Some(entry) = self.rooms.get_mut(&(stream, m.room.clone())) else {
                continue;
            };
            if entry.phase != RoomPhase::Joined {
                continue;
            }
            known = true;
            let from = entry.offset.unwrap_or(0);
            // A batch lists priorities first, so its offsets need not rise:
            // each offset at or after `from` is delivered once, the first
            // time it appears (a server never repeats one in a batch; a
            // broken or hostile one must not make the app see it twice).
            let mut seen = HashSet::with_capacity(m.messages.len());
            let messages: Vec<_> = m
                .messages
                .iter()
                .filter(|msg| msg.offset >= from && seen.insert(msg.offset))
                .cloned()
                .collect();
            let next = messages
                .iter()
                .map(|msg| msg.offset.saturating_add(1))
                .max()
                .unwrap_or(from)
                .max(m.next_offset)
                .max(from);
            entry.offset = Some(next);
            if !messages.is_empty() || m.missed > 0 {
                self.events.push_back(Event::RoomMessages {
                    stream,
                    room: m.room.clone(),
                    messages,
                    missed: m.missed,
                });
            }
            if !m.pushed {
                self.send_room_pull(stream, m.room.clone(), now);
            }
        }
        if !known {
            self.stats.unknown_target_frames += 1;
        }
    }

    pub(super) fn on_room_pull_timer(&mut self, now: Instant) {
        if !self.link.is_connected() {
            return;
        }
        let due: Vec<(StreamId, String)> = self
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.phase == RoomPhase::Joined && r.pull_deadline.is_some_and(|at| at <= now)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for (stream, room) in due {
            self.stats.room_pull_timeouts += 1;
            self.send_room_pull(stream, room, now);
        }
    }
}

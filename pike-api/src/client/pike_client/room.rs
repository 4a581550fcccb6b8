//! Live rooms for a [`PikeClient`]: join, leave, and the room's batches as
//! [`ClientEvent::RoomMessages`]. The channel runs the pull loop (or takes
//! pushed batches); the client keeps each room's offset across reconnects,
//! restarts and channel switches, rejoins from it on every new login, and
//! hands each offset to the business once.

use pike_channel::Event;
use tokio::sync::oneshot;

use super::{Actor, Command, PikeClient};
use crate::client::error::{Error, ErrorKind};
use crate::client::event::ClientEvent;

/// Where a room stood when the client joined it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct RoomPosition {
    /// The oldest offset the room still holds.
    pub head: u64,
    /// The offset the room's next message gets (where a join without
    /// `from` starts).
    pub tail: u64,
}

pub(super) type JoinReply = oneshot::Sender<Result<RoomPosition, Error>>;

/// A room the business joined.
#[derive(Debug, Default)]
pub(super) struct ClientRoom {
    /// The next offset to hand to the business (`None` until the first
    /// join result: then the room's tail, or the `from` asked).
    next: Option<u64>,
    /// Joins waiting for the result.
    waiting: Vec<JoinReply>,
}

impl PikeClient {
    /// Joins a live room (`docs/rooms.md`) and resolves with its position
    /// once the gateway accepted; its batches then arrive as
    /// [`ClientEvent::RoomMessages`]. `from` is the first offset wanted
    /// (e.g. a saved one, or the head for the room's history); `None` joins
    /// at the tail (live messages only). Needs a started client; the room
    /// is rejoined from the last offset delivered after every reconnect,
    /// restart and channel switch, until [`leave_room`](Self::leave_room).
    pub async fn join_room(
        &self,
        room: impl Into<String>,
        from: Option<u64>,
    ) -> Result<RoomPosition, Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::JoinRoom {
            room: room.into(),
            from,
            reply,
        });
        rx.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::ChannelClosed,
                "the client's task is gone",
            ))
        })
    }

    /// Leaves a live room: no more of its batches are delivered.
    pub fn leave_room(&self, room: impl Into<String>) {
        self.command(Command::LeaveRoom(room.into()));
    }
}

impl Actor {
    pub(super) fn join_room(&mut self, room: String, from: Option<u64>, reply: JoinReply) {
        let binding = self
            .current
            .filter(|_| self.is_started())
            .and_then(|g| self.bindings.get(&g));
        let Some(binding) = binding else {
            let _ = reply.send(Err(Error::new(
                ErrorKind::NotStarted,
                "rooms need a started client",
            )));
            return;
        };
        let (channel, stream) = (binding.channel.clone(), binding.stream);
        let entry = self.rooms.entry(room.clone()).or_default();
        if entry.next.is_none() {
            entry.next = from;
        }
        entry.waiting.push(reply);
        if let Err(e) = channel.join_room(stream, room.clone(), entry.next) {
            for reply in std::mem::take(&mut entry.waiting) {
                let _ = reply.send(Err(Error::new(ErrorKind::ChannelClosed, e.to_string())));
            }
            self.rooms.remove(&room);
        }
    }

    pub(super) fn leave_room(&mut self, room: &str) {
        if self.rooms.remove(room).is_none() {
            return;
        }
        for binding in self.bindings.values().filter(|b| !b.retiring) {
            let _ = binding.channel.leave_room(binding.stream, room);
        }
    }

    /// Joins every room on the login of `generation`, from the offsets
    /// delivered so far.
    pub(super) fn rejoin_rooms(&self, generation: u64) {
        let Some(binding) = self.bindings.get(&generation) else {
            return;
        };
        for (room, state) in &self.rooms {
            let _ = binding
                .channel
                .join_room(binding.stream, room.clone(), state.next);
        }
    }

    pub(super) async fn on_room_event(&mut self, event: Event) {
        match event {
            Event::RoomJoined {
                room, head, tail, ..
            } => {
                let Some(state) = self.rooms.get_mut(&room) else {
                    return;
                };
                state.next.get_or_insert(tail);
                for reply in std::mem::take(&mut state.waiting) {
                    let _ = reply.send(Ok(RoomPosition { head, tail }));
                }
            }
            Event::RoomJoinFailed {
                room,
                code,
                message,
                ..
            } => {
                let Some(state) = self.rooms.remove(&room) else {
                    return;
                };
                if state.waiting.is_empty() {
                    // A rejoin (after a reconnect) was refused.
                    self.emit(ClientEvent::RoomJoinFailed {
                        room,
                        code,
                        message,
                    })
                    .await;
                    return;
                }
                let error = Error::new(ErrorKind::Rejected, message).with_code(code);
                for reply in state.waiting {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            Event::RoomMessages {
                room,
                mut messages,
                missed,
                ..
            } => {
                let Some(state) = self.rooms.get_mut(&room) else {
                    return;
                };
                // Two logins may deliver the same batch while a switch
                // overlaps: each offset goes to the business once.
                if let Some(next) = state.next {
                    messages.retain(|m| m.offset >= next);
                }
                if let Some(last) = messages.iter().map(|m| m.offset).max() {
                    state.next = Some(state.next.map_or(last + 1, |n| n.max(last + 1)));
                }
                if !messages.is_empty() || missed > 0 {
                    self.emit(ClientEvent::RoomMessages {
                        room,
                        messages,
                        missed,
                    })
                    .await;
                }
            }
            _ => {}
        }
    }
}

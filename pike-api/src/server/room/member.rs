//! A connection's side of its rooms ([`ConnRooms`]), owned by the
//! connection task: joins and leaves, held pulls, and writing released
//! batches to the connection's [`ServerChannel`].
//!
//! Per joined room a connection keeps the only per-member state of the
//! gateway: one held pull per stream (offset, limit, deadline), a cursor
//! into the room's released batches, and the range of offsets pushed to it.
//! Offsets are the client's.
//!
//! No offset is written twice to a member connection by the combination of
//! pushed batches and pull answers: a pull of a push member first takes the
//! released batches the push path has not taken yet (pushing them), then is
//! answered only with what lies outside the range already pushed (history
//! before it), or held like a pull with nothing new.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pike_channel::{ServerChannel, StreamId};
use proto::tunnel::{Compression, ErrorCode};
use tokio::time::Instant;

use super::Rooms;
use super::shared::{Batch, Room};
use crate::server::registry::{ConnId, ConnShared};

/// Most messages a pull may ask for in one batch.
const MAX_PULL: usize = 1000;

/// A pull the room could not answer yet.
#[derive(Clone, Copy, Debug)]
struct Held {
    offset: u64,
    /// The answer stops before this offset (`u64::MAX`: the released
    /// tail).
    until: u64,
    max: usize,
    since: Instant,
    deadline: Instant,
}

/// One joined stream of a [`Sub`].
#[derive(Clone, Copy, Debug)]
struct Joined {
    /// Its held pull.
    held: Option<Held>,
    /// Where the pushes it gets began: the connection's push cursor at its
    /// (latest) join; the client starts the room afresh at a join, so
    /// what was pushed before does not count for it.
    since: u64,
}

impl Joined {
    fn at(since: u64) -> Self {
        Self { held: None, since }
    }
}

/// A room joined by one or more streams of the connection.
#[derive(Debug)]
struct Sub {
    room: Arc<Room>,
    /// Joined streams.
    streams: BTreeMap<StreamId, Joined>,
    /// The next released batch to take.
    next_batch: u64,
    /// The newest batch this connection counted as taken.
    acked: u64,
    /// The offset after the last pushed batch written (push catch-up).
    next_offset: u64,
    /// The contiguous range of offsets last pushed to the connection
    /// (`[start, end)`), which a pull answer must not carry again.
    pushed: Option<(u64, u64)>,
}

impl Sub {
    /// A pushed frame covering `[first, next)` was written.
    fn note_pushed(&mut self, first: u64, next: u64) {
        self.pushed = match self.pushed {
            Some((start, end)) if first <= end && end <= next => Some((start, next)),
            _ => Some((first, next)),
        };
    }

    /// Where a pull from `offset` of a push member's stream that joined
    /// at `since` is answered from, and before which offset the answer
    /// stops. Pushing goes on from `next_offset`, so no answer reaches it;
    /// an answer starting in the range pushed to the stream already starts
    /// after it; history before that range stops at its start.
    fn push_pull_range(&self, since: u64, offset: u64) -> (u64, u64) {
        match self.pushed {
            Some((start, end)) if start.max(since) < end => {
                let start = start.max(since);
                if offset >= start {
                    (offset.max(end), self.next_offset)
                } else {
                    (offset, start)
                }
            }
            _ => (offset, self.next_offset),
        }
    }
}

/// What happened to a join request (for the connection trace).
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum JoinOutcome {
    /// Joined: `head`..`tail`.
    Joined { head: u64, tail: u64 },
    /// Refused with a code.
    Refused { code: ErrorCode, message: String },
}

/// The rooms of one connection.
#[derive(Debug)]
pub(crate) struct ConnRooms {
    conn: ConnId,
    shared: Arc<ConnShared>,
    compression: Compression,
    threshold: usize,
    subs: HashMap<String, Sub>,
    /// Joins held: (stream, room) pairs, every room together.
    joins: usize,
    /// Most joins held at once ([`GatewayConfig::max_room_joins`]).
    ///
    /// [`GatewayConfig::max_room_joins`]: crate::server::GatewayConfig::max_room_joins
    max_joins: usize,
}

impl ConnRooms {
    /// The rooms of connection `conn`, whose codec negotiated
    /// `compression` from `threshold` bytes, holding at most `max_joins`
    /// (stream, room) joins.
    pub(crate) fn new(
        conn: ConnId,
        shared: Arc<ConnShared>,
        (compression, threshold): (Compression, usize),
        max_joins: usize,
    ) -> Self {
        Self {
            conn,
            shared,
            compression,
            threshold,
            subs: HashMap::new(),
            joins: 0,
            max_joins,
        }
    }

    /// `stream` (a login of app `app`) joins `room`; the join is answered on
    /// `channel`.
    pub(crate) fn join(
        &mut self,
        rooms: &Rooms,
        app: &str,
        channel: &mut ServerChannel,
        stream: StreamId,
        room: String,
        now: Instant,
    ) -> JoinOutcome {
        let outcome = self.try_join(rooms, app, stream, &room, now);
        let _ = match &outcome {
            JoinOutcome::Joined { head, tail } => {
                channel.room_joined(stream, room, *head, *tail, now.into_std())
            }
            JoinOutcome::Refused { code, message } => {
                channel.room_join_failed(stream, room, *code, message.clone(), now.into_std())
            }
        };
        outcome
    }

    fn try_join(
        &mut self,
        rooms: &Rooms,
        app: &str,
        stream: StreamId,
        name: &str,
        now: Instant,
    ) -> JoinOutcome {
        if let Err(message) = super::check_name(name) {
            return JoinOutcome::Refused {
                code: ErrorCode::InvalidArgument,
                message,
            };
        }
        let joined_already = self
            .subs
            .get(name)
            .is_some_and(|sub| sub.streams.contains_key(&stream));
        if !joined_already && self.joins >= self.max_joins {
            metrics::counter!(crate::server::metric_families::ROOMS_REFUSED_TOTAL, "reason" => "connection_joins")
                .increment(1);
            return JoinOutcome::Refused {
                code: ErrorCode::LimitExceeded,
                message: format!(
                    "at most {} room joins per connection; leave a room first",
                    self.max_joins
                ),
            };
        }
        if let Some(sub) = self.subs.get_mut(name) {
            let next_offset = sub.next_offset;
            if let Some(joined) = sub.streams.get_mut(&stream) {
                // Joined already (a repeated join): answer again.
                joined.since = next_offset;
                let head = sub.room.with_core(super::core::Core::head);
                return JoinOutcome::Joined {
                    head,
                    tail: sub.room.visible(),
                };
            }
            if let Ok(joined) = sub.room.join(self.conn, &self.shared, now) {
                sub.streams.insert(stream, Joined::at(next_offset));
                self.joins += 1;
                return JoinOutcome::Joined {
                    head: joined.head,
                    tail: joined.visible,
                };
            }
            // The room went away under us (cannot happen while we are a
            // member); start over below.
            if let Some(gone) = self.subs.remove(name) {
                self.joins -= gone.streams.len();
            }
        }
        // The room may be removed (idle) between lookup and join: retry.
        for _ in 0..3 {
            let room = match rooms.get_or_create(app, name) {
                Ok(room) => room,
                Err(e) => {
                    return JoinOutcome::Refused {
                        code: e.code(),
                        message: e.to_string(),
                    };
                }
            };
            let Ok(joined) = room.join(self.conn, &self.shared, now) else {
                continue;
            };
            self.subs.insert(
                name.to_owned(),
                Sub {
                    room,
                    streams: BTreeMap::from([(stream, Joined::at(joined.visible))]),
                    next_batch: joined.seq + 1,
                    acked: joined.seq,
                    next_offset: joined.visible,
                    pushed: None,
                },
            );
            self.joins += 1;
            return JoinOutcome::Joined {
                head: joined.head,
                tail: joined.visible,
            };
        }
        JoinOutcome::Refused {
            code: ErrorCode::Internal,
            message: "the room kept closing; retry".into(),
        }
    }

    /// `stream` leaves `room`; `false` if it was not a member.
    pub(crate) fn leave(&mut self, stream: StreamId, room: &str, now: Instant) -> bool {
        let Some(sub) = self.subs.get_mut(room) else {
            return false;
        };
        if sub.streams.remove(&stream).is_none() {
            return false;
        }
        self.joins -= 1;
        sub.room.leave(self.conn, 1, now);
        if sub.streams.is_empty() {
            self.subs.remove(room);
        }
        true
    }

    /// `stream` logged out: it leaves every room.
    pub(crate) fn logged_out(&mut self, stream: StreamId, now: Instant) {
        let rooms: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, sub)| sub.streams.contains_key(&stream))
            .map(|(name, _)| name.clone())
            .collect();
        for room in rooms {
            self.leave(stream, &room, now);
        }
    }

    /// Whether no room is joined.
    pub(crate) fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Leaves every room (the connection ends).
    pub(crate) fn leave_all(&mut self, now: Instant) {
        self.joins = 0;
        for (_, sub) in self.subs.drain() {
            sub.room.leave(self.conn, sub.streams.len(), now);
        }
    }

    /// A pull from `stream`: answered now when `room` has released messages
    /// at or after `offset`, otherwise held until a batch is released or
    /// `wait` passes (then never answered: the client pulls again).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pull(
        &mut self,
        channel: &mut ServerChannel,
        stream: StreamId,
        room: &str,
        offset: u64,
        max: u32,
        wait: Duration,
        now: Instant,
    ) {
        let (compression, threshold) = (self.compression, self.threshold);
        let Some(sub) = self
            .subs
            .get_mut(room)
            .filter(|sub| sub.streams.contains_key(&stream))
        else {
            metrics::counter!(crate::server::metric_families::ROOM_PULLS_TOTAL, "result" => "not_joined").increment(1);
            // The stream is logged in (the machine checked): it cannot fail.
            let _ = channel.room_pull_refused(
                stream,
                ErrorCode::UnknownRoom,
                format!("stream {stream} has not joined room {room:?}; send ROOM_JOIN first"),
                now.into_std(),
            );
            return;
        };
        let max = match max {
            0 => sub.room.config.max_batch_messages,
            n => (n as usize).min(MAX_PULL),
        };
        let mut pull = Held {
            offset,
            until: u64::MAX,
            max,
            since: now,
            deadline: now + wait.min(sub.room.config.max_pull_wait),
        };
        if sub.room.mode() == super::RoomMode::Push && offset < sub.room.visible() {
            // A push member: what the push path has not taken yet goes out
            // pushed first; the answer skips what was pushed.
            take_released(channel, sub, compression, threshold, now);
            let since = sub.streams.get(&stream).map_or(u64::MAX, |j| j.since);
            (pull.offset, pull.until) = sub.push_pull_range(since, offset);
        }
        let Some(Joined { held, .. }) = sub.streams.get_mut(&stream) else {
            return;
        };
        let visible = sub.room.visible();
        if pull.offset < visible.min(pull.until) {
            *held = None;
            answer(
                channel,
                &sub.room,
                stream,
                pull,
                None,
                compression,
                threshold,
                now,
            );
        } else if wait.is_zero() {
            // "Answer at once": nothing new.
            *held = None;
            let (frame, covered) = sub.room.catchup_frame(
                (pull.offset, pull.until),
                max,
                Some(stream),
                compression,
                threshold,
                now,
            );
            if channel
                .room_batch_frame(Some(stream), frame, now.into_std())
                .is_ok()
            {
                sub.room.sent(covered, false);
            }
        } else {
            sub.room.pull_held();
            *held = Some(Held {
                offset,
                until: u64::MAX,
                ..pull
            });
        }
    }

    /// Takes the batches released since the last call from every joined
    /// room and writes them out: pushed batches once per connection, held
    /// pulls answered.
    pub(crate) fn ready(&mut self, channel: &mut ServerChannel, now: Instant) {
        let (compression, threshold) = (self.compression, self.threshold);
        for sub in self.subs.values_mut() {
            take_released(channel, sub, compression, threshold, now);
        }
    }
}

/// Takes the batches `sub`'s room released since the last call and writes
/// them out: pushed batches once per connection, held pulls answered.
fn take_released(
    channel: &mut ServerChannel,
    sub: &mut Sub,
    compression: Compression,
    threshold: usize,
    now: Instant,
) {
    let room = sub.room.clone();
    let latest = room.seq();
    if sub.acked < latest {
        sub.acked = latest;
        room.ack();
    }
    if sub.next_batch > latest {
        return;
    }
    let (batches, lost) = room.batches_since(sub.next_batch);
    if lost {
        catch_up(
            channel,
            sub,
            batches.first().map(|b| b.span.first),
            compression,
            threshold,
            now,
        );
    }
    for batch in &batches {
        deliver(channel, sub, batch, compression, threshold, now);
    }
    sub.next_batch = batches.last().map_or(latest, |b| b.seq) + 1;
}

impl Drop for ConnRooms {
    fn drop(&mut self) {
        self.leave_all(Instant::now());
    }
}

/// Writes one released batch to the connection.
fn deliver(
    channel: &mut ServerChannel,
    sub: &mut Sub,
    batch: &Arc<Batch>,
    compression: Compression,
    threshold: usize,
    now: Instant,
) {
    let room = &sub.room;
    if batch.pushed {
        if batch.span.next > sub.next_offset {
            let frame = room.batch_frame(batch, None, compression, threshold);
            if channel
                .room_batch_frame(None, frame, now.into_std())
                .is_ok()
            {
                room.sent(batch.covered(), true);
            }
            sub.next_offset = batch.span.next;
            sub.note_pushed(batch.span.first, batch.span.next);
        }
        // The client's offset moves with the pushed batch: so do its held
        // pulls (answered later, should the room switch to pull mode).
        for held in sub.streams.values_mut().filter_map(|j| j.held.as_mut()) {
            held.offset = held.offset.max(batch.span.next);
        }
        return;
    }
    sub.next_offset = sub.next_offset.max(batch.span.next);
    for (&stream, Joined { held: slot, .. }) in &mut sub.streams {
        let Some(held) = *slot else {
            continue;
        };
        if held.deadline < now {
            // Expired: never answered (the client has pulled again or will).
            *slot = None;
            room.pull_expired();
        } else if held.offset < batch.span.next {
            *slot = None;
            answer(
                channel,
                room,
                stream,
                held,
                Some(batch),
                compression,
                threshold,
                now,
            );
        }
    }
}

/// A member missed batches no longer kept (it was far behind): pushed
/// members get what the ring still holds from their offset (in frames of
/// at most the room's batch size, shared with members behind by as much),
/// held pulls are answered from their offset.
fn catch_up(
    channel: &mut ServerChannel,
    sub: &mut Sub,
    until: Option<u64>,
    compression: Compression,
    threshold: usize,
    now: Instant,
) {
    let room = sub.room.clone();
    let until = until.unwrap_or_else(|| room.visible());
    if room.mode() == super::RoomMode::Push {
        while sub.next_offset < until {
            let (frame, covered) = room.catchup_frame(
                (sub.next_offset, u64::MAX),
                room.config.max_batch_messages,
                None,
                compression,
                threshold,
                now,
            );
            if covered.next <= sub.next_offset {
                break;
            }
            if channel
                .room_batch_frame(None, frame, now.into_std())
                .is_ok()
            {
                room.sent(covered, true);
            }
            sub.note_pushed(sub.next_offset, covered.next);
            sub.next_offset = covered.next;
        }
        for held in sub.streams.values_mut().filter_map(|j| j.held.as_mut()) {
            held.offset = held.offset.max(sub.next_offset);
        }
        return;
    }
    for (&stream, Joined { held: slot, .. }) in &mut sub.streams {
        if let Some(held) = *slot
            && held.deadline >= now
            && held.offset < until
        {
            *slot = None;
            answer(
                channel,
                &room,
                stream,
                held,
                None,
                compression,
                threshold,
                now,
            );
        }
    }
    sub.next_offset = sub.next_offset.max(until);
}

/// Answers a pull: with the shared encoding of `batch` (or of the kept
/// batch starting at the pulled offset) when that batch brings the member
/// up to the released tail within its limit, otherwise with everything from
/// its offset to the tail in one frame (seed 6.1.2; shared by the members
/// behind by as much).
#[allow(clippy::too_many_arguments)]
fn answer(
    channel: &mut ServerChannel,
    room: &Room,
    stream: StreamId,
    pull: Held,
    batch: Option<&Arc<Batch>>,
    compression: Compression,
    threshold: usize,
    now: Instant,
) {
    let visible = room.visible();
    let shared = batch
        .cloned()
        .or_else(|| room.batch_at(pull.offset))
        .filter(|b| {
            b.span.first == pull.offset
                && b.span.messages.len() <= pull.max
                && b.span.next >= visible
                && b.span.next <= pull.until
        });
    let (frame, covered) = match &shared {
        Some(batch) => (
            room.batch_frame(batch, Some(stream), compression, threshold),
            batch.covered(),
        ),
        None => room.catchup_frame(
            (pull.offset, pull.until),
            pull.max,
            Some(stream),
            compression,
            threshold,
            now,
        ),
    };
    if channel
        .room_batch_frame(Some(stream), frame, now.into_std())
        .is_ok()
    {
        room.sent(covered, false);
        room.pull_answered(now.saturating_duration_since(pull.since));
    }
}

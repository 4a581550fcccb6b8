//! Room requests on the server side: joins, leaves and pulls are handed to
//! the gateway, which owns the rooms (and holds long polls).

use std::time::{Duration, Instant};

use proto::channel::{RoomBatch, RoomJoin, RoomJoinResult, RoomLeave, RoomPull};
use proto::tunnel::ErrorCode;
use tntunnel::Frame;

use super::limits::check_room_name;
use super::{ServerChannel, ServerEvent};
use crate::error::ReplyError;
use crate::frame_types;
use crate::ids::StreamId;
use crate::message::Message;

impl ServerChannel {
    pub(super) fn handle_room_join(&mut self, m: RoomJoin, _now: Instant) {
        let stream = StreamId::new(m.stream);
        if !self.require_active(stream, frame_types::ROOM_JOIN) {
            return;
        }
        if let Err(message) = check_room_name(&m.room) {
            // The name is not echoed: it is what was wrong.
            let result = RoomJoinResult {
                stream: stream.value(),
                code: ErrorCode::InvalidArgument.into(),
                message,
                ..RoomJoinResult::default()
            };
            self.transmit(&Message::RoomJoinResult(result));
            return;
        }
        self.events.push_back(ServerEvent::RoomJoin {
            stream,
            room: m.room,
        });
    }

    /// Checks the room name of a leave or pull; answers an invalid one with
    /// an `INVALID_ARGUMENT` error frame.
    fn valid_room(&mut self, room: &str, stream: StreamId, ty: tntunnel::FrameType) -> bool {
        match check_room_name(room) {
            Ok(()) => true,
            Err(message) => {
                self.error_frame(ErrorCode::InvalidArgument, &message, stream, ty);
                false
            }
        }
    }

    pub(super) fn handle_room_leave(&mut self, m: RoomLeave, _now: Instant) {
        let stream = StreamId::new(m.stream);
        if self.require_active(stream, frame_types::ROOM_LEAVE)
            && self.valid_room(&m.room, stream, frame_types::ROOM_LEAVE)
        {
            self.events.push_back(ServerEvent::RoomLeave {
                stream,
                room: m.room,
            });
        }
    }

    pub(super) fn handle_room_pull(&mut self, m: RoomPull, _now: Instant) {
        let stream = StreamId::new(m.stream);
        if self.require_active(stream, frame_types::ROOM_PULL)
            && self.valid_room(&m.room, stream, frame_types::ROOM_PULL)
        {
            self.events.push_back(ServerEvent::RoomPull {
                stream,
                room: m.room,
                offset: m.offset,
                max: m.max,
                wait: Duration::from_millis(u64::from(m.wait_ms)),
            });
        }
    }

    /// Refuses a [`ServerEvent::RoomPull`] with an `ERROR` frame naming the
    /// stream and `ROOM_PULL` (the connection stays up): `UNKNOWN_ROOM` for
    /// a room the stream has not joined, say.
    pub fn room_pull_refused(
        &mut self,
        stream: StreamId,
        code: ErrorCode,
        message: impl Into<String>,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        self.active_stream(stream)?;
        self.error_frame(code, &message.into(), stream, frame_types::ROOM_PULL);
        Ok(())
    }

    /// Accepts a join: `head` is the oldest offset in the room's ring, `tail`
    /// the offset the next message gets.
    pub fn room_joined(
        &mut self,
        stream: StreamId,
        room: impl Into<String>,
        head: u64,
        tail: u64,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        self.active_stream(stream)?;
        let result = RoomJoinResult {
            stream: stream.value(),
            room: room.into(),
            code: ErrorCode::Unspecified.into(),
            message: String::new(),
            head,
            tail,
        };
        self.transmit(&Message::RoomJoinResult(result));
        Ok(())
    }

    /// Refuses a join (e.g. UNKNOWN_ROOM, FORBIDDEN).
    pub fn room_join_failed(
        &mut self,
        stream: StreamId,
        room: impl Into<String>,
        code: ErrorCode,
        message: impl Into<String>,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        self.active_stream(stream)?;
        let result = RoomJoinResult {
            stream: stream.value(),
            room: room.into(),
            code: code.into(),
            message: message.into(),
            head: 0,
            tail: 0,
        };
        self.transmit(&Message::RoomJoinResult(result));
        Ok(())
    }

    /// Sends a batch answering `stream`'s pull (its `stream` field is set
    /// here).
    pub fn room_batch(
        &mut self,
        stream: StreamId,
        mut batch: RoomBatch,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        self.active_stream(stream)?;
        batch.stream = stream.value();
        self.transmit(&Message::RoomBatch(batch));
        Ok(())
    }

    /// Sends a room batch encoded once for many connections (encode-once
    /// fan-out): `frame` is a [`ROOM_BATCH`](crate::frame_types::ROOM_BATCH)
    /// frame, typically built by the gateway with
    /// [`encode_room_batch`](Self::encode_room_batch) and
    /// [`Frame::prepare`], whose body is shared by every connection it goes
    /// to; it is queued as is (no decoding, no copy: [`poll_transmit`]
    /// returns the same bytes).
    ///
    /// `stream` names the stream whose pull the batch answers (the frame's
    /// `stream` field must match it); `None` for a pushed batch
    /// (`pushed` set, no per-member field), which needs no particular
    /// stream.
    ///
    /// [`poll_transmit`]: Self::poll_transmit
    pub fn room_batch_frame(
        &mut self,
        stream: Option<StreamId>,
        frame: Frame,
        _now: Instant,
    ) -> Result<(), ReplyError> {
        if frame.ty != frame_types::ROOM_BATCH {
            return Err(ReplyError::NotRoomBatch(frame.ty));
        }
        match stream {
            Some(stream) => {
                self.active_stream(stream)?;
            }
            None if self.is_closed() => return Err(ReplyError::Closed),
            None => {}
        }
        self.stats.frames_sent += 1;
        self.transmit.push_back(frame);
        Ok(())
    }

    /// The uncompressed frame of `batch`, for
    /// [`room_batch_frame`](Self::room_batch_frame).
    pub fn encode_room_batch(batch: &RoomBatch) -> Frame {
        Frame::from_message(frame_types::ROOM_BATCH, batch)
    }
}

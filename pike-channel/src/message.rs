//! Decoded Pike channel messages: one enum over every frame the channel
//! layer exchanges after the tunnel handshake.

use proto::channel::{
    Downlink, DownlinkAck, Error, GoAway, Login, LoginResult, Logout, Ping, Pong, RoomBatch,
    RoomJoin, RoomJoinResult, RoomLeave, RoomPull, Tags, TagsResult, Uplink, UplinkAck,
};
use proto::tunnel::Close;
use tntunnel::{Frame, FrameType};

use crate::error::ChannelError;
use crate::frame_types as ft;

/// A Pike channel message decoded from (or to be encoded into) a frame.
///
/// Besides the application frames of [`frame_types`](crate::frame_types) it
/// covers the tunnel's [`Close`] frame, which either side may send at any
/// time. The hello frames belong to the handshake and are rejected here.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// `0x10` business login.
    Login(Login),
    /// `0x11` login result.
    LoginResult(LoginResult),
    /// `0x12` logout.
    Logout(Logout),
    /// `0x13` tag change.
    Tags(Tags),
    /// `0x14` tag change result.
    TagsResult(TagsResult),
    /// `0x18` downlink message.
    Downlink(Downlink),
    /// `0x19` cumulative downlink ack.
    DownlinkAck(DownlinkAck),
    /// `0x1A` uplink message.
    Uplink(Uplink),
    /// `0x1B` uplink ack.
    UplinkAck(UplinkAck),
    /// `0x20` room join.
    RoomJoin(RoomJoin),
    /// `0x21` room join result.
    RoomJoinResult(RoomJoinResult),
    /// `0x22` room leave.
    RoomLeave(RoomLeave),
    /// `0x23` room pull.
    RoomPull(RoomPull),
    /// `0x24` room batch.
    RoomBatch(RoomBatch),
    /// `0x28` heartbeat.
    Ping(Ping),
    /// `0x29` heartbeat answer.
    Pong(Pong),
    /// `0x2A` server go-away.
    GoAway(GoAway),
    /// `0x2B` request error.
    Error(Error),
    /// `0x03` tunnel close (the sender closes the connection next).
    Close(Close),
}

impl Message {
    /// Decodes a frame received after the tunnel handshake.
    ///
    /// # Errors
    ///
    /// [`ChannelError::UnknownFrameType`] for an application frame type the
    /// channel does not define, [`ChannelError::UnexpectedFrame`] for a hello
    /// frame, and [`ChannelError::Frame`] when the body does not decode. Each
    /// maps to a close code through [`ChannelError::code`].
    pub fn decode(frame: &Frame) -> Result<Self, ChannelError> {
        let message = match frame.ty {
            ft::LOGIN => Self::Login(frame.decode()?),
            ft::LOGIN_RESULT => Self::LoginResult(frame.decode()?),
            ft::LOGOUT => Self::Logout(frame.decode()?),
            ft::TAGS => Self::Tags(frame.decode()?),
            ft::TAGS_RESULT => Self::TagsResult(frame.decode()?),
            ft::DOWNLINK => Self::Downlink(frame.decode()?),
            ft::DOWNLINK_ACK => Self::DownlinkAck(frame.decode()?),
            ft::UPLINK => Self::Uplink(frame.decode()?),
            ft::UPLINK_ACK => Self::UplinkAck(frame.decode()?),
            ft::ROOM_JOIN => Self::RoomJoin(frame.decode()?),
            ft::ROOM_JOIN_RESULT => Self::RoomJoinResult(frame.decode()?),
            ft::ROOM_LEAVE => Self::RoomLeave(frame.decode()?),
            ft::ROOM_PULL => Self::RoomPull(frame.decode()?),
            ft::ROOM_BATCH => Self::RoomBatch(frame.decode()?),
            ft::PING => Self::Ping(frame.decode()?),
            ft::PONG => Self::Pong(frame.decode()?),
            ft::GO_AWAY => Self::GoAway(frame.decode()?),
            ft::ERROR => Self::Error(frame.decode()?),
            FrameType::CLOSE => Self::Close(frame.decode()?),
            ty if ty.is_control() => return Err(ChannelError::UnexpectedFrame(ty)),
            ty => return Err(ChannelError::UnknownFrameType(ty.code())),
        };
        Ok(message)
    }

    /// The frame type this message travels in.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Login(_) => ft::LOGIN,
            Self::LoginResult(_) => ft::LOGIN_RESULT,
            Self::Logout(_) => ft::LOGOUT,
            Self::Tags(_) => ft::TAGS,
            Self::TagsResult(_) => ft::TAGS_RESULT,
            Self::Downlink(_) => ft::DOWNLINK,
            Self::DownlinkAck(_) => ft::DOWNLINK_ACK,
            Self::Uplink(_) => ft::UPLINK,
            Self::UplinkAck(_) => ft::UPLINK_ACK,
            Self::RoomJoin(_) => ft::ROOM_JOIN,
            Self::RoomJoinResult(_) => ft::ROOM_JOIN_RESULT,
            Self::RoomLeave(_) => ft::ROOM_LEAVE,
            Self::RoomPull(_) => ft::ROOM_PULL,
            Self::RoomBatch(_) => ft::ROOM_BATCH,
            Self::Ping(_) => ft::PING,
            Self::Pong(_) => ft::PONG,
            Self::GoAway(_) => ft::GO_AWAY,
            Self::Error(_) => ft::ERROR,
            Self::Close(_) => FrameType::CLOSE,
        }
    }

    /// Encodes the message into its frame.
    pub fn to_frame(&self) -> Frame {
        let ty = self.frame_type();
        match self {
            Self::Login(m) => Frame::from_message(ty, m),
            Self::LoginResult(m) => Frame::from_message(ty, m),
            Self::Logout(m) => Frame::from_message(ty, m),
            Self::Tags(m) => Frame::from_message(ty, m),
            Self::TagsResult(m) => Frame::from_message(ty, m),
            Self::Downlink(m) => Frame::from_message(ty, m),
            Self::DownlinkAck(m) => Frame::from_message(ty, m),
            Self::Uplink(m) => Frame::from_message(ty, m),
            Self::UplinkAck(m) => Frame::from_message(ty, m),
            Self::RoomJoin(m) => Frame::from_message(ty, m),
            Self::RoomJoinResult(m) => Frame::from_message(ty, m),
            Self::RoomLeave(m) => Frame::from_message(ty, m),
            Self::RoomPull(m) => Frame::from_message(ty, m),
            Self::RoomBatch(m) => Frame::from_message(ty, m),
            Self::Ping(m) => Frame::from_message(ty, m),
            Self::Pong(m) => Frame::from_message(ty, m),
            Self::GoAway(m) => Frame::from_message(ty, m),
            Self::Error(m) => Frame::from_message(ty, m),
            Self::Close(m) => Frame::from_message(ty, m),
        }
    }
}

impl From<Message> for Frame {
    fn from(message: Message) -> Self {
        message.to_frame()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proto::tunnel::ErrorCode;

    use super::*;

    #[test]
    fn round_trip_every_variant() {
        let messages = vec![
            Message::Login(Login {
                stream: 1,
                biz: "chat".into(),
                ..Default::default()
            }),
            Message::LoginResult(LoginResult {
                stream: 1,
                ..Default::default()
            }),
            Message::Logout(Logout { stream: 1 }),
            Message::Tags(Tags {
                stream: 1,
                request_id: 2,
                bind: vec!["a".into()],
                unbind: vec![],
            }),
            Message::TagsResult(TagsResult {
                stream: 1,
                ..Default::default()
            }),
            Message::Downlink(Downlink {
                stream: 1,
                seq: 3,
                payload: Bytes::from_static(b"x"),
                ..Default::default()
            }),
            Message::DownlinkAck(DownlinkAck { stream: 1, seq: 3 }),
            Message::Uplink(Uplink {
                stream: 1,
                seq: 1,
                ..Default::default()
            }),
            Message::UplinkAck(UplinkAck {
                stream: 1,
                seq: 1,
                ..Default::default()
            }),
            Message::RoomJoin(RoomJoin {
                stream: 1,
                room: "r".into(),
            }),
            Message::RoomJoinResult(RoomJoinResult {
                stream: 1,
                ..Default::default()
            }),
            Message::RoomLeave(RoomLeave {
                stream: 1,
                room: "r".into(),
            }),
            Message::RoomPull(RoomPull {
                stream: 1,
                room: "r".into(),
                offset: 4,
                max: 5,
                wait_ms: 6,
            }),
            Message::RoomBatch(RoomBatch {
                room: "r".into(),
                ..Default::default()
            }),
            Message::Ping(Ping { nonce: 7 }),
            Message::Pong(Pong { nonce: 7 }),
            Message::GoAway(GoAway::default()),
            Message::Error(Error {
                code: ErrorCode::NotLoggedIn as i32,
                ..Default::default()
            }),
            Message::Close(Close::default()),
        ];
        for message in messages {
            let frame = message.to_frame();
            assert_eq!(Message::decode(&frame).unwrap(), message);
        }
    }

    #[test]
    fn unknown_and_unexpected_types() {
        let frame = Frame::new(FrameType::app(0x3F), Bytes::new());
        let err = Message::decode(&frame).unwrap_err();
        assert_eq!(err, ChannelError::UnknownFrameType(0x3F));
        assert_eq!(err.code(), ErrorCode::UnknownFrameType);

        let frame = Frame::new(FrameType::CLIENT_HELLO, Bytes::new());
        let err = Message::decode(&frame).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Protocol);
    }

    #[test]
    fn malformed_body_maps_to_malformed_frame() {
        let frame = Frame::new(ft::DOWNLINK, Bytes::from_static(&[0xff, 0xff, 0xff]));
        let err = Message::decode(&frame).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MalformedFrame);
    }
}

//! Frame type codes of the Pike channel messages.
//!
//! These are documented protocol (`docs/protocol.md`): each Pike channel
//! message travels as the protobuf body of one tntunnel application frame
//! (types `0x10..=0x3F`) whose type names the message. Codes not listed here
//! are answered with [`ErrorCode::UnknownFrameType`](proto::tunnel::ErrorCode::UnknownFrameType).

use tntunnel::FrameType;

/// [`Login`](proto::channel::Login), client → server.
pub const LOGIN: FrameType = FrameType::app(0x10);
/// [`LoginResult`](proto::channel::LoginResult), server → client.
pub const LOGIN_RESULT: FrameType = FrameType::app(0x11);
/// [`Logout`](proto::channel::Logout), client → server.
pub const LOGOUT: FrameType = FrameType::app(0x12);
/// [`Tags`](proto::channel::Tags), client → server.
pub const TAGS: FrameType = FrameType::app(0x13);
/// [`TagsResult`](proto::channel::TagsResult), server → client.
pub const TAGS_RESULT: FrameType = FrameType::app(0x14);
/// [`Downlink`](proto::channel::Downlink), server → client.
pub const DOWNLINK: FrameType = FrameType::app(0x18);
/// [`DownlinkAck`](proto::channel::DownlinkAck), client → server.
pub const DOWNLINK_ACK: FrameType = FrameType::app(0x19);
/// [`Uplink`](proto::channel::Uplink), client → server.
pub const UPLINK: FrameType = FrameType::app(0x1A);
/// [`UplinkAck`](proto::channel::UplinkAck), server → client.
pub const UPLINK_ACK: FrameType = FrameType::app(0x1B);
/// [`RoomJoin`](proto::channel::RoomJoin), client → server.
pub const ROOM_JOIN: FrameType = FrameType::app(0x20);
/// [`RoomJoinResult`](proto::channel::RoomJoinResult), server → client.
pub const ROOM_JOIN_RESULT: FrameType = FrameType::app(0x21);
/// [`RoomLeave`](proto::channel::RoomLeave), client → server.
pub const ROOM_LEAVE: FrameType = FrameType::app(0x22);
/// [`RoomPull`](proto::channel::RoomPull), client → server.
pub const ROOM_PULL: FrameType = FrameType::app(0x23);
/// [`RoomBatch`](proto::channel::RoomBatch), server → client.
pub const ROOM_BATCH: FrameType = FrameType::app(0x24);
/// [`Ping`](proto::channel::Ping), either direction.
pub const PING: FrameType = FrameType::app(0x28);
/// [`Pong`](proto::channel::Pong), either direction.
pub const PONG: FrameType = FrameType::app(0x29);
/// [`GoAway`](proto::channel::GoAway), server → client.
pub const GO_AWAY: FrameType = FrameType::app(0x2A);
/// [`Error`](proto::channel::Error), server → client.
pub const ERROR: FrameType = FrameType::app(0x2B);

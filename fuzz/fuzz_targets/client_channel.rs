//! Drives the client channel machine with an arbitrary mix of server frames
//! (structured ones of every server-to-client type, and raw bytes of any
//! type), application calls and connection events.
//!
//! Nothing may panic, and the client keeps its promises whatever the
//! server sends: every frame it writes decodes as a client-to-server
//! message, reliable messages reach the application once each and in
//! increasing seq order per stream (across reconnects), and each room
//! offset once per stream between joins.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use pike_channel::proto::channel::{
    Downlink, Error as ErrorFrame, GoAway, LoginResult, Pong, RoomBatch, RoomJoinResult,
    RoomMessage, TagsResult, UplinkAck,
};
use pike_channel::proto::tunnel::{Close, ServerHello};
use pike_channel::tntunnel::{Frame, FrameType};
use pike_channel::{
    ClientChannel, ClientConfig, DisconnectReason, Event, LoginParams, Message, StreamId,
};

#[derive(Arbitrary, Debug)]
enum Op {
    Raw {
        ty: u8,
        body: Vec<u8>,
    },
    LoginResult {
        stream: u8,
        code: u8,
        epoch: u8,
        expires_at_ms: u64,
        uplink_window: u8,
    },
    Downlink {
        stream: u8,
        seq: u16,
    },
    UplinkAck {
        stream: u8,
        seq: u16,
        code: u8,
    },
    TagsResult {
        stream: u8,
        request_id: u8,
    },
    RoomJoinResult {
        stream: u8,
        code: u8,
        head: u16,
        tail: u16,
    },
    RoomBatch {
        stream: u8,
        pushed: bool,
        offsets: Vec<u16>,
        next_offset: u16,
    },
    Error {
        stream: Option<u8>,
        code: u8,
        frame_type: u8,
    },
    GoAway,
    Close {
        code: u8,
    },
    Pong {
        nonce: u64,
    },
    Send {
        stream: u8,
        len: u8,
    },
    JoinRoom {
        stream: u8,
        from: Option<u16>,
    },
    Logout {
        stream: u8,
    },
    Login,
    Advance {
        millis: u32,
    },
    Lost,
}

const ROOM: &str = "live";

fn stream(n: u8) -> u32 {
    u32::from(n % 4)
}

fuzz_target!(|ops: Vec<Op>| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut client = ClientChannel::new(Arc::new(ClientConfig::default()), 7);
    for alias in ["a", "b"] {
        client.login(LoginParams::new("chat", alias, "c"), now);
    }
    client.start(now);
    // Highest reliable seq handed to the application per stream, and the
    // highest room offset per stream.
    let mut delivered: HashMap<u32, u64> = HashMap::new();
    let mut offsets: HashMap<u32, HashSet<u64>> = HashMap::new();

    for op in ops.into_iter().take(256) {
        let frame = match op {
            Op::Raw { ty, body } => FrameType::try_from(ty).ok().map(|ty| Frame::new(ty, body)),
            Op::LoginResult {
                stream: s,
                code,
                epoch,
                expires_at_ms,
                uplink_window,
            } => Some(
                Message::LoginResult(LoginResult {
                    stream: stream(s),
                    code: i32::from(code % 112),
                    route_id: "r0".into(),
                    epoch: u64::from(epoch % 3),
                    expires_at_ms,
                    uplink_window: u32::from(uplink_window),
                    ..LoginResult::default()
                })
                .to_frame(),
            ),
            Op::Downlink { stream: s, seq } => Some(
                Message::Downlink(Downlink {
                    stream: stream(s),
                    seq: u64::from(seq),
                    payload: vec![1u8; 3].into(),
                    ..Downlink::default()
                })
                .to_frame(),
            ),
            Op::UplinkAck {
                stream: s,
                seq,
                code,
            } => Some(
                Message::UplinkAck(UplinkAck {
                    stream: stream(s),
                    seq: u64::from(seq),
                    code: i32::from(code % 112),
                    ..UplinkAck::default()
                })
                .to_frame(),
            ),
            Op::TagsResult {
                stream: s,
                request_id,
            } => Some(
                Message::TagsResult(TagsResult {
                    stream: stream(s),
                    request_id: u32::from(request_id),
                    ..TagsResult::default()
                })
                .to_frame(),
            ),
            Op::RoomJoinResult {
                stream: s,
                code,
                head,
                tail,
            } => Some(
                Message::RoomJoinResult(RoomJoinResult {
                    stream: stream(s),
                    room: ROOM.into(),
                    code: i32::from(code % 112),
                    head: u64::from(head),
                    tail: u64::from(tail),
                    ..RoomJoinResult::default()
                })
                .to_frame(),
            ),
            Op::RoomBatch {
                stream: s,
                pushed,
                offsets,
                next_offset,
            } => Some(
                Message::RoomBatch(RoomBatch {
                    room: ROOM.into(),
                    stream: stream(s),
                    pushed,
                    next_offset: u64::from(next_offset),
                    messages: offsets
                        .into_iter()
                        .take(64)
                        .map(|o| RoomMessage {
                            offset: u64::from(o),
                            ..RoomMessage::default()
                        })
                        .collect(),
                    ..RoomBatch::default()
                })
                .to_frame(),
            ),
            Op::Error {
                stream: s,
                code,
                frame_type,
            } => Some(
                Message::Error(ErrorFrame {
                    code: i32::from(code % 112),
                    stream: s.map(stream),
                    frame_type: u32::from(frame_type),
                    ..ErrorFrame::default()
                })
                .to_frame(),
            ),
            Op::GoAway => Some(Message::GoAway(GoAway::default()).to_frame()),
            Op::Close { code } => Some(Frame::from_message(
                FrameType::CLOSE,
                &Close {
                    code: i32::from(code % 16),
                    ..Close::default()
                },
            )),
            Op::Pong { nonce } => Some(Message::Pong(Pong { nonce }).to_frame()),
            Op::Send { stream: s, len } => {
                let _ = client.send(
                    StreamId::new(stream(s)),
                    vec![2u8; usize::from(len)],
                    None,
                    now,
                );
                None
            }
            Op::JoinRoom { stream: s, from } => {
                // A join may start from any offset: the room order restarts.
                offsets.remove(&stream(s));
                let _ = client.join_room(StreamId::new(stream(s)), ROOM, from.map(u64::from), now);
                None
            }
            Op::Logout { stream: s } => {
                let _ = client.logout(StreamId::new(stream(s)), now);
                None
            }
            Op::Login => {
                client.login(LoginParams::new("chat", "c", "c"), now);
                None
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis));
                if client.poll_timeout().is_some_and(|at| at <= now) {
                    client.handle_timeout(now);
                }
                None
            }
            Op::Lost => {
                if let Some(id) = client.connection_id() {
                    client.handle_disconnected(id, DisconnectReason::Transport("cut".into()), now);
                }
                None
            }
        };
        if let Some(frame) = frame {
            client.handle_frame(frame, now);
        }

        while let Some(event) = client.poll_event() {
            match event {
                // The driver's part: every dial succeeds at once.
                Event::Connect { id, .. } => {
                    client.handle_connected(id, &ServerHello::default(), now)
                }
                Event::Received(d) if d.seq > 0 => {
                    let last = delivered.entry(d.stream.value()).or_default();
                    assert!(
                        d.seq > *last,
                        "stream {} got seq {} after {}",
                        d.stream.value(),
                        d.seq,
                        last
                    );
                    *last = d.seq;
                }
                Event::LoginOk {
                    stream,
                    positions_reset: true,
                    ..
                } => {
                    delivered.remove(&stream.value());
                }
                Event::RoomMessages {
                    stream, messages, ..
                } => {
                    // A batch lists priorities first, so offsets need not
                    // rise; each must reach the app once between joins.
                    let seen = offsets.entry(stream.value()).or_default();
                    for m in messages {
                        assert!(seen.insert(m.offset), "room offset {} again", m.offset);
                    }
                }
                Event::LoggedOut { stream } | Event::LoginFailed { stream, .. } => {
                    delivered.remove(&stream.value());
                    offsets.remove(&stream.value());
                }
                _ => {}
            }
        }
        while let Some(out) = client.poll_transmit() {
            if out.ty.is_control() {
                continue;
            }
            Message::decode(&out).expect("the client writes frames that decode");
        }
    }
});

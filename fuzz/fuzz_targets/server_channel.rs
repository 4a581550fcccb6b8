//! Drives the server channel machine with an arbitrary mix of client frames
//! (structured ones for every request type, and raw bytes of any type) and
//! gateway actions (accepting or refusing logins, pushes, uplink acks, room
//! answers, go-away, time passing).
//!
//! Nothing may panic, and the machine must keep its promises whatever the
//! client sends: every frame it writes decodes as a server-to-client
//! message, it never writes a downlink for a stream it did not accept,
//! never has more reliable messages in flight than its window, and never
//! holds more uplink bytes than its bound plus one message.
#![no_main]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use pike_channel::proto::channel::{
    DownlinkAck, Login, Logout, RoomBatch, RoomJoin, RoomLeave, RoomPull, Tags, Uplink,
};
use pike_channel::proto::tunnel::{ClientHello, ErrorCode};
use pike_channel::tntunnel::{Frame, FrameType};
use pike_channel::{
    Message, Push, ServerChannel, ServerConfig, ServerEvent, StreamId, UplinkResult,
};

/// One step: something the client sends, or something the gateway does.
#[derive(Arbitrary, Debug)]
enum Op {
    /// A frame of any type with any body.
    Raw {
        ty: u8,
        body: Vec<u8>,
    },
    Login {
        stream: u8,
        biz: String,
        alias: String,
        last_acked_seq: u64,
        epoch: u64,
    },
    Logout {
        stream: u8,
    },
    Tags {
        stream: u8,
        bind: Vec<String>,
        unbind: Vec<String>,
    },
    Ack {
        stream: u8,
        seq: u64,
    },
    Uplink {
        stream: u8,
        seq: u64,
        key: String,
        len: u16,
        first_attempt: bool,
    },
    RoomJoin {
        stream: u8,
        room: String,
    },
    RoomLeave {
        stream: u8,
        room: String,
    },
    RoomPull {
        stream: u8,
        room: String,
        offset: u64,
        max: u32,
        wait_ms: u32,
    },
    Ping {
        nonce: u64,
    },
    /// The gateway answers the oldest pending request it knows of.
    Answer {
        accept: bool,
        value: u64,
    },
    Push {
        stream: u8,
        seq: u64,
        len: u8,
    },
    PushTransient {
        stream: u8,
    },
    RoomBatch {
        stream: u8,
        room: String,
        next_offset: u64,
    },
    GoAway,
    Advance {
        millis: u32,
    },
    ConnectionLost,
}

/// Requests the gateway has been told about and may answer.
#[derive(Debug)]
enum Pending {
    Login(StreamId),
    Refresh(StreamId),
    Uplink(StreamId, u64),
    Join(StreamId, String),
    Tags(StreamId, u32),
}

fn stream(n: u8) -> StreamId {
    // A few streams, so that requests meet each other.
    StreamId::new(u32::from(n % 4))
}

fn frame(message: &Message) -> Frame {
    message.to_frame()
}

fuzz_target!(|ops: Vec<Op>| {
    let config = Arc::new(ServerConfig::default());
    let start = Instant::now();
    let mut now = start;
    let mut server = ServerChannel::new(config.clone(), ClientHello::default(), now);
    let mut pending: Vec<Pending> = Vec::new();
    // Streams whose accepting LOGIN_RESULT was written.
    let mut accepted: HashSet<u32> = HashSet::new();
    let window = 512usize;
    let uplink_bound = 4 * 1024 * 1024 + usize::from(u16::MAX);

    for op in ops.into_iter().take(256) {
        match op {
            Op::Raw { ty, body } => {
                if let Ok(ty) = FrameType::try_from(ty) {
                    server.handle_frame(Frame::new(ty, body), now);
                }
            }
            Op::Login {
                stream: s,
                biz,
                alias,
                last_acked_seq,
                epoch,
            } => {
                let m = Message::Login(Login {
                    stream: stream(s).value(),
                    biz,
                    alias,
                    credential: "c".into(),
                    last_acked_seq,
                    epoch,
                    ..Login::default()
                });
                server.handle_frame(frame(&m), now);
            }
            Op::Logout { stream: s } => {
                let m = Message::Logout(Logout {
                    stream: stream(s).value(),
                });
                server.handle_frame(frame(&m), now);
            }
            Op::Tags {
                stream: s,
                bind,
                unbind,
            } => {
                let m = Message::Tags(Tags {
                    stream: stream(s).value(),
                    request_id: 1,
                    bind,
                    unbind,
                });
                server.handle_frame(frame(&m), now);
            }
            Op::Ack { stream: s, seq } => {
                let m = Message::DownlinkAck(DownlinkAck {
                    stream: stream(s).value(),
                    seq,
                });
                server.handle_frame(frame(&m), now);
            }
            Op::Uplink {
                stream: s,
                seq,
                key,
                len,
                first_attempt,
            } => {
                let m = Message::Uplink(Uplink {
                    stream: stream(s).value(),
                    seq,
                    idempotency_key: key,
                    payload: vec![0u8; usize::from(len)].into(),
                    first_attempt,
                });
                server.handle_frame(frame(&m), now);
            }
            Op::RoomJoin { stream: s, room } => {
                let m = Message::RoomJoin(RoomJoin {
                    stream: stream(s).value(),
                    room,
                });
                server.handle_frame(frame(&m), now);
            }
            Op::RoomLeave { stream: s, room } => {
                let m = Message::RoomLeave(RoomLeave {
                    stream: stream(s).value(),
                    room,
                });
                server.handle_frame(frame(&m), now);
            }
            Op::RoomPull {
                stream: s,
                room,
                offset,
                max,
                wait_ms,
            } => {
                let m = Message::RoomPull(RoomPull {
                    stream: stream(s).value(),
                    room,
                    offset,
                    max,
                    wait_ms,
                });
                server.handle_frame(frame(&m), now);
            }
            Op::Ping { nonce } => {
                let m = Message::Ping(pike_channel::proto::channel::Ping { nonce });
                server.handle_frame(frame(&m), now);
            }
            Op::Answer { accept, value } => {
                if pending.is_empty() {
                    continue;
                }
                // Answers may be late: the request's stream may be gone.
                let _ = match pending.remove(0) {
                    Pending::Login(s) if accept => server.accept_login(s, "r0", value, now),
                    Pending::Login(s) => server.reject_login(s, ErrorCode::AuthFailed, "no", now),
                    Pending::Refresh(s) if accept => server.accept_refresh(s, None, now),
                    Pending::Refresh(s) => {
                        server.reject_refresh(s, ErrorCode::AuthFailed, "no", now)
                    }
                    Pending::Uplink(s, seq) => {
                        let result = if accept {
                            UplinkResult::accepted()
                        } else {
                            UplinkResult::rejected(ErrorCode::BackendUnavailable, "down")
                        };
                        server.ack_uplink(s, seq, result, now)
                    }
                    Pending::Join(s, room) if accept => {
                        server.room_joined(s, room, value, value, now)
                    }
                    Pending::Join(s, room) => {
                        server.room_join_failed(s, room, ErrorCode::LimitExceeded, "full", now)
                    }
                    Pending::Tags(s, id) => {
                        server.tags_result(s, id, ErrorCode::Unspecified, "", Vec::new(), now)
                    }
                };
            }
            Op::Push {
                stream: s,
                seq,
                len,
            } => {
                let _ = server.push(stream(s), seq, Push::new(vec![1u8; usize::from(len)]), now);
            }
            Op::PushTransient { stream: s } => {
                let _ = server.push_transient(stream(s), Push::new(&b"t"[..]).message_id(7), now);
            }
            Op::RoomBatch {
                stream: s,
                room,
                next_offset,
            } => {
                let batch = RoomBatch {
                    room,
                    next_offset,
                    ..RoomBatch::default()
                };
                let _ = server.room_batch(stream(s), batch, now);
            }
            Op::GoAway => server.go_away(ErrorCode::GoingAway, "drain", None, now),
            Op::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis));
                if server.poll_timeout().is_some_and(|at| at <= now) {
                    server.handle_timeout(now);
                }
            }
            Op::ConnectionLost => server.handle_connection_lost(now),
        }

        while let Some(event) = server.poll_event() {
            match event {
                ServerEvent::LoginRequested { stream, .. } => pending.push(Pending::Login(stream)),
                ServerEvent::CredentialRefresh { stream, .. } => {
                    pending.push(Pending::Refresh(stream))
                }
                ServerEvent::Uplink { stream, seq, .. } => {
                    pending.push(Pending::Uplink(stream, seq))
                }
                ServerEvent::RoomJoin { stream, room } => pending.push(Pending::Join(stream, room)),
                ServerEvent::TagsRequested {
                    stream, request_id, ..
                } => {
                    pending.push(Pending::Tags(stream, request_id));
                }
                ServerEvent::LoggedOut { stream } | ServerEvent::LoginExpired { stream } => {
                    accepted.remove(&stream.value());
                }
                _ => {}
            }
        }
        while let Some(out) = server.poll_transmit() {
            if out.ty.is_control() {
                continue; // a CLOSE
            }
            let message = Message::decode(&out).expect("the server writes frames that decode");
            match message {
                Message::LoginResult(r) if r.code == 0 => {
                    accepted.insert(r.stream);
                }
                Message::LoginResult(r) => {
                    accepted.remove(&r.stream);
                }
                Message::Downlink(d) => {
                    assert!(
                        accepted.contains(&d.stream),
                        "downlink on stream {} never accepted",
                        d.stream
                    );
                }
                Message::Error(e) if e.code == ErrorCode::TokenExpired as i32 => {
                    if let Some(s) = e.stream {
                        accepted.remove(&s);
                    }
                }
                _ => {}
            }
        }
        for s in 0..4u32 {
            if let Some(n) = server.in_flight(StreamId::new(s)) {
                assert!(n <= window, "{n} in flight on stream {s}");
            }
        }
        assert!(server.uplink_pending_bytes() <= uplink_bound);
        let _ = config.as_ref();
    }
});

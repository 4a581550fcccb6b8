//! The server machine on its own: idle timeout, malformed frames, request
//! errors, uplink dedup, the downlink window, go-away.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use proto::channel::{
    DownlinkAck, Error as ErrorFrame, Login, LoginResult, Logout, Ping, Pong, RoomJoin,
    RoomJoinResult, RoomLeave, RoomPull, Tags, TagsResult, Uplink, UplinkAck,
};
use proto::tunnel::{ClientHello, Close, ErrorCode};
use tntunnel::{Frame, FrameType};

use super::util::*;
use crate::limits::{
    MAX_ALIAS_LEN, MAX_BIZ_LEN, MAX_CREDENTIAL_LEN, MAX_IDEMPOTENCY_KEY_LEN, MAX_ROOM_NAME_LEN,
    MAX_ROUTE_ID_LEN, MAX_TAG_LEN, MAX_TAGS_PER_REQUEST,
};
use crate::server::SERVER_ONLY_TYPES;
use crate::{
    ClientConfig, CloseInitiator, Message, Push, PushError, ReplyError, ServerChannel,
    ServerConfig, ServerEvent, StreamId, UplinkResult,
};

pub(super) fn server() -> (ServerChannel, Instant) {
    let t = origin();
    (
        ServerChannel::new(Arc::new(ServerConfig::default()), ClientHello::default(), t),
        t,
    )
}

pub(super) fn frames(server: &mut ServerChannel) -> Vec<Frame> {
    std::iter::from_fn(|| server.poll_transmit()).collect()
}

pub(super) fn events(server: &mut ServerChannel) -> Vec<ServerEvent> {
    std::iter::from_fn(|| server.poll_event()).collect()
}

/// A server with stream 1 logged in.
pub(super) fn logged_in() -> (ServerChannel, StreamId, Instant) {
    let (mut server, t) = server();
    let login = Login {
        stream: 1,
        biz: "chat".into(),
        alias: "u1".into(),
        last_acked_seq: 7,
        ..Login::default()
    };
    server.handle_frame(Message::Login(login).to_frame(), t);
    let events = events(&mut server);
    assert!(matches!(
        &events[..],
        [ServerEvent::LoginRequested {
            last_acked_seq: 7,
            ..
        }]
    ));
    let stream = StreamId::new(1);
    server.accept_login(stream, "r1", 9, t).unwrap();
    frames(&mut server);
    (server, stream, t)
}

fn assert_closed_with(server: &mut ServerChannel, code: ErrorCode) {
    let out = frames(server);
    let close = out.last().expect("a close frame");
    assert_eq!(close.ty, FrameType::CLOSE);
    assert_eq!(close.decode::<Close>().unwrap().code(), code);
    let events = events(server);
    assert!(
        matches!(events.last(), Some(ServerEvent::Closed { code: c, initiator: CloseInitiator::Local, .. }) if *c == code),
        "{events:?}"
    );
    assert!(server.is_closed());
    assert_eq!(server.poll_timeout(), None);
    assert!(!server.holds_resources(), "a closed machine holds nothing");
}

#[test]
fn idle_timeout_closes_and_frees() {
    let _guard = subscribe();
    let (mut server, stream, t) = logged_in();
    let idle = ServerConfig::default().get_idle_timeout();
    assert_eq!(idle, secs(90), "interval 60 + timeout 20 + slack 10");
    assert_eq!(server.poll_timeout(), Some(t + idle));
    // A ping pushes the deadline back and is answered at once.
    server.handle_frame(Message::Ping(Ping { nonce: 5 }).to_frame(), t + secs(50));
    let out = frames(&mut server);
    assert_eq!(out, [Message::Pong(Pong { nonce: 5 }).to_frame()]);
    assert_eq!(server.poll_timeout(), Some(t + secs(50) + idle));
    server.handle_timeout(t + secs(100));
    assert!(!server.is_closed());
    server.handle_timeout(t + secs(140));
    let closed = std::iter::from_fn(|| server.poll_event()).last();
    assert_eq!(
        closed,
        Some(ServerEvent::Closed {
            code: ErrorCode::IdleTimeout,
            message: "no heartbeat or data within the idle timeout".into(),
            initiator: CloseInitiator::Local,
            streams: vec![stream],
        })
    );
    let out = frames(&mut server);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].decode::<Close>().unwrap().code(),
        ErrorCode::IdleTimeout
    );
    assert_eq!(server.poll_timeout(), None);
    assert!(!server.holds_resources());
    assert_eq!(
        server.push(stream, 1, Push::new(&b"x"[..]), t + secs(141)),
        Err(PushError::Closed)
    );
}

#[test]
fn malformed_frame_closes_with_its_code() {
    let _guard = subscribe();
    let (mut server, _, t) = logged_in();
    server.handle_frame(
        Frame::new(
            crate::frame_types::UPLINK,
            Bytes::from_static(&[0x0a, 0xff]),
        ),
        t,
    );
    assert_closed_with(&mut server, ErrorCode::MalformedFrame);

    let (mut server, _, t) = logged_in();
    server.handle_frame(Frame::new(FrameType::app(0x3e), Bytes::new()), t);
    assert_closed_with(&mut server, ErrorCode::UnknownFrameType);

    let (mut server, _, t) = logged_in();
    server.handle_frame(Frame::new(FrameType::CLIENT_HELLO, Bytes::new()), t);
    assert_closed_with(&mut server, ErrorCode::Protocol);

    for ty in SERVER_ONLY_TYPES {
        let (mut server, _, t) = logged_in();
        server.handle_frame(Frame::new(ty, Bytes::new()), t);
        assert_closed_with(&mut server, ErrorCode::Protocol);
    }
}

#[test]
fn requests_naming_unknown_streams_get_an_error_frame() {
    let _guard = subscribe();
    let (mut server, _, t) = logged_in();
    let uplink = Uplink {
        stream: 9,
        seq: 1,
        ..Uplink::default()
    };
    server.handle_frame(Message::Uplink(uplink).to_frame(), t);
    let pull = RoomPull {
        stream: 4,
        room: "r".into(),
        ..RoomPull::default()
    };
    server.handle_frame(Message::RoomPull(pull).to_frame(), t);
    let errors: Vec<ErrorFrame> = frames(&mut server)
        .iter()
        .map(|f| f.decode().unwrap())
        .collect();
    assert_eq!(errors.len(), 2);
    assert_eq!(
        (errors[0].code(), errors[0].stream, errors[0].frame_type),
        (ErrorCode::NotLoggedIn, Some(9), 0x1A)
    );
    assert_eq!(
        (errors[1].code(), errors[1].stream, errors[1].frame_type),
        (ErrorCode::NotLoggedIn, Some(4), 0x23)
    );
    assert!(events(&mut server).is_empty());
    assert!(!server.is_closed(), "the connection stays up");
}

#[test]
fn duplicate_login_is_refused() {
    let _guard = subscribe();
    let (mut server, stream, t) = logged_in();
    let login = Login {
        stream: stream.value(),
        ..Login::default()
    };
    server.handle_frame(Message::Login(login).to_frame(), t);
    let error: ErrorFrame = frames(&mut server)[0].decode().unwrap();
    assert_eq!(error.code(), ErrorCode::AlreadyLoggedIn);
    assert!(events(&mut server).is_empty());
    assert_eq!(server.logged_in().collect::<Vec<_>>(), [stream]);
    // Answers that match no pending login are refused.
    assert_eq!(
        server.accept_login(stream, "r", 0, t),
        Err(ReplyError::NoPendingLogin(stream))
    );
}

#[test]
fn uplink_resend_is_reacked_without_a_new_event() {
    let _guard = subscribe();
    let (mut server, stream, t) = logged_in();
    let uplink = Uplink {
        stream: 1,
        seq: 1,
        idempotency_key: "k1".into(),
        payload: Bytes::from_static(b"p"),
        first_attempt: false,
    };
    server.handle_frame(Message::Uplink(uplink.clone()).to_frame(), t);
    assert_eq!(events(&mut server).len(), 1);
    // A resend while the backend has not answered: nothing new.
    server.handle_frame(Message::Uplink(uplink.clone()).to_frame(), t);
    assert!(events(&mut server).is_empty());
    assert!(frames(&mut server).is_empty());
    server
        .ack_uplink(stream, 1, UplinkResult::accepted().with_route_id("r2"), t)
        .unwrap();
    let ack: UplinkAck = frames(&mut server)[0].decode().unwrap();
    assert_eq!(
        (ack.seq, ack.code(), ack.route_id.as_str()),
        (1, ErrorCode::Unspecified, "r2")
    );
    // A resend after the ack: acked again from memory, no event.
    server.handle_frame(Message::Uplink(uplink).to_frame(), t);
    assert!(events(&mut server).is_empty());
    let again: UplinkAck = frames(&mut server)[0].decode().unwrap();
    assert_eq!((again.seq, again.code()), (1, ErrorCode::Unspecified));
    assert_eq!(server.stats().uplink_duplicates, 2);
    assert_eq!(
        server.ack_uplink(stream, 1, UplinkResult::accepted(), t),
        Err(ReplyError::NoPendingUplink { stream, seq: 1 })
    );
}

#[test]
fn downlink_window_and_cumulative_acks() {
    let _guard = subscribe();
    let mut config = ServerConfig::default();
    config.downlink_window(3).unwrap();
    let t = origin();
    let mut server = ServerChannel::new(Arc::new(config), ClientHello::default(), t);
    server.handle_frame(
        Message::Login(Login {
            stream: 2,
            biz: "chat".into(),
            alias: "u2".into(),
            ..Login::default()
        })
        .to_frame(),
        t,
    );
    events(&mut server);
    let stream = StreamId::new(2);
    assert_eq!(
        server.push(stream, 1, Push::new(&b"x"[..]), t),
        Err(PushError::NotLoggedIn(stream))
    );
    server.accept_login(stream, "r", 0, t).unwrap();
    for seq in 1..=3 {
        server.push(stream, seq, Push::new(&b"x"[..]), t).unwrap();
    }
    assert_eq!(
        server.push(stream, 4, Push::new(&b"x"[..]), t),
        Err(PushError::WindowFull { stream, window: 3 })
    );
    assert_eq!(
        server.push(stream, 3, Push::new(&b"x"[..]), t),
        Err(PushError::SeqNotIncreasing {
            stream,
            seq: 3,
            last: 3
        })
    );
    server
        .push_transient(stream, Push::new(&b"t"[..]), t)
        .unwrap();
    assert_eq!(server.in_flight(stream), Some(3));
    server.handle_frame(
        Message::DownlinkAck(DownlinkAck { stream: 2, seq: 2 }).to_frame(),
        t,
    );
    assert_eq!(events(&mut server), [ServerEvent::Acked { stream, seq: 2 }]);
    assert_eq!(server.in_flight(stream), Some(1));
    assert!(server.can_push(stream));
    // Stale acks are ignored.
    server.handle_frame(
        Message::DownlinkAck(DownlinkAck { stream: 2, seq: 1 }).to_frame(),
        t,
    );
    assert!(events(&mut server).is_empty());
    assert_eq!(server.acked(stream), Some(2));
}

fn ack_frame(stream: u32, seq: u64) -> Frame {
    Message::DownlinkAck(DownlinkAck { stream, seq }).to_frame()
}

fn error_frames(server: &mut ServerChannel) -> Vec<ErrorFrame> {
    frames(server)
        .iter()
        .map(|f| f.decode().expect("an error frame"))
        .collect()
}

#[test]
fn acks_for_a_stream_not_logged_in_are_answered_not_logged_in() {
    let _guard = subscribe();
    let (mut server, t) = server();
    // Unknown stream.
    server.handle_frame(ack_frame(3, 1), t);
    // A login still waiting for the gateway's answer.
    server.handle_frame(login_frame(4, "u4"), t);
    events(&mut server);
    server.handle_frame(ack_frame(4, 1), t);
    let errors = error_frames(&mut server);
    let seen: Vec<_> = errors
        .iter()
        .map(|e| (e.code(), e.stream, e.frame_type, e.message.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                ErrorCode::NotLoggedIn,
                Some(3),
                0x19,
                "stream is not logged in"
            ),
            (
                ErrorCode::NotLoggedIn,
                Some(4),
                0x19,
                "stream is not logged in"
            ),
        ]
    );
    assert!(events(&mut server).is_empty());
    assert_eq!(server.stats().acks_not_logged_in, 2);
    assert!(!server.is_closed(), "the connection stays up");
    // Once accepted, the stream's acks are taken.
    let stream = StreamId::new(4);
    server.accept_login(stream, "r", 1, t).unwrap();
    server.push(stream, 1, Push::new(&b"x"[..]), t).unwrap();
    frames(&mut server);
    server.handle_frame(ack_frame(4, 1), t);
    assert!(frames(&mut server).is_empty());
    assert_eq!(events(&mut server), [ServerEvent::Acked { stream, seq: 1 }]);
}

#[test]
fn an_ack_above_what_this_connection_sent_is_refused_and_ignored() {
    let _guard = subscribe();
    // Stream 1 logged in with last_acked_seq 7; the log holds up to 9.
    let (mut server, stream, t) = logged_in();
    // Acking the stored position right after the re-login: nothing was
    // sent on this connection yet.
    server.handle_frame(ack_frame(1, 7), t);
    let errors = error_frames(&mut server);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].code(), errors[0].stream, errors[0].frame_type),
        (ErrorCode::InvalidArgument, Some(1), 0x19)
    );
    assert_eq!(
        errors[0].message,
        "ack 7 is above 0, the highest seq sent on stream 1 on this connection; \
         a position from an earlier connection goes in Login.last_acked_seq"
    );
    assert!(events(&mut server).is_empty());
    assert_eq!(server.acked(stream), Some(0), "the ack is ignored");
    // After a gap (8 expired), 9 is sent: an ack of 9 covers the gap; 12
    // is above what was sent.
    server.push(stream, 9, Push::new(&b"x"[..]), t).unwrap();
    frames(&mut server);
    server.handle_frame(ack_frame(1, 12), t);
    let errors = error_frames(&mut server);
    assert_eq!(
        errors[0].message,
        "ack 12 is above 9, the highest seq sent on stream 1 on this connection; \
         a position from an earlier connection goes in Login.last_acked_seq"
    );
    server.handle_frame(ack_frame(1, 9), t);
    assert!(frames(&mut server).is_empty());
    assert_eq!(events(&mut server), [ServerEvent::Acked { stream, seq: 9 }]);
    assert_eq!(server.in_flight(stream), Some(0));
    // Re-acks at or below the position and seq 0 are silent no-ops.
    for seq in [9, 3, 0] {
        server.handle_frame(ack_frame(1, seq), t);
    }
    assert!(frames(&mut server).is_empty());
    assert!(events(&mut server).is_empty());
    assert_eq!(server.acked(stream), Some(9));
    assert_eq!(server.stats().acks_above_sent, 2);
    assert_eq!(server.stats().error_frames, 2);
    assert!(!server.is_closed(), "the connection stays up");
}

#[test]
fn go_away_closes_after_the_grace_period() {
    let _guard = subscribe();
    let (mut server, _, t) = logged_in();
    server.go_away(ErrorCode::GoingAway, "drain", None, t);
    assert_eq!(frames(&mut server)[0].ty, crate::frame_types::GO_AWAY);
    server.handle_timeout(t + secs(29));
    assert!(!server.is_closed());
    server.handle_timeout(t + secs(30));
    assert_closed_with(&mut server, ErrorCode::GoingAway);
}

#[test]
fn client_close_and_connection_loss_end_the_machine() {
    let _guard = subscribe();
    let (mut server, stream, t) = logged_in();
    server.handle_frame(Frame::close(ErrorCode::Unspecified, "bye"), t);
    assert_eq!(
        events(&mut server),
        [ServerEvent::Closed {
            code: ErrorCode::Unspecified,
            message: "bye".into(),
            initiator: CloseInitiator::Peer,
            streams: vec![stream],
        }]
    );
    assert!(
        frames(&mut server).is_empty(),
        "no close frame answers a close"
    );
    assert!(!server.holds_resources());

    let (mut server, _, t) = logged_in();
    server.handle_connection_lost(t);
    assert!(matches!(
        events(&mut server)[..],
        [ServerEvent::Closed {
            initiator: CloseInitiator::Transport,
            ..
        }]
    ));
    assert!(!server.holds_resources());
}

#[test]
fn client_closes_on_a_malformed_server_frame() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    let now = pair.time;
    pair.client.handle_frame(
        Frame::new(crate::frame_types::DOWNLINK, Bytes::from_static(&[0xff])),
        now,
    );
    pair.flush();
    let disconnect = pair
        .events_where(|e| matches!(e, crate::Event::Disconnect { .. }))
        .pop()
        .map(|(_, e)| e)
        .unwrap();
    let crate::Event::Disconnect {
        reason,
        close: Some(close),
        ..
    } = disconnect
    else {
        panic!("{disconnect:?}")
    };
    assert!(matches!(
        reason,
        crate::DisconnectReason::ProtocolError {
            code: ErrorCode::MalformedFrame,
            ..
        }
    ));
    assert_eq!(
        close.decode::<Close>().unwrap().code(),
        ErrorCode::MalformedFrame
    );
    // It reconnects and carries on.
    pair.connect_and_login();
}

#[test]
fn pre_encoded_room_batches_are_sent_as_is() {
    let _guard = subscribe();
    let (mut server, stream, t) = logged_in();
    let batch = proto::channel::RoomBatch {
        room: "r1".into(),
        messages: vec![proto::channel::RoomMessage {
            offset: 5,
            payload: Bytes::from_static(b"hi"),
            ..Default::default()
        }],
        next_offset: 6,
        pushed: true,
        ..Default::default()
    };
    let frame = ServerChannel::encode_room_batch(&batch);

    // A pushed batch needs no stream; the very same bytes go out.
    server.room_batch_frame(None, frame.clone(), t).unwrap();
    let out = frames(&mut server);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].body.as_ptr(), frame.body.as_ptr(), "no copy");
    assert_eq!(out[0].decode::<proto::channel::RoomBatch>().unwrap(), batch);

    // A pull answer names a logged-in stream.
    server
        .room_batch_frame(Some(stream), frame.clone(), t)
        .unwrap();
    assert_eq!(frames(&mut server).len(), 1);
    assert_eq!(
        server.room_batch_frame(Some(StreamId::new(9)), frame.clone(), t),
        Err(ReplyError::NotLoggedIn(StreamId::new(9)))
    );
    let ping = Message::Ping(Ping { nonce: 1 }).to_frame();
    assert_eq!(
        server.room_batch_frame(None, ping.clone(), t),
        Err(ReplyError::NotRoomBatch(ping.ty))
    );
    assert!(frames(&mut server).is_empty());

    server.close(ErrorCode::Unspecified, "bye", t);
    frames(&mut server);
    assert_eq!(
        server.room_batch_frame(None, frame, t),
        Err(ReplyError::Closed)
    );
}

/// A login frame of `stream` for `chat:<alias>`.
pub(super) fn login_frame(stream: u32, alias: &str) -> Frame {
    Message::Login(Login {
        stream,
        biz: "chat".into(),
        alias: alias.into(),
        ..Login::default()
    })
    .to_frame()
}

/// The login results among `frames`.
fn login_results(frames: &[Frame]) -> Vec<LoginResult> {
    frames
        .iter()
        .filter(|f| f.ty == crate::frame_types::LOGIN_RESULT)
        .map(|f| f.decode().unwrap())
        .collect()
}

#[test]
fn login_fields_beyond_their_limits_are_refused_with_invalid_argument() {
    let _guard = subscribe();
    let long = |n: usize| "x".repeat(n);
    let base = Login {
        stream: 3,
        biz: "chat".into(),
        alias: "u1".into(),
        ..Login::default()
    };
    let cases = [
        (
            "biz",
            Login {
                biz: long(MAX_BIZ_LEN + 1),
                ..base.clone()
            },
        ),
        (
            "biz",
            Login {
                biz: String::new(),
                ..base.clone()
            },
        ),
        (
            "alias",
            Login {
                alias: long(MAX_ALIAS_LEN + 1),
                ..base.clone()
            },
        ),
        (
            "alias",
            Login {
                alias: "u1\r\nx".into(),
                ..base.clone()
            },
        ),
        (
            "alias must not contain ':'",
            Login {
                alias: "chat:u7".into(),
                ..base.clone()
            },
        ),
        (
            "biz must not contain ':'",
            Login {
                biz: "app:chat".into(),
                ..base.clone()
            },
        ),
        (
            "credential",
            Login {
                credential: long(MAX_CREDENTIAL_LEN + 1),
                ..base.clone()
            },
        ),
        (
            "route_id",
            Login {
                route_id: long(MAX_ROUTE_ID_LEN + 1),
                ..base.clone()
            },
        ),
    ];
    for (field, login) in cases {
        let (mut server, t) = server();
        server.handle_frame(Message::Login(login).to_frame(), t);
        assert!(events(&mut server).is_empty(), "{field}: nothing reported");
        let results = login_results(&frames(&mut server));
        assert_eq!(results.len(), 1, "{field}");
        assert_eq!(results[0].stream, 3);
        assert_eq!(results[0].code(), ErrorCode::InvalidArgument, "{field}");
        assert!(results[0].message.contains(field), "{:?}", results[0]);
        assert!(!server.is_closed(), "the connection stays up");
        assert_eq!(server.logged_in().count(), 0);
        // The same stream may log in properly afterwards.
        server.handle_frame(Message::Login(base.clone()).to_frame(), t);
        assert_eq!(events(&mut server).len(), 1, "{field}");
    }
    // At the limits: reported.
    let (mut server, t) = server();
    let login = Login {
        stream: 0,
        biz: long(MAX_BIZ_LEN),
        alias: long(MAX_ALIAS_LEN),
        credential: long(MAX_CREDENTIAL_LEN),
        route_id: long(MAX_ROUTE_ID_LEN),
        last_acked_seq: 0,
        send_only: false,
        epoch: 0,
    };
    server.handle_frame(Message::Login(login).to_frame(), t);
    assert!(matches!(
        &events(&mut server)[..],
        [ServerEvent::LoginRequested { .. }]
    ));
}

#[test]
fn logins_per_connection_are_capped_with_limit_exceeded() {
    let _guard = subscribe();
    // The default: 32.
    let (mut server, t) = server();
    for stream in 0..32 {
        server.handle_frame(login_frame(stream, &format!("u{stream}")), t);
    }
    assert_eq!(events(&mut server).len(), 32);
    assert!(frames(&mut server).is_empty());
    server.handle_frame(login_frame(32, "u32"), t);
    assert!(events(&mut server).is_empty());
    let refused = login_results(&frames(&mut server));
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0].stream, refused[0].code()),
        (32, ErrorCode::LimitExceeded)
    );
    assert!(refused[0].message.contains("32"), "{:?}", refused[0]);

    // Configured: 2; pending logins count; a logout frees a slot.
    let mut config = ServerConfig::default();
    config.max_logins(2).unwrap();
    let t = origin();
    let mut server = ServerChannel::new(Arc::new(config), ClientHello::default(), t);
    server.handle_frame(login_frame(0, "a"), t);
    server.handle_frame(login_frame(1, "b"), t);
    assert_eq!(events(&mut server).len(), 2);
    server.accept_login(StreamId::new(0), "r", 0, t).unwrap();
    frames(&mut server);
    server.handle_frame(login_frame(2, "c"), t);
    assert_eq!(
        login_results(&frames(&mut server))[0].code(),
        ErrorCode::LimitExceeded
    );
    assert!(events(&mut server).is_empty());
    server.handle_frame(Message::Logout(Logout { stream: 0 }).to_frame(), t);
    events(&mut server);
    server.handle_frame(login_frame(2, "c"), t);
    assert!(matches!(
        &events(&mut server)[..],
        [ServerEvent::LoginRequested { alias, .. }] if alias == "c"
    ));
    assert!(!server.is_closed());
}

#[test]
fn tags_beyond_their_limits_are_refused_with_invalid_argument() {
    let _guard = subscribe();
    let long_tag = Tags {
        stream: 1,
        request_id: 7,
        bind: vec!["vip".into(), "t".repeat(MAX_TAG_LEN + 1)],
        unbind: vec![],
    };
    let too_many = Tags {
        stream: 1,
        request_id: 8,
        bind: (0..MAX_TAGS_PER_REQUEST).map(|i| format!("b{i}")).collect(),
        unbind: vec!["one-more".into()],
    };
    let empty = Tags {
        stream: 1,
        request_id: 9,
        bind: vec![],
        unbind: vec![String::new()],
    };
    for tags in [long_tag, too_many, empty] {
        let (mut server, _, t) = logged_in();
        let request_id = tags.request_id;
        server.handle_frame(Message::Tags(tags).to_frame(), t);
        assert!(events(&mut server).is_empty());
        let result: TagsResult = frames(&mut server)[0].decode().unwrap();
        assert_eq!(
            (result.request_id, result.code()),
            (request_id, ErrorCode::InvalidArgument)
        );
        assert!(!server.is_closed());
    }
    let (mut server, _, t) = logged_in();
    let ok = Tags {
        stream: 1,
        request_id: 1,
        bind: (0..MAX_TAGS_PER_REQUEST)
            .map(|i| "t".repeat(MAX_TAG_LEN - 3) + &format!("{i:03}"))
            .collect(),
        unbind: vec![],
    };
    server.handle_frame(Message::Tags(ok).to_frame(), t);
    assert_eq!(events(&mut server).len(), 1);
}

#[test]
fn uplink_idempotency_keys_are_bounded() {
    let _guard = subscribe();
    let (mut server, _, t) = logged_in();
    for (seq, key) in [
        (1, "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)),
        (2, String::new()),
        (3, "k\u{7}".into()),
    ] {
        let uplink = Uplink {
            stream: 1,
            seq,
            idempotency_key: key,
            payload: Bytes::from_static(b"p"),
            first_attempt: false,
        };
        server.handle_frame(Message::Uplink(uplink).to_frame(), t);
        assert!(events(&mut server).is_empty(), "seq {seq}");
        let ack: UplinkAck = frames(&mut server)[0].decode().unwrap();
        assert_eq!((ack.seq, ack.code()), (seq, ErrorCode::InvalidArgument));
        assert!(ack.message.contains("idempotency_key"), "{ack:?}");
    }
    let uplink = Uplink {
        stream: 1,
        seq: 4,
        idempotency_key: "k".repeat(MAX_IDEMPOTENCY_KEY_LEN),
        payload: Bytes::from_static(b"p"),
        first_attempt: false,
    };
    server.handle_frame(Message::Uplink(uplink).to_frame(), t);
    assert_eq!(events(&mut server).len(), 1);
    assert_eq!(server.uplink_pending_bytes(), 1);
    assert!(!server.is_closed());
}

#[test]
fn room_names_are_bounded() {
    let _guard = subscribe();
    let (mut server, _, t) = logged_in();
    let long = "r".repeat(MAX_ROOM_NAME_LEN + 1);
    server.handle_frame(
        Message::RoomJoin(RoomJoin {
            stream: 1,
            room: long.clone(),
        })
        .to_frame(),
        t,
    );
    let result: RoomJoinResult = frames(&mut server)[0].decode().unwrap();
    assert_eq!(result.code(), ErrorCode::InvalidArgument);
    assert!(result.room.is_empty(), "the bad name is not echoed");
    server.handle_frame(
        Message::RoomLeave(RoomLeave {
            stream: 1,
            room: String::new(),
        })
        .to_frame(),
        t,
    );
    server.handle_frame(
        Message::RoomPull(RoomPull {
            stream: 1,
            room: long,
            ..RoomPull::default()
        })
        .to_frame(),
        t,
    );
    let errors: Vec<ErrorFrame> = frames(&mut server)
        .iter()
        .map(|f| f.decode().unwrap())
        .collect();
    assert_eq!(
        errors
            .iter()
            .map(|e| (e.code(), e.frame_type))
            .collect::<Vec<_>>(),
        [
            (ErrorCode::InvalidArgument, 0x22),
            (ErrorCode::InvalidArgument, 0x23)
        ]
    );
    assert!(events(&mut server).is_empty());
    server.handle_frame(
        Message::RoomJoin(RoomJoin {
            stream: 1,
            room: "r".repeat(MAX_ROOM_NAME_LEN),
        })
        .to_frame(),
        t,
    );
    assert!(matches!(
        &events(&mut server)[..],
        [ServerEvent::RoomJoin { .. }]
    ));
    assert!(!server.is_closed());
}

fn uplink_frame(seq: u64, size: usize) -> Frame {
    Message::Uplink(Uplink {
        stream: 1,
        seq,
        idempotency_key: format!("k{seq}"),
        payload: Bytes::from(vec![b'x'; size]),
        first_attempt: false,
    })
    .to_frame()
}

#[test]
fn the_uplink_window_is_advertised_and_a_client_beyond_it_is_closed() {
    let _guard = subscribe();
    // The login result advertises the configured window (default 64).
    let (mut server, t) = server();
    server.handle_frame(login_frame(1, "u1"), t);
    events(&mut server);
    server.accept_login(StreamId::new(1), "r", 0, t).unwrap();
    assert_eq!(login_results(&frames(&mut server))[0].uplink_window, 64);

    let mut config = ServerConfig::default();
    config.uplink_window(2).unwrap();
    let t = origin();
    let mut server = ServerChannel::new(Arc::new(config), ClientHello::default(), t);
    server.handle_frame(login_frame(1, "u1"), t);
    events(&mut server);
    let stream = StreamId::new(1);
    server.accept_login(stream, "r", 0, t).unwrap();
    assert_eq!(login_results(&frames(&mut server))[0].uplink_window, 2);
    server.handle_frame(uplink_frame(1, 1), t);
    server.handle_frame(uplink_frame(2, 1), t);
    assert_eq!(events(&mut server).len(), 2);
    // A resend of a pending message is not a new one.
    server.handle_frame(uplink_frame(2, 1), t);
    assert!(events(&mut server).is_empty());
    // An ack frees a slot.
    server
        .ack_uplink(stream, 1, UplinkResult::accepted(), t)
        .unwrap();
    frames(&mut server);
    server.handle_frame(uplink_frame(3, 1), t);
    assert_eq!(events(&mut server).len(), 1);
    // Beyond the window: a protocol error, then close.
    server.handle_frame(uplink_frame(4, 1), t);
    let out = frames(&mut server);
    let close = out.last().expect("a close frame");
    assert_eq!(close.ty, FrameType::CLOSE);
    let close: Close = close.decode().unwrap();
    assert_eq!(close.code(), ErrorCode::Protocol);
    assert!(close.message.contains("uplink window"), "{close:?}");
    assert!(matches!(
        events(&mut server).last(),
        Some(ServerEvent::Closed {
            code: ErrorCode::Protocol,
            ..
        })
    ));
    assert!(!server.holds_resources());
    assert_eq!(server.uplink_pending_bytes(), 0);
}

#[test]
fn uplink_bytes_pending_per_connection_are_bounded() {
    let _guard = subscribe();
    let mut config = ServerConfig::default();
    config.uplink_pending_bytes(1024).unwrap();
    let t = origin();
    let mut server = ServerChannel::new(Arc::new(config), ClientHello::default(), t);
    for stream in [1, 2] {
        server.handle_frame(login_frame(stream, &format!("u{stream}")), t);
        events(&mut server);
        server
            .accept_login(StreamId::new(stream), "r", 0, t)
            .unwrap();
    }
    frames(&mut server);
    // Alone, a message larger than the bound gets through.
    server.handle_frame(uplink_frame(1, 3000), t);
    assert_eq!(events(&mut server).len(), 1);
    assert_eq!(server.uplink_pending_bytes(), 3000);
    // Behind it, another (on another stream: the bound is per connection)
    // is refused at once.
    let other = Message::Uplink(Uplink {
        stream: 2,
        seq: 1,
        idempotency_key: "o1".into(),
        payload: Bytes::from_static(b"small"),
        first_attempt: false,
    })
    .to_frame();
    server.handle_frame(other.clone(), t);
    assert!(events(&mut server).is_empty());
    let ack: UplinkAck = frames(&mut server)[0].decode().unwrap();
    assert_eq!(
        (ack.stream, ack.seq, ack.code()),
        (2, 1, ErrorCode::RateLimited)
    );
    assert_eq!(server.stats().uplink_refused, 1);
    // Once the backend took the first, there is room again.
    server
        .ack_uplink(StreamId::new(1), 1, UplinkResult::accepted(), t)
        .unwrap();
    frames(&mut server);
    assert_eq!(server.uplink_pending_bytes(), 0);
    server.handle_frame(other, t);
    server.handle_frame(uplink_frame(2, 1000), t);
    assert_eq!(events(&mut server).len(), 2);
    assert_eq!(server.uplink_pending_bytes(), 1005);
    // A logout gives the bytes of its pending messages back.
    server.handle_frame(Message::Logout(Logout { stream: 1 }).to_frame(), t);
    events(&mut server);
    assert_eq!(server.uplink_pending_bytes(), 5);
    assert!(!server.is_closed());
}

#[test]
fn a_client_narrows_its_window_to_the_advertised_one() {
    let _guard = subscribe();
    let mut client = ClientConfig::default();
    client.send_window(16).unwrap();
    let mut server = ServerConfig::default();
    server.uplink_window(3).unwrap();
    let mut pair = Pair::with_config(client, server, 3);
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    for i in 0..20 {
        pair.send(chat, &format!("m{i}"));
    }
    let mut max_in_flight = 0;
    let done = pair.run_until(secs(60), |p| {
        max_in_flight = max_in_flight.max(p.client.in_flight(chat).unwrap());
        p.client.pending_sends(chat) == Some(0)
    });
    assert!(done, "every message acked");
    assert_eq!(max_in_flight, 3);
    assert!(
        pair.closed_servers.is_empty(),
        "no protocol close: {:?}",
        pair.closed_servers
    );
}

#[test]
fn a_send_only_login_says_so_on_the_wire_and_to_the_gateway() {
    let t = origin();
    let mut client = crate::ClientChannel::new(Arc::new(ClientConfig::default()), 1);
    client.start(t);
    let id = std::iter::from_fn(|| client.poll_event())
        .find_map(|e| match e {
            crate::Event::Connect { id, .. } => Some(id),
            _ => None,
        })
        .expect("a dial");
    client.handle_connected(id, &proto::tunnel::ServerHello::default(), t);
    let plain = client.login(crate::LoginParams::new("chat", "u1", "c"), t);
    let only = client.login(crate::LoginParams::new("chat", "u1", "c").send_only(), t);
    let (mut server, _) = server();
    let mut flags = Vec::new();
    while let Some(frame) = client.poll_transmit() {
        if let Ok(Message::Login(login)) = Message::decode(&frame) {
            flags.push((login.stream, login.send_only));
            server.handle_frame(frame, t);
        }
    }
    assert_eq!(
        flags,
        [(plain.value(), false), (only.value(), true)],
        "the flag goes in Login.send_only"
    );
    let requested: Vec<bool> = events(&mut server)
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::LoginRequested { send_only, .. } => Some(send_only),
            _ => None,
        })
        .collect();
    assert_eq!(requested, [false, true]);
}

#[test]
fn a_logout_of_a_pending_login_is_ignored_and_the_login_gets_its_one_result() {
    let _guard = subscribe();
    let (mut server, t) = server();
    server.handle_frame(login_frame(0, "a"), t);
    assert_eq!(events(&mut server).len(), 1);
    server.handle_frame(Message::Logout(Logout { stream: 0 }).to_frame(), t);
    // Nothing happens: no event, no frame, the login is still pending.
    assert!(events(&mut server).is_empty());
    assert!(frames(&mut server).is_empty());
    // A second LOGIN on the stream is still refused: the number is in use.
    server.handle_frame(login_frame(0, "b"), t);
    assert!(events(&mut server).is_empty());
    let answers: Vec<Message> = frames(&mut server)
        .iter()
        .map(|f| Message::decode(f).unwrap())
        .collect();
    assert!(matches!(
        &answers[..],
        [Message::Error(e)] if e.code() == ErrorCode::AlreadyLoggedIn
    ));
    // The gateway's answer reaches the client: exactly one result.
    server.accept_login(StreamId::new(0), "r", 0, t).unwrap();
    let results = login_results(&frames(&mut server));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].code(), ErrorCode::Unspecified);
    // Now the logout ends it.
    server.handle_frame(Message::Logout(Logout { stream: 0 }).to_frame(), t);
    assert!(matches!(
        &events(&mut server)[..],
        [ServerEvent::LoggedOut { stream }] if stream.value() == 0
    ));
    assert_eq!(server.logged_in().count(), 0);
}

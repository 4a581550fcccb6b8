//! Rules of the wire protocol that the gateway enforces, through the real
//! gateway over loopback TCP (embedded store): downlink acks the server
//! cannot apply, uplink numbering and order, acks that cover a gap and
//! resume, and uplink without a backend. The hostile frames come from a raw
//! protocol client ([`support::raw`]).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pike_api::server::{
    BoxFuture, Delivery, Gateway, PushHandle, PushRequest, Store, StreamKey, Target, UplinkError,
    UplinkHandler, UplinkRequest,
};
use pike_channel::Message;
use proto::channel::{Login, Ping};
use proto::tunnel::ErrorCode;
use support::gated_store::GatedStore;
use support::raw::Raw;
use support::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, LIMIT, PikeClient, TestTls, Wire,
    connector, trace_init, until,
};

/// The frame type code of `DOWNLINK_ACK`.
const DOWNLINK_ACK: u32 = 0x19;

/// A backend that records the idempotency keys in the order it got them.
#[derive(Debug, Default)]
struct Recording {
    keys: Mutex<Vec<String>>,
}

impl UplinkHandler for Recording {
    fn route(&self, _app: &str, _biz: &str, _saved: &str, _avoid: Option<&str>) -> Option<String> {
        Some("r1".into())
    }

    fn deliver(&self, request: UplinkRequest) -> BoxFuture<'_, Result<(), UplinkError>> {
        self.keys.lock().unwrap().push(request.idempotency_key);
        Box::pin(async { Ok(()) })
    }
}

/// A gateway on loopback TCP with `store` and, if given, `backend`.
async fn gateway(
    store: Arc<dyn Store>,
    backend: Option<Arc<Recording>>,
) -> (SocketAddr, PushHandle) {
    let mut builder = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .store(store);
    if let Some(backend) = backend {
        builder = builder.uplink(backend);
    }
    let gateway = builder.bind().await.unwrap();
    let addr = gateway.local_addrs()[0].1;
    let handle = gateway.push_handle();
    tokio::spawn(gateway.serve());
    (addr, handle)
}

/// Pushes `text` reliably to `chat`/`u1` of app `demo`, kept for `ttl`
/// (`None`: the default).
async fn push(pusher: &PushHandle, text: &str, ttl: Option<Duration>) {
    pusher
        .push(PushRequest {
            app: "demo".into(),
            biz: "chat".into(),
            target: Target::Alias("u1".into()),
            payload: Bytes::copy_from_slice(text.as_bytes()),
            delivery: Delivery::Reliable { ttl },
            priority: 0,
            receipt: false,
        })
        .await
        .unwrap();
}

/// The seq of the next message, which must be a downlink.
async fn downlink_seq(raw: &mut Raw) -> u64 {
    match raw.next().await {
        Message::Downlink(d) => d.seq,
        other => panic!("expected a downlink, got {other:?}"),
    }
}

#[tokio::test]
async fn acking_the_stored_position_right_after_a_relogin_is_refused() {
    let _trace = trace_init();
    let (addr, pusher) = gateway(Arc::new(GatedStore::default()), None).await;
    for text in ["a", "b", "c"] {
        push(&pusher, text, None).await;
    }
    let mut first = Raw::device(addr, "demo", "d1").await;
    assert_eq!(
        first.login(0, "u1", "any").await.code(),
        ErrorCode::Unspecified
    );
    for seq in 1..=3 {
        assert_eq!(downlink_seq(&mut first).await, seq);
    }
    first.ack(3).await;
    drop(first);

    // The re-login carries the position; the server sends nothing after it,
    // so an ack of it on the new connection is above what this connection
    // was sent.
    let mut second = Raw::device(addr, "demo", "d1").await;
    let login = Login {
        stream: 0,
        biz: "chat".into(),
        alias: "u1".into(),
        credential: "any".into(),
        last_acked_seq: 3,
        ..Login::default()
    };
    assert_eq!(
        second.login_with(login).await.code(),
        ErrorCode::Unspecified
    );
    second.ack(3).await;
    let Message::Error(error) = second.next().await else {
        panic!("expected an error frame");
    };
    assert_eq!(
        (error.code(), error.stream, error.frame_type),
        (ErrorCode::InvalidArgument, Some(0), DOWNLINK_ACK)
    );
    assert_eq!(
        error.message,
        "ack 3 is above 0, the highest seq sent on stream 0 on this connection; \
         a position from an earlier connection goes in Login.last_acked_seq"
    );
    // An ack for a stream that is not logged in.
    second
        .send(Message::DownlinkAck(proto::channel::DownlinkAck {
            stream: 7,
            seq: 1,
        }))
        .await;
    let Message::Error(error) = second.next().await else {
        panic!("expected an error frame");
    };
    assert_eq!(
        (error.code(), error.stream, error.frame_type),
        (ErrorCode::NotLoggedIn, Some(7), DOWNLINK_ACK)
    );
    // The connection stays up, and the next message is delivered.
    second.send(Message::Ping(Ping { nonce: 9 })).await;
    assert!(matches!(second.next().await, Message::Pong(p) if p.nonce == 9));
    push(&pusher, "d", None).await;
    assert_eq!(downlink_seq(&mut second).await, 4);
}

#[tokio::test]
async fn uplink_reaches_the_backend_in_seq_order_and_a_lower_seq_is_refused() {
    let _trace = trace_init();
    let backend = Arc::new(Recording::default());
    let (addr, _) = gateway(Arc::new(GatedStore::default()), Some(backend.clone())).await;
    let mut client = Raw::device(addr, "demo", "d1").await;
    assert_eq!(
        client.login(0, "u1", "any").await.code(),
        ErrorCode::Unspecified
    );
    for seq in [1, 2, 5, 3, 6] {
        client.uplink(seq, 4).await;
    }
    let mut acks = BTreeMap::new();
    for _ in 0..5 {
        let ack = client.uplink_ack().await;
        acks.insert(ack.seq, (ack.code(), ack.message));
    }
    let ok = (ErrorCode::Unspecified, String::new());
    assert_eq!(acks[&1], ok);
    assert_eq!(acks[&2], ok);
    assert_eq!(acks[&5], ok, "gaps in the numbering are allowed");
    assert_eq!(acks[&6], ok);
    assert_eq!(
        acks[&3],
        (
            ErrorCode::InvalidArgument,
            "uplink seq 3 is not above 5, the highest accepted on this login; \
             uplink messages are delivered in seq order"
                .to_owned()
        )
    );
    assert_eq!(
        *backend.keys.lock().unwrap(),
        ["key-1", "key-2", "key-5", "key-6"],
        "3 never reached the backend"
    );
    // A resend of 5 is answered from memory, not delivered again.
    client.uplink(5, 4).await;
    let again = client.uplink_ack().await;
    assert_eq!((again.seq, again.code()), (5, ErrorCode::Unspecified));
    assert_eq!(backend.keys.lock().unwrap().len(), 4);
    // Seq 0 is no number.
    client.uplink(0, 4).await;
    let zero = client.uplink_ack().await;
    assert_eq!((zero.seq, zero.code()), (0, ErrorCode::InvalidArgument));
}

#[tokio::test]
async fn without_a_backend_uplinks_are_acked_backend_unavailable() {
    let _trace = trace_init();
    let (addr, _) = gateway(Arc::new(GatedStore::default()), None).await;
    let mut client = Raw::device(addr, "demo", "d1").await;
    assert_eq!(
        client.login(0, "u1", "any").await.code(),
        ErrorCode::Unspecified
    );
    client.uplink(1, 4).await;
    let ack = client.uplink_ack().await;
    assert_eq!(
        (ack.seq, ack.code(), ack.message.as_str()),
        (
            1,
            ErrorCode::BackendUnavailable,
            "no uplink backend for biz \"chat\""
        )
    );
}

/// A client of device `d1` logged in to `chat` as `u1` (not started).
fn client(addr: SocketAddr, tls: &TestTls) -> PikeClient {
    ChannelProxy::builder(connector(Wire::Tcp, addr, tls, "d1"))
        .channel_config(ClientConfig::default())
        .build()
        .client(ClientOptions::new("chat", "u1", "any"))
        .expect("client")
}

#[tokio::test]
async fn an_ack_after_a_gap_covers_it_and_resume_starts_after_it() {
    let _trace = trace_init();
    let store = Arc::new(GatedStore::default());
    let (addr, pusher) = gateway(store.clone(), None).await;
    let tls = TestTls::new().await;
    // While the device is offline: 1 is kept, 2..4 expire at once, 5 is
    // kept.
    push(&pusher, "m1", None).await;
    for text in ["m2", "m3", "m4"] {
        push(&pusher, text, Some(Duration::ZERO)).await;
    }
    push(&pusher, "m5", None).await;

    let device = client(addr, &tls);
    device.start();
    let (first, _) = until(&device, |e| matches!(e, ClientEvent::OnReceive(_))).await;
    let ClientEvent::OnReceive(first) = first else {
        unreachable!()
    };
    assert_eq!(first.seq, 1);
    let (gap, skipped) = until(&device, |e| matches!(e, ClientEvent::Gap { .. })).await;
    assert!(
        skipped.iter().all(ClientEvent::is_connectivity),
        "{skipped:?}"
    );
    assert_eq!(
        gap,
        ClientEvent::Gap {
            expected: 2,
            got: 5
        }
    );
    let (fifth, _) = until(&device, |e| matches!(e, ClientEvent::OnReceive(_))).await;
    let ClientEvent::OnReceive(fifth) = fifth else {
        unreachable!()
    };
    assert_eq!(fifth.seq, 5);
    // The client acks 5 (cumulative, covering the gap); the server saves
    // it as the device's position.
    let key = StreamKey::new("demo", "chat", "u1");
    tokio::time::timeout(LIMIT, async {
        while store.position(key.clone(), "d1".into()).await.unwrap() != Some(5) {
            store.positions_saved.notified().await;
        }
    })
    .await
    .expect("the position 5 is saved");
    device.stop();
    until(&device, |e| matches!(e, ClientEvent::OnStop { .. })).await;
    drop(device);

    // A login of the device that claims no position: the stored one
    // decides, nothing is redelivered, the next message is the next one.
    let mut again = Raw::device(addr, "demo", "d1").await;
    assert_eq!(
        again.login(0, "u1", "any").await.code(),
        ErrorCode::Unspecified
    );
    push(&pusher, "m6", None).await;
    assert_eq!(downlink_seq(&mut again).await, 6);
}

/// The frame type code of `ROOM_PULL`.
const ROOM_PULL: u32 = 0x23;

#[tokio::test]
async fn a_pull_of_a_room_the_stream_has_not_joined_is_answered_unknown_room() {
    let _trace = trace_init();
    let (addr, _) = gateway(Arc::new(GatedStore::default()), None).await;
    let mut client = Raw::device(addr, "demo", "d1").await;
    assert_eq!(
        client.login(0, "u1", "any").await.code(),
        ErrorCode::Unspecified
    );
    let pull = |room: &str| {
        Message::RoomPull(proto::channel::RoomPull {
            stream: 0,
            room: room.into(),
            offset: 0,
            max: 0,
            wait_ms: 0,
        })
    };
    client.send(pull("live:1")).await;
    let Message::Error(error) = client.next().await else {
        panic!("an ERROR frame for a pull of a room never joined");
    };
    assert_eq!(
        (error.code(), error.stream, error.frame_type),
        (ErrorCode::UnknownRoom, Some(0), ROOM_PULL)
    );
    assert!(error.message.contains("live:1"), "{}", error.message);
    // After a join the same pull is answered with a batch (empty: the
    // pull does not wait), and the connection never went down.
    assert_eq!(client.join("live:1").await.code(), ErrorCode::Unspecified);
    client.send(pull("live:1")).await;
    match client.next().await {
        Message::RoomBatch(batch) => assert_eq!(batch.room, "live:1"),
        other => panic!("a room batch, not {other:?}"),
    }
}

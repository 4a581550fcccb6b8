//! The gateway's bounds on client input, over real loopback TCP with a raw
//! protocol client (one that ignores what a well-behaved SDK would respect):
//! hello and request fields, logins per connection, the uplink window and
//! pending uplink bytes, room joins per connection and room quotas, and
//! what the connection trace keeps of an unauthenticated login.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use pike_api::server::{
    AuthError, BoxFuture, FnAuthenticator, Gateway, GatewayConfig, LoginGrant, LoginRequest,
    PushHandle, UplinkError, UplinkHandler, UplinkRequest,
};
use pike_channel::{Message, ServerConfig};
use proto::channel::RoomLeave;
use proto::tunnel::{ClientHello, ErrorCode};
use tntunnel::HandshakeError;
use tokio::sync::Semaphore;

mod support;

use support::LIMIT;
use support::raw::Raw;

/// A backend that takes every message, holding the calls while the gate is
/// closed.
#[derive(Debug)]
struct HeldBackend {
    gate: Semaphore,
    calls: Mutex<HashMap<String, usize>>,
}

impl HeldBackend {
    fn held() -> Arc<Self> {
        Arc::new(Self {
            gate: Semaphore::new(0),
            calls: Mutex::new(HashMap::new()),
        })
    }

    fn release(&self) {
        self.gate.close();
    }
}

impl UplinkHandler for HeldBackend {
    fn route(&self, _app: &str, _biz: &str, _saved: &str, _avoid: Option<&str>) -> Option<String> {
        Some("r1".into())
    }

    fn deliver(&self, request: UplinkRequest) -> BoxFuture<'_, Result<(), UplinkError>> {
        Box::pin(async move {
            *self
                .calls
                .lock()
                .unwrap()
                .entry(request.idempotency_key)
                .or_default() += 1;
            // Closed: every waiter goes on.
            let _ = self.gate.acquire().await;
            Ok(())
        })
    }
}

/// A gateway on loopback TCP with `config`, refusing logins whose
/// credential is `bad`.
async fn gateway(config: GatewayConfig, backend: Arc<HeldBackend>) -> (SocketAddr, PushHandle) {
    let auth = FnAuthenticator(|request: &LoginRequest| {
        if request.credential == "bad" {
            return Err(AuthError::new(ErrorCode::AuthFailed, "bad credential"));
        }
        Ok(LoginGrant::default())
    });
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .authenticator(auth)
        .uplink(backend)
        .config(config)
        .bind()
        .await
        .unwrap();
    let addr = gateway.local_addrs()[0].1;
    let handle = gateway.push_handle();
    tokio::spawn(gateway.serve());
    (addr, handle)
}

#[tokio::test]
async fn a_hello_field_beyond_its_limit_is_refused_and_others_still_connect() {
    let (addr, _) = gateway(GatewayConfig::default(), HeldBackend::held()).await;
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: "d".repeat(tntunnel::MAX_DEVICE_ID_LEN + 1),
        ..ClientHello::default()
    };
    match Raw::connect(addr, hello).await {
        Err(HandshakeError::Rejected { code, message, .. }) => {
            assert_eq!(code, ErrorCode::InvalidArgument);
            assert!(message.contains("device_id"), "{message}");
        }
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => panic!("an oversized device id was accepted"),
    }
    let mut ok = Raw::device(addr, "demo", "d1").await;
    assert_eq!(
        ok.login(0, "u1", "good").await.code(),
        ErrorCode::Unspecified
    );
}

#[tokio::test]
async fn login_fields_and_logins_per_connection_are_bounded() {
    let (addr, pusher) = gateway(GatewayConfig::default(), HeldBackend::held()).await;
    let mut client = Raw::device(addr, "demo", "d1").await;
    let long = "a".repeat(pike_channel::limits::MAX_ALIAS_LEN + 1);
    let refused = client.login(0, &long, "good").await;
    assert_eq!(refused.code(), ErrorCode::InvalidArgument);
    assert!(refused.message.contains("alias"), "{refused:?}");
    // `chat:u7` is shorthand for biz `chat`, alias `u7`, never an alias.
    let shorthand = client.login(0, "chat:u7", "good").await;
    assert_eq!(shorthand.code(), ErrorCode::InvalidArgument);
    assert_eq!(
        shorthand.message,
        "alias must not contain ':' (biz and alias are separate fields; \
         'chat:u7' is biz 'chat', alias 'u7')"
    );

    for stream in 0..32 {
        let result = client.login(stream, &format!("u{stream}"), "good").await;
        assert_eq!(result.code(), ErrorCode::Unspecified, "login {stream}");
        assert_eq!(result.uplink_window, 64, "the window is advertised");
    }
    let over = client.login(32, "u32", "good").await;
    assert_eq!(over.code(), ErrorCode::LimitExceeded);
    assert!(over.message.contains("32"), "{over:?}");
    // The connection stays up and usable.
    client
        .send(Message::Ping(proto::channel::Ping { nonce: 7 }))
        .await;
    assert!(matches!(client.next().await, Message::Pong(p) if p.nonce == 7));
    assert_eq!(pusher.presence("demo", "chat", "u31").len(), 1);
    assert!(pusher.presence("demo", "chat", "u32").is_empty());
}

#[tokio::test]
async fn the_trace_keeps_an_alias_only_once_its_credential_passed() {
    let (addr, pusher) = gateway(GatewayConfig::default(), HeldBackend::held()).await;
    let mut client = Raw::device(addr, "demo", "d1").await;
    let refused = client.login(0, "intruder", "bad").await;
    assert_eq!(refused.code(), ErrorCode::AuthFailed);
    let granted = client.login(1, "u42", "good").await;
    assert_eq!(granted.code(), ErrorCode::Unspecified);
    let trace = pusher
        .trace("demo", &client.hello.connection_token)
        .expect("the trace");
    assert!(
        trace.iter().all(|e| !e.detail.contains("intruder")),
        "an unauthenticated alias is not recorded: {trace:#?}"
    );
    assert!(
        trace
            .iter()
            .any(|e| e.signal == "auth" && e.detail.contains("stream=0 refused")),
        "{trace:#?}"
    );
    assert!(
        trace
            .iter()
            .any(|e| e.signal == "auth" && e.detail.contains("alias=u42")),
        "{trace:#?}"
    );
}

#[tokio::test]
async fn a_client_beyond_the_uplink_window_is_closed_with_a_protocol_error() {
    let backend = HeldBackend::held();
    let (addr, _) = gateway(GatewayConfig::default(), backend.clone()).await;
    let mut client = Raw::device(addr, "demo", "d1").await;
    let window = client.login(0, "u1", "good").await.uplink_window;
    assert_eq!(window, 64);
    // The backend holds the first message: the rest wait in the gateway.
    for seq in 1..=u64::from(window) {
        client.uplink(seq, 10).await;
    }
    client.uplink(u64::from(window) + 1, 10).await;
    match client.next().await {
        Message::Close(close) => {
            assert_eq!(close.code(), ErrorCode::Protocol);
            assert!(close.message.contains("uplink window"), "{close:?}");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    let end = tokio::time::timeout(LIMIT, client.framed.next()).await;
    assert!(
        matches!(end, Ok(None | Some(Err(_)))),
        "then the socket closes"
    );
    backend.release();
}

#[tokio::test]
async fn uplink_bytes_waiting_for_the_backend_are_bounded_per_connection() {
    let backend = HeldBackend::held();
    let mut channel = ServerConfig::default();
    channel.uplink_pending_bytes(4096).unwrap();
    let mut config = GatewayConfig::default();
    config.channel(channel);
    let (addr, _) = gateway(config, backend.clone()).await;
    let mut client = Raw::device(addr, "demo", "d1").await;
    client.login(0, "u1", "good").await;
    client.uplink(1, 2000).await;
    client.uplink(2, 2000).await;
    client.uplink(3, 2000).await;
    let refused = client.uplink_ack().await;
    assert_eq!(
        (refused.seq, refused.code()),
        (3, ErrorCode::RateLimited),
        "{refused:?}"
    );
    backend.release();
    let mut acked: Vec<(u64, ErrorCode)> = Vec::new();
    for _ in 0..2 {
        let ack = client.uplink_ack().await;
        acked.push((ack.seq, ack.code()));
    }
    assert_eq!(
        acked,
        [(1, ErrorCode::Unspecified), (2, ErrorCode::Unspecified)]
    );
    // With the queue drained, the refused message goes through.
    client.uplink(3, 2000).await;
    let ack = client.uplink_ack().await;
    assert_eq!((ack.seq, ack.code()), (3, ErrorCode::Unspecified));
}

#[tokio::test]
async fn room_joins_per_connection_per_app_quota_and_the_global_limit() {
    let mut config = GatewayConfig::default();
    config.max_room_joins(2).max_rooms_per_app(2).max_rooms(3);
    let (addr, pusher) = gateway(config, HeldBackend::held()).await;

    // One connection: two joins, then refused.
    let mut a = Raw::device(addr, "demo", "a").await;
    a.login(0, "ua", "good").await;
    assert_eq!(a.join("r1").await.code(), ErrorCode::Unspecified);
    assert_eq!(a.join("r2").await.code(), ErrorCode::Unspecified);
    let refused = a.join("r1b").await;
    assert_eq!(refused.code(), ErrorCode::LimitExceeded);
    assert!(refused.message.contains("per connection"), "{refused:?}");
    // A repeated join is no new join.
    assert_eq!(a.join("r1").await.code(), ErrorCode::Unspecified);
    // Leaving frees the slot.
    a.send(Message::RoomLeave(RoomLeave {
        stream: 0,
        room: "r2".into(),
    }))
    .await;
    assert_eq!(a.join("r2").await.code(), ErrorCode::Unspecified);

    // Another connection of the app: joining its rooms works, starting a
    // third room is over the app's quota.
    let mut b = Raw::device(addr, "demo", "b").await;
    b.login(0, "ub", "good").await;
    assert_eq!(b.join("r1").await.code(), ErrorCode::Unspecified);
    let quota = b.join("r3").await;
    assert_eq!(quota.code(), ErrorCode::LimitExceeded);
    assert!(quota.message.contains("the app"), "{quota:?}");
    assert_eq!(pusher.rooms("demo").len(), 2);

    // Another app still gets rooms, up to the gateway's limit.
    let mut c = Raw::device(addr, "other", "c").await;
    c.login(0, "uc", "good").await;
    assert_eq!(c.join("o1").await.code(), ErrorCode::Unspecified);
    let global = c.join("o2").await;
    assert_eq!(global.code(), ErrorCode::Overloaded);
    assert!(global.message.contains("the gateway"), "{global:?}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_write_timeout_and_others_still_get_pushes() {
    let mut config = GatewayConfig::default();
    config.write_timeout(std::time::Duration::from_millis(300));
    let (addr, pusher) = gateway(config, HeldBackend::held()).await;
    // A small receive buffer (no autotuning: loopback's would take 32 MiB)
    // so that the gateway's writes wait soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let io = socket.connect(addr).await.unwrap();
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: "stalled".into(),
        ..ClientHello::default()
    };
    let (framed, hello) = tntunnel::connect(io, hello, &tntunnel::TunnelConfig::default())
        .await
        .unwrap();
    let mut stalled = Raw { framed, hello };
    assert_eq!(
        stalled.login(0, "s1", "good").await.code(),
        ErrorCode::Unspecified
    );
    let mut reader = Raw::device(addr, "demo", "reader").await;
    assert_eq!(
        reader.login(0, "r1", "good").await.code(),
        ErrorCode::Unspecified
    );
    let push = |alias: &str, payload: bytes::Bytes| pike_api::server::PushRequest {
        app: "demo".into(),
        biz: "chat".into(),
        target: pike_api::server::Target::Alias(alias.into()),
        payload,
        delivery: pike_api::server::Delivery::Transient,
        priority: 0,
        receipt: false,
    };

    // The stalled client reads nothing: the socket buffers fill, a write
    // waits, and the write timeout closes the connection.
    // Incompressible (the tunnel compresses large bodies).
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..pusher.max_payload_len().min(64 * 1024))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let big = bytes::Bytes::from(noise);
    let closed = tokio::time::timeout(LIMIT, async {
        // Until the gateway drops the pushes (its queue for the connection
        // is full), then until the connection is gone: the write timeout,
        // then at most a second for the close frame.
        for _ in 0..1_000_000 {
            if pusher.presence("demo", "chat", "s1").is_empty() {
                return true;
            }
            match pusher.push(push("s1", big.clone())).await {
                Ok(receipt) if receipt.dropped > 0 => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                _ => tokio::task::yield_now().await,
            }
        }
        false
    })
    .await
    .expect("the stalled client is closed in time");
    assert!(closed, "the stalled client is still present");
    let trace = pusher
        .trace("demo", &stalled.hello.connection_token)
        .expect("the closed connection's trace");
    assert!(
        trace
            .iter()
            .any(|e| e.signal == "close" && e.detail.contains("slow consumer")),
        "{trace:#?}"
    );

    // The reader was not held up by it.
    pusher
        .push(push("r1", bytes::Bytes::from_static(b"still here")))
        .await
        .unwrap();
    match reader.next().await {
        Message::Downlink(downlink) => assert_eq!(&downlink.payload[..], b"still here"),
        other => panic!("expected the push, got {other:?}"),
    }
}

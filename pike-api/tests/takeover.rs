//! Presence takeover on one gateway, over real loopback TCP: a device's
//! newer connection logged in to an alias replaces its older one, which is
//! closed with `REPLACED` and does not reconnect by itself; another device
//! of the same alias is left alone; with takeover off, both stay.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use pike_api::proto::tunnel::ErrorCode;
use pike_api::server::{
    Delivery, Gateway, GatewayConfig, MemoryStore, PushHandle, PushRequest, Target,
};
use support::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, LIMIT, PikeClient, StopReason, TestTls,
    Wire, connector, trace_init,
};

async fn gateway(config: GatewayConfig) -> (PushHandle, std::net::SocketAddr) {
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().expect("addr"))
        .store(Arc::new(MemoryStore::new()))
        .config(config)
        .bind()
        .await
        .expect("bind the gateway");
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());
    (pusher, addr)
}

/// A client of `device` logged in to `chat` as `u42`, running; its
/// connection token.
async fn client(addr: std::net::SocketAddr, tls: &TestTls, device: &str) -> (PikeClient, String) {
    let proxy = ChannelProxy::builder(connector(Wire::Tcp, addr, tls, device))
        .channel_config(ClientConfig::default())
        .build();
    let client = proxy
        .client(ClientOptions::new("chat", "u42", "any"))
        .expect("client");
    client.start();
    let token = tokio::time::timeout(LIMIT, async {
        let mut token = None;
        loop {
            match client.next_event().await {
                Some(ClientEvent::Connected { connection_token }) => token = Some(connection_token),
                Some(ClientEvent::Running { .. }) => return token.expect("connected first"),
                Some(ClientEvent::OnStop { reason }) => panic!("stopped: {reason:?}"),
                Some(_) => {}
                None => panic!("client ended"),
            }
        }
    })
    .await
    .expect("the client runs");
    (client, token)
}

async fn push(pusher: &PushHandle, text: &str) {
    pusher
        .push(PushRequest {
            app: "demo".into(),
            biz: "chat".into(),
            target: Target::Alias("u42".into()),
            payload: Bytes::from(text.to_owned()),
            delivery: Delivery::Reliable { ttl: None },
            priority: 0,
            receipt: false,
        })
        .await
        .expect("push accepted");
}

/// Reliable messages until `text` arrives, bounded; panics on a stop.
async fn receive(client: &PikeClient, text: &str) -> Vec<(u64, String)> {
    tokio::time::timeout(LIMIT, async {
        let mut got = Vec::new();
        loop {
            match client.next_event().await {
                Some(ClientEvent::OnReceive(m)) => {
                    let t = String::from_utf8_lossy(&m.payload).into_owned();
                    got.push((m.seq, t.clone()));
                    if t == text {
                        return got;
                    }
                }
                Some(ClientEvent::OnStop { reason }) => panic!("stopped: {reason:?}"),
                Some(_) => {}
                None => panic!("client ended"),
            }
        }
    })
    .await
    .expect("the message arrives")
}

#[tokio::test]
async fn a_newer_connection_of_the_device_replaces_the_older_one() {
    let _trace = trace_init();
    let tls = TestTls::new().await;
    let (pusher, addr) = gateway(GatewayConfig::default()).await;
    let (first, _) = client(addr, &tls, "d1").await;
    push(&pusher, "m1").await;
    assert_eq!(receive(&first, "m1").await, vec![(1, "m1".into())]);

    // The same device logs in again on a second connection.
    let (second, token) = client(addr, &tls, "d1").await;
    let stop = tokio::time::timeout(LIMIT, async {
        loop {
            match first.next_event().await {
                Some(ClientEvent::OnStop { reason }) => return reason,
                Some(_) => {}
                None => panic!("client ended"),
            }
        }
    })
    .await
    .expect("the older client stops");
    assert!(
        matches!(
            &stop,
            StopReason::AuthFailed {
                code: ErrorCode::Replaced,
                ..
            }
        ),
        "{stop:?}"
    );
    // Not reconnecting: the alias's one connection is the newer one.
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let online = pusher.presence("demo", "chat", "u42");
        if online.len() == 1 {
            assert_eq!(online[0].token, token);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{online:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let view = pusher
        .cluster_presence("demo", "chat", "u42")
        .await
        .expect("local view");
    assert_eq!((view.nodes_answered, view.nodes_expected), (1, 1));
    assert_eq!(view.value.len(), 1);

    // Pushes reach the newer connection, from where the device acked.
    push(&pusher, "m2").await;
    let got = receive(&second, "m2").await;
    assert_eq!(got.last(), Some(&(2, "m2".into())));
    assert!(got.iter().all(|(seq, _)| *seq >= 1), "{got:?}");

    // Another device of the same alias replaces nobody: both get m3.
    let (other, _) = client(addr, &tls, "d2").await;
    push(&pusher, "m3").await;
    assert_eq!(receive(&second, "m3").await, vec![(3, "m3".into())]);
    assert_eq!(receive(&other, "m3").await.last(), Some(&(3, "m3".into())));
}

#[tokio::test]
async fn with_takeover_off_two_connections_of_a_device_both_stay() {
    let _trace = trace_init();
    let tls = TestTls::new().await;
    let mut config = GatewayConfig::default();
    config.takeover(false);
    let (pusher, addr) = gateway(config).await;
    let (first, _) = client(addr, &tls, "d1").await;
    let (second, _) = client(addr, &tls, "d1").await;
    push(&pusher, "m1").await;
    // Both connections are alive: each receives the push.
    assert_eq!(receive(&first, "m1").await, vec![(1, "m1".into())]);
    assert_eq!(receive(&second, "m1").await, vec![(1, "m1".into())]);
    assert_eq!(pusher.presence("demo", "chat", "u42").len(), 2);
}

/// The first stop of `client`, bounded.
async fn stopped(client: &PikeClient) -> StopReason {
    tokio::time::timeout(LIMIT, async {
        loop {
            match client.next_event().await {
                Some(ClientEvent::OnStop { reason }) => return reason,
                Some(_) => {}
                None => panic!("client ended"),
            }
        }
    })
    .await
    .expect("the client stops")
}

#[tokio::test]
async fn a_replaced_business_ends_alone_on_a_shared_connection() {
    let _trace = trace_init();
    let tls = TestTls::new().await;
    let (pusher, addr) = gateway(GatewayConfig::default()).await;
    // Device d1 shares one connection between chat (u42) and order (u7).
    let proxy = ChannelProxy::builder(connector(Wire::Tcp, addr, &tls, "d1"))
        .channel_config(ClientConfig::default())
        .build();
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", "any"))
        .expect("chat client");
    let order = proxy
        .client(ClientOptions::new("order", "u7", "any"))
        .expect("order client");
    chat.start();
    order.start();
    for client in [&chat, &order] {
        tokio::time::timeout(LIMIT, async {
            loop {
                match client.next_event().await {
                    Some(ClientEvent::Running { .. }) => return,
                    Some(ClientEvent::OnStop { reason }) => panic!("stopped: {reason:?}"),
                    Some(_) => {}
                    None => panic!("client ended"),
                }
            }
        })
        .await
        .expect("running");
    }
    let shared = pusher.presence("demo", "order", "u7");
    assert_eq!(shared.len(), 1);

    // The same device logs chat in on a connection of its own.
    let (newer, token) = client(addr, &tls, "d1").await;
    let stop = stopped(&chat).await;
    assert!(
        matches!(
            &stop,
            StopReason::AuthFailed {
                code: ErrorCode::Replaced,
                ..
            }
        ),
        "{stop:?}"
    );
    // chat is the newer connection's alone; order stays on the shared one,
    // which was not closed.
    let chat_online = pusher.presence("demo", "chat", "u42");
    assert_eq!(chat_online.len(), 1, "{chat_online:?}");
    assert_eq!(chat_online[0].token, token);
    let order_online = pusher.presence("demo", "order", "u7");
    assert_eq!(order_online.len(), 1, "{order_online:?}");
    assert_eq!(
        order_online[0].token, shared[0].token,
        "the same connection"
    );
    pusher
        .push(PushRequest {
            app: "demo".into(),
            biz: "order".into(),
            target: Target::Alias("u7".into()),
            payload: Bytes::from_static(b"o1"),
            delivery: Delivery::Reliable { ttl: None },
            priority: 0,
            receipt: false,
        })
        .await
        .expect("push accepted");
    assert_eq!(receive(&order, "o1").await, vec![(1, "o1".into())]);
    push(&pusher, "m1").await;
    assert_eq!(receive(&newer, "m1").await, vec![(1, "m1".into())]);
}

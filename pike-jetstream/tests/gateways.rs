//! Gateways as a cluster: two `pike-api` gateways, each with its own
//! `JetStreamEngine`, on a real 3-node nats-server cluster on loopback
//! (each gateway on a different NATS server, so every route crosses
//! servers). Real sockets and the real client SDK.

#[path = "support/gateway.rs"]
mod gateway;
mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::{Node, gateway, proxy, running};
use pike_api::pike_channel::test_util::trace_init;
use pike_api::server::{Delivery, Gateway, PushRequest, Target};
use pike_api::{ClientOptions, PikeClient};
use pike_jetstream::{Cluster, JetStreamEngine, LoginKey};
use support::NatsCluster;

/// Bound on every wait.
const LIMIT: Duration = Duration::from_secs(30);

async fn push(node: &Node, target: Target, text: &str, delivery: Delivery) -> usize {
    node.pusher
        .push(PushRequest {
            app: "demo".into(),
            biz: "chat".into(),
            target,
            payload: Bytes::from(text.to_owned()),
            delivery,
            priority: 0,
        })
        .await
        .expect("push accepted")
        .stored
}

/// The next `n` messages (seq, text), bounded.
async fn receive(client: &PikeClient, n: usize) -> Vec<(u64, String)> {
    tokio::time::timeout(LIMIT, async {
        let mut got = Vec::new();
        while got.len() < n {
            let message = client.next_message().await.expect("client open");
            got.push((
                message.seq,
                String::from_utf8_lossy(&message.payload).into_owned(),
            ));
        }
        got
    })
    .await
    .expect("messages in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_any_gateway_reaches_a_device_on_another() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let a = gateway(&nats, "gw-a", 0).await;
    let b = gateway(&nats, "gw-b", 1).await;

    let proxy = proxy(vec![a.addr], "device-1");
    let chat = Arc::new(
        proxy
            .client(ClientOptions::new("chat", "u42", "any"))
            .unwrap(),
    );
    chat.start();
    running(&chat, LIMIT).await;
    assert_eq!(a.pusher.connection_count(), 1);
    assert_eq!(b.pusher.connection_count(), 0);

    // Reliable, through the other gateway, then through its own: one
    // alias stream, dense and in order wherever it was pushed.
    for i in 1..=3 {
        let stored = push(
            &b,
            Target::Alias("u42".into()),
            &format!("b{i}"),
            Delivery::Reliable { ttl: None },
        )
        .await;
        assert_eq!(stored, 1);
    }
    push(
        &a,
        Target::Alias("u42".into()),
        "a4",
        Delivery::Reliable { ttl: None },
    )
    .await;
    assert_eq!(
        receive(&chat, 4).await,
        vec![
            (1, "b1".into()),
            (2, "b2".into()),
            (3, "b3".into()),
            (4, "a4".into())
        ]
    );

    // Tags bound through gateway A reach the device from gateway B.
    let tags = tokio::time::timeout(LIMIT, chat.update_tags(vec!["vip".into()], vec![]))
        .await
        .expect("in time")
        .expect("tags bound");
    assert_eq!(tags, vec!["vip".to_string()]);
    push(
        &b,
        Target::Tag("vip".into()),
        "tagged",
        Delivery::Reliable { ttl: None },
    )
    .await;
    assert_eq!(receive(&chat, 1).await, vec![(5, "tagged".into())]);

    // The whole business (aliases that logged in anywhere), from B.
    push(
        &b,
        Target::App,
        "everyone",
        Delivery::Reliable { ttl: None },
    )
    .await;
    assert_eq!(receive(&chat, 1).await, vec![(6, "everyone".into())]);

    // Transient, through B: at most once, so it is pushed until one
    // arrives (NATS interest can take a moment to reach B's server).
    let transient = tokio::time::timeout(LIMIT, async {
        loop {
            push(&b, Target::Alias("u42".into()), "now", Delivery::Transient).await;
            if let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(200), chat.next_message()).await
            {
                return message;
            }
        }
    })
    .await
    .expect("a transient push arrived");
    assert_eq!(&transient.payload[..], b"now");
    assert_eq!(transient.seq, 0, "transient messages carry no sequence");
    a.serving.abort();
    b.serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_resumes_on_another_gateway_from_its_acked_position() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let a = gateway(&nats, "gw-a", 0).await;
    let b = gateway(&nats, "gw-b", 1).await;

    let first = proxy(vec![a.addr], "device-1");
    let chat = first
        .client(ClientOptions::new("chat", "u7", "any"))
        .unwrap();
    chat.start();
    running(&chat, LIMIT).await;
    for i in 1..=3 {
        push(
            &a,
            Target::Alias("u7".into()),
            &format!("m{i}"),
            Delivery::Reliable { ttl: None },
        )
        .await;
    }
    assert_eq!(receive(&chat, 3).await.len(), 3);
    // The device's acks are saved in the cluster's positions bucket.
    let observer = Cluster::connect(nats.config("observer", nats.urls()))
        .await
        .expect("observer");
    let device = LoginKey::new("demo", "chat", "u7", "device-1").unwrap();
    let saved = tokio::time::timeout(LIMIT, async {
        loop {
            match observer.position(&device).await {
                Ok(Some(p)) if p.seq == 3 => return p,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("the acked position was saved");
    assert_eq!(saved.epoch, observer.epoch());
    drop(chat);
    drop(first);
    a.serving.abort();

    // Pushed while the device is offline, through B.
    for i in 4..=5 {
        push(
            &b,
            Target::Alias("u7".into()),
            &format!("m{i}"),
            Delivery::Reliable { ttl: None },
        )
        .await;
    }
    // The same device, on gateway B, with no saved state of its own: the
    // cluster's position makes it resume after 3, or after a later ack if
    // the gateway saved one late (never before 1).
    let second = proxy(vec![b.addr], "device-1");
    let again = second
        .client(ClientOptions::new("chat", "u7", "any"))
        .unwrap();
    again.start();
    running(&again, LIMIT).await;
    let got = receive(&again, 2).await;
    assert_eq!(got, vec![(4, "m4".into()), (5, "m5".into())]);
    b.serving.abort();
}

/// The NATS server a gateway is connected to dies while pushes go through
/// another gateway: the republished copies sent meanwhile never reach the
/// cut-off gateway (core NATS, at most once), so once it is connected
/// again it catches its live routes up from the stream. The device, which
/// stays connected to it throughout, gets every push once and in order
/// without another push or a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cut_off_from_nats_catches_up_what_it_missed() {
    let _trace = trace_init();
    let mut nats = NatsCluster::start().await;
    let mut config = nats.config("gw-a", vec![nats.url(0)]);
    config.probe_interval = Duration::from_millis(100);
    let cluster_a = Cluster::connect(config).await.expect("cluster connect");
    let gateway_a = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .engine(JetStreamEngine::factory(cluster_a.clone()))
        .bind()
        .await
        .unwrap();
    let a_addr = gateway_a.local_addrs()[0].1;
    let a_serving = tokio::spawn(gateway_a.serve());
    let b = gateway(&nats, "gw-b", 1).await;

    let proxy = proxy(vec![a_addr], "device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u7", "any"))
        .unwrap();
    chat.start();
    running(&chat, LIMIT).await;
    let reliable = Delivery::Reliable { ttl: None };
    push(&b, Target::Alias("u7".into()), "m1", reliable.clone()).await;
    assert_eq!(receive(&chat, 1).await, vec![(1, "m1".into())]);

    // Cut gateway A off: its NATS server dies. Push through B while A is
    // not ready (bounded), then once more for good measure.
    nats.kill(0);
    let mut sent = 1;
    let cut_off = tokio::time::timeout(LIMIT, async {
        while matches!(cluster_a.health(), pike_jetstream::Health::Ready) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(cut_off.is_ok(), "gateway A noticed its NATS server died");
    for _ in 0..50 {
        if matches!(cluster_a.health(), pike_jetstream::Health::Ready) {
            break;
        }
        sent += 1;
        let text = format!("m{sent}");
        push(&b, Target::Alias("u7".into()), &text, reliable.clone()).await;
    }
    let back = tokio::time::timeout(LIMIT, async {
        while !matches!(cluster_a.health(), pike_jetstream::Health::Ready) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "gateway A reconnected to another NATS server");

    let expected: Vec<(u64, String)> = (2..=sent).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(receive(&chat, expected.len()).await, expected);
    assert_eq!(proxy.channels(), 1, "the device stayed on its one channel");
    a_serving.abort();
    b.serving.abort();
}

//! Gateways as a cluster: two `pike-api` gateways, each with its own
//! `JetStreamEngine`, on a real 3-node nats-server cluster on loopback
//! (each gateway on a different NATS server, so every route crosses
//! servers). Real sockets and the real client SDK. Covered: pushes across
//! gateways, resume on another gateway, presence takeover across gateways,
//! and the cluster-wide views (presence, connection list, trace,
//! disconnect).

#[path = "support/gateway.rs"]
mod gateway;
mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::{Node, gateway, proxy, running};
use pike_api::pike_channel::test_util::trace_init;
use pike_api::proto::tunnel::ErrorCode;
use pike_api::server::{Delivery, DisconnectTarget, Gateway, PushRequest, Target};
use pike_api::{ClientEvent, ClientOptions, ClientState, PikeClient, StopReason};
use pike_jetstream::{Cluster, Holder, JetStreamEngine, LoginKey};
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
            receipt: false,
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
    push(&b, Target::Alias("u7".into()), "m1", reliable).await;
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
        push(&b, Target::Alias("u7".into()), &text, reliable).await;
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

/// Gateway A reaches each of the three NATS servers through a fault proxy
/// (`faultproxy`). The proxies blackhole A's NATS links for a while (bytes
/// held, as in a partition that heals before TCP gives up): A's readiness
/// turns unavailable while gateway B, not cut, keeps accepting pushes;
/// then the links heal, A is ready again, and the device on A gets every
/// push accepted before, during and after the cut exactly once, in order,
/// on its one channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_nats_links_are_blackholed_recovers_when_they_heal() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let mut links = Vec::new();
    let mut urls = Vec::new();
    for i in 0..3 {
        let server = nats
            .url(i)
            .trim_start_matches("nats://")
            .parse()
            .expect("a socket address");
        let link = faultproxy::Proxy::tcp("127.0.0.1:0".parse().unwrap(), server)
            .await
            .expect("proxy");
        urls.push(format!("nats://{}", link.local_addr()));
        links.push(link);
    }
    let mut config = nats.config("gw-a", urls);
    config.probe_interval = Duration::from_millis(100);
    let cluster_a = Cluster::connect(config).await.expect("cluster connect");
    let gateway_a = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .engine(JetStreamEngine::factory(cluster_a.clone()))
        .bind()
        .await
        .unwrap();
    let a_addr = gateway_a.local_addrs()[0].1;
    let a = Node {
        cluster: cluster_a.clone(),
        addr: a_addr,
        pusher: gateway_a.push_handle(),
        serving: tokio::spawn(gateway_a.serve()),
    };
    let b = gateway(&nats, "gw-b", 1).await;
    let ready = |cluster: &Cluster| matches!(cluster.health(), pike_jetstream::Health::Ready);

    let proxy = proxy(vec![a.addr], "device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u7", "any"))
        .unwrap();
    chat.start();
    running(&chat, LIMIT).await;
    let reliable = Delivery::Reliable { ttl: None };
    push(&a, Target::Alias("u7".into()), "m1", reliable).await;
    assert_eq!(receive(&chat, 1).await, vec![(1, "m1".into())]);

    for link in &links {
        link.handle().blackhole(faultproxy::Direction::Both, true);
    }
    let cut_off = tokio::time::timeout(LIMIT, async {
        while ready(&cluster_a) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(cut_off.is_ok(), "gateway A's readiness saw the cut");
    for i in 2..=4 {
        push(&b, Target::Alias("u7".into()), &format!("m{i}"), reliable).await;
    }
    assert!(!ready(&cluster_a), "still cut off while B took the pushes");

    for link in &links {
        link.handle().heal();
    }
    let back = tokio::time::timeout(LIMIT, async {
        while !ready(&cluster_a) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "gateway A is ready again once its links heal");
    push(&a, Target::Alias("u7".into()), "m5", reliable).await;
    push(&b, Target::Alias("u7".into()), "m6", reliable).await;

    let expected: Vec<(u64, String)> = (2..=6).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(receive(&chat, expected.len()).await, expected);
    assert_eq!(proxy.channels(), 1, "the device stayed on its one channel");
    let carried: u64 = links.iter().map(|l| l.handle().stats().bytes_down).sum();
    assert!(carried > 0, "A's NATS traffic went through the proxies");
    a.serving.abort();
    b.serving.abort();
}

/// Waits (bounded) until `client` stops, and checks it was replaced.
async fn stopped_replaced(client: &PikeClient, what: &str) {
    let stop = tokio::time::timeout(LIMIT, async {
        loop {
            match client.next_event().await {
                Some(ClientEvent::OnStop { reason }) => return reason,
                Some(_) => {}
                None => panic!("client gone"),
            }
        }
    })
    .await
    .expect(what);
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
}

/// Waits for `Running` and returns the connection token the client was
/// given on the way.
async fn running_token(client: &PikeClient) -> String {
    tokio::time::timeout(LIMIT, async {
        let mut token = None;
        loop {
            match client.next_event().await {
                Some(ClientEvent::Connected { connection_token }) => token = Some(connection_token),
                Some(ClientEvent::Running { .. }) => return token.expect("connected first"),
                Some(ClientEvent::OnStop { reason }) => panic!("stopped: {reason:?}"),
                Some(_) => {}
                None => panic!("client gone"),
            }
        }
    })
    .await
    .expect("running in time")
}

/// Polls `check` (bounded by `LIMIT`) until it gives a value.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_logging_in_on_another_gateway_replaces_its_older_connection() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let a = gateway(&nats, "gw-a", 0).await;
    let b = gateway(&nats, "gw-b", 1).await;

    let first_proxy = proxy(vec![a.addr], "phone");
    let first = first_proxy
        .client(ClientOptions::new("chat", "u5", "any"))
        .unwrap();
    first.start();
    running(&first, LIMIT).await;
    for i in 1..=2 {
        push(
            &b,
            Target::Alias("u5".into()),
            &format!("m{i}"),
            Delivery::Reliable { ttl: None },
        )
        .await;
    }
    assert_eq!(
        receive(&first, 2).await,
        vec![(1, "m1".into()), (2, "m2".into())]
    );

    // The same device logs in on gateway B: A's connection is replaced.
    let second_proxy = proxy(vec![b.addr], "phone");
    let second = second_proxy
        .client(ClientOptions::new("chat", "u5", "any"))
        .unwrap();
    second.start();
    let token = running_token(&second).await;
    stopped_replaced(&first, "the older client stops").await;
    eventually("A's connection closed", || async {
        (a.pusher.connection_count() == 0).then_some(())
    })
    .await;
    // Seen from either gateway: one connection, the newer one.
    for node in [&a, &b] {
        let view = eventually("presence of both nodes", || async {
            node.pusher
                .cluster_presence("demo", "chat", "u5")
                .await
                .ok()
                .filter(|v| v.nodes_answered == 2)
        })
        .await;
        assert_eq!(view.value.len(), 1, "{view:?}");
        assert_eq!(view.value[0].token, token);
    }

    // Pushes through A reach the device on B only, nothing lost: every
    // message after the position the device acked on A, in order.
    for i in 3..=5 {
        push(
            &a,
            Target::Alias("u5".into()),
            &format!("m{i}"),
            Delivery::Reliable { ttl: None },
        )
        .await;
    }
    let got = tokio::time::timeout(LIMIT, async {
        let mut got = Vec::new();
        while got.last().is_none_or(|(seq, _)| *seq < 5) {
            let message = second.next_message().await.expect("client open");
            got.push((
                message.seq,
                String::from_utf8_lossy(&message.payload).into_owned(),
            ));
        }
        got
    })
    .await
    .expect("m3..m5 arrive on B");
    let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
    let first_seq = seqs[0];
    assert!(first_seq <= 3, "nothing lost: {got:?}");
    assert_eq!(
        seqs,
        (first_seq..=5).collect::<Vec<_>>(),
        "in order, once each"
    );
    assert_eq!(first.state(), ClientState::Stopped, "A's client stays off");
    a.serving.abort();
    b.serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_connection_list_trace_and_disconnect_span_both_gateways() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let a = gateway(&nats, "gw-a", 0).await;
    let b = gateway(&nats, "gw-b", 1).await;

    let on_a = proxy(vec![a.addr], "tablet");
    let left = on_a
        .client(ClientOptions::new("chat", "ann", "any"))
        .unwrap();
    left.start();
    let left_token = running_token(&left).await;
    let on_b = proxy(vec![b.addr], "laptop");
    let right = on_b
        .client(ClientOptions::new("chat", "bob", "any"))
        .unwrap();
    right.start();
    let right_token = running_token(&right).await;

    for (node, other) in [(&a, &right_token), (&b, &left_token)] {
        // Both leases are counted, and both nodes answer.
        let count = eventually("both nodes answer", || async {
            node.pusher
                .cluster_connection_count()
                .await
                .ok()
                .filter(|v| v.nodes_expected == 2 && v.complete())
        })
        .await;
        assert_eq!(count.value, 2);
        assert_eq!(node.cluster.live_nodes(), 2, "both leases counted");
        let alias = if *other == right_token { "bob" } else { "ann" };
        let presence = node
            .pusher
            .cluster_presence("demo", "chat", alias)
            .await
            .expect("presence");
        assert_eq!(presence.value.len(), 1);
        assert_eq!(&presence.value[0].token, other);
        // The other node's connection's trace, through this node.
        let trace = node
            .pusher
            .cluster_trace("demo", other)
            .await
            .expect("trace")
            .value
            .expect("the other node has it");
        assert!(trace.iter().any(|e| e.signal == "hello"), "{trace:?}");
        assert!(trace.iter().any(|e| e.signal == "auth"), "{trace:?}");
        assert_eq!(
            node.pusher
                .cluster_trace("demo2", other)
                .await
                .expect("trace")
                .value,
            None,
            "another app's token is not found"
        );
    }

    // Paging through both nodes' connections, one per page, from A.
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..4 {
        let page = a
            .pusher
            .cluster_connections_page("demo", after, 1)
            .await
            .expect("page")
            .value;
        assert_eq!(page.total, 2);
        seen.extend(page.connections.into_iter().map(|c| c.token));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    seen.sort();
    let mut both = vec![left_token.clone(), right_token.clone()];
    both.sort();
    assert_eq!(seen, both, "each connection once");

    // A disconnect through A closes the connection on B.
    let closed = a
        .pusher
        .cluster_disconnect(
            "demo",
            &DisconnectTarget::Connection(right_token.clone()),
            "bye",
        )
        .await
        .expect("disconnect");
    assert_eq!(closed.value, 1);
    eventually("B's connection closed", || async {
        let gone = b
            .pusher
            .presence("demo", "chat", "bob")
            .iter()
            .all(|c| c.token != right_token);
        gone.then_some(())
    })
    .await;
    a.serving.abort();
    b.serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_outlive_their_ttl_by_renewal_and_a_newer_claim_closes_the_older_connection() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    // A 4 s claim TTL: renewed every TTL / 3, so a renewal may run over 2.5 s
    // late (a loaded CI machine) before the claim would lapse.
    let mut config = nats.config("gw-a", vec![nats.url(0)]);
    config.presence_ttl = Duration::from_secs(4);
    let cluster = Cluster::connect(config).await.expect("cluster connect");
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .engine(JetStreamEngine::factory(cluster))
        .bind()
        .await
        .unwrap();
    let addr = gateway.local_addrs()[0].1;
    let serving = tokio::spawn(gateway.serve());

    let device = proxy(vec![addr], "phone-9");
    let client = device
        .client(ClientOptions::new("chat", "u9", "any"))
        .unwrap();
    client.start();
    let token = running_token(&client).await;
    let observer = Cluster::connect(nats.config("observer", nats.urls()))
        .await
        .expect("observer");
    let login = LoginKey::new("demo", "chat", "u9", "phone-9").unwrap();
    let held = eventually("the claim is written", || async {
        observer.holder(&login).await.ok().flatten()
    })
    .await;
    assert_eq!(
        (held.node.as_str(), held.token.as_str()),
        ("gw-a", token.as_str())
    );

    // More than two TTLs later the claim is still there: renewed, not
    // expired.
    let until = tokio::time::Instant::now() + Duration::from_secs(9);
    while tokio::time::Instant::now() < until {
        let holder = observer.holder(&login).await.expect("holder read");
        assert_eq!(holder.map(|h| h.token), Some(token.clone()), "renewed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A newer claim from elsewhere whose replace order never arrives: the
    // gateway's next renewal finds it and closes its older connection.
    let newer = Holder {
        node: "ghost".into(),
        boot: 1,
        token: "ghost-token".into(),
        since_ms: held.since_ms + 60_000,
    };
    let replaced = observer.claim(&login, &newer).await.expect("claim");
    assert_eq!(replaced.map(|h| h.token), Some(token.clone()));
    stopped_replaced(&client, "the older connection is closed at the renewal").await;
    // The gateway's renewal left the newer claim alone.
    let holder = observer.holder(&login).await.expect("holder read");
    assert_eq!(holder.map(|h| h.token), Some("ghost-token".to_owned()));
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_says_partial_when_a_live_node_does_not_answer() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let a = gateway(&nats, "gw-a", 0).await;
    let b = gateway(&nats, "gw-b", 1).await;
    eventually("both nodes answer", || async {
        a.pusher
            .cluster_connection_count()
            .await
            .ok()
            .filter(|v| v.nodes_expected == 2 && v.complete())
    })
    .await;
    // A third node's lease, written by hand: alive for 10 s, and silent.
    let js = async_nats::jetstream::new(b.cluster.client().clone());
    let leases = js
        .get_key_value(pike_jetstream::NODES_BUCKET)
        .await
        .expect("the lease bucket");
    leases
        .put("gw-silent", Bytes::from_static(b"{}"))
        .await
        .expect("lease written");
    let started = tokio::time::Instant::now();
    let view = a.pusher.cluster_connection_count().await.expect("a view");
    let waited = started.elapsed();
    assert_eq!((view.nodes_answered, view.nodes_expected), (2, 3));
    assert!(!view.complete());
    // The asker waited its window for the silent node, and no longer.
    assert!(
        waited >= pike_jetstream::VIEW_WINDOW && waited < pike_jetstream::VIEW_WINDOW * 10,
        "{waited:?}"
    );
    a.serving.abort();
    b.serving.abort();
}

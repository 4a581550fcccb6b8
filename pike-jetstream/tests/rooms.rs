//! Live rooms across gateways: three `pike-api` gateways, each with its own
//! `JetStreamEngine` on a different server of a real 3-node nats-server
//! cluster on loopback, and real clients (the SDK over TCP) joined to one
//! room on every gateway. Publishes through every gateway reach every
//! member: reliable ones once each and in publish order per publisher,
//! droppable ones at most once; each gateway keeps its own room (one
//! encoding per batch there).

#[path = "support/gateway.rs"]
mod gateway;
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use gateway::{Node, gateway, proxy, running};
use pike_api::pike_channel::test_util::trace_init;
use pike_api::server::engine::{
    LocalDelivery, LoginId, NodeSink, RoomBusMessage, RouteTarget, TransientMessage, ViewAnswer,
    ViewQuery,
};
use pike_api::server::{RoomClass, RoomError, RoomPublish, RoomReceipt, StoredMessage, StreamKey};
use pike_api::{ChannelProxy, ClientEvent, ClientOptions, PikeClient};
use pike_jetstream::{Cluster, JetStreamEngine, RoomKey, RoomReadFrom};
use support::NatsCluster;

/// Bound on every wait.
const LIMIT: Duration = Duration::from_secs(60);
/// Rounds of publishes; each round publishes one reliable and one
/// droppable message through every gateway.
const ROUNDS: usize = 40;
const ROOM: &str = "live:1";

/// A started client of `device` on `addr`, joined to [`ROOM`] at its tail.
async fn member(addr: SocketAddr, device: &str) -> (ChannelProxy, PikeClient) {
    let proxy = proxy(vec![addr], device);
    let client = proxy
        .client(ClientOptions::new("live", device, "any"))
        .unwrap();
    client.start();
    running(&client, LIMIT).await;
    tokio::time::timeout(LIMIT, client.join_room(ROOM, None))
        .await
        .expect("joined in time")
        .expect("joined");
    (proxy, client)
}

async fn publish(node: &Node, class: RoomClass, text: String) -> RoomReceipt {
    tokio::time::timeout(
        LIMIT,
        node.pusher.publish_room(RoomPublish {
            app: "demo".into(),
            room: ROOM.into(),
            payload: Bytes::from(text),
            class,
            priority: 0,
            publisher: None,
        }),
    )
    .await
    .expect("published in time")
    .expect("publish accepted")
}

/// What one member received, by class.
#[derive(Debug, Default)]
struct Received {
    reliable: Vec<String>,
    droppable: Vec<String>,
}

/// Room messages until `reliable` reliable ones arrived (bounded; no
/// message may be reported missed).
async fn receive(client: &PikeClient, reliable: usize) -> Received {
    let mut got = Received::default();
    let collected = tokio::time::timeout(LIMIT, async {
        while got.reliable.len() < reliable {
            match client.next_event().await {
                Some(ClientEvent::RoomMessages {
                    room,
                    messages,
                    missed,
                }) => {
                    assert_eq!(room, ROOM);
                    assert_eq!(missed, 0, "nothing is missed in a room this small");
                    for message in messages {
                        let text = String::from_utf8_lossy(&message.payload).into_owned();
                        if message.class == RoomClass::Reliable as i32 {
                            got.reliable.push(text);
                        } else {
                            got.droppable.push(text);
                        }
                    }
                }
                Some(ClientEvent::OnStop { reason }) => panic!("stopped: {reason:?}"),
                Some(_) => {}
                None => panic!("client gone"),
            }
        }
    })
    .await;
    assert!(
        collected.is_ok(),
        "{reliable} reliable messages in time; got {} ({:?}...)",
        got.reliable.len(),
        &got.reliable[..got.reliable.len().min(10)]
    );
    got
}

/// (gateway, round) of a payload `<class>:<gateway>:<round>`.
fn origin(text: &str) -> (String, usize) {
    let mut parts = text.split(':');
    let _class = parts.next();
    let gateway = parts.next().expect("gateway").to_owned();
    let round = parts.next().expect("round").parse().expect("round number");
    (gateway, round)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_three_gateways_publish_anywhere_reach_everyone() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let names = ["a", "b", "c"];
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        nodes.push(gateway(&nats, &format!("gw-{name}"), i).await);
    }
    // Two members on every gateway.
    let mut members = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for k in 0..2 {
            let (proxy, client) = member(node.addr, &format!("d-{}-{k}", names[i])).await;
            members.push((names[i], proxy, client));
        }
    }
    for node in &nodes {
        let stats = node
            .pusher
            .room_stats("demo", ROOM)
            .expect("room on every gateway");
        assert_eq!(stats.members, 2, "room stats are per node");
    }

    // Interleaved publishes through every gateway.
    for round in 0..ROUNDS {
        for (i, node) in nodes.iter().enumerate() {
            let receipt =
                publish(node, RoomClass::Reliable, format!("r:{}:{round}", names[i])).await;
            assert!(
                matches!(receipt, RoomReceipt::Accepted { .. }),
                "{receipt:?}"
            );
            let receipt = publish(
                node,
                RoomClass::Droppable,
                format!("d:{}:{round}", names[i]),
            )
            .await;
            assert!(
                matches!(receipt, RoomReceipt::Accepted { .. }),
                "{receipt:?}"
            );
        }
    }

    let total = ROUNDS * names.len();
    for (home, _proxy, client) in &members {
        let got = receive(client, total).await;
        // Every reliable message once, in publish order per publisher.
        let mut per_publisher: HashMap<String, Vec<usize>> = HashMap::new();
        for text in &got.reliable {
            let (gateway, round) = origin(text);
            per_publisher.entry(gateway).or_default().push(round);
        }
        for name in names {
            assert_eq!(
                per_publisher.get(name).cloned().unwrap_or_default(),
                (0..ROUNDS).collect::<Vec<_>>(),
                "member on gw-{home}: the reliable messages published through gw-{name}"
            );
        }
        // Droppable: at most once each, in order per publisher; the ones
        // published through the member's own gateway all arrived.
        let mut droppable: HashMap<String, Vec<usize>> = HashMap::new();
        for text in &got.droppable {
            let (gateway, round) = origin(text);
            droppable.entry(gateway).or_default().push(round);
        }
        for (gateway, rounds) in &droppable {
            assert!(
                rounds.windows(2).all(|w| w[0] < w[1]),
                "member on gw-{home}: droppable from gw-{gateway} once each and in order: {rounds:?}"
            );
        }
        let own: Vec<usize> = droppable.get(*home).cloned().unwrap_or_default();
        assert!(
            own.len() + 1 >= ROUNDS,
            "member on gw-{home}: its own gateway's droppable messages (all but the last may still be on the way): {own:?}"
        );
    }

    // Each gateway's room took every reliable message once, and encoded
    // each batch once for its members.
    for (i, node) in nodes.iter().enumerate() {
        let stats = node.pusher.room_stats("demo", ROOM).expect("room");
        assert_eq!(
            stats.published_reliable, total as u64,
            "gw-{}: every reliable message entered its room once",
            names[i]
        );
        assert!(stats.batches > 0);
        assert!(
            stats.encodes <= stats.batches,
            "gw-{}: one encoding per batch ({} encodes, {} batches)",
            names[i],
            stats.encodes,
            stats.batches
        );
    }
    for node in nodes {
        node.serving.abort();
    }
}

/// Waits until a subscription made through one NATS server is known to the
/// server `publisher` talks to: core NATS spreads interest over the cluster
/// routes asynchronously, and a live copy published before it arrives is
/// dropped (droppable by design; reliable ones are read back by cursor).
/// Publishes numbered droppable probes until the latest comes back.
async fn interest_reached(
    publisher: &Cluster,
    key: &RoomKey,
    live: &mut pike_jetstream::RoomStream,
) {
    tokio::time::timeout(LIMIT, async {
        for n in 0u32..10_000 {
            let probe = format!("probe-{n}");
            publisher
                .publish_room(key, false, 0, Bytes::from(probe.clone()))
                .await
                .expect("published");
            // Earlier probes may come first; only the latest says that
            // nothing published from now on is lost.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while let Ok(Some(message)) = tokio::time::timeout_at(deadline, live.next()).await {
                if message.payload == probe {
                    return;
                }
            }
        }
        panic!("no probe came back");
    })
    .await
    .expect("the subscription's interest reached the publisher's server");
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_room_messages_are_stored_once_and_read_back_by_cursor_and_time() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let a = Cluster::connect(nats.config("gw-a", vec![nats.url(0)]))
        .await
        .expect("connect a");
    let b = Cluster::connect(nats.config("gw-b", vec![nats.url(1)]))
        .await
        .expect("connect b");
    let key = RoomKey::new("demo", "live:7").unwrap();
    assert_eq!(b.room_last_cursor(&key).await.unwrap(), 0, "a new room");
    let before = unix_ms();
    let mut live = b.subscribe_room(&key).await.expect("subscribed");
    interest_reached(&a, &key, &mut live).await;

    let mut cursors = Vec::new();
    for i in 0..5u32 {
        let stored = a
            .publish_room(&key, true, i, Bytes::from(format!("r{i}")))
            .await
            .expect("stored");
        cursors.push(stored.expect("a reliable message has a cursor"));
        if i == 2 {
            // Another room in between: "previous" is per room.
            let other = RoomKey::new("demo", "live:8").unwrap();
            a.publish_room(&other, true, 0, Bytes::from_static(b"elsewhere"))
                .await
                .expect("stored");
        }
    }
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert_eq!(
        a.publish_room(&key, false, 0, Bytes::from_static(b"d"))
            .await
            .unwrap(),
        None,
        "droppable messages are not stored"
    );

    // The live copies: republished with their cursor and the previous one
    // (so a gap shows), naming the publisher; then the droppable one.
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while got.len() < 6 {
            got.push(live.next().await.expect("subscribed"));
        }
    })
    .await
    .expect("live copies in time");
    let mut previous = 0;
    for (i, message) in got[..5].iter().enumerate() {
        let at = message.stored.expect("reliable");
        assert_eq!(at.cursor, cursors[i]);
        assert_eq!(at.previous, previous);
        previous = at.cursor;
        assert_eq!(message.origin, "gw-a");
        assert_eq!(message.priority, i as u32);
        assert_eq!(message.payload, format!("r{i}"));
    }
    assert_eq!(got[5].stored, None);
    assert_eq!(&got[5].payload[..], b"d");

    // Read back: after a cursor, since a time, the newest.
    assert_eq!(b.room_last_cursor(&key).await.unwrap(), cursors[4]);
    let after = b
        .read_room(&key, RoomReadFrom::After(cursors[1]), 100)
        .await
        .unwrap();
    let texts: Vec<_> = after.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(texts, ["r2", "r3", "r4"]);
    let since = b
        .read_room(&key, RoomReadFrom::Since(before.saturating_sub(1000)), 100)
        .await
        .unwrap();
    assert_eq!(since.len(), 5, "everything stored since the test began");
    let future = b
        .read_room(&key, RoomReadFrom::Since(unix_ms() + 60_000), 100)
        .await
        .unwrap();
    assert!(
        future.is_empty(),
        "nothing stored in the future: {future:?}"
    );
}

/// A node that only records the room messages the engine hands it.
struct RoomSink(tokio::sync::mpsc::UnboundedSender<RoomBusMessage>);

impl NodeSink for RoomSink {
    fn stored(&self, _stream: &StreamKey, _message: Arc<StoredMessage>) -> usize {
        0
    }

    fn transient(&self, _target: &RouteTarget, _message: &TransientMessage) -> LocalDelivery {
        LocalDelivery::default()
    }

    fn room(&self, message: RoomBusMessage) {
        let _ = self.0.send(message);
    }

    fn replace(&self, _login: &LoginId, _token: &str) -> bool {
        false
    }

    fn query(&self, query: &ViewQuery) -> ViewAnswer {
        ViewAnswer::none(query)
    }
}

fn reliable(room: &str, text: &str) -> RoomBusMessage {
    RoomBusMessage {
        app: "demo".into(),
        room: room.into(),
        class: RoomClass::Reliable,
        priority: 0,
        payload: Bytes::copy_from_slice(text.as_bytes()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_watching_a_room_gets_what_was_published_while_its_interest_spread() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let connect = |name: &str, i: usize| Cluster::connect(nats.config(name, vec![nats.url(i)]));
    let (tx_a, mut at_a) = tokio::sync::mpsc::unbounded_channel();
    let (tx_b, mut at_b) = tokio::sync::mpsc::unbounded_channel();
    let a =
        JetStreamEngine::factory(connect("gw-a", 0).await.expect("a"))(Arc::new(RoomSink(tx_a)));
    let b =
        JetStreamEngine::factory(connect("gw-b", 1).await.expect("b"))(Arc::new(RoomSink(tx_b)));

    // B's room gets its first member (twice, as a replaced idle room does)
    // and A publishes at once: B's subscription is still on its way to A's
    // NATS server, so B gets these from its reads of PIKE_ROOMS.
    b.rooms.watch("demo", "live:9", true);
    b.rooms.watch("demo", "live:9", true);
    let sent: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    for text in &sent {
        a.rooms
            .forward(reliable("live:9", text))
            .await
            .expect("stored");
    }
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while got.len() < sent.len() {
            let message = at_b.recv().await.expect("engine alive");
            assert_eq!(
                (message.app.as_str(), message.room.as_str()),
                ("demo", "live:9")
            );
            assert_eq!(message.class, RoomClass::Reliable);
            got.push(String::from_utf8_lossy(&message.payload).into_owned());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("every message in time; got {got:?}"));
    assert_eq!(got, sent, "once each, in publish order");

    // One member left of two: still watched. Droppable ones arrive live
    // once the interest has spread (at most once: sent until one arrives).
    b.rooms.watch("demo", "live:9", false);
    let droppable = tokio::time::timeout(LIMIT, async {
        loop {
            let mut message = reliable("live:9", "barrage");
            message.class = RoomClass::Droppable;
            a.rooms.forward(message).await.expect("sent");
            if let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(200), at_b.recv()).await
            {
                return message;
            }
        }
    })
    .await
    .expect("a droppable message arrived");
    assert_eq!(droppable.class, RoomClass::Droppable);
    assert_eq!(&droppable.payload[..], b"barrage");

    // A node never gets its own messages back (it published them to its
    // room already): A watches too, B publishes, A gets B's only.
    a.rooms.watch("demo", "live:9", true);
    b.rooms
        .forward(reliable("live:9", "from-b"))
        .await
        .expect("stored");
    let from_b = tokio::time::timeout(LIMIT, at_a.recv())
        .await
        .expect("in time")
        .expect("engine alive");
    assert_eq!(&from_b.payload[..], b"from-b");
    assert!(
        at_a.try_recv().is_err(),
        "A got nothing of its own, nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reliable_room_publish_the_cluster_cannot_store_is_refused_and_published_nowhere() {
    let _trace = trace_init();
    let mut nats = NatsCluster::start().await;
    let a = gateway(&nats, "gw-a", 0).await;
    let (_proxy, _client) = member(a.addr, "d-a").await;
    assert!(matches!(
        publish(&a, RoomClass::Reliable, "r:a:0".into()).await,
        RoomReceipt::Accepted { .. }
    ));
    for i in 0..support::NODES {
        nats.kill(i);
    }
    let refused = tokio::time::timeout(
        LIMIT,
        a.pusher.publish_room(RoomPublish {
            app: "demo".into(),
            room: ROOM.into(),
            payload: Bytes::from_static(b"r:a:1"),
            class: RoomClass::Reliable,
            priority: 0,
            publisher: None,
        }),
    )
    .await
    .expect("answered in time");
    assert!(
        matches!(refused, Err(RoomError::Unavailable(_))),
        "{refused:?}"
    );
    let stats = a.pusher.room_stats("demo", ROOM).expect("room");
    assert_eq!(stats.published_reliable, 1, "not published here alone");
    a.serving.abort();
}

/// Room messages handed to a node, until `want` holds for the texts
/// (bounded); texts starting with `skip` are left out.
async fn texts_until(
    at: &mut tokio::sync::mpsc::UnboundedReceiver<RoomBusMessage>,
    got: &mut Vec<String>,
    want: impl Fn(&[String]) -> bool,
    limit: Duration,
) -> bool {
    tokio::time::timeout(limit, async {
        while !want(got) {
            let message = at.recv().await.expect("engine alive");
            let text = String::from_utf8_lossy(&message.payload).into_owned();
            if !text.starts_with("flood") {
                got.push(text);
            }
        }
    })
    .await
    .is_ok()
}

/// Stalls whoever passes while it is closed (at most [`LIMIT`]).
#[derive(Default)]
struct Gate {
    closed: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        *self.closed.lock().expect("gate") = closed;
        self.opened.notify_all();
    }

    fn pass(&self) {
        let closed = self.closed.lock().expect("gate");
        let (_open, waited) = self
            .opened
            .wait_timeout_while(closed, LIMIT, |closed| *closed)
            .expect("gate");
        assert!(!waited.timed_out(), "the gate stayed closed");
    }
}

/// A node whose room stalls while the gate is closed (a slow node).
struct GatedSink {
    gate: Arc<Gate>,
    inner: RoomSink,
}

impl NodeSink for GatedSink {
    fn stored(&self, stream: &StreamKey, message: Arc<StoredMessage>) -> usize {
        self.inner.stored(stream, message)
    }

    fn transient(&self, target: &RouteTarget, message: &TransientMessage) -> LocalDelivery {
        self.inner.transient(target, message)
    }

    fn room(&self, message: RoomBusMessage) {
        self.gate.pass();
        self.inner.room(message);
    }

    fn replace(&self, login: &LoginId, token: &str) -> bool {
        self.inner.replace(login, token)
    }

    fn query(&self, query: &ViewQuery) -> ViewAnswer {
        self.inner.query(query)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_room_messages_a_slow_node_dropped_are_read_back_once_in_order() {
    let _trace = trace_init();
    let nats = NatsCluster::start().await;
    let (tx_a, _at_a) = tokio::sync::mpsc::unbounded_channel();
    let (tx_b, mut at_b) = tokio::sync::mpsc::unbounded_channel();
    let a = Cluster::connect(nats.config("gw-a", vec![nats.url(0)]))
        .await
        .expect("a");
    let a = JetStreamEngine::factory(a)(Arc::new(RoomSink(tx_a)));
    // B buffers the least a node may per subscription.
    let mut config = nats.config("gw-b", vec![nats.url(1)]);
    config.subscription_capacity = pike_jetstream::MAX_BATCH + 1;
    let b = Cluster::connect(config).await.expect("b");
    let gate = Arc::new(Gate::default());
    let b = JetStreamEngine::factory(b)(Arc::new(GatedSink {
        gate: gate.clone(),
        inner: RoomSink(tx_b),
    }));
    b.rooms.watch("demo", "live:5", true);
    a.rooms
        .forward(reliable("live:5", "w"))
        .await
        .expect("stored");
    let mut got = Vec::new();
    assert!(
        texts_until(&mut at_b, &mut got, |g| !g.is_empty(), LIMIT).await,
        "B follows the room"
    );
    assert_eq!(got, ["w"]);

    // B's room stalls; A floods the room with barrage, then publishes
    // reliable messages: NATS drops what B's full subscription cannot take.
    gate.set_closed(true);
    for i in 0..3 * pike_jetstream::MAX_BATCH {
        let mut flood = reliable("live:5", &format!("flood{i}"));
        flood.class = RoomClass::Droppable;
        a.rooms.forward(flood).await.expect("sent");
    }
    let missed: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    for text in &missed {
        a.rooms
            .forward(reliable("live:5", text))
            .await
            .expect("stored");
    }
    gate.set_closed(false);

    // The next reliable message B gets live shows the gap; B reads what it
    // missed first.
    a.rooms
        .forward(reliable("live:5", "next"))
        .await
        .expect("stored");
    let mut got = Vec::new();
    assert!(
        texts_until(&mut at_b, &mut got, |g| g.len() > missed.len(), LIMIT).await,
        "B caught up in time; got {got:?}"
    );
    let want: Vec<String> = missed.iter().cloned().chain(["next".to_owned()]).collect();
    assert_eq!(
        got, want,
        "once each, in order, the gap before the live one"
    );
}

//! The room side of the engine seam seen from outside: a gateway built with
//! the embedded engine whose `RoomBus` is replaced by one that records what
//! it is told (and can refuse), with real clients over loopback TCP. The
//! bus hears of a room's first and last member only, gets every accepted
//! publish (a reliable one before the room's members, so a refusal
//! publishes nothing), and the node publishes what the engine hands it
//! (`NodeSink::room`) into its existing rooms only.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pike_api::server::engine::{Engine, EngineError, NodeSink, RoomBus, RoomBusMessage};
use pike_api::server::{
    BoxFuture, Gateway, MemoryStore, PushHandle, RoomClass, RoomError, RoomPublish, RoomReceipt,
};
use support::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, LIMIT, PikeClient, TestTls, Wire,
    connector, next, running, trace_init,
};

/// What the bus was told.
#[derive(Clone, Debug, Eq, PartialEq)]
enum Told {
    Watch(String, bool),
    Forward(RoomClass, String),
}

#[derive(Default)]
struct RecordingBus {
    told: Mutex<Vec<Told>>,
    refuse: AtomicBool,
}

impl RecordingBus {
    fn told(&self) -> Vec<Told> {
        self.told.lock().unwrap().clone()
    }
}

impl RoomBus for RecordingBus {
    fn forward(&self, message: RoomBusMessage) -> BoxFuture<'_, Result<(), EngineError>> {
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        self.told
            .lock()
            .unwrap()
            .push(Told::Forward(message.class, text));
        let refused = self.refuse.load(Ordering::Relaxed);
        Box::pin(async move {
            if refused {
                Err(EngineError::Unavailable("the test refuses".into()))
            } else {
                Ok(())
            }
        })
    }

    fn watch(&self, app: &str, room: &str, members: bool) {
        assert_eq!(app, "demo");
        self.told
            .lock()
            .unwrap()
            .push(Told::Watch(room.to_owned(), members));
    }
}

struct Node {
    pusher: PushHandle,
    addr: std::net::SocketAddr,
    bus: Arc<RecordingBus>,
    sink: Arc<dyn NodeSink>,
    tls: TestTls,
}

async fn node() -> Node {
    let bus = Arc::new(RecordingBus::default());
    let sink_slot: Arc<Mutex<Option<Arc<dyn NodeSink>>>> = Arc::default();
    let (engine_bus, slot) = (bus.clone(), sink_slot.clone());
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .engine(move |sink| {
            *slot.lock().unwrap() = Some(sink.clone());
            Engine {
                rooms: engine_bus,
                ..Engine::embedded(Arc::new(MemoryStore::new()), sink)
            }
        })
        .bind()
        .await
        .unwrap();
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());
    let sink = sink_slot.lock().unwrap().take().expect("engine built");
    Node {
        pusher,
        addr,
        bus,
        sink,
        tls: TestTls::new().await,
    }
}

impl Node {
    async fn member(&self, device: &str, room: &str) -> (ChannelProxy, PikeClient) {
        let proxy = ChannelProxy::builder(connector(Wire::Tcp, self.addr, &self.tls, device))
            .channel_config(ClientConfig::default())
            .build();
        let client = proxy
            .client(ClientOptions::new("live", device, "any"))
            .unwrap();
        client.start();
        running(&client).await;
        tokio::time::timeout(LIMIT, client.join_room(room, None))
            .await
            .expect("in time")
            .expect("joined");
        (proxy, client)
    }

    async fn publish(&self, class: RoomClass, text: &str) -> Result<RoomReceipt, RoomError> {
        self.pusher
            .publish_room(RoomPublish {
                app: "demo".into(),
                room: "r1".into(),
                payload: Bytes::copy_from_slice(text.as_bytes()),
                class,
                priority: 0,
                publisher: None,
            })
            .await
    }

    /// Waits (bounded) until the room has `members` members here.
    async fn members(&self, room: &str, members: usize) {
        tokio::time::timeout(LIMIT, async {
            while self
                .pusher
                .room_stats("demo", room)
                .map_or(0, |s| s.members)
                != members
            {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{members} members of {room} in time"));
    }
}

/// Room texts until `last` arrived.
async fn texts_until(client: &PikeClient, last: &str) -> Vec<String> {
    let mut got = Vec::new();
    while got.last().is_none_or(|t| t != last) {
        match next(client).await {
            ClientEvent::RoomMessages { messages, .. } => got.extend(
                messages
                    .iter()
                    .map(|m| String::from_utf8_lossy(&m.payload).into_owned()),
            ),
            event if event.is_connectivity() => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_hears_of_the_first_and_the_last_member_only() {
    let _trace = trace_init();
    let node = node().await;
    let (_p1, one) = node.member("d1", "r1").await;
    let (p2, two) = node.member("d2", "r1").await;
    node.members("r1", 2).await;
    assert_eq!(node.bus.told(), [Told::Watch("r1".into(), true)]);

    one.leave_room("r1");
    node.members("r1", 1).await;
    assert_eq!(node.bus.told().len(), 1, "{:?}", node.bus.told());
    // The last member goes with its connection.
    drop(two);
    drop(p2);
    node.members("r1", 0).await;
    assert_eq!(
        node.bus.told(),
        [
            Told::Watch("r1".into(), true),
            Told::Watch("r1".into(), false)
        ]
    );
    tokio::time::timeout(LIMIT, one.join_room("r1", None))
        .await
        .expect("in time")
        .expect("joined again");
    assert_eq!(
        node.bus.told().last(),
        Some(&Told::Watch("r1".into(), true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_the_bus_and_a_refused_reliable_one_reaches_nobody() {
    let _trace = trace_init();
    let node = node().await;
    let (_proxy, member) = node.member("d1", "r1").await;

    assert!(matches!(
        node.publish(RoomClass::Reliable, "a").await,
        Ok(RoomReceipt::Accepted { .. })
    ));
    assert!(matches!(
        node.publish(RoomClass::Droppable, "b").await,
        Ok(RoomReceipt::Accepted { .. })
    ));
    node.bus.refuse.store(true, Ordering::Relaxed);
    let refused = node.publish(RoomClass::Reliable, "c").await;
    assert!(
        matches!(refused, Err(RoomError::Unavailable(_))),
        "{refused:?}"
    );
    // Droppable is at most once: this node's members still get it.
    assert!(matches!(
        node.publish(RoomClass::Droppable, "d").await,
        Ok(RoomReceipt::Accepted { .. })
    ));
    node.bus.refuse.store(false, Ordering::Relaxed);

    // A message of another node, handed over by the engine.
    node.sink.room(RoomBusMessage {
        app: "demo".into(),
        room: "r1".into(),
        class: RoomClass::Reliable,
        priority: 0,
        payload: Bytes::from_static(b"remote"),
    });
    // For a room this node does not have: nothing is started.
    node.sink.room(RoomBusMessage {
        app: "demo".into(),
        room: "elsewhere".into(),
        class: RoomClass::Reliable,
        priority: 0,
        payload: Bytes::from_static(b"lost"),
    });
    assert!(node.pusher.room_stats("demo", "elsewhere").is_none());

    let mut got = texts_until(&member, "remote").await;
    got.sort();
    assert_eq!(
        got,
        ["a", "b", "d", "remote"],
        "the refused one reached nobody"
    );
    assert_eq!(
        node.bus.told()[1..],
        [
            Told::Forward(RoomClass::Reliable, "a".into()),
            Told::Forward(RoomClass::Droppable, "b".into()),
            Told::Forward(RoomClass::Reliable, "c".into()),
            Told::Forward(RoomClass::Droppable, "d".into()),
        ],
        "the remote message is not forwarded again"
    );
    let stats = node.pusher.room_stats("demo", "r1").expect("room");
    assert_eq!(stats.published_reliable, 2, "a and remote");
}

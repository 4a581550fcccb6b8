//! The room endpoints of the HTTP API over real sockets: a real `Gateway`
//! on 127.0.0.1, the router served by `axum::serve`, a member joined over
//! the Pike protocol, requests with reqwest.

use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::Duration;

use pike_api::RoomClass;
use pike_api::server::{Gateway, GatewayConfig, RateLimit, RoomConfig, RoomMode};
use pike_channel::proto::tunnel::ClientHello;
use pike_channel::{ClientConfig, DriverConfig, Event, LoginParams, TunnelConnector, spawn_client};
use pike_server::apps::AppDirectory;
use pike_server::config::{App, Config};
use pike_server::http::{HttpState, router};
use serde_json::{Value, json};
use tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};

const DEMO_KEY: &str = "pk_demo_0123456789abcdef";
const OTHER_KEY: &str = "pk_other_0123456789abcdef";
const PATIENCE: Duration = Duration::from_secs(10);

struct Harness {
    base: String,
    http: reqwest::Client,
    gateway: SocketAddr,
}

fn apps() -> AppDirectory {
    let app = |id: &str, key: &str| App {
        id: id.into(),
        api_key: key.into(),
        token_secret: format!("{id}-secret-0123456789abcdef"),
        biz: Vec::new(),
        require_device_claim: false,
        allowed_origins: Vec::new(),
    };
    let config = Config {
        apps: vec![app("demo", DEMO_KEY), app("other", OTHER_KEY)],
        ..Config::default()
    };
    AppDirectory::from_config(&config, None)
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(customize: impl FnOnce(&mut GatewayConfig)) -> Self {
        static CRYPTO: Once = Once::new();
        CRYPTO.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let mut rooms = RoomConfig::default();
        rooms.mode(RoomMode::Pull).publisher_rate(None);
        // "calm:*" rooms: a tiny droppable cap and reliable store.
        let mut calm = rooms.clone();
        calm.room_rate(Some(RateLimit::new(1, 4)))
            .reliable_capacity(1);
        let mut config = GatewayConfig::default();
        config.rooms(rooms).room_config("demo", "calm:*", calm);
        customize(&mut config);
        let gateway = Gateway::builder()
            .tcp("127.0.0.1:0".parse().unwrap())
            .apps(["demo".to_owned(), "other".to_owned()])
            .config(config)
            .bind()
            .await
            .unwrap();
        let addr = gateway.local_addrs()[0].1;
        let state = HttpState::new(gateway.push_handle(), apps(), None);
        tokio::spawn(gateway.serve());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Self {
            base,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            gateway: addr,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = tokio::time::timeout(PATIENCE, request.send())
            .await
            .expect("in time")
            .expect("http");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("a body");
        let body = serde_json::from_slice(&bytes).expect("a JSON body");
        (status, body)
    }

    async fn publish(&self, room: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/v1/rooms/{room}/publish", self.base);
        self.send(
            self.http
                .post(url)
                .bearer_auth(DEMO_KEY)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(url).bearer_auth(key)).await
    }
}

fn offset(reply: &(u16, Value)) -> u64 {
    assert_eq!(reply.0, 200, "{reply:?}");
    reply.1["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no offset in {reply:?}"))
}

#[tokio::test]
async fn publish_assigns_offsets_and_a_member_receives_by_class() {
    let h = Harness::start().await;
    // A member of "lobby" over the Pike protocol.
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: "d1".into(),
        ..ClientHello::default()
    };
    let dialer = Dialer::new(
        TcpTransport::new(TcpConfig::default()).unwrap(),
        DialerConfig::default(),
    )
    .unwrap();
    let handle = spawn_client(
        Arc::new(ClientConfig::default()),
        TunnelConnector::new(dialer, vec![h.gateway], hello),
        &DriverConfig::default(),
    );
    handle.start();
    let (stream, mut events) = handle.login(LoginParams::new("live", "u1", "any"));
    handle.join_room(stream, "lobby", None).unwrap();
    let tail = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(Event::RoomJoined { tail, .. }) = events.recv().await {
                return tail;
            }
        }
    })
    .await
    .expect("joined");

    let first = offset(&h.publish("lobby", json!({"payload": "hi"})).await);
    assert_eq!(first, tail);
    let second = offset(
        &h.publish(
            "lobby",
            json!({"payload_base64": "AAEC", "class": "reliable", "priority": 2}),
        )
        .await,
    );
    assert_eq!(second, first + 1, "offsets are dense and monotonic");
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while got.len() < 2 {
            if let Some(Event::RoomMessages { messages, .. }) = events.recv().await {
                got.extend(messages);
            }
        }
    })
    .await
    .expect("both messages");
    got.sort_by_key(|m| m.offset);
    assert_eq!(
        (got[0].class(), &got[0].payload[..]),
        (RoomClass::Droppable, &b"hi"[..])
    );
    assert_eq!(
        (got[1].class(), &got[1].payload[..]),
        (RoomClass::Reliable, &[0u8, 1, 2][..])
    );
    assert_eq!(got[1].priority, 2);

    // The room's presence and counters.
    let (status, room) = h.get("/v1/rooms/lobby", DEMO_KEY).await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["members"], 1);
    assert_eq!(room["tail"], second + 1);
    assert_eq!(room["published"], json!({"droppable": 1, "reliable": 1}));
    assert_eq!(room["mode"], "pull");
    let (_, list) = h.get("/v1/rooms", DEMO_KEY).await;
    assert_eq!(list["rooms"][0]["room"], "lobby");
    // Another app sees nothing of it.
    let (status, body) = h.get("/v1/rooms/lobby", OTHER_KEY).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (_, list) = h.get("/v1/rooms", OTHER_KEY).await;
    assert_eq!(list["rooms"], json!([]));
}

#[tokio::test]
async fn shed_droppable_and_a_full_reliable_store_get_documented_answers() {
    let h = Harness::start().await;
    // Cap of 1 message/s, burst 4: priority 0 leaves the last token (a
    // quarter of the burst) to prioritized messages. Publish until shed
    // (the bucket refills slowly, so a stalled test only takes longer).
    let mut accepted = 0;
    let shed = loop {
        let reply = h.publish("calm:1", json!({"payload": "barrage"})).await;
        if reply.1.get("offset").is_none() {
            break reply;
        }
        accepted += 1;
        assert!(accepted < 20, "never shed");
    };
    assert!(accepted >= 3, "the burst minus the reserve: {accepted}");
    assert_eq!(shed.0, 200);
    assert_eq!(shed.1, json!({"dropped": true, "reason": "room_rate"}));
    // Right after priority 0 was shed the reserve is still there: priority
    // 1 gets in.
    offset(
        &h.publish("calm:1", json!({"payload": "vip", "priority": 1}))
            .await,
    );
    let mut vip = 1;
    let again = loop {
        let reply = h
            .publish("calm:1", json!({"payload": "vip", "priority": 1}))
            .await;
        if reply.1.get("offset").is_none() {
            break reply;
        }
        vip += 1;
        assert!(vip < 20, "never shed");
    };
    assert_eq!(again.1["reason"], "room_rate");
    // Reliable ignores the cap, until its store (1 message here) is full:
    // then it is refused, never dropped.
    offset(
        &h.publish("calm:1", json!({"payload": "r1", "class": "reliable"}))
            .await,
    );
    let (status, body) = h
        .publish("calm:1", json!({"payload": "r2", "class": "reliable"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("room_full"))
    );
    let (_, room) = h.get("/v1/rooms/calm:1", DEMO_KEY).await;
    assert_eq!(room["dropped_room_rate"], 2);
    assert_eq!(room["published"]["droppable"], accepted + vip);
    assert_eq!(room["refused_reliable"], 1);

    // Bad requests.
    let (status, _) = h
        .publish("calm:1", json!({"payload": "x", "class": "urgent"}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = h.publish("calm:1", json!({})).await;
    assert_eq!(status, 400);
    let long = "r".repeat(200);
    let (status, body) = h.publish(&long, json!({"payload": "x"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = h.get("/v1/rooms/nowhere", DEMO_KEY).await;
    assert_eq!(status, 404);
}

/// An app at its own room quota is told so with 429 (its own limit, not an
/// outage), and another app still opens rooms.
#[tokio::test]
async fn an_app_at_its_room_quota_gets_429_and_others_are_unaffected() {
    let h = Harness::start_with(|config| {
        config.max_rooms_per_app(2);
    })
    .await;
    for room in ["quota:1", "quota:2"] {
        let reply = h.publish(room, json!({"payload": "hi"})).await;
        assert_eq!(reply.0, 200, "{room}: {reply:?}");
    }
    let (status, body) = h.publish("quota:3", json!({"payload": "hi"})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    // A room the app already has still takes messages.
    assert_eq!(
        h.publish("quota:1", json!({"payload": "again"})).await.0,
        200
    );
    let other = h
        .send(
            h.http
                .post(format!("{}/v1/rooms/quota:9/publish", h.base))
                .bearer_auth(OTHER_KEY)
                .header("content-type", "application/json")
                .body(json!({"payload": "hi"}).to_string()),
        )
        .await;
    assert_eq!(other.0, 200, "{other:?}");
}

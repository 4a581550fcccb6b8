//! Three pike-server processes as one cluster on a real 3-node nats-server
//! JetStream cluster: a live room with members on every gateway, published
//! to through every gateway's HTTP API; and uplink from devices on every
//! gateway through one webhook backend, with a device that moves to another
//! gateway (its first one SIGKILLed) and sends the same idempotency keys
//! again.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use pike_api::RoomClass;

use crate::cluster_failover::{cluster_connector, nats};
use crate::support::*;

/// Uplink messages each device sends.
const M: usize = 20;
/// Publish rounds (one reliable message per gateway each).
const ROUNDS: usize = 10;

fn node_config(urls: &[String], node: &str, webhooks: Vec<String>) -> pike_server::config::Config {
    let chat = if webhooks.is_empty() {
        biz("chat")
    } else {
        biz_with_webhooks("chat", webhooks, 5_000)
    };
    let mut config = config(vec![app("shop", vec![chat])]);
    config.cluster.nats = urls.to_vec();
    config.cluster.node = node.into();
    config.cluster.replicas = Some(3);
    config
}

async fn three_gateways(nats: &nats::NatsCluster, webhooks: &[String]) -> Vec<Server> {
    let urls = nats.urls();
    let mut gateways = Vec::new();
    for n in 1..=3 {
        gateways
            .push(Server::start(node_config(&urls, &format!("gw{n}"), webhooks.to_vec())).await);
    }
    gateways
}

/// A started client of alias `alias` on device `device`, dialing
/// `endpoints` (the first preferred).
async fn device(
    endpoints: Vec<SocketAddr>,
    device: &str,
    alias: &str,
) -> (ChannelProxy, PikeClient) {
    let mut channel = fast_reconnect();
    channel.send_window(8).expect("window");
    let proxy = ChannelProxy::builder(cluster_connector(endpoints, device))
        .channel_config(channel)
        .build();
    let client = proxy
        .client(ClientOptions::new(
            "chat",
            alias,
            token("shop", "chat", alias),
        ))
        .expect("client");
    start(&client).await;
    (proxy, client)
}

async fn connections(gateway: &Server) -> usize {
    // The node's own TCP connections (`/v1/connections` is cluster-wide).
    let held = gateway
        .api("shop")
        .metrics()
        .await
        .value("pike_connections", &[("transport", "tcp")]);
    held as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_members_on_three_processes_gets_every_reliable_publish_once() {
    let nats = nats::NatsCluster::start().await;
    let gateways = three_gateways(&nats, &[]).await;
    let mut members = Vec::new();
    for (i, gateway) in gateways.iter().enumerate() {
        let (proxy, client) = device(
            vec![gateway.addrs().tcp],
            &format!("m{i}"),
            &format!("m{i}"),
        )
        .await;
        within("a join", client.join_room("show:1", None))
            .await
            .expect("joined");
        members.push((proxy, client));
    }
    for gateway in &gateways {
        let room = gateway.api("shop").get("/v1/rooms/show:1").await;
        assert_eq!(room.status, 200, "{:?}", room.body);
        assert_eq!(room.body["members"], 1, "per node: {:?}", room.body);
    }

    // Through every gateway's HTTP API, interleaved.
    for round in 0..ROUNDS {
        for (i, gateway) in gateways.iter().enumerate() {
            let answer = gateway
                .api("shop")
                .post(
                    "/v1/rooms/show:1/publish",
                    &serde_json::json!({"payload": format!("{i}:{round}"), "class": "reliable"}),
                )
                .await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            assert!(answer.body["offset"].is_u64(), "{:?}", answer.body);
        }
    }

    let total = ROUNDS * gateways.len();
    for (m, (_proxy, client)) in members.iter().enumerate() {
        let mut got: Vec<String> = Vec::new();
        within_for(LIMIT * 3, "every reliable room message", async {
            while got.len() < total {
                match client.next_event().await.expect("client alive") {
                    ClientEvent::RoomMessages {
                        messages, missed, ..
                    } => {
                        assert_eq!(missed, 0);
                        for message in messages {
                            assert_eq!(message.class, RoomClass::Reliable as i32);
                            got.push(String::from_utf8_lossy(&message.payload).into_owned());
                        }
                    }
                    event if event.is_connectivity() => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .await;
        let mut per_publisher: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for text in &got {
            let (gateway, round) = text.split_once(':').expect("gateway:round");
            per_publisher
                .entry(gateway.to_owned())
                .or_default()
                .push(round.parse().expect("round"));
        }
        for gateway in 0..gateways.len() {
            assert_eq!(
                per_publisher
                    .get(&gateway.to_string())
                    .cloned()
                    .unwrap_or_default(),
                (0..ROUNDS).collect::<Vec<_>>(),
                "member on gw{}: publishes through gw{} once each, in order",
                m + 1,
                gateway + 1
            );
        }
    }
    for (i, gateway) in gateways.iter().enumerate() {
        let room = gateway.api("shop").get("/v1/rooms/show:1").await;
        assert_eq!(
            room.body["published"]["reliable"],
            total,
            "gw{}: every reliable message entered its room once: {:?}",
            i + 1,
            room.body
        );
    }
    drop(members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_from_every_node_reaches_the_webhook_once_in_order_also_after_a_move() {
    let nats = nats::NatsCluster::start().await;
    let backends = Backends::start(1, std::time::Duration::from_millis(5)).await;
    let mut gateways = three_gateways(&nats, &backends.urls()).await;
    let tcp: Vec<SocketAddr> = gateways.iter().map(|g| g.addrs().tcp).collect();

    // One device per gateway; the first also lists gw2, for its move.
    let mut devices = Vec::new();
    for i in 0..3 {
        let endpoints = if i == 0 {
            vec![tcp[0], tcp[1]]
        } else {
            vec![tcp[i]]
        };
        devices.push(device(endpoints, &format!("d{i}"), &format!("u{i}")).await);
    }
    for gateway in &gateways {
        assert_eq!(connections(gateway).await, 1, "one device per gateway");
    }

    // Every device sends its stream at once (window 8).
    let mut sends = Vec::new();
    for (i, (_proxy, client)) in devices.iter().enumerate() {
        for n in 0..M {
            sends.push(client.send(format!("u{i}:{n:03}")));
        }
    }
    for send in sends {
        within("an uplink send", send).await.expect("sent");
    }

    // Fixed keys through gw1, then gw1 dies; the device lands on gw2 and
    // sends the same keys again, and one more.
    let keys: Vec<String> = (1..=5).map(|k| format!("fixed-{k}")).collect();
    let first = &devices[0].1;
    for key in &keys {
        within(
            "a keyed send",
            first.send_with_key(format!("once:{key}"), key.clone()),
        )
        .await
        .expect("sent");
    }
    gateways[0].kill();
    let gw2 = &gateways[1];
    poll_until("the device moved to gw2", || async {
        connections(gw2).await == 2
    })
    .await;
    for key in keys.iter().chain(std::iter::once(&"fixed-6".to_owned())) {
        let receipt = within(
            "a resend",
            first.send_with_key(format!("again:{key}"), key.clone()),
        )
        .await
        .expect("a resend succeeds");
        assert_eq!(&receipt.key, key);
    }

    let records = backends.records().await;
    let unique: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        unique.len(),
        records.len(),
        "a key reached the backend twice: {records:#?}"
    );
    assert_eq!(records.len(), 3 * M + 6, "{records:#?}");
    // Per device, in the order it sent.
    for i in 0..3 {
        let alias = format!("u{i}");
        let payloads: Vec<&str> = records
            .iter()
            .filter(|r| r.alias == alias && !r.key.starts_with("fixed-"))
            .map(|r| r.payload.as_str())
            .collect();
        let want: Vec<String> = (0..M).map(|n| format!("u{i}:{n:03}")).collect();
        assert_eq!(payloads, want, "{alias}: every message once, in order");
    }
    // The keys resent on gw2 reached the backend once, from gw1; the new
    // one from gw2.
    let fixed: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.key.starts_with("fixed-"))
        .map(|r| (r.key.as_str(), r.payload.as_str()))
        .collect();
    let mut want: Vec<(String, String)> = keys
        .iter()
        .map(|k| (k.clone(), format!("once:{k}")))
        .collect();
    want.push(("fixed-6".into(), "again:fixed-6".into()));
    let want: Vec<(&str, &str)> = want.iter().map(|(k, p)| (k.as_str(), p.as_str())).collect();
    assert_eq!(fixed, want);
    drop(devices);
}

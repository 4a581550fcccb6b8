//! Three pike-server processes as one cluster on a real 3-node nats-server
//! JetStream cluster (`[cluster]`), driven by 100 real SDK clients whose
//! endpoint list holds every gateway (the racing dialer prefers the first).
//! The gateway holding every device is SIGKILLed in the middle of 2,000
//! reliable pushes made through the other two: the devices reconnect to
//! the survivors and resume from their acked positions, and every accepted
//! push arrives exactly once per device, in order. Later in the same run
//! one of the three NATS servers is SIGKILLed as well.

#[path = "../../../pike-jetstream/tests/support/mod.rs"]
pub(crate) mod nats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pike_api::pike_channel::{BoxConnector, TunnelConnector};
use pike_api::tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};
use tokio::sync::Semaphore;

use pike_api::proto::tunnel::ClientHello;

use crate::support::*;

const DEVICES: usize = 100;
const PUSHES: usize = 2_000;
/// Pushes accepted before the first gateway is killed.
const BEFORE_KILL: usize = 1_000;
/// Pushes accepted before one NATS server of three is killed too.
const BEFORE_NATS_KILL: usize = 1_500;
/// Pushes in flight at once.
const IN_FLIGHT: usize = 8;

/// A connector racing `endpoints` in order (plain TCP).
pub(crate) fn cluster_connector(endpoints: Vec<SocketAddr>, device: &str) -> BoxConnector {
    crypto_init();
    let hello = ClientHello {
        app_id: "shop".into(),
        device_id: device.into(),
        ..Default::default()
    };
    let transport = TcpTransport::new(TcpConfig::default()).expect("tcp transport");
    let dialer = Dialer::new(transport, DialerConfig::default()).expect("dialer");
    BoxConnector::new(TunnelConnector::new(dialer, endpoints, hello))
}

pub(crate) fn gateway_config(urls: &[String], node: &str) -> pike_server::config::Config {
    let mut config = config(vec![app("shop", vec![biz("chat")])]);
    config.cluster.nats = urls.to_vec();
    config.cluster.node = node.into();
    config.cluster.replicas = Some(3);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_gateway_mid_pushes_loses_and_duplicates_nothing() {
    let mut nats = nats::NatsCluster::start().await;
    let urls = nats.urls();
    let mut gw1 = Server::start(gateway_config(&urls, "gw1")).await;
    let gw2 = Server::start(gateway_config(&urls, "gw2")).await;
    let gw3 = Server::start(gateway_config(&urls, "gw3")).await;
    let endpoints = vec![gw1.addrs().tcp, gw2.addrs().tcp, gw3.addrs().tcp];
    let apis = [gw2.api("shop"), gw3.api("shop")];

    // 100 devices, each alias u<i> on its own device; all on gw1 (first in
    // every endpoint list).
    let mut receivers = Vec::new();
    let mut proxies = Vec::new();
    for i in 0..DEVICES {
        let proxy = ChannelProxy::builder(cluster_connector(endpoints.clone(), &format!("d{i}")))
            .channel_config(fast_reconnect())
            .build();
        let alias = format!("u{i}");
        let client = Arc::new(
            proxy
                .client(ClientOptions::new(
                    "chat",
                    &alias,
                    token("shop", "chat", &alias),
                ))
                .expect("client"),
        );
        start(&client).await;
        receivers.push(tokio::spawn({
            let client = client.clone();
            async move {
                let mut got = Vec::new();
                loop {
                    let event = within_for(
                        Duration::from_secs(120),
                        "a device event",
                        client.next_event(),
                    )
                    .await
                    .expect("the client's task is alive");
                    match event {
                        ClientEvent::OnReceive(m) => {
                            let end = text(&m) == "end";
                            got.push((m.seq, text(&m)));
                            if end {
                                return got;
                            }
                        }
                        event if event.is_connectivity() => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        }));
        proxies.push((proxy, client));
    }
    let listed = gw1.api("shop").get("/v1/connections?limit=1000").await;
    assert_eq!(
        listed.body["connections"].as_array().map_or(0, Vec::len),
        DEVICES,
        "every device is on gw1: {listed:?}"
    );

    // 2,000 pushes through gw2 and gw3, round robin over the aliases; gw1
    // is SIGKILLed once BEFORE_KILL were accepted. Only accepted pushes
    // (HTTP 200) count.
    let accepted: Arc<std::sync::Mutex<BTreeMap<usize, Vec<String>>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::new();
    let mut killed = false;
    let run = within_for(Duration::from_secs(300), "the pushes", async {
        for k in 0..PUSHES {
            if k == BEFORE_KILL {
                // Wait for the pushes in flight, then kill.
                let _all = slots.acquire_many(IN_FLIGHT as u32).await.expect("open");
                gw1.kill();
                killed = true;
            }
            if k == BEFORE_NATS_KILL {
                // One JetStream server of three dies: the stream keeps its
                // quorum; pushes in flight may fail (503), none accepted
                // may be lost.
                let _all = slots.acquire_many(IN_FLIGHT as u32).await.expect("open");
                nats.kill(2);
            }
            let permit = slots.clone().acquire_owned().await.expect("open");
            let api = apis[k % 2].clone();
            let accepted = accepted.clone();
            tasks.push(tokio::spawn(async move {
                let alias = k % DEVICES;
                let text = format!("m{k}");
                let body = serde_json::json!({"biz": "chat", "alias": format!("u{alias}"), "payload": text});
                let answer = api.try_post("/v1/push", &body).await;
                if answer.is_ok_and(|a| a.status == 200) {
                    accepted.lock().unwrap().entry(alias).or_default().push(text);
                }
                drop(permit);
            }));
        }
        for task in tasks {
            task.await.expect("push task");
        }
    });
    run.await;
    assert!(killed);
    for i in 0..DEVICES {
        // Right after the NATS node's death the gateway's NATS client may
        // still be reconnecting: the API answers 503 `unavailable`
        // ("nothing was pushed; retry later"), and a backend retries, as
        // this one does until its own deadline.
        let body = serde_json::json!({"biz": "chat", "alias": format!("u{i}"), "payload": "end"});
        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
        let answer = loop {
            let answer = apis[i % 2].post("/v1/push", &body).await;
            if answer.status != 503 || tokio::time::Instant::now() >= give_up {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }

    let accepted = accepted.lock().unwrap().clone();
    let total: usize = accepted.values().map(Vec::len).sum();
    let mut delivered = 0;
    let mut duplicates = 0;
    let mut lost = 0;
    for (i, receiver) in receivers.into_iter().enumerate() {
        let got = within_for(Duration::from_secs(120), "a device's messages", receiver)
            .await
            .expect("receiver");
        let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
        let dense: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, dense, "device {i}: seqs dense, in order, no repeat");
        let texts: Vec<&String> = got.iter().map(|(_, t)| t).filter(|t| *t != "end").collect();
        let want = accepted.get(&i).cloned().unwrap_or_default();
        let mut sorted_got: Vec<String> = texts.iter().map(|t| (*t).clone()).collect();
        let unique: std::collections::BTreeSet<&String> = texts.iter().copied().collect();
        duplicates += texts.len() - unique.len();
        lost += want.iter().filter(|t| !unique.contains(t)).count();
        delivered += texts.len();
        sorted_got.sort();
        let mut sorted_want = want.clone();
        sorted_want.sort();
        assert_eq!(
            sorted_got, sorted_want,
            "device {i}: every accepted push once"
        );
    }
    println!(
        "cluster failover: accepted {total} of {PUSHES}, delivered {delivered}, duplicates {duplicates}, lost {lost}"
    );
    assert_eq!((duplicates, lost), (0, 0));
    assert_eq!(delivered, total);
    assert!(
        total >= BEFORE_KILL,
        "the survivors kept accepting: {total}"
    );
    drop(proxies);
    drop((gw2, gw3));
}

//! Receipts in cluster mode (`docs/receipts.md`, "Cluster mode"): two
//! pike-server processes on one real nats-server JetStream cluster. A push
//! asking for receipts goes through gateway A's HTTP API to an alias whose
//! device is connected to gateway B only: B, which never saw the push,
//! learns from the log record that the message wants receipts and reports
//! `delivered` and `acked` to the business's receipt webhook, each once;
//! `GET /v1/messages/{id}` on A shows the device acked (B's record merged
//! into A's answer), and `partial: true` once B no longer answers. A
//! transient push with receipts through A to the device on B gets one
//! `delivered` from B, and A's status shows it.

use std::collections::BTreeMap;
use std::time::Duration;

use pike_server::receipts::ReceiptKind;

use crate::cluster_failover::{cluster_connector, nats};
use crate::receipts::{counts, next_text, push_with_receipt, wait_for};
use crate::support::*;
use serde_json::json;

fn node_config(urls: &[String], node: &str, webhook: &str) -> pike_server::config::Config {
    let mut chat = biz("chat");
    chat.receipt_webhook = Some(webhook.to_owned());
    let mut config = config(vec![app("shop", vec![chat])]);
    config.receipts.max_delay_ms = 50;
    config.receipts.flush_ms = 20;
    config.cluster.nats = urls.to_vec();
    config.cluster.node = node.into();
    config.cluster.replicas = Some(3);
    config
}

/// Receipt events of `kind` a gateway counted.
async fn events(gateway: &Server, kind: &str) -> f64 {
    gateway
        .api("shop")
        .metrics()
        .await
        .value("pike_receipts_events_total", &[("event", kind)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_that_served_the_device_reports_receipts_and_the_status_merges() {
    let backend = ReceiptBackend::start(0, Duration::ZERO).await;
    let nats = nats::NatsCluster::start().await;
    let urls = nats.urls();
    let gw_a = Server::start(node_config(&urls, "gwa", &backend.url())).await;
    let mut gw_b = Server::start(node_config(&urls, "gwb", &backend.url())).await;

    // The device, on B only.
    let proxy = ChannelProxy::builder(cluster_connector(vec![gw_b.addrs().tcp], "d1"))
        .channel_config(fast_reconnect())
        .build();
    let phone = proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("shop", "chat", "u1"),
        ))
        .expect("client");
    start(&phone).await;

    // Pushed through A; delivered and acked on B.
    let api_a = gw_a.api("shop");
    let m1 = push_with_receipt(&api_a, "u1", "m1", 3_600).await;
    assert_eq!(next_text(&phone).await, "m1");
    wait_for(&backend, &m1, "d1", ReceiptKind::Acked).await;
    // A second one: once it is acked, every receipt of m1 was sent (one
    // queue per business on B, in order).
    let m2 = push_with_receipt(&api_a, "u1", "m2", 3_600).await;
    assert_eq!(next_text(&phone).await, "m2");
    wait_for(&backend, &m2, "d1", ReceiptKind::Acked).await;

    let got = counts(&backend.receipts());
    let mut want = BTreeMap::new();
    for m in [&m1, &m2] {
        for event in [ReceiptKind::Delivered, ReceiptKind::Acked] {
            want.insert((m.clone(), "d1".to_owned(), event), 1);
        }
    }
    assert_eq!(got, want, "each receipt once: {:?}", backend.receipts());
    assert!(
        backend
            .receipts()
            .iter()
            .all(|r| r.app == "shop" && r.biz == "chat" && r.alias == "u1"),
        "{:?}",
        backend.receipts()
    );
    // From B: A counted none.
    assert_eq!(events(&gw_b, "delivered").await, 2.0);
    assert_eq!(events(&gw_b, "acked").await, 2.0);
    assert_eq!(events(&gw_a, "delivered").await, 0.0);
    assert_eq!(events(&gw_a, "acked").await, 0.0);

    // The status through A (which took the push, and has no device in its
    // record) shows B's: the device acked; both nodes answered.
    let status = api_a.get(&format!("/v1/messages/{m1}")).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["partial"], false, "{status:?}");
    assert_eq!(status.body["pending"], 0, "{status:?}");
    assert_eq!(status.body["stored"], true, "{status:?}");
    let devices = status.body["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{status:?}");
    assert_eq!(devices[0]["device"], "d1", "{status:?}");
    assert_eq!(devices[0]["alias"], "u1", "{status:?}");
    assert!(
        devices[0]["delivered_at"].is_u64() && devices[0]["acked_at"].is_u64(),
        "{status:?}"
    );
    // And through B, the same merged view.
    let through_b = gw_b.api("shop").get(&format!("/v1/messages/{m1}")).await;
    assert_eq!(
        through_b.body["devices"], status.body["devices"],
        "{through_b:?}"
    );
    // A message nobody has is still 404.
    let unknown = api_a.get("/v1/messages/123456789").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    // B dies (its lease lives on for seconds): A answers from its own
    // record, which knows no device, and says the view is partial.
    gw_b.kill();
    let alone = api_a.get(&format!("/v1/messages/{m1}")).await;
    assert_eq!(alone.status, 200, "{alone:?}");
    assert_eq!(alone.body["partial"], true, "{alone:?}");
    assert_eq!(alone.body["devices"], serde_json::json!([]), "{alone:?}");
}

/// A started client of device `d1`, alias `u1`, on `gateway` only.
async fn phone_on(gateway: &Server) -> (ChannelProxy, PikeClient) {
    let proxy = ChannelProxy::builder(cluster_connector(vec![gateway.addrs().tcp], "d1"))
        .channel_config(fast_reconnect())
        .build();
    let phone = proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("shop", "chat", "u1"),
        ))
        .expect("client");
    start(&phone).await;
    (proxy, phone)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_moved_and_acked_elsewhere_gets_no_expired_notice() {
    let backend = ReceiptBackend::start(0, Duration::ZERO).await;
    let nats = nats::NatsCluster::start().await;
    let urls = nats.urls();
    let gw_a = Server::start(node_config(&urls, "gwa", &backend.url())).await;
    let gw_b = Server::start(node_config(&urls, "gwb", &backend.url())).await;
    let api_a = gw_a.api("shop");

    // On A first: m1 makes A watch the alias and know the device.
    let (first_proxy, first) = phone_on(&gw_a).await;
    let m1 = push_with_receipt(&api_a, "u1", "m1", 3_600).await;
    assert_eq!(next_text(&first).await, "m1");
    wait_for(&backend, &m1, "d1", ReceiptKind::Acked).await;
    drop(first);
    drop(first_proxy);

    // Moved to B: m2 (through A, short-lived) is delivered and acked on B.
    // A's record of m2 knows the device (from its login on A), unacked.
    // The life is short but not too short: the delivery on B, the ack and
    // its stored position must all come before A's expiry notice, also on
    // a loaded CI machine (2 s was seen to fail once under the full suite).
    let (_proxy, phone) = phone_on(&gw_b).await;
    let m2 = push_with_receipt(&api_a, "u1", "m2", 6).await;
    assert_eq!(next_text(&phone).await, "m2");
    wait_for(&backend, &m2, "d1", ReceiptKind::Acked).await;

    // m2 expires: A reads the device's stored position before its notice
    // and reports `acked` (again, from A), not `expired`.
    let key = |event| (m2.clone(), "d1".to_owned(), event);
    poll_until("A's expiry notice of m2", || async {
        let c = counts(&backend.receipts());
        c.contains_key(&key(ReceiptKind::Expired)) || c.get(&key(ReceiptKind::Acked)) == Some(&2)
    })
    .await;
    assert_eq!(
        events(&gw_a, "acked").await,
        2.0,
        "m1 on A, then m2 at expiry"
    );
    assert_eq!(events(&gw_a, "expired").await, 0.0);
    let got = counts(&backend.receipts());
    let of_m2 = |event| got.get(&key(event)).copied();
    assert_eq!(
        of_m2(ReceiptKind::Expired),
        None,
        "{:?}",
        backend.receipts()
    );
    assert_eq!(
        of_m2(ReceiptKind::Acked),
        Some(2),
        "{:?}",
        backend.receipts()
    );
    assert_eq!(
        of_m2(ReceiptKind::Delivered),
        Some(1),
        "{:?}",
        backend.receipts()
    );
    let status = api_a.get(&format!("/v1/messages/{m2}")).await;
    assert_eq!(status.body["pending"], 0, "{status:?}");
    assert_eq!(status.body["expired"], true, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_push_through_a_is_reported_delivered_by_b_and_shown_by_a() {
    let backend = ReceiptBackend::start(0, Duration::ZERO).await;
    let nats = nats::NatsCluster::start().await;
    let urls = nats.urls();
    let gw_a = Server::start(node_config(&urls, "gwa", &backend.url())).await;
    let gw_b = Server::start(node_config(&urls, "gwb", &backend.url())).await;
    let api_a = gw_a.api("shop");
    let (_proxy, phone) = phone_on(&gw_b).await;
    let transient = |payload: &str, receipt: bool| {
        json!({"biz": "chat", "alias": "u1", "payload": payload,
               "reliable": false, "receipt": receipt})
    };

    // Transient is at most once and B's live interest takes a moment to
    // reach A's NATS server: probes without receipts are pushed through A
    // until one reaches the device on B (bounded). From then on A's pushes
    // to the alias reach B.
    within(
        "a transient probe through A reaches the device on B",
        async {
            loop {
                api_a.push(transient("probe", false)).await;
                let wait = tokio::time::timeout(Duration::from_millis(200), async {
                    loop {
                        if let Some(ClientEvent::OnReceive(message)) = phone.next_event().await {
                            return message;
                        }
                    }
                });
                if wait.await.is_ok() {
                    return;
                }
            }
        },
    )
    .await;

    // The push with receipts (probes still in flight are skipped).
    let answer = api_a.push(transient("with receipt", true)).await;
    let id = answer["message_id"]
        .as_str()
        .expect("a message id")
        .to_owned();
    let got = loop {
        match next(&phone).await {
            ClientEvent::OnReceive(message) if text(&message) == "with receipt" => break message,
            _ => {}
        }
    };
    assert!(got.is_transient(), "{got:?}");
    assert_eq!(got.message_id.to_string(), id);
    wait_for(&backend, &id, "d1", ReceiptKind::Delivered).await;

    // A reliable marker with receipts, delivered and acked on B: once it
    // is acked every earlier receipt of B was sent (one queue per business,
    // in order). Exactly one `delivered` for the transient message, none
    // for the probes, and the marker's two.
    let marker = push_with_receipt(&api_a, "u1", "marker", 3_600).await;
    loop {
        match next(&phone).await {
            ClientEvent::OnReceive(message) if text(&message) == "marker" => break,
            _ => {}
        }
    }
    wait_for(&backend, &marker, "d1", ReceiptKind::Acked).await;
    let mut want = BTreeMap::new();
    want.insert((id.clone(), "d1".to_owned(), ReceiptKind::Delivered), 1);
    for event in [ReceiptKind::Delivered, ReceiptKind::Acked] {
        want.insert((marker.clone(), "d1".to_owned(), event), 1);
    }
    assert_eq!(
        counts(&backend.receipts()),
        want,
        "{:?}",
        backend.receipts()
    );
    // From B: A served no device.
    assert_eq!(events(&gw_b, "delivered").await, 2.0);
    assert_eq!(events(&gw_a, "delivered").await, 0.0);
    assert_eq!(events(&gw_b, "dropped").await, 0.0);

    // A took the push and has no device in its record; its status query
    // merges B's record: the device got it.
    let status = api_a.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["partial"], false, "{status:?}");
    assert_eq!(status.body["reliable"], false, "{status:?}");
    assert_eq!(status.body["pending"], 0, "{status:?}");
    let devices = status.body["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{status:?}");
    assert_eq!(devices[0]["device"], "d1", "{status:?}");
    assert_eq!(devices[0]["alias"], "u1", "{status:?}");
    assert!(devices[0]["delivered_at"].is_u64(), "{status:?}");
    assert!(devices[0]["dropped_at"].is_null(), "{status:?}");

    // The two nodes' transient ids differ in their node part (bits 42..62).
    let through_b = gw_b.api("shop").push(transient("from B", false)).await;
    let ids: Vec<u64> = [&answer, &through_b]
        .iter()
        .map(|a| {
            a["message_id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .expect("a decimal id")
        })
        .collect();
    assert!(ids.iter().all(|id| id >> 62 == 1), "{ids:?}");
    assert_ne!(ids[0] >> 42, ids[1] >> 42, "{ids:?}");
}

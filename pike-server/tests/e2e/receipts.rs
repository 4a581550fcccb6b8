//! Delivery receipts (`docs/receipts.md`): a push with `receipt: true`
//! produces `delivered` and `acked` for each device once, across a device
//! reconnect and a gateway restart; an unacked message expires with an
//! `expired` notice; `GET /v1/messages/{id}` shows the status; a failing,
//! slow receipt webhook gets batches again until it takes them.

use std::collections::BTreeMap;
use std::time::Duration;

use pike_server::config::Config;
use pike_server::receipts::{ReceiptEvent, ReceiptKind};
use serde_json::json;

use crate::support::*;

fn receipts_config(webhook: &str) -> Config {
    let mut chat = biz("chat");
    chat.receipt_webhook = Some(webhook.to_owned());
    let mut config = config(vec![app("shop", vec![chat])]);
    config.receipts.max_delay_ms = 50;
    config.receipts.flush_ms = 20;
    config
}

/// Pushes `payload` to `alias` asking for receipts; the message id.
pub(crate) async fn push_with_receipt(
    api: &Api,
    alias: &str,
    payload: &str,
    ttl_secs: u64,
) -> String {
    let answer = api
        .push(json!({"biz": "chat", "alias": alias, "payload": payload,
                     "ttl_secs": ttl_secs, "receipt": true}))
        .await;
    answer["message_id"]
        .as_str()
        .expect("a message id")
        .to_owned()
}

/// The next message's text; a gap is skipped (a new client starts from
/// position 0, the gateway from the device's stored position).
pub(crate) async fn next_text(client: &PikeClient) -> String {
    loop {
        match next(client).await {
            ClientEvent::OnReceive(message) => return text(&message),
            ClientEvent::Gap { .. } | ClientEvent::OnSendSuccess { .. } => {}
            event if event.is_connectivity() => {}
            other => panic!("unexpected event {other:?} while waiting for a message"),
        }
    }
}

/// How many times each (message, device, event) was reported.
pub(crate) fn counts(receipts: &[ReceiptEvent]) -> BTreeMap<(String, String, ReceiptKind), usize> {
    let mut out = BTreeMap::new();
    for r in receipts {
        *out.entry((r.message_id.clone(), r.device.clone(), r.event))
            .or_insert(0) += 1;
    }
    out
}

/// Waits until the backend has `event` of `message` for `device`.
pub(crate) async fn wait_for(
    backend: &ReceiptBackend,
    message: &str,
    device: &str,
    event: ReceiptKind,
) {
    poll_until(&format!("{event:?} of {message} for {device}"), || async {
        backend
            .receipts()
            .iter()
            .any(|r| r.message_id == message && r.device == device && r.event == event)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_come_once_per_device_across_a_reconnect_and_a_restart() {
    let backend = ReceiptBackend::start(0, Duration::ZERO).await;
    let mut server = Server::start(receipts_config(&backend.url())).await;
    let api = server.api("shop");
    let credential = token("shop", "chat", "u1");

    // Online: m1 is delivered and acked.
    let proxy = server.proxy(Wire::Tcp, "shop", "phone");
    let phone = proxy
        .client(ClientOptions::new("chat", "u1", &credential))
        .expect("client");
    start(&phone).await;
    let m1 = push_with_receipt(&api, "u1", "m1", 3_600).await;
    assert_eq!(next_text(&phone).await, "m1");
    wait_for(&backend, &m1, "phone", ReceiptKind::Acked).await;
    let status = api.get(&format!("/v1/messages/{m1}")).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["pending"], 0, "{status:?}");
    assert_eq!(status.body["stored"], true, "{status:?}");
    let device = &status.body["devices"][0];
    assert_eq!(device["device"], "phone", "{status:?}");
    assert!(
        device["delivered_at"].is_u64() && device["acked_at"].is_u64(),
        "{status:?}"
    );

    // Offline: m2 waits; the phone is known to the alias, so it is pending.
    drop(phone);
    drop(proxy);
    let m2 = push_with_receipt(&api, "u1", "m2", 3_600).await;
    poll_until("m2 pending for the phone", || async {
        api.get(&format!("/v1/messages/{m2}")).await.body["pending"] == 1
    })
    .await;

    // A graceful restart keeps the status table; m3 comes after it.
    server.terminate();
    server.wait_exit(Duration::from_secs(10)).await;
    server.restart().await;
    let api = server.api("shop");
    let m3 = push_with_receipt(&api, "u1", "m3", 3_600).await;

    // The phone comes back: m2 and m3, each reported once.
    let proxy = server.proxy(Wire::Tls, "shop", "phone");
    let phone = proxy
        .client(ClientOptions::new("chat", "u1", &credential))
        .expect("client");
    start(&phone).await;
    assert_eq!(next_text(&phone).await, "m2");
    assert_eq!(next_text(&phone).await, "m3");
    // A last message: once it is acked, everything before it was sent
    // (one queue, in order).
    let m4 = push_with_receipt(&api, "u1", "m4", 3_600).await;
    assert_eq!(next_text(&phone).await, "m4");
    wait_for(&backend, &m4, "phone", ReceiptKind::Acked).await;

    let got = counts(&backend.receipts());
    let mut want = BTreeMap::new();
    for m in [&m1, &m2, &m3, &m4] {
        for event in [ReceiptKind::Delivered, ReceiptKind::Acked] {
            want.insert((m.clone(), "phone".to_owned(), event), 1);
        }
    }
    assert_eq!(got, want, "each receipt once: {:?}", backend.receipts());
    let r = backend.receipts();
    assert!(
        r.iter()
            .all(|r| r.app == "shop" && r.biz == "chat" && r.alias == "u1"),
        "{r:?}"
    );
    // Another app's key does not see the status.
    let unknown = api.get("/v1/messages/123456789").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_message_expires_with_a_notice() {
    let backend = ReceiptBackend::start(0, Duration::ZERO).await;
    let server = Server::start(receipts_config(&backend.url())).await;
    let api = server.api("shop");
    let credential = token("shop", "chat", "u2");

    // The phone acks m0, so it is known to the alias; then it goes away.
    let proxy = server.proxy(Wire::Tcp, "shop", "phone");
    let phone = proxy
        .client(ClientOptions::new("chat", "u2", &credential))
        .expect("client");
    start(&phone).await;
    let m0 = push_with_receipt(&api, "u2", "m0", 3_600).await;
    assert_eq!(next_text(&phone).await, "m0");
    wait_for(&backend, &m0, "phone", ReceiptKind::Acked).await;
    drop(phone);
    drop(proxy);

    // m1 lives one second and is never acked.
    let m1 = push_with_receipt(&api, "u2", "m1", 1).await;
    wait_for(&backend, &m1, "phone", ReceiptKind::Expired).await;
    let status = api.get(&format!("/v1/messages/{m1}")).await;
    assert_eq!(status.body["expired"], true, "{status:?}");
    assert_eq!(status.body["stored"], false, "{status:?}");
    assert_eq!(status.body["pending"], 0, "{status:?}");
    assert!(
        status.body["devices"][0]["expired_at"].is_u64(),
        "{status:?}"
    );
    let got = counts(&backend.receipts());
    assert_eq!(
        got.get(&(m1.clone(), "phone".to_owned(), ReceiptKind::Expired)),
        Some(&1)
    );
    assert!(
        !got.contains_key(&(m0.clone(), "phone".to_owned(), ReceiptKind::Expired)),
        "an acked message has no expiry notice: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_slow_receipt_webhook_gets_batches_again() {
    // The first two requests fail (503), each answer takes 300 ms.
    let backend = ReceiptBackend::start(2, Duration::from_millis(300)).await;
    let server = Server::start(receipts_config(&backend.url())).await;
    let api = server.api("shop");
    let credential = token("shop", "chat", "u3");
    let proxy = server.proxy(Wire::Tcp, "shop", "phone");
    let phone = proxy
        .client(ClientOptions::new("chat", "u3", &credential))
        .expect("client");
    start(&phone).await;

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(push_with_receipt(&api, "u3", &format!("m{i}"), 3_600).await);
    }
    for i in 0..5 {
        assert_eq!(next_text(&phone).await, format!("m{i}"));
    }
    for id in &ids {
        wait_for(&backend, id, "phone", ReceiptKind::Acked).await;
    }
    let got = counts(&backend.receipts());
    assert_eq!(got.len(), 10, "delivered and acked of 5 messages: {got:?}");
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert!(backend.requests() >= 3, "two failures, then success");
    let batches = backend.batches();
    assert!(
        batches.len() < 10 && batches.iter().any(|b| b.len() > 1),
        "receipts are batched: {batches:?}"
    );
    let metrics = api.metrics().await;
    assert!(
        metrics.value("pike_receipts_requests_total", &[("result", "failed")]) >= 2.0,
        "failures counted"
    );
    assert!(metrics.value("pike_receipts_sent_total", &[]) >= 10.0);
}

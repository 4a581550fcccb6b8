//! `/metrics` moves with a real session: connections, logins, downlink sent
//! and acked, uplink acked.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_session() {
    let backends = Backends::start(1, Duration::ZERO).await;
    let server = Server::start(config(vec![app(
        "shop",
        vec![biz_with_webhooks("chat", backends.urls(), 2_000)],
    )]))
    .await;
    let api = server.api("shop");
    let before = api.metrics().await;

    let proxy = server.proxy(Wire::Tcp, "shop", "phone");
    let client = proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("shop", "chat", "u1"),
        ))
        .expect("client");
    start(&client).await;
    for i in 1..=3 {
        api.push_alias("chat", "u1", &format!("m{i}")).await;
    }
    for i in 1..=3 {
        let m = next_message(&client).await;
        assert_eq!(m.seq, i);
    }
    for i in 1..=2 {
        within("uplink", client.send(format!("up{i}")))
            .await
            .expect("uplink accepted");
    }
    // Acks are coalesced by the client: wait for the counter.
    let acked_before = before.value("pike_downlink_acked_total", &[]);
    let api_ref = &api;
    poll_until("three acked downlink messages", || async move {
        api_ref
            .metrics()
            .await
            .value("pike_downlink_acked_total", &[])
            >= acked_before + 3.0
    })
    .await;
    let after = api.metrics().await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(
        delta("pike_connections_total", &[("transport", "tcp")]),
        1.0
    );
    assert_eq!(
        after.value("pike_connections", &[("transport", "tcp")]),
        1.0
    );
    assert_eq!(delta("pike_logins_total", &[("result", "ok")]), 1.0);
    assert_eq!(
        delta("pike_downlink_sent_total", &[("kind", "reliable")]),
        3.0
    );
    assert_eq!(delta("pike_downlink_acked_total", &[]), 3.0);
    assert_eq!(delta("pike_uplink_received_total", &[]), 2.0);
    assert_eq!(delta("pike_uplink_acked_total", &[("result", "ok")]), 2.0);
    assert_eq!(
        delta("pike_uplink_acked_total", &[("result", "failed")]),
        0.0
    );
    assert_eq!(
        delta(
            "pike_http_requests_total",
            &[("route", "/v1/push"), ("status", "200")]
        ),
        3.0
    );
}

//! `/metrics` moves with a real session: connections, logins, downlink sent
//! and acked, uplink acked. Every listed family (with its help text) is
//! exported from the start at zero, and traffic exports no family that is
//! not listed (`pike_server::metric_families::all`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pike_server::metric_families;
use serde_json::json;

use crate::support::*;

/// A scrape's families: name -> (`# TYPE` kind, `# HELP` text).
fn families(text: &str) -> BTreeMap<String, (String, String)> {
    let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            families.entry(name.to_owned()).or_default().0 = kind.to_owned();
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            families.entry(name.to_owned()).or_default().1 = help.to_owned();
        }
    }
    families
}

/// `GET /metrics` as text.
async fn scrape(server: &Server) -> String {
    // reqwest needs the process-wide rustls provider, which nothing else
    // installs when this is the first test of the process to run.
    crypto_init();
    let url = format!("http://{}/metrics", server.addrs().http);
    let response = within("GET /metrics", reqwest::get(url))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.expect("metrics text")
}

/// Every listed family, with its kind and help (webhook families need a
/// biz with webhooks: the config has one).
fn listed() -> BTreeMap<String, (String, String)> {
    metric_families::all()
        .map(|f| {
            (
                f.name.to_owned(),
                (f.kind.as_str().to_owned(), f.help.to_owned()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_exported_at_zero_before_any_traffic() {
    let backends = Backends::start(1, Duration::ZERO).await;
    let server = Server::start(config(vec![app(
        "shop",
        vec![biz_with_webhooks("chat", backends.urls(), 2_000)],
    )]))
    .await;
    let text = scrape(&server).await;

    assert_eq!(families(&text), listed(), "{text}");
    // Zero values, not only names: nothing happened yet (the start-up
    // probe of the test harness aside, which is an HTTP request).
    let samples = Metrics::parse(&text);
    for family in metric_families::all() {
        if family.name.starts_with("pike_http_") {
            continue;
        }
        if family.name == metric_families::RUNTIME_ALIVE_TASKS {
            // Read at the scrape: the runtime's own tasks are alive.
            assert!(samples.value(family.name, &[]) > 0.0, "{text}");
            continue;
        }
        assert_eq!(samples.value(family.name, &[]), 0.0, "{}", family.name);
    }
    // The known label values are there at zero, before their first event.
    for (name, labels) in [
        ("pike_connections", [("transport", "quic")]),
        ("pike_logins_total", [("result", "refused")]),
        ("pike_uplink_acked_total", [("result", "failed")]),
        ("pike_room_pulls_total", [("result", "not_joined")]),
        ("pike_webhook_failures_total", [("biz", "chat")]),
        ("pike_http_refused_total", [("reason", "timeout")]),
    ] {
        let line = format!("{name}{{{}=\"{}\"}} 0", labels[0].0, labels[0].1);
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    for histogram in ["pike_downlink_ack_seconds", "pike_uplink_ack_seconds"] {
        let line = format!("{histogram}_bucket{{le=\"+Inf\"}} 0");
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_exports_no_family_that_is_not_listed() {
    let backends = Backends::start(1, Duration::ZERO).await;
    let server = Server::start(config(vec![app(
        "shop",
        vec![biz_with_webhooks("chat", backends.urls(), 2_000)],
    )]))
    .await;
    let api = server.api("shop");

    // A session over each transport: login, reliable and transient
    // downlink, uplink; a refused login; HTTP errors.
    let mut clients = Vec::new();
    for (wire, device) in [(Wire::Tcp, "a"), (Wire::Tls, "b"), (Wire::Quic, "c")] {
        let proxy = server.proxy(wire, "shop", device);
        let client = proxy
            .client(ClientOptions::new(
                "chat",
                "u1",
                token("shop", "chat", "u1"),
            ))
            .expect("client");
        start(&client).await;
        clients.push((proxy, client));
    }
    let refused = server.proxy(Wire::Tcp, "shop", "d");
    let bad = refused
        .client(ClientOptions::new("chat", "u1", "not-a-token"))
        .expect("client");
    bad.start();
    api.push_alias("chat", "u1", "m1").await;
    api.push(json!({"biz": "chat", "alias": "u1", "payload": "blink", "reliable": false}))
        .await;
    for (_, client) in &clients {
        next_message(client).await;
        next_message(client).await;
        within("uplink", client.send("up"))
            .await
            .expect("uplink accepted");
    }
    api.post("/v1/rooms/lobby/publish", &json!({"payload": "x"}))
        .await;
    api.get("/v1/nothing-here").await;
    let api_ref = &api;
    poll_until("the refused login and three acks counted", || async move {
        let m = api_ref.metrics().await;
        m.value("pike_logins_total", &[("result", "refused")]) >= 1.0
            && m.value("pike_downlink_acked_total", &[]) >= 3.0
    })
    .await;

    let text = scrape(&server).await;
    let exported = families(&text);
    let listed = listed();
    let unlisted: BTreeSet<&String> = exported
        .keys()
        .filter(|name| !listed.contains_key(*name))
        .collect();
    assert!(
        unlisted.is_empty(),
        "exported but not in metric_families: {unlisted:?}"
    );
    assert_eq!(exported, listed, "{text}");
    let samples = Metrics::parse(&text);
    assert_eq!(
        samples.value("pike_uplink_acked_total", &[("result", "ok")]),
        3.0
    );
    assert!(samples.value("pike_downlink_ack_seconds_count", &[]) >= 3.0);
    assert!(samples.value("pike_channel_ready_seconds_count", &[]) >= 3.0);
}

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
    // The SDK's generated keys go out as first attempts: no dedup lookup.
    assert_eq!(delta("pike_uplink_first_attempts_total", &[]), 2.0);
    assert_eq!(delta("pike_uplink_duplicates_total", &[]), 0.0);
    assert_eq!(
        delta(
            "pike_http_requests_total",
            &[("route", "/v1/push"), ("status", "200")]
        ),
        3.0
    );
}

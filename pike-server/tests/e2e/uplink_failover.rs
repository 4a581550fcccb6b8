//! Uplink through a slow webhook with two backend instances, one killed in
//! the middle of the stream: every message reaches the backends exactly
//! once, in the client's order, every send succeeds, and the client moves
//! to the other backend's route id.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::*;

const M: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dies_mid_stream_and_uplink_stays_ordered_and_exactly_once() {
    let mut backends = Backends::start(2, Duration::from_millis(20)).await;
    let server = Server::start(config(vec![app(
        "shop",
        vec![biz_with_webhooks("chat", backends.urls(), 2_000)],
    )]))
    .await;
    let api = server.api("shop");
    let mut channel = fast_reconnect();
    channel.send_window(8).expect("window");
    let proxy = server.proxy_with(Wire::Tcp, "shop", "phone", channel);
    let client = proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("shop", "chat", "u1"),
        ))
        .expect("client");
    let started = start(&client).await;
    let first_route = started.route_id.clone();
    assert!(
        first_route == "r0" || first_route == "r1",
        "a route id per webhook: {first_route:?}"
    );
    assert_eq!(client.session().route_id, first_route);
    let victim: usize = first_route[1..].parse().expect("route index");
    let survivor = 1 - victim;

    // The whole stream at once: the client keeps 8 in flight, the gateway
    // delivers one at a time.
    let sends: Vec<Sending> = (1..=M).map(|i| client.send(format!("{i:03}"))).collect();
    let keys: Vec<String> = sends.iter().map(|s| s.key().to_owned()).collect();

    // Kill the backend in use once it has taken a third of the stream.
    backends.wait_for(M / 3, LIMIT).await;
    backends.kill(victim).await;

    for (i, send) in sends.into_iter().enumerate() {
        let receipt = within("a send outcome", send)
            .await
            .unwrap_or_else(|e| panic!("send {} failed: {e}", i + 1));
        assert_eq!(receipt.key, keys[i]);
    }
    // The same outcomes as events: M successes, no failure.
    let mut succeeded = HashSet::new();
    while succeeded.len() < M {
        match next(&client).await {
            ClientEvent::OnSendSuccess { key, .. } => {
                assert!(succeeded.insert(key.clone()), "{key} acked twice");
            }
            ClientEvent::OnSendFailure { key, error, .. } => panic!("{key} failed: {error}"),
            event if event.is_connectivity() => panic!("the channel should not drop: {event:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(succeeded, keys.iter().cloned().collect::<HashSet<_>>());

    let records = backends.records().await;
    // Exactly once: every key once across both backends, nothing else.
    let delivered: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        delivered.iter().copied().collect::<HashSet<_>>().len(),
        records.len(),
        "a key reached the backends twice: {records:#?}"
    );
    assert_eq!(records.len(), M, "{records:#?}");
    assert_eq!(
        delivered.iter().copied().collect::<HashSet<_>>(),
        keys.iter().map(String::as_str).collect::<HashSet<_>>()
    );
    // In order across both backends: payloads and per-login sequence
    // numbers strictly increase in the order the backends took them.
    let payloads: Vec<String> = records.iter().map(|r| r.payload.clone()).collect();
    let want: Vec<String> = (1..=M).map(|i| format!("{i:03}")).collect();
    assert_eq!(payloads, want, "order across the failover");
    assert!(
        records.windows(2).all(|w| w[0].seq < w[1].seq),
        "Pike-Seq increases: {records:#?}"
    );
    // The victim took the first part, the survivor the rest, each under
    // its own route id; all from the one login.
    let switch = records
        .iter()
        .position(|r| r.backend == survivor)
        .expect("the survivor took over");
    assert!(switch >= M / 3, "{records:#?}");
    for (i, r) in records.iter().enumerate() {
        let backend = if i < switch { victim } else { survivor };
        assert_eq!(r.backend, backend, "record {i}: {r:?}");
        assert_eq!(r.route, format!("r{backend}"), "record {i}: {r:?}");
        assert_eq!(
            (r.alias.as_str(), r.connection.as_str(), r.path.as_str()),
            ("u1", started.connection_token(), "/pike/uplink")
        );
    }

    // The client had several messages in flight (window 8), the gateway
    // delivered them one at a time.
    let trace = api.trace(started.connection_token()).await.expect("trace");
    let first_ack = trace
        .iter()
        .position(|(s, _)| s == "uplink-ack")
        .expect("an uplink ack");
    let received_before = trace[..first_ack]
        .iter()
        .filter(|(s, _)| s == "uplink")
        .count();
    assert!(received_before > 1, "a window > 1 in flight: {trace:#?}");
    assert_eq!(backends.max_in_flight(), 1, "serial delivery");

    // The route id changed, for the client and for the gateway.
    let new_route = format!("r{survivor}");
    assert_eq!(
        client.session().route_id,
        new_route,
        "the client keeps the new route"
    );
    let presence = api.get("/v1/presence?biz=chat&alias=u1").await;
    assert_eq!(
        presence.body["connections"][0]["logins"][0]["route_id"],
        new_route.as_str(),
        "{presence:?}"
    );
}

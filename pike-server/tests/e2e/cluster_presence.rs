//! Presence across three pike-server processes on a real 3-node
//! nats-server JetStream cluster: a device logging in on a second gateway
//! replaces its connection on the first (`REPLACED`, no reconnect), the
//! cluster-wide presence answered through the third, pushes reach the newer
//! connection only; `/healthz` answers 503 with the reason while every NATS
//! server is gone and 200 once they are back.

use std::time::Duration;

use pike_api::proto::tunnel::ErrorCode;

use crate::cluster_failover::nats::NatsCluster;
use crate::cluster_failover::{cluster_connector, gateway_config};
use crate::support::*;

/// A client of device `d1` logged in to `chat` as `u1` through `endpoint`.
fn device(endpoint: std::net::SocketAddr) -> (ChannelProxy, PikeClient) {
    let proxy = ChannelProxy::builder(cluster_connector(vec![endpoint], "d1"))
        .channel_config(fast_reconnect())
        .build();
    let client = proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("shop", "chat", "u1"),
        ))
        .expect("client");
    (proxy, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_views_and_health_through_real_gateways() {
    let mut nats = NatsCluster::start().await;
    let urls = nats.urls();
    let gw1 = Server::start(gateway_config(&urls, "gw1")).await;
    let gw2 = Server::start(gateway_config(&urls, "gw2")).await;
    let gw3 = Server::start(gateway_config(&urls, "gw3")).await;

    let (_first_proxy, first) = device(gw1.addrs().tcp);
    start(&first).await;
    gw3.api("shop").push_alias("chat", "u1", "m1").await;
    assert_eq!(text(&within("m1", next_message(&first)).await), "m1");

    // The same device on gw2: gw1's connection is replaced.
    let (_second_proxy, second) = device(gw2.addrs().tcp);
    let newer = start(&second).await;
    let (stop, _) = until(&first, |e| matches!(e, ClientEvent::OnStop { .. })).await;
    assert!(
        matches!(
            &stop,
            ClientEvent::OnStop {
                reason: StopReason::AuthFailed {
                    code: ErrorCode::Replaced,
                    ..
                }
            }
        ),
        "{stop:?}"
    );

    // gw1 closed it on gw2's replace order, and counted it.
    let replaced = gw1
        .api("shop")
        .metrics()
        .await
        .value("pike_replaced_total", &[]);
    assert_eq!(replaced, 1.0);

    // Through the third gateway: one connection, the newer one, every node
    // answering.
    let api = gw3.api("shop");
    poll_until("cluster-wide presence", || async {
        let body = api.get("/v1/presence?biz=chat&alias=u1").await.body;
        let tokens: Vec<&str> = body["connections"]
            .as_array()
            .map(|list| list.iter().filter_map(|c| c["token"].as_str()).collect())
            .unwrap_or_default();
        body["nodes_answered"] == 3
            && body["nodes_expected"] == 3
            && tokens == [newer.connection_token()]
    })
    .await;
    let listed = api.get("/v1/connections").await.body;
    assert_eq!(listed["total"], 1, "{listed}");
    let trace = api
        .trace(newer.connection_token())
        .await
        .expect("the trace of a connection on gw2, through gw3");
    assert!(
        trace.iter().any(|(signal, _)| signal == "hello"),
        "{trace:?}"
    );

    // Pushes through gw1 reach the device on gw2.
    gw1.api("shop").push_alias("chat", "u1", "m2").await;
    let mut got = Vec::new();
    while got.last().is_none_or(|t| t != "m2") {
        got.push(text(&within("m2", next_message(&second)).await));
    }
    assert!(
        got.len() <= 2,
        "at most m1 again (acked on gw1 late): {got:?}"
    );
    assert_eq!(first.state(), ClientState::Stopped);

    // Every NATS server gone: /healthz says so, with the reason; back: 200.
    let health = gw1.api("shop");
    for i in 0..3 {
        nats.kill(i);
    }
    poll_until("healthz 503", || async {
        let answer = health.get("/healthz").await;
        answer.status == 503
            && answer.body["status"] == "unavailable"
            && answer.body["reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
    })
    .await;
    nats.restart_together(&[0, 1, 2]).await;
    within_for(Duration::from_secs(60), "healthz 200 again", async {
        loop {
            let answer = health.get("/healthz").await;
            if answer.status == 200 && answer.body["status"] == "ok" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

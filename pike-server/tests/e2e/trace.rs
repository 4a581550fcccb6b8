//! The connection trace of a real session shows its signals in order:
//! hello, auth, alias bind, downlink, ack, uplink, uplink ack, and the close
//! with its reason once the client stops (logout, then a close by the
//! peer).

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_shows_a_real_session_in_order() {
    let backends = Backends::start(1, Duration::ZERO).await;
    let server = Server::start(config(vec![app(
        "shop",
        vec![biz_with_webhooks("chat", backends.urls(), 2_000)],
    )]))
    .await;
    let api = server.api("shop");
    let proxy = server.proxy(Wire::Tcp, "shop", "dev-trace");
    let client = proxy
        .client(ClientOptions::new(
            "chat",
            "u9",
            token("shop", "chat", "u9"),
        ))
        .expect("client");
    let started = start(&client).await;
    let connection = started.connection_token().to_owned();
    let has = |signal: &'static str| {
        let (api, connection) = (&api, connection.as_str());
        move || async move {
            let trace = api.trace(connection).await.expect("trace");
            trace.iter().any(|(s, _)| s == signal)
        }
    };

    let receipt = api.push_alias("chat", "u9", "down").await;
    let message_id = receipt["message_id"]
        .as_str()
        .expect("message id")
        .to_owned();
    let message = next_message(&client).await;
    assert_eq!((message.seq, text(&message).as_str()), (1, "down"));
    // The client acks within its coalescing delay.
    poll_until("the ack in the trace", has("ack")).await;

    let sending = client.send("up");
    let key = sending.key().to_owned();
    within("the uplink", sending)
        .await
        .expect("uplink accepted");
    assert_eq!(backends.records().await.len(), 1);

    client.stop();
    let (event, _) = until(&client, |e| matches!(e, ClientEvent::OnStop { .. })).await;
    assert_eq!(
        event,
        ClientEvent::OnStop {
            reason: StopReason::Stopped
        }
    );
    drop(client);
    poll_until("the close in the trace", has("close")).await;

    let trace = api.trace(&connection).await.expect("trace");
    let want: [(&str, Vec<String>); 9] = [
        (
            "hello",
            vec![
                "app=shop".into(),
                "device=dev-trace".into(),
                "transport=tcp".into(),
            ],
        ),
        ("auth", vec!["biz=chat".into(), "alias=u9".into()]),
        (
            "alias-bind",
            vec![
                "biz=chat".into(),
                "alias=u9".into(),
                format!("route={}", started.route_id),
            ],
        ),
        (
            "downlink",
            vec!["seq=1".into(), format!("message_id={message_id}")],
        ),
        ("ack", vec!["seq=1".into()]),
        ("uplink", vec!["seq=1".into(), format!("key={key}")]),
        (
            "uplink-ack",
            vec![
                "seq=1".into(),
                "result=accepted".into(),
                format!("route={}", started.route_id),
            ],
        ),
        ("logout", vec![]),
        ("close", vec!["by=Peer".into()]),
    ];
    // Each expected signal, in this order (other signals may come between).
    let mut at = 0;
    for (signal, details) in &want {
        let found = trace[at..]
            .iter()
            .position(|(s, d)| s == signal && details.iter().all(|want| d.contains(want.as_str())))
            .unwrap_or_else(|| panic!("no {signal} {details:?} after event {at}: {trace:#?}"));
        at += found + 1;
    }
    let (_, close) = trace.iter().rfind(|(s, _)| s == "close").expect("close");
    assert!(close.contains("code="), "the close says why: {close}");
    assert!(
        !trace.iter().any(|(s, _)| s.ends_with("error")),
        "a clean session: {trace:#?}"
    );
    assert_eq!(trace[0].0, "hello", "{trace:#?}");
    // Every detail reads key=value: no Rust Debug struct anywhere.
    for (signal, detail) in &trace {
        assert!(
            !detail.contains('{') && !detail.contains("UplinkResult"),
            "{signal}: {detail}"
        );
    }
}

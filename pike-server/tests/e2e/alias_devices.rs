//! One alias logged in on three devices (over TCP, TLS with the printed
//! certificate pinned, and QUIC): a push to the alias reaches each device
//! exactly once.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_an_alias_reaches_each_of_its_devices_exactly_once() {
    let server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let api = server.api("shop");
    let credential = token("shop", "chat", "u42");

    let devices = [
        (Wire::Tcp, "phone", "tcp"),
        (Wire::Tls, "tablet", "tls"),
        (Wire::Quic, "laptop", "quic"),
    ];
    let mut clients = Vec::new();
    for (wire, device, _) in devices {
        let proxy = server.proxy(wire, "shop", device);
        let client = proxy
            .client(ClientOptions::new("chat", "u42", &credential))
            .expect("client");
        start(&client).await;
        clients.push((proxy, client));
    }

    // The gateway sees the alias on three connections, one per device.
    let presence = api.get("/v1/presence?biz=chat&alias=u42").await;
    assert_eq!(presence.status, 200, "{presence:?}");
    assert_eq!(presence.body["online"], true);
    let mut seen: Vec<(String, String)> = presence.body["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .map(|c| {
            (
                c["device_id"].as_str().expect("device").to_owned(),
                c["transport"].as_str().expect("transport").to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, String)> = devices
        .iter()
        .map(|(_, d, t)| ((*d).to_owned(), (*t).to_owned()))
        .collect();
    want.sort();
    assert_eq!(seen, want);

    // Reliable: stored once for the alias, delivered to each device.
    let receipt = api.push_alias("chat", "u42", "hello").await;
    assert_eq!(receipt["stored"], 1, "{receipt}");
    assert_eq!(receipt["online"], 3, "{receipt}");
    for (_, client) in &clients {
        let message = next_message(client).await;
        assert_eq!((message.seq, text(&message).as_str()), (1, "hello"));
    }

    // Transient: to each online device, not stored.
    let receipt = api
        .push(json!({"biz": "chat", "alias": "u42", "payload": "blink", "reliable": false}))
        .await;
    assert_eq!(receipt["stored"], 0, "{receipt}");
    assert_eq!(receipt["online"], 3, "{receipt}");
    for (_, client) in &clients {
        let message = next_message(client).await;
        assert!(message.is_transient(), "{message:?}");
        assert_eq!(text(&message), "blink");
    }

    // Exactly once: the next message each device sees is the next push, not
    // a second copy of an earlier one.
    api.push_alias("chat", "u42", "second").await;
    for (_, client) in &clients {
        let message = next_message(client).await;
        assert_eq!((message.seq, text(&message).as_str()), (2, "second"));
    }
}

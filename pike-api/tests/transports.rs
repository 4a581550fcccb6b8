//! A PikeClient end to end over each transport a gateway serves: plain
//! TCP, TLS 1.3 with a pinned self-signed certificate, and QUIC with the
//! same identity.

mod support;

use support::*;

async fn round_trip(wire: Wire) {
    let _trace = trace_init();
    let fx = Fixture::new(wire).await;
    let proxy = fx.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", CREDENTIAL))
        .unwrap();
    chat.start();
    running(&chat).await;
    for i in 1..=5 {
        fx.gateway.push("u42", format!("m{i}"));
    }
    let want: Vec<_> = (1..=5).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(receive_until(&chat, 5).await, want);
    // A transient message too (at most once, sequence 0).
    assert_eq!(fx.gateway.push_transient("u42", "blink"), 1);
    let (event, _) = until(&chat, |e| matches!(e, ClientEvent::OnReceive(_))).await;
    let ClientEvent::OnReceive(message) = event else {
        unreachable!()
    };
    assert!(message.is_transient());
    assert_eq!(text(&message), "blink");
    for i in 1..=3 {
        tokio::time::timeout(LIMIT, chat.send(format!("up-{i}")))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(fx.gateway.uplinks("u42"), vec!["up-1", "up-2", "up-3"]);
    assert_eq!(fx.gateway.devices(), vec!["device-1".to_owned()]);
}

#[tokio::test]
async fn pike_client_over_plain_tcp() {
    round_trip(Wire::Tcp).await;
}

#[tokio::test]
async fn pike_client_over_tls() {
    round_trip(Wire::Tls).await;
}

#[tokio::test]
async fn pike_client_over_quic() {
    round_trip(Wire::Quic).await;
}

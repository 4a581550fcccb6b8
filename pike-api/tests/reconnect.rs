//! A gateway crash and restart on the same port: the client reconnects by
//! itself, resumes from its position, and every reliable message reaches
//! the business exactly once and in order; uplink sent during the outage is
//! delivered to the backend once, in order. Over TCP and TLS (a TLS peer
//! that vanishes without close_notify is an ordinary disconnect).

mod support;

use pike_api::DisconnectReason;
use support::*;

async fn server_restart(wire: Wire) {
    let _trace = trace_init();
    let mut fx = Fixture::new(wire).await;
    let proxy = fx.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", CREDENTIAL))
        .unwrap();
    chat.start();
    running(&chat).await;
    for i in 1..=10 {
        fx.gateway.push("u42", format!("m{i}"));
    }
    let mut got = receive_until(&chat, 10).await;

    // More messages, then the crash right away: some are in flight, some
    // delivered but not acked yet (acks are coalesced for 20 ms).
    for i in 11..=20 {
        fx.gateway.push("u42", format!("m{i}"));
    }
    let addr = fx.kill().await;
    // While the gateway is down: stored downlink, and uplink from the app.
    for i in 21..=30 {
        fx.gateway.push("u42", format!("m{i}"));
    }
    let sends: Vec<_> = (1..=5).map(|i| chat.send(format!("up-{i}"))).collect();
    fx.restart_on(addr).await;

    let mut connectivity = Vec::new();
    while got.last().map(|(s, _)| *s) != Some(30) {
        match next(&chat).await {
            ClientEvent::OnReceive(m) => got.push((m.seq, text(&m))),
            ClientEvent::OnSendSuccess { .. } => {}
            event if event.is_connectivity() => connectivity.push(event),
            other => panic!("unexpected lifecycle event {other:?}"),
        }
    }
    let want: Vec<_> = (1..=30).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(got, want, "every message once, in order");
    for send in sends {
        tokio::time::timeout(LIMIT, send).await.unwrap().unwrap();
    }
    assert_eq!(
        fx.gateway.uplinks("u42"),
        (1..=5).map(|i| format!("up-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(fx.gateway.first_attempt_repeats(), 0, "resends say so");
    // The outage was reported as connectivity, not as a stop.
    let lost = connectivity
        .iter()
        .find_map(|e| match e {
            ClientEvent::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .expect("a disconnect was reported");
    assert!(matches!(lost, DisconnectReason::Transport(_)), "{lost:?}");
    assert!(
        connectivity
            .iter()
            .any(|e| matches!(e, ClientEvent::Connected { .. })),
        "{connectivity:?}"
    );
    assert_eq!(chat.state(), ClientState::Running);
    // The re-login reported the position delivered before the crash, at or
    // past the first ten messages.
    let logins = fx.gateway.logins();
    let relogin = logins.last().unwrap();
    assert!(
        logins.len() >= 2 && relogin.last_acked_seq >= 10,
        "{logins:?}"
    );
    assert!(fx.gateway.connections_made() >= 2);
}

#[tokio::test]
async fn tcp_server_restart_resumes_exactly_once_in_order() {
    server_restart(Wire::Tcp).await;
}

#[tokio::test]
async fn tls_server_restart_resumes_exactly_once_in_order() {
    server_restart(Wire::Tls).await;
}

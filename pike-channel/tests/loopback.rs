//! A real client driver against real server drivers and the test gateway,
//! on loopback, over plain TCP, TLS 1.3 (self-signed, pinned) and QUIC.

use std::sync::Arc;
use std::time::Duration;

use pike_channel::test_util::{TestGateway, TestTls, Wire, connector, trace_init};
use pike_channel::{
    ClientConfig, ClientHandle, DriverConfig, Event, EventReceiver, LoginParams, SendId,
    spawn_client,
};

const LIMIT: Duration = Duration::from_secs(20);

/// The next event matching `pred`, skipping others; panics after `LIMIT`.
async fn next_matching(events: &mut EventReceiver, pred: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(LIMIT, async {
        loop {
            let event = events.recv().await.expect("subscription ended");
            if pred(&event) {
                return event;
            }
        }
    })
    .await
    .expect("event in time")
}

async fn round_trip(wire: Wire) {
    let _trace = trace_init();
    let tls = TestTls::new().await;
    let gateway = TestGateway::new("secret");
    let server = gateway
        .bind(wire, "127.0.0.1:0".parse().unwrap(), &tls)
        .await
        .unwrap();
    let client: ClientHandle = spawn_client(
        Arc::new(ClientConfig::default()),
        connector(wire, server.addr(), &tls, "device-1"),
        &DriverConfig::default(),
    );
    let (chat, mut events) = client.login(LoginParams::new("chat", "u42", "secret"));
    client.start();
    let ok = next_matching(&mut events, |e| matches!(e, Event::LoginOk { .. })).await;
    assert_eq!(
        ok,
        Event::LoginOk {
            stream: chat,
            route_id: "route-chat".into(),
            epoch: 0,
            positions_reset: false,
        }
    );

    // Downlink: every message once, in order.
    for i in 1..=20 {
        gateway.push("u42", format!("down-{i}"));
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        if let Event::Received(d) =
            next_matching(&mut events, |e| matches!(e, Event::Received(_))).await
        {
            assert_eq!(d.stream, chat);
            got.push((d.seq, String::from_utf8_lossy(&d.payload).into_owned()));
        }
    }
    let want: Vec<_> = (1..=20).map(|i| (i, format!("down-{i}"))).collect();
    assert_eq!(got, want);
    assert!(
        gateway.wait_until(LIMIT, |g| g.acked("u42") == 20).await,
        "cumulative acks reach the gateway"
    );

    // Uplink: success only after the gateway recorded the message.
    let ids: Vec<SendId> = (1..=5)
        .map(|i| client.send(chat, format!("up-{i}"), None).unwrap())
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let event = next_matching(&mut events, |e| {
            matches!(e, Event::SendSuccess { .. } | Event::SendFailure { .. })
        })
        .await;
        assert_eq!(
            event,
            Event::SendSuccess {
                stream: chat,
                id: *id,
                seq: i as u64 + 1
            }
        );
        assert!(gateway.uplinks("u42").len() > i, "acked before recorded");
    }
    let want: Vec<_> = (1..=5).map(|i| format!("up-{i}")).collect();
    assert_eq!(gateway.uplinks("u42"), want);
    assert_eq!(gateway.connections(), 1);

    // Dropping the last handle stops the channel: close frame, then the
    // gateway sees the connection end; the subscription ends.
    drop(client);
    assert!(gateway.wait_until(LIMIT, |g| g.connections() == 0).await);
    let rest = tokio::time::timeout(LIMIT, async {
        let mut rest = Vec::new();
        while let Some(event) = events.recv().await {
            rest.push(event);
        }
        rest
    })
    .await
    .expect("subscription ends");
    assert!(rest.contains(&Event::Stopped), "{rest:?}");
    server.kill().await;
}

#[tokio::test]
async fn plain_tcp_round_trip() {
    round_trip(Wire::Tcp).await;
}

#[tokio::test]
async fn tls_round_trip_with_a_pinned_self_signed_certificate() {
    round_trip(Wire::Tls).await;
}

#[tokio::test]
async fn quic_round_trip_with_the_same_identity() {
    round_trip(Wire::Quic).await;
}

/// A crashed server (sockets dropped, no close frame, no TLS close_notify)
/// is an ordinary disconnect for the client, which then reconnects.
async fn crash_is_an_ordinary_disconnect(wire: Wire) {
    let _trace = trace_init();
    let tls = TestTls::new().await;
    let gateway = TestGateway::new("secret");
    let server = gateway
        .bind(wire, "127.0.0.1:0".parse().unwrap(), &tls)
        .await
        .unwrap();
    let addr = server.addr();
    let mut config = ClientConfig::default();
    config
        .backoff(Duration::from_millis(10), Duration::from_millis(100), 0.5)
        .unwrap();
    let client = spawn_client(
        Arc::new(config),
        connector(wire, addr, &tls, "device-1"),
        &DriverConfig::default(),
    );
    let (_chat, mut events) = client.login(LoginParams::new("chat", "u42", "secret"));
    client.start();
    next_matching(&mut events, |e| matches!(e, Event::LoginOk { .. })).await;
    server.kill().await;
    let Event::Disconnected { reason } =
        next_matching(&mut events, |e| matches!(e, Event::Disconnected { .. })).await
    else {
        unreachable!()
    };
    assert!(
        matches!(reason, pike_channel::DisconnectReason::Transport(_)),
        "{reason:?}"
    );
    let _server = gateway.bind(wire, addr, &tls).await.unwrap();
    next_matching(&mut events, |e| matches!(e, Event::LoginOk { .. })).await;
    assert_eq!(gateway.connections_made(), 2);
}

#[tokio::test]
async fn tcp_server_crash_is_an_ordinary_disconnect() {
    crash_is_an_ordinary_disconnect(Wire::Tcp).await;
}

#[tokio::test]
async fn tls_server_crash_without_close_notify_is_an_ordinary_disconnect() {
    crash_is_an_ordinary_disconnect(Wire::Tls).await;
}

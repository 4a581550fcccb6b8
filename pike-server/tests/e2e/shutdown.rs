//! Graceful shutdown: on SIGTERM the gateway tells its clients to go (a
//! go-away with a reconnect window), exits 0 once they left, and a reliable
//! push it acknowledged before is delivered after the restart.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_clients_exits_zero_and_keeps_acknowledged_pushes() {
    let mut server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let api = server.api("shop");
    let proxy = server.proxy(Wire::Tcp, "shop", "phone");
    let online = proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("shop", "chat", "u1"),
        ))
        .expect("client");
    start(&online).await;

    // Acknowledged before the SIGTERM, for an alias that is not online.
    let receipt = api.push_alias("chat", "u2", "kept").await;
    assert_eq!(
        (receipt["stored"].as_u64(), receipt["online"].as_u64()),
        (Some(1), Some(0)),
        "{receipt}"
    );

    server.terminate();
    let (event, before) = until(&online, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    let ClientEvent::Disconnected { reason } = event else {
        unreachable!()
    };
    assert!(
        matches!(
            reason,
            DisconnectReason::GoAway {
                code: ErrorCode::GoingAway,
                ..
            }
        ),
        "{reason:?} after {before:?}"
    );
    // It reconnects after a delay in the window the server advised (1 to
    // 10 s), not at once: clients of a draining gateway do not stampede.
    let (event, _) = until(&online, |e| matches!(e, ClientEvent::Reconnecting { .. })).await;
    let ClientEvent::Reconnecting { delay, .. } = event else {
        unreachable!()
    };
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(10)).contains(&delay),
        "{delay:?}"
    );
    // The client left at once, so the gateway exits well within its 15 s
    // grace, cleanly.
    let status = server.wait_exit(Duration::from_secs(12)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}; output:\n{}",
        server.output()
    );
    // The business did not stop: connectivity only.
    assert_eq!(online.state(), ClientState::Running);

    server.restart().await;
    let tablet_proxy = server.proxy(Wire::Tcp, "shop", "tablet");
    let offline = tablet_proxy
        .client(ClientOptions::new(
            "chat",
            "u2",
            token("shop", "chat", "u2"),
        ))
        .expect("client");
    start(&offline).await;
    let message = next_message(&offline).await;
    assert_eq!((message.seq, text(&message).as_str()), (1, "kept"));

    // The drained client comes back to the restarted gateway (skipping the
    // rest of its advised delay, as on a network change) and runs on.
    proxy.reconnect_now();
    let (event, skipped) = until(&online, |e| {
        matches!(e, ClientEvent::Connected { .. }) || !e.is_connectivity()
    })
    .await;
    assert!(
        matches!(event, ClientEvent::Connected { .. }),
        "{event:?} after {skipped:?}"
    );
    let api = server.api("shop");
    api.push_alias("chat", "u1", "welcome back").await;
    let message = next_message(&online).await;
    assert_eq!((message.seq, text(&message).as_str()), (1, "welcome back"));
}

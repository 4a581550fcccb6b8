//! The PikeClient lifecycle (seed 5.1) against a real gateway on loopback:
//! onStart → running | onStop, onReceive, onSendSuccess, stop, restart.

mod support;

use pike_api::ErrorKind;
use pike_api::proto::tunnel::ErrorCode;
use support::*;

#[tokio::test]
async fn lifecycle_runs_on_start_then_running_then_on_receive_in_order() {
    let _trace = trace_init();
    let fx = Fixture::new(Wire::Tcp).await;
    let proxy = fx.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", CREDENTIAL))
        .unwrap();
    assert_eq!(chat.state(), ClientState::Idle);
    chat.start();
    assert_eq!(next_lifecycle(&chat).await, ClientEvent::OnStart);
    assert_eq!(
        next_lifecycle(&chat).await,
        ClientEvent::Running {
            route_id: "route-chat".into()
        }
    );
    assert_eq!(chat.state(), ClientState::Running);
    for i in 1..=3 {
        fx.gateway.push("u42", format!("m{i}"));
    }
    let got = receive_until(&chat, 3).await;
    assert_eq!(
        got,
        vec![(1, "m1".into()), (2, "m2".into()), (3, "m3".into())]
    );
    assert_eq!(chat.state(), ClientState::Running);
    assert_eq!(chat.session().last_delivered, 3);
    assert_eq!(chat.session().route_id, "route-chat");
}

#[tokio::test]
async fn auth_failure_leads_to_on_stop() {
    let _trace = trace_init();
    let fx = Fixture::new(Wire::Tcp).await;
    let proxy = fx.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", "wrong"))
        .unwrap();
    chat.start();
    assert_eq!(next_lifecycle(&chat).await, ClientEvent::OnStart);
    let stop = next_lifecycle(&chat).await;
    assert!(
        matches!(
            &stop,
            ClientEvent::OnStop {
                reason: StopReason::AuthFailed {
                    code: ErrorCode::AuthFailed,
                    ..
                }
            }
        ),
        "{stop:?}"
    );
    assert_eq!(chat.state(), ClientState::Stopped);
    let logins = fx.gateway.logins();
    assert_eq!(logins.len(), 1);
    assert!(!logins[0].accepted);
    // Stopped: sending fails at once, with an event too.
    let error = chat.send("nope").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotStarted);
    assert!(matches!(
        next_lifecycle(&chat).await,
        ClientEvent::OnSendFailure { .. }
    ));
    // The channel it would have used is released: no login left on it.
    assert!(fx.gateway.wait_until(LIMIT, |g| g.connections() == 0).await);
    assert_eq!(proxy.channels(), 0);
}

#[tokio::test]
async fn restart_after_stop_resumes_without_duplicates() {
    let _trace = trace_init();
    let fx = Fixture::new(Wire::Tcp).await;
    let proxy = fx.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", CREDENTIAL))
        .unwrap();
    chat.start();
    running(&chat).await;
    fx.gateway.push("u42", "before-1");
    fx.gateway.push("u42", "before-2");
    assert_eq!(receive_until(&chat, 2).await.len(), 2);

    chat.stop();
    assert_eq!(
        next_lifecycle(&chat).await,
        ClientEvent::OnStop {
            reason: StopReason::Stopped
        }
    );
    assert_eq!(chat.state(), ClientState::Stopped);
    // Stored while the business is stopped.
    fx.gateway.push("u42", "while-stopped");

    chat.restart();
    assert_eq!(next_lifecycle(&chat).await, ClientEvent::OnStart);
    assert!(matches!(
        next_lifecycle(&chat).await,
        ClientEvent::Running { .. }
    ));
    assert_eq!(
        receive_until(&chat, 3).await,
        vec![(3, "while-stopped".into())]
    );
    // The second login resumed from the delivered position.
    let logins = fx.gateway.logins();
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[1].last_acked_seq, 2);
    assert_eq!(logins[1].route_id, "route-chat", "sticky route id reported");
    // Still running: later messages flow.
    fx.gateway.push("u42", "after");
    assert_eq!(receive_until(&chat, 4).await, vec![(4, "after".into())]);
}

#[tokio::test]
async fn restart_while_running_keeps_messages_and_sends() {
    let _trace = trace_init();
    let fx = Fixture::new(Wire::Tcp).await;
    let proxy = fx.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", CREDENTIAL))
        .unwrap();
    chat.start();
    running(&chat).await;
    for i in 1..=5 {
        fx.gateway.push("u42", format!("m{i}"));
    }
    let sends: Vec<_> = (1..=5).map(|i| chat.send(format!("up-{i}"))).collect();
    chat.restart();
    for i in 6..=10 {
        fx.gateway.push("u42", format!("m{i}"));
    }
    let mut seqs = Vec::new();
    let mut lifecycle = Vec::new();
    while seqs.last() != Some(&10) {
        match next_lifecycle(&chat).await {
            ClientEvent::OnReceive(m) => seqs.push(m.seq),
            other => lifecycle.push(other),
        }
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    for send in sends {
        send.await.unwrap();
    }
    let expected: Vec<String> = (1..=5).map(|i| format!("up-{i}")).collect();
    assert_eq!(fx.gateway.uplinks("u42"), expected);
    assert!(lifecycle.contains(&ClientEvent::OnStart), "{lifecycle:?}");
    assert!(
        !lifecycle
            .iter()
            .any(|e| matches!(e, ClientEvent::OnStop { .. })),
        "{lifecycle:?}"
    );
}

#[tokio::test]
async fn send_succeeds_only_after_the_gateway_acked() {
    let _trace = trace_init();
    let fx = Fixture::new(Wire::Tcp).await;
    let proxy = fx.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", CREDENTIAL))
        .unwrap();
    let early = chat.send("too early").await.unwrap_err();
    assert_eq!(early.kind(), ErrorKind::NotStarted);
    assert!(matches!(
        next_lifecycle(&chat).await,
        ClientEvent::OnSendFailure { error, .. } if error.kind() == ErrorKind::NotStarted
    ));
    chat.start();
    running(&chat).await;
    for i in 1..=3 {
        let sending = chat.send(format!("up-{i}"));
        let id = sending.id();
        let key = sending.key().to_owned();
        let receipt = tokio::time::timeout(LIMIT, sending).await.unwrap().unwrap();
        assert_eq!((receipt.id, receipt.key.clone()), (id, key.clone()));
        // The backend had it before the client heard of the success.
        assert_eq!(fx.gateway.uplinks("u42").len(), i);
        let (event, _) = until(&chat, |e| {
            matches!(
                e,
                ClientEvent::OnSendSuccess { .. } | ClientEvent::OnSendFailure { .. }
            )
        })
        .await;
        assert_eq!(event, ClientEvent::OnSendSuccess { id, key });
    }
    assert_eq!(fx.gateway.uplinks("u42"), vec!["up-1", "up-2", "up-3"]);
    // The caller's own idempotency key is delivered once.
    chat.send_with_key("dup", "k1").await.unwrap();
    chat.send_with_key("dup again", "k1").await.unwrap();
    assert_eq!(fx.gateway.uplinks("u42").len(), 4);
}

#[tokio::test]
async fn dropping_the_client_logs_the_business_out() {
    let _trace = trace_init();
    let fx = Fixture::new(Wire::Tcp).await;
    let proxy = fx.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", CREDENTIAL))
        .unwrap();
    let feed = proxy
        .client(ClientOptions::new("feed", "u7", CREDENTIAL))
        .unwrap();
    chat.start();
    feed.start();
    running(&chat).await;
    running(&feed).await;
    assert_eq!(fx.gateway.tokens_of("u42").len(), 1);
    drop(chat);
    // The gateway saw the logout; the shared channel stays for feed.
    assert!(
        fx.gateway
            .wait_until(LIMIT, |g| g.tokens_of("u42").is_empty())
            .await
    );
    assert_eq!(fx.gateway.connections(), 1);
    drop(feed);
    // The last business gone: the channel is closed.
    assert!(fx.gateway.wait_until(LIMIT, |g| g.connections() == 0).await);
    assert_eq!(proxy.channels(), 0);
}

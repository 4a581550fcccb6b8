//! The server is killed with SIGKILL in the middle of a stream of reliable
//! pushes and restarted on the same ports and data dir: the client
//! reconnects by itself and the app receives every message exactly once, in
//! order.
//!
//! To make the crash land mid-stream whatever the machine's speed, the app
//! stops consuming events after the first [`PAUSE_AT`] messages (small event
//! queues make the client stop reading from the connection, as under real
//! backpressure) and resumes once the server is dead: at the crash, messages
//! are stored but not delivered, delivered to the channel but not to the
//! app, acked and not acked.

use std::sync::Arc;
use std::time::Duration;

use pike_api::DriverConfig;
use tokio::sync::watch;

use crate::support::*;

const N: u64 = 200;
/// Pushes answered before the crash.
const BEFORE_CRASH: u64 = 120;
/// Messages the app takes before it pauses until the crash.
const PAUSE_AT: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_nothing_and_duplicate_nothing() {
    let mut server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let api = server.api("shop");
    let mut driver = DriverConfig::default();
    driver.event_capacity(4).expect("capacity");
    let proxy = ChannelProxy::builder(server.connector(Wire::Tcp, "shop", "phone"))
        .channel_config(fast_reconnect())
        .driver_config(driver)
        .event_capacity(4)
        .build();
    let client = Arc::new(
        proxy
            .client(ClientOptions::new(
                "chat",
                "u1",
                token("shop", "chat", "u1"),
            ))
            .expect("client"),
    );
    let first = start(&client).await;

    // The app: every event until the final marker, in order, pausing after
    // PAUSE_AT messages until `resume`.
    let (progress_tx, mut progress) = watch::channel(0usize);
    let (resume_tx, mut resume) = watch::channel(false);
    let receiver = tokio::spawn({
        let client = client.clone();
        async move {
            let mut messages = Vec::new();
            let mut connectivity = Vec::new();
            loop {
                if messages.len() == PAUSE_AT {
                    resume.wait_for(|r| *r).await.expect("test alive");
                }
                match next(&client).await {
                    ClientEvent::OnReceive(m) => {
                        let done = text(&m) == "end";
                        messages.push((m.seq, text(&m)));
                        progress_tx.send_replace(messages.len());
                        if done {
                            return (messages, connectivity);
                        }
                    }
                    event if event.is_connectivity() => connectivity.push(event),
                    other => panic!("unexpected {other:?} after {messages:?}"),
                }
            }
        }
    });

    let run = within_for(Duration::from_secs(60), "the whole crash test", async {
        for i in 1..=BEFORE_CRASH {
            api.push_alias("chat", "u1", &format!("m{i}")).await;
        }
        within(
            "the app's first messages",
            progress.wait_for(|n| *n == PAUSE_AT),
        )
        .await
        .expect("receiver alive");
        // Some of them were acked by the client.
        let (api_ref, token) = (&api, first.connection_token());
        poll_until("an ack in the trace", || async move {
            api_ref
                .trace(token)
                .await
                .expect("trace")
                .iter()
                .any(|(signal, _)| signal == "ack")
        })
        .await;

        let acked_at_crash = api
            .trace(first.connection_token())
            .await
            .expect("trace")
            .iter()
            .filter(|(signal, _)| signal == "ack")
            .filter_map(|(_, d)| d.split("seq=").nth(1)?.parse::<u64>().ok())
            .max();
        // The premise: the crash comes with stored messages not acked yet
        // (the paused app holds the client back).
        assert!(
            acked_at_crash.is_some_and(|a| a > 0 && a < BEFORE_CRASH),
            "acked at the crash: {acked_at_crash:?}"
        );
        server.kill();
        let consumed_at_crash = *progress.borrow();
        // The app goes on: the client finds the connection dead and retries.
        resume_tx.send_replace(true);

        // While the server is down, a push cannot even connect (so nothing
        // was stored: retrying after the restart is safe).
        let err = server
            .api("shop")
            .try_post(
                "/v1/push",
                &serde_json::json!({"biz": "chat", "alias": "u1", "payload": "lost"}),
            )
            .await
            .expect_err("the server is down");
        assert!(err.is_connect(), "{err:?}");

        server.restart().await;
        // A fresh connection pool for the new process.
        let api = server.api("shop");
        for i in BEFORE_CRASH + 1..=N {
            api.push_alias("chat", "u1", &format!("m{i}")).await;
        }
        api.push_alias("chat", "u1", "end").await;
        consumed_at_crash
    });
    let consumed_at_crash = run.await;
    assert_eq!(
        consumed_at_crash, PAUSE_AT,
        "the app was behind at the crash"
    );
    let (messages, connectivity) = within("the receiver", receiver).await.expect("receiver");

    let mut want: Vec<(u64, String)> = (1..=N).map(|i| (i, format!("m{i}"))).collect();
    want.push((N + 1, "end".to_owned()));
    assert_eq!(messages, want, "every message exactly once, in order");
    assert!(
        connectivity
            .iter()
            .any(|e| matches!(e, ClientEvent::Disconnected { .. })),
        "the crash was seen: {connectivity:?}"
    );
    assert!(
        connectivity
            .iter()
            .any(|e| matches!(e, ClientEvent::Connected { .. })),
        "reconnected by itself: {connectivity:?}"
    );
    assert_eq!(client.state(), ClientState::Running);
    assert_eq!(client.session().last_delivered, N + 1);
}

//! Working modes (seed 5.2): three businesses share one connection; one is
//! switched to an independent channel and back while messages flow both
//! ways, and neither side loses or duplicates anything.

mod support;

use std::sync::Arc;

use pike_api::Sending;
use support::*;
use tokio::sync::watch;

const DOWN: u64 = 300;
const UP: usize = 150;

/// Messages the gateway may push ahead of what a business has received:
/// keeps the flow going through the switches instead of finishing early.
const AHEAD: u64 = 20;

/// Collects one client's reliable messages until the sentinel `last`,
/// publishing how many arrived.
async fn collect(client: Arc<PikeClient>, last: u64, progress: watch::Sender<u64>) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        match next_lifecycle(&client).await {
            ClientEvent::OnReceive(m) => {
                assert_eq!(text(&m), format!("{}-{}", client.alias(), m.seq));
                seqs.push(m.seq);
                progress.send_replace(seqs.len() as u64);
            }
            ClientEvent::OnSendSuccess { .. } => {}
            other => panic!("{}: unexpected {other:?}", client.alias()),
        }
    }
    seqs
}

async fn reached(progress: &mut watch::Receiver<u64>, count: u64) {
    tokio::time::timeout(LIMIT, progress.wait_for(|c| *c >= count))
        .await
        .expect("progress in time")
        .expect("reader alive");
}

#[tokio::test]
async fn switching_a_business_to_an_independent_channel_and_back_mid_stream_is_lossless() {
    let _trace = trace_init();
    switch_mid_stream().await;
}

/// The same on a multi-threaded runtime: drivers, client tasks and the
/// gateway run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_mid_stream_is_lossless_on_a_multi_threaded_runtime() {
    let _trace = trace_init();
    switch_mid_stream().await;
}

async fn switch_mid_stream() {
    let fx = Fixture::new(Wire::Tcp).await;
    let proxy = fx.proxy("device-1");
    let aliases = ["u-chat", "u-feed", "u-game"];
    let mut clients = Vec::new();
    for (biz, alias) in ["chat", "feed", "game"].into_iter().zip(aliases) {
        let client = shared(
            proxy
                .client(ClientOptions::new(biz, alias, CREDENTIAL))
                .unwrap(),
        );
        client.start();
        running(&client).await;
        clients.push(client);
    }
    // Shared mode: one connection carries the three logins.
    assert_eq!(fx.gateway.connections(), 1);
    assert_eq!(proxy.channels(), 1);
    let shared_token = fx.gateway.tokens_of("u-chat");
    assert_eq!(fx.gateway.tokens_of("u-game"), shared_token);

    // Readers: every business collects its downlink until the sentinel.
    let mut progress = Vec::new();
    let mut readers = Vec::new();
    for client in &clients {
        let (tx, rx) = watch::channel(0);
        progress.push(rx);
        readers.push(tokio::spawn(collect(Arc::clone(client), DOWN + 1, tx)));
    }

    // Writer: downlink for the three aliases, at most AHEAD in front of each
    // reader, and uplink from the three businesses, one message every two
    // downlink steps, so that both flow through both switches.
    let gateway = fx.gateway.clone();
    let writer_clients = clients.clone();
    let mut writer_progress = progress.clone();
    let writer = tokio::spawn(async move {
        let mut sends: Vec<Vec<Sending>> = vec![Vec::new(), Vec::new(), Vec::new()];
        for i in 1..=DOWN {
            for rx in &mut writer_progress {
                reached(rx, i.saturating_sub(AHEAD)).await;
            }
            for alias in aliases {
                gateway.push(alias, format!("{alias}-{i}"));
            }
            if i % 2 == 0 {
                let step = (i / 2) as usize;
                for (n, client) in writer_clients.iter().enumerate() {
                    sends[n].push(client.send(format!("{}-up-{step}", client.alias())));
                }
            }
            tokio::task::yield_now().await;
        }
        for alias in aliases {
            gateway.push(alias, format!("{alias}-{}", DOWN + 1));
        }
        sends
    });

    // The switches, while both directions flow.
    let game_logins = |g: &TestGateway| g.logins().iter().filter(|l| l.alias == "u-game").count();
    reached(&mut progress[2], DOWN / 3).await;
    proxy.set_mode("game", Mode::Independent);
    let switched_at = fx.gateway.uplinks("u-game").len();
    assert!(fx.gateway.wait_until(LIMIT, |g| game_logins(g) == 2).await);
    reached(&mut progress[2], 2 * DOWN / 3).await;
    proxy.set_mode("game", Mode::Shared);
    let back_at = fx.gateway.uplinks("u-game").len();
    assert!(fx.gateway.wait_until(LIMIT, |g| game_logins(g) == 3).await);

    // Downlink: exactly 1..=DOWN+1, in order, for every business.
    for (reader, alias) in readers.into_iter().zip(aliases) {
        let seqs = tokio::time::timeout(LIMIT, reader).await.unwrap().unwrap();
        assert_eq!(
            seqs,
            (1..=DOWN + 1).collect::<Vec<_>>(),
            "{alias}: lost or duplicated downlink"
        );
    }
    // Uplink: every send succeeded, and each backend got each message once,
    // in the order sent.
    let mut sends = tokio::time::timeout(LIMIT, writer).await.unwrap().unwrap();
    for (n, client) in clients.iter().enumerate() {
        for sending in std::mem::take(&mut sends[n]) {
            tokio::time::timeout(LIMIT, sending).await.unwrap().unwrap();
        }
        let want: Vec<String> = (1..=UP)
            .map(|i| format!("{}-up-{i}", client.alias()))
            .collect();
        assert_eq!(
            fx.gateway.uplinks(client.alias()),
            want,
            "{}",
            client.alias()
        );
    }
    // A send placed again on the other channel is never called a first
    // attempt (it may have reached the gateway on the first).
    assert_eq!(fx.gateway.first_attempt_repeats(), 0);

    // The switches happened mid-stream, in both directions.
    let logins: Vec<_> = fx
        .gateway
        .logins()
        .into_iter()
        .filter(|l| l.alias == "u-game")
        .collect();
    assert_eq!(logins.len(), 3, "{logins:?}");
    assert!(
        logins[1].last_acked_seq >= DOWN / 3 && logins[1].last_acked_seq < DOWN,
        "independent login resumed mid-stream: {logins:?}"
    );
    assert!(logins[2].last_acked_seq >= 2 * DOWN / 3, "{logins:?}");
    assert_ne!(logins[1].conn, logins[0].conn, "its own connection");
    assert_eq!(logins[2].conn, logins[0].conn, "back on the shared one");
    assert!(
        switched_at > 0 && switched_at < back_at && back_at < UP,
        "uplink flowed through the switches: {switched_at} {back_at}"
    );

    // Back to one shared connection; the independent channel was released.
    assert!(fx.gateway.wait_until(LIMIT, |g| g.connections() == 1).await);
    assert_eq!(proxy.channels(), 1);
    for client in &clients {
        assert_eq!(client.state(), ClientState::Running);
    }
}

#[tokio::test]
async fn independent_mode_from_the_start_uses_its_own_connection() {
    let _trace = trace_init();
    let fx = Fixture::new(Wire::Tcp).await;
    let proxy = ChannelProxy::builder(connector(Wire::Tcp, fx.addr(), &fx.tls, "device-1"))
        .independent("game")
        .build();
    let chat = proxy
        .client(ClientOptions::new("chat", "u-chat", CREDENTIAL))
        .unwrap();
    let feed = proxy
        .client(ClientOptions::new("feed", "u-feed", CREDENTIAL))
        .unwrap();
    let game = proxy
        .client(ClientOptions::new("game", "u-game", CREDENTIAL))
        .unwrap();
    for client in [&chat, &feed, &game] {
        client.start();
        running(client).await;
    }
    assert_eq!(proxy.mode("game"), Mode::Independent);
    assert_eq!(game.mode(), Mode::Independent);
    assert_eq!(proxy.channels(), 2);
    assert_eq!(fx.gateway.connections(), 2);
    assert_eq!(
        fx.gateway.tokens_of("u-chat"),
        fx.gateway.tokens_of("u-feed")
    );
    assert_ne!(
        fx.gateway.tokens_of("u-chat"),
        fx.gateway.tokens_of("u-game")
    );
    // Stopping the game business releases its connection only.
    game.stop();
    let (stop, _) = until(&game, |e| matches!(e, ClientEvent::OnStop { .. })).await;
    assert_eq!(
        stop,
        ClientEvent::OnStop {
            reason: StopReason::Stopped
        }
    );
    assert!(fx.gateway.wait_until(LIMIT, |g| g.connections() == 1).await);
    assert_eq!(proxy.channels(), 1);
    fx.gateway.push("u-chat", "still here");
    assert_eq!(
        receive_until(&chat, 1).await,
        vec![(1, "still here".into())]
    );
}

//! Uplink under the batch contract (`uplink_batch_max`): many logins' messages
//! reach two backends in batches, each login's in its order, each message
//! once; a message the backend refuses fails alone; when a backend dies the
//! batch it held goes to the other one.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::*;

/// Logins (devices) sending at once.
const DEVICES: usize = 12;
/// Messages per login.
const PER_DEVICE: usize = 6;
/// `uplink_batch_max`.
const BATCH_MAX: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_uplink_in_batches_in_order_once_each_and_survive_a_backend_death() {
    let mut backends = Backends::start(2, Duration::from_millis(40)).await;
    let mut chat = biz_with_webhooks("chat", backends.urls(), 2_000);
    chat.uplink_batch_max = BATCH_MAX;
    // One batch in flight per backend: everything that arrives meanwhile
    // waits for the next one.
    chat.uplink_batch_concurrency = 1;
    let server = Server::start(config(vec![app("shop", vec![chat])])).await;

    let mut clients = Vec::new();
    for d in 0..DEVICES {
        let mut channel = fast_reconnect();
        channel.send_window(PER_DEVICE as u32).expect("window");
        let proxy = server.proxy_with(Wire::Tcp, "shop", &format!("phone{d}"), channel);
        let alias = format!("u{d}");
        let client = proxy
            .client(ClientOptions::new(
                "chat",
                &alias,
                token("shop", "chat", &alias),
            ))
            .expect("client");
        start(&client).await;
        clients.push((alias, proxy, client));
    }

    // Every login's whole stream at once; device 0's third message is one
    // the backend refuses.
    let mut sends = Vec::new();
    for (d, (alias, _, client)) in clients.iter().enumerate() {
        for i in 1..=PER_DEVICE {
            let payload = if d == 0 && i == 3 {
                format!("refuse {alias} {i:02}")
            } else {
                format!("{alias} {i:02}")
            };
            let sending = client.send(payload.clone());
            sends.push((alias.clone(), payload, sending));
        }
    }

    // Kill a backend once the first batches have been taken: what it held
    // is re-routed to the other one.
    backends.wait_for(DEVICES, LIMIT).await;
    backends.kill(0).await;

    let mut taken = HashMap::new();
    for (alias, payload, sending) in sends {
        let outcome = within("a send outcome", sending).await;
        if payload.starts_with("refuse") {
            let error = outcome.expect_err("the refused message fails");
            assert!(
                error.to_string().contains("refused by the test"),
                "the backend's reason reaches the client: {error}"
            );
        } else {
            let receipt = outcome.unwrap_or_else(|e| panic!("{payload:?} failed: {e}"));
            taken.insert(receipt.key, (alias, payload));
        }
    }
    assert_eq!(taken.len(), DEVICES * PER_DEVICE - 1);

    let records = backends.records().await;
    // Each taken message reached the backends once, nothing else did.
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys.iter().copied().collect::<HashSet<_>>().len(),
        records.len(),
        "a key reached the backends twice: {records:#?}"
    );
    assert_eq!(
        keys.iter().map(|k| k.to_string()).collect::<HashSet<_>>(),
        taken.keys().cloned().collect::<HashSet<_>>()
    );
    // Each login's messages in its order, the refused one skipped.
    for (alias, _, _) in &clients {
        let got: Vec<&str> = records
            .iter()
            .filter(|r| &r.alias == alias)
            .map(|r| r.payload.as_str())
            .collect();
        let want: Vec<String> = (1..=PER_DEVICE)
            .filter(|i| !(alias == "u0" && *i == 3))
            .map(|i| format!("{alias} {i:02}"))
            .collect();
        assert_eq!(got, want, "{alias}'s order");
        let seqs: Vec<u64> = records
            .iter()
            .filter(|r| &r.alias == alias)
            .map(|r| r.seq)
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{alias}: {seqs:?}");
    }
    // Batches, never over the maximum, and never two messages of one login
    // in one batch (a login has one message with the backends at a time).
    assert!(
        records.iter().all(|r| (1..=BATCH_MAX).contains(&r.batch)),
        "every message came in a batch of 1..={BATCH_MAX}: {records:#?}"
    );
    assert!(
        records.iter().any(|r| r.batch > 1),
        "messages that waited were batched: {records:#?}"
    );
    assert!(
        backends.max_in_flight() <= 2,
        "one batch in flight per backend: {}",
        backends.max_in_flight()
    );
    // The dead backend's share moved to the survivor, under its route id.
    assert!(
        records.iter().any(|r| r.backend == 1),
        "the survivor took over: {records:#?}"
    );
    for r in &records {
        assert_eq!(r.route, format!("r{}", r.backend), "{r:?}");
        assert_eq!(r.path, "/pike/uplink");
    }
    for (_, _, client) in &clients {
        assert_eq!(client.session().route_id, "r1", "every login ends on r1");
    }
}

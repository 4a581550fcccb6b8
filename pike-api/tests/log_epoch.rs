//! The log epoch on the wire (`Login.epoch`, `LoginResult.epoch`): a
//! position saved under another epoch (the gateway's log was recreated
//! since, say a deleted data directory) is ignored by the gateway and
//! forgotten by the client, so the new log's messages are not skipped; a
//! position of the same epoch resumes as before.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use pike_api::server::{Delivery, Gateway, MemoryStore, PushHandle, PushRequest, Store, Target};
use support::{
    ChannelProxy, ClientConfig, ClientOptions, PikeClient, TestTls, Wire, connector, receive_until,
    running, trace_init,
};

fn push(payload: &'static str) -> PushRequest {
    PushRequest {
        app: "demo".into(),
        biz: "chat".into(),
        target: Target::Alias("u42".into()),
        payload: Bytes::from_static(payload.as_bytes()),
        delivery: Delivery::Reliable { ttl: None },
        priority: 0,
        receipt: false,
    }
}

/// A gateway on `store` with three reliable messages for `u42`.
async fn gateway_with_three(store: Arc<dyn Store>) -> (PushHandle, std::net::SocketAddr) {
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().expect("addr"))
        .store(store)
        .bind()
        .await
        .expect("bind the gateway");
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());
    for payload in ["m1", "m2", "m3"] {
        pusher.push(push(payload)).await.expect("stored");
    }
    (pusher, addr)
}

/// Starts a client with `options`; returns it once running.
async fn running_client(
    addr: std::net::SocketAddr,
    tls: &TestTls,
    options: ClientOptions,
) -> PikeClient {
    let proxy = ChannelProxy::builder(connector(Wire::Tcp, addr, tls, "d1"))
        .channel_config(ClientConfig::default())
        .build();
    let client = proxy.client(options).expect("client");
    client.start();
    running(&client).await;
    client
}

/// The sequence numbers delivered up to and including `last`.
async fn seqs_until(client: &PikeClient, last: u64) -> Vec<u64> {
    receive_until(client, last)
        .await
        .into_iter()
        .map(|(seq, _)| seq)
        .collect()
}

#[tokio::test]
async fn a_position_from_another_epoch_is_ignored_and_the_new_log_delivered() {
    let _trace = trace_init();
    let store = Arc::new(MemoryStore::new());
    let epoch = store.epoch();
    assert_ne!(epoch, 0, "a memory store has an epoch of its own");
    let (_pusher, addr) = gateway_with_three(store).await;
    let tls = TestTls::new().await;

    // Saved at seq 5 of an older log: all three of this log arrive.
    let stale = epoch.wrapping_add(1).max(1);
    let options = ClientOptions::new("chat", "u42", "any")
        .resume("", 5)
        .epoch(stale);
    let client = running_client(addr, &tls, options).await;
    assert_eq!(seqs_until(&client, 3).await, [1, 2, 3]);
    let session = client.session();
    assert_eq!(
        session.epoch, epoch,
        "the client learned the gateway's epoch"
    );
    assert_eq!(session.last_delivered, 3);
}

#[tokio::test]
async fn a_position_of_the_same_epoch_resumes_after_it() {
    let _trace = trace_init();
    let store = Arc::new(MemoryStore::new());
    let epoch = store.epoch();
    let (pusher, addr) = gateway_with_three(store).await;
    let tls = TestTls::new().await;

    let options = ClientOptions::new("chat", "u42", "any")
        .resume("", 2)
        .epoch(epoch);
    let client = running_client(addr, &tls, options).await;
    pusher.push(push("m4")).await.expect("stored");
    assert_eq!(
        seqs_until(&client, 4).await,
        [3, 4],
        "nothing at or below 2 again"
    );
    assert_eq!(client.session().epoch, epoch);
}

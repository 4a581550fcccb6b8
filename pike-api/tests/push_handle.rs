//! `PushHandle` against real clients over loopback TCP: a push whose
//! caller goes away during the store commit still reaches the devices
//! online, and a payload no device could receive is refused at push time.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use pike_api::server::{
    Delivery, Gateway, MemoryStore, PUSH_FRAME_OVERHEAD, PushError, PushHandle, PushRequest, Store,
    StreamKey, Target,
};
use support::gated_store::GatedStore;
use support::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, LIMIT, Message, PikeClient, TestTls,
    Wire, connector, trace_init,
};

fn push(payload: impl Into<Bytes>) -> PushRequest {
    PushRequest {
        app: "demo".into(),
        biz: "chat".into(),
        target: Target::Alias("u42".into()),
        payload: payload.into(),
        delivery: Delivery::Reliable { ttl: None },
        priority: 0,
        receipt: false,
    }
}

/// A gateway on loopback TCP with `store`, and a client of device `d1`
/// logged in to `chat` as `u42` and running.
async fn gateway_and_client(store: Arc<dyn Store>) -> (PushHandle, PikeClient, TestTls) {
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().expect("addr"))
        .store(store)
        .bind()
        .await
        .expect("bind the gateway");
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());
    let tls = TestTls::new().await;
    let proxy = ChannelProxy::builder(connector(Wire::Tcp, addr, &tls, "d1"))
        .channel_config(ClientConfig::default())
        .build();
    let client = proxy
        .client(ClientOptions::new("chat", "u42", "any"))
        .expect("client");
    client.start();
    tokio::time::timeout(LIMIT, async {
        loop {
            match client.next_event().await {
                Some(ClientEvent::Running { .. }) => return,
                Some(ClientEvent::OnStop { reason }) => panic!("stopped: {reason:?}"),
                Some(_) => {}
                None => panic!("client ended"),
            }
        }
    })
    .await
    .expect("the client runs");
    (pusher, client, tls)
}

async fn next_message(client: &PikeClient) -> Message {
    tokio::time::timeout(LIMIT, async {
        loop {
            match client.next_event().await {
                Some(ClientEvent::OnReceive(message)) => return message,
                Some(ClientEvent::OnStop { reason }) => panic!("stopped: {reason:?}"),
                Some(_) => {}
                None => panic!("client ended"),
            }
        }
    })
    .await
    .expect("a message arrives")
}

/// The caller of a reliable push goes away (an HTTP client disconnecting,
/// a timeout) after the store committed the message but before the commit
/// answered: the device online still gets the message, without another
/// push or a reconnect.
#[tokio::test]
async fn a_push_dropped_mid_commit_still_reaches_the_online_device() {
    let _trace = trace_init();
    let store = Arc::new(GatedStore::default());
    let (pusher, client, _tls) = gateway_and_client(store.clone()).await;

    store.appends.close();
    let committed = store.appends.held.notified();
    let caller = tokio::spawn({
        let pusher = pusher.clone();
        async move { pusher.push(push("committed")).await }
    });
    tokio::time::timeout(LIMIT, committed)
        .await
        .expect("the append reaches the store");
    caller.abort();
    let outcome = tokio::time::timeout(LIMIT, caller)
        .await
        .expect("the caller ends");
    assert!(
        outcome.as_ref().is_err_and(|e| e.is_cancelled()),
        "the caller was dropped mid-commit: {outcome:?}"
    );
    store.appends.open();

    let message = next_message(&client).await;
    assert_eq!(&message.payload[..], b"committed");
    assert_eq!(message.seq, 1);
}

/// A payload larger than a downlink frame carries is refused at push time
/// and never stored (stored, it would make the device reconnect forever on
/// the same sequence number); the largest accepted payload is delivered,
/// and so is the next push.
#[tokio::test]
async fn a_payload_over_the_frame_limit_is_refused_and_never_stored() {
    let _trace = trace_init();
    let store = Arc::new(MemoryStore::default());
    let (pusher, client, _tls) = gateway_and_client(store.clone()).await;

    let max = pusher.max_payload_len();
    assert_eq!(
        max,
        tntunnel::DEFAULT_MAX_FRAME_LENGTH - PUSH_FRAME_OVERHEAD,
        "the default frame limit minus the push framing"
    );
    for delivery in [Delivery::Reliable { ttl: None }, Delivery::Transient] {
        let err = pusher
            .push(PushRequest {
                delivery,
                ..push(vec![7u8; max + 1])
            })
            .await
            .expect_err("an oversized payload is refused");
        assert!(
            matches!(err, PushError::PayloadTooLarge { len, max: m } if len == max + 1 && m == max),
            "{err:?}"
        );
    }
    let stored = store
        .read(StreamKey::new("demo", "chat", "u42"), 0, 10, 0)
        .await
        .expect("read");
    assert!(stored.messages.is_empty(), "nothing was stored: {stored:?}");

    // The largest accepted payload fits a frame, whatever its bytes.
    let largest: Vec<u8> = (0..max).map(|i| (i * 7919 % 251) as u8).collect();
    pusher
        .push(push(largest.clone()))
        .await
        .expect("the largest payload is taken");
    let message = next_message(&client).await;
    assert_eq!(message.payload.len(), max);
    assert_eq!(&message.payload[..], &largest[..]);
    assert_eq!(message.seq, 1);

    pusher.push(push("next")).await.expect("a normal push");
    let message = next_message(&client).await;
    assert_eq!(&message.payload[..], b"next");
    assert_eq!(message.seq, 2);
}

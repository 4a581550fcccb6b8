//! `PushHandle` against real clients over loopback TCP: a push whose
//! caller goes away during the store commit still reaches the devices
//! online, and a payload no device could receive is refused at push time.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use pike_api::server::{
    Append, Appended, BoxFuture, Delivery, Gateway, MemoryStore, PUSH_FRAME_OVERHEAD, PushError,
    PushHandle, PushRequest, ReadBatch, Store, StoreError, StreamKey, Target, UplinkRecord,
};
use support::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, LIMIT, Message, PikeClient, TestTls,
    Wire, connector, trace_init,
};
use tokio::sync::Notify;

/// A [`MemoryStore`] whose appends, while the gate is closed, commit and
/// then hold their answer until [`CommitGate::open`]: a commit whose fsync
/// is slow to come back, with the data already on disk.
#[derive(Debug, Default)]
struct CommitGate {
    inner: MemoryStore,
    closed: AtomicBool,
    committed: Notify,
    gate: Notify,
}

impl CommitGate {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.gate.notify_waiters();
    }
}

impl Store for CommitGate {
    fn append(&self, batch: Vec<Append>) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        Box::pin(async move {
            let result = self.inner.append(batch).await;
            if self.closed.load(Ordering::SeqCst) {
                let opened = self.gate.notified();
                self.committed.notify_one();
                opened.await;
            }
            result
        })
    }

    fn read(
        &self,
        stream: StreamKey,
        after: u64,
        max: usize,
        now: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, StoreError>> {
        self.inner.read(stream, after, max, now)
    }

    fn set_position(
        &self,
        stream: StreamKey,
        device: String,
        seq: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.set_position(stream, device, seq)
    }

    fn position(
        &self,
        stream: StreamKey,
        device: String,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        self.inner.position(stream, device)
    }

    fn update_tags(
        &self,
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.update_tags(app, biz, alias, bind, unbind)
    }

    fn tag_members(
        &self,
        app: String,
        biz: String,
        tag: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.tag_members(app, biz, tag, limit)
    }

    fn touch_alias(
        &self,
        app: String,
        biz: String,
        alias: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.touch_alias(app, biz, alias)
    }

    fn aliases(
        &self,
        app: String,
        biz: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.aliases(app, biz, limit)
    }

    fn uplink_record(
        &self,
        stream: StreamKey,
        key: String,
    ) -> BoxFuture<'_, Result<Option<UplinkRecord>, StoreError>> {
        self.inner.uplink_record(stream, key)
    }

    fn record_uplink(
        &self,
        stream: StreamKey,
        key: String,
        record: UplinkRecord,
        now: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.record_uplink(stream, key, record, now)
    }
}

fn push(payload: impl Into<Bytes>) -> PushRequest {
    PushRequest {
        app: "demo".into(),
        biz: "chat".into(),
        target: Target::Alias("u42".into()),
        payload: payload.into(),
        delivery: Delivery::Reliable { ttl: None },
        priority: 0,
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
    let store = Arc::new(CommitGate::default());
    let (pusher, client, _tls) = gateway_and_client(store.clone()).await;

    store.close();
    let committed = store.committed.notified();
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
    store.open();

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

//! The gateway (`pike_api::server::Gateway`) delivering to real clients over
//! loopback TCP, with races made deterministic by a store whose reads can be
//! held.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use pike_api::server::{
    Append, Appended, BoxFuture, Delivery, Gateway, MemoryStore, PushRequest, ReadBatch, Store,
    StoreError, StreamKey, Target, UplinkRecord,
};
use support::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, LIMIT, TestTls, Wire, connector,
    trace_init,
};
use tokio::sync::Notify;

/// A [`MemoryStore`] whose reads, while the gate is closed, take their
/// snapshot and then hold the answer until [`GatedStore::open_gate`].
#[derive(Debug, Default)]
struct GatedStore {
    inner: MemoryStore,
    closed: AtomicBool,
    reading: Notify,
    gate: Notify,
}

impl GatedStore {
    fn open_gate(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.gate.notify_waiters();
    }
}

impl Store for GatedStore {
    fn append(&self, batch: Vec<Append>) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        self.inner.append(batch)
    }

    fn read(
        &self,
        stream: StreamKey,
        after: u64,
        max: usize,
        now: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, StoreError>> {
        Box::pin(async move {
            // The snapshot is taken first; the answer is held: a read that
            // is slow to come back.
            let result = self.inner.read(stream, after, max, now).await;
            if self.closed.load(Ordering::SeqCst) {
                let opened = self.gate.notified();
                self.reading.notify_one();
                opened.await;
            }
            result
        })
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

fn push(payload: &'static str) -> PushRequest {
    PushRequest {
        app: "demo".into(),
        biz: "chat".into(),
        target: Target::Alias("u42".into()),
        payload: Bytes::from_static(payload.as_bytes()),
        delivery: Delivery::Reliable { ttl: None },
        priority: 0,
    }
}

/// A message stored while the login's own store read is in flight (so
/// before the login is registered for notifications) still reaches the
/// client without waiting for another push.
#[tokio::test]
async fn message_stored_during_login_is_delivered() {
    let _trace = trace_init();
    let store = Arc::new(GatedStore::default());
    store.push_before_login();
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .store(store.clone())
        .bind()
        .await
        .unwrap();
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());

    let tls = TestTls::new().await;
    let proxy = ChannelProxy::builder(connector(Wire::Tcp, addr, &tls, "d1"))
        .channel_config(ClientConfig::default())
        .build();
    let client = proxy
        .client(ClientOptions::new("chat", "u42", "any"))
        .unwrap();
    client.start();

    // The login's read is held: store a message now, then let it go.
    tokio::time::timeout(LIMIT, store.reading.notified())
        .await
        .unwrap();
    let receipt = pusher.push(push("during-login")).await.unwrap();
    assert_eq!(
        (receipt.stored, receipt.online),
        (1, 0),
        "not registered yet"
    );
    store.open_gate();

    let received = tokio::time::timeout(Duration::from_secs(10), async {
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
    .expect("the message stored during the login arrives without another push");
    assert_eq!(&received.payload[..], b"during-login");
    assert_eq!(received.seq, 1);
}

impl GatedStore {
    fn push_before_login(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

//! The HTTP server's limits over real sockets: a client that sends half a
//! header (or nothing) is disconnected after the header-read timeout,
//! connections over the cap are refused while requests keep being served,
//! requests over the in-flight cap or the request timeout get JSON 503s,
//! and a push cut short by the timeout is still delivered to the device
//! online.

mod http_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_support::{DEMO_KEY, Harness, within};
use pike_api::server::{
    Append, Appended, BoxFuture, MemoryStore, ReadBatch, Store, StoreError, StreamKey, UplinkRecord,
};
use pike_server::http::ServeConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Connects a raw socket to the harness's HTTP port.
async fn raw(h: &Harness) -> TcpStream {
    let addr = h.base.trim_start_matches("http://");
    within("connect", TcpStream::connect(addr))
        .await
        .expect("connect")
}

/// Reads until the server closes the socket; returns what it sent.
async fn until_closed(socket: &mut TcpStream) -> Vec<u8> {
    within("the server closes the socket", async {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

/// Slowloris: a client that sends half a request header, or nothing, is
/// disconnected once the header-read timeout passes, not kept forever.
#[tokio::test]
async fn a_client_sending_half_a_header_is_disconnected_after_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let h = Harness::start_custom(
        |b| b,
        |state| state,
        ServeConfig::default().with_header_read_timeout(timeout),
    )
    .await;
    let started = tokio::time::Instant::now();
    let mut half = raw(&h).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: pike\r\nX-Slow: ")
        .await
        .expect("write half a header");
    let mut silent = raw(&h).await;
    let answer = until_closed(&mut half).await;
    assert!(
        started.elapsed() >= timeout,
        "closed only after the timeout"
    );
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "no answer to half a request: {:?}",
        String::from_utf8_lossy(&answer)
    );
    until_closed(&mut silent).await;
    // The server still answers whole requests.
    let reply = h.send(h.http.get(h.url("/healthz"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// Past the cap on open connections, a new connection is answered `503
/// overloaded` and closed at once (no descriptor held, nothing read),
/// while requests on admitted connections are still served.
#[tokio::test]
async fn connections_over_the_cap_are_refused_while_requests_succeed() {
    let h = Harness::start_custom(
        |b| b,
        |state| state,
        ServeConfig::default()
            .with_max_connections(2)
            .with_header_read_timeout(Duration::from_secs(60)),
    )
    .await;
    // One slot held by a client that sends nothing; the other by the
    // harness's HTTP client (its pooled, kept-alive connection).
    let _idle = raw(&h).await;
    let reply = h.send(h.http.get(h.url("/healthz"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    for _ in 0..3 {
        let mut over = raw(&h).await;
        let answer = String::from_utf8_lossy(&until_closed(&mut over).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        assert!(answer.contains(r#""code":"overloaded""#), "{answer:?}");
    }

    let reply = h.send(h.http.get(h.url("/healthz"))).await;
    assert_eq!(reply.status, 200, "an admitted connection is still served");
    let reply = h
        .push(json!({"biz": "chat", "alias": "u1", "payload": "x"}))
        .await;
    assert_eq!(reply.receipt(), (1, 0, 0));
}

/// A [`MemoryStore`] whose appends, while the gate is closed, commit and
/// then hold their answer until [`HeldStore::open`].
#[derive(Debug, Default)]
struct HeldStore {
    inner: MemoryStore,
    closed: AtomicBool,
    committed: Notify,
    gate: Notify,
}

impl HeldStore {
    fn hold(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.gate.notify_waiters();
    }
}

impl Store for HeldStore {
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

/// Past the cap on requests in flight, a request gets `503 overloaded`;
/// once the held one finishes, requests are served again.
#[tokio::test]
async fn requests_over_the_in_flight_cap_get_503_overloaded() {
    let store = Arc::new(HeldStore::default());
    let h = Harness::start_custom(
        |b| b.store(store.clone()),
        |state| state.with_max_in_flight(1),
        ServeConfig::default(),
    )
    .await;
    store.hold();
    let committed = store.committed.notified();
    let held = {
        let request = h
            .http
            .post(h.url("/v1/push"))
            .bearer_auth(DEMO_KEY)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({"biz": "chat", "alias": "u1", "payload": "held"}).to_string());
        tokio::spawn(request.send())
    };
    within("the push reaches the store", committed).await;

    let reply = h.get("/v1/presence?biz=chat&alias=u1", DEMO_KEY).await;
    reply.assert_error(503, "overloaded");
    assert!(reply.error_message().contains("1 requests"), "{reply:?}");

    store.open();
    let response = within("the held push", held)
        .await
        .expect("task")
        .expect("response");
    assert_eq!(response.status().as_u16(), 200);
    let reply = h.get("/v1/presence?biz=chat&alias=u1", DEMO_KEY).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// A push that outlasts the request timeout gets `503 timeout`, and its
/// message, committed meanwhile, still reaches the device online: the
/// commit and the notification do not depend on the request.
#[tokio::test]
async fn a_push_over_the_request_timeout_is_503_and_still_delivered() {
    let store = Arc::new(HeldStore::default());
    let h = Harness::start_custom(
        |b| b.store(store.clone()),
        |state| state.with_request_timeout(Duration::from_millis(300)),
        ServeConfig::default(),
    )
    .await;
    let mut client = h.client("demo", "d1", "chat", "u42").await;
    store.hold();
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "late"}))
        .await;
    reply.assert_error(503, "timeout");
    assert!(reply.error_message().contains("300 ms"), "{reply:?}");

    store.open();
    let delivery = client.next_delivery().await;
    assert_eq!(&delivery.payload[..], b"late");
    assert_eq!(delivery.seq, 1);
}

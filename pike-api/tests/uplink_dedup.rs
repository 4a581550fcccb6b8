//! Uplink deduplication across reconnects: the connection drops while the
//! backend holds a message; the client reconnects and resends it with the
//! same idempotency key; the backend sees the key once and the client gets
//! its success. Real sockets: the client reaches the gateway through a TCP
//! relay that the test cuts.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use pike_api::server::{BoxFuture, Gateway, PushHandle, UplinkError, UplinkHandler, UplinkRequest};
use proto::tunnel::ErrorCode;
use support::gated_store::GatedStore;
use support::raw::Raw;
use support::{
    ChannelProxy, ClientConfig, ClientOptions, LIMIT, TestTls, Wire, connector, running, trace_init,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

/// A backend that counts the calls per idempotency key and holds them while
/// its gate is closed.
#[derive(Debug)]
struct HeldBackend {
    gate: Semaphore,
    calls: Mutex<HashMap<String, usize>>,
    called: Notify,
}

impl HeldBackend {
    /// A backend holding every call until its gate opens.
    fn held() -> Arc<Self> {
        Arc::new(Self {
            gate: Semaphore::new(0),
            calls: Mutex::new(HashMap::new()),
            called: Notify::new(),
        })
    }

    fn calls(&self, key: &str) -> usize {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl UplinkHandler for HeldBackend {
    fn route(&self, _app: &str, _biz: &str, _saved: &str, _avoid: Option<&str>) -> Option<String> {
        Some("r1".into())
    }

    fn deliver(&self, request: UplinkRequest) -> BoxFuture<'_, Result<(), UplinkError>> {
        Box::pin(async move {
            *self
                .calls
                .lock()
                .unwrap()
                .entry(request.idempotency_key)
                .or_default() += 1;
            self.called.notify_one();
            let _ = self.gate.acquire().await;
            Ok(())
        })
    }
}

/// A TCP relay to `upstream` whose live connections can be cut.
struct Relay {
    addr: SocketAddr,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let registry = pipes.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                registry.lock().unwrap().push(pipe);
            }
        });
        Self { addr, pipes }
    }

    /// Drops every relayed connection (both sockets close).
    fn cut(&self) {
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }
}

/// The connection of `app` other than `old` whose trace shows an uplink.
fn resend_seen(pusher: &PushHandle, old: &str) -> bool {
    pusher.connections("demo", 100).iter().any(|c| {
        c.token != old
            && pusher
                .trace("demo", &c.token)
                .is_some_and(|t| t.iter().any(|e| e.signal == "uplink"))
    })
}

#[tokio::test]
async fn a_resend_after_a_reconnect_joins_the_call_in_flight() {
    let _trace = trace_init();
    let backend = HeldBackend::held();
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .uplink(backend.clone())
        .bind()
        .await
        .unwrap();
    let gateway_addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());
    let relay = Relay::start(gateway_addr).await;

    let tls = TestTls::new().await;
    let mut config = ClientConfig::default();
    config
        .backoff(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(200),
            0.5,
        )
        .unwrap()
        .reconnect_spread(std::time::Duration::from_millis(50))
        .unwrap();
    let proxy = ChannelProxy::builder(connector(Wire::Tcp, relay.addr, &tls, "device-1"))
        .channel_config(config)
        .build();
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", "any"))
        .unwrap();
    chat.start();
    running(&chat).await;
    let first = pusher.connections("demo", 100);
    assert_eq!(first.len(), 1);
    let first = first[0].token.clone();

    // The backend holds the message; the connection drops meanwhile.
    let called = backend.called.notified();
    let sending = chat.send_with_key("hello", "key-1");
    tokio::time::timeout(LIMIT, called)
        .await
        .expect("the backend got the message");
    relay.cut();

    // The client comes back and resends the message on its new connection.
    tokio::time::timeout(LIMIT, async {
        while !resend_seen(&pusher, &first) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the resend reached the gateway on a new connection");

    // The backend answers the first call: both connections' deliveries end.
    backend.gate.close();
    let sent = tokio::time::timeout(LIMIT, sending)
        .await
        .expect("the send finished in time");
    assert!(sent.is_ok(), "the client got its success: {sent:?}");
    assert_eq!(backend.calls("key-1"), 1, "the backend saw the key once");

    // And a later resend (or a new send with the same key) finds the
    // recorded delivery.
    let again = tokio::time::timeout(LIMIT, chat.send_with_key("hello", "key-1"))
        .await
        .expect("in time");
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(backend.calls("key-1"), 1);
}

/// The next frame acks uplink `seq` as accepted.
async fn assert_accepted(raw: &mut Raw, seq: u64) {
    let ack = tokio::time::timeout(LIMIT, raw.uplink_ack()).await.unwrap();
    assert_eq!((ack.seq, ack.code), (seq, ErrorCode::Unspecified as i32));
}

/// `Uplink.first_attempt` skips the dedup lookup and nothing else: the
/// outcome is still recorded before the ack, so a resend of the same key
/// on a later connection (not flagged) is looked up and answered from the
/// record without reaching the backend again.
#[tokio::test]
async fn a_first_attempt_skips_the_lookup_and_its_resend_still_finds_the_record() {
    let _trace = trace_init();
    let store = Arc::new(GatedStore::default());
    let backend = HeldBackend::held();
    backend.gate.close(); // every call goes on at once
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .store(store.clone())
        .uplink(backend.clone())
        .bind()
        .await
        .unwrap();
    let addr = gateway.local_addrs()[0].1;
    tokio::spawn(gateway.serve());

    let mut first = Raw::device(addr, "demo", "d1").await;
    assert_eq!(first.login(0, "u1", "any").await.code, 0);
    first.uplink_keyed(1, "generated-1", true).await;
    assert_accepted(&mut first, 1).await;
    assert_eq!(backend.calls("generated-1"), 1);
    assert_eq!(
        store.uplink_lookups.load(Ordering::SeqCst),
        0,
        "a first attempt is not looked up"
    );
    first.uplink_keyed(2, "chosen-2", false).await;
    assert_accepted(&mut first, 2).await;
    assert_eq!(store.uplink_lookups.load(Ordering::SeqCst), 1);
    drop(first);

    // The ack was lost, say: the client resends on a new connection.
    let mut again = Raw::device(addr, "demo", "d1").await;
    assert_eq!(again.login(0, "u1", "any").await.code, 0);
    again.uplink_keyed(1, "generated-1", false).await;
    assert_accepted(&mut again, 1).await;
    assert_eq!(store.uplink_lookups.load(Ordering::SeqCst), 2);
    assert_eq!(
        backend.calls("generated-1"),
        1,
        "the resend is answered from the record"
    );
}

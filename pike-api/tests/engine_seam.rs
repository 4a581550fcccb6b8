//! The engine seam seen from outside: a gateway built with an engine of its
//! own (`GatewayBuilder::engine`), here the embedded engine wrapped to count
//! route-table subscriptions and to fail on demand. Checks that logins
//! subscribe before they read and give every subscription back (logout,
//! refused login, dropped connection), and that an unreachable engine
//! refuses pushes and logins with retryable errors instead of accepting
//! what it cannot store.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pike_api::server::engine::{
    AppendPush, Engine, EngineError, Inbox, Interest, LocalDelivery, LoginStart, Position,
    RouteTarget, Router, TransientMessage,
};
use pike_api::server::{
    Appended, BoxFuture, Delivery, Gateway, MemoryStore, PushError, PushHandle, PushRequest,
    ReadBatch, StoredMessage, StreamKey, Target,
};
use support::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, LIMIT, TestTls, Wire, connector,
    receive_until, running, trace_init,
};
use tokio::sync::Notify;

/// Route-table subscriptions held, by interest.
#[derive(Default)]
struct Counts {
    held: Mutex<HashMap<Interest, i64>>,
    changed: Notify,
}

impl Counts {
    fn total(&self) -> i64 {
        self.held.lock().unwrap().values().sum()
    }

    fn of(&self, interest: &Interest) -> i64 {
        self.held
            .lock()
            .unwrap()
            .get(interest)
            .copied()
            .unwrap_or(0)
    }

    fn add(&self, interest: Interest, by: i64) {
        *self.held.lock().unwrap().entry(interest).or_default() += by;
        self.changed.notify_waiters();
    }

    /// Waits (bounded) until `done` holds.
    async fn wait(&self, done: impl Fn(&Self) -> bool) -> bool {
        tokio::time::timeout(LIMIT, async {
            loop {
                let changed = self.changed.notified();
                if done(self) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }
}

/// The embedded router, counting subscriptions.
struct CountingRouter {
    inner: Arc<dyn Router>,
    counts: Arc<Counts>,
}

impl Router for CountingRouter {
    fn subscribe(&self, interest: Interest) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            self.inner.subscribe(interest.clone()).await?;
            self.counts.add(interest, 1);
            Ok(())
        })
    }

    fn unsubscribe(&self, interest: Interest) {
        self.inner.unsubscribe(interest.clone());
        self.counts.add(interest, -1);
    }

    fn stored(&self, stream: &StreamKey, message: &Arc<StoredMessage>) -> usize {
        self.inner.stored(stream, message)
    }

    fn transient(
        &self,
        target: RouteTarget,
        message: TransientMessage,
    ) -> BoxFuture<'_, Result<LocalDelivery, EngineError>> {
        self.inner.transient(target, message)
    }
}

/// The embedded inbox, unreachable while `down` counts logins or pushes to
/// refuse.
struct FlakyInbox {
    inner: Arc<dyn Inbox>,
    refuse_logins: AtomicUsize,
    refuse_appends: AtomicUsize,
}

fn take(budget: &AtomicUsize) -> bool {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Inbox for FlakyInbox {
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }

    fn append(&self, push: AppendPush) -> BoxFuture<'_, Result<Vec<Appended>, EngineError>> {
        if take(&self.refuse_appends) {
            return Box::pin(async { Err(EngineError::Unavailable("no quorum".into())) });
        }
        self.inner.append(push)
    }

    fn read(
        &self,
        stream: StreamKey,
        after: Position,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, EngineError>> {
        self.inner.read(stream, after, max, now_ms)
    }

    fn login(
        &self,
        stream: StreamKey,
        device: String,
        last_acked: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<LoginStart, EngineError>> {
        if take(&self.refuse_logins) {
            return Box::pin(async { Err(EngineError::Unavailable("no quorum".into())) });
        }
        self.inner.login(stream, device, last_acked, max, now_ms)
    }

    fn ack(
        &self,
        stream: StreamKey,
        device: String,
        at: Position,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        self.inner.ack(stream, device, at)
    }
}

struct Cluster {
    pusher: PushHandle,
    addr: std::net::SocketAddr,
    counts: Arc<Counts>,
    inbox: Arc<FlakyInbox>,
    tls: TestTls,
}

impl Cluster {
    async fn start(refuse_logins: usize) -> Self {
        let counts = Arc::new(Counts::default());
        let (engine_counts, inbox_slot) = (counts.clone(), Arc::new(Mutex::new(None)));
        let slot = inbox_slot.clone();
        let gateway = Gateway::builder()
            .tcp("127.0.0.1:0".parse().unwrap())
            .engine(move |node| {
                let embedded = Engine::embedded(Arc::new(MemoryStore::new()), node);
                let inbox = Arc::new(FlakyInbox {
                    inner: embedded.inbox.clone(),
                    refuse_logins: AtomicUsize::new(refuse_logins),
                    refuse_appends: AtomicUsize::new(0),
                });
                *slot.lock().unwrap() = Some(inbox.clone());
                Engine {
                    inbox,
                    router: Arc::new(CountingRouter {
                        inner: embedded.router.clone(),
                        counts: engine_counts,
                    }),
                    ..embedded
                }
            })
            .bind()
            .await
            .unwrap();
        let addr = gateway.local_addrs()[0].1;
        let pusher = gateway.push_handle();
        tokio::spawn(gateway.serve());
        let inbox = inbox_slot.lock().unwrap().take().expect("engine built");
        Self {
            pusher,
            addr,
            counts,
            inbox,
            tls: TestTls::new().await,
        }
    }

    fn proxy(&self, device: &str) -> ChannelProxy {
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
        ChannelProxy::builder(connector(Wire::Tcp, self.addr, &self.tls, device))
            .channel_config(config)
            .build()
    }

    async fn push(&self, alias: &str, text: &str) -> Result<(), PushError> {
        self.pusher
            .push(PushRequest {
                app: "demo".into(),
                biz: "chat".into(),
                target: Target::Alias(alias.into()),
                payload: Bytes::from(text.to_owned()),
                delivery: Delivery::Reliable { ttl: None },
                priority: 0,
                receipt: false,
            })
            .await
            .map(drop)
    }
}

fn device(device: &str) -> Interest {
    Interest::Device {
        app: "demo".into(),
        device: device.into(),
    }
}

fn stream(alias: &str) -> Interest {
    Interest::Stream(StreamKey::new("demo", "chat", alias))
}

#[tokio::test]
async fn a_login_holds_its_stream_subscription_until_it_logs_out() {
    let _trace = trace_init();
    let cluster = Cluster::start(0).await;
    let proxy = cluster.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", "any"))
        .unwrap();
    chat.start();
    running(&chat).await;
    assert_eq!(cluster.counts.of(&stream("u42")), 1);
    // `AllowAll` vouches for the device id: the login serves device pushes.
    assert_eq!(cluster.counts.of(&device("device-1")), 1);
    assert_eq!(cluster.counts.total(), 2);

    cluster.push("u42", "m1").await.unwrap();
    cluster.push("u42", "m2").await.unwrap();
    assert_eq!(
        receive_until(&chat, 2).await,
        vec![(1, "m1".into()), (2, "m2".into())]
    );

    chat.stop();
    assert!(
        cluster.counts.wait(|c| c.total() == 0).await,
        "the logout gave the subscription back: {}",
        cluster.counts.total()
    );
}

#[tokio::test]
async fn a_dropped_connection_gives_every_subscription_back() {
    let _trace = trace_init();
    let cluster = Cluster::start(0).await;
    let proxy = cluster.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u1", "any"))
        .unwrap();
    let news = proxy
        .client(ClientOptions::new("news", "u1", "any"))
        .unwrap();
    chat.start();
    news.start();
    running(&chat).await;
    running(&news).await;
    // Each login holds its stream and the (shared) device.
    assert!(cluster.counts.wait(|c| c.total() == 4).await);
    assert_eq!(cluster.counts.of(&device("device-1")), 2);

    drop((chat, news, proxy));
    assert!(
        cluster.counts.wait(|c| c.total() == 0).await,
        "held after the connection closed: {}",
        cluster.counts.total()
    );
    assert!(
        tokio::time::timeout(LIMIT, async {
            while cluster.pusher.connection_count() != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn a_login_the_engine_cannot_serve_is_refused_retryably_and_leaves_no_subscription() {
    let _trace = trace_init();
    // The first two logins find the engine unreachable.
    let cluster = Cluster::start(2).await;
    let proxy = cluster.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", "any"))
        .unwrap();
    chat.start();
    // OVERLOADED is retryable: the client logs in again until it is in.
    let (_, before) = support::until(&chat, |e| matches!(e, ClientEvent::Running { .. })).await;
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, ClientEvent::OnStop { .. })),
        "{before:?}"
    );
    assert_eq!(cluster.inbox.refuse_logins.load(Ordering::SeqCst), 0);
    // The refused attempts subscribed too, and gave it back.
    assert_eq!(cluster.counts.of(&stream("u42")), 1);
    let conns = cluster.pusher.connections("demo", 10);
    let refusals = conns
        .iter()
        .filter_map(|c| cluster.pusher.trace("demo", &c.token))
        .flatten()
        .filter(|e| e.signal == "auth" && e.detail.contains("refused Overloaded"))
        .count();
    assert_eq!(refusals, 2, "both refusals traced");
}

#[tokio::test]
async fn a_push_the_engine_cannot_store_is_refused_as_unavailable() {
    let _trace = trace_init();
    let cluster = Cluster::start(0).await;
    cluster.inbox.refuse_appends.store(1, Ordering::SeqCst);
    let refused = cluster.push("u42", "lost?").await;
    assert!(
        matches!(&refused, Err(PushError::Unavailable(reason)) if reason.contains("no quorum")),
        "{refused:?}"
    );
    // Accepted once the engine is back, and delivered to a later login.
    cluster.push("u42", "kept").await.unwrap();
    let proxy = cluster.proxy("device-1");
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", "any"))
        .unwrap();
    chat.start();
    running(&chat).await;
    assert_eq!(receive_until(&chat, 1).await, vec![(1, "kept".into())]);
}

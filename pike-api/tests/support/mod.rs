//! Shared by the client tests: the test gateway from `pike-channel`
//! (feature `_test-util`), a proxy with fast reconnects, and event helpers
//! that never wait longer than `LIMIT`.
#![allow(dead_code, unused_imports, unreachable_pub)]

pub mod gated_store;
pub mod raw;

use std::sync::Arc;
use std::time::Duration;

pub use pike_api::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, ClientState, Message, Mode, PikeClient,
    StopReason,
};
pub use pike_channel::test_util::{TestGateway, TestServer, TestTls, Wire, connector, trace_init};

/// Bound on every wait (hangs only; nothing sleeps).
pub const LIMIT: Duration = Duration::from_secs(30);

/// The credential the test gateway accepts.
pub const CREDENTIAL: &str = "secret";

/// A gateway served over `wire` on loopback.
pub struct Fixture {
    pub wire: Wire,
    pub tls: TestTls,
    pub gateway: TestGateway,
    pub server: Option<TestServer>,
}

impl Fixture {
    pub async fn new(wire: Wire) -> Self {
        let tls = TestTls::new().await;
        let gateway = TestGateway::new(CREDENTIAL);
        let server = gateway
            .bind(wire, "127.0.0.1:0".parse().unwrap(), &tls)
            .await
            .unwrap();
        Self {
            wire,
            tls,
            gateway,
            server: Some(server),
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("server running").addr()
    }

    /// A proxy for device `device`, reconnecting fast.
    pub fn proxy(&self, device: &str) -> ChannelProxy {
        let mut config = ClientConfig::default();
        config
            .backoff(Duration::from_millis(10), Duration::from_millis(200), 0.5)
            .unwrap()
            .reconnect_spread(Duration::from_millis(50))
            .unwrap();
        ChannelProxy::builder(connector(self.wire, self.addr(), &self.tls, device))
            .channel_config(config)
            .build()
    }

    /// Kills the server like a crash.
    pub async fn kill(&mut self) -> std::net::SocketAddr {
        let server = self.server.take().expect("server running");
        let addr = server.addr();
        server.kill().await;
        addr
    }

    /// Serves again on `addr` (same port) with the same gateway state.
    pub async fn restart_on(&mut self, addr: std::net::SocketAddr) {
        let server = self.gateway.bind(self.wire, addr, &self.tls).await.unwrap();
        self.server = Some(server);
    }
}

/// The client's next event.
pub async fn next(client: &PikeClient) -> ClientEvent {
    tokio::time::timeout(LIMIT, client.next_event())
        .await
        .expect("an event in time")
        .expect("client alive")
}

/// The next event that is not a connectivity event.
pub async fn next_lifecycle(client: &PikeClient) -> ClientEvent {
    loop {
        let event = next(client).await;
        if !event.is_connectivity() {
            return event;
        }
    }
}

/// Skips events until one matches; returns it and the skipped ones.
pub async fn until(
    client: &PikeClient,
    pred: impl Fn(&ClientEvent) -> bool,
) -> (ClientEvent, Vec<ClientEvent>) {
    let mut skipped = Vec::new();
    loop {
        let event = next(client).await;
        if pred(&event) {
            return (event, skipped);
        }
        skipped.push(event);
    }
}

/// Waits for `Running`, checking that only `OnStart` and connectivity
/// events come before it.
pub async fn running(client: &PikeClient) {
    let (_, before) = until(client, |e| matches!(e, ClientEvent::Running { .. })).await;
    assert!(
        before
            .iter()
            .all(|e| e.is_connectivity() || *e == ClientEvent::OnStart),
        "{before:?}"
    );
}

/// Reliable messages received until (and including) sequence `last`, as
/// (seq, text); fails on any other lifecycle event.
pub async fn receive_until(client: &PikeClient, last: u64) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    loop {
        match next_lifecycle(client).await {
            ClientEvent::OnReceive(m) => {
                let seq = m.seq;
                got.push((seq, text(&m)));
                if seq >= last {
                    return got;
                }
            }
            ClientEvent::OnSendSuccess { .. } => {}
            other => panic!("unexpected {other:?} after {got:?}"),
        }
    }
}

pub fn text(message: &Message) -> String {
    String::from_utf8_lossy(&message.payload).into_owned()
}

/// A shared client (for tasks that send while others read events).
pub fn shared(client: PikeClient) -> Arc<PikeClient> {
    Arc::new(client)
}

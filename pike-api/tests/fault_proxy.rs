//! Devices ↔ gateway through a fault proxy (`faultproxy`): reliable pushes
//! and uplinks go on while every write is sliced to one byte, latency is
//! added, and the connection is reset every few messages. Every message
//! reaches the app exactly once and in order, and every uplink reaches the
//! backend once, in order, and is acked to the app once.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use faultproxy::{Direction, Proxy};
use pike_api::server::{
    BoxFuture, Delivery, Gateway, PushRequest, Target, UplinkError, UplinkHandler, UplinkRequest,
};
use support::*;

/// Messages pushed between two resets.
const K: u64 = 8;
/// Resets during the run.
const CUTS: u64 = 8;
/// Uplinks the app sends between two resets.
const UPLINKS_PER_CUT: usize = 3;

/// A backend that records each uplink payload with its idempotency key.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<(String, String)>>,
}

impl UplinkHandler for Recorder {
    fn route(&self, _app: &str, _biz: &str, _saved: &str, _avoid: Option<&str>) -> Option<String> {
        Some("r1".into())
    }

    fn deliver(&self, request: UplinkRequest) -> BoxFuture<'_, Result<(), UplinkError>> {
        Box::pin(async move {
            let payload = String::from_utf8_lossy(&request.payload).into_owned();
            self.seen
                .lock()
                .unwrap()
                .push((request.idempotency_key, payload));
            Ok(())
        })
    }
}

fn push(i: u64) -> PushRequest {
    PushRequest {
        app: "demo".into(),
        biz: "chat".into(),
        target: Target::Alias("u42".into()),
        payload: Bytes::from(format!("m{i}")),
        delivery: Delivery::Reliable { ttl: None },
        priority: 0,
        receipt: false,
    }
}

#[tokio::test]
async fn pushes_and_uplinks_survive_slicing_latency_and_resets() {
    let _trace = trace_init();
    let backend = Arc::new(Recorder::default());
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .uplink(backend.clone())
        .bind()
        .await
        .unwrap();
    let gateway_addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());

    let net = Proxy::tcp("127.0.0.1:0".parse().unwrap(), gateway_addr)
        .await
        .unwrap();
    let faults = net.handle();
    faults.set_slice(Direction::Both, Some(1));
    faults.set_latency(
        Direction::Both,
        Duration::from_millis(2),
        Duration::from_millis(3),
    );

    let tls = TestTls::new().await;
    let mut config = ClientConfig::default();
    config
        .backoff(Duration::from_millis(10), Duration::from_millis(100), 0.5)
        .unwrap()
        .reconnect_spread(Duration::from_millis(20))
        .unwrap()
        // Each cut can catch an uplink unacked and cost it a transmission
        // (the default allows 5 before `OnSendFailure`).
        .max_send_attempts(u32::try_from(CUTS).unwrap() + 2)
        .unwrap();
    let proxy = ChannelProxy::builder(connector(Wire::Tcp, net.local_addr(), &tls, "device-1"))
        .channel_config(config)
        .build();
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", "any"))
        .unwrap();
    chat.start();
    running(&chat).await;

    let mut got: Vec<(u64, String)> = Vec::new();
    let mut sends = Vec::new();
    let mut send_successes = 0usize;
    let total = K * CUTS;
    for cut in 0..CUTS {
        for i in cut * K + 1..=(cut + 1) * K {
            tokio::time::timeout(LIMIT, pusher.push(push(i)))
                .await
                .unwrap()
                .unwrap();
        }
        for j in 0..UPLINKS_PER_CUT {
            sends.push(chat.send(format!("up-{cut}-{j}")));
        }
        // Cut in the middle of the batch: some delivered, some in flight.
        let halfway = cut * K + K / 2;
        while got.last().map_or(0, |(seq, _)| *seq) < halfway {
            match next(&chat).await {
                ClientEvent::OnReceive(m) => got.push((m.seq, text(&m))),
                ClientEvent::OnSendSuccess { .. } => send_successes += 1,
                event if event.is_connectivity() => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        faults.reset();
    }
    while got.last().map_or(0, |(seq, _)| *seq) < total {
        match next(&chat).await {
            ClientEvent::OnReceive(m) => got.push((m.seq, text(&m))),
            ClientEvent::OnSendSuccess { .. } => send_successes += 1,
            event if event.is_connectivity() => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let want: Vec<_> = (1..=total).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(got, want, "every message once, in order");

    let sent = sends.len();
    for send in sends {
        tokio::time::timeout(LIMIT, send).await.unwrap().unwrap();
    }
    let uplinks = backend.seen.lock().unwrap().clone();
    let payloads: Vec<_> = uplinks.iter().map(|(_, p)| p.clone()).collect();
    let want: Vec<_> = (0..CUTS)
        .flat_map(|cut| (0..UPLINKS_PER_CUT).map(move |j| format!("up-{cut}-{j}")))
        .collect();
    assert_eq!(
        payloads, want,
        "every uplink once, in order, at the backend"
    );
    let mut keys: Vec<_> = uplinks.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), sent, "one key per uplink");

    // The app saw each send succeed once (events and futures agree).
    while send_successes < sent {
        match next(&chat).await {
            ClientEvent::OnSendSuccess { .. } => send_successes += 1,
            ClientEvent::OnReceive(m) => panic!("duplicate delivery {m:?}"),
            event if event.is_connectivity() => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(send_successes, sent);

    let stats = faults.stats();
    assert!(
        stats.resets >= CUTS / 2,
        "the cuts hit live connections: {stats:?}"
    );
    assert!(
        stats.connections > CUTS / 2,
        "the client reconnected: {stats:?}"
    );
    assert!(
        stats.writes_down > stats.bytes_down / 2,
        "sliced writes: {stats:?}"
    );
}

//! Gateway ↔ webhook backend through a fault proxy (`faultproxy`): the
//! uplink webhook URL points at the proxy in front of the test backend.
//! While the proxy blackholes, the gateway's requests time out, it retries
//! (`UPLINK_ATTEMPTS`) and then refuses the messages with
//! `BACKEND_UNAVAILABLE`; nothing reaches the backend. The proxy then
//! resets the held connections (their bytes are dropped with them) and
//! heals; the app resends the refused messages with the same idempotency
//! keys and every message reaches the backend exactly once, in order.

use std::time::Duration;

use faultproxy::{Direction, Proxy};
use pike_api::ErrorKind;

use crate::support::*;

/// Webhook timeout of the test business (the gateway's retries are three
/// of these while blackholed).
const TIMEOUT_MS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplinks_are_refused_while_blackholed_and_delivered_once_after_the_heal() {
    let backends = Backends::start(1, Duration::ZERO).await;
    let backend_url = backends.urls().remove(0);
    let backend_addr: std::net::SocketAddr = backend_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .parse()
        .expect("a socket address");
    let net = Proxy::tcp("127.0.0.1:0".parse().unwrap(), backend_addr)
        .await
        .expect("proxy");
    let faults = net.handle();
    let url = backend_url.replace(&backend_addr.to_string(), &net.local_addr().to_string());
    let server = Server::start(config(vec![app(
        "shop",
        vec![biz_with_webhooks("chat", vec![url], TIMEOUT_MS)],
    )]))
    .await;
    let proxy = server.proxy_with(Wire::Tcp, "shop", "phone", fast_reconnect());
    let client = proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("shop", "chat", "u1"),
        ))
        .expect("client");
    start(&client).await;

    // Healthy: through the proxy.
    let mut keys = Vec::new();
    for i in 1..=3 {
        let key = format!("key-{i}");
        within(
            "a send",
            client.send_with_key(format!("{i:03}"), key.clone()),
        )
        .await
        .expect("delivered");
        keys.push(key);
    }

    // Blackholed: every attempt times out; the messages are refused.
    faults.blackhole(Direction::Both, true);
    let sends: Vec<_> = (4..=6)
        .map(|i| client.send_with_key(format!("{i:03}"), format!("key-{i}")))
        .collect();
    for send in sends {
        let error = within("a refusal", send).await.expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::Rejected, "{error}");
        assert_eq!(error.code(), Some(ErrorCode::BackendUnavailable), "{error}");
    }
    assert_eq!(backends.records().await.len(), 3, "nothing got through");
    assert!(
        faults.stats().connections >= 3,
        "the gateway kept trying: {:?}",
        faults.stats()
    );

    // The cut: the held connections are reset (what they hold is lost with
    // them), then the link heals.
    faults.reset();
    poll_until("the held connections are reset", || async {
        faults.stats().active == 0
    })
    .await;
    assert!(faults.stats().resets >= 1, "{:?}", faults.stats());
    faults.heal();

    // The app resends what was refused, with the same keys, then more.
    for i in 4..=8 {
        let key = format!("key-{i}");
        within(
            "a send after the heal",
            client.send_with_key(format!("{i:03}"), key.clone()),
        )
        .await
        .expect("delivered after the heal");
        keys.push(key);
    }

    let records = backends.records().await;
    let got: Vec<(String, String)> = records
        .iter()
        .map(|r| (r.key.clone(), r.payload.clone()))
        .collect();
    let want: Vec<(String, String)> = (1..=8)
        .map(|i| (format!("key-{i}"), format!("{i:03}")))
        .collect();
    assert_eq!(got, want, "each message once, in order: {records:#?}");
    assert!(
        records.windows(2).all(|w| w[0].seq < w[1].seq),
        "Pike-Seq increases: {records:#?}"
    );
}

//! The gateway (`pike_api::server::Gateway`) delivering to real clients over
//! loopback TCP, with races made deterministic by a store whose reads can be
//! held.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pike_api::server::{Delivery, Gateway, PushRequest, Target};
use support::gated_store::GatedStore;
use support::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, LIMIT, TestTls, Wire, connector,
    trace_init,
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

/// A message stored while the login's own store read is in flight (so
/// before the login is registered for notifications) still reaches the
/// client without waiting for another push.
#[tokio::test]
async fn message_stored_during_login_is_delivered() {
    let _trace = trace_init();
    let store = Arc::new(GatedStore::default());
    store.reads.close();
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
    tokio::time::timeout(LIMIT, store.reads.held.notified())
        .await
        .unwrap();
    let receipt = pusher.push(push("during-login")).await.unwrap();
    assert_eq!(
        (receipt.stored, receipt.online),
        (1, 0),
        "not registered yet"
    );
    store.reads.open();

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

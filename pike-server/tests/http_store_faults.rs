//! The gateway on a store whose disk fails (`RedbStore::open_with_faults`,
//! feature `fault-injection`), seen through the HTTP API and a connected
//! device: a reliable push answers 503 with a JSON error and is neither
//! acknowledged nor delivered later; transient pushes and connected
//! devices keep working; the first push after the disk heals succeeds
//! without a restart.

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use http_support::{DEMO_KEY, Harness};
use pike_channel::proto::tunnel::{ClientHello, ErrorCode};
use pike_channel::{ClientConfig, DriverConfig, Event, LoginParams, TunnelConnector, spawn_client};
use pike_server::store::fault::{DiskFault, StoreFaults};
use pike_server::store::{RedbStore, StoreConfig};
use serde_json::json;
use tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};

/// A login attempt's outcome: `Ok`, or the code it was refused with (for
/// good or to be retried later).
async fn try_login(h: &Harness, device: &str, alias: &str) -> Result<(), ErrorCode> {
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: device.into(),
        ..ClientHello::default()
    };
    let transport = TcpTransport::new(TcpConfig::default()).expect("tcp transport");
    let dialer = Dialer::new(transport, DialerConfig::default()).expect("dialer");
    let connector = TunnelConnector::new(dialer, vec![h.gateway], hello);
    let handle = spawn_client(
        Arc::new(ClientConfig::default()),
        connector,
        &DriverConfig::default(),
    );
    let (_stream, mut events) = handle.login(LoginParams::new("chat", alias, "credential"));
    handle.start();
    http_support::within("a login outcome", async {
        loop {
            match events.recv().await.expect("client events") {
                Event::LoginOk { .. } => return Ok(()),
                Event::LoginFailed { code, .. } => return Err(code),
                Event::LoginRetry { code, message, .. } => {
                    assert!(!message.contains("pike.redb"), "no internals: {message}");
                    return Err(code);
                }
                _ => {}
            }
        }
    })
    .await
}

async fn faulty_gateway(dir: &tempfile::TempDir) -> (Harness, StoreFaults) {
    let faults = StoreFaults::new();
    let store = RedbStore::open_with_faults(
        dir.path().join("pike.redb"),
        StoreConfig::default(),
        faults.clone(),
    )
    .expect("open the store");
    let h = Harness::start_with(|b| b.store(Arc::new(store))).await;
    (h, faults)
}

/// Pushes `after` to `u42` until the store takes it (it reopens at most
/// every 100 ms once the disk heals); bounded by `within`.
async fn push_after_heal(h: &Harness) -> http_support::Reply {
    http_support::within("a push after the heal", async {
        loop {
            let reply = h
                .push(json!({"biz": "chat", "alias": "u42", "payload": "after"}))
                .await;
            if reply.status != 503 {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn disk_fault(fault: DiskFault) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, faults) = faulty_gateway(&dir).await;
    let mut online = h.client("demo", "d1", "chat", "u42").await;
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "before"}))
        .await;
    assert_eq!(reply.receipt(), (1, 1, 0));
    let first = online.next_delivery().await;
    assert_eq!((first.seq, &first.payload[..]), (1, &b"before"[..]));

    faults.set(fault);
    // (1) Reliable pushes: 503 with a JSON error, nothing acknowledged.
    for alias in ["u42", "offline"] {
        let reply = h
            .push(json!({"biz": "chat", "alias": alias, "payload": "lost"}))
            .await;
        reply.assert_error(503, "unavailable");
        assert!(
            reply.error_message().contains("nothing was pushed"),
            "{fault:?}: {reply:?}"
        );
        assert!(reply.body.get("message_id").is_none(), "{reply:?}");
    }
    // (2) What needs no disk goes on: transient pushes reach the connected
    // device.
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "now", "reliable": false}))
        .await;
    assert_eq!(reply.receipt(), (0, 1, 0), "{fault:?}");
    let live = online.next_delivery().await;
    assert!(live.is_transient());
    assert_eq!(&live.payload[..], b"now");
    // A new login needs the store (position, alias): refused for now with
    // `INTERNAL`, which the client retries (`LoginRetry`).
    let login = try_login(&h, "d2", "u42").await;
    assert_eq!(login, Err(ErrorCode::Internal), "{fault:?}");

    // (3) The disk heals: the next reliable push is stored and delivered,
    // without a restart (the store reopens at most every 100 ms).
    faults.set(DiskFault::None);
    let reply = push_after_heal(&h).await;
    assert_eq!(reply.receipt(), (1, 1, 0), "{fault:?}: {reply:?}");
    let next = online.next_delivery().await;
    assert_eq!(
        &next.payload[..],
        b"after",
        "{fault:?}: the 503s stayed undelivered"
    );
    // A device that never acked reads the stream from the start: the
    // refused pushes are not in it.
    let mut late = h.client("demo", "d3", "chat", "u42").await;
    let mut got = Vec::new();
    while got.last().map(Vec::as_slice) != Some(&b"after"[..]) {
        got.push(late.next_delivery().await.payload.to_vec());
    }
    assert_eq!(got, [b"before".to_vec(), b"after".to_vec()], "{fault:?}");
    assert_eq!(try_login(&h, "d2", "u42").await, Ok(()), "{fault:?}");
}

#[tokio::test]
async fn disk_full_push_is_503_and_heals() {
    disk_fault(DiskFault::Full).await;
}

#[tokio::test]
async fn write_error_push_is_503_and_heals() {
    disk_fault(DiskFault::WriteError).await;
}

#[tokio::test]
async fn fsync_error_push_is_503_not_delivered_later_and_heals() {
    disk_fault(DiskFault::SyncError).await;
}

/// A batch while the disk fails: its reliable items share one commit, so
/// every one is `unavailable` and none is stored; its transient item still
/// reaches the device online.
#[tokio::test]
async fn a_batch_on_a_failing_disk_stores_none_of_its_reliable_items() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, faults) = faulty_gateway(&dir).await;
    let mut online = h.client("demo", "d1", "chat", "u42").await;
    faults.set(DiskFault::WriteError);
    let reply = h
        .post(
            "/v1/push/batch",
            DEMO_KEY,
            &json!({"pushes": [
                {"biz": "chat", "alias": "u42", "payload": "lost"},
                {"biz": "chat", "alias": "u42", "payload": "now", "reliable": false},
                {"biz": "chat", "alias": "other", "payload": "lost too"},
            ]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let results = reply.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{reply:?}");
    for i in [0, 2] {
        assert_eq!(results[i]["error"]["code"], "unavailable", "{reply:?}");
        assert!(results[i].get("message_id").is_none(), "{reply:?}");
    }
    assert_eq!(results[1]["online"], 1, "{reply:?}");
    let live = online.next_delivery().await;
    assert!(live.is_transient());
    assert_eq!(&live.payload[..], b"now");

    faults.set(DiskFault::None);
    let reply = push_after_heal(&h).await;
    assert_eq!(reply.receipt(), (1, 1, 0), "{reply:?}");
    // The stream starts with what came after: the batch stored nothing.
    let next = online.next_delivery().await;
    assert_eq!((next.seq, &next.payload[..]), (1, &b"after"[..]));
}

//! The HTTP API over real sockets: a real `Gateway` on 127.0.0.1 (in-memory
//! store), the router served by `pike_server::http::serve`, real Pike
//! clients (the pike-channel driver over TCP) for the online cases,
//! requests with reqwest. Helpers in `http_support/`.

mod http_support;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_support::{DEMO_KEY, DEMO_SECRET, Harness, OTHER_KEY, Reply};
use pike_api::server::PUSH_FRAME_OVERHEAD;
use pike_api::server::{
    Append, Appended, BoxFuture, GatewayConfig, MemoryStore, ReadBatch, Store, StoreError,
    StreamKey, UplinkRecord,
};
use pike_channel::proto::tunnel::ErrorCode;
use pike_server::http::{
    MAX_ALIAS_LEN, MAX_BIZ_LEN, MAX_DISCONNECT_REASON, MAX_ID_LEN, MAX_TTL_SECS, ServeConfig,
};
use pike_server::store::{RedbStore, StoreConfig};
use pike_server::token::{Scope, verify};
use serde_json::{Value, json};

// --- push ------------------------------------------------------------------

#[tokio::test]
async fn push_to_an_online_alias_is_stored_and_delivered() {
    let h = Harness::start().await;
    let mut client = h.client("demo", "d1", "chat", "u42").await;

    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "hello"}))
        .await;
    assert_eq!(reply.receipt(), (1, 1, 0));
    let delivery = client.next_delivery().await;
    assert_eq!(&delivery.payload[..], b"hello");
    assert!(!delivery.is_transient());
    // Reliable downlink is identified by (stream, seq) and leaves the
    // message id off the wire (docs/protocol.md, "Size on the wire").
    assert_eq!(delivery.seq, 1);
    assert_eq!(delivery.message_id, 0);

    // Binary payloads go as base64.
    let binary = [0_u8, 159, 146, 150, 255];
    let reply = h
        .push(json!({
            "biz": "chat", "alias": "u42",
            "payload_base64": STANDARD.encode(binary), "priority": 3, "ttl_secs": 60,
        }))
        .await;
    assert_eq!(reply.receipt(), (1, 1, 0));
    let delivery = client.next_delivery().await;
    assert_eq!(&delivery.payload[..], binary);
    assert_eq!(delivery.priority, 3);
}

#[tokio::test]
async fn push_to_an_offline_alias_is_stored_only_when_reliable() {
    let h = Harness::start().await;
    let reliable = h
        .push(json!({"biz": "chat", "alias": "nobody", "payload": "x"}))
        .await;
    assert_eq!(reliable.receipt(), (1, 0, 0));
    let transient = h
        .push(json!({"biz": "chat", "alias": "nobody", "payload": "x", "reliable": false}))
        .await;
    assert_eq!(transient.receipt(), (0, 0, 0));
}

#[tokio::test]
async fn transient_push_to_an_online_alias_is_delivered_not_stored() {
    let h = Harness::start().await;
    let mut client = h.client("demo", "d1", "chat", "u42").await;
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "now", "reliable": false}))
        .await;
    assert_eq!(reply.receipt(), (0, 1, 0));
    let delivery = client.next_delivery().await;
    assert!(delivery.is_transient());
    assert_eq!(&delivery.payload[..], b"now");
    assert_eq!(
        delivery.message_id.to_string(),
        reply.body["message_id"].as_str().expect("id")
    );
}

#[tokio::test]
async fn push_to_aliases_counts_each_alias_once() {
    let h = Harness::start().await;
    let mut client = h.client("demo", "d1", "chat", "u42").await;
    let reply = h
        .push(json!({"biz": "chat", "aliases": ["u42", "u43", "u42"], "payload": "hi"}))
        .await;
    // u42 (online) and u43 (offline) stored once each.
    assert_eq!(reply.receipt(), (2, 1, 0));
    assert_eq!(&client.next_delivery().await.payload[..], b"hi");
}

#[tokio::test]
async fn push_to_a_tag_reaches_its_members() {
    let h = Harness::start().await;
    let mut vip = h.client("demo", "d1", "chat", "u42").await;
    vip.bind_tags(&["vip"]).await;
    let _plain = h.client("demo", "d2", "chat", "u43").await;

    let reply = h
        .push(json!({"biz": "chat", "tag": "vip", "payload": "for vips"}))
        .await;
    assert_eq!(reply.receipt(), (1, 1, 0));
    assert_eq!(&vip.next_delivery().await.payload[..], b"for vips");

    let reply = h
        .push(json!({"biz": "chat", "tag": "no-members", "payload": "x"}))
        .await;
    assert_eq!(reply.receipt(), (0, 0, 0));
}

#[tokio::test]
async fn push_to_all_reaches_every_alias_of_the_business() {
    let h = Harness::start().await;
    let mut a = h.client("demo", "d1", "chat", "u42").await;
    let mut b = h.client("demo", "d2", "chat", "u43").await;
    let _elsewhere = h.client("demo", "d3", "order", "u44").await;
    let _other_app = h.client("other", "d4", "chat", "u45").await;

    let reply = h
        .push(json!({"biz": "chat", "all": true, "payload": "everyone"}))
        .await;
    assert_eq!(reply.receipt(), (2, 2, 0));
    assert_eq!(&a.next_delivery().await.payload[..], b"everyone");
    assert_eq!(&b.next_delivery().await.payload[..], b"everyone");
}

#[tokio::test]
async fn push_to_a_device_is_transient_only() {
    let h = Harness::start().await;
    let mut client = h.client("demo", "d1", "chat", "u42").await;

    let reply = h
        .push(json!({"biz": "chat", "device": "d1", "payload": "ping", "reliable": false}))
        .await;
    assert_eq!(reply.receipt(), (0, 1, 0));
    assert_eq!(&client.next_delivery().await.payload[..], b"ping");

    // Reliable is the default: the library explains why it is refused.
    let reply = h
        .push(json!({"biz": "chat", "device": "d1", "payload": "ping"}))
        .await;
    reply.assert_error(400, "invalid_request");
    assert!(
        reply.error_message().contains("transient only"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn too_many_recipients_is_422() {
    let mut config = GatewayConfig::default();
    config.max_recipients(1);
    let h = Harness::start_with(|b| b.config(config)).await;
    let reply = h
        .push(json!({"biz": "chat", "aliases": ["a", "b"], "payload": "x"}))
        .await;
    reply.assert_error(422, "too_many_recipients");
    assert!(reply.error_message().contains("limit of 1"), "{reply:?}");
}

/// A store whose appends fail.
#[derive(Debug, Default)]
struct BrokenStore(MemoryStore);

impl Store for BrokenStore {
    fn append(&self, _batch: Vec<Append>) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        Box::pin(async { Err(StoreError("disk on fire at /secret/path".into())) })
    }
    fn read(
        &self,
        stream: StreamKey,
        after_seq: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, StoreError>> {
        self.0.read(stream, after_seq, max, now_ms)
    }
    fn set_position(
        &self,
        stream: StreamKey,
        device: String,
        seq: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.0.set_position(stream, device, seq)
    }
    fn position(
        &self,
        stream: StreamKey,
        device: String,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        self.0.position(stream, device)
    }
    fn update_tags(
        &self,
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.0.update_tags(app, biz, alias, bind, unbind)
    }
    fn tag_members(
        &self,
        app: String,
        biz: String,
        tag: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.0.tag_members(app, biz, tag, limit)
    }
    fn touch_alias(
        &self,
        app: String,
        biz: String,
        alias: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.0.touch_alias(app, biz, alias)
    }
    fn aliases(
        &self,
        app: String,
        biz: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.0.aliases(app, biz, limit)
    }
    fn uplink_record(
        &self,
        stream: StreamKey,
        key: String,
    ) -> BoxFuture<'_, Result<Option<UplinkRecord>, StoreError>> {
        self.0.uplink_record(stream, key)
    }
    fn record_uplink(
        &self,
        stream: StreamKey,
        key: String,
        record: UplinkRecord,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.0.record_uplink(stream, key, record, now_ms)
    }
}

#[tokio::test]
async fn store_failure_is_503_without_internals() {
    let h = Harness::start_with(|b| b.store(Arc::new(BrokenStore::default()))).await;
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "x"}))
        .await;
    reply.assert_error(503, "unavailable");
    assert!(!reply.error_message().contains("/secret/path"), "{reply:?}");
    // Transient pushes do not touch the store.
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "x", "reliable": false}))
        .await;
    assert_eq!(reply.receipt(), (0, 0, 0));
}

#[tokio::test]
async fn push_while_shutting_down_is_503() {
    let mut h = Harness::start().await;
    h.shut_down_gateway().await;
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "x"}))
        .await;
    reply.assert_error(503, "unavailable");
    assert!(reply.error_message().contains("shutting down"), "{reply:?}");
}

// --- batch -------------------------------------------------------------------

impl Harness {
    async fn batch(&self, pushes: Vec<Value>) -> Reply {
        self.post("/v1/push/batch", DEMO_KEY, &json!({ "pushes": pushes }))
            .await
    }
}

/// The results of a 200 batch answer, checked to be one per item.
#[track_caller]
fn batch_results(reply: &Reply, items: usize) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{reply:?}");
    let results = reply.body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {}", reply.body))
        .clone();
    assert_eq!(results.len(), items, "{reply:?}");
    results
}

/// The `(stored, online, dropped)` of a batch item's receipt.
#[track_caller]
fn item_receipt(item: &Value) -> (u64, u64, u64) {
    let id = item["message_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no message_id in {item}"));
    assert!(id.parse::<u64>().is_ok(), "message_id {id:?} is not a u64");
    let n = |field: &str| {
        item[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} missing in {item}"))
    };
    (n("stored"), n("online"), n("dropped"))
}

#[tokio::test]
async fn a_batch_delivers_each_message_in_order_with_receipts_in_order() {
    let h = Harness::start().await;
    let aliases = ["u1", "u2", "u3"];
    let mut clients = Vec::new();
    for (i, alias) in aliases.iter().enumerate() {
        clients.push(h.client("demo", &format!("d{i}"), "chat", alias).await);
    }
    // Nine messages, round robin: u1 gets m0, m3, m6 and so on.
    let pushes = (0..9)
        .map(|k| json!({"biz": "chat", "alias": aliases[k % 3], "payload": format!("m{k}")}))
        .collect();
    let reply = h.batch(pushes).await;
    let results = batch_results(&reply, 9);
    let mut ids = Vec::new();
    for item in &results {
        assert_eq!(item_receipt(item), (1, 1, 0), "{item}");
        ids.push(item["message_id"].as_str().expect("id").to_owned());
    }
    for (i, client) in clients.iter_mut().enumerate() {
        for (n, k) in (i..9).step_by(3).enumerate() {
            let delivery = client.next_delivery().await;
            assert_eq!(delivery.payload, format!("m{k}").as_bytes(), "alias {i}");
            assert_eq!(delivery.seq, n as u64 + 1);
        }
    }
    // A transient item answers the id its devices see.
    let reply = h
        .batch(vec![
            json!({"biz": "chat", "alias": "u2", "payload": "now", "reliable": false}),
        ])
        .await;
    let results = batch_results(&reply, 1);
    assert_eq!(item_receipt(&results[0]), (0, 1, 0));
    let delivery = clients[1].next_delivery().await;
    assert!(delivery.is_transient());
    assert_eq!(
        delivery.message_id.to_string(),
        results[0]["message_id"].as_str().expect("id")
    );
}

#[tokio::test]
async fn an_invalid_item_refuses_the_whole_batch_and_pushes_nothing() {
    let h = Harness::start().await;
    let mut client = h.client("demo", "d1", "chat", "u1").await;
    let cases = [
        (
            json!({"biz": "chat", "alias": "u1"}),
            "pushes[2]: a payload is required",
        ),
        (
            json!({"biz": "chat", "device": "d1", "payload": "x"}),
            "pushes[2]: a push to a device is transient only",
        ),
        (
            json!({"biz": "chat", "alias": "u1", "payload": "x", "colour": "red"}),
            "pushes[2]",
        ),
    ];
    for (bad, expected) in cases {
        let pushes = vec![
            json!({"biz": "chat", "alias": "u1", "payload": "first"}),
            json!({"biz": "chat", "alias": "u2", "payload": "second"}),
            bad,
            json!({"biz": "chat", "alias": "u1", "payload": "x"}),
        ];
        let reply = h.batch(pushes).await;
        reply.assert_error(400, "invalid_request");
        assert!(reply.error_message().contains(expected), "{reply:?}");
    }
    // Nothing was pushed: the next message is u1's first, and u2 has
    // nothing stored.
    let reply = h
        .push(json!({"biz": "chat", "alias": "u1", "payload": "after"}))
        .await;
    assert_eq!(reply.receipt(), (1, 1, 0));
    let delivery = client.next_delivery().await;
    assert_eq!(&delivery.payload[..], b"after");
    assert_eq!(delivery.seq, 1);
    let mut u2 = h.client("demo", "d2", "chat", "u2").await;
    let reply = h
        .push(json!({"biz": "chat", "alias": "u2", "payload": "only"}))
        .await;
    assert_eq!(reply.receipt(), (1, 1, 0));
    assert_eq!(&u2.next_delivery().await.payload[..], b"only");
}

#[tokio::test]
async fn a_failed_item_is_an_error_entry_and_the_others_succeed() {
    let mut config = GatewayConfig::default();
    config.max_recipients(1);
    let h = Harness::start_with(|b| b.config(config)).await;
    let mut client = h.client("demo", "d1", "chat", "u1").await;
    let reply = h
        .batch(vec![
            json!({"biz": "chat", "alias": "u1", "payload": "one"}),
            json!({"biz": "chat", "aliases": ["a", "b"], "payload": "too many"}),
            json!({"biz": "chat", "alias": "u1", "payload": "three"}),
        ])
        .await;
    let results = batch_results(&reply, 3);
    assert_eq!(item_receipt(&results[0]), (1, 1, 0));
    assert_eq!(
        results[1]["error"]["code"], "too_many_recipients",
        "{reply:?}"
    );
    assert!(
        results[1]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit of 1")),
        "{reply:?}"
    );
    assert!(results[1].get("message_id").is_none(), "{reply:?}");
    assert_eq!(item_receipt(&results[2]), (1, 1, 0));
    assert_eq!(&client.next_delivery().await.payload[..], b"one");
    assert_eq!(&client.next_delivery().await.payload[..], b"three");
}

/// The reliable items of a batch are stored by one commit of the redb
/// store, in order, each with its own message id.
#[tokio::test]
async fn a_batch_of_reliable_pushes_is_one_store_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        RedbStore::open(dir.path().join("pike.redb"), StoreConfig::default())
            .expect("open the store"),
    );
    let h = Harness::start_with(|b| b.store(store.clone())).await;
    // Offline aliases: no device acks (which would commit positions).
    let pushes = (0..50)
        .map(|k| json!({"biz": "chat", "alias": format!("off{}", k % 5), "payload": format!("m{k}")}))
        .collect();
    let before = store.stats().commits;
    let reply = h.batch(pushes).await;
    let commits = store.stats().commits - before;
    let results = batch_results(&reply, 50);
    assert_eq!(commits, 1, "50 reliable pushes, {commits} commits");
    let mut ids = Vec::new();
    for item in &results {
        assert_eq!(item_receipt(item), (1, 0, 0), "{item}");
        ids.push(
            item["message_id"]
                .as_str()
                .expect("id")
                .parse::<u64>()
                .expect("u64"),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // A device logging in later gets its alias's ten, in order.
    let mut client = h.client("demo", "d1", "chat", "off3").await;
    for (n, k) in (3..50).step_by(5).enumerate() {
        let delivery = client.next_delivery().await;
        assert_eq!(delivery.payload, format!("m{k}").as_bytes());
        assert_eq!(delivery.seq, n as u64 + 1);
    }
}

#[tokio::test]
async fn store_failure_in_a_batch_is_an_unavailable_entry() {
    let h = Harness::start_with(|b| b.store(Arc::new(BrokenStore::default()))).await;
    let reply = h
        .batch(vec![
            json!({"biz": "chat", "alias": "u1", "payload": "x"}),
            json!({"biz": "chat", "alias": "u1", "payload": "x", "reliable": false}),
        ])
        .await;
    let results = batch_results(&reply, 2);
    assert_eq!(results[0]["error"]["code"], "unavailable", "{reply:?}");
    assert!(
        !reply.body.to_string().contains("/secret/path"),
        "{reply:?}"
    );
    assert_eq!(item_receipt(&results[1]), (0, 0, 0));
}

#[tokio::test]
async fn empty_and_oversized_batches_are_400_json() {
    let h = Harness::start().await;
    let reply = h.batch(Vec::new()).await;
    reply.assert_error(400, "invalid_request");
    assert!(reply.error_message().contains("empty"), "{reply:?}");

    let item = json!({"biz": "chat", "alias": "u1", "payload": "x"});
    let reply = h
        .batch(vec![item.clone(); pike_server::http::MAX_BATCH_PUSHES + 1])
        .await;
    reply.assert_error(400, "invalid_request");
    assert!(reply.error_message().contains("1000"), "{reply:?}");

    for body in [
        json!({}),
        json!({"pushes": {}}),
        json!({"pushes": [], "x": 1}),
    ] {
        let reply = h.post("/v1/push/batch", DEMO_KEY, &body).await;
        reply.assert_error(400, "invalid_request");
    }
    let reply = h
        .post_raw("/v1/push/batch", DEMO_KEY, "application/json", "{".into())
        .await;
    reply.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_full_batch_of_1_kib_payloads_fits_the_batch_limit() {
    let h = Harness::start().await;
    let payload = "p".repeat(1024);
    let pushes: Vec<Value> = (0..pike_server::http::MAX_BATCH_PUSHES)
        .map(|k| json!({"biz": "chat", "alias": format!("u{k}"), "payload": payload}))
        .collect();
    // More than the 1 MiB of a single push.
    assert!(json!({ "pushes": pushes }).to_string().len() > pike_server::http::DEFAULT_BODY_LIMIT);
    let reply = h.batch(pushes).await;
    for item in batch_results(&reply, pike_server::http::MAX_BATCH_PUSHES) {
        assert_eq!(item_receipt(&item), (1, 0, 0));
    }
    // Over the batch limit: 413 naming it.
    let limit = pike_server::http::batch_body_limit(pike_server::http::DEFAULT_BODY_LIMIT);
    let big = "x".repeat(limit);
    let reply = h
        .batch(vec![json!({"biz": "chat", "alias": "u1", "payload": big})])
        .await;
    reply.assert_error(413, "payload_too_large");
    assert!(
        reply.error_message().contains(&limit.to_string()),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_batch_without_a_valid_key_is_401() {
    let h = Harness::start().await;
    let body = json!({"pushes": [{"biz": "chat", "alias": "u1", "payload": "x"}]}).to_string();
    for request in [
        h.http.post(h.url("/v1/push/batch")),
        h.http
            .post(h.url("/v1/push/batch"))
            .bearer_auth("pk_wrong_0123456789abcdef"),
    ] {
        let reply = h
            .send(
                request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone()),
            )
            .await;
        reply.assert_error(401, "unauthorized");
        assert!(
            reply
                .headers
                .contains_key(reqwest::header::WWW_AUTHENTICATE)
        );
    }
    // Another app's key pushes into that app, not this one's.
    let reply = h
        .post(
            "/v1/push/batch",
            OTHER_KEY,
            &serde_json::from_str(&body).expect("json"),
        )
        .await;
    assert_eq!(batch_results(&reply, 1).len(), 1);
}

// --- validation --------------------------------------------------------------

#[tokio::test]
async fn invalid_push_bodies_are_400_with_an_explanation() {
    let h = Harness::start().await;
    let cases = [
        (json!({"biz": "chat", "payload": "x"}), "target is required"),
        (
            json!({"biz": "chat", "alias": "a", "tag": "t", "payload": "x"}),
            "exactly one target",
        ),
        (
            json!({"biz": "chat", "alias": "a", "all": true, "payload": "x"}),
            "exactly one target",
        ),
        (json!({"biz": "chat", "alias": "a"}), "payload is required"),
        (
            json!({"biz": "chat", "alias": "a", "payload": "x", "payload_base64": "eA=="}),
            "not both",
        ),
        (
            json!({"biz": "chat", "alias": "a", "payload_base64": "not base64!"}),
            "not base64",
        ),
        (
            json!({"biz": "chat", "alias": "", "payload": "x"}),
            "`alias` must not be empty",
        ),
        (
            json!({"biz": "chat", "aliases": [], "payload": "x"}),
            "`aliases` must not be empty",
        ),
        (
            json!({"biz": "chat", "aliases": ["a", ""], "payload": "x"}),
            "must not be empty",
        ),
        (
            json!({"biz": "", "alias": "a", "payload": "x"}),
            "`biz` must not be empty",
        ),
        (json!({"alias": "a", "payload": "x"}), "missing field `biz`"),
        (
            json!({"biz": "chat", "alias": "a", "payload": "x", "colour": "red"}),
            "unknown field `colour`",
        ),
        (
            json!({"biz": "chat", "alias": 42, "payload": "x"}),
            "invalid type",
        ),
        (
            json!({"biz": "chat", "alias": "a", "payload": "x", "priority": -1}),
            "invalid value",
        ),
        (
            json!({"biz": "chat", "alias": "a", "payload": "x", "ttl_secs": 0}),
            "between 1 and",
        ),
        (
            json!({"biz": "chat", "alias": "a", "payload": "x", "reliable": false, "ttl_secs": 5}),
            "reliable pushes only",
        ),
        (json!(["not", "an", "object"]), "invalid type"),
    ];
    for (body, expected) in cases {
        let reply = h.push(body.clone()).await;
        reply.assert_error(400, "invalid_request");
        assert!(
            reply.error_message().contains(expected),
            "{body}: expected {expected:?} in {:?}",
            reply.error_message()
        );
    }
}

#[tokio::test]
async fn malformed_json_and_wrong_content_type_are_400_json() {
    let h = Harness::start().await;
    let reply = h
        .post_raw(
            "/v1/push",
            DEMO_KEY,
            "application/json",
            "{\"biz\": ".into(),
        )
        .await;
    reply.assert_error(400, "invalid_request");

    let reply = h
        .post_raw(
            "/v1/push",
            DEMO_KEY,
            "text/plain",
            json!({"biz": "chat", "alias": "a", "payload": "x"}).to_string(),
        )
        .await;
    reply.assert_error(400, "invalid_request");
    assert!(reply.error_message().contains("Content-Type"), "{reply:?}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_json() {
    let h = Harness::start().await;
    let payload = "x".repeat(pike_server::http::DEFAULT_BODY_LIMIT + 1);
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": payload}))
        .await;
    reply.assert_error(413, "payload_too_large");
    // Nothing was pushed: the same alias has nothing stored yet.
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "small"}))
        .await;
    assert_eq!(reply.receipt(), (1, 0, 0));
}

/// Ids over the store's limit, or with control characters, are the
/// client's mistake: `400` naming the field, never `503 retry later` (which
/// backends retry forever). Checked against the real store.
#[tokio::test]
async fn ids_over_the_stores_limit_are_400_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("pike.redb"), StoreConfig::default())
        .expect("open the store");
    let h = Harness::start_with(|b| b.store(Arc::new(store))).await;
    let long = "x".repeat(MAX_ID_LEN + 1);
    let cases = [
        (
            json!({"biz": "chat", "alias": long, "payload": "x"}),
            "alias",
        ),
        (json!({"biz": "chat", "tag": long, "payload": "x"}), "tag"),
        (json!({"biz": long, "alias": "u1", "payload": "x"}), "biz"),
        (
            json!({"biz": "chat", "aliases": ["u1", long], "payload": "x"}),
            "aliases[1]",
        ),
        (
            json!({"biz": "chat", "device": long, "payload": "x", "reliable": false}),
            "device",
        ),
        (
            json!({"biz": "chat", "alias": "a\nb", "payload": "x"}),
            "alias",
        ),
        (
            json!({"biz": "chat", "alias": "u1", "payload": "x", "ttl_secs": MAX_TTL_SECS + 1}),
            "ttl_secs",
        ),
        // What no login could carry: a biz or alias over the login's limit
        // or with ':'.
        (
            json!({"biz": "chat", "alias": "a".repeat(MAX_ALIAS_LEN + 1), "payload": "x"}),
            "alias",
        ),
        (
            json!({"biz": "b".repeat(MAX_BIZ_LEN + 1), "alias": "u1", "payload": "x"}),
            "biz",
        ),
        (
            json!({"biz": "chat", "alias": "chat:u7", "payload": "x"}),
            "alias",
        ),
        (
            json!({"biz": "app:chat", "alias": "u7", "payload": "x"}),
            "biz",
        ),
        (
            json!({"biz": "chat", "aliases": ["u1", "chat:u7"], "payload": "x"}),
            "aliases[1]",
        ),
    ];
    for (body, field) in cases {
        let reply = h.push(body.clone()).await;
        reply.assert_error(400, "invalid_request");
        assert_eq!(reply.error_field(), Some(field), "{body}: {reply:?}");
    }
    let reply = h
        .batch(vec![
            json!({"biz": "chat", "alias": "u1", "payload": "x"}),
            json!({"biz": "chat", "alias": long, "payload": "x"}),
        ])
        .await;
    reply.assert_error(400, "invalid_request");
    assert_eq!(reply.error_field(), Some("pushes[1].alias"), "{reply:?}");
    let reply = h
        .get(&format!("/v1/presence?biz=chat&alias={long}"), DEMO_KEY)
        .await;
    reply.assert_error(400, "invalid_request");
    assert_eq!(reply.error_field(), Some("alias"), "{reply:?}");
    let reply = h
        .post(
            "/v1/tokens",
            DEMO_KEY,
            &json!({"biz": "chat", "alias": long}),
        )
        .await;
    reply.assert_error(400, "invalid_request");
    assert_eq!(reply.error_field(), Some("alias"), "{reply:?}");
    let reply = h
        .post(
            "/v1/tokens",
            DEMO_KEY,
            &json!({"biz": "chat", "alias": "chat:u7"}),
        )
        .await;
    reply.assert_error(400, "invalid_request");
    assert_eq!(reply.error_field(), Some("alias"), "{reply:?}");
    assert_eq!(
        reply.error_message(),
        "`alias` must not contain ':' (biz and alias are separate fields; \
         'chat:u7' is biz 'chat', alias 'u7')"
    );
    let reply = h.get("/v1/presence?biz=chat%3Ax&alias=u1", DEMO_KEY).await;
    reply.assert_error(400, "invalid_request");
    assert_eq!(reply.error_field(), Some("biz"), "{reply:?}");
    let reply = h
        .post(
            "/v1/disconnect",
            DEMO_KEY,
            &json!({"biz": "chat", "alias": "chat:u7"}),
        )
        .await;
    reply.assert_error(400, "invalid_request");
    assert_eq!(reply.error_field(), Some("alias"), "{reply:?}");

    // At the limits, the real store takes them; a tag may be longer.
    let reply = h
        .push(json!({"biz": "b".repeat(MAX_BIZ_LEN), "alias": "y".repeat(MAX_ALIAS_LEN), "payload": "x"}))
        .await;
    assert_eq!(reply.receipt(), (1, 0, 0));
    let reply = h
        .push(json!({"biz": "chat", "tag": "t".repeat(MAX_ID_LEN), "payload": "x"}))
        .await;
    assert_eq!(reply.receipt(), (0, 0, 0), "nobody has the tag");
}

/// A payload a device could never receive (over its frame limit) is
/// refused with 400 and not stored; the device online keeps receiving (an
/// accepted one made it reconnect forever on the same sequence number).
#[tokio::test]
async fn a_payload_over_the_frame_limit_is_400_and_the_device_gets_the_next_push() {
    let h = Harness::start_custom(
        |b| b,
        |state| state.with_body_limit(4 << 20),
        ServeConfig::default(),
    )
    .await;
    let mut client = h.client("demo", "d1", "chat", "u42").await;
    let limit = tntunnel::DEFAULT_MAX_FRAME_LENGTH - PUSH_FRAME_OVERHEAD;
    for body in [
        json!({"biz": "chat", "alias": "u42", "payload": "x".repeat(limit + 1)}),
        json!({"biz": "chat", "alias": "u42", "payload_base64": STANDARD.encode(vec![1u8; limit + 1])}),
        json!({"biz": "chat", "alias": "u42", "payload": "x".repeat(limit + 1), "reliable": false}),
    ] {
        let reply = h.push(body).await;
        reply.assert_error(400, "invalid_request");
        assert!(
            matches!(reply.error_field(), Some("payload" | "payload_base64")),
            "{reply:?}"
        );
        assert!(
            reply.error_message().contains(&limit.to_string()),
            "{reply:?}"
        );
    }
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "next"}))
        .await;
    assert_eq!(reply.receipt(), (1, 1, 0), "nothing stored before it");
    let delivery = client.next_delivery().await;
    assert_eq!(&delivery.payload[..], b"next");
    assert_eq!(delivery.seq, 1);
}

// --- disconnect ----------------------------------------------------------------

/// `POST /v1/disconnect` closes the connections of a device, of an alias
/// or one connection, of the caller's app only, with `FORBIDDEN` and the
/// reason; it answers how many it closed.
#[tokio::test]
async fn disconnect_closes_a_device_an_alias_or_one_connection_of_the_app() {
    let h = Harness::start().await;
    let mut d1 = h.client("demo", "d1", "chat", "u1").await;
    let mut d2 = h.client("demo", "d2", "chat", "u2").await;
    // Same device id and alias in another app: never touched by demo.
    let mut other = h.client("other", "d1", "chat", "u1").await;
    let disconnect = |key: &'static str, body: Value| {
        let h = &h;
        async move {
            let reply = h.post("/v1/disconnect", key, &body).await;
            assert_eq!(reply.status, 200, "{body}: {reply:?}");
            reply.body["disconnected"]
                .as_u64()
                .unwrap_or_else(|| panic!("no count in {reply:?}"))
        }
    };

    assert_eq!(disconnect(DEMO_KEY, json!({"device": "d1"})).await, 1);
    assert_eq!(
        d1.closed_by_server().await,
        (ErrorCode::Forbidden, "disconnected by the app".to_owned())
    );

    let body = json!({"biz": "chat", "alias": "u2", "reason": "account suspended"});
    assert_eq!(disconnect(DEMO_KEY, body).await, 1);
    assert_eq!(
        d2.closed_by_server().await,
        (ErrorCode::Forbidden, "account suspended".to_owned())
    );

    // A connection token of another app is not found in this one.
    let body = json!({"connection": other.token});
    assert_eq!(disconnect(DEMO_KEY, body.clone()).await, 0);
    assert_eq!(disconnect(OTHER_KEY, body).await, 1);
    assert_eq!(other.closed_by_server().await.0, ErrorCode::Forbidden);

    // Nothing matches: 0. The clients reconnect by their backoff.
    assert_eq!(disconnect(DEMO_KEY, json!({"device": "nobody"})).await, 0);
    let token = d1.logged_in_again().await;
    assert_ne!(token, d1.token, "a new connection");
    assert_eq!(disconnect(DEMO_KEY, json!({"connection": token})).await, 1);
    assert_eq!(d1.closed_by_server().await.0, ErrorCode::Forbidden);

    for (body, field) in [
        (json!({}), None),
        (json!({"device": "d1", "connection": "t"}), None),
        (json!({"alias": "u1"}), Some("biz")),
        (json!({"device": ""}), Some("device")),
        (
            json!({"device": "d1", "reason": "x".repeat(MAX_DISCONNECT_REASON + 1)}),
            Some("reason"),
        ),
        (json!({"device": "d1", "colour": "red"}), None),
    ] {
        let reply = h.post("/v1/disconnect", DEMO_KEY, &body).await;
        reply.assert_error(400, "invalid_request");
        assert_eq!(reply.error_field(), field, "{body}: {reply:?}");
    }
    let reply = h
        .post(
            "/v1/disconnect",
            "pk_wrong_0123456789abcdef",
            &json!({"device": "d1"}),
        )
        .await;
    reply.assert_error(401, "unauthorized");
}

// --- auth and isolation ------------------------------------------------------

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_with_a_bearer_challenge() {
    let h = Harness::start().await;
    let body = json!({"biz": "chat", "alias": "u42", "payload": "x"}).to_string();
    let requests = [
        h.http.post(h.url("/v1/push")),
        h.http
            .post(h.url("/v1/push"))
            .bearer_auth("pk_wrong_0123456789abcdef"),
        h.http.post(h.url("/v1/push")).bearer_auth(""),
        h.http
            .post(h.url("/v1/push"))
            .basic_auth("demo", Some(DEMO_KEY)),
        h.http
            .post(h.url("/v1/push"))
            .header(reqwest::header::AUTHORIZATION, DEMO_KEY),
    ];
    for request in requests {
        let reply = h
            .send(
                request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone()),
            )
            .await;
        reply.assert_error(401, "unauthorized");
        let challenge = reply
            .headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .expect("WWW-Authenticate");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // The scheme is case-insensitive.
    let reply = h
        .send(
            h.http
                .post(h.url("/v1/push"))
                .header(reqwest::header::AUTHORIZATION, format!("bearer {DEMO_KEY}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // Every /v1 route is protected.
    for path in [
        "/v1/presence?biz=chat&alias=u42",
        "/v1/connections",
        "/v1/connections/abc/trace",
    ] {
        let reply = h.send(h.http.get(h.url(path))).await;
        reply.assert_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn an_app_never_sees_another_apps_connections() {
    let h = Harness::start().await;
    let mut client = h.client("demo", "d1", "chat", "u42").await;

    // The other app's key: its own namespace, where u42 is not online.
    let reply = h
        .post(
            "/v1/push",
            OTHER_KEY,
            &json!({"biz": "chat", "alias": "u42", "payload": "intruder", "reliable": false}),
        )
        .await;
    assert_eq!(reply.receipt(), (0, 0, 0));
    let reply = h.get("/v1/presence?biz=chat&alias=u42", OTHER_KEY).await;
    assert_eq!(
        reply.body,
        json!({"online": false, "connections": [], "nodes_answered": 1, "nodes_expected": 1})
    );
    let reply = h.get("/v1/connections", OTHER_KEY).await;
    assert_eq!(
        reply.body,
        json!({"total": 0, "connections": [], "nodes_answered": 1, "nodes_expected": 1})
    );
    let path = format!("/v1/connections/{}/trace", client.token);
    h.get(&path, OTHER_KEY).await.assert_error(404, "not_found");

    // The owner sees it; the client got nothing from the other app.
    let reply = h.get(&path, DEMO_KEY).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "mine", "reliable": false}))
        .await;
    assert_eq!(reply.receipt(), (0, 1, 0));
    assert_eq!(&client.next_delivery().await.payload[..], b"mine");
}

// --- presence, connections, trace --------------------------------------------

#[tokio::test]
async fn presence_lists_the_connections_of_an_alias() {
    let h = Harness::start().await;
    let reply = h.get("/v1/presence?biz=chat&alias=u42", DEMO_KEY).await;
    assert_eq!(
        reply.body,
        json!({"online": false, "connections": [], "nodes_answered": 1, "nodes_expected": 1}),
        "one node: the views are this gateway's"
    );

    let client = h.client("demo", "d1", "chat", "u42").await;
    let reply = h.get("/v1/presence?biz=chat&alias=u42", DEMO_KEY).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["online"], json!(true));
    let connections = reply.body["connections"].as_array().expect("array");
    assert_eq!(connections.len(), 1);
    let c = &connections[0];
    assert_eq!(c["token"], json!(client.token));
    assert_eq!(c["device_id"], json!("d1"));
    assert_eq!(c["transport"], json!("tcp"));
    assert!(
        c["peer"]
            .as_str()
            .is_some_and(|p| p.parse::<SocketAddr>().is_ok()),
        "{c}"
    );
    assert!(c["connected_at_ms"].as_u64().is_some_and(|t| t > 0), "{c}");
    assert_eq!(c["logins"][0]["biz"], json!("chat"));
    assert_eq!(c["logins"][0]["alias"], json!("u42"));
    assert!(c["logins"][0]["route_id"].is_string(), "{c}");
    assert!(c["logins"][0]["since_ms"].as_u64().is_some(), "{c}");

    for bad in [
        "/v1/presence?biz=chat",
        "/v1/presence?biz=&alias=u42",
        "/v1/presence?biz=chat&alias=u42&extra=1",
    ] {
        h.get(bad, DEMO_KEY)
            .await
            .assert_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn connections_are_listed_with_a_total_and_a_limit() {
    let h = Harness::start().await;
    let first = h.client("demo", "d1", "chat", "u42").await;
    let _second = h.client("demo", "d2", "chat", "u43").await;
    let _other_app = h.client("other", "d3", "chat", "u44").await;

    let reply = h.get("/v1/connections", DEMO_KEY).await;
    assert_eq!(reply.body["total"], json!(2), "{reply:?}");
    assert_eq!(reply.body["connections"].as_array().map(Vec::len), Some(2));

    let reply = h.get("/v1/connections?limit=1", DEMO_KEY).await;
    assert_eq!(reply.body["total"], json!(2), "{reply:?}");
    let listed = reply.body["connections"].as_array().expect("array");
    assert_eq!(listed.len(), 1);
    // Oldest first.
    assert_eq!(listed[0]["token"], json!(first.token));

    for bad in ["0", "1001", "abc", "-1"] {
        h.get(&format!("/v1/connections?limit={bad}"), DEMO_KEY)
            .await
            .assert_error(400, "invalid_request");
    }
    let reply = h.get("/v1/connections?limit=1000", DEMO_KEY).await;
    assert_eq!(reply.status, 200);
}

/// Pages of `GET /v1/connections` cover every connection of the app once,
/// oldest first, whatever the page size; the page size is bounded.
#[tokio::test]
async fn connections_are_paged_with_a_cursor_each_listed_once() {
    let h = Harness::start().await;
    let mut clients = Vec::new();
    for i in 0..7 {
        clients.push(
            h.client("demo", &format!("d{i}"), "chat", &format!("u{i}"))
                .await,
        );
    }
    let _other_app = h.client("other", "d9", "chat", "u9").await;
    let expected: Vec<String> = clients.iter().map(|c| c.token.clone()).collect();

    for limit in [1, 3, 7, 100] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                None => format!("/v1/connections?limit={limit}"),
                Some(cursor) => format!("/v1/connections?limit={limit}&cursor={cursor}"),
            };
            let reply = h.get(&path, DEMO_KEY).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            assert_eq!(reply.body["total"], json!(7), "{reply:?}");
            let page = reply.body["connections"].as_array().expect("array");
            assert!(page.len() <= limit, "{reply:?}");
            seen.extend(
                page.iter()
                    .map(|c| c["token"].as_str().expect("token").to_owned()),
            );
            pages += 1;
            match reply.body.get("next_cursor") {
                Some(next) => cursor = Some(next.as_str().expect("cursor").to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, expected, "limit {limit}: each once, oldest first");
        assert_eq!(pages, 7usize.div_ceil(limit), "limit {limit}");
    }

    let reply = h.get("/v1/connections?limit=1001", DEMO_KEY).await;
    reply.assert_error(400, "invalid_request");
    assert_eq!(reply.error_field(), Some("limit"), "{reply:?}");
    let reply = h.get("/v1/connections?cursor=nonsense", DEMO_KEY).await;
    reply.assert_error(400, "invalid_request");
    assert_eq!(reply.error_field(), Some("cursor"), "{reply:?}");
}

#[tokio::test]
async fn trace_shows_the_signals_of_a_session() {
    let h = Harness::start().await;
    let mut client = h.client("demo", "d1", "chat", "u42").await;
    let reply = h
        .push(json!({"biz": "chat", "alias": "u42", "payload": "traced"}))
        .await;
    assert_eq!(reply.receipt(), (1, 1, 0));
    client.next_delivery().await;

    let reply = h
        .get(&format!("/v1/connections/{}/trace", client.token), DEMO_KEY)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["token"], json!(client.token));
    let events = reply.body["events"].as_array().expect("events");
    let signals: Vec<&str> = events
        .iter()
        .map(|e| e["signal"].as_str().expect("signal"))
        .collect();
    assert_eq!(signals.first(), Some(&"hello"), "{signals:?}");
    for expected in ["alias-bind", "downlink"] {
        assert!(signals.contains(&expected), "{expected} in {signals:?}");
    }
    assert!(
        events[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("app=demo") && d.contains("device=d1")),
        "{}",
        events[0]
    );
    assert!(events.iter().all(|e| e["at_ms"].as_u64().is_some()));

    h.get("/v1/connections/no-such-token/trace", DEMO_KEY)
        .await
        .assert_error(404, "not_found");
}

// --- tokens -------------------------------------------------------------------

#[tokio::test]
async fn minted_tokens_verify_with_the_apps_secret_and_scope() {
    let h = Harness::start().await;
    let reply = h
        .post(
            "/v1/tokens",
            DEMO_KEY,
            &json!({"biz": "chat", "alias": "u42", "ttl_secs": 600}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let token = reply.body["token"].as_str().expect("token");
    let expires_at = reply.body["expires_at"].as_u64().expect("expires_at");
    let scope = Scope {
        app: "demo",
        biz: "chat",
        alias: "u42",
    };
    let claims = verify(token, DEMO_SECRET.as_bytes(), &scope, expires_at - 600)
        .expect("the minted token verifies");
    assert_eq!(claims.exp, expires_at);
    assert_eq!(claims.exp - claims.iat, 600);
    // Scoped: not valid for another alias or with another app's secret.
    let other_alias = Scope {
        alias: "u43",
        ..scope
    };
    assert!(verify(token, DEMO_SECRET.as_bytes(), &other_alias, claims.iat).is_err());
    assert!(verify(token, b"other-secret-0123456789abcdef", &scope, claims.iat).is_err());

    // Default validity: one day.
    let reply = h
        .post(
            "/v1/tokens",
            DEMO_KEY,
            &json!({"biz": "chat", "alias": "u42"}),
        )
        .await;
    let token = reply.body["token"].as_str().expect("token");
    let claims = verify(token, DEMO_SECRET.as_bytes(), &scope, 0).expect("verifies");
    assert_eq!(claims.exp - claims.iat, 86_400);

    for bad in [
        json!({"biz": "chat", "alias": "u42", "ttl_secs": 0}),
        json!({"biz": "chat", "alias": "u42", "ttl_secs": 30 * 86_400 + 1}),
        json!({"biz": "", "alias": "u42"}),
        json!({"biz": "chat"}),
        json!({"biz": "chat", "alias": "u42", "app": "other"}),
    ] {
        h.post("/v1/tokens", DEMO_KEY, &bad)
            .await
            .assert_error(400, "invalid_request");
    }
}

// --- ops and routing --------------------------------------------------------------

#[tokio::test]
async fn healthz_needs_no_key_and_counts_connections() {
    let h = Harness::start().await;
    let reply = h.send(h.http.get(h.url("/healthz"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"status": "ok", "connections": 0}));
    let _client = h.client("demo", "d1", "chat", "u42").await;
    let reply = h.send(h.http.get(h.url("/healthz"))).await;
    assert_eq!(reply.body, json!({"status": "ok", "connections": 1}));
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let h = Harness::start().await;
    h.get("/v1/nothing-here", DEMO_KEY)
        .await
        .assert_error(404, "not_found");
    h.send(h.http.get(h.url("/")))
        .await
        .assert_error(404, "not_found");

    let reply = h.get("/v1/push", DEMO_KEY).await;
    reply.assert_error(405, "method_not_allowed");
    let allow = reply
        .headers
        .get(reqwest::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .expect("Allow header");
    assert!(allow.contains("POST"), "{allow}");
    h.send(h.http.delete(h.url("/healthz")))
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let h = Harness::start().await;
    h.send(h.http.get(h.url("/healthz"))).await;
    h.get("/v1/nothing-here", DEMO_KEY).await;
    h.send(h.http.post(h.url("/v1/push"))).await;

    let (status, content_type, text) = h.text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.is_some_and(|c| c.starts_with("text/plain")),
        "Prometheus text format"
    );
    let has = |route: &str, code: &str| {
        text.lines().any(|line| {
            line.starts_with("pike_http_requests_total{")
                && line.contains(&format!("route=\"{route}\""))
                && line.contains(&format!("status=\"{code}\""))
        })
    };
    assert!(has("/healthz", "200"), "{text}");
    assert!(has("unmatched", "404"), "{text}");
    assert!(has("/v1/push", "401"), "{text}");
    assert!(
        text.contains("pike_http_request_duration_seconds"),
        "{text}"
    );
}

//! The HTTP API reads request bodies as `docs/openapi.yaml` (JSON Schema
//! 2020-12) types them, over real sockets (the `http_support` harness):
//! `null` is not a value of an optional field, an integer may be written
//! `57.0`, and a room publish takes exactly one payload form. Found by
//! schemathesis (`.ci/schemathesis.sh`); these pin each case.
//!
//! The last test reads `docs/openapi.yaml` itself and checks that each
//! request schema lists exactly the fields the server's request types read.

mod http_support;

use http_support::{DEMO_KEY, Harness, Reply};
use pike_server::http::model::{DisconnectBody, PushBody, RoomPublishBody, TokenRequest};
use pike_server::http::{MAX_TOKEN_TTL_SECS, MAX_TTL_SECS};
use serde_json::{Value, json};

/// A valid push body to edit.
fn push() -> Value {
    json!({"biz": "chat", "alias": "u42", "payload": "hi"})
}

/// `base` with `field` set to `value`.
fn with(mut base: Value, field: &str, value: Value) -> Value {
    base[field] = value;
    base
}

#[track_caller]
fn assert_null_refused(reply: &Reply, what: &str) {
    reply.assert_error(400, "invalid_request");
    assert!(
        reply.error_message().contains("leave the field out"),
        "{what}: {:?}",
        reply.error_message()
    );
}

// --- null ------------------------------------------------------------------

#[tokio::test]
async fn null_for_an_optional_push_field_is_400() {
    let h = Harness::start().await;
    for (field, base) in [
        ("priority", push()),
        ("ttl_secs", push()),
        ("reliable", push()),
        (
            "tag",
            json!({"biz": "chat", "alias": "u42", "payload": "hi"}),
        ),
        (
            "alias",
            json!({"biz": "chat", "tag": "vip", "payload": "hi"}),
        ),
        ("aliases", push()),
        ("device", push()),
        ("all", push()),
        (
            "payload_base64",
            json!({"biz": "chat", "alias": "u42", "payload": "hi"}),
        ),
        (
            "payload",
            json!({"biz": "chat", "alias": "u42", "payload_base64": "aGk="}),
        ),
    ] {
        let body = with(base, field, Value::Null);
        assert_null_refused(&h.push(body.clone()).await, &body.to_string());
        // The same item in a batch: the whole batch is refused.
        let batch = json!({"pushes": [push(), body]});
        let reply = h.post("/v1/push/batch", DEMO_KEY, &batch).await;
        assert_null_refused(&reply, &batch.to_string());
    }
    // Nothing above was pushed; the bodies without the null field are fine.
    h.push(push()).await.receipt();
}

#[tokio::test]
async fn null_for_an_optional_token_publish_or_disconnect_field_is_400() {
    let h = Harness::start().await;
    let token = json!({"biz": "chat", "alias": "u42"});
    for field in ["ttl_secs", "device"] {
        let body = with(token.clone(), field, Value::Null);
        let reply = h.post("/v1/tokens", DEMO_KEY, &body).await;
        assert_null_refused(&reply, &body.to_string());
    }
    let publish = json!({"payload": "hi"});
    for field in ["priority", "payload_base64", "class", "publisher"] {
        let body = with(publish.clone(), field, Value::Null);
        let reply = h.post("/v1/rooms/r1/publish", DEMO_KEY, &body).await;
        assert_null_refused(&reply, &body.to_string());
    }
    let disconnect = json!({"device": "d1"});
    for field in ["reason", "connection", "biz", "alias"] {
        let body = with(disconnect.clone(), field, Value::Null);
        let reply = h.post("/v1/disconnect", DEMO_KEY, &body).await;
        assert_null_refused(&reply, &body.to_string());
    }
    assert_eq!(h.post("/v1/tokens", DEMO_KEY, &token).await.status, 200);
}

// --- integers written as whole floats --------------------------------------

#[tokio::test]
async fn whole_number_floats_are_integers() {
    let h = Harness::start().await;
    for (field, value) in [
        ("priority", json!(57.0)),
        ("priority", json!(4_294_967_295.0)),
        ("ttl_secs", json!(3600.0)),
        ("ttl_secs", json!(MAX_TTL_SECS as f64)),
    ] {
        let body = with(push(), field, value);
        h.push(body.clone()).await.receipt();
        let batch = json!({"pushes": [body]});
        let reply = h.post("/v1/push/batch", DEMO_KEY, &batch).await;
        assert_eq!(reply.status, 200, "{batch}: {reply:?}");
        assert!(
            reply.body["results"][0]["message_id"].is_string(),
            "{reply:?}"
        );
    }
    // The value is the integer: a ttl of 60.0 s expires 60 s from now.
    let reply = h
        .post(
            "/v1/tokens",
            DEMO_KEY,
            &json!({"biz": "chat", "alias": "u42", "ttl_secs": 60.0}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expires_at = reply.body["expires_at"].as_u64().expect("expires_at");
    assert!((now + 55..=now + 65).contains(&expires_at), "{reply:?}");
    let reply = h
        .post(
            "/v1/rooms/r1/publish",
            DEMO_KEY,
            &json!({"payload": "hi", "priority": 2.0}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn fractions_negatives_and_overflow_are_still_400() {
    let h = Harness::start().await;
    for (field, value) in [
        ("priority", json!(57.5)),
        ("priority", json!(-1.0)),
        ("priority", json!(4_294_967_296_u64)),
        ("priority", json!(1e300)),
        ("ttl_secs", json!(0.5)),
        ("ttl_secs", json!((MAX_TTL_SECS + 1) as f64)),
    ] {
        let body = with(push(), field, value);
        h.push(body.clone())
            .await
            .assert_error(400, "invalid_request");
    }
    let reply = h
        .post(
            "/v1/tokens",
            DEMO_KEY,
            &json!({"biz": "chat", "alias": "u42", "ttl_secs": (MAX_TOKEN_TTL_SECS + 1) as f64}),
        )
        .await;
    reply.assert_error(400, "invalid_request");
}

// --- room publish: exactly one payload form --------------------------------

#[tokio::test]
async fn a_room_publish_needs_exactly_one_payload_form() {
    let h = Harness::start().await;
    for body in [
        json!({}),
        json!({"priority": 1}),
        json!({"payload": "hi", "payload_base64": "aGk="}),
    ] {
        let reply = h.post("/v1/rooms/r1/publish", DEMO_KEY, &body).await;
        reply.assert_error(400, "invalid_request");
        assert_eq!(reply.error_field(), Some("payload"), "{body}: {reply:?}");
    }
    for body in [json!({"payload": "hi"}), json!({"payload_base64": "aGk="})] {
        let reply = h.post("/v1/rooms/r1/publish", DEMO_KEY, &body).await;
        assert_eq!(reply.status, 200, "{body}: {reply:?}");
    }
}

// --- connections cursor: digits only -------------------------------------

#[tokio::test]
async fn a_cursor_is_one_to_nineteen_digits_and_nothing_else() {
    let h = Harness::start().await;
    // `+5` and 20 digits used to parse as a u64; the schema says
    // `^[0-9]{1,19}$`.
    for bad in ["%2B5", "", "10000000000000000000", "5%20", "-1"] {
        let reply = h
            .get(&format!("/v1/connections?cursor={bad}"), DEMO_KEY)
            .await;
        reply.assert_error(400, "invalid_request");
        assert_eq!(reply.error_field(), Some("cursor"), "{bad}: {reply:?}");
    }
    for good in ["0", "9999999999999999999"] {
        let reply = h
            .get(&format!("/v1/connections?cursor={good}"), DEMO_KEY)
            .await;
        assert_eq!(reply.status, 200, "{good}: {reply:?}");
    }
}

// --- the schema and the request types --------------------------------------

/// The lines of `components.schemas.<name>` in `docs/openapi.yaml` (a
/// reader for this file's layout: two-space indents, a schema's keys at six
/// spaces, one property per line at eight).
fn schema_block<'a>(yaml: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("\n    {name}:\n");
    let start = yaml
        .find(&header)
        .unwrap_or_else(|| panic!("no schema {name} in docs/openapi.yaml"))
        + header.len();
    yaml[start..]
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with("      "))
        .collect()
}

/// The property names and `required` list of a schema, sorted.
fn schema_fields(yaml: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let mut properties = Vec::new();
    let mut required = Vec::new();
    let mut in_properties = false;
    for line in schema_block(yaml, name) {
        if let Some(list) = line.strip_prefix("      required: [") {
            required = list
                .trim_end_matches(']')
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect();
        }
        if line.starts_with("      ") && !line.starts_with("       ") {
            in_properties = line.trim() == "properties:";
            continue;
        }
        if !in_properties {
            continue;
        }
        if let Some((key, _)) = line
            .strip_prefix("        ")
            .filter(|rest| !rest.starts_with(' '))
            .and_then(|rest| rest.split_once(':'))
        {
            properties.push(key.to_owned());
        }
    }
    properties.sort();
    required.sort();
    (properties, required)
}

/// The JSON field names a request type reads: the keys of a value with
/// every optional field set, serialized.
fn type_fields(value: &impl serde::Serialize) -> Vec<String> {
    let json = serde_json::to_value(value).expect("serialize");
    let mut keys: Vec<String> = json
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn the_request_schemas_list_exactly_the_fields_the_server_reads() {
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"))
            .expect("read docs/openapi.yaml");
    let s = || Some(String::from("x"));
    let push = PushBody {
        biz: "chat".into(),
        alias: s(),
        aliases: Some(vec!["a".into()]),
        tag: s(),
        device: s(),
        all: Some(true),
        payload: s(),
        payload_base64: s(),
        reliable: Some(true),
        ttl_secs: Some(1),
        priority: Some(1),
        receipt: Some(true),
    };
    let token = TokenRequest {
        biz: "chat".into(),
        alias: "u42".into(),
        ttl_secs: Some(1),
        device: s(),
    };
    let publish = RoomPublishBody {
        payload: s(),
        payload_base64: s(),
        class: s(),
        priority: Some(1),
        publisher: s(),
    };
    let disconnect = DisconnectBody {
        device: s(),
        biz: s(),
        alias: s(),
        connection: s(),
        reason: s(),
    };
    let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    for (schema, fields, required) in [
        ("PushRequest", type_fields(&push), owned(&["biz"])),
        (
            "TokenRequest",
            type_fields(&token),
            owned(&["alias", "biz"]),
        ),
        ("RoomPublishRequest", type_fields(&publish), Vec::new()),
        ("DisconnectRequest", type_fields(&disconnect), Vec::new()),
    ] {
        let (properties, listed_required) = schema_fields(&yaml, schema);
        assert_eq!(
            properties, fields,
            "{schema}: properties vs the request type"
        );
        assert_eq!(listed_required, required, "{schema}: required");
    }
    // Exactly one payload form, in both schemas that take a payload.
    for schema in ["PushRequest", "RoomPublishRequest"] {
        let block = schema_block(&yaml, schema);
        assert!(
            block.iter().any(|l| l.trim() == "- required: [payload]")
                && block
                    .iter()
                    .any(|l| l.trim() == "- required: [payload_base64]"),
            "{schema} does not say exactly one of `payload`, `payload_base64`"
        );
    }
}

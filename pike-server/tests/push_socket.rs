//! The backend push connection (`GET /v1/push/ws`) over real sockets: a
//! real `Gateway` on 127.0.0.1, the router served by
//! `pike_server::http::serve`, a WebSocket client (tokio-tungstenite)
//! speaking protobuf `pike.api.v1`, real Pike clients receiving.

mod http_support;

use futures_util::{SinkExt as _, StreamExt as _};
use http_support::{DEMO_KEY, Harness, within};
use pike_server::http::{PUSH_SUBPROTOCOL, ServeConfig};
use proto::api;
use proto::prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

type Socket = WebSocketStream<TcpStream>;

/// Opens a push connection with `key` and `protocol` (both sent when
/// `Some`); the server's refusal as (status, JSON body) otherwise.
async fn open(
    h: &Harness,
    key: Option<&str>,
    protocol: Option<&str>,
) -> Result<Socket, (u16, serde_json::Value)> {
    let addr = h.base.trim_start_matches("http://");
    let mut request = format!("ws://{addr}/v1/push/ws")
        .into_client_request()
        .expect("request");
    if let Some(key) = key {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {key}")).expect("header"),
        );
    }
    if let Some(protocol) = protocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).expect("header"),
        );
    }
    let stream = TcpStream::connect(addr).await.expect("connect");
    match within("the upgrade", client_async(request, stream)).await {
        Ok((socket, response)) => {
            assert_eq!(
                response
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok()),
                Some(PUSH_SUBPROTOCOL)
            );
            Ok(socket)
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
            Err((status, json))
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

async fn connect(h: &Harness) -> Socket {
    open(h, Some(DEMO_KEY), Some(PUSH_SUBPROTOCOL))
        .await
        .expect("a push connection")
}

fn alias_push(alias: &str, payload: &str) -> api::Push {
    api::Push {
        biz: "chat".into(),
        target: Some(api::push::Target::Alias(alias.into())),
        payload: payload.as_bytes().to_vec().into(),
        ..api::Push::default()
    }
}

async fn send(socket: &mut Socket, batch: &api::PushBatch) {
    socket
        .send(Message::Binary(batch.encode_to_vec().into()))
        .await
        .expect("send a batch");
}

/// The next result (pings and pongs skipped).
async fn result(socket: &mut Socket) -> api::PushBatchResult {
    loop {
        let message = within("a result", socket.next())
            .await
            .expect("the connection is open")
            .expect("a message");
        match message {
            Message::Binary(bytes) => {
                return api::PushBatchResult::decode(bytes).expect("a PushBatchResult");
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn pushed(result: &api::PushResult) -> &api::Pushed {
    match &result.outcome {
        Some(api::push_result::Outcome::Pushed(p)) => p,
        other => panic!("not pushed: {other:?}"),
    }
}

#[tokio::test]
async fn pipelined_batches_are_answered_in_order_and_delivered_in_order() {
    let h = Harness::start().await;
    let mut u1 = h.client("demo", "d1", "chat", "u1").await;
    let mut u2 = h.client("demo", "d2", "chat", "u2").await;
    let mut socket = connect(&h).await;
    // Three batches sent before any answer is read: they may be pushed
    // together, and are answered one by one, in order.
    for id in 1..=3u64 {
        let batch = api::PushBatch {
            id: id * 10,
            pushes: vec![
                alias_push("u1", &format!("b{id}-a")),
                alias_push("u2", &format!("b{id}-b")),
            ],
        };
        send(&mut socket, &batch).await;
    }
    let mut ids = Vec::new();
    for id in 1..=3u64 {
        let answer = result(&mut socket).await;
        assert_eq!(answer.id, id * 10);
        assert_eq!(answer.error, None);
        assert_eq!(answer.results.len(), 2);
        for item in &answer.results {
            let p = pushed(item);
            assert_eq!((p.stored, p.online, p.dropped), (1, 1, 0), "{p:?}");
            ids.push(p.message_id);
        }
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 6, "every push has its own id: {ids:?}");
    for (client, suffix) in [(&mut u1, "a"), (&mut u2, "b")] {
        for id in 1..=3u64 {
            let delivery = client.next_delivery().await;
            assert_eq!(delivery.payload, format!("b{id}-{suffix}").as_bytes());
            assert_eq!(delivery.seq, id, "reliable, in order");
        }
    }
    // A transient push to a device, then the whole app.
    let batch = api::PushBatch {
        id: 99,
        pushes: vec![
            api::Push {
                biz: "chat".into(),
                target: Some(api::push::Target::Device("d1".into())),
                payload: b"now".to_vec().into(),
                transient: true,
                ..api::Push::default()
            },
            api::Push {
                biz: "chat".into(),
                target: Some(api::push::Target::Aliases(api::Aliases {
                    aliases: vec!["u2".into(), "u2".into(), "nobody".into()],
                })),
                payload: b"many".to_vec().into(),
                ..api::Push::default()
            },
        ],
    };
    send(&mut socket, &batch).await;
    let answer = result(&mut socket).await;
    assert_eq!(answer.id, 99);
    let transient = pushed(&answer.results[0]);
    assert_eq!((transient.stored, transient.online), (0, 1));
    let many = pushed(&answer.results[1]);
    assert_eq!((many.stored, many.online), (2, 1), "u2 once, nobody stored");
    let delivery = u1.next_delivery().await;
    assert!(delivery.is_transient());
    assert_eq!(delivery.message_id, transient.message_id);
    assert_eq!(u2.next_delivery().await.payload, b"many".as_slice());
}

#[tokio::test]
async fn a_refused_batch_pushes_nothing_and_the_connection_goes_on() {
    let h = Harness::start().await;
    let mut u1 = h.client("demo", "d1", "chat", "u1").await;
    let mut socket = connect(&h).await;
    let long = "x".repeat(pike_server::http::MAX_ID_LEN + 1);
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"\xff\xff\xff".to_vec(), "", "not a protobuf"),
        (
            api::PushBatch {
                id: 2,
                pushes: Vec::new(),
            }
            .encode_to_vec(),
            "pushes",
            "must not be empty",
        ),
        (
            api::PushBatch {
                id: 3,
                pushes: vec![alias_push("u1", "never"), alias_push(&long, "bad")],
            }
            .encode_to_vec(),
            "pushes[1].alias",
            "pushes[1]: ",
        ),
        (
            api::PushBatch {
                id: 4,
                pushes: vec![api::Push {
                    target: None,
                    ..alias_push("u1", "never")
                }],
            }
            .encode_to_vec(),
            "pushes[0]",
            "a target is required",
        ),
        (
            api::PushBatch {
                id: 5,
                pushes: vec![api::Push {
                    target: Some(api::push::Target::Device("d1".into())),
                    ..alias_push("u1", "never")
                }],
            }
            .encode_to_vec(),
            "pushes[0].reliable",
            "transient only",
        ),
        (
            api::PushBatch {
                id: 6,
                pushes: vec![api::Push {
                    transient: true,
                    ttl_secs: 5,
                    ..alias_push("u1", "never")
                }],
            }
            .encode_to_vec(),
            "pushes[0].ttl_secs",
            "reliable pushes only",
        ),
    ];
    let count = cases.len();
    for (bytes, _, _) in &cases {
        socket
            .send(Message::Binary(bytes.clone().into()))
            .await
            .expect("send");
    }
    // A good batch after the bad ones.
    send(
        &mut socket,
        &api::PushBatch {
            id: 7,
            pushes: vec![alias_push("u1", "after")],
        },
    )
    .await;
    for (_, field, message) in cases {
        let answer = result(&mut socket).await;
        let error = answer.error.expect("refused");
        assert!(answer.results.is_empty());
        assert_eq!(error.code, "invalid_request", "{error:?}");
        assert_eq!(error.field, field, "{error:?}");
        assert!(error.message.contains(message), "{error:?}");
    }
    let answer = result(&mut socket).await;
    assert_eq!(answer.id, 7);
    assert_eq!(pushed(&answer.results[0]).stored, 1);
    // Nothing of the refused batches reached the device.
    let delivery = u1.next_delivery().await;
    assert_eq!(
        delivery.payload,
        b"after".as_slice(),
        "after {count} refusals"
    );
    assert_eq!(delivery.seq, 1);
}

#[tokio::test]
async fn text_messages_close_the_connection_with_unsupported_data() {
    let h = Harness::start().await;
    let mut socket = connect(&h).await;
    socket
        .send(Message::text("{\"pushes\": []}"))
        .await
        .expect("send");
    let message = within("the close", socket.next())
        .await
        .expect("a message")
        .expect("not an error");
    match message {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1003);
            assert!(frame.reason.contains("binary"), "{}", frame.reason);
        }
        other => panic!("expected a close: {other:?}"),
    }
}

#[tokio::test]
async fn upgrades_are_refused_with_json_errors() {
    let h = Harness::start().await;
    let (status, body) = open(&h, None, Some(PUSH_SUBPROTOCOL))
        .await
        .expect_err("no key");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = open(&h, Some("pk_unknown_0123456789"), Some(PUSH_SUBPROTOCOL))
        .await
        .expect_err("bad key");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = open(&h, Some(DEMO_KEY), None)
        .await
        .expect_err("no subprotocol");
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(PUSH_SUBPROTOCOL)),
        "{body}"
    );
    // A plain GET, no upgrade.
    let reply = h
        .http
        .get(format!("{}/v1/push/ws", h.base))
        .bearer_auth(DEMO_KEY)
        .send()
        .await
        .expect("get");
    assert_eq!(reply.status().as_u16(), 400);
    let body: serde_json::Value =
        serde_json::from_slice(&reply.bytes().await.expect("body")).expect("json");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
}

#[tokio::test]
async fn push_connections_beyond_the_limit_are_refused_until_one_closes() {
    let h = Harness::start_custom(
        |builder| builder,
        |state| state.with_max_push_connections(1),
        ServeConfig::default(),
    )
    .await;
    let mut first = connect(&h).await;
    let (status, body) = open(&h, Some(DEMO_KEY), Some(PUSH_SUBPROTOCOL))
        .await
        .expect_err("over the limit");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("overloaded"))
    );
    first.close(None).await.expect("close");
    // The slot comes back once the server has seen the close.
    while within("the close", first.next()).await.is_some() {}
    let mut attempts = 0;
    let mut second = loop {
        attempts += 1;
        match open(&h, Some(DEMO_KEY), Some(PUSH_SUBPROTOCOL)).await {
            Ok(socket) => break socket,
            Err((503, _)) if attempts < 100 => tokio::task::yield_now().await,
            Err(other) => panic!("refused: {other:?}"),
        }
    };
    send(
        &mut second,
        &api::PushBatch {
            id: 1,
            pushes: vec![alias_push("u1", "x")],
        },
    )
    .await;
    assert_eq!(result(&mut second).await.id, 1);
}

#[tokio::test]
async fn a_gateway_shutdown_closes_push_connections_with_going_away() {
    let mut h = Harness::start().await;
    let mut socket = connect(&h).await;
    send(
        &mut socket,
        &api::PushBatch {
            id: 1,
            pushes: vec![alias_push("u1", "before")],
        },
    )
    .await;
    assert_eq!(result(&mut socket).await.id, 1);
    h.shut_down_gateway().await;
    loop {
        let message = within("the close", socket.next())
            .await
            .expect("a message")
            .expect("not an error");
        match message {
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 1001);
                assert!(frame.reason.contains("shutting down"), "{}", frame.reason);
                break;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a close: {other:?}"),
        }
    }
}

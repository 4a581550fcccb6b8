//! The push connection's `receipt` field (`pike.api.v1.Push.receipt`,
//! `docs/receipts.md`): a push sent over `GET /v1/push/ws` with `receipt:
//! true` gets a status record and its receipts; `receipt: false` overrides
//! a business whose `receipts_default` is on; absent, the default decides.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use pike_server::http::PUSH_SUBPROTOCOL;
use pike_server::receipts::ReceiptKind;
use proto::api;
use proto::prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{WebSocketStream, client_async};

use crate::support::*;

type Socket = WebSocketStream<TcpStream>;

/// A push connection of app `shop`.
async fn push_connection(server: &Server) -> Socket {
    let addr = server.addrs().http;
    let mut request = format!("ws://{addr}/v1/push/ws")
        .into_client_request()
        .expect("request");
    let headers = request.headers_mut();
    let bearer = format!("Bearer {}", api_key("shop"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&bearer).expect("header"),
    );
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(PUSH_SUBPROTOCOL),
    );
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (socket, _) = tokio::time::timeout(Duration::from_secs(10), client_async(request, stream))
        .await
        .expect("the upgrade in time")
        .expect("the upgrade");
    socket
}

/// Sends one batch of alias pushes with these `receipt` fields; their
/// message ids, in order.
async fn push(socket: &mut Socket, id: u64, biz: &str, receipts: &[Option<bool>]) -> Vec<u64> {
    let pushes = receipts
        .iter()
        .enumerate()
        .map(|(i, receipt)| api::Push {
            biz: biz.into(),
            target: Some(api::push::Target::Alias("u1".into())),
            payload: format!("b{id}-{i}").into_bytes().into(),
            receipt: *receipt,
            ..api::Push::default()
        })
        .collect();
    let batch = api::PushBatch { id, pushes };
    socket
        .send(Message::Binary(batch.encode_to_vec().into()))
        .await
        .expect("send");
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer in time")
            .expect("the connection is open")
            .expect("a message");
        let Message::Binary(bytes) = message else {
            continue;
        };
        let answer = api::PushBatchResult::decode(bytes).expect("a PushBatchResult");
        assert_eq!((answer.id, answer.error.as_ref()), (id, None), "{answer:?}");
        return answer
            .results
            .iter()
            .map(|r| match &r.outcome {
                Some(api::push_result::Outcome::Pushed(p)) => p.message_id,
                other => panic!("not pushed: {other:?}"),
            })
            .collect();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_push_connections_receipt_field_asks_for_receipts() {
    let backend = ReceiptBackend::start(0, Duration::ZERO).await;
    // `chat` has receipts off by default, `news` on.
    let mut chat = biz("chat");
    chat.receipt_webhook = Some(backend.url());
    let mut news = biz("news");
    news.receipt_webhook = Some(backend.url());
    news.receipts_default = true;
    let mut config = config(vec![app("shop", vec![chat, news])]);
    config.receipts.max_delay_ms = 50;
    config.receipts.flush_ms = 20;
    let server = Server::start(config).await;
    let api = server.api("shop");
    let proxy = server.proxy(Wire::Tcp, "shop", "phone");
    let phone = proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("shop", "chat", "u1"),
        ))
        .expect("client");
    start(&phone).await;

    let mut socket = push_connection(&server).await;
    let ids = push(&mut socket, 1, "chat", &[Some(true), Some(false), None]).await;
    let [asked, refused, default] = ids[..] else {
        panic!("three results: {ids:?}");
    };
    for _ in 0..3 {
        match next(&phone).await {
            ClientEvent::OnReceive(_) => {}
            event if event.is_connectivity() => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The one that asked is acked by the phone and reported.
    poll_until("the acked receipt", || async {
        backend
            .receipts()
            .iter()
            .any(|r| r.message_id == asked.to_string() && r.event == ReceiptKind::Acked)
    })
    .await;
    let status = api.get(&format!("/v1/messages/{asked}")).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["devices"][0]["device"], "phone", "{status:?}");
    // `receipt: false` and absent (the business's default is off) have no
    // record and produced no receipt.
    for id in [refused, default] {
        let status = api.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(status.status, 404, "{id}: {status:?}");
    }
    // On by default: absent asks, `receipt: false` does not (nobody of
    // `news` is online; the record says the message is stored).
    let news = push(&mut socket, 2, "news", &[None, Some(false)]).await;
    let [default_on, refused_on] = news[..] else {
        panic!("two results: {news:?}");
    };
    let status = api.get(&format!("/v1/messages/{default_on}")).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["stored"], true, "{status:?}");
    let status = api.get(&format!("/v1/messages/{refused_on}")).await;
    assert_eq!(status.status, 404, "{status:?}");

    let receipts = backend.receipts();
    assert!(
        receipts.iter().all(|r| r.message_id == asked.to_string()),
        "{receipts:?}"
    );
}

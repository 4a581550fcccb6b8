//! Devices over WebSocket (`GET /v1/ws`, subprotocol `pike.v1`) against a
//! real `Gateway` on 127.0.0.1 and the router served by
//! `pike_server::http::serve`: a Pike client (the pike-channel driver)
//! whose connector dials the WebSocket with tokio-tungstenite and runs the
//! tunnel handshake over binary messages; pushes through the HTTP API.

mod http_support;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use http_support::{DEMO_KEY, Harness};
use pike_channel::proto::tunnel::ClientHello;
use pike_channel::{ConnectError, Connected, Connector};
use pike_server::http::{DEVICE_SUBPROTOCOL, ServeConfig};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async};
use tunnelkit::handed_listener;

/// A client WebSocket as a byte stream (the test's side of the adapter).
struct ClientWs {
    socket: WebSocketStream<TcpStream>,
    reading: Bytes,
    ended: bool,
    /// Binary messages written.
    messages: usize,
}

impl AsyncRead for ClientWs {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.reading.is_empty() {
                let n = buf.remaining().min(self.reading.len());
                buf.put_slice(&self.reading[..n]);
                self.reading.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                Some(Ok(Message::Binary(bytes))) => self.reading = bytes,
                Some(Ok(Message::Close(_))) | None => self.ended = true,
                Some(Ok(other)) => {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "unexpected message {other:?}"
                    ))));
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}

impl AsyncWrite for ClientWs {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.socket).poll_ready(cx)).map_err(io::Error::other)?;
        Pin::new(&mut self.socket)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io::Error::other)?;
        self.messages += 1;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

/// Dials `ws://addr/v1/ws` and runs the tunnel handshake over it.
struct WsConnector {
    addr: SocketAddr,
    hello: ClientHello,
}

impl Connector for WsConnector {
    type Io = ClientWs;

    async fn connect(&self, _advised: &[String]) -> Result<Connected<ClientWs>, ConnectError> {
        let socket = upgrade(self.addr, Some(DEVICE_SUBPROTOCOL))
            .await
            .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
        let io = ClientWs {
            socket,
            reading: Bytes::new(),
            ended: false,
            messages: 0,
        };
        let (framed, hello) =
            tntunnel::connect(io, self.hello.clone(), &tntunnel::TunnelConfig::default()).await?;
        Ok(Connected::new(framed, hello))
    }
}

/// The WebSocket upgrade of `GET /v1/ws`, asking for `protocol`.
async fn upgrade(
    addr: SocketAddr,
    protocol: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, String> {
    let mut request = format!("ws://{addr}/v1/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(protocol) = protocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).map_err(|e| e.to_string())?,
        );
    }
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    match client_async(request, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(format!(
            "{} {}",
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A harness whose gateway also serves devices over `GET /v1/ws`.
async fn harness() -> Harness {
    let (sender, listener) = handed_listener("127.0.0.1:0".parse().expect("addr"), 16);
    Harness::start_custom(
        move |builder| builder.handed("ws", listener),
        move |state| state.with_ws_transport(sender),
        ServeConfig::default(),
    )
    .await
}

fn http_addr(h: &Harness) -> SocketAddr {
    h.base
        .trim_start_matches("http://")
        .parse()
        .expect("the API's address")
}

#[tokio::test]
async fn a_device_over_websocket_logs_in_and_gets_reliable_and_transient_pushes() {
    let h = harness().await;
    let connector = WsConnector {
        addr: http_addr(&h),
        hello: ClientHello {
            app_id: "demo".into(),
            device_id: "browser-1".into(),
            ..ClientHello::default()
        },
    };
    let mut client = h.client_over(connector, "chat", "u1").await;
    // The gateway lists it with its transport.
    let reply = h
        .http
        .get(format!("{}/v1/presence?biz=chat&alias=u1", h.base))
        .bearer_auth(DEMO_KEY)
        .send()
        .await
        .expect("presence");
    let body: serde_json::Value =
        serde_json::from_slice(&reply.bytes().await.expect("body")).expect("json");
    let connections = body["connections"].as_array().expect("connections");
    assert_eq!(connections.len(), 1, "{body}");
    assert_eq!(connections[0]["transport"], "ws", "{body}");
    for (payload, reliable) in [("m1", true), ("m2", true), ("now", false)] {
        let reply = h
            .post(
                "/v1/push",
                DEMO_KEY,
                &json!({"biz": "chat", "alias": "u1", "payload": payload, "reliable": reliable}),
            )
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let first = client.next_delivery().await;
    assert_eq!((first.payload.as_ref(), first.seq), (b"m1".as_slice(), 1));
    let second = client.next_delivery().await;
    assert_eq!((second.payload.as_ref(), second.seq), (b"m2".as_slice(), 2));
    let third = client.next_delivery().await;
    assert!(third.is_transient());
    assert_eq!(third.payload.as_ref(), b"now");
}

#[tokio::test]
async fn upgrades_without_the_subprotocol_or_the_transport_are_refused() {
    let h = harness().await;
    let err = upgrade(http_addr(&h), None)
        .await
        .expect_err("no subprotocol");
    assert!(err.starts_with("400 "), "{err}");
    assert!(err.contains(DEVICE_SUBPROTOCOL), "{err}");
    // A gateway without the WebSocket transport.
    let plain = Harness::start().await;
    let err = upgrade(http_addr(&plain), Some(DEVICE_SUBPROTOCOL))
        .await
        .expect_err("transport off");
    assert!(err.starts_with("404 "), "{err}");
    assert!(err.contains("not_found"), "{err}");
}

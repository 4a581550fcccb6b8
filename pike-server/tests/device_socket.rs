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
use pike_channel::proto::tunnel::{ClientHello, ErrorCode};
use pike_channel::{ConnectError, Connected, Connector};
use pike_server::http::{DEVICE_SUBPROTOCOL, ServeConfig};
use serde_json::json;
use tntunnel::tls::{TlsClientConfig, TlsServerConfig};
use tntunnel::{ClientSecurity, SecureStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async};
use tunnelkit::handed_listener;

/// A client WebSocket as a byte stream (the test's side of the adapter).
struct ClientWs {
    socket: WebSocketStream<SecureStream<TcpStream>>,
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
    /// The `Origin` header sent, as a browser's page would.
    origin: Option<&'static str>,
}

impl Connector for WsConnector {
    type Io = ClientWs;

    async fn connect(&self, _advised: &[String]) -> Result<Connected<ClientWs>, ConnectError> {
        let socket = upgrade_from(self.addr, Some(DEVICE_SUBPROTOCOL), self.origin)
            .await
            .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
        let io = client_ws(socket);
        let (framed, hello) =
            tntunnel::connect(io, self.hello.clone(), &tntunnel::TunnelConfig::default()).await?;
        Ok(Connected::new(framed, hello))
    }
}

fn client_ws(socket: WebSocketStream<SecureStream<TcpStream>>) -> ClientWs {
    ClientWs {
        socket,
        reading: Bytes::new(),
        ended: false,
        messages: 0,
    }
}

/// The WebSocket upgrade of `GET /v1/ws`, asking for `protocol`.
async fn upgrade(
    addr: SocketAddr,
    protocol: Option<&str>,
) -> Result<WebSocketStream<SecureStream<TcpStream>>, String> {
    upgrade_from(addr, protocol, None).await
}

/// The WebSocket upgrade of `GET /v1/ws` asking for `protocol`, from a page
/// of `origin` when given. A refusal is `"<status> <body>"`.
async fn upgrade_from(
    addr: SocketAddr,
    protocol: Option<&str>,
    origin: Option<&str>,
) -> Result<WebSocketStream<SecureStream<TcpStream>>, String> {
    upgrade_over(&ClientSecurity::Plain, addr, protocol, origin).await
}

/// The WebSocket upgrade of `GET /v1/ws` over `security` (`ws` or `wss`).
async fn upgrade_over(
    security: &ClientSecurity,
    addr: SocketAddr,
    protocol: Option<&str>,
    origin: Option<&str>,
) -> Result<WebSocketStream<SecureStream<TcpStream>>, String> {
    let scheme = if security.is_tls() { "wss" } else { "ws" };
    let mut request = format!("{scheme}://localhost:{}/v1/ws", addr.port())
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(protocol) = protocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).map_err(|e| e.to_string())?,
        );
    }
    if let Some(origin) = origin {
        request.headers_mut().insert(
            "origin",
            HeaderValue::from_str(origin).map_err(|e| e.to_string())?,
        );
    }
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let stream = security
        .secure(stream, "localhost")
        .await
        .map_err(|e| e.to_string())?;
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
    harness_serving(ServeConfig::default()).await
}

/// [`harness`] with the HTTP server's `serve_config` (TLS, timeouts).
async fn harness_serving(serve_config: ServeConfig) -> Harness {
    let (sender, listener) = handed_listener("127.0.0.1:0".parse().expect("addr"), 16);
    Harness::start_custom(
        move |builder| builder.handed("ws", listener),
        move |state| state.with_ws_transport(sender),
        serve_config,
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
        origin: None,
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

#[tokio::test]
async fn a_page_whose_origin_no_app_lists_is_refused_403_before_the_upgrade() {
    let h = harness().await;
    for origin in [
        "https://evil.example",
        "http://shop.example",
        "https://demo.example",
        "null",
    ] {
        let err = upgrade_from(http_addr(&h), Some(DEVICE_SUBPROTOCOL), Some(origin))
            .await
            .expect_err("an origin no app lists");
        let (status, body) = err.split_once(' ').expect("status and body");
        assert_eq!(status, "403", "{origin}: {err}");
        let body: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("allowed_origins") && m.contains(origin)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_listed_origin_logs_in_to_its_app_and_only_to_it() {
    let h = harness().await;
    // demo lists https://*.demo.example: a subdomain logs in to demo.
    let connector = WsConnector {
        addr: http_addr(&h),
        hello: ClientHello {
            app_id: "demo".into(),
            device_id: "browser-2".into(),
            ..ClientHello::default()
        },
        origin: Some("https://a.demo.example"),
    };
    let mut client = h.client_over(connector, "chat", "u2").await;
    let reply = h
        .post(
            "/v1/push",
            DEMO_KEY,
            &json!({"biz": "chat", "alias": "u2", "payload": "hi", "reliable": true}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let delivery = client.next_delivery().await;
    assert_eq!(delivery.payload.as_ref(), b"hi");

    // https://shop.example is demo's, not other's: its hello naming
    // `other` is closed FORBIDDEN before the handshake completes.
    let socket = upgrade_from(
        http_addr(&h),
        Some(DEVICE_SUBPROTOCOL),
        Some("https://shop.example"),
    )
    .await
    .expect("demo lists the origin: the upgrade goes through");
    let hello = ClientHello {
        app_id: "other".into(),
        device_id: "browser-3".into(),
        ..ClientHello::default()
    };
    let result = http_support::within(
        "the refusal",
        tntunnel::connect(client_ws(socket), hello, &tntunnel::TunnelConfig::default()),
    )
    .await;
    match result {
        Err(tntunnel::HandshakeError::Rejected { code, message, .. }) => {
            assert_eq!(code, ErrorCode::Forbidden, "{message}");
            assert!(message.contains("allowed_origins"), "{message}");
        }
        Err(other) => panic!("expected a FORBIDDEN close, got {other}"),
        Ok(_) => panic!("a hello of an app that does not list the origin was accepted"),
    }

    // And other's own origin logs in to other.
    let socket = upgrade_from(
        http_addr(&h),
        Some(DEVICE_SUBPROTOCOL),
        Some("https://other.example"),
    )
    .await
    .expect("other lists its origin");
    let hello = ClientHello {
        app_id: "other".into(),
        device_id: "browser-4".into(),
        ..ClientHello::default()
    };
    let (_framed, server_hello) = http_support::within(
        "the handshake",
        tntunnel::connect(client_ws(socket), hello, &tntunnel::TunnelConfig::default()),
    )
    .await
    .expect("accepted");
    assert!(!server_hello.connection_token.is_empty());
}

/// A development certificate (as the gateway's `[tls]` default makes it)
/// and a client that pins it, speaking HTTP/1.1 (not the Pike ALPN).
async fn https_identity(dir: &std::path::Path) -> (TlsServerConfig, ClientSecurity) {
    let (server, fingerprint) =
        TlsServerConfig::self_signed_in(dir, ["localhost".to_owned(), "127.0.0.1".to_owned()])
            .await
            .expect("a self-signed certificate");
    let pinned = TlsClientConfig::pinned([fingerprint]).expect("pinned client");
    let mut rustls = (*pinned.rustls_config()).clone();
    rustls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = ClientSecurity::Tls(TlsClientConfig::from_rustls(std::sync::Arc::new(rustls)));
    (server, client)
}

/// `GET path` over `security`, read to the end: the whole answer.
async fn raw_get(
    security: &ClientSecurity,
    addr: SocketAddr,
    path: &str,
) -> Result<String, String> {
    raw_request(
        security,
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
    )
    .await
}

/// `POST path` of JSON `body` with the demo app's key over `security`.
async fn raw_post(
    security: &ClientSecurity,
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> Result<String, String> {
    let body = body.to_string();
    raw_request(
        security,
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: Bearer {DEMO_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// Sends `request` over `security`, reads to the end: the whole answer.
async fn raw_request(
    security: &ClientSecurity,
    addr: SocketAddr,
    request: &str,
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut stream = security
        .secure(stream, "localhost")
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    // A TLS peer that closes without close_notify is fine here: what was
    // read is the answer.
    let _ = stream.read_to_end(&mut answer).await;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn https_and_wss_serve_the_api_and_devices_without_blocking_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = https_identity(dir.path()).await;
    let h = harness_serving(
        ServeConfig::default()
            .with_header_read_timeout(std::time::Duration::from_secs(2))
            .with_tls(&server),
    )
    .await;
    let addr = http_addr(&h);

    // A client that connects and says nothing does not hold up others, and
    // is dropped after the header-read timeout.
    let mut silent = TcpStream::connect(addr).await.expect("connect");

    let answer = http_support::within("https /healthz", raw_get(&client, addr, "/healthz"))
        .await
        .expect("https");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\""), "{answer}");

    // Plain HTTP on the TLS listener gets no HTTP answer.
    let plain = http_support::within(
        "plain http on the https port",
        raw_get(&ClientSecurity::Plain, addr, "/healthz"),
    )
    .await
    .unwrap_or_default();
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");

    // A device over wss logs in and gets a push.
    let socket = http_support::within(
        "wss upgrade",
        upgrade_over(&client, addr, Some(DEVICE_SUBPROTOCOL), None),
    )
    .await
    .expect("wss upgrade");
    drop(socket);
    let connector = WssConnector {
        addr,
        security: client.clone(),
    };
    let mut device = h.client_over(connector, "chat", "u5").await;
    let reply = http_support::within(
        "https push",
        raw_post(
            &client,
            addr,
            "/v1/push",
            &json!({"biz": "chat", "alias": "u5", "payload": "over-wss", "reliable": true}),
        ),
    )
    .await
    .expect("https push");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(device.next_delivery().await.payload.as_ref(), b"over-wss");

    let mut buf = [0u8; 64];
    let read = http_support::within("the silent client's end", async {
        use tokio::io::AsyncReadExt;
        silent.read(&mut buf).await
    })
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// Dials `wss://addr/v1/ws` and runs the tunnel handshake over it.
struct WssConnector {
    addr: SocketAddr,
    security: ClientSecurity,
}

impl Connector for WssConnector {
    type Io = ClientWs;

    async fn connect(&self, _advised: &[String]) -> Result<Connected<ClientWs>, ConnectError> {
        let socket = upgrade_over(&self.security, self.addr, Some(DEVICE_SUBPROTOCOL), None)
            .await
            .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
        let hello = ClientHello {
            app_id: "demo".into(),
            device_id: "wss-1".into(),
            ..ClientHello::default()
        };
        let (framed, hello) =
            tntunnel::connect(client_ws(socket), hello, &tntunnel::TunnelConfig::default()).await?;
        Ok(Connected::new(framed, hello))
    }
}

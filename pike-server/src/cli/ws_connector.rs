//! The CLI's WebSocket transport (`--transport ws`): a
//! [`Connector`] that dials the gateway's HTTP listener over tunnelkit TCP
//! (so source addresses rotate as for plain TCP), upgrades to
//! `GET /v1/ws` with the subprotocol `pike.v1`, and runs the tunnel
//! handshake over binary messages; [`ClientWs`] is the WebSocket as the
//! tunnel's byte stream (one write, one message: whole frames).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use pike_channel::proto::tunnel::ClientHello;
use pike_channel::{ConnectError, Connected, Connector};
use tntunnel::TunnelConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tunnelkit::{Dialer, TcpTransport};

use crate::http::DEVICE_SUBPROTOCOL;

type Tcp = <TcpTransport as tunnelkit::Transport>::Conn;

/// Dials `GET /v1/ws` on one of `servers` (raced by the dialer).
pub(crate) struct WsConnector {
    dialer: Dialer<TcpTransport>,
    servers: Vec<SocketAddr>,
    hello: ClientHello,
    resume_token: Mutex<Bytes>,
}

impl WsConnector {
    pub(crate) fn new(
        dialer: Dialer<TcpTransport>,
        servers: Vec<SocketAddr>,
        mut hello: ClientHello,
    ) -> Self {
        if hello.sdk_name.is_empty() {
            hello.sdk_name = "pike-cli".to_owned();
            hello.sdk_version = env!("CARGO_PKG_VERSION").to_owned();
        }
        Self {
            dialer,
            servers,
            hello,
            resume_token: Mutex::new(Bytes::new()),
        }
    }

    async fn dial(&self) -> Result<Connected<ClientWs>, ConnectError> {
        let dialed = self.dialer.dial(&self.servers).await?;
        let mut request = format!("ws://{}/v1/ws", dialed.peer)
            .into_client_request()
            .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(DEVICE_SUBPROTOCOL),
        );
        let config = WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0);
        let (socket, _) =
            tokio_tungstenite::client_async_with_config(request, dialed.conn, Some(config))
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(response) => {
                        ConnectError::Io(io::Error::other(format!(
                            "the WebSocket upgrade was refused: {} {}",
                            response.status(),
                            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                        )))
                    }
                    e => ConnectError::Io(io::Error::other(e)),
                })?;
        let mut hello = self.hello.clone();
        hello.resume_token = self
            .resume_token
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        let (framed, server_hello) =
            tntunnel::connect(ClientWs::new(socket), hello, &TunnelConfig::default()).await?;
        if !server_hello.resume_token.is_empty()
            && let Ok(mut token) = self.resume_token.lock()
        {
            *token = server_hello.resume_token.clone();
        }
        Ok(Connected::new(framed, server_hello).with_peer(dialed.peer, "ws"))
    }
}

impl Connector for WsConnector {
    type Io = ClientWs;

    fn connect(
        &self,
        _advised: &[String],
    ) -> impl Future<Output = Result<Connected<ClientWs>, ConnectError>> + Send {
        self.dial()
    }
}

/// A client WebSocket read and written as bytes.
pub(crate) struct ClientWs {
    socket: WebSocketStream<Tcp>,
    reading: Bytes,
    ended: bool,
}

impl ClientWs {
    fn new(socket: WebSocketStream<Tcp>) -> Self {
        Self {
            socket,
            reading: Bytes::new(),
            ended: false,
        }
    }
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
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message: pike.v1 carries frames in binary messages",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => self.ended = true,
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

//! A WebSocket as the byte stream of a Pike tunnel: the binary messages'
//! bytes in order on the read side, one binary message per write on the
//! other.
//!
//! The tunnel's codec writes whole frames into its buffer and hands the
//! buffer over in one write, which this stream sends as one message: a
//! message holds one or more whole frames, never part of one. Reads accept
//! frames split across messages too (the codec reassembles them). Pings and
//! pongs are skipped (tungstenite answers pings itself); a close or the
//! end of the socket is the end of the stream; a text message is an error
//! (`pike.v1` is binary).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{Message, WebSocket};
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A WebSocket read and written as bytes.
pub(crate) struct WsStream {
    socket: WebSocket,
    /// What is left of the message being read.
    reading: Bytes,
    /// The peer closed (or the socket ended).
    ended: bool,
}

impl WsStream {
    pub(crate) fn new(socket: WebSocket) -> Self {
        Self {
            socket,
            reading: Bytes::new(),
            ended: false,
        }
    }
}

impl AsyncRead for WsStream {
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
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
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

impl AsyncWrite for WsStream {
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

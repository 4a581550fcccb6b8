//! One logical connection over QUIC: a connection plus its single bidirectional stream.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use quinn::{Connection, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A QUIC connection carrying one bidirectional stream, usable like a TCP stream.
///
/// The client opens the stream; the server only learns about it once the client has written
/// on it, so **the client must write first** (Pike's client hello does). A listener drops a
/// connection whose client stays silent past the handshake timeout.
///
/// - [`AsyncWrite::poll_shutdown`] finishes the send direction (the peer reads end of stream).
/// - Dropping the stream keeps the connection open in the background for up to the configured
///   linger time (see [`QuicConfig::linger`](crate::QuicConfig::linger)), until the peer has
///   acknowledged everything written, then closes it with code 0. Without this, QUIC would
///   discard data still in flight. Outside a tokio runtime the connection closes at once.
/// - Use [`QuicStream::connection`] for QUIC specifics: RTT, stats, or closing with an
///   application error code.
#[derive(Debug)]
pub struct QuicStream {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    linger: Duration,
}

impl QuicStream {
    pub(crate) fn new(
        conn: Connection,
        send: SendStream,
        recv: RecvStream,
        linger: Duration,
    ) -> Self {
        Self {
            conn,
            send,
            recv,
            linger,
        }
    }

    /// The underlying QUIC connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The peer's address (it can change if the peer migrates).
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Finishing twice is harmless; report success like a TCP half-close would.
        let _already_finished = self.send.finish();
        Poll::Ready(Ok(()))
    }
}

impl Drop for QuicStream {
    fn drop(&mut self) {
        // Finishing fails only if the stream was already finished or reset: nothing to do then.
        let _already_finished = self.send.finish();
        if self.linger.is_zero() || self.conn.close_reason().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // `stopped` holds its own reference to the connection, so the connection stays open
        // until the peer acknowledged the data (or stopped the stream), or the linger elapses.
        let acknowledged = self.send.stopped();
        let conn = self.conn.clone();
        let linger = self.linger;
        runtime.spawn(async move {
            if tokio::time::timeout(linger, acknowledged).await.is_err() {
                tracing::debug!(peer.addr = %conn.remote_address(), "QUIC linger elapsed");
            }
            drop(conn);
        });
    }
}

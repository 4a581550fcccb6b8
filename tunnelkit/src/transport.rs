//! The transport seam: how a client opens a byte stream, and how a server accepts one.

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use tokio::io::{AsyncRead, AsyncWrite};

/// Client side of a transport: opens one reliable, ordered byte stream to a socket address.
///
/// Implemented by [`TcpTransport`](crate::TcpTransport) and
/// [`QuicTransport`](crate::QuicTransport) (behind the `tcp` and `quic` features), and by test
/// fakes. The [`Dialer`](crate::Dialer) races a list of endpoints over any `Transport`.
///
/// Addresses are socket addresses: name resolution is the caller's business (Pike connects to
/// IP lists directly).
pub trait Transport: Send + Sync {
    /// The connected byte stream.
    type Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Short transport name for logs and spans (`"tcp"`, `"quic"`).
    const NAME: &'static str;

    /// Opens a connection to `addr`.
    ///
    /// Dropping the returned future cancels the attempt and releases everything it holds.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    type Conn = T::Conn;
    const NAME: &'static str = T::NAME;

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Conn>> + Send {
        (**self).connect(addr)
    }
}

/// Server side of a transport: a bound socket that yields accepted byte streams.
///
/// Implemented by [`TcpListener`](crate::TcpListener) and
/// [`QuicListener`](crate::QuicListener). Wrap one in an [`Acceptor`](crate::Acceptor) to get
/// a connection limit and graceful shutdown.
pub trait Listener: Send + 'static {
    /// The accepted byte stream.
    type Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Short transport name for logs and spans (`"tcp"`, `"quic"`).
    const NAME: &'static str;

    /// Waits for the next connection and returns it with the peer's address.
    ///
    /// Must be cancel safe: dropping the future before it completes loses no connection.
    ///
    /// Errors of kind [`io::ErrorKind::InvalidInput`], [`io::ErrorKind::NotConnected`] or
    /// [`io::ErrorKind::Unsupported`] mean the listener is unusable; the
    /// [`Acceptor`](crate::Acceptor) treats every other error as transient.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;

    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Called by the [`Acceptor`](crate::Acceptor) wrapping this listener with the limits it
    /// enforces. A listener that does handshake work before [`accept`](Self::accept) (QUIC
    /// completes its TLS handshake in the listener) uses them to refuse connections over the
    /// connection limit before that work. The default does nothing.
    fn admission_limits(&mut self, limits: &crate::AcceptorLimits) {
        let _ = limits;
    }
}

//! The TCP listener.

use std::{io, net::SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

use crate::{ListenError, Listener};

/// A bound, listening TCP socket. Accepted streams have `TCP_NODELAY` set.
///
/// Use it through an [`Acceptor`](crate::Acceptor) for a connection limit and graceful
/// shutdown.
#[derive(Debug)]
pub struct TcpListener {
    inner: tokio::net::TcpListener,
}

impl TcpListener {
    /// Listen backlog used by [`TcpListener::bind`]. The kernel caps it at
    /// `net.core.somaxconn`.
    pub const DEFAULT_BACKLOG: u32 = 1024;

    /// Binds `addr` (port 0 picks a free port) with `SO_REUSEADDR` on Unix, so a restarted
    /// server does not wait for old connections in `TIME_WAIT`.
    ///
    /// Must be called from within a tokio runtime.
    pub fn bind(addr: SocketAddr) -> Result<Self, ListenError> {
        Self::bind_with_backlog(addr, Self::DEFAULT_BACKLOG)
    }

    /// Like [`TcpListener::bind`] with an explicit listen backlog.
    pub fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> Result<Self, ListenError> {
        let bind = || -> io::Result<tokio::net::TcpListener> {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            #[cfg(unix)]
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(backlog)
        };
        let inner = bind().map_err(|source| ListenError::Bind { addr, source })?;
        Ok(Self { inner })
    }

    /// Wraps an already listening tokio socket.
    pub fn from_tokio(inner: tokio::net::TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for TcpListener {
    type Conn = TcpStream;
    const NAME: &'static str = "tcp";

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        if let Err(error) = stream.set_nodelay(true) {
            // The peer may already have reset the connection; reads will report that.
            tracing::debug!(peer.addr = %peer, %error, "cannot set TCP_NODELAY");
        }
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

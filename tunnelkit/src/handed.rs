//! A [`Listener`] for connections accepted elsewhere and handed in: an
//! HTTP server's WebSocket upgrades, a socket passed by a supervisor. The
//! [`Acceptor`](crate::Acceptor) wrapping it applies the same limits as
//! to a socket listener (connections, handshakes in progress, shutdown).

use std::fmt;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::transport::Listener;

/// Any byte stream a [`HandedListener`] can carry.
pub trait HandedIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> HandedIo for T {}

/// A boxed byte stream handed to a [`HandedListener`].
pub type HandedConn = Box<dyn HandedIo>;

/// A listener whose connections are handed in through its
/// [`HandedSender`]s, with the peer address each came from.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use tunnelkit::{Listener, handed_listener};
///
/// let local = "127.0.0.1:9380".parse().unwrap();
/// let (sender, mut listener) = handed_listener(local, 16);
/// let (ours, _theirs) = tokio::io::duplex(64);
/// let peer = "127.0.0.1:50000".parse().unwrap();
/// sender.hand(Box::new(ours), peer).expect("room in the queue");
/// let (_conn, from) = listener.accept().await?;
/// assert_eq!(from, peer);
/// # Ok(())
/// # }
/// ```
pub struct HandedListener {
    rx: mpsc::Receiver<(HandedConn, SocketAddr)>,
    local: SocketAddr,
}

/// Hands connections to a [`HandedListener`]. Cheap to clone.
#[derive(Clone)]
pub struct HandedSender {
    tx: mpsc::Sender<(HandedConn, SocketAddr)>,
}

/// A connection the listener did not take: its queue was full, or the
/// listener is gone. The connection is given back, for the caller to close.
pub struct NotHanded(pub HandedConn);

/// A listener named `local` (the address its connections arrived on, for
/// logs) holding at most `backlog` handed connections not yet accepted,
/// and its sender.
pub fn handed_listener(local: SocketAddr, backlog: usize) -> (HandedSender, HandedListener) {
    let (tx, rx) = mpsc::channel(backlog.max(1));
    (HandedSender { tx }, HandedListener { rx, local })
}

impl HandedSender {
    /// Hands `conn`, from `peer`, to the listener, or gives it back when
    /// the listener's backlog is full or it is gone.
    pub fn hand(&self, conn: HandedConn, peer: SocketAddr) -> Result<(), NotHanded> {
        self.tx.try_send((conn, peer)).map_err(|e| match e {
            mpsc::error::TrySendError::Full((conn, _))
            | mpsc::error::TrySendError::Closed((conn, _)) => NotHanded(conn),
        })
    }

    /// Whether the listener is gone (its acceptor stopped).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Listener for HandedListener {
    type Conn = HandedConn;
    const NAME: &'static str = "handed";

    async fn accept(&mut self) -> io::Result<(Self::Conn, SocketAddr)> {
        match self.rx.recv().await {
            Some(handed) => Ok(handed),
            // Every sender is gone: nothing will arrive again.
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "every sender of the handed listener is gone",
            )),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl fmt::Debug for HandedListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandedListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for HandedSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandedSender")
            .field("closed", &self.tx.is_closed())
            .finish()
    }
}

impl fmt::Debug for NotHanded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NotHanded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_backlog_gives_the_connection_back_and_a_dropped_sender_ends_accepting() {
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let (sender, mut listener) = handed_listener(local, 1);
        let conn = || -> HandedConn { Box::new(tokio::io::duplex(8).0) };
        assert!(sender.hand(conn(), peer).is_ok());
        assert!(sender.hand(conn(), peer).is_err(), "the backlog holds one");
        let (_, from) = listener.accept().await.unwrap();
        assert_eq!(from, peer);
        assert_eq!(listener.local_addr().unwrap(), local);
        drop(sender);
        let err = listener.accept().await.map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    }
}

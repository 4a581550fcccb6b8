//! Accepting connections with a connection limit and graceful shutdown.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_util::{
    sync::CancellationToken,
    task::{TaskTracker, task_tracker::TaskTrackerToken},
};

use crate::{AcceptError, ConfigError, Listener};

/// Settings of an [`Acceptor`].
///
/// Defaults: no connection limit (size it from the deployment: file descriptors, memory per
/// connection), and a 100 ms pause after a resource error such as "too many open files",
/// short enough to resume quickly once descriptors free up, long enough not to spin.
#[derive(Clone, Debug)]
pub struct AcceptorConfig {
    max_connections: Option<usize>,
    accept_error_delay: Duration,
}

impl AcceptorConfig {
    /// Maximum number of admitted connections alive at once; `None` for no limit. Between 1
    /// and [`Semaphore::MAX_PERMITS`].
    pub fn max_connections(&mut self, max: Option<usize>) -> &mut Self {
        self.max_connections = max;
        self
    }

    /// Pause after an accept error that is not specific to one connection (for example
    /// `EMFILE`), before accepting again. Greater than zero.
    pub fn accept_error_delay(&mut self, delay: Duration) -> &mut Self {
        self.accept_error_delay = delay;
        self
    }
}

impl Default for AcceptorConfig {
    fn default() -> Self {
        Self {
            max_connections: None,
            accept_error_delay: Duration::from_millis(100),
        }
    }
}

/// Accepts connections from a [`Listener`], enforcing a connection limit and supporting
/// graceful shutdown. Works the same over TCP and QUIC.
///
/// - Every accepted connection holds a [`ConnGuard`]; dropping the connection (or its guard)
///   frees its slot.
/// - When the limit is reached the connection is **not** left hanging in the backlog: it is
///   accepted and returned as [`Incoming::OverLimit`], so the caller can tell the peer (e.g.
///   send an "overloaded" close frame, with a short write timeout) and then drop it.
///   Over-limit connections hold no slot.
/// - [`AcceptorHandle::shutdown`] stops accepting and closes the listening socket; existing
///   connections are untouched, and [`AcceptorHandle::wait_drained`] resolves once every
///   connection the acceptor handed out has been dropped.
#[derive(Debug)]
pub struct Acceptor<L: Listener> {
    listener: Option<L>,
    handle: AcceptorHandle,
    accept_error_delay: Duration,
}

impl<L: Listener> Acceptor<L> {
    /// Wraps `listener`, validating `config`.
    pub fn new(listener: L, config: &AcceptorConfig) -> Result<Self, ConfigError> {
        Self::with_shutdown(listener, config, &CancellationToken::new())
    }

    /// Like [`Acceptor::new`], and also shuts down when `parent` is cancelled (e.g. the
    /// application's shutdown token).
    pub fn with_shutdown(
        listener: L,
        config: &AcceptorConfig,
        parent: &CancellationToken,
    ) -> Result<Self, ConfigError> {
        let slots = match config.max_connections {
            None => None,
            Some(max) if (1..=Semaphore::MAX_PERMITS).contains(&max) => {
                Some(Arc::new(Semaphore::new(max)))
            }
            Some(_) => {
                return Err(ConfigError::OutOfBounds {
                    name: "max_connections",
                    reason: "must be between 1 and Semaphore::MAX_PERMITS",
                });
            }
        };
        if config.accept_error_delay.is_zero() {
            return Err(ConfigError::OutOfBounds {
                name: "accept_error_delay",
                reason: "must be greater than zero",
            });
        }
        Ok(Self {
            listener: Some(listener),
            handle: AcceptorHandle {
                cancel: parent.child_token(),
                tracker: TaskTracker::new(),
                slots,
                max_connections: config.max_connections,
            },
            accept_error_delay: config.accept_error_delay,
        })
    }

    /// A handle to shut the acceptor down and observe its connections.
    pub fn handle(&self) -> AcceptorHandle {
        self.handle.clone()
    }

    /// The listening address, or `None` after shutdown.
    pub fn local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.listener.as_ref().map(Listener::local_addr)
    }

    /// Waits for the next connection.
    ///
    /// Errors affecting one connection (reset or aborted before it was accepted) are skipped;
    /// resource errors (such as too many open files) pause for the configured delay and retry.
    /// Returns [`AcceptError::ShutDown`] once shutdown was requested and
    /// [`AcceptError::Listener`] if the listener became unusable (which also shuts the acceptor
    /// down). Cancel safe.
    pub async fn accept(&mut self) -> Result<Incoming<L::Conn>, AcceptError> {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                return Err(AcceptError::ShutDown);
            };
            let result = tokio::select! {
                biased;
                () = self.handle.cancel.cancelled() => None,
                result = listener.accept() => Some(result),
            };
            let Some(result) = result else {
                self.close();
                tracing::debug!(transport = L::NAME, "acceptor shut down");
                return Err(AcceptError::ShutDown);
            };
            let error = match result {
                Ok((conn, peer)) => return Ok(self.admit(conn, peer)),
                Err(error) => error,
            };
            match error.kind() {
                io::ErrorKind::InvalidInput
                | io::ErrorKind::NotConnected
                | io::ErrorKind::Unsupported => {
                    tracing::warn!(transport = L::NAME, %error, "listener failed");
                    self.close();
                    return Err(AcceptError::Listener(error));
                }
                io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut => {
                    tracing::debug!(transport = L::NAME, %error, "accept failed for one connection");
                }
                _ => {
                    tracing::warn!(
                        transport = L::NAME,
                        %error,
                        delay = ?self.accept_error_delay,
                        "accept error; pausing",
                    );
                    tokio::select! {
                        () = self.handle.cancel.cancelled() => {}
                        () = tokio::time::sleep(self.accept_error_delay) => {}
                    }
                }
            }
        }
    }

    fn admit(&self, conn: L::Conn, peer: SocketAddr) -> Incoming<L::Conn> {
        let token = self.handle.tracker.token();
        let slot = match &self.handle.slots {
            None => Ok(None),
            Some(slots) => Arc::clone(slots).try_acquire_owned().map(Some),
        };
        match slot {
            Ok(permit) => {
                tracing::debug!(peer.addr = %peer, transport = L::NAME, "accepted");
                Incoming::Accepted(AcceptedConn {
                    conn,
                    peer,
                    guard: ConnGuard {
                        permit,
                        _token: token,
                    },
                })
            }
            Err(_) => {
                tracing::debug!(
                    peer.addr = %peer,
                    transport = L::NAME,
                    max_connections = ?self.handle.max_connections,
                    "connection limit reached",
                );
                Incoming::OverLimit(AcceptedConn {
                    conn,
                    peer,
                    guard: ConnGuard {
                        permit: None,
                        _token: token,
                    },
                })
            }
        }
    }

    /// Stops accepting for good: closes the listening socket and marks the shutdown.
    fn close(&mut self) {
        self.listener = None;
        self.handle.shutdown();
    }
}

impl<L: Listener> Drop for Acceptor<L> {
    /// A dropped acceptor accepts nothing more, so it counts as shut down.
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Controls an [`Acceptor`] from elsewhere (e.g. a signal handler). Cheap to clone.
#[derive(Clone, Debug)]
pub struct AcceptorHandle {
    cancel: CancellationToken,
    tracker: TaskTracker,
    slots: Option<Arc<Semaphore>>,
    max_connections: Option<usize>,
}

impl AcceptorHandle {
    /// Stops accepting: a pending or later [`Acceptor::accept`] returns
    /// [`AcceptError::ShutDown`] and the listening socket is closed. Connections already
    /// accepted are left alone. Idempotent.
    pub fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
    }

    /// Whether shutdown was requested (directly, through the parent token, or because the
    /// listener failed or the acceptor was dropped).
    pub fn is_shut_down(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Waits for shutdown and then for every connection handed out by the acceptor (admitted
    /// or over the limit) to be dropped.
    pub async fn wait_drained(&self) {
        self.cancel.cancelled().await;
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Connections handed out and not yet dropped, over-limit ones included.
    pub fn open_connections(&self) -> usize {
        self.tracker.len()
    }

    /// Free slots under the limit, or `None` without a limit.
    pub fn available_slots(&self) -> Option<usize> {
        self.slots.as_ref().map(|slots| slots.available_permits())
    }
}

/// A connection from [`Acceptor::accept`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming<C> {
    /// Admitted: it holds a slot until dropped.
    Accepted(AcceptedConn<C>),
    /// The connection limit was reached. It holds no slot; tell the peer it is overloaded if
    /// the protocol allows (bounded by a short timeout), then drop it.
    OverLimit(AcceptedConn<C>),
}

impl<C> Incoming<C> {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        match self {
            Self::Accepted(conn) | Self::OverLimit(conn) => conn.peer,
        }
    }

    /// Whether the connection arrived over the limit.
    pub fn is_over_limit(&self) -> bool {
        matches!(self, Self::OverLimit(_))
    }
}

/// An accepted byte stream with its peer address and [`ConnGuard`].
///
/// Reads and writes go straight to the inner stream. Use [`AcceptedConn::into_parts`] to
/// split the stream from the guard, keeping the guard alive as long as the connection.
#[derive(Debug)]
pub struct AcceptedConn<C> {
    conn: C,
    peer: SocketAddr,
    guard: ConnGuard,
}

impl<C> AcceptedConn<C> {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &C {
        &self.conn
    }

    /// The inner stream, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.conn
    }

    /// The guard tracking this connection.
    pub fn guard(&self) -> &ConnGuard {
        &self.guard
    }

    /// Splits into the stream, the peer address and the guard.
    pub fn into_parts(self) -> (C, SocketAddr, ConnGuard) {
        (self.conn, self.peer, self.guard)
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for AcceptedConn<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for AcceptedConn<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }
}

/// Keeps an accepted connection counted: it holds the connection's slot under the limit (if
/// admitted) and its place in [`AcceptorHandle::wait_drained`]. Dropping it releases both.
#[derive(Debug)]
pub struct ConnGuard {
    permit: Option<OwnedSemaphorePermit>,
    _token: TaskTrackerToken,
}

impl ConnGuard {
    /// Whether this guard holds a slot under the connection limit (false for over-limit
    /// connections and when there is no limit).
    pub fn holds_slot(&self) -> bool {
        self.permit.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that hands out scripted results.
    #[derive(Debug)]
    struct Scripted(std::collections::VecDeque<io::Result<(tokio::io::DuplexStream, SocketAddr)>>);

    impl Listener for Scripted {
        type Conn = tokio::io::DuplexStream;
        const NAME: &'static str = "scripted";

        async fn accept(&mut self) -> io::Result<(Self::Conn, SocketAddr)> {
            match self.0.pop_front() {
                Some(result) => result,
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
        }
    }

    fn conn(port: u16) -> io::Result<(tokio::io::DuplexStream, SocketAddr)> {
        Ok((
            tokio::io::duplex(16).0,
            SocketAddr::from(([127, 0, 0, 1], port)),
        ))
    }

    #[test]
    fn config_is_validated() {
        let listener = || Scripted(Default::default());
        let mut config = AcceptorConfig::default();
        config.max_connections(Some(0));
        assert!(Acceptor::new(listener(), &config).is_err());
        config.max_connections(Some(Semaphore::MAX_PERMITS + 1));
        assert!(Acceptor::new(listener(), &config).is_err());
        let mut config = AcceptorConfig::default();
        config.accept_error_delay(Duration::ZERO);
        assert!(Acceptor::new(listener(), &config).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_skipped_and_fatal_ones_end_the_acceptor() {
        let script = vec![
            Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
            Err(io::Error::other("EMFILE")),
            conn(7),
            Err(io::Error::from(io::ErrorKind::InvalidInput)),
        ];
        let mut acceptor =
            Acceptor::new(Scripted(script.into()), &AcceptorConfig::default()).unwrap();
        let start = tokio::time::Instant::now();
        let incoming = acceptor.accept().await.unwrap();
        assert_eq!(incoming.peer_addr().port(), 7);
        // Only the resource error paused, for exactly the configured delay.
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert!(matches!(
            acceptor.accept().await,
            Err(AcceptError::Listener(e)) if e.kind() == io::ErrorKind::InvalidInput
        ));
        assert!(acceptor.handle().is_shut_down());
        assert!(matches!(
            acceptor.accept().await,
            Err(AcceptError::ShutDown)
        ));
    }

    #[tokio::test]
    async fn parent_token_shuts_the_acceptor_down() {
        let parent = CancellationToken::new();
        let mut acceptor = Acceptor::with_shutdown(
            Scripted(vec![conn(1)].into()),
            &AcceptorConfig::default(),
            &parent,
        )
        .unwrap();
        let first = acceptor.accept().await.unwrap();
        let handle = acceptor.handle();
        parent.cancel();
        assert!(matches!(
            acceptor.accept().await,
            Err(AcceptError::ShutDown)
        ));
        assert!(acceptor.local_addr().is_none());
        assert_eq!(handle.open_connections(), 1);
        drop(first);
        // Drained: resolves without any further shutdown call.
        handle.wait_drained().await;
        assert_eq!(handle.open_connections(), 0);
    }
}

//! Accepting connections with a connection limit, a bound on handshakes in progress and
//! graceful shutdown.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
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
/// Defaults: no connection limit and no handshake limit (size both from the deployment: file
/// descriptors, memory per connection, handshakes a core takes), and a 100 ms pause after a
/// resource error such as "too many open files", short enough to resume quickly once
/// descriptors free up, long enough not to spin.
#[derive(Clone, Debug)]
pub struct AcceptorConfig {
    max_connections: Option<usize>,
    max_handshakes: Option<usize>,
    accept_error_delay: Duration,
}

impl AcceptorConfig {
    /// Maximum number of admitted connections alive at once; `None` for no limit. Between 1
    /// and [`Semaphore::MAX_PERMITS`].
    ///
    /// A connection over the limit is still accepted, but handed over as
    /// [`Incoming::OverLimit`] before any handshake work, so the upper layer can refuse it
    /// cheaply.
    pub fn max_connections(&mut self, max: Option<usize>) -> &mut Self {
        self.max_connections = max;
        self
    }

    /// Maximum number of connections handed out whose handshake is still in progress (the
    /// upper layer's TLS and hello exchange, or the refusal of an over-limit connection);
    /// `None` for no limit. Between 1 and [`Semaphore::MAX_PERMITS`].
    ///
    /// A connection holds its handshake slot until [`ConnGuard::finish_handshake`] is called
    /// or the connection is dropped. While every slot is taken the acceptor does not accept:
    /// new connections wait in the kernel's listen backlog (their clients see a slow
    /// connect) until a handshake finishes, fails or times out. This bounds the memory and
    /// CPU that a flood of slow or half-open handshakes can take.
    pub fn max_handshakes(&mut self, max: Option<usize>) -> &mut Self {
        self.max_handshakes = max;
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
            max_handshakes: None,
            accept_error_delay: Duration::from_millis(100),
        }
    }
}

/// The validated limits of one or more [`Acceptor`]s, and their counters.
///
/// Acceptors built with the same `AcceptorLimits` ([`Acceptor::with_limits`]) share one
/// connection limit and one handshake limit: a server with a TCP, a TLS and a QUIC listener
/// counts all its connections together. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AcceptorLimits {
    inner: Arc<Limits>,
}

#[derive(Debug)]
struct Limits {
    max_connections: Option<usize>,
    max_handshakes: Option<usize>,
    accept_error_delay: Duration,
    slots: Option<Arc<Semaphore>>,
    handshake_slots: Option<Arc<Semaphore>>,
    handshakes: AtomicUsize,
    peak_handshakes: AtomicUsize,
    over_limit: AtomicU64,
}

impl AcceptorLimits {
    /// Validates `config`.
    pub fn new(config: &AcceptorConfig) -> Result<Self, ConfigError> {
        let semaphore = |max: Option<usize>, name| match max {
            None => Ok(None),
            Some(max) if (1..=Semaphore::MAX_PERMITS).contains(&max) => {
                Ok(Some(Arc::new(Semaphore::new(max))))
            }
            Some(_) => Err(ConfigError::OutOfBounds {
                name,
                reason: "must be between 1 and Semaphore::MAX_PERMITS",
            }),
        };
        let slots = semaphore(config.max_connections, "max_connections")?;
        let handshake_slots = semaphore(config.max_handshakes, "max_handshakes")?;
        if config.accept_error_delay.is_zero() {
            return Err(ConfigError::OutOfBounds {
                name: "accept_error_delay",
                reason: "must be greater than zero",
            });
        }
        Ok(Self {
            inner: Arc::new(Limits {
                max_connections: config.max_connections,
                max_handshakes: config.max_handshakes,
                accept_error_delay: config.accept_error_delay,
                slots,
                handshake_slots,
                handshakes: AtomicUsize::new(0),
                peak_handshakes: AtomicUsize::new(0),
                over_limit: AtomicU64::new(0),
            }),
        })
    }

    /// The connection limit.
    pub fn max_connections(&self) -> Option<usize> {
        self.inner.max_connections
    }

    /// The handshake limit.
    pub fn max_handshakes(&self) -> Option<usize> {
        self.inner.max_handshakes
    }

    /// Free slots under the connection limit, or `None` without a limit.
    pub fn available_slots(&self) -> Option<usize> {
        self.inner
            .slots
            .as_ref()
            .map(|slots| slots.available_permits())
    }

    /// Connections handed out whose handshake is not finished (see
    /// [`AcceptorConfig::max_handshakes`]); counted with or without a limit.
    pub fn handshakes_in_progress(&self) -> usize {
        self.inner.handshakes.load(Ordering::Relaxed)
    }

    /// The most handshakes ever in progress at once.
    pub fn peak_handshakes(&self) -> usize {
        self.inner.peak_handshakes.load(Ordering::Relaxed)
    }

    /// Whether the connection limit is reached (a new connection would be over it).
    pub fn is_full(&self) -> bool {
        self.available_slots() == Some(0)
    }

    /// Counts a connection a listener refused over the limit before handing it out (see
    /// [`Listener::admission_limits`]). Only the QUIC listener refuses before
    /// handing out.
    #[cfg_attr(not(feature = "quic"), allow(dead_code))]
    pub(crate) fn count_over_limit(&self) {
        self.inner.over_limit.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections refused over the connection limit so far: handed out as
    /// [`Incoming::OverLimit`], or refused by the listener itself before its handshake
    /// (QUIC).
    pub fn over_limit_total(&self) -> u64 {
        self.inner.over_limit.load(Ordering::Relaxed)
    }

    /// Waits until a handshake slot is free (at once without a limit), without taking it;
    /// `false` if `cancel` fires first.
    async fn wait_for_handshake_slot(&self, cancel: &CancellationToken) -> bool {
        let Some(slots) = &self.inner.handshake_slots else {
            return true;
        };
        if slots.available_permits() > 0 {
            return true;
        }
        tracing::debug!(
            max_handshakes = ?self.inner.max_handshakes,
            "handshake limit reached; accepting again once one finishes",
        );
        tokio::select! {
            biased;
            () = cancel.cancelled() => false,
            permit = slots.acquire() => permit.is_ok(),
        }
    }

    /// Takes a free handshake slot, if any.
    fn try_handshake_slot(&self) -> Option<HandshakeSlot> {
        let permit = match &self.inner.handshake_slots {
            None => None,
            Some(slots) => Some(Arc::clone(slots).try_acquire_owned().ok()?),
        };
        Some(HandshakeSlot::new(permit, &self.inner))
    }
}

/// A connection's place under the handshake limit, counted as a handshake in progress;
/// dropping it frees the place.
#[derive(Debug)]
struct HandshakeSlot {
    _permit: Option<OwnedSemaphorePermit>,
    limits: Arc<Limits>,
}

impl HandshakeSlot {
    fn new(permit: Option<OwnedSemaphorePermit>, limits: &Arc<Limits>) -> Self {
        let now = limits.handshakes.fetch_add(1, Ordering::Relaxed) + 1;
        limits.peak_handshakes.fetch_max(now, Ordering::Relaxed);
        Self {
            _permit: permit,
            limits: Arc::clone(limits),
        }
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.limits.handshakes.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections from a [`Listener`], enforcing a connection limit and a bound on
/// handshakes in progress, and supporting graceful shutdown. Works the same over TCP and
/// QUIC.
///
/// - Every accepted connection holds a [`ConnGuard`]; dropping the connection (or its guard)
///   frees its slot.
/// - When the connection limit is reached the connection is **not** left hanging in the
///   backlog: it is accepted and returned as [`Incoming::OverLimit`] before any handshake
///   work, so the caller can refuse it cheaply (e.g. write a pre-encoded "overloaded" close
///   frame on a plain stream, or just drop it) with a short timeout. Over-limit connections
///   hold no connection slot.
/// - Every connection handed out (admitted or over the limit) holds a handshake slot until
///   [`ConnGuard::finish_handshake`] or its drop; with every handshake slot taken the
///   acceptor waits before accepting more ([`AcceptorConfig::max_handshakes`]).
/// - [`AcceptorHandle::shutdown`] stops accepting and closes the listening socket; existing
///   connections are untouched, and [`AcceptorHandle::wait_drained`] resolves once every
///   connection the acceptor handed out has been dropped.
#[derive(Debug)]
pub struct Acceptor<L: Listener> {
    listener: Option<L>,
    /// A connection accepted when another acceptor sharing the limits took the last
    /// handshake slot first; handed out once a slot frees.
    waiting: Option<(L::Conn, SocketAddr)>,
    handle: AcceptorHandle,
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
        Ok(Self::with_limits(
            listener,
            &AcceptorLimits::new(config)?,
            parent,
        ))
    }

    /// Wraps `listener` under `limits`, which other acceptors may share; shuts down when
    /// `parent` is cancelled.
    pub fn with_limits(
        mut listener: L,
        limits: &AcceptorLimits,
        parent: &CancellationToken,
    ) -> Self {
        listener.admission_limits(limits);
        Self {
            listener: Some(listener),
            waiting: None,
            handle: AcceptorHandle {
                cancel: parent.child_token(),
                tracker: TaskTracker::new(),
                limits: limits.clone(),
            },
        }
    }

    /// A handle to shut the acceptor down and observe its connections.
    pub fn handle(&self) -> AcceptorHandle {
        self.handle.clone()
    }

    /// The listening address, or `None` after shutdown.
    pub fn local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.listener.as_ref().map(Listener::local_addr)
    }

    /// Waits for a free handshake slot, then for the next connection.
    ///
    /// Errors affecting one connection (reset or aborted before it was accepted) are skipped;
    /// resource errors (such as too many open files) pause for the configured delay and retry.
    /// Returns [`AcceptError::ShutDown`] once shutdown was requested and
    /// [`AcceptError::Listener`] if the listener became unusable (which also shuts the acceptor
    /// down). Cancel safe.
    pub async fn accept(&mut self) -> Result<Incoming<L::Conn>, AcceptError> {
        loop {
            if self.listener.is_none() {
                return Err(AcceptError::ShutDown);
            }
            // Accept only with a handshake slot free, so that connections beyond the bound
            // wait in the kernel's backlog. Acceptors sharing the limits may race for the
            // last slot: the loser keeps its connection until a slot frees.
            if !self
                .handle
                .limits
                .wait_for_handshake_slot(&self.handle.cancel)
                .await
            {
                return Err(self.shut_down());
            }
            if let Some((conn, peer)) = self.waiting.take() {
                match self.handle.limits.try_handshake_slot() {
                    Some(slot) => return Ok(self.admit(conn, peer, slot)),
                    None => {
                        self.waiting = Some((conn, peer));
                        continue;
                    }
                }
            }
            let Some(listener) = self.listener.as_mut() else {
                return Err(AcceptError::ShutDown);
            };
            let result = tokio::select! {
                biased;
                () = self.handle.cancel.cancelled() => None,
                result = listener.accept() => Some(result),
            };
            let Some(result) = result else {
                return Err(self.shut_down());
            };
            let error = match result {
                Ok((conn, peer)) => match self.handle.limits.try_handshake_slot() {
                    Some(slot) => return Ok(self.admit(conn, peer, slot)),
                    None => {
                        self.waiting = Some((conn, peer));
                        continue;
                    }
                },
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
                    let delay = self.handle.limits.inner.accept_error_delay;
                    tracing::warn!(
                        transport = L::NAME,
                        %error,
                        ?delay,
                        "accept error; pausing",
                    );
                    tokio::select! {
                        () = self.handle.cancel.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn admit(
        &self,
        conn: L::Conn,
        peer: SocketAddr,
        handshake: HandshakeSlot,
    ) -> Incoming<L::Conn> {
        let token = self.handle.tracker.token();
        let limits = &self.handle.limits.inner;
        let slot = match &limits.slots {
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
                        handshake: Some(handshake),
                        _token: token,
                    },
                })
            }
            Err(_) => {
                limits.over_limit.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    peer.addr = %peer,
                    transport = L::NAME,
                    max_connections = ?limits.max_connections,
                    "connection limit reached",
                );
                Incoming::OverLimit(AcceptedConn {
                    conn,
                    peer,
                    guard: ConnGuard {
                        permit: None,
                        handshake: Some(handshake),
                        _token: token,
                    },
                })
            }
        }
    }

    /// Stops for good after a shutdown request; the error to return.
    fn shut_down(&mut self) -> AcceptError {
        self.close();
        tracing::debug!(transport = L::NAME, "acceptor shut down");
        AcceptError::ShutDown
    }

    /// Stops accepting for good: closes the listening socket and marks the shutdown.
    fn close(&mut self) {
        self.listener = None;
        self.waiting = None;
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
    limits: AcceptorLimits,
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
        self.limits.available_slots()
    }

    /// The limits and counters (shared with the acceptors built on the same
    /// [`AcceptorLimits`]).
    pub fn limits(&self) -> &AcceptorLimits {
        &self.limits
    }
}

/// A connection from [`Acceptor::accept`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming<C> {
    /// Admitted: it holds a slot until dropped.
    Accepted(AcceptedConn<C>),
    /// The connection limit was reached. It holds no connection slot (but a handshake slot
    /// until dropped); tell the peer it is overloaded if the protocol allows it cheaply
    /// (bounded by a short timeout), then drop it.
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

    /// The guard, mutably (e.g. to [`finish_handshake`](ConnGuard::finish_handshake)).
    pub fn guard_mut(&mut self) -> &mut ConnGuard {
        &mut self.guard
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
/// admitted), its handshake slot until [`finish_handshake`](Self::finish_handshake), and its
/// place in [`AcceptorHandle::wait_drained`]. Dropping it releases all three.
#[derive(Debug)]
pub struct ConnGuard {
    permit: Option<OwnedSemaphorePermit>,
    handshake: Option<HandshakeSlot>,
    _token: TaskTrackerToken,
}

impl ConnGuard {
    /// Whether this guard holds a slot under the connection limit (false for over-limit
    /// connections and when there is no limit).
    pub fn holds_slot(&self) -> bool {
        self.permit.is_some()
    }

    /// The connection is established (or refused): frees its handshake slot so that the
    /// acceptor may take another connection. Idempotent.
    pub fn finish_handshake(&mut self) {
        self.handshake = None;
    }

    /// Whether the connection still holds a handshake slot.
    pub fn in_handshake(&self) -> bool {
        self.handshake.is_some()
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
        let mut config = AcceptorConfig::default();
        config.max_handshakes(Some(0));
        assert!(matches!(
            AcceptorLimits::new(&config),
            Err(ConfigError::OutOfBounds {
                name: "max_handshakes",
                ..
            })
        ));
    }

    fn limits(max_connections: Option<usize>, max_handshakes: Option<usize>) -> AcceptorLimits {
        let mut config = AcceptorConfig::default();
        config
            .max_connections(max_connections)
            .max_handshakes(max_handshakes);
        AcceptorLimits::new(&config).unwrap()
    }

    fn scripted(ports: impl IntoIterator<Item = u16>) -> Scripted {
        Scripted(ports.into_iter().map(conn).collect())
    }

    #[tokio::test(start_paused = true)]
    async fn handshake_limit_holds_accepting_until_a_handshake_finishes() {
        let limits = limits(None, Some(2));
        let mut acceptor =
            Acceptor::with_limits(scripted([1, 2, 3]), &limits, &CancellationToken::new());
        let Incoming::Accepted(mut first) = acceptor.accept().await.unwrap() else {
            panic!("over the limit");
        };
        let second = acceptor.accept().await.unwrap();
        assert!(first.guard().in_handshake());
        assert_eq!(limits.handshakes_in_progress(), 2);
        // Both handshake slots are taken: the third connection is not accepted, however
        // long we wait (the virtual clock runs an hour ahead).
        let waiting = tokio::time::timeout(Duration::from_secs(3600), acceptor.accept()).await;
        assert!(waiting.is_err(), "accepted past the handshake limit");
        assert_eq!(limits.handshakes_in_progress(), 2);
        // One handshake finishes: the cancelled accept lost nothing, the third arrives.
        first.guard_mut().finish_handshake();
        first.guard_mut().finish_handshake();
        assert!(!first.guard().in_handshake());
        assert_eq!(limits.handshakes_in_progress(), 1);
        let third = acceptor.accept().await.unwrap();
        assert_eq!(third.peer_addr().port(), 3);
        assert_eq!(limits.handshakes_in_progress(), 2);
        assert_eq!(limits.peak_handshakes(), 2);
        // A connection dropped during its handshake frees its slot too.
        drop(second);
        assert_eq!(limits.handshakes_in_progress(), 1);
        drop(third);
        assert_eq!(limits.handshakes_in_progress(), 0);
        assert_eq!(acceptor.handle().open_connections(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn over_limit_connections_are_counted_and_hold_a_handshake_slot() {
        let limits = limits(Some(1), Some(1));
        let mut acceptor =
            Acceptor::with_limits(scripted([1, 2, 3]), &limits, &CancellationToken::new());
        let Incoming::Accepted(mut admitted) = acceptor.accept().await.unwrap() else {
            panic!("first connection over the limit");
        };
        admitted.guard_mut().finish_handshake();
        let refused = acceptor.accept().await.unwrap();
        assert!(refused.is_over_limit());
        assert_eq!(limits.over_limit_total(), 1);
        assert_eq!(limits.handshakes_in_progress(), 1);
        // The refusal in progress takes the only handshake slot.
        let waiting = tokio::time::timeout(Duration::from_secs(60), acceptor.accept()).await;
        assert!(waiting.is_err());
        drop(refused);
        let next = acceptor.accept().await.unwrap();
        assert!(next.is_over_limit());
        assert_eq!(limits.over_limit_total(), 2);
        assert_eq!(limits.available_slots(), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn acceptors_sharing_limits_count_together() {
        let limits = limits(Some(1), None);
        let shutdown = CancellationToken::new();
        let mut tcp = Acceptor::with_limits(scripted([1]), &limits, &shutdown);
        let mut tls = Acceptor::with_limits(scripted([2]), &limits, &shutdown);
        let admitted = tcp.accept().await.unwrap();
        assert!(!admitted.is_over_limit());
        assert!(tls.accept().await.unwrap().is_over_limit());
        assert_eq!(tls.handle().limits().over_limit_total(), 1);
        // One shutdown token stops both.
        shutdown.cancel();
        assert!(matches!(tcp.accept().await, Err(AcceptError::ShutDown)));
        assert!(matches!(tls.accept().await, Err(AcceptError::ShutDown)));
    }

    /// A listener fed by a channel, for connections that arrive on cue.
    #[derive(Debug)]
    struct Fed(tokio::sync::mpsc::UnboundedReceiver<u16>);

    impl Listener for Fed {
        type Conn = tokio::io::DuplexStream;
        const NAME: &'static str = "fed";

        async fn accept(&mut self) -> io::Result<(Self::Conn, SocketAddr)> {
            match self.0.recv().await {
                Some(port) => conn(port),
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
        }
    }

    /// Two acceptors share one handshake slot. An idle acceptor reserves nothing, and the
    /// one that loses the race for the slot keeps its connection until the slot frees.
    #[tokio::test(start_paused = true)]
    async fn acceptors_sharing_the_handshake_bound_reserve_nothing_while_idle() {
        let limits = limits(None, Some(1));
        let shutdown = CancellationToken::new();
        let (feed_a, rx_a) = tokio::sync::mpsc::unbounded_channel();
        let (feed_b, rx_b) = tokio::sync::mpsc::unbounded_channel();
        let mut a = Acceptor::with_limits(Fed(rx_a), &limits, &shutdown);
        let mut b = Acceptor::with_limits(Fed(rx_b), &limits, &shutdown);
        // B waits in its listener while the slot is free.
        let mut b_task = tokio::spawn(async move {
            let incoming = b.accept().await;
            (b, incoming)
        });
        tokio::task::yield_now().await;
        // A takes the only slot although B is waiting for a connection.
        feed_a.send(1).unwrap();
        let Incoming::Accepted(mut first) = a.accept().await.unwrap() else {
            panic!("over the limit");
        };
        assert_eq!(limits.handshakes_in_progress(), 1);
        // B's connection arrives with no slot free: it is held, not handed out.
        feed_b.send(2).unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(60), &mut b_task).await;
        assert!(waited.is_err(), "handed out past the handshake bound");
        assert_eq!(limits.handshakes_in_progress(), 1);
        first.guard_mut().finish_handshake();
        let (_b, incoming) = b_task.await.unwrap();
        assert_eq!(incoming.unwrap().peer_addr().port(), 2);
        assert_eq!(limits.peak_handshakes(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_wait_for_a_handshake_slot() {
        let limits = limits(None, Some(1));
        let mut acceptor =
            Acceptor::with_limits(scripted([1, 2]), &limits, &CancellationToken::new());
        let _first = acceptor.accept().await.unwrap();
        let handle = acceptor.handle();
        let wait = tokio::spawn(async move { acceptor.accept().await });
        tokio::task::yield_now().await;
        handle.shutdown();
        assert!(matches!(wait.await.unwrap(), Err(AcceptError::ShutDown)));
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

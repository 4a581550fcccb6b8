//! The QUIC listener.

use std::{
    fmt, io,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures_util::{StreamExt as _, future::BoxFuture, stream::FuturesUnordered};
use quinn::{Endpoint, ServerConfig, VarInt, crypto::rustls::QuicServerConfig};
use tokio::{sync::mpsc, time::Instant};
use tracing::Instrument as _;

use super::{QuicConfig, QuicStream, config::ValidQuicConfig};
use crate::{AcceptorLimits, ConfigError, ListenError, Listener};

/// Application close code used when the listener closes a connection it never handed out
/// (the client stayed silent past the handshake timeout, or the accept queue was full).
const CLOSE_CODE: VarInt = VarInt::from_u32(0);

/// A QUIC server endpoint yielding one [`QuicStream`] per client connection.
///
/// A background task accepts and handshakes connections even while nobody is in
/// [`Listener::accept`], like a kernel's TCP backlog. A connection is ready once its handshake is complete and the client has opened its
/// bidirectional stream **and written on it**. One that fails or exceeds
/// [`QuicConfig::handshake_timeout`] is closed (and logged at debug level) without disturbing
/// `accept`. At most [`QuicConfig::max_pending_handshakes`] connections may be in the
/// handshake and the same number ready but not yet accepted; beyond that new connections are
/// refused.
///
/// Dropping the listener closes the connections not yet accepted, and from then on refuses new
/// connection attempts (the client gets a prompt `CONNECTION_REFUSED`) while the connections
/// already accepted keep running; the UDP socket closes when the last of them ends.
pub struct QuicListener {
    endpoint: Endpoint,
    ready: mpsc::Receiver<(QuicStream, SocketAddr)>,
    /// The limits of the acceptor wrapping the listener, once it is wrapped.
    limits: Arc<OnceLock<AcceptorLimits>>,
}

impl QuicListener {
    /// Binds a UDP socket on `addr` and serves QUIC with the given rustls server configuration
    /// (certificates and ALPN are the caller's business; QUIC needs TLS 1.3).
    ///
    /// Must be called from within a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        config: &QuicConfig,
    ) -> Result<Self, ListenError> {
        let valid = config.validate()?;
        let crypto =
            QuicServerConfig::try_from(tls).map_err(|e| ConfigError::Tls(e.to_string()))?;
        let mut server_config = ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(valid.server_transport());
        let endpoint = bind_endpoint(server_config, addr)
            .map_err(|source| ListenError::Bind { addr, source })?;
        let (ready_tx, ready) = mpsc::channel(valid.max_pending_handshakes);
        let span = tracing::debug_span!(
            "quic_listener",
            local.addr = ?endpoint.local_addr().ok(),
        );
        let limits = Arc::new(OnceLock::new());
        // Detached: it ends by itself once the listener is gone and the endpoint is idle.
        tokio::spawn(
            drive(endpoint.clone(), valid, ready_tx, Arc::clone(&limits)).instrument(span),
        );
        Ok(Self {
            endpoint,
            ready,
            limits,
        })
    }

    /// The underlying quinn endpoint (for stats, or to close every connection at once).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Socket buffer asked for on the listener's UDP socket (the kernel caps
/// it at `net.core.rmem_max` / `wmem_max`, 4 MiB on common distributions).
/// The default (≈ 208 KiB) holds ≈ 170 Initial packets: a burst of a few
/// hundred handshakes overflowed it and every drop cost the client a
/// retransmission timeout (connects fell from ≈ 2,000/s to ≈ 285/s).
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds the UDP socket with large buffers (best effort) and starts the
/// endpoint on it.
fn bind_endpoint(server_config: ServerConfig, addr: SocketAddr) -> io::Result<Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    if let Err(e) = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER) {
        tracing::debug!(%e, "cannot grow the QUIC receive buffer");
    }
    if let Err(e) = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER) {
        tracing::debug!(%e, "cannot grow the QUIC send buffer");
    }
    let runtime =
        quinn::default_runtime().ok_or_else(|| io::Error::other("no async runtime found"))?;
    Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config),
        socket,
        runtime,
    )
}

impl fmt::Debug for QuicListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicListener")
            .field("local_addr", &self.endpoint.local_addr().ok())
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl Listener for QuicListener {
    type Conn = QuicStream;
    const NAME: &'static str = "quic";

    async fn accept(&mut self) -> io::Result<(QuicStream, SocketAddr)> {
        self.ready.recv().await.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "the QUIC endpoint was closed")
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Connections arriving while the acceptor's connection limit is reached are refused
    /// before their handshake (the client gets a prompt `CONNECTION_REFUSED`).
    fn admission_limits(&mut self, limits: &AcceptorLimits) {
        let _ = self.limits.set(limits.clone());
    }
}

type Handshake = BoxFuture<'static, Option<(QuicStream, SocketAddr)>>;

/// Serves the listener until it is dropped, then refuses newcomers until the connections it
/// handed out have ended.
async fn drive(
    endpoint: Endpoint,
    config: ValidQuicConfig,
    ready: mpsc::Sender<(QuicStream, SocketAddr)>,
    limits: Arc<OnceLock<AcceptorLimits>>,
) {
    if !serve(&endpoint, &config, &ready, &limits).await {
        return;
    }
    drop(ready);
    tracing::debug!("QUIC listener dropped; refusing new connections");
    loop {
        tokio::select! {
            () = endpoint.wait_idle() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming.refuse(),
                None => return,
            },
        }
    }
    endpoint.set_server_config(None);
    tracing::debug!("QUIC listener idle");
}

/// Accepts incoming connections, runs their handshakes concurrently and queues the ready ones.
/// Returns `true` when the listener (the receiver) was dropped, `false` when the endpoint
/// closed. Handshakes still pending are abandoned (their connections closed) on return.
async fn serve(
    endpoint: &Endpoint,
    config: &ValidQuicConfig,
    ready: &mpsc::Sender<(QuicStream, SocketAddr)>,
    limits: &OnceLock<AcceptorLimits>,
) -> bool {
    let mut pending: FuturesUnordered<Handshake> = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            () = ready.closed() => return true,
            Some(done) = pending.next(), if !pending.is_empty() => {
                let Some((stream, peer)) = done else { continue };
                match ready.try_send((stream, peer)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full((stream, peer))) => {
                        tracing::warn!(peer.addr = %peer, "QUIC accept queue full; closing connection");
                        stream.connection().close(CLOSE_CODE, b"server busy");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return true,
                }
            }
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else {
                    tracing::debug!("QUIC endpoint closed");
                    return false;
                };
                if let Some(limits) = limits.get().filter(|l| l.is_full()) {
                    tracing::debug!(
                        peer.addr = %incoming.remote_address(),
                        max_connections = ?limits.max_connections(),
                        "connection limit reached; refusing before the handshake",
                    );
                    limits.count_over_limit();
                    incoming.refuse();
                    continue;
                }
                if pending.len() >= config.max_pending_handshakes {
                    tracing::warn!(
                        peer.addr = %incoming.remote_address(),
                        "too many QUIC handshakes in progress; refusing connection",
                    );
                    incoming.refuse();
                    continue;
                }
                pending.push(Box::pin(handshake(incoming, config.handshake_timeout, config.linger)));
            }
        }
    }
}

/// Completes the handshake and waits for the client's stream; `None` if either fails.
async fn handshake(
    incoming: quinn::Incoming,
    limit: Duration,
    linger: Duration,
) -> Option<(QuicStream, SocketAddr)> {
    let peer = incoming.remote_address();
    let span = tracing::debug_span!("conn", peer.addr = %peer, transport = "quic");
    async move {
        let deadline = Instant::now() + limit;
        let conn = match tokio::time::timeout_at(deadline, incoming).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => {
                tracing::debug!(%error, "QUIC handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!("QUIC handshake timed out");
                return None;
            }
        };
        match tokio::time::timeout_at(deadline, conn.accept_bi()).await {
            Ok(Ok((send, recv))) => Some((QuicStream::new(conn, send, recv, linger), peer)),
            Ok(Err(error)) => {
                tracing::debug!(%error, "QUIC connection lost before its stream opened");
                None
            }
            Err(_) => {
                tracing::debug!("client did not open and write on its stream in time");
                conn.close(CLOSE_CODE, b"no stream opened in time");
                None
            }
        }
    }
    .instrument(span)
    .await
}

//! Admission: the one accept loop of a Pike server, shared by
//! [`spawn_accept_loop`](super::spawn_accept_loop) and custom gateways.
//!
//! For every connection a tunnelkit [`Acceptor`] hands out:
//!
//! - **over the connection limit**: refused before any handshake work. On a
//!   plain stream (plain TCP; or a QUIC stream that slipped past the QUIC
//!   listener's own refusal before the QUIC handshake) the server writes a
//!   close frame encoded once at start
//!   ([`Refusal`], code `OVERLOADED` with reconnect advice) without reading
//!   the client's hello, half-closes, and drains what the client sent for at
//!   most [`REFUSAL_TIMEOUT`] so the kernel does not reset the connection
//!   before the client read the frame. On a TLS listener the socket is
//!   dropped at once: no TLS handshake, no bytes sent (the client sees the
//!   connection closed during its TLS handshake and backs off);
//! - **admitted**: TLS (if any) and the tunnel hello exchange, both within
//!   the tunnel's handshake timeout together, then the [`TunnelHandler`]
//!   decides about the hello and runs the connection.
//!
//! Every connection holds a handshake slot of the acceptor
//! ([`tunnelkit::AcceptorConfig::max_handshakes`]) until the handler calls
//! [`ConnGuard::finish_handshake`] (or drops it): with every slot taken the
//! acceptor accepts nothing more until one frees.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proto::tunnel::{Close, ErrorCode, ReconnectAdvice};
use tntunnel::{
    Frame, FrameCodec, FrameType, HandshakeError, SecureStream, SecurityError, ServerSecurity,
    TunnelConfig,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::task::JoinSet;
use tokio_util::codec::Encoder as _;
use tracing::Instrument as _;
use tunnelkit::{AcceptedConn, Acceptor, ConnGuard, Incoming, Listener};

/// Longest time an over-limit connection is given to receive its refusal
/// (the write, the half-close and the drain of what the client sent).
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Most bytes read (and discarded) from an over-limit client while its
/// refusal lingers: a client hello is far smaller.
const REFUSAL_DRAIN: usize = 16 * 1024;

/// A close frame encoded once, written to connections refused before their
/// handshake.
#[derive(Clone, Debug)]
pub struct Refusal {
    bytes: Bytes,
}

impl Refusal {
    /// A close frame with `code`, `message` and `reconnect` advice.
    pub fn new(
        code: ErrorCode,
        message: impl Into<String>,
        reconnect: Option<ReconnectAdvice>,
    ) -> Self {
        let close = Close {
            code: code.into(),
            message: message.into(),
            reconnect,
        };
        let frame = Frame::from_message(FrameType::CLOSE, &close);
        let mut bytes = BytesMut::with_capacity(frame.encoded_len());
        // Encoding a small close frame cannot fail (no compression, far
        // below any frame limit); an empty refusal would only drop the
        // connection without a word.
        if FrameCodec::new().encode(frame, &mut bytes).is_err() {
            bytes.clear();
        }
        Self {
            bytes: bytes.freeze(),
        }
    }

    /// `OVERLOADED` ("connection limit reached") with `reconnect` advice.
    pub fn overloaded(reconnect: ReconnectAdvice) -> Self {
        Self::new(
            ErrorCode::Overloaded,
            "connection limit reached",
            Some(reconnect),
        )
    }

    /// The encoded frame.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What a listener's admission needs: how to secure its connections, the
/// tunnel settings (frame limit, handshake timeout) and the refusal for
/// over-limit connections. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Admission {
    security: ServerSecurity,
    tunnel: Arc<TunnelConfig>,
    refusal: Refusal,
}

impl Admission {
    /// Admission with `security` and `tunnel`, refusing over-limit
    /// connections with `refusal`.
    pub fn new(security: ServerSecurity, tunnel: Arc<TunnelConfig>, refusal: Refusal) -> Self {
        Self {
            security,
            tunnel,
            refusal,
        }
    }

    /// Whether connections run TLS.
    pub fn is_tls(&self) -> bool {
        self.security.is_tls()
    }

    /// The tunnel settings.
    pub fn tunnel(&self) -> &Arc<TunnelConfig> {
        &self.tunnel
    }
}

/// Why an admitted connection did not reach the hello decision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(#[from] SecurityError),
    /// The tunnel hello exchange failed.
    #[error("tunnel handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// TLS and hello together took longer than the handshake timeout.
    #[error("handshake not finished within {0:?}")]
    Timeout(Duration),
}

/// An admitted connection whose client hello arrived.
#[derive(Debug)]
#[non_exhaustive]
pub struct Handshaken<C> {
    /// The tunnel, waiting for [`accept`](tntunnel::Incoming::accept) or
    /// [`reject`](tntunnel::Incoming::reject).
    pub incoming: tntunnel::Incoming<SecureStream<C>>,
    /// Keep it as long as the connection: it holds the connection's slot.
    /// Call [`ConnGuard::finish_handshake`] once the hello is answered.
    pub guard: ConnGuard,
    /// The client's address.
    pub peer: SocketAddr,
}

/// What a server does with the connections of [`run_accept_loop`].
pub trait TunnelHandler<C>: Send + Sync + 'static {
    /// Decides about the hello and runs the connection (in the connection's
    /// handshake task: spawn a task of its own for a long-lived connection
    /// if the handshake's state should not stay in memory).
    fn hello(&self, tunnel: Handshaken<C>) -> impl Future<Output = ()> + Send;

    /// An admitted connection failed before its hello (logged at debug
    /// level already).
    fn handshake_failed(&self, peer: SocketAddr, error: &AdmissionError) {
        let _ = (peer, error);
    }

    /// A connection over the limit is being refused.
    fn refused(&self, peer: SocketAddr) {
        let _ = peer;
    }
}

/// Accepts from `acceptor` until it shuts down or its listener fails, each
/// connection in a task of its own (instrumented with a `conn` span):
/// refuses over-limit ones (see the module docs), secures and handshakes
/// the others and hands them to `handler`. Then waits for those tasks to
/// end. Dropping the returned future drops every task at once.
pub async fn run_accept_loop<L, H>(mut acceptor: Acceptor<L>, admission: Admission, handler: Arc<H>)
where
    L: Listener,
    H: TunnelHandler<L::Conn>,
{
    let admission = Arc::new(admission);
    let local = acceptor.local_addr().and_then(Result::ok);
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            incoming = acceptor.accept() => {
                let incoming = match incoming {
                    Ok(incoming) => incoming,
                    Err(error) => {
                        tracing::debug!(%error, "accept loop ends");
                        break;
                    }
                };
                let peer = incoming.peer_addr();
                let span = tracing::debug_span!(
                    "conn",
                    peer.addr = %peer,
                    local.addr = ?local,
                    transport = L::NAME,
                );
                let admission = Arc::clone(&admission);
                let handler = Arc::clone(&handler);
                match incoming {
                    Incoming::Accepted(conn) => {
                        tasks.spawn(admit(conn, admission, handler).instrument(span));
                    }
                    Incoming::OverLimit(conn) => {
                        handler.refused(peer);
                        tasks.spawn(refuse(conn, admission).instrument(span));
                    }
                    _ => {}
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(acceptor);
    while tasks.join_next().await.is_some() {}
}

/// Secures and handshakes an admitted connection, then hands it over.
async fn admit<C, H>(conn: AcceptedConn<C>, admission: Arc<Admission>, handler: Arc<H>)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: TunnelHandler<C>,
{
    let (io, peer, guard) = conn.into_parts();
    let limit = admission.tunnel.get_handshake_timeout();
    // One deadline for TLS and the hello together. A client whose transport
    // is up (plain TCP, or TLS done) and whose hello is not complete by then
    // gets CLOSE HANDSHAKE_TIMEOUT from `accept_until`, whether it sent
    // nothing or part of a hello; one still in its TLS handshake is closed
    // without a frame (none can be sent before TLS). The outer bound leaves
    // time to write that frame.
    let deadline = tokio::time::Instant::now() + limit;
    let handshake = async {
        let io = tokio::time::timeout_at(deadline, admission.security.secure(io))
            .await
            .map_err(|_| AdmissionError::Timeout(limit))??;
        Ok(tntunnel::accept_until(io, &admission.tunnel, deadline).await?)
    };
    let bound = deadline + tntunnel::CLOSE_WRITE_TIMEOUT;
    let result = match tokio::time::timeout_at(bound, handshake).await {
        Ok(result) => result,
        Err(_) => Err(AdmissionError::Timeout(limit)),
    };
    match result {
        Ok(incoming) => {
            handler
                .hello(Handshaken {
                    incoming,
                    guard,
                    peer,
                })
                .await;
        }
        Err(error) => {
            tracing::debug!(%error, "handshake failed");
            handler.handshake_failed(peer, &error);
        }
    }
}

/// Refuses an over-limit connection without any handshake work.
async fn refuse<C>(conn: AcceptedConn<C>, admission: Arc<Admission>)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if admission.security.is_tls() {
        tracing::debug!("over the connection limit: closed before the TLS handshake");
        return;
    }
    let (mut io, _peer, _guard) = conn.into_parts();
    let bytes = admission.refusal.as_bytes();
    let linger = async {
        io.write_all(bytes).await?;
        io.shutdown().await?;
        // Read what the client sent (its hello) until it closes: closing a
        // socket with unread bytes resets it, and a reset can destroy the
        // refusal before the client reads it.
        let mut buf = [0u8; 1024];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN {
            match io.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(REFUSAL_TIMEOUT, linger).await {
        Ok(Ok(())) => tracing::debug!("over the connection limit: refused"),
        Ok(Err(error)) => tracing::debug!(%error, "over the connection limit: refusal failed"),
        Err(_) => tracing::debug!("over the connection limit: refusal timed out"),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;
    use tokio_util::codec::FramedRead;

    use super::*;

    #[test]
    fn refusal_is_a_close_frame_with_its_advice() {
        let advice = ReconnectAdvice {
            min_delay_ms: 1_000,
            max_delay_ms: 5_000,
            endpoints: vec!["10.0.0.2:9301".into()],
        };
        let refusal = Refusal::overloaded(advice.clone());
        let mut read = FramedRead::new(refusal.as_bytes(), FrameCodec::new());
        let frame = futures_util::FutureExt::now_or_never(read.next())
            .flatten()
            .unwrap()
            .unwrap();
        assert_eq!(frame.ty, FrameType::CLOSE);
        let close: Close = frame.decode().unwrap();
        assert_eq!(close.code(), ErrorCode::Overloaded);
        assert_eq!(close.reconnect, Some(advice));
    }
}

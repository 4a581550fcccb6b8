//! Serving the HTTP API over HTTP/1.1 with the limits a public port needs:
//! a cap on open connections (checked at accept, before reading a byte), a
//! header-read timeout (a client that sends half a header, or nothing, is
//! disconnected), a write-stall timeout (a client that stops reading is
//! disconnected), and a bounded graceful shutdown. The per-request limits
//! (requests in flight, request timeout, body size) are the router's
//! ([`router`](super::router)).
//!
//! With TLS ([`ServeConfig::with_tls`]) each accepted connection does its
//! TLS handshake in its own task, within the header-read timeout, so a
//! slow or silent client never holds up the accept loop; the connection
//! then serves HTTP/1.1 (`https`, `wss`) exactly as a plain one.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tntunnel::tls::TlsServerConfig;
use tntunnel::{SecureStream, ServerSecurity};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Open HTTP connections at once by default (1,024).
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 1024;

/// Time a client has to send a request's headers by default (10 s); it runs
/// from the connection's start, and between requests on a kept-alive
/// connection, so an idle connection is closed after it too.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a client may leave a response unread by default (30 s).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for open connections to finish their request at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after an accept error other than a connection's own (out of
/// descriptors, ...), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What a connection over the cap gets, written without waiting, before
/// the socket is closed.
static OVERLOADED: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"error":{"code":"overloaded","message":"the gateway has as many HTTP connections open as it takes; retry later"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// The ALPN protocol the HTTP listener's TLS offers.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The connection-level limits of [`serve`], and its TLS.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    max_connections: usize,
    header_read_timeout: Duration,
    write_timeout: Duration,
    tls: Option<TlsServerConfig>,
}

impl ServeConfig {
    /// Sets the most HTTP connections open at once (at least 1; default
    /// [`DEFAULT_MAX_HTTP_CONNECTIONS`]). A connection over it is answered
    /// `503 overloaded` and closed at once, without reading its request.
    #[must_use]
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Sets the time a client has to send a request's headers (default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]); the connection is closed after it.
    #[must_use]
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets the time a write may wait for the client to read (default
    /// [`DEFAULT_WRITE_TIMEOUT`]); the connection is closed after it.
    #[must_use]
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Serves HTTPS (and `wss`) with the certificate of `tls`, the Pike TLS
    /// port's identity: TLS 1.3, ALPN `http/1.1` (the Pike ALPN of `tls` is
    /// replaced), the handshake bounded by the header-read timeout.
    #[must_use]
    pub fn with_tls(mut self, tls: &TlsServerConfig) -> Self {
        let mut rustls = (*tls.rustls_config()).clone();
        rustls.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        self.tls = Some(TlsServerConfig::from_rustls(Arc::new(rustls)));
        self
    }

    /// The most HTTP connections open at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Whether connections are served over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            tls: None,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open
/// connections finish their request (at most 5 s) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let security = match &config.tls {
        Some(tls) => {
            let mut tls = tls.clone();
            tls.handshake_timeout(config.header_read_timeout);
            ServerSecurity::Tls(tls)
        }
        None => ServerSecurity::Plain,
    };
    let stop = CancellationToken::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "http accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = stream;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(crate::metric_families::HTTP_REFUSED_TOTAL, "reason" => "connections").increment(1);
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = WriteDeadline::new(stream, config.write_timeout);
        // Handlers that hand the connection on (`GET /v1/ws`) need the
        // peer's address.
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            },
        ));
        let stop = stop.clone();
        let security = security.clone();
        let header_read_timeout = config.header_read_timeout;
        tokio::spawn(async move {
            // The TLS handshake, if any, here: never in the accept loop.
            let io: SecureStream<WriteDeadline<TcpStream>> = tokio::select! {
                secured = security.secure(io) => match secured {
                    Ok(io) => io,
                    Err(e) => {
                        tracing::debug!(error = %e, %peer, "https: TLS handshake failed");
                        drop(slot);
                        return;
                    }
                },
                () = stop.cancelled() => {
                    drop(slot);
                    return;
                }
            };
            let io = TokioIo::new(io);
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .keep_alive(true);
            // With upgrades: `GET /v1/push/ws` takes the connection over.
            let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "http connection ended with an error");
                    }
                }
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    stop.cancel();
    // Every connection task gives its slot back when it ends.
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await;
}

/// The address of the client of an HTTP connection, in each request's
/// extensions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub(crate) std::net::SocketAddr);

/// Answers a connection over the cap `503 overloaded` if its socket takes
/// the bytes now, and closes it: nothing waits, nothing is read.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(&OVERLOADED);
    if let Ok(stream) = stream.into_std() {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

/// Errors of one connection (it went away before it was accepted): the
/// listener is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A stream whose writes fail with [`io::ErrorKind::TimedOut`] once one has
/// waited `timeout` for the peer to read.
#[derive(Debug)]
pub(crate) struct WriteDeadline<S> {
    io: S,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(io: S, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
        }
    }

    /// After a write made progress: the wait is over.
    fn progressed<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the peer read nothing for {} ms", timeout.as_millis()),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progressed(result, cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A peer that stops reading fails the write after the timeout, not
    /// before; one that reads keeps it going.
    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_does_not_read_times_out() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = WriteDeadline::new(near, Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let err = io
            .write_all(&[1u8; 1024])
            .await
            .expect_err("the peer never reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let (near, mut far2) = tokio::io::duplex(64);
        let mut io = WriteDeadline::new(near, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            while got.len() < 1024 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let n = far2.read(&mut buf).await.expect("read");
                got.extend_from_slice(&buf[..n]);
            }
            got.len()
        });
        io.write_all(&[2u8; 1024])
            .await
            .expect("a slow reader that keeps reading is fine");
        assert_eq!(reader.await.expect("reader"), 1024);
        far.shutdown().await.expect("shutdown");
    }
}

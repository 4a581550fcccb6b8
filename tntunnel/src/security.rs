//! The encryption seam: one stream type for plain TCP and TLS 1.3.
//!
//! Everything above this module (frame codec, handshake, benchmarks) is written against
//! [`SecureStream<S>`], which is `Plain(S)` or a TLS stream over `S`. It is an enum, not a
//! trait object, so reads and writes are statically dispatched and a connection costs no
//! extra allocation for choosing between plain and TLS.
//!
//! # Which option to use
//!
//! - [`ServerSecurity::Plain`] / [`ClientSecurity::Plain`]: no encryption. For loopback, for
//!   tests, and as the baseline in benchmarks. The gateway refuses plain TCP on non-loopback
//!   addresses unless configured otherwise.
//! - `ServerSecurity::Tls` / `ClientSecurity::Tls` (feature `tls`, on by default): TLS 1.3
//!   with rustls and the *ring* provider; see the `tls` module for how to build the
//!   configurations (CA-verified, pinned, self-signed for development).
//!
//! # Wrong protocol on a port
//!
//! A plain-protocol peer on a TLS port, or a TLS peer on a plain port, fails fast with a
//! clear error instead of hanging:
//!
//! - the TLS side reports [`SecurityError::NotTls`] as soon as the first bytes are not a TLS
//!   record (rustls sends a fatal alert, and the connection is then dropped), or
//!   [`SecurityError::ClosedDuringHandshake`] if the peer just closes;
//! - a TLS handshake that gets no usable answer at all ends with
//!   [`SecurityError::HandshakeTimeout`] after the configured handshake timeout;
//! - a plain-protocol server can recognise a TLS client by its first bytes with
//!   [`looks_like_tls`] and answer with a meaningful error instead of a frame decoding error.

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
#[cfg(feature = "tls")]
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[cfg(feature = "tls")]
use crate::tls::{Fingerprint, TlsClientConfig, TlsServerConfig};

/// A byte stream that is either plain or protected by TLS.
///
/// Produced by [`ClientSecurity::secure`] and [`ServerSecurity::secure`]; implements
/// [`AsyncRead`] and [`AsyncWrite`] by delegating to the variant, so the frame codec runs
/// unchanged over both. The TLS variants are boxed: a rustls connection is over a kilobyte,
/// and inline it would size every stream, plain ones included, for TLS (a gateway holds
/// one per connection; TLS connections pay one more allocation, next to rustls's own).
#[non_exhaustive]
pub enum SecureStream<S> {
    /// No encryption: bytes go to `S` as they are.
    Plain(S),
    /// The client side of a TLS 1.3 connection.
    #[cfg(feature = "tls")]
    ClientTls(Box<tokio_rustls::client::TlsStream<S>>),
    /// The server side of a TLS 1.3 connection, on rustls's unbuffered API: it holds no
    /// buffer while idle (see [`ServerTlsStream`](crate::tls::ServerTlsStream)).
    #[cfg(feature = "tls")]
    ServerTls(Box<crate::tls::ServerTlsStream<S>>),
}

// === impl SecureStream ===

impl<S> SecureStream<S> {
    /// Returns `true` if the stream is protected by TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Self::Plain(_))
    }

    /// The application protocol negotiated with ALPN (`Some(b"pike/1")` for a Pike TLS
    /// connection whose peer sent ALPN), or `None` for plain streams and peers without ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Self::Plain(_) => None,
            #[cfg(feature = "tls")]
            Self::ClientTls(tls) => tls.get_ref().1.alpn_protocol(),
            #[cfg(feature = "tls")]
            Self::ServerTls(tls) => tls.connection().alpn_protocol(),
        }
    }

    /// The underlying transport, e.g. to read the peer address of a `TcpStream`.
    ///
    /// Do not read from or write to it directly on a TLS stream: that corrupts the session.
    pub fn get_ref(&self) -> &S {
        match self {
            Self::Plain(io) => io,
            #[cfg(feature = "tls")]
            Self::ClientTls(tls) => tls.get_ref().0,
            #[cfg(feature = "tls")]
            Self::ServerTls(tls) => tls.get_ref(),
        }
    }

    /// The underlying transport, mutably, e.g. to set socket options.
    ///
    /// Do not read from or write to it directly on a TLS stream: that corrupts the session.
    pub fn get_mut(&mut self) -> &mut S {
        match self {
            Self::Plain(io) => io,
            #[cfg(feature = "tls")]
            Self::ClientTls(tls) => tls.get_mut().0,
            #[cfg(feature = "tls")]
            Self::ServerTls(tls) => tls.get_mut(),
        }
    }
}

/// Delegates one poll method to whichever stream the enum holds.
macro_rules! delegate {
    ($self:ident, $io:ident => $call:expr) => {
        match $self.get_mut() {
            SecureStream::Plain($io) => $call,
            #[cfg(feature = "tls")]
            SecureStream::ClientTls(tls) => {
                let $io = &mut **tls;
                $call
            }
            #[cfg(feature = "tls")]
            SecureStream::ServerTls(tls) => {
                let $io = &mut **tls;
                $call
            }
        }
    };
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for SecureStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for SecureStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::ClientTls(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            // Each slice would be a record of its own: one slice at a time instead.
            Self::ServerTls(_) => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_shutdown(cx))
    }
}

impl<S: fmt::Debug> fmt::Debug for SecureStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(io) => f.debug_tuple("Plain").field(io).finish(),
            #[cfg(feature = "tls")]
            Self::ClientTls(tls) => {
                let (io, conn) = tls.get_ref();
                f.debug_struct("ClientTls")
                    .field("io", io)
                    .field("version", &conn.protocol_version())
                    .field("alpn", &conn.alpn_protocol().map(String::from_utf8_lossy))
                    .finish()
            }
            #[cfg(feature = "tls")]
            Self::ServerTls(tls) => {
                let conn = tls.connection();
                f.debug_struct("ServerTls")
                    .field("io", tls.get_ref())
                    .field("version", &conn.protocol_version())
                    .field("alpn", &conn.alpn_protocol().map(String::from_utf8_lossy))
                    .finish()
            }
        }
    }
}

/// How a client protects a new connection.
///
/// Cheap to clone (the TLS configuration is shared through an `Arc`); keep one per endpoint
/// and reuse it for every connection so TLS session resumption works across reconnects.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientSecurity {
    /// No encryption.
    Plain,
    /// TLS 1.3; see [`TlsClientConfig`] for the trust options (CA file or pinned fingerprints).
    #[cfg(feature = "tls")]
    Tls(TlsClientConfig),
}

// === impl ClientSecurity ===

impl ClientSecurity {
    /// Returns `true` for `ClientSecurity::Tls`.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Self::Plain)
    }

    /// Protects a freshly connected transport.
    ///
    /// For TLS this runs the TLS 1.3 handshake (bounded by the configuration's handshake
    /// timeout) and verifies the server against `server_name` (a DNS name or an IP address;
    /// pinned configurations ignore the name, but it is still sent as SNI when it is a DNS
    /// name). For [`ClientSecurity::Plain`] `server_name` is ignored and `io` is returned as is.
    ///
    /// # Errors
    ///
    /// [`SecurityError::InvalidServerName`] if `server_name` is neither a DNS name nor an IP
    /// address, and the handshake errors described on [`SecurityError`].
    pub async fn secure<S>(
        &self,
        io: S,
        server_name: &str,
    ) -> Result<SecureStream<S>, SecurityError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        match self {
            Self::Plain => {
                let _ = server_name;
                Ok(SecureStream::Plain(io))
            }
            #[cfg(feature = "tls")]
            Self::Tls(config) => {
                let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
                    .map_err(|_| SecurityError::InvalidServerName(server_name.to_owned()))?;
                let timeout = config.timeout();
                let connect = config.connector().connect(name, io);
                let tls = match tokio::time::timeout(timeout, connect).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => return Err(SecurityError::from_handshake(error)),
                    Err(_elapsed) => return Err(SecurityError::HandshakeTimeout(timeout)),
                };
                tracing::debug!(
                    tls.version = ?tls.get_ref().1.protocol_version(),
                    tls.alpn = ?tls.get_ref().1.alpn_protocol().map(String::from_utf8_lossy),
                    "TLS client handshake complete"
                );
                Ok(SecureStream::ClientTls(Box::new(tls)))
            }
        }
    }
}

/// How a server protects an accepted connection.
///
/// Cheap to clone (the TLS configuration is shared through an `Arc`); build it once at
/// start and share it between all accept loops.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ServerSecurity {
    /// No encryption.
    Plain,
    /// TLS 1.3; see [`TlsServerConfig`] for certificate sources and defaults.
    #[cfg(feature = "tls")]
    Tls(TlsServerConfig),
}

// === impl ServerSecurity ===

impl ServerSecurity {
    /// Returns `true` for `ServerSecurity::Tls`.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Self::Plain)
    }

    /// Protects an accepted transport.
    ///
    /// For TLS this runs the TLS 1.3 handshake, bounded by the configuration's handshake
    /// timeout so that idle or slow peers cannot hold a half-open connection. Run it inside
    /// the per-connection task, not in the accept loop.
    ///
    /// # Errors
    ///
    /// The handshake errors described on [`SecurityError`]; a plain-protocol client on the
    /// TLS port yields `SecurityError::NotTls`.
    pub async fn secure<S>(&self, io: S) -> Result<SecureStream<S>, SecurityError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        match self {
            Self::Plain => Ok(SecureStream::Plain(io)),
            #[cfg(feature = "tls")]
            Self::Tls(config) => {
                let timeout = config.timeout();
                let accept = crate::tls::ServerTlsStream::accept(config.rustls_config(), io);
                let tls = match tokio::time::timeout(timeout, accept).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => return Err(SecurityError::from_handshake(error)),
                    Err(_elapsed) => return Err(SecurityError::HandshakeTimeout(timeout)),
                };
                tracing::debug!(
                    tls.version = ?tls.connection().protocol_version(),
                    tls.alpn = ?tls.connection().alpn_protocol().map(String::from_utf8_lossy),
                    "TLS server handshake complete"
                );
                Ok(SecureStream::ServerTls(Box::new(tls)))
            }
        }
    }
}

/// Returns `true` if `prefix`, the first bytes received from a peer, look like the start of
/// a TLS handshake record (a ClientHello): content type 22 followed by a 3.x record version.
///
/// A plain-protocol server can call this on a frame that fails to decode to tell the
/// operator "a TLS client is talking to the plain port" rather than "invalid frame".
/// Needs at least 3 bytes; shorter prefixes return `false`.
pub fn looks_like_tls(prefix: &[u8]) -> bool {
    matches!(prefix, [0x16, 0x03, minor, ..] if *minor <= 0x04)
}

/// Why a connection could not be secured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The peer's first bytes are not TLS records: most likely a plain-protocol peer on a
    /// TLS connection (a plain client on the TLS port, or a TLS client dialling a plain port
    /// that answered).
    #[cfg(feature = "tls")]
    #[error("peer is not speaking TLS (plain-protocol peer on a TLS connection?): {0}")]
    NotTls(rustls::Error),
    /// The peer's certificate was rejected: unknown issuer, expired, or not valid for the
    /// server name.
    #[cfg(feature = "tls")]
    #[error("peer certificate rejected: {0}")]
    CertificateRejected(rustls::Error),
    /// A pinned client saw a server certificate whose SHA-256 fingerprint is not pinned.
    #[cfg(feature = "tls")]
    #[error("server certificate (sha256 {presented}) does not match any pinned fingerprint")]
    PinMismatch {
        /// SHA-256 fingerprint of the end-entity certificate the server presented.
        presented: Fingerprint,
    },
    /// The TLS handshake failed for another reason (no common protocol version, alert from
    /// the peer, bad signature, ...); the rustls error says which.
    #[cfg(feature = "tls")]
    #[error("TLS handshake failed: {0}")]
    Handshake(rustls::Error),
    /// The TLS handshake did not complete within the configured handshake timeout.
    #[cfg(feature = "tls")]
    #[error("TLS handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    /// The peer closed or reset the connection before the TLS handshake completed.
    #[error("connection closed by the peer during the TLS handshake: {0}")]
    ClosedDuringHandshake(#[source] io::Error),
    /// The server name given to [`ClientSecurity::secure`] is neither a DNS name nor an IP
    /// address.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// Any other I/O error of the underlying transport.
    #[error(transparent)]
    Io(#[from] io::Error),
}

// === impl SecurityError ===

impl SecurityError {
    /// Classifies an error returned by a tokio-rustls handshake future.
    ///
    /// tokio-rustls wraps rustls errors in `io::ErrorKind::InvalidData` and reports an early
    /// close as `UnexpectedEof`.
    #[cfg(feature = "tls")]
    fn from_handshake(error: io::Error) -> Self {
        use rustls::{CertificateError, InvalidMessage};

        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let Some(tls) = tls else {
            return match error.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Self::ClosedDuringHandshake(error),
                _ => Self::Io(error),
            };
        };
        match tls {
            // Record-layer errors on the very first records: the bytes are not TLS at all.
            rustls::Error::InvalidMessage(
                InvalidMessage::InvalidContentType
                | InvalidMessage::UnknownProtocolVersion
                | InvalidMessage::MessageTooLarge
                | InvalidMessage::InvalidEmptyPayload,
            ) => Self::NotTls(tls.clone()),
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                match other.0.downcast_ref::<crate::tls::PinMismatch>() {
                    Some(mismatch) => Self::PinMismatch {
                        presented: mismatch.presented(),
                    },
                    None => Self::CertificateRejected(tls.clone()),
                }
            }
            rustls::Error::InvalidCertificate(_) => Self::CertificateRejected(tls.clone()),
            _ => Self::Handshake(tls.clone()),
        }
    }
}

impl From<SecurityError> for io::Error {
    fn from(error: SecurityError) -> Self {
        if let SecurityError::Io(io) = error {
            return io;
        }
        let kind = match &error {
            SecurityError::Io(io) => io.kind(),
            SecurityError::ClosedDuringHandshake(io) => io.kind(),
            SecurityError::InvalidServerName(_) => io::ErrorKind::InvalidInput,
            #[cfg(feature = "tls")]
            SecurityError::HandshakeTimeout(_) => io::ErrorKind::TimedOut,
            #[cfg(feature = "tls")]
            SecurityError::NotTls(_)
            | SecurityError::CertificateRejected(_)
            | SecurityError::PinMismatch { .. }
            | SecurityError::Handshake(_) => io::ErrorKind::InvalidData,
        };
        Self::new(kind, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_tls_client_hello_prefix() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x03]));
        assert!(!looks_like_tls(&[0x16, 0x03]));
        assert!(!looks_like_tls(b"HELLO"));
        assert!(!looks_like_tls(&[0x16, 0x03, 0x09]));
    }

    #[test]
    fn io_error_conversion_keeps_kind_and_source() {
        let original = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        let converted = io::Error::from(SecurityError::Io(original));
        assert_eq!(converted.kind(), io::ErrorKind::ConnectionRefused);

        let converted = io::Error::from(SecurityError::InvalidServerName("a b".into()));
        assert_eq!(converted.kind(), io::ErrorKind::InvalidInput);
        let inner = converted
            .get_ref()
            .and_then(|e| e.downcast_ref::<SecurityError>());
        assert!(matches!(inner, Some(SecurityError::InvalidServerName(name)) if name == "a b"));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn classifies_rustls_errors() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let not_tls = SecurityError::from_handshake(wrap(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        )));
        assert!(matches!(not_tls, SecurityError::NotTls(_)), "{not_tls:?}");
        let cert = SecurityError::from_handshake(wrap(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
        assert!(
            matches!(cert, SecurityError::CertificateRejected(_)),
            "{cert:?}"
        );
        let eof = SecurityError::from_handshake(io::ErrorKind::UnexpectedEof.into());
        assert!(
            matches!(eof, SecurityError::ClosedDuringHandshake(_)),
            "{eof:?}"
        );
        let other = SecurityError::from_handshake(io::ErrorKind::PermissionDenied.into());
        assert!(matches!(other, SecurityError::Io(_)), "{other:?}");
    }
}

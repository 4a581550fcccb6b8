//! The QUIC client transport.

use std::{
    future::Future,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use quinn::{ClientConfig, Endpoint, crypto::rustls::QuicClientConfig};
use tracing::Instrument as _;

use super::{QuicConfig, QuicStream};
use crate::{ConfigError, Transport};

/// QUIC client transport: each [`connect`](Transport::connect) makes one QUIC connection and
/// opens one bidirectional stream on it, returned as a [`QuicStream`].
///
/// The caller supplies the rustls client configuration (roots, ALPN, client certificates are
/// its business; QUIC needs TLS 1.3) and the server name certificates are checked against.
///
/// All connections of a transport (and of its clones) share one UDP socket per address family,
/// a client [`quinn::Endpoint`] bound to an ephemeral port on first use, in the tokio runtime
/// of that first `connect`.
#[derive(Clone, Debug)]
pub struct QuicTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client_config: ClientConfig,
    server_name: String,
    handshake_timeout: Duration,
    linger: Duration,
    endpoints: Mutex<Endpoints>,
}

#[derive(Debug, Default)]
struct Endpoints {
    v4: Option<Endpoint>,
    v6: Option<Endpoint>,
}

impl QuicTransport {
    /// Builds a transport from a rustls client configuration and the server name to verify.
    ///
    /// Fails if `config` is invalid, if `tls` cannot be used for QUIC (no TLS 1.3 cipher
    /// suite), or if `server_name` is neither a DNS name nor an IP address.
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        server_name: impl Into<String>,
        config: &QuicConfig,
    ) -> Result<Self, ConfigError> {
        let valid = config.validate()?;
        let server_name = server_name.into();
        if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
            return Err(ConfigError::InvalidServerName(server_name));
        }
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| ConfigError::Tls(e.to_string()))?;
        let mut client_config = ClientConfig::new(Arc::new(crypto));
        client_config.transport_config(valid.client_transport());
        Ok(Self {
            inner: Arc::new(Inner {
                client_config,
                server_name,
                handshake_timeout: valid.handshake_timeout,
                linger: valid.linger,
                endpoints: Mutex::new(Endpoints::default()),
            }),
        })
    }

    /// The client endpoint for `addr`'s address family, bound on first use.
    fn endpoint_for(&self, addr: SocketAddr) -> io::Result<Endpoint> {
        let mut endpoints = self
            .inner
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (slot, bind) = if addr.is_ipv4() {
            (
                &mut endpoints.v4,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            )
        } else {
            (
                &mut endpoints.v6,
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            )
        };
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        let endpoint = Endpoint::client(bind)?;
        tracing::debug!(local.addr = ?endpoint.local_addr().ok(), "QUIC client endpoint bound");
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    async fn connect_inner(&self, addr: SocketAddr) -> io::Result<QuicStream> {
        let endpoint = self.endpoint_for(addr)?;
        let connecting = endpoint
            .connect_with(
                self.inner.client_config.clone(),
                addr,
                &self.inner.server_name,
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let establish = async {
            let conn = connecting.await?;
            let (send, recv) = conn.open_bi().await?;
            Ok::<_, quinn::ConnectionError>(QuicStream::new(conn, send, recv, self.inner.linger))
        };
        let stream = tokio::time::timeout(self.inner.handshake_timeout, establish)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "QUIC handshake timed out"))?
            .map_err(connection_error_to_io)?;
        tracing::debug!(rtt = ?stream.connection().rtt(), "connected");
        Ok(stream)
    }
}

/// Like quinn's own conversion, but a server's `CONNECTION_REFUSED` becomes
/// [`io::ErrorKind::ConnectionRefused`], as a closed TCP port does.
fn connection_error_to_io(error: quinn::ConnectionError) -> io::Error {
    match &error {
        quinn::ConnectionError::ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            io::Error::new(io::ErrorKind::ConnectionRefused, error)
        }
        _ => error.into(),
    }
}

impl Transport for QuicTransport {
    type Conn = QuicStream;
    const NAME: &'static str = "quic";

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<QuicStream>> + Send {
        let span = tracing::debug_span!("conn", peer.addr = %addr, transport = "quic");
        self.connect_inner(addr).instrument(span)
    }
}

//! Client-side TLS configuration.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use tokio_rustls::TlsConnector;

use super::pinned::PinnedServerCertVerifier;
use super::{
    ALPN_PIKE, DEFAULT_TLS_HANDSHAKE_TIMEOUT, Fingerprint, TlsConfigError, parse_certificates,
    provider, read_file,
};

/// Client-side TLS 1.3 configuration: how the server is trusted, and handshake policy.
///
/// Cheap to clone (the rustls configuration is behind an `Arc`). Keep one per gateway
/// endpoint list and reuse it for every reconnect: the session-ticket cache lives in the
/// rustls configuration, so a shared configuration lets reconnects resume cheaply. Wrap it
/// in [`ClientSecurity::Tls`](crate::ClientSecurity::Tls) to connect.
///
/// # Defaults
///
/// - **TLS 1.3 only, *ring* provider**, usable for QUIC as well.
/// - **ALPN** requests [`ALPN_PIKE`].
/// - **Session resumption** with rustls' in-memory cache (256 servers): reconnects after a
///   network change skip the server's certificate and signature.
/// - **No 0-RTT early data**: the first Pike frames must not be replayable.
/// - **SNI** sent for DNS names (never for IP addresses).
/// - **Handshake timeout** [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
#[derive(Clone, Debug)]
pub struct TlsClientConfig {
    rustls: Arc<rustls::ClientConfig>,
    handshake_timeout: Duration,
}

// === impl TlsClientConfig ===

impl TlsClientConfig {
    /// Trusts the CA certificates in a PEM file (one or more `CERTIFICATE` sections). The
    /// server's chain must lead to one of them and its certificate must be valid for the
    /// server name given to [`ClientSecurity::secure`](crate::ClientSecurity::secure).
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::Read`] for a missing or unreadable file,
    /// [`TlsConfigError::NoCertificate`] if it holds no certificate,
    /// [`TlsConfigError::InvalidPem`] for malformed PEM and
    /// [`TlsConfigError::InvalidCaCertificate`] for a certificate that cannot be a trust anchor.
    pub async fn with_ca_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        let path = path.as_ref();
        let pem = read_file(path).await?;
        Self::ca_pem(&pem, &path.display().to_string())
    }

    /// Trusts the CA certificates in an in-memory PEM buffer; see
    /// [`TlsClientConfig::with_ca_pem_file`].
    ///
    /// # Errors
    ///
    /// As [`TlsClientConfig::with_ca_pem_file`], without the read error.
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, TlsConfigError> {
        Self::ca_pem(pem, "the CA PEM")
    }

    /// Trusts exactly the server certificates whose SHA-256 fingerprint is in `pins`,
    /// regardless of name, issuer or validity period (for self-signed development gateways
    /// and pinned fleets). The server must still prove it holds the certificate's key: the
    /// TLS 1.3 handshake signature is verified.
    ///
    /// Accepts anything convertible to [`Fingerprint`], e.g. `Vec<[u8; 32]>` or parsed
    /// fingerprints. Pin several to rotate certificates without breaking clients.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::NoPins`] if `pins` is empty.
    pub fn pinned<I>(pins: I) -> Result<Self, TlsConfigError>
    where
        I: IntoIterator,
        I::Item: Into<Fingerprint>,
    {
        let pins: Vec<Fingerprint> = pins.into_iter().map(Into::into).collect();
        if pins.is_empty() {
            return Err(TlsConfigError::NoPins);
        }
        let provider = provider();
        let verifier =
            PinnedServerCertVerifier::new(pins, provider.signature_verification_algorithms);
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self::with_defaults(config))
    }

    /// Wraps an existing rustls configuration, for what the constructors above do not cover
    /// (client certificates, other verifiers). Nothing is changed in `config`.
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            rustls: config,
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }

    /// Sets how long the TLS handshake may take before
    /// [`ClientSecurity::secure`](crate::ClientSecurity::secure) gives up with
    /// [`SecurityError::HandshakeTimeout`](crate::SecurityError::HandshakeTimeout) (for
    /// example against a plain-protocol port that waits silently).
    ///
    /// Default: [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
    pub fn handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration, e.g. for a QUIC client on the same trust settings
    /// (`quinn::crypto::rustls::QuicClientConfig::try_from(config.rustls_config())`).
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.rustls)
    }

    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(Arc::clone(&self.rustls))
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.handshake_timeout
    }

    fn ca_pem(pem: &[u8], origin: &str) -> Result<Self, TlsConfigError> {
        let mut roots = RootCertStore::empty();
        for cert in parse_certificates(pem, origin)? {
            roots
                .add(cert)
                .map_err(|source| TlsConfigError::InvalidCaCertificate {
                    origin: origin.to_owned(),
                    source,
                })?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::with_defaults(config))
    }

    fn with_defaults(mut config: rustls::ClientConfig) -> Self {
        config.alpn_protocols = vec![ALPN_PIKE.to_vec()];
        config.enable_early_data = false;
        config.enable_sni = true;
        Self {
            rustls: Arc::new(config),
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

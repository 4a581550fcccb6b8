//! Server-side TLS configuration.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{
    ALPN_PIKE, DEFAULT_TLS_HANDSHAKE_TIMEOUT, Fingerprint, TlsConfigError, parse_certificates,
    parse_private_key, provider, read_file,
};

/// Server-side TLS 1.3 configuration: certificate, key and handshake policy.
///
/// Cheap to clone (the rustls configuration is behind an `Arc`). Wrap it in
/// [`ServerSecurity::Tls`](crate::ServerSecurity::Tls) to accept connections.
///
/// # Defaults
///
/// Chosen for a gateway that holds millions of mostly idle, often reconnecting mobile
/// connections:
///
/// - **TLS 1.3 only, *ring* provider**: one handshake round trip, forward secrecy, and the
///   same configuration is valid for QUIC.
/// - **ALPN** offers [`ALPN_PIKE`].
/// - **Stateless session tickets** (rustls' *ring* `Ticketer`: ChaCha20-Poly1305, keys
///   rotated every 6 hours, random per process). A reconnecting client resumes without the
///   server sending its certificate chain or computing a signature (the dominant server
///   cost in a reconnect storm; a fresh ECDHE exchange still gives forward secrecy), and
///   the server keeps no per-session memory.
///   Tickets from another gateway process (or before a restart) are simply not accepted and
///   the client falls back to a full handshake.
/// - **2 tickets per full handshake** (rustls default): TLS 1.3 tickets are single-use, and
///   the dialer may race two connections to the same gateway.
/// - **No 0-RTT** (`max_early_data_size = 0`): early data can be replayed, and the first
///   Pike frames (hello, login) must not be.
/// - **No half-RTT data** (`send_half_rtt_data = false`): the server sends nothing before
///   the client's Finished, so nothing is sent to an unauthenticated handshake.
/// - **Client cipher-suite order honoured** (`ignore_client_order = false`): mobile clients
///   without AES hardware put ChaCha20-Poly1305 first, servers with AES-NI are fast either way.
/// - **No client certificates**: devices authenticate in the Pike login. Use
///   [`TlsServerConfig::from_rustls`] for mutual TLS.
/// - **Handshake timeout** [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
#[derive(Clone, Debug)]
pub struct TlsServerConfig {
    rustls: Arc<rustls::ServerConfig>,
    leaf: Option<Fingerprint>,
    handshake_timeout: Duration,
}

// === impl TlsServerConfig ===

impl TlsServerConfig {
    /// Loads a PEM certificate chain (leaf first, then intermediates) and its PEM private
    /// key (PKCS#8, PKCS#1 or SEC1). Both may be the same file.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::Read`] for a missing or unreadable file,
    /// [`TlsConfigError::NoCertificate`] / [`TlsConfigError::NoPrivateKey`] if a file holds
    /// no certificate / key, [`TlsConfigError::InvalidPem`] for malformed PEM and
    /// [`TlsConfigError::CertificateOrKey`] if rustls rejects the key or the key does not
    /// match the certificate.
    pub async fn from_pem_files(
        cert_chain_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self, TlsConfigError> {
        let (cert_path, key_path) = (cert_chain_path.as_ref(), key_path.as_ref());
        let cert_pem = read_file(cert_path).await?;
        let key_pem = read_file(key_path).await?;
        let certs = parse_certificates(&cert_pem, &cert_path.display().to_string())?;
        let key = parse_private_key(&key_pem, &key_path.display().to_string())?;
        Self::from_der(certs, key)
    }

    /// Builds the configuration from an in-memory PEM certificate chain and PEM private key.
    ///
    /// # Errors
    ///
    /// As [`TlsServerConfig::from_pem_files`], without the read errors.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsConfigError> {
        let certs = parse_certificates(cert_pem, "the certificate PEM")?;
        let key = parse_private_key(key_pem, "the private key PEM")?;
        Self::from_der(certs, key)
    }

    /// Builds the configuration from a DER certificate chain (leaf first) and private key.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::NoCertificate`] for an empty chain and
    /// [`TlsConfigError::CertificateOrKey`] if rustls rejects the key or the key does not
    /// match the certificate.
    pub fn from_der(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsConfigError> {
        let Some(leaf) = cert_chain.first().map(Fingerprint::of) else {
            return Err(TlsConfigError::NoCertificate {
                origin: "the certificate chain".to_owned(),
            });
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(cert_chain, key)
            .map_err(TlsConfigError::CertificateOrKey)?;
        config.alpn_protocols = vec![ALPN_PIKE.to_vec()];
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        config.send_tls13_tickets = 2;
        config.max_early_data_size = 0;
        config.send_half_rtt_data = false;
        config.ignore_client_order = false;
        Ok(Self {
            rustls: Arc::new(config),
            leaf: Some(leaf),
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        })
    }

    /// A development certificate kept in `dir`: on first use generates an ECDSA P-256
    /// self-signed certificate for `subject_alt_names` (DNS names or IP addresses) into
    /// `dir/tls/cert.pem` and `dir/tls/key.pem` (key mode `0600`, directory `0700` on
    /// Unix); later calls load and reuse them, so the fingerprint stays stable across
    /// restarts (`subject_alt_names` is then ignored).
    ///
    /// Returns the configuration and the SHA-256 fingerprint of the certificate, which
    /// development clients pin with [`TlsClientConfig::pinned`](super::TlsClientConfig::pinned).
    /// The zero-config gateway calls this with its data directory (`./pike-data`). Only one
    /// process should use a given directory at a time.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::Write`] if the files cannot be created,
    /// [`TlsConfigError::SelfSignedKeyMissing`] if the certificate exists without its key
    /// (not regenerated, since clients may have pinned it), [`TlsConfigError::Generate`]
    /// for an invalid subject alternative name, and the load errors of
    /// [`TlsServerConfig::from_pem_files`] for damaged files.
    pub async fn self_signed_in<I>(
        dir: impl AsRef<Path>,
        subject_alt_names: I,
    ) -> Result<(Self, Fingerprint), TlsConfigError>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let names = subject_alt_names.into_iter().map(Into::into).collect();
        let (certs, key) = super::self_signed::load_or_generate(dir.as_ref(), names).await?;
        let config = Self::from_der(certs, key)?;
        let fingerprint = config.leaf.ok_or_else(|| TlsConfigError::NoCertificate {
            origin: dir.as_ref().display().to_string(),
        })?;
        Ok((config, fingerprint))
    }

    /// Wraps an existing rustls configuration, for what the constructors above do not cover
    /// (client certificates, certificate resolvers, other ALPN lists).
    ///
    /// Nothing is changed in `config`. To serve QUIC from it as well, keep it TLS 1.3 with
    /// an ALPN list and `max_early_data_size` 0 or `u32::MAX`.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            rustls: config,
            leaf: None,
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }

    /// Sets how long an accepted connection may take to complete the TLS handshake before
    /// it is dropped with [`SecurityError::HandshakeTimeout`](crate::SecurityError::HandshakeTimeout).
    ///
    /// Default: [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
    pub fn handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration, e.g. for a QUIC endpoint on the same certificate
    /// (`quinn::crypto::rustls::QuicServerConfig::try_from(config.rustls_config())`).
    pub fn rustls_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.rustls)
    }

    /// The SHA-256 fingerprint of the end-entity certificate, for logging so that clients
    /// can pin it; `None` for configurations made with [`TlsServerConfig::from_rustls`].
    pub fn leaf_fingerprint(&self) -> Option<Fingerprint> {
        self.leaf
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.handshake_timeout
    }
}

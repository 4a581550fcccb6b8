//! TLS 1.3 over TCP with rustls and the *ring* provider.
//!
//! Every configuration built here is TLS 1.3 only, selects the *ring* crypto provider
//! explicitly (never the process default, so a second provider elsewhere in the binary
//! cannot make rustls panic) and offers the ALPN protocol [`ALPN_PIKE`]. Those are exactly
//! the requirements of QUIC, so the transport layer can reuse the same rustls
//! configurations through [`TlsServerConfig::rustls_config`] and
//! [`TlsClientConfig::rustls_config`].
//!
//! # Which option to use
//!
//! Server side ([`TlsServerConfig`]):
//!
//! - [`TlsServerConfig::from_pem_files`]: production, with a certificate chain and key
//!   issued by a public or private CA (PEM; PKCS#8, PKCS#1 and SEC1 keys).
//! - [`TlsServerConfig::from_pem`] / [`TlsServerConfig::from_der`]: the same from memory
//!   (secret stores, tests).
//! - [`TlsServerConfig::self_signed_in`]: development and the zero-config gateway. Generates
//!   an ECDSA P-256 certificate once into `<dir>/tls/` and reuses it afterwards; clients
//!   pin its SHA-256 [`Fingerprint`].
//! - [`TlsServerConfig::from_rustls`]: anything else (client certificates, SNI resolvers).
//!
//! Client side ([`TlsClientConfig`]):
//!
//! - [`TlsClientConfig::with_ca_pem_file`] / [`TlsClientConfig::with_ca_pem`]: verify the
//!   server's chain and name against the given CA certificates. This crate ships no
//!   built-in root store: pass the roots you trust (for a public CA, e.g. the system bundle
//!   `/etc/ssl/certs/ca-certificates.crt`).
//! - [`TlsClientConfig::pinned`]: accept exactly the server certificates whose SHA-256
//!   fingerprint is pinned, whatever their name, issuer or validity period. For
//!   self-signed development gateways and for fleets that pin their server certificate.
//!   The TLS 1.3 handshake signature is still verified, so the server must hold the key.
//!
//! # Example
//!
//! ```no_run
//! use tntunnel::tls::{Fingerprint, TlsClientConfig, TlsServerConfig};
//! use tntunnel::{ClientSecurity, ServerSecurity};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Server: a CA-issued certificate ...
//! let server =
//!     TlsServerConfig::from_pem_files("/etc/pike/tls/fullchain.pem", "/etc/pike/tls/key.pem")
//!         .await?;
//! // ... or a self-signed development certificate kept in the data dir.
//! let (dev_server, fingerprint) =
//!     TlsServerConfig::self_signed_in("./pike-data", ["localhost", "127.0.0.1"]).await?;
//! println!("TLS certificate fingerprint: {fingerprint}");
//! let server_security = ServerSecurity::Tls(server);
//!
//! // Client: verify against a CA ...
//! let client = TlsClientConfig::with_ca_pem_file("/etc/pike/tls/ca.pem").await?;
//! // ... or pin the development server's certificate (pasted from its log).
//! let pin: Fingerprint = fingerprint.to_string().parse()?;
//! let dev_client = TlsClientConfig::pinned([pin])?;
//! let client_security = ClientSecurity::Tls(client);
//!
//! let tcp = tokio::net::TcpStream::connect("gateway.example.com:9301").await?;
//! let stream = client_security.secure(tcp, "gateway.example.com").await?;
//! assert_eq!(stream.alpn_protocol(), Some(tntunnel::tls::ALPN_PIKE));
//! # let _ = (dev_server, dev_client, server_security);
//! # Ok(())
//! # }
//! ```

mod client;
mod pinned;
mod self_signed;
mod server;
mod server_stream;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use self::client::TlsClientConfig;
pub(crate) use self::pinned::PinMismatch;
pub use self::pinned::{Fingerprint, FingerprintParseError};
pub use self::server::TlsServerConfig;
pub use self::server_stream::ServerTlsStream;
pub use rustls;
pub use tokio_rustls;

/// The ALPN protocol identifier of Pike over TLS and QUIC, version 1.
///
/// Servers offer it and clients request it. A peer that sends no ALPN is still accepted
/// (the Pike handshake carries its own version negotiation); a peer that offers only other
/// protocols is refused by the server with a `no_application_protocol` alert.
pub const ALPN_PIKE: &[u8] = b"pike/1";

/// The default bound on a TLS handshake, for both servers and clients: 10 seconds.
///
/// Long enough for a full handshake over a poor mobile link, short enough that a peer that
/// never completes (a plain-protocol client on the TLS port that waits for an answer, a
/// slowloris) releases its socket quickly. Change it with
/// [`TlsServerConfig::handshake_timeout`] / [`TlsClientConfig::handshake_timeout`].
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read (missing, permissions, ...).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file or directory could not be written (self-signed certificate generation).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The input is not well-formed PEM.
    #[error("invalid PEM in {origin}: {source}")]
    InvalidPem {
        /// Where the PEM came from: a file path or a description of the in-memory input.
        origin: String,
        /// The PEM parser's error.
        source: pem::Error,
    },
    /// The input contains no `CERTIFICATE` PEM section.
    #[error("no certificate (-----BEGIN CERTIFICATE-----) found in {origin}")]
    NoCertificate {
        /// Where the PEM came from: a file path or a description of the in-memory input.
        origin: String,
    },
    /// The input contains no private key PEM section (`PRIVATE KEY` for PKCS#8,
    /// `RSA PRIVATE KEY` for PKCS#1, `EC PRIVATE KEY` for SEC1).
    #[error("no private key (PKCS#8, PKCS#1 or SEC1 PEM) found in {origin}")]
    NoPrivateKey {
        /// Where the PEM came from: a file path or a description of the in-memory input.
        origin: String,
    },
    /// rustls rejected the certificate chain or private key: unsupported or corrupt key, or
    /// a key that does not belong to the end-entity certificate.
    #[error("certificate chain or private key rejected: {0}")]
    CertificateOrKey(rustls::Error),
    /// A CA certificate could not be used as a trust anchor.
    #[error("invalid CA certificate in {origin}: {source}")]
    InvalidCaCertificate {
        /// Where the PEM came from: a file path or a description of the in-memory input.
        origin: String,
        /// The rustls error.
        source: rustls::Error,
    },
    /// [`TlsClientConfig::pinned`] was given no fingerprint, which would reject every server.
    #[error("a pinned TLS client needs at least one certificate fingerprint")]
    NoPins,
    /// The self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A self-signed certificate exists but its private key is missing. Not regenerated
    /// automatically, because clients may have pinned the existing certificate.
    #[error(
        "found {} but not its private key {}; restore the key, or delete the certificate to \
         generate a new one (pinned clients then need the new fingerprint)",
        cert_path.display(),
        key_path.display()
    )]
    SelfSignedKeyMissing {
        /// The certificate that exists.
        cert_path: PathBuf,
        /// The private key that is missing.
        key_path: PathBuf,
    },
    /// rustls refused the configuration itself (for example, no TLS 1.3 support in the
    /// provider, or no randomness for session tickets).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The *ring* crypto provider, set explicitly on every configuration.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a whole file, with the path in the error.
async fn read_file(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| TlsConfigError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Parses every `CERTIFICATE` section of `pem`, in order; fails if there is none.
fn parse_certificates(
    pem: &[u8],
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::InvalidPem {
            origin: origin.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            origin: origin.to_owned(),
        });
    }
    Ok(certs)
}

/// Parses the first private key section (PKCS#8, PKCS#1 or SEC1) of `pem`.
fn parse_private_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
            origin: origin.to_owned(),
        },
        source => TlsConfigError::InvalidPem {
            origin: origin.to_owned(),
            source,
        },
    })
}

//! Certificate pinning: SHA-256 fingerprints and the verifier that checks them.

use std::fmt;
use std::str::FromStr;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The SHA-256 fingerprint of a DER-encoded certificate, as used for pinning.
///
/// Displays as 64 lowercase hex digits without separators (the form the gateway logs).
/// Parses from hex in either case, with or without `:` separators, optionally prefixed by
/// `sha256:` or by OpenSSL's `sha256 Fingerprint=` (so the output of
/// `openssl x509 -noout -fingerprint -sha256 -in cert.pem` can be pasted as is).
///
/// ```
/// use tntunnel::tls::Fingerprint;
///
/// let pin: Fingerprint = "AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:\
///                         ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89".parse()?;
/// assert_eq!(pin.to_string(), "abcdef0123456789".repeat(4));
/// # Ok::<(), tntunnel::tls::FingerprintParseError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

// === impl Fingerprint ===

impl Fingerprint {
    /// Computes the fingerprint of a DER-encoded certificate.
    pub fn of(certificate: &CertificateDer<'_>) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, certificate.as_ref());
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Fingerprint {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<Fingerprint> for [u8; 32] {
    fn from(fingerprint: Fingerprint) -> Self {
        fingerprint.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut s = s.trim();
        for prefix in ["sha256 fingerprint=", "sha256:"] {
            if s.len() >= prefix.len()
                && s.is_char_boundary(prefix.len())
                && s[..prefix.len()].eq_ignore_ascii_case(prefix)
            {
                s = s[prefix.len()..].trim_start();
                break;
            }
        }
        let mut bytes = [0u8; 32];
        let mut digits = 0usize;
        for c in s.chars().filter(|&c| c != ':') {
            let Some(value) = c.to_digit(16) else {
                return Err(FingerprintParseError::InvalidCharacter(c));
            };
            if let Some(byte) = bytes.get_mut(digits / 2) {
                // `value` < 16, so the cast is lossless.
                *byte = (*byte << 4) | value as u8;
            }
            digits += 1;
        }
        if digits != 64 {
            return Err(FingerprintParseError::WrongLength(digits));
        }
        Ok(Self(bytes))
    }
}

/// Why a string is not a SHA-256 fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintParseError {
    /// A character that is neither a hex digit nor `:`.
    #[error(
        "invalid character {0:?} in SHA-256 fingerprint (expected hex digits and optional ':')"
    )]
    InvalidCharacter(char),
    /// Not exactly 64 hex digits.
    #[error("a SHA-256 fingerprint has 64 hex digits, found {0}")]
    WrongLength(usize),
}

/// The error a pinned client reports for an unpinned certificate (inside
/// `rustls::CertificateError::Other`); turned into `SecurityError::PinMismatch`.
#[derive(Debug)]
pub(crate) struct PinMismatch {
    presented: Fingerprint,
}

impl PinMismatch {
    pub(crate) fn presented(&self) -> Fingerprint {
        self.presented
    }
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate (sha256 {}) does not match any pinned fingerprint",
            self.presented
        )
    }
}

impl std::error::Error for PinMismatch {}

/// Accepts exactly the end-entity certificates whose SHA-256 fingerprint is pinned.
///
/// The name, the chain and the validity period are deliberately ignored: the pin is the
/// trust decision. The handshake signature is still verified against the pinned
/// certificate's key, so a peer replaying the certificate without its key fails. TLS 1.2
/// signatures are always rejected (the configurations are TLS 1.3 only).
#[derive(Debug)]
pub(super) struct PinnedServerCertVerifier {
    pins: Vec<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

// === impl PinnedServerCertVerifier ===

impl PinnedServerCertVerifier {
    pub(super) fn new(pins: Vec<Fingerprint>, algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self { pins, algorithms }
    }
}

impl ServerCertVerifier for PinnedServerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of(end_entity);
        if self.pins.contains(&presented) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(
            CertificateError::Other(OtherError(std::sync::Arc::new(PinMismatch { presented })))
                .into(),
        )
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn display_round_trips_through_from_str() {
        let fp: Fingerprint = HEX.parse().unwrap();
        assert_eq!(fp.as_bytes()[1], 0x11);
        assert_eq!(fp.to_string(), HEX);
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn parses_colons_upper_case_and_prefixes() {
        let expected: Fingerprint = HEX.parse().unwrap();
        let colons = HEX
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(colons.parse::<Fingerprint>().unwrap(), expected);
        assert_eq!(
            format!("sha256 Fingerprint={colons}")
                .parse::<Fingerprint>()
                .unwrap(),
            expected
        );
        assert_eq!(
            format!("  SHA256:{HEX}\n").parse::<Fingerprint>().unwrap(),
            expected
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            HEX[..62].parse::<Fingerprint>(),
            Err(FingerprintParseError::WrongLength(62))
        );
        assert_eq!(
            format!("{HEX}00").parse::<Fingerprint>(),
            Err(FingerprintParseError::WrongLength(66))
        );
        let bad = format!("{}g", &HEX[..63]);
        assert_eq!(
            bad.parse::<Fingerprint>(),
            Err(FingerprintParseError::InvalidCharacter('g'))
        );
        assert_eq!(
            "".parse::<Fingerprint>(),
            Err(FingerprintParseError::WrongLength(0))
        );
    }

    #[test]
    fn fingerprint_is_sha256_of_der() {
        // SHA-256 of the empty input.
        let fp = Fingerprint::of(&CertificateDer::from(Vec::new()));
        assert_eq!(
            fp.to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

//! The gateway's TLS handshake ceiling, measured when it starts.
//!
//! The crash-reconnect window a gateway advises (`limits.reconnect_rate`,
//! [`pike_api::server::ReconnectSpread`]) is `connections × 1.5 /
//! handshakes a second`. A fixed guess of the rate is wrong on most
//! machines (1,000 a second per worker was a third of what the benchmark
//! box takes, so a restarted gateway's clients came back 4.9× slower than
//! it could take them). Unless the rate is configured, the gateway times
//! [`MEASURED_HANDSHAKES`] full TLS 1.3 handshakes with its own certificate
//! at start, in memory against a client pinned to it, counting only the
//! server side's work (reading the client's flights, key exchange,
//! signature, writing its own), and takes the median.
//!
//! In memory there is no socket and no Pike login, which a real reconnect
//! also costs: the advised window's 1.5× headroom covers them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tntunnel::tls::{TlsClientConfig, TlsServerConfig};

/// Handshakes timed at start (a few milliseconds in all).
pub const MEASURED_HANDSHAKES: usize = 16;

/// Flights exchanged at most before a handshake counts as failed.
const MAX_FLIGHTS: usize = 8;

/// Full TLS 1.3 handshakes a second one worker of this gateway completes
/// with `server`'s certificate, or `None` when they cannot be measured (a
/// configuration without a certificate fingerprint, a failing handshake).
pub fn handshakes_per_worker(server: &TlsServerConfig) -> Option<u32> {
    let pin = server.leaf_fingerprint()?;
    let client = TlsClientConfig::pinned([pin]).ok()?.rustls_config();
    let server = server.rustls_config();
    let mut times = Vec::with_capacity(MEASURED_HANDSHAKES);
    for _ in 0..MEASURED_HANDSHAKES {
        times.push(server_side(&client, &server)?);
    }
    times.sort_unstable();
    let median = times[times.len() / 2].as_secs_f64();
    (median > 0.0).then(|| (1.0 / median).min(f64::from(u32::MAX)) as u32)
}

/// The server side's time for one full handshake.
#[expect(
    clippy::disallowed_methods,
    reason = "this measures real work on this core: a paused tokio clock would read zero"
)]
fn server_side(
    client: &Arc<rustls::ClientConfig>,
    server: &Arc<rustls::ServerConfig>,
) -> Option<Duration> {
    let name = ServerName::try_from("pike.invalid").ok()?;
    let mut client = rustls::ClientConnection::new(client.clone(), name).ok()?;
    let mut server = rustls::ServerConnection::new(server.clone()).ok()?;
    let mut spent = Duration::ZERO;
    let mut wire = Vec::new();
    for _ in 0..MAX_FLIGHTS {
        wire.clear();
        while client.wants_write() {
            client.write_tls(&mut wire).ok()?;
        }
        let started = Instant::now();
        let mut flight = &wire[..];
        while !flight.is_empty() {
            server.read_tls(&mut flight).ok()?;
        }
        server.process_new_packets().ok()?;
        wire.clear();
        while server.wants_write() {
            server.write_tls(&mut wire).ok()?;
        }
        spent += started.elapsed();
        let mut flight = &wire[..];
        while !flight.is_empty() {
            client.read_tls(&mut flight).ok()?;
        }
        client.process_new_packets().ok()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Some(spent);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_self_signed_gateway_measures_a_plausible_rate() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let (tls, _) = TlsServerConfig::self_signed_in(dir.path(), ["localhost".to_string()])
            .await
            .unwrap();
        let rate = handshakes_per_worker(&tls).expect("measured");
        // A full handshake is an ECDHE and a signature: between 10 µs
        // and 100 ms of one core on anything that runs this.
        assert!((10..=100_000).contains(&rate), "{rate} handshakes/s");
    }

    #[test]
    fn a_configuration_without_a_known_certificate_is_not_measured() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert));
        assert_eq!(
            handshakes_per_worker(&TlsServerConfig::from_rustls(Arc::new(config))),
            None
        );
    }

    #[derive(Debug)]
    struct NoCert;

    impl rustls::server::ResolvesServerCert for NoCert {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }
}

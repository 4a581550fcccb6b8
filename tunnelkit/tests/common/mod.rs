//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::{future::Future, time::Duration};

/// Routes `tracing` output of the current test to the test's captured output. Filter with
/// `RUST_LOG` (e.g. `RUST_LOG=tunnelkit=debug`).
pub(crate) fn trace_init() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .finish();
    tracing::subscriber::set_default(subscriber)
}

/// Bounds a real-time network step so a broken test fails instead of hanging.
pub(crate) async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(output) => output,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Self-signed certificate for `localhost` and matching rustls configs (ring provider,
/// TLS 1.3, ALPN `pike-test`).
#[cfg(feature = "quic")]
pub(crate) struct Tls {
    pub(crate) server: std::sync::Arc<rustls::ServerConfig>,
    pub(crate) client: std::sync::Arc<rustls::ClientConfig>,
}

#[cfg(feature = "quic")]
pub(crate) fn tls() -> Tls {
    use std::sync::Arc;

    use rustls::{
        ClientConfig, RootCertStore, ServerConfig, crypto::ring, pki_types::PrivatePkcs8KeyDer,
        version::TLS13,
    };

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let provider = Arc::new(ring::default_provider());

    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
    server.alpn_protocols = vec![b"pike-test".to_vec()];

    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"pike-test".to_vec()];

    Tls {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

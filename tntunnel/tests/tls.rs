//! TLS 1.3 over real loopback TCP through the `SecureStream` seam: CA-verified and pinned
//! clients, the self-signed development certificate, PEM loading errors, and peers that
//! speak the wrong protocol for the port.
#![cfg(feature = "tls")]

use std::net::SocketAddr;
use std::time::Duration;

use tntunnel::tls::rustls::{self, CertificateError};
use tntunnel::tls::{ALPN_PIKE, Fingerprint, TlsClientConfig, TlsConfigError, TlsServerConfig};
use tntunnel::{ClientSecurity, SecureStream, SecurityError, ServerSecurity, looks_like_tls};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

mod support;

use support::bounded;

/// A test CA and a leaf certificate for `localhost` / `127.0.0.1` issued by it.
struct TestPki {
    ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
    leaf_fingerprint: Fingerprint,
}

fn test_pki() -> TestPki {
    test_pki_with_ca_name("Pike test CA")
}

fn test_pki_with_ca_name(ca_name: &str) -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &*ca).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_fingerprint: Fingerprint::of(leaf.der()),
    }
}

fn ca_server(pki: &TestPki) -> ServerSecurity {
    ServerSecurity::Tls(
        TlsServerConfig::from_pem(pki.leaf_pem.as_bytes(), pki.leaf_key_pem.as_bytes()).unwrap(),
    )
}

/// Accepts one connection, secures it and echoes what it reads until EOF.
/// Returns the ALPN protocol the server saw, or the server-side security error.
async fn spawn_echo_server(
    security: ServerSecurity,
) -> (
    SocketAddr,
    JoinHandle<Result<Option<Vec<u8>>, SecurityError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = security.secure(tcp).await?;
        let alpn = stream.alpn_protocol().map(<[u8]>::to_vec);
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n]).await?;
            stream.flush().await?;
        }
        stream.shutdown().await?;
        Ok(alpn)
    });
    (addr, task)
}

async fn connect(
    security: &ClientSecurity,
    addr: SocketAddr,
    server_name: &str,
) -> Result<SecureStream<TcpStream>, SecurityError> {
    let tcp = bounded("TCP connect", TcpStream::connect(addr))
        .await
        .unwrap();
    // The handshake future must be spawnable on a multi-threaded runtime.
    let handshake = assert_send(security.secure(tcp, server_name));
    bounded("client handshake", handshake).await
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

/// Writes `message`, reads the echo back and closes the write side.
async fn echo_round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    stream.flush().await.unwrap();
    let mut echoed = vec![0u8; message.len()];
    bounded("echo", stream.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(echoed, message);
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    bounded("server close", stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "unexpected trailing bytes {rest:?}");
}

async fn server_result(
    task: JoinHandle<Result<Option<Vec<u8>>, SecurityError>>,
) -> Result<Option<Vec<u8>>, SecurityError> {
    bounded("server task", task).await.unwrap()
}

#[tokio::test]
async fn ca_verified_client_round_trip() {
    let pki = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    let client = ClientSecurity::Tls(TlsClientConfig::with_ca_pem_file(&ca_path).await.unwrap());

    let (addr, server) = spawn_echo_server(ca_server(&pki)).await;
    let mut stream = connect(&client, addr, "localhost").await.unwrap();
    assert!(stream.is_tls());
    assert!(matches!(stream, SecureStream::ClientTls(_)), "{stream:?}");
    assert_eq!(stream.alpn_protocol(), Some(ALPN_PIKE));
    assert_eq!(stream.get_ref().peer_addr().unwrap(), addr);
    let SecureStream::ClientTls(tls) = &stream else {
        panic!("expected a client TLS stream, got {stream:?}");
    };
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    echo_round_trip(&mut stream, b"hello over TLS 1.3").await;

    assert_eq!(
        server_result(server).await.unwrap(),
        Some(ALPN_PIKE.to_vec())
    );
}

#[tokio::test]
async fn ca_verified_client_accepts_ip_address_server_name() {
    let pki = test_pki();
    let client = ClientSecurity::Tls(TlsClientConfig::with_ca_pem(pki.ca_pem.as_bytes()).unwrap());
    let (addr, server) = spawn_echo_server(ca_server(&pki)).await;
    let mut stream = connect(&client, addr, "127.0.0.1").await.unwrap();
    echo_round_trip(&mut stream, b"by IP").await;
    assert!(server_result(server).await.is_ok());
}

#[tokio::test]
async fn ca_verified_client_rejects_wrong_server_name() {
    let pki = test_pki();
    let client = ClientSecurity::Tls(TlsClientConfig::with_ca_pem(pki.ca_pem.as_bytes()).unwrap());
    let (addr, server) = spawn_echo_server(ca_server(&pki)).await;

    let error = connect(&client, addr, "other.example").await.unwrap_err();
    assert!(
        matches!(
            &error,
            SecurityError::CertificateRejected(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("other.example"), "{error}");
    // The server learns about it through the client's alert.
    let server_error = server_result(server).await.unwrap_err();
    assert!(
        matches!(server_error, SecurityError::Handshake(_)),
        "{server_error:?}"
    );
}

#[tokio::test]
async fn ca_verified_client_rejects_unknown_issuer() {
    let pki = test_pki();
    let other_ca = test_pki_with_ca_name("Some other CA").ca_pem;
    let client = ClientSecurity::Tls(TlsClientConfig::with_ca_pem(other_ca.as_bytes()).unwrap());
    let (addr, _server) = spawn_echo_server(ca_server(&pki)).await;

    let error = connect(&client, addr, "localhost").await.unwrap_err();
    assert!(
        matches!(
            &error,
            SecurityError::CertificateRejected(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn pinned_client_round_trip_ignores_name_and_issuer() {
    let pki = test_pki();
    let client = ClientSecurity::Tls(
        TlsClientConfig::pinned(vec![*pki.leaf_fingerprint.as_bytes()]).unwrap(),
    );
    let (addr, server) = spawn_echo_server(ca_server(&pki)).await;

    // Neither the name nor the (unknown) CA matter, only the pin.
    let mut stream = connect(&client, addr, "not-in-the-certificate.invalid")
        .await
        .unwrap();
    assert_eq!(stream.alpn_protocol(), Some(ALPN_PIKE));
    echo_round_trip(&mut stream, b"pinned").await;
    assert!(server_result(server).await.is_ok());
}

#[tokio::test]
async fn pinned_client_with_wrong_pin_fails_clearly() {
    let pki = test_pki();
    let wrong = Fingerprint::from([0x42; 32]);
    let client = ClientSecurity::Tls(TlsClientConfig::pinned([wrong]).unwrap());
    let (addr, server) = spawn_echo_server(ca_server(&pki)).await;

    let error = connect(&client, addr, "localhost").await.unwrap_err();
    let SecurityError::PinMismatch { presented } = &error else {
        panic!("expected PinMismatch, got {error:?}");
    };
    assert_eq!(*presented, pki.leaf_fingerprint);
    let message = error.to_string();
    assert!(
        message.contains(&pki.leaf_fingerprint.to_string()),
        "{message}"
    );
    assert!(message.contains("pinned"), "{message}");
    assert_eq!(
        std::io::Error::from(error).kind(),
        std::io::ErrorKind::InvalidData
    );

    let server_error = server_result(server).await.unwrap_err();
    assert!(
        matches!(
            server_error,
            SecurityError::Handshake(rustls::Error::AlertReceived(_))
        ),
        "{server_error:?}"
    );
}

#[tokio::test]
async fn pinned_client_needs_a_pin() {
    let error = TlsClientConfig::pinned(Vec::<[u8; 32]>::new()).unwrap_err();
    assert!(matches!(error, TlsConfigError::NoPins), "{error:?}");
}

#[tokio::test]
async fn session_is_resumed_on_reconnect_with_the_same_client_config() {
    let pki = test_pki();
    let server = ca_server(&pki);
    let client = ClientSecurity::Tls(TlsClientConfig::with_ca_pem(pki.ca_pem.as_bytes()).unwrap());

    let mut kinds = Vec::new();
    for round in 0..2 {
        let (addr, task) = spawn_echo_server(server.clone()).await;
        let mut stream = connect(&client, addr, "localhost").await.unwrap();
        let SecureStream::ClientTls(tls) = &stream else {
            panic!("expected a client TLS stream, got {stream:?}");
        };
        kinds.push(tls.get_ref().1.handshake_kind());
        // Reading the echo also processes the NewSessionTicket messages.
        echo_round_trip(&mut stream, format!("round {round}").as_bytes()).await;
        assert!(server_result(task).await.is_ok());
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}

#[tokio::test]
async fn client_offering_only_another_alpn_is_refused() {
    let pki = test_pki();
    let base = TlsClientConfig::pinned([pki.leaf_fingerprint]).unwrap();
    let mut other = (*base.rustls_config()).clone();
    other.alpn_protocols = vec![b"h2".to_vec()];
    let client = ClientSecurity::Tls(TlsClientConfig::from_rustls(other.into()));
    let (addr, server) = spawn_echo_server(ca_server(&pki)).await;

    let error = connect(&client, addr, "localhost").await.unwrap_err();
    assert!(
        matches!(
            error,
            SecurityError::Handshake(rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            ))
        ),
        "{error:?}"
    );
    let server_error = server_result(server).await.unwrap_err();
    assert!(
        matches!(
            server_error,
            SecurityError::Handshake(rustls::Error::NoApplicationProtocol)
        ),
        "{server_error:?}"
    );
}

#[tokio::test]
async fn configs_are_tls13_only_with_pike_alpn_and_no_early_data() {
    let pki = test_pki();
    let server =
        TlsServerConfig::from_pem(pki.leaf_pem.as_bytes(), pki.leaf_key_pem.as_bytes()).unwrap();
    assert_eq!(server.leaf_fingerprint(), Some(pki.leaf_fingerprint));
    let rustls_server = server.rustls_config();
    assert_eq!(rustls_server.alpn_protocols, vec![ALPN_PIKE.to_vec()]);
    assert_eq!(rustls_server.max_early_data_size, 0);
    assert!(!rustls_server.send_half_rtt_data);
    assert!(rustls_server.ticketer.enabled());

    let client = TlsClientConfig::with_ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .rustls_config();
    assert_eq!(client.alpn_protocols, vec![ALPN_PIKE.to_vec()]);
    assert!(!client.enable_early_data);
}

#[tokio::test]
async fn self_signed_in_generates_once_then_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("pike-data");
    let cert_path = data_dir.join("tls").join("cert.pem");
    let key_path = data_dir.join("tls").join("key.pem");

    let (first, fingerprint) =
        TlsServerConfig::self_signed_in(&data_dir, ["localhost", "127.0.0.1"])
            .await
            .unwrap();
    assert!(cert_path.is_file() && key_path.is_file());
    assert_eq!(first.leaf_fingerprint(), Some(fingerprint));
    let cert_pem = std::fs::read(&cert_path).unwrap();
    assert!(
        String::from_utf8_lossy(&cert_pem).starts_with("-----BEGIN CERTIFICATE-----"),
        "cert.pem is not a PEM certificate"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key mode {mode:o}");
    }
    // The fingerprint is that of the certificate on disk.
    let on_disk = TlsServerConfig::from_pem_files(&cert_path, &key_path)
        .await
        .unwrap();
    assert_eq!(on_disk.leaf_fingerprint(), Some(fingerprint));

    let (second, again) = TlsServerConfig::self_signed_in(&data_dir, ["ignored.example"])
        .await
        .unwrap();
    assert_eq!(again, fingerprint);
    assert_eq!(std::fs::read(&cert_path).unwrap(), cert_pem);

    // The reused identity serves a client pinned to the printed fingerprint ...
    let pin: Fingerprint = fingerprint.to_string().parse().unwrap();
    let pinned = ClientSecurity::Tls(TlsClientConfig::pinned([pin]).unwrap());
    let (addr, server) = spawn_echo_server(ServerSecurity::Tls(second)).await;
    let mut stream = connect(&pinned, addr, "localhost").await.unwrap();
    echo_round_trip(&mut stream, b"dev").await;
    assert!(server_result(server).await.is_ok());

    // ... and a client that trusts cert.pem as its CA file.
    let ca_client =
        ClientSecurity::Tls(TlsClientConfig::with_ca_pem_file(&cert_path).await.unwrap());
    let (addr, server) = spawn_echo_server(ServerSecurity::Tls(first)).await;
    let mut stream = connect(&ca_client, addr, "localhost").await.unwrap();
    echo_round_trip(&mut stream, b"dev via CA file").await;
    assert!(server_result(server).await.is_ok());
}

#[tokio::test]
async fn self_signed_in_refuses_to_replace_a_certificate_whose_key_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    TlsServerConfig::self_signed_in(dir.path(), ["localhost"])
        .await
        .unwrap();
    let key_path = dir.path().join("tls").join("key.pem");
    std::fs::remove_file(&key_path).unwrap();

    let error = TlsServerConfig::self_signed_in(dir.path(), ["localhost"])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::SelfSignedKeyMissing { key_path: missing, .. } if *missing == key_path),
        "{error:?}"
    );
}

#[tokio::test]
async fn from_pem_files_reports_what_is_wrong() {
    let pki = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, contents: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let cert = write("cert.pem", pki.leaf_pem.as_bytes());
    let key = write("key.pem", pki.leaf_key_pem.as_bytes());
    let garbage = write("garbage.pem", b"this is not a certificate\n\x00\xff");
    let bad_base64 = write(
        "bad.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    );
    let other_key = write(
        "other-key.pem",
        rcgen::KeyPair::generate()
            .unwrap()
            .serialize_pem()
            .as_bytes(),
    );
    let missing = dir.path().join("missing.pem");

    // The happy path, to show the fixtures are right.
    assert!(TlsServerConfig::from_pem_files(&cert, &key).await.is_ok());

    let error = TlsServerConfig::from_pem_files(&missing, &key)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::Read { path, source }
            if *path == missing && source.kind() == std::io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(error.to_string().contains("missing.pem"), "{error}");

    let error = TlsServerConfig::from_pem_files(&cert, &missing)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::Read { path, .. } if *path == missing),
        "{error:?}"
    );

    let error = TlsServerConfig::from_pem_files(&garbage, &key)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::NoCertificate { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("garbage.pem"), "{error}");

    let error = TlsServerConfig::from_pem_files(&bad_base64, &key)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::InvalidPem { .. }),
        "{error:?}"
    );

    // A certificate file given as the key: no key in it.
    let error = TlsServerConfig::from_pem_files(&cert, &cert)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::NoPrivateKey { .. }),
        "{error:?}"
    );

    let error = TlsServerConfig::from_pem_files(&cert, &garbage)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::NoPrivateKey { .. }),
        "{error:?}"
    );

    // A valid key that belongs to another certificate.
    let error = TlsServerConfig::from_pem_files(&cert, &other_key)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::CertificateOrKey(_)),
        "{error:?}"
    );

    // One file holding both the chain and the key works.
    let combined = write(
        "combined.pem",
        format!("{}{}", pki.leaf_pem, pki.leaf_key_pem).as_bytes(),
    );
    assert!(
        TlsServerConfig::from_pem_files(&combined, &combined)
            .await
            .is_ok()
    );

    let error = TlsClientConfig::with_ca_pem_file(&garbage)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::NoCertificate { .. }),
        "{error:?}"
    );
    let error = TlsClientConfig::with_ca_pem_file(&missing)
        .await
        .unwrap_err();
    assert!(matches!(&error, TlsConfigError::Read { .. }), "{error:?}");
}

#[tokio::test]
async fn plain_client_on_tls_port_gets_closed_and_server_reports_not_tls() {
    let pki = test_pki();
    let (addr, server) = spawn_echo_server(ca_server(&pki)).await;

    let mut plain = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    plain
        .write_all(b"PIKE/1 hello from a plain client\n")
        .await
        .unwrap();
    // The client must not hang: the server answers with a fatal TLS alert
    // (decode_error) and closes the connection.
    let mut answer = Vec::new();
    bounded("server close", plain.read_to_end(&mut answer))
        .await
        .unwrap();
    assert_eq!(
        answer,
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50],
        "{answer:?}"
    );

    let error = server_result(server).await.unwrap_err();
    assert!(
        matches!(
            &error,
            SecurityError::NotTls(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            ))
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("not speaking TLS"), "{error}");
}

/// A plain-protocol server: reads the first bytes, reports whether they looked like TLS,
/// answers `reply` (or nothing) and waits for the client to go away.
async fn spawn_plain_server(reply: Option<&'static [u8]>) -> (SocketAddr, JoinHandle<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let SecureStream::Plain(mut tcp) = ServerSecurity::Plain.secure(tcp).await.unwrap() else {
            panic!("plain security must give a plain stream");
        };
        let mut first = [0u8; 16];
        let n = tcp.read(&mut first).await.unwrap();
        let tls = looks_like_tls(&first[..n]);
        match reply {
            Some(reply) => {
                tcp.write_all(reply).await.unwrap();
                // Drain until the client closes, so the close is a FIN and not a reset.
                let mut sink = Vec::new();
                let _ = tcp.read_to_end(&mut sink).await;
            }
            None => drop(tcp),
        }
        tls
    });
    (addr, task)
}

#[tokio::test]
async fn tls_client_on_plain_port_that_answers_gets_not_tls() {
    let pki = test_pki();
    let client = ClientSecurity::Tls(TlsClientConfig::with_ca_pem(pki.ca_pem.as_bytes()).unwrap());
    let (addr, server) = spawn_plain_server(Some(b"ERR unknown frame type\n")).await;

    let error = connect(&client, addr, "localhost").await.unwrap_err();
    assert!(matches!(error, SecurityError::NotTls(_)), "{error:?}");
    assert!(
        bounded("plain server", server).await.unwrap(),
        "the plain server should recognise a TLS ClientHello"
    );
}

#[tokio::test]
async fn tls_client_on_plain_port_that_closes_gets_closed_during_handshake() {
    let pki = test_pki();
    let client = ClientSecurity::Tls(TlsClientConfig::with_ca_pem(pki.ca_pem.as_bytes()).unwrap());
    let (addr, server) = spawn_plain_server(None).await;

    let error = connect(&client, addr, "localhost").await.unwrap_err();
    assert!(
        matches!(error, SecurityError::ClosedDuringHandshake(_)),
        "{error:?}"
    );
    assert!(bounded("plain server", server).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn tls_client_handshake_times_out_against_a_silent_peer() {
    let pki = test_pki();
    let mut config = TlsClientConfig::pinned([pki.leaf_fingerprint]).unwrap();
    config.handshake_timeout(Duration::from_secs(5));
    let client = ClientSecurity::Tls(config);
    // In-memory pipe, so the paused clock is the only thing that moves.
    let (io, _silent_peer) = tokio::io::duplex(64 * 1024);

    let start = tokio::time::Instant::now();
    let error = client.secure(io, "localhost").await.unwrap_err();
    assert!(
        matches!(error, SecurityError::HandshakeTimeout(timeout) if timeout == Duration::from_secs(5)),
        "{error:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(
        std::io::Error::from(error).kind(),
        std::io::ErrorKind::TimedOut
    );
}

#[tokio::test(start_paused = true)]
async fn tls_server_handshake_times_out_against_a_silent_client() {
    let pki = test_pki();
    let server = ca_server(&pki);
    let (io, _silent_client) = tokio::io::duplex(64 * 1024);

    let start = tokio::time::Instant::now();
    let error = server.secure(io).await.unwrap_err();
    assert!(
        matches!(error, SecurityError::HandshakeTimeout(_)),
        "{error:?}"
    );
    assert_eq!(
        start.elapsed(),
        tntunnel::tls::DEFAULT_TLS_HANDSHAKE_TIMEOUT
    );
}

#[tokio::test]
async fn invalid_server_name_is_rejected_before_the_handshake() {
    let pki = test_pki();
    let client = ClientSecurity::Tls(TlsClientConfig::with_ca_pem(pki.ca_pem.as_bytes()).unwrap());
    let (io, _peer) = tokio::io::duplex(1024);
    let error = bounded("secure", client.secure(io, "not a host name!"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SecurityError::InvalidServerName(name) if name == "not a host name!"),
        "{error:?}"
    );
}

#[tokio::test]
async fn plain_round_trip_through_secure_stream() {
    let (addr, server) = spawn_echo_server(ServerSecurity::Plain).await;
    let mut stream = connect(&ClientSecurity::Plain, addr, "ignored")
        .await
        .unwrap();
    assert!(!stream.is_tls());
    assert!(matches!(stream, SecureStream::Plain(_)), "{stream:?}");
    assert_eq!(stream.alpn_protocol(), None);
    assert_eq!(stream.get_ref().peer_addr().unwrap(), addr);
    echo_round_trip(&mut stream, b"plain bytes").await;
    assert_eq!(server_result(server).await.unwrap(), None);
}

#[tokio::test]
async fn fingerprint_display_parses_back_also_in_openssl_form() {
    let pki = test_pki();
    let printed = pki.leaf_fingerprint.to_string();
    assert_eq!(printed.len(), 64);
    assert!(
        printed
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{printed}"
    );
    assert_eq!(
        printed.parse::<Fingerprint>().unwrap(),
        pki.leaf_fingerprint
    );
    // `openssl x509 -noout -fingerprint -sha256` output, pasted as is.
    let openssl = format!(
        "sha256 Fingerprint={}",
        printed
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":")
    );
    assert_eq!(
        openssl.parse::<Fingerprint>().unwrap(),
        pki.leaf_fingerprint
    );
}

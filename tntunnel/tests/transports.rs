//! The Pike tunnel end to end over the three transports a gateway serves:
//! plain TCP, TLS 1.3 over TCP, and QUIC, each through the real tunnelkit
//! listeners and transports on loopback. Also the wrong-security pairings
//! (TLS client on the plain port, plain client on the TLS port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tntunnel::proto::tunnel::{ClientHello, Compression, ServerHello};
use tntunnel::tls::{Fingerprint, TlsClientConfig, TlsServerConfig};
use tntunnel::{
    ClientSecurity, Frame, FrameType, HandshakeError, SecurityError, ServerSecurity, TunnelConfig,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tunnelkit::{
    Listener, QuicConfig, QuicListener, QuicTransport, TcpConfig, TcpListener, TcpTransport,
    Transport,
};

const LIMIT: Duration = Duration::from_secs(10);

/// Why a one-connection server stopped.
#[derive(Debug)]
enum ServerError {
    Security(SecurityError),
    Handshake(HandshakeError),
}

/// Accepts one connection, secures it, runs the Pike handshake and echoes
/// application frames until the client leaves.
fn serve_one<L>(mut listener: L, security: ServerSecurity) -> JoinHandle<Result<u64, ServerError>>
where
    L: Listener,
    L::Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let (io, _peer) = listener
            .accept()
            .await
            .map_err(|e| ServerError::Handshake(e.into()))?;
        let io = security.secure(io).await.map_err(ServerError::Security)?;
        let incoming = tntunnel::accept(io, &TunnelConfig::default())
            .await
            .map_err(ServerError::Handshake)?;
        let mut framed = incoming
            .accept(ServerHello {
                connection_token: tntunnel::new_connection_token().unwrap_or_default(),
                ..Default::default()
            })
            .await
            .map_err(ServerError::Handshake)?;
        let mut echoed = 0;
        while let Some(frame) = framed.next().await {
            let frame = frame.map_err(|e| ServerError::Handshake(e.into()))?;
            framed
                .send(frame)
                .await
                .map_err(|e| ServerError::Handshake(e.into()))?;
            echoed += 1;
        }
        Ok(echoed)
    })
}

/// Dials, secures, handshakes, and checks 100 frames echo in order.
async fn client_round_trip<T>(transport: &T, addr: SocketAddr, security: &ClientSecurity) -> String
where
    T: Transport,
    T::Conn: AsyncRead + AsyncWrite + Unpin + Send,
{
    let io = transport.connect(addr).await.unwrap();
    let io = security.secure(io, "localhost").await.unwrap();
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: "device-1".into(),
        ..Default::default()
    };
    let (mut framed, server_hello) = tntunnel::connect(io, hello, &TunnelConfig::default())
        .await
        .unwrap();
    assert_eq!(server_hello.version, tntunnel::PROTOCOL_VERSION);
    assert_eq!(server_hello.compression, Compression::Lz4 as i32);
    let frames: Vec<Frame> = (0..100u32)
        .map(|i| {
            let body = if i % 10 == 0 {
                "big ".repeat(2000).into_bytes()
            } else {
                i.to_be_bytes().to_vec()
            };
            Frame::new(FrameType::app(0x18), body)
        })
        .collect();
    for frame in &frames {
        framed.feed(frame.clone()).await.unwrap();
    }
    framed.flush().await.unwrap();
    for frame in &frames {
        let echo = timeout(LIMIT, framed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&echo, frame);
    }
    // A graceful close (TLS close_notify, QUIC stream finish).
    framed.close().await.unwrap();
    server_hello.connection_token
}

async fn tls_identity() -> (TlsServerConfig, Fingerprint, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (server, fingerprint) =
        TlsServerConfig::self_signed_in(dir.path(), ["localhost".to_string()])
            .await
            .unwrap();
    (server, fingerprint, dir)
}

#[tokio::test]
async fn plain_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_one(listener, ServerSecurity::Plain);
    let transport = TcpTransport::new(TcpConfig::default()).unwrap();
    let token = client_round_trip(&transport, addr, &ClientSecurity::Plain).await;
    assert_eq!(token.len(), 32);
    assert_eq!(timeout(LIMIT, server).await.unwrap().unwrap().unwrap(), 100);
}

#[tokio::test]
async fn tls_over_tcp_with_a_pinned_self_signed_certificate() {
    let (tls, fingerprint, _dir) = tls_identity().await;
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_one(listener, ServerSecurity::Tls(tls));
    let transport = TcpTransport::new(TcpConfig::default()).unwrap();
    let client = ClientSecurity::Tls(TlsClientConfig::pinned([fingerprint]).unwrap());
    client_round_trip(&transport, addr, &client).await;
    assert_eq!(timeout(LIMIT, server).await.unwrap().unwrap().unwrap(), 100);
}

#[tokio::test]
async fn quic_with_the_same_tls_identity() {
    let (tls, fingerprint, _dir) = tls_identity().await;
    let listener = QuicListener::bind(
        "127.0.0.1:0".parse().unwrap(),
        tls.rustls_config(),
        &QuicConfig::default(),
    )
    .unwrap();
    let addr = listener.local_addr().unwrap();
    // QUIC brings its own TLS 1.3: the tunnel runs plain on the stream.
    let server = serve_one(listener, ServerSecurity::Plain);
    let client_tls = TlsClientConfig::pinned([fingerprint]).unwrap();
    let transport = QuicTransport::new(
        client_tls.rustls_config(),
        "localhost",
        &QuicConfig::default(),
    )
    .unwrap();
    client_round_trip(&transport, addr, &ClientSecurity::Plain).await;
    assert_eq!(timeout(LIMIT, server).await.unwrap().unwrap().unwrap(), 100);
}

#[tokio::test]
async fn tls_client_on_the_plain_port() {
    let (_tls, fingerprint, _dir) = tls_identity().await;
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_one(listener, ServerSecurity::Plain);
    let transport = TcpTransport::new(TcpConfig::default()).unwrap();
    let io = transport.connect(addr).await.unwrap();
    let client = ClientSecurity::Tls(TlsClientConfig::pinned([fingerprint]).unwrap());
    let result = timeout(LIMIT, client.secure(io, "localhost"))
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "TLS handshake against a plain Pike port must fail"
    );
    let server = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(
        matches!(
            server,
            Err(ServerError::Handshake(HandshakeError::PeerSpeaksTls))
        ),
        "{server:?}"
    );
}

#[tokio::test]
async fn plain_client_on_the_tls_port() {
    let (tls, _fingerprint, _dir) = tls_identity().await;
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_one(listener, ServerSecurity::Tls(tls));
    let transport = TcpTransport::new(TcpConfig::default()).unwrap();
    let io = transport.connect(addr).await.unwrap();
    let result = timeout(
        LIMIT,
        tntunnel::connect(io, ClientHello::default(), &TunnelConfig::default()),
    )
    .await
    .unwrap();
    assert!(
        matches!(result, Err(HandshakeError::PeerSpeaksTls)),
        "{result:?}"
    );
    let server = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(
        matches!(server, Err(ServerError::Security(SecurityError::NotTls(_)))),
        "{server:?}"
    );
}

#[test]
fn transports_are_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TcpTransport>();
    assert_send_sync::<QuicTransport>();
    assert_send_sync::<Arc<TcpTransport>>();
}

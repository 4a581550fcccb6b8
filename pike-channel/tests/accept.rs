//! The accept loop on loopback TCP: the hello decision, the connection
//! limit, and what the gateway learns about a connection.

use std::net::SocketAddr;
use std::time::Duration;

use pike_channel::proto::tunnel::{ClientHello, ErrorCode};
use pike_channel::test_util::trace_init;
use pike_channel::tntunnel::{HandshakeError, ServerSecurity};
use pike_channel::tunnelkit::{
    Acceptor, AcceptorConfig, Dialer, DialerConfig, Listener, TcpConfig, TcpListener, TcpTransport,
};
use pike_channel::{
    AcceptLoop, AcceptOptions, ConnectError, Connector, HelloDecision, TunnelConnector,
    spawn_accept_loop,
};

const LIMIT: Duration = Duration::from_secs(20);

fn serve(max_connections: Option<usize>) -> (AcceptLoop, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = AcceptorConfig::default();
    config.max_connections(max_connections);
    let acceptor = Acceptor::new(listener, &config).unwrap();
    let accept = spawn_accept_loop(
        acceptor,
        AcceptOptions::new(ServerSecurity::Plain),
        |hello: &ClientHello, _info: &_| {
            if hello.app_id == "demo" {
                HelloDecision::accept()
            } else {
                HelloDecision::reject(ErrorCode::UnknownApp, "no such app")
            }
        },
    );
    (accept, addr)
}

fn connector(addr: SocketAddr, app: &str) -> TunnelConnector<TcpTransport> {
    let dialer = Dialer::new(
        TcpTransport::new(TcpConfig::default()).unwrap(),
        DialerConfig::default(),
    )
    .unwrap();
    let hello = ClientHello {
        app_id: app.into(),
        device_id: "device-1".into(),
        ..ClientHello::default()
    };
    TunnelConnector::new(dialer, vec![addr], hello)
}

#[tokio::test]
async fn accepted_connection_reaches_the_gateway_with_its_hello_and_token() {
    let _trace = trace_init();
    let (mut accept, addr) = serve(None);
    let connected = connector(addr, "demo").connect(&[]).await.unwrap();
    let conn = tokio::time::timeout(LIMIT, accept.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.info.hello.device_id, "device-1");
    assert_eq!(conn.info.hello.sdk_name, "pike-rust");
    assert_eq!(conn.info.transport, "tcp");
    assert_eq!(conn.info.connection_token, connected.hello.connection_token);
    assert_eq!(connected.hello.connection_token.len(), 32);
    // The server advertised the channel's heartbeat defaults.
    assert_eq!(connected.hello.heartbeat_interval_ms, 60_000);
    assert_eq!(connected.transport, "tcp");
}

#[tokio::test]
async fn refused_hello_gets_the_gateways_code() {
    let _trace = trace_init();
    let (_accept, addr) = serve(None);
    let error = connector(addr, "other").connect(&[]).await.unwrap_err();
    assert!(
        matches!(
            error,
            ConnectError::Handshake(HandshakeError::Rejected {
                code: ErrorCode::UnknownApp,
                ..
            })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn connection_over_the_limit_is_told_overloaded() {
    let _trace = trace_init();
    let (mut accept, addr) = serve(Some(1));
    let _first = connector(addr, "demo").connect(&[]).await.unwrap();
    let _conn = tokio::time::timeout(LIMIT, accept.next()).await.unwrap();
    let error = connector(addr, "demo").connect(&[]).await.unwrap_err();
    assert!(
        matches!(
            error,
            ConnectError::Handshake(HandshakeError::Rejected {
                code: ErrorCode::Overloaded,
                ..
            })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn advised_endpoints_replace_the_configured_ones() {
    let _trace = trace_init();
    let (_accept, addr) = serve(None);
    // Configured: a closed port; advised by the server: the live one.
    let closed = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let connector = connector(dead, "demo");
    assert!(connector.connect(&[]).await.is_err());
    let connected = connector.connect(&[addr.to_string()]).await.unwrap();
    assert_eq!(connected.peer, Some(addr));
}

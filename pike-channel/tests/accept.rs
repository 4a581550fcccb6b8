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
    // With the default advice of `AcceptOptions`: come back in 1 to 10 s.
    assert!(
        matches!(
            &error,
            ConnectError::Handshake(HandshakeError::Rejected {
                code: ErrorCode::Overloaded,
                reconnect: Some(advice),
                ..
            }) if (advice.min_delay_ms, advice.max_delay_ms) == (1_000, 10_000)
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

// === Admission: refusal before any handshake work, the handshake bound ===

mod admission {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use futures_util::StreamExt as _;
    use pike_channel::proto::tunnel::{Close, ReconnectAdvice};
    use pike_channel::test_util::{TestTls, Wire, connector as wire_connector};
    use pike_channel::tntunnel::{ClientSecurity, FrameCodec, FrameType, TunnelConfig};
    use pike_channel::tunnelkit::{AcceptorHandle, QuicConfig, QuicListener};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;
    use tokio_util::codec::FramedRead;

    use super::*;

    fn advice() -> ReconnectAdvice {
        ReconnectAdvice {
            min_delay_ms: 2_000,
            max_delay_ms: 7_000,
            endpoints: Vec::new(),
        }
    }

    /// An accept loop over `listener` with these limits.
    fn serve_with<L: Listener>(
        listener: L,
        security: ServerSecurity,
        max_connections: Option<usize>,
        max_handshakes: Option<usize>,
        tunnel: TunnelConfig,
    ) -> (AcceptLoop, AcceptorHandle) {
        let mut config = AcceptorConfig::default();
        config
            .max_connections(max_connections)
            .max_handshakes(max_handshakes);
        let acceptor = Acceptor::new(listener, &config).unwrap();
        let handle = acceptor.handle();
        let options = AcceptOptions::new(security)
            .tunnel(Arc::new(tunnel))
            .overload_advice(advice());
        let accept = spawn_accept_loop(acceptor, options, |_: &ClientHello, _: &_| {
            HelloDecision::accept()
        });
        (accept, handle)
    }

    fn tcp_listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    /// Waits until `done` holds (re-checked every few milliseconds), at most
    /// [`LIMIT`].
    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let wait = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        if tokio::time::timeout(LIMIT, wait).await.is_err() {
            panic!("timed out waiting for {what}");
        }
    }

    /// A stream that counts the bytes read from it.
    struct Counting {
        inner: TcpStream,
        read: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let before = buf.filled().len();
            let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
            let n = buf.filled().len() - before;
            self.read.fetch_add(n, Ordering::SeqCst);
            poll
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn over_limit_plain_client_gets_overloaded_with_advice_without_sending_a_hello() {
        let _trace = trace_init();
        let (listener, addr) = tcp_listener();
        let (mut accept, handle) = serve_with(
            listener,
            ServerSecurity::Plain,
            Some(1),
            None,
            TunnelConfig::default(),
        );
        let _first = connector(addr, "demo").connect(&[]).await.unwrap();
        let _conn = tokio::time::timeout(LIMIT, accept.next()).await.unwrap();
        // A client that sends nothing at all still reads the refusal: the
        // server does not wait for (or decode) a hello.
        let raw = TcpStream::connect(addr).await.unwrap();
        let mut frames = FramedRead::new(raw, FrameCodec::new());
        let frame = tokio::time::timeout(LIMIT, frames.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(frame.ty, FrameType::CLOSE);
        let close: Close = frame.decode().unwrap();
        assert_eq!(close.code(), ErrorCode::Overloaded);
        assert_eq!(close.reconnect, Some(advice()));
        assert!(
            tokio::time::timeout(LIMIT, frames.next())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(handle.limits().over_limit_total(), 1);
    }

    #[tokio::test]
    async fn over_limit_tls_client_is_closed_without_a_tls_handshake() {
        let _trace = trace_init();
        let tls = TestTls::new().await;
        let (listener, addr) = tcp_listener();
        let (mut accept, handle) = serve_with(
            listener,
            ServerSecurity::Tls(tls.server.clone()),
            Some(1),
            None,
            TunnelConfig::default(),
        );
        let _first = wire_connector(Wire::Tls, addr, &tls, "first")
            .connect(&[])
            .await
            .unwrap();
        let _conn = tokio::time::timeout(LIMIT, accept.next()).await.unwrap();
        // A real TLS client over the limit: its handshake fails, and the
        // server sent it nothing (no ServerHello, no alert).
        let read = Arc::new(AtomicUsize::new(0));
        let raw = Counting {
            inner: TcpStream::connect(addr).await.unwrap(),
            read: Arc::clone(&read),
        };
        let secured = tokio::time::timeout(
            LIMIT,
            ClientSecurity::Tls(tls.client()).secure(raw, "localhost"),
        )
        .await
        .unwrap();
        assert!(
            secured.is_err(),
            "the TLS handshake completed over the limit"
        );
        assert_eq!(read.load(Ordering::SeqCst), 0, "the server sent TLS bytes");
        assert_eq!(handle.limits().over_limit_total(), 1);
        // The admitted connection is still served; a freed slot admits again.
        drop(_conn);
        drop(_first);
        eventually("the slot to free", || handle.available_slots() == Some(1)).await;
        wire_connector(Wire::Tls, addr, &tls, "third")
            .connect(&[])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn over_limit_quic_client_is_refused_before_its_handshake() {
        let _trace = trace_init();
        let tls = TestTls::new().await;
        let listener = QuicListener::bind(
            "127.0.0.1:0".parse().unwrap(),
            tls.server.rustls_config(),
            &QuicConfig::default(),
        )
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut accept, handle) = serve_with(
            listener,
            ServerSecurity::Plain,
            Some(1),
            None,
            TunnelConfig::default(),
        );
        let _first = wire_connector(Wire::Quic, addr, &tls, "first")
            .connect(&[])
            .await
            .unwrap();
        let _conn = tokio::time::timeout(LIMIT, accept.next()).await.unwrap();
        // The QUIC listener refuses it before the QUIC (TLS) handshake.
        let Err(error) = wire_connector(Wire::Quic, addr, &tls, "second")
            .connect(&[])
            .await
        else {
            panic!("connected over the limit");
        };
        assert!(
            matches!(
                &error,
                ConnectError::Dial(dial)
                    if dial.failures().iter().all(|f| f.kind() == std::io::ErrorKind::ConnectionRefused)
            ),
            "{error:?}"
        );
        assert_eq!(handle.limits().over_limit_total(), 1);
        assert_eq!(handle.open_connections(), 1);
    }

    /// Half-open TLS clients (connected, silent) take every handshake slot;
    /// the others wait in the backlog. Once they go, a well-behaved client
    /// gets in, and the handshakes in progress never exceeded the bound.
    #[tokio::test]
    async fn half_open_tls_clients_never_exceed_the_handshake_bound() {
        let _trace = trace_init();
        let tls = TestTls::new().await;
        let (listener, addr) = tcp_listener();
        let (mut accept, handle) = serve_with(
            listener,
            ServerSecurity::Tls(tls.server.clone()),
            None,
            Some(2),
            TunnelConfig::default(),
        );
        let mut half_open = Vec::new();
        for _ in 0..6 {
            half_open.push(TcpStream::connect(addr).await.unwrap());
        }
        eventually("two handshakes in progress", || {
            handle.limits().handshakes_in_progress() == 2
        })
        .await;
        let good = tokio::spawn(async move {
            wire_connector(Wire::Tls, addr, &tls, "good")
                .connect(&[])
                .await
        });
        drop(half_open);
        let connected = tokio::time::timeout(LIMIT, good).await.unwrap().unwrap();
        assert!(connected.is_ok(), "{:?}", connected.err());
        let conn = tokio::time::timeout(LIMIT, accept.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conn.info.hello.device_id, "good");
        assert_eq!(handle.limits().peak_handshakes(), 2);
        // The established connection gave its handshake slot back.
        eventually("no handshake in progress", || {
            handle.limits().handshakes_in_progress() == 0
        })
        .await;
    }

    /// Without any client leaving, the handshake timeout (TLS and hello
    /// together) frees the slots of silent clients.
    #[tokio::test]
    async fn the_handshake_timeout_frees_slots_held_by_silent_clients() {
        let _trace = trace_init();
        let tls = TestTls::new().await;
        let (listener, addr) = tcp_listener();
        let mut tunnel = TunnelConfig::default();
        tunnel.handshake_timeout(Duration::from_millis(300));
        let (mut accept, handle) = serve_with(
            listener,
            ServerSecurity::Tls(tls.server.clone()),
            None,
            Some(1),
            tunnel,
        );
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        eventually("one handshake in progress", || {
            handle.limits().handshakes_in_progress() == 1
        })
        .await;
        wire_connector(Wire::Tls, addr, &tls, "good")
            .connect(&[])
            .await
            .unwrap();
        let conn = tokio::time::timeout(LIMIT, accept.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conn.info.hello.device_id, "good");
        assert_eq!(handle.limits().peak_handshakes(), 1);
        drop(silent);
    }
}

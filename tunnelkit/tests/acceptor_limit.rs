//! The acceptor's connection limit, over real TCP and QUIC loopback connections.
#![cfg(any(feature = "tcp", feature = "quic"))]

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use common::{trace_init, within};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tunnelkit::{AcceptedConn, Acceptor, AcceptorConfig, Incoming, Listener};

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn limited(max: usize) -> AcceptorConfig {
    let mut config = AcceptorConfig::default();
    config.max_connections(Some(max));
    config
}

fn expect_accepted<C>(incoming: Incoming<C>) -> AcceptedConn<C> {
    match incoming {
        Incoming::Accepted(conn) => conn,
        Incoming::OverLimit(conn) => panic!("{} unexpectedly over the limit", conn.peer_addr()),
        _ => panic!("unknown variant"),
    }
}

fn expect_over_limit<C>(incoming: Incoming<C>) -> AcceptedConn<C> {
    match incoming {
        Incoming::OverLimit(conn) => conn,
        Incoming::Accepted(conn) => panic!("{} unexpectedly admitted", conn.peer_addr()),
        _ => panic!("unknown variant"),
    }
}

/// What the upper layer does with an over-limit connection: say so, then drop it.
async fn reject<C: AsyncRead + AsyncWrite + Unpin>(mut conn: AcceptedConn<C>) {
    assert!(!conn.guard().holds_slot());
    conn.write_all(b"overloaded").await.unwrap();
    conn.shutdown().await.unwrap();
}

#[cfg(feature = "tcp")]
#[tokio::test]
async fn tcp_over_limit_connection_is_reported_and_slot_frees_on_drop() {
    use tokio::net::TcpStream;
    use tunnelkit::TcpListener;

    let _trace = trace_init();
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut acceptor = Acceptor::new(listener, &limited(1)).unwrap();
    let handle = acceptor.handle();
    assert_eq!(handle.available_slots(), Some(1));

    let _first_client = within("connect 1", TcpStream::connect(addr)).await.unwrap();
    let first = expect_accepted(within("accept 1", acceptor.accept()).await.unwrap());
    assert!(first.guard().holds_slot());
    assert!(first.get_ref().nodelay().unwrap());
    assert_eq!(handle.available_slots(), Some(0));

    // Over the limit: accepted (not left hanging in the backlog) and handed over as such.
    let mut second_client = within("connect 2", TcpStream::connect(addr)).await.unwrap();
    let second = within("accept 2", acceptor.accept()).await.unwrap();
    assert!(second.is_over_limit());
    assert_eq!(second.peer_addr(), second_client.local_addr().unwrap());
    reject(expect_over_limit(second)).await;
    let mut told = Vec::new();
    within("read rejection", second_client.read_to_end(&mut told))
        .await
        .unwrap();
    assert_eq!(told, b"overloaded");
    assert_eq!(handle.available_slots(), Some(0), "rejection holds no slot");

    // Dropping the admitted connection frees its slot for the next client.
    drop(first);
    assert_eq!(handle.available_slots(), Some(1));
    let _third_client = within("connect 3", TcpStream::connect(addr)).await.unwrap();
    let third = expect_accepted(within("accept 3", acceptor.accept()).await.unwrap());
    assert!(third.guard().holds_slot());

    // The guard can travel separately from the stream and still holds the slot.
    let (_stream, _peer, guard) = third.into_parts();
    assert_eq!(handle.available_slots(), Some(0));
    drop(guard);
    assert_eq!(handle.available_slots(), Some(1));
}

#[cfg(feature = "quic")]
#[tokio::test]
async fn quic_over_limit_connection_is_refused_before_its_handshake_and_slot_frees_on_drop() {
    use common::tls;
    use tunnelkit::{QuicConfig, QuicListener, QuicTransport, Transport as _};

    let _trace = trace_init();
    let tls = tls();
    let listener = QuicListener::bind(loopback(), tls.server, &QuicConfig::default()).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut acceptor = Acceptor::new(listener, &limited(1)).unwrap();
    let handle = acceptor.handle();
    let transport = QuicTransport::new(tls.client, "localhost", &QuicConfig::default()).unwrap();

    let mut first_client = within("connect 1", transport.connect(addr)).await.unwrap();
    first_client.write_all(b"hello").await.unwrap();
    let first = expect_accepted(within("accept 1", acceptor.accept()).await.unwrap());
    assert_eq!(handle.available_slots(), Some(0));

    // Over the limit, QUIC refuses in the listener, before the handshake: the client gets
    // a prompt CONNECTION_REFUSED and the acceptor hands nothing out.
    let refused = within("connect 2", transport.connect(addr)).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    assert_eq!(handle.limits().over_limit_total(), 1);
    assert_eq!(handle.open_connections(), 1);

    drop(first);
    assert_eq!(handle.available_slots(), Some(1));
    let mut third_client = within("connect 3", transport.connect(addr)).await.unwrap();
    third_client.write_all(b"hello").await.unwrap();
    let mut third = expect_accepted(within("accept 3", acceptor.accept()).await.unwrap());
    let mut hello = [0u8; 5];
    within("read hello", third.read_exact(&mut hello))
        .await
        .unwrap();
    assert_eq!(&hello, b"hello");
}

#[cfg(feature = "tcp")]
#[tokio::test]
async fn without_a_limit_every_connection_is_admitted() {
    use tokio::net::TcpStream;
    use tunnelkit::TcpListener;

    let _trace = trace_init();
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut acceptor = Acceptor::new(listener, &AcceptorConfig::default()).unwrap();
    let handle = acceptor.handle();
    assert_eq!(handle.available_slots(), None);
    let mut kept = Vec::new();
    for i in 0..20 {
        let client = within("connect", TcpStream::connect(addr)).await.unwrap();
        let conn = expect_accepted(within("accept", acceptor.accept()).await.unwrap());
        assert!(!conn.guard().holds_slot());
        kept.push((client, conn));
        assert_eq!(handle.open_connections(), i + 1);
    }
}

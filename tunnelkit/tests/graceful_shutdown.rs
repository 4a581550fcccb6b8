//! Graceful shutdown of an acceptor: stop accepting, let connections finish, wait for them.
#![cfg(any(feature = "tcp", feature = "quic"))]

mod common;

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
};

use common::{trace_init, within};
use futures_util::FutureExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tunnelkit::{AcceptError, Acceptor, AcceptorConfig, Incoming, Listener};

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Runs an echo server until shutdown; returns how many connections it admitted.
async fn serve_echo<L: Listener>(mut acceptor: Acceptor<L>) -> usize {
    let mut admitted = 0;
    // Bounded: the tests make only a handful of connections.
    for _ in 0..100 {
        match acceptor.accept().await {
            Ok(Incoming::Accepted(mut conn)) => {
                admitted += 1;
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = conn.read(&mut buf).await {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Ok(_) => panic!("no limit configured"),
            Err(AcceptError::ShutDown) => return admitted,
            Err(other) => panic!("unexpected accept error: {other}"),
        }
    }
    panic!("accept loop did not end");
}

#[cfg(feature = "tcp")]
#[tokio::test]
async fn tcp_shutdown_stops_accepting_keeps_connections_and_waits_for_them() {
    use tokio::net::TcpStream;
    use tunnelkit::TcpListener;

    let _trace = trace_init();
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new(listener, &AcceptorConfig::default()).unwrap();
    let handle = acceptor.handle();
    let server = tokio::spawn(serve_echo(acceptor));

    let mut client = within("connect", TcpStream::connect(addr)).await.unwrap();
    let mut buf = [0u8; 4];
    client.write_all(b"ping").await.unwrap();
    within("echo", client.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping");

    // Shutdown wakes the pending accept and ends the loop.
    assert!(!handle.is_shut_down());
    handle.shutdown();
    assert!(handle.is_shut_down());
    assert_eq!(within("accept loop", server).await.unwrap(), 1);

    // The listening socket is closed: new clients are refused, not queued.
    let refused = within("connect after shutdown", TcpStream::connect(addr)).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );

    // The existing connection still works, and keeps the acceptor from being drained.
    client.write_all(b"pong").await.unwrap();
    within("echo after shutdown", client.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"pong");
    assert_eq!(handle.open_connections(), 1);
    assert!(handle.wait_drained().now_or_never().is_none());

    // Closing the client ends the echo task, which drops the connection: drained.
    drop(client);
    within("drain", handle.wait_drained()).await;
    assert_eq!(handle.open_connections(), 0);
}

#[cfg(feature = "quic")]
#[tokio::test]
async fn quic_shutdown_refuses_new_connections_and_waits_for_existing_ones() {
    use common::tls;
    use tunnelkit::{QuicConfig, QuicListener, QuicTransport, Transport as _};

    let _trace = trace_init();
    let tls = tls();
    let listener = QuicListener::bind(loopback(), tls.server, &QuicConfig::default()).unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new(listener, &AcceptorConfig::default()).unwrap();
    let handle = acceptor.handle();
    let server = tokio::spawn(serve_echo(acceptor));
    let transport = QuicTransport::new(tls.client, "localhost", &QuicConfig::default()).unwrap();

    let mut client = within("connect", transport.connect(addr)).await.unwrap();
    let mut buf = [0u8; 4];
    client.write_all(b"ping").await.unwrap();
    within("echo", client.read_exact(&mut buf)).await.unwrap();

    handle.shutdown();
    assert_eq!(within("accept loop", server).await.unwrap(), 1);

    // The server configuration is gone: a new handshake is refused promptly.
    let refused = within("connect after shutdown", transport.connect(addr)).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );

    client.write_all(b"pong").await.unwrap();
    within("echo after shutdown", client.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"pong");
    assert!(handle.wait_drained().now_or_never().is_none());

    drop(client);
    within("drain", handle.wait_drained()).await;
    assert_eq!(handle.open_connections(), 0);
}

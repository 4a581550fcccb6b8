//! TCP transport and listener over real loopback sockets.
#![cfg(feature = "tcp")]

mod common;

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use common::{trace_init, within};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tunnelkit::{Listener as _, TcpConfig, TcpListener, TcpTransport, Transport as _};

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

#[tokio::test]
async fn round_trip_with_nodelay_on_both_ends() {
    let _trace = trace_init();
    let mut listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();

    let server = tokio::spawn(async move {
        let (mut stream, peer) = listener.accept().await.unwrap();
        assert!(
            stream.nodelay().unwrap(),
            "accepted stream must have TCP_NODELAY"
        );
        assert_eq!(peer, stream.peer_addr().unwrap());
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        stream.write_all(b"world").await.unwrap();
        stream.shutdown().await.unwrap();
    });

    let transport = TcpTransport::default();
    let mut client = within("connect", transport.connect(addr)).await.unwrap();
    assert!(
        client.nodelay().unwrap(),
        "dialed stream must have TCP_NODELAY"
    );
    client.write_all(b"hello").await.unwrap();
    let mut reply = Vec::new();
    within("read reply", client.read_to_end(&mut reply))
        .await
        .unwrap();
    assert_eq!(reply, b"world");
    within("server task", server).await.unwrap();
}

#[tokio::test]
async fn source_addresses_are_used_round_robin() {
    let _trace = trace_init();
    let mut listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let sources = [
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
    ];
    let mut config = TcpConfig::default();
    config
        .source_ips(sources)
        .connect_timeout(Some(Duration::from_secs(5)));
    let transport = TcpTransport::new(config).unwrap();

    let mut seen = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = within("connect", transport.connect(addr)).await.unwrap();
        let (_stream, peer) = within("accept", listener.accept()).await.unwrap();
        assert_eq!(client.local_addr().unwrap().ip(), peer.ip());
        seen.push(peer.ip());
        clients.push(client);
    }
    assert_eq!(seen, [sources[0], sources[1], sources[0], sources[1]]);
}

#[tokio::test]
async fn source_of_the_wrong_family_is_an_error() {
    let _trace = trace_init();
    let mut config = TcpConfig::default();
    config.source_ips([IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
    let transport = TcpTransport::new(config).unwrap();
    let err = transport
        .connect("[::1]:9".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_refused() {
    let _trace = trace_init();
    let closed = {
        let listener = TcpListener::bind(loopback()).unwrap();
        listener.local_addr().unwrap()
    };
    let err = within("connect", TcpTransport::default().connect(closed))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn binding_a_used_port_reports_the_address() {
    let _trace = trace_init();
    let first = TcpListener::bind(loopback()).unwrap();
    let addr = first.local_addr().unwrap();
    let err = TcpListener::bind(addr).unwrap_err();
    match err {
        tunnelkit::ListenError::Bind {
            addr: reported,
            source,
        } => {
            assert_eq!(reported, addr);
            assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
        }
        other => panic!("unexpected error {other:?}"),
    }
}

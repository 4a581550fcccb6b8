//! QUIC transport and listener over real loopback sockets.
#![cfg(feature = "quic")]

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use common::{tls, trace_init, within};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tunnelkit::{
    ConfigError, Listener as _, QuicConfig, QuicListener, QuicTransport, Transport as _,
};

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

#[tokio::test]
async fn round_trip_over_one_bidirectional_stream() {
    let _trace = trace_init();
    let tls = tls();
    let mut listener = QuicListener::bind(loopback(), tls.server, &QuicConfig::default()).unwrap();
    let addr = listener.local_addr().unwrap();

    let server = tokio::spawn(async move {
        let (mut stream, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, stream.remote_address());
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        stream.write_all(b"world").await.unwrap();
        stream.shutdown().await.unwrap();
        // Keep the listener (and its endpoint) until the client has read everything.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    });

    let transport = QuicTransport::new(tls.client, "localhost", &QuicConfig::default()).unwrap();
    let mut client = within("connect", transport.connect(addr)).await.unwrap();
    // The client writes first: the server only sees the stream once data arrives.
    client.write_all(b"hello").await.unwrap();
    let mut reply = Vec::new();
    within("read reply", client.read_to_end(&mut reply))
        .await
        .unwrap();
    assert_eq!(reply, b"world");
    client.shutdown().await.unwrap();
    within("server task", server).await.unwrap();
}

#[tokio::test]
async fn one_endpoint_is_shared_by_all_connections_of_a_transport() {
    let _trace = trace_init();
    let tls = tls();
    let mut listener = QuicListener::bind(loopback(), tls.server, &QuicConfig::default()).unwrap();
    let addr = listener.local_addr().unwrap();
    let transport = QuicTransport::new(tls.client, "localhost", &QuicConfig::default()).unwrap();

    let mut peers = Vec::new();
    let mut keep = Vec::new();
    for _ in 0..3 {
        let mut client = within("connect", transport.connect(addr)).await.unwrap();
        client.write_all(b"x").await.unwrap();
        let (stream, peer) = within("accept", listener.accept()).await.unwrap();
        peers.push(peer);
        keep.push((client, stream));
    }
    assert!(
        peers.iter().all(|peer| *peer == peers[0]),
        "all connections come from one UDP socket: {peers:?}"
    );
}

#[tokio::test]
async fn data_written_before_drop_is_delivered() {
    let _trace = trace_init();
    let tls = tls();
    let mut listener = QuicListener::bind(loopback(), tls.server, &QuicConfig::default()).unwrap();
    let addr = listener.local_addr().unwrap();
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();

    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 1];
        stream.read_exact(&mut hello).await.unwrap();
        stream.write_all(&payload).await.unwrap();
        // Dropped right after writing: the linger keeps the connection until it is acked.
        drop(stream);
        listener
    });

    let transport = QuicTransport::new(tls.client, "localhost", &QuicConfig::default()).unwrap();
    let mut client = within("connect", transport.connect(addr)).await.unwrap();
    client.write_all(b"!").await.unwrap();
    let mut received = Vec::new();
    within("read to end", client.read_to_end(&mut received))
        .await
        .unwrap();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected);
    drop(within("server task", server).await.unwrap());
}

#[tokio::test]
async fn wrong_server_name_fails_the_handshake() {
    let _trace = trace_init();
    let tls = tls();
    let listener = QuicListener::bind(loopback(), tls.server, &QuicConfig::default()).unwrap();
    let addr = listener.local_addr().unwrap();
    let transport = QuicTransport::new(tls.client, "pike.example", &QuicConfig::default()).unwrap();
    let result = within("connect", transport.connect(addr)).await;
    assert!(result.is_err(), "certificate is for localhost only");
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let _trace = trace_init();
    let tls = tls();
    let mut config = QuicConfig::default();
    config.handshake_timeout(Duration::from_millis(200));
    let mut listener = QuicListener::bind(loopback(), tls.server, &config).unwrap();
    let addr = listener.local_addr().unwrap();
    let transport = QuicTransport::new(tls.client, "localhost", &QuicConfig::default()).unwrap();

    // Connects but never writes: the server never sees its stream.
    let silent = within("connect silent", transport.connect(addr))
        .await
        .unwrap();
    let mut talker = within("connect talker", transport.connect(addr))
        .await
        .unwrap();
    talker.write_all(b"hi").await.unwrap();

    let (mut stream, _) = within("accept", listener.accept()).await.unwrap();
    let mut buf = [0u8; 2];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hi");

    // The listener keeps driving handshakes only inside `accept`; poll it while waiting.
    let closed = tokio::select! {
        reason = silent.connection().closed() => reason,
        _ = listener.accept() => panic!("the silent client must not be accepted"),
    };
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "unexpected close: {closed:?}"
    );
}

#[tokio::test]
async fn invalid_settings_are_rejected_at_construction() {
    let _trace = trace_init();
    let tls = tls();
    assert!(matches!(
        QuicTransport::new(tls.client.clone(), "not a name!", &QuicConfig::default()),
        Err(ConfigError::InvalidServerName(_))
    ));
    let mut config = QuicConfig::default();
    config.keep_alive_interval(Some(Duration::from_secs(3600)));
    assert!(matches!(
        QuicTransport::new(tls.client, "localhost", &config),
        Err(ConfigError::OutOfBounds {
            name: "keep_alive_interval",
            ..
        })
    ));
    assert!(matches!(
        QuicListener::bind(loopback(), tls.server, &config),
        Err(tunnelkit::ListenError::Config(_))
    ));
}

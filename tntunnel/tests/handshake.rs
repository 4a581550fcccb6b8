//! The handshake over real loopback TCP, and the bad-input catalogue: each
//! bad first contact gets the exact error on the server and a clear answer
//! on the wire, never a panic or a hang.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tntunnel::proto::tunnel::{ClientHello, Close, Compression, ErrorCode, ServerHello};
use tntunnel::{Frame, FrameCodec, FrameError, FrameType, HandshakeError, TunnelConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::codec::{Decoder, Encoder};

const LIMIT: Duration = Duration::from_secs(10);

/// A one-connection server: runs the handshake and accepts every hello.
async fn server() -> (std::net::SocketAddr, JoinHandle<Result<(), HandshakeError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (io, _) = listener.accept().await?;
        let incoming = tntunnel::accept(io, &TunnelConfig::default()).await?;
        let token = tntunnel::new_connection_token().unwrap();
        let mut framed = incoming
            .accept(ServerHello {
                connection_token: token,
                heartbeat_interval_ms: 30_000,
                ..Default::default()
            })
            .await?;
        // Echo application frames until the client leaves.
        while let Some(frame) = framed.next().await {
            framed.send(frame?).await?;
        }
        Ok(())
    });
    (addr, task)
}

/// Sends raw bytes, then reads everything the server answers until it closes.
async fn raw_exchange(bytes: &[u8], half_close: bool) -> (Result<(), HandshakeError>, Vec<u8>) {
    let (addr, task) = server().await;
    let mut io = TcpStream::connect(addr).await.unwrap();
    io.write_all(bytes).await.unwrap();
    if half_close {
        io.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    timeout(LIMIT, io.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let result = timeout(LIMIT, task).await.unwrap().unwrap();
    (result, answer)
}

fn close_frame(answer: &[u8]) -> Close {
    let mut buf = bytes::BytesMut::from(answer);
    let frame = FrameCodec::new()
        .decode(&mut buf)
        .unwrap()
        .expect("a whole frame");
    assert_eq!(frame.ty, FrameType::CLOSE);
    frame.decode().unwrap()
}

#[tokio::test]
async fn handshake_and_frames_over_tcp_with_compression() {
    let (addr, task) = server().await;
    let io = TcpStream::connect(addr).await.unwrap();
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: "device-1".into(),
        sdk_name: "pike-rust".into(),
        ..Default::default()
    };
    let (mut framed, server_hello) = tntunnel::connect(io, hello, &TunnelConfig::default())
        .await
        .unwrap();
    assert_eq!(server_hello.version, tntunnel::PROTOCOL_VERSION);
    assert_eq!(server_hello.connection_token.len(), 32);
    assert_eq!(server_hello.heartbeat_interval_ms, 30_000);
    assert_eq!(server_hello.compression, Compression::Lz4 as i32);
    assert_eq!(framed.codec().compression(), Compression::Lz4);

    let big = Frame::new(FrameType::app(0x18), "downlink ".repeat(1000));
    let small = Frame::new(FrameType::app(0x28), Vec::new());
    framed.send(big.clone()).await.unwrap();
    framed.send(small.clone()).await.unwrap();
    assert_eq!(framed.next().await.unwrap().unwrap(), big);
    assert_eq!(framed.next().await.unwrap().unwrap(), small);
    drop(framed);
    timeout(LIMIT, task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn compression_off_when_client_offers_none() {
    let (addr, task) = server().await;
    let io = TcpStream::connect(addr).await.unwrap();
    let mut config = TunnelConfig::default();
    config.compressions(Vec::new());
    let (mut framed, server_hello) = tntunnel::connect(io, ClientHello::default(), &config)
        .await
        .unwrap();
    assert_eq!(server_hello.compression, Compression::None as i32);
    let big = Frame::new(FrameType::app(0x18), "x".repeat(5000));
    framed.send(big.clone()).await.unwrap();
    assert_eq!(framed.next().await.unwrap().unwrap(), big);
    drop(framed);
    timeout(LIMIT, task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn truncated_header() {
    let (result, answer) = raw_exchange(&[0x01], true).await;
    assert!(
        matches!(
            result,
            Err(HandshakeError::Frame(FrameError::Truncated { buffered: 1 }))
        ),
        "{result:?}"
    );
    assert_eq!(close_frame(&answer).code, ErrorCode::MalformedFrame as i32);
}

#[tokio::test]
async fn truncated_hello_body() {
    let (result, answer) = raw_exchange(&[0x01, 0x10, 0x08, 0x01], true).await;
    assert!(
        matches!(
            result,
            Err(HandshakeError::Frame(FrameError::Truncated { buffered: 2 }))
        ),
        "{result:?}"
    );
    assert_eq!(close_frame(&answer).code, ErrorCode::MalformedFrame as i32);
}

#[tokio::test]
async fn oversize_length() {
    let (result, answer) = raw_exchange(&[0x01, 0xff, 0xff, 0xff, 0x7f], false).await;
    assert!(
        matches!(
            result,
            Err(HandshakeError::Frame(FrameError::FrameTooLarge {
                len: 268_435_455,
                max: 1_048_576
            }))
        ),
        "{result:?}"
    );
    let close = close_frame(&answer);
    assert_eq!(close.code, ErrorCode::FrameTooLarge as i32);
    assert!(close.message.contains("268435455"), "{}", close.message);
}

#[tokio::test]
async fn unknown_frame_type() {
    let (result, answer) = raw_exchange(&[0x05, 0x00], false).await;
    assert!(
        matches!(
            result,
            Err(HandshakeError::Frame(FrameError::UnknownFrameType(0x05)))
        ),
        "{result:?}"
    );
    assert_eq!(
        close_frame(&answer).code,
        ErrorCode::UnknownFrameType as i32
    );
}

#[tokio::test]
async fn application_frame_before_hello() {
    let (result, answer) = raw_exchange(&[0x18, 0x02, 0x08, 0x01], false).await;
    assert!(
        matches!(result, Err(HandshakeError::UnexpectedFrame { expected: FrameType::CLIENT_HELLO, got }) if got == FrameType::app(0x18)),
        "{result:?}"
    );
    assert_eq!(close_frame(&answer).code, ErrorCode::Protocol as i32);
}

#[tokio::test]
async fn garbage_before_hello() {
    let (result, answer) = raw_exchange(b"\xff\xfe\xfd hello?", false).await;
    assert!(
        matches!(
            result,
            Err(HandshakeError::Frame(FrameError::ReservedFlag(0xff)))
        ),
        "{result:?}"
    );
    assert_eq!(close_frame(&answer).code, ErrorCode::MalformedFrame as i32);
}

#[tokio::test]
async fn malformed_hello_body() {
    let (result, answer) = raw_exchange(&[0x01, 0x03, 0xff, 0xff, 0xff], false).await;
    assert!(
        matches!(
            result,
            Err(HandshakeError::Frame(FrameError::MalformedBody { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(close_frame(&answer).code, ErrorCode::MalformedFrame as i32);
}

#[tokio::test]
async fn wrong_version() {
    let (addr, task) = server().await;
    let io = TcpStream::connect(addr).await.unwrap();
    let hello = ClientHello {
        versions: vec![2, 99],
        ..Default::default()
    };
    match tntunnel::connect(io, hello, &TunnelConfig::default()).await {
        Err(HandshakeError::Rejected { code, message, .. }) => {
            assert_eq!(code, ErrorCode::UnsupportedVersion);
            assert!(message.contains("[2, 99]"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let result = timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(
        matches!(result, Err(HandshakeError::UnsupportedVersion { offered, .. }) if offered == [2, 99])
    );
}

#[tokio::test]
async fn oversized_device_id_is_refused_with_invalid_argument() {
    let (addr, task) = server().await;
    let io = TcpStream::connect(addr).await.unwrap();
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: "d".repeat(tntunnel::MAX_DEVICE_ID_LEN + 1),
        ..Default::default()
    };
    match tntunnel::connect(io, hello, &TunnelConfig::default()).await {
        Err(HandshakeError::Rejected { code, message, .. }) => {
            assert_eq!(code, ErrorCode::InvalidArgument);
            assert!(message.contains("device_id"), "{message}");
            assert!(message.contains("128"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let result = timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(
        matches!(
            result,
            Err(HandshakeError::InvalidHello {
                field: "device_id",
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn http_request_to_the_pike_port_gets_a_400() {
    let (result, answer) =
        raw_exchange(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
    assert!(
        matches!(result, Err(HandshakeError::PeerSpeaksHttp)),
        "{result:?}"
    );
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("not HTTP\r\n"));
}

#[tokio::test]
async fn pike_client_to_an_http_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut io, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let _ = io.read(&mut buf).await;
        let _ = io
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let io = TcpStream::connect(addr).await.unwrap();
    let result = tntunnel::connect(io, ClientHello::default(), &TunnelConfig::default()).await;
    assert!(matches!(
        result,
        Err(HandshakeError::PeerSpeaksTls | HandshakeError::PeerSpeaksHttp)
    ));
    assert!(
        matches!(result, Err(HandshakeError::PeerSpeaksHttp)),
        "{result:?}"
    );
}

#[tokio::test]
async fn tls_client_hello_to_the_plain_port() {
    // The first bytes of a real TLS 1.3 ClientHello record.
    let (result, answer) = raw_exchange(
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
        false,
    )
    .await;
    assert!(
        matches!(result, Err(HandshakeError::PeerSpeaksTls)),
        "{result:?}"
    );
    // No Pike frame is sent to a TLS client: it could not read it anyway.
    assert!(answer.is_empty());
}

#[tokio::test]
async fn plain_client_to_a_tls_speaking_server() {
    // A server that answers anything with a TLS alert record, as a TLS
    // listener does when it gets a plain-text hello.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut io, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let _ = io.read(&mut buf).await;
        let _ = io
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])
            .await;
    });
    let io = TcpStream::connect(addr).await.unwrap();
    let result = tntunnel::connect(io, ClientHello::default(), &TunnelConfig::default()).await;
    assert!(
        matches!(result, Err(HandshakeError::PeerSpeaksTls)),
        "{result:?}"
    );
}

#[tokio::test]
async fn peer_closing_before_the_hello() {
    let (result, answer) = raw_exchange(&[], true).await;
    assert!(matches!(result, Err(HandshakeError::Closed)), "{result:?}");
    assert!(answer.is_empty());
}

/// What a client that sends `bytes` (nothing, or part of a hello) and then
/// waits gets from the server: the server's result, when it came (virtual
/// time since the start) and every byte it wrote.
async fn stalled_client(bytes: &[u8]) -> (Result<(), HandshakeError>, Duration, Vec<u8>) {
    let (mut client, server) = tokio::io::duplex(1024);
    let start = tokio::time::Instant::now();
    let mut config = TunnelConfig::default();
    config.handshake_timeout(Duration::from_secs(4));
    let accept = tokio::spawn(async move { tntunnel::accept(server, &config).await.map(|_| ()) });
    client.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    let result = accept.await.unwrap();
    (result, start.elapsed(), answer)
}

#[tokio::test(start_paused = true)]
async fn silent_and_partial_hellos_are_closed_the_same_way() {
    let (result, after, answer) = stalled_client(&[]).await;
    assert!(matches!(result, Err(HandshakeError::Timeout)), "{result:?}");
    assert_eq!(after, Duration::from_secs(4));
    let silent = close_frame(&answer);
    assert_eq!(silent.code, ErrorCode::HandshakeTimeout as i32);

    // The first bytes of a hello (type and part of its length).
    let (result, after, answer) = stalled_client(&[0x01, 0x10]).await;
    assert!(matches!(result, Err(HandshakeError::Timeout)), "{result:?}");
    assert_eq!(after, Duration::from_secs(4));
    let partial = close_frame(&answer);
    assert_eq!(partial, silent, "the same close frame");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_of_accept_until_is_the_callers() {
    let (mut client, server) = tokio::io::duplex(1024);
    let start = tokio::time::Instant::now();
    let accept = tokio::spawn(async move {
        // The caller spent part of its handshake time already (say on TLS).
        let deadline = start + Duration::from_secs(2);
        tntunnel::accept_until(server, &TunnelConfig::default(), deadline)
            .await
            .map(|_| ())
    });
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    let result = accept.await.unwrap();
    assert!(matches!(result, Err(HandshakeError::Timeout)), "{result:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(
        close_frame(&answer).code,
        ErrorCode::HandshakeTimeout as i32
    );
}

#[tokio::test(start_paused = true)]
async fn silent_server_times_out() {
    let (client, _server) = tokio::io::duplex(1024);
    let start = tokio::time::Instant::now();
    let mut config = TunnelConfig::default();
    config.handshake_timeout(Duration::from_secs(3));
    let result = tntunnel::connect(client, ClientHello::default(), &config).await;
    assert!(matches!(result, Err(HandshakeError::Timeout)), "{result:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test]
async fn a_bad_frame_after_the_handshake_is_a_typed_error() {
    let (addr, task) = server().await;
    let io = TcpStream::connect(addr).await.unwrap();
    let (framed, _) = tntunnel::connect(io, ClientHello::default(), &TunnelConfig::default())
        .await
        .unwrap();
    let mut io = framed.into_inner();
    io.write_all(&[0x07, 0x00]).await.unwrap();
    let result = timeout(LIMIT, task).await.unwrap().unwrap();
    match result {
        Err(HandshakeError::Frame(FrameError::UnknownFrameType(0x07))) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn hello_frame_is_small() {
    // A realistic hello fits comfortably in one small packet.
    let hello = ClientHello {
        versions: vec![1],
        app_id: "demo".into(),
        device_id: "3f2a9c1e-5b7d-4e0f-8a6b-1c2d3e4f5a6b".into(),
        sdk_name: "pike-rust".into(),
        sdk_version: "0.1.0".into(),
        compressions: vec![Compression::Lz4 as i32],
        max_frame_length: 1 << 20,
        ..Default::default()
    };
    let mut buf = bytes::BytesMut::new();
    FrameCodec::new()
        .encode(
            Frame::from_message(FrameType::CLIENT_HELLO, &hello),
            &mut buf,
        )
        .unwrap();
    assert!(buf.len() < 80, "hello is {} bytes", buf.len());
}

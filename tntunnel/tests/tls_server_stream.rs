//! The server's TLS stream on rustls's unbuffered API (`ServerTlsStream`) over real
//! loopback TCP, against rustls's buffered client (tokio-rustls): data larger than a record
//! both ways, no buffer held while idle, close_notify both ways, key updates, and a
//! hostile record length.
#![cfg(feature = "tls")]

use std::pin::Pin;
use std::task::Poll;

use tntunnel::tls::{ServerTlsStream, TlsClientConfig, TlsServerConfig};
use tntunnel::{ClientSecurity, SecureStream, SecurityError, ServerSecurity};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

mod support;

use support::{WAIT, bounded};

/// A server and a client that pins the server's self-signed certificate.
fn securities() -> (ServerSecurity, ClientSecurity) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let server =
        TlsServerConfig::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let pin = server.leaf_fingerprint().unwrap();
    let client = TlsClientConfig::pinned([pin]).unwrap();
    (ServerSecurity::Tls(server), ClientSecurity::Tls(client))
}

/// A secured pair over loopback TCP: (server stream, client stream).
async fn pair() -> (Box<ServerTlsStream<TcpStream>>, SecureStream<TcpStream>) {
    let (server, client) = securities();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server.secure(tcp).await.unwrap()
    };
    let connect = async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        client.secure(tcp, "localhost").await.unwrap()
    };
    let (server, client) = bounded("the handshake", async { tokio::join!(accept, connect) }).await;
    let SecureStream::ServerTls(server) = server else {
        panic!("a TLS server stream expected, got {server:?}");
    };
    (server, client)
}

/// Polls one read: `Some(n)` if it completed, `None` if it waits for the peer.
async fn poll_read_once<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Option<usize> {
    std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(buf);
        Poll::Ready(match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
            Poll::Ready(result) => {
                result.unwrap();
                Some(buf.filled().len())
            }
            Poll::Pending => None,
        })
    })
    .await
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn data_larger_than_a_record_crosses_both_ways_and_an_idle_stream_holds_no_buffer() {
    let (mut server, mut client) = pair().await;
    // 1 MiB each way: many records, writes larger than one call takes, partial reads.
    let upload = pattern(1 << 20);
    let download: Vec<u8> = upload.iter().rev().copied().collect();
    let expected_download = download.clone();
    let server_side = async {
        let mut received = vec![0u8; upload.len()];
        server.read_exact(&mut received).await.unwrap();
        server.write_all(&download).await.unwrap();
        server.flush().await.unwrap();
        received
    };
    let client_side = async {
        client.write_all(&upload).await.unwrap();
        client.flush().await.unwrap();
        let mut received = vec![0u8; expected_download.len()];
        client.read_exact(&mut received).await.unwrap();
        received
    };
    let (at_server, at_client) = bounded("1 MiB each way", async {
        tokio::join!(server_side, client_side)
    })
    .await;
    assert!(
        at_server == upload,
        "the server read other bytes than the client wrote"
    );
    assert!(
        at_client == expected_download,
        "the client read other bytes than the server wrote"
    );

    // A small exchange, then the server waits for more: it holds no buffer.
    client.write_all(b"ping").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 16];
    let n = bounded("the ping", server.read(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"ping");
    server.write_all(b"pong").await.unwrap();
    server.flush().await.unwrap();
    assert_eq!(
        poll_read_once(&mut *server, &mut buf).await,
        None,
        "nothing more was sent"
    );
    assert_eq!(
        server.buffered_capacity(),
        0,
        "an idle stream holds no buffer"
    );
    let mut pong = [0u8; 4];
    bounded("the pong", client.read_exact(&mut pong))
        .await
        .unwrap();
    assert_eq!(&pong, b"pong");
}

#[tokio::test]
async fn close_notify_ends_the_stream_cleanly_both_ways() {
    let (mut server, mut client) = pair().await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut received = Vec::new();
    bounded("the client's close", server.read_to_end(&mut received))
        .await
        .unwrap();
    assert_eq!(received, b"last words");

    // The server can still write after the peer's close_notify, then sends its own: the
    // client (rustls, which reports a close without close_notify as an error) reads a
    // clean end of stream.
    server.write_all(b"goodbye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut received = Vec::new();
    bounded("the server's close", client.read_to_end(&mut received))
        .await
        .unwrap();
    assert_eq!(received, b"goodbye");
}

#[tokio::test]
async fn key_updates_asked_by_the_client_are_followed_both_ways() {
    let (mut server, mut client) = pair().await;
    for round in 0..3u8 {
        let SecureStream::ClientTls(tls) = &mut client else {
            panic!("a client TLS stream expected");
        };
        // The client's new keys, and a request that the server update its own.
        tls.get_mut().1.refresh_traffic_keys().unwrap();
        let message = [round; 300];
        client.write_all(&message).await.unwrap();
        client.flush().await.unwrap();
        let mut received = [0u8; 300];
        bounded(
            "the message under new keys",
            server.read_exact(&mut received),
        )
        .await
        .unwrap();
        assert_eq!(received, message);
        server.write_all(&received).await.unwrap();
        server.flush().await.unwrap();
        let mut echoed = [0u8; 300];
        bounded(
            "the echo under the server's new keys",
            client.read_exact(&mut echoed),
        )
        .await
        .unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn a_record_longer_than_tls_allows_fails_the_handshake_without_buffering_it() {
    let (server, _client) = securities();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hostile = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // A handshake record header announcing 65,535 bytes, then that much filler.
        let mut record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
        record.resize(5 + 0xffff, 0x42);
        let _ = tcp.write_all(&record).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await;
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let error = bounded("the refusal", server.secure(tcp))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SecurityError::NotTls(_) | SecurityError::Handshake(_)
        ),
        "{error:?}"
    );
    bounded("the hostile client", hostile).await.unwrap();
}

/// A ClientHello as rustls's client writes it first.
fn client_hello() -> Vec<u8> {
    use tntunnel::tls::rustls;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut client =
        rustls::ClientConnection::new(config.into(), "localhost".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    hello
}

#[tokio::test]
async fn a_client_hello_followed_by_part_of_another_message_is_refused_without_a_panic() {
    let (server, _client) = securities();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The ClientHello record with one more byte: the start of a second handshake
    // message in the same record (rustls fails the handshake while it still points into
    // the received bytes).
    let mut hello = client_hello();
    let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    hello.push(0x0b);
    hello[3..5].copy_from_slice(&u16::try_from(len + 1).unwrap().to_be_bytes());
    let hostile = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
        answer
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let server_side = tokio::spawn(async move { server.secure(tcp).await.map(|_| ()) });
    let outcome = bounded("the refusal", server_side).await;
    let error = outcome.expect("no panic").expect_err("refused");
    assert!(matches!(error, SecurityError::Handshake(_)), "{error:?}");
    let answer = bounded("the hostile client", hostile).await.unwrap();
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "an alert record answers: {answer:?}"
    );
}

#[tokio::test]
async fn after_a_record_that_fails_to_decrypt_the_session_fails_for_good() {
    let (mut server, mut client) = pair().await;
    let SecureStream::ClientTls(tls) = &mut client else {
        panic!("a client TLS stream expected");
    };
    // An application-data record no key decrypts, written under the client's TLS.
    let mut bogus = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    bogus.extend_from_slice(&[0x5a; 0x20]);
    tls.get_mut().0.write_all(&bogus).await.unwrap();
    let mut buf = [0u8; 64];
    let first = bounded("the failed read", server.read(&mut buf)).await;
    assert_eq!(first.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    // Nothing more is processed or encrypted.
    let again = server.read(&mut buf).await;
    assert_eq!(again.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    let write = server.write(b"after the failure").await;
    assert_eq!(write.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    // The client hears an alert, not data.
    let read = bounded("the client's read", client.read(&mut buf)).await;
    assert!(read.is_err(), "the client got {read:?}");
}

#[tokio::test]
async fn a_peer_that_closes_without_close_notify_ends_in_an_unexpected_eof() {
    let (mut server, mut client) = pair().await;
    client.write_all(b"partial").await.unwrap();
    client.flush().await.unwrap();
    let SecureStream::ClientTls(tls) = &mut client else {
        panic!("a client TLS stream expected");
    };
    // The TCP connection closes under the TLS session: no close_notify.
    tls.get_mut().0.shutdown().await.unwrap();
    let mut received = [0u8; 7];
    bounded("the data", server.read_exact(&mut received))
        .await
        .unwrap();
    assert_eq!(&received, b"partial");
    let mut buf = [0u8; 16];
    let end = bounded("the end", server.read(&mut buf)).await;
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
}

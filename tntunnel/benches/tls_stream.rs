//! The server's TLS stream (`ServerTlsStream`, rustls's unbuffered API, buffers freed when
//! empty) against tokio-rustls's server stream (rustls's buffered connection) in the same
//! run, over loopback TCP with a tokio-rustls client: small messages each flushed (a push
//! per frame, the gateway's common case) both ways, and 16 KiB messages.
//!
//! `cargo bench -p tntunnel --bench tls_stream`

use std::time::Duration;

use tokio::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tntunnel::tls::{TlsClientConfig, TlsServerConfig, tokio_rustls};
use tntunnel::{ClientSecurity, SecureStream, ServerSecurity};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Messages per timed batch.
const BATCH: u64 = 256;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

fn configs() -> (TlsServerConfig, ClientSecurity) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("a certificate");
    let server = TlsServerConfig::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .expect("a server config");
    let pin = server.leaf_fingerprint().expect("a fingerprint");
    let client = TlsClientConfig::pinned([pin]).expect("a client config");
    (server, ClientSecurity::Tls(client))
}

/// A connected pair: (server stream of the kind asked, client stream).
async fn pair(lean: bool) -> (Box<dyn Stream>, SecureStream<TcpStream>) {
    let (server, client) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accept = async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        let stream: Box<dyn Stream> = if lean {
            Box::new(
                ServerSecurity::Tls(server)
                    .secure(tcp)
                    .await
                    .expect("handshake"),
            )
        } else {
            let acceptor = tokio_rustls::TlsAcceptor::from(server.rustls_config());
            Box::new(acceptor.accept(tcp).await.expect("handshake"))
        };
        stream
    };
    let connect = async move {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        client.secure(tcp, "localhost").await.expect("handshake")
    };
    tokio::join!(accept, connect)
}

/// Sends `count` messages of `size` bytes from `from` to `to`, each flushed; returns the time.
async fn send(from: &mut dyn Stream, to: &mut dyn Stream, count: u64, size: usize) -> Duration {
    let message = vec![0x5a; size];
    let mut sink = vec![0u8; size];
    let start = Instant::now();
    let write = async {
        for _ in 0..count {
            from.write_all(&message).await.expect("write");
            from.flush().await.expect("flush");
        }
    };
    let read = async {
        for _ in 0..count {
            to.read_exact(&mut sink).await.expect("read");
        }
    };
    tokio::join!(write, read);
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a runtime");
    let mut group = c.benchmark_group("tls_server_stream");
    for size in [64usize, 16 * 1024] {
        group.throughput(Throughput::Bytes(size as u64 * BATCH));
        for (name, lean) in [("unbuffered", true), ("tokio-rustls", false)] {
            let (mut server, mut client) = runtime.block_on(pair(lean));
            group.bench_function(BenchmarkId::new(format!("{name}/down"), size), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += send(&mut *server, &mut client, BATCH, size).await;
                        }
                        total
                    })
                });
            });
            group.bench_function(BenchmarkId::new(format!("{name}/up"), size), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += send(&mut client, &mut *server, BATCH, size).await;
                        }
                        total
                    })
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

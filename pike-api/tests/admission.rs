//! Connection admission over real sockets: over-limit sockets are refused
//! before any handshake work, a flood of half-open TLS handshakes stays
//! within the handshake bound, and a connection that never logs a business
//! in is closed at the login deadline, pings or not.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use pike_api::server::{Gateway, GatewayConfig};
use pike_channel::Message;
use pike_channel::test_util::TestTls;
use proto::channel::{Login, Ping};
use proto::tunnel::{ClientHello, Close, ErrorCode};
use tntunnel::{ClientSecurity, FrameCodec, FrameType, FramedTunnel, TunnelConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;
use tunnelkit::AcceptorLimits;

const LIMIT: Duration = Duration::from_secs(10);

struct Served {
    tcp: SocketAddr,
    tls: SocketAddr,
    admission: AcceptorLimits,
    pusher: pike_api::server::PushHandle,
    tls_identity: TestTls,
}

async fn serve(config: GatewayConfig) -> Served {
    let tls_identity = TestTls::new().await;
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .tls("127.0.0.1:0".parse().unwrap(), tls_identity.server.clone())
        .config(config)
        .bind()
        .await
        .unwrap();
    let addrs = gateway.local_addrs();
    let addr = |name| addrs.iter().find(|(n, _)| *n == name).unwrap().1;
    let served = Served {
        tcp: addr("tcp"),
        tls: addr("tls"),
        admission: gateway.admission(),
        pusher: gateway.push_handle(),
        tls_identity,
    };
    tokio::spawn(gateway.serve());
    served
}

fn hello(device: &str) -> ClientHello {
    ClientHello {
        app_id: "demo".into(),
        device_id: device.into(),
        ..ClientHello::default()
    }
}

async fn connect_plain(addr: SocketAddr, device: &str) -> FramedTunnel<TcpStream> {
    let io = TcpStream::connect(addr).await.unwrap();
    let (tunnel, _) = tokio::time::timeout(
        LIMIT,
        tntunnel::connect(io, hello(device), &TunnelConfig::default()),
    )
    .await
    .unwrap()
    .unwrap();
    tunnel
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

/// A TCP stream that counts the bytes read from it.
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn over_limit_sockets_are_refused_before_any_handshake() {
    let mut config = GatewayConfig::default();
    config.max_connections(Some(1));
    let served = serve(config).await;
    let _held = connect_plain(served.tcp, "first").await;
    eventually("the first connection to register", || {
        served.pusher.connection_count() == 1
    })
    .await;

    // Plain TCP: the refusal comes without the client sending a hello, as
    // a close frame with the code and reconnect advice.
    let raw = TcpStream::connect(served.tcp).await.unwrap();
    let mut frames = FramedRead::new(raw, FrameCodec::new());
    let frame = tokio::time::timeout(LIMIT, frames.next())
        .await
        .expect("the refusal comes at once")
        .expect("a frame, not the end of the stream")
        .unwrap();
    assert_eq!(frame.ty, FrameType::CLOSE);
    let close: Close = frame.decode().unwrap();
    assert_eq!(close.code(), ErrorCode::Overloaded);
    let advice = close.reconnect.expect("reconnect advice");
    assert_eq!(advice.min_delay_ms, 1_000);
    assert!(advice.max_delay_ms >= advice.min_delay_ms);

    // TLS: a real TLS client gets no TLS handshake: its handshake fails and
    // the server sent it no byte at all (no ServerHello, no alert).
    let read = Arc::new(AtomicUsize::new(0));
    let raw = Counting {
        inner: TcpStream::connect(served.tls).await.unwrap(),
        read: Arc::clone(&read),
    };
    let secured = tokio::time::timeout(
        LIMIT,
        ClientSecurity::Tls(served.tls_identity.client()).secure(raw, "localhost"),
    )
    .await
    .unwrap();
    assert!(secured.is_err(), "a TLS handshake ran over the limit");
    assert_eq!(read.load(Ordering::SeqCst), 0, "the server sent TLS bytes");

    assert_eq!(served.admission.over_limit_total(), 2);
    assert_eq!(served.pusher.connection_count(), 1);
    eventually("the refusals to end", || {
        served.admission.handshakes_in_progress() == 0
    })
    .await;
}

/// Half-open TLS clients (connected, silent) take every handshake slot and
/// the rest of them wait in the listen backlog; once they leave, a
/// well-behaved client gets in, and the handshakes in progress never
/// exceeded the bound.
#[tokio::test]
async fn half_open_tls_clients_stay_within_the_handshake_bound() {
    let mut config = GatewayConfig::default();
    config.max_handshakes(2);
    let served = serve(config).await;
    let mut half_open = Vec::new();
    for _ in 0..8 {
        half_open.push(TcpStream::connect(served.tls).await.unwrap());
    }
    eventually("two handshakes in progress", || {
        served.admission.handshakes_in_progress() == 2
    })
    .await;
    let (addr, tls) = (served.tls, served.tls_identity.client());
    let good = tokio::spawn(async move {
        let io = TcpStream::connect(addr).await?;
        let io = ClientSecurity::Tls(tls).secure(io, "localhost").await?;
        let (tunnel, _) = tntunnel::connect(io, hello("good"), &TunnelConfig::default()).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(tunnel)
    });
    drop(half_open);
    let tunnel = tokio::time::timeout(LIMIT, good)
        .await
        .expect("the good client got in once the half-open ones left")
        .unwrap();
    assert!(tunnel.is_ok(), "{:?}", tunnel.err());
    eventually("the good client to register", || {
        served.pusher.connection_count() == 1
    })
    .await;
    assert_eq!(served.admission.peak_handshakes(), 2);
    assert_eq!(served.admission.handshakes_in_progress(), 0);
}

/// Sends a ping every 50 ms and reads until the server closes; returns the
/// pongs seen and the close.
async fn ping_until_closed(tunnel: &mut FramedTunnel<TcpStream>) -> (usize, Close) {
    let mut pongs = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut nonce = 0;
    let wait = async {
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    nonce += 1;
                    let ping = Message::Ping(Ping { nonce }).to_frame();
                    if tunnel.send(ping).await.is_err() {
                        continue;
                    }
                }
                frame = tunnel.next() => {
                    let frame = frame.expect("a close frame before the end").unwrap();
                    if frame.ty == FrameType::CLOSE {
                        return frame.decode::<Close>().unwrap();
                    }
                    if let Ok(Message::Pong(_)) = Message::decode(&frame) {
                        pongs += 1;
                    }
                }
            }
        }
    };
    let close = tokio::time::timeout(LIMIT, wait)
        .await
        .expect("closed at the login deadline");
    (pongs, close)
}

#[tokio::test]
async fn login_deadline_closes_a_connection_that_only_pings() {
    let mut channel = pike_channel::ServerConfig::default();
    channel
        .login_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut config = GatewayConfig::default();
    config.channel(channel);
    let served = serve(config).await;

    let started = tokio::time::Instant::now();
    let mut idle = connect_plain(served.tcp, "pings-only").await;
    let (pongs, close) = ping_until_closed(&mut idle).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(pongs >= 2, "the pings were answered until then ({pongs})");
    assert_eq!(close.code(), ErrorCode::IdleTimeout);
    assert!(close.message.contains("login timeout"), "{}", close.message);

    // A connection that logs a business in stays past the deadline.
    let mut busy = connect_plain(served.tcp, "logged-in").await;
    let login = Login {
        stream: 1,
        biz: "chat".into(),
        alias: "u1".into(),
        credential: "any".into(),
        ..Login::default()
    };
    busy.send(Message::Login(login).to_frame()).await.unwrap();
    let result = tokio::time::timeout(LIMIT, busy.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(Message::decode(&result), Ok(Message::LoginResult(r)) if r.code == 0),
        "{result:?}"
    );
    let stays =
        tokio::time::timeout(Duration::from_millis(900), ping_until_closed(&mut busy)).await;
    assert!(
        stays.is_err(),
        "a logged-in connection was closed: {stays:?}"
    );
}

/// Reads `io` to its end (at most [`LIMIT`]) and decodes the close frame
/// in it.
async fn close_read(io: impl AsyncRead + Unpin) -> Close {
    let mut frames = FramedRead::new(io, FrameCodec::new());
    let frame = tokio::time::timeout(LIMIT, frames.next())
        .await
        .expect("the server answers within its handshake timeout")
        .expect("a frame, not the end of the stream")
        .expect("a well-formed frame");
    assert_eq!(frame.ty, FrameType::CLOSE);
    frame.decode().expect("a close body")
}

/// A client that never says hello and one that sent part of a hello are
/// closed the same documented way at the handshake timeout: a
/// `HANDSHAKE_TIMEOUT` close frame, over plain TCP and over TLS.
#[tokio::test]
async fn silent_and_partial_hellos_get_the_same_handshake_timeout_close() {
    use tokio::io::AsyncWriteExt as _;
    let mut tunnel = TunnelConfig::default();
    tunnel.handshake_timeout(Duration::from_secs(1));
    let mut config = GatewayConfig::default();
    config.tunnel(tunnel);
    let served = serve(config).await;
    let mut closes = Vec::new();
    for sent in [&[][..], &[0x01, 0x10, 0x0a][..]] {
        let mut io = TcpStream::connect(served.tcp).await.unwrap();
        io.write_all(sent).await.unwrap();
        closes.push(close_read(io).await);

        let io = TcpStream::connect(served.tls).await.unwrap();
        let mut io = ClientSecurity::Tls(served.tls_identity.client())
            .secure(io, "localhost")
            .await
            .unwrap();
        io.write_all(sent).await.unwrap();
        io.flush().await.unwrap();
        closes.push(close_read(io).await);
    }
    for close in &closes {
        assert_eq!(close.code, ErrorCode::HandshakeTimeout as i32, "{close:?}");
        assert_eq!(close, &closes[0], "every case is closed alike");
    }
}

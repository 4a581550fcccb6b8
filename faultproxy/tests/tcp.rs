//! Each TCP fault, observed from the two ends of a proxied connection.
//! Time is paused: latencies are measured exactly and nothing sleeps.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use faultproxy::{Action, Direction, Proxy, ProxyConfig, Schedule};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Bound on every wait that should succeed (virtual time).
const LIMIT: Duration = Duration::from_secs(60);

/// An upstream that hands every accepted socket to the test.
async fn upstream() -> (SocketAddr, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            if tx.send(socket).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// A proxy in front of a fresh upstream, a client connected through it, and
/// the upstream's side of that connection.
async fn connected(config: ProxyConfig) -> (Proxy, TcpStream, TcpStream) {
    let (addr, mut accepted) = upstream().await;
    let proxy = Proxy::tcp_with("127.0.0.1:0".parse().unwrap(), addr, config)
        .await
        .unwrap();
    let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let server = timeout(LIMIT, accepted.recv()).await.unwrap().unwrap();
    (proxy, client, server)
}

/// Reads exactly `n` bytes, bounded.
async fn read_n(socket: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(LIMIT, socket.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .unwrap();
    buf
}

#[tokio::test(start_paused = true)]
async fn latency_and_jitter_delay_each_direction() {
    let (proxy, mut client, mut server) = connected(ProxyConfig::default().with_seed(7)).await;
    let faults = proxy.handle();
    faults.set_latency(
        Direction::Up,
        Duration::from_millis(200),
        Duration::from_millis(50),
    );
    faults.set_latency(Direction::Down, Duration::from_millis(30), Duration::ZERO);

    for round in 0..5u8 {
        let sent = Instant::now();
        client.write_all(&[round]).await.unwrap();
        assert_eq!(read_n(&mut server, 1).await, [round]);
        let up = sent.elapsed();
        assert!(
            up >= Duration::from_millis(200) && up <= Duration::from_millis(251),
            "{up:?}"
        );
        let sent = Instant::now();
        server.write_all(&[round]).await.unwrap();
        assert_eq!(read_n(&mut client, 1).await, [round]);
        let down = sent.elapsed();
        assert!(
            down >= Duration::from_millis(30) && down <= Duration::from_millis(31),
            "{down:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn bandwidth_limits_bytes_per_second() {
    let (proxy, mut client, mut server) = connected(ProxyConfig::default()).await;
    proxy.handle().set_bandwidth(Direction::Up, Some(16 * 1024));
    let payload = vec![7u8; 64 * 1024];
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        client.write_all(&payload).await.unwrap();
        client
    });
    let got = read_n(&mut server, 64 * 1024).await;
    let took = started.elapsed();
    assert!(got.iter().all(|b| *b == 7));
    // 64 KiB at 16 KiB/s: 4 s, less the last piece written at once.
    assert!(
        took >= Duration::from_millis(3900) && took <= Duration::from_millis(4100),
        "{took:?}"
    );
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn slicing_writes_many_small_pieces() {
    let (proxy, mut client, mut server) = connected(ProxyConfig::default()).await;
    let faults = proxy.handle();
    faults.set_slice(Direction::Up, Some(7));
    let payload: Vec<u8> = (0..100).collect();
    client.write_all(&payload).await.unwrap();
    let mut got = Vec::new();
    let mut reads = 0;
    while got.len() < payload.len() {
        let mut buf = [0u8; 64];
        let n = timeout(LIMIT, server.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "no early EOF");
        got.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(got, payload);
    assert_eq!(faults.stats().writes_up, 15, "ceil(100 / 7) writes");
    assert!(reads > 1, "the upstream saw the pieces: {reads} reads");
}

#[tokio::test]
async fn reset_is_seen_as_econnreset_on_both_sides() {
    let (addr, mut accepted) = upstream().await;
    let proxy = Proxy::tcp("127.0.0.1:0".parse().unwrap(), addr)
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut server = timeout(LIMIT, accepted.recv()).await.unwrap().unwrap();
    let faults = proxy.handle();
    client.write_all(b"ping").await.unwrap();
    assert_eq!(read_n(&mut server, 4).await, b"ping");
    faults.reset();
    for socket in [&mut client, &mut server] {
        let mut buf = [0u8; 8];
        let error = timeout(LIMIT, socket.read(&mut buf))
            .await
            .unwrap()
            .expect_err("reset, not EOF");
        assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    }
    let stats = faults.stats();
    assert_eq!((stats.resets, stats.active), (1, 0));
    // A new connection works.
    let mut again = TcpStream::connect(proxy.local_addr()).await.unwrap();
    again.write_all(b"x").await.unwrap();
    let mut server = timeout(LIMIT, accepted.recv()).await.unwrap().unwrap();
    assert_eq!(read_n(&mut server, 1).await, b"x");
    assert_eq!(faults.stats().connections, 2);
}

#[tokio::test(start_paused = true)]
async fn blackhole_holds_bytes_until_it_lifts() {
    let (proxy, mut client, mut server) = connected(ProxyConfig::default()).await;
    let faults = proxy.handle();
    faults.blackhole(Direction::Up, true);
    client.write_all(b"held").await.unwrap();
    let mut buf = [0u8; 4];
    assert!(
        timeout(Duration::from_secs(30), server.read(&mut buf))
            .await
            .is_err(),
        "no byte while blackholed"
    );
    // The other way still flows.
    server.write_all(b"down").await.unwrap();
    assert_eq!(read_n(&mut client, 4).await, b"down");
    faults.blackhole(Direction::Up, false);
    assert_eq!(read_n(&mut server, 4).await, b"held");
}

#[tokio::test(start_paused = true)]
async fn blackhole_accepts_new_connections_without_dialing() {
    let (addr, mut accepted) = upstream().await;
    let proxy = Proxy::tcp("127.0.0.1:0".parse().unwrap(), addr)
        .await
        .unwrap();
    let faults = proxy.handle();
    faults.blackhole(Direction::Both, true);
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    client.write_all(b"hi").await.unwrap();
    assert!(
        timeout(Duration::from_secs(30), accepted.recv())
            .await
            .is_err(),
        "not dialed while blackholed"
    );
    faults.heal();
    let mut server = timeout(LIMIT, accepted.recv()).await.unwrap().unwrap();
    assert_eq!(read_n(&mut server, 2).await, b"hi");
}

#[tokio::test]
async fn half_close_ends_one_direction_only() {
    let (proxy, mut client, mut server) = connected(ProxyConfig::default()).await;
    proxy.handle().half_close(Direction::Up);
    let mut buf = [0u8; 4];
    let n = timeout(LIMIT, server.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the upstream reads EOF");
    server.write_all(b"more").await.unwrap();
    assert_eq!(read_n(&mut client, 4).await, b"more", "down still flows");
}

#[tokio::test]
async fn refuse_closes_the_listener_until_lifted() {
    let (proxy, _client, _server) = connected(ProxyConfig::default()).await;
    let faults = proxy.handle();
    faults.refuse(true);
    // The accept loop drops the listener when it sees the change.
    let mut refused = false;
    for _ in 0..1000 {
        match TcpStream::connect(proxy.local_addr()).await {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::task::yield_now().await,
        }
    }
    assert!(refused, "connects are refused");
    faults.refuse(false);
    let mut connected = false;
    for _ in 0..1000 {
        if TcpStream::connect(proxy.local_addr()).await.is_ok() {
            connected = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(connected, "accepted again");
}

#[tokio::test(start_paused = true)]
async fn schedule_runs_on_tokio_time() {
    let (proxy, mut client, mut server) = connected(ProxyConfig::default()).await;
    let faults = proxy.handle();
    let schedule = Schedule::new()
        .blackhole(
            Direction::Down,
            Duration::from_secs(1),
            Duration::from_secs(2),
        )
        .at(Duration::from_secs(10), Action::Reset);
    faults.run(schedule);
    // Virtual time: the step due at 1 s runs before this wakes at 1.5 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(faults.faults(Direction::Down).blackhole, "on at 1 s");
    server.write_all(b"late").await.unwrap();
    let mut buf = [0u8; 4];
    let started = Instant::now();
    timeout(LIMIT, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"late");
    // Released when the blackhole lifted at 3 s.
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
    assert_eq!(faults.stats().resets, 0);
    let error = timeout(LIMIT, client.read(&mut buf)).await.unwrap();
    assert_eq!(error.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(faults.stats().resets, 1);
}

#[tokio::test]
async fn upstream_failure_resets_the_client() {
    let (proxy, mut client, server) = connected(ProxyConfig::default()).await;
    server.set_zero_linger().unwrap();
    drop(server);
    let mut buf = [0u8; 4];
    let error = timeout(LIMIT, client.read(&mut buf)).await.unwrap();
    assert_eq!(error.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(proxy.handle().stats().errors, 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_turned_away() {
    let (proxy, _client, _server) = connected(ProxyConfig::default().with_max_connections(1)).await;
    let mut extra = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let read = timeout(LIMIT, extra.read(&mut buf)).await.unwrap();
    assert!(read.is_err() || read.unwrap() == 0, "turned away");
    assert_eq!(proxy.handle().stats().refused, 1);
}

//! The UDP faults, observed at both ends.

use std::time::Duration;

use faultproxy::{Direction, Proxy};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

const LIMIT: Duration = Duration::from_secs(60);

/// An echo upstream, a proxy in front, and a client socket connected to it.
async fn echo_through_proxy() -> (Proxy, UdpSocket) {
    let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let proxy = Proxy::udp("127.0.0.1:0".parse().unwrap(), addr)
        .await
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(proxy.local_addr()).await.unwrap();
    (proxy, client)
}

async fn round_trip(client: &UdpSocket, payload: &[u8], wait: Duration) -> Option<Vec<u8>> {
    client.send(payload).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = timeout(wait, client.recv(&mut buf)).await.ok()?.unwrap();
    Some(buf[..n].to_vec())
}

#[tokio::test(start_paused = true)]
async fn datagrams_are_delayed_each_way() {
    let (proxy, client) = echo_through_proxy().await;
    proxy
        .handle()
        .set_latency(Direction::Both, Duration::from_millis(40), Duration::ZERO);
    let started = Instant::now();
    assert_eq!(round_trip(&client, b"a", LIMIT).await.unwrap(), b"a");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(80) && took <= Duration::from_millis(81),
        "{took:?}"
    );
    let stats = proxy.handle().stats();
    assert_eq!((stats.datagrams_up, stats.datagrams_down), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn blackhole_and_drop_rate_drop_datagrams() {
    let (proxy, client) = echo_through_proxy().await;
    let faults = proxy.handle();
    faults.blackhole(Direction::Down, true);
    assert_eq!(
        round_trip(&client, b"x", Duration::from_secs(5)).await,
        None
    );
    assert_eq!(faults.stats().dropped_down, 1);
    faults.heal();
    assert_eq!(round_trip(&client, b"y", LIMIT).await.unwrap(), b"y");

    faults.set_drop_rate(Direction::Up, 1.0);
    assert_eq!(
        round_trip(&client, b"z", Duration::from_secs(5)).await,
        None
    );
    assert_eq!(faults.stats().dropped_up, 1);
    faults.set_drop_rate(Direction::Up, 0.0);
    assert_eq!(round_trip(&client, b"w", LIMIT).await.unwrap(), b"w");
    assert_eq!(faults.stats().connections, 1, "one flow for one client");
}

//! Every server hello advises a crash-reconnect window sized by the
//! connections the gateway holds (`connections × 1.5 / handshake rate`,
//! bounded), so a fleet that loses its gateway at once comes back about as
//! fast as the gateway can take it, no faster.

use std::time::Duration;

use pike_api::server::{Gateway, GatewayConfig, ReconnectSpread};
use proto::tunnel::ClientHello;
use tntunnel::TunnelConfig;
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn hello_window_grows_with_the_connections_held() {
    let mut config = GatewayConfig::default();
    // 2 handshakes a second: the n-th connection is advised n × 0.75 s.
    config.reconnect_spread(ReconnectSpread::new(
        Some(2),
        Duration::from_secs(1),
        Duration::from_secs(3),
    ));
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .config(config)
        .bind()
        .await
        .unwrap();
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());

    let mut held = Vec::new();
    let mut windows = Vec::new();
    for n in 1..=6 {
        let io = TcpStream::connect(addr).await.unwrap();
        let hello = ClientHello {
            app_id: "demo".into(),
            device_id: format!("d{n}"),
            ..ClientHello::default()
        };
        let (tunnel, server_hello) = tntunnel::connect(io, hello, &TunnelConfig::default())
            .await
            .unwrap();
        let advice = server_hello
            .reconnect
            .expect("every hello advises a window");
        assert_eq!(advice.min_delay_ms, 0);
        assert!(advice.endpoints.is_empty());
        windows.push(advice.max_delay_ms);
        held.push(tunnel);
        // The next hello sees this connection registered.
        tokio::time::timeout(LIMIT, async {
            while pusher.connection_count() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the connection registers");
    }
    // 1 → 0.75 s (floor 1 s), 2 → 1.5 s, 3 → 2.25 s, 4 and more → the 3 s cap.
    assert_eq!(windows, [1_000, 1_500, 2_250, 3_000, 3_000, 3_000]);
}

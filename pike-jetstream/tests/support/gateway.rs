//! An in-process `pike-api` gateway on a `JetStreamEngine` for the tests
//! (included with `#[path]` by the tests that need one), and the wait for a
//! client's login.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use pike_api::pike_channel::{BoxConnector, TunnelConnector};
use pike_api::proto::tunnel::ClientHello;
use pike_api::server::{Gateway, PushHandle};
use pike_api::tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};
use pike_api::{ChannelProxy, ClientConfig, ClientEvent, PikeClient};
use pike_jetstream::{Cluster, JetStreamEngine};
use tokio::task::JoinHandle;

use super::support::NatsCluster;

/// A gateway serving on loopback TCP.
pub struct Node {
    /// The gateway's cluster handle (health, leases).
    pub cluster: Cluster,
    pub addr: SocketAddr,
    pub pusher: PushHandle,
    pub serving: JoinHandle<()>,
}

/// A gateway named `name` on NATS server `nats_node` (0-based).
pub async fn gateway(nats: &NatsCluster, name: &str, nats_node: usize) -> Node {
    let cluster = Cluster::connect(nats.config(name, vec![nats.url(nats_node)]))
        .await
        .expect("cluster connect");
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().expect("address"))
        .engine(JetStreamEngine::factory(cluster.clone()))
        .bind()
        .await
        .expect("gateway bound");
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    let serving = tokio::spawn(gateway.serve());
    Node {
        cluster,
        addr,
        pusher,
        serving,
    }
}

/// A proxy for `device` dialing `endpoints` (the racing dialer), with fast
/// reconnects.
pub fn proxy(endpoints: Vec<SocketAddr>, device: &str) -> ChannelProxy {
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: device.into(),
        ..ClientHello::default()
    };
    let transport = TcpTransport::new(TcpConfig::default()).expect("tcp transport");
    let dialer = Dialer::new(transport, DialerConfig::default()).expect("dialer");
    let connector = BoxConnector::new(TunnelConnector::new(dialer, endpoints, hello));
    let mut config = ClientConfig::default();
    config
        .backoff(Duration::from_millis(10), Duration::from_millis(200), 0.5)
        .unwrap()
        .reconnect_spread(Duration::from_millis(50))
        .unwrap();
    ChannelProxy::builder(connector)
        .channel_config(config)
        .build()
}

/// Waits (at most `limit`) until `client` is running.
pub async fn running(client: &PikeClient, limit: Duration) {
    tokio::time::timeout(limit, async {
        loop {
            match client.next_event().await {
                Some(ClientEvent::Running { .. }) => return,
                Some(ClientEvent::OnStop { reason }) => panic!("stopped: {reason:?}"),
                Some(_) => {}
                None => panic!("client gone"),
            }
        }
    })
    .await
    .expect("running in time");
}

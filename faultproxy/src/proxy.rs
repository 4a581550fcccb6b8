//! The proxy: bound sockets plus the task that serves them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::handle::{ProxyHandle, Shared};

/// Limits and the seed of a proxy. `ProxyConfig::default()`: seed 0, 1024
/// TCP connections, 1024 UDP flows.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    seed: u64,
    max_connections: u64,
    max_flows: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            max_connections: 1024,
            max_flows: 1024,
        }
    }
}

impl ProxyConfig {
    /// Seeds the jitter and drop draws (each connection and flow derives its
    /// own generator from it, so a run is reproducible given the same
    /// traffic).
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// At most this many TCP connections at once (at least 1); beyond,
    /// new ones are accepted and reset at once (counted in
    /// [`Stats::refused`](crate::Stats::refused)).
    #[must_use]
    pub fn with_max_connections(mut self, max: u64) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// At most this many UDP client addresses at once (at least 1); a new
    /// one beyond evicts the flow idle the longest.
    #[must_use]
    pub fn with_max_flows(mut self, max: usize) -> Self {
        self.max_flows = max.max(1);
        self
    }
}

/// A running proxy. Dropping it stops accepting and closes every
/// connection (plain close, not reset).
#[derive(Debug)]
pub struct Proxy {
    handle: ProxyHandle,
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A TCP proxy listening on `listen` (port 0 picks one) and dialing
    /// `upstream` for each connection, with the default config.
    pub async fn tcp(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        Self::tcp_with(listen, upstream, ProxyConfig::default()).await
    }

    /// A TCP proxy with `config`.
    pub async fn tcp_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: ProxyConfig,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Shared::new(config.seed);
        let task = tokio::spawn(crate::tcp::accept_loop(
            Some(listener),
            local_addr,
            upstream,
            config.max_connections,
            shared.clone(),
        ));
        Ok(Self::running(shared, local_addr, task))
    }

    /// A UDP proxy on `listen` forwarding to `upstream`, with the default
    /// config.
    pub async fn udp(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        Self::udp_with(listen, upstream, ProxyConfig::default()).await
    }

    /// A UDP proxy with `config`.
    pub async fn udp_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: ProxyConfig,
    ) -> io::Result<Self> {
        let socket = UdpSocket::bind(listen).await?;
        let local_addr = socket.local_addr()?;
        let shared = Shared::new(config.seed);
        let task = tokio::spawn(crate::udp::serve(
            socket,
            upstream,
            config.max_flows,
            shared.clone(),
        ));
        Ok(Self::running(shared, local_addr, task))
    }

    fn running(shared: Arc<Shared>, local_addr: SocketAddr, task: JoinHandle<()>) -> Self {
        Self {
            handle: ProxyHandle { shared },
            local_addr,
            task,
        }
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A control handle (cloneable, usable after the proxy moved).
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.handle
            .shared
            .state
            .send_modify(|state| state.closed = true);
        self.task.abort();
    }
}

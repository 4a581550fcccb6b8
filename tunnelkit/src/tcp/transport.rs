//! The TCP client transport.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::net::{TcpSocket, TcpStream};
use tracing::Instrument as _;

use crate::{ConfigError, Transport};

/// Settings of a [`TcpTransport`].
///
/// Defaults: no connect timeout of its own (the [`Dialer`](crate::Dialer)'s overall timeout
/// bounds a dial; without one the operating system's SYN retry limit applies), and no source
/// address (the kernel picks one).
#[derive(Clone, Debug, Default)]
pub struct TcpConfig {
    connect_timeout: Option<Duration>,
    source_ips: Vec<IpAddr>,
}

impl TcpConfig {
    /// Gives up on a connect after `timeout` with an [`io::ErrorKind::TimedOut`] error.
    /// `None` (the default) waits as long as the operating system does. Must not be zero.
    pub fn connect_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.connect_timeout = timeout;
        self
    }

    /// Local source addresses to connect from, used round-robin (separately for IPv4 and IPv6
    /// targets). Empty (the default) lets the kernel choose.
    ///
    /// Meant for load generators that open more connections to one server than one source
    /// address has ephemeral ports: on Linux each socket is bound with
    /// `IP_BIND_ADDRESS_NO_PORT`, so the port is picked at connect time per 4-tuple; elsewhere
    /// the address is bound with port 0. Connecting to a target whose address family has no
    /// configured source fails with [`io::ErrorKind::InvalidInput`].
    pub fn source_ips(&mut self, ips: impl IntoIterator<Item = IpAddr>) -> &mut Self {
        self.source_ips = ips.into_iter().collect();
        self
    }
}

/// Plain TCP client transport. Every connection has `TCP_NODELAY` set.
///
/// Cheap to clone; clones share the source-address rotation.
#[derive(Clone, Debug)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connect_timeout: Option<Duration>,
    sources_v4: SourceRotation,
    sources_v6: SourceRotation,
}

impl TcpTransport {
    /// Builds a transport, validating `config`.
    pub fn new(config: TcpConfig) -> Result<Self, ConfigError> {
        if config.connect_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::OutOfBounds {
                name: "connect_timeout",
                reason: "must be greater than zero",
            });
        }
        let (v4, v6) = config.source_ips.iter().partition(|ip| ip.is_ipv4());
        Ok(Self {
            inner: Arc::new(Inner {
                connect_timeout: config.connect_timeout,
                sources_v4: SourceRotation::new(v4),
                sources_v6: SourceRotation::new(v6),
            }),
        })
    }

    /// The source address the next connection to `addr` will bind, if source addresses are
    /// configured. Advances the rotation.
    fn next_source(&self, addr: SocketAddr) -> io::Result<Option<IpAddr>> {
        let (this_family, other_family) = if addr.is_ipv4() {
            (&self.inner.sources_v4, &self.inner.sources_v6)
        } else {
            (&self.inner.sources_v6, &self.inner.sources_v4)
        };
        match this_family.next() {
            Some(ip) => Ok(Some(ip)),
            None if other_family.is_empty() => Ok(None),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no configured source address has the target's address family",
            )),
        }
    }
}

impl Default for TcpTransport {
    /// A transport with the default [`TcpConfig`].
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                connect_timeout: None,
                sources_v4: SourceRotation::new(Vec::new()),
                sources_v6: SourceRotation::new(Vec::new()),
            }),
        }
    }
}

impl Transport for TcpTransport {
    type Conn = TcpStream;
    const NAME: &'static str = "tcp";

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<TcpStream>> + Send {
        let span = tracing::debug_span!("conn", peer.addr = %addr, transport = "tcp");
        async move {
            let source = self.next_source(addr)?;
            let attempt = connect_once(addr, source);
            let stream = match self.inner.connect_timeout {
                Some(limit) => tokio::time::timeout(limit, attempt).await.map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out")
                })??,
                None => attempt.await?,
            };
            tracing::debug!(local.addr = ?stream.local_addr().ok(), "connected");
            Ok(stream)
        }
        .instrument(span)
    }
}

async fn connect_once(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_nodelay(true)?;
    if let Some(ip) = source {
        bind_source(&socket, ip)?;
    }
    socket.connect(addr).await
}

/// Binds `socket` to `ip`, deferring the port choice to connect time where the OS allows it.
fn bind_source(socket: &TcpSocket, ip: IpAddr) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
        if let Err(errno) = setsockopt(socket, IpBindAddressNoPort, &true) {
            // Not fatal: binding still works, it just reserves a port per source address.
            tracing::debug!(error = %errno, "IP_BIND_ADDRESS_NO_PORT not applied");
        }
    }
    socket.bind(SocketAddr::new(ip, 0))
}

/// Round-robin over a fixed list of addresses.
#[derive(Debug)]
struct SourceRotation {
    ips: Vec<IpAddr>,
    cursor: AtomicUsize,
}

impl SourceRotation {
    fn new(ips: Vec<IpAddr>) -> Self {
        Self {
            ips,
            cursor: AtomicUsize::new(0),
        }
    }

    fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }

    fn next(&self) -> Option<IpAddr> {
        if self.ips.is_empty() {
            return None;
        }
        let i = self.cursor.fetch_add(1, Ordering::Relaxed) % self.ips.len();
        self.ips.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn ip4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn zero_connect_timeout_is_rejected() {
        let mut config = TcpConfig::default();
        config.connect_timeout(Some(Duration::ZERO));
        assert!(matches!(
            TcpTransport::new(config),
            Err(ConfigError::OutOfBounds {
                name: "connect_timeout",
                ..
            })
        ));
    }

    #[test]
    fn sources_rotate_per_family() {
        let mut config = TcpConfig::default();
        config.source_ips([ip4(2), IpAddr::V6(Ipv6Addr::LOCALHOST), ip4(3)]);
        let transport = TcpTransport::new(config).unwrap();
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let picked: Vec<_> = (0..4).map(|_| transport.next_source(v4).unwrap()).collect();
        assert_eq!(
            picked,
            vec![Some(ip4(2)), Some(ip4(3)), Some(ip4(2)), Some(ip4(3))]
        );
        assert_eq!(
            transport.next_source(v6).unwrap(),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn source_binding_defers_the_port_choice() {
        use nix::sys::socket::{getsockopt, sockopt::IpBindAddressNoPort};

        let socket = TcpSocket::new_v4().unwrap();
        bind_source(&socket, ip4(5)).unwrap();
        assert!(getsockopt(&socket, IpBindAddressNoPort).unwrap());
        let local = socket.local_addr().unwrap();
        assert_eq!(local.ip(), ip4(5));
        // The port is chosen at connect time, not reserved by bind.
        assert_eq!(local.port(), 0);
    }

    #[test]
    fn missing_family_is_an_error_and_no_sources_means_kernel_choice() {
        let mut config = TcpConfig::default();
        config.source_ips([ip4(2)]);
        let transport = TcpTransport::new(config).unwrap();
        let err = transport
            .next_source("[::1]:80".parse().unwrap())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let plain = TcpTransport::default();
        assert_eq!(
            plain.next_source("[::1]:80".parse().unwrap()).unwrap(),
            None
        );
    }
}

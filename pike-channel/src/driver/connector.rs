//! How the client driver opens connections: the [`Connector`] seam, the
//! provided [`TunnelConnector`] (dialer racing + TLS or plain + tunnel
//! handshake) and the type-erased [`BoxConnector`].

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proto::tunnel::{ClientHello, ServerHello};
use tntunnel::{
    ClientSecurity, FramedTunnel, HandshakeError, SecureStream, SecurityError, TunnelConfig,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, FramedParts};
use tunnelkit::{DialError, Dialer, Transport};

use super::util::lock;

/// Opens Pike tunnel connections for a [`ClientDriver`](crate::ClientDriver).
///
/// The driver calls [`connect`](Self::connect) for every
/// [`Event::Connect`](crate::Event::Connect) the machine emits, while it keeps
/// reading, writing and running timers; dropping the returned future aborts
/// the dial. [`TunnelConnector`] is the implementation for real transports;
/// tests implement it over in-memory pipes.
pub trait Connector: Send + Sync + 'static {
    /// The byte stream under the framed tunnel.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Dials, secures and runs the tunnel handshake.
    ///
    /// `advised` holds the endpoints the server advised for this dial
    /// (`"ip:port"`, preferred first); empty means the connector's own list.
    fn connect(
        &self,
        advised: &[String],
    ) -> impl Future<Output = Result<Connected<Self::Io>, ConnectError>> + Send;
}

/// A connection a [`Connector`] established: the framed tunnel, ready for
/// application frames, and the server's hello.
#[derive(Debug)]
pub struct Connected<Io> {
    /// The framed tunnel (handshake done).
    pub framed: FramedTunnel<Io>,
    /// The server's hello (connection token, heartbeat, reconnect advice).
    pub hello: ServerHello,
    /// The server address, when known (for logs).
    pub peer: Option<SocketAddr>,
    /// The transport name, for logs (`"tcp"`, `"quic"`, ...).
    pub transport: &'static str,
}

impl<Io> Connected<Io> {
    /// A connection over `framed` whose handshake returned `hello`.
    pub fn new(framed: FramedTunnel<Io>, hello: ServerHello) -> Self {
        Self {
            framed,
            hello,
            peer: None,
            transport: "",
        }
    }

    /// Records the peer address and transport name (for logs).
    #[must_use]
    pub fn with_peer(mut self, peer: SocketAddr, transport: &'static str) -> Self {
        self.peer = Some(peer);
        self.transport = transport;
        self
    }

    /// Maps the byte stream, keeping the codec state and buffered bytes.
    pub fn map_io<T>(self, f: impl FnOnce(Io) -> T) -> Connected<T>
    where
        Io: AsyncRead + AsyncWrite,
        T: AsyncRead + AsyncWrite,
    {
        let parts = self.framed.into_parts();
        let mut mapped = FramedParts::new::<tntunnel::Frame>(f(parts.io), parts.codec);
        mapped.read_buf = parts.read_buf;
        mapped.write_buf = parts.write_buf;
        Connected {
            framed: Framed::from_parts(mapped),
            hello: self.hello,
            peer: self.peer,
            transport: self.transport,
        }
    }
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No endpoint to dial (none configured, none advised).
    #[error("no endpoint to dial")]
    NoEndpoints,
    /// Every endpoint failed (refused, timed out, ...).
    #[error(transparent)]
    Dial(#[from] DialError),
    /// TLS could not be established.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The tunnel handshake failed or the server refused the hello.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// Another I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The provided [`Connector`]: a [`Dialer`] racing an endpoint list over a
/// [`Transport`], then TLS or plain ([`ClientSecurity`]), then the tunnel
/// handshake with a [`ClientHello`] (app id, device id, SDK name and
/// version; the resume token from the last server hello is sent along).
///
/// For QUIC pass [`ClientSecurity::Plain`]: QUIC brings its own TLS 1.3.
pub struct TunnelConnector<T> {
    dialer: Dialer<T>,
    endpoints: Vec<SocketAddr>,
    security: ClientSecurity,
    server_name: String,
    tunnel: TunnelConfig,
    hello: ClientHello,
    resume_token: Mutex<Bytes>,
}

// === impl TunnelConnector ===

impl<T: Transport> TunnelConnector<T> {
    /// Dials `endpoints` (preferred first) with `dialer`, plain text, the
    /// default [`TunnelConfig`], and `hello` as the client hello template.
    /// An empty `sdk_name` is filled with `pike-rust` and this crate's
    /// version.
    pub fn new(dialer: Dialer<T>, endpoints: Vec<SocketAddr>, mut hello: ClientHello) -> Self {
        if hello.sdk_name.is_empty() {
            hello.sdk_name = "pike-rust".to_owned();
            hello.sdk_version = env!("CARGO_PKG_VERSION").to_owned();
        }
        Self {
            dialer,
            endpoints,
            security: ClientSecurity::Plain,
            server_name: "localhost".to_owned(),
            tunnel: TunnelConfig::default(),
            hello,
            resume_token: Mutex::new(Bytes::new()),
        }
    }

    /// Protects connections with `security`, verifying the server as
    /// `server_name` (a DNS name or an IP address).
    #[must_use]
    pub fn security(mut self, security: ClientSecurity, server_name: impl Into<String>) -> Self {
        self.security = security;
        self.server_name = server_name.into();
        self
    }

    /// Uses `config` for the tunnel (frame limit, handshake timeout,
    /// compression).
    #[must_use]
    pub fn tunnel_config(mut self, config: TunnelConfig) -> Self {
        self.tunnel = config;
        self
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// The client hello template.
    pub fn hello(&self) -> &ClientHello {
        &self.hello
    }

    async fn dial(
        &self,
        advised: &[String],
    ) -> Result<Connected<SecureStream<T::Conn>>, ConnectError> {
        let parsed: Vec<SocketAddr> = advised.iter().filter_map(|e| e.parse().ok()).collect();
        let endpoints = if parsed.is_empty() {
            &self.endpoints
        } else {
            &parsed
        };
        if endpoints.is_empty() {
            return Err(ConnectError::NoEndpoints);
        }
        let dialed = self.dialer.dial(endpoints).await?;
        let io = self.security.secure(dialed.conn, &self.server_name).await?;
        let mut hello = self.hello.clone();
        hello.resume_token = lock(&self.resume_token).clone();
        let (framed, server_hello) = tntunnel::connect(io, hello, &self.tunnel).await?;
        if !server_hello.resume_token.is_empty() {
            *lock(&self.resume_token) = server_hello.resume_token.clone();
        }
        Ok(Connected::new(framed, server_hello).with_peer(dialed.peer, T::NAME))
    }
}

impl<T: Transport + 'static> Connector for TunnelConnector<T> {
    type Io = SecureStream<T::Conn>;

    fn connect(
        &self,
        advised: &[String],
    ) -> impl Future<Output = Result<Connected<Self::Io>, ConnectError>> + Send {
        self.dial(advised)
    }
}

impl<T> fmt::Debug for TunnelConnector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelConnector")
            .field("transport", &std::any::type_name::<T>())
            .field("endpoints", &self.endpoints)
            .field("tls", &self.security.is_tls())
            .field("server_name", &self.server_name)
            .field("app_id", &self.hello.app_id)
            .field("device_id", &self.hello.device_id)
            .finish_non_exhaustive()
    }
}

/// Any byte stream a [`BoxConnector`] can carry.
pub trait AsyncIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncIo for T {}

/// A boxed byte stream.
pub type BoxIo = Box<dyn AsyncIo>;

type BoxConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Connected<BoxIo>, ConnectError>> + Send + 'a>>;

/// Object-safe form of [`Connector`].
trait DynConnector: Send + Sync + 'static {
    fn connect_boxed<'a>(&'a self, advised: &'a [String]) -> BoxConnectFuture<'a>;
}

impl<C: Connector> DynConnector for C {
    fn connect_boxed<'a>(&'a self, advised: &'a [String]) -> BoxConnectFuture<'a> {
        Box::pin(async move {
            let connected = self.connect(advised).await?;
            Ok(connected.map_io(|io| Box::new(io) as BoxIo))
        })
    }
}

/// A type-erased, cheaply cloneable [`Connector`] (TCP, TLS and QUIC
/// connectors behind one type), for APIs that must not be generic over the
/// transport. Costs one allocation per dial and a virtual call per read and
/// write.
#[derive(Clone)]
pub struct BoxConnector(Arc<dyn DynConnector>);

impl BoxConnector {
    /// Erases `connector`.
    pub fn new(connector: impl Connector) -> Self {
        Self(Arc::new(connector))
    }
}

impl Connector for BoxConnector {
    type Io = BoxIo;

    async fn connect(&self, advised: &[String]) -> Result<Connected<Self::Io>, ConnectError> {
        self.0.connect_boxed(advised).await
    }
}

impl fmt::Debug for BoxConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxConnector").finish_non_exhaustive()
    }
}

//! A small accept loop: tunnelkit acceptor → TLS or plain → tunnel
//! handshake → the gateway's decision on the hello → a [`ServerDriver`] per
//! connection, handed to the gateway as a [`ServerConnection`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use proto::tunnel::{ClientHello, ErrorCode, ReconnectAdvice, ServerHello};
use tntunnel::{ServerSecurity, TunnelConfig};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;
use tunnelkit::{Acceptor, Listener};

use super::admission::{Admission, Handshaken, Refusal, TunnelHandler, run_accept_loop};
use super::config::DriverConfig;
use super::server::{ServerDriver, ServerEvents, ServerHandle};
use crate::{ServerChannel, ServerConfig};

/// What the gateway decides about a client hello.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HelloDecision {
    /// Accept with this hello. An empty connection token is replaced by a
    /// fresh random one; zero heartbeat fields are filled from the
    /// [`ServerConfig`].
    Accept(ServerHello),
    /// Refuse with a close frame.
    Reject {
        /// The close code (e.g. `UNKNOWN_APP`, `OVERLOADED`).
        code: ErrorCode,
        /// The detail.
        message: String,
    },
}

impl HelloDecision {
    /// Accept with the defaults.
    pub fn accept() -> Self {
        Self::Accept(ServerHello::default())
    }

    /// Refuse with `code`.
    pub fn reject(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Reject {
            code,
            message: message.into(),
        }
    }
}

/// What is known about an accepted connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's address.
    pub local: Option<SocketAddr>,
    /// `"tcp"` or `"quic"`.
    pub transport: &'static str,
    /// Whether TLS protects the tunnel (QUIC always encrypts; this says
    /// whether the tunnel itself runs TLS).
    pub tls: bool,
    /// The connection token sent in the server hello (empty until the
    /// hello is accepted).
    pub connection_token: String,
    /// The client's hello.
    pub hello: ClientHello,
}

/// An established connection, its driver running: the gateway keeps the
/// handle and consumes the events.
#[derive(Debug)]
#[non_exhaustive]
pub struct ServerConnection {
    /// Answers and pushes.
    pub handle: ServerHandle,
    /// The connection's events (bounded; see [`ServerEvents`]).
    pub events: ServerEvents,
    /// Peer, transport, token, hello.
    pub info: ConnectionInfo,
}

/// Settings of [`spawn_accept_loop`].
#[derive(Clone, Debug)]
pub struct AcceptOptions {
    security: ServerSecurity,
    tunnel: Arc<TunnelConfig>,
    server: Arc<ServerConfig>,
    driver: DriverConfig,
    backlog: usize,
    overload_advice: ReconnectAdvice,
}

impl AcceptOptions {
    /// Default tunnel, channel and driver settings, 64 established
    /// connections waiting for the gateway, and over-limit clients advised
    /// to reconnect after 1 to 10 s.
    pub fn new(security: ServerSecurity) -> Self {
        Self {
            security,
            tunnel: Arc::new(TunnelConfig::default()),
            server: Arc::new(ServerConfig::default()),
            driver: DriverConfig::default(),
            backlog: 64,
            overload_advice: ReconnectAdvice {
                min_delay_ms: 1_000,
                max_delay_ms: 10_000,
                endpoints: Vec::new(),
            },
        }
    }

    /// The reconnect advice in the `CLOSE OVERLOADED` refusal of plain
    /// connections over the acceptor's limit.
    #[must_use]
    pub fn overload_advice(mut self, advice: ReconnectAdvice) -> Self {
        self.overload_advice = advice;
        self
    }

    /// The tunnel settings (frame limit, handshake timeout, compression).
    #[must_use]
    pub fn tunnel(mut self, config: Arc<TunnelConfig>) -> Self {
        self.tunnel = config;
        self
    }

    /// The channel settings (heartbeat advertised, idle timeout, windows).
    #[must_use]
    pub fn server(mut self, config: Arc<ServerConfig>) -> Self {
        self.server = config;
        self
    }

    /// The driver settings.
    #[must_use]
    pub fn driver(mut self, config: DriverConfig) -> Self {
        self.driver = config;
        self
    }

    /// Established connections queued for the gateway (at least 1). While
    /// the queue is full, new connections wait after their handshake.
    #[must_use]
    pub fn backlog(mut self, backlog: usize) -> Self {
        self.backlog = backlog.max(1);
        self
    }
}

/// A running accept loop (see [`spawn_accept_loop`]).
///
/// It owns the listener and every connection task: dropping it (or
/// [`abort`](Self::abort)) closes the listening socket and drops every
/// connection at once, without close frames, like a crashed server. For a
/// graceful shutdown, shut the `Acceptor` down through its
/// `AcceptorHandle`, send `go_away` on the connections, and wait for them.
#[derive(Debug)]
pub struct AcceptLoop {
    connections: mpsc::Receiver<ServerConnection>,
    task: JoinHandle<()>,
    local_addr: Option<SocketAddr>,
}

impl AcceptLoop {
    /// The next established connection; `None` once the loop ended (the
    /// listener failed or was shut down, and no handshake is in progress).
    pub async fn next(&mut self) -> Option<ServerConnection> {
        self.connections.recv().await
    }

    /// The listening address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Drops the listener and every connection at once.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Waits for the loop to end (after [`abort`](Self::abort), or once the
    /// listener failed or was shut down and the connections finished); the
    /// listening socket is closed then. Call it once.
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections from `acceptor` in a task of its own, through the
/// shared admission loop ([`run_accept_loop`]): each admitted connection
/// gets a task (instrumented with a `conn` span) that secures it, runs the
/// tunnel handshake, asks `decide` about the client's hello, and then runs
/// the connection's [`ServerDriver`], after handing the gateway a
/// [`ServerConnection`] through [`AcceptLoop::next`].
///
/// Connections over the acceptor's limit are refused before any handshake
/// work (see [`Refusal`](super::Refusal)): a plain connection gets
/// `CLOSE OVERLOADED` with the [`AcceptOptions::overload_advice`], a TLS one
/// is closed. The loop ends when the listener fails or is shut down
/// (`AcceptorHandle::shutdown`); running connections continue until they
/// close.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn spawn_accept_loop<L, D>(
    acceptor: Acceptor<L>,
    options: AcceptOptions,
    decide: D,
) -> AcceptLoop
where
    L: Listener,
    D: Fn(&ClientHello, &ConnectionInfo) -> HelloDecision + Send + Sync + 'static,
{
    let (tx, connections) = mpsc::channel(options.backlog);
    let local_addr = acceptor.local_addr().and_then(Result::ok);
    let span = tracing::debug_span!("accept", local.addr = ?local_addr, transport = L::NAME);
    let admission = Admission::new(
        options.security.clone(),
        Arc::clone(&options.tunnel),
        Refusal::overloaded(options.overload_advice.clone()),
    );
    let handler = Arc::new(ChannelHandler {
        options,
        decide,
        tx,
        local: local_addr,
        transport: L::NAME,
    });
    let task = tokio::spawn(run_accept_loop(acceptor, admission, handler).instrument(span));
    AcceptLoop {
        connections,
        task,
        local_addr,
    }
}

/// The hello decision and the [`ServerDriver`] of [`spawn_accept_loop`].
struct ChannelHandler<D> {
    options: AcceptOptions,
    decide: D,
    tx: mpsc::Sender<ServerConnection>,
    local: Option<SocketAddr>,
    transport: &'static str,
}

impl<C, D> TunnelHandler<C> for ChannelHandler<D>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    D: Fn(&ClientHello, &ConnectionInfo) -> HelloDecision + Send + Sync + 'static,
{
    async fn hello(&self, tunnel: Handshaken<C>) {
        let Handshaken {
            incoming,
            mut guard,
            peer,
            ..
        } = tunnel;
        let mut info = ConnectionInfo {
            peer,
            local: self.local,
            transport: self.transport,
            tls: self.options.security.is_tls(),
            connection_token: String::new(),
            hello: incoming.hello().clone(),
        };
        let mut hello = match (self.decide)(incoming.hello(), &info) {
            HelloDecision::Accept(hello) => hello,
            HelloDecision::Reject { code, message } => {
                tracing::debug!(?code, %message, "hello refused");
                if let Err(error) = incoming.reject(code, message).await {
                    tracing::debug!(%error, "could not send the refusal");
                }
                return;
            }
        };
        if hello.connection_token.is_empty() {
            hello.connection_token = tntunnel::new_connection_token()
                .unwrap_or_else(|| format!("{:032x}", fastrand::u128(..)));
        }
        if hello.heartbeat_interval_ms == 0 && hello.heartbeat_timeout_ms == 0 {
            self.options.server.fill_hello(&mut hello);
        }
        info.connection_token.clone_from(&hello.connection_token);
        let framed = match incoming.accept(hello).await {
            Ok(framed) => framed,
            Err(error) => {
                tracing::debug!(%error, "could not send the server hello");
                return;
            }
        };
        guard.finish_handshake();
        tracing::debug!(token = %info.connection_token, device = %info.hello.device_id, "established");
        let now = tokio::time::Instant::now().into_std();
        let channel = ServerChannel::new(Arc::clone(&self.options.server), info.hello.clone(), now);
        let (driver, handle, events) = ServerDriver::new(framed, channel, &self.options.driver);
        let connection = ServerConnection {
            handle,
            events,
            info,
        };
        if self.tx.send(connection).await.is_err() {
            return;
        }
        driver.await;
        drop(guard);
        tracing::debug!("connection finished");
    }
}

impl fmt::Display for ConnectionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {}{} (device {:?}, token {})",
            self.peer,
            self.transport,
            if self.tls { "+tls" } else { "" },
            self.hello.device_id,
            self.connection_token
        )
    }
}

//! [`Gateway`]: listeners, handshakes and the accept loops; serving and
//! graceful shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use pike_channel::{
    Admission, AdmissionError, Handshaken, Refusal, TunnelHandler, run_accept_loop,
};
use proto::tunnel::{ErrorCode, ReconnectAdvice, ServerHello};
use tntunnel::tls::TlsServerConfig;
use tntunnel::{SecureStream, ServerSecurity};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;
use tower::Service;
use tunnelkit::{
    Acceptor, AcceptorConfig, AcceptorLimits, HandedListener, Listener, QuicConfig, QuicListener,
    TcpListener,
};

use super::auth::{AllowAll, AuthError, BoxAuthenticator, LoginGrant, LoginRequest};
use super::clock::unix_ms;
use super::config::GatewayConfig;
use super::connection::{self, Accepted, release_idle_buffers};
use super::engine::{Engine, EngineFactory};
use super::hub::Hub;
use super::push::PushHandle;
use super::receipts::ReceiptHook;
use super::registry::ConnCommand;
use super::store::{MemoryStore, Store};
use super::uplink::{NoUplink, UplinkHandler};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({transport}): {message}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `tcp`, `tls` or `quic`.
        transport: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A setting is out of bounds.
    #[error("invalid gateway configuration: {0}")]
    Config(String),
}

/// Builds a [`Gateway`]. Consuming: each call returns the builder.
#[must_use]
pub struct GatewayBuilder {
    tcp: Vec<SocketAddr>,
    tls: Vec<(SocketAddr, TlsServerConfig)>,
    quic: Vec<(SocketAddr, TlsServerConfig)>,
    handed: Vec<(&'static str, HandedListener)>,
    engine: Option<EngineFactory>,
    auth: Option<BoxAuthenticator>,
    uplink: Option<Arc<dyn UplinkHandler>>,
    config: GatewayConfig,
    known_apps: Option<HashSet<String>>,
    receipts: Option<Arc<dyn ReceiptHook>>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.iter().map(|(a, _)| a).collect::<Vec<_>>())
            .field(
                "quic",
                &self.quic.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// Serves plain TCP on `addr` (port 0 picks a free port).
    pub fn tcp(mut self, addr: SocketAddr) -> Self {
        self.tcp.push(addr);
        self
    }

    /// Serves TLS 1.3 over TCP on `addr`.
    pub fn tls(mut self, addr: SocketAddr, tls: TlsServerConfig) -> Self {
        self.tls.push((addr, tls));
        self
    }

    /// Serves QUIC on `addr` with the TLS identity `tls`.
    pub fn quic(mut self, addr: SocketAddr, tls: TlsServerConfig) -> Self {
        self.quic.push((addr, tls));
        self
    }

    /// Serves the connections handed to `listener` (see
    /// [`tunnelkit::handed_listener`]): byte streams another server
    /// accepted, such as WebSocket upgrades of an HTTP server carrying
    /// whole Pike frames. They pass the same admission as a socket
    /// listener's (connection limit, handshake bound and timeout, the
    /// hello); `transport` names them in metrics and logs (e.g. `"ws"`).
    /// Their security is the other server's: the tunnel runs plain.
    pub fn handed(mut self, transport: &'static str, listener: HandedListener) -> Self {
        self.handed.push((transport, listener));
        self
    }

    /// The store of the single-node engine (default: [`MemoryStore`], not
    /// durable). Replaces an [`engine`](Self::engine) set before.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.engine = Some(Box::new(move |node| Engine::embedded(store, node)));
        self
    }

    /// Another engine than the single-node one, e.g. a cluster's: `factory`
    /// builds it from the gateway's [`NodeSink`](super::engine::NodeSink),
    /// through which the engine hands live traffic to this node.
    /// Replaces a [`store`](Self::store) set before.
    pub fn engine(
        mut self,
        factory: impl FnOnce(Arc<dyn super::engine::NodeSink>) -> Engine + Send + 'static,
    ) -> Self {
        self.engine = Some(Box::new(factory));
        self
    }

    /// The login authenticator, any `tower::Service` (wrap it in tower
    /// layers for timeouts and concurrency limits). Default: [`AllowAll`].
    pub fn authenticator<S>(mut self, service: S) -> Self
    where
        S: Service<LoginRequest, Response = LoginGrant, Error = AuthError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.auth = Some(BoxAuthenticator::new(service));
        self
    }

    /// Where uplink goes (default: [`NoUplink`], which refuses it).
    pub fn uplink(mut self, handler: Arc<dyn UplinkHandler>) -> Self {
        self.uplink = Some(handler);
        self
    }

    /// Gateway settings.
    pub fn config(mut self, config: GatewayConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves only these app ids; others are refused at the hello with
    /// `UNKNOWN_APP` (default: any app id).
    pub fn apps(mut self, apps: impl IntoIterator<Item = String>) -> Self {
        self.known_apps = Some(apps.into_iter().collect());
        self
    }

    /// Reports deliveries, acks and logins of receipt pushes to `hook`
    /// (`docs/receipts.md`). Default none: nothing is called.
    pub fn receipts(mut self, hook: Arc<dyn ReceiptHook>) -> Self {
        self.receipts = Some(hook);
        self
    }

    /// Binds every listener.
    pub async fn bind(self) -> Result<Gateway, GatewayError> {
        let mut acceptor = AcceptorConfig::default();
        acceptor
            .max_connections(self.config.max_connections)
            .max_handshakes(Some(self.config.max_handshakes));
        let limits =
            AcceptorLimits::new(&acceptor).map_err(|e| GatewayError::Config(e.to_string()))?;
        let hub = Hub::new(
            self.engine.unwrap_or_else(|| {
                Box::new(|node| Engine::embedded(Arc::new(MemoryStore::new()), node))
            }),
            self.auth.unwrap_or_else(|| BoxAuthenticator::new(AllowAll)),
            self.uplink.unwrap_or_else(|| Arc::new(NoUplink)),
            self.config,
            self.known_apps,
            self.receipts,
        );
        let hub = Arc::new(hub);
        let bind_error = |addr, transport, e: &dyn std::fmt::Display| GatewayError::Bind {
            addr,
            transport,
            message: e.to_string(),
        };
        let mut listeners = Vec::new();
        for addr in self.tcp {
            let listener = TcpListener::bind(addr).map_err(|e| bind_error(addr, "tcp", &e))?;
            listeners.push(Bound::Tcp(listener, ServerSecurity::Plain, "tcp"));
        }
        for (addr, tls) in self.tls {
            let listener = TcpListener::bind(addr).map_err(|e| bind_error(addr, "tls", &e))?;
            listeners.push(Bound::Tcp(listener, ServerSecurity::Tls(tls), "tls"));
        }
        for (addr, tls) in self.quic {
            let listener = QuicListener::bind(addr, tls.rustls_config(), &QuicConfig::default())
                .map_err(|e| bind_error(addr, "quic", &e))?;
            listeners.push(Bound::Quic(listener));
        }
        for (transport, listener) in self.handed {
            listeners.push(Bound::Handed(listener, transport));
        }
        Ok(Gateway {
            hub,
            listeners,
            limits,
        })
    }
}

enum Bound {
    Tcp(TcpListener, ServerSecurity, &'static str),
    Quic(QuicListener),
    Handed(HandedListener, &'static str),
}

/// A bound gateway, ready to serve.
pub struct Gateway {
    hub: Arc<Hub>,
    listeners: Vec<Bound>,
    limits: AcceptorLimits,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listening", &self.local_addrs())
            .field("hub", &self.hub)
            .finish()
    }
}

impl Gateway {
    /// A builder with no listener, an in-memory store, every login allowed
    /// and no uplink backend.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            tcp: Vec::new(),
            tls: Vec::new(),
            quic: Vec::new(),
            handed: Vec::new(),
            engine: None,
            auth: None,
            uplink: None,
            config: GatewayConfig::default(),
            known_apps: None,
            receipts: None,
        }
    }

    /// A handle to push and to query presence and traces.
    pub fn push_handle(&self) -> PushHandle {
        PushHandle {
            hub: self.hub.clone(),
        }
    }

    /// The connection and handshake limits every listener shares, with
    /// their counters (handshakes in progress, connections refused over the
    /// limit). Cheap to clone; stays valid while the gateway serves.
    pub fn admission(&self) -> AcceptorLimits {
        self.limits.clone()
    }

    /// Where the listeners are: (`tcp` | `tls` | `quic`, address).
    pub fn local_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|l| match l {
                Bound::Tcp(l, _, name) => l.local_addr().ok().map(|a| (*name, a)),
                Bound::Quic(l) => l.local_addr().ok().map(|a| ("quic", a)),
                // Not a socket of the gateway's: another server's.
                Bound::Handed(..) => None,
            })
            .collect()
    }

    /// Serves until `shutdown` resolves, then drains: stops accepting,
    /// tells every client to reconnect elsewhere after a jittered delay
    /// (go-away), waits for them to leave (up to the shutdown grace), and
    /// closes the rest.
    pub async fn serve_with_shutdown(self, shutdown: impl Future<Output = ()>) {
        let tracker = TaskTracker::new();
        let tunnel = Arc::new(self.hub.config.tunnel.clone());
        let refusal = overload_refusal(&self.hub.config);
        for bound in self.listeners {
            let handler = |transport| {
                Arc::new(GatewayTunnels {
                    hub: self.hub.clone(),
                    transport,
                    conns: tracker.clone(),
                    limits: self.limits.clone(),
                })
            };
            match bound {
                Bound::Tcp(listener, security, name) => {
                    let acceptor =
                        Acceptor::with_limits(listener, &self.limits, &self.hub.shutdown);
                    let admission = Admission::new(security, tunnel.clone(), refusal.clone());
                    tracker.spawn(run_accept_loop(acceptor, admission, handler(name)));
                }
                Bound::Quic(listener) => {
                    let acceptor =
                        Acceptor::with_limits(listener, &self.limits, &self.hub.shutdown);
                    let admission =
                        Admission::new(ServerSecurity::Plain, tunnel.clone(), refusal.clone());
                    tracker.spawn(run_accept_loop(acceptor, admission, handler("quic")));
                }
                Bound::Handed(listener, name) => {
                    let acceptor =
                        Acceptor::with_limits(listener, &self.limits, &self.hub.shutdown);
                    let admission =
                        Admission::new(ServerSecurity::Plain, tunnel.clone(), refusal.clone());
                    tracker.spawn(run_accept_loop(acceptor, admission, handler(name)));
                }
            }
        }
        shutdown.await;
        tracing::info!(
            connections = self.hub.registry.len(),
            "shutting down: draining connections"
        );
        self.hub.shutdown.cancel();
        let (min, max) = self.hub.config.drain_delay;
        let advice = ReconnectAdvice {
            min_delay_ms: u32::try_from(min.as_millis()).unwrap_or(u32::MAX),
            max_delay_ms: u32::try_from(max.as_millis()).unwrap_or(u32::MAX),
            endpoints: Vec::new(),
        };
        for sender in self.hub.registry.all_senders() {
            let _ = sender.try_send(ConnCommand::GoAway {
                advice: advice.clone(),
            });
        }
        tracker.close();
        if tokio::time::timeout(self.hub.config.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            for sender in self.hub.registry.all_senders() {
                let _ = sender.try_send(ConnCommand::Close {
                    code: ErrorCode::GoingAway,
                    message: "the gateway is shutting down".into(),
                });
            }
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tracker.wait()).await;
        }
    }

    /// Serves until the process ends.
    pub async fn serve(self) {
        self.serve_with_shutdown(std::future::pending()).await;
    }
}

/// The gateway's side of the shared admission loop
/// ([`pike_channel::run_accept_loop`]) for one listener: the hello
/// decision, then a task of the connection's own.
struct GatewayTunnels {
    hub: Arc<Hub>,
    transport: &'static str,
    conns: TaskTracker,
    limits: AcceptorLimits,
}

impl GatewayTunnels {
    /// Updates the `pike_handshakes_in_progress` gauge (on every handshake
    /// outcome).
    fn report(&self) {
        metrics::gauge!(crate::server::metric_families::HANDSHAKES_IN_PROGRESS)
            .set(self.limits.handshakes_in_progress() as f64);
    }
}

impl<C> TunnelHandler<C> for GatewayTunnels
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn hello(&self, tunnel: Handshaken<C>) {
        let peer = tunnel.peer;
        match decide(&self.hub, tunnel, self.transport).await {
            // The handshake ran in a task of its own; the connection gets
            // another, sized for the connection alone, not also for the
            // handshake's state (TLS, the hello exchange and its timeout:
            // several KiB per connection).
            Ok(Some(accepted)) => {
                self.conns
                    .spawn(connection::run(self.hub.clone(), Box::new(accepted)));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, %peer, transport = self.transport, "handshake failed");
                metrics::counter!(crate::server::metric_families::HANDSHAKE_FAILURES_TOTAL, "transport" => self.transport)
                    .increment(1);
            }
        }
        self.report();
    }

    fn handshake_failed(&self, _peer: SocketAddr, _error: &AdmissionError) {
        metrics::counter!(crate::server::metric_families::HANDSHAKE_FAILURES_TOTAL, "transport" => self.transport)
            .increment(1);
        self.report();
    }

    fn refused(&self, _peer: SocketAddr) {
        metrics::counter!(crate::server::metric_families::CONNECTIONS_REFUSED_TOTAL, "reason" => "overloaded").increment(1);
        self.report();
    }
}

/// Decides about a client's hello: the connection to run, or `None` when
/// it was refused (and told so).
async fn decide<C>(
    hub: &Hub,
    tunnel: Handshaken<C>,
    transport: &'static str,
) -> Result<Option<Accepted<SecureStream<C>>>, Box<dyn std::error::Error + Send + Sync>>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Handshaken {
        incoming,
        mut guard,
        peer,
        ..
    } = tunnel;
    let app = incoming.hello().app_id.clone();
    if hub.shutdown.is_cancelled() {
        incoming
            .reject(ErrorCode::GoingAway, "the gateway is shutting down")
            .await?;
        return Ok(None);
    }
    if !hub.app_known(&app) {
        metrics::counter!(crate::server::metric_families::CONNECTIONS_REFUSED_TOTAL, "reason" => "unknown_app").increment(1);
        incoming
            .reject(ErrorCode::UnknownApp, format!("unknown app {app:?}"))
            .await?;
        return Ok(None);
    }
    let token = tntunnel::new_connection_token().ok_or("the system random source failed")?;
    let mut hello = ServerHello {
        connection_token: token.clone(),
        server_time_ms: unix_ms(),
        ..ServerHello::default()
    };
    hub.config.channel.fill_hello(&mut hello);
    // The crash-reconnect window, sized by the connections held now.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let window = hub
        .config
        .reconnect_spread
        .window(hub.registry.len() + 1, workers);
    hello.reconnect = Some(ReconnectAdvice {
        min_delay_ms: 0,
        max_delay_ms: u32::try_from(window.as_millis()).unwrap_or(u32::MAX),
        endpoints: Vec::new(),
    });
    let client_hello = incoming.hello().clone();
    let mut framed = incoming.accept(hello).await?;
    guard.finish_handshake();
    release_idle_buffers(&mut framed);
    Ok(Some(Accepted {
        framed: Box::new(framed),
        hello: client_hello,
        token,
        peer,
        transport,
        guard,
    }))
}

/// The refusal of connections over the connection limit: `OVERLOADED`
/// with a reconnect window sized like the crash-reconnect window of a full
/// gateway (`max_connections × 1.5 / handshake rate`, 1 to 60 s by
/// default), so that refused clients come back spread out.
fn overload_refusal(config: &GatewayConfig) -> Refusal {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let spread = &config.reconnect_spread;
    let millis = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    Refusal::overloaded(ReconnectAdvice {
        min_delay_ms: millis(spread.window(0, workers)),
        max_delay_ms: millis(spread.window(config.max_connections.unwrap_or(0), workers)),
        endpoints: Vec::new(),
    })
}

//! What `listen`, `send` and `room` share: connecting as a device and
//! logging a business in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use pike_api::{ChannelProxy, ClientEvent, ClientOptions, PikeClient, StopReason};
use pike_channel::{BoxConnector, TunnelConnector};
use proto::tunnel::ClientHello;
use tntunnel::ClientSecurity;
use tntunnel::tls::TlsClientConfig;
use tunnelkit::{Dialer, DialerConfig, QuicConfig, QuicTransport, TcpConfig, TcpTransport};

use super::{Common, Failure, refusal, split_scoped, timeout_secs, token_secret};
use crate::data_dir::DataDir;
use crate::token::{Claims, mint};

/// How to reach the gateway's client port.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub(crate) enum Transport {
    /// Plain TCP (default port 9300).
    Tcp,
    /// TLS 1.3 over TCP (default port 9301).
    Tls,
    /// QUIC (default port 9302).
    Quic,
    /// WebSocket (`GET /v1/ws` on the HTTP listener, default port 9380).
    Ws,
}

impl Transport {
    /// The name `--transport` takes.
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Quic => "quic",
            Self::Ws => "ws",
        }
    }
}

/// Options of a device connection.
#[derive(Debug, Args)]
pub(crate) struct DeviceArgs {
    /// The business and alias to log in as, BIZ:ALIAS.
    #[arg(long, env = "PIKE_ALIAS")]
    pub(crate) alias: String,
    /// Device id (default: a stable id kept in the data dir, like an
    /// installed app's).
    #[arg(long, env = "PIKE_DEVICE")]
    device: Option<String>,
    /// Transport.
    #[arg(long, value_enum, env = "PIKE_TRANSPORT", default_value = "tcp")]
    transport: Transport,
    /// Gateway address(es), raced in order (default: 127.0.0.1 and the
    /// transport's default port).
    #[arg(long, env = "PIKE_SERVER", value_delimiter = ',')]
    server: Vec<SocketAddr>,
    /// Credential (default: minted with the token secret, bound to the
    /// device id).
    #[arg(long, env = "PIKE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The app's token secret (default: the dev app's, from the data dir).
    #[arg(long, env = "PIKE_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// CA certificate (PEM) for TLS and QUIC (default: the gateway's
    /// self-signed certificate in the data dir).
    #[arg(long, env = "PIKE_CA")]
    ca: Option<PathBuf>,
    /// TLS server name.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Seconds to wait for the gateway: to connect and log in, then for
    /// each answer (binding tags, joining a room); 1 to 86400.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = timeout_secs)]
    connect_timeout: Duration,
}

/// How a command logs in.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum LoginKind {
    /// A device that receives the alias's messages (`listen`, `room`).
    Receiving,
    /// A send-only login (`send`): no downlink recipient, resuming the
    /// route id saved by an earlier run (empty: none).
    SendOnly {
        /// The saved route id.
        route_id: String,
    },
}

/// A started, running client.
pub(crate) struct Device {
    pub(crate) client: PikeClient,
    pub(crate) biz: String,
    pub(crate) alias: String,
    /// The route id the login was granted (empty: the gateway has no
    /// uplink route for the business).
    pub(crate) route_id: String,
    /// How long to wait for each answer of the gateway (`--connect-timeout`).
    pub(crate) timeout: Duration,
    /// Keeps the channel alive.
    _proxy: ChannelProxy,
}

impl DeviceArgs {
    /// Connects, logs in as a receiving device and waits for `Running` (or
    /// a refusal).
    pub(crate) async fn connect(&self, common: &Common) -> Result<Device, Failure> {
        self.connect_as(common, LoginKind::Receiving).await
    }

    /// Connects, logs in as `kind` and waits for `Running` (or a refusal).
    pub(crate) async fn connect_as(
        &self,
        common: &Common,
        kind: LoginKind,
    ) -> Result<Device, Failure> {
        let (biz, alias) = split_scoped(&self.alias, "--alias").map_err(Failure::usage)?;
        let data = DataDir::existing(&common.data_dir);
        // The credentials first: run in the wrong directory, the CLI says so
        // before it writes a device id anywhere.
        let secret = match &self.token {
            Some(_) => None,
            None => Some(token_secret(common, self.token_secret.as_deref())?),
        };
        let device_id = match &self.device {
            Some(id) => id.clone(),
            None => data
                .cli_device_id()
                .map_err(|e| Failure::failed(e.to_string()))?,
        };
        let credential = match (&self.token, secret) {
            (Some(token), _) => token.clone(),
            (None, secret) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                // Bound to this device: it receives the device's pushes.
                mint(
                    &Claims::new(&common.app, &biz, &alias, now, 86_400)
                        .with_device(device_id.clone()),
                    secret.unwrap_or_default().as_bytes(),
                )
            }
        };
        let servers = if self.server.is_empty() {
            let port = match self.transport {
                Transport::Tcp => 9300,
                Transport::Tls => 9301,
                Transport::Quic => 9302,
                Transport::Ws => 9380,
            };
            vec![SocketAddr::from(([127, 0, 0, 1], port))]
        } else {
            self.server.clone()
        };
        let hello = ClientHello {
            app_id: common.app.clone(),
            device_id,
            sdk_name: "pike-cli".into(),
            sdk_version: env!("CARGO_PKG_VERSION").into(),
            ..ClientHello::default()
        };
        let targets = servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let connector = self.connector(&data, servers, hello).await?;
        let proxy = ChannelProxy::new(connector);
        let options = match kind {
            LoginKind::Receiving => ClientOptions::new(&biz, &alias, credential),
            LoginKind::SendOnly { route_id } => ClientOptions::new(&biz, &alias, credential)
                .send_only()
                .resume(route_id, 0),
        };
        let client = proxy
            .client(options)
            .map_err(|e| Failure::failed(e.to_string()))?;
        client.start();
        let mut problem = None;
        let started = tokio::time::timeout(self.connect_timeout, async {
            loop {
                match client.next_event().await {
                    Some(ClientEvent::Running { route_id }) => return Ok(route_id),
                    Some(ClientEvent::OnStop { reason }) => return Err(reason),
                    Some(ClientEvent::Disconnected { reason }) => {
                        problem = Some(format!("{reason:?}"));
                    }
                    Some(ClientEvent::Reconnecting { attempt, delay }) => {
                        eprintln!(
                            "pike: cannot reach the gateway at {targets} yet (attempt {attempt}{}), retrying in {delay:?}",
                            problem
                                .as_deref()
                                .map_or(String::new(), |p| format!(": {p}"))
                        );
                    }
                    Some(_) => {}
                    None => return Err(StopReason::ChannelClosed),
                }
            }
        })
        .await;
        match started {
            Ok(Ok(route_id)) => {
                eprintln!(
                    "pike: logged in as {biz}:{alias} on app {}{}",
                    common.app,
                    if route_id.is_empty() {
                        String::new()
                    } else {
                        format!(" (route {route_id})")
                    }
                );
                Ok(Device {
                    client,
                    biz,
                    alias,
                    route_id,
                    timeout: self.connect_timeout,
                    _proxy: proxy,
                })
            }
            Ok(Err(reason)) => Err(refusal::stopped(reason)),
            Err(_) => Err(Failure::unreachable(format!(
                "no login within {} s: the gateway at {targets} ({}) did not answer{} (is it running? see --server, --transport)",
                self.connect_timeout.as_secs(),
                self.transport.name(),
                problem.map_or(String::new(), |p| format!("; last problem: {p}"))
            ))),
        }
    }

    async fn connector(
        &self,
        data: &DataDir,
        servers: Vec<SocketAddr>,
        hello: ClientHello,
    ) -> Result<BoxConnector, Failure> {
        let tls = || async {
            let ca = self
                .ca
                .clone()
                .unwrap_or_else(|| data.root().join("tls").join("cert.pem"));
            TlsClientConfig::with_ca_pem_file(&ca).await.map_err(|e| {
                Failure::usage(format!("TLS trust from {}: {e} (pass --ca)", ca.display()))
            })
        };
        let failed = |e: &dyn std::fmt::Display| Failure::failed(e.to_string());
        Ok(match self.transport {
            Transport::Tcp | Transport::Tls => {
                let transport = TcpTransport::new(TcpConfig::default()).map_err(|e| failed(&e))?;
                let dialer =
                    Dialer::new(transport, DialerConfig::default()).map_err(|e| failed(&e))?;
                let connector = TunnelConnector::new(dialer, servers, hello);
                if self.transport == Transport::Tls {
                    let tls = tls().await?;
                    BoxConnector::new(
                        connector.security(ClientSecurity::Tls(tls), self.server_name.clone()),
                    )
                } else {
                    BoxConnector::new(connector)
                }
            }
            Transport::Quic => {
                let tls = tls().await?;
                let transport = QuicTransport::new(
                    tls.rustls_config(),
                    self.server_name.clone(),
                    &QuicConfig::default(),
                )
                .map_err(|e| failed(&e))?;
                let dialer =
                    Dialer::new(transport, DialerConfig::default()).map_err(|e| failed(&e))?;
                BoxConnector::new(TunnelConnector::new(dialer, servers, hello))
            }
            Transport::Ws => {
                let transport = TcpTransport::new(TcpConfig::default()).map_err(|e| failed(&e))?;
                let dialer =
                    Dialer::new(transport, DialerConfig::default()).map_err(|e| failed(&e))?;
                BoxConnector::new(super::ws_connector::WsConnector::new(
                    dialer, servers, hello,
                ))
            }
        })
    }
}

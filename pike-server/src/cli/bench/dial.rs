//! How the generator reaches the gateway: plain TCP, TLS 1.3 over TCP or
//! QUIC, with the server's certificate pinned by its SHA-256 fingerprint
//! (or trusted through a CA file).
//!
//! - TCP and TLS dial from the source addresses with
//!   `IP_BIND_ADDRESS_NO_PORT` (one shared [`TcpTransport`]), so ephemeral
//!   ports never run out.
//! - QUIC multiplexes every connection of a transport on one UDP socket
//!   (quinn's client endpoint, bound to `0.0.0.0:0`), so ports do not run
//!   out and source addresses do not apply; instead the devices are spread
//!   over `--sources` transports, i.e. that many UDP sockets and endpoint
//!   drivers, so one socket does not carry the whole fleet.
//!
//! TLS session resumption is off: every connection makes a full handshake,
//! like a device's first connect, and like every device after a gateway
//! restart (the new process does not know the old tickets).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use pike_channel::proto::tunnel::ClientHello;
use pike_channel::{ClientConfig, ClientHandle, DriverConfig, TunnelConnector, spawn_client};
use tntunnel::ClientSecurity;
use tntunnel::tls::{Fingerprint, TlsClientConfig};
use tunnelkit::{Dialer, DialerConfig, QuicConfig, QuicTransport, TcpConfig, TcpTransport};

use crate::cli::device::Transport;
use crate::cli::{Common, Failure};
use crate::data_dir::DataDir;

/// Transport options of the generator's connections.
#[derive(Debug, Args)]
pub(crate) struct DialArgs {
    /// Transport; `--server` is then that listener's address (default:
    /// tcp; tls for `storm`).
    #[arg(long, value_enum)]
    pub(crate) transport: Option<Transport>,
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
}

/// How the gateway's certificate is trusted (TLS and QUIC).
#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// SHA-256 fingerprint of the gateway's certificate to pin (TLS and
    /// QUIC), hex with optional colons, as the gateway prints it.
    #[arg(long)]
    pub(crate) pin: Option<String>,
    /// CA certificate (PEM) to trust instead of a pin (default without
    /// `--pin`: the gateway's self-signed certificate in the data dir).
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,
    /// TLS server name (sent as SNI; ignored by a pin).
    #[arg(long, default_value = "localhost")]
    pub(crate) server_name: String,
}

impl TrustArgs {
    /// The TLS client configuration these options describe (pin, CA file,
    /// or the data dir's self-signed certificate), with session resumption
    /// off unless `resumption`.
    pub(crate) fn tls(
        &self,
        common: &Common,
        resumption: bool,
    ) -> Result<TlsClientConfig, Failure> {
        let base = match (&self.pin, &self.ca) {
            (Some(pin), _) => {
                let pin: Fingerprint = pin
                    .parse()
                    .map_err(|e| Failure::usage(format!("--pin: {e}")))?;
                TlsClientConfig::pinned([pin]).map_err(|e| Failure::usage(e.to_string()))?
            }
            (None, explicit) => {
                let ca = explicit.clone().unwrap_or_else(|| {
                    DataDir::existing(&common.data_dir)
                        .root()
                        .join("tls")
                        .join("cert.pem")
                });
                let trust = std::fs::read(&ca)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| TlsClientConfig::with_ca_pem(&pem).map_err(|e| e.to_string()));
                trust.map_err(|e| {
                    Failure::usage(format!(
                        "TLS trust from {}: {e} (pass --pin or --ca)",
                        ca.display()
                    ))
                })?
            }
        };
        if resumption {
            return Ok(base);
        }
        let mut rustls = (*base.rustls_config()).clone();
        rustls.resumption = rustls::client::Resumption::disabled();
        Ok(TlsClientConfig::from_rustls(Arc::new(rustls)))
    }
}

impl DialArgs {
    /// The transport asked for (TCP by default).
    pub(crate) fn transport(&self) -> Transport {
        self.transport.unwrap_or(Transport::Tcp)
    }

    /// The dialling plan: transports built once, shared by every device.
    pub(crate) fn dial(
        &self,
        common: &Common,
        sources: &[IpAddr],
        connect_timeout: Duration,
    ) -> Result<Dial, Failure> {
        let failed = |e: &dyn std::fmt::Display| Failure::failed(e.to_string());
        let transport = self.transport();
        let server_name = &self.trust.server_name;
        Ok(match transport {
            Transport::Tcp | Transport::Tls => {
                let mut tcp = TcpConfig::default();
                tcp.connect_timeout(Some(connect_timeout))
                    .source_ips(sources.iter().copied());
                let tcp = TcpTransport::new(tcp).map_err(|e| failed(&e))?;
                let tls = if transport == Transport::Tls {
                    Some((self.trust.tls(common, false)?, server_name.clone()))
                } else {
                    None
                };
                Dial::Tcp { tcp, tls }
            }
            Transport::Ws => {
                let mut tcp = TcpConfig::default();
                tcp.connect_timeout(Some(connect_timeout))
                    .source_ips(sources.iter().copied());
                Dial::Ws {
                    tcp: TcpTransport::new(tcp).map_err(|e| failed(&e))?,
                }
            }
            Transport::Quic => {
                let tls = self.trust.tls(common, false)?;
                let mut config = QuicConfig::default();
                config.handshake_timeout(connect_timeout);
                let count = sources.len().max(1);
                let transports = (0..count)
                    .map(|_| QuicTransport::new(tls.rustls_config(), server_name, &config))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| failed(&e))?;
                Dial::Quic { transports }
            }
        })
    }
}

/// The transports of a run.
#[derive(Debug)]
pub(crate) enum Dial {
    /// Plain TCP, or TLS over it when `tls` holds the client configuration
    /// and the server name.
    Tcp {
        tcp: TcpTransport,
        tls: Option<(TlsClientConfig, String)>,
    },
    /// QUIC; device `i` uses transport `i mod len` (one UDP socket each).
    Quic { transports: Vec<QuicTransport> },
    /// WebSocket (`GET /v1/ws`) over plain TCP.
    Ws { tcp: TcpTransport },
}

impl Dial {
    /// The transport's name, for reports.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Tcp { tls: None, .. } => "tcp",
            Self::Tcp { tls: Some(_), .. } => "tls",
            Self::Quic { .. } => "quic",
            Self::Ws { .. } => "ws",
        }
    }

    /// Spawns the client driver of device `index` (not started yet).
    pub(crate) fn spawn(
        &self,
        index: usize,
        server: SocketAddr,
        hello: ClientHello,
        channel: Arc<ClientConfig>,
        driver: &DriverConfig,
    ) -> Result<ClientHandle, String> {
        match self {
            Self::Tcp { tcp, tls } => {
                let dialer =
                    Dialer::new(tcp.clone(), DialerConfig::default()).map_err(|e| e.to_string())?;
                let connector = TunnelConnector::new(dialer, vec![server], hello);
                let connector = match tls {
                    Some((config, name)) => {
                        connector.security(ClientSecurity::Tls(config.clone()), name.clone())
                    }
                    None => connector,
                };
                Ok(spawn_client(channel, connector, driver))
            }
            Self::Quic { transports } => {
                let Some(transport) = transports.get(index % transports.len().max(1)) else {
                    return Err("no QUIC transport".to_owned());
                };
                let dialer = Dialer::new(transport.clone(), DialerConfig::default())
                    .map_err(|e| e.to_string())?;
                let connector = TunnelConnector::new(dialer, vec![server], hello);
                Ok(spawn_client(channel, connector, driver))
            }
            Self::Ws { tcp } => {
                let dialer =
                    Dialer::new(tcp.clone(), DialerConfig::default()).map_err(|e| e.to_string())?;
                let connector =
                    crate::cli::ws_connector::WsConnector::new(dialer, vec![server], hello);
                Ok(spawn_client(channel, connector, driver))
            }
        }
    }
}

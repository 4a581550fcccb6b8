//! MQTT 3.1.1 and 5.0 access (`docs/mqtt.md`): listeners whose connections
//! are translated, one task each, into Pike connections handed to the
//! gateway as the transport `mqtt`. The gateway's delivery engine, store
//! and checks serve them unchanged.

mod codec;
mod config;
mod envelope;
mod listener;
mod session;
mod subscriptions;
mod topics;
mod translate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tntunnel::TunnelConfig;
use tntunnel::tls::TlsServerConfig;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tunnelkit::HandedSender;

pub use self::config::{MAX_PACKET_SIZE_CEILING, MqttSection};
pub use self::envelope::{ENVELOPE_PREFIX, MAX_MESSAGE_ID_LEN};
pub use self::subscriptions::MAX_PENDING_ACKS;
pub use self::topics::{MAX_SUBSCRIPTIONS, MAX_TAG_SUBSCRIPTIONS, MAX_TOPIC_LEN};
pub use self::translate::MAX_WAITING_TRANSIENT;

/// Translated connections waiting for the gateway's acceptor (its
/// handshake bound); more are refused (CONNACK server unavailable).
pub const HANDED_BACKLOG: usize = 1024;

/// TLS ALPN names offered on the MQTT TLS listener (a client offering none
/// is served too).
const MQTT_ALPN: &[&[u8]] = &[b"mqtt"];

/// Listen backlog of the MQTT listeners: the gateway's own (tunnelkit's
/// `TcpListener::DEFAULT_BACKLOG`). tokio's `TcpListener::bind` listens
/// with 128, which a burst of connects overflows (the overflow waits for
/// the client's SYN retransmit, a second later).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` (SO_REUSEADDR, as the gateway's listeners) and listens
/// with [`LISTEN_BACKLOG`].
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds the configured MQTT listeners and serves them until `shutdown`;
/// their connections reach the gateway through `gateway`. Returns the
/// bound addresses, named `mqtt` and `mqtts`.
///
/// # Errors
///
/// A listener that cannot bind.
pub async fn start(
    section: &MqttSection,
    tls: &TlsServerConfig,
    tunnel: TunnelConfig,
    gateway: HandedSender,
    shutdown: CancellationToken,
) -> Result<Vec<(&'static str, SocketAddr)>, (SocketAddr, std::io::Error)> {
    let shared = Arc::new(translate::Shared {
        config: section.clone(),
        sessions: session::SessionTable::new(section.max_sessions),
        gateway,
        tunnel,
        next_conn: AtomicU64::new(1),
        shutdown,
    });
    let permits = Arc::new(Semaphore::new(section.max_connections));
    let mut bound = Vec::new();
    for (name, addr, secure) in [
        ("mqtt", section.listen, false),
        ("mqtts", section.tls_listen, true),
    ] {
        let Some(addr) = addr else { continue };
        let listener = bind(addr).map_err(|e| (addr, e))?;
        bound.push((name, listener.local_addr().unwrap_or(addr)));
        let acceptor = secure.then(|| {
            let mut config = (*tls.rustls_config()).clone();
            config.alpn_protocols = MQTT_ALPN.iter().map(|p| p.to_vec()).collect();
            Arc::new(config)
        });
        tokio::spawn(listener::accept_loop(
            listener,
            acceptor,
            shared.clone(),
            permits.clone(),
        ));
    }
    Ok(bound)
}

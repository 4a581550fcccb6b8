//! `pike-api`: the public API of Pike.
//!
//! - [`client`] (re-exported at the root): one [`PikeClient`] per business
//!   with the lifecycle of Pike 2.0 (`OnStart` → `Running` | `OnStop`,
//!   `OnReceive`, `OnSendSuccess` / `OnSendFailure`, `OnStop`), created by a
//!   [`ChannelProxy`] that shares one connection between businesses by
//!   default and gives a business a connection of its own on demand
//!   ([`Mode`]), switching at runtime without losing or duplicating a
//!   message.
//! - [`server`]: build a gateway: [`server::Gateway`] (listeners, auth,
//!   uplink backends and store plugged in), [`server::PushHandle`] to push to
//!   devices, aliases, tags and whole apps.
//!
//! # Client example
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pike_api::proto::tunnel::ClientHello;
//! use pike_api::tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};
//! use pike_api::{ChannelProxy, ClientEvent, ClientOptions, TunnelConnector};
//!
//! // How to reach the gateway: endpoints, transport (TLS and QUIC work the
//! // same way), and who this device is.
//! let dialer = Dialer::new(TcpTransport::new(TcpConfig::default())?, DialerConfig::default())?;
//! let hello = ClientHello {
//!     app_id: "demo".into(),
//!     device_id: "device-1".into(),
//!     ..ClientHello::default()
//! };
//! let connector = TunnelConnector::new(dialer, vec!["127.0.0.1:9300".parse()?], hello);
//!
//! // One proxy per app; one client per business, all on one connection.
//! let proxy = ChannelProxy::new(connector);
//! let chat = proxy.client(ClientOptions::new("chat", "u42", "credential"))?;
//! chat.start();
//!
//! // Resolves once the business backend accepted the message.
//! let receipt = chat.send("hello").await?;
//! println!("sent with key {}", receipt.key);
//!
//! while let Some(event) = chat.next_event().await {
//!     match event {
//!         ClientEvent::OnReceive(message) => println!("got {:?}", message.payload),
//!         ClientEvent::OnStop { reason } => {
//!             println!("stopped: {reason:?}");
//!             break;
//!         }
//!         other if other.is_connectivity() => println!("channel: {other:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! No cargo features: TCP, TLS and QUIC come from `tunnelkit` and
//! `tntunnel` with their default features.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod client;
pub mod server;

pub use crate::client::{
    CREDENTIAL_PROVIDER_TIMEOUT, ChannelProxy, ChannelProxyBuilder, ClientEvent, ClientOptions,
    ClientState, CredentialProvider, CredentialRequest, Error, ErrorKind, Message, Mode,
    PikeClient, RoomPosition, SendReceipt, Sending, Session, StopReason,
};
pub use pike_channel::{
    BoxConnector, ClientConfig, Connector, DisconnectReason, DriverConfig, TunnelConnector,
};
pub use proto::channel::{RoomClass, RoomMessage};
pub use {bytes, pike_channel, proto, tntunnel, tunnelkit};

/// The README's examples, compiled (and, where they need no network, run)
/// as doctests, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

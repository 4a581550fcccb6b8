//! `pike-channel`: the Pike channel layer as sans-IO state machines.
//!
//! This layer knows Pike semantics (business logins over a shared
//! connection, alias, tags, reliable and transient downlink with cumulative
//! acks, windowed ordered uplink, keep-alive, live rooms) and nothing about
//! sockets, HTTP or storage. It sits on `tntunnel` frames: each message of
//! `proto::channel` travels as the body of one application frame whose type
//! is listed in [`frame_types`].
//!
//! - [`ClientChannel`]: one per client connection, shared by the business
//!   logins on it. It owns the connection lifecycle: it tells its driver when
//!   to dial ([`Event::Connect`]) and drop ([`Event::Disconnect`]), reconnects
//!   with Fibonacci backoff plus jitter, keeps the link alive with
//!   traffic-aware heartbeats and a channel inspection timer, re-logs every
//!   business in after a reconnect with its saved route id and downlink
//!   position, delivers reliable downlink exactly once and in order, and
//!   resends unacked uplink in order with the same idempotency keys.
//! - [`ServerChannel`]: one per accepted connection after the tunnel
//!   handshake. It turns client frames into [`ServerEvent`]s for the gateway
//!   (login requests, uplink, acks, room requests) and the gateway's answers
//!   and pushes into frames; it answers pings and closes idle connections.
//!
//! Both are plain structs in the style of `quinn-proto`: inputs through
//! `handle_*(.., now)`, outputs through `poll_transmit`, `poll_event` and
//! `poll_timeout`; timers are data, time is always a parameter and the only
//! randomness is a seeded generator. `docs/channel.md` draws the state
//! machines and explains every timer and its default.
//!
//! # Drivers
//!
//! Thin tokio drivers run the machines over real connections, one task per
//! connection (quinn's `ConnectionDriver` style): [`ClientDriver`] /
//! [`spawn_client`] with a [`Connector`] ([`TunnelConnector`] over any
//! `tunnelkit` transport, TLS or plain) and a cloneable [`ClientHandle`]
//! for commands and per-business [`EventReceiver`]s; [`ServerDriver`] /
//! [`serve_connection`] with a [`ServerHandle`] and [`ServerEvents`] for the
//! gateway, and [`spawn_accept_loop`] from a `tunnelkit::Acceptor`.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use pike_channel::proto::tunnel::ClientHello;
//! use pike_channel::tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};
//! use pike_channel::{ClientConfig, DriverConfig, Event, LoginParams, TunnelConnector};
//!
//! let dialer = Dialer::new(TcpTransport::new(TcpConfig::default())?, DialerConfig::default())?;
//! let hello = ClientHello { app_id: "demo".into(), device_id: "d1".into(), ..Default::default() };
//! let connector = TunnelConnector::new(dialer, vec!["127.0.0.1:9300".parse()?], hello);
//! let client = pike_channel::spawn_client(
//!     Arc::new(ClientConfig::default()),
//!     connector,
//!     &DriverConfig::default(),
//! );
//! let (chat, mut events) = client.login(LoginParams::new("chat", "u42", "credential"));
//! client.start();
//! client.send(chat, "hello", None)?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Received(delivery) = event {
//!         println!("{:?}", delivery.payload);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Example
//!
//! A client and a server machine driven by hand through a login and one
//! reliable downlink message (a driver does the same over a real tntunnel
//! connection):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//!
//! use pike_channel::proto::tunnel::{ClientHello, ServerHello};
//! use pike_channel::{
//!     ClientChannel, ClientConfig, Event, LoginParams, Push, ServerChannel, ServerConfig, ServerEvent,
//! };
//!
//! # #[allow(clippy::disallowed_methods)]
//! let mut now = Instant::now();
//! let mut client = ClientChannel::new(Arc::new(ClientConfig::default()), 7);
//! let chat = client.login(LoginParams::new("chat", "u42", "credential"), now);
//! client.start(now);
//!
//! // The client asks its driver to dial; the driver reports the handshake.
//! let dial = loop {
//!     match client.poll_event() {
//!         Some(Event::Connect { id, .. }) => break id,
//!         Some(_) => continue,
//!         None => unreachable!("start dials"),
//!     }
//! };
//! let server_config = Arc::new(ServerConfig::default());
//! let mut hello = ServerHello { connection_token: "t-1".into(), ..Default::default() };
//! server_config.fill_hello(&mut hello);
//! let mut server = ServerChannel::new(server_config, ClientHello::default(), now);
//! client.handle_connected(dial, &hello, now);
//!
//! // Client -> server: the login.
//! while let Some(frame) = client.poll_transmit() {
//!     server.handle_frame(frame, now);
//! }
//! let Some(ServerEvent::LoginRequested { stream, alias, last_acked_seq, .. }) = server.poll_event() else {
//!     panic!("login expected");
//! };
//! assert_eq!((alias.as_str(), last_acked_seq), ("u42", 0));
//! server.accept_login(stream, "backend-1", 0, now)?;
//! server.push(stream, 1, Push::new(&b"hello"[..]), now)?;
//!
//! // Server -> client: login result and the message.
//! while let Some(frame) = server.poll_transmit() {
//!     client.handle_frame(frame, now);
//! }
//! let mut received = Vec::new();
//! while let Some(event) = client.poll_event() {
//!     match event {
//!         Event::LoginOk { stream, route_id, .. } => assert_eq!((stream, route_id.as_str()), (chat, "backend-1")),
//!         Event::Received(delivery) => received.push(delivery),
//!         _ => {}
//!     }
//! }
//! assert_eq!(received.len(), 1);
//! assert_eq!(&received[0].payload[..], b"hello");
//!
//! // The ack is coalesced: it leaves when the ack timer fires.
//! now = client.poll_timeout().expect("ack timer").max(now);
//! assert!(now <= Instant::now() + Duration::from_secs(1));
//! client.handle_timeout(now);
//! while let Some(frame) = client.poll_transmit() {
//!     server.handle_frame(frame, now);
//! }
//! assert_eq!(server.poll_event(), Some(ServerEvent::Acked { stream, seq: 1 }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! No public cargo features. `_test-util` is private: an in-memory test
//! gateway for the tests of this crate and the crates above it, not part of
//! the API and not covered by semver.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod backoff;
mod client;
mod config;
mod driver;
mod error;
pub mod frame_types;
mod ids;
mod message;
mod server;
mod stats;
mod timer;

#[cfg(feature = "_test-util")]
#[doc(hidden)]
pub mod test_util;
#[cfg(test)]
mod tests;

pub use crate::client::{
    ClientChannel, ConnectionState, Delivery, DisconnectReason, Event, LoginParams,
    SendFailureReason,
};
pub use crate::config::{ClientConfig, ServerConfig};
pub use crate::driver::{
    AcceptLoop, AcceptOptions, Admission, AdmissionError, AsyncIo, BoxConnector, BoxIo,
    ClientDriver, ClientHandle, ConnectError, Connected, ConnectionInfo, Connector, DriverConfig,
    EventFilter, EventReceiver, Handshaken, HelloDecision, REFUSAL_TIMEOUT, Refusal,
    ServerConnection, ServerDriver, ServerEvents, ServerHandle, TunnelConnector, TunnelHandler,
    run_accept_loop, serve_connection, spawn_accept_loop, spawn_client,
};
pub use crate::error::{
    ChannelError, ConfigError, PushError, ReplyError, SendError, UnknownStream,
};
pub use crate::ids::{ConnectionId, SendId, StreamId};
pub use crate::message::Message;
pub use crate::server::limits;
pub use crate::server::{
    CloseInitiator, CredentialExpiry, Push, ServerChannel, ServerEvent, UplinkResult,
};
pub use crate::stats::{ClientStats, ServerStats};

pub use {bytes, proto, tntunnel, tunnelkit};

/// The README's examples, compiled (and, where they need no network, run)
/// as doctests, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

//! `tunnelkit`: the long-connection kernel of Pike, the lowest layer of the stack.
//!
//! It knows bytes and connections, nothing about frames (framing and encryption live in
//! `tntunnel`, Pike semantics in `pike-channel`). It provides:
//!
//! - **Transports** behind one client trait, [`Transport`], and one server trait,
//!   [`Listener`]: plain TCP ([`TcpTransport`], [`TcpListener`], feature `tcp`) and QUIC with
//!   one bidirectional stream per connection ([`QuicTransport`], [`QuicListener`],
//!   [`QuicStream`], feature `quic`). Both features are on by default.
//! - A **dialer**, [`Dialer`], racing a list of endpoint addresses with staggered attempts
//!   (Happy-Eyeballs style probe racing): the first connection wins, the others are cancelled.
//! - An **acceptor**, [`Acceptor`], wrapping any listener with a connection limit (an
//!   over-limit connection is handed to the caller as [`Incoming::OverLimit`] before any
//!   handshake work so it can be refused cheaply; QUIC refuses in the listener, before its
//!   handshake), a bound on handshakes in progress, limits that several listeners can share
//!   ([`AcceptorLimits`]) and graceful shutdown ([`AcceptorHandle`]).
//! - A client-side **connection pool**, [`Pool`], reporting lost connections as
//!   [`PoolEvent`]s.
//! - A **reconnect backoff**, [`FibonacciBackoff`]: Fibonacci delays with jitter, a cap and a
//!   reset after a stable period; sans-IO and deterministic for a given seed.
//!
//! Addresses are [`SocketAddr`](std::net::SocketAddr)s: no DNS here (Pike connects to IP
//! lists directly). Everything runs on tokio; time comes from `tokio::time` (pausable in tests)
//! or is passed in.
//!
//! # Example
//!
//! An echo server behind an [`Acceptor`] and a client dialing it through a [`Dialer`]:
//!
//! ```no_run
//! use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
//! use tunnelkit::{
//!     Acceptor, AcceptorConfig, Dialer, DialerConfig, Incoming, TcpListener, TcpTransport,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
//! let addr = tunnelkit::Listener::local_addr(&listener)?;
//! let mut config = AcceptorConfig::default();
//! config.max_connections(Some(10_000));
//! let mut acceptor = Acceptor::new(listener, &config)?;
//! let shutdown = acceptor.handle();
//!
//! tokio::spawn(async move {
//!     while let Ok(incoming) = acceptor.accept().await {
//!         match incoming {
//!             Incoming::Accepted(mut conn) => {
//!                 tokio::spawn(async move {
//!                     let mut buf = [0u8; 1024];
//!                     while let Ok(n @ 1..) = conn.read(&mut buf).await {
//!                         if conn.write_all(&buf[..n]).await.is_err() {
//!                             break;
//!                         }
//!                     }
//!                 });
//!             }
//!             // A real server would send an "overloaded" close frame first.
//!             Incoming::OverLimit(conn) => drop(conn),
//!             _ => {}
//!         }
//!     }
//! });
//!
//! let dialer = Dialer::new(TcpTransport::default(), DialerConfig::default())?;
//! let mut dialed = dialer.dial(&[addr]).await?;
//! dialed.conn.write_all(b"ping").await?;
//! let mut reply = [0u8; 4];
//! dialed.conn.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"ping");
//!
//! drop(dialed);
//! shutdown.shutdown();
//! shutdown.wait_drained().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | Feature | Default | What |
//! |---|---|---|
//! | `tcp` | yes | [`TcpTransport`], [`TcpListener`] (and `IP_BIND_ADDRESS_NO_PORT` through `nix` on Linux) |
//! | `quic` | yes | [`QuicTransport`], [`QuicListener`], [`QuicStream`] (quinn, rustls with the ring provider) |
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![doc(test(attr(deny(warnings))))]

mod acceptor;
mod backoff;
mod dialer;
mod error;
mod handed;
mod pool;
#[cfg(feature = "quic")]
mod quic;
#[cfg(feature = "tcp")]
mod tcp;
mod transport;

pub use crate::acceptor::{
    AcceptedConn, Acceptor, AcceptorConfig, AcceptorHandle, AcceptorLimits, ConnGuard, Incoming,
};
pub use crate::backoff::{BackoffConfig, FibonacciBackoff};
pub use crate::dialer::{Dialed, Dialer, DialerConfig};
pub use crate::error::{AcceptError, ConfigError, DialError, EndpointFailure, ListenError};
pub use crate::handed::{
    HandedConn, HandedIo, HandedListener, HandedSender, NotHanded, handed_listener,
};
pub use crate::pool::{ConnId, LostReason, Pool, PoolEvent};
#[cfg(feature = "quic")]
pub use crate::quic::{QuicConfig, QuicListener, QuicStream, QuicTransport};
#[cfg(feature = "tcp")]
pub use crate::tcp::{TcpConfig, TcpListener, TcpTransport};
pub use crate::transport::{Listener, Transport};
#[cfg(feature = "quic")]
pub use quinn;
#[cfg(feature = "quic")]
pub use rustls;
pub use tokio_util::sync::CancellationToken;

/// The README's examples, compiled (and, where they need no network, run)
/// as doctests, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

//! `faultproxy`: a small tokio proxy that puts network faults between a
//! client and a server on loopback, for tests and from the command line.
//!
//! - **TCP** ([`Proxy::tcp`]): listens, dials the upstream for each accepted
//!   connection, forwards both ways.
//! - **UDP** ([`Proxy::udp`]): one upstream socket per client address (enough
//!   to carry QUIC), forwards datagrams both ways.
//!
//! Faults are set at run time through a cloneable [`ProxyHandle`]
//! ([`Proxy::handle`]), per [`Direction`] (`Up` is client → upstream,
//! `Down` upstream → client, or `Both`), and apply to new and existing
//! connections at once:
//!
//! | Fault | TCP | UDP |
//! |---|---|---|
//! | latency + jitter (seeded) | every chunk read is written `latency + U(0..=jitter)` after it was read; chunks keep their order | every datagram, order kept |
//! | bandwidth | at most N bytes/s, written in pieces of at most 1/20 s worth | n/a |
//! | slice | every write at most N bytes, flushed on its own (`TCP_NODELAY`) | n/a |
//! | blackhole | bytes held, not forwarded (not lost: they flow on when it lifts); new connections accepted but not dialed | datagrams dropped |
//! | drop rate | n/a | fraction of datagrams dropped |
//! | refuse | listener closed (`ECONNREFUSED`), bound again when lifted | n/a |
//! | reset | every current connection gets RST on both sides (`SO_LINGER` 0) | n/a |
//! | half-close | one direction of every current connection shut down (EOF at the destination) | n/a |
//!
//! A [`Schedule`] of (offset, [`Action`]) runs on tokio time
//! ([`ProxyHandle::run`]), so a test drives it with `tokio::time::pause` and
//! `advance` and never sleeps. [`ProxyHandle::stats`] reads the counters
//! (connections, bytes and writes each way, resets, drops).
//!
//! When one side of a TCP connection fails (reset, write error), the proxy
//! resets the other side too. Dropping the [`Proxy`] closes everything.
//!
//! Bounds: at most [`ProxyConfig::with_max_connections`] TCP connections
//! (1024) and [`ProxyConfig::with_max_flows`] UDP flows (1024); per
//! direction of a connection at most 64 chunks of 16 KiB buffered; at most
//! 4096 datagrams waiting out their latency per direction (beyond, dropped).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use faultproxy::{Action, Direction, Proxy, Schedule};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! // An echo server, and the proxy in front of it.
//! let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = server.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((mut socket, _)) = server.accept().await {
//!         tokio::spawn(async move {
//!             let (mut r, mut w) = socket.split();
//!             let _ = tokio::io::copy(&mut r, &mut w).await;
//!         });
//!     }
//! });
//! let proxy = Proxy::tcp("127.0.0.1:0".parse().unwrap(), upstream).await?;
//! let faults = proxy.handle();
//! faults.set_latency(Direction::Both, Duration::from_millis(5), Duration::from_millis(1));
//! faults.set_slice(Direction::Down, Some(1));
//! // Reset every connection in 10 s.
//! let _cut = faults.run(Schedule::new().at(Duration::from_secs(10), Action::Reset));
//!
//! let mut client = tokio::net::TcpStream::connect(proxy.local_addr()).await?;
//! client.write_all(b"hello").await?;
//! let mut echoed = [0u8; 5];
//! client.read_exact(&mut echoed).await?;
//! assert_eq!(&echoed, b"hello");
//! assert!(faults.stats().writes_down >= 5, "one write per byte");
//! # Ok(())
//! # }
//! ```
//!
//! From the command line (`cargo run -p faultproxy -- --help`):
//!
//! ```text
//! faultproxy --listen 127.0.0.1:19300 --upstream 127.0.0.1:9300 \
//!     --latency 50ms --jitter 10ms --bandwidth 64KiB --slice 7
//! ```
//!
//! then type control lines on stdin ([`parse_action`] lists them, plus
//! `stats`). Depend on the library from tests with
//! `default-features = false` (no clap).
//!
//! # Features
//!
//! | Feature | Default | What |
//! |---|---|---|
//! | `cli` | yes | the `faultproxy` binary (clap, a multi-threaded runtime, stdin control); libraries and tests depend with `default-features = false` |
#![warn(missing_docs)]

mod command;
mod faults;
mod handle;
mod proxy;
mod schedule;
mod tcp;
mod udp;

pub use command::{MAX_LINE, parse_action, parse_direction, parse_duration, parse_size};
pub use faults::{Action, Direction, LinkFaults};
pub use handle::{ProxyHandle, Stats};
pub use proxy::{Proxy, ProxyConfig};
pub use schedule::Schedule;

/// The README's examples, compiled (and, where they need no network, run)
/// as doctests, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

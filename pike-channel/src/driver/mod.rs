//! Thin tokio drivers around the state machines.
//!
//! One task per connection owns the socket and runs a machine over it, in
//! the style of quinn's `ConnectionDriver`: on every wake it feeds the
//! machine (frames read, dial results, its one timer), carries out its
//! actions, writes every frame it has queued and flushes once (writes are
//! coalesced), re-arms the timer from `poll_timeout` with
//! `tokio::time::sleep_until` (so paused-clock tests work), and forwards the
//! events. The machines' own API stays free of tokio types.
//!
//! - Client: [`ClientDriver`] / [`spawn_client`] run a
//!   [`ClientChannel`](crate::ClientChannel) and dial through a
//!   [`Connector`] ([`TunnelConnector`] over any tunnelkit transport, or
//!   [`BoxConnector`] to erase it); [`ClientHandle`] carries the commands and
//!   subscriptions ([`EventReceiver`], per business or connectivity only).
//! - Server: [`ServerDriver`] / [`serve_connection`] run a
//!   [`ServerChannel`](crate::ServerChannel) over an accepted tunnel;
//!   the gateway answers through [`ServerHandle`] and consumes
//!   [`ServerEvents`]. [`spawn_accept_loop`] does accept, TLS, handshake and
//!   the hello decision for a tunnelkit [`Acceptor`](tunnelkit::Acceptor),
//!   on top of [`run_accept_loop`], the admission loop custom gateways share
//!   (over-limit refusal before any handshake work, one deadline for TLS and
//!   hello, the acceptor's handshake slots).
//!
//! A peer that vanishes (end of stream at a frame boundary, reset, TLS
//! without close_notify, end of stream inside a frame) is an ordinary
//! disconnect; only bytes that are not a valid frame are a protocol error,
//! answered with a close frame carrying the decoder's code.

mod accept;
mod admission;
mod client;
mod config;
mod connector;
mod server;
mod util;

pub use self::accept::{
    AcceptLoop, AcceptOptions, ConnectionInfo, HelloDecision, ServerConnection, spawn_accept_loop,
};
pub use self::admission::{
    Admission, AdmissionError, Handshaken, REFUSAL_TIMEOUT, Refusal, TunnelHandler, run_accept_loop,
};
pub use self::client::{ClientDriver, ClientHandle, EventFilter, EventReceiver, spawn_client};
pub use self::config::DriverConfig;
pub use self::connector::{
    AsyncIo, BoxConnector, BoxIo, ConnectError, Connected, Connector, TunnelConnector,
};
pub use self::server::{ServerDriver, ServerEvents, ServerHandle, serve_connection};

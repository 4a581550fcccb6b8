//! The Pike reference gateway as a library: durable storage, credentials,
//! configuration and the data directory, used by the `pike-server` binary
//! and the `pike` CLI.
//!
//! [`run()`] starts the whole gateway from a [`config::Config`]; the parts can
//! also be embedded one by one in a gateway of your own, on `pike-api`:
//! [`store::RedbStore`] is a `pike_api::server::Store`,
//! [`auth::TokenAuthenticator`] a `tower::Service` authenticator, and
//! [`http::router`] / [`http::serve`] the HTTP API (see the examples
//! `custom_gateway` and `embed_http`).
//!
//! # Features
//!
//! | Feature | Default | What |
//! |---|---|---|
//! | `jemalloc` | yes | the binary allocates with jemalloc (less memory and CPU under load); off: the system allocator |
//! | `fault-injection` | no | tests only: `store::fault` and `RedbStore::open_with_faults`, a store whose writes and fsyncs fail on command; the binary never enables it |
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod apps;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod data_dir;
mod gateway_store;
pub mod handshake_ceiling;
pub mod http;
pub mod metric_families;
pub mod mqtt;
pub mod origin;
pub mod receipts;
pub mod run;
pub mod stats;
pub mod store;
pub mod token;
pub mod webhook;

pub use run::{RunError, Started, run};

/// Wall-clock time, unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The README's examples, compiled (and, where they need no network, run)
/// as doctests, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

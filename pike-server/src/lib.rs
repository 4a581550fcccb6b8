//! The Pike reference gateway as a library: durable storage, credentials,
//! configuration and the data directory, used by the `pike-server` binary
//! and the `pike` CLI.
#![forbid(unsafe_code)]
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
pub mod run;
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

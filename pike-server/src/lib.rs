//! The Pike reference gateway as a library: durable storage, credentials,
//! configuration and the data directory, used by the `pike-server` binary
//! and the `pike` CLI.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod data_dir;
pub mod token;

//! `pike-api`: the public API of Pike.
//!
//! - [`server`]: build a gateway: [`server::Gateway`] (listeners, auth,
//!   uplink backends and store plugged in), [`server::PushHandle`] to push to
//!   devices, aliases, tags and whole apps.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod server;

//! The numbers behind `GET /v1/stats` and the dashboard: the gateway's own
//! counters and histograms (read from its Prometheus recorder, the numbers
//! `/metrics` exports), each app's connections per transport, and a
//! bounded history of samples ([`StatsHistory`]: [`MAX_SAMPLES`] samples,
//! one every [`SAMPLE_EVERY`], so ten minutes on the binary).
//!
//! Scope: connection counts are per app (this node); message rates, the
//! six SLA indicators (`docs/gateway.md`, "SLA indicators") and the totals
//! are this gateway node's, all apps together, because the gateway's
//! metrics carry no app label.

mod exposition;
mod histogram;
mod history;
mod interval;
mod reading;

pub use history::{MAX_SAMPLES, MIN_SAMPLE_EVERY, SAMPLE_EVERY, StatsHistory, spawn_sampler};
pub(crate) use interval::totals;
pub(crate) use reading::GatewayReading;

//! The answer of `GET /v1/stats`: the app's connections, the gateway's
//! message rates and SLA indicators, and their recent history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `metrics` says when the gateway has no Prometheus recorder: no
/// `totals`, no `rates` and no `sla`.
pub const STATS_METRICS_NONE: &str = "none";

/// What `metrics` says when `totals`, `rates` and `sla` are read from the
/// gateway's recorder: they cover this gateway node, all apps together
/// (the gateway's metrics carry no app label).
pub const STATS_METRICS_GATEWAY: &str = "gateway";

/// Answer of `GET /v1/stats`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct StatsResponse {
    /// The calling app.
    pub app: String,
    /// When this answer was made, unix milliseconds.
    pub at_ms: u64,
    /// Spacing of `samples`, milliseconds (5,000 on the binary).
    pub interval_ms: u64,
    /// Most samples kept (120 on the binary: 10 minutes).
    pub max_samples: usize,
    /// The scope of `totals` and of each sample's `rates` and `sla`:
    /// [`STATS_METRICS_GATEWAY`] or [`STATS_METRICS_NONE`].
    pub metrics: String,
    /// The app's open connections on this node now, by transport (`tcp`,
    /// `tls`, `quic`, `ws` and `mqtt` always, 0 when none; other handed
    /// transports when they carry some).
    pub connections: BTreeMap<String, usize>,
    /// The gateway's counters since it started (absent without metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<StatsTotals>,
    /// Up to `max_samples` samples, oldest first, one per `interval_ms`.
    pub samples: Vec<StatsSample>,
}

/// The gateway's counters since it started (this node, all apps).
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct StatsTotals {
    /// Push requests accepted (`pike_push_total`).
    pub pushes: u64,
    /// Downlink messages written to devices, reliable and transient
    /// (`pike_downlink_sent_total`).
    pub downlink_sent: u64,
    /// Reliable downlink messages acknowledged (`pike_downlink_acked_total`).
    pub downlink_acked: u64,
    /// Uplink messages received (`pike_uplink_received_total`).
    pub uplink_received: u64,
    /// Uplink messages a backend took (`pike_uplink_acked_total{result="ok"}`).
    pub uplink_acked_ok: u64,
    /// Room messages written to members (`pike_room_messages_sent_total`).
    pub room_messages_sent: u64,
    /// Connections accepted (`pike_connections_total`).
    pub connections_accepted: u64,
    /// SLA indicator 6's count: uplink taken by backends plus reliable
    /// downlink acknowledged plus transient downlink written.
    pub messages_delivered: u64,
}

/// One sample: the app's connections at `at_ms`, and the gateway's rates
/// and SLA indicators over the interval that ended then.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct StatsSample {
    /// When it was taken, unix milliseconds.
    pub at_ms: u64,
    /// The app's open connections on this node, by transport (as
    /// [`StatsResponse::connections`]).
    pub connections: BTreeMap<String, usize>,
    /// Length of the interval measured, seconds (absent on the first
    /// sample and without metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secs: Option<f64>,
    /// Events per second over the interval (absent as `secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rates: Option<StatsRates>,
    /// The six SLA indicators over the interval (absent as `secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<StatsSla>,
}

/// Events per second over a sample's interval (this node, all apps).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct StatsRates {
    /// Push requests accepted.
    pub pushes: f64,
    /// Downlink messages written to devices.
    pub downlink_sent: f64,
    /// Reliable downlink messages acknowledged.
    pub downlink_acked: f64,
    /// Uplink messages received.
    pub uplink_received: f64,
    /// Room messages written to members.
    pub room_messages_sent: f64,
    /// Connections accepted.
    pub connections_accepted: f64,
}

/// The six SLA indicators of `docs/gateway.md` over a sample's interval
/// (this node, all apps). A ratio or latency without traffic in the
/// interval is `null`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct StatsSla {
    /// 1: uplink messages a backend took over uplink messages received, at
    /// most 1.
    pub uplink_success_ratio: Option<f64>,
    /// 2: uplink round trip, p99, seconds.
    pub uplink_ack_p99_secs: Option<f64>,
    /// 3: reliable downlink acknowledged over reliable downlink written,
    /// at most 1.
    pub downlink_success_ratio: Option<f64>,
    /// 4: reliable downlink round trip, p99, seconds.
    pub downlink_ack_p99_secs: Option<f64>,
    /// 5: channel time-to-available (hello to first granted login), p99,
    /// seconds.
    pub channel_ready_p99_secs: Option<f64>,
    /// 6: messages delivered in the interval (the indicator is this count
    /// over 24 hours).
    pub messages_delivered: u64,
}

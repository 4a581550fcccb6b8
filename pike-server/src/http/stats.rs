//! `GET /v1/stats`: the app's connections per transport, the gateway's
//! message rates and SLA indicators, and their recent history
//! ([`crate::stats`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use super::extract::Caller;
use super::model::{STATS_METRICS_GATEWAY, STATS_METRICS_NONE, StatsResponse, StatsSample};
use super::state::HttpState;
use crate::stats::{GatewayReading, MAX_SAMPLES, totals};

/// The transports every answer lists, 0 when they carry nothing.
const TRANSPORTS: [&str; 5] = ["mqtt", "quic", "tcp", "tls", "ws"];

/// `counts` with every transport of [`TRANSPORTS`] present.
fn by_transport(counts: &[(&'static str, usize)]) -> BTreeMap<String, usize> {
    let mut map: BTreeMap<String, usize> =
        TRANSPORTS.iter().map(|t| ((*t).to_owned(), 0)).collect();
    for (transport, n) in counts {
        map.insert((*transport).to_owned(), *n);
    }
    map
}

pub(crate) async fn stats(State(state): State<HttpState>, caller: Caller) -> Json<StatsResponse> {
    let push = state.push_handle();
    let connections = by_transport(&push.transport_counts(&caller.app));
    let metrics = state.metrics();
    let totals = metrics.map(|m| totals(&GatewayReading::parse(&m.render())));
    let mut samples = Vec::with_capacity(MAX_SAMPLES);
    state.stats().for_each(|point| {
        let counts = point.apps.get(&caller.app).map_or(&[][..], Vec::as_slice);
        samples.push(StatsSample {
            at_ms: point.at_ms,
            connections: by_transport(counts),
            secs: point.interval.map(|(secs, _, _)| secs),
            rates: point.interval.map(|(_, rates, _)| rates),
            sla: point.interval.map(|(_, _, sla)| sla),
        });
    });
    Json(StatsResponse {
        app: caller.app,
        at_ms: crate::unix_ms(),
        interval_ms: u64::try_from(state.stats().every().as_millis()).unwrap_or(u64::MAX),
        max_samples: MAX_SAMPLES,
        metrics: if metrics.is_some() {
            STATS_METRICS_GATEWAY
        } else {
            STATS_METRICS_NONE
        }
        .to_owned(),
        connections,
        totals,
        samples,
    })
}

//! The metric families of the gateway binary: the HTTP API's and the
//! webhooks' (the gateway's own are in
//! [`pike_api::server::metric_families`]), the Prometheus recorder that
//! exports them all, and their zero series created at start.
//!
//! Every family is listed once ([`all`]); `/metrics` shows each with its
//! help text from the start (`docs/gateway.md`, "Metrics"), and passes
//! `promtool check metrics` (`.ci/promtool.sh`).

use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use pike_api::server::metric_families::{
    self as families, MetricFamily, MetricKind, counter, gauge, histogram,
};

use crate::config::Config;

/// HTTP API requests answered.
pub const HTTP_REQUESTS_TOTAL: &str = "pike_http_requests_total";
/// HTTP API request durations.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "pike_http_request_duration_seconds";
/// HTTP requests and connections refused by the server's limits.
pub const HTTP_REFUSED_TOTAL: &str = "pike_http_refused_total";
/// Uplink webhook requests that could not be built.
pub const WEBHOOK_BUILD_ERRORS_TOTAL: &str = "pike_webhook_build_errors_total";
/// Uplink webhook calls that failed a backend.
pub const WEBHOOK_FAILURES_TOTAL: &str = "pike_webhook_failures_total";
/// Tasks alive in the gateway's tokio runtime (set at each scrape).
pub const RUNTIME_ALIVE_TASKS: &str = "pike_runtime_alive_tasks";

// --- receipts (issue 18, docs/receipts.md) ---
/// Receipt events produced, by event.
pub const RECEIPTS_EVENTS_TOTAL: &str = "pike_receipts_events_total";
/// Receipts the receipt webhooks accepted.
pub const RECEIPTS_SENT_TOTAL: &str = "pike_receipts_sent_total";
/// Receipts dropped, by reason.
pub const RECEIPTS_DROPPED_TOTAL: &str = "pike_receipts_dropped_total";
/// Receipt webhook requests, by result.
pub const RECEIPTS_REQUESTS_TOTAL: &str = "pike_receipts_requests_total";
/// Messages with a status record.
pub const RECEIPTS_TRACKED: &str = "pike_receipts_tracked";
/// Pushes that asked for receipts and got no record (the table was full).
pub const RECEIPTS_UNTRACKED_TOTAL: &str = "pike_receipts_untracked_total";
// --- end receipts ---

/// The families this crate records.
pub const FAMILIES: &[MetricFamily] = &[
    counter(
        HTTP_REQUESTS_TOTAL,
        "HTTP API requests answered, by route pattern (or unmatched) and status.",
        &["route", "status"],
        &[],
    ),
    histogram(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time to answer an HTTP API request, by route pattern (or unmatched).",
        &["route"],
        &[],
    ),
    counter(
        HTTP_REFUSED_TOTAL,
        "HTTP requests and connections refused by the server's limits (connections, in_flight, timeout, push_connections, ws_backlog) or for their web origin (origin).",
        &["reason"],
        &[&["connections"], &["in_flight"], &["timeout"], &["origin"]],
    ),
    counter(
        WEBHOOK_BUILD_ERRORS_TOTAL,
        "Uplink webhook requests that could not be built (the backend is not marked down), by biz.",
        &["biz"],
        &[],
    ),
    counter(
        WEBHOOK_FAILURES_TOTAL,
        "Uplink webhook calls that failed a backend (network error, timeout, 5xx, 408, 429), by biz.",
        &["biz"],
        &[],
    ),
    gauge(
        RUNTIME_ALIVE_TASKS,
        "Tasks alive in the gateway's tokio runtime, read at each scrape of /metrics (a leak shows as growth under a steady load).",
        &[],
        &[],
    ),
    // --- receipts (issue 18) ---
    counter(
        RECEIPTS_EVENTS_TOTAL,
        "Receipt events produced (once per message, device and event), by event.",
        &["event"],
        &[&["delivered"], &["acked"], &["expired"], &["dropped"]],
    ),
    counter(
        RECEIPTS_SENT_TOTAL,
        "Receipts a receipt webhook accepted (2xx).",
        &[],
        &[],
    ),
    counter(
        RECEIPTS_DROPPED_TOTAL,
        "Receipts not sent, by reason: queue_full (the business's queue was full), retries (every attempt failed), devices (a message's device bound).",
        &["reason"],
        &[&["queue_full"], &["retries"], &["devices"]],
    ),
    counter(
        RECEIPTS_REQUESTS_TOTAL,
        "Receipt webhook requests, by result (ok, failed).",
        &["result"],
        &[&["ok"], &["failed"]],
    ),
    gauge(
        RECEIPTS_TRACKED,
        "Messages with a receipt status record on this node.",
        &[],
        &[],
    ),
    counter(
        RECEIPTS_UNTRACKED_TOTAL,
        "Pushes that asked for receipts and got none (the status table was full).",
        &[],
        &[],
    ),
    // --- end receipts ---
];

/// The HTTP API's route patterns (the `route` label), each created at
/// zero: its duration histogram and a `status="200"` request count.
pub const HTTP_ROUTES: &[&str] = &[
    "/v1/push",
    "/v1/push/batch",
    "/v1/presence",
    "/v1/connections",
    "/v1/connections/{token}/trace",
    "/v1/tokens",
    "/v1/disconnect",
    "/v1/rooms",
    "/v1/rooms/{room}",
    "/v1/rooms/{room}/publish",
    "/v1/messages/{message_id}",
    "/healthz",
    "/metrics",
    "/v1/stats",
];

/// Histogram buckets of durations, in seconds (a p99 is exact to the
/// bucket it falls in).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Histogram buckets of sizes counted in items (queue depths, batch
/// sizes).
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0,
];

/// Every family the gateway binary exports: the gateway's and this
/// crate's.
pub fn all() -> impl Iterator<Item = &'static MetricFamily> {
    families::FAMILIES.iter().chain(FAMILIES)
}

/// A Prometheus recorder builder that exports every histogram family with
/// buckets (so `histogram_quantile` aggregates them across gateways).
pub fn recorder_builder() -> Result<PrometheusBuilder, BuildError> {
    let mut builder = PrometheusBuilder::new().set_buckets(SECONDS_BUCKETS)?;
    for family in all().filter(|f| f.kind == MetricKind::Histogram) {
        let buckets = if family.unit == Some(Unit::Seconds) {
            SECONDS_BUCKETS
        } else {
            COUNT_BUCKETS
        };
        builder = builder.set_buckets_for_metric(Matcher::Full(family.name.to_owned()), buckets)?;
    }
    Ok(builder)
}

/// Installs the process-wide recorder ([`recorder_builder`]) and returns
/// its handle for `/metrics`.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    recorder_builder()?.install_recorder()
}

/// Describes every family and creates its known series at zero in the
/// installed recorder: the fixed label values, every HTTP route, and the
/// webhook counters of each biz of `config` with uplink webhooks.
pub fn register(config: &Config) {
    let all: Vec<MetricFamily> = all().copied().collect();
    families::describe(&all);
    families::register(&all);
    let [requests, durations, _, build_errors, failures, ..] = FAMILIES else {
        return;
    };
    for route in HTTP_ROUTES {
        families::register_series(requests, &[route, "200"]);
        families::register_series(durations, &[route]);
    }
    let webhook_bizs = config
        .apps
        .iter()
        .flat_map(|app| &app.biz)
        .filter(|biz| !biz.uplink_webhooks.is_empty());
    for biz in webhook_bizs {
        families::register_series(build_errors, &[&biz.id]);
        families::register_series(failures, &[&biz.id]);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;

    #[test]
    fn names_are_unique_across_crates() {
        let mut seen = HashSet::new();
        for family in all() {
            assert!(seen.insert(family.name), "{} listed twice", family.name);
            assert_eq!(
                family.name.ends_with("_total"),
                family.kind == MetricKind::Counter,
                "{}",
                family.name
            );
        }
    }

    #[test]
    fn register_names_the_families_it_destructures() {
        let [requests, durations, _, build_errors, failures, tasks, ..] = FAMILIES else {
            panic!("FAMILIES changed: update register()");
        };
        assert_eq!(requests.name, HTTP_REQUESTS_TOTAL);
        assert_eq!(durations.name, HTTP_REQUEST_DURATION_SECONDS);
        assert_eq!(build_errors.name, WEBHOOK_BUILD_ERRORS_TOTAL);
        assert_eq!(failures.name, WEBHOOK_FAILURES_TOTAL);
        assert_eq!(tasks.name, RUNTIME_ALIVE_TASKS);
    }

    /// docs/gateway.md's metrics table lists exactly the families, with
    /// their kinds and labels.
    #[test]
    fn the_docs_list_every_family() {
        let docs = include_str!("../../docs/gateway.md");
        let documented: BTreeSet<(String, String, String)> = docs
            .lines()
            .filter(|line| line.starts_with("| `pike_"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let labels: Vec<&str> = cells[3]
                    .split(',')
                    .map(|l| l.trim().trim_matches('`'))
                    .filter(|l| !l.is_empty())
                    .collect();
                (
                    cells[1].trim_matches('`').to_owned(),
                    cells[2].to_owned(),
                    labels.join(","),
                )
            })
            .collect();
        let listed: BTreeSet<(String, String, String)> = all()
            .map(|f| {
                (
                    f.name.to_owned(),
                    f.kind.as_str().to_owned(),
                    f.labels.join(","),
                )
            })
            .collect();
        assert_eq!(documented, listed);
    }

    /// The SLA expressions are one truth: the recording rules, the Grafana
    /// dashboard and docs/gateway.md's table hold the same six, and each
    /// names listed families only.
    #[test]
    fn the_sla_expressions_agree_and_name_listed_families() {
        let rules: Vec<&str> = include_str!("../../docs/pike-sla.rules.yml")
            .lines()
            .filter_map(|line| line.trim().strip_prefix("expr: "))
            .collect();
        assert_eq!(rules.len(), 6, "six SLA indicators");

        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/grafana/pike-sla.json"))
                .expect("the dashboard is JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        let plotted: Vec<&str> = panels
            .iter()
            .flat_map(|panel| panel["targets"].as_array().expect("targets"))
            .map(|target| target["expr"].as_str().expect("expr"))
            .collect();
        assert_eq!(plotted, rules, "one panel per indicator, in order");

        let docs = include_str!("../../docs/gateway.md");
        let (_, sla) = docs
            .split_once("## SLA indicators")
            .expect("an SLA section");
        for expr in &rules {
            assert!(
                sla.contains(&format!("`{expr}`")),
                "docs/gateway.md lacks {expr}"
            );
        }

        let names: HashSet<&str> = all().map(|f| f.name).collect();
        for expr in rules {
            let used = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("pike_"));
            for word in used {
                let family = word.strip_suffix("_bucket").unwrap_or(word);
                assert!(names.contains(family), "{expr} names {word}");
            }
        }
    }
}

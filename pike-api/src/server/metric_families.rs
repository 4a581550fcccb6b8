//! Every metric family the gateway records: name, kind, unit, help text,
//! labels and the label values known in advance, listed once.
//!
//! The recording sites use the name constants below, so a family cannot be
//! recorded under a name that is not listed here. [`describe`] gives each
//! family its help text and [`register`] creates every known series at
//! zero, so `/metrics` shows each family from the start, not only after
//! its first event (call both once the process's recorder is installed).
//! Names follow Prometheus conventions: base units (`_seconds`), `_total`
//! on counters and only on counters.

use metrics::{KeyName, Label, SharedString, Unit};

/// What kind of Prometheus family a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of observations (exported with buckets).
    Histogram,
}

impl MetricKind {
    /// The kind as Prometheus spells it in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Clone, Copy, Debug)]
pub struct MetricFamily {
    /// The exported name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The unit of its values (`Seconds` for durations, `Count` for sizes
    /// counted in items), if any.
    pub unit: Option<Unit>,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order of [`series`](Self::series)' values.
    pub labels: &'static [&'static str],
    /// Label values of the series created at zero by [`register`], one
    /// slice per series in [`labels`](Self::labels)' order. A family
    /// without labels always has its one series; a label whose values
    /// are only known at run time (a biz, an HTTP status) is left to the
    /// caller ([`register_series`]).
    pub series: &'static [&'static [&'static str]],
}

/// Open client connections (`transport`: `tcp`, `tls`, `quic`).
pub const CONNECTIONS: &str = "pike_connections";
/// Client connections accepted (hello answered).
pub const CONNECTIONS_TOTAL: &str = "pike_connections_total";
/// Connections refused before they ran.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "pike_connections_refused_total";
/// Handshakes (TLS and hello) that failed or timed out.
pub const HANDSHAKE_FAILURES_TOTAL: &str = "pike_handshake_failures_total";
/// Handshakes in progress.
pub const HANDSHAKES_IN_PROGRESS: &str = "pike_handshakes_in_progress";
/// Connections closed as slow consumers.
pub const SLOW_CONSUMER_CLOSED_TOTAL: &str = "pike_slow_consumer_closed_total";
/// Depth of a connection's command queue when a command is taken.
pub const COMMAND_QUEUE_DEPTH: &str = "pike_command_queue_depth";
/// Business logins received.
pub const LOGIN_REQUESTS_TOTAL: &str = "pike_login_requests_total";
/// Business logins answered, by result.
pub const LOGINS_TOTAL: &str = "pike_logins_total";
/// Channel time-to-available: from the accepted hello to the first
/// granted login.
pub const CHANNEL_READY_SECONDS: &str = "pike_channel_ready_seconds";
/// Downlink messages written to clients.
pub const DOWNLINK_SENT_TOTAL: &str = "pike_downlink_sent_total";
/// Reliable downlink messages acknowledged by clients.
pub const DOWNLINK_ACKED_TOTAL: &str = "pike_downlink_acked_total";
/// Reliable downlink round trip: sent to acknowledged.
pub const DOWNLINK_ACK_SECONDS: &str = "pike_downlink_ack_seconds";
/// Internal errors, by kind.
pub const ERRORS_TOTAL: &str = "pike_errors_total";
/// Push requests accepted, by delivery.
pub const PUSH_TOTAL: &str = "pike_push_total";
/// Transient pushes dropped at a full command queue.
pub const TRANSIENT_DROPPED_TOTAL: &str = "pike_transient_dropped_total";
/// Reliable messages stored (one per recipient alias).
pub const MESSAGES_STORED_TOTAL: &str = "pike_messages_stored_total";
/// Connections told to close by a disconnect request.
pub const DISCONNECTED_TOTAL: &str = "pike_disconnected_total";
/// Connections told to close because a newer connection of their device
/// took their login (`REPLACED`), on this node's order or another node's.
pub const REPLACED_TOTAL: &str = "pike_replaced_total";
/// Uplink messages received from clients.
pub const UPLINK_RECEIVED_TOTAL: &str = "pike_uplink_received_total";
/// Uplink messages queued on a login when one arrives.
pub const UPLINK_QUEUE_DEPTH: &str = "pike_uplink_queue_depth";
/// Uplink round trip: received to acknowledged.
pub const UPLINK_ACK_SECONDS: &str = "pike_uplink_ack_seconds";
/// Uplink messages acknowledged to clients, by result.
pub const UPLINK_ACKED_TOTAL: &str = "pike_uplink_acked_total";
/// Uplink resends that joined a backend call already running.
pub const UPLINK_JOINED_TOTAL: &str = "pike_uplink_joined_total";
/// Uplink backend calls in flight.
pub const UPLINK_CALLS_IN_FLIGHT: &str = "pike_uplink_calls_in_flight";
/// Uplink messages answered from the dedup record.
pub const UPLINK_DUPLICATES_TOTAL: &str = "pike_uplink_duplicates_total";
/// Uplink backend calls started without a dedup lookup (`first_attempt`).
pub const UPLINK_FIRST_ATTEMPTS_TOTAL: &str = "pike_uplink_first_attempts_total";
/// Live rooms.
pub const ROOMS: &str = "pike_rooms";
/// Room starts refused.
pub const ROOMS_REFUSED_TOTAL: &str = "pike_rooms_refused_total";
/// Joined streams, all rooms.
pub const ROOM_MEMBERS: &str = "pike_room_members";
/// Messages per released room batch.
pub const ROOM_BATCH_MESSAGES: &str = "pike_room_batch_messages";
/// Wait of a room batch's oldest message.
pub const ROOM_BATCH_WAIT_SECONDS: &str = "pike_room_batch_wait_seconds";
/// Room pull latency.
pub const ROOM_PULL_WAIT_SECONDS: &str = "pike_room_pull_wait_seconds";
/// Room frames written to members.
pub const ROOM_FRAMES_SENT_TOTAL: &str = "pike_room_frames_sent_total";
/// Room messages written to members.
pub const ROOM_MESSAGES_SENT_TOTAL: &str = "pike_room_messages_sent_total";
/// Missed room messages reported to members.
pub const ROOM_MISSED_TOTAL: &str = "pike_room_missed_total";
/// Room frame encodings.
pub const ROOM_ENCODES_TOTAL: &str = "pike_room_encodes_total";
/// LZ4 compressions of room frames.
pub const ROOM_COMPRESSIONS_TOTAL: &str = "pike_room_compressions_total";
/// Room pulls, by result.
pub const ROOM_PULLS_TOTAL: &str = "pike_room_pulls_total";
/// Room messages accepted.
pub const ROOM_PUBLISHED_TOTAL: &str = "pike_room_published_total";
/// Droppable room messages shed.
pub const ROOM_DROPPED_TOTAL: &str = "pike_room_dropped_total";
/// Room publishes refused.
pub const ROOM_REFUSED_TOTAL: &str = "pike_room_refused_total";
/// Room messages overwritten or past retention.
pub const ROOM_EVICTED_TOTAL: &str = "pike_room_evicted_total";

const TRANSPORTS: &[&[&str]] = &[&["tcp"], &["tls"], &["quic"]];

/// Every family recorded by this crate.
pub const FAMILIES: &[MetricFamily] = &[
    // Connections.
    gauge(
        CONNECTIONS,
        "Open client connections.",
        &["transport"],
        TRANSPORTS,
    ),
    counter(
        CONNECTIONS_TOTAL,
        "Client connections accepted (hello answered).",
        &["transport"],
        TRANSPORTS,
    ),
    counter(
        CONNECTIONS_REFUSED_TOTAL,
        "Connections refused: over limits.max_connections (overloaded) or for an unknown app.",
        &["reason"],
        &[&["overloaded"], &["unknown_app"]],
    ),
    counter(
        HANDSHAKE_FAILURES_TOTAL,
        "Handshakes (TLS and hello) that failed or timed out.",
        &["transport"],
        TRANSPORTS,
    ),
    gauge(
        HANDSHAKES_IN_PROGRESS,
        "Connections in their TLS and hello handshake.",
        &[],
        &[],
    ),
    counter(
        SLOW_CONSUMER_CLOSED_TOTAL,
        "Connections closed as slow consumers (a write over the write timeout).",
        &[],
        &[],
    ),
    histogram(
        COMMAND_QUEUE_DEPTH,
        Unit::Count,
        "Commands waiting in a connection's queue when one is taken.",
        &[],
        &[],
    ),
    // Logins.
    counter(LOGIN_REQUESTS_TOTAL, "Business logins received.", &[], &[]),
    counter(
        LOGINS_TOTAL,
        "Business logins answered, by result (ok, refused).",
        &["result"],
        &[&["ok"], &["refused"]],
    ),
    histogram(
        CHANNEL_READY_SECONDS,
        Unit::Seconds,
        "Channel time-to-available: from the accepted hello to the connection's first granted login.",
        &[],
        &[],
    ),
    // Downlink.
    counter(
        DOWNLINK_SENT_TOTAL,
        "Downlink messages written to clients, by kind (reliable, transient).",
        &["kind"],
        &[&["reliable"], &["transient"]],
    ),
    counter(
        DOWNLINK_ACKED_TOTAL,
        "Reliable downlink messages acknowledged by clients.",
        &[],
        &[],
    ),
    histogram(
        DOWNLINK_ACK_SECONDS,
        Unit::Seconds,
        "Reliable downlink round trip: from writing a message to its acknowledgement.",
        &[],
        &[],
    ),
    counter(
        ERRORS_TOTAL,
        "Internal errors, by kind (store: a store read failed).",
        &["kind"],
        &[&["store"]],
    ),
    // Pushes.
    counter(
        PUSH_TOTAL,
        "Push requests accepted, by delivery (reliable, transient).",
        &["delivery"],
        &[&["reliable"], &["transient"]],
    ),
    counter(
        TRANSIENT_DROPPED_TOTAL,
        "Transient pushes dropped at a full connection command queue.",
        &[],
        &[],
    ),
    counter(
        MESSAGES_STORED_TOTAL,
        "Reliable messages stored, one per recipient alias.",
        &[],
        &[],
    ),
    counter(
        DISCONNECTED_TOTAL,
        "Connections told to close by a disconnect request.",
        &[],
        &[],
    ),
    counter(
        REPLACED_TOTAL,
        "Connections told to close because a newer connection of their device took their login (REPLACED).",
        &[],
        &[],
    ),
    // Uplink.
    counter(
        UPLINK_RECEIVED_TOTAL,
        "Uplink messages received from clients.",
        &[],
        &[],
    ),
    histogram(
        UPLINK_QUEUE_DEPTH,
        Unit::Count,
        "Uplink messages queued on a login when one arrives (the arriving one included).",
        &[],
        &[],
    ),
    histogram(
        UPLINK_ACK_SECONDS,
        Unit::Seconds,
        "Uplink round trip: from receiving a message to acknowledging it to the client.",
        &[],
        &[],
    ),
    counter(
        UPLINK_ACKED_TOTAL,
        "Uplink messages acknowledged to clients, by result (ok: a backend took it; failed).",
        &["result"],
        &[&["ok"], &["failed"]],
    ),
    counter(
        UPLINK_JOINED_TOTAL,
        "Uplink resends that joined the backend call already running for their idempotency key.",
        &[],
        &[],
    ),
    gauge(
        UPLINK_CALLS_IN_FLIGHT,
        "Uplink backend calls in flight.",
        &[],
        &[],
    ),
    counter(
        UPLINK_DUPLICATES_TOTAL,
        "Uplink messages answered from the dedup record (delivered before).",
        &[],
        &[],
    ),
    counter(
        UPLINK_FIRST_ATTEMPTS_TOTAL,
        "Uplink backend calls started without a dedup lookup: the client flagged the message a first attempt.",
        &[],
        &[],
    ),
    // Rooms.
    gauge(ROOMS, "Live rooms.", &[], &[]),
    counter(
        ROOMS_REFUSED_TOTAL,
        "Room joins and publishes refused by a room-count limit, by reason.",
        &["reason"],
        &[&["app_quota"], &["max_rooms"], &["connection_joins"]],
    ),
    gauge(
        ROOM_MEMBERS,
        "Joined streams, all rooms together.",
        &[],
        &[],
    ),
    histogram(
        ROOM_BATCH_MESSAGES,
        Unit::Count,
        "Messages per released room batch.",
        &[],
        &[],
    ),
    histogram(
        ROOM_BATCH_WAIT_SECONDS,
        Unit::Seconds,
        "Wait of a room batch's oldest message (the batching window).",
        &[],
        &[],
    ),
    histogram(
        ROOM_PULL_WAIT_SECONDS,
        Unit::Seconds,
        "Room pull latency: from a pull's arrival to its answer.",
        &[],
        &[],
    ),
    counter(
        ROOM_FRAMES_SENT_TOTAL,
        "Room frames written to members, by kind (pushed, pull).",
        &["kind"],
        &[&["pushed"], &["pull"]],
    ),
    counter(
        ROOM_MESSAGES_SENT_TOTAL,
        "Room messages written to members.",
        &[],
        &[],
    ),
    counter(
        ROOM_MISSED_TOTAL,
        "Missed room messages reported to members.",
        &[],
        &[],
    ),
    counter(
        ROOM_ENCODES_TOTAL,
        "Room frame encodings, by kind (batch, catchup).",
        &["kind"],
        &[&["batch"], &["catchup"]],
    ),
    counter(
        ROOM_COMPRESSIONS_TOTAL,
        "LZ4 compressions of room frames.",
        &[],
        &[],
    ),
    counter(
        ROOM_PULLS_TOTAL,
        "Room pulls, by result (held, expired unanswered, not_joined).",
        &["result"],
        &[&["held"], &["expired"], &["not_joined"]],
    ),
    counter(
        ROOM_PUBLISHED_TOTAL,
        "Room messages accepted, by class.",
        &["class"],
        &[&["droppable"], &["reliable"]],
    ),
    counter(
        ROOM_DROPPED_TOTAL,
        "Droppable room messages shed, by reason (room_rate, publisher_rate).",
        &["class", "reason"],
        &[
            &["droppable", "room_rate"],
            &["droppable", "publisher_rate"],
        ],
    ),
    counter(
        ROOM_REFUSED_TOTAL,
        "Reliable room publishes refused (reliable_full).",
        &["class", "reason"],
        &[&["reliable", "reliable_full"]],
    ),
    counter(
        ROOM_EVICTED_TOTAL,
        "Room messages overwritten or past retention, by class.",
        &["class"],
        &[&["droppable"], &["reliable"]],
    ),
];

/// A counter family.
pub const fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: &'static [&'static [&'static str]],
) -> MetricFamily {
    MetricFamily {
        name,
        kind: MetricKind::Counter,
        unit: None,
        help,
        labels,
        series,
    }
}

/// A gauge family.
pub const fn gauge(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: &'static [&'static [&'static str]],
) -> MetricFamily {
    MetricFamily {
        name,
        kind: MetricKind::Gauge,
        unit: None,
        help,
        labels,
        series,
    }
}

/// A histogram family of `unit`.
pub const fn histogram(
    name: &'static str,
    unit: Unit,
    help: &'static str,
    labels: &'static [&'static str],
    series: &'static [&'static [&'static str]],
) -> MetricFamily {
    MetricFamily {
        name,
        kind: MetricKind::Histogram,
        unit: Some(unit),
        help,
        labels,
        series,
    }
}

/// Gives each family its help text and unit in the installed recorder
/// (none installed: nothing happens).
pub fn describe(families: &[MetricFamily]) {
    metrics::with_recorder(|recorder| {
        for family in families {
            let name = KeyName::from_const_str(family.name);
            let help = SharedString::const_str(family.help);
            match family.kind {
                MetricKind::Counter => recorder.describe_counter(name, family.unit, help),
                MetricKind::Gauge => recorder.describe_gauge(name, family.unit, help),
                MetricKind::Histogram => recorder.describe_histogram(name, family.unit, help),
            }
        }
    });
}

/// Creates every family's known series at zero (a family without labels:
/// its one series), so each is exported before its first event.
pub fn register(families: &[MetricFamily]) {
    for family in families {
        if family.labels.is_empty() {
            register_series(family, &[]);
        }
        for values in family.series {
            register_series(family, values);
        }
    }
}

/// Creates one series of `family` at zero: `values` are its label values
/// in the order of the family's labels (extra values are ignored, missing
/// ones leave their labels out).
pub fn register_series(family: &MetricFamily, values: &[&str]) {
    let labels: Vec<Label> = family
        .labels
        .iter()
        .zip(values)
        .map(|(key, value)| Label::new(*key, (*value).to_owned()))
        .collect();
    match family.kind {
        MetricKind::Counter => metrics::counter!(family.name, labels).increment(0),
        MetricKind::Gauge => metrics::gauge!(family.name, labels).increment(0.0),
        MetricKind::Histogram => {
            let _registered = metrics::histogram!(family.name, labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_shaped() {
        let mut seen = HashSet::new();
        for family in FAMILIES {
            assert!(seen.insert(family.name), "{} listed twice", family.name);
            assert!(family.name.starts_with("pike_"), "{}", family.name);
            assert!(
                family
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{} is not snake_case",
                family.name
            );
            assert_eq!(
                family.name.ends_with("_total"),
                family.kind == MetricKind::Counter,
                "{}: `_total` on counters and only on counters",
                family.name
            );
            assert_eq!(
                family.name.ends_with("_seconds"),
                family.unit == Some(Unit::Seconds),
                "{}: durations are in seconds and named so",
                family.name
            );
            assert!(!family.help.is_empty(), "{} has no help", family.name);
            for values in family.series {
                assert_eq!(
                    values.len(),
                    family.labels.len(),
                    "{}: a series names every label",
                    family.name
                );
            }
        }
    }
}

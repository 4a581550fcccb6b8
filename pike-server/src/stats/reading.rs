//! [`GatewayReading`]: the gateway's own counters and histograms that the
//! dashboard shows, read from its Prometheus recorder (the same numbers
//! `/metrics` exports; nothing is counted a second time).

use pike_api::server::metric_families as families;

use super::exposition::samples;
use super::histogram::Buckets;

/// The counters and histograms behind the message rates and the six SLA
/// indicators (`docs/gateway.md`, "SLA indicators"), cumulative since the
/// gateway started. Gateway-wide: the gateway's metrics carry no app label.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct GatewayReading {
    /// `pike_push_total{delivery="reliable"}`.
    pub(crate) push_reliable: f64,
    /// `pike_push_total{delivery="transient"}`.
    pub(crate) push_transient: f64,
    /// `pike_downlink_sent_total{kind="reliable"}`.
    pub(crate) downlink_sent_reliable: f64,
    /// `pike_downlink_sent_total{kind="transient"}`.
    pub(crate) downlink_sent_transient: f64,
    /// `pike_downlink_acked_total`.
    pub(crate) downlink_acked: f64,
    /// `pike_uplink_received_total`.
    pub(crate) uplink_received: f64,
    /// `pike_uplink_acked_total{result="ok"}`.
    pub(crate) uplink_acked_ok: f64,
    /// `pike_uplink_acked_total{result="failed"}`.
    pub(crate) uplink_acked_failed: f64,
    /// `pike_room_messages_sent_total`.
    pub(crate) room_messages_sent: f64,
    /// `pike_connections_total`, all transports.
    pub(crate) connections_accepted: f64,
    /// `pike_uplink_ack_seconds` buckets.
    pub(crate) uplink_ack: Buckets,
    /// `pike_downlink_ack_seconds` buckets.
    pub(crate) downlink_ack: Buckets,
    /// `pike_channel_ready_seconds` buckets.
    pub(crate) channel_ready: Buckets,
}

impl GatewayReading {
    /// Reads the families from a rendering of the recorder. A family the
    /// text lacks reads as zero. Histograms are read from their `_bucket`
    /// series: a recorder that exports summaries instead (not the binary's,
    /// [`crate::metric_families::recorder_builder`]) gives no latencies.
    pub(crate) fn parse(text: &str) -> Self {
        let mut r = Self::default();
        for s in samples(text) {
            let v = s.value;
            match (s.name.strip_suffix("_bucket"), s.name) {
                (Some(histogram), _) => {
                    let Some(le) = s.label("le").and_then(le) else {
                        continue;
                    };
                    let buckets = match histogram {
                        families::UPLINK_ACK_SECONDS => &mut r.uplink_ack,
                        families::DOWNLINK_ACK_SECONDS => &mut r.downlink_ack,
                        families::CHANNEL_READY_SECONDS => &mut r.channel_ready,
                        _ => continue,
                    };
                    buckets.add(le, v);
                }
                (None, families::PUSH_TOTAL) => match s.label("delivery") {
                    Some("reliable") => r.push_reliable += v,
                    Some("transient") => r.push_transient += v,
                    _ => {}
                },
                (None, families::DOWNLINK_SENT_TOTAL) => match s.label("kind") {
                    Some("reliable") => r.downlink_sent_reliable += v,
                    Some("transient") => r.downlink_sent_transient += v,
                    _ => {}
                },
                (None, families::DOWNLINK_ACKED_TOTAL) => r.downlink_acked += v,
                (None, families::UPLINK_RECEIVED_TOTAL) => r.uplink_received += v,
                (None, families::UPLINK_ACKED_TOTAL) => match s.label("result") {
                    Some("ok") => r.uplink_acked_ok += v,
                    Some("failed") => r.uplink_acked_failed += v,
                    _ => {}
                },
                (None, families::ROOM_MESSAGES_SENT_TOTAL) => r.room_messages_sent += v,
                (None, families::CONNECTIONS_TOTAL) => r.connections_accepted += v,
                _ => {}
            }
        }
        r
    }

    /// Messages delivered (SLA indicator 6's sum): uplink taken by
    /// backends, reliable downlink acknowledged, transient downlink
    /// written.
    pub(crate) fn delivered(&self) -> f64 {
        self.uplink_acked_ok + self.downlink_acked + self.downlink_sent_transient
    }
}

/// A bucket bound: a number or `+Inf`.
fn le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        other => other.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_families_it_needs_and_skips_the_others() {
        let text = "\
pike_push_total{delivery=\"reliable\"} 4
pike_push_total{delivery=\"transient\"} 2
pike_downlink_sent_total{kind=\"reliable\"} 5
pike_downlink_sent_total{kind=\"transient\"} 3
pike_downlink_acked_total 4
pike_uplink_received_total 7
pike_uplink_acked_total{result=\"ok\"} 6
pike_uplink_acked_total{result=\"failed\"} 1
pike_room_messages_sent_total 9
pike_connections_total{transport=\"tcp\"} 2
pike_connections_total{transport=\"ws\"} 1
pike_uplink_ack_seconds_bucket{le=\"0.01\"} 6
pike_uplink_ack_seconds_bucket{le=\"+Inf\"} 7
pike_uplink_ack_seconds_sum 0.5
pike_uplink_ack_seconds_count 7
pike_command_queue_depth_bucket{le=\"1\"} 99
pike_http_requests_total{route=\"/v1/push\",status=\"200\"} 6
";
        let r = GatewayReading::parse(text);
        assert_eq!(r.push_reliable, 4.0);
        assert_eq!(r.push_transient, 2.0);
        assert_eq!(r.downlink_sent_reliable, 5.0);
        assert_eq!(r.downlink_sent_transient, 3.0);
        assert_eq!(r.downlink_acked, 4.0);
        assert_eq!(r.uplink_received, 7.0);
        assert_eq!(r.uplink_acked_ok, 6.0);
        assert_eq!(r.uplink_acked_failed, 1.0);
        assert_eq!(r.room_messages_sent, 9.0);
        assert_eq!(r.connections_accepted, 3.0);
        assert_eq!(r.uplink_ack.count(), 7.0);
        assert_eq!(r.downlink_ack.count(), 0.0);
        assert_eq!(r.delivered(), 6.0 + 4.0 + 3.0);
    }
}

//! The rates and SLA indicators of the interval between two
//! [`GatewayReading`]s, and the totals of one.

use super::reading::GatewayReading;
use crate::http::model::{StatsRates, StatsSla, StatsTotals};

/// What a counter counted from `earlier` to `later`; a counter that went
/// down (a restarted recorder) counts from zero.
fn delta(earlier: f64, later: f64) -> f64 {
    if later >= earlier {
        later - earlier
    } else {
        later
    }
}

/// `numerator / denominator`, at most 1 (messages in flight at the
/// interval's edges can make it a little more); `None` without traffic.
fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| (numerator / denominator).min(1.0))
}

/// A counter as a whole number (the recorder renders counters as integers).
fn whole(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        // Saturating: `as` clamps a float beyond u64::MAX to u64::MAX.
        value.round() as u64
    } else {
        0
    }
}

/// The events per second and the SLA indicators from `earlier` to `later`,
/// `secs` apart (more than 0).
pub(crate) fn between(
    earlier: &GatewayReading,
    later: &GatewayReading,
    secs: f64,
) -> (StatsRates, StatsSla) {
    let d = |f: fn(&GatewayReading) -> f64| delta(f(earlier), f(later));
    let per_sec = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
    let rates = StatsRates {
        pushes: per_sec(d(|r| r.push_reliable) + d(|r| r.push_transient)),
        downlink_sent: per_sec(d(|r| r.downlink_sent_reliable) + d(|r| r.downlink_sent_transient)),
        downlink_acked: per_sec(d(|r| r.downlink_acked)),
        uplink_received: per_sec(d(|r| r.uplink_received)),
        room_messages_sent: per_sec(d(|r| r.room_messages_sent)),
        connections_accepted: per_sec(d(|r| r.connections_accepted)),
    };
    let sla = StatsSla {
        uplink_success_ratio: ratio(d(|r| r.uplink_acked_ok), d(|r| r.uplink_received)),
        uplink_ack_p99_secs: later.uplink_ack.since(&earlier.uplink_ack).quantile(0.99),
        downlink_success_ratio: ratio(d(|r| r.downlink_acked), d(|r| r.downlink_sent_reliable)),
        downlink_ack_p99_secs: later
            .downlink_ack
            .since(&earlier.downlink_ack)
            .quantile(0.99),
        channel_ready_p99_secs: later
            .channel_ready
            .since(&earlier.channel_ready)
            .quantile(0.99),
        messages_delivered: whole(
            d(|r| r.uplink_acked_ok) + d(|r| r.downlink_acked) + d(|r| r.downlink_sent_transient),
        ),
    };
    (rates, sla)
}

/// The counters of `reading`, since the gateway started.
pub(crate) fn totals(reading: &GatewayReading) -> StatsTotals {
    StatsTotals {
        pushes: whole(reading.push_reliable + reading.push_transient),
        downlink_sent: whole(reading.downlink_sent_reliable + reading.downlink_sent_transient),
        downlink_acked: whole(reading.downlink_acked),
        uplink_received: whole(reading.uplink_received),
        uplink_acked_ok: whole(reading.uplink_acked_ok),
        room_messages_sent: whole(reading.room_messages_sent),
        connections_accepted: whole(reading.connections_accepted),
        messages_delivered: whole(reading.delivered()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ratios_cover_the_interval_only() {
        let earlier = GatewayReading {
            push_reliable: 10.0,
            downlink_sent_reliable: 10.0,
            downlink_acked: 10.0,
            uplink_received: 4.0,
            uplink_acked_ok: 4.0,
            ..GatewayReading::default()
        };
        let mut later = GatewayReading {
            push_reliable: 20.0,
            push_transient: 5.0,
            downlink_sent_reliable: 20.0,
            downlink_sent_transient: 5.0,
            downlink_acked: 18.0,
            uplink_received: 4.0,
            uplink_acked_ok: 4.0,
            ..GatewayReading::default()
        };
        later.downlink_ack.add(0.01, 8.0);
        later.downlink_ack.add(f64::INFINITY, 8.0);
        let (rates, sla) = between(&earlier, &later, 5.0);
        assert_eq!(rates.pushes, 3.0);
        assert_eq!(rates.downlink_sent, 3.0);
        assert_eq!(sla.downlink_success_ratio, Some(0.8));
        assert_eq!(sla.uplink_success_ratio, None, "no uplink in the interval");
        assert_eq!(sla.uplink_ack_p99_secs, None);
        let p99 = sla.downlink_ack_p99_secs.expect("a latency");
        assert!(p99 > 0.0 && p99 <= 0.01, "{p99}");
        assert_eq!(sla.messages_delivered, 8 + 5);
        assert_eq!(totals(&later).messages_delivered, 4 + 18 + 5);
    }

    #[test]
    fn a_ratio_is_at_most_one_and_a_reset_counts_from_zero() {
        assert_eq!(ratio(11.0, 10.0), Some(1.0));
        assert_eq!(delta(10.0, 3.0), 3.0);
        assert_eq!(whole(f64::NAN), 0);
        assert_eq!(whole(-1.0), 0);
    }
}

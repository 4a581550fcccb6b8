//! Push→receive latency: the stamp each payload carries and the recorder
//! the receiving devices feed.
//!
//! The stamp holds the *scheduled* send time (an offset from the run's
//! start, on this process's monotonic clock), not the time the request
//! actually left: when the sender falls behind, the wait counts as latency,
//! so an overloaded gateway cannot hide behind a slowed-down generator
//! (no coordinated omission).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// The first word of every stamped payload.
const MAGIC: &str = "pb1";
/// Highest latency the histogram tells apart (larger ones saturate).
const MAX_TRACKED_US: u64 = 600_000_000;

/// What a payload says about itself.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Stamp {
    /// The message's number in the run (0-based).
    pub(crate) seq: u64,
    /// When it was scheduled to be sent, microseconds after the start.
    pub(crate) scheduled_us: u64,
}

impl Stamp {
    /// The payload: `pb1 <seq> <scheduled_us> ` padded with `.` to `size`
    /// bytes (longer when `size` is too small for the stamp). ASCII, so it
    /// travels as the API's UTF-8 `payload`.
    pub(crate) fn encode(self, size: usize) -> String {
        let mut text = format!("{MAGIC} {} {} ", self.seq, self.scheduled_us);
        let pad = size.saturating_sub(text.len());
        text.extend(std::iter::repeat_n('.', pad));
        text
    }

    /// Reads the stamp back; `None` for a payload that has none.
    pub(crate) fn decode(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut words = text.split(' ');
        if words.next()? != MAGIC {
            return None;
        }
        let seq = words.next()?.parse().ok()?;
        let scheduled_us = words.next()?.parse().ok()?;
        Some(Self { seq, scheduled_us })
    }
}

/// Latency percentiles, microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) count: u64,
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
    pub(crate) mean_us: f64,
}

/// Records push→receive latencies of stamped payloads.
#[derive(Debug)]
pub(crate) struct LatencyRecorder {
    start: Instant,
    histogram: Histogram<u64>,
    received: u64,
    unstamped: u64,
    last_at: Option<Instant>,
}

impl LatencyRecorder {
    /// A recorder for a run whose schedule starts at `start`: 3
    /// significant digits from 1 µs to 10 min.
    pub(crate) fn new(start: Instant) -> Result<Self, hdrhistogram::CreationError> {
        Ok(Self {
            start,
            histogram: Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)?,
            received: 0,
            unstamped: 0,
            last_at: None,
        })
    }

    /// Records a payload received at `at`; returns its stamp (`None`, and
    /// counted apart, for a payload without one).
    pub(crate) fn record(&mut self, payload: &[u8], at: Instant) -> Option<Stamp> {
        let Some(stamp) = Stamp::decode(payload) else {
            self.unstamped += 1;
            return None;
        };
        let scheduled = self.start + Duration::from_micros(stamp.scheduled_us);
        let latency = at.saturating_duration_since(scheduled);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
        self.received += 1;
        self.last_at = Some(self.last_at.map_or(at, |last| last.max(at)));
        Some(stamp)
    }

    /// Stamped payloads recorded.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Payloads without a stamp.
    pub(crate) fn unstamped(&self) -> u64 {
        self.unstamped
    }

    /// When the last stamped payload arrived.
    pub(crate) fn last_at(&self) -> Option<Instant> {
        self.last_at
    }

    /// The percentiles so far.
    pub(crate) fn summary(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        let h = &self.histogram;
        LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_pad() {
        let stamp = Stamp {
            seq: 42,
            scheduled_us: 1_234_567,
        };
        let payload = stamp.encode(64);
        assert_eq!(payload.len(), 64);
        assert!(payload.starts_with("pb1 42 1234567 ."));
        assert_eq!(Stamp::decode(payload.as_bytes()), Some(stamp));
        // Too small a size: the stamp is kept whole.
        let short = stamp.encode(4);
        assert_eq!(short, "pb1 42 1234567 ");
        assert_eq!(Stamp::decode(short.as_bytes()), Some(stamp));
    }

    #[test]
    fn foreign_payloads_have_no_stamp() {
        assert_eq!(Stamp::decode(b"hello"), None);
        assert_eq!(Stamp::decode(b"pb1 x 3"), None);
        assert_eq!(Stamp::decode(b"pb1 3"), None);
        assert_eq!(Stamp::decode(&[0xff, 0xfe]), None);
    }

    #[test]
    fn latency_counts_from_the_scheduled_time() {
        let start = Instant::now();
        let mut recorder = LatencyRecorder::new(start).unwrap();
        // Scheduled at +10 ms; the sender was late and sent it at +90 ms;
        // it arrived at +150 ms. The latency is 140 ms, not 60 ms.
        let payload = Stamp {
            seq: 0,
            scheduled_us: 10_000,
        }
        .encode(64);
        let at = start + Duration::from_millis(150);
        assert!(recorder.record(payload.as_bytes(), at).is_some());
        let summary = recorder.summary();
        assert_eq!(summary.count, 1);
        assert!((139_900..=140_100).contains(&summary.p50_us), "{summary:?}");
        assert_eq!(recorder.last_at(), Some(at));
    }

    #[test]
    fn percentiles_over_many_messages() {
        let start = Instant::now();
        let mut recorder = LatencyRecorder::new(start).unwrap();
        // 1000 messages scheduled 1 ms apart, each received i µs late
        // (1 ..= 1000 µs).
        for i in 0..1000u64 {
            let payload = Stamp {
                seq: i,
                scheduled_us: i * 1000,
            }
            .encode(32);
            let at = start + Duration::from_micros(i * 1000 + i + 1);
            recorder.record(payload.as_bytes(), at);
        }
        recorder.record(b"not ours", start);
        assert_eq!(recorder.received(), 1000);
        assert_eq!(recorder.unstamped(), 1);
        let s = recorder.summary();
        assert!((499..=501).contains(&s.p50_us), "{s:?}");
        assert!((989..=991).contains(&s.p99_us), "{s:?}");
        assert_eq!(s.max_us, 1000);
    }

    #[test]
    fn early_arrival_is_clamped() {
        let start = Instant::now();
        let mut recorder = LatencyRecorder::new(start).unwrap();
        let payload = Stamp {
            seq: 0,
            scheduled_us: 5_000,
        }
        .encode(16);
        recorder.record(payload.as_bytes(), start);
        assert_eq!(recorder.summary().max_us, 1);
    }
}

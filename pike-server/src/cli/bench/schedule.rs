//! Open-loop send times: message `k` of a run at `rate` messages per
//! second is due `k / rate` seconds after the start, whatever happened to
//! the messages before it.

use std::time::Duration;

/// A fixed-rate schedule of a bounded number of messages.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Schedule {
    rate: u64,
    total: u64,
}

impl Schedule {
    /// `rate` messages per second (at least 1) for `duration` (rounded
    /// down to whole messages, at least one).
    pub(crate) fn new(rate: u64, duration: Duration) -> Self {
        let rate = rate.max(1);
        let total = u64::try_from(u128::from(rate) * duration.as_millis() / 1000)
            .unwrap_or(u64::MAX)
            .max(1);
        Self { rate, total }
    }

    /// Messages in the run.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Messages per second.
    pub(crate) fn rate(&self) -> u64 {
        self.rate
    }

    /// When message `k` is due, after the start.
    pub(crate) fn offset(&self, k: u64) -> Duration {
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How long the schedule lasts (the offset one past the last message).
    pub(crate) fn span(&self) -> Duration {
        self.offset(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_and_bounded() {
        let s = Schedule::new(1000, Duration::from_secs(2));
        assert_eq!(s.total(), 2000);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(1500), Duration::from_millis(1500));
        assert_eq!(s.span(), Duration::from_secs(2));
    }

    #[test]
    fn odd_rates_do_not_drift() {
        let s = Schedule::new(3, Duration::from_secs(10));
        assert_eq!(s.total(), 30);
        // 1/3 s steps, computed from k (no accumulated rounding).
        assert_eq!(s.offset(3), Duration::from_secs(1));
        assert_eq!(s.offset(29), Duration::from_nanos(9_666_666_666));
    }

    #[test]
    fn at_least_one_message() {
        assert_eq!(Schedule::new(0, Duration::ZERO).total(), 1);
        assert_eq!(Schedule::new(0, Duration::ZERO).rate(), 1);
        assert_eq!(Schedule::new(10, Duration::from_millis(50)).total(), 1);
    }
}

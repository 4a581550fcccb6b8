//! When fan-out members churn: `P` percent of the members per second
//! disconnect and reconnect, spread evenly over each second, taking the
//! members in a fixed round-robin order.
//!
//! The plan is a pure function of time, so the sweep knows before a
//! measured window which members will churn during it (and its drain) and
//! leaves them out of the step's counts: delivered/expected and the
//! latency histogram cover only members connected through the whole step.

use std::time::Duration;

use tokio::time::Instant;

/// A churn schedule: event `j` at `start + j × interval` takes member
/// `order[j mod order.len()]`.
#[derive(Clone, Debug)]
pub(crate) struct ChurnPlan {
    start: Instant,
    interval: Duration,
    order: Vec<usize>,
}

impl ChurnPlan {
    /// `percent` of `members` per second (at least one event per second
    /// for any positive percent) over the members in `order`; `None` for
    /// no churn (a zero percent or nobody to churn).
    pub(crate) fn new(
        start: Instant,
        percent: f64,
        members: usize,
        order: Vec<usize>,
    ) -> Option<Self> {
        if percent.is_nan() || percent <= 0.0 || order.is_empty() {
            return None;
        }
        let per_sec = (members as f64 * percent / 100.0).max(1.0);
        Some(Self {
            start,
            interval: Duration::from_secs_f64(1.0 / per_sec),
            order,
        })
    }

    /// Churn events per second.
    pub(crate) fn per_sec(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }

    /// When event `j` is due and which member it takes.
    pub(crate) fn event(&self, j: u64) -> (Instant, usize) {
        let at = self.start + self.offset(j);
        let index = usize::try_from(j % self.order.len() as u64).unwrap_or(0);
        (at, self.order[index])
    }

    fn offset(&self, j: u64) -> Duration {
        let nanos = self.interval.as_nanos().saturating_mul(u128::from(j));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The members of every event due in `[from, until]` (each once).
    pub(crate) fn members_between(&self, from: Instant, until: Instant) -> Vec<usize> {
        if until < from || until < self.start {
            return Vec::new();
        }
        let interval = self.interval.as_nanos().max(1);
        let since = |at: Instant| at.saturating_duration_since(self.start).as_nanos();
        // The first event at or after `from`, the last at or before `until`.
        let first = since(from).div_ceil(interval);
        let last = since(until) / interval;
        if last < first {
            return Vec::new();
        }
        let count = last - first + 1;
        let n = self.order.len() as u128;
        if count >= n {
            return self.order.clone();
        }
        (first..=last)
            .map(|j| self.order[usize::try_from(j % n).unwrap_or(0)])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_evenly_spread_round_robin() {
        let start = Instant::now();
        // 2 % of 500 members: 10 per second, every 100 ms.
        let plan = ChurnPlan::new(start, 2.0, 500, vec![4, 7, 9]).unwrap();
        assert!((plan.per_sec() - 10.0).abs() < 1e-9);
        assert_eq!(plan.event(0), (start, 4));
        assert_eq!(plan.event(1), (start + Duration::from_millis(100), 7));
        assert_eq!(plan.event(3), (start + Duration::from_millis(300), 4));
    }

    #[test]
    fn no_churn() {
        let start = Instant::now();
        assert!(ChurnPlan::new(start, 0.0, 500, vec![1]).is_none());
        assert!(ChurnPlan::new(start, f64::NAN, 500, vec![1]).is_none());
        assert!(ChurnPlan::new(start, 1.0, 500, vec![]).is_none());
        // A tiny percent still churns once a second.
        let plan = ChurnPlan::new(start, 0.01, 10, vec![1]).unwrap();
        assert!((plan.per_sec() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn members_between_are_the_events_in_the_interval() {
        let start = Instant::now();
        let order: Vec<usize> = (100..110).collect();
        // 10 per second over 1000 members: every 100 ms.
        let plan = ChurnPlan::new(start, 1.0, 1000, order.clone()).unwrap();
        let ms = |m: u64| start + Duration::from_millis(m);
        // Events 2, 3, 4 (200, 300, 400 ms), bounds included.
        assert_eq!(plan.members_between(ms(200), ms(400)), vec![102, 103, 104]);
        // Between events: none.
        assert_eq!(plan.members_between(ms(201), ms(299)), Vec::<usize>::new());
        // Wrapping around the order.
        assert_eq!(plan.members_between(ms(850), ms(1150)), vec![109, 100, 101]);
        // Longer than a lap: everybody, once.
        assert_eq!(plan.members_between(ms(0), ms(5000)), order);
        // Reversed or before the start.
        assert!(plan.members_between(ms(400), ms(200)).is_empty());
        let early = ChurnPlan::new(ms(1000), 1.0, 1000, vec![1]).unwrap();
        assert!(early.members_between(ms(0), ms(500)).is_empty());
        assert_eq!(early.members_between(ms(0), ms(1000)), vec![1]);
    }
}

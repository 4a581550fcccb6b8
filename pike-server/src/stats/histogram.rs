//! A Prometheus histogram's cumulative buckets, the difference of two
//! readings, and a quantile computed as PromQL's `histogram_quantile` does.

/// Cumulative bucket counts of one histogram series: `(upper bound,
/// observations at or below it)`, sorted by bound, the last bound `+Inf`
/// when the reading had it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Buckets {
    buckets: Vec<(f64, f64)>,
}

impl Buckets {
    /// Adds the bucket `le` with cumulative `count` (a bound read twice is
    /// summed: the same histogram under other labels).
    pub(crate) fn add(&mut self, le: f64, count: f64) {
        match self.buckets.iter_mut().find(|(bound, _)| *bound == le) {
            Some((_, c)) => *c += count,
            None => {
                self.buckets.push((le, count));
                self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
    }

    /// Observations in all buckets (the `+Inf` bucket's count).
    pub(crate) fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |(_, c)| *c)
    }

    /// The observations made between `earlier` and `self` (a bucket
    /// missing from `earlier` counts from zero; a counter that went down,
    /// a restarted recorder, counts from zero too).
    pub(crate) fn since(&self, earlier: &Self) -> Self {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, count)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(bound, _)| *bound == le)
                    .map_or(0.0, |(_, c)| *c);
                (
                    le,
                    if count >= before {
                        count - before
                    } else {
                        count
                    },
                )
            })
            .collect();
        Self { buckets }
    }

    /// The `q` quantile (0 to 1) of the observations, interpolated linearly
    /// inside its bucket as `histogram_quantile` does (the first bucket
    /// starts at 0; one in the `+Inf` bucket is the largest finite bound).
    /// `None` without observations.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                if in_bucket <= 0.0 {
                    return Some(le);
                }
                return Some(lower.0 + (le - lower.0) * (rank - lower.1) / in_bucket);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(f64, f64)]) -> Buckets {
        let mut b = Buckets::default();
        for &(le, count) in pairs {
            b.add(le, count);
        }
        b
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 100 observations: 50 up to 0.1 s, 40 more up to 0.5 s, 10 more up
        // to 1 s.
        let b = buckets(&[
            (f64::INFINITY, 100.0),
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
        ]);
        assert_eq!(b.count(), 100.0);
        let p50 = b.quantile(0.5).expect("p50");
        assert!((p50 - 0.1).abs() < 1e-9, "{p50}");
        let p99 = b.quantile(0.99).expect("p99");
        assert!((p99 - 0.95).abs() < 1e-9, "{p99}");
        assert_eq!(Buckets::default().quantile(0.99), None);
    }

    #[test]
    fn an_observation_beyond_the_last_bound_is_the_last_bound() {
        let b = buckets(&[(1.0, 0.0), (60.0, 0.0), (f64::INFINITY, 3.0)]);
        assert_eq!(b.quantile(0.99), Some(60.0));
    }

    #[test]
    fn since_subtracts_the_earlier_reading() {
        let before = buckets(&[(0.1, 5.0), (1.0, 5.0), (f64::INFINITY, 5.0)]);
        let after = buckets(&[(0.1, 5.0), (1.0, 8.0), (f64::INFINITY, 9.0)]);
        let delta = after.since(&before);
        assert_eq!(delta.count(), 4.0);
        let p50 = delta.quantile(0.5).expect("p50");
        assert!((p50 - 0.7).abs() < 1e-9, "{p50}");
        assert_eq!(delta.quantile(1.0), Some(1.0), "the +Inf bucket");
        assert_eq!(before.since(&after).count(), 5.0, "a reset counts from 0");
    }
}

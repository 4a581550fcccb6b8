//! Reconnect delays that are not Fibonacci steps: a delay picked uniformly in
//! a range (the server's reconnect advice, or the client's spread window
//! after losing a stable connection). The Fibonacci backoff itself is
//! `tunnelkit::FibonacciBackoff`, shared with the rest of the workspace.

use std::time::Duration;

/// A delay picked uniformly in `[min, max]` (microsecond resolution).
pub(crate) fn uniform(rng: &mut fastrand::Rng, min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span = u64::try_from((max - min).as_micros()).unwrap_or(u64::MAX);
    min + Duration::from_micros(rng.u64(0..=span))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn degenerate_range_is_its_bound() {
        let mut rng = fastrand::Rng::with_seed(1);
        let d = Duration::from_secs(3);
        assert_eq!(uniform(&mut rng, d, d), d);
        assert_eq!(uniform(&mut rng, d, Duration::ZERO), d);
    }

    proptest! {
        #[test]
        fn uniform_within_range(seed in any::<u64>(), min_ms in 0u64..10_000, span_ms in 0u64..10_000) {
            let mut rng = fastrand::Rng::with_seed(seed);
            let min = Duration::from_millis(min_ms);
            let max = min + Duration::from_millis(span_ms);
            let d = uniform(&mut rng, min, max);
            prop_assert!(d >= min && d <= max);
        }
    }
}

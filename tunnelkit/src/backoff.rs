//! Fibonacci reconnect backoff with jitter, a cap, and reset after a stable period.

use std::time::{Duration, Instant};

use crate::ConfigError;

/// Settings of a [`FibonacciBackoff`].
///
/// Defaults and why (the seeds give only "Fibonacci, retry until success"):
/// - `unit` **1 s**: the un-jittered delays are 1, 1, 2, 3, 5, 8, 13, 21, 34, 55 s, then the
///   cap. The first retry comes about a second after a failure.
/// - `cap` **60 s**: no client waits more than about a minute once the network is back, and at
///   the cap a mass disconnect still reconnects spread over 30 s (with the default jitter).
/// - `jitter` **0.5**: each delay is drawn uniformly from `[d·(1−j), d·(1+j)]`, i.e.
///   `[0.5·d, 1.5·d]`, then clamped to the cap. Clients dropped together by a server fault do
///   not come back in lockstep (Hermes spreads its reconnects over 15 s for the same reason).
/// - `stable_period` **30 s**: a connection that stayed up this long proves the path works,
///   so the sequence starts over; shorter-lived ones keep growing the delay, so a server that
///   accepts and immediately drops connections is not hammered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffConfig {
    unit: Duration,
    cap: Duration,
    jitter: f64,
    stable_period: Duration,
}

impl BackoffConfig {
    /// Largest accepted cap: a backoff longer than a day is a configuration mistake.
    pub const MAX_CAP: Duration = Duration::from_secs(24 * 60 * 60);

    /// The Fibonacci unit: delays are `F(n)·unit`. Greater than zero.
    pub fn unit(&mut self, unit: Duration) -> &mut Self {
        self.unit = unit;
        self
    }

    /// Upper bound on every delay, jitter included. At least `unit`, at most
    /// [`BackoffConfig::MAX_CAP`].
    pub fn cap(&mut self, cap: Duration) -> &mut Self {
        self.cap = cap;
        self
    }

    /// Jitter fraction `j` in `[0, 1]`: a delay `d` becomes uniform in `[d·(1−j), d·(1+j)]`
    /// (clamped to the cap). 0 disables jitter.
    pub fn jitter(&mut self, jitter: f64) -> &mut Self {
        self.jitter = jitter;
        self
    }

    /// How long a connection must stay up for the sequence to start over.
    pub fn stable_period(&mut self, period: Duration) -> &mut Self {
        self.stable_period = period;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.unit.is_zero() {
            return Err(ConfigError::OutOfBounds {
                name: "unit",
                reason: "must be greater than zero",
            });
        }
        if self.cap < self.unit || self.cap > Self::MAX_CAP {
            return Err(ConfigError::OutOfBounds {
                name: "cap",
                reason: "must be at least `unit` and at most one day",
            });
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::OutOfBounds {
                name: "jitter",
                reason: "must be a number between 0 and 1",
            });
        }
        Ok(())
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            unit: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            jitter: 0.5,
            stable_period: Duration::from_secs(30),
        }
    }
}

/// Fibonacci-sequence backoff: the delay before the n-th consecutive retry is `F(n)·unit`
/// (`F = 1, 1, 2, 3, 5, …`), jittered, capped, with no retry limit ("retry until success").
///
/// Sans-IO and deterministic: randomness comes from a seeded generator and time is passed in,
/// so the same seed and inputs give the same delays. Typical use by a reconnect loop:
///
/// ```
/// use std::time::Duration;
/// use tunnelkit::{BackoffConfig, FibonacciBackoff};
///
/// let mut backoff = FibonacciBackoff::new(BackoffConfig::default(), 7)?;
/// let first = backoff.next_delay(); // connect failed: wait this long
/// assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(1500));
/// let t0 = tokio::time::Instant::now().into_std(); // or the caller's `now`
/// backoff.on_connected(t0); // connected
/// // ... the connection drops 45 s later: it was stable, so the sequence starts over.
/// assert!(backoff.on_disconnected(t0 + Duration::from_secs(45)));
/// assert_eq!(backoff.attempts(), 0);
/// # Ok::<(), tunnelkit::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct FibonacciBackoff {
    config: BackoffConfig,
    rng: fastrand::Rng,
    /// Un-jittered delay of the next retry.
    current: Duration,
    /// The term after `current`.
    following: Duration,
    attempts: u32,
    connected_at: Option<Instant>,
}

impl FibonacciBackoff {
    /// Builds a backoff, validating `config`. `seed` makes the jitter reproducible; give each
    /// client a different one (e.g. from its device id) so clients do not jitter alike.
    pub fn new(config: BackoffConfig, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            rng: fastrand::Rng::with_seed(seed),
            current: config.unit,
            following: config.unit,
            attempts: 0,
            connected_at: None,
        })
    }

    /// The delay to wait before the next retry; advances the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.advance();
        let jitter = self.config.jitter;
        if jitter == 0.0 {
            return base;
        }
        let (lower, upper) = jitter_bounds(base, jitter, self.config.cap);
        let span = upper.saturating_sub(lower);
        (lower + span.mul_f64(self.rng.f64())).clamp(lower, upper)
    }

    /// Starts the sequence over: the next delay is `1·unit` (jittered).
    pub fn reset(&mut self) {
        self.current = self.config.unit;
        self.following = self.config.unit;
        self.attempts = 0;
    }

    /// Retries since the last reset (the number of delays handed out).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records that a connection was established at `at`.
    pub fn on_connected(&mut self, at: Instant) {
        self.connected_at = Some(at);
    }

    /// Resets the sequence if the connection recorded by [`FibonacciBackoff::on_connected`]
    /// has been up for the stable period at `now`. Returns whether it reset. Call it from a
    /// timer, or let [`FibonacciBackoff::on_disconnected`] do it.
    pub fn maybe_reset(&mut self, now: Instant) -> bool {
        let Some(since) = self.connected_at else {
            return false;
        };
        if now.saturating_duration_since(since) < self.config.stable_period {
            return false;
        }
        self.reset();
        // Counted from now on: the stable connection has reset the sequence once.
        self.connected_at = None;
        true
    }

    /// Records that the connection was lost at `at`: resets the sequence if it had been stable
    /// (see [`FibonacciBackoff::maybe_reset`]), otherwise the next delay keeps growing.
    /// Returns whether it reset.
    pub fn on_disconnected(&mut self, at: Instant) -> bool {
        let reset = self.maybe_reset(at);
        self.connected_at = None;
        reset
    }

    /// The next un-jittered term, capped; advances the sequence.
    fn advance(&mut self) -> Duration {
        let term = self.current.min(self.config.cap);
        if self.current < self.config.cap {
            let next = self.current.saturating_add(self.following);
            self.current = self.following;
            self.following = next;
        }
        self.attempts = self.attempts.saturating_add(1);
        term
    }
}

/// The range a jittered `base` is drawn from: `[base·(1−j), min(base·(1+j), cap)]`.
fn jitter_bounds(base: Duration, jitter: f64, cap: Duration) -> (Duration, Duration) {
    // `jitter` is in [0, 1] and `base` at most a day, so these products cannot overflow.
    let spread = base.mul_f64(jitter);
    let lower = base.saturating_sub(spread);
    let upper = base.saturating_add(spread).min(cap);
    (lower, upper.max(lower))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn config(unit_ms: u64, cap_ms: u64, jitter: f64) -> BackoffConfig {
        let mut config = BackoffConfig::default();
        config
            .unit(Duration::from_millis(unit_ms))
            .cap(Duration::from_millis(cap_ms))
            .jitter(jitter);
        config
    }

    /// Un-jittered reference: `min(F(n)·unit, cap)` for n = 1..=count.
    fn reference(unit: Duration, cap: Duration, count: usize) -> Vec<Duration> {
        let (mut a, mut b) = (1u128, 1u128);
        (0..count)
            .map(|_| {
                let nanos = a.saturating_mul(unit.as_nanos());
                let term = u64::try_from(nanos).map_or(cap, Duration::from_nanos);
                (a, b) = (b, a.saturating_add(b));
                term.min(cap)
            })
            .collect()
    }

    #[test]
    fn default_sequence_is_fibonacci_seconds_up_to_the_cap() {
        let mut plain = BackoffConfig::default();
        plain.jitter(0.0);
        let mut backoff = FibonacciBackoff::new(plain, 1).unwrap();
        let secs: Vec<u64> = (0..13).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 60, 60, 60]);
        assert_eq!(backoff.attempts(), 13);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        assert!(FibonacciBackoff::new(config(0, 1000, 0.5), 0).is_err());
        assert!(FibonacciBackoff::new(config(1000, 999, 0.5), 0).is_err());
        assert!(FibonacciBackoff::new(config(1000, 2000, 1.5), 0).is_err());
        assert!(FibonacciBackoff::new(config(1000, 2000, -0.1), 0).is_err());
        assert!(FibonacciBackoff::new(config(1000, 2000, f64::NAN), 0).is_err());
        let too_long = BackoffConfig::MAX_CAP + Duration::from_secs(1);
        let mut long = BackoffConfig::default();
        long.cap(too_long);
        assert!(FibonacciBackoff::new(long, 0).is_err());
    }

    #[test]
    fn same_seed_same_delays_and_seeds_differ() {
        let delays = |seed| {
            let mut backoff = FibonacciBackoff::new(BackoffConfig::default(), seed).unwrap();
            (0..20).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(42), delays(42));
        assert_ne!(delays(42), delays(43));
    }

    #[test]
    fn reset_after_stable_period_only() {
        let mut backoff = FibonacciBackoff::new(BackoffConfig::default(), 3).unwrap();
        for _ in 0..5 {
            backoff.next_delay();
        }
        let t0 = tokio::time::Instant::now().into_std();
        backoff.on_connected(t0);
        assert!(!backoff.maybe_reset(t0 + Duration::from_secs(29)));
        assert_eq!(backoff.attempts(), 5);
        // A short-lived connection does not reset: the delay keeps growing.
        assert!(!backoff.on_disconnected(t0 + Duration::from_secs(10)));
        assert_eq!(backoff.attempts(), 5);
        assert!(!backoff.maybe_reset(t0 + Duration::from_secs(3600)));

        let t1 = t0 + Duration::from_secs(100);
        backoff.on_connected(t1);
        assert!(backoff.maybe_reset(t1 + Duration::from_secs(30)));
        assert_eq!(backoff.attempts(), 0);
        // Already reset for this connection; disconnecting does not count twice.
        assert!(!backoff.on_disconnected(t1 + Duration::from_secs(40)));
    }

    proptest! {
        #[test]
        fn delays_stay_within_jitter_bounds_and_cap(
            unit_ms in 1u64..5_000,
            cap_factor in 1u64..200,
            jitter in 0.0f64..=1.0,
            seed in any::<u64>(),
            count in 1usize..80,
        ) {
            let unit = Duration::from_millis(unit_ms);
            let cap = unit * u32::try_from(cap_factor).unwrap();
            let mut backoff = FibonacciBackoff::new(config(unit_ms, unit_ms * cap_factor, jitter), seed).unwrap();
            for term in reference(unit, cap, count) {
                let delay = backoff.next_delay();
                let (lower, upper) = jitter_bounds(term, jitter, cap);
                prop_assert!(delay >= lower, "{delay:?} < {lower:?} (term {term:?})");
                prop_assert!(delay <= upper, "{delay:?} > {upper:?} (term {term:?})");
                prop_assert!(delay <= cap);
                // The bounds themselves are the documented ones.
                prop_assert!(lower.as_secs_f64() >= term.as_secs_f64() * (1.0 - jitter) - 1e-9);
                prop_assert!(upper.as_secs_f64() <= term.as_secs_f64() * (1.0 + jitter) + 1e-9);
            }
        }

        #[test]
        fn unjittered_sequence_is_fibonacci_until_the_cap(
            unit_ms in 1u64..10_000,
            cap_factor in 1u64..8_000,
            count in 1usize..100,
        ) {
            let unit = Duration::from_millis(unit_ms);
            let cap = Duration::from_millis(unit_ms * cap_factor);
            let mut backoff = FibonacciBackoff::new(config(unit_ms, unit_ms * cap_factor, 0.0), 0).unwrap();
            let got: Vec<_> = (0..count).map(|_| backoff.next_delay()).collect();
            prop_assert_eq!(&got, &reference(unit, cap, count));
            // Each term below the cap is the sum of the two before it.
            for w in got.windows(3) {
                if w[2] < cap {
                    prop_assert_eq!(w[2], w[0] + w[1]);
                }
            }
        }

        #[test]
        fn reset_restarts_the_sequence(
            seed in any::<u64>(),
            before in 0usize..50,
            jitter in 0.0f64..=1.0,
        ) {
            let cfg = config(1000, 60_000, jitter);
            let mut fresh = FibonacciBackoff::new(cfg, seed).unwrap();
            let mut used = FibonacciBackoff::new(cfg, seed).unwrap();
            for _ in 0..before {
                used.next_delay();
            }
            used.reset();
            prop_assert_eq!(used.attempts(), 0);
            let unit = Duration::from_secs(1);
            let expected = reference(unit, Duration::from_secs(60), 10);
            for term in expected {
                let (a, b) = (fresh.next_delay(), used.next_delay());
                let (lower, upper) = jitter_bounds(term, jitter, Duration::from_secs(60));
                prop_assert!(lower <= a && a <= upper);
                prop_assert!(lower <= b && b <= upper);
            }
        }
    }
}

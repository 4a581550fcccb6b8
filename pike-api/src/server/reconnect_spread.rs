//! The reconnect window the gateway advises in every server hello, sized
//! by how many connections it holds.
//!
//! When a gateway dies without a go-away (a crash, `SIGKILL`, a lost
//! machine) every client loses its connection at the same moment. A client
//! whose connection was stable waits a delay picked uniformly in the window
//! its last server hello advised before dialling again (see
//! `docs/channel.md`). A fixed window is wrong both ways: 10 s is far too
//! slow for a gateway of 1,000 connections that takes 1,500 TLS handshakes
//! a second, and far too fast for one of 200,000. So the gateway advises
//! `connections × headroom / handshake rate`: the time its replacement
//! needs to take every client back at its handshake rate, with headroom,
//! bounded by `[min, max]`.

use std::time::Duration;

/// Full TLS 1.3 handshakes a second one core of the gateway takes, when
/// neither configured nor measured
/// ([`ReconnectSpread::with_rate_per_worker`]): measured ≈ 1,300–1,800 on
/// this project's benchmark machine (`pike bench tls-handshakes`), rounded
/// down.
pub const DEFAULT_HANDSHAKES_PER_WORKER: u32 = 1_000;

/// How the advised reconnect window is sized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReconnectSpread {
    rate: Option<u32>,
    /// Handshakes a second per worker when `rate` is `None`.
    per_worker: u32,
    headroom: f64,
    min: Duration,
    max: Duration,
}

impl ReconnectSpread {
    /// `rate` handshakes a second the gateway takes (`None`:
    /// [`DEFAULT_HANDSHAKES_PER_WORKER`] per runtime worker), a window of
    /// at least `min` and at most `max`.
    pub fn new(rate: Option<u32>, min: Duration, max: Duration) -> Self {
        Self {
            rate: rate.filter(|r| *r > 0),
            per_worker: DEFAULT_HANDSHAKES_PER_WORKER,
            headroom: 1.5,
            min,
            max: max.max(min),
        }
    }

    /// Without a configured rate, `rate` handshakes a second per runtime
    /// worker instead of [`DEFAULT_HANDSHAKES_PER_WORKER`] (the gateway
    /// measures its own at start); 0 is ignored.
    #[must_use]
    pub fn with_rate_per_worker(mut self, rate: u32) -> Self {
        if rate > 0 {
            self.per_worker = rate;
        }
        self
    }

    /// The window to advise when the gateway holds `connections` and runs
    /// `workers` runtime workers.
    pub fn window(&self, connections: usize, workers: usize) -> Duration {
        let rate = self.rate.map_or_else(
            || f64::from(self.per_worker) * workers.max(1) as f64,
            f64::from,
        );
        let seconds = connections as f64 * self.headroom / rate;
        Duration::try_from_secs_f64(seconds)
            .unwrap_or(self.max)
            .clamp(self.min, self.max)
    }
}

impl Default for ReconnectSpread {
    /// Auto rate, between 1 s and 60 s.
    fn default() -> Self {
        Self::new(None, Duration::from_secs(1), Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_grows_with_connections_within_bounds() {
        let spread = ReconnectSpread::default();
        // Few connections: the floor.
        assert_eq!(spread.window(10, 1), Duration::from_secs(1));
        // 10,000 connections at 1,000/s with 1.5× headroom: 15 s.
        assert_eq!(spread.window(10_000, 1), Duration::from_secs(15));
        // Two workers take them twice as fast.
        assert_eq!(spread.window(10_000, 2), Duration::from_millis(7_500));
        // A million: the ceiling.
        assert_eq!(spread.window(1_000_000, 1), Duration::from_secs(60));
    }

    #[test]
    fn configured_rate_wins_and_bad_values_are_tamed() {
        let spread = ReconnectSpread::new(Some(3_000), Duration::ZERO, Duration::from_secs(30));
        assert_eq!(spread.window(2_000, 1), Duration::from_secs(1));
        assert_eq!(spread.window(2_000, 8), Duration::from_secs(1));
        // A zero rate means "auto", not a division by zero.
        let auto = ReconnectSpread::new(Some(0), Duration::ZERO, Duration::from_secs(30));
        assert_eq!(auto.window(1_000, 1), Duration::from_millis(1_500));
        // max below min is raised to min.
        let odd = ReconnectSpread::new(None, Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(odd.window(1_000_000, 1), Duration::from_secs(5));
    }

    #[test]
    fn a_measured_rate_per_worker_replaces_the_default_but_not_a_configured_rate() {
        let measured = ReconnectSpread::default().with_rate_per_worker(4_000);
        // 10,000 connections at 4,000/s per worker, 1.5× headroom.
        assert_eq!(measured.window(10_000, 1), Duration::from_millis(3_750));
        assert_eq!(measured.window(10_000, 2), Duration::from_millis(1_875));
        let configured = ReconnectSpread::new(Some(1_000), Duration::ZERO, Duration::from_secs(60))
            .with_rate_per_worker(4_000);
        assert_eq!(configured.window(10_000, 2), Duration::from_secs(15));
        let zero = ReconnectSpread::default().with_rate_per_worker(0);
        assert_eq!(zero, ReconnectSpread::default(), "0 is ignored");
    }
}

//! The receivers' scoreboard of the current step: which stamps count
//! (messages of this step scheduled inside its measured window), how many
//! arrived and their latency (arrival − *scheduled* time) in an
//! HdrHistogram with 3 significant digits.
//!
//! One mutex for everything: the generator runs on one core, so the lock
//! is never contended for long, and receivers take it once per frame (a
//! room batch carries many messages).

use hdrhistogram::Histogram;
use std::sync::{Mutex, PoisonError};
use tokio::time::Instant;

use super::stamp::SweepStamp;

/// Highest latency the histogram tells apart, microseconds (larger ones
/// saturate).
const MAX_TRACKED_US: u64 = 600_000_000;

/// A step's deliveries, as counted by the receivers.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StepDeliveries {
    /// Counted deliveries (messages of the step scheduled in its window).
    pub(crate) delivered: u64,
    /// Latency percentiles, milliseconds (0 without deliveries).
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

/// What the board holds.
#[derive(Debug)]
struct State {
    /// The current step (0: none yet).
    step: u32,
    /// The measured window, nanoseconds after the epoch: `[from, until)`.
    from_ns: u64,
    until_ns: u64,
    delivered: u64,
    histogram: Histogram<u64>,
}

impl State {
    /// Whether `stamp` counts for the current step of generator run `run`
    /// (stamps of another run never do).
    fn counts(&self, run: u32, stamp: SweepStamp) -> bool {
        stamp.run == run
            && stamp.step == self.step
            && stamp.scheduled_ns >= self.from_ns
            && stamp.scheduled_ns < self.until_ns
    }
}

/// The scoreboard, shared by every receiver.
#[derive(Debug)]
pub(crate) struct Board {
    epoch: Instant,
    /// This generator's run id, in every stamp it makes.
    run: u32,
    state: Mutex<State>,
}

impl Board {
    /// A board whose stamps count from `epoch`.
    pub(crate) fn new(epoch: Instant) -> Result<Self, hdrhistogram::CreationError> {
        Ok(Self {
            epoch,
            run: super::stamp::run_id(),
            state: Mutex::new(State {
                step: 0,
                from_ns: 0,
                until_ns: 0,
                delivered: 0,
                histogram: Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)?,
            }),
        })
    }

    /// The stamp of a message of `step` scheduled at `at`, with this
    /// generator's run id.
    pub(crate) fn stamp(&self, step: u32, at: Instant) -> SweepStamp {
        SweepStamp {
            run: self.run,
            step,
            scheduled_ns: self.ns_at(at),
        }
    }

    /// Nanoseconds from the epoch to `at` (0 before it).
    pub(crate) fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts step `step` with the measured window `[from, until)`: the
    /// counts and the histogram start over.
    pub(crate) fn begin(&self, step: u32, from: Instant, until: Instant) {
        let (from_ns, until_ns) = (self.ns_at(from), self.ns_at(until));
        let mut state = self.lock();
        state.step = step;
        state.from_ns = from_ns;
        state.until_ns = until_ns;
        state.delivered = 0;
        state.histogram.reset();
    }

    /// The current step (0 before the first).
    #[cfg(test)]
    pub(crate) fn step(&self) -> u32 {
        self.lock().step
    }

    /// Records the stamps of messages that arrived `now_ns` after the
    /// epoch; returns how many counted.
    pub(crate) fn record(&self, now_ns: u64, stamps: &[SweepStamp]) -> u64 {
        self.record_unless(now_ns, stamps, 0)
    }

    /// As [`record`](Self::record), for a receiver left out of step
    /// `excluded` (0: of none): nothing counts while that step is current.
    pub(crate) fn record_unless(&self, now_ns: u64, stamps: &[SweepStamp], excluded: u32) -> u64 {
        let mut state = self.lock();
        if excluded != 0 && state.step == excluded {
            return 0;
        }
        let mut counted = 0;
        for &stamp in stamps {
            if state.counts(self.run, stamp) {
                let us = now_ns.saturating_sub(stamp.scheduled_ns) / 1000;
                state.histogram.saturating_record(us.max(1));
                counted += 1;
            }
        }
        state.delivered += counted;
        counted
    }

    /// Records one payload that arrived at `at` (payloads without a stamp
    /// are ignored); whether it counted.
    pub(crate) fn record_payload(&self, payload: &[u8], at: Instant) -> bool {
        match SweepStamp::decode(payload) {
            Some(stamp) => self.record(self.ns_at(at), &[stamp]) == 1,
            None => false,
        }
    }

    /// The current step's deliveries so far.
    pub(crate) fn deliveries(&self) -> StepDeliveries {
        let state = self.lock();
        let h = &state.histogram;
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return StepDeliveries {
                delivered: state.delivered,
                ..StepDeliveries::default()
            };
        }
        StepDeliveries {
            delivered: state.delivered,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stamp_of(board: &Board, step: u32, ms: u64) -> SweepStamp {
        SweepStamp {
            run: board.run,
            step,
            scheduled_ns: ms * 1_000_000,
        }
    }

    #[test]
    fn only_the_current_steps_window_counts() {
        let epoch = Instant::now();
        let board = Board::new(epoch).unwrap();
        // Step 2's window is [1000 ms, 2000 ms).
        board.begin(
            2,
            epoch + Duration::from_millis(1000),
            epoch + Duration::from_millis(2000),
        );
        let now = 2_500 * 1_000_000;
        let counted = board.record(
            now,
            &[
                stamp_of(&board, 2, 999),  // warm-up
                stamp_of(&board, 2, 1000), // first of the window
                stamp_of(&board, 2, 1999), // last of the window
                stamp_of(&board, 2, 2000), // after the window
                stamp_of(&board, 1, 1500), // a late message of the step before
            ],
        );
        assert_eq!(counted, 2);
        let d = board.deliveries();
        assert_eq!(d.delivered, 2);
        // Latencies 1500 ms and 501 ms.
        assert!((d.max_ms - 1500.0).abs() < 2.0, "{d:?}");
        assert!((d.p50_ms - 501.0).abs() < 1.0, "{d:?}");
    }

    #[test]
    fn begin_starts_over() {
        let epoch = Instant::now();
        let board = Board::new(epoch).unwrap();
        board.begin(1, epoch, epoch + Duration::from_secs(1));
        assert_eq!(board.record(5_000_000, &[stamp_of(&board, 1, 1)]), 1);
        board.begin(
            2,
            epoch + Duration::from_secs(1),
            epoch + Duration::from_secs(2),
        );
        assert_eq!(board.step(), 2);
        assert_eq!(board.deliveries(), StepDeliveries::default());
        // Step 1's message arriving now does not count for step 2.
        assert_eq!(board.record(1_500_000_000, &[stamp_of(&board, 1, 500)]), 0);
    }

    #[test]
    fn excluded_receivers_do_not_count_in_their_step() {
        let epoch = Instant::now();
        let board = Board::new(epoch).unwrap();
        board.begin(3, epoch, epoch + Duration::from_secs(1));
        assert_eq!(
            board.record_unless(2_000_000, &[stamp_of(&board, 3, 1)], 3),
            0
        );
        // Left out of another step: counts here.
        assert_eq!(
            board.record_unless(2_000_000, &[stamp_of(&board, 3, 1)], 2),
            1
        );
        assert_eq!(board.deliveries().delivered, 1);
    }

    #[test]
    fn another_runs_messages_never_count() {
        let epoch = Instant::now();
        let board = Board::new(epoch).unwrap();
        board.begin(1, epoch, epoch + Duration::from_secs(10));
        let mut stale = stamp_of(&board, 1, 100);
        stale.run = (stale.run + 1) % super::super::stamp::RUNS;
        assert_eq!(board.record(200_000_000, &[stale]), 0);
        assert_eq!(board.record(200_000_000, &[stamp_of(&board, 1, 100)]), 1);
        let made = board.stamp(1, epoch + Duration::from_millis(100));
        assert_eq!(made, stamp_of(&board, 1, 100));
    }

    #[test]
    fn payloads_are_decoded_and_early_arrivals_clamped() {
        let epoch = Instant::now();
        let board = Board::new(epoch).unwrap();
        board.begin(1, epoch, epoch + Duration::from_secs(10));
        let payload = stamp_of(&board, 1, 100).encode(64);
        // Arrives "before" it was scheduled: 1 µs, not a negative latency.
        assert!(board.record_payload(payload.as_bytes(), epoch));
        assert!(!board.record_payload(b"not a stamp", epoch));
        let d = board.deliveries();
        assert_eq!(d.delivered, 1);
        assert!((d.max_ms - 0.001).abs() < 1e-9, "{d:?}");
        assert_eq!(board.ns_at(epoch + Duration::from_nanos(42)), 42);
    }
}

//! The search for a contender's highest sustained rate: after the fixed
//! rates of a sweep (which give the first bracket), probes double the rate
//! while it is sustained, then bisect (geometrically) between the highest
//! sustained and the lowest failed rate until they are within
//! [`TOLERANCE`] of each other or [`MAX_PROBES`] probes have run. A fixed
//! rate grid makes "best sustained" a step function that flips between
//! runs (mosquitto's S3 was 100k/s in one full run and 20k/s in another);
//! the search gives a figure within 10 %.
//!
//! Pure: the harness asks [`RateSearch::next`] for the rate of the next
//! probe and tells it the outcome with [`RateSearch::record`].

/// Highest sustained and lowest failed rate within 10 % of each other end
/// the search.
pub(crate) const TOLERANCE: f64 = 0.10;

/// Most probes of one search (each one a generator run of warm-up, step
/// and drain, with its connects).
pub(crate) const MAX_PROBES: u32 = 6;

/// The state of one search.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RateSearch {
    /// Every rate sustained so far.
    held: Vec<u64>,
    /// Lowest rate that failed so far.
    failed: Option<u64>,
    /// Highest rate the generator is allowed to offer.
    ceiling: u64,
    probes: u32,
}

impl RateSearch {
    /// A search below `ceiling` (at least 1), bracketed first by the fixed
    /// rates already measured: `(rate, sustained)`.
    pub(crate) fn new(ceiling: u64, measured: &[(u64, bool)]) -> Self {
        let mut search = Self {
            held: Vec::new(),
            failed: None,
            ceiling: ceiling.max(1),
            probes: 0,
        };
        for &(rate, ok) in measured {
            search.note(rate, ok);
        }
        search
    }

    fn note(&mut self, rate: u64, sustained: bool) {
        if sustained {
            self.held.push(rate);
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
    }

    /// The rate of the next probe; `None` when the search is over.
    pub(crate) fn next(&self) -> Option<u64> {
        if self.probes >= MAX_PROBES {
            return None;
        }
        let rate = match (self.sustained(), self.failed) {
            (None, None) => return None,
            // Everything so far held: double, up to the ceiling.
            (Some(lo), None) => {
                if lo >= self.ceiling {
                    return None;
                }
                lo.saturating_mul(2).min(self.ceiling)
            }
            // Nothing held: halve, down to 1.
            (None, Some(hi)) => {
                if hi <= 1 {
                    return None;
                }
                hi / 2
            }
            (Some(lo), Some(hi)) => {
                if hi as f64 <= lo as f64 * (1.0 + TOLERANCE) || hi <= lo + 1 {
                    return None;
                }
                let mid = ((lo as f64) * (hi as f64)).sqrt().round() as u64;
                mid.clamp(lo + 1, hi - 1)
            }
        };
        Some(rate)
    }

    /// The highest rate sustained below the lowest failure (a rate that
    /// held above one that failed is noise: the failure bounds the search).
    pub(crate) fn sustained(&self) -> Option<u64> {
        self.held
            .iter()
            .copied()
            .filter(|&r| self.failed.is_none_or(|f| r < f))
            .max()
    }

    /// The outcome of the probe at `rate`.
    pub(crate) fn record(&mut self, rate: u64, sustained: bool) {
        self.probes += 1;
        self.note(rate, sustained);
    }

    /// Probes run so far.
    pub(crate) fn probes(&self) -> u32 {
        self.probes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a server that sustains up to `limit`.
    fn search(ceiling: u64, fixed: &[u64], limit: u64) -> (RateSearch, Vec<u64>) {
        let measured: Vec<(u64, bool)> = fixed.iter().map(|&r| (r, r <= limit)).collect();
        let mut s = RateSearch::new(ceiling, &measured);
        let mut probes = Vec::new();
        while let Some(rate) = s.next() {
            probes.push(rate);
            s.record(rate, rate <= limit);
        }
        (s, probes)
    }

    #[test]
    fn bisects_the_bracket_of_the_fixed_rates_to_within_ten_percent() {
        // S3's grid: 20k held, 100k failed; the server holds 57k.
        let (s, probes) = search(1_000_000, &[2_000, 20_000, 100_000], 57_000);
        assert_eq!(probes.len(), 5, "{probes:?}");
        let (lo, hi) = (s.sustained().unwrap(), s.failed.unwrap());
        assert!(lo <= 57_000 && hi > 57_000, "{lo}..{hi}");
        assert!(hi as f64 <= lo as f64 * 1.1, "{lo}..{hi}");
        assert_eq!(probes[0], 44_721, "the geometric middle of 20k and 100k");
    }

    #[test]
    fn doubles_while_everything_holds_and_stops_at_the_ceiling() {
        let (s, probes) = search(150_000, &[2_000, 20_000, 100_000], u64::MAX);
        assert_eq!(probes, vec![150_000]);
        assert_eq!(s.sustained(), Some(150_000));
        assert_eq!(s.next(), None);
        // Doubling, then bisecting, bounded by MAX_PROBES.
        let (s, probes) = search(10_000_000, &[100], 5_000);
        assert_eq!(&probes[..5], &[200, 400, 800, 1_600, 3_200]);
        assert_eq!(probes.len() as u32, MAX_PROBES);
        assert_eq!(s.probes(), MAX_PROBES);
    }

    #[test]
    fn halves_when_nothing_holds() {
        let (s, probes) = search(1_000, &[100, 1_000], 30);
        assert_eq!(&probes[..2], &[50, 25]);
        assert!(s.sustained().unwrap() <= 30);
        let (_, probes) = search(1_000, &[1], 0);
        assert!(probes.is_empty(), "nothing below 1");
    }

    #[test]
    fn a_bracket_already_within_tolerance_or_nothing_measured_needs_no_probe() {
        assert_eq!(
            RateSearch::new(1_000, &[(100, true), (105, false)]).next(),
            None
        );
        assert_eq!(RateSearch::new(1_000, &[]).next(), None);
        // Noise: the lower rate failed, the higher held: search under the
        // failure.
        let mut s = RateSearch::new(1_000, &[(100, false), (400, true)]);
        assert_eq!(s.next(), Some(50));
        s.record(50, true);
        assert_eq!(s.sustained(), Some(50));
        assert_eq!(s.next(), Some(71), "between 50 and 100");
    }
}

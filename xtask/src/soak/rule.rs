//! The soak's verdict: a pure function of the per-minute samples.
//!
//! The rule, exactly:
//! - **Warm-up**: the first `max(2, ceil(20 % of the run))` minutes
//!   ([`warmup_minutes`]); they are sampled and shown but are not a
//!   baseline.
//! - **Growth**: for each watched series (gateway RSS, open descriptors,
//!   tokio tasks alive, unicast p99, room p99) the *baseline* is the median
//!   of the first [`window_minutes`] minutes after the warm-up (an eighth of
//!   them, at least two: 2 for a 10-minute run, 6 for an hour) and the *end*
//!   the median of the last as many minutes of the run (with few minutes
//!   after the warm-up the two windows overlap; with one they are the same
//!   minute). A median of a few minutes, not one minute or a mean, so that
//!   one minute's p99 spike on a shared machine is not read as a trend,
//!   while a rise that lasts the whole window is.
//!   RSS, descriptors and tasks fail when `end > baseline × 1.05` (their
//!   minutes barely vary, so two windows show a trend).
//! - **The p99s are judged by their trend**: a minute's p99 on a shared
//!   virtual machine is dominated by the host (the disk's fsync tail for
//!   reliable unicast, other tenants' CPU), so that the six-minute medians
//!   of an hour with no trend at all range over 3× (33 to 106 ms in the
//!   run of 2026-12-03 13:00). Comparing the first and last windows then
//!   judges that noise. Instead the Theil–Sen line through the minutes
//!   after the warm-up (the median of all pairwise slopes: up to 29 % of
//!   the minutes may be outliers) is fitted with Sen's 95 % confidence
//!   interval for its slope ([`trend`]); a p99 fails when even the
//!   **lower bound** of that interval makes it grow more than 5 % over the
//!   judged minutes (from the line's value at the first of them), and by
//!   more than 1 ms. A p99 that climbs steadily fails; one that spikes and
//!   comes back does not. The window medians are shown beside it.
//! - A series with no finite value in a window is reported as unmeasured
//!   and does not fail.
//! - **Delivery**: every minute of the run, warm-up included, every
//!   reliable stream (unicast pushes, room messages, uplink) must deliver
//!   everything the gateway accepted in that minute (`delivered ==
//!   expected`, i.e. 100 %), have sent something (`expected > 0`) and have
//!   had no message the gateway refused or failed. Messages the generator
//!   could not send in time (`unsent`: it fell behind, e.g. the publisher
//!   waited too long for a free HTTP connection) were never accepted; they
//!   are shown, and a rising count shows in the p99s, but they are not a
//!   loss.

/// Growth allowed from the baseline to the end: 5 %.
pub(crate) const GROWTH_LIMIT: f64 = 0.05;

/// Minutes of warm-up for a run of `minutes`: 20 % rounded up, at least 2.
pub(crate) fn warmup_minutes(minutes: u32) -> u32 {
    minutes.div_ceil(5).max(2)
}

/// Minutes in the baseline and in the end window when `after` minutes
/// follow the warm-up: an eighth, at least 2.
pub(crate) fn window_minutes(after: usize) -> usize {
    (after / 8).max(2)
}

/// One reliable stream's counts in one minute.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Delivery {
    /// Messages the gateway accepted (the deliveries expected).
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    /// Messages the gateway refused, or whose request failed.
    pub(crate) errors: u64,
    /// Messages the generator could not send in time (not accepted).
    pub(crate) unsent: u64,
}

impl Delivery {
    /// Delivered %, 0 when nothing was expected.
    pub(crate) fn pct(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.delivered as f64 * 100.0 / self.expected as f64
        }
    }

    /// Whether this minute of the stream is whole: something sent, all of it
    /// delivered, nothing refused.
    pub(crate) fn whole(&self) -> bool {
        self.expected > 0 && self.delivered >= self.expected && self.errors == 0
    }
}

/// The reliable streams, in table order.
pub(crate) const STREAMS: [&str; 3] = ["unicast", "room", "uplink"];

/// One minute of the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Sample {
    /// 1-based.
    pub(crate) minute: u32,
    pub(crate) rss_kib: f64,
    pub(crate) fds: f64,
    /// Tokio tasks alive (`pike_runtime_alive_tasks`); NaN when unknown.
    pub(crate) tasks: f64,
    pub(crate) unicast_p99_ms: f64,
    pub(crate) room_p99_ms: f64,
    /// One per [`STREAMS`] entry.
    pub(crate) delivery: [Delivery; 3],
}

/// A watched series.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Series {
    Rss,
    Fds,
    Tasks,
    UnicastP99,
    RoomP99,
}

impl Series {
    pub(crate) const ALL: [Self; 5] = [
        Self::Rss,
        Self::Fds,
        Self::Tasks,
        Self::UnicastP99,
        Self::RoomP99,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Rss => "RSS (KiB)",
            Self::Fds => "open fds",
            Self::Tasks => "tokio tasks",
            Self::UnicastP99 => "unicast p99 (ms)",
            Self::RoomP99 => "room p99 (ms)",
        }
    }

    pub(crate) fn value(self, sample: &Sample) -> f64 {
        match self {
            Self::Rss => sample.rss_kib,
            Self::Fds => sample.fds,
            Self::Tasks => sample.tasks,
            Self::UnicastP99 => sample.unicast_p99_ms,
            Self::RoomP99 => sample.room_p99_ms,
        }
    }

    /// Growth smaller than this (in the series' unit) never fails.
    pub(crate) fn floor(self) -> f64 {
        match self {
            Self::UnicastP99 | Self::RoomP99 => 1.0,
            Self::Rss | Self::Fds | Self::Tasks => 0.0,
        }
    }
}

/// The growth check of one series.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Growth {
    pub(crate) series: Series,
    /// Median of the first window after the warm-up (NaN: unmeasured).
    pub(crate) baseline: f64,
    /// Median of the last window.
    pub(crate) end: f64,
    /// The trend over the minutes after the warm-up (None: fewer than
    /// three finite minutes).
    pub(crate) trend: Option<Trend>,
    pub(crate) pass: bool,
}

impl Series {
    /// Whether the series is judged by its trend (the p99s) rather than by
    /// its two windows.
    pub(crate) fn by_trend(self) -> bool {
        matches!(self, Self::UnicastP99 | Self::RoomP99)
    }
}

/// A Theil–Sen line through `(minute, value)` points with Sen's 95 %
/// confidence interval for its slope, as growth over the points' span.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Trend {
    /// The line's value at the first point.
    pub(crate) start: f64,
    /// Growth over the span by the median slope, in the series' unit.
    pub(crate) growth: f64,
    /// Growth over the span by the interval's lower and upper slopes.
    pub(crate) growth_low: f64,
    pub(crate) growth_high: f64,
}

impl Trend {
    /// `growth / start` in percent, and the same for the lower and upper
    /// bounds.
    pub(crate) fn pct(&self) -> (f64, f64, f64) {
        let pct = |g: f64| {
            if self.start > 0.0 {
                g / self.start * 100.0
            } else {
                f64::NAN
            }
        };
        (
            pct(self.growth),
            pct(self.growth_low),
            pct(self.growth_high),
        )
    }
}

/// Two-sided 95 % normal quantile.
const Z_95: f64 = 1.959_964;

/// The Theil–Sen line through the finite points and Sen's confidence
/// interval for its slope (Gilbert 1987, §16.5: the slopes of ranks
/// `(N − C)/2` and `(N + C)/2 + 1` of the `N` pairwise slopes, with
/// `C = z · sqrt(n (n − 1) (2n + 5) / 18)`); `None` under three points.
pub(crate) fn trend(points: &[(f64, f64)]) -> Option<Trend> {
    let points: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let n = points.len();
    if n < 3 {
        return None;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for (i, &(x1, y1)) in points.iter().enumerate() {
        for &(x2, y2) in &points[i + 1..] {
            if x2 != x1 {
                slopes.push((y2 - y1) / (x2 - x1));
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let slope = median(slopes.iter().copied());
    let count = slopes.len() as f64;
    let nf = n as f64;
    let c = Z_95 * (nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0).sqrt();
    // 1-based ranks, rounded outwards (a wider interval, never a narrower).
    let rank = |r: f64| (r.clamp(1.0, count) as usize).clamp(1, slopes.len()) - 1;
    let low = slopes[rank(((count - c) / 2.0).floor())];
    let high = slopes[rank(((count + c) / 2.0 + 1.0).ceil())];
    let intercept = median(points.iter().map(|(x, y)| y - slope * x));
    let first = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let last = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let span = last - first;
    Some(Trend {
        start: intercept + slope * first,
        growth: slope * span,
        growth_low: low * span,
        growth_high: high * span,
    })
}

impl Growth {
    /// `end / baseline − 1`, in percent (NaN when unmeasured).
    pub(crate) fn pct(&self) -> f64 {
        if self.baseline > 0.0 {
            (self.end / self.baseline - 1.0) * 100.0
        } else {
            f64::NAN
        }
    }
}

/// The verdict of a run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Verdict {
    pub(crate) warmup: u32,
    /// The minutes of the baseline and of the end window.
    pub(crate) baseline_minutes: Vec<u32>,
    pub(crate) end_minutes: Vec<u32>,
    pub(crate) growth: Vec<Growth>,
    /// `(minute, stream)` of every minute a reliable stream was not whole.
    pub(crate) losses: Vec<(u32, &'static str)>,
}

impl Verdict {
    pub(crate) fn pass(&self) -> bool {
        self.losses.is_empty() && self.growth.iter().all(|g| g.pass)
    }
}

/// Median of the finite values: the middle one, or the mean of the two
/// middle ones (NaN when there is none).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut finite: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    finite.sort_by(f64::total_cmp);
    let n = finite.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => finite[n / 2],
        _ => (finite[n / 2 - 1] + finite[n / 2]) / 2.0,
    }
}

/// Applies the rule (module docs) to a run of `minutes` minutes.
pub(crate) fn judge(samples: &[Sample], minutes: u32) -> Verdict {
    let warmup = warmup_minutes(minutes);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.minute > warmup).collect();
    let window = window_minutes(after.len());
    let head = &after[..after.len().min(window)];
    let tail = &after[after.len().saturating_sub(window)..];
    let growth = Series::ALL
        .iter()
        .map(|&series| {
            let baseline = median(head.iter().map(|s| series.value(s)));
            let end = median(tail.iter().map(|s| series.value(s)));
            let points: Vec<(f64, f64)> = after
                .iter()
                .map(|s| (f64::from(s.minute), series.value(s)))
                .collect();
            let trend = trend(&points);
            let grew = if series.by_trend() {
                trend.as_ref().is_some_and(|t| {
                    t.growth_low > t.start * GROWTH_LIMIT && t.growth_low > series.floor()
                })
            } else {
                end > baseline * (1.0 + GROWTH_LIMIT) && end - baseline > series.floor()
            };
            Growth {
                series,
                baseline,
                end,
                trend,
                // Unmeasured (NaN) compares false: it does not fail.
                pass: !grew,
            }
        })
        .collect();
    let mut losses = Vec::new();
    for sample in samples {
        for (stream, delivery) in STREAMS.iter().zip(&sample.delivery) {
            if !delivery.whole() {
                losses.push((sample.minute, *stream));
            }
        }
    }
    // A run that produced fewer minutes than asked lost the rest.
    let measured = u32::try_from(samples.len()).unwrap_or(u32::MAX);
    for minute in measured + 1..=minutes {
        for stream in STREAMS {
            losses.push((minute, stream));
        }
    }
    Verdict {
        warmup,
        baseline_minutes: head.iter().map(|s| s.minute).collect(),
        end_minutes: tail.iter().map(|s| s.minute).collect(),
        growth,
        losses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(n: u64) -> Delivery {
        Delivery {
            expected: n,
            delivered: n,
            errors: 0,
            unsent: 0,
        }
    }

    fn flat(minutes: u32) -> Vec<Sample> {
        (1..=minutes)
            .map(|minute| Sample {
                minute,
                rss_kib: 100_000.0,
                fds: 8_000.0,
                tasks: 9_000.0,
                unicast_p99_ms: 4.0,
                room_p99_ms: 6.0,
                delivery: [whole(1000), whole(5000), whole(500)],
            })
            .collect()
    }

    #[test]
    fn warmup_is_a_fifth_and_at_least_two_minutes() {
        assert_eq!(warmup_minutes(3), 2);
        assert_eq!(warmup_minutes(10), 2);
        assert_eq!(warmup_minutes(11), 3);
        assert_eq!(warmup_minutes(60), 12);
    }

    #[test]
    fn a_flat_run_passes() {
        let verdict = judge(&flat(10), 10);
        assert!(verdict.pass(), "{verdict:?}");
        assert_eq!(verdict.warmup, 2);
        assert_eq!(verdict.baseline_minutes, [3, 4]);
        assert_eq!(verdict.end_minutes, [9, 10]);
        assert_eq!(verdict.growth.len(), Series::ALL.len());
        assert!(verdict.growth.iter().all(|g| g.pct().abs() < 1e-9));
    }

    #[test]
    fn an_hour_compares_medians_of_six_minutes() {
        assert_eq!(window_minutes(8), 2);
        assert_eq!(window_minutes(48), 6);
        let mut samples = flat(60);
        // One spike in each window is noise: the medians do not move.
        samples[12].unicast_p99_ms = 80.0;
        samples[58].unicast_p99_ms = 80.0;
        samples[59].rss_kib = 200_000.0;
        let verdict = judge(&samples, 60);
        assert_eq!(verdict.baseline_minutes, (13..=18).collect::<Vec<_>>());
        assert_eq!(verdict.end_minutes, (55..=60).collect::<Vec<_>>());
        assert!(verdict.pass(), "{verdict:?}");
        // A rise over the whole end window is a trend.
        for s in &mut samples[54..] {
            s.rss_kib = 110_000.0;
        }
        let verdict = judge(&samples, 60);
        assert!(!verdict.pass());
        assert!((verdict.growth[0].pct() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn growth_during_the_warmup_does_not_count() {
        let mut samples = flat(10);
        samples[0].rss_kib = 50_000.0;
        samples[1].rss_kib = 80_000.0;
        assert!(judge(&samples, 10).pass());
    }

    #[test]
    fn six_percent_more_rss_fails() {
        let mut samples = flat(10);
        for s in &mut samples[8..] {
            s.rss_kib = 106_000.0;
        }
        let verdict = judge(&samples, 10);
        assert!(!verdict.pass());
        let rss = &verdict.growth[0];
        assert_eq!(rss.series, Series::Rss);
        assert!(!rss.pass && (rss.pct() - 6.0).abs() < 1e-9);
        assert!(verdict.growth[1..].iter().all(|g| g.pass));
        // 4 % passes.
        for s in &mut samples[8..] {
            s.rss_kib = 104_000.0;
        }
        assert!(judge(&samples, 10).pass());
    }

    #[test]
    fn p99_growth_under_the_floor_passes() {
        let mut samples = flat(20);
        for (i, s) in samples.iter_mut().enumerate() {
            // A steady climb of +20 % over the run, but only 0.8 ms.
            s.unicast_p99_ms = 4.0 + 0.8 * i as f64 / 19.0;
        }
        assert!(judge(&samples, 20).pass());
        for (i, s) in samples.iter_mut().enumerate() {
            s.unicast_p99_ms = 4.0 + 1.5 * i as f64 / 19.0;
        }
        assert!(!judge(&samples, 20).pass());
    }

    #[test]
    fn a_steady_p99_climb_fails_and_spikes_do_not() {
        // Spikes in a third of the minutes, including both windows, with
        // no trend underneath: the median slope is flat and its interval
        // holds zero.
        let mut samples = flat(60);
        for (i, s) in samples.iter_mut().enumerate() {
            s.unicast_p99_ms = if i % 3 == 0 {
                30.0 + i as f64 * 7.0
            } else {
                30.0
            };
            s.room_p99_ms = 38.0 + (i % 5) as f64;
        }
        for s in &mut samples[54..] {
            s.unicast_p99_ms = 120.0;
        }
        let verdict = judge(&samples, 60);
        assert!(verdict.pass(), "{verdict:?}");
        // The two windows would have failed it.
        let unicast = &verdict.growth[3];
        assert!(unicast.end > unicast.baseline * 1.05, "{unicast:?}");
        // +8 % over the judged 47 minutes, steadily, with the same noise.
        for (i, s) in samples.iter_mut().enumerate() {
            s.room_p99_ms = 38.0 + (i % 5) as f64 + 0.07 * i as f64;
        }
        let verdict = judge(&samples, 60);
        let room = &verdict.growth[4];
        assert!(!room.pass, "{room:?}");
        let (pct, low, high) = room.trend.as_ref().expect("a trend").pct();
        assert!(low > 5.0 && low <= pct && pct <= high, "{pct} {low} {high}");
    }

    #[test]
    fn the_trend_of_a_line_is_the_line() {
        let points: Vec<(f64, f64)> = (0..10)
            .map(|x| (f64::from(x), 100.0 + 2.0 * f64::from(x)))
            .collect();
        let t = trend(&points).expect("a trend");
        assert!((t.start - 100.0).abs() < 1e-9, "{t:?}");
        assert!((t.growth - 18.0).abs() < 1e-9, "{t:?}");
        assert!((t.growth_low - 18.0).abs() < 1e-9 && (t.growth_high - 18.0).abs() < 1e-9);
        assert!(trend(&points[..2]).is_none());
        let with_nan = [(1.0, 1.0), (2.0, f64::NAN), (3.0, 3.0)];
        assert!(trend(&with_nan).is_none());
    }

    #[test]
    fn a_999_permille_minute_fails() {
        let mut samples = flat(10);
        samples[4].delivery[0] = Delivery {
            expected: 1000,
            delivered: 999,
            errors: 0,
            unsent: 0,
        };
        assert!((samples[4].delivery[0].pct() - 99.9).abs() < 1e-9);
        let verdict = judge(&samples, 10);
        assert!(!verdict.pass());
        assert_eq!(verdict.losses, vec![(5, "unicast")]);
        // Also in the warm-up.
        let mut samples = flat(10);
        samples[0].delivery[1].delivered -= 1;
        assert_eq!(judge(&samples, 10).losses, vec![(1, "room")]);
    }

    #[test]
    fn refusals_silence_and_missing_minutes_fail() {
        let mut samples = flat(10);
        samples[3].delivery[2].errors = 1;
        // Unsent messages were never accepted: shown, not a loss.
        samples[5].delivery[0].unsent = 16;
        samples[6].delivery[1] = Delivery::default();
        assert_eq!(judge(&samples, 10).losses, vec![(4, "uplink"), (7, "room")]);
        let verdict = judge(&flat(9), 10);
        assert_eq!(verdict.losses.len(), 3);
        assert!(verdict.losses.iter().all(|(m, _)| *m == 10));
    }

    #[test]
    fn unknown_tasks_do_not_fail() {
        let mut samples = flat(10);
        for s in &mut samples {
            s.tasks = f64::NAN;
        }
        let verdict = judge(&samples, 10);
        assert!(verdict.pass());
        assert!(verdict.growth[2].baseline.is_nan());
    }
}

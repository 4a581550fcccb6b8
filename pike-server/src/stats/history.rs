//! [`StatsHistory`]: the ring of recent samples behind `GET /v1/stats`, and
//! the task that fills it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use pike_api::server::PushHandle;

use super::interval;
use super::reading::GatewayReading;
use crate::apps::AppDirectory;
use crate::http::model::{StatsRates, StatsSla};

/// Spacing of the samples on the binary (5 s).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples kept (120: ten minutes at [`SAMPLE_EVERY`]); the oldest goes
/// when a new one comes.
pub const MAX_SAMPLES: usize = 120;

/// Shortest spacing accepted (10 ms; shorter is raised to it).
pub const MIN_SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// One sample as kept: the connections of every app that had some, and
/// the gateway's rates and SLA indicators over the interval before it.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    /// When it was taken, unix milliseconds.
    pub(crate) at_ms: u64,
    /// Open connections per app (apps without any left out), per
    /// transport.
    pub(crate) apps: HashMap<String, Vec<(&'static str, usize)>>,
    /// Seconds measured, rates and SLA (none on the first sample and
    /// without metrics).
    pub(crate) interval: Option<(f64, StatsRates, StatsSla)>,
}

/// The last [`MAX_SAMPLES`] samples, one every `every`.
///
/// Memory is bounded: at most [`MAX_SAMPLES`] points, each holding about
/// 20 numbers plus the per-transport connection counts of each configured
/// app that has connections (apps × transports, both fixed by the
/// configuration), and one previous `GatewayReading` (a few dozen
/// numbers: three histograms of 16 buckets).
#[derive(Debug)]
pub struct StatsHistory {
    every: Duration,
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    points: VecDeque<Point>,
    last: Option<(Instant, GatewayReading)>,
}

impl StatsHistory {
    /// An empty history whose samples are `every` apart (at least
    /// [`MIN_SAMPLE_EVERY`]); nothing fills it until
    /// [`spawn_sampler`] runs.
    pub fn new(every: Duration) -> Self {
        Self {
            every: every.max(MIN_SAMPLE_EVERY),
            ring: Mutex::new(Ring::default()),
        }
    }

    /// The spacing of the samples.
    pub fn every(&self) -> Duration {
        self.every
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a sample taken at `now` (`at_ms` on the wall clock); drops the
    /// oldest beyond [`MAX_SAMPLES`].
    pub(crate) fn record(
        &self,
        now: Instant,
        at_ms: u64,
        apps: HashMap<String, Vec<(&'static str, usize)>>,
        reading: Option<GatewayReading>,
    ) {
        let mut ring = self.ring();
        let interval = match (&ring.last, &reading) {
            (Some((then, earlier)), Some(later)) => {
                let secs = now.saturating_duration_since(*then).as_secs_f64();
                let (rates, sla) = interval::between(earlier, later, secs);
                Some((secs, rates, sla))
            }
            _ => None,
        };
        ring.last = reading.map(|r| (now, r));
        if ring.points.len() == MAX_SAMPLES {
            ring.points.pop_front();
        }
        ring.points.push_back(Point {
            at_ms,
            apps,
            interval,
        });
    }

    /// Calls `f` with each sample, oldest first, under the history's lock
    /// (keep `f` short: the sampler waits meanwhile).
    pub(crate) fn for_each(&self, f: impl FnMut(&Point)) {
        self.ring().points.iter().for_each(f);
    }
}

/// Starts the task that samples every [`StatsHistory::every`]: the
/// connections of each app in `apps` (from `push`) and, with `metrics`, the
/// gateway's counters. The first sample is taken at once. The task ends
/// once the history is dropped (at its next tick). Call it inside a tokio
/// runtime.
pub fn spawn_sampler(
    history: &Arc<StatsHistory>,
    push: PushHandle,
    apps: Arc<AppDirectory>,
    metrics: Option<PrometheusHandle>,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<StatsHistory> = Arc::downgrade(history);
    let every = history.every();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(history) = weak.upgrade() else {
                return;
            };
            let reading = metrics.as_ref().map(|m| GatewayReading::parse(&m.render()));
            let counts = apps
                .ids()
                .filter_map(|app| {
                    let counts = push.transport_counts(app);
                    (!counts.is_empty()).then(|| (app.to_owned(), counts))
                })
                .collect();
            let now = tokio::time::Instant::now().into_std();
            history.record(now, crate::unix_ms(), counts, reading);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_max_samples_with_intervals_after_the_first() {
        let history = StatsHistory::new(Duration::from_secs(5));
        let start = tokio::time::Instant::now().into_std();
        for i in 0..(MAX_SAMPLES as u64 + 7) {
            let reading = GatewayReading {
                push_reliable: (i * 10) as f64,
                ..GatewayReading::default()
            };
            let apps = HashMap::from([("demo".to_owned(), vec![("tcp", i as usize)])]);
            history.record(start + Duration::from_secs(5 * i), i, apps, Some(reading));
        }
        let mut seen = Vec::new();
        history.for_each(|p| seen.push(p.clone()));
        assert_eq!(seen.len(), MAX_SAMPLES);
        assert_eq!(seen[0].at_ms, 7, "the oldest went first");
        let (secs, rates, _) = seen[0].interval.expect("an interval");
        assert_eq!(secs, 5.0);
        assert_eq!(rates.pushes, 2.0);

        let fresh = StatsHistory::new(Duration::ZERO);
        assert_eq!(fresh.every(), MIN_SAMPLE_EVERY);
        fresh.record(start, 1, HashMap::new(), Some(GatewayReading::default()));
        fresh.record(start, 2, HashMap::new(), None);
        let mut intervals = Vec::new();
        fresh.for_each(|p| intervals.push(p.interval.is_some()));
        assert_eq!(intervals, [false, false], "first sample, then no metrics");
    }
}

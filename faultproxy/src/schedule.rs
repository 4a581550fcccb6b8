//! Scheduled cuts: a list of (offset, action) run on tokio time.

use std::time::Duration;

use crate::faults::Action;

/// Steps to apply at offsets from the moment the schedule is started with
/// [`ProxyHandle::run`](crate::ProxyHandle::run). Steps run in offset order
/// (equal offsets in insertion order).
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    steps: Vec<(Duration, Action)>,
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `action` at `offset`.
    #[must_use]
    pub fn at(mut self, offset: Duration, action: Action) -> Self {
        self.steps.push((offset, action));
        self
    }

    /// Applies `action` `times` times, at `first`, `first + period`, ...
    #[must_use]
    pub fn every(mut self, first: Duration, period: Duration, times: u32, action: Action) -> Self {
        for i in 0..times {
            self.steps.push((first + period * i, action.clone()));
        }
        self
    }

    /// Adds a blackhole of `dir` from `at` for `length`.
    #[must_use]
    pub fn blackhole(self, dir: crate::Direction, at: Duration, length: Duration) -> Self {
        self.at(at, Action::Blackhole { dir, on: true })
            .at(at + length, Action::Blackhole { dir, on: false })
    }

    /// The steps in the order they run.
    pub(crate) fn into_steps(mut self) -> Vec<(Duration, Action)> {
        self.steps.sort_by_key(|(at, _)| *at);
        self.steps
    }
}

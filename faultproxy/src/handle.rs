//! The control handle: change faults at run time, read the counters.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::faults::{Action, Direction, Link, LinkFaults, State};
use crate::schedule::Schedule;

/// State shared by a proxy's tasks and its handles.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The fault state; every connection holds a receiver.
    pub(crate) state: watch::Sender<State>,
    /// What happened so far.
    pub(crate) counters: Counters,
    /// Seed of the per-connection / per-flow random generators.
    pub(crate) seed: u64,
}

impl Shared {
    /// A clean state.
    pub(crate) fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            state: watch::Sender::new(State::default()),
            counters: Counters::default(),
            seed,
        })
    }

    /// A generator for connection or flow number `n`, derived from the
    /// proxy's seed (so one connection's draws do not depend on others').
    pub(crate) fn rng(&self, n: u64) -> fastrand::Rng {
        fastrand::Rng::with_seed(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// Atomic counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) bytes: [AtomicU64; 2],
    pub(crate) writes: [AtomicU64; 2],
    pub(crate) datagrams: [AtomicU64; 2],
    pub(crate) dropped: [AtomicU64; 2],
}

impl Counters {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// One forwarded TCP write of `n` bytes on `link`.
    pub(crate) fn wrote(&self, link: Link, n: usize) {
        Self::add(&self.bytes[link.index()], n as u64);
        Self::add(&self.writes[link.index()], 1);
    }
}

/// A snapshot of a proxy's counters.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Stats {
    /// TCP connections accepted and dialed upstream (UDP: flows created).
    pub connections: u64,
    /// TCP connections open now (UDP: flows in the table).
    pub active: u64,
    /// TCP connections turned away because `max_connections` were open, or
    /// UDP datagrams dropped because the flow table was full.
    pub refused: u64,
    /// Connections reset by [`Action::Reset`] (both sides count as one).
    pub resets: u64,
    /// Connections ended because one side failed (reset, error, dial
    /// failure); the other side is reset too.
    pub errors: u64,
    /// Bytes forwarded client → upstream (TCP and UDP payload).
    pub bytes_up: u64,
    /// Bytes forwarded upstream → client.
    pub bytes_down: u64,
    /// TCP writes to the upstream (with slicing: one per slice).
    pub writes_up: u64,
    /// TCP writes to the client.
    pub writes_down: u64,
    /// UDP datagrams forwarded client → upstream.
    pub datagrams_up: u64,
    /// UDP datagrams forwarded upstream → client.
    pub datagrams_down: u64,
    /// UDP datagrams dropped client → upstream (drop rate, blackhole, full
    /// delay line).
    pub dropped_up: u64,
    /// UDP datagrams dropped upstream → client.
    pub dropped_down: u64,
}

/// Cloneable control of a running proxy. Changes apply at once to new and
/// existing connections (a chunk already waiting out its latency keeps the
/// delay it was given).
#[derive(Clone, Debug)]
pub struct ProxyHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ProxyHandle {
    /// Applies one action.
    pub fn apply(&self, action: Action) {
        tracing::debug!(?action, "fault");
        self.shared.state.send_modify(|state| state.apply(&action));
    }

    /// Sets latency and jitter for `dir`.
    pub fn set_latency(&self, dir: Direction, latency: Duration, jitter: Duration) {
        self.apply(Action::Latency {
            dir,
            latency,
            jitter,
        });
    }

    /// Limits `dir` to `bytes_per_sec` (`None`: unlimited).
    pub fn set_bandwidth(&self, dir: Direction, bytes_per_sec: Option<u64>) {
        self.apply(Action::Bandwidth { dir, bytes_per_sec });
    }

    /// Slices writes in `dir` to at most `max` bytes (`None` or 0: no
    /// slicing).
    pub fn set_slice(&self, dir: Direction, max: Option<usize>) {
        let max = max.and_then(NonZeroUsize::new);
        self.apply(Action::Slice { dir, max });
    }

    /// Drops this fraction of UDP datagrams in `dir`.
    pub fn set_drop_rate(&self, dir: Direction, rate: f64) {
        self.apply(Action::DropRate { dir, rate });
    }

    /// Starts or stops a blackhole in `dir`.
    pub fn blackhole(&self, dir: Direction, on: bool) {
        self.apply(Action::Blackhole { dir, on });
    }

    /// Refuses new TCP connections, or accepts them again.
    pub fn refuse(&self, on: bool) {
        self.apply(Action::Refuse(on));
    }

    /// Resets every current TCP connection (RST to both sides).
    pub fn reset(&self) {
        self.apply(Action::Reset);
    }

    /// Shuts down `dir` of every current TCP connection.
    pub fn half_close(&self, dir: Direction) {
        self.apply(Action::HalfClose(dir));
    }

    /// Lifts every fault.
    pub fn heal(&self) {
        self.apply(Action::Heal);
    }

    /// Runs `schedule` on a spawned task, on tokio time from now (so
    /// `tokio::time::pause` / `advance` drive it). Abort the returned task
    /// to cancel the steps not yet applied.
    pub fn run(&self, schedule: Schedule) -> JoinHandle<()> {
        let handle = self.clone();
        let start = tokio::time::Instant::now();
        tokio::spawn(async move {
            for (at, action) in schedule.into_steps() {
                tokio::time::sleep_until(start + at).await;
                handle.apply(action);
            }
        })
    }

    /// The faults now set for one direction (`Both` reads `Up`).
    pub fn faults(&self, dir: Direction) -> LinkFaults {
        let link = if dir == Direction::Down {
            Link::Down
        } else {
            Link::Up
        };
        self.shared.state.borrow().link(link).clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            connections: get(&c.connections),
            active: get(&c.active),
            refused: get(&c.refused),
            resets: get(&c.resets),
            errors: get(&c.errors),
            bytes_up: get(&c.bytes[0]),
            bytes_down: get(&c.bytes[1]),
            writes_up: get(&c.writes[0]),
            writes_down: get(&c.writes[1]),
            datagrams_up: get(&c.datagrams[0]),
            datagrams_down: get(&c.datagrams[1]),
            dropped_up: get(&c.dropped[0]),
            dropped_down: get(&c.dropped[1]),
        }
    }
}

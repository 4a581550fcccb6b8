//! What can go wrong on a link: the per-direction fault settings and the
//! actions that change them.

use std::num::NonZeroUsize;
use std::time::Duration;

/// Which way through the proxy a fault applies to.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Direction {
    /// Client → upstream (what the client sends).
    Up,
    /// Upstream → client (what the server answers).
    Down,
    /// Both ways.
    Both,
}

impl Direction {
    /// Whether this selection covers the one-way link `link`.
    pub(crate) fn covers(self, link: Link) -> bool {
        matches!(
            (self, link),
            (Self::Both, _) | (Self::Up, Link::Up) | (Self::Down, Link::Down)
        )
    }
}

/// One of the two one-way links of a connection or UDP flow.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Link {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
}

impl Link {
    /// Index into per-link arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Up => 0,
            Self::Down => 1,
        }
    }
}

/// The faults of one direction. `LinkFaults::default()` is a clean link.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Added to every chunk (TCP) or datagram (UDP) from the moment the
    /// proxy read it.
    pub latency: Duration,
    /// Uniformly random extra delay in `0..=jitter` per chunk or datagram
    /// (seeded). TCP chunks never overtake each other; datagrams neither.
    pub jitter: Duration,
    /// At most this many bytes per second (TCP only); `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Every write to the destination is at most this many bytes (TCP
    /// only), each written and flushed on its own with `TCP_NODELAY`.
    pub slice: Option<NonZeroUsize>,
    /// Nothing is forwarded. TCP: bytes are held (not lost) and new
    /// connections are accepted but not dialed until the blackhole lifts;
    /// UDP: datagrams are dropped.
    pub blackhole: bool,
    /// Fraction of datagrams dropped, `0.0..=1.0` (UDP only).
    pub drop_rate: f64,
}

/// A change to the faults or an action on the current connections; what a
/// [`Schedule`](crate::Schedule) step or a control line does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Sets latency and jitter.
    Latency {
        /// Which way.
        dir: Direction,
        /// Fixed delay.
        latency: Duration,
        /// Random extra delay, `0..=jitter`.
        jitter: Duration,
    },
    /// Sets (or with `None` lifts) a bandwidth limit in bytes per second.
    Bandwidth {
        /// Which way.
        dir: Direction,
        /// Bytes per second; `None` is unlimited. `Some(0)` counts as 1.
        bytes_per_sec: Option<u64>,
    },
    /// Sets (or with `None` lifts) the largest write.
    Slice {
        /// Which way.
        dir: Direction,
        /// The largest write in bytes.
        max: Option<NonZeroUsize>,
    },
    /// Sets the UDP drop rate (clamped to `0.0..=1.0`, NaN is 0).
    DropRate {
        /// Which way.
        dir: Direction,
        /// Fraction dropped.
        rate: f64,
    },
    /// Starts or stops a blackhole.
    Blackhole {
        /// Which way.
        dir: Direction,
        /// On or off.
        on: bool,
    },
    /// Refuses new TCP connections (the listener is closed, so connects get
    /// `ECONNREFUSED`) or accepts them again (it is bound again on the same
    /// address).
    Refuse(bool),
    /// Resets every current TCP connection on both sides (RST via
    /// `SO_LINGER` 0).
    Reset,
    /// Shuts down one direction of every current TCP connection: the
    /// destination reads EOF, what the source sends after is not read.
    HalfClose(Direction),
    /// Lifts every fault (latency, bandwidth, slicing, drops, blackholes,
    /// refusal). Does not undo resets or half-closes.
    Heal,
}

/// The shared fault state every connection watches.
#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    /// Per link, indexed by [`Link::index`].
    pub(crate) links: [LinkFaults; 2],
    /// New connections are refused.
    pub(crate) refuse: bool,
    /// Bumped by each [`Action::Reset`].
    pub(crate) reset_epoch: u64,
    /// Bumped by each [`Action::HalfClose`] covering the link.
    pub(crate) half_close_epoch: [u64; 2],
    /// The proxy was dropped: everything stops.
    pub(crate) closed: bool,
}

impl State {
    /// The faults of one link.
    pub(crate) fn link(&self, link: Link) -> &LinkFaults {
        &self.links[link.index()]
    }

    /// Applies `action`.
    pub(crate) fn apply(&mut self, action: &Action) {
        let each = |dir: Direction, state: &mut Self, f: &dyn Fn(&mut LinkFaults)| {
            for link in [Link::Up, Link::Down] {
                if dir.covers(link) {
                    f(&mut state.links[link.index()]);
                }
            }
        };
        match action {
            Action::Latency {
                dir,
                latency,
                jitter,
            } => each(*dir, self, &|l| {
                l.latency = *latency;
                l.jitter = *jitter;
            }),
            Action::Bandwidth { dir, bytes_per_sec } => {
                each(*dir, self, &|l| {
                    l.bandwidth = bytes_per_sec.map(|b| b.max(1))
                });
            }
            Action::Slice { dir, max } => each(*dir, self, &|l| l.slice = *max),
            Action::DropRate { dir, rate } => {
                let rate = if rate.is_nan() {
                    0.0
                } else {
                    rate.clamp(0.0, 1.0)
                };
                each(*dir, self, &|l| l.drop_rate = rate);
            }
            Action::Blackhole { dir, on } => each(*dir, self, &|l| l.blackhole = *on),
            Action::Refuse(on) => self.refuse = *on,
            Action::Reset => self.reset_epoch += 1,
            Action::HalfClose(dir) => {
                for link in [Link::Up, Link::Down] {
                    if dir.covers(link) {
                        self.half_close_epoch[link.index()] += 1;
                    }
                }
            }
            Action::Heal => {
                self.links = Default::default();
                self.refuse = false;
            }
        }
    }
}

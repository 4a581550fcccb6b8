//! Timers are data (quinn `timer.rs` style): a small enum per side with a
//! `VALUES` array, and a table of deadlines that `poll_timeout` reads and
//! `handle_timeout` walks in `VALUES` order.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::time::Instant;

/// A kind of timer: a fieldless enum whose discriminants index the table.
pub(crate) trait TimerKind: Copy + Debug + 'static {
    /// Every timer, in the order `handle_timeout` processes them.
    const VALUES: &'static [Self];
    /// The slot of this timer in the table.
    fn index(self) -> usize;
}

/// The client's timers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum ClientTimer {
    /// Backoff elapsed: dial again.
    Reconnect = 0,
    /// A ping is due (both directions idle for the heartbeat interval).
    Heartbeat = 1,
    /// The outstanding ping is unanswered for the heartbeat timeout.
    HeartbeatTimeout = 2,
    /// Periodic channel inspection.
    Inspection = 3,
    /// Earliest coalesced downlink ack due.
    AckDelay = 4,
    /// Earliest in-flight uplink ack timeout.
    SendTimeout = 5,
    /// Earliest room long-poll deadline.
    RoomPull = 6,
    /// Earliest retry of a login refused with a transient error.
    LoginRetry = 7,
    /// Earliest moment a login's credential must be refreshed (the app is
    /// asked for a fresh one).
    CredentialRefresh = 8,
}

impl TimerKind for ClientTimer {
    const VALUES: &'static [Self] = &[
        Self::Reconnect,
        Self::Heartbeat,
        Self::HeartbeatTimeout,
        Self::Inspection,
        Self::AckDelay,
        Self::SendTimeout,
        Self::RoomPull,
        Self::LoginRetry,
        Self::CredentialRefresh,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// The server's timers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum ServerTimer {
    /// Nothing received from the client for the idle timeout.
    Idle = 0,
    /// The client did not leave within the grace period after a go-away.
    Drain = 1,
    /// No business logged in within the login timeout.
    Login = 2,
    /// Earliest credential expiry of a login (it ends with TOKEN_EXPIRED
    /// unless refreshed).
    LoginExpiry = 3,
}

impl TimerKind for ServerTimer {
    const VALUES: &'static [Self] = &[Self::Idle, Self::Drain, Self::Login, Self::LoginExpiry];

    fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines of the timers of kind `T`; `N` must be `T::VALUES.len()`.
#[derive(Clone, Debug)]
pub(crate) struct TimerTable<T, const N: usize> {
    data: [Option<Instant>; N],
    kind: PhantomData<T>,
}

impl<T: TimerKind, const N: usize> TimerTable<T, N> {
    pub(crate) fn new() -> Self {
        // A table sized apart from its kinds fails to compile, not at run time.
        const {
            assert!(
                T::VALUES.len() == N,
                "a timer table has one slot per timer kind"
            )
        };
        Self {
            data: [None; N],
            kind: PhantomData,
        }
    }

    /// Arms (or re-arms) `timer` for `deadline`.
    pub(crate) fn set(&mut self, timer: T, deadline: Instant) {
        self.data[timer.index()] = Some(deadline);
    }

    /// Arms `timer` for `deadline`, or stops it when `deadline` is `None`.
    pub(crate) fn set_or_stop(&mut self, timer: T, deadline: Option<Instant>) {
        self.data[timer.index()] = deadline;
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: T) {
        self.data[timer.index()] = None;
    }

    /// The deadline of `timer`, if armed.
    pub(crate) fn get(&self, timer: T) -> Option<Instant> {
        self.data[timer.index()]
    }

    /// Whether `timer` is armed and its deadline is at or before `now`.
    pub(crate) fn is_expired(&self, timer: T, now: Instant) -> bool {
        self.get(timer).is_some_and(|deadline| deadline <= now)
    }

    /// The earliest armed deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self) {
        self.data = [None; N];
    }

    /// Whether no timer is armed.
    pub(crate) fn is_empty(&self) -> bool {
        self.data.iter().all(Option::is_none)
    }
}

/// The client's timer table.
pub(crate) type ClientTimers = TimerTable<ClientTimer, 9>;
/// The server's timer table.
pub(crate) type ServerTimers = TimerTable<ServerTimer, 4>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn earliest_deadline_wins() {
        let origin = crate::tests::util::origin();
        let mut table = ClientTimers::new();
        assert!(table.is_empty());
        assert_eq!(table.next_timeout(), None);
        table.set(ClientTimer::Inspection, origin + Duration::from_secs(60));
        table.set(ClientTimer::AckDelay, origin + Duration::from_millis(20));
        assert_eq!(
            table.next_timeout(),
            Some(origin + Duration::from_millis(20))
        );
        assert!(table.is_expired(ClientTimer::AckDelay, origin + Duration::from_millis(20)));
        assert!(!table.is_expired(ClientTimer::Inspection, origin + Duration::from_millis(20)));
        table.stop(ClientTimer::AckDelay);
        assert_eq!(table.next_timeout(), Some(origin + Duration::from_secs(60)));
        table.stop_all();
        assert!(table.is_empty());
        for (i, timer) in ClientTimer::VALUES.iter().enumerate() {
            assert_eq!(timer.index(), i);
        }
        for (i, timer) in ServerTimer::VALUES.iter().enumerate() {
            assert_eq!(timer.index(), i);
        }
    }
}

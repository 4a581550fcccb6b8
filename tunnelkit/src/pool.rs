//! A small client-side pool of long connections.

use std::{
    fmt, io,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::{broadcast, watch};

/// Identifies a connection in a [`Pool`]. Never reused within a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// The raw number, for logs and metrics.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Why a connection left the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// The heartbeat check found the previous heartbeat unanswered (seed 4.3).
    HeartbeatTimeout,
    /// Channel inspection judged the connection unusable, e.g. too many consecutive send or
    /// receive timeouts (seed 4.12).
    Unhealthy,
    /// The peer closed the connection (end of stream or a close frame).
    PeerClosed,
    /// A read or write failed.
    Io(io::ErrorKind),
    /// The owner closed it on purpose (shutdown, switching endpoints, ...).
    Closed,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            Self::Unhealthy => f.write_str("unhealthy"),
            Self::PeerClosed => f.write_str("closed by peer"),
            Self::Io(kind) => write!(f, "I/O error: {kind}"),
            Self::Closed => f.write_str("closed locally"),
        }
    }
}

/// A change in a [`Pool`], delivered to [`Pool::subscribe`] receivers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A connection was added and is available.
    Added {
        /// The new connection.
        id: ConnId,
    },
    /// A connection was removed; the owner should reconnect if the pool is now short.
    Lost {
        /// The removed connection.
        id: ConnId,
        /// Why.
        reason: LostReason,
    },
}

/// Holds a client's long connections (usually one or a few) and reports when one is lost.
///
/// Pike's client keeps its channel's connections here: the heartbeat or inspection logic calls
/// [`Pool::mark_lost`] on a dead connection, which removes it and emits
/// [`PoolEvent::Lost`]; the reconnect logic watches [`Pool::watch_available`] (or the event
/// stream) and dials again when too few connections are available.
///
/// `C` is a cheap handle to a connection (for example a sender to the task that owns the
/// socket), cloned out by [`Pool::get`]. The pool is cheap to clone; clones share state.
pub struct Pool<C> {
    shared: Arc<Shared<C>>,
}

struct Shared<C> {
    state: Mutex<State<C>>,
    events: broadcast::Sender<PoolEvent>,
    available: watch::Sender<usize>,
}

struct State<C> {
    next_id: u64,
    conns: Vec<(ConnId, C)>,
    cursor: usize,
}

impl<C> Pool<C> {
    /// Number of events buffered for slow [`Pool::subscribe`] receivers before they lag.
    pub const EVENT_CAPACITY: usize = 64;

    /// An empty pool.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(Self::EVENT_CAPACITY);
        let (available, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    next_id: 0,
                    conns: Vec::new(),
                    cursor: 0,
                }),
                events,
                available,
            }),
        }
    }

    /// Adds an established connection; it is available at once.
    pub fn add(&self, conn: C) -> ConnId {
        let (id, count) = {
            let mut state = self.lock();
            let id = ConnId(state.next_id);
            state.next_id += 1;
            state.conns.push((id, conn));
            (id, state.conns.len())
        };
        tracing::debug!(
            conn.id = id.0,
            available = count,
            "connection added to pool"
        );
        self.shared.available.send_replace(count);
        // No receiver is not an error: nobody is listening yet.
        let _ = self.shared.events.send(PoolEvent::Added { id });
        id
    }

    /// Removes a connection found dead and reports it as [`PoolEvent::Lost`]. Returns the
    /// handle, or `None` if it was not in the pool (already lost), in which case nothing is
    /// reported, so concurrent detectors report a loss once.
    pub fn mark_lost(&self, id: ConnId, reason: LostReason) -> Option<C> {
        let (conn, count) = {
            let mut state = self.lock();
            let index = state.conns.iter().position(|(conn_id, _)| *conn_id == id)?;
            let (_, conn) = state.conns.remove(index);
            (conn, state.conns.len())
        };
        tracing::debug!(conn.id = id.0, %reason, available = count, "connection lost");
        self.shared.available.send_replace(count);
        let _ = self.shared.events.send(PoolEvent::Lost { id, reason });
        Some(conn)
    }

    /// Removes every connection with the same `reason` (e.g. [`LostReason::Closed`] on
    /// shutdown) and returns their handles.
    pub fn clear(&self, reason: LostReason) -> Vec<(ConnId, C)> {
        let drained = std::mem::take(&mut self.lock().conns);
        self.shared.available.send_replace(0);
        for (id, _) in &drained {
            let _ = self.shared.events.send(PoolEvent::Lost {
                id: *id,
                reason: reason.clone(),
            });
        }
        drained
    }

    /// Number of available connections.
    pub fn available(&self) -> usize {
        self.lock().conns.len()
    }

    /// Whether no connection is available.
    pub fn is_empty(&self) -> bool {
        self.available() == 0
    }

    /// Whether `id` is still in the pool.
    pub fn contains(&self, id: ConnId) -> bool {
        self.lock().conns.iter().any(|(conn_id, _)| *conn_id == id)
    }

    /// Receives every later [`PoolEvent`]. A receiver that falls more than
    /// [`Pool::EVENT_CAPACITY`] events behind gets a `Lagged` error and should re-read
    /// [`Pool::available`].
    pub fn subscribe(&self) -> broadcast::Receiver<PoolEvent> {
        self.shared.events.subscribe()
    }

    /// Watches the number of available connections, e.g. to reconnect when it drops below
    /// the wanted count.
    pub fn watch_available(&self) -> watch::Receiver<usize> {
        self.shared.available.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<C>> {
        // The state is valid after any panic elsewhere: every update is a single push/remove.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<C: Clone> Pool<C> {
    /// An available connection, rotating among them so load spreads when there are several.
    pub fn get(&self) -> Option<(ConnId, C)> {
        let mut state = self.lock();
        let len = state.conns.len();
        if len == 0 {
            return None;
        }
        let index = state.cursor % len;
        state.cursor = state.cursor.wrapping_add(1);
        state.conns.get(index).cloned()
    }

    /// The connection with this id, if it is still in the pool.
    pub fn get_by_id(&self, id: ConnId) -> Option<C> {
        self.lock()
            .conns
            .iter()
            .find(|(conn_id, _)| *conn_id == id)
            .map(|(_, conn)| conn.clone())
    }
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("available", &self.available())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_rotates_and_lost_connections_are_not_handed_out() {
        let pool = Pool::new();
        let a = pool.add("a");
        let b = pool.add("b");
        assert_ne!(a, b);
        let picks: Vec<_> = (0..4).map(|_| pool.get().unwrap().1).collect();
        assert_eq!(picks, ["a", "b", "a", "b"]);
        assert_eq!(pool.mark_lost(a, LostReason::PeerClosed), Some("a"));
        assert!(!pool.contains(a));
        assert!((0..3).all(|_| pool.get() == Some((b, "b"))));
        assert_eq!(pool.get_by_id(a), None);
        assert_eq!(pool.get_by_id(b), Some("b"));
    }

    #[test]
    fn ids_are_not_reused() {
        let pool = Pool::new();
        let a = pool.add(1);
        pool.mark_lost(a, LostReason::Closed);
        let b = pool.add(2);
        assert_ne!(a, b);
        assert_eq!(b.get(), 1);
    }
}

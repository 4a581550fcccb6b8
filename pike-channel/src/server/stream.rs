//! Per-stream state of a server-side connection.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use proto::tunnel::ErrorCode;

use super::uplink_results::UplinkResults;
use crate::ids::StreamId;

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum StreamPhase {
    /// Login reported to the gateway, no answer yet.
    Pending,
    /// Logged in.
    Active,
}

/// One business login on the connection.
#[derive(Debug)]
pub(super) struct ServerStream {
    pub(super) phase: StreamPhase,
    /// Highest reliable sequence pushed on this connection.
    pub(super) last_pushed: u64,
    /// Highest sequence the client acked on this connection.
    pub(super) acked: u64,
    /// Reliable sequences pushed and not acked, in order.
    pub(super) in_flight: VecDeque<u64>,
    /// The login's uplink state, from its first uplink message on (a login
    /// that never sends one holds 8 bytes instead of 64: its map entry
    /// fits 96 bytes instead of 160).
    uplink: Option<Box<StreamUplink>>,
    /// When the login's credential expires (it ends then unless refreshed).
    pub(super) expiry: Option<Instant>,
    /// A credential refresh was reported to the gateway, no answer yet.
    pub(super) refreshing: bool,
}

/// A login's uplink state.
#[derive(Debug, Default)]
struct StreamUplink {
    /// Uplink sequences reported to the gateway and not acked yet, with
    /// their payload sizes.
    pending: BTreeMap<u64, usize>,
    /// Results of recently acked uplink sequences, to answer resends.
    results: UplinkResults,
    /// Highest uplink sequence accepted for delivery on this connection (0:
    /// none); a new message must be above it. Messages refused at once
    /// (`RATE_LIMITED`, `INVALID_ARGUMENT`) do not count.
    accepted: u64,
}

impl ServerStream {
    pub(super) fn new() -> Self {
        Self {
            phase: StreamPhase::Pending,
            last_pushed: 0,
            acked: 0,
            in_flight: VecDeque::new(),
            uplink: None,
            expiry: None,
            refreshing: false,
        }
    }

    /// Whether uplink `seq` was reported to the gateway and is not acked.
    pub(super) fn uplink_is_pending(&self, seq: u64) -> bool {
        self.uplink
            .as_ref()
            .is_some_and(|u| u.pending.contains_key(&seq))
    }

    /// The remembered result of uplink `seq`, if it was acked recently.
    pub(super) fn uplink_result(&self, seq: u64) -> Option<(ErrorCode, String)> {
        self.uplink.as_ref().and_then(|u| u.results.get(seq))
    }

    /// Highest uplink sequence accepted for delivery (0: none).
    pub(super) fn uplink_accepted(&self) -> u64 {
        self.uplink.as_ref().map_or(0, |u| u.accepted)
    }

    /// Uplink messages reported and not acked.
    pub(super) fn uplink_pending_count(&self) -> usize {
        self.uplink.as_ref().map_or(0, |u| u.pending.len())
    }

    /// Accepts uplink `seq` of `size` payload bytes for delivery.
    pub(super) fn accept_uplink(&mut self, seq: u64, size: usize) {
        let uplink = self.uplink.get_or_insert_with(Box::default);
        uplink.pending.insert(seq, size);
        uplink.accepted = seq;
    }

    /// Ends pending uplink `seq`; its payload size, if it was pending.
    pub(super) fn take_pending_uplink(&mut self, seq: u64) -> Option<usize> {
        self.uplink.as_mut()?.pending.remove(&seq)
    }

    pub(super) fn is_active(&self) -> bool {
        self.phase == StreamPhase::Active
    }

    /// Payload bytes of the uplink messages reported and not acked yet.
    pub(super) fn uplink_pending_bytes(&self) -> usize {
        self.uplink.as_ref().map_or(0, |u| u.pending.values().sum())
    }

    /// Applies a cumulative ack (at most [`last_pushed`](Self::last_pushed));
    /// returns whether it advanced.
    pub(super) fn on_ack(&mut self, seq: u64) -> bool {
        if seq <= self.acked || seq > self.last_pushed {
            return false;
        }
        self.acked = seq;
        while self.in_flight.front().is_some_and(|&s| s <= seq) {
            self.in_flight.pop_front();
        }
        true
    }

    /// Remembers an uplink result, forgetting the oldest beyond `memory`.
    pub(super) fn remember_result(
        &mut self,
        seq: u64,
        code: ErrorCode,
        message: String,
        memory: usize,
    ) {
        self.uplink
            .get_or_insert_with(Box::default)
            .results
            .insert(seq, code, message, memory);
    }
}

/// Logins at most kept in a sorted `Vec` before [`StreamMap`] moves them to
/// a `BTreeMap` (inserting into a sorted `Vec` moves its tail).
const FEW_STREAMS: usize = 8;

/// The logins of a connection by stream id, in id order.
///
/// Almost every connection has one login: a `BTreeMap` allocates an 11-slot
/// leaf (over a kilobyte) for it, so the first few live in an exactly sized,
/// sorted `Vec` and only a connection with many logins gets a map.
#[derive(Debug)]
pub(super) enum StreamMap {
    Few(Vec<(StreamId, ServerStream)>),
    Many(BTreeMap<StreamId, ServerStream>),
}

impl Default for StreamMap {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl StreamMap {
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Self::Few(v) => v.is_empty(),
            Self::Many(m) => m.is_empty(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(m) => m.len(),
        }
    }

    pub(super) fn contains_key(&self, id: &StreamId) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn get(&self, id: &StreamId) -> Option<&ServerStream> {
        match self {
            Self::Few(v) => v
                .binary_search_by_key(id, |(k, _)| *k)
                .ok()
                .map(|i| &v[i].1),
            Self::Many(m) => m.get(id),
        }
    }

    pub(super) fn get_mut(&mut self, id: &StreamId) -> Option<&mut ServerStream> {
        match self {
            Self::Few(v) => match v.binary_search_by_key(id, |(k, _)| *k) {
                Ok(i) => Some(&mut v[i].1),
                Err(_) => None,
            },
            Self::Many(m) => m.get_mut(id),
        }
    }

    /// Inserts or replaces the login of `id`.
    pub(super) fn insert(&mut self, id: StreamId, stream: ServerStream) {
        match self {
            Self::Few(v) => match v.binary_search_by_key(&id, |(k, _)| *k) {
                Ok(i) => v[i].1 = stream,
                Err(_) if v.len() >= FEW_STREAMS => {
                    let mut map: BTreeMap<_, _> = std::mem::take(v).into_iter().collect();
                    map.insert(id, stream);
                    *self = Self::Many(map);
                }
                Err(i) => {
                    v.reserve_exact(1);
                    v.insert(i, (id, stream));
                }
            },
            Self::Many(m) => {
                m.insert(id, stream);
            }
        }
    }

    pub(super) fn remove(&mut self, id: &StreamId) -> Option<ServerStream> {
        match self {
            Self::Few(v) => {
                let i = v.binary_search_by_key(id, |(k, _)| *k).ok()?;
                let (_, stream) = v.remove(i);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(stream)
            }
            Self::Many(m) => m.remove(id),
        }
    }

    /// The logins in id order.
    pub(super) fn iter(&self) -> StreamIter<'_> {
        match self {
            Self::Few(v) => StreamIter::Few(v.iter()),
            Self::Many(m) => StreamIter::Many(m.iter()),
        }
    }

    /// The stream ids in order, leaving the map empty (and unallocated).
    pub(super) fn take_ids(&mut self) -> Vec<StreamId> {
        match std::mem::take(self) {
            Self::Few(v) => v.into_iter().map(|(k, _)| k).collect(),
            Self::Many(m) => m.into_keys().collect(),
        }
    }
}

/// The logins of a [`StreamMap`] in id order.
pub(super) enum StreamIter<'a> {
    Few(std::slice::Iter<'a, (StreamId, ServerStream)>),
    Many(std::collections::btree_map::Iter<'a, StreamId, ServerStream>),
}

impl<'a> Iterator for StreamIter<'a> {
    type Item = (StreamId, &'a ServerStream);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Few(i) => i.next().map(|(k, s)| (*k, s)),
            Self::Many(i) => i.next().map(|(k, s)| (*k, s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_map_keeps_id_order_across_the_switch_to_a_map() {
        let mut map = StreamMap::default();
        let ids = [5u32, 1, 9, 3, 7, 2, 8, 4, 6, 10, 0];
        for (n, id) in ids.iter().enumerate() {
            map.insert(StreamId::new(*id), ServerStream::new());
            assert!(matches!(map, StreamMap::Few(_)) == (n < FEW_STREAMS));
            let keys: Vec<u32> = map.iter().map(|(k, _)| k.value()).collect();
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            assert_eq!(keys, sorted);
            assert_eq!(keys.len(), n + 1);
        }
        assert!(map.contains_key(&StreamId::new(7)));
        assert!(map.remove(&StreamId::new(7)).is_some());
        assert!(map.get(&StreamId::new(7)).is_none());
        assert!(map.get_mut(&StreamId::new(8)).is_some());
        assert_eq!(map.take_ids().len(), ids.len() - 1);
        assert!(map.is_empty());
    }

    #[test]
    fn one_login_is_exactly_sized_and_freed_when_gone() {
        let mut map = StreamMap::default();
        map.insert(StreamId::new(1), ServerStream::new());
        let StreamMap::Few(v) = &map else {
            panic!("one login is few");
        };
        assert_eq!(v.capacity(), 1);
        map.remove(&StreamId::new(1));
        let StreamMap::Few(v) = &map else {
            panic!("still few");
        };
        assert_eq!(v.capacity(), 0);
    }
}

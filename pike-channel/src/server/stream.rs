//! Per-stream state of a server-side connection.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proto::tunnel::ErrorCode;

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
    /// Uplink sequences reported to the gateway and not acked yet.
    pub(super) uplink_pending: BTreeSet<u64>,
    /// Results of recently acked uplink sequences, to answer resends.
    pub(super) uplink_results: BTreeMap<u64, (ErrorCode, String)>,
}

impl ServerStream {
    pub(super) fn new() -> Self {
        Self {
            phase: StreamPhase::Pending,
            last_pushed: 0,
            acked: 0,
            in_flight: VecDeque::new(),
            uplink_pending: BTreeSet::new(),
            uplink_results: BTreeMap::new(),
        }
    }

    pub(super) fn is_active(&self) -> bool {
        self.phase == StreamPhase::Active
    }

    /// Applies a cumulative ack; returns whether it advanced.
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
        self.uplink_results.insert(seq, (code, message));
        while self.uplink_results.len() > memory {
            self.uplink_results.pop_first();
        }
    }
}

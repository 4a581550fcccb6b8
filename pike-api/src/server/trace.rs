//! Connection trace (the seed's "connection sniffing"): every signal on a
//! connection with its time and details, found by connection token.
//!
//! Each connection keeps its newest [`TRACE_EVENTS`] events in a ring; when
//! it closes, its trace stays queryable among the newest
//! [`CLOSED_TRACES`] closed connections.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Events kept per connection (the newest).
pub const TRACE_EVENTS: usize = 256;
/// Closed connections whose traces stay queryable.
pub const CLOSED_TRACES: usize = 4096;

/// One signal on a connection.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TraceEvent {
    /// Wall-clock time, unix milliseconds.
    pub at_ms: u64,
    /// What happened: `hello`, `auth`, `alias-bind`, `tags`, `downlink`,
    /// `ack`, `uplink`, `uplink-ack`, `heartbeat`, `go-away`, `close`, ...
    pub signal: &'static str,
    /// Details (ids, codes, counts).
    pub detail: String,
}

/// The trace of one connection.
#[derive(Debug, Default)]
pub struct Trace {
    events: VecDeque<TraceEvent>,
    dropped: u64,
}

impl Trace {
    /// Appends an event, dropping the oldest past the limit.
    pub fn record(&mut self, at_ms: u64, signal: &'static str, detail: String) {
        if self.events.len() == TRACE_EVENTS {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(TraceEvent {
            at_ms,
            signal,
            detail,
        });
    }

    /// Records a heartbeat: consecutive heartbeats share one event (time of
    /// the latest, running count), so an idle connection's trace stays a few
    /// events long however long it lives.
    pub fn heartbeat(&mut self, at_ms: u64, pings: u64) {
        if let Some(last) = self.events.back_mut()
            && last.signal == "heartbeat"
        {
            last.at_ms = at_ms;
            last.detail = format!("{pings} pings so far");
            return;
        }
        self.record(at_ms, "heartbeat", format!("{pings} pings so far"));
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> Vec<TraceEvent> {
        self.events.iter().cloned().collect()
    }

    /// Events dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A shared handle on a connection's trace.
pub(crate) type SharedTrace = Arc<Mutex<Trace>>;

pub(crate) fn lock(trace: &SharedTrace) -> MutexGuard<'_, Trace> {
    match trace.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Traces of closed connections, newest kept.
#[derive(Debug, Default)]
pub(crate) struct ClosedTraces {
    order: VecDeque<String>,
    traces: HashMap<String, SharedTrace>,
}

impl ClosedTraces {
    pub(crate) fn insert(&mut self, token: String, trace: SharedTrace) {
        if self.order.len() == CLOSED_TRACES
            && let Some(oldest) = self.order.pop_front()
        {
            self.traces.remove(&oldest);
        }
        self.order.push_back(token.clone());
        self.traces.insert(token, trace);
    }

    pub(crate) fn get(&self, token: &str) -> Option<SharedTrace> {
        self.traces.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_events() {
        let mut trace = Trace::default();
        for i in 0..(TRACE_EVENTS as u64 + 10) {
            trace.record(i, "downlink", format!("seq={i}"));
        }
        let events = trace.events();
        assert_eq!(events.len(), TRACE_EVENTS);
        assert_eq!(events[0].at_ms, 10);
        assert_eq!(trace.dropped(), 10);
    }

    #[test]
    fn consecutive_heartbeats_share_one_event() {
        let mut trace = Trace::default();
        trace.record(1, "alias-bind", "u42".into());
        for ping in 1..=1000 {
            trace.heartbeat(1 + ping, ping);
        }
        trace.record(2000, "downlink", "seq=1".into());
        trace.heartbeat(3000, 1001);
        let events = trace.events();
        assert_eq!(events.len(), 4);
        assert_eq!(events[1].detail, "1000 pings so far");
        assert_eq!(events[1].at_ms, 1001);
        assert_eq!(events[3].signal, "heartbeat");
    }

    #[test]
    fn closed_traces_are_bounded() {
        let mut closed = ClosedTraces::default();
        for i in 0..(CLOSED_TRACES + 1) {
            closed.insert(format!("t{i}"), SharedTrace::default());
        }
        assert!(closed.get("t0").is_none());
        assert!(closed.get(&format!("t{CLOSED_TRACES}")).is_some());
    }
}

//! Connection trace (the seed's "connection sniffing"): every signal on a
//! connection with its time and details, found by connection token.
//!
//! Each connection keeps its newest [`TRACE_EVENTS`] events in a ring, at
//! most [`TRACE_BYTES`] bytes of them; when it closes, its trace stays
//! queryable among the newest [`CLOSED_TRACES`] closed connections, which
//! hold at most [`CLOSED_TRACE_BYTES`] together. A text detail longer than
//! [`MAX_DETAIL_BYTES`] is cut, and control characters in it are escaped:
//! details carry client-supplied text (bounded at the protocol boundary, but
//! a trace never trusts that).
//!
//! Frequent signals (downlink, ack, heartbeat) are kept as numbers and
//! formatted only when the trace is read: recording them allocates nothing
//! per message. The ring grows one slot at a time while it is small (an
//! idle connection keeps four events: hello, auth, alias-bind, heartbeat).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Events kept per connection (the newest).
pub const TRACE_EVENTS: usize = 256;
/// Memory of one connection's trace, bytes (events and their text): the
/// oldest events go first beyond it.
pub const TRACE_BYTES: usize = 32 * 1024;
/// Longest text detail of one event, bytes; a longer one is cut (at a
/// character boundary) and marked with `…`.
pub const MAX_DETAIL_BYTES: usize = 512;
/// Closed connections whose traces stay queryable.
pub const CLOSED_TRACES: usize = 4096;
/// Memory of the closed connections' traces together, bytes: the oldest
/// closed traces go first beyond it (or beyond [`CLOSED_TRACES`]).
pub const CLOSED_TRACE_BYTES: usize = 16 * 1024 * 1024;

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
///
/// 40 bytes: with its `Arc<Mutex>` a 64-byte allocation (80 with 64-bit
/// counts).
#[derive(Debug, Default)]
pub struct Trace {
    events: VecDeque<Entry>,
    /// Events dropped, saturating at `u32::MAX` (four billion).
    dropped: u32,
    /// Bytes of the text details kept (at most [`TRACE_BYTES`] and one
    /// more detail).
    text_bytes: u32,
}

/// Below this many events the ring grows by one slot at a time.
const EXACT_UNTIL: usize = 8;

/// An event as kept: its details are formatted when the trace is read.
#[derive(Debug)]
struct Entry {
    at_ms: u64,
    detail: Detail,
}

/// The signals the gateway records with text details, by index: an event
/// keeps a byte for its signal rather than a 16-byte `&str`, so that an
/// event is 32 bytes, not 48 (an idle connection keeps three or four).
const TEXT_SIGNALS: [&str; 20] = [
    "hello",
    "auth",
    "alias-bind",
    "tags",
    "logout",
    "close",
    "transport-error",
    "protocol-error",
    "uplink",
    "uplink-ack",
    "takeover",
    "room-join",
    "room-leave",
    "replaced",
    "refresh",
    "login-expired",
    "login-epoch-mismatch",
    "login-ended",
    "go-away",
    "downlink",
];

/// What happened, with the numbers to format its details from.
#[derive(Debug)]
enum Detail {
    /// A signal of [`TEXT_SIGNALS`] (by index), with its details already
    /// formatted.
    Text { signal: u8, detail: Box<str> },
    /// Any other signal, with its details already formatted (boxed: rare).
    OtherText(Box<(&'static str, Box<str>)>),
    /// A reliable message pushed: `downlink`, `stream=S seq=Q message_id=M`.
    Downlink {
        stream: u32,
        seq: u64,
        message_id: u64,
    },
    /// A transient message pushed: `downlink`,
    /// `stream=S transient message_id=M`.
    Transient { stream: u32, message_id: u64 },
    /// An ack from the client: `ack`, `stream=S seq=Q`.
    Ack { stream: u32, seq: u64 },
    /// Consecutive heartbeats: `heartbeat`, `N pings so far`.
    Heartbeat { pings: u64 },
    /// A granted login: `auth`, `stream=S biz=B alias=A granted`.
    Granted(Arc<GrantedLogin>),
    /// The granted login bound to its alias: `alias-bind`, with its route
    /// and start (the same allocation as its `auth` event).
    AliasBind(Arc<GrantedLogin>),
}

/// A granted login, as its `auth` and `alias-bind` events show it: both
/// events share this one allocation, formatted when the trace is read (as
/// two texts they were an idle connection's largest trace allocations,
/// 48 and 128 bytes).
#[derive(Debug)]
pub(crate) struct GrantedLogin {
    /// The login's stream.
    pub(crate) stream: u32,
    /// The sequence number the login resumes after.
    pub(crate) resume_after: u64,
    /// The last sequence number of the login's stream when it was granted.
    pub(crate) last_seq: u64,
    /// When the grant expires, unix milliseconds (0: never).
    pub(crate) expires_at_ms: u64,
    /// Whether the grant binds the device.
    pub(crate) device_verified: bool,
    /// Whether the login only sends (no pushes).
    pub(crate) send_only: bool,
    /// Its business id, alias and route id.
    pub(crate) names: LoginNames,
}

/// A login's business id, alias and route id in one allocation, each
/// sanitized like any text detail: `biz=B alias=A` followed by the route.
#[derive(Debug)]
pub(crate) struct LoginNames {
    text: Box<str>,
    /// Where the route id starts in `text`.
    route_at: usize,
}

impl LoginNames {
    /// The names of a login to `biz` as `alias`, routed to `route`.
    pub(crate) fn new(biz: &str, alias: &str, route: &str) -> Self {
        let mut text = sanitize(format!("biz={biz} alias={alias}"));
        let route_at = text.len();
        text.push_str(&sanitize(route.to_owned()));
        Self {
            text: text.into_boxed_str(),
            route_at,
        }
    }

    /// `biz=B alias=A`.
    fn biz_alias(&self) -> &str {
        self.text.get(..self.route_at).unwrap_or_default()
    }

    /// The route id.
    fn route(&self) -> &str {
        self.text.get(self.route_at..).unwrap_or_default()
    }
}

impl Detail {
    /// Heap bytes held by the detail.
    fn heap_bytes(&self) -> usize {
        match self {
            Self::Text { detail, .. } => detail.len(),
            Self::OtherText(other) => size_of::<(&str, Box<str>)>() + other.1.len(),
            // Counted in full by both events that share it: a bound, not
            // an exact sum.
            Self::Granted(login) | Self::AliasBind(login) => {
                2 * size_of::<usize>() + size_of::<GrantedLogin>() + login.names.text.len()
            }
            _ => 0,
        }
    }

    fn signal(&self) -> &'static str {
        match self {
            Self::Text { signal, .. } => TEXT_SIGNALS
                .get(usize::from(*signal))
                .copied()
                .unwrap_or("unknown"),
            Self::OtherText(other) => other.0,
            Self::Downlink { .. } | Self::Transient { .. } => "downlink",
            Self::Ack { .. } => "ack",
            Self::Heartbeat { .. } => "heartbeat",
            Self::Granted(_) => "auth",
            Self::AliasBind(_) => "alias-bind",
        }
    }

    fn format(&self) -> String {
        match self {
            Self::Text { detail, .. } => detail.to_string(),
            Self::OtherText(other) => other.1.to_string(),
            Self::Downlink {
                stream,
                seq,
                message_id,
            } => format!("stream={stream} seq={seq} message_id={message_id}"),
            Self::Transient { stream, message_id } => {
                format!("stream={stream} transient message_id={message_id}")
            }
            Self::Ack { stream, seq } => format!("stream={stream} seq={seq}"),
            Self::Heartbeat { pings } => format!("{pings} pings so far"),
            // Cut as a whole, like the texts recorded formatted: the same
            // text, and at most [`MAX_DETAIL_BYTES`], whatever the names.
            Self::Granted(login) => sanitize(format!(
                "stream={} {} granted",
                login.stream,
                login.names.biz_alias()
            )),
            Self::AliasBind(login) => sanitize(format!(
                "stream={} {} route={} resume_after={} last_seq={} device_verified={} expires_at_ms={} send_only={}",
                login.stream,
                login.names.biz_alias(),
                login.names.route(),
                login.resume_after,
                login.last_seq,
                login.device_verified,
                login.expires_at_ms,
                login.send_only
            )),
        }
    }
}

/// Heap bytes of `detail`'s text, as the trace counts them (a detail is
/// at most [`MAX_DETAIL_BYTES`] and a signal name: far below `u32::MAX`).
fn text_len(detail: &Detail) -> u32 {
    u32::try_from(detail.heap_bytes()).unwrap_or(u32::MAX)
}

impl Trace {
    /// Appends an event, dropping the oldest past the limits. The detail is
    /// cut to [`MAX_DETAIL_BYTES`] and its control characters escaped.
    pub fn record(&mut self, at_ms: u64, signal: &'static str, detail: String) {
        let detail = sanitize(detail).into_boxed_str();
        let detail = match TEXT_SIGNALS.iter().position(|known| *known == signal) {
            Some(index) => Detail::Text {
                signal: u8::try_from(index).unwrap_or(u8::MAX),
                detail,
            },
            None => Detail::OtherText(Box::new((signal, detail))),
        };
        self.push(at_ms, detail);
    }

    /// Records a reliable push (`downlink`), formatted when read.
    pub fn downlink(&mut self, at_ms: u64, stream: u32, seq: u64, message_id: u64) {
        self.push(
            at_ms,
            Detail::Downlink {
                stream,
                seq,
                message_id,
            },
        );
    }

    /// Records a granted login: its `auth` and `alias-bind` events, which
    /// share one allocation and are formatted when read.
    pub(crate) fn login_granted(&mut self, at_ms: u64, login: GrantedLogin) {
        let login = Arc::new(login);
        self.push(at_ms, Detail::Granted(Arc::clone(&login)));
        self.push(at_ms, Detail::AliasBind(login));
    }

    /// Records a transient push (`downlink`), formatted when read.
    pub fn transient(&mut self, at_ms: u64, stream: u32, message_id: u64) {
        self.push(at_ms, Detail::Transient { stream, message_id });
    }

    /// Records a client ack (`ack`), formatted when read.
    pub fn ack(&mut self, at_ms: u64, stream: u32, seq: u64) {
        self.push(at_ms, Detail::Ack { stream, seq });
    }

    /// Records a heartbeat: consecutive heartbeats share one event (time of
    /// the latest, running count), so an idle connection's trace stays a few
    /// events long however long it lives.
    pub fn heartbeat(&mut self, at_ms: u64, pings: u64) {
        if let Some(last) = self.events.back_mut()
            && last.detail.signal() == "heartbeat"
        {
            last.at_ms = at_ms;
            self.text_bytes = self.text_bytes.saturating_sub(text_len(&last.detail));
            last.detail = Detail::Heartbeat { pings };
            return;
        }
        self.push(at_ms, Detail::Heartbeat { pings });
    }

    fn push(&mut self, at_ms: u64, detail: Detail) {
        self.text_bytes = self.text_bytes.saturating_add(text_len(&detail));
        if self.events.len() == TRACE_EVENTS {
            self.pop_oldest();
        } else if self.events.len() == self.events.capacity() && self.events.len() < EXACT_UNTIL {
            self.events.reserve_exact(1);
        }
        self.events.push_back(Entry { at_ms, detail });
        while self.memory() > TRACE_BYTES && self.events.len() > 1 {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(old) = self.events.pop_front() {
            self.text_bytes = self.text_bytes.saturating_sub(text_len(&old.detail));
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Bytes the trace holds: its ring of events and their text.
    pub fn memory(&self) -> usize {
        size_of::<Self>() + self.events.capacity() * size_of::<Entry>() + self.text_bytes as usize
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> Vec<TraceEvent> {
        self.events
            .iter()
            .map(|e| TraceEvent {
                at_ms: e.at_ms,
                signal: e.detail.signal(),
                detail: e.detail.format(),
            })
            .collect()
    }

    /// Events dropped because the ring was full (by count or bytes);
    /// saturates at `u32::MAX`.
    pub fn dropped(&self) -> u64 {
        u64::from(self.dropped)
    }
}

/// A shared handle on a connection's trace.
/// The detail of an `uplink-ack` event, `key=value` like every other:
/// `stream=S seq=Q result=accepted route=R` when the backend took the
/// message, `stream=S seq=Q result=refused code=C message=M` when it was
/// refused (the free-text message last, as in `close`).
pub(crate) fn uplink_ack_detail(
    stream: u32,
    seq: u64,
    outcome: Result<&str, (proto::tunnel::ErrorCode, &str)>,
) -> String {
    match outcome {
        Ok(route) => format!("stream={stream} seq={seq} result=accepted route={route}"),
        Err((code, message)) => format!(
            "stream={stream} seq={seq} result=refused code={} message={message}",
            code.as_str_name()
        ),
    }
}

pub(crate) type SharedTrace = Arc<Mutex<Trace>>;

pub(crate) fn lock(trace: &SharedTrace) -> MutexGuard<'_, Trace> {
    match trace.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Cuts `detail` to [`MAX_DETAIL_BYTES`] (marking the cut with `…`) and
/// escapes its control characters.
fn sanitize(detail: String) -> String {
    let clean = detail.len() <= MAX_DETAIL_BYTES && !detail.chars().any(char::is_control);
    if clean {
        return detail;
    }
    let mut out = String::with_capacity(detail.len().min(MAX_DETAIL_BYTES));
    for c in detail.chars() {
        let room = MAX_DETAIL_BYTES - '…'.len_utf8() - out.len();
        if c.is_control() {
            let escaped: String = c.escape_default().collect();
            if escaped.len() > room {
                out.push('…');
                break;
            }
            out.push_str(&escaped);
        } else if c.len_utf8() > room {
            out.push('…');
            break;
        } else {
            out.push(c);
        }
    }
    out
}

/// Traces of closed connections with their app (for access checks), newest
/// kept: at most [`CLOSED_TRACES`] of them and [`CLOSED_TRACE_BYTES`]
/// together.
#[derive(Debug, Default)]
pub(crate) struct ClosedTraces {
    /// Tokens oldest first, with the bytes each trace held when it closed.
    order: VecDeque<(String, usize)>,
    traces: HashMap<String, (Box<str>, SharedTrace)>,
    bytes: usize,
}

impl ClosedTraces {
    pub(crate) fn insert(&mut self, token: String, app: String, trace: SharedTrace) {
        // A closed connection's trace takes no more events.
        let size = lock(&trace).memory() + 2 * token.len() + app.len();
        self.bytes += size;
        self.order.push_back((token.clone(), size));
        self.traces.insert(token, (app.into_boxed_str(), trace));
        while self.order.len() > CLOSED_TRACES
            || (self.bytes > CLOSED_TRACE_BYTES && self.order.len() > 1)
        {
            let Some((oldest, size)) = self.order.pop_front() else {
                break;
            };
            self.bytes -= size;
            self.traces.remove(&oldest);
        }
    }

    /// Bytes held by the closed traces.
    #[cfg(test)]
    pub(crate) fn memory(&self) -> usize {
        self.bytes
    }

    /// The app and trace of the closed connection `token`.
    pub(crate) fn get(&self, token: &str) -> Option<(Box<str>, SharedTrace)> {
        self.traces.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uplink_ack_details_are_key_value() {
        use proto::tunnel::ErrorCode;
        assert_eq!(
            uplink_ack_detail(0, 3, Ok("r1")),
            "stream=0 seq=3 result=accepted route=r1"
        );
        assert_eq!(
            uplink_ack_detail(2, 9, Err((ErrorCode::BackendUnavailable, "down"))),
            "stream=2 seq=9 result=refused code=ERROR_CODE_BACKEND_UNAVAILABLE message=down"
        );
    }

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

    /// The events as (time, signal, detail).
    fn read(trace: &Trace) -> Vec<(u64, &'static str, String)> {
        trace
            .events()
            .into_iter()
            .map(|e| (e.at_ms, e.signal, e.detail))
            .collect()
    }

    #[test]
    fn structured_events_read_as_text() {
        let mut trace = Trace::default();
        trace.downlink(1, 3, 7, 99);
        trace.transient(2, 3, 100);
        trace.ack(3, 3, 7);
        trace.heartbeat(4, 5);
        trace.record(5, "logout", "stream=3".into());
        let events = read(&trace);
        assert_eq!(
            events,
            [
                (1, "downlink", "stream=3 seq=7 message_id=99".to_owned()),
                (
                    2,
                    "downlink",
                    "stream=3 transient message_id=100".to_owned()
                ),
                (3, "ack", "stream=3 seq=7".to_owned()),
                (4, "heartbeat", "5 pings so far".to_owned()),
                (5, "logout", "stream=3".to_owned()),
            ]
        );
    }

    #[test]
    fn a_granted_login_reads_as_auth_and_alias_bind() {
        let mut trace = Trace::default();
        let before = trace.memory();
        trace.login_granted(
            7,
            GrantedLogin {
                stream: 1,
                resume_after: 4,
                last_seq: 9,
                expires_at_ms: 1_700_000_000_000,
                device_verified: true,
                send_only: false,
                names: LoginNames::new("chat", "u42\r\nX-Evil: 1", "node-a"),
            },
        );
        let events = read(&trace);
        assert_eq!(
            events,
            [
                (
                    7,
                    "auth",
                    "stream=1 biz=chat alias=u42\\r\\nX-Evil: 1 granted".to_owned()
                ),
                (
                    7,
                    "alias-bind",
                    "stream=1 biz=chat alias=u42\\r\\nX-Evil: 1 route=node-a resume_after=4 \
                     last_seq=9 device_verified=true expires_at_ms=1700000000000 send_only=false"
                        .to_owned()
                ),
            ]
        );
        let long = "a".repeat(2 * MAX_DETAIL_BYTES);
        trace.login_granted(
            8,
            GrantedLogin {
                stream: 2,
                resume_after: 0,
                last_seq: 0,
                expires_at_ms: 0,
                device_verified: false,
                send_only: true,
                names: LoginNames::new("chat", &long, &long),
            },
        );
        for event in &trace.events()[2..] {
            assert!(
                event.detail.len() <= MAX_DETAIL_BYTES,
                "{}",
                event.detail.len()
            );
            assert!(event.detail.ends_with('…'), "{}", event.detail);
        }
        // Both events count the shared allocation: the bound holds.
        let shared = 2 * size_of::<usize>() + size_of::<GrantedLogin>();
        assert!(trace.memory() >= before + 4 * shared, "{}", trace.memory());
    }

    #[test]
    fn a_short_trace_is_exactly_sized() {
        let mut trace = Trace::default();
        assert_eq!(trace.events.capacity(), 0);
        for i in 0..4 {
            trace.record(i, "x", String::new());
        }
        assert_eq!(trace.events.capacity(), 4);
    }

    #[test]
    fn events_are_32_bytes_and_every_signal_reads_back() {
        assert_eq!(
            size_of::<Entry>(),
            32,
            "an idle connection keeps 3-4 of them"
        );
        assert!(
            size_of::<Trace>() <= 40,
            "with its Arc<Mutex> the trace fits a 64-byte allocation"
        );
        let mut trace = Trace::default();
        for (i, signal) in TEXT_SIGNALS.iter().enumerate() {
            trace.record(i as u64, signal, format!("d{i}"));
        }
        trace.record(99, "not-a-known-signal", "other".into());
        let events = trace.events();
        assert_eq!(events.len(), TEXT_SIGNALS.len() + 1);
        for (i, (event, signal)) in events.iter().zip(TEXT_SIGNALS).enumerate() {
            assert_eq!(
                (event.signal, event.detail.as_str()),
                (signal, format!("d{i}").as_str())
            );
        }
        let last = events.last().map(|e| (e.signal, e.detail.as_str()));
        assert_eq!(last, Some(("not-a-known-signal", "other")), "kept by name");
    }

    #[test]
    fn long_details_are_cut_and_control_characters_escaped() {
        let mut trace = Trace::default();
        trace.record(1, "auth", "x".repeat(10 * MAX_DETAIL_BYTES));
        trace.record(2, "auth", "alias=u1\r\nX-Evil: 1".into());
        trace.record(3, "auth", "é".repeat(MAX_DETAIL_BYTES));
        let events = trace.events();
        assert!(events[0].detail.len() <= MAX_DETAIL_BYTES);
        assert!(events[0].detail.ends_with('…'));
        assert_eq!(events[1].detail, "alias=u1\\r\\nX-Evil: 1");
        assert!(events[2].detail.len() <= MAX_DETAIL_BYTES);
        assert!(events[2].detail.ends_with("é…"));
    }

    #[test]
    fn a_trace_is_bounded_in_bytes() {
        let mut trace = Trace::default();
        for i in 0..(TRACE_EVENTS as u64) {
            trace.record(i, "tags", "t".repeat(MAX_DETAIL_BYTES));
        }
        assert!(trace.memory() <= TRACE_BYTES, "{}", trace.memory());
        assert!(trace.dropped() > 0);
        let events = trace.events();
        assert_eq!(events.last().unwrap().at_ms, TRACE_EVENTS as u64 - 1);
        // Small events still fill the ring up to its count.
        let mut trace = Trace::default();
        for i in 0..(TRACE_EVENTS as u64) {
            trace.ack(i, 0, i);
        }
        assert_eq!(trace.events().len(), TRACE_EVENTS);
        assert!(trace.memory() <= TRACE_BYTES);
    }

    #[test]
    fn closed_traces_are_bounded_in_bytes() {
        let mut closed = ClosedTraces::default();
        let n = 2 * CLOSED_TRACE_BYTES / TRACE_BYTES;
        for i in 0..n {
            let trace = SharedTrace::default();
            for e in 0..(TRACE_BYTES / MAX_DETAIL_BYTES) as u64 {
                lock(&trace).record(e, "tags", "t".repeat(MAX_DETAIL_BYTES));
            }
            closed.insert(format!("t{i}"), "demo".into(), trace);
        }
        assert!(closed.memory() <= CLOSED_TRACE_BYTES, "{}", closed.memory());
        assert!(closed.get("t0").is_none());
        assert!(closed.get(&format!("t{}", n - 1)).is_some());
        assert!(closed.order.len() < n && closed.order.len() == closed.traces.len());
    }

    #[test]
    fn closed_traces_are_bounded() {
        let mut closed = ClosedTraces::default();
        for i in 0..(CLOSED_TRACES + 1) {
            closed.insert(format!("t{i}"), "demo".into(), SharedTrace::default());
        }
        assert!(closed.get("t0").is_none());
        assert!(closed.get(&format!("t{CLOSED_TRACES}")).is_some());
    }
}

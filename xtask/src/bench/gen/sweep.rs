//! The engine every workload shares: the connect phase, the receive path,
//! the open-loop publisher and the per-step accounting.
//!
//! A step at rate R: message `k` is due at `t0 + k/R` for `warmup + step`
//! seconds; it is stamped with the step number and that *scheduled* time.
//! All messages due by a tick go out in one write per sending connection.
//! The window is `[t0 + warmup, t0 + warmup + step)`; messages scheduled
//! in it count as `sent`, and whatever could not be handed to its
//! connection by the slot deadline (the window's end plus `min(drain, 1 s)`)
//! as `unsent`. After the window the step waits `drain` seconds for
//! messages in flight, then reports. Receivers count a payload only when
//! it belongs to the current step's window and the receiver is healthy:
//! subscribed since before the window opened, still connected, and not
//! scheduled to churn during the window or drain (nor slow). `expected` is
//! the sum over messages sent of the healthy receivers subscribed to their
//! topic.
//!
//! At MQTT QoS 1 (`--qos 1`) members subscribe at QoS 1 and answer every
//! QoS 1 PUBLISH with a PUBACK (those of one read in one write); each
//! publisher connection keeps at most `--inflight` unacknowledged
//! messages (packet ids from an [`mqtt::IdPool`]), and a window message
//! counts as `sent` only once its PUBACK arrived (by the end of the
//! drain); `expected` follows from those. A PUBLISH with the DUP flag is a
//! redelivery of one already read on the same connection (sessions are
//! clean, so nothing is redelivered across connections): it is answered
//! but counted as a `duplicate`, not as a delivery.
//!
//! In pike mode the senders are HTTP connections to the push API
//! ([`http_push`]): at each tick the messages due go out in
//! `POST /v1/push/batch` requests of at most `--batch` (never mixing
//! warm-up and window messages), each on an idle connection (the schedule
//! lags while all are busy, as `pike bench`'s pool does), and a window
//! message counts as `sent` once its batch was answered 200 with a
//! receipt for it (a failed item or request: a send error).

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::super::client::Proto;
use super::super::{procfs, wire};
use super::conn::{self, Dial, Outbox};
use super::http_push::{self, HttpConn};
use super::stamp::{self, Seen, Window};
use super::{GenOptions, mqtt, nats};

/// Bytes read per `read` (after the carried-over partial frame).
const READ_CHUNK: usize = 64 * 1024;
/// Highest latency the histograms tell apart, µs (larger ones saturate).
const MAX_TRACKED_US: u64 = 600_000_000;
/// Receive buffer of a slow member (the kernel doubles it): small, so the
/// server has to hold the backlog.
const SLOW_RECV_BUFFER: u32 = 16 * 1024;
/// How early before a window a churn event still excludes its member.
const CHURN_GUARD: Duration = Duration::from_millis(200);
/// Attempts of one churn rejoin, one second apart.
const REJOIN_ATTEMPTS: u32 = 10;
/// Pike mode: how long after the drain a step waits for unanswered
/// batches.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// One receiving connection of a plan.
#[derive(Clone, Debug)]
pub(crate) struct ReceiverSpec {
    /// Client id / name.
    pub(crate) name: String,
    /// Its one subscription.
    pub(crate) topic: String,
    /// Which target (a set of receivers that get the same messages) it is in.
    pub(crate) target: usize,
    /// Never reads after joining.
    pub(crate) slow: bool,
}

/// A destination of published messages.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub(crate) topic: String,
    pub(crate) target: usize,
}

/// Which sending connection publishes message `k`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum SenderOf {
    /// `k mod senders`.
    RoundRobin,
    /// The sender with the route's index (uplink: device `i` publishes
    /// to `up/<i>`).
    Route,
}

/// A workload: who subscribes to what, who publishes where.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) receivers: Vec<ReceiverSpec>,
    pub(crate) targets: usize,
    /// Names of the sending connections.
    pub(crate) senders: Vec<String>,
    /// Message `k` goes to route `k mod routes`.
    pub(crate) routes: Vec<Route>,
    pub(crate) sender_of: SenderOf,
    /// `members` or `devices`, for the JSON lines.
    pub(crate) population_key: &'static str,
    /// Members or devices.
    pub(crate) population: usize,
}

impl Plan {
    /// `(sender, route)` of message `k`.
    #[inline]
    pub(crate) fn route(&self, k: u64) -> (usize, usize) {
        let route = (k % self.routes.len() as u64) as usize;
        let sender = match self.sender_of {
            SenderOf::RoundRobin => (k % self.senders.len() as u64) as usize,
            SenderOf::Route => route,
        };
        (sender, route)
    }
}

/// Whether member `i` is one of the `percent` slow ones (spread evenly).
pub(crate) fn is_slow(i: usize, percent: f64) -> bool {
    let share = |i: usize| (i as f64 * percent / 100.0).floor();
    share(i + 1) > share(i)
}

/// When step `k` of an open-loop schedule at `rate` is due, ns after t0.
#[inline]
fn offset_ns(k: u64, rate: u64) -> u64 {
    u64::try_from(u128::from(k) * 1_000_000_000 / u128::from(rate.max(1))).unwrap_or(u64::MAX)
}

/// Messages due by `elapsed_ns` after t0: the `k` with
/// `offset_ns(k) <= elapsed_ns` (message 0 is due at once).
#[inline]
fn due_by(elapsed_ns: u64, rate: u64) -> u64 {
    let scaled = (u128::from(elapsed_ns) + 1) * u128::from(rate);
    u64::try_from(scaled.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}

/// Churn events `j` (member `j mod N`) due in `[from_ns, to_ns)` after the
/// churn schedule's start (event `j` at [`churn_event_ns`]).
fn churn_events(from_ns: i128, to_ns: i128, per_sec: f64) -> std::ops::Range<u64> {
    // The first event due at or after `t`.
    let first = |t: i128| -> u64 {
        if t <= 0 {
            return 0;
        }
        let mut j = (t as f64 * per_sec / 1e9).floor() as u64;
        while i128::from(churn_event_ns(j, per_sec)) < t {
            j += 1;
        }
        while j > 0 && i128::from(churn_event_ns(j - 1, per_sec)) >= t {
            j -= 1;
        }
        j
    };
    let start = first(from_ns);
    start..first(to_ns).max(start)
}

/// Time of churn event `j`, ns after the churn schedule's start.
fn churn_event_ns(j: u64, per_sec: f64) -> u64 {
    (j as f64 * 1e9 / per_sec).ceil() as u64
}

/// A receiving connection's state.
#[derive(Debug)]
struct Member {
    spec: ReceiverSpec,
    dial: Dial,
    conn: RefCell<Option<Rc<TcpStream>>>,
    up: Cell<bool>,
    /// When the current subscription was confirmed, ns since the epoch.
    session_start_ns: Cell<u64>,
    /// Counted in the current step (not slow, not due to churn).
    counting: Cell<bool>,
    /// Measured deliveries in the current step.
    delivered: Cell<u64>,
    churn: tokio::sync::Notify,
    /// Bytes the socket did not take yet (PUBACKs, PINGREQs at QoS 1):
    /// written before anything else, so frames never interleave.
    out: RefCell<Vec<u8>>,
}

/// Per-step counters of the receive path.
#[derive(Debug, Default)]
struct Tally {
    outside: Cell<u64>,
    stale: Cell<u64>,
    foreign: Cell<u64>,
    excluded: Cell<u64>,
    /// PUBLISH packets with the DUP flag (QoS 1), not counted.
    duplicates: Cell<u64>,
}

/// A QoS 1 message in flight on a publisher connection.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    step: u32,
    target: u32,
    /// Scheduled inside the step's window.
    counted: bool,
}

/// The unacknowledged QoS 1 messages of one publisher connection.
#[derive(Debug)]
struct Flight {
    ids: mqtt::IdPool,
    /// By packet id.
    slots: Vec<Slot>,
}

impl Flight {
    fn new() -> Self {
        Self {
            ids: mqtt::IdPool::new(),
            slots: vec![Slot::default(); mqtt::IdPool::CAPACITY + 1],
        }
    }
}

/// Per-step PUBACK counters of the publishers (QoS 1).
#[derive(Debug, Default)]
struct Acked {
    /// PUBACKs of the current step's messages (warm-up and window).
    all: Cell<u64>,
    /// PUBACKs of the current step's window messages: its `sent`.
    window: Cell<u64>,
    /// `window` by target.
    to: RefCell<Vec<u64>>,
    /// PUBACKs for no message in flight.
    unknown: Cell<u64>,
}

/// Per-step churn counters.
#[derive(Debug)]
struct ChurnStats {
    reconnects: Cell<u64>,
    failed: Cell<u64>,
    skipped: Cell<u64>,
    latency: RefCell<Histogram<u64>>,
}

/// What one step's publisher did.
#[derive(Debug, Default)]
struct Sent {
    sent: u64,
    unsent: u64,
    send_errors: u64,
    max_lag_ns: u64,
    sent_to: Vec<u64>,
    /// Times the publisher waited for a PUBACK to free a slot (QoS 1).
    inflight_stalls: u64,
}

#[derive(Debug)]
struct Engine {
    options: GenOptions,
    plan: Plan,
    epoch: Instant,
    /// This generator's run id, in every stamp.
    run: u32,
    window: Cell<Window>,
    histogram: RefCell<Histogram<u64>>,
    scratch: RefCell<Vec<u8>>,
    members: Vec<Rc<Member>>,
    senders: RefCell<Vec<Option<Rc<Outbox>>>>,
    /// Route frames: prefix before the payload, and the target.
    frames: Vec<(Vec<u8>, usize)>,
    suffix: &'static [u8],
    padding: Vec<u8>,
    tally: Tally,
    lost: Cell<u64>,
    churn: ChurnStats,
    /// Start of the churn schedule.
    churn_t0: Cell<Option<Instant>>,
    /// MQTT QoS 1.
    qos1: bool,
    /// Per sender (QoS 1).
    flights: Vec<RefCell<Flight>>,
    acked: Acked,
    /// Raised by every PUBACK (a publisher waiting for a free slot).
    ack_wake: tokio::sync::Notify,
    /// The PUBACKs a member owes for one read.
    acks: RefCell<Vec<u8>>,
    last_error: RefCell<Option<String>>,
    /// Pike mode: the idle HTTP connections of the push API.
    http: RefCell<Vec<HttpConn>>,
    /// Pike mode: HTTP connections open (idle or busy).
    http_open: Cell<usize>,
    /// Raised when an HTTP connection becomes idle or is lost.
    http_wake: tokio::sync::Notify,
}

fn histogram() -> Histogram<u64> {
    // 1 µs ..= 10 min at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("valid histogram bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Engine {
    fn new(options: GenOptions, plan: Plan) -> Self {
        let sources: Vec<IpAddr> = options.source_ips();
        let source = |i: usize| (!sources.is_empty()).then(|| sources[i % sources.len()]);
        let now = super::pike_mqtt::unix_now();
        let members = plan
            .receivers
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                Rc::new(Member {
                    spec: spec.clone(),
                    dial: Dial {
                        proto: options.proto,
                        server: options.server,
                        source: source(i),
                        recv_buffer: spec.slow.then_some(SLOW_RECV_BUFFER),
                        qos: options.qos,
                        // Pike mode: the member's name is its alias.
                        credentials: options
                            .pike
                            .as_ref()
                            .map(|login| login.credentials(&spec.name, now)),
                    },
                    conn: RefCell::new(None),
                    up: Cell::new(false),
                    session_start_ns: Cell::new(u64::MAX),
                    counting: Cell::new(false),
                    delivered: Cell::new(0),
                    churn: tokio::sync::Notify::new(),
                    out: RefCell::new(Vec::new()),
                })
            })
            .collect();
        let payload = options.size;
        let qos1 = options.proto == Proto::Mqtt && options.qos == 1;
        let frames = plan
            .routes
            .iter()
            .map(|r| {
                let prefix = match options.proto {
                    Proto::Mqtt if qos1 => mqtt::publish_qos1_prefix(&r.topic, payload),
                    Proto::Mqtt => mqtt::publish_prefix(&r.topic, payload),
                    Proto::Nats => nats::pub_prefix(&r.topic, payload),
                };
                (prefix, r.target)
            })
            .collect();
        Self {
            suffix: match options.proto {
                Proto::Mqtt => b"",
                Proto::Nats => nats::PUB_SUFFIX,
            },
            padding: vec![b'.'; payload - stamp::STAMP_LEN],
            frames,
            epoch: Instant::now(),
            run: stamp::run_id(),
            window: Cell::new(Window::default()),
            histogram: RefCell::new(histogram()),
            scratch: RefCell::new(vec![0; 2 * READ_CHUNK]),
            members,
            senders: RefCell::new(Vec::new()),
            tally: Tally::default(),
            lost: Cell::new(0),
            churn: ChurnStats {
                reconnects: Cell::new(0),
                failed: Cell::new(0),
                skipped: Cell::new(0),
                latency: RefCell::new(histogram()),
            },
            churn_t0: Cell::new(None),
            last_error: RefCell::new(None),
            qos1,
            flights: if qos1 {
                (0..plan.senders.len())
                    .map(|_| RefCell::new(Flight::new()))
                    .collect()
            } else {
                Vec::new()
            },
            acked: Acked {
                to: RefCell::new(vec![0; plan.targets]),
                ..Acked::default()
            },
            ack_wake: tokio::sync::Notify::new(),
            acks: RefCell::new(Vec::new()),
            http: RefCell::new(Vec::new()),
            http_open: Cell::new(0),
            http_wake: tokio::sync::Notify::new(),
            options,
            plan,
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn note_error(&self, error: String) {
        self.last_error.borrow_mut().replace(error);
    }

    /// Churn events per second (0 without churn).
    fn churn_per_sec(&self) -> f64 {
        self.options.churn / 100.0 * self.members.len() as f64
    }

    /// Scans `data` for `member` (received now); keeps the incomplete tail
    /// in `carry`; returns the PINGs to answer, and appends the PUBACKs
    /// owed (QoS 1) to `acks`.
    fn absorb(
        &self,
        member: &Member,
        data: &[u8],
        carry: &mut Vec<u8>,
        acks: &mut Vec<u8>,
    ) -> Result<u32, String> {
        let now_ns = self.ns(Instant::now());
        let window = self.window.get();
        let counting = member.counting.get() && member.session_start_ns.get() <= window.start_ns;
        let mut histogram = self.histogram.borrow_mut();
        let (mut measured, mut excluded, mut outside, mut stale, mut foreign, mut duplicates) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut on_payload = |payload: &[u8]| match window.classify(payload, now_ns) {
            Seen::Measured(latency_ns) => {
                if counting {
                    measured += 1;
                    histogram.saturating_record((latency_ns / 1000).max(1));
                } else {
                    excluded += 1;
                }
            }
            Seen::Outside => outside += 1,
            Seen::Stale => stale += 1,
            Seen::Foreign => foreign += 1,
        };
        let (consumed, pings) = match self.options.proto {
            Proto::Mqtt if self.qos1 => (
                mqtt::scan_packets(
                    data,
                    |publish| {
                        if let Some(id) = publish.packet_id {
                            acks.extend_from_slice(&wire::mqtt_puback(id));
                        }
                        if publish.dup {
                            duplicates += 1;
                        } else {
                            on_payload(publish.payload);
                        }
                    },
                    |_| {},
                )
                .map_err(|_| "malformed MQTT from the server".to_owned())?,
                0,
            ),
            Proto::Mqtt => (
                mqtt::scan(data, &mut on_payload)
                    .map_err(|_| "malformed MQTT from the server".to_owned())?,
                0,
            ),
            Proto::Nats => {
                let scanned = nats::scan(data, &mut on_payload).map_err(|e| e.0)?;
                if let Some(error) = scanned.error {
                    self.note_error(format!("-ERR {error}"));
                }
                (scanned.consumed, scanned.pings)
            }
        };
        member.delivered.set(member.delivered.get() + measured);
        let add = |cell: &Cell<u64>, n: u64| cell.set(cell.get() + n);
        add(&self.tally.excluded, excluded);
        add(&self.tally.outside, outside);
        add(&self.tally.stale, stale);
        add(&self.tally.foreign, foreign);
        add(&self.tally.duplicates, duplicates);
        carry.clear();
        carry.extend_from_slice(&data[consumed..]);
        Ok(pings)
    }

    /// One non-blocking read of `stream` into the shared buffer, then the
    /// scan. `Ok(false)` when the socket had nothing.
    fn pump(
        &self,
        member: &Member,
        stream: &TcpStream,
        carry: &mut Vec<u8>,
    ) -> Result<bool, String> {
        let mut scratch = self.scratch.borrow_mut();
        let Some(len) = read_after_carry(&mut scratch, carry, stream)? else {
            return Ok(false);
        };
        let mut acks = self.acks.borrow_mut();
        let pings = self.absorb(member, &scratch[..len], carry, &mut acks)?;
        drop(scratch);
        if !acks.is_empty() {
            // This read's PUBACKs in one write.
            let sent = member.send(stream, &acks);
            acks.clear();
            sent?;
        }
        drop(acks);
        for _ in 0..pings {
            // A subscriber writes nothing else: a PONG never interleaves.
            let _ = stream.try_write(wire::NATS_PONG);
        }
        Ok(true)
    }

    /// Reads sending connection `sender`'s input: PINGs to answer (NATS),
    /// PUBACKs (MQTT QoS 1), errors.
    fn pump_control(
        &self,
        sender: usize,
        stream: &TcpStream,
        carry: &mut Vec<u8>,
    ) -> Result<u32, String> {
        let mut scratch = self.scratch.borrow_mut();
        let Some(len) = read_after_carry(&mut scratch, carry, stream)? else {
            return Ok(0);
        };
        let data = &scratch[..len];
        let (consumed, pings) = match self.options.proto {
            Proto::Mqtt if self.qos1 => (
                mqtt::scan_packets(data, |_| {}, |id| self.on_puback(sender, id))
                    .map_err(|_| "malformed MQTT".to_owned())?,
                0,
            ),
            Proto::Mqtt => (
                mqtt::scan(data, |_| {}).map_err(|_| "malformed MQTT".to_owned())?,
                0,
            ),
            Proto::Nats => {
                let scanned = nats::scan(data, |_| {}).map_err(|e| e.0)?;
                if let Some(error) = scanned.error {
                    self.note_error(format!("-ERR {error}"));
                }
                (scanned.consumed, scanned.pings)
            }
        };
        carry.clear();
        carry.extend_from_slice(&data[consumed..]);
        Ok(pings)
    }
}

impl Engine {
    /// The broker acknowledged `id` of publisher `sender` (QoS 1).
    fn on_puback(&self, sender: usize, id: u16) {
        let Some(flight) = self.flights.get(sender) else {
            return;
        };
        let mut flight = flight.borrow_mut();
        if !flight.ids.release(id) {
            self.acked.unknown.set(self.acked.unknown.get() + 1);
            return;
        }
        let slot = flight.slots[usize::from(id)];
        drop(flight);
        if slot.step == self.window.get().step {
            self.acked.all.set(self.acked.all.get() + 1);
            if slot.counted {
                self.acked.window.set(self.acked.window.get() + 1);
                if let Some(n) = self.acked.to.borrow_mut().get_mut(slot.target as usize) {
                    *n += 1;
                }
            }
        }
        self.ack_wake.notify_one();
    }
}

/// One non-blocking read of `stream` into `scratch` after the unconsumed
/// bytes `carry` of the previous read: the length of `carry` plus what was
/// read, `None` when the socket had nothing.
fn read_after_carry(
    scratch: &mut Vec<u8>,
    carry: &[u8],
    stream: &TcpStream,
) -> Result<Option<usize>, String> {
    let have = carry.len();
    let want = have + READ_CHUNK;
    if scratch.len() < want {
        scratch.resize(want, 0);
    }
    scratch[..have].copy_from_slice(carry);
    let n = match stream.try_read(&mut scratch[have..want]) {
        Ok(0) => return Err("connection closed by the server".into()),
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(format!("read: {e}")),
    };
    if n < READ_CHUNK {
        drained(stream);
    }
    Ok(Some(have + n))
}

/// After a short read the socket is empty: clears its read readiness
/// without the `read` that would return `WouldBlock` (as tokio's own
/// `poll_read` does; a later arrival raises a new edge, so nothing is
/// missed). Saves a system call per wake-up.
#[inline]
fn drained(stream: &TcpStream) {
    let _ = stream.try_io(tokio::io::Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
}

/// Why a member's session ended.
enum SessionEnd {
    Churn,
    Lost(String),
}

/// Reads one subscription until it is lost or churned.
async fn session(
    engine: &Engine,
    member: &Member,
    stream: &TcpStream,
    mut carry: Vec<u8>,
) -> SessionEnd {
    if !carry.is_empty() {
        let data = std::mem::take(&mut carry);
        let mut acks = Vec::new();
        if let Err(e) = engine.absorb(member, &data, &mut carry, &mut acks) {
            return SessionEnd::Lost(e);
        }
        if let Err(e) = member.send(stream, &acks) {
            return SessionEnd::Lost(e);
        }
    }
    let churn = engine.options.churn > 0.0;
    loop {
        let owing = !member.out.borrow().is_empty();
        tokio::select! {
            biased;
            () = member.churn.notified(), if churn => return SessionEnd::Churn,
            ready = stream.writable(), if owing => {
                if let Err(e) = ready.map_err(|e| format!("writable: {e}"))
                    .and_then(|()| member.flush(stream))
                {
                    return SessionEnd::Lost(e);
                }
                continue;
            }
            ready = stream.readable() => if let Err(e) = ready {
                return SessionEnd::Lost(format!("readable: {e}"));
            },
        }
        if let Err(e) = engine.pump(member, stream, &mut carry) {
            return SessionEnd::Lost(e);
        }
    }
}

impl Member {
    fn set_up(&self, stream: Rc<TcpStream>, now_ns: u64) {
        self.out.borrow_mut().clear();
        *self.conn.borrow_mut() = Some(stream);
        self.session_start_ns.set(now_ns);
        self.up.set(true);
    }

    fn set_down(&self) {
        self.up.set(false);
        self.conn.borrow_mut().take();
    }

    /// Writes `bytes` after whatever is still owed; keeps what the socket
    /// does not take now (the session writes it when writable).
    fn send(&self, stream: &TcpStream, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut out = self.out.borrow_mut();
        if !out.is_empty() {
            out.extend_from_slice(bytes);
            drop(out);
            return self.flush(stream);
        }
        match stream.try_write(bytes) {
            Ok(n) => out.extend_from_slice(&bytes[n..]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => out.extend_from_slice(bytes),
            Err(e) => return Err(format!("write: {e}")),
        }
        Ok(())
    }

    /// Writes what is owed, as far as the socket takes it now.
    fn flush(&self, stream: &TcpStream) -> Result<(), String> {
        let mut out = self.out.borrow_mut();
        let mut head = 0;
        while head < out.len() {
            match stream.try_write(&out[head..]) {
                Ok(0) => return Err("the connection wrote 0 bytes".into()),
                Ok(n) => head += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        out.drain(..head);
        Ok(())
    }
}

/// A member: join (reported on `done`), then read until the run ends;
/// churned members rejoin.
async fn member_task(
    engine: Rc<Engine>,
    member: Rc<Member>,
    gate: Rc<Semaphore>,
    phase_end: Instant,
    done: mpsc::UnboundedSender<Result<(), String>>,
) {
    let Ok(permit) = gate.acquire().await else {
        return;
    };
    let deadline = phase_end.min(Instant::now() + engine.options.login_timeout);
    let joined = tokio::time::timeout_at(
        deadline,
        conn::open(&member.dial, &member.spec.name, Some(&member.spec.topic)),
    )
    .await;
    drop(permit);
    let (stream, mut carry) = match joined {
        Ok(Ok(joined)) => joined,
        Ok(Err(e)) => {
            let _ = done.send(Err(e));
            return;
        }
        Err(_) => {
            let _ = done.send(Err(
                "not subscribed within the login timeout or the connect deadline".into(),
            ));
            return;
        }
    };
    let mut stream = Rc::new(stream);
    member.set_up(stream.clone(), engine.ns(Instant::now()));
    let _ = done.send(Ok(()));
    drop(done);
    if member.spec.slow {
        // Joined, and never reads again; the socket stays open in `conn`.
        return;
    }
    loop {
        match session(&engine, &member, &stream, std::mem::take(&mut carry)).await {
            SessionEnd::Lost(e) => {
                member.set_down();
                engine.lost.set(engine.lost.get() + 1);
                engine.note_error(format!("{}: {e}", member.spec.name));
                return;
            }
            SessionEnd::Churn => {
                if engine.options.proto == Proto::Mqtt {
                    let _ = stream.try_write(&mqtt::DISCONNECT);
                }
                member.set_down();
                drop(stream);
                let down_at = Instant::now();
                let mut rejoined = None;
                for _ in 0..REJOIN_ATTEMPTS {
                    let attempt = tokio::time::timeout(
                        engine.options.login_timeout,
                        conn::open(&member.dial, &member.spec.name, Some(&member.spec.topic)),
                    )
                    .await;
                    match attempt {
                        Ok(Ok(joined)) => {
                            rejoined = Some(joined);
                            break;
                        }
                        Ok(Err(e)) => engine.note_error(format!("rejoin: {e}")),
                        Err(_) => engine.note_error("rejoin: timed out".into()),
                    }
                    engine.churn.failed.set(engine.churn.failed.get() + 1);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let Some((joined, rest)) = rejoined else {
                    engine.lost.set(engine.lost.get() + 1);
                    return;
                };
                let now = Instant::now();
                let took_us =
                    u64::try_from(now.duration_since(down_at).as_micros()).unwrap_or(u64::MAX);
                engine
                    .churn
                    .latency
                    .borrow_mut()
                    .saturating_record(took_us.max(1));
                engine
                    .churn
                    .reconnects
                    .set(engine.churn.reconnects.get() + 1);
                stream = Rc::new(joined);
                carry = rest;
                member.set_up(stream.clone(), engine.ns(now));
            }
        }
    }
}

/// A sender: connect (reported on `done`), then read its input (PINGs,
/// errors) until the run ends; its writer task does the writing.
async fn sender_task(
    engine: Rc<Engine>,
    index: usize,
    dial: Dial,
    gate: Rc<Semaphore>,
    phase_end: Instant,
    done: mpsc::UnboundedSender<(usize, Result<Rc<Outbox>, String>)>,
) {
    let Ok(permit) = gate.acquire().await else {
        return;
    };
    let name = engine.plan.senders[index].clone();
    let deadline = phase_end.min(Instant::now() + engine.options.login_timeout);
    let opened = tokio::time::timeout_at(deadline, conn::open(&dial, &name, None)).await;
    drop(permit);
    let (stream, mut carry) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => {
            let _ = done.send((index, Err(e)));
            return;
        }
        Err(_) => {
            let _ = done.send((
                index,
                Err("not connected within the login timeout or the connect deadline".into()),
            ));
            return;
        }
    };
    let stream = Rc::new(stream);
    let outbox = Rc::new(Outbox::new(stream.clone()));
    tokio::task::spawn_local(conn::writer(outbox.clone()));
    let _ = done.send((index, Ok(outbox.clone())));
    drop(done);
    loop {
        if let Err(e) = stream.readable().await {
            outbox.fail(format!("readable: {e}"));
            break;
        }
        match engine.pump_control(index, &stream, &mut carry) {
            Ok(0) => {}
            Ok(pings) => {
                outbox.append(|b| {
                    for _ in 0..pings {
                        b.extend_from_slice(wire::NATS_PONG);
                    }
                });
                outbox.flush();
            }
            Err(e) => {
                outbox.fail(e);
                break;
            }
        }
    }
    if let Some(e) = outbox.error() {
        engine.note_error(format!("{name}: {e}"));
    }
}

/// MQTT keep-alive: a PINGREQ on every connection at half the period.
async fn keepalive(engine: Rc<Engine>) {
    let period = Duration::from_secs(u64::from(mqtt::KEEP_ALIVE_SECS) / 2);
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    loop {
        tick.tick().await;
        for member in &engine.members {
            if let Some(stream) = member.conn.borrow().as_ref() {
                // After any PUBACK still owed, never inside one.
                let _ = member.send(stream, &wire::MQTT_PINGREQ);
            }
        }
        for outbox in engine.senders.borrow().iter().flatten() {
            outbox.append(|b| b.extend_from_slice(&wire::MQTT_PINGREQ));
            outbox.flush();
        }
    }
}

/// Churn: event `j` disconnects member `j mod N` (which rejoins), events
/// spread evenly at `--churn` percent of the members per second.
async fn churn_driver(engine: Rc<Engine>, t0: Instant) {
    let per_sec = engine.churn_per_sec();
    let n = engine.members.len() as u64;
    let mut j = 0u64;
    loop {
        let due = t0 + Duration::from_nanos(churn_event_ns(j, per_sec));
        tokio::time::sleep_until(due).await;
        // Catch up with every event due by now.
        let now_ns = u64::try_from(Instant::now().saturating_duration_since(t0).as_nanos())
            .unwrap_or(u64::MAX);
        while churn_event_ns(j, per_sec) <= now_ns {
            let member = &engine.members[(j % n) as usize];
            if member.up.get() && !member.spec.slow {
                member.churn.notify_one();
            } else {
                engine.churn.skipped.set(engine.churn.skipped.get() + 1);
            }
            j += 1;
        }
    }
}

/// CPU seconds this process has used (utime + stime of /proc/self/stat).
fn cpu_secs(clk_tck: u64) -> f64 {
    procfs::cpu_ticks(std::process::id()).map_or(0.0, |t| t as f64 / clk_tck.max(1) as f64)
}

/// Clock ticks per second (`getconf CLK_TCK`, else Linux's 100).
fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn json_line(kind: &str, mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.insert("kind".into(), kind.into());
    }
    println!("{value}");
    value
}

/// Runs a plan: connect, sweep the rates, report.
pub(crate) async fn run(options: GenOptions, plan: Plan) -> Result<(), String> {
    let local = tokio::task::LocalSet::new();
    local.run_until(drive(options, plan)).await
}

async fn drive(options: GenOptions, plan: Plan) -> Result<(), String> {
    let clk_tck = clk_tck();
    let engine = Rc::new(Engine::new(options, plan));
    let o = &engine.options;
    let label = format!("bench-client {} {}", o.workload.name(), o.proto.name());

    // Connect: the receivers, then the senders.
    let started = Instant::now();
    let phase_end = started + o.connect_deadline;
    let gate = Rc::new(Semaphore::new(o.concurrency));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for member in &engine.members {
        tokio::task::spawn_local(member_task(
            engine.clone(),
            member.clone(),
            gate.clone(),
            phase_end,
            done_tx.clone(),
        ));
    }
    drop(done_tx);
    let n = engine.members.len();
    let (mut joined, mut failed) = (0usize, 0usize);
    let mut first_error: Option<String> = None;
    let mut progress =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    while joined + failed < n {
        tokio::select! {
            outcome = done_rx.recv() => match outcome {
                Some(Ok(())) => joined += 1,
                Some(Err(e)) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
                None => break,
            },
            _ = progress.tick() => eprintln!("{label}: {joined}/{n} receivers joined, {failed} failed"),
            () = tokio::time::sleep_until(phase_end + Duration::from_secs(1)) => {
                failed = n - joined;
                first_error.get_or_insert_with(|| "receivers not joined by the connect deadline".into());
                break;
            }
        }
    }
    let sources = o.source_ips();
    // Senders dial from the top of the source range.
    let sender_source = |index: usize| {
        (!sources.is_empty()).then(|| {
            sources[(sources.len() - 1 + sources.len() - index % sources.len()) % sources.len()]
        })
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let senders = engine.plan.senders.len();
    let mqtt_senders = if o.pike.is_some() { 0 } else { senders };
    for index in 0..mqtt_senders {
        let dial = Dial {
            proto: o.proto,
            server: o.server,
            source: sender_source(index),
            recv_buffer: None,
            qos: o.qos,
            credentials: None,
        };
        tokio::task::spawn_local(sender_task(
            engine.clone(),
            index,
            dial,
            gate.clone(),
            phase_end,
            done_tx.clone(),
        ));
    }
    drop(done_tx);
    let mut outboxes: Vec<Option<Rc<Outbox>>> = vec![None; mqtt_senders];
    let (mut opened, mut sender_failed) = (0usize, 0usize);
    if let Some(api) = o.api.filter(|_| o.pike.is_some()) {
        // Pike mode: the push API's connections.
        for index in 0..senders {
            let left =
                (phase_end + Duration::from_secs(1)).saturating_duration_since(Instant::now());
            let dialled = tokio::time::timeout(
                left.min(o.login_timeout),
                HttpConn::open(api, sender_source(index)),
            )
            .await;
            match dialled {
                Ok(Ok(conn)) => {
                    engine.http.borrow_mut().push(conn);
                    opened += 1;
                }
                Ok(Err(e)) => {
                    sender_failed += 1;
                    first_error.get_or_insert_with(|| format!("HTTP API {api}: {e}"));
                }
                Err(_) => {
                    sender_failed += 1;
                    first_error
                        .get_or_insert_with(|| format!("HTTP API {api}: no connection in time"));
                }
            }
        }
        engine.http_open.set(opened);
    }
    while opened + sender_failed < senders {
        tokio::select! {
            outcome = done_rx.recv() => match outcome {
                Some((index, Ok(outbox))) => {
                    outboxes[index] = Some(outbox);
                    opened += 1;
                }
                Some((_, Err(e))) => {
                    sender_failed += 1;
                    first_error.get_or_insert(e);
                }
                None => break,
            },
            _ = progress.tick() => eprintln!("{label}: {opened}/{senders} senders connected, {sender_failed} failed"),
            () = tokio::time::sleep_until(phase_end + Duration::from_secs(1)) => {
                sender_failed = senders - opened;
                first_error.get_or_insert_with(|| "senders not connected by the connect deadline".into());
                break;
            }
        }
    }
    *engine.senders.borrow_mut() = outboxes;
    let seconds = started.elapsed().as_secs_f64();
    let connections = (joined + opened) as u64;
    let connect = json_line(
        "connected",
        json!({
            "connections": connections,
            "connected": connections,
            "failed": failed + sender_failed,
            "seconds": seconds,
            "rate_per_sec": connections as f64 / seconds.max(1e-9),
            // Uplink's devices are its senders; elsewhere the receivers.
            engine.plan.population_key: if engine.plan.sender_of == SenderOf::Route { opened } else { joined },
            "receivers": joined,
            "senders": opened,
            "first_error": first_error,
        }),
    );
    if joined == 0 || opened == 0 {
        return Err(format!(
            "nothing to measure: {joined} receivers and {opened} senders connected ({})",
            first_error.unwrap_or_default()
        ));
    }

    if o.proto == Proto::Mqtt {
        tokio::task::spawn_local(keepalive(engine.clone()));
    }
    if o.churn > 0.0 && engine.churn_per_sec() > 0.0 {
        let t0 = Instant::now();
        engine.churn_t0.set(Some(t0));
        tokio::task::spawn_local(churn_driver(engine.clone(), t0));
    }

    let mut steps = Vec::new();
    for (index, &rate) in o.rates.iter().enumerate() {
        let step = run_step(
            &engine,
            u32::try_from(index + 1).unwrap_or(u32::MAX),
            rate,
            clk_tck,
        )
        .await;
        steps.push(step);
    }
    json_line(
        "report",
        json!({
            "workload": o.workload.name(),
            "proto": o.proto.name(),
            "size": o.size,
            engine.plan.population_key: engine.plan.population,
            "senders": engine.plan.senders.len(),
            "connect": connect,
            "steps": steps,
            "lost": engine.lost.get(),
            "last_error": engine.last_error.borrow().clone(),
        }),
    );
    Ok(())
}

/// Whether the churn schedule disconnects member `i` during `[from, to)`.
fn churn_victims(engine: &Engine, from: Instant, to: Instant) -> Option<Vec<bool>> {
    let t0 = engine.churn_t0.get()?;
    let n = engine.members.len();
    let per_sec = engine.churn_per_sec();
    let rel = |at: Instant| -> i128 {
        if at >= t0 {
            at.duration_since(t0).as_nanos() as i128
        } else {
            -(t0.duration_since(at).as_nanos() as i128)
        }
    };
    let events = churn_events(rel(from), rel(to), per_sec);
    let mut victim = vec![false; n];
    if events.end - events.start >= n as u64 {
        victim.fill(true);
    } else {
        for j in events {
            victim[(j % n as u64) as usize] = true;
        }
    }
    Some(victim)
}

async fn run_step(engine: &Rc<Engine>, step_no: u32, rate: u64, clk_tck: u64) -> Value {
    let o = &engine.options;
    let t0 = Instant::now() + Duration::from_millis(20);
    let ws = t0 + o.warmup;
    let we = ws + o.step;
    let de = we + o.drain;
    let deadline = we + o.drain.min(Duration::from_secs(1));
    let window = Window {
        run: engine.run,
        step: step_no,
        start_ns: engine.ns(ws),
        end_ns: engine.ns(we),
    };
    engine.window.set(window);
    engine.histogram.borrow_mut().reset();
    engine.churn.latency.borrow_mut().reset();
    for cell in [
        &engine.tally.outside,
        &engine.tally.stale,
        &engine.tally.foreign,
        &engine.tally.excluded,
        &engine.tally.duplicates,
        &engine.acked.all,
        &engine.acked.window,
        &engine.acked.unknown,
        &engine.churn.reconnects,
        &engine.churn.failed,
        &engine.churn.skipped,
    ] {
        cell.set(0);
    }
    let victims = churn_victims(engine, ws.checked_sub(CHURN_GUARD).unwrap_or(ws), de);
    for (i, member) in engine.members.iter().enumerate() {
        member.delivered.set(0);
        let churns = victims.as_ref().is_some_and(|v| v[i]);
        member.counting.set(!member.spec.slow && !churns);
    }
    engine.acked.to.borrow_mut().fill(0);
    let lost_before = engine.lost.get();

    let total = rate.saturating_mul((o.warmup + o.step).as_secs());
    let first_window = rate.saturating_mul(o.warmup.as_secs());
    let clock = async {
        tokio::time::sleep_until(ws).await;
        json_line("step_begin", json!({"rate": rate, "step": step_no}));
        let cpu_before = cpu_secs(clk_tck);
        tokio::time::sleep_until(de).await;
        cpu_secs(clk_tck) - cpu_before
    };
    let schedule = Schedule {
        step_no,
        rate,
        t0,
        total,
        first_window,
        deadline,
    };
    let (sent, gen_cpu_secs) = tokio::join!(
        async {
            if o.pike.is_some() {
                publish_http(engine, &schedule, de + ANSWER_GRACE).await
            } else {
                publish(engine, &schedule).await
            }
        },
        clock
    );

    // Healthy receivers: counted, up, subscribed since before the window.
    let mut healthy_in = vec![0u64; engine.plan.targets];
    let (mut healthy, mut delivered) = (0u64, 0u64);
    for member in &engine.members {
        if member.counting.get()
            && member.up.get()
            && member.session_start_ns.get() <= window.start_ns
        {
            healthy_in[member.spec.target] += 1;
            healthy += 1;
            delivered += member.delivered.get();
        }
    }
    // At QoS 1 a message is sent once the broker acknowledged it.
    let acked_to = engine.acked.to.borrow().clone();
    let sent_to = if engine.qos1 {
        &acked_to
    } else {
        &sent.sent_to
    };
    let n_sent = if engine.qos1 {
        engine.acked.window.get()
    } else {
        sent.sent
    };
    let expected: u64 = sent_to.iter().zip(&healthy_in).map(|(s, h)| s * h).sum();
    let secs = o.step.as_secs_f64();
    let h = engine.histogram.borrow();
    let quantile = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            ms(h.value_at_quantile(q))
        }
    };
    let mut line = json!({
        "rate": rate,
        "step": step_no,
        "seconds": secs,
        "sent": n_sent,
        "expected": expected,
        "delivered": delivered,
        "delivered_pct": if expected == 0 { 0.0 } else { delivered as f64 * 100.0 / expected as f64 },
        "delivered_per_sec": delivered as f64 / secs,
        "offered_per_sec": expected as f64 / secs,
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
        "p999_ms": quantile(0.999),
        "max_ms": if h.is_empty() { 0.0 } else { ms(h.max()) },
        "mean_ms": if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        "unsent": sent.unsent,
        "send_errors": sent.send_errors,
        "gen_cpu_secs": gen_cpu_secs,
        engine.plan.population_key: engine.plan.population,
        "healthy": healthy,
        "excluded_deliveries": engine.tally.excluded.get(),
        "stale": engine.tally.stale.get(),
        "foreign": engine.tally.foreign.get(),
        "lost": engine.lost.get() - lost_before,
        "publisher_max_lag_ms": sent.max_lag_ns as f64 / 1e6,
    });
    drop(h);
    let extras = line.as_object_mut().map(|object| {
        if engine.qos1 {
            let in_flight: usize = engine
                .flights
                .iter()
                .map(|f| f.borrow().ids.in_flight())
                .sum();
            object.insert("qos".into(), 1.into());
            object.insert("acked".into(), engine.acked.window.get().into());
            object.insert("acked_all".into(), engine.acked.all.get().into());
            // Window messages written to the broker, and those of them
            // still unacknowledged at the end of the drain.
            object.insert("published".into(), sent.sent.into());
            object.insert(
                "unacked".into(),
                sent.sent.saturating_sub(engine.acked.window.get()).into(),
            );
            object.insert("in_flight_at_end".into(), in_flight.into());
            object.insert("inflight_limit".into(), o.inflight.into());
            object.insert("inflight_stalls".into(), sent.inflight_stalls.into());
            object.insert("unknown_pubacks".into(), engine.acked.unknown.get().into());
            object.insert("duplicates".into(), engine.tally.duplicates.get().into());
        }
        if o.churn > 0.0 {
            let latency = engine.churn.latency.borrow();
            let q = |q: f64| {
                if latency.is_empty() {
                    0.0
                } else {
                    ms(latency.value_at_quantile(q))
                }
            };
            object.insert("reconnects".into(), engine.churn.reconnects.get().into());
            object.insert("reconnect_failed".into(), engine.churn.failed.get().into());
            object.insert("reconnect_p50_ms".into(), q(0.50).into());
            object.insert("reconnect_p99_ms".into(), q(0.99).into());
            object.insert("churn_skipped".into(), engine.churn.skipped.get().into());
        }
        if o.slow > 0.0 {
            let (slow, closed) = slow_members(engine);
            object.insert("slow_members".into(), slow.into());
            object.insert("slow_disconnected".into(), closed.into());
        }
    });
    debug_assert!(extras.is_some());
    json_line("step", line)
}

/// Slow members joined, and how many of them the server has closed (FIN,
/// RST or an error pending on the socket), seen without reading: a
/// throw-away epoll set asked for `EPOLLRDHUP` only (plus the `EPOLLHUP`
/// and `EPOLLERR` it always reports).
///
/// A server that closes normally sends its FIN after the data still queued
/// for the member, which cannot arrive while the member's window is shut:
/// such a close shows once the server's kernel gives up (an RST), so this
/// count can lag the server's decision.
fn slow_members(engine: &Engine) -> (u64, u64) {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    let conns: Vec<Rc<TcpStream>> = engine
        .members
        .iter()
        .filter(|m| m.spec.slow)
        .filter_map(|m| m.conn.borrow().clone())
        .collect();
    let slow = conns.len() as u64;
    let Ok(epoll) = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) else {
        return (slow, 0);
    };
    for (i, stream) in conns.iter().enumerate() {
        let _ = epoll.add(
            stream.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLRDHUP, i as u64),
        );
    }
    let mut events = vec![EpollEvent::empty(); conns.len().max(1)];
    let closed = epoll.wait(&mut events, EpollTimeout::ZERO).unwrap_or(0);
    (slow, closed as u64)
}

/// One step's open-loop schedule: message `k < total` is due at `t0 +
/// k/rate`; those from `first_window` on are in the window; nothing is
/// handed over after `deadline`.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    step_no: u32,
    rate: u64,
    t0: Instant,
    total: u64,
    first_window: u64,
    deadline: Instant,
}

/// The open-loop publisher of one step.
async fn publish(engine: &Engine, schedule: &Schedule) -> Sent {
    let &Schedule {
        step_no,
        rate,
        t0,
        total,
        first_window,
        deadline,
    } = schedule;
    let senders = engine.senders.borrow().clone();
    let limit = ((1usize << 20) / senders.len().max(1)).clamp(16 * 1024, 256 * 1024);
    let t0_ns = engine.ns(t0);
    let mut out = Sent {
        sent_to: vec![0; engine.plan.targets],
        ..Sent::default()
    };
    let mut touched = vec![false; senders.len()];
    let mut touched_list: Vec<usize> = Vec::new();
    let mut k = 0u64;
    tokio::time::sleep_until(t0).await;
    while k < total {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let now_ns = engine.ns(now);
        let due = due_by(now_ns.saturating_sub(t0_ns), rate).min(total);
        let mut stalled = false;
        let mut awaiting_acks = false;
        while k < due {
            let (s, route) = engine.plan.route(k);
            let Some(outbox) = senders[s].as_ref().filter(|o| !o.failed()) else {
                if k >= first_window {
                    out.send_errors += 1;
                }
                k += 1;
                continue;
            };
            if outbox.pending() >= limit {
                outbox.flush();
                if outbox.pending() >= limit {
                    stalled = true;
                    break;
                }
            }
            let scheduled_ns = t0_ns + offset_ns(k, rate);
            let (prefix, target) = &engine.frames[route];
            let packet_id = if engine.qos1 {
                let mut flight = engine.flights[s].borrow_mut();
                if flight.ids.in_flight() >= engine.options.inflight {
                    awaiting_acks = true;
                    break;
                }
                // `--inflight` is at most the pool's capacity: an id is free.
                let Some(id) = flight.ids.take() else {
                    awaiting_acks = true;
                    break;
                };
                flight.slots[usize::from(id)] = Slot {
                    step: step_no,
                    target: u32::try_from(*target).unwrap_or(u32::MAX),
                    counted: k >= first_window,
                };
                Some(id)
            } else {
                None
            };
            outbox.append(|b| {
                b.extend_from_slice(prefix);
                if let Some(id) = packet_id {
                    b.extend_from_slice(&id.to_be_bytes());
                }
                stamp::put(b, engine.run, step_no, scheduled_ns);
                b.extend_from_slice(&engine.padding);
                b.extend_from_slice(engine.suffix);
            });
            if !touched[s] {
                touched[s] = true;
                touched_list.push(s);
            }
            if k >= first_window {
                out.sent += 1;
                out.sent_to[*target] += 1;
            }
            out.max_lag_ns = out.max_lag_ns.max(now_ns.saturating_sub(scheduled_ns));
            k += 1;
        }
        for s in touched_list.drain(..) {
            touched[s] = false;
            if let Some(outbox) = &senders[s] {
                outbox.flush();
            }
        }
        if k >= total {
            break;
        }
        if awaiting_acks {
            // The connection's window is full: on at the next PUBACK.
            out.inflight_stalls += 1;
            let _ = tokio::time::timeout_at(deadline, engine.ack_wake.notified()).await;
            continue;
        }
        let next = if stalled {
            now + Duration::from_millis(1)
        } else {
            t0 + Duration::from_nanos(offset_ns(k, rate))
        };
        if next > Instant::now() {
            tokio::time::sleep_until(next.min(deadline)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    if k < total {
        out.unsent = total - k.max(first_window);
    }
    out
}

/// One batch request in flight: per item its target and whether it is a
/// window message.
type BatchItems = Vec<(usize, bool)>;

/// Pike mode's open-loop publisher of one step: the messages due go out
/// in `POST /v1/push/batch` requests on idle HTTP connections; a window
/// message counts as sent once its receipt came back. Waits for the
/// answers until `answers_by`.
async fn publish_http(engine: &Rc<Engine>, schedule: &Schedule, answers_by: Instant) -> Sent {
    let &Schedule {
        step_no,
        rate,
        t0,
        total,
        first_window,
        deadline,
    } = schedule;
    let o = &engine.options;
    let (Some(login), Some(api)) = (o.pike.as_ref(), o.api) else {
        return Sent::default();
    };
    let host = api.to_string();
    let t0_ns = engine.ns(t0);
    let answered = Rc::new(RefCell::new(Sent {
        sent_to: vec![0; engine.plan.targets],
        ..Sent::default()
    }));
    let in_flight = Rc::new(Cell::new(0usize));
    let mut out = Sent::default();
    let mut payload = Vec::with_capacity(o.size);
    let mut k = 0u64;
    tokio::time::sleep_until(t0).await;
    while k < total {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let now_ns = engine.ns(now);
        let due = due_by(now_ns.saturating_sub(t0_ns), rate).min(total);
        let mut stalled = false;
        while k < due {
            let Some(conn) = engine.http.borrow_mut().pop() else {
                stalled = true;
                break;
            };
            // At most `--batch`, never across the window's start.
            let mut end = due.min(k.saturating_add(o.batch as u64));
            if k < first_window {
                end = end.min(first_window);
            }
            let mut body = String::with_capacity(16 + (end - k) as usize * (o.size * 4 / 3 + 96));
            body.push_str(r#"{"pushes":["#);
            let mut items: BatchItems = Vec::with_capacity((end - k) as usize);
            for j in k..end {
                let (_, route) = engine.plan.route(j);
                let route = &engine.plan.routes[route];
                let scheduled_ns = t0_ns + offset_ns(j, rate);
                payload.clear();
                stamp::put(&mut payload, engine.run, step_no, scheduled_ns);
                payload.extend_from_slice(&engine.padding);
                if j > k {
                    body.push(',');
                }
                http_push::push_item(&login.biz, &route.topic, &payload, &mut body);
                items.push((route.target, j >= first_window));
                out.max_lag_ns = out.max_lag_ns.max(now_ns.saturating_sub(scheduled_ns));
            }
            body.push_str("]}");
            let request = http_push::batch_request(&host, &o.api_key, &body);
            in_flight.set(in_flight.get() + 1);
            tokio::task::spawn_local(exchange_batch(
                engine.clone(),
                conn,
                request,
                items,
                step_no,
                answered.clone(),
                in_flight.clone(),
            ));
            k = end;
        }
        if k >= total {
            break;
        }
        if stalled {
            // Every connection is busy (or lost): on at the next answer.
            out.inflight_stalls += 1;
            let _ = tokio::time::timeout_at(deadline, engine.http_wake.notified()).await;
            continue;
        }
        let next = t0 + Duration::from_nanos(offset_ns(k, rate));
        if next > Instant::now() {
            tokio::time::sleep_until(next.min(deadline)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    if k < total {
        out.unsent = total - k.max(first_window);
    }
    // The answers of the batches in flight, bounded.
    while in_flight.get() > 0 && Instant::now() < answers_by {
        let _ = tokio::time::timeout_at(answers_by, engine.http_wake.notified()).await;
    }
    let answered = answered.borrow();
    // Window messages whose batch is still unanswered count as neither.
    out.sent = answered.sent;
    out.sent_to.clone_from(&answered.sent_to);
    out.send_errors = answered.send_errors;
    out
}

/// One batch request on `conn`: sends it (once more on a fresh connection
/// when the first one was closed), counts the answer's receipts into
/// `answered` (window messages of step `step_no` only), and gives the
/// connection back.
async fn exchange_batch(
    engine: Rc<Engine>,
    mut conn: HttpConn,
    request: Vec<u8>,
    items: BatchItems,
    step_no: u32,
    answered: Rc<RefCell<Sent>>,
    in_flight: Rc<Cell<usize>>,
) {
    let mut outcome = conn.exchange(&request).await;
    let mut alive = outcome.is_ok();
    if outcome.is_err() {
        // A keep-alive connection the API closed: one retry on a new one.
        match HttpConn::open(conn.addr, conn.source).await {
            Ok(fresh) => {
                conn = fresh;
                outcome = conn.exchange(&request).await;
                alive = outcome.is_ok();
            }
            Err(e) => outcome = Err(e),
        }
    }
    let results = outcome.and_then(|answer| match answer.status {
        200 => http_push::item_results(&answer.body),
        status => Err(format!(
            "POST /v1/push/batch answered {status}: {}",
            String::from_utf8_lossy(&answer.body)
        )),
    });
    {
        let mut sent = answered.borrow_mut();
        match results {
            Ok(results) => {
                for (i, (target, counted)) in items.iter().enumerate() {
                    if !counted {
                        continue;
                    }
                    if results.get(i) == Some(&true) {
                        sent.sent += 1;
                        if let Some(n) = sent.sent_to.get_mut(*target) {
                            *n += 1;
                        }
                    } else {
                        sent.send_errors += 1;
                    }
                }
                if results.len() != items.len() {
                    engine.note_error(format!(
                        "batch of {} answered with {} results",
                        items.len(),
                        results.len()
                    ));
                }
            }
            Err(e) => {
                sent.send_errors += items.iter().filter(|(_, counted)| *counted).count() as u64;
                engine.note_error(format!("step {step_no}: {e}"));
            }
        }
    }
    if alive {
        engine.http.borrow_mut().push(conn);
    } else {
        engine
            .http_open
            .set(engine.http_open.get().saturating_sub(1));
    }
    in_flight.set(in_flight.get().saturating_sub(1));
    engine.http_wake.notify_waiters();
    engine.http_wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_schedule() {
        assert_eq!(offset_ns(0, 1000), 0);
        assert_eq!(offset_ns(1, 1000), 1_000_000);
        assert_eq!(offset_ns(3, 3), 1_000_000_000);
        assert_eq!(offset_ns(29, 3), 9_666_666_666, "no accumulated rounding");
        // Message 0 at once, then one per 1/rate.
        assert_eq!(due_by(0, 1000), 1);
        assert_eq!(due_by(999_999, 1000), 1);
        assert_eq!(due_by(1_000_000, 1000), 2);
        assert_eq!(due_by(2_000_000_000, 10), 21);
        // Every message k is due exactly at offset_ns(k).
        for rate in [1, 7, 1000, 3_000_000] {
            for k in [0u64, 1, 5, 999, 123_456] {
                let at = offset_ns(k, rate);
                assert_eq!(due_by(at, rate), k + 1, "rate {rate} k {k}");
                if at > 0 {
                    assert_eq!(due_by(at - 1, rate), k, "rate {rate} k {k}");
                }
            }
        }
    }

    /// The window's messages: those with `first_window <= k < total`,
    /// stamped inside `[ws, we)` as the receivers check.
    #[test]
    fn window_holds_exactly_the_counted_messages() {
        let (rate, warmup, step) = (7u64, 2u64, 3u64);
        let t0_ns = 5_000u64;
        let window = Window {
            run: 3,
            step: 1,
            start_ns: t0_ns + warmup * 1_000_000_000,
            end_ns: t0_ns + (warmup + step) * 1_000_000_000,
        };
        let total = rate * (warmup + step);
        let first_window = rate * warmup;
        let mut counted = 0;
        for k in 0..total {
            let mut payload = Vec::new();
            stamp::put(&mut payload, 3, 1, t0_ns + offset_ns(k, rate));
            let measured = matches!(window.classify(&payload, u64::MAX), Seen::Measured(_));
            assert_eq!(measured, k >= first_window, "k {k}");
            counted += u64::from(measured);
        }
        assert_eq!(counted, rate * step);
    }

    #[test]
    fn slow_members_are_spread() {
        let slow: Vec<usize> = (0..100).filter(|&i| is_slow(i, 5.0)).collect();
        assert_eq!(slow.len(), 5);
        assert_eq!(slow, [19, 39, 59, 79, 99]);
        assert_eq!((0..9000).filter(|&i| is_slow(i, 1.0)).count(), 90);
        assert_eq!((0..10).filter(|&i| is_slow(i, 0.0)).count(), 0);
        assert_eq!((0..10).filter(|&i| is_slow(i, 100.0)).count(), 10);
    }

    #[test]
    fn churn_events_in_a_window() {
        // 10 events per second: event j at j * 100 ms.
        assert_eq!(churn_events(0, 1_000_000_000, 10.0), 0..10);
        assert_eq!(churn_events(150_000_000, 450_000_000, 10.0), 2..5);
        assert_eq!(churn_events(-5, 0, 10.0), 0..0);
        assert_eq!(churn_event_ns(3, 10.0), 300_000_000);
        for j in 0..100 {
            let at = churn_event_ns(j, 7.0) as i128;
            assert!(churn_events(at, at + 1, 7.0).contains(&j), "event {j}");
        }
    }

    #[test]
    fn routes() {
        let plan = |sender_of, senders: usize, routes: usize| Plan {
            receivers: Vec::new(),
            targets: routes,
            senders: (0..senders).map(|i| i.to_string()).collect(),
            routes: (0..routes)
                .map(|t| Route {
                    topic: t.to_string(),
                    target: t,
                })
                .collect(),
            sender_of,
            population_key: "devices",
            population: routes,
        };
        let unicast = plan(SenderOf::RoundRobin, 4, 10);
        assert_eq!(unicast.route(0), (0, 0));
        assert_eq!(unicast.route(13), (1, 3));
        let uplink = plan(SenderOf::Route, 10, 10);
        assert_eq!(uplink.route(13), (3, 3));
    }

    /// A full read of back-to-back frames is counted frame by frame,
    /// nothing left over (the receive path the generator's ceiling rests
    /// on; its cost per frame is printed, not asserted).
    #[test]
    fn scan_counts_every_frame_of_a_full_read() {
        for (proto, qos) in [("mqtt", "0"), ("nats", "0"), ("mqtt", "1")] {
            let args: Vec<String> = ["--members", "1", "--proto", proto, "--qos", qos]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            let options = GenOptions::parse(super::super::Workload::Fanout, &args).unwrap();
            let plan = super::super::fanout::plan(&options);
            let engine = Engine::new(options, plan);
            let member = &engine.members[0];
            member.counting.set(true);
            member.session_start_ns.set(0);
            engine.window.set(Window {
                run: engine.run,
                step: 1,
                start_ns: 0,
                end_ns: u64::MAX,
            });
            // 64 KiB of 64-byte-payload frames, as one read would bring
            // (NATS delivers MSG where the publisher sent PUB).
            let prefix = match engine.options.proto {
                Proto::Mqtt => engine.frames[0].0.clone(),
                Proto::Nats => b"MSG room 1 64\r\n".to_vec(),
            };
            let mut data = Vec::new();
            let mut frames = 0u64;
            let mut want_acks = Vec::new();
            while data.len() + 100 < READ_CHUNK {
                data.extend_from_slice(&prefix);
                if engine.qos1 {
                    // Packet ids 1, 2, ...; every 10th a redelivery (DUP).
                    let id = u16::try_from(frames + 1).unwrap();
                    if frames % 10 == 9 {
                        let at = data.len() - prefix.len();
                        data[at] |= 0x08;
                    }
                    data.extend_from_slice(&id.to_be_bytes());
                    want_acks.extend_from_slice(&wire::mqtt_puback(id));
                }
                stamp::put(&mut data, engine.run, 1, 1_000);
                data.extend_from_slice(&engine.padding);
                data.extend_from_slice(engine.suffix);
                frames += 1;
            }
            let mut carry = Vec::new();
            let mut acks = Vec::new();
            let rounds = 3u64;
            let started = Instant::now();
            for _ in 0..rounds {
                acks.clear();
                engine.absorb(member, &data, &mut carry, &mut acks).unwrap();
            }
            let secs = started.elapsed().as_secs_f64();
            assert!(carry.is_empty());
            // One PUBACK per QoS 1 PUBLISH (DUP ones too), in order.
            assert_eq!(acks, want_acks, "{proto} QoS {qos}");
            let dups = if engine.qos1 { frames / 10 } else { 0 };
            assert_eq!(member.delivered.get(), (frames - dups) * rounds);
            assert_eq!(engine.tally.duplicates.get(), dups * rounds);
            println!(
                "{proto} QoS {qos}: {:.1} ns/message, {:.1} M messages/s (parse + stamp + histogram)",
                secs * 1e9 / (frames * rounds) as f64,
                (frames * rounds) as f64 / secs / 1e6
            );
        }
    }
}

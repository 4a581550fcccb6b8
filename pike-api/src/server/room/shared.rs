//! [`Room`]: one live room shared by its publishers, its members'
//! connection tasks and its own release task.
//!
//! Publishers append to the [`Core`] under a mutex. The release task decides
//! when the pending messages become a batch (the adaptive window, see
//! [`Room::run`]), appends the batch to a short history of released batches
//! and wakes every member connection. Each connection task then takes the
//! batches it has not seen from that history and writes them out: the frame
//! of a batch is encoded (and compressed, when it pays) once, on first
//! demand, and every member writes the same bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use pike_channel::{ServerChannel, StreamId};
use proto::channel::{RoomBatch, RoomClass};
use proto::tunnel::Compression;
use tntunnel::Frame;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{RoomConfig, RoomMode};
use super::core::{Core, Counts, ReliableFull, RoomReceipt, Span};
use crate::server::registry::{ConnId, ConnShared};

/// Released batches kept for members that are behind: at most this many,
const BATCH_HISTORY: usize = 65_536;
/// holding at most this many payload bytes,
const BATCH_HISTORY_BYTES: usize = 32 << 20;
/// and none older than this. A member further behind gets catch-up frames
/// read from the ring (shared by members behind by as much).
const BATCH_HISTORY_AGE: Duration = Duration::from_secs(30);
/// Catch-up frames kept for reuse: members behind by the same offsets at
/// the same release share one encoding.
const CATCHUP_CACHE: usize = 64;
/// Batches released in a row before the release task lets the member
/// connections run.
const RELEASES_PER_TURN: usize = 256;

/// A released batch, shared by every member.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) seq: u64,
    pub(crate) span: Span,
    /// Released in push mode: written to every member connection.
    pub(crate) pushed: bool,
    released_at: Instant,
    /// Encoded frames: (stream it answers, or `None` for the pushed form;
    /// compression) → frame.
    variants: Mutex<Vec<(Option<u32>, Compression, Frame)>>,
}

impl Batch {
    pub(crate) fn covered(&self) -> Covered {
        Covered {
            next: self.span.next,
            messages: self.span.messages.len(),
            missed: self.span.missed,
        }
    }
}

/// A span read for members behind, encoded once for all of them.
#[derive(Debug)]
struct CatchUp {
    /// (from, until, max, stream or pushed, compression).
    key: (u64, u64, usize, Option<u32>, Compression),
    /// The released tail when it was read.
    visible: u64,
    /// It stopped before that tail (at `max` or the byte limit): it stays
    /// the answer for its key while the room releases more.
    capped: bool,
    frame: Frame,
    /// The span without its messages (for the counters).
    next: u64,
    messages: usize,
    missed: u64,
}

/// What a catch-up frame covers (for the counters and the cursor).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Covered {
    pub(crate) next: u64,
    pub(crate) messages: usize,
    pub(crate) missed: u64,
}

/// A member connection.
#[derive(Debug)]
struct Member {
    shared: Arc<ConnShared>,
    streams: usize,
}

/// What a joiner needs to answer the join.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Joined {
    pub(crate) head: u64,
    pub(crate) visible: u64,
    pub(crate) seq: u64,
}

/// The room was removed (idle) between lookup and use: look it up again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Closed;

/// Why a publish did not go in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PublishError {
    Closed,
    Full(ReliableFull),
}

#[derive(Debug)]
struct Guarded {
    core: Core,
    closed: bool,
    /// Counters already exported as metrics.
    exported: Counts,
}

/// Metric handles, registered once per room (the hot paths only touch
/// atomics).
#[derive(Debug)]
struct Metrics {
    batch_messages: metrics::Histogram,
    batch_wait: metrics::Histogram,
    pull_wait: metrics::Histogram,
    frames_pushed: metrics::Counter,
    frames_pulled: metrics::Counter,
    messages_sent: metrics::Counter,
    missed: metrics::Counter,
    encodes_batch: metrics::Counter,
    encodes_catchup: metrics::Counter,
    compressions: metrics::Counter,
    pulls_held: metrics::Counter,
    pulls_expired: metrics::Counter,
}

impl Metrics {
    fn new() -> Self {
        Self {
            batch_messages: metrics::histogram!(
                crate::server::metric_families::ROOM_BATCH_MESSAGES
            ),
            batch_wait: metrics::histogram!(
                crate::server::metric_families::ROOM_BATCH_WAIT_SECONDS
            ),
            pull_wait: metrics::histogram!(crate::server::metric_families::ROOM_PULL_WAIT_SECONDS),
            frames_pushed: metrics::counter!(crate::server::metric_families::ROOM_FRAMES_SENT_TOTAL, "kind" => "pushed"),
            frames_pulled: metrics::counter!(crate::server::metric_families::ROOM_FRAMES_SENT_TOTAL, "kind" => "pull"),
            messages_sent: metrics::counter!(
                crate::server::metric_families::ROOM_MESSAGES_SENT_TOTAL
            ),
            missed: metrics::counter!(crate::server::metric_families::ROOM_MISSED_TOTAL),
            encodes_batch: metrics::counter!(crate::server::metric_families::ROOM_ENCODES_TOTAL, "kind" => "batch"),
            encodes_catchup: metrics::counter!(crate::server::metric_families::ROOM_ENCODES_TOTAL, "kind" => "catchup"),
            compressions: metrics::counter!(
                crate::server::metric_families::ROOM_COMPRESSIONS_TOTAL
            ),
            pulls_held: metrics::counter!(crate::server::metric_families::ROOM_PULLS_TOTAL, "result" => "held"),
            pulls_expired: metrics::counter!(crate::server::metric_families::ROOM_PULLS_TOTAL, "result" => "expired"),
        }
    }
}

/// Counters of a room's deliveries (for its stats).
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    pub(crate) batches: AtomicU64,
    pub(crate) encodes: AtomicU64,
    pub(crate) catchup_encodes: AtomicU64,
    pub(crate) compressions: AtomicU64,
    pub(crate) frames: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) missed: AtomicU64,
}

/// One live room.
#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) app: String,
    pub(crate) name: String,
    pub(crate) config: RoomConfig,
    pub(crate) created_at_ms: u64,
    guarded: Mutex<Guarded>,
    members: RwLock<HashMap<ConnId, Member>>,
    member_streams: AtomicUsize,
    batches: RwLock<VecDeque<Arc<Batch>>>,
    /// Payload bytes of the kept batches.
    batch_bytes: AtomicUsize,
    catchups: Mutex<VecDeque<CatchUp>>,
    /// Sequence number of the newest released batch (0: none yet).
    seq: AtomicU64,
    visible: AtomicU64,
    /// Member connections that have not yet taken the newest batch.
    outstanding: AtomicUsize,
    /// At or below this many, the fan-out counts as done.
    release_at: AtomicUsize,
    /// Wakes the release task (publishes, fan-out progress).
    signal: Notify,
    pub(crate) deliveries: Deliveries,
    metrics: Metrics,
    /// Told when the room gains its first member and loses its last (the
    /// engine's [`RoomBus::watch`](crate::server::engine::RoomBus::watch)).
    watch: Option<super::RoomWatch>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Room {
    pub(crate) fn new(
        app: String,
        name: String,
        config: RoomConfig,
        base: u64,
        created_at_ms: u64,
        now: Instant,
        watch: Option<super::RoomWatch>,
    ) -> Self {
        Self {
            app,
            name,
            guarded: Mutex::new(Guarded {
                core: Core::new(config.clone(), base, now),
                closed: false,
                exported: Counts::default(),
            }),
            config,
            created_at_ms,
            members: RwLock::new(HashMap::new()),
            member_streams: AtomicUsize::new(0),
            batches: RwLock::new(VecDeque::new()),
            batch_bytes: AtomicUsize::new(0),
            catchups: Mutex::new(VecDeque::new()),
            seq: AtomicU64::new(0),
            visible: AtomicU64::new(base),
            outstanding: AtomicUsize::new(0),
            release_at: AtomicUsize::new(0),
            signal: Notify::new(),
            deliveries: Deliveries::default(),
            metrics: Metrics::new(),
            watch,
        }
    }

    fn guarded(&self) -> MutexGuard<'_, Guarded> {
        lock(&self.guarded)
    }

    /// Runs `f` on the core (for stats).
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&Core) -> R) -> R {
        f(&self.guarded().core)
    }

    /// Joined streams (the member count).
    pub(crate) fn members(&self) -> usize {
        self.member_streams.load(Ordering::Relaxed)
    }

    /// Member connections.
    pub(crate) fn member_connections(&self) -> usize {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The newest released batch's sequence number.
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Offsets below this are released.
    pub(crate) fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// The mode the room uses now.
    pub(crate) fn mode(&self) -> RoomMode {
        self.config.effective_mode(self.members())
    }

    /// Accepts or sheds a message.
    pub(crate) fn publish(
        &self,
        class: RoomClass,
        priority: u32,
        publisher: Option<&str>,
        payload: Bytes,
        now: Instant,
    ) -> Result<RoomReceipt, PublishError> {
        let receipt = {
            let mut guarded = self.guarded();
            if guarded.closed {
                return Err(PublishError::Closed);
            }
            let result = guarded
                .core
                .publish(class, priority, publisher, payload, now);
            export(&mut guarded);
            result.map_err(PublishError::Full)?
        };
        if let RoomReceipt::Accepted { .. } = receipt {
            self.signal.notify_one();
        }
        Ok(receipt)
    }

    /// Whether the reliable store would take a message now (a refusal is
    /// counted as a publish's would be).
    pub(crate) fn check_reliable(&self, now: Instant) -> Result<(), PublishError> {
        let mut guarded = self.guarded();
        if guarded.closed {
            return Err(PublishError::Closed);
        }
        let result = guarded.core.check_reliable(now);
        export(&mut guarded);
        result.map_err(PublishError::Full)
    }

    /// Registers one more stream of connection `conn` as a member.
    pub(crate) fn join(
        &self,
        conn: ConnId,
        shared: &Arc<ConnShared>,
        now: Instant,
    ) -> Result<Joined, Closed> {
        let mut guarded = self.guarded();
        if guarded.closed {
            return Err(Closed);
        }
        guarded.core.touch(now);
        let joined = Joined {
            head: guarded.core.head(),
            visible: guarded.core.visible(),
            seq: self.seq(),
        };
        // Registered while the core is locked: a release either happened
        // before (and is covered by `visible`/`seq`) or will wake us.
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        members
            .entry(conn)
            .or_insert_with(|| Member {
                shared: shared.clone(),
                streams: 0,
            })
            .streams += 1;
        // Counted under the members' lock, so the watch hears first and
        // last member in order.
        if self.member_streams.fetch_add(1, Ordering::Relaxed) == 0 {
            self.watch_members(true);
        }
        drop(members);
        metrics::gauge!(crate::server::metric_families::ROOM_MEMBERS).increment(1.0);
        Ok(joined)
    }

    fn watch_members(&self, members: bool) {
        if let Some(watch) = &self.watch {
            (watch.0)(&self.app, &self.name, members);
        }
    }

    /// Removes `streams` streams of connection `conn` from the members.
    pub(crate) fn leave(&self, conn: ConnId, streams: usize, now: Instant) {
        let removed = {
            let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
            let n = match members.get_mut(&conn) {
                Some(member) => {
                    let n = streams.min(member.streams);
                    member.streams -= n;
                    if member.streams == 0 {
                        members.remove(&conn);
                    }
                    n
                }
                None => 0,
            };
            if n > 0 && self.member_streams.fetch_sub(n, Ordering::Relaxed) == n {
                self.watch_members(false);
            }
            n
        };
        if removed > 0 {
            metrics::gauge!(crate::server::metric_families::ROOM_MEMBERS).decrement(removed as f64);
        }
        self.guarded().core.touch(now);
        // An idle room may now be removable; let the task look.
        self.signal.notify_one();
    }

    /// A member connection took the newest batch (the fan-out progresses).
    pub(crate) fn ack(&self) {
        let previous = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if let Ok(previous) = previous
            && previous - 1 == self.release_at.load(Ordering::Acquire)
        {
            self.signal.notify_one();
        }
    }

    /// Releases the next batch of pending messages, if any, and wakes the
    /// members.
    pub(crate) fn release(&self, now: Instant) -> bool {
        let (batch, waited) = {
            let mut guarded = self.guarded();
            let waited = guarded
                .core
                .pending_since()
                .map(|since| now.saturating_duration_since(since));
            let Some(span) = guarded.core.release(now) else {
                return false;
            };
            export(&mut guarded);
            let seq = self.seq() + 1;
            let batch = Arc::new(Batch {
                seq,
                span,
                pushed: self.mode() == RoomMode::Push,
                released_at: now,
                variants: Mutex::new(Vec::new()),
            });
            {
                let mut batches = self.batches.write().unwrap_or_else(PoisonError::into_inner);
                let mut bytes = self.batch_bytes.load(Ordering::Relaxed) + batch.span.bytes;
                batches.push_back(batch.clone());
                while batches.len() > 1
                    && (batches.len() > BATCH_HISTORY
                        || bytes > BATCH_HISTORY_BYTES
                        || batches.front().is_some_and(|b| {
                            now.saturating_duration_since(b.released_at) > BATCH_HISTORY_AGE
                        }))
                {
                    if let Some(old) = batches.pop_front() {
                        bytes -= old.span.bytes;
                    }
                }
                self.batch_bytes.store(bytes, Ordering::Relaxed);
            }
            let conns = self.member_connections();
            self.outstanding.store(conns, Ordering::Release);
            self.release_at.store(conns / 64, Ordering::Release);
            self.visible
                .store(guarded.core.visible(), Ordering::Release);
            self.seq.store(seq, Ordering::Release);
            (batch, waited)
        };
        self.deliveries.batches.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .batch_messages
            .record(batch.span.messages.len() as f64);
        if let Some(waited) = waited {
            self.metrics.batch_wait.record(waited.as_secs_f64());
        }
        for member in self
            .members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            member.shared.wake_rooms();
        }
        true
    }

    /// The released batches from sequence number `from` on, oldest first;
    /// `true` when some of them are no longer kept.
    pub(crate) fn batches_since(&self, from: u64) -> (Vec<Arc<Batch>>, bool) {
        let batches = self.batches.read().unwrap_or_else(PoisonError::into_inner);
        let oldest = batches.front().map_or(u64::MAX, |b| b.seq);
        let lost = from < oldest && from <= self.seq();
        let start = batches.partition_point(|b| b.seq < from);
        (batches.range(start..).cloned().collect(), lost)
    }

    /// The kept batch whose span starts at `offset`.
    pub(crate) fn batch_at(&self, offset: u64) -> Option<Arc<Batch>> {
        let batches = self.batches.read().unwrap_or_else(PoisonError::into_inner);
        batches
            .iter()
            .rev()
            .find(|b| b.span.first == offset)
            .cloned()
    }

    /// The frame of `batch` for a connection that negotiated `compression`
    /// (compressing bodies from `threshold` bytes): the pushed form
    /// (`stream` `None`) or the answer to `stream`'s pull. Encoded on first
    /// demand, then shared.
    pub(crate) fn batch_frame(
        &self,
        batch: &Batch,
        stream: Option<StreamId>,
        compression: Compression,
        threshold: usize,
    ) -> Frame {
        let key = stream.map(StreamId::value);
        let mut variants = lock(&batch.variants);
        let find = |variants: &[(Option<u32>, Compression, Frame)], c: Compression| {
            variants
                .iter()
                .find(|(s, vc, _)| *s == key && *vc == c)
                .map(|(_, _, f)| f.clone())
        };
        let plain = find(&variants, Compression::None).unwrap_or_else(|| {
            self.deliveries.encodes.fetch_add(1, Ordering::Relaxed);
            self.metrics.encodes_batch.increment(1);
            let frame = self.encode(&batch.span, stream, Compression::None, threshold);
            variants.push((key, Compression::None, frame.clone()));
            frame
        });
        if compression == Compression::None || plain.body.len() < threshold {
            return plain;
        }
        find(&variants, compression).unwrap_or_else(|| {
            let frame = Frame::prepare(plain.ty, plain.body.clone(), compression, threshold);
            if frame.form() != tntunnel::BodyForm::Raw {
                self.deliveries.compressions.fetch_add(1, Ordering::Relaxed);
                self.metrics.compressions.increment(1);
            }
            variants.push((key, compression, frame.clone()));
            frame
        })
    }

    /// The frame of what a member behind gets from `from` up to the
    /// released tail or `until`, whichever is lower (at most `max`
    /// messages; `until` is `u64::MAX` but for a pull of a push member,
    /// which must not carry what was pushed to it): pushed (`stream` `None`) or
    /// answering `stream`'s pull. Members behind by the same offsets at the
    /// same tail share one encoding (a small cache); an empty span (nothing
    /// new: an answer "at once") is encoded too.
    pub(crate) fn catchup_frame(
        &self,
        (from, until): (u64, u64),
        max: usize,
        stream: Option<StreamId>,
        compression: Compression,
        threshold: usize,
        now: Instant,
    ) -> (Frame, Covered) {
        let visible = self.visible();
        let key = (from, until, max, stream.map(StreamId::value), compression);
        let mut cache = lock(&self.catchups);
        if let Some(hit) = cache
            .iter()
            .find(|c| c.key == key && (c.capped || c.visible == visible))
        {
            let covered = Covered {
                next: hit.next,
                messages: hit.messages,
                missed: hit.missed,
            };
            return (hit.frame.clone(), covered);
        }
        let span = {
            let mut guarded = self.guarded();
            let span = guarded.core.read_until(from, until, max, now);
            export(&mut guarded);
            span
        };
        self.deliveries
            .catchup_encodes
            .fetch_add(1, Ordering::Relaxed);
        self.metrics.encodes_catchup.increment(1);
        let frame = self.encode(&span, stream, compression, threshold);
        if frame.form() != tntunnel::BodyForm::Raw {
            self.deliveries.compressions.fetch_add(1, Ordering::Relaxed);
            self.metrics.compressions.increment(1);
        }
        let covered = Covered {
            next: span.next,
            messages: span.messages.len(),
            missed: span.missed,
        };
        cache.retain(|c| c.key != key);
        if cache.len() >= CATCHUP_CACHE {
            cache.pop_front();
        }
        cache.push_back(CatchUp {
            key,
            visible,
            capped: span.next < visible,
            frame: frame.clone(),
            next: covered.next,
            messages: covered.messages,
            missed: covered.missed,
        });
        (frame, covered)
    }

    fn encode(
        &self,
        span: &Span,
        stream: Option<StreamId>,
        compression: Compression,
        threshold: usize,
    ) -> Frame {
        let batch = RoomBatch {
            room: self.name.clone(),
            messages: span.messages.clone(),
            missed: span.missed,
            next_offset: span.next,
            stream: stream.map_or(0, StreamId::value),
            pushed: stream.is_none(),
        };
        let frame = ServerChannel::encode_room_batch(&batch);
        Frame::prepare(frame.ty, frame.body, compression, threshold)
    }

    /// Counts a frame sent to a member.
    pub(crate) fn sent(&self, covered: Covered, pushed: bool) {
        let d = &self.deliveries;
        d.frames.fetch_add(1, Ordering::Relaxed);
        d.messages
            .fetch_add(covered.messages as u64, Ordering::Relaxed);
        d.missed.fetch_add(covered.missed, Ordering::Relaxed);
        if pushed {
            self.metrics.frames_pushed.increment(1);
        } else {
            self.metrics.frames_pulled.increment(1);
        }
        self.metrics
            .messages_sent
            .increment(covered.messages as u64);
        if covered.missed > 0 {
            self.metrics.missed.increment(covered.missed);
        }
    }

    /// A held pull was answered after `waited`.
    pub(crate) fn pull_answered(&self, waited: Duration) {
        self.metrics.pull_wait.record(waited.as_secs_f64());
    }

    pub(crate) fn pull_held(&self) {
        self.metrics.pulls_held.increment(1);
    }

    pub(crate) fn pull_expired(&self) {
        self.metrics.pulls_expired.increment(1);
    }

    /// Whether pending messages fill a batch or have waited the budget.
    fn more_due(&self, now: Instant) -> bool {
        let guarded = self.guarded();
        let Some(since) = guarded.core.pending_since() else {
            return false;
        };
        let (count, bytes) = guarded.core.pending();
        count >= self.config.max_batch_messages as u64
            || bytes >= self.config.max_batch_bytes
            || now >= since + self.config.latency_budget
    }

    /// Marks the room closed if it has been idle (no member, nothing
    /// pending, no activity) since `now - idle_ttl`.
    fn close_if_idle(&self, now: Instant) -> bool {
        let mut guarded = self.guarded();
        let idle = self.members() == 0
            && guarded.core.pending_since().is_none()
            && now.saturating_duration_since(guarded.core.last_activity()) >= self.config.idle_ttl;
        if idle {
            guarded.closed = true;
        }
        idle
    }

    /// The release task: runs until the room is removed (idle) or the
    /// gateway shuts down.
    ///
    /// The adaptive window: pending messages are released as one batch as
    /// soon as (a) the previous batch has reached nearly every member
    /// connection (all but 1/64 took it: the fan-out is done, so at low
    /// load a message goes out at once, and under load the window grows
    /// to the time a fan-out takes), or (b) the batch holds the maximum
    /// number of messages or bytes, or (c) the oldest pending message has
    /// waited the latency budget.
    pub(crate) async fn run(
        self: Arc<Self>,
        registry: super::RoomMap,
        shutdown: CancellationToken,
    ) {
        enum Next {
            Release,
            Until(Instant),
            Idle(Instant),
        }
        loop {
            let now = Instant::now();
            let next = {
                let guarded = self.guarded();
                if guarded.closed {
                    return;
                }
                match guarded.core.pending_since() {
                    None => Next::Idle(guarded.core.last_activity() + self.config.idle_ttl),
                    Some(since) => {
                        let (count, bytes) = guarded.core.pending();
                        let due = since + self.config.latency_budget;
                        let spread = self.outstanding.load(Ordering::Acquire)
                            <= self.release_at.load(Ordering::Acquire);
                        if spread
                            || now >= due
                            || count >= self.config.max_batch_messages as u64
                            || bytes >= self.config.max_batch_bytes
                        {
                            Next::Release
                        } else {
                            Next::Until(due)
                        }
                    }
                }
            };
            match next {
                Next::Release => {
                    // Every batch due goes now (several when messages came
                    // faster than the batch limits), then the members run.
                    for _ in 0..RELEASES_PER_TURN {
                        if !self.release(Instant::now()) || !self.more_due(Instant::now()) {
                            break;
                        }
                    }
                    tokio::task::yield_now().await;
                }
                Next::Until(due) => tokio::select! {
                    () = self.signal.notified() => {}
                    () = tokio::time::sleep_until(due) => {}
                    () = shutdown.cancelled() => return,
                },
                Next::Idle(at) => tokio::select! {
                    () = self.signal.notified() => {}
                    () = tokio::time::sleep_until(at) => {
                        if self.close_if_idle(Instant::now()) {
                            if lock(&registry).remove(&self) {
                                metrics::gauge!(crate::server::metric_families::ROOMS).decrement(1.0);
                            }
                            tracing::debug!(app = %self.app, room = %self.name, "idle room removed");
                            return;
                        }
                    }
                    () = shutdown.cancelled() => return,
                },
            }
        }
    }
}

/// Exports the core's new counts as metrics.
fn export(guarded: &mut Guarded) {
    let now = guarded.core.counts();
    let then = std::mem::replace(&mut guarded.exported, now);
    let delta = |a: u64, b: u64| a.saturating_sub(b);
    let n = delta(now.published_droppable, then.published_droppable);
    if n > 0 {
        metrics::counter!(crate::server::metric_families::ROOM_PUBLISHED_TOTAL, "class" => "droppable").increment(n);
    }
    let n = delta(now.published_reliable, then.published_reliable);
    if n > 0 {
        metrics::counter!(crate::server::metric_families::ROOM_PUBLISHED_TOTAL, "class" => "reliable").increment(n);
    }
    let n = delta(now.dropped_room_rate, then.dropped_room_rate);
    if n > 0 {
        metrics::counter!(crate::server::metric_families::ROOM_DROPPED_TOTAL, "class" => "droppable", "reason" => "room_rate")
            .increment(n);
    }
    let n = delta(now.dropped_publisher_rate, then.dropped_publisher_rate);
    if n > 0 {
        metrics::counter!(crate::server::metric_families::ROOM_DROPPED_TOTAL, "class" => "droppable", "reason" => "publisher_rate")
            .increment(n);
    }
    let n = delta(now.evicted_droppable, then.evicted_droppable);
    if n > 0 {
        metrics::counter!(crate::server::metric_families::ROOM_EVICTED_TOTAL, "class" => "droppable").increment(n);
    }
    let n = delta(now.expired_reliable, then.expired_reliable);
    if n > 0 {
        metrics::counter!(crate::server::metric_families::ROOM_EVICTED_TOTAL, "class" => "reliable").increment(n);
    }
    let n = delta(now.refused_reliable, then.refused_reliable);
    if n > 0 {
        metrics::counter!(crate::server::metric_families::ROOM_REFUSED_TOTAL, "class" => "reliable", "reason" => "reliable_full")
            .increment(n);
    }
}

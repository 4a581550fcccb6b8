//! A room's messages, without locks, tasks or clocks (every input takes
//! `now`): offsets, the droppable ring, the reliable store, admission
//! (rate caps and priority), the release of batches and reads by offset.
//!
//! One offset space covers both classes: every accepted message gets the
//! next offset, so the offsets in `[base, tail)` are exactly the messages
//! accepted since the room started, each kept in the ring (droppable) or
//! the store (reliable) until evicted. A read from offset `o` returns every
//! message still held from `o` on and counts the others as missed.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::time::Duration;

use bytes::Bytes;
use proto::channel::{RoomClass, RoomMessage};
use tokio::time::Instant;

use super::config::{RateLimit, RoomConfig};

/// Buckets of the per-publisher cap: publishers are hashed to one of them
/// (two publishers sharing a bucket share its cap).
const PUBLISHER_BUCKETS: usize = 4096;

/// Seconds averaged by the publish rate.
const RATE_WINDOW: usize = 10;

/// Why a droppable message was shed.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum DropReason {
    /// The room's droppable rate cap was reached.
    RoomRate,
    /// The publisher's rate cap was reached.
    PublisherRate,
}

impl DropReason {
    /// `room_rate` or `publisher_rate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoomRate => "room_rate",
            Self::PublisherRate => "publisher_rate",
        }
    }
}

/// The outcome of a publish that was not refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum RoomReceipt {
    /// Accepted with this offset.
    Accepted {
        /// The message's offset.
        offset: u64,
    },
    /// Shed (droppable only), by the documented policy.
    Dropped {
        /// Which cap.
        reason: DropReason,
    },
}

/// A reliable publish the room cannot take.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct ReliableFull {
    pub(crate) capacity: usize,
}

#[derive(Clone, Debug)]
struct Entry {
    offset: u64,
    priority: u32,
    payload: Bytes,
    at: Instant,
}

/// Messages between two offsets, ready to encode.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Span {
    /// First offset covered.
    pub(crate) first: u64,
    /// Offset after the last one covered.
    pub(crate) next: u64,
    /// The messages held in `[first, next)`, highest priority first, then
    /// by offset.
    pub(crate) messages: Vec<RoomMessage>,
    /// Offsets in `[first, next)` no longer held (evicted or expired).
    pub(crate) missed: u64,
    /// Payload bytes.
    pub(crate) bytes: usize,
}

/// Counters of a room since it started.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(crate) struct Counts {
    pub(crate) published_droppable: u64,
    pub(crate) published_reliable: u64,
    pub(crate) dropped_room_rate: u64,
    pub(crate) dropped_publisher_rate: u64,
    pub(crate) evicted_droppable: u64,
    pub(crate) expired_reliable: u64,
    pub(crate) refused_reliable: u64,
}

/// A token bucket.
#[derive(Clone, Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * f64::from(self.limit.per_second))
            .min(f64::from(self.limit.burst));
    }

    /// Whether a token is free above `reserve` (after refilling).
    fn can_take(&mut self, now: Instant, reserve: f64) -> bool {
        self.refill(now);
        self.tokens >= 1.0 + reserve
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

/// Accepted publishes per second over the last [`RATE_WINDOW`] seconds.
#[derive(Clone, Debug)]
struct RateMeter {
    origin: Instant,
    /// (second index, count) per slot.
    slots: [(u64, u64); RATE_WINDOW],
}

impl RateMeter {
    fn new(origin: Instant) -> Self {
        Self {
            origin,
            slots: [(u64::MAX, 0); RATE_WINDOW],
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    fn add(&mut self, now: Instant) {
        let second = self.second(now);
        let slot = &mut self.slots[(second % RATE_WINDOW as u64) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
    }

    /// Average over the last full seconds (the current one excluded).
    fn per_second(&self, now: Instant) -> f64 {
        let current = self.second(now);
        let window = current.min(RATE_WINDOW as u64);
        if window == 0 {
            return 0.0;
        }
        let total: u64 = self
            .slots
            .iter()
            .filter(|(second, _)| *second < current && current - *second <= window)
            .map(|(_, count)| count)
            .sum();
        total as f64 / window as f64
    }
}

/// The messages of one room.
#[derive(Debug)]
pub(crate) struct Core {
    config: RoomConfig,
    base: u64,
    tail: u64,
    visible: u64,
    droppable: VecDeque<Entry>,
    reliable: VecDeque<Entry>,
    /// Payload bytes accepted and not released yet.
    pending_bytes: usize,
    room_bucket: Option<Bucket>,
    publishers: Vec<Bucket>,
    hasher: std::collections::hash_map::RandomState,
    last_activity: Instant,
    counts: Counts,
    rate: RateMeter,
}

impl Core {
    /// An empty room whose first offset is `base`.
    pub(crate) fn new(config: RoomConfig, base: u64, now: Instant) -> Self {
        let room_bucket = config.room_rate.map(|limit| Bucket::new(limit, now));
        Self {
            config,
            base,
            tail: base,
            visible: base,
            droppable: VecDeque::new(),
            reliable: VecDeque::new(),
            pending_bytes: 0,
            room_bucket,
            publishers: Vec::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            last_activity: now,
            counts: Counts::default(),
            rate: RateMeter::new(now),
        }
    }

    /// The first offset of this incarnation of the room.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// The offset the next message gets.
    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// Offsets below this are released to members (pulls see them).
    pub(crate) fn visible(&self) -> u64 {
        self.visible
    }

    /// The oldest offset still held (the visible tail when none is).
    pub(crate) fn head(&self) -> u64 {
        let oldest = |q: &VecDeque<Entry>| q.front().map(|e| e.offset);
        match (oldest(&self.droppable), oldest(&self.reliable)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => self.visible,
        }
    }

    pub(crate) fn ring_len(&self) -> usize {
        self.droppable.len()
    }

    pub(crate) fn reliable_len(&self) -> usize {
        self.reliable.len()
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    pub(crate) fn publish_rate(&self, now: Instant) -> f64 {
        self.rate.per_second(now)
    }

    pub(crate) fn last_activity(&self) -> Instant {
        self.last_activity
    }

    pub(crate) fn touch(&mut self, now: Instant) {
        self.last_activity = self.last_activity.max(now);
    }

    /// Messages accepted and not released: (count, payload bytes).
    pub(crate) fn pending(&self) -> (u64, usize) {
        (self.tail - self.visible, self.pending_bytes)
    }

    /// When the oldest pending message was accepted.
    pub(crate) fn pending_since(&self) -> Option<Instant> {
        if self.visible == self.tail {
            return None;
        }
        let first = |q: &VecDeque<Entry>| {
            let i = q.partition_point(|e| e.offset < self.visible);
            q.get(i).map(|e| e.at)
        };
        match (first(&self.droppable), first(&self.reliable)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (Some(a), None) | (None, Some(a)) => Some(a),
            // Everything pending was evicted already: release it now.
            (None, None) => Some(self.last_activity),
        }
    }

    /// Refuses (and counts) a reliable message when the store is full.
    fn admit_reliable(&mut self) -> Result<(), ReliableFull> {
        if self.reliable.len() >= self.config.reliable_capacity {
            self.counts.refused_reliable += 1;
            return Err(ReliableFull {
                capacity: self.config.reliable_capacity,
            });
        }
        Ok(())
    }

    /// What [`publish`](Self::publish) of a reliable message would say
    /// about the store at `now`, counted the same way, without publishing
    /// (a cluster checks it before the message leaves the node).
    pub(crate) fn check_reliable(&mut self, now: Instant) -> Result<(), ReliableFull> {
        self.touch(now);
        self.evict(now);
        self.admit_reliable()
    }

    /// Admits a message: reliable ones always (unless the store is full),
    /// droppable ones within the rate caps. Accepted messages get the next
    /// offset and are pending until [`release`](Self::release).
    pub(crate) fn publish(
        &mut self,
        class: RoomClass,
        priority: u32,
        publisher: Option<&str>,
        payload: Bytes,
        now: Instant,
    ) -> Result<RoomReceipt, ReliableFull> {
        self.touch(now);
        self.evict(now);
        let reliable = class == RoomClass::Reliable;
        if reliable {
            self.admit_reliable()?;
        } else if let Some(reason) = self.shed(priority, publisher, now) {
            match reason {
                DropReason::RoomRate => self.counts.dropped_room_rate += 1,
                DropReason::PublisherRate => self.counts.dropped_publisher_rate += 1,
            }
            return Ok(RoomReceipt::Dropped { reason });
        }
        let offset = self.tail;
        self.tail += 1;
        self.pending_bytes += payload.len();
        self.rate.add(now);
        let entry = Entry {
            offset,
            priority,
            payload,
            at: now,
        };
        if reliable {
            self.counts.published_reliable += 1;
            self.reliable.push_back(entry);
        } else {
            self.counts.published_droppable += 1;
            self.droppable.push_back(entry);
            while self.droppable.len() > self.config.ring_capacity {
                self.droppable.pop_front();
                self.counts.evicted_droppable += 1;
            }
        }
        Ok(RoomReceipt::Accepted { offset })
    }

    /// The shedding policy for a droppable message: the publisher's cap,
    /// then the room's, where priority 0 may not take the last quarter of
    /// the room's bucket. Takes the tokens only when both caps allow.
    fn shed(&mut self, priority: u32, publisher: Option<&str>, now: Instant) -> Option<DropReason> {
        let slot = match (publisher, self.config.publisher_rate) {
            (Some(publisher), Some(limit)) => {
                if self.publishers.is_empty() {
                    self.publishers = vec![Bucket::new(limit, now); PUBLISHER_BUCKETS];
                }
                let slot = (self.hasher.hash_one(publisher) % PUBLISHER_BUCKETS as u64) as usize;
                if !self.publishers[slot].can_take(now, 0.0) {
                    return Some(DropReason::PublisherRate);
                }
                Some(slot)
            }
            _ => None,
        };
        if let Some(bucket) = &mut self.room_bucket {
            // Priority 0 leaves the last quarter of the bucket (whole
            // tokens) to prioritized messages.
            let reserve = if priority == 0 {
                f64::from(bucket.limit.burst / 4)
            } else {
                0.0
            };
            if !bucket.can_take(now, reserve) {
                return Some(DropReason::RoomRate);
            }
            bucket.take();
        }
        if let Some(slot) = slot {
            self.publishers[slot].take();
        }
        None
    }

    /// Drops droppable messages older than the ring's retention and
    /// reliable ones older than theirs.
    pub(crate) fn evict(&mut self, now: Instant) {
        let expired =
            |e: &Entry, retention: Duration| now.saturating_duration_since(e.at) > retention;
        while self
            .droppable
            .front()
            .is_some_and(|e| expired(e, self.config.ring_retention))
        {
            self.droppable.pop_front();
            self.counts.evicted_droppable += 1;
        }
        if let Some(retention) = self.config.reliable_retention {
            while self.reliable.front().is_some_and(|e| expired(e, retention)) {
                self.reliable.pop_front();
                self.counts.expired_reliable += 1;
            }
        }
    }

    /// Releases the next batch of pending messages (at most the batch
    /// limits), making them visible; `None` when nothing is pending.
    pub(crate) fn release(&mut self, now: Instant) -> Option<Span> {
        if self.visible == self.tail {
            return None;
        }
        self.evict(now);
        let span = self.collect(
            self.visible,
            self.tail,
            self.config.max_batch_messages,
            self.config.max_batch_bytes,
        );
        self.visible = span.next;
        self.pending_bytes = self.pending_bytes.saturating_sub(span.bytes);
        if self.visible == self.tail {
            self.pending_bytes = 0;
        }
        Some(span)
    }

    /// What a pull from `from` gets now: every message still held from
    /// `from` up to the visible tail (at most `max` messages and the batch
    /// byte limit), and how many in between are gone. Offsets below the
    /// room's base (a previous incarnation) read from the base.
    #[cfg(test)]
    pub(crate) fn read(&mut self, from: u64, max: usize, now: Instant) -> Span {
        self.read_until(from, u64::MAX, max, now)
    }

    /// [`read`](Self::read), stopping before offset `until` (a pull of a
    /// push member must not carry what was pushed to it already).
    pub(crate) fn read_until(&mut self, from: u64, until: u64, max: usize, now: Instant) -> Span {
        self.evict(now);
        let end = until.min(self.visible);
        let from = from.max(self.base).min(end);
        self.collect(from, end, max.max(1), self.config.max_batch_bytes)
    }

    /// Messages in `[from, end)`, in offset order, until `max` messages or
    /// `max_bytes` (at least one message); then sorted by priority.
    fn collect(&self, from: u64, end: u64, max: usize, max_bytes: usize) -> Span {
        let start = |q: &VecDeque<Entry>| q.partition_point(|e| e.offset < from);
        let (mut d, mut r) = (start(&self.droppable), start(&self.reliable));
        let mut messages = Vec::new();
        let mut bytes = 0;
        let mut next = end;
        fn pick(q: &VecDeque<Entry>, i: usize, end: u64) -> Option<&Entry> {
            q.get(i).filter(|e| e.offset < end)
        }
        loop {
            let (entry, class) = match (pick(&self.droppable, d, end), pick(&self.reliable, r, end))
            {
                (Some(a), Some(b)) if a.offset < b.offset => {
                    d += 1;
                    (a, RoomClass::Droppable)
                }
                (_, Some(b)) => {
                    r += 1;
                    (b, RoomClass::Reliable)
                }
                (Some(a), None) => {
                    d += 1;
                    (a, RoomClass::Droppable)
                }
                (None, None) => break,
            };
            if !messages.is_empty()
                && (messages.len() >= max || bytes + entry.payload.len() > max_bytes)
            {
                next = entry.offset;
                break;
            }
            bytes += entry.payload.len();
            messages.push(RoomMessage {
                offset: entry.offset,
                class: class.into(),
                priority: entry.priority,
                payload: entry.payload.clone(),
            });
        }
        let missed = (next - from).saturating_sub(messages.len() as u64);
        // Highest priority first; the sort is stable, so offsets stay in
        // order among equals.
        messages.sort_by_key(|m| std::cmp::Reverse(m.priority));
        Span {
            first: from,
            next,
            messages,
            missed,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RoomConfig {
        let mut config = RoomConfig::default();
        config.ring_capacity(4).room_rate(None).publisher_rate(None);
        config
    }

    fn publish(core: &mut Core, class: RoomClass, text: &'static str, now: Instant) -> u64 {
        match core
            .publish(class, 0, None, Bytes::from_static(text.as_bytes()), now)
            .unwrap()
        {
            RoomReceipt::Accepted { offset } => offset,
            other => panic!("{other:?}"),
        }
    }

    fn offsets(span: &Span) -> Vec<u64> {
        span.messages.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn offsets_are_dense_and_monotonic_across_classes() {
        let now = Instant::now();
        let mut core = Core::new(config(), 1000, now);
        let mut last = None;
        for i in 0..50u64 {
            let class = if i % 7 == 0 {
                RoomClass::Reliable
            } else {
                RoomClass::Droppable
            };
            let offset = publish(&mut core, class, "m", now);
            assert_eq!(offset, 1000 + i);
            assert!(last.is_none_or(|l| offset > l));
            last = Some(offset);
        }
        assert_eq!(core.tail(), 1050);
        assert_eq!(core.visible(), 1000, "nothing released yet");
        assert_eq!(
            core.read(1000, 100, now),
            Span {
                first: 1000,
                next: 1000,
                ..Span::default()
            }
        );
    }

    #[test]
    fn release_respects_batch_limits_and_makes_messages_visible() {
        let now = Instant::now();
        let mut cfg = config();
        cfg.ring_capacity(100).max_batch(3, 1 << 20);
        let mut core = Core::new(cfg, 0, now);
        for _ in 0..7 {
            publish(&mut core, RoomClass::Droppable, "m", now);
        }
        assert_eq!(core.pending(), (7, 7));
        let spans: Vec<Span> = std::iter::from_fn(|| core.release(now)).collect();
        assert_eq!(
            spans.iter().map(|s| (s.first, s.next)).collect::<Vec<_>>(),
            [(0, 3), (3, 6), (6, 7)]
        );
        assert_eq!(core.pending(), (0, 0));
        assert_eq!(core.visible(), 7);
        assert_eq!(offsets(&core.read(2, 100, now)), [2, 3, 4, 5, 6]);
    }

    #[test]
    fn ring_overwrites_droppable_but_never_reliable_and_counts_missed() {
        let now = Instant::now();
        let mut core = Core::new(config(), 0, now);
        let lottery = publish(&mut core, RoomClass::Reliable, "lottery", now);
        for _ in 0..10 {
            publish(&mut core, RoomClass::Droppable, "barrage", now);
        }
        while core.release(now).is_some() {}
        // Ring of 4: offsets 7..=10 remain, plus the reliable 0.
        assert_eq!(core.ring_len(), 4);
        assert_eq!(core.head(), lottery);
        let span = core.read(0, 100, now);
        assert_eq!(offsets(&span), [0, 7, 8, 9, 10]);
        assert_eq!(span.missed, 6, "offsets 1..=6 were overwritten");
        assert_eq!(span.next, 11);
        // Behind the head but after the reliable one.
        let span = core.read(3, 100, now);
        assert_eq!(offsets(&span), [7, 8, 9, 10]);
        assert_eq!(span.missed, 4);
        assert_eq!(core.counts().evicted_droppable, 6);
    }

    #[test]
    fn reliable_store_refuses_when_full_instead_of_dropping() {
        let now = Instant::now();
        let mut cfg = config();
        cfg.reliable_capacity(2);
        let mut core = Core::new(cfg, 0, now);
        publish(&mut core, RoomClass::Reliable, "a", now);
        publish(&mut core, RoomClass::Reliable, "b", now);
        let refused = core.publish(RoomClass::Reliable, 0, None, Bytes::new(), now);
        assert_eq!(refused, Err(ReliableFull { capacity: 2 }));
        assert_eq!(core.tail(), 2, "a refused message takes no offset");
        assert_eq!(core.counts().refused_reliable, 1);
    }

    #[test]
    fn retention_evicts_old_messages() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.ring_retention(Duration::from_secs(5))
            .reliable_retention(Some(Duration::from_secs(60)));
        let mut core = Core::new(cfg, 0, t0);
        publish(&mut core, RoomClass::Droppable, "old", t0);
        publish(&mut core, RoomClass::Reliable, "kept", t0);
        while core.release(t0).is_some() {}
        let later = t0 + Duration::from_secs(10);
        let span = core.read(0, 100, later);
        assert_eq!(offsets(&span), [1]);
        assert_eq!(span.missed, 1);
        let much_later = t0 + Duration::from_secs(61);
        let span = core.read(0, 100, much_later);
        assert!(span.messages.is_empty());
        assert_eq!(span.missed, 2);
        assert_eq!(core.head(), 2);
    }

    #[test]
    fn shedding_caps_rooms_and_publishers_and_spares_priority() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.ring_capacity(1000)
            .room_rate(Some(RateLimit::new(100, 100)))
            .publisher_rate(Some(RateLimit::new(1, 5)));
        let mut core = Core::new(cfg, 0, t0);
        let outcome = |core: &mut Core, priority, publisher: Option<&str>| {
            core.publish(RoomClass::Droppable, priority, publisher, Bytes::new(), t0)
                .unwrap()
        };
        // One publisher gets its burst of 5, then is shed.
        let spam: Vec<_> = (0..8)
            .map(|_| outcome(&mut core, 0, Some("spammer")))
            .collect();
        assert_eq!(
            spam.iter()
                .filter(|a| matches!(a, RoomReceipt::Accepted { .. }))
                .count(),
            5
        );
        assert_eq!(
            spam[7],
            RoomReceipt::Dropped {
                reason: DropReason::PublisherRate
            }
        );
        // Priority 0 stops at the reserve (a quarter of the burst of 100)...
        let mut accepted = 5;
        while let RoomReceipt::Accepted { .. } = outcome(&mut core, 0, None) {
            accepted += 1;
        }
        assert_eq!(accepted, 75);
        // ...which priority 1 may still use, up to the burst.
        while let RoomReceipt::Accepted { .. } = outcome(&mut core, 1, None) {
            accepted += 1;
        }
        assert_eq!(accepted, 100);
        assert_eq!(
            outcome(&mut core, 1, None),
            RoomReceipt::Dropped {
                reason: DropReason::RoomRate
            }
        );
        // Reliable messages ignore the caps.
        assert!(matches!(
            core.publish(RoomClass::Reliable, 0, Some("spammer"), Bytes::new(), t0),
            Ok(RoomReceipt::Accepted { .. })
        ));
        // The bucket refills with time.
        let later = t0 + Duration::from_millis(500);
        assert!(matches!(
            core.publish(RoomClass::Droppable, 0, None, Bytes::new(), later),
            Ok(RoomReceipt::Accepted { .. })
        ));
        let counts = core.counts();
        assert_eq!(counts.dropped_publisher_rate, 3);
        assert!(counts.dropped_room_rate >= 2);
    }

    #[test]
    fn batches_list_higher_priorities_first() {
        let now = Instant::now();
        let mut core = Core::new(config(), 0, now);
        for priority in [0, 2, 0, 1, 2] {
            core.publish(RoomClass::Droppable, priority, None, Bytes::new(), now)
                .unwrap();
        }
        let span = core.release(now).unwrap();
        let order: Vec<(u32, u64)> = span
            .messages
            .iter()
            .map(|m| (m.priority, m.offset))
            .collect();
        // Ring of 4: offset 0 was overwritten.
        assert_eq!(order, [(2, 1), (2, 4), (1, 3), (0, 2)]);
        assert_eq!((span.first, span.next, span.missed), (0, 5, 1));
    }

    #[test]
    fn publish_rate_averages_full_seconds() {
        let t0 = Instant::now();
        let mut core = Core::new(config(), 0, t0);
        for i in 0..30u64 {
            let at = t0 + Duration::from_millis(100 * i);
            publish(&mut core, RoomClass::Droppable, "m", at);
        }
        // 10 per second for 3 s.
        let rate = core.publish_rate(t0 + Duration::from_secs(3));
        assert!((rate - 10.0).abs() < 1e-9, "{rate}");
        assert_eq!(core.publish_rate(t0 + Duration::from_secs(30)), 0.0);
    }
}

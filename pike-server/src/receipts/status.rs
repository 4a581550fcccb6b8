//! The status table: one record per message that asked for receipts, the
//! alias streams those messages live in, and what each device did with
//! them. Plain data, no I/O and no clock (times are parameters); every
//! change returns the receipt events it produced, once per (message,
//! device, event).
//!
//! Bounds (`docs/receipts.md`): at most `max_messages` records, at most
//! `max_devices` devices per record and per watched stream.

use std::collections::{BTreeMap, HashMap, HashSet};

use pike_api::server::{ReceiptMessage, ReceiptPlace, StreamKey, TransientReceipt};
use serde::{Deserialize, Serialize};

use super::event::{ReceiptEvent, ReceiptKind};

/// The bounds of a [`StatusTable`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct StatusLimits {
    /// Most records.
    pub(super) max_messages: usize,
    /// Most devices per record (and per watched stream).
    pub(super) max_devices: usize,
    /// How long a record is kept after its expiry (reliable) or its push
    /// (transient), milliseconds.
    pub(super) retention_ms: u64,
}

/// What one device did with one message.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct DeviceStatus {
    /// The alias it was logged in as.
    pub alias: String,
    /// The device id.
    pub device: String,
    /// Written to its connection, unix ms.
    pub delivered_at: Option<u64>,
    /// Acknowledged, unix ms.
    pub acked_at: Option<u64>,
    /// Expired unacknowledged, unix ms.
    pub expired_at: Option<u64>,
    /// Dropped (transient), unix ms.
    pub dropped_at: Option<u64>,
}

/// One message's record.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Record {
    /// The message id.
    pub message_id: u64,
    /// App id.
    pub app: String,
    /// Business id.
    pub biz: String,
    /// Stored (reliable) or transient.
    pub reliable: bool,
    /// When the record was made (the push), unix ms.
    pub created_at_ms: u64,
    /// When the message expires (reliable; the push time for transient).
    pub expires_at_ms: u64,
    /// The expiry notices were made.
    pub expired: bool,
    /// (alias, sequence number) per alias stream (reliable).
    pub places: Vec<(String, u64)>,
    /// The devices known, in the order they became known.
    pub devices: Vec<DeviceStatus>,
}

impl Record {
    /// Devices known that neither acked nor expired nor (transient) got it.
    pub fn pending(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| {
                if self.reliable {
                    d.acked_at.is_none() && d.expired_at.is_none()
                } else {
                    d.delivered_at.is_none() && d.dropped_at.is_none()
                }
            })
            .count()
    }

    /// The device's entry, made if there is room. `None`: the record is
    /// full.
    fn device(&mut self, alias: &str, device: &str, max: usize) -> Option<&mut DeviceStatus> {
        let at = match self
            .devices
            .iter()
            .position(|d| d.device == device && d.alias == alias)
        {
            Some(at) => at,
            None => {
                if self.devices.len() >= max {
                    return None;
                }
                self.devices.push(DeviceStatus {
                    alias: alias.to_owned(),
                    device: device.to_owned(),
                    ..DeviceStatus::default()
                });
                self.devices.len() - 1
            }
        };
        self.devices.get_mut(at)
    }

    fn event(&self, alias: &str, device: &str, kind: ReceiptKind, at: u64) -> ReceiptEvent {
        ReceiptEvent {
            message_id: self.message_id.to_string(),
            app: self.app.clone(),
            biz: self.biz.clone(),
            alias: alias.to_owned(),
            device: device.to_owned(),
            event: kind,
            at,
        }
    }

    /// Marks `kind` for the device (made if there is room) unless it was
    /// marked before; the event, or a full record.
    fn mark(
        &mut self,
        (alias, device): (&str, &str),
        kind: ReceiptKind,
        at: u64,
        max: usize,
    ) -> Mark {
        let Some(entry) = self.device(alias, device, max) else {
            return Mark::Full;
        };
        let slot = match kind {
            ReceiptKind::Delivered => &mut entry.delivered_at,
            ReceiptKind::Acked => &mut entry.acked_at,
            ReceiptKind::Expired => &mut entry.expired_at,
            ReceiptKind::Dropped => &mut entry.dropped_at,
        };
        if slot.is_some() {
            return Mark::Repeated;
        }
        *slot = Some(at);
        Mark::New(self.event(alias, device, kind, at))
    }
}

/// The outcome of marking an event.
enum Mark {
    New(ReceiptEvent),
    Repeated,
    Full,
}

/// A stream with live receipt messages (or one being appended).
#[derive(Debug, Default)]
struct Watched {
    /// Receipt pushes on their way to the store.
    pending: u32,
    /// Sequence number → message id of its receipt messages.
    messages: BTreeMap<u64, u64>,
    /// Devices seen on the stream and the highest sequence each acked.
    devices: HashMap<String, u64>,
}

impl Watched {
    fn idle(&self) -> bool {
        self.pending == 0 && self.messages.is_empty()
    }
}

/// A device an expiry notice would go to ([`StatusTable::due`]).
#[derive(Clone, Debug, Eq, PartialEq)]
pub(super) struct Due {
    /// The message.
    pub(super) message_id: u64,
    /// The alias stream the device had it in.
    pub(super) stream: StreamKey,
    /// The device.
    pub(super) device: String,
    /// The message's sequence number in that stream.
    pub(super) seq: u64,
}

/// What a change produced.
#[derive(Debug, Default, Eq, PartialEq)]
pub(super) struct Changes {
    /// New receipt events, in order.
    pub(super) events: Vec<ReceiptEvent>,
    /// Devices not recorded (a record or a stream was full).
    pub(super) devices_refused: u64,
    /// A push that asked for receipts and got no record (the table was
    /// full).
    pub(super) untracked: bool,
}

impl Changes {
    fn mark(&mut self, mark: Mark) {
        match mark {
            Mark::New(event) => self.events.push(event),
            Mark::Repeated => {}
            Mark::Full => self.devices_refused += 1,
        }
    }
}

/// The table.
#[derive(Debug)]
pub(super) struct StatusTable {
    limits: StatusLimits,
    records: HashMap<u64, Record>,
    streams: HashMap<StreamKey, Watched>,
    /// Records changed since the last [`take_dirty`](Self::take_dirty).
    dirty: HashSet<u64>,
    /// Records removed since then.
    removed: Vec<u64>,
}

impl StatusTable {
    /// An empty table.
    pub(super) fn new(limits: StatusLimits) -> Self {
        Self {
            limits,
            records: HashMap::new(),
            streams: HashMap::new(),
            dirty: HashSet::new(),
            removed: Vec::new(),
        }
    }

    /// A table holding `records` (loaded from the ledger), at most
    /// `max_messages` of them (the newest).
    pub(super) fn restore(limits: StatusLimits, mut records: Vec<Record>) -> Self {
        let mut table = Self::new(limits);
        records.sort_by_key(|r| std::cmp::Reverse(r.created_at_ms));
        records.truncate(limits.max_messages);
        for record in records {
            for (alias, seq) in &record.places {
                let key = StreamKey::new(&record.app, &record.biz, alias);
                let watched = table.streams.entry(key).or_default();
                watched.messages.insert(*seq, record.message_id);
                for d in record.devices.iter().filter(|d| &d.alias == alias) {
                    let acked = if d.acked_at.is_some() { *seq } else { 0 };
                    if watched.devices.len() < limits.max_devices
                        || watched.devices.contains_key(&d.device)
                    {
                        let known = watched.devices.entry(d.device.clone()).or_default();
                        *known = (*known).max(acked);
                    }
                }
            }
            table.records.insert(record.message_id, record);
        }
        table
    }

    /// Streams watched now.
    pub(super) fn watched(&self) -> usize {
        self.streams.len()
    }

    /// Whether `stream` is watched.
    pub(super) fn watches(&self, stream: &StreamKey) -> bool {
        self.streams.contains_key(stream)
    }

    /// Records now.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// The record of `message_id`, if it belongs to `app`.
    pub(super) fn get(&self, app: &str, message_id: u64) -> Option<&Record> {
        self.records.get(&message_id).filter(|r| r.app == app)
    }

    /// A receipt push is being appended to `streams`.
    pub(super) fn begin(&mut self, streams: &[StreamKey]) {
        for key in streams {
            let watched = self.streams.entry(key.clone()).or_default();
            watched.pending = watched.pending.saturating_add(1);
        }
    }

    /// The push of [`begin`](Self::begin) failed.
    pub(super) fn abandon(&mut self, streams: &[StreamKey]) {
        for key in streams {
            self.end_pending(key);
        }
    }

    fn end_pending(&mut self, key: &StreamKey) {
        if let Some(watched) = self.streams.get_mut(key) {
            watched.pending = watched.pending.saturating_sub(1);
            if watched.idle() {
                self.streams.remove(key);
            }
        }
    }

    /// The push of [`begin`](Self::begin) is stored.
    pub(super) fn stored(
        &mut self,
        message_id: u64,
        places: Vec<ReceiptPlace>,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Changes {
        let mut changes = Changes::default();
        let Some(first) = places.first() else {
            return changes;
        };
        if self.records.len() >= self.limits.max_messages {
            for place in &places {
                self.end_pending(&place.stream);
            }
            changes.untracked = true;
            return changes;
        }
        let mut record = Record {
            message_id,
            app: first.stream.app.clone(),
            biz: first.stream.biz.clone(),
            reliable: true,
            created_at_ms: now_ms,
            expires_at_ms,
            expired: false,
            places: Vec::with_capacity(places.len()),
            devices: Vec::new(),
        };
        for place in places {
            let watched = self.streams.entry(place.stream.clone()).or_default();
            watched.pending = watched.pending.saturating_sub(1);
            watched.messages.insert(place.seq, message_id);
            record.places.push((place.stream.alias.clone(), place.seq));
            // Devices already seen on the stream are known to the message;
            // an ack that raced the append counts now.
            for (device, &acked) in &watched.devices {
                let alias = place.stream.alias.as_str();
                if acked >= place.seq {
                    changes.mark(record.mark(
                        (alias, device),
                        ReceiptKind::Acked,
                        now_ms,
                        self.limits.max_devices,
                    ));
                } else if record
                    .device(alias, device, self.limits.max_devices)
                    .is_none()
                {
                    changes.devices_refused += 1;
                }
            }
        }
        self.records.insert(message_id, record);
        self.dirty.insert(message_id);
        changes
    }

    /// A connection of this node is about to write `message` of `stream`,
    /// whose log record asks for receipts: the record is made if the node
    /// has none (a cluster node that did not take the push), or the place
    /// added to it; the stream is watched from then on. A full table makes
    /// no record and counts it (`untracked`), once per such write.
    pub(super) fn adopt(
        &mut self,
        stream: &StreamKey,
        message: &ReceiptMessage,
        now_ms: u64,
    ) -> Changes {
        let mut changes = Changes::default();
        let id = message.message_id;
        if self
            .streams
            .get(stream)
            .is_some_and(|w| w.messages.get(&message.seq) == Some(&id))
        {
            // Known (the push was taken here, or adopted before).
            return changes;
        }
        match self.records.get_mut(&id) {
            Some(record) => {
                if record.app != stream.app || record.biz != stream.biz || !record.reliable {
                    // Another message under the same id: not ours to mix.
                    return changes;
                }
                record.places.push((stream.alias.clone(), message.seq));
            }
            None => {
                if self.records.len() >= self.limits.max_messages {
                    changes.untracked = true;
                    return changes;
                }
                self.records.insert(
                    id,
                    Record {
                        message_id: id,
                        app: stream.app.clone(),
                        biz: stream.biz.clone(),
                        reliable: true,
                        created_at_ms: now_ms,
                        expires_at_ms: message.expires_at_ms,
                        expired: false,
                        places: vec![(stream.alias.clone(), message.seq)],
                        devices: Vec::new(),
                    },
                );
            }
        }
        let watched = self.streams.entry(stream.clone()).or_default();
        watched.messages.insert(message.seq, id);
        if let Some(record) = self.records.get_mut(&id) {
            // Devices already seen on the stream are known to the message,
            // as for a push taken here.
            for (device, &acked) in &watched.devices {
                if acked >= message.seq {
                    changes.mark(record.mark(
                        (&stream.alias, device),
                        ReceiptKind::Acked,
                        now_ms,
                        self.limits.max_devices,
                    ));
                } else if record
                    .device(&stream.alias, device, self.limits.max_devices)
                    .is_none()
                {
                    changes.devices_refused += 1;
                }
            }
        }
        self.dirty.insert(id);
        changes
    }

    /// A transient push with receipts.
    pub(super) fn transient_pushed(
        &mut self,
        app: &str,
        biz: &str,
        message_id: u64,
        now_ms: u64,
    ) -> Changes {
        let mut changes = Changes::default();
        if self.records.len() >= self.limits.max_messages {
            changes.untracked = true;
            return changes;
        }
        self.records.insert(
            message_id,
            Record {
                message_id,
                app: app.to_owned(),
                biz: biz.to_owned(),
                reliable: false,
                created_at_ms: now_ms,
                expires_at_ms: now_ms,
                expired: false,
                places: Vec::new(),
                devices: Vec::new(),
            },
        );
        self.dirty.insert(message_id);
        changes
    }

    /// A transient message with receipts met a login. A node without a
    /// record of it (a cluster node that did not take the push, or the one
    /// that did when its table was full then) makes one, bounded like
    /// [`adopt`](Self::adopt): a full table makes none and counts it
    /// (`untracked`), once per such write. A record of another app or
    /// business, or of a reliable message, under the same id is left
    /// alone.
    pub(super) fn transient(&mut self, receipt: &TransientReceipt, now_ms: u64) -> Changes {
        let mut changes = Changes::default();
        let id = receipt.message_id;
        let stream = &receipt.stream;
        if !self.records.contains_key(&id) {
            // Made as if the push had been taken here.
            changes = self.transient_pushed(&stream.app, &stream.biz, id, now_ms);
            if changes.untracked {
                return changes;
            }
        }
        let Some(record) = self
            .records
            .get_mut(&id)
            .filter(|r| !r.reliable && r.app == stream.app && r.biz == stream.biz)
        else {
            // Another message under the same id: not ours to mix.
            return changes;
        };
        let kind = if receipt.delivered {
            ReceiptKind::Delivered
        } else {
            ReceiptKind::Dropped
        };
        changes.mark(record.mark(
            (&receipt.stream.alias, &receipt.device),
            kind,
            now_ms,
            self.limits.max_devices,
        ));
        self.dirty.insert(receipt.message_id);
        changes
    }

    /// `device` logged in to `stream` at position `acked_seq`.
    pub(super) fn login(
        &mut self,
        stream: &StreamKey,
        device: &str,
        acked_seq: u64,
        now_ms: u64,
    ) -> Changes {
        let mut changes = Changes::default();
        let Some(watched) = self.streams.get_mut(stream) else {
            return changes;
        };
        Self::see(watched, device, acked_seq, self.limits.max_devices);
        for (&seq, id) in &watched.messages {
            let Some(record) = self.records.get_mut(id) else {
                continue;
            };
            if acked_seq >= seq {
                changes.mark(record.mark(
                    (&stream.alias, device),
                    ReceiptKind::Acked,
                    now_ms,
                    self.limits.max_devices,
                ));
            } else if record
                .device(&stream.alias, device, self.limits.max_devices)
                .is_none()
            {
                changes.devices_refused += 1;
            }
            self.dirty.insert(*id);
        }
        changes
    }

    /// Message `seq` of `stream` was written to `device`.
    pub(super) fn delivered(
        &mut self,
        stream: &StreamKey,
        device: &str,
        seq: u64,
        now_ms: u64,
    ) -> Changes {
        let mut changes = Changes::default();
        let Some(watched) = self.streams.get_mut(stream) else {
            return changes;
        };
        Self::see(watched, device, 0, self.limits.max_devices);
        let Some(id) = watched.messages.get(&seq) else {
            return changes;
        };
        if let Some(record) = self.records.get_mut(id) {
            changes.mark(record.mark(
                (&stream.alias, device),
                ReceiptKind::Delivered,
                now_ms,
                self.limits.max_devices,
            ));
            self.dirty.insert(*id);
        }
        changes
    }

    /// `device` acked `stream` up to `seq`.
    pub(super) fn acked(
        &mut self,
        stream: &StreamKey,
        device: &str,
        seq: u64,
        now_ms: u64,
    ) -> Changes {
        let mut changes = Changes::default();
        let Some(watched) = self.streams.get_mut(stream) else {
            return changes;
        };
        let before = watched.devices.get(device).copied().unwrap_or(0);
        Self::see(watched, device, seq, self.limits.max_devices);
        if seq <= before {
            return changes;
        }
        for (_, id) in watched.messages.range(before + 1..=seq) {
            let Some(record) = self.records.get_mut(id) else {
                continue;
            };
            changes.mark(record.mark(
                (&stream.alias, device),
                ReceiptKind::Acked,
                now_ms,
                self.limits.max_devices,
            ));
            self.dirty.insert(*id);
        }
        changes
    }

    /// Remembers `device` on `watched` with its acked position (kept as a
    /// max), if there is room.
    fn see(watched: &mut Watched, device: &str, acked: u64, max: usize) {
        if let Some(known) = watched.devices.get_mut(device) {
            *known = (*known).max(acked);
        } else if watched.devices.len() < max {
            watched.devices.insert(device.to_owned(), acked);
        }
    }

    /// The devices the expiry notices at `now_ms` would go to (records
    /// past `expires_at` without notices yet, devices without `acked_at`
    /// nor `expired_at`), at most `max`: what the scan asks the engine
    /// about first ([`tick`](Self::tick)'s `acked_elsewhere`).
    pub(super) fn due(&self, now_ms: u64, max: usize) -> Vec<Due> {
        let mut out = Vec::new();
        for record in self.records.values() {
            if !record.reliable || record.expired || record.expires_at_ms > now_ms {
                continue;
            }
            for d in &record.devices {
                if out.len() >= max {
                    return out;
                }
                if d.acked_at.is_some() || d.expired_at.is_some() {
                    continue;
                }
                let Some(&(_, seq)) = record.places.iter().find(|(alias, _)| *alias == d.alias)
                else {
                    continue;
                };
                out.push(Due {
                    message_id: record.message_id,
                    stream: StreamKey::new(&record.app, &record.biz, &d.alias),
                    device: d.device.clone(),
                    seq,
                });
            }
        }
        out
    }

    /// Expiry notices for the messages expired by `now_ms`, and the removal
    /// of records past their retention. A device in `acked_elsewhere`
    /// (message id, alias, device: its stored position covers the message,
    /// an ack this node did not see, made on another cluster node) gets
    /// `acked` instead of `expired`.
    pub(super) fn tick(
        &mut self,
        now_ms: u64,
        acked_elsewhere: &HashSet<(u64, String, String)>,
    ) -> Changes {
        let mut changes = Changes::default();
        let retention = self.limits.retention_ms;
        let mut gone = Vec::new();
        for record in self.records.values_mut() {
            if record.reliable && !record.expired && record.expires_at_ms <= now_ms {
                record.expired = true;
                let (app, biz, id) = (record.app.clone(), record.biz.clone(), record.message_id);
                for d in record.devices.iter_mut().filter(|d| d.acked_at.is_none()) {
                    if d.expired_at.is_none() {
                        let acked =
                            acked_elsewhere.contains(&(id, d.alias.clone(), d.device.clone()));
                        let event = if acked {
                            d.acked_at = Some(now_ms);
                            ReceiptKind::Acked
                        } else {
                            d.expired_at = Some(now_ms);
                            ReceiptKind::Expired
                        };
                        changes.events.push(ReceiptEvent {
                            message_id: id.to_string(),
                            app: app.clone(),
                            biz: biz.clone(),
                            alias: d.alias.clone(),
                            device: d.device.clone(),
                            event,
                            at: now_ms,
                        });
                    }
                }
                self.dirty.insert(id);
            }
            if record.expires_at_ms.saturating_add(retention) <= now_ms {
                gone.push(record.message_id);
            }
        }
        for id in gone {
            self.remove(id);
        }
        changes
    }

    fn remove(&mut self, id: u64) {
        let Some(record) = self.records.remove(&id) else {
            return;
        };
        self.dirty.remove(&id);
        self.removed.push(id);
        for (alias, seq) in &record.places {
            let key = StreamKey::new(&record.app, &record.biz, alias);
            if let Some(watched) = self.streams.get_mut(&key) {
                watched.messages.remove(seq);
                if watched.idle() {
                    self.streams.remove(&key);
                }
            }
        }
    }

    /// The records changed and the ids removed since the last call.
    pub(super) fn take_dirty(&mut self) -> (Vec<Record>, Vec<u64>) {
        let changed = self
            .dirty
            .drain()
            .filter_map(|id| self.records.get(&id).cloned())
            .collect();
        (changed, std::mem::take(&mut self.removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StatusLimits {
        StatusLimits {
            max_messages: 2,
            max_devices: 2,
            retention_ms: 1_000,
        }
    }

    fn key(alias: &str) -> StreamKey {
        StreamKey::new("demo", "chat", alias)
    }

    fn place(alias: &str, seq: u64) -> Vec<ReceiptPlace> {
        vec![ReceiptPlace {
            stream: key(alias),
            seq,
        }]
    }

    fn kinds(changes: &Changes) -> Vec<(String, ReceiptKind)> {
        changes
            .events
            .iter()
            .map(|e| (e.device.clone(), e.event))
            .collect()
    }

    #[test]
    fn each_event_once_per_device() {
        let mut t = StatusTable::new(limits());
        t.begin(&[key("u1")]);
        assert!(t.watches(&key("u1")));
        assert!(t.stored(7, place("u1", 3), 10_000, 1).events.is_empty());
        let d = t.delivered(&key("u1"), "d1", 3, 2);
        assert_eq!(kinds(&d), vec![("d1".into(), ReceiptKind::Delivered)]);
        assert!(t.delivered(&key("u1"), "d1", 3, 3).events.is_empty());
        let a = t.acked(&key("u1"), "d1", 5, 4);
        assert_eq!(kinds(&a), vec![("d1".into(), ReceiptKind::Acked)]);
        assert!(t.acked(&key("u1"), "d1", 5, 5).events.is_empty());
        // A login at a position past it repeats nothing.
        assert!(t.login(&key("u1"), "d1", 5, 6).events.is_empty());
        let r = t.get("demo", 7).expect("record");
        assert_eq!(r.pending(), 0);
        assert!(t.get("other", 7).is_none());
    }

    #[test]
    fn an_ack_that_raced_the_append_counts() {
        let mut t = StatusTable::new(limits());
        t.begin(&[key("u1")]);
        // The device acked seq 4 before the push learnt its seq (4).
        assert!(t.acked(&key("u1"), "d1", 4, 1).events.is_empty());
        let s = t.stored(9, place("u1", 4), 10_000, 2);
        assert_eq!(kinds(&s), vec![("d1".into(), ReceiptKind::Acked)]);
    }

    #[test]
    fn expiry_notices_go_to_known_devices_that_did_not_ack() {
        let mut t = StatusTable::new(limits());
        t.begin(&[key("u1")]);
        t.stored(1, place("u1", 1), 100, 0);
        t.login(&key("u1"), "d1", 0, 10);
        t.login(&key("u1"), "d2", 1, 11);
        assert!(t.tick(99, &HashSet::new()).events.is_empty());
        let e = t.tick(100, &HashSet::new());
        assert_eq!(kinds(&e), vec![("d1".into(), ReceiptKind::Expired)]);
        assert!(t.tick(200, &HashSet::new()).events.is_empty(), "once");
        assert_eq!(t.get("demo", 1).map(Record::pending), Some(0));
        // Past its retention the record and the watch go.
        t.tick(1_100, &HashSet::new());
        assert_eq!(t.len(), 0);
        assert!(!t.watches(&key("u1")));
        assert_eq!(t.take_dirty().1, vec![1]);
    }

    #[test]
    fn bounds_are_kept_and_counted() {
        let mut t = StatusTable::new(limits());
        for id in 1..=2 {
            t.begin(&[key("u1")]);
            assert!(!t.stored(id, place("u1", id), 10_000, 0).untracked);
        }
        t.begin(&[key("u1")]);
        assert!(t.stored(3, place("u1", 3), 10_000, 0).untracked);
        assert_eq!(t.len(), 2);
        // Two devices per record: the third is refused, counted.
        t.login(&key("u1"), "d1", 0, 1);
        t.login(&key("u1"), "d2", 0, 1);
        let third = t.login(&key("u1"), "d3", 0, 1);
        assert!(third.events.is_empty());
        let refused = t.delivered(&key("u1"), "d3", 1, 2);
        assert_eq!(refused.devices_refused, 1);
        assert!(t.get("demo", 1).is_some_and(|r| r.devices.len() == 2));
    }

    fn message(id: u64, seq: u64) -> ReceiptMessage {
        ReceiptMessage {
            message_id: id,
            seq,
            expires_at_ms: 100,
        }
    }

    #[test]
    fn a_node_that_did_not_take_the_push_adopts_it_from_the_log() {
        let mut t = StatusTable::new(limits());
        // A device logged in before anything was watched: not known yet.
        assert!(t.login(&key("u1"), "d1", 0, 1).events.is_empty());
        assert!(!t.watches(&key("u1")));
        assert!(t.adopt(&key("u1"), &message(7, 3), 2).events.is_empty());
        assert!(t.watches(&key("u1")));
        let d = t.delivered(&key("u1"), "d1", 3, 3);
        assert_eq!(kinds(&d), vec![("d1".into(), ReceiptKind::Delivered)]);
        // Adopting again (another write of it) changes nothing.
        assert!(t.adopt(&key("u1"), &message(7, 3), 4).events.is_empty());
        let a = t.acked(&key("u1"), "d1", 3, 5);
        assert_eq!(kinds(&a), vec![("d1".into(), ReceiptKind::Acked)]);
        let r = t.get("demo", 7).expect("record");
        assert_eq!((r.created_at_ms, r.expires_at_ms), (2, 100));
        assert_eq!(r.places, vec![("u1".to_owned(), 3)]);
        assert_eq!(r.pending(), 0);
        // Another alias of the same push adds its place.
        t.adopt(&key("u2"), &message(7, 9), 6);
        assert_eq!(t.get("demo", 7).map(|r| r.places.len()), Some(2));
        // Expiry notices from this node for its unacked devices.
        t.delivered(&key("u2"), "d2", 9, 7);
        let e = t.tick(100, &HashSet::new());
        assert_eq!(kinds(&e), vec![("d2".into(), ReceiptKind::Expired)]);
    }

    #[test]
    fn adopting_on_the_node_that_took_the_push_is_a_no_op() {
        let mut t = StatusTable::new(limits());
        t.begin(&[key("u1")]);
        t.stored(7, place("u1", 3), 10_000, 1);
        t.take_dirty();
        assert_eq!(t.adopt(&key("u1"), &message(7, 3), 2), Changes::default());
        assert!(t.take_dirty().0.is_empty());
        assert_eq!(t.get("demo", 7).map(|r| r.created_at_ms), Some(1));
    }

    fn transient_receipt(
        id: u64,
        stream: StreamKey,
        device: &str,
        delivered: bool,
    ) -> TransientReceipt {
        TransientReceipt {
            message_id: id,
            stream,
            device: device.into(),
            delivered,
        }
    }

    /// A transient id of another node (bit 62 and a node part).
    const REMOTE: u64 = (1 << 62) | (5 << 42) | 9;

    #[test]
    fn a_node_that_did_not_take_a_transient_push_makes_its_record() {
        let mut t = StatusTable::new(limits());
        let d = t.transient(&transient_receipt(REMOTE, key("u1"), "d1", true), 10);
        assert_eq!(kinds(&d), vec![("d1".into(), ReceiptKind::Delivered)]);
        assert!(!d.untracked);
        // Once per (message, device, event).
        let again = t.transient(&transient_receipt(REMOTE, key("u1"), "d1", true), 11);
        assert!(again.events.is_empty());
        let dropped = t.transient(&transient_receipt(REMOTE, key("u1"), "d2", false), 12);
        assert_eq!(kinds(&dropped), vec![("d2".into(), ReceiptKind::Dropped)]);
        let r = t.get("demo", REMOTE).expect("record");
        assert!(!r.reliable);
        assert_eq!((r.created_at_ms, r.expires_at_ms), (10, 10));
        assert_eq!((r.app.as_str(), r.biz.as_str()), ("demo", "chat"));
        assert!(r.places.is_empty());
        assert_eq!(r.devices.len(), 2);
        assert_eq!(r.pending(), 0);
        assert!(
            t.take_dirty().0.iter().any(|r| r.message_id == REMOTE),
            "written to the ledger"
        );
        // Nothing is watched for it, and it is kept `retention` from then.
        assert!(!t.watches(&key("u1")));
        t.tick(1_009, &HashSet::new());
        assert!(t.get("demo", REMOTE).is_some());
        assert!(t.tick(1_010, &HashSet::new()).events.is_empty());
        assert!(t.get("demo", REMOTE).is_none());
    }

    #[test]
    fn a_transient_receipt_on_the_node_that_took_the_push_uses_its_record() {
        let mut t = StatusTable::new(limits());
        t.transient_pushed("demo", "chat", REMOTE, 3);
        let d = t.transient(&transient_receipt(REMOTE, key("u1"), "d1", true), 4);
        assert_eq!(kinds(&d), vec![("d1".into(), ReceiptKind::Delivered)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("demo", REMOTE).map(|r| r.created_at_ms), Some(3));
    }

    #[test]
    fn transient_records_made_on_delivery_keep_the_bounds() {
        let mut t = StatusTable::new(limits());
        t.transient(&transient_receipt(REMOTE, key("u1"), "d1", true), 0);
        t.transient(&transient_receipt(REMOTE + 1, key("u1"), "d1", true), 0);
        let full = t.transient(&transient_receipt(REMOTE + 2, key("u1"), "d1", true), 0);
        assert!(full.untracked && full.events.is_empty());
        assert_eq!(t.len(), 2);
        // Devices per record.
        t.transient(&transient_receipt(REMOTE, key("u1"), "d2", true), 0);
        let refused = t.transient(&transient_receipt(REMOTE, key("u1"), "d3", true), 0);
        assert_eq!(refused.devices_refused, 1);
        assert!(refused.events.is_empty());
        // Another app's or business's message under a known id, or a
        // reliable record, is not mixed in.
        let other_app = StreamKey::new("other", "chat", "u1");
        let other_biz = StreamKey::new("demo", "news", "u1");
        for stream in [other_app, other_biz] {
            let c = t.transient(&transient_receipt(REMOTE, stream, "d9", true), 0);
            assert!(c.events.is_empty() && !c.untracked);
        }
        assert_eq!(t.get("demo", REMOTE).map(|r| r.devices.len()), Some(2));
        let mut r = StatusTable::new(limits());
        r.begin(&[key("u1")]);
        r.stored(7, place("u1", 3), 10_000, 1);
        assert!(
            r.transient(&transient_receipt(7, key("u1"), "d1", true), 2)
                .events
                .is_empty()
        );
        assert_eq!(r.get("demo", 7).map(|r| r.devices.is_empty()), Some(true));
    }

    #[test]
    fn adopting_keeps_the_bounds() {
        let mut t = StatusTable::new(limits());
        t.adopt(&key("u1"), &message(1, 1), 0);
        t.adopt(&key("u1"), &message(2, 2), 0);
        assert!(t.adopt(&key("u1"), &message(3, 3), 0).untracked);
        assert_eq!(t.len(), 2);
        // Another app's message under a known id is not mixed in.
        let other = StreamKey::new("other", "chat", "u1");
        t.adopt(&other, &message(1, 5), 0);
        assert_eq!(t.get("demo", 1).map(|r| r.places.len()), Some(1));
        assert!(t.get("other", 1).is_none());
    }

    #[test]
    fn a_device_that_acked_on_another_node_gets_acked_not_expired() {
        let mut t = StatusTable::new(limits());
        t.begin(&[key("u1")]);
        t.stored(1, place("u1", 4), 100, 0);
        t.delivered(&key("u1"), "d1", 4, 1);
        t.delivered(&key("u1"), "d2", 4, 1);
        assert!(t.due(99, 10).is_empty());
        let due = t.due(100, 10);
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|d| d.seq == 4 && d.stream == key("u1")));
        assert_eq!(t.due(100, 1).len(), 1, "bounded");
        // d1's stored position covers the message (acked on another node).
        let acked = HashSet::from([(1, "u1".to_owned(), "d1".to_owned())]);
        let e = t.tick(100, &acked);
        assert_eq!(
            kinds(&e),
            vec![
                ("d1".into(), ReceiptKind::Acked),
                ("d2".into(), ReceiptKind::Expired)
            ]
        );
        assert!(t.due(200, 10).is_empty());
        assert!(t.tick(200, &acked).events.is_empty(), "once");
    }

    #[test]
    fn an_abandoned_push_unwatches() {
        let mut t = StatusTable::new(limits());
        t.begin(&[key("u1"), key("u2")]);
        t.abandon(&[key("u1"), key("u2")]);
        assert_eq!(t.watched(), 0);
    }

    #[test]
    fn a_restored_table_remembers_what_was_reported() {
        let mut t = StatusTable::new(limits());
        t.begin(&[key("u1")]);
        t.stored(5, place("u1", 2), 10_000, 0);
        t.delivered(&key("u1"), "d1", 2, 1);
        t.acked(&key("u1"), "d1", 2, 2);
        let (records, _) = t.take_dirty();
        let mut back = StatusTable::restore(limits(), records);
        assert!(back.watches(&key("u1")));
        assert!(back.acked(&key("u1"), "d1", 2, 3).events.is_empty());
        assert!(back.delivered(&key("u1"), "d1", 2, 3).events.is_empty());
        assert!(back.login(&key("u1"), "d1", 2, 3).events.is_empty());
    }
}

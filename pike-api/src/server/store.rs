//! The storage contract of a gateway: durable alias streams of reliable
//! downlink, per-device positions, tags, and uplink deduplication.
//!
//! `pike-server` implements it on redb (`pike_server::store::RedbStore`);
//! [`MemoryStore`] keeps everything in memory (not durable: for tests and
//! gateways that may lose stored messages on restart).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::Bytes;

/// A boxed, sendable future (the trait is object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A reliable downlink stream: every message pushed to one alias of one
/// business of one app, in order, with its own sequence numbers.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct StreamKey {
    /// App id.
    pub app: String,
    /// Business id.
    pub biz: String,
    /// The alias.
    pub alias: String,
}

impl StreamKey {
    /// A key.
    pub fn new(app: impl Into<String>, biz: impl Into<String>, alias: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            biz: biz.into(),
            alias: alias.into(),
        }
    }
}

/// A message to append to a stream.
#[derive(Clone, Debug)]
pub struct Append {
    /// The stream.
    pub stream: StreamKey,
    /// Priority, 0 = normal.
    pub priority: u32,
    /// Expiry, unix milliseconds.
    pub expires_at_ms: u64,
    /// The payload.
    pub payload: Bytes,
    /// The push asked for delivery receipts (`docs/receipts.md`): an
    /// engine that keeps it ([`StoredMessage::receipt`]) lets every node
    /// that serves the message report them. Stores may drop it.
    pub receipt: bool,
}

/// Where an appended message went.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Appended {
    /// Its sequence number in the stream.
    pub seq: u64,
    /// The engine's cursor for it (equal to `seq` in a [`Store`]; see
    /// [`Position`](super::engine::Position)).
    pub cursor: u64,
    /// The gateway-wide id of the push (shared by the appends of one call).
    pub message_id: u64,
}

/// A stored message.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StoredMessage {
    /// Sequence number in its stream.
    pub seq: u64,
    /// The engine's cursor for it (equal to `seq` in a [`Store`]; see
    /// [`Position`](super::engine::Position)).
    pub cursor: u64,
    /// Gateway-wide message id.
    pub message_id: u64,
    /// Priority.
    pub priority: u32,
    /// Expiry, unix milliseconds.
    pub expires_at_ms: u64,
    /// The payload.
    pub payload: Bytes,
    /// The push asked for delivery receipts, as far as the engine knows
    /// (the cluster engine keeps it in the log; `pike-server`'s redb store
    /// does not, and reads `false`: a single node knows it from its status
    /// table).
    pub receipt: bool,
}

/// What a login needs from the store ([`Store::login`]).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LoginSnapshot {
    /// The device's stored position on the alias stream (`None`: it never
    /// acked on it).
    pub position: Option<u64>,
    /// Where delivery resumes: the larger of the client's last acked
    /// sequence and the stored position.
    pub start_after: u64,
    /// The first messages after `start_after`.
    pub batch: ReadBatch,
}

/// The answer to a read.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ReadBatch {
    /// Unexpired messages after the requested sequence, in order.
    pub messages: Vec<StoredMessage>,
    /// The oldest sequence still kept (`after + 1 < first_seq` is a gap).
    pub first_seq: u64,
    /// The highest sequence ever assigned in the stream.
    pub last_seq: u64,
}

/// What the backend answered to an uplink message, kept for deduplication.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct UplinkRecord {
    /// The route (backend instance) that accepted it.
    pub route_id: String,
}

/// A storage failure (I/O, corruption, closed store).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// Durable state of a gateway. Every method may be called concurrently.
pub trait Store: Send + Sync + 'static {
    /// Appends messages (each to its stream, all sharing one message id);
    /// resolves once they are durable.
    fn append(&self, batch: Vec<Append>) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>>;

    /// Appends several pushes in order, each as [`append`](Self::append)
    /// does (the messages of one push share a message id, each push has
    /// its own); resolves once all are durable, with one outcome per push.
    /// A store that can commits them together (one transaction: all of
    /// them or none, every outcome the same); the default appends one push
    /// after the other, each with its own outcome.
    fn append_many(
        &self,
        pushes: Vec<Vec<Append>>,
    ) -> BoxFuture<'_, Vec<Result<Vec<Appended>, StoreError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(pushes.len());
            for batch in pushes {
                out.push(self.append(batch).await);
            }
            out
        })
    }

    /// Up to `max` unexpired messages of `stream` after `after_seq`.
    fn read(
        &self,
        stream: StreamKey,
        after_seq: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, StoreError>>;

    /// Records that `device` received `stream` up to `seq` (kept as a max).
    fn set_position(
        &self,
        stream: StreamKey,
        device: String,
        seq: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Where `device` is in `stream`; `None` for a device never seen.
    fn position(
        &self,
        stream: StreamKey,
        device: String,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;

    /// Binds and unbinds tags of an alias; returns the tags bound after.
    fn update_tags(
        &self,
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// The aliases bound to `tag` (at most `limit`).
    fn tag_members(
        &self,
        app: String,
        biz: String,
        tag: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// Everything a login needs, in one call: the device's position on
    /// `key`, the alias remembered ([`touch_alias`](Self::touch_alias)) and
    /// the first `max` messages after the larger of `last_acked` and that
    /// position. The default makes the three calls in turn; a store may
    /// answer them in one go (the redb store does, on one blocking thread).
    fn login(
        &self,
        key: StreamKey,
        device: String,
        last_acked: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<LoginSnapshot, StoreError>> {
        Box::pin(async move {
            let position = self.position(key.clone(), device).await?;
            let start_after = last_acked.max(position.unwrap_or(0));
            self.touch_alias(key.app.clone(), key.biz.clone(), key.alias.clone())
                .await?;
            let batch = self.read(key, start_after, max, now_ms).await?;
            Ok(LoginSnapshot {
                position,
                start_after,
                batch,
            })
        })
    }

    /// Remembers that `alias` exists in `biz` (it logged in).
    fn touch_alias(
        &self,
        app: String,
        biz: String,
        alias: String,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Aliases known in `biz` (at most `limit`).
    fn aliases(
        &self,
        app: String,
        biz: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// The recorded outcome of an uplink message, if it was delivered.
    fn uplink_record(
        &self,
        stream: StreamKey,
        key: String,
    ) -> BoxFuture<'_, Result<Option<UplinkRecord>, StoreError>>;

    /// Records that an uplink message was delivered (durable before the
    /// client is acked).
    fn record_uplink(
        &self,
        stream: StreamKey,
        key: String,
        record: UplinkRecord,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The epoch of this store's log: nonzero, fixed for the log's life,
    /// new when the log is recreated (say a deleted data directory).
    /// Clients keep it beside their positions (`Login.epoch`), so that a
    /// position from an older log is never applied to this one. Default 0:
    /// the store has no epoch, and clients' positions are always trusted.
    fn epoch(&self) -> u64 {
        0
    }
}

/// A [`Store`] in memory. Not durable: every store is a log of its own
/// epoch.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
    epoch: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            epoch: fastrand::u64(1..),
        }
    }
}

#[derive(Debug, Default)]
struct MemoryInner {
    next_message_id: u64,
    streams: HashMap<StreamKey, MemoryStream>,
    positions: HashMap<(StreamKey, String), u64>,
    tags: BTreeMap<(String, String, String), BTreeSet<String>>,
    aliases: BTreeMap<(String, String), BTreeSet<String>>,
    uplinks: HashMap<(StreamKey, String), UplinkRecord>,
}

#[derive(Debug, Default)]
struct MemoryStream {
    last_seq: u64,
    messages: BTreeMap<u64, StoredMessage>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryInner) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

impl Store for MemoryStore {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn append(&self, batch: Vec<Append>) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        let out = self.with(|s| {
            s.next_message_id += 1;
            let message_id = s.next_message_id;
            batch
                .into_iter()
                .map(|a| {
                    let stream = s.streams.entry(a.stream).or_default();
                    stream.last_seq += 1;
                    let seq = stream.last_seq;
                    stream.messages.insert(
                        seq,
                        StoredMessage {
                            seq,
                            cursor: seq,
                            message_id,
                            priority: a.priority,
                            expires_at_ms: a.expires_at_ms,
                            payload: a.payload,
                            receipt: a.receipt,
                        },
                    );
                    Appended {
                        seq,
                        cursor: seq,
                        message_id,
                    }
                })
                .collect()
        });
        Box::pin(async move { Ok(out) })
    }

    fn read(
        &self,
        stream: StreamKey,
        after_seq: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, StoreError>> {
        let out = self.with(|s| match s.streams.get(&stream) {
            None => ReadBatch::default(),
            Some(st) => ReadBatch {
                messages: st
                    .messages
                    .range(after_seq.saturating_add(1)..)
                    .map(|(_, m)| m)
                    .filter(|m| m.expires_at_ms == 0 || m.expires_at_ms > now_ms)
                    .take(max)
                    .cloned()
                    .collect(),
                first_seq: st
                    .messages
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(st.last_seq + 1),
                last_seq: st.last_seq,
            },
        });
        Box::pin(async move { Ok(out) })
    }

    fn set_position(
        &self,
        stream: StreamKey,
        device: String,
        seq: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(|s| {
            let p = s.positions.entry((stream, device)).or_default();
            *p = (*p).max(seq);
        });
        Box::pin(async { Ok(()) })
    }

    fn position(
        &self,
        stream: StreamKey,
        device: String,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        let out = self.with(|s| s.positions.get(&(stream, device)).copied());
        Box::pin(async move { Ok(out) })
    }

    fn update_tags(
        &self,
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let out = self.with(|s| {
            for tag in bind {
                s.tags
                    .entry((app.clone(), biz.clone(), tag))
                    .or_default()
                    .insert(alias.clone());
            }
            for tag in unbind {
                if let Some(members) = s.tags.get_mut(&(app.clone(), biz.clone(), tag)) {
                    members.remove(&alias);
                }
            }
            s.tags
                .iter()
                .filter(|((a, b, _), members)| *a == app && *b == biz && members.contains(&alias))
                .map(|((_, _, tag), _)| tag.clone())
                .collect()
        });
        Box::pin(async move { Ok(out) })
    }

    fn tag_members(
        &self,
        app: String,
        biz: String,
        tag: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let out = self.with(|s| {
            s.tags
                .get(&(app, biz, tag))
                .map(|m| m.iter().take(limit).cloned().collect())
                .unwrap_or_default()
        });
        Box::pin(async move { Ok(out) })
    }

    fn touch_alias(
        &self,
        app: String,
        biz: String,
        alias: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(|s| s.aliases.entry((app, biz)).or_default().insert(alias));
        Box::pin(async { Ok(()) })
    }

    fn aliases(
        &self,
        app: String,
        biz: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let out = self.with(|s| {
            s.aliases
                .get(&(app, biz))
                .map(|m| m.iter().take(limit).cloned().collect())
                .unwrap_or_default()
        });
        Box::pin(async move { Ok(out) })
    }

    fn uplink_record(
        &self,
        stream: StreamKey,
        key: String,
    ) -> BoxFuture<'_, Result<Option<UplinkRecord>, StoreError>> {
        let out = self.with(|s| s.uplinks.get(&(stream, key)).cloned());
        Box::pin(async move { Ok(out) })
    }

    fn record_uplink(
        &self,
        stream: StreamKey,
        key: String,
        record: UplinkRecord,
        _now_ms: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(|s| s.uplinks.insert((stream, key), record));
        Box::pin(async { Ok(()) })
    }
}

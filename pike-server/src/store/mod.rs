//! The gateway's embedded durable store ([`RedbStore`], on [redb]).
//!
//! What it keeps (semantics in `ARCHITECTURE.md` §4, layout and durability
//! in `docs/storage.md`):
//!
//! - **Reliable downlink streams**, one per [`StreamKey`] (an alias of a biz,
//!   or one device of a biz). [`RedbStore::append`] gives each message the
//!   next sequence number of its stream (1, 2, 3, ..., never reused, also
//!   across restarts) and a gateway-wide message id, and returns only once
//!   the messages are on disk (fsync). Concurrent appends are **group
//!   committed**: one writer thread commits everything queued in one write
//!   transaction, so N concurrent appends cost far fewer than N fsyncs.
//! - **Retention**: every message has an expiry (the append's, or the
//!   configured default TTL) and each stream keeps at most
//!   [`StoreConfig::max_messages_per_stream`] messages, evicting the oldest.
//!   Reads never return an expired message; [`RedbStore::expire`] reclaims
//!   the space in bounded chunks.
//! - **Per-device positions** (cumulative acks), monotonic.
//! - **Tags** of aliases and their reverse index, **known aliases** of a biz,
//!   and **uplink outcomes** by idempotency key (dedup).
//!
//! Time is always a parameter (`now_ms`, unix milliseconds): the store never
//! reads a clock.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pike_server::store::StoreError> {
//! use pike_server::store::{Append, RedbStore, StoreConfig, StreamKey};
//!
//! let dir = tempfile::tempdir()?;
//! let store = RedbStore::open(dir.path().join("pike.redb"), StoreConfig::default())?;
//! let stream = StreamKey::alias("demo", "chat", "u42");
//! let now_ms = 1_700_000_000_000;
//! let done = store
//!     .append(vec![Append::new(stream.clone(), "hello")], now_ms)
//!     .await?;
//! assert_eq!(done[0].seq, 1);
//! let batch = store.read(&stream, 0, 100, now_ms).await?;
//! assert_eq!(&batch.messages[0].payload[..], b"hello");
//! store.set_position(&stream, "phone-1", 1).await?;
//! assert_eq!(store.position(&stream, "phone-1").await?, Some(1));
//! store.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! [redb]: https://docs.rs/redb

mod codec;
mod config;
mod error;
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
mod keys;
mod reader;
mod redb_store;
mod slot;
mod writer;

use std::ops::RangeInclusive;

use bytes::Bytes;

pub use codec::MAX_ID_LEN;
pub use config::{
    BUSY_WITHIN, DEFAULT_COMMIT_LINGER, DEFAULT_POSITION_FLUSH_INTERVAL, MAX_COMMIT_LINGER,
    MAX_POSITION_FLUSH_INTERVAL, StoreConfig,
};
pub use error::StoreError;
pub use redb_store::{MAX_PAGE, MAX_READ, RedbStore};

/// Whom a reliable downlink stream delivers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Every device logged in as this alias (each with its own position).
    Alias(String),
    /// One device (a push addressed to a device id).
    Device(String),
}

/// Identity of a reliable downlink stream: app, biz and target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// App id.
    pub app: String,
    /// Business id inside the app.
    pub biz: String,
    /// Alias or device.
    pub target: Target,
}

impl StreamKey {
    /// The stream of an alias of a biz.
    pub fn alias(app: impl Into<String>, biz: impl Into<String>, alias: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            biz: biz.into(),
            target: Target::Alias(alias.into()),
        }
    }

    /// The stream of one device of a biz.
    pub fn device(
        app: impl Into<String>,
        biz: impl Into<String>,
        device: impl Into<String>,
    ) -> Self {
        Self {
            app: app.into(),
            biz: biz.into(),
            target: Target::Device(device.into()),
        }
    }
}

/// One message to append to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The stream.
    pub stream: StreamKey,
    /// `None`: the store assigns a fresh message id. `Some(id)`: use an id
    /// obtained from [`RedbStore::next_message_id`], so that the appends of
    /// one push (a tag push to many alias streams) share one id.
    pub message_id: Option<u64>,
    /// Priority, 0 = normal; higher is more urgent.
    pub priority: u32,
    /// Expiry in unix milliseconds; 0 = `now_ms` + the default TTL.
    pub expires_at_ms: u64,
    /// Business payload.
    pub payload: Bytes,
}

impl Append {
    /// A message with normal priority, the default TTL and a fresh message id.
    pub fn new(stream: StreamKey, payload: impl Into<Bytes>) -> Self {
        Self {
            stream,
            message_id: None,
            priority: 0,
            expires_at_ms: 0,
            payload: payload.into(),
        }
    }

    /// Sets [`priority`](Self::priority).
    #[must_use]
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets [`expires_at_ms`](Self::expires_at_ms).
    #[must_use]
    pub fn with_expires_at_ms(mut self, expires_at_ms: u64) -> Self {
        self.expires_at_ms = expires_at_ms;
        self
    }

    /// Sets [`message_id`](Self::message_id).
    #[must_use]
    pub fn with_message_id(mut self, message_id: u64) -> Self {
        self.message_id = Some(message_id);
        self
    }
}

/// What the store assigned to one [`Append`] (same order as the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number in the stream.
    pub seq: u64,
    /// Gateway-wide message id.
    pub message_id: u64,
    /// Effective expiry (the default TTL applied).
    pub expires_at_ms: u64,
}

/// A stored reliable downlink message, as the wire's `Downlink` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Sequence number in its stream.
    pub seq: u64,
    /// Gateway-wide message id.
    pub message_id: u64,
    /// Priority.
    pub priority: u32,
    /// Expiry, unix milliseconds.
    pub expires_at_ms: u64,
    /// Business payload.
    pub payload: Bytes,
}

/// The answer to [`RedbStore::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// Unexpired messages with `seq > after_seq`, in seq order, at most `max`.
    pub messages: Vec<StoredMessage>,
    /// Lowest seq of an unexpired message still kept, or `last_seq + 1` when
    /// there is none. Every seq below it is gone for good (expired or
    /// evicted).
    pub first_seq: u64,
    /// Highest seq ever assigned in the stream (0 = none).
    pub last_seq: u64,
}

impl ReadBatch {
    /// The seqs after `after_seq` that were lost to expiry or eviction before
    /// `first_seq`, if any: what a resuming device missed at the head of the
    /// stream. (A message that expired while later ones are still kept shows
    /// as a jump in the seqs of [`messages`](Self::messages).)
    pub fn gap(&self, after_seq: u64) -> Option<RangeInclusive<u64>> {
        let from = after_seq.checked_add(1)?;
        (from < self.first_seq).then(|| from..=self.first_seq - 1)
    }
}

/// The outcome of an uplink message, kept for dedup by idempotency key.
///
/// Mirrors the wire's `UplinkAck`: a resent message gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UplinkOutcome {
    /// `pike.tunnel.v1.ErrorCode` value; 0 = the backend accepted it.
    pub code: u32,
    /// Route id of the backend that took it.
    pub route_id: String,
    /// Detail on failure.
    pub message: String,
}

impl UplinkOutcome {
    /// Accepted by the backend behind `route_id`.
    pub fn accepted(route_id: impl Into<String>) -> Self {
        Self {
            code: 0,
            route_id: route_id.into(),
            message: String::new(),
        }
    }
}

/// Counters of the writer (monotonic since open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Of those, committed with fsync (`Durability::Immediate`).
    pub durable_commits: u64,
    /// Requests (append calls, position updates, ...) answered by commits.
    pub requests: u64,
    /// Messages appended.
    pub appended: u64,
    /// Most requests committed in one transaction.
    pub largest_batch: u64,
    /// Positions noted in memory
    /// ([`RedbStore::note_position`](crate::store::RedbStore::note_position))
    /// and written since, one per (stream, device) and flush, however
    /// many acks each had.
    pub noted_positions_written: u64,
}

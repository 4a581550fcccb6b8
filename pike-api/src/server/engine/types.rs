//! The values that cross the engine seam.

use bytes::Bytes;

use crate::server::store::{Append, ReadBatch, StoreError, StreamKey};

/// A place in an alias stream.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Ord, PartialOrd)]
pub struct Position {
    /// The per-alias sequence number (dense: 1, 2, 3, ...), the one the
    /// wire protocol carries.
    pub seq: u64,
    /// The engine's own cursor for that message (a JetStream stream
    /// sequence; equal to `seq` in the embedded engine). Reads resume after
    /// it.
    pub cursor: u64,
}

impl Position {
    /// The position of the embedded engine, whose cursor is the sequence.
    pub fn at(seq: u64) -> Self {
        Self { seq, cursor: seq }
    }
}

/// One push to append: every item gets the same message id.
#[derive(Clone, Debug)]
pub struct AppendPush {
    /// The push's idempotency key, when the caller gave one: an engine that
    /// deduplicates stores a repeated key once.
    pub id: Option<String>,
    /// One item per alias stream.
    pub items: Vec<Append>,
}

/// What a login starts from ([`Inbox::login`](super::Inbox::login)).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LoginStart {
    /// The device's stored position (`None`: it never acked on the stream).
    pub position: Option<Position>,
    /// Where delivery resumes.
    pub start_after: Position,
    /// The first messages after `start_after`.
    pub batch: ReadBatch,
}

/// Live traffic a node wants.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub enum Interest {
    /// Reliable and transient messages of an alias stream.
    Stream(StreamKey),
    /// Transient messages to a device (of any business).
    Device {
        /// App id.
        app: String,
        /// Device id.
        device: String,
    },
}

/// Who a transient message is for.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum RouteTarget {
    /// The connections logged in to an alias stream.
    Stream(StreamKey),
    /// The logins of `biz` on the device's connections that proved the
    /// device id.
    Device {
        /// App id.
        app: String,
        /// Business id.
        biz: String,
        /// Device id.
        device: String,
    },
}

/// A transient message.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TransientMessage {
    /// Its id (from the transient range).
    pub message_id: u64,
    /// Priority.
    pub priority: u32,
    /// The payload.
    pub payload: Bytes,
    /// The push asked for receipts: connections tell the gateway's receipt
    /// hook what they did with it (`docs/receipts.md`).
    pub receipt: bool,
}

/// What one node did with a transient message.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct LocalDelivery {
    /// Connections that took it.
    pub online: usize,
    /// Connections whose command queue was full.
    pub dropped: usize,
}

impl std::ops::AddAssign for LocalDelivery {
    /// Sums the deliveries of several targets.
    fn add_assign(&mut self, other: Self) {
        self.online += other.online;
        self.dropped += other.dropped;
    }
}

/// An engine failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The shared state cannot be reached (a cluster without quorum, NATS
    /// unreachable): nothing was done, and the caller may retry later
    /// (HTTP 503; the same push under the same idempotency key is stored
    /// once).
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// Storage failed (I/O, corruption, a closed store).
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.to_string())
    }
}

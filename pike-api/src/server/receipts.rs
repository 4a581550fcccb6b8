//! The receipt hook: what a gateway's connections and pushes tell whoever
//! reports delivery receipts to the backends (`docs/receipts.md`).
//!
//! A gateway built without a hook ([`GatewayBuilder::receipts`]) calls
//! nothing. With one, every call site first asks [`ReceiptHook::watches`]
//! for the message's alias stream, which a hook answers with one atomic
//! load while no push that asked for receipts is live.
//!
//! [`GatewayBuilder::receipts`]: super::GatewayBuilder::receipts

use super::store::StreamKey;

/// Where a reliable push that asked for receipts went: one alias stream and
/// the sequence number the message got in it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ReceiptPlace {
    /// The alias stream.
    pub stream: StreamKey,
    /// The message's sequence number in it.
    pub seq: u64,
}

/// A transient message with receipts that reached (or failed to reach) a
/// connection's login.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TransientReceipt {
    /// The message id (transient range).
    pub message_id: u64,
    /// App, business and alias of the login.
    pub stream: StreamKey,
    /// The device of the connection.
    pub device: String,
    /// Written to the connection's channel (`false`: its window refused
    /// it and it was dropped).
    pub delivered: bool,
}

/// Told about deliveries, acks and logins so that it can report receipts.
///
/// Calls come from connection tasks and must not block: a hook records
/// and hands the work to tasks of its own.
pub trait ReceiptHook: Send + Sync + 'static {
    /// Whether `stream` has a live message with receipts (or one on its
    /// way to the store). Every other call is made only when this is
    /// `true`; it must be cheap.
    fn watches(&self, stream: &StreamKey) -> bool;

    /// A reliable push with receipts is about to be appended to
    /// `streams`: watch them from now on (acks that race the append are
    /// remembered). Matched by one [`stored`](Self::stored) or
    /// [`abandon`](Self::abandon).
    fn begin(&self, streams: &[StreamKey]);

    /// The push of [`begin`](Self::begin) is stored: `message_id`, its
    /// places (one per stream, in the order of `begin`), its expiry.
    fn stored(&self, message_id: u64, places: Vec<ReceiptPlace>, expires_at_ms: u64);

    /// The push of [`begin`](Self::begin) failed: nothing was stored.
    fn abandon(&self, streams: &[StreamKey]);

    /// A transient push with receipts is about to be routed (registers
    /// the message for the status query).
    fn transient_pushed(&self, app: &str, biz: &str, message_id: u64);

    /// `device` logged in to `stream`; its position is `acked_seq`.
    fn login(&self, stream: &StreamKey, device: &str, acked_seq: u64);

    /// Message `seq` of `stream` was written to `device`'s connection.
    fn delivered(&self, stream: &StreamKey, device: &str, seq: u64);

    /// `device` acknowledged `stream` up to `seq` (cumulative).
    fn acked(&self, stream: &StreamKey, device: &str, seq: u64);

    /// A transient message with receipts met a login.
    fn transient(&self, receipt: TransientReceipt);
}

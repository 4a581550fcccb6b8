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
    /// The message id (transient range, unique across a cluster's nodes:
    /// [`transient_node_part`](super::transient_node_part)).
    pub message_id: u64,
    /// App, business and alias of the login.
    pub stream: StreamKey,
    /// The device of the connection.
    pub device: String,
    /// Written to the connection's channel (`false`: its window refused
    /// it and it was dropped).
    pub delivered: bool,
}

/// A reliable message whose log record says it wants receipts, as a node
/// serving it finds it ([`ReceiptHook::adopt`]): what a node that did not
/// take the push knows of it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ReceiptMessage {
    /// The push's message id.
    pub message_id: u64,
    /// Its sequence number in the stream it was read from.
    pub seq: u64,
    /// When it expires, unix milliseconds.
    pub expires_at_ms: u64,
}

/// What one device did with a receipt message, as one node saw it (times
/// are unix milliseconds on that node).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct DeviceReceipts {
    /// The alias it was logged in as.
    pub alias: String,
    /// The device id.
    pub device: String,
    /// Written to its connection.
    pub delivered_at: Option<u64>,
    /// Acknowledged.
    pub acked_at: Option<u64>,
    /// Expired unacknowledged.
    pub expired_at: Option<u64>,
    /// Dropped (transient).
    pub dropped_at: Option<u64>,
}

/// One node's record of a receipt message ([`ReceiptHook::status`]); the
/// status query merges those of every node.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct MessageStatus {
    /// The message id.
    pub message_id: u64,
    /// Business id.
    pub biz: String,
    /// Stored (reliable) or transient.
    pub reliable: bool,
    /// When the node made its record, unix ms (the push on the node that
    /// took it; the first delivery on another).
    pub created_at_ms: u64,
    /// When the message expires (reliable; the push time for transient).
    pub expires_at_ms: u64,
    /// The node made its expiry notices.
    pub expired: bool,
    /// The devices the node knows, in the order they became known.
    pub devices: Vec<DeviceReceipts>,
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

    /// A transient message with receipts met a login. In a cluster this
    /// node may not have taken the push (the flag travelled with the live
    /// message): the hook makes its record of the message then, if it has
    /// none and there is room (`docs/receipts.md`, "Cluster mode").
    fn transient(&self, receipt: TransientReceipt);

    /// A connection is about to write `message` of `stream`, whose log
    /// record says it wants receipts, though this node may not have taken
    /// the push (a cluster): the hook makes its record of it if it has
    /// none (and there is room), and watches `stream` from then on. Called
    /// before [`watches`](Self::watches) for that write. The default does
    /// nothing.
    fn adopt(&self, stream: &StreamKey, message: &ReceiptMessage) {
        let _ = (stream, message);
    }

    /// This node's record of `message_id`, if it has one and it is `app`'s
    /// (the status query, `ViewQuery::MessageStatus`). The default: none.
    fn status(&self, app: &str, message_id: u64) -> Option<MessageStatus> {
        let _ = (app, message_id);
        None
    }
}

impl MessageStatus {
    /// Devices known that neither acked nor expired (transient: neither
    /// got it nor dropped it).
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

    /// The records of several nodes as one (`None`: no node had one): the
    /// devices are the union by (alias, device), in the order of the
    /// records, each event at the earliest time a node saw it; the record
    /// was made at the earliest, expires at the latest, is reliable and
    /// expired if any node says so. The devices are at most the sum of the
    /// records' (each node bounds its own).
    pub fn merge(records: impl IntoIterator<Item = Self>) -> Option<Self> {
        fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let mut records = records.into_iter();
        let mut merged = records.next()?;
        let mut at: std::collections::HashMap<(String, String), usize> = merged
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| ((d.alias.clone(), d.device.clone()), i))
            .collect();
        for record in records {
            merged.created_at_ms = merged.created_at_ms.min(record.created_at_ms);
            merged.expires_at_ms = merged.expires_at_ms.max(record.expires_at_ms);
            merged.reliable |= record.reliable;
            merged.expired |= record.expired;
            for d in record.devices {
                let key = (d.alias.clone(), d.device.clone());
                match at.get(&key).and_then(|&i| merged.devices.get_mut(i)) {
                    Some(m) => {
                        m.delivered_at = earliest(m.delivered_at, d.delivered_at);
                        m.acked_at = earliest(m.acked_at, d.acked_at);
                        m.expired_at = earliest(m.expired_at, d.expired_at);
                        m.dropped_at = earliest(m.dropped_at, d.dropped_at);
                    }
                    None => {
                        at.insert(key, merged.devices.len());
                        merged.devices.push(d);
                    }
                }
            }
        }
        Some(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, delivered: Option<u64>, acked: Option<u64>) -> DeviceReceipts {
        DeviceReceipts {
            alias: "u1".into(),
            device: name.into(),
            delivered_at: delivered,
            acked_at: acked,
            ..DeviceReceipts::default()
        }
    }

    fn record(created: u64, devices: Vec<DeviceReceipts>) -> MessageStatus {
        MessageStatus {
            message_id: 7,
            biz: "chat".into(),
            reliable: true,
            created_at_ms: created,
            expires_at_ms: 1_000,
            expired: false,
            devices,
        }
    }

    #[test]
    fn merging_unions_devices_and_keeps_the_earliest_times() {
        assert_eq!(MessageStatus::merge(Vec::new()), None);
        // The pushing node knows d1 (an old login); d2 was served by
        // another node, which also saw d1 acked later.
        let a = record(10, vec![device("d1", None, None)]);
        let b = record(
            12,
            vec![
                device("d2", Some(13), Some(14)),
                device("d1", Some(15), None),
            ],
        );
        let c = record(11, vec![device("d2", Some(20), Some(21))]);
        let merged = MessageStatus::merge([a, b, c]).expect("merged");
        assert_eq!(merged.created_at_ms, 10);
        assert_eq!(
            merged.devices,
            vec![
                device("d1", Some(15), None),
                device("d2", Some(13), Some(14))
            ]
        );
        assert_eq!(merged.pending(), 1);
    }
}

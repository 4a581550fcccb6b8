//! A stored downlink message and the `Pike-*` headers it carries (plan §4.3).

use async_nats::HeaderMap;
use bytes::Bytes;

/// Per-alias sequence number (dense: 1, 2, 3, ...).
pub(crate) const PIKE_SEQ: &str = "Pike-Seq";
/// The push's message id.
pub(crate) const PIKE_MSG: &str = "Pike-Msg";
/// Priority (omitted when 0).
pub(crate) const PIKE_PRIO: &str = "Pike-Prio";
/// Expiry, ms since the Unix epoch (omitted when 0 = never).
pub(crate) const PIKE_EXP: &str = "Pike-Exp";
/// `1`: the push asked for delivery receipts (`docs/receipts.md`, "Cluster
/// mode"); absent (records written before it existed): no receipts.
pub(crate) const PIKE_RECEIPT: &str = "Pike-Rcpt";
/// Marks a transient (not stored) live message.
pub(crate) const PIKE_TRANSIENT: &str = "Pike-Transient";
/// Stream sequence of a republished or directly read message.
pub(crate) const NATS_SEQUENCE: &str = "Nats-Sequence";
/// Stream sequence of the previous message on the same subject (republish).
pub(crate) const NATS_LAST_SEQUENCE: &str = "Nats-Last-Sequence";

/// What the gateway attaches to a reliable message besides its payload.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct MessageMeta {
    /// The push's message id (shared by every alias of one push).
    pub message_id: u64,
    /// Delivery priority; 0 is the default.
    pub priority: u32,
    /// When the message expires, ms since the Unix epoch; 0 = never. Readers
    /// skip expired messages; the log keeps them until `max_age` (an expiry
    /// inside JetStream would make the alias's last sequence go back).
    pub expires_at_ms: u64,
    /// The push asked for delivery receipts: every node that serves the
    /// message reports them (header `Pike-Rcpt: 1`, omitted when false; a
    /// record without it reads `false`).
    pub receipt: bool,
}

/// One message of an alias stream, as read or as republished live.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LogMessage {
    /// Per-alias sequence number (`Pike-Seq`).
    pub seq: u64,
    /// Engine cursor: the JetStream stream sequence. Reads resume after it.
    pub cursor: u64,
    /// Priority, message id, expiry.
    pub meta: MessageMeta,
    /// The payload as appended.
    pub payload: Bytes,
}

pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.as_str().trim().parse().ok()
}

impl MessageMeta {
    /// Reads the `Pike-*` headers (absent ones are 0).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            message_id: header_u64(headers, PIKE_MSG).unwrap_or(0),
            priority: header_u64(headers, PIKE_PRIO)
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0),
            expires_at_ms: header_u64(headers, PIKE_EXP).unwrap_or(0),
            receipt: header_u64(headers, PIKE_RECEIPT) == Some(1),
        }
    }

    /// Writes the `Pike-*` headers (zeros omitted).
    pub(crate) fn to_headers(self, headers: &mut HeaderMap) {
        headers.insert(PIKE_MSG, self.message_id.to_string().as_str());
        if self.priority != 0 {
            headers.insert(PIKE_PRIO, self.priority.to_string().as_str());
        }
        if self.expires_at_ms != 0 {
            headers.insert(PIKE_EXP, self.expires_at_ms.to_string().as_str());
        }
        if self.receipt {
            headers.insert(PIKE_RECEIPT, "1");
        }
    }
}

impl LogMessage {
    /// A stored message from its stream sequence, headers and payload;
    /// `None` when it has no `Pike-Seq` (not written by this crate).
    pub(crate) fn parse(cursor: u64, headers: &HeaderMap, payload: Bytes) -> Option<Self> {
        Some(Self {
            seq: header_u64(headers, PIKE_SEQ).filter(|s| *s != 0)?,
            cursor,
            meta: MessageMeta::from_headers(headers),
            payload,
        })
    }

    /// True when `expires_at_ms` is set and not after `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.meta.expires_at_ms != 0 && self.meta.expires_at_ms <= now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receipt_flag_round_trips_and_old_records_have_none() {
        let meta = MessageMeta {
            message_id: 7,
            priority: 2,
            expires_at_ms: 99,
            receipt: true,
        };
        let mut headers = HeaderMap::new();
        meta.to_headers(&mut headers);
        assert_eq!(MessageMeta::from_headers(&headers), meta);
        let plain = MessageMeta {
            receipt: false,
            ..meta
        };
        let mut headers = HeaderMap::new();
        plain.to_headers(&mut headers);
        assert!(headers.get(PIKE_RECEIPT).is_none(), "omitted when false");
        assert_eq!(MessageMeta::from_headers(&headers), plain);
        // A record written before the flag existed: its headers only.
        let mut old = HeaderMap::new();
        old.insert(PIKE_SEQ, "3");
        old.insert(PIKE_MSG, "7");
        old.insert(PIKE_EXP, "99");
        let parsed = LogMessage::parse(12, &old, Bytes::from_static(b"x")).expect("parsed");
        assert!(!parsed.meta.receipt);
        assert_eq!(parsed.meta.message_id, 7);
        // Anything but `1` is no receipt.
        let mut odd = HeaderMap::new();
        odd.insert(PIKE_RECEIPT, "yes");
        assert!(!MessageMeta::from_headers(&odd).receipt);
    }
}

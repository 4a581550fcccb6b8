//! The receipt event a backend receives (`docs/receipts.md`).

use serde::{Deserialize, Serialize};

/// What happened to a message for one device.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptKind {
    /// Written to the device's connection.
    Delivered,
    /// Acknowledged by the device (reliable messages).
    Acked,
    /// Expired before the device acknowledged it (reliable messages).
    Expired,
    /// Could not be written to the device's connection (transient
    /// messages whose window was full).
    Dropped,
}

impl ReceiptKind {
    /// The name on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Acked => "acked",
            Self::Expired => "expired",
            Self::Dropped => "dropped",
        }
    }
}

/// One receipt: a message, a device, an event.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ReceiptEvent {
    /// The message id, as a decimal string (as `POST /v1/push` answers it).
    pub message_id: String,
    /// App id.
    pub app: String,
    /// Business id.
    pub biz: String,
    /// The alias the device was logged in as.
    pub alias: String,
    /// The device id.
    pub device: String,
    /// What happened.
    pub event: ReceiptKind,
    /// When, unix milliseconds (gateway clock).
    pub at: u64,
}

/// The body of a receipt webhook request.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ReceiptBatch {
    /// The receipts, oldest first.
    pub receipts: Vec<ReceiptEvent>,
}

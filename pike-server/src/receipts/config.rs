//! `[receipts]`: the bounds of the status table and of the receipt
//! webhooks' queues (`docs/config.md`, `docs/receipts.md`). The per-business
//! keys (`receipt_webhook`, `receipts_default`) are in `[[apps.biz]]`.

use serde::{Deserialize, Serialize};

/// Largest `max_messages`.
pub const MAX_TRACKED_MESSAGES: usize = 10_000_000;
/// Largest `max_devices_per_message`.
pub const MAX_DEVICES_PER_MESSAGE: usize = 100_000;
/// Largest `max_batch`.
pub const MAX_RECEIPT_BATCH: usize = 10_000;
/// Largest `max_queue`.
pub const MAX_RECEIPT_QUEUE: usize = 10_000_000;

/// The `[receipts]` section.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptsSection {
    /// Most messages with a status record on this node (default 100,000;
    /// 1 to [`MAX_TRACKED_MESSAGES`]). A receipt push beyond it is pushed
    /// without receipts and counted.
    pub max_messages: usize,
    /// Most devices recorded per message (default 1,000; 1 to
    /// [`MAX_DEVICES_PER_MESSAGE`]).
    pub max_devices_per_message: usize,
    /// How long a record is kept after the message expired (reliable) or
    /// was pushed (transient), seconds (default 3,600).
    pub retention_secs: u64,
    /// How often status changes are written to `receipts.redb`,
    /// milliseconds (default 200; 10 to 10,000).
    pub flush_ms: u64,
    /// Most receipts per webhook request (default 256; 1 to
    /// [`MAX_RECEIPT_BATCH`]).
    pub max_batch: usize,
    /// Longest a receipt waits for its batch, milliseconds (default 200;
    /// 0 to 60,000).
    pub max_delay_ms: u64,
    /// Attempts per batch before it is dropped (default 8; 1 to 100).
    pub max_attempts: u32,
    /// Most receipts waiting per business (default 10,000; 1 to
    /// [`MAX_RECEIPT_QUEUE`]); a receipt that finds it full is dropped.
    pub max_queue: usize,
}

impl Default for ReceiptsSection {
    fn default() -> Self {
        Self {
            max_messages: 100_000,
            max_devices_per_message: 1_000,
            retention_secs: 3_600,
            flush_ms: 200,
            max_batch: 256,
            max_delay_ms: 200,
            max_attempts: 8,
            max_queue: 10_000,
        }
    }
}

impl ReceiptsSection {
    /// Why the section is invalid, if it is.
    pub fn check(&self) -> Result<(), String> {
        let within = |name: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("receipts.{name} = {v} is not within {lo}..={hi}"))
            }
        };
        within(
            "max_messages",
            self.max_messages as u64,
            1,
            MAX_TRACKED_MESSAGES as u64,
        )?;
        within(
            "max_devices_per_message",
            self.max_devices_per_message as u64,
            1,
            MAX_DEVICES_PER_MESSAGE as u64,
        )?;
        within(
            "retention_secs",
            self.retention_secs,
            0,
            10 * 365 * 24 * 3600,
        )?;
        within("flush_ms", self.flush_ms, 10, 10_000)?;
        within(
            "max_batch",
            self.max_batch as u64,
            1,
            MAX_RECEIPT_BATCH as u64,
        )?;
        within("max_delay_ms", self.max_delay_ms, 0, 60_000)?;
        within("max_attempts", u64::from(self.max_attempts), 1, 100)?;
        within(
            "max_queue",
            self.max_queue as u64,
            1,
            MAX_RECEIPT_QUEUE as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bounds_are_checked() {
        assert!(ReceiptsSection::default().check().is_ok());
        let zero = ReceiptsSection {
            max_queue: 0,
            ..ReceiptsSection::default()
        };
        assert!(zero.check().is_err());
        let slow = ReceiptsSection {
            flush_ms: 60_000,
            ..ReceiptsSection::default()
        };
        assert!(slow.check().is_err());
    }
}

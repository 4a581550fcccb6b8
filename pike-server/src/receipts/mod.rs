//! Delivery receipts and message status for backends (`docs/receipts.md`):
//! the gateway's [`ReceiptHook`](pike_api::server::ReceiptHook)
//! ([`Receipts`]), the status table, its ledger on disk, and the batched
//! receipt webhook of each business.

mod config;
mod event;
mod ledger;
mod sender;
mod status;
mod tracker;

pub use config::{
    MAX_DEVICES_PER_MESSAGE, MAX_RECEIPT_BATCH, MAX_RECEIPT_QUEUE, MAX_TRACKED_MESSAGES,
    ReceiptsSection,
};
pub use event::{ReceiptBatch, ReceiptEvent, ReceiptKind};
pub use ledger::{Ledger, LedgerError};
pub use sender::{FIRST_BACKOFF, MAX_BACKOFF};
pub use status::{DeviceStatus, Record};
pub use tracker::{MAX_EXPIRY_CHECKS, Receipts};

/// The ledger's file name in the data dir.
pub const LEDGER_FILE: &str = "receipts.redb";

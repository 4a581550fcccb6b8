//! [`Receipts`]: the gateway's [`ReceiptHook`]. It keeps the status table
//! behind a lock, hands each new event to its business's sender, writes
//! the table to the ledger every `flush_ms`, and makes the expiry notices.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use pike_api::server::PushHandle;

use pike_api::server::{
    DeviceReceipts, MessageStatus, ReceiptHook, ReceiptMessage, ReceiptPlace, StreamKey,
    TransientReceipt,
};
use tokio_util::sync::CancellationToken;

use super::config::ReceiptsSection;
use super::ledger::Ledger;
use super::sender::{BizSender, SenderConfig};
use super::status::{Changes, Record, StatusLimits, StatusTable};
use crate::apps::AppDirectory;
use crate::metric_families::{
    RECEIPTS_DROPPED_TOTAL, RECEIPTS_EVENTS_TOTAL, RECEIPTS_TRACKED, RECEIPTS_UNTRACKED_TOTAL,
};
use crate::unix_ms;

/// How often expiry notices are made.
const TICK: Duration = Duration::from_secs(1);
/// Most devices whose stored position one expiry scan reads before its
/// notices (the rest get `expired` unchecked; `docs/receipts.md`).
pub const MAX_EXPIRY_CHECKS: usize = 1_000;
/// Position reads of one scan at a time.
const CHECKS_AT_ONCE: usize = 16;
/// How long one scan's position reads may take in all: a read not done
/// by then counts as not acked.
const CHECKS_WITHIN: Duration = Duration::from_secs(2);

/// Receipts of one gateway node.
#[derive(Debug)]
pub struct Receipts {
    table: Mutex<StatusTable>,
    /// `table.watched()`, readable without the lock: 0 makes every hook
    /// call one atomic load.
    watched: AtomicUsize,
    /// Per (app, biz): whether pushes ask for receipts by default, and the
    /// webhook sender if the business has one.
    bizs: HashMap<(String, String), BizReceipts>,
    ledger: Option<Ledger>,
    flush_every: Duration,
    /// Reads devices' stored positions before expiry notices (set once the
    /// gateway is bound; unset: no check).
    positions: OnceLock<PushHandle>,
}

#[derive(Debug)]
struct BizReceipts {
    default: bool,
    sender: Option<Arc<BizSender>>,
}

impl Receipts {
    /// Receipts for the businesses of `apps`, with the table of `ledger`
    /// (none: in memory only).
    pub fn new(config: &ReceiptsSection, apps: &AppDirectory, ledger: Option<Ledger>) -> Self {
        let limits = StatusLimits {
            max_messages: config.max_messages,
            max_devices: config.max_devices_per_message,
            retention_ms: config.retention_secs.saturating_mul(1_000),
        };
        let records = match ledger.as_ref().map(Ledger::load) {
            Some(Ok(records)) => records,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "receipt ledger not read: receipts start empty");
                Vec::new()
            }
            None => Vec::new(),
        };
        let table = StatusTable::restore(limits, records);
        let mut bizs = HashMap::new();
        for app in apps.iter() {
            for biz in &app.biz {
                let sender = biz.receipt_webhook.as_ref().map(|url| {
                    Arc::new(BizSender::new(SenderConfig {
                        url: url.clone(),
                        app: app.id.clone(),
                        biz: biz.id.clone(),
                        timeout: Duration::from_millis(biz.webhook_timeout_ms),
                        max_batch: config.max_batch,
                        max_delay: Duration::from_millis(config.max_delay_ms),
                        max_attempts: config.max_attempts,
                        max_queue: config.max_queue,
                    }))
                });
                bizs.insert(
                    (app.id.clone(), biz.id.clone()),
                    BizReceipts {
                        default: biz.receipts_default,
                        sender,
                    },
                );
            }
        }
        metrics::gauge!(RECEIPTS_TRACKED).set(table.len() as f64);
        Self {
            watched: AtomicUsize::new(table.watched()),
            table: Mutex::new(table),
            bizs,
            ledger,
            flush_every: Duration::from_millis(config.flush_ms),
            positions: OnceLock::new(),
        }
    }

    /// Whether a push to `biz` of `app` asks for receipts: its own
    /// `receipt` if it says, else the business's `receipts_default`.
    pub fn wanted(&self, app: &str, biz: &str, asked: Option<bool>) -> bool {
        asked.unwrap_or_else(|| {
            self.bizs
                .get(&(app.to_owned(), biz.to_owned()))
                .is_some_and(|b| b.default)
        })
    }

    /// This node's record of `message_id` if it is `app`'s (the status
    /// query merges every node's: [`ReceiptHook::status`]).
    pub fn record(&self, app: &str, message_id: u64) -> Option<Record> {
        self.lock().get(app, message_id).cloned()
    }

    /// From now on the expiry scan reads, through `push`, the stored
    /// position of each device it would tell `expired` (at most
    /// [`MAX_EXPIRY_CHECKS`] per scan): one whose position covers the
    /// message acked it on another cluster node and gets `acked` instead.
    /// A second call changes nothing.
    pub fn check_positions(&self, push: PushHandle) {
        let _ = self.positions.set(push);
    }

    /// Starts the senders and the task that flushes the table and makes
    /// expiry notices; it flushes once more when `shutdown` fires, then
    /// ends.
    pub fn spawn(
        self: &Arc<Self>,
        client: reqwest::Client,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        for sender in self.bizs.values().filter_map(|b| b.sender.clone()) {
            tokio::spawn(sender.run(client.clone(), shutdown.clone()));
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut flush = tokio::time::interval(me.flush_every);
            loop {
                tokio::select! {
                    _ = tick.tick() => me.expire(unix_ms()).await,
                    _ = flush.tick() => me.flush().await,
                    () = shutdown.cancelled() => break,
                }
            }
            me.flush().await;
        })
    }

    /// Writes what changed to the ledger.
    pub async fn flush(self: &Arc<Self>) {
        if self.ledger.is_none() {
            // Nothing to write; keep the dirty set from growing.
            let _ = self.lock().take_dirty();
            return;
        }
        let (changed, removed) = self.lock().take_dirty();
        if changed.is_empty() && removed.is_empty() {
            return;
        }
        let me = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            me.ledger
                .as_ref()
                .map_or(Ok(()), |ledger| ledger.write(&changed, &removed))
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "receipt ledger write failed"),
            Err(e) => tracing::warn!(error = %e, "receipt ledger write task failed"),
        }
    }

    /// The expiry notices due at `now_ms`, each device's stored position
    /// read first (bounded: [`MAX_EXPIRY_CHECKS`] devices, [`CHECKS_WITHIN`]
    /// in all).
    async fn expire(&self, now_ms: u64) {
        let acked = match self.positions.get() {
            Some(push) => {
                let due = self.lock().due(now_ms, MAX_EXPIRY_CHECKS);
                let deadline = tokio::time::Instant::now() + CHECKS_WITHIN;
                futures_util::stream::iter(due)
                    .map(|d| async move {
                        let read = tokio::time::timeout_at(
                            deadline,
                            push.device_position(d.stream.clone(), d.device.clone()),
                        )
                        .await;
                        match read {
                            Ok(Ok(Some(at))) if at >= d.seq => {
                                Some((d.message_id, d.stream.alias, d.device))
                            }
                            Ok(Ok(_)) => None,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "position read before an expiry notice failed");
                                None
                            }
                            Err(_) => None,
                        }
                    })
                    .buffer_unordered(CHECKS_AT_ONCE)
                    .filter_map(std::future::ready)
                    .collect::<HashSet<_>>()
                    .await
            }
            None => HashSet::new(),
        };
        self.apply(|t| t.tick(now_ms, &acked));
    }

    fn lock(&self) -> MutexGuard<'_, StatusTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` on the table and hands its events on.
    fn apply(&self, change: impl FnOnce(&mut StatusTable) -> Changes) {
        let (changes, watched, tracked) = {
            let mut table = self.lock();
            let changes = change(&mut table);
            (changes, table.watched(), table.len())
        };
        self.watched.store(watched, Ordering::Relaxed);
        metrics::gauge!(RECEIPTS_TRACKED).set(tracked as f64);
        if changes.untracked {
            metrics::counter!(RECEIPTS_UNTRACKED_TOTAL).increment(1);
        }
        if changes.devices_refused > 0 {
            metrics::counter!(RECEIPTS_DROPPED_TOTAL, "reason" => "devices")
                .increment(changes.devices_refused);
        }
        for event in changes.events {
            metrics::counter!(RECEIPTS_EVENTS_TOTAL, "event" => event.event.as_str()).increment(1);
            if let Some(sender) = self
                .bizs
                .get(&(event.app.clone(), event.biz.clone()))
                .and_then(|b| b.sender.as_ref())
            {
                sender.send(event);
            }
        }
    }
}

impl ReceiptHook for Receipts {
    fn watches(&self, stream: &StreamKey) -> bool {
        self.watched.load(Ordering::Relaxed) > 0 && self.lock().watches(stream)
    }

    fn begin(&self, streams: &[StreamKey]) {
        self.apply(|t| {
            t.begin(streams);
            Changes::default()
        });
    }

    fn stored(&self, message_id: u64, places: Vec<ReceiptPlace>, expires_at_ms: u64) {
        self.apply(|t| t.stored(message_id, places, expires_at_ms, unix_ms()));
    }

    fn abandon(&self, streams: &[StreamKey]) {
        self.apply(|t| {
            t.abandon(streams);
            Changes::default()
        });
    }

    fn transient_pushed(&self, app: &str, biz: &str, message_id: u64) {
        self.apply(|t| t.transient_pushed(app, biz, message_id, unix_ms()));
    }

    fn login(&self, stream: &StreamKey, device: &str, acked_seq: u64) {
        self.apply(|t| t.login(stream, device, acked_seq, unix_ms()));
    }

    fn delivered(&self, stream: &StreamKey, device: &str, seq: u64) {
        self.apply(|t| t.delivered(stream, device, seq, unix_ms()));
    }

    fn acked(&self, stream: &StreamKey, device: &str, seq: u64) {
        self.apply(|t| t.acked(stream, device, seq, unix_ms()));
    }

    fn transient(&self, receipt: TransientReceipt) {
        self.apply(|t| t.transient(&receipt, unix_ms()));
    }

    fn adopt(&self, stream: &StreamKey, message: &ReceiptMessage) {
        self.apply(|t| t.adopt(stream, message, unix_ms()));
    }

    fn status(&self, app: &str, message_id: u64) -> Option<MessageStatus> {
        self.lock().get(app, message_id).map(message_status)
    }
}

/// A record as the status query's view of one node.
fn message_status(record: &Record) -> MessageStatus {
    MessageStatus {
        message_id: record.message_id,
        biz: record.biz.clone(),
        reliable: record.reliable,
        created_at_ms: record.created_at_ms,
        expires_at_ms: record.expires_at_ms,
        expired: record.expired,
        devices: record
            .devices
            .iter()
            .map(|d| DeviceReceipts {
                alias: d.alias.clone(),
                device: d.device.clone(),
                delivered_at: d.delivered_at,
                acked_at: d.acked_at,
                expired_at: d.expired_at,
                dropped_at: d.dropped_at,
            })
            .collect(),
    }
}

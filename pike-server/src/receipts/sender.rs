//! The receipt webhook of one business: a bounded queue and one task that
//! sends it in batches (`docs/receipts.md`, "The receipt webhook").
//!
//! A batch leaves when `max_batch` receipts wait or `max_delay` after its
//! first one; a failed batch is sent again with exponential backoff, at
//! most `max_attempts` times, then dropped and counted. A receipt that
//! finds the queue full (`max_queue`) is dropped and counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::event::{ReceiptBatch, ReceiptEvent};
use crate::metric_families::{
    RECEIPTS_DROPPED_TOTAL, RECEIPTS_REQUESTS_TOTAL, RECEIPTS_SENT_TOTAL,
};
use crate::webhook::header_value;

/// First wait before a retry; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How one business's receipts are sent.
#[derive(Clone, Debug)]
pub(super) struct SenderConfig {
    /// The receipt webhook.
    pub(super) url: String,
    /// App id (the `Pike-App` header).
    pub(super) app: String,
    /// Business id (the `Pike-Biz` header).
    pub(super) biz: String,
    /// Time a request may take.
    pub(super) timeout: Duration,
    /// Most receipts per request.
    pub(super) max_batch: usize,
    /// Longest a receipt waits for its batch to fill.
    pub(super) max_delay: Duration,
    /// Attempts per batch before it is dropped.
    pub(super) max_attempts: u32,
    /// Most receipts waiting.
    pub(super) max_queue: usize,
}

/// A bounded queue of receipts.
#[derive(Debug)]
pub(super) struct ReceiptQueue {
    waiting: Mutex<VecDeque<ReceiptEvent>>,
    max: usize,
    notify: Notify,
}

impl ReceiptQueue {
    /// A queue of at most `max` receipts (at least 1).
    pub(super) fn new(max: usize) -> Self {
        Self {
            waiting: Mutex::new(VecDeque::new()),
            max: max.max(1),
            notify: Notify::new(),
        }
    }

    /// Queues `event`; `false` (and nothing queued) when the queue is full.
    pub(super) fn push(&self, event: ReceiptEvent) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.len() >= self.max {
            return false;
        }
        waiting.push_back(event);
        drop(waiting);
        // Every push: the sender waits for the first one and, while its
        // batch fills, for the one that fills it.
        self.notify.notify_one();
        true
    }

    /// Receipts waiting.
    pub(super) fn len(&self) -> usize {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes up to `max` receipts, oldest first.
    pub(super) fn take(&self, max: usize) -> Vec<ReceiptEvent> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let n = waiting.len().min(max);
        waiting.drain(..n).collect()
    }
}

/// The wait before attempt `attempt + 1` (`attempt` ≥ 1 failed ones):
/// [`FIRST_BACKOFF`] doubled per failure, at most [`MAX_BACKOFF`], plus up
/// to a quarter of it as jitter (`jitter` in 0..=1).
pub(super) fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 4.0)
}

/// One business's sender: its queue, and the task that empties it.
#[derive(Debug)]
pub(super) struct BizSender {
    config: SenderConfig,
    queue: Arc<ReceiptQueue>,
}

impl BizSender {
    /// A sender; [`run`](Self::run) sends.
    pub(super) fn new(config: SenderConfig) -> Self {
        let queue = Arc::new(ReceiptQueue::new(config.max_queue));
        Self { config, queue }
    }

    /// Queues `event`, or drops and counts it when the queue is full.
    pub(super) fn send(&self, event: ReceiptEvent) {
        if !self.queue.push(event) {
            metrics::counter!(RECEIPTS_DROPPED_TOTAL, "reason" => "queue_full").increment(1);
        }
    }

    /// Sends batches until `shutdown`; then what waits is dropped.
    pub(super) async fn run(self: Arc<Self>, client: reqwest::Client, shutdown: CancellationToken) {
        let c = &self.config;
        loop {
            // Idle until a receipt comes (no timeout needed: the shutdown
            // token ends the wait).
            while self.queue.is_empty() {
                tokio::select! {
                    () = self.queue.notify.notified() => {}
                    () = shutdown.cancelled() => return,
                }
            }
            // Let the batch fill, at most `max_delay`.
            let deadline = tokio::time::Instant::now() + c.max_delay;
            while self.queue.len() < c.max_batch {
                tokio::select! {
                    () = self.queue.notify.notified() => {}
                    () = tokio::time::sleep_until(deadline) => break,
                    () = shutdown.cancelled() => return,
                }
            }
            let batch = self.queue.take(c.max_batch);
            if batch.is_empty() {
                continue;
            }
            self.deliver(&client, batch, &shutdown).await;
        }
    }

    /// Sends one batch, retrying with backoff.
    async fn deliver(
        &self,
        client: &reqwest::Client,
        batch: Vec<ReceiptEvent>,
        shutdown: &CancellationToken,
    ) {
        let c = &self.config;
        let count = batch.len();
        let body = match serde_json::to_vec(&ReceiptBatch { receipts: batch }) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(error = %e, "receipt batch not encoded");
                return;
            }
        };
        for attempt in 1..=c.max_attempts.max(1) {
            match self.post(client, &body, count).await {
                Ok(()) => {
                    metrics::counter!(RECEIPTS_REQUESTS_TOTAL, "result" => "ok").increment(1);
                    metrics::counter!(RECEIPTS_SENT_TOTAL).increment(count as u64);
                    return;
                }
                Err(why) => {
                    metrics::counter!(RECEIPTS_REQUESTS_TOTAL, "result" => "failed").increment(1);
                    tracing::debug!(biz = %c.biz, attempt, error = %why, "receipt webhook failed");
                }
            }
            if attempt == c.max_attempts {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff(attempt, fastrand::f64())) => {}
                () = shutdown.cancelled() => return,
            }
        }
        tracing::warn!(biz = %c.biz, count, "receipt batch dropped after its last attempt");
        metrics::counter!(RECEIPTS_DROPPED_TOTAL, "reason" => "retries").increment(count as u64);
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        body: &[u8],
        count: usize,
    ) -> Result<(), String> {
        let c = &self.config;
        let response = client
            .post(&c.url)
            .timeout(c.timeout)
            .header("content-type", "application/json")
            .header("pike-app", header_value(&c.app))
            .header("pike-biz", header_value(&c.biz))
            .header("pike-receipts", count.to_string())
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("status {}", response.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::event::ReceiptKind;

    fn event(n: u64) -> ReceiptEvent {
        ReceiptEvent {
            message_id: n.to_string(),
            app: "demo".into(),
            biz: "chat".into(),
            alias: "u1".into(),
            device: "d1".into(),
            event: ReceiptKind::Acked,
            at: n,
        }
    }

    #[test]
    fn the_queue_is_bounded_and_keeps_order() {
        let q = ReceiptQueue::new(3);
        for n in 0..3 {
            assert!(q.push(event(n)));
        }
        assert!(!q.push(event(3)), "full");
        assert_eq!(q.len(), 3);
        let taken: Vec<u64> = q.take(2).iter().map(|e| e.at).collect();
        assert_eq!(taken, vec![0, 1]);
        assert!(q.push(event(4)));
        let rest: Vec<u64> = q.take(10).iter().map(|e| e.at).collect();
        assert_eq!(rest, vec![2, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1, 0.0), FIRST_BACKOFF);
        assert_eq!(backoff(2, 0.0), FIRST_BACKOFF * 2);
        assert_eq!(backoff(4, 0.0), FIRST_BACKOFF * 8);
        assert_eq!(backoff(40, 0.0), MAX_BACKOFF);
        assert_eq!(backoff(40, 1.0), MAX_BACKOFF + MAX_BACKOFF / 4);
    }

    /// With paused time: a batch waits at most `max_delay` for more, and
    /// leaves at once when `max_batch` receipts wait. Nothing listens at
    /// the URL: the batch fails, is retried, and is dropped.
    #[tokio::test(start_paused = true)]
    async fn a_batch_leaves_full_or_late() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sender = Arc::new(BizSender::new(SenderConfig {
            url: "http://127.0.0.1:9/receipts".into(),
            app: "demo".into(),
            biz: "chat".into(),
            timeout: Duration::from_millis(50),
            max_batch: 3,
            max_delay: Duration::from_millis(200),
            max_attempts: 1,
            max_queue: 10,
        }));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sender.clone().run(reqwest::Client::new(), shutdown.clone()));
        sender.send(event(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sender.queue.len(), 1, "waits for its batch");
        sender.send(event(2));
        sender.send(event(3));
        for _ in 0..1_000 {
            if sender.queue.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(sender.queue.is_empty(), "a full batch leaves at once");
        shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(10), task).await;
        assert!(ended.is_ok(), "the sender stops at shutdown");
    }
}

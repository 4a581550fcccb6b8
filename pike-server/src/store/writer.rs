//! The writer thread: group commit.
//!
//! Every mutation goes through one bounded queue to one dedicated thread.
//! The thread blocks for the first request, then drains whatever else is
//! queued (up to [`StoreConfig::max_batch`] operations), applies it all in
//! ONE redb write transaction, commits, and only then answers each caller.
//! While a commit is fsyncing, new requests pile up in the queue and go into
//! the next transaction: batching grows with load and costs no added latency
//! when the store is idle. A writer busy with concurrent callers (the last
//! commit held two or more requests or more were waiting when it ended, and
//! the next request arrived within [`BUSY_WITHIN`] of its end) also waits
//! [`StoreConfig::commit_linger`] (2 ms) before committing, so that a steady
//! stream of requests shares fewer fsyncs; a single caller that waits for
//! each answer is never made to wait.
//!
//! A request that fails while being applied (a corrupt value) aborts the
//! transaction; the batch is then re-run one request per transaction so that
//! only the faulty request fails.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use redb::{Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, MessageValue, StreamMeta};
use super::config::{BUSY_WITHIN, StoreConfig};
use super::error::StoreError;
use super::keys::*;
use super::slot::DbSlot;
use super::{Append, Appended, StoreStats, Target, UplinkOutcome};

/// A mutation for the writer.
#[derive(Debug)]
pub(crate) enum Op {
    Append {
        appends: Vec<Append>,
        now_ms: u64,
    },
    SetPosition {
        stream: Vec<u8>,
        device: String,
        seq: u64,
    },
    Tags {
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    },
    TouchAlias {
        app: String,
        biz: String,
        alias: String,
    },
    RecordUplink {
        key: Vec<u8>,
        outcome: UplinkOutcome,
        now_ms: u64,
    },
    Sweep {
        now_ms: u64,
    },
    /// Writes the positions noted in memory (`RedbStore::note_position`),
    /// without an fsync.
    FlushPositions,
    /// Writes the noted positions and makes everything durable.
    Flush,
}

impl Op {
    fn weight(&self) -> usize {
        match self {
            Self::Append { appends, .. } => appends.len().max(1),
            Self::Tags { bind, unbind, .. } => (bind.len() + unbind.len()).max(1),
            _ => 1,
        }
    }

    /// Losing it on a crash only costs redelivery, so it need not fsync.
    fn is_lazy(&self) -> bool {
        matches!(self, Self::SetPosition { .. } | Self::FlushPositions)
    }

    /// Whether applying it writes the positions noted in memory.
    fn writes_noted_positions(&self) -> bool {
        matches!(self, Self::FlushPositions | Self::Flush)
    }
}

/// A successful answer.
#[derive(Debug)]
pub(crate) enum Value {
    Appended(Vec<Appended>),
    Position(u64),
    Tags(Vec<String>),
    Unit,
    Uplink(UplinkOutcome),
    Swept { removed: usize, more: bool },
}

pub(crate) type Reply = oneshot::Sender<Result<Value, StoreError>>;

/// An [`Op`] and where to send its answer.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: Reply,
}

/// Counters shared with [`RedbStore::stats`](super::RedbStore::stats).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    durable_commits: AtomicU64,
    requests: AtomicU64,
    appended: AtomicU64,
    largest_batch: AtomicU64,
    noted_positions_written: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            durable_commits: self.durable_commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            appended: self.appended.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            noted_positions_written: self.noted_positions_written.load(Ordering::Relaxed),
        }
    }
}

/// How the previous commit ended, for the next one's decision to linger.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LastCommit {
    /// When it ended.
    pub(crate) ended: Instant,
    /// Whether it held two or more requests, or more were waiting when it
    /// ended: callers are concurrent. A single caller that waits for each
    /// answer before its next request is never made to wait.
    pub(crate) concurrent: bool,
}

/// Whether the writer waits `linger` before committing a batch of
/// `weight` whose first request arrived at `arrived`: only when the writer
/// is busy with concurrent callers (the previous commit was
/// [`concurrent`](LastCommit::concurrent) and ended less than
/// [`BUSY_WITHIN`] before), the linger is not zero and the batch is not
/// full.
pub(crate) fn lingers(
    last: Option<LastCommit>,
    arrived: Instant,
    linger: std::time::Duration,
    weight: usize,
    max_batch: usize,
) -> bool {
    let busy = last.is_some_and(|last| {
        last.concurrent && arrived.saturating_duration_since(last.ended) < BUSY_WITHIN
    });
    busy && !linger.is_zero() && weight < max_batch
}

/// Why a transaction did not commit.
enum Failure {
    /// While applying a request: the batch can be retried request by request.
    Apply(StoreError),
    /// Beginning or committing the transaction: everyone gets the error.
    Commit(StoreError),
}

/// A device's slot in a stream: (encoded stream key, device id).
pub(crate) type PositionSlot = (Vec<u8>, String);

/// Positions not yet committed, by (stream key, device): those sent to
/// the writer by `RedbStore::set_position` and those noted in memory by
/// `RedbStore::note_position`, which the next `FlushPositions` or `Flush`
/// writes.
#[derive(Debug, Default)]
pub(crate) struct PendingPositions {
    slots: std::sync::Mutex<HashMap<PositionSlot, u64>>,
    /// A `FlushPositions` is scheduled: set by the store when it schedules
    /// one, cleared by the writer before it takes the noted positions (so
    /// that a position noted after that schedules the next one).
    pub(crate) flush_scheduled: std::sync::atomic::AtomicBool,
}

/// Locks `pending` (a poisoned lock is still usable: plain data).
pub(crate) fn lock_pending(
    pending: &PendingPositions,
) -> std::sync::MutexGuard<'_, HashMap<PositionSlot, u64>> {
    pending
        .slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) struct Writer {
    /// Shared with the store: entries removed once their commit is done.
    pub(crate) pending: Arc<PendingPositions>,
    pub(crate) slot: Arc<DbSlot>,
    pub(crate) rx: mpsc::Receiver<Request>,
    pub(crate) config: StoreConfig,
    pub(crate) stats: Arc<Stats>,
    /// Next message id to hand out (shared with `next_message_id`).
    pub(crate) next_message_id: Arc<AtomicU64>,
    /// `next_message_id` as last committed.
    pub(crate) persisted_next_message_id: u64,
    /// Non-durable commits since the last durable one.
    pub(crate) lazy_commits: u32,
    /// Messages appended by the transaction being tried now.
    pub(crate) attempt: Vec<Unstore>,
    /// Messages of transactions that failed with a disk error, removed when
    /// the store reopens (a failed fsync may still have left them on disk).
    pub(crate) unstore: Vec<Unstore>,
    /// Noted positions written by the commits of the batch being done,
    /// forgotten from `pending` once it is.
    pub(crate) committed_positions: Vec<(PositionSlot, u64)>,
}

/// A message appended by a transaction that reported failure: removed on
/// reopen if it is there, so that what the caller was told (not stored)
/// holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unstore {
    stream_id: u64,
    seq: u64,
    message_id: u64,
    expires_at_ms: u64,
}

impl Writer {
    /// Runs until every sender is gone, then makes pending lazy commits
    /// durable.
    #[allow(
        clippy::disallowed_methods,
        reason = "the writer is a thread of its own, never a runtime thread: it may block and read the clock"
    )]
    pub(crate) fn run(mut self) {
        let max_batch = self.config.max_batch();
        let linger = self.config.commit_linger();
        let mut last: Option<LastCommit> = None;
        while let Some(first) = self.rx.blocking_recv() {
            // Busy with concurrent callers (this request arrived while or
            // just after a commit of several ran): a short wait fills the
            // commit, and its fsync, with more of them.
            let arrived = Instant::now();
            let mut weight = first.op.weight();
            let mut batch = vec![first];
            self.drain(&mut batch, &mut weight, max_batch);
            // Only a commit that will fsync has anything to share: a batch
            // of positions alone (acks, committed without an fsync) goes at
            // once, so that a device's next login reads the ack it sent
            // before it reconnected.
            let durable = batch.iter().any(|req| !req.op.is_lazy());
            if durable && lingers(last, arrived, linger, weight, max_batch) {
                std::thread::sleep(linger);
                self.drain(&mut batch, &mut weight, max_batch);
            }
            let requests = batch.len();
            self.commit_batch(batch);
            last = Some(LastCommit {
                ended: Instant::now(),
                concurrent: requests > 1 || !self.rx.is_empty(),
            });
        }
        let noted = !lock_pending(&self.pending).is_empty();
        if (self.lazy_commits > 0 || noted)
            && let Err(Failure::Apply(e) | Failure::Commit(e)) = self.try_commit(&[&Op::Flush])
        {
            tracing::error!(error = %e, "store: final flush failed");
        }
        tracing::debug!("store writer stopped");
    }

    /// Moves queued requests into `batch` until it weighs `max_batch`.
    fn drain(&mut self, batch: &mut Vec<Request>, weight: &mut usize, max_batch: usize) {
        while *weight < max_batch {
            match self.rx.try_recv() {
                Ok(req) => {
                    *weight += req.op.weight();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
    }

    pub(crate) fn commit_batch(&mut self, batch: Vec<Request>) {
        // Whatever the outcome, the batch's positions are no longer in
        // flight once it is done (committed, or failed and answered so).
        let positions: Vec<(Vec<u8>, String, u64)> = batch
            .iter()
            .filter_map(|r| match &r.op {
                Op::SetPosition {
                    stream,
                    device,
                    seq,
                } => Some((stream.clone(), device.clone(), *seq)),
                _ => None,
            })
            .collect();
        let answers = self.commit_batch_ops(batch);
        // Forget the positions before anyone hears of the outcome: a caller
        // that reads a position after its `set_position` answered sees the
        // store (a capped or refused value), never the raw ack in flight.
        // Noted positions are forgotten only once committed (else the next
        // flush tries again), and only if no higher ack came meanwhile.
        let committed = std::mem::take(&mut self.committed_positions);
        if !positions.is_empty() || !committed.is_empty() {
            let mut pending = lock_pending(&self.pending);
            let sent = positions
                .into_iter()
                .map(|(stream, device, seq)| ((stream, device), seq));
            for (slot, seq) in sent.chain(committed) {
                if pending.get(&slot).is_some_and(|&p| p <= seq) {
                    pending.remove(&slot);
                }
            }
        }
        for (reply, result) in answers {
            let _ = reply.send(result);
        }
    }

    /// Commits `batch` and returns each request's answer, unsent.
    fn commit_batch_ops(&mut self, batch: Vec<Request>) -> Vec<(Reply, Result<Value, StoreError>)> {
        let ops: Vec<&Op> = batch.iter().map(|r| &r.op).collect();
        match self.try_commit(&ops) {
            Ok(results) => batch
                .into_iter()
                .zip(results)
                .map(|(req, res)| (req.reply, res))
                .collect(),
            Err(Failure::Apply(e) | Failure::Commit(e)) if is_disk_error(&e) => {
                // redb refuses everything after a failed write or fsync:
                // nothing of the batch is stored; reopen at once.
                tracing::error!(error = %e, requests = batch.len(), "store: disk error, nothing of the batch stored");
                self.recover();
                batch
                    .into_iter()
                    .map(|req| (req.reply, Err(e.clone())))
                    .collect()
            }
            Err(Failure::Apply(e)) if batch.len() > 1 => {
                tracing::warn!(error = %e, requests = batch.len(), "store: batch failed, retrying requests one by one");
                let mut answers = Vec::with_capacity(batch.len());
                for req in batch {
                    let res = match self.try_commit(&[&req.op]) {
                        Ok(mut r) => r.pop().unwrap_or(Err(StoreError::Closed)),
                        Err(Failure::Apply(e) | Failure::Commit(e)) => {
                            if is_disk_error(&e) {
                                self.recover();
                            }
                            Err(e)
                        }
                    };
                    answers.push((req.reply, res));
                }
                answers
            }
            Err(Failure::Apply(e) | Failure::Commit(e)) => {
                if !matches!(e, StoreError::Corrupt { .. }) {
                    tracing::error!(error = %e, "store: commit failed");
                }
                batch
                    .into_iter()
                    .map(|req| (req.reply, Err(e.clone())))
                    .collect()
            }
        }
    }

    /// After a disk error: forgets the failed transaction's appends (to be
    /// removed on reopen) and reopens the store at once.
    fn recover(&mut self) {
        self.unstore.append(&mut self.attempt);
        let unstore = std::mem::take(&mut self.unstore);
        if self
            .slot
            .reopen(&|db| remove_unstored(db, &unstore))
            .is_err()
        {
            self.unstore = unstore;
        }
    }

    /// The open database, reopened first (removing what failed
    /// transactions appended) if a disk error closed it.
    fn database(&mut self) -> Result<Arc<redb::Database>, StoreError> {
        if let Ok(db) = self.slot.get() {
            return Ok(db);
        }
        let unstore = std::mem::take(&mut self.unstore);
        let db = self.slot.get_or_reopen(&|db| remove_unstored(db, &unstore));
        if db.is_err() {
            self.unstore = unstore;
        }
        db
    }

    fn try_commit(&mut self, ops: &[&Op]) -> Result<Vec<Result<Value, StoreError>>, Failure> {
        let durable = ops.iter().any(|op| !op.is_lazy())
            || self.lazy_commits + 1 >= self.config.lazy_commits_per_flush();
        let db = self.database().map_err(Failure::Commit)?;
        self.attempt.clear();
        let mut txn = db.begin_write().map_err(|e| Failure::Commit(e.into()))?;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(|e| Failure::Commit(e.into()))?;
        }
        let mut appended = 0u64;
        let written;
        let (results, next_mid) = {
            let mut batch = Batch::open(&txn, &self.config, &self.next_message_id, &self.pending)
                .map_err(Failure::Apply)?;
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                let res = batch.apply(op).map_err(Failure::Apply)?;
                if let (Op::Append { appends, .. }, Ok(_)) = (op, &res) {
                    appended += appends.len() as u64;
                }
                results.push(res);
            }
            self.attempt = std::mem::take(&mut batch.appended);
            written = std::mem::take(&mut batch.written);
            let next_mid = batch
                .finish(self.persisted_next_message_id)
                .map_err(Failure::Apply)?;
            (results, next_mid)
        };
        txn.commit().map_err(|e| Failure::Commit(e.into()))?;
        self.stats
            .noted_positions_written
            .fetch_add(written.len() as u64, Ordering::Relaxed);
        self.committed_positions.extend(written);
        self.persisted_next_message_id = next_mid;
        self.lazy_commits = if durable { 0 } else { self.lazy_commits + 1 };
        let s = &self.stats;
        s.commits.fetch_add(1, Ordering::Relaxed);
        if durable {
            s.durable_commits.fetch_add(1, Ordering::Relaxed);
        }
        s.requests.fetch_add(ops.len() as u64, Ordering::Relaxed);
        s.appended.fetch_add(appended, Ordering::Relaxed);
        s.largest_batch
            .fetch_max(ops.len() as u64, Ordering::Relaxed);
        Ok(results)
    }
}

/// Removes the messages of failed transactions that are on disk anyway (a
/// commit whose fsync failed can survive in the page cache and be found by
/// the reopen). Their seqs stay used: a device sees a jump, as after an
/// expiry.
fn remove_unstored(db: &redb::Database, unstore: &[Unstore]) -> Result<(), StoreError> {
    if unstore.is_empty() {
        return Ok(());
    }
    let txn = db.begin_write()?;
    let mut removed = 0usize;
    {
        let mut t = Tables::open(&txn)?;
        for u in unstore {
            let found = match t.messages.get((u.stream_id, u.seq))? {
                Some(v) => MessageValue::decode(v.value())?.message_id == u.message_id,
                None => false,
            };
            if !found {
                continue;
            }
            t.messages.remove((u.stream_id, u.seq))?;
            t.message_expiry
                .remove((u.expires_at_ms, u.stream_id, u.seq))?;
            let Some(meta) = t.streams.get(u.stream_id)?.map(|g| g.value().to_vec()) else {
                continue;
            };
            let mut meta = StreamMeta::decode(&meta)?;
            meta.count = meta.count.saturating_sub(1);
            if meta.first_seq == u.seq {
                let next = t
                    .messages
                    .range((u.stream_id, u.seq)..=(u.stream_id, u64::MAX))?
                    .next()
                    .transpose()?
                    .map(|(k, _)| k.value().1);
                meta.first_seq = next.unwrap_or_else(|| meta.last_seq.saturating_add(1));
            }
            t.streams.insert(u.stream_id, meta.encode().as_slice())?;
            removed += 1;
        }
    }
    txn.commit()?;
    if removed > 0 {
        tracing::warn!(removed, "store: removed messages whose commit had failed");
    }
    Ok(())
}

/// Whether `e` is the disk failing (a write, resize or fsync error, or
/// redb refusing work after one), as opposed to bad data or arguments.
fn is_disk_error(e: &StoreError) -> bool {
    match e {
        StoreError::Storage(err) => matches!(**err, redb::Error::Io(_) | redb::Error::PreviousIo),
        StoreError::Unavailable { .. } => true,
        _ => false,
    }
}

/// The tables of one write transaction.
pub(crate) struct Tables<'t> {
    pub(crate) meta: Table<'t, &'static str, u64>,
    pub(crate) stream_ids: Table<'t, &'static [u8], u64>,
    pub(crate) streams: Table<'t, u64, &'static [u8]>,
    pub(crate) messages: Table<'t, (u64, u64), &'static [u8]>,
    pub(crate) message_expiry: Table<'t, (u64, u64, u64), ()>,
    pub(crate) positions: Table<'t, (u64, &'static str), u64>,
    pub(crate) aliases: Table<'t, &'static [u8], ()>,
    pub(crate) alias_tags: Table<'t, &'static [u8], ()>,
    pub(crate) tag_members: Table<'t, &'static [u8], ()>,
    pub(crate) uplinks: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) uplink_expiry: Table<'t, (u64, &'static [u8]), ()>,
}

impl<'t> Tables<'t> {
    /// Opens (creating if needed) every table.
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            meta: txn.open_table(META)?,
            stream_ids: txn.open_table(STREAM_IDS)?,
            streams: txn.open_table(STREAMS)?,
            messages: txn.open_table(MESSAGES)?,
            message_expiry: txn.open_table(MESSAGE_EXPIRY)?,
            positions: txn.open_table(POSITIONS)?,
            aliases: txn.open_table(ALIASES)?,
            alias_tags: txn.open_table(ALIAS_TAGS)?,
            tag_members: txn.open_table(TAG_MEMBERS)?,
            uplinks: txn.open_table(UPLINKS)?,
            uplink_expiry: txn.open_table(UPLINK_EXPIRY)?,
        })
    }
}

/// Keys of `table` in `[prefix ++ after, prefix ++ ∞)` (after excluded),
/// at most `limit`, as the suffixes after `prefix`.
pub(crate) fn scan_suffixes<T>(
    table: &T,
    table_name: &'static str,
    prefix: &[u8],
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError>
where
    T: ReadableTable<&'static [u8], ()>,
{
    use std::ops::Bound;
    let start_key;
    let start = match after {
        Some(a) => {
            let mut k = prefix.to_vec();
            k.extend_from_slice(a.as_bytes());
            start_key = k;
            Bound::Excluded(start_key.as_slice())
        }
        None => Bound::Included(prefix),
    };
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for entry in table.range::<&[u8]>((start, Bound::Unbounded))? {
        let (k, _) = entry?;
        let key = k.value();
        if !key.starts_with(prefix) {
            break;
        }
        out.push(codec::suffix(key, prefix, table_name)?.to_owned());
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// One write transaction's work, with the stream bookkeeping it touched.
struct Batch<'a, 't> {
    t: Tables<'t>,
    config: &'a StoreConfig,
    next_message_id: &'a AtomicU64,
    /// Stream ids known in this transaction (encoded key -> id).
    ids: HashMap<Vec<u8>, u64>,
    /// Stream metadata loaded in this transaction, and whether it changed.
    metas: HashMap<u64, (StreamMeta, bool)>,
    /// Next stream id, once loaded; `true` when changed.
    next_stream_id: Option<(u64, bool)>,
    /// Every message appended in this transaction.
    appended: Vec<Unstore>,
    /// Positions noted in memory, written by this transaction's
    /// `FlushPositions` or `Flush`.
    pending: &'a PendingPositions,
    /// The noted positions this transaction wrote.
    written: Vec<(PositionSlot, u64)>,
    /// Whether this transaction wrote the noted positions already.
    noted_written: bool,
}

impl<'a, 't> Batch<'a, 't> {
    fn open(
        txn: &'t WriteTransaction,
        config: &'a StoreConfig,
        next_message_id: &'a AtomicU64,
        pending: &'a PendingPositions,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            t: Tables::open(txn)?,
            config,
            next_message_id,
            ids: HashMap::new(),
            metas: HashMap::new(),
            next_stream_id: None,
            appended: Vec::new(),
            pending,
            written: Vec::new(),
            noted_written: false,
        })
    }

    /// Writes back what changed; returns the persisted next message id.
    fn finish(mut self, persisted_next_message_id: u64) -> Result<u64, StoreError> {
        for (id, (meta, dirty)) in &self.metas {
            if *dirty {
                self.t.streams.insert(*id, meta.encode().as_slice())?;
            }
        }
        if let Some((next, true)) = self.next_stream_id {
            self.t.meta.insert(META_NEXT_STREAM_ID, next)?;
        }
        let next_mid = self.next_message_id.load(Ordering::SeqCst);
        if next_mid > persisted_next_message_id {
            self.t.meta.insert(META_NEXT_MESSAGE_ID, next_mid)?;
            return Ok(next_mid);
        }
        Ok(persisted_next_message_id)
    }

    /// Outer error: abort the transaction. Inner error: this request is
    /// refused, the transaction goes on (nothing was modified for it).
    fn apply(&mut self, op: &Op) -> Result<Result<Value, StoreError>, StoreError> {
        match op {
            Op::Append { appends, now_ms } => self.append(appends, *now_ms).map(Ok),
            Op::SetPosition {
                stream,
                device,
                seq,
            } => self.set_position(stream, device, *seq).map(Ok),
            Op::Tags {
                app,
                biz,
                alias,
                bind,
                unbind,
            } => self.tags(app, biz, alias, bind, unbind),
            Op::TouchAlias { app, biz, alias } => {
                let key = codec::scoped(&[app, biz], alias);
                if self.t.aliases.get(key.as_slice())?.is_none() {
                    self.t.aliases.insert(key.as_slice(), ())?;
                }
                Ok(Ok(Value::Unit))
            }
            Op::RecordUplink {
                key,
                outcome,
                now_ms,
            } => self.record_uplink(key, outcome, *now_ms).map(Ok),
            Op::Sweep { now_ms } => self.sweep(*now_ms).map(Ok),
            Op::FlushPositions | Op::Flush => {
                debug_assert!(op.writes_noted_positions());
                self.write_noted_positions()?;
                Ok(Ok(Value::Unit))
            }
        }
    }

    /// Writes every position noted in memory (once per transaction), in
    /// key order so that neighbouring rows share their page.
    fn write_noted_positions(&mut self) -> Result<(), StoreError> {
        if self.noted_written {
            return Ok(());
        }
        self.noted_written = true;
        // Cleared before the positions are taken: one noted after this
        // point schedules the next flush.
        self.pending.flush_scheduled.store(false, Ordering::SeqCst);
        let noted: Vec<(PositionSlot, u64)> = lock_pending(self.pending)
            .iter()
            .map(|(slot, seq)| (slot.clone(), *seq))
            .collect();
        let mut rows = Vec::with_capacity(noted.len());
        for (slot, seq) in noted {
            // A stream unknown here has nothing to ack: forgotten as written.
            let id = self.lookup_id(&slot.0)?;
            rows.push((id, slot, seq));
        }
        rows.sort_unstable_by(|a, b| (a.0, &a.1.1).cmp(&(b.0, &b.1.1)));
        for (id, slot, seq) in rows {
            if let Some(id) = id {
                self.set_position_of(id, &slot.1, seq)?;
            }
            self.written.push((slot, seq));
        }
        Ok(())
    }

    fn lookup_id(&mut self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        if let Some(id) = self.ids.get(key) {
            return Ok(Some(*id));
        }
        let id = self.t.stream_ids.get(key)?.map(|g| g.value());
        if let Some(id) = id {
            self.ids.insert(key.to_vec(), id);
        }
        Ok(id)
    }

    fn meta(&mut self, id: u64) -> Result<StreamMeta, StoreError> {
        if let Some((m, _)) = self.metas.get(&id) {
            return Ok(*m);
        }
        let m = match self.t.streams.get(id)? {
            Some(g) => StreamMeta::decode(g.value())?,
            None => {
                return Err(StoreError::corrupt(
                    "streams",
                    format!("stream id {id} has no metadata"),
                ));
            }
        };
        self.metas.insert(id, (m, false));
        Ok(m)
    }

    fn put_meta(&mut self, id: u64, m: StreamMeta) {
        self.metas.insert(id, (m, true));
    }

    /// The id of a stream, created (with its alias registered) if new.
    fn stream_id(&mut self, key: &[u8], stream: &super::StreamKey) -> Result<u64, StoreError> {
        if let Some(id) = self.lookup_id(key)? {
            return Ok(id);
        }
        let (next, _) = match self.next_stream_id {
            Some(n) => n,
            None => (
                self.t
                    .meta
                    .get(META_NEXT_STREAM_ID)?
                    .map_or(1, |g| g.value()),
                false,
            ),
        };
        let id = next;
        let after = next
            .checked_add(1)
            .ok_or_else(|| StoreError::corrupt("meta", "stream ids exhausted"))?;
        self.next_stream_id = Some((after, true));
        self.t.stream_ids.insert(key, id)?;
        self.ids.insert(key.to_vec(), id);
        self.put_meta(id, StreamMeta::NEW);
        if let Target::Alias(alias) = &stream.target {
            let akey = codec::scoped(&[&stream.app, &stream.biz], alias);
            self.t.aliases.insert(akey.as_slice(), ())?;
        }
        Ok(id)
    }

    fn append(&mut self, appends: &[Append], now_ms: u64) -> Result<Value, StoreError> {
        let cap = self.config.max_messages_per_stream();
        let ttl = self.config.default_ttl_ms();
        let mut out = Vec::with_capacity(appends.len());
        for a in appends {
            let key = codec::stream_key(&a.stream);
            let id = self.stream_id(&key, &a.stream)?;
            let mut m = self.meta(id)?;
            let seq = m
                .last_seq
                .checked_add(1)
                .ok_or_else(|| StoreError::corrupt("streams", "sequence numbers exhausted"))?;
            m.last_seq = seq;
            if m.count == 0 {
                m.first_seq = seq;
            }
            m.count += 1;
            let message_id = match a.message_id {
                Some(id) => id,
                None => self.next_message_id.fetch_add(1, Ordering::SeqCst),
            };
            let expires_at_ms = if a.expires_at_ms == 0 {
                now_ms.saturating_add(ttl)
            } else {
                a.expires_at_ms
            };
            let value = MessageValue::encode(message_id, a.priority, expires_at_ms, &a.payload);
            self.t.messages.insert((id, seq), value.as_slice())?;
            self.t.message_expiry.insert((expires_at_ms, id, seq), ())?;
            if m.count > cap {
                self.evict(id, &mut m, cap)?;
            }
            self.put_meta(id, m);
            self.appended.push(Unstore {
                stream_id: id,
                seq,
                message_id,
                expires_at_ms,
            });
            out.push(Appended {
                seq,
                message_id,
                expires_at_ms,
            });
        }
        Ok(Value::Appended(out))
    }

    /// Removes the oldest messages of stream `id` until at most `cap` remain.
    fn evict(&mut self, id: u64, m: &mut StreamMeta, cap: u64) -> Result<(), StoreError> {
        while m.count > cap {
            let oldest = {
                let mut range = self.t.messages.range((id, m.first_seq)..=(id, u64::MAX))?;
                match range.next() {
                    Some(entry) => {
                        let (k, v) = entry?;
                        Some((k.value().1, MessageValue::expires_at(v.value())))
                    }
                    None => None,
                }
            };
            let Some((seq, expires)) = oldest else {
                tracing::warn!(
                    stream_id = id,
                    "store: message count above what is stored; fixed"
                );
                m.count = 0;
                break;
            };
            self.t.messages.remove((id, seq))?;
            match expires {
                Ok(exp) => {
                    self.t.message_expiry.remove((exp, id, seq))?;
                }
                // The sweep drops the orphaned index row when its time comes.
                Err(e) => {
                    tracing::warn!(error = %e, stream_id = id, seq, "store: evicted a corrupt message")
                }
            }
            m.count -= 1;
            m.first_seq = seq + 1;
        }
        self.refresh_first_seq(id, m)
    }

    /// Sets `first_seq` to the lowest stored seq (or `last_seq + 1`).
    fn refresh_first_seq(&mut self, id: u64, m: &mut StreamMeta) -> Result<(), StoreError> {
        if m.count == 0 {
            m.first_seq = m.last_seq + 1;
            return Ok(());
        }
        let first = {
            let mut range = self.t.messages.range((id, m.first_seq)..=(id, u64::MAX))?;
            match range.next() {
                Some(entry) => Some(entry?.0.value().1),
                None => None,
            }
        };
        match first {
            Some(seq) => m.first_seq = seq,
            None => {
                tracing::warn!(
                    stream_id = id,
                    "store: message count above what is stored; fixed"
                );
                m.count = 0;
                m.first_seq = m.last_seq + 1;
            }
        }
        Ok(())
    }

    fn set_position(&mut self, stream: &[u8], device: &str, seq: u64) -> Result<Value, StoreError> {
        let Some(id) = self.lookup_id(stream)? else {
            return Ok(Value::Position(0));
        };
        self.set_position_of(id, device, seq)
    }

    /// [`set_position`](Self::set_position) on the stream of id `id`.
    fn set_position_of(&mut self, id: u64, device: &str, seq: u64) -> Result<Value, StoreError> {
        let m = self.meta(id)?;
        let wanted = seq.min(m.last_seq);
        let current = self.t.positions.get((id, device))?.map(|g| g.value());
        match current {
            Some(cur) if cur >= wanted => Ok(Value::Position(cur)),
            _ => {
                self.t.positions.insert((id, device), wanted)?;
                Ok(Value::Position(wanted))
            }
        }
    }

    fn tags(
        &mut self,
        app: &str,
        biz: &str,
        alias: &str,
        bind: &[String],
        unbind: &[String],
    ) -> Result<Result<Value, StoreError>, StoreError> {
        let max = self.config.max_tags_per_alias();
        let prefix = codec::scope(&[app, biz, alias]);
        let current: BTreeSet<String> =
            scan_suffixes(&self.t.alias_tags, "alias_tags", &prefix, None, usize::MAX)?
                .into_iter()
                .collect();
        let mut next = current.clone();
        next.extend(bind.iter().cloned());
        for t in unbind {
            next.remove(t);
        }
        if next.len() > max && next.len() > current.len() {
            return Ok(Err(StoreError::InvalidArgument(format!(
                "an alias may have at most {max} tags"
            ))));
        }
        for tag in next.difference(&current) {
            let k = codec::scoped(&[app, biz, alias], tag);
            self.t.alias_tags.insert(k.as_slice(), ())?;
            let k = codec::scoped(&[app, biz, tag], alias);
            self.t.tag_members.insert(k.as_slice(), ())?;
        }
        for tag in current.difference(&next) {
            let k = codec::scoped(&[app, biz, alias], tag);
            self.t.alias_tags.remove(k.as_slice())?;
            let k = codec::scoped(&[app, biz, tag], alias);
            self.t.tag_members.remove(k.as_slice())?;
        }
        Ok(Ok(Value::Tags(next.into_iter().collect())))
    }

    fn record_uplink(
        &mut self,
        key: &[u8],
        outcome: &UplinkOutcome,
        now_ms: u64,
    ) -> Result<Value, StoreError> {
        let existing = self
            .t
            .uplinks
            .get(key)?
            .map(|g| codec::decode_uplink(g.value()));
        match existing {
            // First record wins while it lives: a resend gets the same answer.
            Some(Ok((_, expires, kept))) if expires > now_ms => return Ok(Value::Uplink(kept)),
            Some(Ok((_, expires, _))) => {
                self.t.uplink_expiry.remove((expires, key))?;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "store: replacing a corrupt uplink record");
            }
            None => {}
        }
        let expires = now_ms.saturating_add(self.config.uplink_retention_ms());
        let value = codec::encode_uplink(now_ms, expires, outcome);
        self.t.uplinks.insert(key, value.as_slice())?;
        self.t.uplink_expiry.insert((expires, key), ())?;
        Ok(Value::Uplink(outcome.clone()))
    }

    /// Removes up to `sweep_chunk` expired entries (messages first).
    fn sweep(&mut self, now_ms: u64) -> Result<Value, StoreError> {
        let chunk = self.config.sweep_chunk();
        let due: Vec<(u64, u64, u64)> = {
            let mut v = Vec::new();
            for entry in self
                .t
                .message_expiry
                .range(..=(now_ms, u64::MAX, u64::MAX))?
                .take(chunk)
            {
                v.push(entry?.0.value());
            }
            v
        };
        let mut removed = 0usize;
        let mut touched = Vec::new();
        for &(exp, id, seq) in &due {
            self.t.message_expiry.remove((exp, id, seq))?;
            if self.t.messages.remove((id, seq))?.is_some() {
                let mut m = self.meta(id)?;
                m.count = m.count.saturating_sub(1);
                self.put_meta(id, m);
                touched.push(id);
                removed += 1;
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            let mut m = self.meta(id)?;
            self.refresh_first_seq(id, &mut m)?;
            self.put_meta(id, m);
        }
        let budget = chunk - due.len();
        let mut uplinks_due: Vec<(u64, Vec<u8>)> = Vec::new();
        if budget > 0 {
            for entry in self.t.uplink_expiry.range::<(u64, &[u8])>(..)?.take(budget) {
                let (k, _) = entry?;
                let (exp, key) = k.value();
                if exp > now_ms {
                    break;
                }
                uplinks_due.push((exp, key.to_vec()));
            }
            for (exp, key) in &uplinks_due {
                self.t.uplink_expiry.remove((*exp, key.as_slice()))?;
                // An index row left behind by a replaced corrupt record must
                // not delete the record that replaced it.
                let current = self
                    .t
                    .uplinks
                    .get(key.as_slice())?
                    .map(|g| codec::decode_uplink(g.value()).map(|(_, e, _)| e));
                match current {
                    Some(Ok(e)) if e != *exp => {}
                    Some(_) => {
                        self.t.uplinks.remove(key.as_slice())?;
                        removed += 1;
                    }
                    None => {}
                }
            }
        }
        let more = due.len() == chunk || (budget > 0 && uplinks_due.len() == budget);
        Ok(Value::Swept { removed, more })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "one reading as a reference point; every other instant is computed from it"
    )]
    fn only_a_busy_writer_with_concurrent_callers_and_room_lingers() {
        let end = Instant::now();
        let linger = Duration::from_millis(2);
        let soon = end + Duration::from_micros(300);
        let late = end + BUSY_WITHIN + Duration::from_micros(1);
        let busy = Some(LastCommit {
            ended: end,
            concurrent: true,
        });
        assert!(lingers(busy, soon, linger, 1, 1024), "busy");
        assert!(!lingers(None, soon, linger, 1, 1024), "first commit");
        assert!(!lingers(busy, late, linger, 1, 1024), "idle");
        assert!(!lingers(busy, soon, Duration::ZERO, 1, 1024), "off");
        assert!(!lingers(busy, soon, linger, 1024, 1024), "full");
        let sequential = Some(LastCommit {
            ended: end,
            concurrent: false,
        });
        assert!(
            !lingers(sequential, soon, linger, 1, 1024),
            "one caller waiting for each answer"
        );
        // A request that arrived before the last commit ended (it waited
        // in the queue) is busy too.
        let queued = Some(LastCommit {
            ended: soon,
            concurrent: true,
        });
        assert!(lingers(queued, end, linger, 1, 1024));
    }
}

//! [`RedbStore`]: opening, the public operations, and the read path.
//!
//! Reads run on tokio's blocking pool, queued and run back to back by a few
//! reader tasks ([`super::reader`]): a redb read is usually microseconds,
//! but it may fault pages in from disk and a stream read may step over up
//! to `max_messages_per_stream` expired entries, so it never runs on a
//! runtime worker. Called outside a tokio runtime, reads run inline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle,
};
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, MessageValue, StreamMeta};
use super::config::StoreConfig;
use super::error::StoreError;
use super::keys::*;
use super::reader::{ReadFailed, ReadQueue};
use super::slot::{DbSlot, Opener};
use super::writer::{
    Op, PendingPositions, Request, Stats, Tables, Value, Writer, lock_pending, scan_suffixes,
};
use super::{Append, Appended, ReadBatch, StoreStats, StoredMessage, StreamKey, UplinkOutcome};

/// Most messages one [`RedbStore::read`] returns (a larger `max` is
/// lowered to this).
pub const MAX_READ: usize = 10_000;

/// Most names one page of [`RedbStore::aliases`] or
/// [`RedbStore::tag_members`] returns.
pub const MAX_PAGE: usize = 10_000;

/// The gateway's durable store on one redb file.
///
/// Open it once per file ([`open`](Self::open)); share it behind an
/// [`Arc`]. Mutations go to a dedicated writer thread that group-commits
/// them (see the [module docs](super)); reads run on the blocking pool.
/// [`close`](Self::close) flushes and stops the writer; dropping the store
/// does the same but blocks the dropping thread until the writer has
/// finished its queue.
#[derive(Debug)]
pub struct RedbStore {
    reads: Arc<ReadQueue<DbSlot>>,
    path: PathBuf,
    config: StoreConfig,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
    next_message_id: Arc<AtomicU64>,
    epoch: u64,
    /// Positions sent to the writer and not yet committed, by (stream key,
    /// device): a login reads the larger of the stored position and this,
    /// so that the ack a device sent just before it reconnected counts
    /// even while its commit is still queued. The writer removes an entry
    /// once its commit is done; at most [`MAX_PENDING_POSITIONS`].
    pending_positions: Arc<PendingPositions>,
}

/// Most positions in flight remembered for logins (see
/// `RedbStore::set_position`); beyond it the memory starts over.
const MAX_PENDING_POSITIONS: usize = 65_536;

fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::AlreadyOpen {
                path: path.to_owned(),
            }
        }
        DatabaseError::UpgradeRequired(v) => StoreError::InvalidFile {
            path: path.to_owned(),
            detail: format!("redb file format {v} needs an upgrade"),
        },
        // InvalidData: redb's checks failed; UnexpectedEof: the file ends
        // before the pages its header names (a torn or truncated file).
        DatabaseError::Storage(redb::StorageError::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            StoreError::InvalidFile {
                path: path.to_owned(),
                detail: damage_detail(&io),
            }
        }
        DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => StoreError::InvalidFile {
            path: path.to_owned(),
            detail,
        },
        other => StoreError::from(redb::Error::from(other)),
    }
}

/// What an I/O error met while reading a damaged file says, in words an
/// operator can act on.
fn damage_detail(io: &std::io::Error) -> String {
    if io.kind() == std::io::ErrorKind::UnexpectedEof {
        format!("the file ends before the pages its header names (truncated or torn): {io}")
    } else {
        io.to_string()
    }
}

/// Names the file in an error met while checking it at open: a read that
/// finds it damaged there (truncated, a page that fails its checks, a value
/// that does not decode) means the file is not usable, and the operator
/// needs to know which one. Other errors (a full disk) pass unchanged.
fn name_file(path: &Path, e: StoreError) -> StoreError {
    let damaged = |kind: std::io::ErrorKind| {
        matches!(
            kind,
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        )
    };
    match e {
        StoreError::Storage(inner) => match inner.as_ref() {
            redb::Error::Corrupted(detail) => StoreError::InvalidFile {
                path: path.to_owned(),
                detail: detail.clone(),
            },
            redb::Error::Io(io) if damaged(io.kind()) => StoreError::InvalidFile {
                path: path.to_owned(),
                detail: damage_detail(io),
            },
            _ => StoreError::Storage(inner),
        },
        StoreError::Corrupt { table, detail } => StoreError::InvalidFile {
            path: path.to_owned(),
            detail: format!("corrupt data in table {table}: {detail}"),
        },
        other => other,
    }
}

/// Creates the tables and checks the format; returns the next message id
/// and the log's epoch (given one here if the file has none yet).
fn init(db: &Database, path: &Path) -> Result<(u64, u64), StoreError> {
    let invalid = |detail: String| StoreError::InvalidFile {
        path: path.to_owned(),
        detail,
    };
    let txn = db.begin_write()?;
    let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
    if !names.is_empty() && !names.iter().any(|n| n == META.name()) {
        return Err(invalid(format!(
            "a redb database of another application (tables: {})",
            names.join(", ")
        )));
    }
    let next_message_id = {
        let mut tables = Tables::open(&txn).map_err(|e| match e {
            StoreError::Storage(err) => invalid(err.to_string()),
            other => other,
        })?;
        let format = tables.meta.get(META_FORMAT)?.map(|g| g.value());
        match format {
            None if tables.meta.is_empty()? => {
                tables.meta.insert(META_FORMAT, FORMAT_VERSION)?;
                tables.meta.insert(META_NEXT_STREAM_ID, 1)?;
                tables.meta.insert(META_NEXT_MESSAGE_ID, 1)?;
            }
            None => return Err(invalid("store metadata has no format version".into())),
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(StoreError::UnsupportedFormat {
                    path: path.to_owned(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
        }
        let next = tables.meta.get(META_NEXT_MESSAGE_ID)?.map(|g| g.value());
        let next = match next {
            Some(n) if n >= 1 => n,
            _ => return Err(StoreError::corrupt("meta", "missing next_message_id")),
        };
        let stored_epoch = tables.meta.get(META_EPOCH)?.map(|g| g.value());
        let epoch = match stored_epoch {
            Some(epoch) if epoch != 0 => epoch,
            _ => {
                // A new store, or one from before epochs: a log of its own.
                let epoch = fastrand::u64(1..);
                tables.meta.insert(META_EPOCH, epoch)?;
                epoch
            }
        };
        (next, epoch)
    };
    txn.commit()?;
    Ok(next_message_id)
}

/// Runs `f` on a reader (inline outside a tokio runtime) with the database
/// open now.
async fn blocking<T, F>(reads: &Arc<ReadQueue<DbSlot>>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
{
    reads
        .run(move |slot: &DbSlot| f(&*slot.get()?))
        .await
        .map_err(|ReadFailed::Panicked| {
            StoreError::Io(Arc::new(std::io::Error::other("a store read panicked")))
        })?
}

fn unexpected(v: &Value) -> StoreError {
    StoreError::Io(Arc::new(std::io::Error::other(format!(
        "store writer answered with an unexpected value: {v:?}"
    ))))
}

impl RedbStore {
    /// Opens the store file at `path`, creating it (and its parent
    /// directory) and its tables if needed, and starts the writer thread.
    ///
    /// Errors: [`StoreError::AlreadyOpen`] when another process or another
    /// `RedbStore` holds the file; [`StoreError::InvalidFile`] when it is
    /// not a redb file, is damaged beyond repair, or belongs to another
    /// application; [`StoreError::UnsupportedFormat`] for a Pike store of
    /// another format version. After a crash, redb repairs the file here
    /// (a walk of the whole file: seconds per GiB).
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let cache_size = config.cache_size();
        let file = path.clone();
        let opener: Opener = Box::new(move || {
            redb::Builder::new()
                .set_cache_size(cache_size)
                // Verify every page at open: a file damaged outside redb
                // is an error naming the file, not a panic or a silent
                // start on bad data (costs a read of the whole file).
                .set_check_integrity_on_open(true)
                .create(&file)
        });
        Self::open_with(path, config, opener)
    }

    /// [`open`](Self::open) through a backend whose writes and fsyncs the
    /// test fails at will with `faults` (feature `fault-injection`).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn open_with_faults(
        path: impl AsRef<Path>,
        config: StoreConfig,
        faults: super::fault::StoreFaults,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let cache_size = config.cache_size();
        let file = path.clone();
        let opener: Opener = Box::new(move || {
            let handle = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&file)?;
            let backend = super::fault::FaultyFile::new(handle, faults.clone())?;
            redb::Builder::new()
                .set_cache_size(cache_size)
                // Verify every page at open: a file damaged outside redb
                // is an error naming the file, not a panic or a silent
                // start on bad data (costs a read of the whole file).
                .set_check_integrity_on_open(true)
                .create_with_backend(backend)
        });
        Self::open_with(path, config, opener)
    }

    fn open_with(path: PathBuf, config: StoreConfig, opener: Opener) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let db = opener().map_err(|e| open_error(&path, e))?;
        let (next, epoch) = init(&db, &path).map_err(|e| name_file(&path, e))?;
        let slot = Arc::new(DbSlot::new(db, opener, path.clone()));
        let stats = Arc::new(Stats::default());
        let next_message_id = Arc::new(AtomicU64::new(next));
        let (tx, rx) = mpsc::channel(config.queue_capacity());
        let pending_positions = Arc::new(PendingPositions::default());
        let writer = Writer {
            pending: Arc::clone(&pending_positions),
            slot: Arc::clone(&slot),
            rx,
            config: config.clone(),
            stats: Arc::clone(&stats),
            next_message_id: Arc::clone(&next_message_id),
            persisted_next_message_id: next,
            lazy_commits: 0,
            attempt: Vec::new(),
            unstore: Vec::new(),
            committed_positions: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("pike-store-writer".into())
            .spawn(move || writer.run())?;
        tracing::info!(path = %path.display(), "store opened");
        Ok(Self {
            reads: ReadQueue::new(slot),
            path,
            config,
            tx: Some(tx),
            writer: Some(handle),
            stats,
            next_message_id,
            epoch,
            pending_positions,
        })
    }

    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(Vec<u8>, String), u64>> {
        lock_pending(&self.pending_positions)
    }

    /// The position being written for `device` on the stream `key`, if any.
    fn pending_position(&self, key: &[u8], device: &str) -> Option<u64> {
        self.pending()
            .get(&(key.to_vec(), device.to_owned()))
            .copied()
    }

    /// The epoch of this store's log: random and nonzero, written when the
    /// file was created (or first opened by a version with epochs), the
    /// same for the file's whole life.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Writer counters.
    pub fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    async fn request(&self, op: Op) -> Result<Value, StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Request { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Reserves a fresh message id, for appends that must share one id
    /// (pass it as [`Append::message_id`]). Ids are unique and increasing
    /// across restarts for every id that reached the disk; an id reserved
    /// but never appended before a crash may be handed out again.
    pub fn next_message_id(&self) -> u64 {
        self.next_message_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Appends messages, each to the end of its stream, and returns once
    /// they are durable (fsynced).
    ///
    /// `now_ms` (unix milliseconds) resolves `expires_at_ms = 0` to the
    /// default TTL. The whole call is refused with
    /// [`StoreError::InvalidArgument`] (nothing stored) when an identifier
    /// is empty or longer than [`MAX_ID_LEN`](super::MAX_ID_LEN), an
    /// explicit expiry is not after `now_ms`, or a `message_id` was not
    /// handed out by [`next_message_id`](Self::next_message_id). All
    /// messages of one call commit in one transaction. A call whose future
    /// is dropped after it was queued may still be committed.
    pub async fn append(
        &self,
        appends: Vec<Append>,
        now_ms: u64,
    ) -> Result<Vec<Appended>, StoreError> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let issued = self.next_message_id.load(Ordering::SeqCst);
        for a in &appends {
            codec::check_stream(&a.stream)?;
            if a.expires_at_ms != 0 && a.expires_at_ms <= now_ms {
                return Err(StoreError::InvalidArgument(format!(
                    "message expires at {} ms, not after now ({now_ms} ms)",
                    a.expires_at_ms
                )));
            }
            if let Some(id) = a.message_id
                && (id == 0 || id >= issued)
            {
                return Err(StoreError::InvalidArgument(format!(
                    "message id {id} was not handed out by next_message_id"
                )));
            }
        }
        match self.request(Op::Append { appends, now_ms }).await? {
            Value::Appended(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Reads up to `max` (at most [`MAX_READ`]) unexpired messages of
    /// `stream` with `seq > after_seq`, in order, with the stream's
    /// `first_seq` and `last_seq` (an unknown stream reads as empty with
    /// `first_seq = 1`, `last_seq = 0`). `after_seq + 1 < first_seq` means
    /// messages were lost to expiry or eviction ([`ReadBatch::gap`]).
    pub async fn read(
        &self,
        stream: &StreamKey,
        after_seq: u64,
        max: usize,
        now_ms: u64,
    ) -> Result<ReadBatch, StoreError> {
        codec::check_stream(stream)?;
        let key = codec::stream_key(stream);
        let max = max.min(MAX_READ);
        blocking(&self.reads, move |db| {
            read_stream(db, &key, after_seq, max, now_ms)
        })
        .await
    }

    /// Records that `device` has received every message of `stream` up to
    /// `seq` (a cumulative ack) and returns the device's position after the
    /// update. Positions only move up (a lower `seq` is ignored) and never
    /// past the stream's `last_seq`; on an unknown stream nothing is stored
    /// and 0 is returned.
    ///
    /// Committed without fsync (redb `Durability::None`), usually in the
    /// same transaction as other queued work; it becomes durable with the
    /// next durable commit (any append, tag or uplink change, `expire`,
    /// [`flush`](Self::flush), `close`), and at the latest after
    /// [`StoreConfig::lazy_commits_per_flush`] position-only commits. A crash
    /// may thus forget the last acks, which only causes redelivery (the
    /// client dedups on (stream, seq)).
    pub async fn set_position(
        &self,
        stream: &StreamKey,
        device: &str,
        seq: u64,
    ) -> Result<u64, StoreError> {
        codec::check_stream(stream)?;
        codec::check_id("device", device)?;
        let slot = (codec::stream_key(stream), device.to_owned());
        {
            let mut pending = self.pending();
            if pending.len() >= MAX_PENDING_POSITIONS && !pending.contains_key(&slot) {
                // Only futures dropped while the writer's queue was full
                // leave entries behind; start over rather than grow.
                pending.clear();
            }
            let entry = pending.entry(slot.clone()).or_insert(seq);
            *entry = (*entry).max(seq);
        }
        let op = Op::SetPosition {
            stream: slot.0.clone(),
            device: slot.1.clone(),
            seq,
        };
        // The writer forgets the entry once the commit is done, even if
        // this future is dropped first (the request is then still served).
        let answer = self.request(op).await;
        if matches!(answer, Err(StoreError::Closed)) {
            // Never queued: nothing will clear the entry.
            self.pending().remove(&slot);
        }
        match answer? {
            Value::Position(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    /// Notes that `device` has received every message of `stream` up to
    /// `seq` (a cumulative ack), in memory; the store writes it within
    /// [`StoreConfig::position_flush_interval`] (1 s), with every other
    /// position noted meanwhile, in one commit without an fsync, and at
    /// [`flush`](Self::flush) and [`close`](Self::close). Logins and
    /// [`position`](Self::position) see it at once. A crash forgets the
    /// acks of the last interval, which only causes redelivery (the client
    /// dedups on (stream, seq)). As with [`set_position`](Self::set_position),
    /// positions only move up and never past the stream's `last_seq`.
    ///
    /// This is what a gateway calls for each ack: unlike `set_position`,
    /// it costs no request to the writer, and a device acking each message
    /// costs one row written per interval. At most 65,536 positions wait
    /// in memory: a note beyond that first writes them (and waits for it).
    /// With a zero interval it is `set_position`.
    pub async fn note_position(
        &self,
        stream: &StreamKey,
        device: &str,
        seq: u64,
    ) -> Result<(), StoreError> {
        let interval = self.config.position_flush_interval();
        if interval.is_zero() {
            return self.set_position(stream, device, seq).await.map(|_| ());
        }
        codec::check_stream(stream)?;
        codec::check_id("device", device)?;
        let slot = (codec::stream_key(stream), device.to_owned());
        for attempt in 0..2 {
            {
                let mut pending = self.pending();
                if pending.len() < MAX_PENDING_POSITIONS || pending.contains_key(&slot) {
                    let entry = pending.entry(slot).or_insert(seq);
                    *entry = (*entry).max(seq);
                    break;
                }
                if attempt == 1 {
                    // Refilled while the flush ran: start over rather than
                    // grow (those acks cost redelivery at worst).
                    tracing::warn!("store: too many positions waiting; some acks forgotten");
                    pending.clear();
                    pending.insert(slot, seq);
                    break;
                }
            }
            self.flush_positions().await?;
        }
        self.schedule_position_flush(interval);
        Ok(())
    }

    /// Writes the positions noted so far (without an fsync) and returns
    /// once they are committed.
    async fn flush_positions(&self) -> Result<(), StoreError> {
        match self.request(Op::FlushPositions).await? {
            Value::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Makes sure a `FlushPositions` reaches the writer within `interval`.
    fn schedule_position_flush(&self, interval: std::time::Duration) {
        if self
            .pending_positions
            .flush_scheduled
            .swap(true, Ordering::SeqCst)
        {
            return;
        }
        let Some(tx) = self.tx.as_ref().map(mpsc::Sender::downgrade) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to wait on: the next flush, close or drop writes it.
            self.pending_positions
                .flush_scheduled
                .store(false, Ordering::SeqCst);
            return;
        };
        // A weak sender: a closing store is not kept open by the wait.
        runtime.spawn(async move {
            tokio::time::sleep(interval).await;
            if let Some(tx) = tx.upgrade() {
                let (reply, _answer) = oneshot::channel();
                let _ = tx
                    .send(Request {
                        op: Op::FlushPositions,
                        reply,
                    })
                    .await;
            }
        });
    }

    /// The position of `device` on `stream`; `None` for a device that never
    /// acked on it (a first login: deliver from seq 0).
    pub async fn position(
        &self,
        stream: &StreamKey,
        device: &str,
    ) -> Result<Option<u64>, StoreError> {
        codec::check_stream(stream)?;
        codec::check_id("device", device)?;
        let key = codec::stream_key(stream);
        // Read before the store: an entry gone by the time of the read
        // was committed first.
        let pending = self.pending_position(&key, device);
        let device = device.to_owned();
        blocking(&self.reads, move |db| {
            read_position(db, &key, &device, pending)
        })
        .await
    }

    /// What a login needs, with one trip to the blocking pool: the
    /// position of `device` on `stream` (as [`position`](Self::position)),
    /// the first `max` messages after the larger of `last_acked` and that
    /// position (as [`read`](Self::read)), and the alias recorded (as
    /// [`touch_alias`](Self::touch_alias); a known alias costs no commit).
    /// Returns the position, where the read started and the batch.
    #[allow(clippy::too_many_arguments, reason = "the parts of a login")]
    pub async fn login(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
        device: &str,
        last_acked: u64,
        max: usize,
        now_ms: u64,
    ) -> Result<(Option<u64>, u64, ReadBatch), StoreError> {
        let stream = StreamKey::alias(app, biz, alias);
        codec::check_stream(&stream)?;
        codec::check_id("alias", alias)?;
        codec::check_id("device", device)?;
        let key = codec::stream_key(&stream);
        let alias_key = codec::scoped(&[app, biz], alias);
        // An ack still on its way to the disk counts (read before the
        // store: an entry gone by then was committed first).
        let pending = self.pending_position(&key, device);
        let device = device.to_owned();
        let max = max.min(MAX_READ);
        let (position, start_after, batch, known) = blocking(&self.reads, move |db| {
            let position = read_position(db, &key, &device, pending)?;
            let known = {
                let txn = db.begin_read()?;
                let t = txn.open_table(ALIASES)?;
                t.get(alias_key.as_slice())?.is_some()
            };
            let start_after = last_acked.max(position.unwrap_or(0));
            let batch = read_stream(db, &key, start_after, max, now_ms)?;
            Ok((position, start_after, batch, known))
        })
        .await?;
        if !known {
            let op = Op::TouchAlias {
                app: app.to_owned(),
                biz: biz.to_owned(),
                alias: alias.to_owned(),
            };
            match self.request(op).await? {
                Value::Unit => {}
                other => return Err(unexpected(&other)),
            }
        }
        Ok((position, start_after, batch))
    }

    /// Makes everything committed so far durable (one fsynced commit), for
    /// example the lazily committed positions before a planned restart.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self.request(Op::Flush).await? {
            Value::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Binds `bind`, then unbinds `unbind` (a tag in both ends up unbound),
    /// for `alias` of `app`/`biz`, durably; returns all tags bound after
    /// the change, sorted (as the wire's `TagsResult.tags`). Refused with
    /// [`StoreError::InvalidArgument`] when the alias would end with more
    /// than [`StoreConfig::max_tags_per_alias`] tags.
    pub async fn update_tags(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
        bind: &[String],
        unbind: &[String],
    ) -> Result<Vec<String>, StoreError> {
        codec::check_id("app", app)?;
        codec::check_id("biz", biz)?;
        codec::check_id("alias", alias)?;
        for t in bind.iter().chain(unbind) {
            codec::check_id("tag", t)?;
        }
        let op = Op::Tags {
            app: app.to_owned(),
            biz: biz.to_owned(),
            alias: alias.to_owned(),
            bind: bind.to_vec(),
            unbind: unbind.to_vec(),
        };
        match self.request(op).await? {
            Value::Tags(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// Binds tags to an alias; see [`update_tags`](Self::update_tags).
    pub async fn bind_tags(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
        tags: &[String],
    ) -> Result<Vec<String>, StoreError> {
        self.update_tags(app, biz, alias, tags, &[]).await
    }

    /// Unbinds tags from an alias; see [`update_tags`](Self::update_tags).
    pub async fn unbind_tags(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
        tags: &[String],
    ) -> Result<Vec<String>, StoreError> {
        self.update_tags(app, biz, alias, &[], tags).await
    }

    /// Tags bound to `alias`, sorted (at most
    /// [`StoreConfig::max_tags_per_alias`]).
    pub async fn tags_of(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
    ) -> Result<Vec<String>, StoreError> {
        codec::check_id("app", app)?;
        codec::check_id("biz", biz)?;
        codec::check_id("alias", alias)?;
        let prefix = codec::scope(&[app, biz, alias]);
        blocking(&self.reads, move |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(ALIAS_TAGS)?;
            scan_suffixes(&t, "alias_tags", &prefix, None, usize::MAX)
        })
        .await
    }

    /// One page of the aliases bound to `tag`, sorted: at most `limit`
    /// (capped at [`MAX_PAGE`]) aliases strictly after `after` (`None`:
    /// from the start). Page through a large tag by passing the last alias
    /// of a page as the next `after`; an empty page is the end.
    pub async fn tag_members(
        &self,
        app: &str,
        biz: &str,
        tag: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        codec::check_id("app", app)?;
        codec::check_id("biz", biz)?;
        codec::check_id("tag", tag)?;
        let prefix = codec::scope(&[app, biz, tag]);
        self.page(TAG_MEMBERS, "tag_members", prefix, after, limit)
            .await
    }

    /// Records that `alias` exists in `app`/`biz` (call it at login), so
    /// that a push to the whole app reaches it. Idempotent; a known alias
    /// costs a read and no commit. Appending to an alias stream records the
    /// alias too.
    pub async fn touch_alias(&self, app: &str, biz: &str, alias: &str) -> Result<(), StoreError> {
        codec::check_id("app", app)?;
        codec::check_id("biz", biz)?;
        codec::check_id("alias", alias)?;
        let key = codec::scoped(&[app, biz], alias);
        let known = blocking(&self.reads, move |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(ALIASES)?;
            Ok(t.get(key.as_slice())?.is_some())
        })
        .await?;
        if known {
            return Ok(());
        }
        let op = Op::TouchAlias {
            app: app.to_owned(),
            biz: biz.to_owned(),
            alias: alias.to_owned(),
        };
        match self.request(op).await? {
            Value::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// One page of the known aliases of `app`/`biz` (aliases that logged in
    /// or were pushed to), sorted: at most `limit` (capped at [`MAX_PAGE`])
    /// strictly after `after`. Paged like [`tag_members`](Self::tag_members).
    /// Aliases are kept forever.
    pub async fn aliases(
        &self,
        app: &str,
        biz: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        codec::check_id("app", app)?;
        codec::check_id("biz", biz)?;
        let prefix = codec::scope(&[app, biz]);
        self.page(ALIASES, "aliases", prefix, after, limit).await
    }

    async fn page(
        &self,
        table: redb::TableDefinition<'static, &'static [u8], ()>,
        name: &'static str,
        prefix: Vec<u8>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE);
        blocking(&self.reads, move |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(table)?;
            scan_suffixes(&t, name, &prefix, after.as_deref(), limit)
        })
        .await
    }

    /// The recorded outcome of the uplink message `key` of `alias`, if one
    /// was recorded and not yet swept (records live at least
    /// [`StoreConfig::uplink_retention`]).
    pub async fn uplink_outcome(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
        key: &str,
    ) -> Result<Option<UplinkOutcome>, StoreError> {
        let k = uplink_key(app, biz, alias, key)?;
        blocking(&self.reads, move |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(UPLINKS)?;
            match t.get(k.as_slice())? {
                Some(g) => Ok(Some(codec::decode_uplink(g.value())?.2)),
                None => Ok(None),
            }
        })
        .await
    }

    /// Durably records the outcome of uplink message `key` of `alias`
    /// (before the client is acked). If an unexpired record already exists
    /// it is kept (the first outcome wins) and returned; otherwise
    /// `outcome` is stored, to be swept after the uplink retention. Refused
    /// with [`StoreError::InvalidArgument`] when the route id is longer than
    /// [`MAX_ID_LEN`](super::MAX_ID_LEN) or the message longer than 64 KiB.
    pub async fn record_uplink(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
        key: &str,
        outcome: UplinkOutcome,
        now_ms: u64,
    ) -> Result<UplinkOutcome, StoreError> {
        let k = uplink_key(app, biz, alias, key)?;
        if outcome.route_id.len() > codec::MAX_ID_LEN || outcome.message.len() > 64 * 1024 {
            return Err(StoreError::InvalidArgument(
                "uplink outcome route id or message too long".into(),
            ));
        }
        let op = Op::RecordUplink {
            key: k,
            outcome,
            now_ms,
        };
        match self.request(op).await? {
            Value::Uplink(o) => Ok(o),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes every message and uplink record expired at `now_ms`, in
    /// write transactions of at most [`StoreConfig::sweep_chunk`] entries
    /// (appends are committed between chunks), and returns how many were
    /// removed. Call it periodically; reads already skip expired messages.
    pub async fn expire(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut total = 0usize;
        loop {
            match self.request(Op::Sweep { now_ms }).await? {
                Value::Swept { removed, more } => {
                    total += removed;
                    if !more {
                        return Ok(total);
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// Makes everything durable, stops the writer and closes the file.
    pub async fn close(mut self) -> Result<(), StoreError> {
        let flushed = self.flush().await;
        self.tx = None;
        if let Some(handle) = self.writer.take() {
            let joined = match tokio::runtime::Handle::try_current() {
                Ok(h) => h
                    .spawn_blocking(move || handle.join().is_ok())
                    .await
                    .unwrap_or(false),
                Err(_) => handle.join().is_ok(),
            };
            if !joined {
                tracing::error!("store writer thread panicked");
            }
        }
        flushed
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it has committed what is
        // queued (and made lazy commits durable).
        self.tx = None;
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

fn uplink_key(app: &str, biz: &str, alias: &str, key: &str) -> Result<Vec<u8>, StoreError> {
    codec::check_id("app", app)?;
    codec::check_id("biz", biz)?;
    codec::check_id("alias", alias)?;
    codec::check_id("idempotency key", key)?;
    Ok(codec::scope(&[app, biz, alias, key]))
}

/// The position of `device` on the stream `key`: the stored one, raised
/// to `pending` (an ack not written yet) capped at the stream's last seq,
/// as the writer will cap it; `None` for a stream or device never seen.
fn read_position(
    db: &Database,
    key: &[u8],
    device: &str,
    pending: Option<u64>,
) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read()?;
    let ids = txn.open_table(STREAM_IDS)?;
    let Some(id) = ids.get(key)?.map(|g| g.value()) else {
        return Ok(None);
    };
    let positions = txn.open_table(POSITIONS)?;
    let stored = positions.get((id, device))?.map(|g| g.value());
    let Some(pending) = pending else {
        return Ok(stored);
    };
    let streams = txn.open_table(STREAMS)?;
    let last_seq = match streams.get(id)? {
        Some(g) => StreamMeta::decode(g.value())?.last_seq,
        None => 0,
    };
    let pending = Some(pending.min(last_seq)).filter(|&p| p > 0);
    Ok(stored.max(pending))
}

fn read_stream(
    db: &Database,
    key: &[u8],
    after_seq: u64,
    max: usize,
    now_ms: u64,
) -> Result<ReadBatch, StoreError> {
    let txn = db.begin_read()?;
    let ids = txn.open_table(STREAM_IDS)?;
    let Some(id) = ids.get(key)?.map(|g| g.value()) else {
        return Ok(ReadBatch {
            messages: Vec::new(),
            first_seq: 1,
            last_seq: 0,
        });
    };
    let streams = txn.open_table(STREAMS)?;
    let meta = match streams.get(id)? {
        Some(g) => StreamMeta::decode(g.value())?,
        None => {
            return Err(StoreError::corrupt(
                "streams",
                format!("stream id {id} has no metadata"),
            ));
        }
    };
    let messages = txn.open_table(MESSAGES)?;
    let mut first_seq = meta.last_seq.saturating_add(1);
    for entry in messages.range((id, meta.first_seq)..=(id, u64::MAX))? {
        let (k, v) = entry?;
        if MessageValue::expires_at(v.value())? > now_ms {
            first_seq = k.value().1;
            break;
        }
    }
    let mut out = Vec::new();
    let start = after_seq.saturating_add(1).max(first_seq);
    if max > 0 && start <= meta.last_seq {
        for entry in messages.range((id, start)..=(id, u64::MAX))? {
            let (k, v) = entry?;
            let m = MessageValue::decode(v.value())?;
            if m.expires_at_ms <= now_ms {
                continue;
            }
            out.push(StoredMessage {
                seq: k.value().1,
                message_id: m.message_id,
                priority: m.priority,
                expires_at_ms: m.expires_at_ms,
                payload: m.payload,
            });
            if out.len() >= max {
                break;
            }
        }
    }
    Ok(ReadBatch {
        messages: out,
        first_seq,
        last_seq: meta.last_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::Writer;

    fn append_op(alias: &str) -> Op {
        Op::Append {
            appends: vec![Append::new(StreamKey::alias("a", "b", alias), "x")],
            now_ms: 1,
        }
    }

    #[test]
    fn a_failing_request_does_not_fail_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let db = redb::Builder::new().create(&path).unwrap();
        let (next, _epoch) = init(&db, &path).unwrap();
        let reopen_path = path.clone();
        let slot = Arc::new(DbSlot::new(
            db,
            Box::new(move || redb::Builder::new().create(&reopen_path)),
            path.clone(),
        ));
        let db = slot.get().unwrap();
        let (_tx, rx) = mpsc::channel(1);
        let stats = Arc::new(Stats::default());
        let mut w = Writer {
            pending: Arc::default(),
            slot: Arc::clone(&slot),
            rx,
            config: StoreConfig::default(),
            stats: Arc::clone(&stats),
            next_message_id: Arc::new(AtomicU64::new(next)),
            persisted_next_message_id: next,
            lazy_commits: 0,
            attempt: Vec::new(),
            unstore: Vec::new(),
            committed_positions: Vec::new(),
        };
        let (reply, mut rx0) = oneshot::channel();
        w.commit_batch(vec![Request {
            op: append_op("bad"),
            reply,
        }]);
        assert!(matches!(rx0.try_recv(), Ok(Ok(Value::Appended(_)))));
        // Corrupt the metadata of stream 1 ("bad").
        let txn = db.begin_write().unwrap();
        txn.open_table(STREAMS)
            .unwrap()
            .insert(1, &[7u8][..])
            .unwrap();
        txn.commit().unwrap();

        let mut rxs = Vec::new();
        let batch = ["good1", "bad", "good2"]
            .iter()
            .map(|a| {
                let (reply, rx) = oneshot::channel();
                rxs.push(rx);
                Request {
                    op: append_op(a),
                    reply,
                }
            })
            .collect();
        w.commit_batch(batch);
        let res: Vec<_> = rxs.iter_mut().map(|rx| rx.try_recv().unwrap()).collect();
        assert!(matches!(res[0], Ok(Value::Appended(_))), "{res:?}");
        assert!(
            matches!(
                res[1],
                Err(StoreError::Corrupt {
                    table: "streams",
                    ..
                })
            ),
            "{res:?}"
        );
        assert!(matches!(res[2], Ok(Value::Appended(_))), "{res:?}");
        for a in ["good1", "good2"] {
            let key = codec::stream_key(&StreamKey::alias("a", "b", a));
            let b = read_stream(&db, &key, 0, 10, 1).unwrap();
            assert_eq!(b.messages.len(), 1, "{a} committed");
        }
        // First commit, then the batch retried one request per transaction.
        assert_eq!(stats.snapshot().commits, 3);
    }
}

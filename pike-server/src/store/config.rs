//! [`StoreConfig`]: retention, limits and group-commit tuning.

use std::time::Duration;

use super::error::StoreError;

/// Default [`StoreConfig::with_commit_linger`]: 2 ms.
pub const DEFAULT_COMMIT_LINGER: Duration = Duration::from_millis(2);

/// Longest [`StoreConfig::with_commit_linger`]: 100 ms.
pub const MAX_COMMIT_LINGER: Duration = Duration::from_millis(100);

/// Default [`StoreConfig::with_position_flush_interval`]: 1 s.
pub const DEFAULT_POSITION_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Longest [`StoreConfig::with_position_flush_interval`]: 60 s.
pub const MAX_POSITION_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// The writer is busy, and lingers before a commit, when the commit's
/// first request arrived less than this after the previous commit (of
/// concurrent callers) ended.
pub const BUSY_WITHIN: Duration = Duration::from_millis(1);

/// Configuration of a [`RedbStore`](super::RedbStore).
///
/// Built from [`Default`] and adjusted with the validated `with_*` setters,
/// each of which refuses an out-of-range value with
/// [`StoreError::InvalidConfig`]:
///
/// ```
/// use std::time::Duration;
/// use pike_server::store::StoreConfig;
///
/// let config = StoreConfig::default()
///     .with_default_ttl(Duration::from_secs(3600))?
///     .with_max_messages_per_stream(500)?;
/// assert_eq!(config.max_messages_per_stream(), 500);
/// assert!(StoreConfig::default().with_max_messages_per_stream(0).is_err());
/// assert!(StoreConfig::default()
///     .with_commit_linger(Duration::from_millis(101))
///     .is_err());
/// # Ok::<(), pike_server::store::StoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    default_ttl_ms: u64,
    max_messages_per_stream: u64,
    uplink_retention_ms: u64,
    max_batch: usize,
    queue_capacity: usize,
    sweep_chunk: usize,
    lazy_commits_per_flush: u32,
    cache_size: usize,
    max_tags_per_alias: usize,
    commit_linger: Duration,
    position_flush_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            default_ttl_ms: 7 * 24 * 3600 * 1000,
            max_messages_per_stream: 10_000,
            uplink_retention_ms: 24 * 3600 * 1000,
            max_batch: 1024,
            queue_capacity: 8192,
            sweep_chunk: 1024,
            lazy_commits_per_flush: 64,
            cache_size: 64 << 20,
            max_tags_per_alias: 256,
            commit_linger: DEFAULT_COMMIT_LINGER,
            position_flush_interval: DEFAULT_POSITION_FLUSH_INTERVAL,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn check(ok: bool, what: &str) -> Result<(), StoreError> {
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidConfig(what.to_owned()))
    }
}

/// Longest TTL or retention accepted: ten years.
const MAX_RETENTION_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

impl StoreConfig {
    /// Time to live of a reliable message appended with `expires_at_ms = 0`
    /// (default 7 days; 1 s ..= 10 years).
    pub fn with_default_ttl(mut self, ttl: Duration) -> Result<Self, StoreError> {
        let v = ms(ttl);
        check(
            (1000..=MAX_RETENTION_MS).contains(&v),
            "default_ttl must be between 1 s and 10 years",
        )?;
        self.default_ttl_ms = v;
        Ok(self)
    }

    /// Most messages kept per stream; appending beyond evicts the oldest
    /// (default 10 000; 1 ..= 100 000 000).
    pub fn with_max_messages_per_stream(mut self, n: u64) -> Result<Self, StoreError> {
        check(
            (1..=100_000_000).contains(&n),
            "max_messages_per_stream must be between 1 and 100000000",
        )?;
        self.max_messages_per_stream = n;
        Ok(self)
    }

    /// How long an uplink outcome is kept for dedup (default 24 h;
    /// 1 s ..= 10 years).
    pub fn with_uplink_retention(mut self, retention: Duration) -> Result<Self, StoreError> {
        let v = ms(retention);
        check(
            (1000..=MAX_RETENTION_MS).contains(&v),
            "uplink_retention must be between 1 s and 10 years",
        )?;
        self.uplink_retention_ms = v;
        Ok(self)
    }

    /// Most operations (messages appended, positions, tag changes, ...)
    /// committed in one write transaction by the writer (default 1024;
    /// 1 ..= 65 536). 1 disables group commit.
    pub fn with_max_batch(mut self, n: usize) -> Result<Self, StoreError> {
        check(
            (1..=65_536).contains(&n),
            "max_batch must be between 1 and 65536",
        )?;
        self.max_batch = n;
        Ok(self)
    }

    /// Requests that may wait for the writer before callers are held back
    /// (default 8192; 1 ..= 1 048 576).
    pub fn with_queue_capacity(mut self, n: usize) -> Result<Self, StoreError> {
        check(
            (1..=1_048_576).contains(&n),
            "queue_capacity must be between 1 and 1048576",
        )?;
        self.queue_capacity = n;
        Ok(self)
    }

    /// Most expired entries removed per write transaction by
    /// [`expire`](super::RedbStore::expire) (default 1024; 1 ..= 1 000 000).
    pub fn with_sweep_chunk(mut self, n: usize) -> Result<Self, StoreError> {
        check(
            (1..=1_000_000).contains(&n),
            "sweep_chunk must be between 1 and 1000000",
        )?;
        self.sweep_chunk = n;
        Ok(self)
    }

    /// After this many consecutive position-only (non-fsynced) commits the
    /// writer makes the next one durable (default 64; 1 ..= 1 000 000).
    pub fn with_lazy_commits_per_flush(mut self, n: u32) -> Result<Self, StoreError> {
        check(
            (1..=1_000_000).contains(&n),
            "lazy_commits_per_flush must be between 1 and 1000000",
        )?;
        self.lazy_commits_per_flush = n;
        Ok(self)
    }

    /// How long a busy writer waits for more requests before a commit
    /// (default 2 ms; 0 ..= 100 ms; zero turns it off). Only when the
    /// previous commit held two or more requests (or more were waiting
    /// when it ended) and the next commit's first request arrived less
    /// than [`BUSY_WITHIN`] after it ended, and the batch holds a durable
    /// write (a batch of acked positions alone, which does not fsync, goes
    /// at once): an idle store, and a single caller that waits for each
    /// answer, never wait. Each durable
    /// commit costs an fsync, whose CPU cost on a virtual machine
    /// (the exit of the device notification) is ≈ 0.2 ms; with a steady
    /// stream of logins or reliable pushes, a short wait puts several
    /// times more requests in each commit.
    pub fn with_commit_linger(mut self, linger: Duration) -> Result<Self, StoreError> {
        check(
            linger <= MAX_COMMIT_LINGER,
            "commit_linger must be at most 100 ms",
        )?;
        self.commit_linger = linger;
        Ok(self)
    }

    /// How long a device's ack noted with
    /// [`RedbStore::note_position`](super::RedbStore::note_position) may
    /// stay in memory before it is written (default 1 s; at most 60 s;
    /// zero writes each ack at once, as
    /// [`set_position`](super::RedbStore::set_position) does). The acks of
    /// one interval are written together, one row per (stream, device)
    /// however many acks it sent, in one commit without an fsync: with
    /// devices that ack each message, that is one B-tree update per device
    /// per interval instead of one per message. Logins and
    /// [`position`](super::RedbStore::position) see noted acks at once;
    /// a crash forgets at most the last interval's, which only causes
    /// redelivery (the client drops what it already has by (stream, seq)).
    pub fn with_position_flush_interval(mut self, interval: Duration) -> Result<Self, StoreError> {
        check(
            interval <= MAX_POSITION_FLUSH_INTERVAL,
            "position_flush_interval must be at most 60 s",
        )?;
        self.position_flush_interval = interval;
        Ok(self)
    }

    /// redb page cache size in bytes (default 64 MiB; at least 1 MiB).
    pub fn with_cache_size(mut self, bytes: usize) -> Result<Self, StoreError> {
        check(bytes >= 1 << 20, "cache_size must be at least 1 MiB")?;
        self.cache_size = bytes;
        Ok(self)
    }

    /// Most tags one alias may have bound (default 256; 1 ..= 65 536).
    pub fn with_max_tags_per_alias(mut self, n: usize) -> Result<Self, StoreError> {
        check(
            (1..=65_536).contains(&n),
            "max_tags_per_alias must be between 1 and 65536",
        )?;
        self.max_tags_per_alias = n;
        Ok(self)
    }

    /// See [`with_default_ttl`](Self::with_default_ttl).
    pub fn default_ttl(&self) -> Duration {
        Duration::from_millis(self.default_ttl_ms)
    }

    /// See [`with_max_messages_per_stream`](Self::with_max_messages_per_stream).
    pub fn max_messages_per_stream(&self) -> u64 {
        self.max_messages_per_stream
    }

    /// See [`with_uplink_retention`](Self::with_uplink_retention).
    pub fn uplink_retention(&self) -> Duration {
        Duration::from_millis(self.uplink_retention_ms)
    }

    /// See [`with_commit_linger`](Self::with_commit_linger).
    pub fn commit_linger(&self) -> Duration {
        self.commit_linger
    }

    /// See [`with_position_flush_interval`](Self::with_position_flush_interval).
    pub fn position_flush_interval(&self) -> Duration {
        self.position_flush_interval
    }

    /// See [`with_max_batch`](Self::with_max_batch).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// See [`with_queue_capacity`](Self::with_queue_capacity).
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// See [`with_sweep_chunk`](Self::with_sweep_chunk).
    pub fn sweep_chunk(&self) -> usize {
        self.sweep_chunk
    }

    /// See [`with_lazy_commits_per_flush`](Self::with_lazy_commits_per_flush).
    pub fn lazy_commits_per_flush(&self) -> u32 {
        self.lazy_commits_per_flush
    }

    /// See [`with_cache_size`](Self::with_cache_size).
    pub fn cache_size(&self) -> usize {
        self.cache_size
    }

    /// See [`with_max_tags_per_alias`](Self::with_max_tags_per_alias).
    pub fn max_tags_per_alias(&self) -> usize {
        self.max_tags_per_alias
    }

    pub(crate) fn default_ttl_ms(&self) -> u64 {
        self.default_ttl_ms
    }

    pub(crate) fn uplink_retention_ms(&self) -> u64 {
        self.uplink_retention_ms
    }
}

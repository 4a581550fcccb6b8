//! A [`MemoryStore`] whose appends or reads can be held: the store does its
//! work (the commit, the snapshot), then holds its answer while the gate is
//! closed, as a slow fsync or a slow read would. It also tells when a device
//! position was saved.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pike_api::server::{
    Append, Appended, BoxFuture, MemoryStore, ReadBatch, Store, StoreError, StreamKey, UplinkRecord,
};
use tokio::sync::Notify;

/// Holds answers while closed; tells when one is held.
#[derive(Debug, Default)]
pub struct Gate {
    closed: AtomicBool,
    /// Notified when an answer starts being held.
    pub held: Notify,
    opened: Notify,
}

impl Gate {
    /// Answers from now on are held.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Releases every held answer; later ones pass.
    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.opened.notify_waiters();
    }

    async fn pass(&self) {
        if self.closed.load(Ordering::SeqCst) {
            let opened = self.opened.notified();
            self.held.notify_one();
            opened.await;
        }
    }
}

/// A [`MemoryStore`] with a gate on its appends and one on its reads.
#[derive(Debug, Default)]
pub struct GatedStore {
    inner: MemoryStore,
    /// Holds append answers (after the commit).
    pub appends: Gate,
    /// Holds read answers (after the snapshot).
    pub reads: Gate,
    /// Notified after each device position is saved.
    pub positions_saved: Notify,
    /// Uplink dedup records looked up so far.
    pub uplink_lookups: AtomicUsize,
}

impl Store for GatedStore {
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }

    fn append(&self, batch: Vec<Append>) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        Box::pin(async move {
            let result = self.inner.append(batch).await;
            self.appends.pass().await;
            result
        })
    }

    fn read(
        &self,
        stream: StreamKey,
        after: u64,
        max: usize,
        now: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, StoreError>> {
        Box::pin(async move {
            let result = self.inner.read(stream, after, max, now).await;
            self.reads.pass().await;
            result
        })
    }
    fn set_position(
        &self,
        stream: StreamKey,
        device: String,
        seq: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let result = self.inner.set_position(stream, device, seq).await;
            self.positions_saved.notify_one();
            result
        })
    }

    fn position(
        &self,
        stream: StreamKey,
        device: String,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        self.inner.position(stream, device)
    }

    fn update_tags(
        &self,
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.update_tags(app, biz, alias, bind, unbind)
    }

    fn tag_members(
        &self,
        app: String,
        biz: String,
        tag: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.tag_members(app, biz, tag, limit)
    }

    fn touch_alias(
        &self,
        app: String,
        biz: String,
        alias: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.touch_alias(app, biz, alias)
    }

    fn aliases(
        &self,
        app: String,
        biz: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.aliases(app, biz, limit)
    }

    fn uplink_record(
        &self,
        stream: StreamKey,
        key: String,
    ) -> BoxFuture<'_, Result<Option<UplinkRecord>, StoreError>> {
        self.uplink_lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.uplink_record(stream, key)
    }

    fn record_uplink(
        &self,
        stream: StreamKey,
        key: String,
        record: UplinkRecord,
        now: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.record_uplink(stream, key, record, now)
    }
}

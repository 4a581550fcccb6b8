//! [`RedbStore`] as the gateway's [`Store`](pike_api::server::Store).

use pike_api::server::{
    self as api, Append as ApiAppend, Appended as ApiAppended, BoxFuture,
    ReadBatch as ApiReadBatch, StoreError as ApiStoreError, StoredMessage as ApiStoredMessage,
    StreamKey as ApiStreamKey, UplinkRecord,
};

use crate::store::{Append, MAX_PAGE, RedbStore, StoreError, StreamKey, UplinkOutcome};

fn key(k: &ApiStreamKey) -> StreamKey {
    StreamKey::alias(&k.app, &k.biz, &k.alias)
}

fn err(e: StoreError) -> ApiStoreError {
    ApiStoreError(e.to_string())
}

/// A message of the library's push as the store's append, under the push's
/// message id.
fn store_append(a: ApiAppend, message_id: u64) -> Append {
    Append::new(key(&a.stream), a.payload)
        .with_priority(a.priority)
        .with_expires_at_ms(a.expires_at_ms)
        .with_message_id(message_id)
}

/// Where the store put an appended message, as the library's.
fn api_appended(d: crate::store::Appended) -> ApiAppended {
    ApiAppended {
        seq: d.seq,
        cursor: d.seq,
        message_id: d.message_id,
    }
}

/// A store read as the library's.
fn api_batch(batch: crate::store::ReadBatch) -> ApiReadBatch {
    ApiReadBatch {
        messages: batch
            .messages
            .into_iter()
            .map(|m| ApiStoredMessage {
                seq: m.seq,
                cursor: m.seq,
                message_id: m.message_id,
                priority: m.priority,
                expires_at_ms: m.expires_at_ms,
                payload: m.payload,
                // Not kept by the redb store: the status table knows.
                receipt: false,
            })
            .collect(),
        first_seq: batch.first_seq,
        last_seq: batch.last_seq,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl api::Store for RedbStore {
    fn epoch(&self) -> u64 {
        Self::epoch(self)
    }

    fn append(
        &self,
        batch: Vec<ApiAppend>,
    ) -> BoxFuture<'_, Result<Vec<ApiAppended>, ApiStoreError>> {
        Box::pin(async move {
            let id = self.next_message_id();
            let appends = batch.into_iter().map(|a| store_append(a, id)).collect();
            let done = Self::append(self, appends, now_ms()).await.map_err(err)?;
            Ok(done.into_iter().map(api_appended).collect())
        })
    }

    fn append_many(
        &self,
        pushes: Vec<Vec<ApiAppend>>,
    ) -> BoxFuture<'_, Vec<Result<Vec<ApiAppended>, ApiStoreError>>> {
        Box::pin(async move {
            // One request to the writer: the pushes commit in one
            // transaction (all of them or none), in order, each with its
            // own message id.
            let sizes: Vec<usize> = pushes.iter().map(Vec::len).collect();
            let mut appends = Vec::with_capacity(sizes.iter().sum());
            for batch in pushes {
                let id = self.next_message_id();
                appends.extend(batch.into_iter().map(|a| store_append(a, id)));
            }
            match Self::append(self, appends, now_ms()).await {
                Ok(done) => {
                    let mut done = done.into_iter().map(api_appended);
                    sizes
                        .into_iter()
                        .map(|size| Ok(done.by_ref().take(size).collect()))
                        .collect()
                }
                Err(e) => {
                    let message = e.to_string();
                    sizes
                        .iter()
                        .map(|_| Err(ApiStoreError(message.clone())))
                        .collect()
                }
            }
        })
    }

    fn read(
        &self,
        stream: ApiStreamKey,
        after_seq: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<ApiReadBatch, ApiStoreError>> {
        Box::pin(async move {
            let batch = Self::read(self, &key(&stream), after_seq, max, now_ms)
                .await
                .map_err(err)?;
            Ok(api_batch(batch))
        })
    }

    fn set_position(
        &self,
        stream: ApiStreamKey,
        device: String,
        seq: u64,
    ) -> BoxFuture<'_, Result<(), ApiStoreError>> {
        Box::pin(async move {
            // Noted in memory, written with the others of its interval.
            Self::note_position(self, &key(&stream), &device, seq)
                .await
                .map_err(err)
        })
    }

    fn position(
        &self,
        stream: ApiStreamKey,
        device: String,
    ) -> BoxFuture<'_, Result<Option<u64>, ApiStoreError>> {
        Box::pin(async move {
            Self::position(self, &key(&stream), &device)
                .await
                .map_err(err)
        })
    }

    fn update_tags(
        &self,
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<String>, ApiStoreError>> {
        Box::pin(async move {
            Self::update_tags(self, &app, &biz, &alias, &bind, &unbind)
                .await
                .map_err(err)
        })
    }

    fn tag_members(
        &self,
        app: String,
        biz: String,
        tag: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, ApiStoreError>> {
        Box::pin(async move {
            let mut out: Vec<String> = Vec::new();
            while out.len() < limit {
                let want = (limit - out.len()).min(MAX_PAGE);
                let page =
                    Self::tag_members(self, &app, &biz, &tag, out.last().map(String::as_str), want)
                        .await
                        .map_err(err)?;
                let done = page.len() < want;
                out.extend(page);
                if done {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn login(
        &self,
        key: ApiStreamKey,
        device: String,
        last_acked: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<api::LoginSnapshot, ApiStoreError>> {
        Box::pin(async move {
            let (position, start_after, batch) = Self::login(
                self, &key.app, &key.biz, &key.alias, &device, last_acked, max, now_ms,
            )
            .await
            .map_err(err)?;
            Ok(api::LoginSnapshot {
                position,
                start_after,
                batch: api_batch(batch),
            })
        })
    }

    fn touch_alias(
        &self,
        app: String,
        biz: String,
        alias: String,
    ) -> BoxFuture<'_, Result<(), ApiStoreError>> {
        Box::pin(async move {
            Self::touch_alias(self, &app, &biz, &alias)
                .await
                .map_err(err)
        })
    }

    fn aliases(
        &self,
        app: String,
        biz: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, ApiStoreError>> {
        Box::pin(async move {
            let mut out: Vec<String> = Vec::new();
            while out.len() < limit {
                let want = (limit - out.len()).min(MAX_PAGE);
                let page = Self::aliases(self, &app, &biz, out.last().map(String::as_str), want)
                    .await
                    .map_err(err)?;
                let done = page.len() < want;
                out.extend(page);
                if done {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn uplink_record(
        &self,
        stream: ApiStreamKey,
        idem: String,
    ) -> BoxFuture<'_, Result<Option<UplinkRecord>, ApiStoreError>> {
        Box::pin(async move {
            let outcome =
                Self::uplink_outcome(self, &stream.app, &stream.biz, &stream.alias, &idem)
                    .await
                    .map_err(err)?;
            Ok(outcome.filter(|o| o.code == 0).map(|o| UplinkRecord {
                route_id: o.route_id,
            }))
        })
    }

    fn record_uplink(
        &self,
        stream: ApiStreamKey,
        idem: String,
        record: UplinkRecord,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<(), ApiStoreError>> {
        Box::pin(async move {
            Self::record_uplink(
                self,
                &stream.app,
                &stream.biz,
                &stream.alias,
                &idem,
                UplinkOutcome::accepted(record.route_id),
                now_ms,
            )
            .await
            .map(|_| ())
            .map_err(err)
        })
    }
}

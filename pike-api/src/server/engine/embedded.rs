//! The single-node engine: a [`Store`] for what is durable, this node's
//! registry for what is live.

use std::sync::Arc;

use super::tag_cache::{Lookup, TagCache};
use super::{
    AppendPush, Claim, ClusterView, Directory, EngineError, EngineHealth, Inbox, Interest,
    LocalDelivery, LoginId, LoginStart, NodeSink, Position, Presence, RoomBus, RoomBusMessage,
    RouteTarget, Router, TransientMessage, UplinkLedger, ViewAnswer, ViewQuery,
};
use crate::server::store::{
    Appended, BoxFuture, ReadBatch, Store, StoredMessage, StreamKey, UplinkRecord,
};

/// [`Engine::embedded`](super::Engine::embedded).
pub(super) struct EmbeddedEngine {
    store: Arc<dyn Store>,
    node: Arc<dyn NodeSink>,
    /// Tag members as last read from the store.
    tags: TagCache,
}

impl EmbeddedEngine {
    pub(super) fn new(store: Arc<dyn Store>, node: Arc<dyn NodeSink>) -> Self {
        Self {
            store,
            node,
            tags: TagCache::default(),
        }
    }
}

impl Inbox for EmbeddedEngine {
    fn epoch(&self) -> u64 {
        self.store.epoch()
    }

    fn append(&self, push: AppendPush) -> BoxFuture<'_, Result<Vec<Appended>, EngineError>> {
        Box::pin(async move { Ok(self.store.append(push.items).await?) })
    }

    fn append_many(
        &self,
        pushes: Vec<AppendPush>,
    ) -> BoxFuture<'_, Vec<Result<Vec<Appended>, EngineError>>> {
        let pushes = pushes.into_iter().map(|push| push.items).collect();
        Box::pin(async move {
            self.store
                .append_many(pushes)
                .await
                .into_iter()
                .map(|outcome| outcome.map_err(EngineError::from))
                .collect::<Vec<_>>()
        })
    }

    fn read(
        &self,
        stream: StreamKey,
        after: Position,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, EngineError>> {
        Box::pin(async move { Ok(self.store.read(stream, after.seq, max, now_ms).await?) })
    }

    fn login(
        &self,
        stream: StreamKey,
        device: String,
        last_acked: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<LoginStart, EngineError>> {
        Box::pin(async move {
            let snapshot = self
                .store
                .login(stream, device, last_acked, max, now_ms)
                .await?;
            Ok(LoginStart {
                position: snapshot.position.map(Position::at),
                start_after: Position::at(snapshot.start_after),
                batch: snapshot.batch,
            })
        })
    }

    fn ack(
        &self,
        stream: StreamKey,
        device: String,
        at: Position,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move { Ok(self.store.set_position(stream, device, at.seq).await?) })
    }

    fn position(
        &self,
        stream: StreamKey,
        device: String,
    ) -> BoxFuture<'_, Result<Option<Position>, EngineError>> {
        Box::pin(async move { Ok(self.store.position(stream, device).await?.map(Position::at)) })
    }
}

impl Directory for EmbeddedEngine {
    fn update_tags(
        &self,
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<String>, EngineError>> {
        Box::pin(async move {
            let changed: Vec<String> = bind.iter().chain(&unbind).cloned().collect();
            let outcome = self
                .store
                .update_tags(app.clone(), biz.clone(), alias, bind, unbind)
                .await;
            // Failed or not, the update may have been applied.
            self.tags.changed(&app, &biz, &changed);
            Ok(outcome?)
        })
    }

    fn tag_members(
        &self,
        app: String,
        biz: String,
        tag: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, EngineError>> {
        Box::pin(async move {
            let generation = match self.tags.get(&app, &biz, &tag, limit) {
                Lookup::Hit(aliases) => return Ok(aliases),
                Lookup::Miss { generation } => generation,
            };
            let aliases = self
                .store
                .tag_members(app.clone(), biz.clone(), tag.clone(), limit)
                .await?;
            self.tags
                .keep(&app, &biz, &tag, limit, &aliases, generation);
            Ok(aliases)
        })
    }

    fn aliases(
        &self,
        app: String,
        biz: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, EngineError>> {
        Box::pin(async move { Ok(self.store.aliases(app, biz, limit).await?) })
    }
}

impl Router for EmbeddedEngine {
    fn subscribe(&self, _interest: Interest) -> BoxFuture<'_, Result<(), EngineError>> {
        // One node: every live message starts here, and the registry is
        // the route table.
        Box::pin(std::future::ready(Ok(())))
    }

    fn unsubscribe(&self, _interest: Interest) {}

    fn stored(&self, stream: &StreamKey, message: &Arc<StoredMessage>) -> usize {
        self.node.stored(stream, message.clone())
    }

    fn transient(
        &self,
        target: RouteTarget,
        message: TransientMessage,
    ) -> BoxFuture<'_, Result<LocalDelivery, EngineError>> {
        Box::pin(std::future::ready(Ok(self
            .node
            .transient(&target, &message))))
    }

    fn transient_many(
        &self,
        targets: Vec<RouteTarget>,
        message: TransientMessage,
    ) -> BoxFuture<'_, Result<LocalDelivery, EngineError>> {
        Box::pin(std::future::ready(Ok(self
            .node
            .transient_many(&targets, &message))))
    }
}

impl UplinkLedger for EmbeddedEngine {
    fn delivered(
        &self,
        stream: StreamKey,
        key: String,
    ) -> BoxFuture<'_, Result<Option<UplinkRecord>, EngineError>> {
        Box::pin(async move { Ok(self.store.uplink_record(stream, key).await?) })
    }

    fn record(
        &self,
        stream: StreamKey,
        key: String,
        record: UplinkRecord,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            Ok(self
                .store
                .record_uplink(stream, key, record, now_ms)
                .await?)
        })
    }
}

impl RoomBus for EmbeddedEngine {
    fn forward(&self, _message: RoomBusMessage) -> BoxFuture<'_, Result<(), EngineError>> {
        // One node: its own room has every member.
        Box::pin(std::future::ready(Ok(())))
    }

    fn watch(&self, _app: &str, _room: &str, _members: bool) {}
}

impl Presence for EmbeddedEngine {
    /// One node: the registry already replaced the node's older connection.
    fn claim(&self, _claim: Claim) {}

    fn release(&self, _login: LoginId, _token: String) {}

    fn gather(
        &self,
        query: ViewQuery,
    ) -> BoxFuture<'_, Result<ClusterView<Vec<ViewAnswer>>, EngineError>> {
        Box::pin(std::future::ready(Ok(ClusterView::local(vec![
            self.node.query(&query),
        ]))))
    }

    fn health(&self) -> EngineHealth {
        EngineHealth::Ready
    }
}

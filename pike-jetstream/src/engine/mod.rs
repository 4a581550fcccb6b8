//! The `pike-api` engine on the cluster: a gateway built with
//! [`JetStreamEngine::factory`] keeps its alias streams, positions, tags,
//! aliases and uplink records in JetStream, and receives the live traffic
//! of the aliases and devices it serves from every other node.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pike_api::server::Gateway;
//! use pike_jetstream::{Cluster, ClusterConfig, JetStreamEngine};
//!
//! let urls = vec!["nats://127.0.0.1:4222".to_string()];
//! let cluster = Cluster::connect(ClusterConfig::new(urls, "gw1")).await?;
//! let gateway = Gateway::builder()
//!     .tcp("127.0.0.1:9300".parse()?)
//!     .engine(JetStreamEngine::factory(cluster))
//!     .bind()
//!     .await?;
//! tokio::spawn(gateway.serve());
//! # Ok(())
//! # }
//! ```

mod inbox;
mod presence;
mod resync;
mod rooms;
mod router;
mod views;

use std::sync::Arc;

use pike_api::server::engine::{Directory, Engine, EngineError, NodeSink, UplinkLedger};
use pike_api::server::{self as api, BoxFuture, StoredMessage, UplinkRecord};

use self::presence::Claims;
pub use self::presence::{MAX_RENEWALS_PER_ROUND, RETRY_EVERY, VIEW_WINDOW};
use self::rooms::RoomWatches;
use self::router::Routes;
pub use self::views::{MAX_VIEW_CONNECTIONS, MAX_VIEW_RECEIPT_DEVICES};
use crate::cluster::Cluster;
use crate::error::Error;
use crate::keys::StreamKey;
use crate::message::LogMessage;

/// Most tags an alias's tag list answer carries.
pub const MAX_TAGS_LISTED: usize = 1024;

/// The cluster engine of one gateway node.
pub struct JetStreamEngine {
    cluster: Cluster,
    node: Arc<dyn NodeSink>,
    routes: Routes,
    rooms: RoomWatches,
    /// This process's boot id: tells its claims from those of an earlier
    /// process with the same node name.
    boot: u64,
    /// The node's presence claims.
    claims: Claims,
    /// The engine itself, for the background work its methods start.
    me: std::sync::Weak<Self>,
    /// Dropped with the engine: ends its background tasks.
    alive: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for JetStreamEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamEngine")
            .field("node", &self.cluster.node())
            .field("epoch", &self.cluster.epoch())
            .finish_non_exhaustive()
    }
}

impl JetStreamEngine {
    /// What [`GatewayBuilder::engine`](pike_api::server::GatewayBuilder::engine)
    /// takes: builds the engine on `cluster` once the gateway's
    /// [`NodeSink`] exists.
    pub fn factory(cluster: Cluster) -> impl FnOnce(Arc<dyn NodeSink>) -> Engine + Send + 'static {
        move |node| {
            let every = cluster.config().probe_interval;
            let engine = Arc::new_cyclic(|me| Self {
                cluster,
                node,
                routes: Routes::default(),
                rooms: RoomWatches::default(),
                boot: fastrand::u64(1..),
                claims: Claims::default(),
                me: me.clone(),
                alive: tokio::sync::watch::channel(()).0,
            });
            engine.cluster.spawn_lease();
            engine.spawn_presence();
            tokio::spawn(resync::watch(Arc::downgrade(&engine), every));
            Engine {
                inbox: engine.clone(),
                directory: engine.clone(),
                router: engine.clone(),
                uplinks: engine.clone(),
                rooms: engine.clone(),
                presence: engine,
            }
        }
    }
}

/// An engine error from a cluster one: unreachable stays retryable, a
/// refused id or payload is a failure of the request.
pub(crate) fn engine_error(e: Error) -> EngineError {
    match e {
        Error::Unavailable(reason) => EngineError::Unavailable(reason),
        Error::Invalid(reason) => EngineError::Failed(format!("refused by the cluster: {reason}")),
        Error::Failed(reason) => EngineError::Failed(reason),
    }
}

/// A message of the log as the gateway's connections take it.
pub(crate) fn stored_message(message: LogMessage) -> StoredMessage {
    StoredMessage {
        seq: message.seq,
        cursor: message.cursor,
        message_id: message.meta.message_id,
        priority: message.meta.priority,
        expires_at_ms: message.meta.expires_at_ms,
        payload: message.payload,
        receipt: message.meta.receipt,
    }
}

/// The cluster's key of an alias stream.
pub(crate) fn key(stream: &api::StreamKey) -> Result<StreamKey, EngineError> {
    StreamKey::new(&stream.app, &stream.biz, &stream.alias).map_err(engine_error)
}

impl Directory for JetStreamEngine {
    fn update_tags(
        &self,
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<String>, EngineError>> {
        Box::pin(async move {
            self.cluster
                .update_tags(&app, &biz, &alias, &bind, &unbind, MAX_TAGS_LISTED)
                .await
                .map_err(engine_error)
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
            self.cluster
                .tag_members(&app, &biz, &tag, limit)
                .await
                .map_err(engine_error)
        })
    }

    fn aliases(
        &self,
        app: String,
        biz: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, EngineError>> {
        Box::pin(async move {
            self.cluster
                .aliases(&app, &biz, limit)
                .await
                .map_err(engine_error)
        })
    }
}

impl UplinkLedger for JetStreamEngine {
    fn delivered(
        &self,
        stream: api::StreamKey,
        key: String,
    ) -> BoxFuture<'_, Result<Option<UplinkRecord>, EngineError>> {
        Box::pin(async move {
            let route = self
                .cluster
                .uplink_record(&self::key(&stream)?, &key)
                .await
                .map_err(engine_error)?;
            Ok(route.map(|route_id| UplinkRecord { route_id }))
        })
    }

    fn record(
        &self,
        stream: api::StreamKey,
        key: String,
        record: UplinkRecord,
        _now_ms: u64,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            self.cluster
                .record_uplink(&self::key(&stream)?, &key, &record.route_id)
                .await
                .map_err(engine_error)
        })
    }
}

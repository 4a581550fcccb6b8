//! The engine seam: everything a gateway node shares with other nodes.
//!
//! A connection task keeps its socket, its channel machine, its windows and
//! its room memberships to itself; what must be the same on every node of a
//! cluster goes through an [`Engine`]:
//!
//! - [`Inbox`]: the durable alias streams of reliable downlink and the
//!   per-device acked positions;
//! - [`Directory`]: tags and the aliases known to exist;
//! - [`Router`]: the route table of live traffic (which node serves which
//!   alias or device) and transient delivery;
//! - [`UplinkLedger`]: which uplink messages were delivered, for exactly-once
//!   hand-off to the backends;
//! - [`RoomBus`]: live rooms whose members are on several nodes.
//! - [`Presence`]: presence claims (a device's newer connection replaces
//!   its older one on another node), cluster-wide views and the engine's
//!   health.
//!
//! The embedded engine ([`Engine::embedded`]) puts these on a [`Store`]
//! (redb in `pike-server`, [`MemoryStore`](super::MemoryStore) in tests)
//! and the node's own connection registry: one process, no network. A
//! cluster engine (the `pike-jetstream` crate) implements the same traits
//! on NATS JetStream and hands the traffic of other nodes to this one
//! through its [`NodeSink`].
//!
//! Every method is object safe and returns a [`BoxFuture`], like [`Store`]'s.

mod embedded;
mod node;
mod presence;
mod rooms;
mod tag_cache;
mod types;

use std::sync::Arc;

pub(crate) use self::node::{LocalNode, disconnect as disconnect_local, replaced_command};
pub use self::presence::{
    Claim, ClusterView, EngineHealth, LoginId, Presence, ViewAnswer, ViewQuery,
};
pub use self::rooms::{RoomBus, RoomBusMessage};
pub use self::types::{
    AppendPush, EngineError, Interest, LocalDelivery, LoginStart, Position, RouteTarget,
    TransientMessage,
};
use super::store::{Appended, BoxFuture, ReadBatch, Store, StoredMessage, StreamKey, UplinkRecord};

/// Durable downlink: alias streams and per-device acked positions.
pub trait Inbox: Send + Sync + 'static {
    /// The epoch of the downlink log (0: none): sequence numbers and
    /// positions belong to it; it changes only when the log is recreated.
    /// Gateways send it in every `LoginResult`, and ignore a client's
    /// position from another epoch.
    fn epoch(&self) -> u64;

    /// Appends one push (each item to its stream, all sharing one message
    /// id); resolves once every item is durable. An engine that
    /// deduplicates returns the first outcome for a repeated
    /// [`AppendPush::id`].
    fn append(&self, push: AppendPush) -> BoxFuture<'_, Result<Vec<Appended>, EngineError>>;

    /// Appends several pushes in order (each as [`append`](Self::append),
    /// each with its own message id) and resolves once every one is
    /// durable or failed, with one outcome per push. An engine that can
    /// makes them durable together (the embedded engine hands them to
    /// [`Store::append_many`]: one commit, all of them or none, on
    /// `pike-server`'s redb store); the default appends one push after the
    /// other, each with its own outcome.
    fn append_many(
        &self,
        pushes: Vec<AppendPush>,
    ) -> BoxFuture<'_, Vec<Result<Vec<Appended>, EngineError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(pushes.len());
            for push in pushes {
                out.push(self.append(push).await);
            }
            out
        })
    }

    /// Up to `max` unexpired messages of `stream` after `after`.
    fn read(
        &self,
        stream: StreamKey,
        after: Position,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<ReadBatch, EngineError>>;

    /// Everything a login of `device` on `stream` needs in one call: the
    /// stored position, where delivery resumes (the larger of the client's
    /// `last_acked` and the stored position) and the first `max` messages
    /// after it. Also remembers that the alias exists
    /// ([`Directory::aliases`]).
    fn login(
        &self,
        stream: StreamKey,
        device: String,
        last_acked: u64,
        max: usize,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<LoginStart, EngineError>>;

    /// The stored position of `device` on `stream` (`None`: it never acked
    /// there, or the engine cannot say). Read by the receipt expiry scan
    /// (`docs/receipts.md`, "Cluster mode"): a device that acked on another
    /// node gets no `expired`. The default: `None`.
    fn position(
        &self,
        stream: StreamKey,
        device: String,
    ) -> BoxFuture<'_, Result<Option<Position>, EngineError>> {
        let _ = (stream, device);
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Records that `device` acked `stream` up to `at`. Positions only move
    /// forward: a lower one is ignored.
    fn ack(
        &self,
        stream: StreamKey,
        device: String,
        at: Position,
    ) -> BoxFuture<'_, Result<(), EngineError>>;
}

/// Tags and the aliases known to exist in a business.
pub trait Directory: Send + Sync + 'static {
    /// Binds and unbinds tags of an alias; returns the tags bound after.
    fn update_tags(
        &self,
        app: String,
        biz: String,
        alias: String,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<String>, EngineError>>;

    /// The aliases bound to `tag` (at most `limit`).
    fn tag_members(
        &self,
        app: String,
        biz: String,
        tag: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, EngineError>>;

    /// The aliases that ever logged in to `biz` (at most `limit`).
    fn aliases(
        &self,
        app: String,
        biz: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, EngineError>>;
}

/// The route table of live traffic, and transient delivery.
pub trait Router: Send + Sync + 'static {
    /// From the time this resolves, live traffic for `interest` reaches
    /// this node's [`NodeSink`]. Interests are counted: every `subscribe`
    /// is matched by one [`unsubscribe`](Self::unsubscribe).
    fn subscribe(&self, interest: Interest) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Drops one count of `interest`.
    fn unsubscribe(&self, interest: Interest);

    /// A reliable message was appended to `stream` by this node: tells the
    /// node's own connections now (other nodes hear of it from the engine).
    /// Returns how many local connections were told.
    fn stored(&self, stream: &StreamKey, message: &Arc<StoredMessage>) -> usize;

    /// This node's name in its cluster (`None`, the default: a single
    /// node). The gateway derives the node part of its transient message
    /// ids from it ([`transient_node_part`](crate::server::transient_node_part)),
    /// so that every node of a cluster tells transient messages apart
    /// (`docs/receipts.md`, "Transient message ids").
    fn node_name(&self) -> Option<&str> {
        None
    }

    /// Delivers a transient message to every connection of `target`;
    /// returns this node's deliveries (those of other nodes are not
    /// counted).
    fn transient(
        &self,
        target: RouteTarget,
        message: TransientMessage,
    ) -> BoxFuture<'_, Result<LocalDelivery, EngineError>>;

    /// Delivers one transient message to every connection of each of
    /// `targets` (a push to many aliases or a tag); returns this node's
    /// deliveries summed. The default calls [`transient`](Self::transient)
    /// for each target in turn and stops at the first error; an engine
    /// whose targets are local overrides it to route them in one pass.
    fn transient_many(
        &self,
        targets: Vec<RouteTarget>,
        message: TransientMessage,
    ) -> BoxFuture<'_, Result<LocalDelivery, EngineError>> {
        Box::pin(async move {
            let mut sum = LocalDelivery::default();
            for target in targets {
                sum += self.transient(target, message.clone()).await?;
            }
            Ok(sum)
        })
    }
}

/// Which uplink messages were delivered to a backend (deduplication by the
/// message's idempotency key, across reconnects and nodes).
pub trait UplinkLedger: Send + Sync + 'static {
    /// The recorded outcome of an uplink message, if it was delivered.
    fn delivered(
        &self,
        stream: StreamKey,
        key: String,
    ) -> BoxFuture<'_, Result<Option<UplinkRecord>, EngineError>>;

    /// Records that an uplink message was delivered (durable before the
    /// client is acked).
    fn record(
        &self,
        stream: StreamKey,
        key: String,
        record: UplinkRecord,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<(), EngineError>>;
}

/// How an engine hands live traffic from other nodes (or its own) to this
/// node's connections. The gateway implements it; an engine gets one when
/// it is built ([`GatewayBuilder::engine`](super::GatewayBuilder::engine)).
pub trait NodeSink: Send + Sync + 'static {
    /// A reliable message was stored in `stream`: the connections logged in
    /// to it here read or take it. Returns how many were told.
    fn stored(&self, stream: &StreamKey, message: Arc<StoredMessage>) -> usize;

    /// Delivers a transient message to this node's connections of `target`.
    fn transient(&self, target: &RouteTarget, message: &TransientMessage) -> LocalDelivery;

    /// Delivers a transient message to this node's connections of each of
    /// `targets`, summed. The default calls [`transient`](Self::transient)
    /// for each.
    fn transient_many(&self, targets: &[RouteTarget], message: &TransientMessage) -> LocalDelivery {
        let mut sum = LocalDelivery::default();
        for target in targets {
            sum += self.transient(target, message);
        }
        sum
    }

    /// A room message published on another node: this node's room of that
    /// name, if it exists, publishes it to its members (its room cap
    /// applies, no publisher cap).
    fn room(&self, message: RoomBusMessage);
    /// Another node took `login` over: closes this node's connection
    /// `token` with `REPLACED` if it is still logged in as `login`.
    /// Returns whether it was told to close.
    fn replace(&self, login: &LoginId, token: &str) -> bool;

    /// Answers a cluster-wide view from this node's connections.
    fn query(&self, query: &ViewQuery) -> ViewAnswer;
}

/// The engine a gateway is built with.
#[derive(Clone)]
pub struct Engine {
    /// Durable downlink.
    pub inbox: Arc<dyn Inbox>,
    /// Tags and aliases.
    pub directory: Arc<dyn Directory>,
    /// Live routes and transient delivery.
    pub router: Arc<dyn Router>,
    /// Uplink deduplication.
    pub uplinks: Arc<dyn UplinkLedger>,
    /// Rooms across nodes.
    pub rooms: Arc<dyn RoomBus>,
    /// Presence claims, cluster-wide views, health.
    pub presence: Arc<dyn Presence>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// The single-node engine: `store` for everything durable, `node` for
    /// live traffic.
    pub fn embedded(store: Arc<dyn Store>, node: Arc<dyn NodeSink>) -> Self {
        let engine = Arc::new(embedded::EmbeddedEngine::new(store, node));
        Self {
            inbox: engine.clone(),
            directory: engine.clone(),
            router: engine.clone(),
            uplinks: engine.clone(),
            rooms: engine.clone(),
            presence: engine,
        }
    }
}

/// Builds an engine for a gateway once the gateway's [`NodeSink`] exists
/// ([`GatewayBuilder::engine`](super::GatewayBuilder::engine)).
pub type EngineFactory = Box<dyn FnOnce(Arc<dyn NodeSink>) -> Engine + Send>;

//! [`RoomBus`]: live rooms across the nodes of a cluster.
//!
//! Every node keeps its own [`Room`](crate::server::room) per (app, room
//! name): its ring of droppable messages, its store of reliable ones, its
//! offsets, its batching, and one encoding per released batch for all of
//! its members. The bus carries a message that one node accepted to the
//! rooms of the other nodes that have members, where it is published again
//! (with the room's cap but no publisher cap, `docs/rooms.md`):
//!
//! - a node tells the bus when its room gains its first member and loses
//!   its last ([`RoomBus::watch`]); from then on, messages published on
//!   other nodes reach it through [`NodeSink::room`](super::NodeSink::room);
//! - a publish is admitted by the publishing node's room first (droppable:
//!   both rate caps; reliable: the store's capacity), then handed to the bus
//!   ([`RoomBus::forward`]).
//!
//! The embedded engine has one node: forwarding is a no-op.

use bytes::Bytes;
use proto::channel::RoomClass;

use super::EngineError;
use crate::server::store::BoxFuture;

/// A room message on its way to the other nodes.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RoomBusMessage {
    /// App id.
    pub app: String,
    /// Room name.
    pub room: String,
    /// Reliable or droppable.
    pub class: RoomClass,
    /// Priority (each node's room sheds priority 0 first).
    pub priority: u32,
    /// The payload.
    pub payload: Bytes,
}

/// Carries room messages between the nodes that have members in a room.
pub trait RoomBus: Send + Sync + 'static {
    /// Hands a message this node's room accepted to every other node whose
    /// room of the same name has members. A reliable message resolves once
    /// it is durable (the publishing node publishes it locally only after
    /// that); a droppable one once it was sent (at most once). Fails with
    /// [`EngineError::Unavailable`] when the other nodes cannot be reached.
    fn forward(&self, message: RoomBusMessage) -> BoxFuture<'_, Result<(), EngineError>>;

    /// This node's room `room` of `app` gained its first member
    /// (`members == true`) or lost its last. Called in order per room,
    /// from the room's own lock, so it must not block: an engine starts or
    /// stops its subscription in the background.
    fn watch(&self, app: &str, room: &str, members: bool);
}

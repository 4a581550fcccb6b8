//! The room half of [`PushHandle`]: publish into live rooms and read their
//! statistics.

use proto::channel::RoomClass;

use super::PushHandle;
use crate::server::engine::{EngineError, RoomBusMessage};
use crate::server::room::{RoomError, RoomPublish, RoomReceipt, RoomStats, stats};

impl PushHandle {
    /// Publishes a message into a live room (starting the room if needed).
    /// A droppable message may be shed by the rate caps
    /// ([`RoomReceipt::Dropped`]); a reliable one is accepted unless the
    /// room's reliable store is full ([`RoomError::ReliableFull`]) or, in a
    /// cluster, the other nodes cannot be reached
    /// ([`RoomError::Unavailable`]). In a cluster the message also reaches
    /// the members on every other node; the receipt's offset is this
    /// node's (each node numbers its own room).
    pub async fn publish_room(&self, request: RoomPublish) -> Result<RoomReceipt, RoomError> {
        if self.hub.shutdown.is_cancelled() {
            return Err(RoomError::ShuttingDown);
        }
        if request.app.is_empty() {
            return Err(RoomError::Invalid("app must not be empty".into()));
        }
        let message = RoomBusMessage {
            app: request.app.clone(),
            room: request.room.clone(),
            class: request.class,
            priority: request.priority,
            payload: request.payload.clone(),
        };
        let bus = &self.hub.engine.rooms;
        if request.class == RoomClass::Reliable {
            // Durable for the other nodes first: a message the cluster
            // cannot take is refused, not published here alone.
            self.hub.rooms.admit_reliable(&request)?;
            bus.forward(message).await.map_err(|e| match e {
                EngineError::Unavailable(reason) | EngineError::Failed(reason) => {
                    RoomError::Unavailable(reason)
                }
            })?;
            return self.hub.rooms.publish(request);
        }
        // Droppable: this node's room admits it (both rate caps); what it
        // accepts goes to the other nodes at most once.
        let receipt = self.hub.rooms.publish(request)?;
        if let RoomReceipt::Accepted { .. } = receipt
            && let Err(e) = bus.forward(message).await
        {
            tracing::debug!(error = %e, "a droppable room message reached this node's members only");
        }
        Ok(receipt)
    }

    /// A room of `app`, if it exists on this node (in a cluster, this
    /// node's members and counters only).
    pub fn room_stats(&self, app: &str, room: &str) -> Option<RoomStats> {
        self.hub.rooms.get(app, room).map(|room| stats(&room))
    }

    /// Every room of `app` on this node, by name.
    pub fn rooms(&self, app: &str) -> Vec<RoomStats> {
        let mut list: Vec<RoomStats> = self.hub.rooms.list(app).iter().map(|r| stats(r)).collect();
        list.sort_by(|a, b| a.room.cmp(&b.room));
        list
    }
}

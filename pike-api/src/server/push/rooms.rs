//! The room half of [`PushHandle`]: publish into live rooms and read their
//! statistics.

use super::PushHandle;
use crate::server::room::{RoomError, RoomPublish, RoomReceipt, RoomStats, stats};

impl PushHandle {
    /// Publishes a message into a live room (starting the room if needed).
    /// A droppable message may be shed by the rate caps
    /// ([`RoomReceipt::Dropped`]); a reliable one is accepted unless the
    /// room's reliable store is full ([`RoomError::ReliableFull`]).
    pub async fn publish_room(&self, request: RoomPublish) -> Result<RoomReceipt, RoomError> {
        if self.hub.shutdown.is_cancelled() {
            return Err(RoomError::ShuttingDown);
        }
        if request.app.is_empty() {
            return Err(RoomError::Invalid("app must not be empty".into()));
        }
        self.hub.rooms.publish(request)
    }

    /// A room of `app`, if it exists.
    pub fn room_stats(&self, app: &str, room: &str) -> Option<RoomStats> {
        self.hub.rooms.get(app, room).map(|room| stats(&room))
    }

    /// Every room of `app`, by name.
    pub fn rooms(&self, app: &str) -> Vec<RoomStats> {
        let mut list: Vec<RoomStats> = self.hub.rooms.list(app).iter().map(|r| stats(r)).collect();
        list.sort_by(|a, b| a.room.cmp(&b.room));
        list
    }
}

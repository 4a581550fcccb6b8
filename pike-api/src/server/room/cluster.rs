//! The rooms' side of the cluster ([`RoomBus`](crate::server::engine::RoomBus)):
//! what a publish checks before it leaves the node, and how a message
//! published on another node enters this node's room.

use tokio::time::Instant;

use super::shared::PublishError;
use super::{RoomError, RoomPublish, Rooms};
use crate::server::engine::RoomBusMessage;

impl Rooms {
    /// What a local publish of the reliable `request` would refuse (payload
    /// size, room name, room limits, a full reliable store), checked before
    /// the message is handed to other nodes. The room is started if needed.
    /// Racy by nature: a store that fills up between the check and the
    /// publish still refuses it here (and only here).
    pub(crate) fn admit_reliable(&self, request: &RoomPublish) -> Result<(), RoomError> {
        super::check_size(
            self.config_for(&request.app, &request.room),
            request.payload.len(),
        )?;
        let room = self.get_or_create(&request.app, &request.room)?;
        match room.check_reliable(Instant::now()) {
            // Closed: the room went idle meanwhile; the publish starts it
            // again, empty.
            Ok(()) | Err(PublishError::Closed) => Ok(()),
            Err(PublishError::Full(full)) => Err(RoomError::ReliableFull {
                capacity: full.capacity,
            }),
        }
    }

    /// A message another node accepted: published into this node's room of
    /// that name if it exists (a room without members here is not watched,
    /// and one that went idle meanwhile has nobody to tell). The room's own
    /// cap applies to droppable messages, the publisher's was applied where
    /// it was published; a full reliable store refuses it and counts it.
    pub(crate) fn publish_remote(&self, message: RoomBusMessage) {
        let Some(room) = self.get(&message.app, &message.room) else {
            return;
        };
        if super::check_size(&room.config, message.payload.len()).is_err() {
            tracing::warn!(app = %message.app, room = %message.room, bytes = message.payload.len(),
                "a room message from another node is over this node's size limit; not published");
            return;
        }
        match room.publish(
            message.class,
            message.priority,
            None,
            message.payload,
            Instant::now(),
        ) {
            Ok(_) | Err(PublishError::Closed) => {}
            Err(PublishError::Full(full)) => {
                tracing::warn!(app = %message.app, room = %message.room, capacity = full.capacity,
                    "this node's reliable room store is full; a message from another node was refused");
            }
        }
    }
}

//! This node's side of the seam: live traffic from the engine reaches the
//! connections through the registry.

use std::sync::Arc;

use super::{LocalDelivery, NodeSink, RoomBusMessage, RouteTarget, TransientMessage};
use crate::server::registry::{CommandSender, ConnCommand, Registry};
use crate::server::room::Rooms;
use crate::server::store::{StoredMessage, StreamKey};

/// The gateway's [`NodeSink`]: its connection registry and its rooms.
#[derive(Debug)]
pub(crate) struct LocalNode {
    registry: Arc<Registry>,
    rooms: Arc<Rooms>,
}

impl LocalNode {
    pub(crate) fn new(registry: Arc<Registry>, rooms: Arc<Rooms>) -> Self {
        Self { registry, rooms }
    }
}

impl NodeSink for LocalNode {
    fn stored(&self, stream: &StreamKey, message: Arc<StoredMessage>) -> usize {
        self.registry.notify_stored(stream, &message)
    }

    fn transient(&self, target: &RouteTarget, message: &TransientMessage) -> LocalDelivery {
        let (senders, biz, alias) = match target {
            RouteTarget::Stream(key) => (
                self.registry.senders_for_stream(key),
                &key.biz,
                Some(&key.alias),
            ),
            RouteTarget::Device { app, biz, device } => (
                self.registry.senders_for_device(app, biz, device),
                biz,
                None,
            ),
        };
        deliver(senders, biz, alias, message)
    }

    fn room(&self, message: RoomBusMessage) {
        self.rooms.publish_remote(message);
    }
}

fn deliver(
    senders: Vec<CommandSender>,
    biz: &str,
    alias: Option<&String>,
    message: &TransientMessage,
) -> LocalDelivery {
    let mut delivery = LocalDelivery::default();
    for sender in senders {
        let command = ConnCommand::Transient {
            biz: biz.to_owned(),
            alias: alias.cloned(),
            message_id: message.message_id,
            priority: message.priority,
            payload: message.payload.clone(),
        };
        match sender.try_send(command) {
            Ok(()) => delivery.online += 1,
            Err(_) => delivery.dropped += 1,
        }
    }
    delivery
}

//! This node's side of the seam: live traffic from the engine reaches the
//! connections through the registry.

use std::sync::Arc;

use super::{
    LocalDelivery, LoginId, NodeSink, RoomBusMessage, RouteTarget, TransientMessage, ViewAnswer,
    ViewQuery,
};
use crate::server::push::{DISCONNECT_CODE, DisconnectTarget};
use crate::server::receipts::ReceiptHook;
use crate::server::registry::{CommandSender, ConnCommand, Registry};
use crate::server::room::Rooms;
use crate::server::store::{StoredMessage, StreamKey};
use crate::server::trace;

/// The gateway's [`NodeSink`]: its connection registry and its rooms.
pub(crate) struct LocalNode {
    registry: Arc<Registry>,
    rooms: Arc<Rooms>,
    /// Answers the status query (none: receipts off, no record).
    receipts: Option<Arc<dyn ReceiptHook>>,
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode")
            .field("registry", &self.registry)
            .field("rooms", &self.rooms)
            .field("receipts", &self.receipts.is_some())
            .finish()
    }
}

impl LocalNode {
    pub(crate) fn new(
        registry: Arc<Registry>,
        rooms: Arc<Rooms>,
        receipts: Option<Arc<dyn ReceiptHook>>,
    ) -> Self {
        Self {
            registry,
            rooms,
            receipts,
        }
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

    fn transient_many(&self, targets: &[RouteTarget], message: &TransientMessage) -> LocalDelivery {
        // The alias streams in one pass under the registry's locks; a
        // device target (never batched by the push API) on its own.
        let mut sum = LocalDelivery::default();
        let streams: Vec<&StreamKey> = targets
            .iter()
            .filter_map(|t| match t {
                RouteTarget::Stream(key) => Some(key),
                RouteTarget::Device { .. } => None,
            })
            .collect();
        self.registry
            .for_each_stream_sender(&streams, |key, shared| {
                let command = transient_command(&key.biz, Some(&key.alias), message);
                match shared.send(command) {
                    Ok(()) => sum.online += 1,
                    Err(_) => sum.dropped += 1,
                }
            });
        for target in targets {
            if let RouteTarget::Device { .. } = target {
                sum += self.transient(target, message);
            }
        }
        sum
    }

    fn room(&self, message: RoomBusMessage) {
        self.rooms.publish_remote(message);
    }
    fn replace(&self, login: &LoginId, token: &str) -> bool {
        let told = self
            .registry
            .sender_for_login(login, token)
            .is_some_and(|sender| {
                sender
                    .try_send(replaced_command(&login.stream.biz, &login.stream.alias))
                    .is_ok()
            });
        if told {
            metrics::counter!(crate::server::metric_families::REPLACED_TOTAL).increment(1);
        }
        told
    }

    fn query(&self, query: &ViewQuery) -> ViewAnswer {
        let registry = &self.registry;
        match query {
            ViewQuery::Presence(stream) => ViewAnswer::Presence(registry.presence(stream)),
            ViewQuery::Connections { app, after, limit } => {
                let after = (*after > 0).then_some(*after);
                let (total, connections, more) = registry.connections_after(app, after, *limit);
                ViewAnswer::Connections {
                    total,
                    connections,
                    more,
                }
            }
            ViewQuery::Count => ViewAnswer::Count(registry.len()),
            ViewQuery::Trace { app, token } => ViewAnswer::Trace(
                registry
                    .trace(app, token)
                    .map(|trace| trace::lock(&trace).events()),
            ),
            ViewQuery::Disconnect {
                app,
                target,
                reason,
            } => ViewAnswer::Disconnected(disconnect(registry, app, target, reason)),
            ViewQuery::MessageStatus { app, message_id } => ViewAnswer::MessageStatus(
                self.receipts
                    .as_ref()
                    .and_then(|hook| hook.status(app, *message_id)),
            ),
        }
    }
}

/// What a connection gets when a newer connection of its device takes its
/// login of `biz` as `alias` (counted in `pike_replaced_total`): that login
/// ends with `REPLACED`, and the connection closes if it holds no other.
pub(crate) fn replaced_command(biz: &str, alias: &str) -> ConnCommand {
    ConnCommand::Replace {
        biz: biz.to_owned(),
        alias: alias.to_owned(),
        message: "logged in elsewhere: a newer connection of this device took the login".into(),
    }
}

/// Closes this node's connections of `app` that `target` names, with
/// [`DISCONNECT_CODE`] and `reason`; returns how many were told to close.
pub(crate) fn disconnect(
    registry: &Registry,
    app: &str,
    target: &DisconnectTarget,
    reason: &str,
) -> usize {
    let senders = match target {
        DisconnectTarget::Device(device) => registry.senders_of_device(app, device),
        DisconnectTarget::Alias { biz, alias } => {
            registry.senders_for_stream(&StreamKey::new(app, biz, alias))
        }
        DisconnectTarget::Connection(token) => {
            registry.sender_for_token(app, token).into_iter().collect()
        }
    };
    let closed = senders
        .into_iter()
        .filter(|sender| {
            sender
                .try_send(ConnCommand::Close {
                    code: DISCONNECT_CODE,
                    message: reason.to_owned(),
                })
                .is_ok()
        })
        .count();
    metrics::counter!(crate::server::metric_families::DISCONNECTED_TOTAL).increment(closed as u64);
    closed
}

fn deliver(
    senders: Vec<CommandSender>,
    biz: &str,
    alias: Option<&String>,
    message: &TransientMessage,
) -> LocalDelivery {
    let mut delivery = LocalDelivery::default();
    for sender in senders {
        match sender.try_send(transient_command(biz, alias, message)) {
            Ok(()) => delivery.online += 1,
            Err(_) => delivery.dropped += 1,
        }
    }
    delivery
}

fn transient_command(biz: &str, alias: Option<&String>, message: &TransientMessage) -> ConnCommand {
    ConnCommand::Transient {
        biz: biz.to_owned(),
        alias: alias.cloned(),
        message_id: message.message_id,
        priority: message.priority,
        payload: message.payload.clone(),
        receipt: message.receipt,
    }
}

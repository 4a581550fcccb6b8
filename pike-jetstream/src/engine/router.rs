//! [`Router`] on NATS interest: the node subscribes to the live subject of
//! every alias it serves and the device subject of every device it holds,
//! once each however many logins share it, and forwards what arrives to its
//! [`NodeSink`]. NATS interest is the route table: a push published on
//! any node reaches exactly the nodes that subscribed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt as _;
use pike_api::server::engine::{
    EngineError, Interest, LocalDelivery, NodeSink, RouteTarget, Router, TransientMessage,
};
use pike_api::server::{self as api, BoxFuture, StoredMessage};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use super::{JetStreamEngine, engine_error, key, stored_message};
use crate::live::LiveMessage;
use crate::message::MessageMeta;

/// The node's subscriptions, counted per interest.
#[derive(Debug, Default)]
pub(super) struct Routes {
    map: Mutex<HashMap<Interest, Route>>,
}

#[derive(Debug, Default)]
struct Route {
    /// Logins that asked for it.
    count: usize,
    /// The forwarding task, started by the first subscriber; the others
    /// wait for it. Dropped with the last count (the task ends, NATS
    /// unsubscribes).
    forwarder: Arc<OnceCell<Forwarder>>,
}

/// A task forwarding one subscription's messages; aborted when dropped.
#[derive(Debug)]
struct Forwarder(JoinHandle<()>);

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Interest, Route>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more subscriber; the route's forwarder cell.
    fn enter(&self, interest: &Interest) -> Arc<OnceCell<Forwarder>> {
        let mut map = self.lock();
        let route = map.entry(interest.clone()).or_default();
        route.count += 1;
        route.forwarder.clone()
    }

    /// The alias streams this node serves now.
    pub(super) fn streams(&self) -> Vec<api::StreamKey> {
        self.lock()
            .keys()
            .filter_map(|interest| match interest {
                Interest::Stream(stream) => Some(stream.clone()),
                Interest::Device { .. } => None,
            })
            .collect()
    }

    /// Counts one subscriber less; the last one drops the route.
    fn leave(&self, interest: &Interest) {
        let mut map = self.lock();
        if let Some(route) = map.get_mut(interest) {
            route.count -= 1;
            if route.count == 0 {
                map.remove(interest);
            }
        }
    }
}

fn transient(meta: MessageMeta, payload: bytes::Bytes) -> TransientMessage {
    TransientMessage {
        message_id: meta.message_id,
        priority: meta.priority,
        payload,
        // `Pike-Rcpt: 1` on the live message: the node writing it to a
        // device reports the receipt (`docs/receipts.md`, "Cluster mode").
        receipt: meta.receipt,
    }
}

impl JetStreamEngine {
    /// Subscribes in NATS and starts forwarding to the node.
    async fn forward(&self, interest: &Interest) -> Result<Forwarder, EngineError> {
        let node: Arc<dyn NodeSink> = self.node.clone();
        let me = self.cluster.node().to_owned();
        let task = match interest {
            Interest::Stream(stream) => {
                let mut live = self
                    .cluster
                    .subscribe_live(&key(stream)?)
                    .await
                    .map_err(engine_error)?;
                let stream = stream.clone();
                tokio::spawn(async move {
                    while let Some(message) = live.next().await {
                        match message {
                            LiveMessage::Stored { message, .. } => {
                                node.stored(&stream, Arc::new(stored_message(message)));
                            }
                            // This node delivered its own pushes already.
                            LiveMessage::Transient {
                                meta,
                                payload,
                                origin,
                            } if origin != me => {
                                let target = RouteTarget::Stream(stream.clone());
                                node.transient(&target, &transient(meta, payload));
                            }
                            LiveMessage::Transient { .. } => {}
                        }
                    }
                })
            }
            Interest::Device { app, device } => {
                let mut pushes = self
                    .cluster
                    .subscribe_device(app, device)
                    .await
                    .map_err(engine_error)?;
                let (app, device) = (app.clone(), device.clone());
                tokio::spawn(async move {
                    while let Some(push) = pushes.next().await {
                        if push.origin == me {
                            continue;
                        }
                        let target = RouteTarget::Device {
                            app: app.clone(),
                            biz: push.biz,
                            device: device.clone(),
                        };
                        node.transient(&target, &transient(push.meta, push.payload));
                    }
                })
            }
        };
        Ok(Forwarder(task))
    }
}

impl Router for JetStreamEngine {
    fn node_name(&self) -> Option<&str> {
        Some(self.cluster.node())
    }

    fn subscribe(&self, interest: Interest) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let cell = self.routes.enter(&interest);
            match cell.get_or_try_init(|| self.forward(&interest)).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    self.routes.leave(&interest);
                    Err(e)
                }
            }
        })
    }

    fn unsubscribe(&self, interest: Interest) {
        self.routes.leave(&interest);
    }

    fn stored(&self, stream: &api::StreamKey, message: &Arc<StoredMessage>) -> usize {
        // The republished copy reaches this node too; the connections drop
        // it by its sequence number.
        self.node.stored(stream, message.clone())
    }

    fn transient(
        &self,
        target: RouteTarget,
        message: TransientMessage,
    ) -> BoxFuture<'_, Result<LocalDelivery, EngineError>> {
        Box::pin(async move {
            let meta = MessageMeta {
                message_id: message.message_id,
                priority: message.priority,
                expires_at_ms: 0,
                // Carried as `Pike-Rcpt: 1`: the nodes that write it to a
                // device report its receipts (transient ids are unique
                // across nodes; `docs/receipts.md`, "Cluster mode").
                receipt: message.receipt,
            };
            // Published first: when the cluster cannot take it, nobody gets
            // it and the caller hears so.
            match &target {
                RouteTarget::Stream(stream) => self
                    .cluster
                    .publish_transient(&key(stream)?, meta, message.payload.clone())
                    .await
                    .map_err(engine_error)?,
                RouteTarget::Device { app, biz, device } => self
                    .cluster
                    .publish_device(app, biz, device, meta, message.payload.clone())
                    .await
                    .map_err(engine_error)?,
            }
            Ok(self.node.transient(&target, &message))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_transient_message_keeps_its_receipt_flag() {
        let meta = MessageMeta {
            message_id: api::TRANSIENT_ID_MIN + 7,
            priority: 2,
            expires_at_ms: 0,
            receipt: true,
        };
        let message = transient(meta, bytes::Bytes::from_static(b"x"));
        assert!(message.receipt, "the node writing it reports receipts");
        assert_eq!((message.message_id, message.priority), (meta.message_id, 2));
        let plain = transient(
            MessageMeta {
                receipt: false,
                ..meta
            },
            bytes::Bytes::new(),
        );
        assert!(!plain.receipt);
    }
}

//! State shared by every connection task and push handle of a gateway.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use super::auth::BoxAuthenticator;
use super::clock::unix_ms;
use super::config::GatewayConfig;
use super::engine::{Engine, LocalNode, NodeSink};
use super::receipts::ReceiptHook;
use super::registry::{ConnId, Registry};
use super::room::{RoomWatch, Rooms};
use super::store::StreamKey;
use super::transient_ids::{TransientIds, transient_node_part};
use super::uplink::UplinkHandler;
use super::uplink_calls::UplinkCalls;

/// The shared state.
pub(crate) struct Hub {
    pub(crate) registry: Arc<Registry>,
    pub(crate) rooms: Arc<Rooms>,
    /// Shared state: durable downlink, directory, live routes, uplink
    /// records.
    pub(crate) engine: Engine,
    pub(crate) auth: BoxAuthenticator,
    pub(crate) uplink: Arc<dyn UplinkHandler>,
    /// Uplink backend calls in flight, which outlive their connections.
    pub(crate) uplink_calls: UplinkCalls,
    pub(crate) config: GatewayConfig,
    pub(crate) known_apps: Option<HashSet<String>>,
    pub(crate) shutdown: CancellationToken,
    next_connection: AtomicU64,
    /// Ids of transient pushes (`transient_ids`: unique across the
    /// cluster's nodes and the node's runs).
    transient_ids: TransientIds,
    /// Handles of the metrics counted once per delivery.
    pub(crate) hot: HotMetrics,
    /// Told about receipt pushes, deliveries and acks (none: receipts off).
    pub(crate) receipts: Option<Arc<dyn ReceiptHook>>,
}

/// Handles of the metrics a gateway counts once per delivery, resolved
/// when the gateway is built: the `metrics` macros look a name and its
/// labels up in the recorder's registry at every call (hashing them),
/// which a profile of a 70,000 deliveries/s group push showed at ≈ 1 %
/// of the gateway's samples.
pub(crate) struct HotMetrics {
    /// `pike_downlink_sent_total{kind="transient"}`.
    pub(crate) transient_sent: metrics::Counter,
    /// `pike_downlink_sent_total{kind="reliable"}`.
    pub(crate) reliable_sent: metrics::Counter,
    /// `pike_command_queue_depth`.
    pub(crate) command_queue_depth: metrics::Histogram,
}

impl HotMetrics {
    fn new() -> Self {
        use crate::server::metric_families::{COMMAND_QUEUE_DEPTH, DOWNLINK_SENT_TOTAL};
        Self {
            transient_sent: metrics::counter!(DOWNLINK_SENT_TOTAL, "kind" => "transient"),
            reliable_sent: metrics::counter!(DOWNLINK_SENT_TOTAL, "kind" => "reliable"),
            command_queue_depth: metrics::histogram!(COMMAND_QUEUE_DEPTH),
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.registry.len())
            .field("known_apps", &self.known_apps)
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub(crate) fn new(
        engine: impl FnOnce(Arc<dyn NodeSink>) -> Engine,
        auth: BoxAuthenticator,
        uplink: Arc<dyn UplinkHandler>,
        config: GatewayConfig,
        known_apps: Option<HashSet<String>>,
        receipts: Option<Arc<dyn ReceiptHook>>,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let rooms = Arc::new(Rooms::new(
            config.rooms.clone(),
            config.room_rules.clone(),
            (config.max_rooms, config.max_rooms_per_app),
            shutdown.clone(),
        ));
        let registry = Arc::new(Registry::default());
        let engine = engine(Arc::new(LocalNode::new(
            registry.clone(),
            rooms.clone(),
            receipts.clone(),
        )));
        let transient_ids =
            TransientIds::new(transient_node_part(engine.router.node_name()), unix_ms());
        let mut config = config;
        let epoch = engine.inbox.epoch();
        if epoch != 0 {
            // Every LoginResult tells the log's epoch.
            let mut channel = (*config.channel).clone();
            channel.log_epoch(epoch);
            config.channel = Arc::new(channel);
        }
        // Rooms tell the engine when they gain their first member and lose
        // their last (weakly: the engine holds the node, not the reverse).
        let bus = Arc::downgrade(&engine.rooms);
        rooms.set_watch(RoomWatch(Arc::new(
            move |app: &str, room: &str, members: bool| {
                if let Some(bus) = bus.upgrade() {
                    bus.watch(app, room, members);
                }
            },
        )));
        Self {
            registry,
            rooms,
            engine,
            auth,
            uplink,
            uplink_calls: UplinkCalls::new(config.max_uplink_in_flight),
            config,
            known_apps,
            shutdown,
            next_connection: AtomicU64::new(1),
            // Transient message ids live in their own range, above any id
            // the store hands out, and differ between nodes and runs.
            transient_ids,
            hot: HotMetrics::new(),
            receipts,
        }
    }

    pub(crate) fn next_connection_id(&self) -> ConnId {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn next_transient_id(&self) -> u64 {
        self.transient_ids.next()
    }

    /// The receipt hook, if it watches `stream` (`docs/receipts.md`).
    pub(crate) fn receipts_for(&self, stream: &StreamKey) -> Option<&dyn ReceiptHook> {
        self.receipts.as_deref().filter(|hook| hook.watches(stream))
    }

    pub(crate) fn app_known(&self, app: &str) -> bool {
        self.known_apps
            .as_ref()
            .is_none_or(|apps| apps.contains(app))
    }
}

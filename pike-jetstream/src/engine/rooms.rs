//! [`RoomBus`] on NATS: while this node's room has members, a follower task
//! subscribes to the room's live subject and publishes what other nodes
//! published into the node's room ([`NodeSink::room`]). Reliable messages
//! are applied once each, in stream order: duplicates are dropped by stream
//! sequence, and a gap (a republished copy lost, or interest that had not
//! reached every NATS server yet) is filled by reading `PIKE_ROOMS`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use pike_api::proto::channel::RoomClass;
use pike_api::server::BoxFuture;
use pike_api::server::engine::{EngineError, NodeSink, RoomBus, RoomBusMessage};
use tokio::task::JoinHandle;

use super::{JetStreamEngine, engine_error};
use crate::MAX_BATCH;
use crate::cluster::Cluster;
use crate::rooms::{RoomKey, RoomLiveMessage, RoomReadFrom, RoomStream};

/// After subscribing, the room is read once more after this long: interest
/// takes up to ~0.8 s to reach every NATS server, and a reliable message
/// published meanwhile never reached this node live.
const SETTLE: Duration = Duration::from_millis(1500);
/// A follower takes reliable messages stored from this long before its
/// room got its first member (clock differences between the gateway and
/// the NATS servers): a room's first member may see that much older.
const CLOCK_MARGIN: Duration = Duration::from_millis(250);
/// Reads of one gap fill (each at most [`MAX_BATCH`] messages); what is
/// beyond is skipped (the members see the newer messages, not the gap).
const MAX_FILL_READS: usize = 4;
/// Subscribe attempts of one follower, one per second, before it gives up
/// (the room on this node then gets only its own publishes).
const MAX_SUBSCRIBE_ATTEMPTS: u32 = 600;

/// Rooms this node follows: one follower per room with members here.
/// Bounded by the node's live rooms (`GatewayConfig::max_rooms`).
#[derive(Debug, Default)]
pub(super) struct RoomWatches {
    map: Mutex<HashMap<RoomKey, Watching>>,
}

#[derive(Debug)]
struct Watching {
    /// Rooms (incarnations) on this node with members: 1, briefly 2 while
    /// an idle room is replaced.
    count: usize,
    /// Held for its drop.
    _follower: Follower,
}

/// The follower task; aborted (NATS unsubscribes) when dropped.
#[derive(Debug)]
struct Follower(JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RoomBus for JetStreamEngine {
    fn forward(&self, message: RoomBusMessage) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let key = RoomKey::new(&message.app, &message.room).map_err(engine_error)?;
            let reliable = message.class == RoomClass::Reliable;
            self.cluster
                .publish_room(&key, reliable, message.priority, message.payload)
                .await
                .map_err(engine_error)?;
            Ok(())
        })
    }

    fn watch(&self, app: &str, room: &str, members: bool) {
        let key = match RoomKey::new(app, room) {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(app, room, error = %e, "room not followed across nodes");
                return;
            }
        };
        let mut map = self
            .rooms
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !members {
            if let Some(watching) = map.get_mut(&key) {
                watching.count -= 1;
                if watching.count == 0 {
                    map.remove(&key);
                }
            }
            return;
        }
        if let Some(watching) = map.get_mut(&key) {
            watching.count += 1;
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(app, room, "no runtime: room not followed across nodes");
            return;
        };
        let state = FollowState {
            cluster: self.cluster.clone(),
            node: self.node.clone(),
            key: key.clone(),
            last: 0,
            started: false,
            since_ms: unix_ms().saturating_sub(CLOCK_MARGIN.as_millis() as u64),
        };
        let follower = Follower(runtime.spawn(state.run()));
        map.insert(
            key,
            Watching {
                count: 1,
                _follower: follower,
            },
        );
    }
}

/// One follower's state.
struct FollowState {
    cluster: Cluster,
    node: Arc<dyn NodeSink>,
    key: RoomKey,
    /// Stream sequence of the newest reliable message applied or skipped.
    last: u64,
    /// `last` covers everything stored since `since_ms` (the start read
    /// succeeded): a previous sequence above it is a gap worth reading.
    started: bool,
    /// Reliable messages stored before this (unix ms) are older than the
    /// room's first member here.
    since_ms: u64,
}

impl FollowState {
    async fn run(mut self) {
        let Some(mut live) = self.subscribe().await else {
            return;
        };
        self.start().await;
        let settle = tokio::time::sleep(SETTLE);
        tokio::pin!(settle);
        let mut settled = false;
        loop {
            tokio::select! {
                message = live.next() => match message {
                    Some(message) => self.live(message).await,
                    None => return,
                },
                () = &mut settle, if !settled => {
                    settled = true;
                    if self.started {
                        self.fill(u64::MAX).await;
                    } else {
                        // NATS failed the first time: never read the
                        // room's older history as new.
                        self.start().await;
                    }
                }
            }
        }
    }

    async fn subscribe(&self) -> Option<RoomStream> {
        for attempt in 1..=MAX_SUBSCRIBE_ATTEMPTS {
            match self.cluster.subscribe_room(&self.key).await {
                Ok(live) => return Some(live),
                Err(e) => {
                    tracing::debug!(room = self.key.room(), attempt, error = %e, "room subscribe retried");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tracing::warn!(
            app = self.key.app(),
            room = self.key.room(),
            "room not followed across nodes: NATS refused the subscription"
        );
        None
    }

    /// Applies what was stored since the room's first member here, and
    /// starts counting after the room's newest message.
    async fn start(&mut self) {
        let newest = match self.cluster.room_last_cursor(&self.key).await {
            Ok(newest) => newest,
            Err(e) => {
                tracing::debug!(room = self.key.room(), error = %e, "room start: last unknown");
                return;
            }
        };
        match self
            .cluster
            .read_room(&self.key, RoomReadFrom::Since(self.since_ms), MAX_BATCH)
            .await
        {
            Ok(batch) => {
                for message in batch {
                    self.apply(message);
                }
                self.started = true;
            }
            Err(e) => tracing::debug!(room = self.key.room(), error = %e, "room start read failed"),
        }
        self.last = self.last.max(newest);
    }

    /// A live message: dropped when seen, after filling a gap before it.
    async fn live(&mut self, message: RoomLiveMessage) {
        if let Some(at) = message.stored {
            if at.cursor <= self.last {
                return;
            }
            if self.started && at.previous > self.last {
                self.fill(at.cursor).await;
            }
        }
        self.apply(message);
    }

    /// Reads and applies the room's reliable messages after `last` and
    /// before `before` (bounded: [`MAX_FILL_READS`] reads).
    async fn fill(&mut self, before: u64) {
        for _ in 0..MAX_FILL_READS {
            let batch = match self
                .cluster
                .read_room(&self.key, RoomReadFrom::After(self.last), MAX_BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::debug!(room = self.key.room(), error = %e, "room gap not filled");
                    return;
                }
            };
            let full = batch.len() >= MAX_BATCH;
            for message in batch {
                if message.stored.is_some_and(|at| at.cursor >= before) {
                    return;
                }
                self.apply(message);
            }
            if !full {
                return;
            }
        }
    }

    /// Publishes a message of another node into this node's room (its own
    /// were published here when they were accepted).
    fn apply(&mut self, message: RoomLiveMessage) {
        if let Some(at) = message.stored {
            if at.cursor <= self.last {
                return;
            }
            self.last = at.cursor;
        }
        if message.origin == self.cluster.node() {
            return;
        }
        self.node.room(RoomBusMessage {
            app: self.key.app().to_owned(),
            room: self.key.room().to_owned(),
            class: if message.stored.is_some() {
                RoomClass::Reliable
            } else {
                RoomClass::Droppable
            },
            priority: message.priority,
            payload: message.payload,
        });
    }
}

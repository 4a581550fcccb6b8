//! Live rooms (aggregation units, seed 6.1): per (app, room name) a ring of
//! droppable messages and a store of reliable ones under one offset space,
//! admission by class and rate caps, batches released by an adaptive window
//! bounded by a latency budget, pushed to members or answering their pulls
//! by offset, each batch encoded once for every member.
//!
//! `docs/rooms.md` describes the design, the shedding policy and the
//! defaults.

mod cluster;
mod config;
mod core;
mod member;
mod shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use proto::channel::RoomClass;
use proto::tunnel::ErrorCode;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use self::config::RoomRule;
pub use self::config::{RateLimit, RoomConfig, RoomMode};
pub use self::core::{DropReason, RoomReceipt};
pub(crate) use self::member::{ConnRooms, JoinOutcome};
use self::shared::{PublishError, Room};
use super::clock::unix_ms;

/// Longest room name, bytes (the protocol's bound,
/// [`pike_channel::limits::MAX_ROOM_NAME_LEN`]).
pub const MAX_ROOM_NAME: usize = pike_channel::limits::MAX_ROOM_NAME_LEN;

/// A message for a live room.
#[derive(Clone, Debug)]
pub struct RoomPublish {
    /// App id.
    pub app: String,
    /// Room name (1 to [`MAX_ROOM_NAME`] bytes, no control characters).
    pub room: String,
    /// The payload.
    pub payload: Bytes,
    /// Reliable (never dropped while the room exists) or droppable (shed
    /// under load).
    pub class: RoomClass,
    /// Priority: batches list higher priorities first, and priority 0 is
    /// shed first.
    pub priority: u32,
    /// Who publishes (e.g. the commenting user), for the per-publisher rate
    /// cap on droppable messages; `None`: only the room's cap applies.
    pub publisher: Option<String>,
}

/// Why a room request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// A field is invalid (room name, payload size).
    #[error("invalid room request: {0}")]
    Invalid(String),
    /// The room's reliable store is full; nothing was dropped to make room
    /// (see `RoomConfig::reliable_capacity`).
    #[error("the room's reliable store is full ({capacity} messages); retry later")]
    ReliableFull {
        /// The store's capacity.
        capacity: usize,
    },
    /// The gateway, or the app, holds its maximum number of live rooms
    /// (rooms without members or publishes go after their idle time).
    #[error("{scope} holds its maximum of {limit} rooms")]
    TooManyRooms {
        /// The limit.
        limit: usize,
        /// Whose limit: the gateway's (`GatewayConfig::max_rooms`, a last
        /// resort) or the app's quota (`GatewayConfig::max_rooms_per_app`).
        scope: RoomScope,
    },
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The cluster cannot carry the message to the other nodes (a reliable
    /// message: nothing was published; retry later).
    #[error("room publish unavailable: {0}")]
    Unavailable(String),
}

impl RoomError {
    /// The protocol code a join refused for this reason carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::TooManyRooms {
                scope: RoomScope::App,
                ..
            } => ErrorCode::LimitExceeded,
            Self::ReliableFull { .. } | Self::TooManyRooms { .. } => ErrorCode::Overloaded,
            Self::ShuttingDown => ErrorCode::GoingAway,
            Self::Unavailable(_) => ErrorCode::Overloaded,
        }
    }
}

/// Whose room limit was reached ([`RoomError::TooManyRooms`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum RoomScope {
    /// The gateway's limit on live rooms of every app together.
    Gateway,
    /// The app's room quota.
    App,
}

impl std::fmt::Display for RoomScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gateway => "the gateway",
            Self::App => "the app",
        })
    }
}

/// A room as the APIs show it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RoomStats {
    /// App id.
    pub app: String,
    /// Room name.
    pub room: String,
    /// Joined streams (a connection with two businesses in the room counts
    /// twice).
    pub members: usize,
    /// Member connections.
    pub connections: usize,
    /// The configured mode.
    pub mode: RoomMode,
    /// The mode in use now (push or pull).
    pub effective_mode: RoomMode,
    /// The first offset of this incarnation of the room.
    pub base: u64,
    /// The oldest offset still held.
    pub head: u64,
    /// The offset the next message gets.
    pub tail: u64,
    /// Offsets below this are released to members.
    pub released: u64,
    /// Droppable messages in the ring.
    pub ring_len: usize,
    /// Reliable messages in the store.
    pub reliable_len: usize,
    /// Accepted publishes per second, averaged over the last 10 seconds.
    pub publish_rate: f64,
    /// Droppable messages accepted.
    pub published_droppable: u64,
    /// Reliable messages accepted.
    pub published_reliable: u64,
    /// Droppable messages shed by the room's rate cap.
    pub dropped_room_rate: u64,
    /// Droppable messages shed by a publisher's rate cap.
    pub dropped_publisher_rate: u64,
    /// Droppable messages overwritten in the ring or past its retention.
    pub evicted_droppable: u64,
    /// Reliable messages past their retention.
    pub expired_reliable: u64,
    /// Reliable publishes refused because the store was full.
    pub refused_reliable: u64,
    /// Batches released.
    pub batches: u64,
    /// Encodings of released batches (shared by the members).
    pub encodes: u64,
    /// Encodings for one member (catch-up, odd offsets, empty answers).
    pub catchup_encodes: u64,
    /// Frames written to members.
    pub frames_sent: u64,
    /// Messages written to members (counted per member).
    pub messages_sent: u64,
    /// Missed messages reported to members.
    pub missed_reported: u64,
    /// When the room started, unix milliseconds.
    pub created_at_ms: u64,
}

/// Live rooms by (app, room name), with a count per app.
#[derive(Debug, Default)]
pub(crate) struct RoomTable {
    rooms: HashMap<(String, String), Arc<Room>>,
    per_app: HashMap<String, usize>,
}

impl RoomTable {
    fn get(&self, key: &(String, String)) -> Option<&Arc<Room>> {
        self.rooms.get(key)
    }

    fn len(&self) -> usize {
        self.rooms.len()
    }

    fn app_rooms(&self, app: &str) -> usize {
        self.per_app.get(app).copied().unwrap_or(0)
    }

    fn insert(&mut self, key: (String, String), room: Arc<Room>) {
        *self.per_app.entry(key.0.clone()).or_insert(0) += 1;
        self.rooms.insert(key, room);
    }

    /// Removes `room` if it is still the one registered under its key.
    pub(crate) fn remove(&mut self, room: &Arc<Room>) -> bool {
        let key = (room.app.clone(), room.name.clone());
        if !self.rooms.get(&key).is_some_and(|r| Arc::ptr_eq(r, room)) {
            return false;
        }
        self.rooms.remove(&key);
        if let Some(count) = self.per_app.get_mut(&key.0) {
            *count -= 1;
            if *count == 0 {
                self.per_app.remove(&key.0);
            }
        }
        true
    }
}

/// Live rooms, shared with their release tasks (which remove idle rooms).
pub(crate) type RoomMap = Arc<Mutex<RoomTable>>;

/// Told with (app, room, has members) when a room gains its first member
/// and loses its last.
#[derive(Clone)]
pub(crate) struct RoomWatch(pub(crate) Arc<WatchFn>);

/// (app, room, has members).
type WatchFn = dyn Fn(&str, &str, bool) + Send + Sync;

impl std::fmt::Debug for RoomWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomWatch")
    }
}

/// The gateway's rooms.
#[derive(Debug)]
pub(crate) struct Rooms {
    map: RoomMap,
    defaults: RoomConfig,
    rules: Vec<RoomRule>,
    max_rooms: usize,
    max_rooms_per_app: usize,
    last_base: AtomicU64,
    shutdown: CancellationToken,
    /// Set once, when the engine exists ([`Rooms::set_watch`]).
    watch: OnceLock<RoomWatch>,
}

/// Checks a room name (the protocol's rule,
/// [`pike_channel::limits::check_room_name`]).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    pike_channel::limits::check_room_name(name)
}

impl Rooms {
    pub(crate) fn new(
        defaults: RoomConfig,
        rules: Vec<RoomRule>,
        (max_rooms, max_rooms_per_app): (usize, usize),
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            map: Arc::new(Mutex::new(RoomTable::default())),
            defaults,
            rules,
            max_rooms,
            max_rooms_per_app,
            last_base: AtomicU64::new(0),
            shutdown,
            watch: OnceLock::new(),
        }
    }

    /// Installs the hook told about first and last members (once; rooms
    /// started before keep none).
    pub(crate) fn set_watch(&self, watch: RoomWatch) {
        let _ = self.watch.set(watch);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, RoomTable> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings of `room` in `app`: the most specific rule (exact name,
    /// then the longest prefix, then app-wide), else the defaults.
    pub(crate) fn config_for(&self, app: &str, room: &str) -> &RoomConfig {
        self.rules
            .iter()
            .filter_map(|rule| rule.rank(app, room).map(|rank| (rank, rule)))
            .max_by_key(|(rank, _)| *rank)
            .map_or(&self.defaults, |(_, rule)| &rule.config)
    }

    pub(crate) fn get(&self, app: &str, room: &str) -> Option<Arc<Room>> {
        self.map().get(&(app.to_owned(), room.to_owned())).cloned()
    }

    /// The room, started (with its release task) if needed.
    pub(crate) fn get_or_create(&self, app: &str, room: &str) -> Result<Arc<Room>, RoomError> {
        if self.shutdown.is_cancelled() {
            return Err(RoomError::ShuttingDown);
        }
        check_name(room).map_err(RoomError::Invalid)?;
        let key = (app.to_owned(), room.to_owned());
        let mut map = self.map();
        if let Some(room) = map.get(&key) {
            return Ok(room.clone());
        }
        // The app's quota first: one app filling the gateway's limit would
        // lock every other app out of rooms.
        if map.app_rooms(app) >= self.max_rooms_per_app {
            metrics::counter!(crate::server::metric_families::ROOMS_REFUSED_TOTAL, "reason" => "app_quota").increment(1);
            return Err(RoomError::TooManyRooms {
                limit: self.max_rooms_per_app,
                scope: RoomScope::App,
            });
        }
        if map.len() >= self.max_rooms {
            metrics::counter!(crate::server::metric_families::ROOMS_REFUSED_TOTAL, "reason" => "max_rooms").increment(1);
            return Err(RoomError::TooManyRooms {
                limit: self.max_rooms,
                scope: RoomScope::Gateway,
            });
        }
        // Offsets start at the creation time in unix ms × 1000, so a room
        // started again (after it went idle, or after a gateway restart)
        // continues above the offsets its clients hold.
        let created_at_ms = unix_ms();
        // Serialized by the map's lock.
        let base = created_at_ms
            .saturating_mul(1000)
            .max(self.last_base.load(Ordering::Relaxed) + 1);
        self.last_base.store(base, Ordering::Relaxed);
        let created = Arc::new(Room::new(
            key.0.clone(),
            key.1.clone(),
            self.config_for(app, room).clone(),
            base,
            created_at_ms,
            Instant::now(),
            self.watch.get().cloned(),
        ));
        map.insert(key, created.clone());
        metrics::gauge!(crate::server::metric_families::ROOMS).increment(1.0);
        tokio::spawn(created.clone().run(self.map.clone(), self.shutdown.clone()));
        tracing::debug!(app, room, base, "room started");
        Ok(created)
    }

    /// The rooms of `app`.
    pub(crate) fn list(&self, app: &str) -> Vec<Arc<Room>> {
        self.map()
            .rooms
            .values()
            .filter(|room| room.app == app)
            .cloned()
            .collect()
    }

    /// Publishes into a room (created if needed).
    pub(crate) fn publish(&self, request: RoomPublish) -> Result<RoomReceipt, RoomError> {
        check_size(
            self.config_for(&request.app, &request.room),
            request.payload.len(),
        )?;
        for _ in 0..3 {
            let room = self.get_or_create(&request.app, &request.room)?;
            match room.publish(
                request.class,
                request.priority,
                request.publisher.as_deref(),
                request.payload.clone(),
                Instant::now(),
            ) {
                Ok(receipt) => return Ok(receipt),
                Err(PublishError::Full(full)) => {
                    return Err(RoomError::ReliableFull {
                        capacity: full.capacity,
                    });
                }
                // Removed (idle) between lookup and publish: again.
                Err(PublishError::Closed) => {}
            }
        }
        Err(RoomError::ShuttingDown)
    }
}

/// Refuses a payload over the room's `max_message_bytes`.
fn check_size(config: &RoomConfig, len: usize) -> Result<(), RoomError> {
    if len > config.max_message_bytes {
        return Err(RoomError::Invalid(format!(
            "the payload has {len} bytes, more than the room's limit of {}",
            config.max_message_bytes
        )));
    }
    Ok(())
}

pub(crate) fn stats(room: &Room) -> RoomStats {
    let now = Instant::now();
    let (base, head, tail, released, ring_len, reliable_len, rate, counts) = room.with_core(|c| {
        (
            c.base(),
            c.head(),
            c.tail(),
            c.visible(),
            c.ring_len(),
            c.reliable_len(),
            c.publish_rate(now),
            c.counts(),
        )
    });
    let d = &room.deliveries;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    RoomStats {
        app: room.app.clone(),
        room: room.name.clone(),
        members: room.members(),
        connections: room.member_connections(),
        mode: room.config.mode,
        effective_mode: room.mode(),
        base,
        head,
        tail,
        released,
        ring_len,
        reliable_len,
        publish_rate: rate,
        published_droppable: counts.published_droppable,
        published_reliable: counts.published_reliable,
        dropped_room_rate: counts.dropped_room_rate,
        dropped_publisher_rate: counts.dropped_publisher_rate,
        evicted_droppable: counts.evicted_droppable,
        expired_reliable: counts.expired_reliable,
        refused_reliable: counts.refused_reliable,
        batches: load(&d.batches),
        encodes: load(&d.encodes),
        catchup_encodes: load(&d.catchup_encodes),
        frames_sent: load(&d.frames),
        messages_sent: load(&d.messages),
        missed_reported: load(&d.missed),
        created_at_ms: room.created_at_ms,
    }
}

#[cfg(test)]
mod tests;

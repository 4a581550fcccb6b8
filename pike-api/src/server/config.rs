//! Gateway settings.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pike_channel::ServerConfig as ChannelConfig;
use tntunnel::TunnelConfig;

use super::reconnect_spread::ReconnectSpread;
use super::room::{RoomConfig, RoomRule};

/// Settings of a [`Gateway`](super::Gateway). Defaults and why:
///
/// - heartbeat 60 s / 20 s (advertised to clients; see `docs/channel.md`);
/// - `command_queue` 1024 per connection: transient pushes and control
///   beyond it are dropped and counted (reliable pushes never queue: they
///   wait in the store, see `docs/gateway.md`);
/// - `write_timeout` 30 s: a connection whose socket accepts nothing for
///   that long is closed as a slow consumer;
/// - `read_batch` 64: reliable messages read from the store per read;
/// - `max_recipients` 100,000 aliases per push (tags and whole-app pushes):
///   beyond that use a room;
/// - `default_ttl` 7 days;
/// - no connection limit (size it from descriptors and memory);
///   `max_handshakes` 1024 connections in their TLS and hello exchange at
///   once: at two round trips of 150 ms each that still admits ≈ 3,400
///   handshakes a second, above what one core computes (≈ 1,300–1,800),
///   while a flood of silent clients holds at most 1024 handshake states;
/// - `drain_delay` 1 to 10 s: the reconnect window advised in go-away at
///   shutdown, so clients do not all come back at once;
/// - reconnect spread: every server hello advises a crash-reconnect window
///   of `connections × 1.5 / handshake rate`, 1 s to 60 s
///   ([`ReconnectSpread`]);
/// - rooms: [`RoomConfig::default`] for every room, at most 10,000 rooms per
///   app and 100,000 in all, 32 room joins per connection;
/// - uplink: at most 65,536 backend calls in flight across the gateway
///   (each idempotency key at most once, across reconnects);
/// - takeover on: a device's newer connection logged in to an alias
///   replaces its older one (`REPLACED`), on this node and, with a cluster
///   engine, on every node ([`takeover`](Self::takeover)).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub(crate) channel: Arc<ChannelConfig>,
    pub(crate) tunnel: TunnelConfig,
    pub(crate) command_queue: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) read_batch: usize,
    pub(crate) max_recipients: usize,
    pub(crate) default_ttl: Duration,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_handshakes: usize,
    pub(crate) drain_delay: (Duration, Duration),
    pub(crate) reconnect_spread: ReconnectSpread,
    pub(crate) shutdown_grace: Duration,
    pub(crate) rooms: RoomConfig,
    pub(crate) room_rules: Vec<RoomRule>,
    pub(crate) max_rooms: usize,
    pub(crate) max_rooms_per_app: usize,
    pub(crate) max_room_joins: usize,
    pub(crate) max_uplink_in_flight: usize,
    pub(crate) takeover: bool,
    /// The businesses of the apps that list theirs.
    pub(crate) businesses: HashMap<String, Arc<BTreeSet<String>>>,
}

impl GatewayConfig {
    /// Settings of every connection's channel machine (heartbeat, windows,
    /// idle timeout).
    pub fn channel(&mut self, config: ChannelConfig) -> &mut Self {
        self.channel = Arc::new(config);
        self
    }

    /// Frame limits and handshake timeout.
    pub fn tunnel(&mut self, config: TunnelConfig) -> &mut Self {
        self.tunnel = config;
        self
    }

    /// Queue of transient pushes and control per connection (at least 1).
    pub fn command_queue(&mut self, len: usize) -> &mut Self {
        self.command_queue = len.max(1);
        self
    }

    /// Time a connection may refuse to take written bytes before it is
    /// closed as a slow consumer.
    pub fn write_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.write_timeout = timeout;
        self
    }

    /// Reliable messages read from the store at a time (at least 1).
    pub fn read_batch(&mut self, len: usize) -> &mut Self {
        self.read_batch = len.max(1);
        self
    }

    /// Most aliases a tag or whole-app push may reach.
    pub fn max_recipients(&mut self, n: usize) -> &mut Self {
        self.max_recipients = n;
        self
    }

    /// Time to live of reliable messages pushed without one.
    pub fn default_ttl(&mut self, ttl: Duration) -> &mut Self {
        self.default_ttl = ttl;
        self
    }

    /// Most client connections at once across listeners (`None`: no limit;
    /// at least 1). More are refused before any handshake work: on plain
    /// TCP with `CLOSE OVERLOADED` and reconnect advice, on TLS by closing
    /// the socket, on QUIC with `CONNECTION_REFUSED` before the QUIC
    /// handshake (see `docs/gateway.md`).
    pub fn max_connections(&mut self, limit: Option<usize>) -> &mut Self {
        self.max_connections = limit.map(|n| n.max(1));
        self
    }

    /// Most connections in their handshake at once across listeners (TLS and
    /// hello, or an over-limit refusal; at least 1). While every slot is
    /// taken the gateway accepts nothing: new connections wait in the
    /// kernel's listen backlog until a handshake finishes or hits the
    /// handshake timeout.
    pub fn max_handshakes(&mut self, limit: usize) -> &mut Self {
        self.max_handshakes = limit.max(1);
        self
    }

    /// Reconnect window advised to clients when the gateway shuts down.
    pub fn drain_delay(&mut self, min: Duration, max: Duration) -> &mut Self {
        self.drain_delay = (min, max.max(min));
        self
    }

    /// How the reconnect window advised in every server hello (for a crash
    /// without go-away) is sized.
    pub fn reconnect_spread(&mut self, spread: ReconnectSpread) -> &mut Self {
        self.reconnect_spread = spread;
        self
    }

    /// Longest wait for connections to leave after go-away at shutdown.
    pub fn shutdown_grace(&mut self, grace: Duration) -> &mut Self {
        self.shutdown_grace = grace;
        self
    }

    /// Settings of every live room without a more specific
    /// [`room_config`](Self::room_config).
    pub fn rooms(&mut self, config: RoomConfig) -> &mut Self {
        self.rooms = config;
        self
    }

    /// Settings of some rooms of `app`: `pattern` is `*` (all its rooms),
    /// `prefix*`, or an exact room name. The most specific match wins (an
    /// exact name, then the longest prefix, then `*`); a room keeps the
    /// settings it started with.
    pub fn room_config(
        &mut self,
        app: impl Into<String>,
        pattern: impl Into<String>,
        config: RoomConfig,
    ) -> &mut Self {
        self.room_rules.push(RoomRule {
            app: app.into(),
            pattern: pattern.into(),
            config,
        });
        self
    }

    /// Most live rooms at once, every app together: the last resort behind
    /// the per-app quota ([`max_rooms_per_app`](Self::max_rooms_per_app)).
    /// Joins and publishes starting more are refused (a join with
    /// `OVERLOADED`).
    pub fn max_rooms(&mut self, limit: usize) -> &mut Self {
        self.max_rooms = limit;
        self
    }

    /// Most live rooms of one app at once, so that one app cannot lock the
    /// others out of rooms. Joins and publishes starting more are refused (a
    /// join with `LIMIT_EXCEEDED`); idle rooms go after their idle time.
    pub fn max_rooms_per_app(&mut self, limit: usize) -> &mut Self {
        self.max_rooms_per_app = limit;
        self
    }

    /// Most room joins one connection holds at once ((stream, room) pairs:
    /// two businesses in one room count twice). A join beyond it is refused
    /// with `LIMIT_EXCEEDED`; leaving a room frees a slot.
    pub fn max_room_joins(&mut self, limit: usize) -> &mut Self {
        self.max_room_joins = limit;
        self
    }

    /// Most uplink backend calls in flight across the gateway (at least 1).
    /// A call outlives the connection that started it, so that a resend on
    /// a new connection joins it instead of reaching the backend again; an
    /// uplink message beyond the limit is refused with `RATE_LIMITED`.
    pub fn max_uplink_in_flight(&mut self, limit: usize) -> &mut Self {
        self.max_uplink_in_flight = limit.max(1);
        self
    }

    /// Presence takeover (default on): when a connection's login to an
    /// alias is granted, an older connection of the same app and device id
    /// logged in to the same business and alias is closed with
    /// `REPLACED`, whichever node of a cluster holds it; a client does not
    /// reconnect by itself after `REPLACED` (`docs/cluster.md`, "Presence
    /// and takeover"). Send-only logins neither replace nor are replaced.
    /// Off: one device may hold any number of connections logged in as the
    /// same alias, and a cluster engine keeps no presence claims.
    pub fn takeover(&mut self, on: bool) -> &mut Self {
        self.takeover = on;
        self
    }

    /// The businesses app `app` has: a push to any other business of the
    /// app is refused ([`PushError::UnknownBiz`](super::PushError::UnknownBiz);
    /// nobody could ever log in to receive it). An app without a list (the
    /// default) takes pushes to any business. Bounded by the caller's
    /// configuration (one entry per configured business).
    pub fn businesses(
        &mut self,
        app: impl Into<String>,
        biz: impl IntoIterator<Item = String>,
    ) -> &mut Self {
        self.businesses
            .insert(app.into(), Arc::new(biz.into_iter().collect()));
        self
    }

    /// Whether `app` has business `biz` (always, for an app without a
    /// list).
    pub(crate) fn has_biz(&self, app: &str, biz: &str) -> bool {
        self.businesses
            .get(app)
            .is_none_or(|known| known.contains(biz))
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            channel: Arc::new(ChannelConfig::default()),
            tunnel: TunnelConfig::default(),
            command_queue: 1024,
            write_timeout: Duration::from_secs(30),
            read_batch: 64,
            max_recipients: 100_000,
            default_ttl: Duration::from_secs(7 * 24 * 3600),
            max_connections: None,
            max_handshakes: 1024,
            drain_delay: (Duration::from_secs(1), Duration::from_secs(10)),
            reconnect_spread: ReconnectSpread::default(),
            shutdown_grace: Duration::from_secs(15),
            rooms: RoomConfig::default(),
            room_rules: Vec::new(),
            max_rooms: 100_000,
            max_rooms_per_app: 10_000,
            max_room_joins: 32,
            max_uplink_in_flight: 65_536,
            takeover: true,
            businesses: HashMap::new(),
        }
    }
}

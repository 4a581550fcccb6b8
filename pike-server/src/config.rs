//! `pike.toml`: the gateway's configuration, with the zero-config defaults of
//! ARCHITECTURE §5 (every listener on loopback, data in `./pike-data`, a dev
//! app `demo`). Every option is documented in `docs/config.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pike_api::server::{RateLimit, RoomConfig, RoomMode};
use serde::{Deserialize, Serialize};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown keys included).
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is not acceptable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store, TLS identity and dev credentials live.
    pub data_dir: PathBuf,
    /// Listening addresses.
    pub listen: Listen,
    /// TLS identity for the TLS and QUIC listeners.
    pub tls: Tls,
    /// Heartbeat parameters advertised to clients.
    pub heartbeat: Heartbeat,
    /// Connection and frame limits.
    pub limits: Limits,
    /// Retention of reliable messages.
    pub store: Store,
    /// Live rooms.
    pub rooms: Rooms,
    /// The HTTP API server: its limits, and consent to plain HTTP off
    /// loopback.
    pub http: Http,
    /// Running as a node of a NATS JetStream cluster (off by default).
    pub cluster: crate::cluster::ClusterSection,
    // --- receipts (issue 18) ---
    /// Delivery receipts: status table and webhook queue bounds
    /// (`docs/receipts.md`).
    pub receipts: crate::receipts::ReceiptsSection,
    // --- end receipts ---
    /// Apps served. Empty: the dev app `demo`, whose credentials are
    /// generated into the data dir on first start.
    pub apps: Vec<App>,
    // --- MQTT access (docs/mqtt.md) ---
    /// MQTT 3.1.1 and 5.0 listeners: off unless configured, on at
    /// `127.0.0.1:1883` in the zero-config gateway ([`Config::zero_config`]).
    pub mqtt: crate::mqtt::MqttSection,
    // --- end MQTT access ---
}

/// Listening addresses; a listener set to `""` is off.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// Plain TCP (no encryption).
    #[serde(with = "optional_addr")]
    pub tcp: Option<SocketAddr>,
    /// TLS 1.3 over TCP.
    #[serde(with = "optional_addr")]
    pub tls: Option<SocketAddr>,
    /// QUIC.
    #[serde(with = "optional_addr")]
    pub quic: Option<SocketAddr>,
    /// The HTTP API, `/metrics` and `/healthz`.
    #[serde(with = "optional_addr")]
    pub http: Option<SocketAddr>,
    /// Allow plain TCP on an address other than loopback (off: plain text
    /// over a real network exposes credentials and payloads).
    pub allow_plain_non_loopback: bool,
}

/// TLS identity.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain. With `key`; absent: a self-signed
    /// development certificate generated into `data_dir/tls/`.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// Heartbeat parameters the server advertises in its hello.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Heartbeat {
    /// Heartbeat period, seconds (default 60: a fifth of the 5-minute
    /// carrier NAT timeout).
    pub interval_secs: u32,
    /// Silence after a ping that marks the link dead, seconds (default 20).
    pub timeout_secs: u32,
}

/// Limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most client connections at once across listeners (0 = no limit);
    /// more are refused before any handshake work (plain TCP:
    /// `CLOSE OVERLOADED` with reconnect advice; TLS: closed; QUIC:
    /// `CONNECTION_REFUSED`).
    pub max_connections: usize,
    /// Most connections in their TLS and hello exchange at once across
    /// listeners (default 1024, at least 1); more wait in the listen
    /// backlog.
    pub max_handshakes: usize,
    /// A connection with no business logged in this long after its
    /// handshake is closed with `IDLE_TIMEOUT`, pings or not, seconds
    /// (default 30; 0 = off).
    pub login_timeout_secs: u32,
    /// Largest frame body accepted, bytes (default 1 MiB).
    pub max_frame_length: usize,
    /// Time allowed for the TLS handshake and the hello exchange together,
    /// seconds (default 10).
    pub handshake_timeout_secs: u32,
    /// TLS handshakes a second this gateway takes, for sizing the
    /// crash-reconnect window advised to clients (0 = 1,000 per worker).
    pub reconnect_rate: u32,
    /// Largest crash-reconnect window advised, seconds (default 60).
    pub reconnect_window_max_secs: u32,
    /// Business logins per connection (default 32, 1 to 1,024); more get
    /// `LIMIT_EXCEEDED`.
    pub max_logins_per_connection: usize,
    /// Uplink messages a login may have unacked, advertised in the login
    /// result (default 64, 1 to 65,536); a client beyond it is closed with
    /// `PROTOCOL`.
    pub uplink_window: u32,
    /// Uplink payload bytes a connection may have waiting for backends
    /// (default 4 MiB, 1 KiB to 1 GiB); more get `RATE_LIMITED`.
    pub uplink_pending_bytes: usize,
    /// Uplink backend calls in flight across the gateway (default 65,536,
    /// at least 1); more get `RATE_LIMITED`.
    pub max_uplink_in_flight: usize,
    /// A device's newer connection logged in to an alias replaces its
    /// older one (`REPLACED`), on this node and across a cluster (default
    /// `true`; `docs/cluster.md`, "Presence and takeover").
    pub takeover: bool,
}

/// The HTTP API server (`listen.http`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// Allow the HTTP API on an address other than loopback (off: API keys
    /// and payloads would cross a real network in plain text; put a TLS
    /// proxy in front and keep the API on loopback).
    pub allow_plain_non_loopback: bool,
    /// Most HTTP connections open at once (default 1,024); more are
    /// answered `503 overloaded` and closed.
    pub max_connections: usize,
    /// Most requests handled at once (default 256); more get `503
    /// overloaded`.
    pub max_in_flight: usize,
    /// Most backend push connections (`GET /v1/push/ws`) open at once
    /// (default 64); more are answered `503 overloaded`.
    pub max_push_connections: usize,
    /// Serve the HTTP listener over TLS (`https`, and `wss` for device
    /// WebSockets) with the `[tls]` identity of the Pike TLS port (its
    /// certificate and key, or the self-signed development certificate);
    /// default off. With TLS the listener may be on any address without
    /// `allow_plain_non_loopback`.
    pub tls: bool,
    /// Devices may connect over WebSocket (`GET /v1/ws`, subprotocol
    /// `pike.v1`) on this listener (default on); their connections count
    /// against `limits.max_connections` like any other.
    pub websocket: bool,
    /// Time a client has to send a request's headers, also between requests
    /// on a kept-alive connection, seconds (default 10); the connection is
    /// closed after it.
    pub header_read_timeout_secs: u32,
    /// Longest a request may take, reading its body included, seconds
    /// (default 30): `503 timeout` after it. Also the longest a response may
    /// wait for the client to read it before the connection is closed.
    pub request_timeout_secs: u32,
    /// Largest request body, bytes (0, the default: twice
    /// `limits.max_frame_length`, room for the largest payload in base64);
    /// `POST /v1/push/batch` takes four times it.
    pub max_body_bytes: usize,
}

impl Http {
    /// The largest request body when frames are at most `max_frame_length`
    /// bytes.
    pub fn body_limit(&self, max_frame_length: usize) -> usize {
        if self.max_body_bytes == 0 {
            max_frame_length.saturating_mul(2)
        } else {
            self.max_body_bytes
        }
    }

    fn validate(&self, addr: Option<SocketAddr>) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(addr) = addr
            && !addr.ip().is_loopback()
            && !self.allow_plain_non_loopback
            && !self.tls
        {
            return invalid(format!(
                "the HTTP API on non-loopback address {addr} is plain HTTP: API keys and payloads would cross the network unencrypted; set http.tls = true, keep it on loopback behind a TLS proxy, or set http.allow_plain_non_loopback = true"
            ));
        }
        if self.max_connections == 0 || self.max_in_flight == 0 || self.max_push_connections == 0 {
            return invalid(
                "http.max_connections, http.max_in_flight and http.max_push_connections must be at least 1"
                    .into(),
            );
        }
        if self.header_read_timeout_secs == 0 || self.request_timeout_secs == 0 {
            return invalid(
                "http.header_read_timeout_secs and http.request_timeout_secs must be at least 1"
                    .into(),
            );
        }
        if self.max_body_bytes != 0 && self.max_body_bytes < 1024 {
            return invalid("http.max_body_bytes must be 0 (automatic) or at least 1024".into());
        }
        Ok(())
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            allow_plain_non_loopback: false,
            max_connections: 1024,
            max_in_flight: 256,
            max_push_connections: 64,
            tls: false,
            websocket: true,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            max_body_bytes: 0,
        }
    }
}

/// Retention of reliable downlink.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Store {
    /// Default time to live of a reliable message, seconds (default 7 days).
    pub default_ttl_secs: u64,
    /// Most messages kept per alias stream; the oldest go first (default
    /// 10,000).
    pub max_messages_per_stream: u64,
    /// How long an uplink's outcome is kept to answer a resend of its
    /// idempotency key, seconds (default 24 h; 1 s to 10 years).
    pub uplink_retention_secs: u64,
    /// The embedded store's page cache, MiB (default 64; 1 to 65,536): the
    /// bound on the memory the store adds to the gateway as its file grows.
    pub cache_mib: u64,
    /// How long the store's writer, when busy with concurrent callers,
    /// waits for more requests before a commit, microseconds (default
    /// 2,000; 0 to 100,000; 0 turns it off). An idle store never waits.
    pub commit_linger_us: u64,
    /// How long a device's ack may wait in memory before the store writes
    /// it with the others of its interval, milliseconds (default 1,000; 0
    /// to 60,000; 0 writes each ack at once). A crash forgets at most the
    /// last interval's acks: those messages are delivered again.
    pub position_flush_ms: u64,
}

/// Longest `store.commit_linger_us`: 100 ms.
pub const MAX_COMMIT_LINGER_US: u64 = 100_000;

/// Longest `store.position_flush_ms`: 60 s.
pub const MAX_POSITION_FLUSH_MS: u64 = 60_000;

/// Longest `store.uplink_retention_secs`: 10 years.
pub const MAX_UPLINK_RETENTION_SECS: u64 = 10 * 365 * 24 * 3600;

/// Largest `store.cache_mib`: 64 GiB.
pub const MAX_STORE_CACHE_MIB: u64 = 65_536;

/// Longest app id, in bytes.
pub const MAX_APP_ID_LEN: usize = 64;

/// One app.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// App id, as clients send it in their hello: 1 to [`MAX_APP_ID_LEN`]
    /// ASCII letters, digits, `-`, `_` and `.`, starting with a letter or a
    /// digit; unique.
    pub id: String,
    /// Bearer key of the HTTP API for this app (at least 16 characters;
    /// no two apps share one).
    pub api_key: String,
    /// HMAC-SHA256 secret that signs client credentials (at least 16 bytes).
    pub token_secret: String,
    /// Businesses and their backends.
    #[serde(default)]
    pub biz: Vec<Biz>,
    /// Refuse logins whose credential is not bound to the connection's
    /// device (no `device` claim) with `FORBIDDEN` (default off: such
    /// logins get their alias's pushes, never the device's).
    #[serde(default)]
    pub require_device_claim: bool,
    /// Browser origins whose pages may open device WebSockets
    /// (`GET /v1/ws`) for this app: `scheme://host[:port]`,
    /// `scheme://*.domain[:port]` or `*` (any), at most
    /// [`MAX_ALLOWED_ORIGINS`](crate::origin::MAX_ALLOWED_ORIGINS) entries
    /// of at most [`MAX_ORIGIN_LEN`](crate::origin::MAX_ORIGIN_LEN) bytes
    /// (`crate::origin`). Default empty: no web page may; clients that
    /// send no `Origin` (native apps, Node.js) are not concerned.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// Why `id` is not a valid app id, if it is not.
pub fn check_app_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_APP_ID_LEN {
        return Err(format!(
            "app id {id:?} must be 1 to {MAX_APP_ID_LEN} bytes long"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) || !id.chars().all(allowed) {
        return Err(format!(
            "app id {id:?} may use only ASCII letters, digits, '-', '_' and '.', and must start with a letter or a digit"
        ));
    }
    Ok(())
}

/// One business of an app.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Biz {
    /// Business id, as clients log in with it.
    pub id: String,
    /// Webhook URLs receiving this business's uplink (one backend instance
    /// each; the gateway balances logins over them and keeps each login
    /// sticky to one).
    #[serde(default)]
    pub uplink_webhooks: Vec<String>,
    /// Optional webhook asked to approve each login (after the token check).
    #[serde(default)]
    pub auth_webhook: Option<String>,
    /// Time a webhook may take, milliseconds (default 5000).
    #[serde(default = "default_webhook_timeout_ms")]
    pub webhook_timeout_ms: u64,
    /// Most uplink messages in one webhook request (default 1: one message
    /// per request, the single-message contract). Above 1 the backend must
    /// speak the batch contract (`docs/webhooks.md`, "Batches"): the
    /// gateway sends whatever is queued for a backend instance, up to this
    /// many, in one JSON request and reads a result per message. At most
    /// [`MAX_UPLINK_BATCH`].
    #[serde(default = "default_uplink_batch_max")]
    pub uplink_batch_max: usize,
    /// With batches: most batch requests in flight to one backend instance
    /// at once (default 4, 1 to [`MAX_UPLINK_BATCH_CONCURRENCY`]). Messages
    /// that arrive while they are all in flight wait for the next request.
    #[serde(default = "default_uplink_batch_concurrency")]
    pub uplink_batch_concurrency: usize,
    // --- receipts (issue 18) ---
    /// Where this business's delivery receipts go (`docs/receipts.md`):
    /// an http(s) URL receiving batches of receipts. None: receipts are
    /// kept for the status query only.
    #[serde(default)]
    pub receipt_webhook: Option<String>,
    /// Pushes that do not say `receipt` ask for receipts (default false).
    #[serde(default)]
    pub receipts_default: bool,
    // --- end receipts ---
}

/// Largest `uplink_batch_max`.
pub const MAX_UPLINK_BATCH: usize = 1_000;
/// Largest `uplink_batch_concurrency`.
pub const MAX_UPLINK_BATCH_CONCURRENCY: usize = 64;

fn default_webhook_timeout_ms() -> u64 {
    5_000
}

fn default_uplink_batch_max() -> usize {
    1
}

fn default_uplink_batch_concurrency() -> usize {
    4
}

/// Live rooms (`docs/rooms.md`): defaults for every room and rules for
/// some rooms of an app.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rooms {
    /// Most live rooms at once, every app together (default 100,000): the
    /// last resort behind `max_rooms_per_app`; joins and publishes that
    /// would start more are refused.
    pub max_rooms: usize,
    /// Most live rooms of one app at once (default 10,000), so one app
    /// cannot lock the others out of rooms.
    pub max_rooms_per_app: usize,
    /// Most room joins one connection holds at once (default 32; a stream
    /// and a room make one join).
    pub max_joins_per_connection: usize,
    /// Settings of every room (each key falls back to the built-in
    /// default).
    pub defaults: RoomSettings,
    /// Settings of some rooms of one app; the most specific rule wins (an
    /// exact name, then the longest prefix, then `*`), layered on the app's
    /// `*` rule and the defaults.
    pub rules: Vec<RoomRuleConfig>,
}

impl Default for Rooms {
    fn default() -> Self {
        Self {
            max_rooms: 100_000,
            max_rooms_per_app: 10_000,
            max_joins_per_connection: 32,
            defaults: RoomSettings::default(),
            rules: Vec::new(),
        }
    }
}

/// Settings of the rooms of `app` matching `name`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRuleConfig {
    /// App id.
    pub app: String,
    /// `*` (every room of the app), `prefix*`, or an exact room name.
    pub name: String,
    /// The settings (each key falls back to the app's `*` rule, then the
    /// defaults).
    #[serde(default)]
    pub settings: RoomSettings,
}

/// How a room's batches reach its members.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomModeConfig {
    /// Push up to `push_max_members` members, pull above.
    Auto,
    /// Push batches to every member.
    Push,
    /// Members pull by offset (long poll).
    Pull,
}

/// Room settings; every key is optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomSettings {
    /// `auto` (default), `push` or `pull`.
    pub mode: Option<RoomModeConfig>,
    /// Largest room that pushes in `auto` mode (default 10,000).
    pub push_max_members: Option<usize>,
    /// Droppable messages in the ring (default 1,024).
    pub ring_capacity: Option<usize>,
    /// Age at which a droppable message leaves the ring, seconds (default
    /// 30).
    pub ring_retention_secs: Option<u64>,
    /// Reliable messages kept (default 1,024); a full store refuses new
    /// ones.
    pub reliable_capacity: Option<usize>,
    /// Age at which a reliable message leaves the store, seconds (default
    /// 0: kept while the room exists).
    pub reliable_retention_secs: Option<u64>,
    /// Droppable messages accepted per second per room (default 1,000; 0:
    /// no cap).
    pub droppable_rate: Option<u32>,
    /// Burst of the room's cap (default: the rate).
    pub droppable_burst: Option<u32>,
    /// Droppable messages accepted per second per publisher (default 10; 0:
    /// no cap).
    pub publisher_rate: Option<u32>,
    /// Burst of a publisher's cap (default: twice its rate).
    pub publisher_burst: Option<u32>,
    /// Longest wait of a message in the room before its batch is released,
    /// milliseconds (default 50).
    pub latency_budget_ms: Option<u64>,
    /// A batch is released once it holds this many messages (default 100;
    /// 1 turns batching off).
    pub max_batch_messages: Option<usize>,
    /// ... or this many payload bytes (default 65,536).
    pub max_batch_bytes: Option<usize>,
    /// Largest payload accepted (default 65,536).
    pub max_message_bytes: Option<usize>,
    /// Longest time a pull is held, seconds (default 60).
    pub max_pull_wait_secs: Option<u64>,
    /// A room without members and publishes for this long is removed,
    /// seconds (default 300).
    pub idle_ttl_secs: Option<u64>,
}

impl RoomSettings {
    /// `base` with these settings applied.
    pub fn apply(&self, base: &RoomConfig) -> RoomConfig {
        let mut config = base.clone();
        if let Some(mode) = self.mode {
            config.mode(match mode {
                RoomModeConfig::Auto => RoomMode::Auto,
                RoomModeConfig::Push => RoomMode::Push,
                RoomModeConfig::Pull => RoomMode::Pull,
            });
        }
        if let Some(n) = self.push_max_members {
            config.push_max_members(n);
        }
        if let Some(n) = self.ring_capacity {
            config.ring_capacity(n);
        }
        if let Some(secs) = self.ring_retention_secs {
            config.ring_retention(Duration::from_secs(secs));
        }
        if let Some(n) = self.reliable_capacity {
            config.reliable_capacity(n);
        }
        if let Some(secs) = self.reliable_retention_secs {
            config.reliable_retention((secs > 0).then(|| Duration::from_secs(secs)));
        }
        let rate =
            |rate: Option<u32>, burst: Option<u32>, current: Option<RateLimit>, factor| match (
                rate, burst, current,
            ) {
                (Some(0), _, _) => None,
                (Some(rate), burst, _) => {
                    Some(RateLimit::new(rate, burst.unwrap_or(rate * factor)))
                }
                (None, Some(burst), Some(current)) => {
                    Some(RateLimit::new(current.per_second, burst))
                }
                (None, _, current) => current,
            };
        config.room_rate(rate(
            self.droppable_rate,
            self.droppable_burst,
            base.get_room_rate(),
            1,
        ));
        config.publisher_rate(rate(
            self.publisher_rate,
            self.publisher_burst,
            base.get_publisher_rate(),
            2,
        ));
        if let Some(ms) = self.latency_budget_ms {
            config.latency_budget(Duration::from_millis(ms));
        }
        if self.max_batch_messages.is_some() || self.max_batch_bytes.is_some() {
            config.max_batch(
                self.max_batch_messages
                    .unwrap_or_else(|| base.get_max_batch_messages()),
                self.max_batch_bytes
                    .unwrap_or_else(|| base.get_max_batch_bytes()),
            );
        }
        if let Some(n) = self.max_message_bytes {
            config.max_message_bytes(n);
        }
        if let Some(secs) = self.max_pull_wait_secs {
            config.max_pull_wait(Duration::from_secs(secs));
        }
        if let Some(secs) = self.idle_ttl_secs {
            config.idle_ttl(Duration::from_secs(secs));
        }
        config
    }

    fn validate(&self, place: &str, max_frame_length: usize) -> Result<(), ConfigError> {
        let zero = [
            ("ring_capacity", self.ring_capacity.map(|n| n as u64)),
            (
                "reliable_capacity",
                self.reliable_capacity.map(|n| n as u64),
            ),
            ("latency_budget_ms", self.latency_budget_ms),
            (
                "max_batch_messages",
                self.max_batch_messages.map(|n| n as u64),
            ),
            ("max_batch_bytes", self.max_batch_bytes.map(|n| n as u64)),
            (
                "max_message_bytes",
                self.max_message_bytes.map(|n| n as u64),
            ),
            ("droppable_burst", self.droppable_burst.map(u64::from)),
            ("publisher_burst", self.publisher_burst.map(u64::from)),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, v)| *v == Some(0)) {
            return Err(ConfigError::Invalid(format!(
                "{place}.{key} must be at least 1"
            )));
        }
        // The largest batch frame: the bigger of a full batch and one
        // message, plus per-message framing for up to 1,000 messages.
        let largest = self
            .max_batch_bytes
            .unwrap_or(64 * 1024)
            .max(self.max_message_bytes.unwrap_or(64 * 1024))
            + 1000 * 24
            + 512;
        if largest > max_frame_length {
            return Err(ConfigError::Invalid(format!(
                "{place}: batches of max_batch_bytes / max_message_bytes would not fit in limits.max_frame_length ({max_frame_length})"
            )));
        }
        Ok(())
    }
}

impl Limits {
    /// The channel settings of every connection: the advertised heartbeat
    /// and these limits.
    pub fn channel_config(
        &self,
        heartbeat: &Heartbeat,
    ) -> Result<pike_channel::ServerConfig, ConfigError> {
        let place = |key: &'static str| {
            move |e: pike_channel::ConfigError| ConfigError::Invalid(format!("{key}: {e}"))
        };
        let mut channel = pike_channel::ServerConfig::default();
        channel
            .heartbeat(
                Duration::from_secs(heartbeat.interval_secs.into()),
                Duration::from_secs(heartbeat.timeout_secs.into()),
            )
            .map_err(place("heartbeat"))?
            .max_logins(self.max_logins_per_connection)
            .map_err(place("limits.max_logins_per_connection"))?
            .uplink_window(self.uplink_window)
            .map_err(place("limits.uplink_window"))?
            .uplink_pending_bytes(self.uplink_pending_bytes)
            .map_err(place("limits.uplink_pending_bytes"))?
            .login_timeout(
                (self.login_timeout_secs > 0)
                    .then(|| Duration::from_secs(self.login_timeout_secs.into())),
            )
            .map_err(place("limits.login_timeout_secs"))?;
        Ok(channel)
    }
}

impl Rooms {
    /// The room settings for the gateway: the defaults, and one
    /// (pattern, settings) per rule, layered.
    pub fn resolve(&self) -> (RoomConfig, Vec<(String, String, RoomConfig)>) {
        let defaults = self.defaults.apply(&RoomConfig::default());
        let rules = self
            .rules
            .iter()
            .map(|rule| {
                let app_wide = self
                    .rules
                    .iter()
                    .find(|r| r.app == rule.app && r.name == "*" && rule.name != "*");
                let base =
                    app_wide.map_or_else(|| defaults.clone(), |r| r.settings.apply(&defaults));
                (
                    rule.app.clone(),
                    rule.name.clone(),
                    rule.settings.apply(&base),
                )
            })
            .collect();
        (defaults, rules)
    }
}

// --- MQTT access ---
impl Config {
    /// The gateway `pike-server` serves with no `--config`: the defaults
    /// (as an empty file), plus MQTT on `127.0.0.1:1883`, which
    /// configuration files turn on themselves (`docs/mqtt.md`).
    pub fn zero_config() -> Self {
        Self {
            mqtt: crate::mqtt::MqttSection::zero_config(),
            ..Self::default()
        }
    }
}
// --- end MQTT access ---

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(addr) = self.listen.tcp
            && !addr.ip().is_loopback()
            && !self.listen.allow_plain_non_loopback
        {
            return invalid(format!(
                "plain TCP on non-loopback address {addr} exposes credentials and payloads; use the TLS or QUIC listener, or set listen.allow_plain_non_loopback = true"
            ));
        }
        self.http.validate(self.listen.http)?;
        self.cluster.validate()?;
        // --- MQTT access ---
        self.mqtt.validate(self.listen.allow_plain_non_loopback)?;
        // --- end MQTT access ---
        // receipts (issue 18)
        self.receipts.check().map_err(ConfigError::Invalid)?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid("tls.cert and tls.key go together".into());
        }
        if self.heartbeat.interval_secs == 0 || self.heartbeat.timeout_secs == 0 {
            return invalid(
                "heartbeat.interval_secs and heartbeat.timeout_secs must be at least 1".into(),
            );
        }
        if !(1024..=(1 << 28) - 1).contains(&self.limits.max_frame_length) {
            return invalid("limits.max_frame_length must be between 1024 and 268435455".into());
        }
        if self.limits.handshake_timeout_secs == 0 {
            return invalid("limits.handshake_timeout_secs must be at least 1".into());
        }
        if self.limits.max_handshakes == 0 {
            return invalid("limits.max_handshakes must be at least 1".into());
        }
        if self.limits.login_timeout_secs > 3600 {
            return invalid("limits.login_timeout_secs must be at most 3600 (0 = off)".into());
        }
        self.limits.channel_config(&self.heartbeat)?;
        if self.limits.max_uplink_in_flight == 0 {
            return invalid("limits.max_uplink_in_flight must be at least 1".into());
        }
        if self.rooms.max_rooms_per_app == 0 || self.rooms.max_joins_per_connection == 0 {
            return invalid(
                "rooms.max_rooms_per_app and rooms.max_joins_per_connection must be at least 1"
                    .into(),
            );
        }
        self.rooms
            .defaults
            .validate("rooms.defaults", self.limits.max_frame_length)?;
        for rule in &self.rooms.rules {
            if rule.app.is_empty() || rule.name.is_empty() {
                return invalid("rooms.rules: app and name must not be empty".into());
            }
            rule.settings.validate(
                &format!("rooms.rules[{}:{}].settings", rule.app, rule.name),
                self.limits.max_frame_length,
            )?;
        }
        if self.store.max_messages_per_stream == 0 || self.store.default_ttl_secs == 0 {
            return invalid(
                "store.max_messages_per_stream and store.default_ttl_secs must be at least 1"
                    .into(),
            );
        }
        if !(1..=MAX_UPLINK_RETENTION_SECS).contains(&self.store.uplink_retention_secs) {
            return invalid(format!(
                "store.uplink_retention_secs must be between 1 and {MAX_UPLINK_RETENTION_SECS} (10 years)"
            ));
        }
        if !(1..=MAX_STORE_CACHE_MIB).contains(&self.store.cache_mib) {
            return invalid(format!(
                "store.cache_mib must be between 1 and {MAX_STORE_CACHE_MIB}"
            ));
        }
        if self.store.position_flush_ms > MAX_POSITION_FLUSH_MS {
            return invalid(format!(
                "store.position_flush_ms must be between 0 and {MAX_POSITION_FLUSH_MS} (60 s)"
            ));
        }
        if self.store.commit_linger_us > MAX_COMMIT_LINGER_US {
            return invalid(format!(
                "store.commit_linger_us must be between 0 and {MAX_COMMIT_LINGER_US} (100 ms)"
            ));
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for app in &self.apps {
            check_app_id(&app.id).or_else(invalid)?;
            if !ids.insert(app.id.as_str()) {
                return invalid(format!("app id {:?} is duplicated", app.id));
            }
            if app.api_key.len() < 16 || app.token_secret.len() < 16 {
                return invalid(format!(
                    "app {:?}: api_key and token_secret need at least 16 characters",
                    app.id
                ));
            }
            if let Some(first) = keys.insert(app.api_key.as_str(), app.id.as_str()) {
                return invalid(format!(
                    "apps {first:?} and {:?} have the same api_key: each app needs its own (an HTTP API key names one app)",
                    app.id
                ));
            }
            crate::origin::check_allowed_origins(&app.allowed_origins)
                .map_err(|e| ConfigError::Invalid(format!("app {:?}: {e}", app.id)))?;
            let mut bizs = std::collections::HashSet::new();
            for biz in &app.biz {
                if biz.id.is_empty() || !bizs.insert(biz.id.as_str()) {
                    return invalid(format!(
                        "app {:?}: biz id {:?} is empty or duplicated",
                        app.id, biz.id
                    ));
                }
                if !(1..=MAX_UPLINK_BATCH).contains(&biz.uplink_batch_max) {
                    return invalid(format!(
                        "app {:?} biz {:?}: uplink_batch_max {} is not within 1..={MAX_UPLINK_BATCH}",
                        app.id, biz.id, biz.uplink_batch_max
                    ));
                }
                if !(1..=MAX_UPLINK_BATCH_CONCURRENCY).contains(&biz.uplink_batch_concurrency) {
                    return invalid(format!(
                        "app {:?} biz {:?}: uplink_batch_concurrency {} is not within 1..={MAX_UPLINK_BATCH_CONCURRENCY}",
                        app.id, biz.id, biz.uplink_batch_concurrency
                    ));
                }
                // receipts (issue 18): the receipt webhook is checked too.
                for url in biz
                    .uplink_webhooks
                    .iter()
                    .chain(&biz.auth_webhook)
                    .chain(&biz.receipt_webhook)
                {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return invalid(format!(
                            "app {:?} biz {:?}: webhook {url:?} is not an http(s) URL",
                            app.id, biz.id
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./pike-data"),
            listen: Listen::default(),
            tls: Tls::default(),
            heartbeat: Heartbeat::default(),
            limits: Limits::default(),
            store: Store::default(),
            rooms: Rooms::default(),
            http: Http::default(),
            cluster: crate::cluster::ClusterSection::default(),
            receipts: crate::receipts::ReceiptsSection::default(),
            apps: Vec::new(),
            // --- MQTT access ---
            mqtt: crate::mqtt::MqttSection::off(),
            // --- end MQTT access ---
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        let local = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        Self {
            tcp: local(9300),
            tls: local(9301),
            quic: local(9302),
            http: local(9380),
            allow_plain_non_loopback: false,
        }
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            interval_secs: 60,
            timeout_secs: 20,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 0,
            max_handshakes: 1024,
            login_timeout_secs: 30,
            max_frame_length: 1 << 20,
            handshake_timeout_secs: 10,
            reconnect_rate: 0,
            reconnect_window_max_secs: 60,
            max_logins_per_connection: 32,
            uplink_window: 64,
            uplink_pending_bytes: 4 << 20,
            max_uplink_in_flight: 65_536,
            takeover: true,
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Self {
            default_ttl_secs: 7 * 24 * 3600,
            max_messages_per_stream: 10_000,
            uplink_retention_secs: 24 * 3600,
            cache_mib: 64,
            commit_linger_us: 2_000,
            position_flush_ms: 1_000,
        }
    }
}

/// `""` or absent turns a listener off.
pub(crate) mod optional_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        addr: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str(""),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an ip:port address")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_the_zero_config_gateway() {
        let config = parse("").unwrap();
        assert_eq!(config.listen.tcp, Some("127.0.0.1:9300".parse().unwrap()));
        assert_eq!(config.listen.tls, Some("127.0.0.1:9301".parse().unwrap()));
        assert_eq!(config.listen.quic, Some("127.0.0.1:9302".parse().unwrap()));
        assert_eq!(config.listen.http, Some("127.0.0.1:9380".parse().unwrap()));
        assert_eq!(config.data_dir, PathBuf::from("./pike-data"));
        assert!(config.apps.is_empty());
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../docs/pike.example.toml");
        let config = parse(text).unwrap();
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].biz[0].uplink_webhooks.len(), 2);
    }

    #[test]
    fn admission_limits_default_and_are_checked() {
        let limits = parse("").unwrap().limits;
        assert_eq!(
            (limits.max_handshakes, limits.login_timeout_secs),
            (1024, 30)
        );
        let config = parse(
            "[limits]
max_handshakes = 8
login_timeout_secs = 0
",
        )
        .unwrap();
        assert_eq!(config.limits.max_handshakes, 8);
        assert_eq!(config.limits.login_timeout_secs, 0);
        let err = parse(
            "[limits]
max_handshakes = 0
",
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_handshakes"), "{err}");
        let err = parse(
            "[limits]
login_timeout_secs = 3601
",
        )
        .unwrap_err();
        assert!(err.to_string().contains("login_timeout_secs"), "{err}");
    }

    #[test]
    fn plain_tcp_off_loopback_needs_consent() {
        let err = parse("[listen]\ntcp = \"0.0.0.0:9300\"\n").unwrap_err();
        assert!(
            err.to_string().contains("allow_plain_non_loopback"),
            "{err}"
        );
        assert!(
            parse("[listen]\ntcp = \"0.0.0.0:9300\"\nallow_plain_non_loopback = true\n").is_ok()
        );
        assert!(
            parse("[listen]\ntcp = \"\"\n")
                .unwrap()
                .listen
                .tcp
                .is_none()
        );
    }

    #[test]
    fn plain_http_off_loopback_needs_consent() {
        let err = parse("[listen]\nhttp = \"0.0.0.0:9380\"\n").unwrap_err();
        assert!(
            err.to_string().contains("http.allow_plain_non_loopback"),
            "{err}"
        );
        let err = parse("[listen]\nhttp = \"[::]:9380\"\n").unwrap_err();
        assert!(err.to_string().contains("plain HTTP"), "{err}");
        // Consent to plain TCP is not consent to plain HTTP.
        assert!(
            parse("[listen]\nhttp = \"0.0.0.0:9380\"\nallow_plain_non_loopback = true\n").is_err()
        );
        let config =
            parse("[listen]\nhttp = \"0.0.0.0:9380\"\n[http]\nallow_plain_non_loopback = true\n")
                .unwrap();
        assert_eq!(config.listen.http, Some("0.0.0.0:9380".parse().unwrap()));
        assert!(parse("[listen]\nhttp = \"127.0.0.1:9380\"\n").is_ok());
        assert!(parse("[listen]\nhttp = \"[::1]:9380\"\n").is_ok());
        // HTTPS needs no consent.
        let config = parse("[listen]\nhttp = \"0.0.0.0:9380\"\n[http]\ntls = true\n").unwrap();
        assert!(config.http.tls);
        assert!(
            !parse("").unwrap().http.tls,
            "plain HTTP on loopback unless asked"
        );
    }

    #[test]
    fn http_limits_have_defaults_and_bounds() {
        let config = parse("").unwrap();
        assert_eq!(config.http.max_connections, 1024);
        assert_eq!(config.http.max_in_flight, 256);
        assert_eq!(config.http.header_read_timeout_secs, 10);
        assert_eq!(config.http.request_timeout_secs, 30);
        assert_eq!(
            config.http.body_limit(1 << 20),
            2 << 20,
            "follows the frame limit"
        );
        let config = parse("[http]\nmax_body_bytes = 4096\n").unwrap();
        assert_eq!(config.http.body_limit(1 << 20), 4096);
        for bad in [
            "max_connections = 0",
            "max_in_flight = 0",
            "header_read_timeout_secs = 0",
            "request_timeout_secs = 0",
            "max_body_bytes = 10",
        ] {
            let err = parse(&format!("[http]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains("http."), "{bad}: {err}");
        }
    }

    #[test]
    fn room_settings_layer_defaults_app_and_rule() {
        let config = parse(
            r#"
[rooms]
max_rooms = 10
[rooms.defaults]
mode = "pull"
latency_budget_ms = 20
droppable_rate = 0
[[rooms.rules]]
app = "demo"
name = "*"
settings = { ring_capacity = 50 }
[[rooms.rules]]
app = "demo"
name = "live:*"
[rooms.rules.settings]
mode = "push"
publisher_rate = 3
"#,
        )
        .unwrap();
        let (defaults, rules) = config.rooms.resolve();
        let mut expected = RoomConfig::default();
        expected
            .mode(RoomMode::Pull)
            .latency_budget(Duration::from_millis(20))
            .room_rate(None);
        assert_eq!(defaults, expected);
        let live = &rules[1].2;
        let mut expected_live = expected.clone();
        expected_live
            .ring_capacity(50)
            .mode(RoomMode::Push)
            .publisher_rate(Some(RateLimit::new(3, 6)));
        assert_eq!(live, &expected_live);
        assert_eq!(config.rooms.max_rooms, 10);

        let err = parse("[rooms.defaults]\nmode = \"fast\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = parse("[rooms.defaults]\nmax_batch_messages = 0\n").unwrap_err();
        assert!(err.to_string().contains("max_batch_messages"), "{err}");
        let err = parse("[limits]\nmax_frame_length = 4096\n").unwrap_err();
        assert!(err.to_string().contains("max_frame_length"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_their_place() {
        let err = parse("[listen]\ntcp = \"nonsense\"\n").unwrap_err();
        assert!(err.to_string().contains("not an ip:port"), "{err}");
        let err = parse("[limits]\nmax_frame_length = 10\n").unwrap_err();
        assert!(err.to_string().contains("max_frame_length"), "{err}");
        let err = parse("unknown_key = 1\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = parse("[[apps]]\nid = \"a\"\napi_key = \"short\"\ntoken_secret = \"short\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("16 characters"), "{err}");
        let err = parse(
            "[[apps]]\nid = \"a\"\napi_key = \"0123456789abcdef\"\ntoken_secret = \"0123456789abcdef\"\n[[apps.biz]]\nid = \"chat\"\nuplink_webhooks = [\"ftp://x\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("not an http(s) URL"), "{err}");
        let biz = |line: &str| {
            format!(
                "[[apps]]\nid = \"a\"\napi_key = \"0123456789abcdef\"\ntoken_secret = \"0123456789abcdef\"\n[[apps.biz]]\nid = \"chat\"\nuplink_webhooks = [\"http://b\"]\n{line}\n"
            )
        };
        let batched = parse(&biz("uplink_batch_max = 256\nuplink_batch_concurrency = 2")).unwrap();
        assert_eq!(batched.apps[0].biz[0].uplink_batch_max, 256);
        assert_eq!(batched.apps[0].biz[0].uplink_batch_concurrency, 2);
        let single = parse(&biz("")).unwrap();
        assert_eq!(
            (
                single.apps[0].biz[0].uplink_batch_max,
                single.apps[0].biz[0].uplink_batch_concurrency
            ),
            (1, 4),
            "one message per request unless asked"
        );
        for (line, field) in [
            ("uplink_batch_max = 0", "uplink_batch_max"),
            ("uplink_batch_max = 1001", "uplink_batch_max"),
            ("uplink_batch_concurrency = 0", "uplink_batch_concurrency"),
            ("uplink_batch_concurrency = 65", "uplink_batch_concurrency"),
        ] {
            let err = parse(&biz(line)).unwrap_err();
            assert!(err.to_string().contains(field), "{line}: {err}");
        }
        let err = parse("[tls]\ncert = \"c.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }

    #[test]
    fn request_and_room_limits_are_read_and_checked() {
        let config = parse(
            "[limits]\nmax_logins_per_connection = 4\nuplink_window = 8\nuplink_pending_bytes = 65536\nmax_uplink_in_flight = 100\n[rooms]\nmax_rooms_per_app = 5\nmax_joins_per_connection = 3\n",
        )
        .unwrap();
        let channel = config.limits.channel_config(&config.heartbeat).unwrap();
        assert_eq!(channel.get_max_logins(), 4);
        assert_eq!(channel.get_uplink_window(), 8);
        assert_eq!(channel.get_uplink_pending_bytes(), 65536);
        assert_eq!(config.limits.max_uplink_in_flight, 100);
        assert!(config.limits.takeover, "takeover is on unless turned off");
        assert_eq!(
            (
                config.rooms.max_rooms_per_app,
                config.rooms.max_joins_per_connection
            ),
            (5, 3)
        );
        let defaults = parse("").unwrap();
        assert_eq!(defaults.limits.max_logins_per_connection, 32);
        assert_eq!(defaults.rooms.max_rooms_per_app, 10_000);
        assert_eq!(
            (
                defaults.store.uplink_retention_secs,
                defaults.store.cache_mib
            ),
            (86_400, 64)
        );
        assert_eq!(defaults.store.commit_linger_us, 2_000);
        assert_eq!(defaults.store.position_flush_ms, 1_000);
        let store =
            parse("[store]\nuplink_retention_secs = 120\ncache_mib = 16\ncommit_linger_us = 0\n")
                .unwrap();
        assert_eq!(
            (
                store.store.uplink_retention_secs,
                store.store.cache_mib,
                store.store.commit_linger_us
            ),
            (120, 16, 0)
        );
        for (text, key) in [
            (
                "[limits]\nmax_logins_per_connection = 0\n",
                "max_logins_per_connection",
            ),
            ("[limits]\nuplink_window = 0\n", "uplink_window"),
            (
                "[limits]\nuplink_pending_bytes = 10\n",
                "uplink_pending_bytes",
            ),
            (
                "[limits]\nmax_uplink_in_flight = 0\n",
                "max_uplink_in_flight",
            ),
            (
                "[rooms]\nmax_joins_per_connection = 0\n",
                "max_joins_per_connection",
            ),
            (
                "[store]\nuplink_retention_secs = 0\n",
                "uplink_retention_secs",
            ),
            (
                "[store]\nuplink_retention_secs = 315360001\n",
                "uplink_retention_secs",
            ),
            ("[store]\ncache_mib = 0\n", "cache_mib"),
            ("[store]\ncache_mib = 65537\n", "cache_mib"),
            ("[store]\ncommit_linger_us = 100001\n", "commit_linger_us"),
            ("[store]\nposition_flush_ms = 60001\n", "position_flush_ms"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }

    fn apps_toml(apps: &[(&str, &str)]) -> String {
        apps.iter()
            .map(|(id, key)| {
                format!(
                    "[[apps]]\nid = {id:?}\napi_key = {key:?}\ntoken_secret = \"0123456789abcdef0123\"\n"
                )
            })
            .collect()
    }

    #[test]
    fn two_apps_with_one_api_key_are_refused_naming_both() {
        let err = parse(&apps_toml(&[
            ("shop", "pk_0123456789abcdef"),
            ("news", "pk_fedcba9876543210"),
            ("chat", "pk_0123456789abcdef"),
        ]))
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("\"shop\"") && message.contains("\"chat\""),
            "{message}"
        );
        assert!(message.contains("same api_key"), "{message}");
        assert!(
            parse(&apps_toml(&[
                ("shop", "pk_0123456789abcdef"),
                ("chat", "pk_0123456789abcdeF"),
            ]))
            .is_ok()
        );
    }

    #[test]
    fn allowed_origins_are_read_and_checked_at_load() {
        let app = |origins: &str| {
            format!(
                "[[apps]]\nid = \"shop\"\napi_key = \"pk_0123456789abcdef\"\ntoken_secret = \"0123456789abcdef\"\nallowed_origins = {origins}\n"
            )
        };
        let config = parse(&app(
            r#"["https://shop.example", "https://*.shop.example", "*"]"#,
        ))
        .unwrap();
        assert_eq!(config.apps[0].allowed_origins.len(), 3);
        assert!(
            parse(&apps_toml(&[("shop", "pk_0123456789abcdef")]))
                .unwrap()
                .apps[0]
                .allowed_origins
                .is_empty(),
            "no web page unless listed"
        );
        let err = parse(&app(r#"["https://shop.example/"]"#)).unwrap_err();
        assert!(err.to_string().contains("allowed_origins"), "{err}");
        assert!(err.to_string().contains("\"shop\""), "{err}");
        let many: Vec<String> = (0..=crate::origin::MAX_ALLOWED_ORIGINS)
            .map(|i| format!("\"https://s{i}.example\""))
            .collect();
        let err = parse(&app(&format!("[{}]", many.join(", ")))).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
    }

    #[test]
    fn app_ids_are_validated() {
        for good in [
            "demo",
            "demo2",
            "a",
            "com.example.app",
            "shop_eu-1",
            &"a".repeat(64),
        ] {
            assert!(check_app_id(good).is_ok(), "{good:?}");
            assert!(
                parse(&apps_toml(&[(good, "pk_0123456789abcdef")])).is_ok(),
                "{good:?}"
            );
        }
        for bad in [
            "",
            "demo x",
            "demo\n",
            "-demo",
            ".demo",
            "démo",
            "demo/x",
            "app=demo",
            &"a".repeat(65),
        ] {
            let err = parse(&apps_toml(&[(bad, "pk_0123456789abcdef")])).unwrap_err();
            assert!(err.to_string().contains("app id"), "{bad:?}: {err}");
        }
        let err = parse(&apps_toml(&[
            ("demo", "pk_0123456789abcdef"),
            ("demo", "pk_fedcba9876543210"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("duplicated"), "{err}");
    }
}

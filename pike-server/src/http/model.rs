//! The JSON bodies of the HTTP API, shared with clients such as `pike push`
//! (`docs/http-api.md` describes every field).
//!
//! Request bodies read their optional fields as `docs/openapi.yaml` types
//! them: `null` is refused rather than read as "left out", and an integer
//! may be written as a whole-number float (`57.0`).

use serde::{Deserialize, Serialize};

mod field;
mod stats;

pub use stats::{
    STATS_METRICS_GATEWAY, STATS_METRICS_NONE, StatsRates, StatsResponse, StatsSample, StatsSla,
    StatsTotals,
};

/// Body of `POST /v1/push`: exactly one target (`alias`, `aliases`, `tag`,
/// `device` or `all: true`) and exactly one payload (`payload` or
/// `payload_base64`).
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    /// Business id.
    pub biz: String,
    /// Target: every device logged in as this alias.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Target: several aliases (duplicates count once).
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
    /// Target: the aliases bound to this tag.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Target: the connections of one device (transient pushes only).
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Target: every alias known in the business, when `true`.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Payload as UTF-8 text.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Payload as standard base64 (with padding), for binary payloads.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// Stored and delivered at least once (default `true`), or transient.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reliable: Option<bool>,
    /// Time to live of a reliable push, seconds (default: the gateway's).
    #[serde(default, deserialize_with = "field::whole_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// Priority, 0 (default) = normal.
    #[serde(default, deserialize_with = "field::whole_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Report delivery receipts for this message (`docs/receipts.md`);
    /// absent: the business's `receipts_default`.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<bool>,
}

/// Answer of `POST /v1/push`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct PushResponse {
    /// The message id, as a decimal string (it may exceed 2^53).
    pub message_id: String,
    /// Aliases the message was stored for (reliable pushes).
    pub stored: usize,
    /// Connections online that got it (or will, from the store).
    pub online: usize,
    /// Connections whose queue was full (transient pushes only).
    pub dropped: usize,
}

/// Body of `POST /v1/push/batch`: 1 to [`MAX_BATCH_PUSHES`] pushes, each
/// exactly a [`PushBody`] of `POST /v1/push`.
///
/// [`MAX_BATCH_PUSHES`]: super::MAX_BATCH_PUSHES
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushBatchBody {
    /// The pushes, done in this order.
    pub pushes: Vec<PushBody>,
}

/// Answer of `POST /v1/push/batch` (200 once every item was valid): one
/// result per item, in the order of the request.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct PushBatchResponse {
    /// The item results, in order.
    pub results: Vec<PushBatchResult>,
}

/// The result of one item of a batch: its receipt, or why it failed (a
/// failed item does not stop the items after it).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PushBatchResult {
    /// Pushed: the same receipt as `POST /v1/push` answers.
    Pushed(PushResponse),
    /// Not pushed: the error `POST /v1/push` would have answered.
    Failed(ErrorBody),
}

/// Query of `GET /v1/presence`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceQuery {
    /// Business id.
    pub biz: String,
    /// Alias.
    pub alias: String,
}

/// Answer of `GET /v1/presence`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct PresenceResponse {
    /// Whether at least one connection is logged in as the alias.
    pub online: bool,
    /// Those connections (on every gateway node that answered).
    pub connections: Vec<Connection>,
    /// Gateway nodes that answered (1 on a single node).
    pub nodes_answered: usize,
    /// Gateway nodes alive when asked; more than `nodes_answered`: the
    /// answer misses the connections of the nodes that did not answer in
    /// time (500 ms).
    pub nodes_expected: usize,
}

/// Query of `GET /v1/connections`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsQuery {
    /// Most connections listed, 1 to 1,000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Where the page starts: the `next_cursor` of the previous page
    /// (absent: the first page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Answer of `GET /v1/connections`: one page.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ConnectionsResponse {
    /// Open connections of the app (all pages).
    pub total: usize,
    /// Up to `limit` of them, oldest first.
    pub connections: Vec<Connection>,
    /// The `cursor` of the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Gateway nodes that answered (1 on a single node).
    pub nodes_answered: usize,
    /// Gateway nodes alive when asked; more than `nodes_answered`: the
    /// answer misses the connections of the nodes that did not answer in
    /// time (500 ms).
    pub nodes_expected: usize,
}

/// Body of `POST /v1/disconnect`: exactly one of `device`, `alias` (with
/// `biz`) or `connection`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectBody {
    /// Every connection of this device.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Business of `alias`.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biz: Option<String>,
    /// Every connection logged in to `biz` as this alias.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The connection with this connection token.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Why (the close frame's message; default `disconnected by the app`).
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Answer of `POST /v1/disconnect`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct DisconnectResponse {
    /// Connections told to close (0 when none matched).
    pub disconnected: usize,
    /// Gateway nodes that answered (1 on a single node).
    pub nodes_answered: usize,
    /// Gateway nodes alive when asked; more than `nodes_answered`: the
    /// answer misses the connections of the nodes that did not answer in
    /// time (500 ms).
    pub nodes_expected: usize,
}

/// A client connection.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Connection {
    /// The connection token (key of its trace).
    pub token: String,
    /// Device id from the client's hello.
    pub device_id: String,
    /// `tcp`, `tls` or `quic`.
    pub transport: String,
    /// The client's address, `ip:port`.
    pub peer: String,
    /// When it connected, unix milliseconds.
    pub connected_at_ms: u64,
    /// Its business logins.
    pub logins: Vec<Login>,
}

/// A business login on a connection.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Login {
    /// Business id.
    pub biz: String,
    /// Alias.
    pub alias: String,
    /// Route id of its uplink backend.
    pub route_id: String,
    /// When it logged in, unix milliseconds.
    pub since_ms: u64,
}

/// Answer of `GET /v1/connections/{token}/trace`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct TraceResponse {
    /// The connection token.
    pub token: String,
    /// Its signals, oldest first.
    pub events: Vec<TraceEventBody>,
    /// Gateway nodes that answered (1 on a single node).
    pub nodes_answered: usize,
    /// Gateway nodes alive when asked; more than `nodes_answered`: the
    /// answer misses the connections of the nodes that did not answer in
    /// time (500 ms).
    pub nodes_expected: usize,
}

/// One signal of a connection trace.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct TraceEventBody {
    /// Wall-clock time, unix milliseconds.
    pub at_ms: u64,
    /// What happened: `hello`, `auth`, `alias-bind`, `tags`, `downlink`,
    /// `ack`, `uplink`, `heartbeat`, `go-away`, `close`, ...
    pub signal: String,
    /// Details (ids, codes, counts).
    pub detail: String,
}

/// Body of `POST /v1/tokens`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Business the credential may log in to.
    pub biz: String,
    /// Alias it may bind.
    pub alias: String,
    /// Validity, seconds: 1 to 2,592,000 (30 days), default 86,400.
    #[serde(default, deserialize_with = "field::whole_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// The device id the credential is bound to (a `device` claim): valid
    /// only on that device's connections, which then receive the pushes
    /// addressed to the device. Absent: any device, no device pushes.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// Answer of `POST /v1/tokens`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct TokenResponse {
    /// The client credential (a JWT signed HS256 with the app's token
    /// secret).
    pub token: String,
    /// Its expiry, unix seconds.
    pub expires_at: u64,
}

/// Answer of `GET /healthz`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct HealthResponse {
    /// `ok` (200), or `unavailable` (503): the cluster engine cannot reach
    /// NATS or JetStream does not answer; pushes are refused meanwhile.
    pub status: String,
    /// Open client connections on this gateway, all apps.
    pub connections: usize,
    /// Why the engine is unavailable (only with `unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Body of every 4xx and 5xx answer.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ErrorDetail {
    /// Machine-readable code (see [`ErrorCode`](super::ErrorCode)).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request field or query parameter at fault (`400
    /// invalid_request`), e.g. `alias` or `pushes[2].tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<pike_api::server::ConnectionInfo> for Connection {
    fn from(info: pike_api::server::ConnectionInfo) -> Self {
        Self {
            token: info.token,
            device_id: info.device_id,
            transport: info.transport.to_owned(),
            peer: info.peer.to_string(),
            connected_at_ms: info.connected_at_ms,
            logins: info
                .logins
                .into_iter()
                .map(|l| Login {
                    biz: l.biz,
                    alias: l.alias,
                    route_id: l.route_id,
                    since_ms: l.since_ms,
                })
                .collect(),
        }
    }
}

/// Body of `POST /v1/rooms/{room}/publish`: exactly one payload (`payload`
/// or `payload_base64`).
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoomPublishBody {
    /// Payload as UTF-8 text.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Payload as standard base64 (with padding), for binary payloads.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// `droppable` (default: barrage, comments; shed under load) or
    /// `reliable` (control signals, lottery results; never dropped while
    /// the room exists).
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Priority, 0 (default) = normal: batches list higher priorities
    /// first, and priority 0 is shed first.
    #[serde(default, deserialize_with = "field::whole_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Who publishes (e.g. the commenting user's id), for the per-publisher
    /// rate cap of droppable messages.
    #[serde(default, deserialize_with = "field::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
}

/// Answer of `POST /v1/rooms/{room}/publish` (always 200 when the request
/// was valid): the offset of an accepted message, or why a droppable one
/// was shed.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct RoomPublishResponse {
    /// The message's offset in the room (absent when dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// `true` when the message was shed by the room's policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
    /// Why it was shed: `room_rate` or `publisher_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Answer of `GET /v1/rooms`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct RoomsResponse {
    /// The app's live rooms, by name.
    pub rooms: Vec<Room>,
}

/// A live room (answer of `GET /v1/rooms/{room}`).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Room {
    /// Room name.
    pub room: String,
    /// Joined streams (the membership count).
    pub members: usize,
    /// Member connections.
    pub connections: usize,
    /// Configured mode: `auto`, `push` or `pull`.
    pub mode: String,
    /// Mode in use now: `push` or `pull`.
    pub effective_mode: String,
    /// Oldest offset still held.
    pub head: u64,
    /// Offset the next message gets.
    pub tail: u64,
    /// Offsets below this were released to members.
    pub released: u64,
    /// Droppable messages in the ring.
    pub ring_len: usize,
    /// Reliable messages in the store.
    pub reliable_len: usize,
    /// Accepted messages per second over the last 10 seconds.
    pub publish_rate: f64,
    /// Accepted messages by class.
    pub published: RoomClassCounts,
    /// Droppable messages shed by the room's cap.
    pub dropped_room_rate: u64,
    /// Droppable messages shed by a publisher's cap.
    pub dropped_publisher_rate: u64,
    /// Droppable messages overwritten in the ring or past its retention.
    pub evicted_droppable: u64,
    /// Reliable messages past their retention.
    pub expired_reliable: u64,
    /// Reliable publishes refused because the store was full.
    pub refused_reliable: u64,
    /// Batches released.
    pub batches: u64,
    /// Encodings of released batches (each shared by every member).
    pub encodes: u64,
    /// Encodings for one member (catch-up, odd offsets).
    pub catchup_encodes: u64,
    /// Frames written to members.
    pub frames_sent: u64,
    /// Messages written to members, counted per member.
    pub messages_sent: u64,
    /// Missed messages reported to members.
    pub missed_reported: u64,
    /// When the room started, unix milliseconds.
    pub created_at_ms: u64,
}

/// Messages by class.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct RoomClassCounts {
    /// Droppable messages.
    pub droppable: u64,
    /// Reliable messages.
    pub reliable: u64,
}

impl From<pike_api::server::RoomStats> for Room {
    fn from(s: pike_api::server::RoomStats) -> Self {
        Self {
            room: s.room,
            members: s.members,
            connections: s.connections,
            mode: s.mode.as_str().to_owned(),
            effective_mode: s.effective_mode.as_str().to_owned(),
            head: s.head,
            tail: s.tail,
            released: s.released,
            ring_len: s.ring_len,
            reliable_len: s.reliable_len,
            publish_rate: s.publish_rate,
            published: RoomClassCounts {
                droppable: s.published_droppable,
                reliable: s.published_reliable,
            },
            dropped_room_rate: s.dropped_room_rate,
            dropped_publisher_rate: s.dropped_publisher_rate,
            evicted_droppable: s.evicted_droppable,
            expired_reliable: s.expired_reliable,
            refused_reliable: s.refused_reliable,
            batches: s.batches,
            encodes: s.encodes,
            catchup_encodes: s.catchup_encodes,
            frames_sent: s.frames_sent,
            messages_sent: s.messages_sent,
            missed_reported: s.missed_reported,
            created_at_ms: s.created_at_ms,
        }
    }
}

/// Answer of `GET /v1/messages/{message_id}` (`docs/receipts.md`).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct MessageStatusResponse {
    /// The message id, as a decimal string.
    pub message_id: String,
    /// Business id.
    pub biz: String,
    /// Reliable (stored) or transient.
    pub reliable: bool,
    /// Whether the message is kept in the store now (reliable and not
    /// expired).
    pub stored: bool,
    /// When it was pushed, unix ms.
    pub created_at: u64,
    /// When it expires (reliable) or was pushed (transient), unix ms.
    pub expires_at: u64,
    /// Its expiry passed and the expiry notices were made.
    pub expired: bool,
    /// Devices known that neither acked nor expired (transient: neither
    /// got it nor dropped it).
    pub pending: usize,
    /// Some cluster node did not answer in time: the devices it served
    /// may be missing, and `pending` counts over what answered (always
    /// `false` on a single node).
    #[serde(default)]
    pub partial: bool,
    /// What each known device did, in the order they became known (merged
    /// over the cluster's nodes).
    pub devices: Vec<DeviceStatusBody>,
}

/// One device in a [`MessageStatusResponse`]; times are unix ms.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct DeviceStatusBody {
    /// The alias it was logged in as.
    pub alias: String,
    /// The device id.
    pub device: String,
    /// Written to its connection.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delivered_at: Option<u64>,
    /// Acknowledged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acked_at: Option<u64>,
    /// Expired unacknowledged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expired_at: Option<u64>,
    /// Dropped (transient).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dropped_at: Option<u64>,
}

//! Pike's cluster primitives on NATS JetStream: the layer below the engine
//! seam of `pike-api` (docs/design/cluster-plan.md §4–§7, §10).
//!
//! One [`Cluster`] per gateway node holds one NATS connection and, created
//! idempotently at [`Cluster::connect`]:
//!
//! - the stream `PIKE_DOWNLINK` (subjects `dl.<app>.<biz>.<alias>`, file
//!   storage, `Nats-Msg-Id` dedup, direct get, republish `dl.>` → `live.>`,
//!   the log's epoch in its metadata `pike_epoch`);
//! - the bucket `PIKE_POSITIONS` (file; per-device acked positions, forward
//!   only by compare-and-set);
//! - the bucket `PIKE_PRESENCE` (memory; per-key TTL; takeover by
//!   compare-and-set, signalled on `ctl.<node>`);
//! - the stream `PIKE_ROOMS` (subjects `rm.<app>.<room>`, file storage,
//!   direct get, republish `rm.>` → `room.>`): reliable room messages.
//!
//! Operations:
//!
//! - the downlink log: [`Cluster::append`] (dense per-alias sequence numbers
//!   by compare-and-set on the subject, idempotent per msg id),
//!   [`Cluster::read`] (batched direct get) and [`Cluster::tail`];
//! - positions: [`Cluster::ack`], [`Cluster::position`];
//! - presence: [`Cluster::claim`], [`Cluster::claim_unless_newer`],
//!   [`Cluster::release`], [`Cluster::holder`],
//!   [`Cluster::send_control`], [`Cluster::control`];
//! - live routing: [`Cluster::subscribe_live`], [`Cluster::publish_transient`];
//! - rooms across nodes: [`Cluster::publish_room`], [`Cluster::subscribe_room`],
//!   [`Cluster::read_room`], [`Cluster::room_last_cursor`];
//! - cluster-wide views: [`Cluster::scatter`], [`Cluster::questions`],
//!   [`Cluster::answer`], [`Cluster::live_nodes`] (anyone who can publish
//!   on `q.all` or `ctl.<node>` can list and close connections: NATS
//!   access is the cluster's trust boundary, as for appends);
//! - [`Cluster::health`] (connection state, and a JetStream probe so that a
//!   lost quorum shows too) and [`Cluster::epoch`].
//!
//! Every operation checks the connection first and fails at once with
//! [`Error::Unavailable`] while NATS is unreachable: nothing is buffered to
//! be delivered later. Every wait has a deadline and every retry loop a bound.
//! Ids go into subjects and keys through [`tok`].
//!
//! # Limits and abuse
//!
//! | What | Bound | Where |
//! |---|---|---|
//! | app, biz, alias, device id | 1..=[`MAX_ID_BYTES`] (1,024) bytes; encoded tokens over [`MAX_TOKEN`] (128) bytes are hashed | [`StreamKey::new`], [`LoginKey::new`] |
//! | node name | `[-_a-zA-Z0-9]{1,32}` | [`ClusterConfig::node`], [`Holder::node`] |
//! | msg id (idempotency key) | 1..=[`MAX_MSG_ID_BYTES`] (256) bytes, deduplicated for `dedup_window` (120 s) | [`Cluster::append`] |
//! | payload | [`MAX_PAYLOAD_BYTES`] (512 KiB); the servers' `max_payload` is 1 MiB | [`Cluster::append`], [`Cluster::publish_transient`] |
//! | one append | `append_timeout` (10 s) and [`MAX_APPEND_ATTEMPTS`] (64) tries | [`Cluster::append`] |
//! | append lanes cached per node | [`MAX_LANES`] (4,096); idle ones dropped first | [`Cluster::append`] |
//! | messages per read | [`MAX_BATCH`] (1,024); one `request_timeout` (2 s) | [`Cluster::read`] |
//! | messages kept per alias | `max_messages_per_subject` (10,000), `max_age` (7 days) | stream `PIKE_DOWNLINK` |
//! | position CAS tries | [`MAX_ACK_ATTEMPTS`] (20) within `append_timeout` | [`Cluster::ack`] |
//! | positions kept | `positions_max_age` (30 days) | bucket `PIKE_POSITIONS` |
//! | presence claim / release tries | [`MAX_CLAIM_ATTEMPTS`] (8) within `append_timeout` | [`Cluster::claim`], [`Cluster::release`] |
//! | presence claim lifetime | `presence_ttl` (1 h, whole seconds); released markers kept ≤ 2 × TTL | bucket `PIKE_PRESENCE` |
//! | holder token | 1..=[`MAX_HOLDER_TOKEN_BYTES`] (256) bytes | [`Holder::token`] |
//! | control message | [`MAX_CONTROL_BYTES`] (64 KiB) | [`Cluster::send_control`] |
//! | presence claims of a node | one per granted login (the gateway's connections × logins per connection); written in the background, rewritten every `presence_ttl` / 3, failed ones retried every [`RETRY_EVERY`] (5 s), at most [`MAX_RENEWALS_PER_ROUND`] (2,048) per round | [`JetStreamEngine`] |
//! | connections in one node's view answer | [`MAX_VIEW_CONNECTIONS`] (1,000); the asker waits [`VIEW_WINDOW`] (500 ms) at most | [`JetStreamEngine`] |
//! | devices of a receipt record in one node's status answer | [`MAX_VIEW_RECEIPT_DEVICES`] (4,000); the asker waits [`VIEW_WINDOW`] at most | [`JetStreamEngine`] |
//! | cluster-wide question / answer | [`MAX_QUERY_BYTES`] (1 MiB − 4 KiB); at most [`MAX_ANSWERS`] (256) answers within the asker's window | [`Cluster::scatter`] |
//! | node lease | one key per node in `PIKE_NODES`, rewritten every [`LEASE_REFRESH`] (3 s), gone [`NODE_LEASE`] (10 s) after | [`Cluster::live_nodes`] |
//! | messages buffered per subscription | `subscription_capacity` (4,096), then dropped (slow consumer) | [`LiveStream`], [`ControlStream`] |
//! | connect + bootstrap | `connect_timeout` (10 s) | [`Cluster::connect`] |
//! | room id | 1..=[`MAX_ID_BYTES`] bytes (the gateway allows 128) | [`RoomKey::new`] |
//! | reliable room messages kept | `room_max_messages_per_subject` (1,024) per room, `room_max_age` (1 h) | stream `PIKE_ROOMS` |
//! | one uplink record write or lookup | `append_timeout` (10 s) and [`MAX_RECORD_ATTEMPTS`] (32) tries, transient errors only | [`Cluster::record_uplink`], [`Cluster::uplink_record`] |
//! | one reliable room publish | `append_timeout` (10 s) and [`MAX_APPEND_ATTEMPTS`] tries, one msg id | [`Cluster::publish_room`] |
//! | rooms followed per node | one per room with members here (≤ the gateway's `max_rooms`) | `JetStreamEngine` |
//! | health probe | one TTL'd (30 s) write to `dl.=.<node>` per `probe_interval` (2 s), bounded by `request_timeout` | [`Cluster::health`] |
//!
//! Known limit of dense sequence numbers: an alias whose every message aged
//! out (`max_age`) restarts at seq 1 in the same epoch. Expiry of single
//! messages (`expires_at_ms`) is therefore applied by readers
//! ([`LogMessage::expired`]), never inside JetStream.
//!
//! # Example
//!
//! ```no_run
//! use bytes::Bytes;
//! use futures_util::StreamExt;
//! use pike_jetstream::{Cluster, ClusterConfig, LiveMessage, LoginKey, MessageMeta, Position, StreamKey};
//!
//! # async fn demo() -> Result<(), pike_jetstream::Error> {
//! let urls = vec!["nats://127.0.0.1:4222".to_string(), "nats://127.0.0.1:4223".to_string()];
//! let cluster = Cluster::connect(ClusterConfig::new(urls, "gw1")).await?;
//! let alias = StreamKey::new("demo", "chat", "chat:u42")?;
//! let mut live = cluster.subscribe_live(&alias).await?;
//!
//! let meta = MessageMeta { message_id: 7, priority: 0, expires_at_ms: 0, receipt: false };
//! let appended = cluster.append(&alias, "push-1", meta, Bytes::from_static(b"hi")).await?;
//! assert_eq!(appended.seq, 1); // a new alias starts at 1
//!
//! let batch = cluster.read(&alias, 0, 64).await?;
//! if let Some(LiveMessage::Stored { message, .. }) = live.next().await {
//!     assert_eq!(message.seq, batch.messages[0].seq);
//! }
//! let device = LoginKey::of(alias, "phone-1")?;
//! let at = Position { epoch: cluster.epoch(), seq: appended.seq, cursor: appended.cursor };
//! cluster.ack(&device, at).await?;
//! assert_eq!(cluster.position(&device).await?, Some(at));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! No cargo features.
#![warn(missing_docs)]

mod bootstrap;
mod cluster;
mod config;
mod device;
mod direct_get;
mod directory;
mod engine;
mod error;
mod health;
mod keys;
mod live;
mod log;
mod message;
mod nodes;
mod positions;
mod presence;
mod rooms;
mod scatter;
mod tok;
mod uplinks;

pub use cluster::Cluster;
pub use config::ClusterConfig;
pub use device::{DeviceMessage, DeviceStream};
pub use direct_get::MAX_BATCH;
pub use directory::MAX_LISTING;
pub use engine::{
    JetStreamEngine, MAX_RENEWALS_PER_ROUND, MAX_TAGS_LISTED, MAX_VIEW_CONNECTIONS,
    MAX_VIEW_RECEIPT_DEVICES, RETRY_EVERY, VIEW_WINDOW,
};
pub use error::{Error, Result};
pub use health::Health;
pub use keys::{
    DIRECTORY_BUCKET, DOWNLINK_STREAM, LoginKey, MAX_ID_BYTES, NODES_BUCKET, POSITIONS_BUCKET,
    PRESENCE_BUCKET, StreamKey, UPLINKS_BUCKET,
};
pub use live::{LiveMessage, LiveStream};
pub use log::{
    Appended, MAX_APPEND_ATTEMPTS, MAX_LANES, MAX_MSG_ID_BYTES, MAX_PAYLOAD_BYTES, ReadBatch, Tail,
};
pub use message::{LogMessage, MessageMeta};
pub use nodes::{LEASE_REFRESH, NODE_LEASE};
pub use positions::{AckOutcome, MAX_ACK_ATTEMPTS, Position};
pub use presence::{
    ClaimOutcome, ControlStream, Holder, MAX_CLAIM_ATTEMPTS, MAX_CONTROL_BYTES,
    MAX_HOLDER_TOKEN_BYTES,
};
pub use rooms::{ROOMS_STREAM, RoomCursor, RoomKey, RoomLiveMessage, RoomReadFrom, RoomStream};
pub use scatter::{
    Gathered, MAX_ANSWERS, MAX_QUERY_BYTES, QUERY_SUBJECT, Question, QuestionStream,
};
pub use tok::{MAX_TOKEN, tok, untok};
pub use uplinks::{MAX_RECORD_ATTEMPTS, MAX_UPLINK_KEY_BYTES};

/// The README's examples, compiled (and, where they need no network, run)
/// as doctests, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

//! Build a gateway: accept Pike connections over TCP, TLS and QUIC,
//! authenticate business logins, store and deliver reliable downlink, push
//! transient downlink, deliver uplink in order to business backends, and
//! serve live rooms (`docs/rooms.md`).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use pike_api::server::{Delivery, Gateway, PushRequest, Target};
//!
//! let gateway = Gateway::builder()
//!     .tcp("127.0.0.1:9300".parse()?)
//!     .apps(["demo".to_string()])
//!     .bind()
//!     .await?;
//! let pusher = gateway.push_handle();
//! tokio::spawn(gateway.serve());
//!
//! let receipt = pusher
//!     .push(PushRequest {
//!         app: "demo".into(),
//!         biz: "chat".into(),
//!         target: Target::Alias("u42".into()),
//!         payload: Bytes::from_static(b"hello"),
//!         delivery: Delivery::Reliable { ttl: None },
//!         priority: 0,
//!         receipt: false,
//!     })
//!     .await?;
//! println!("stored for {} alias(es), {} online", receipt.stored, receipt.online);
//! # Ok(())
//! # }
//! ```
//!
//! How it works is in `docs/gateway.md`.

mod auth;
mod clock;
mod config;
mod conn_index;
mod connection;
pub mod engine;
mod gateway;
mod hub;
mod login_expiry;
pub mod metric_families;
mod push;
mod receipts;
mod reconnect_spread;
mod registry;
mod room;
mod small_map;
mod store;
mod trace;
mod transient_ids;
mod uplink;
mod uplink_calls;

pub use auth::{AllowAll, AuthError, BoxAuthenticator, FnAuthenticator, LoginGrant, LoginRequest};
pub use config::GatewayConfig;
pub use gateway::{Gateway, GatewayBuilder, GatewayError};
pub use proto::channel::RoomClass;
pub use push::{
    DISCONNECT_CODE, Delivery, DisconnectTarget, PUSH_FRAME_OVERHEAD, PushError, PushHandle,
    PushReceipt, PushRequest, Target,
};
pub use receipts::{
    DeviceReceipts, MessageStatus, ReceiptHook, ReceiptMessage, ReceiptPlace, TransientReceipt,
};
pub use reconnect_spread::{DEFAULT_HANDSHAKES_PER_WORKER, ReconnectSpread};
pub use registry::{ConnectionInfo, ConnectionPage, LoginView};
pub use room::{
    DropReason, MAX_ROOM_NAME, RateLimit, RoomConfig, RoomError, RoomMode, RoomPublish,
    RoomReceipt, RoomScope, RoomStats,
};
pub use store::{
    Append, Appended, BoxFuture, LoginSnapshot, MemoryStore, ReadBatch, Store, StoreError,
    StoredMessage, StreamKey, UplinkRecord,
};
pub use trace::{
    CLOSED_TRACE_BYTES, CLOSED_TRACES, MAX_DETAIL_BYTES, TRACE_BYTES, TRACE_EVENTS, Trace,
    TraceEvent,
};
pub use transient_ids::{
    TRANSIENT_ID_MIN, TRANSIENT_NODE_BITS, is_transient_id, transient_node_part,
};
pub use uplink::{NoUplink, UplinkError, UplinkHandler, UplinkRequest};

//! Pushing downlink: [`PushHandle`], cheap to clone, usable from any task.

mod rooms;
mod views;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto::tunnel::ErrorCode;

use super::clock::unix_ms;
use super::engine::{AppendPush, EngineError, RouteTarget, TransientMessage};
use super::hub::Hub;
use super::receipts::ReceiptPlace;
use super::registry::{ConnectionInfo, ConnectionPage};
use super::store::{Append, StoreError, StoredMessage, StreamKey};
use super::trace::{self, TraceEvent};

/// Bytes a downlink frame body adds to a push's payload, at most: the
/// protobuf fields `stream`, `seq`, `message_id`, `priority`,
/// `expires_at_ms` at their largest (6 + 11 + 11 + 6 + 11 bytes) and the
/// payload's tag and length (5 bytes), rounded up. A payload is refused
/// when it and this overhead do not fit the gateway's frame limit
/// ([`PushHandle::max_payload_len`]).
pub const PUSH_FRAME_OVERHEAD: usize = 64;

/// Who a push goes to, within one business of one app.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Target {
    /// Every device logged in as this alias (and, for reliable pushes,
    /// every device that logs in as it before the message expires).
    Alias(String),
    /// Several aliases.
    Aliases(Vec<String>),
    /// The aliases bound to a tag.
    Tag(String),
    /// Every alias known in the business.
    App,
    /// The logins of the business on the connections of one device whose
    /// credential proves the device id ([`LoginGrant::device_verified`](super::LoginGrant::device_verified));
    /// a device id merely claimed in a hello receives nothing. Transient
    /// only: a device has no stream of its own; to reach one device
    /// reliably, log it in under an alias of its own.
    Device(String),
}

/// How a push is delivered.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Delivery {
    /// Stored before the push returns; delivered at least once on the
    /// wire and exactly once to the app; kept until `ttl` passes.
    Reliable {
        /// Time to live; `None` for the gateway's default.
        ttl: Option<Duration>,
    },
    /// Not stored; at most once, to connections online now; dropped when a
    /// connection's queue is full.
    Transient,
}

/// A push.
#[derive(Clone, Debug)]
pub struct PushRequest {
    /// App id.
    pub app: String,
    /// Business id.
    pub biz: String,
    /// The recipients.
    pub target: Target,
    /// The payload.
    pub payload: Bytes,
    /// Reliable or transient.
    pub delivery: Delivery,
    /// Priority, 0 = normal.
    pub priority: u32,
    /// Report what happens to the message to the gateway's receipt hook
    /// (`docs/receipts.md`); nothing is reported without a hook.
    pub receipt: bool,
}

/// What a push did.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct PushReceipt {
    /// The message id (shared by every recipient).
    pub message_id: u64,
    /// Aliases the message was stored for (reliable pushes).
    pub stored: usize,
    /// Connections that were online and got it (or will, from the store).
    pub online: usize,
    /// Connections whose queue was full (transient pushes only).
    pub dropped: usize,
}

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// A field is invalid (empty app or biz, empty alias, ...).
    #[error("invalid push: {0}")]
    Invalid(String),
    /// The target resolves to more aliases than allowed.
    #[error("the push reaches {count} aliases, more than the limit of {limit}; use a room")]
    TooManyRecipients {
        /// Aliases reached.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The store failed; nothing was pushed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The payload does not fit in a downlink frame: a device could never
    /// receive it. Nothing was stored or sent.
    #[error(
        "the payload is {len} bytes, more than the {max} bytes a downlink frame carries (the gateway's max_frame_length minus {PUSH_FRAME_OVERHEAD} bytes of framing)"
    )]
    PayloadTooLarge {
        /// Payload length, bytes.
        len: usize,
        /// The largest payload accepted, bytes.
        max: usize,
    },
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The shared state cannot be reached (a cluster engine without NATS
    /// or quorum): nothing was accepted; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The app lists its businesses and `biz` is not one of them
    /// ([`GatewayConfig::businesses`](super::GatewayConfig::businesses)):
    /// no device could ever log in to receive the push. Nothing was stored
    /// or sent.
    #[error("app {app:?} has no biz {biz:?}")]
    UnknownBiz {
        /// The app.
        app: String,
        /// The business pushed to.
        biz: String,
    },
}

impl From<EngineError> for PushError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unavailable(reason) => Self::Unavailable(reason),
            EngineError::Failed(message) => Self::Store(StoreError(message)),
        }
    }
}

/// Whom [`PushHandle::disconnect`] disconnects, within one app.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum DisconnectTarget {
    /// Every connection of a device.
    Device(String),
    /// Every connection logged in to `biz` as `alias`.
    Alias {
        /// Business id.
        biz: String,
        /// Alias.
        alias: String,
    },
    /// The connection with this connection token.
    Connection(String),
}

/// The close code a disconnected connection gets
/// ([`PushHandle::disconnect`]).
pub const DISCONNECT_CODE: ErrorCode = ErrorCode::Forbidden;

/// Pushes to the gateway's connections, and reads its presence and traces.
#[derive(Clone, Debug)]
pub struct PushHandle {
    pub(crate) hub: Arc<Hub>,
}

impl PushHandle {
    /// Pushes a message; for reliable delivery, returns once it is stored.
    ///
    /// Once a reliable message is on its way to the store, the store commit
    /// and the notification of the online recipients run in a task of their
    /// own: dropping this future (a caller that gives up, an HTTP client
    /// that disconnects) does not keep a stored message from the devices
    /// online.
    pub async fn push(&self, request: PushRequest) -> Result<PushReceipt, PushError> {
        self.check(&request)?;
        match request.delivery {
            Delivery::Transient => self.push_transient(request).await,
            Delivery::Reliable { ttl } => {
                let Some(stored) = self.to_store(request, ttl).await? else {
                    return Ok(PushReceipt::default());
                };
                let mut outcomes = self.commit(vec![stored]).await;
                outcomes.pop().unwrap_or(Err(PushError::ShuttingDown))
            }
        }
    }

    /// Pushes several messages and answers one result per request, in
    /// their order; a request that fails does not stop the others.
    ///
    /// Transient pushes go out as they come; the reliable ones are stored
    /// together, in their order, once all are resolved (the embedded
    /// engine: one store commit for the whole batch, all of them or none,
    /// unless together they would store more messages than
    /// [`GatewayConfig::max_recipients`](super::GatewayConfig::max_recipients):
    /// then one commit per that many), and the call returns once they are
    /// stored. Two reliable pushes to one alias keep their order in its
    /// stream. As with
    /// [`push`](Self::push), dropping the future after the commit started
    /// does not undo it.
    pub async fn push_batch(
        &self,
        requests: Vec<PushRequest>,
    ) -> Vec<Result<PushReceipt, PushError>> {
        let mut results: Vec<Option<Result<PushReceipt, PushError>>> =
            Vec::with_capacity(requests.len());
        let mut to_store = Vec::new();
        // Where each waiting push's result goes, and the messages they
        // store together.
        let mut stored_at = Vec::new();
        let mut waiting = 0;
        for request in requests {
            let outcome = match self.check(&request) {
                Err(e) => Some(Err(e)),
                Ok(()) => match request.delivery {
                    Delivery::Transient => Some(self.push_transient(request).await),
                    Delivery::Reliable { ttl } => match self.to_store(request, ttl).await {
                        Err(e) => Some(Err(e)),
                        Ok(None) => Some(Ok(PushReceipt::default())),
                        Ok(Some(stored)) => {
                            // A commit holds at most the recipient limit's
                            // worth of messages (one push may reach that
                            // many): commit what waits before it would
                            // grow past it.
                            if waiting + stored.keys.len() > self.hub.config.max_recipients {
                                let outcomes = self.commit(std::mem::take(&mut to_store)).await;
                                file(&mut results, stored_at.drain(..), outcomes);
                                waiting = 0;
                            }
                            waiting += stored.keys.len();
                            stored_at.push(results.len());
                            to_store.push(stored);
                            None
                        }
                    },
                },
            };
            results.push(outcome);
        }
        if !to_store.is_empty() {
            let outcomes = self.commit(to_store).await;
            file(&mut results, stored_at, outcomes);
        }
        results
            .into_iter()
            // The commit answers every push it was given.
            .map(|r| r.unwrap_or(Err(PushError::ShuttingDown)))
            .collect()
    }

    /// The checks every push passes before anything is stored or sent.
    fn check(&self, request: &PushRequest) -> Result<(), PushError> {
        if self.hub.shutdown.is_cancelled() {
            return Err(PushError::ShuttingDown);
        }
        if request.app.is_empty() || request.biz.is_empty() {
            return Err(PushError::Invalid("app and biz must not be empty".into()));
        }
        if !self.hub.config.has_biz(&request.app, &request.biz) {
            return Err(PushError::UnknownBiz {
                app: request.app.clone(),
                biz: request.biz.clone(),
            });
        }
        let max = self.max_payload_len();
        if request.payload.len() > max {
            return Err(PushError::PayloadTooLarge {
                len: request.payload.len(),
                max,
            });
        }
        Ok(())
    }

    async fn recipients(&self, request: &PushRequest) -> Result<Vec<String>, PushError> {
        let limit = self.hub.config.max_recipients;
        let aliases = match &request.target {
            Target::Alias(alias) => vec![alias.clone()],
            Target::Aliases(aliases) => aliases.clone(),
            Target::Tag(tag) => {
                self.hub
                    .engine
                    .directory
                    .tag_members(
                        request.app.clone(),
                        request.biz.clone(),
                        tag.clone(),
                        limit + 1,
                    )
                    .await?
            }
            Target::App => {
                self.hub
                    .engine
                    .directory
                    .aliases(request.app.clone(), request.biz.clone(), limit + 1)
                    .await?
            }
            Target::Device(_) => Vec::new(),
        };
        if aliases.iter().any(String::is_empty) {
            return Err(PushError::Invalid("an alias is empty".into()));
        }
        if aliases.len() > limit {
            return Err(PushError::TooManyRecipients {
                count: aliases.len(),
                limit,
            });
        }
        Ok(aliases)
    }

    /// A reliable push's streams and message: `None` when it reaches no
    /// alias (nothing to store).
    async fn to_store(
        &self,
        request: PushRequest,
        ttl: Option<Duration>,
    ) -> Result<Option<ToStore>, PushError> {
        if let Target::Device(_) = request.target {
            return Err(PushError::Invalid(
                "a push to a device is transient only; to reach one device reliably, log it in under an alias of its own".into(),
            ));
        }
        let aliases = self.recipients(&request).await?;
        if aliases.is_empty() {
            return Ok(None);
        }
        let ttl = ttl.unwrap_or(self.hub.config.default_ttl);
        let expires_at_ms =
            unix_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let keys = aliases
            .iter()
            .map(|alias| StreamKey::new(&request.app, &request.biz, alias))
            .collect();
        Ok(Some(ToStore {
            keys,
            payload: request.payload,
            priority: request.priority,
            expires_at_ms,
            receipt: request.receipt,
        }))
    }

    /// Stores `pushes` and tells the devices online, in a task of its own:
    /// the store commits a started append whatever happens to the caller,
    /// and the devices online must hear of it all the same. One outcome
    /// per push, in order.
    async fn commit(&self, pushes: Vec<ToStore>) -> Vec<Result<PushReceipt, PushError>> {
        let count = pushes.len();
        let hub = self.hub.clone();
        let task = tokio::spawn(async move { commit_and_notify(&hub, pushes).await });
        match task.await {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|outcome| outcome.map_err(PushError::from))
                .collect(),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels the task.
            Err(_) => (0..count).map(|_| Err(PushError::ShuttingDown)).collect(),
        }
    }

    async fn push_transient(&self, request: PushRequest) -> Result<PushReceipt, PushError> {
        let message_id = self.hub.next_transient_id();
        let mut receipt = PushReceipt {
            message_id,
            ..PushReceipt::default()
        };
        let targets = if let Target::Device(device) = &request.target {
            vec![RouteTarget::Device {
                app: request.app.clone(),
                biz: request.biz.clone(),
                device: device.clone(),
            }]
        } else {
            self.recipients(&request)
                .await?
                .into_iter()
                .map(|alias| RouteTarget::Stream(StreamKey::new(&request.app, &request.biz, alias)))
                .collect()
        };
        let receipt_hook = self.hub.receipts.as_deref().filter(|_| request.receipt);
        if let Some(hook) = receipt_hook {
            hook.transient_pushed(&request.app, &request.biz, message_id);
        }
        let message = TransientMessage {
            message_id,
            priority: request.priority,
            payload: request.payload,
            receipt: receipt_hook.is_some(),
        };
        // One call for all recipients: a tag's members are routed in one
        // pass (one future; the registry's locks taken once per 256 aliases).
        let delivery = self
            .hub
            .engine
            .router
            .transient_many(targets, message)
            .await?;
        receipt.online += delivery.online;
        receipt.dropped += delivery.dropped;
        metrics::counter!(crate::server::metric_families::PUSH_TOTAL, "delivery" => "transient")
            .increment(1);
        if receipt.dropped > 0 {
            metrics::counter!(crate::server::metric_families::TRANSIENT_DROPPED_TOTAL)
                .increment(receipt.dropped as u64);
        }
        Ok(receipt)
    }

    /// The connections logged in as `alias` of `biz` in `app`, on this node
    /// (all nodes: [`cluster_presence`](Self::cluster_presence)).
    pub fn presence(&self, app: &str, biz: &str, alias: &str) -> Vec<ConnectionInfo> {
        self.hub.registry.presence(&StreamKey::new(app, biz, alias))
    }

    /// Up to `limit` connections of `app` on this node, oldest first.
    pub fn connections(&self, app: &str, limit: usize) -> Vec<ConnectionInfo> {
        self.connections_page(app, None, limit).connections
    }

    /// One page of `app`'s connections on this node (all nodes:
    /// [`cluster_connections_page`](Self::cluster_connections_page)), oldest
    /// first: up to `limit` of
    /// those after `after` (the `next` of the previous page; `None` for the
    /// first page). Costs `limit` steps under the registry's locks, not the
    /// number of connections. Connections opened while paging appear on a
    /// later page; closed ones are skipped.
    pub fn connections_page(&self, app: &str, after: Option<u64>, limit: usize) -> ConnectionPage {
        self.hub.registry.connections_page(app, after, limit)
    }

    /// The largest payload a push takes, bytes: what fits in a downlink
    /// frame of the gateway's `max_frame_length` with
    /// [`PUSH_FRAME_OVERHEAD`] bytes of framing.
    pub fn max_payload_len(&self) -> usize {
        self.hub
            .config
            .tunnel
            .get_max_frame_length()
            .saturating_sub(PUSH_FRAME_OVERHEAD)
    }

    /// Closes the connections of `app` on this node (all nodes:
    /// [`cluster_disconnect`](Self::cluster_disconnect)) that `target` names, with close code
    /// [`DISCONNECT_CODE`] and `reason` as the message; returns how many
    /// were told to close. Clients reconnect by their backoff (and log in
    /// again if their credentials still allow it): to keep a device out,
    /// stop issuing it credentials too.
    pub fn disconnect(&self, app: &str, target: &DisconnectTarget, reason: &str) -> usize {
        crate::server::engine::disconnect_local(&self.hub.registry, app, target, reason)
    }

    /// Resolves once the gateway starts shutting down (at once if it has):
    /// from then on every push fails with [`PushError::ShuttingDown`], so
    /// long-lived callers (a backend's push connection) can close first.
    pub async fn shutting_down(&self) {
        self.hub.shutdown.cancelled().await;
    }

    /// Number of open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.hub.registry.len()
    }

    /// The open connections of `app` on this node per transport name
    /// (`tcp`, `tls`, `quic`, or a handed listener's name such as `ws`),
    /// sorted by name; a transport without connections is left out. O(1) in
    /// the number of connections.
    pub fn transport_counts(&self, app: &str) -> Vec<(&'static str, usize)> {
        self.hub.registry.transport_counts(app)
    }

    /// The signals of the connection with `token` on this node (all nodes:
    /// [`cluster_trace`](Self::cluster_trace)) (live or recently
    /// closed), if it belongs to `app`.
    pub fn trace(&self, app: &str, token: &str) -> Option<Vec<TraceEvent>> {
        let trace = self.hub.registry.trace(app, token)?;
        Some(trace::lock(&trace).events())
    }
}

/// Puts each outcome of a commit in the place of its push among a batch's
/// results.
fn file(
    results: &mut [Option<Result<PushReceipt, PushError>>],
    places: impl IntoIterator<Item = usize>,
    outcomes: Vec<Result<PushReceipt, PushError>>,
) {
    for (place, outcome) in places.into_iter().zip(outcomes) {
        results[place] = Some(outcome);
    }
}

/// A reliable push on its way to the store: its streams and its message.
struct ToStore {
    keys: Vec<StreamKey>,
    payload: Bytes,
    priority: u32,
    expires_at_ms: u64,
    /// The push asked for receipts.
    receipt: bool,
}

impl ToStore {
    fn append(&self) -> AppendPush {
        AppendPush {
            id: None,
            items: self
                .keys
                .iter()
                .map(|key| Append {
                    stream: key.clone(),
                    priority: self.priority,
                    expires_at_ms: self.expires_at_ms,
                    payload: self.payload.clone(),
                    receipt: self.receipt,
                })
                .collect(),
        }
    }
}

/// Stores each push in every stream of its keys (one push: one append;
/// several: one [`append_many`](super::engine::Inbox::append_many)), then
/// tells the connections online in them. One outcome per push, in order.
async fn commit_and_notify(
    hub: &Hub,
    pushes: Vec<ToStore>,
) -> Vec<Result<PushReceipt, EngineError>> {
    let hook = hub.receipts.as_deref();
    for push in pushes.iter().filter(|p| p.receipt) {
        if let Some(hook) = hook {
            hook.begin(&push.keys);
        }
    }
    let appended = match pushes.as_slice() {
        [one] => vec![hub.engine.inbox.append(one.append()).await],
        many => {
            hub.engine
                .inbox
                .append_many(many.iter().map(ToStore::append).collect())
                .await
        }
    };
    let mut outcomes = Vec::with_capacity(pushes.len());
    let mut stored = 0;
    for (push, appended) in pushes.into_iter().zip(appended) {
        let hook = hook.filter(|_| push.receipt);
        let appended = match appended {
            Ok(appended) => appended,
            Err(e) => {
                if let Some(hook) = hook {
                    hook.abandon(&push.keys);
                }
                outcomes.push(Err(e));
                continue;
            }
        };
        if let (Some(hook), Some(first)) = (hook, appended.first()) {
            // Before the connections hear of it (`begin` covers the reads
            // that find it in the store first).
            let places = push
                .keys
                .iter()
                .zip(&appended)
                .map(|(key, done)| ReceiptPlace {
                    stream: key.clone(),
                    seq: done.seq,
                })
                .collect();
            hook.stored(first.message_id, places, push.expires_at_ms);
        }
        let mut receipt = PushReceipt {
            stored: appended.len(),
            ..PushReceipt::default()
        };
        for (key, done) in push.keys.iter().zip(appended) {
            receipt.message_id = done.message_id;
            let message = Arc::new(StoredMessage {
                seq: done.seq,
                cursor: done.cursor,
                message_id: done.message_id,
                priority: push.priority,
                expires_at_ms: push.expires_at_ms,
                payload: push.payload.clone(),
                receipt: push.receipt,
            });
            receipt.online += hub.engine.router.stored(key, &message);
        }
        stored += receipt.stored;
        outcomes.push(Ok(receipt));
    }
    let pushed = outcomes.iter().filter(|o| o.is_ok()).count();
    metrics::counter!(crate::server::metric_families::PUSH_TOTAL, "delivery" => "reliable")
        .increment(pushed as u64);
    metrics::counter!(crate::server::metric_families::MESSAGES_STORED_TOTAL)
        .increment(stored as u64);
    outcomes
}

#[cfg(test)]
mod tests {
    use proto::prost::Message as _;

    use super::*;

    /// A downlink frame body with every field at its largest fits the
    /// payload plus [`PUSH_FRAME_OVERHEAD`], for payload lengths up to the
    /// largest frame limit.
    #[test]
    fn the_frame_overhead_bounds_the_largest_downlink() {
        // Up to 2^21 covers every length prefix a frame can have (4 bytes).
        for len in [0, 1, 127, 128, 16_383, 16_384, (1 << 21) - 1, 1 << 21] {
            let downlink = proto::channel::Downlink {
                stream: u32::MAX,
                seq: u64::MAX,
                message_id: u64::MAX,
                priority: u32::MAX,
                expires_at_ms: u64::MAX,
                payload: Bytes::from(vec![0u8; len]),
            };
            assert!(
                downlink.encoded_len() <= len + PUSH_FRAME_OVERHEAD,
                "{len}: {} bytes",
                downlink.encoded_len()
            );
        }
    }
}

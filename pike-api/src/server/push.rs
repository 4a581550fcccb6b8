//! Pushing downlink: [`PushHandle`], cheap to clone, usable from any task.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::hub::{Hub, unix_ms};
use super::registry::{CommandSender, ConnCommand, ConnectionInfo};
use super::store::{Append, StoreError, StoredMessage, StreamKey};
use super::trace::{self, TraceEvent};

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
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

/// Pushes to the gateway's connections, and reads its presence and traces.
#[derive(Clone, Debug)]
pub struct PushHandle {
    pub(crate) hub: Arc<Hub>,
}

impl PushHandle {
    /// Pushes a message; for reliable delivery, returns once it is stored.
    pub async fn push(&self, request: PushRequest) -> Result<PushReceipt, PushError> {
        if self.hub.shutdown.is_cancelled() {
            return Err(PushError::ShuttingDown);
        }
        if request.app.is_empty() || request.biz.is_empty() {
            return Err(PushError::Invalid("app and biz must not be empty".into()));
        }
        match request.delivery {
            Delivery::Transient => self.push_transient(request).await,
            Delivery::Reliable { ttl } => self.push_reliable(request, ttl).await,
        }
    }

    async fn recipients(&self, request: &PushRequest) -> Result<Vec<String>, PushError> {
        let limit = self.hub.config.max_recipients;
        let aliases = match &request.target {
            Target::Alias(alias) => vec![alias.clone()],
            Target::Aliases(aliases) => aliases.clone(),
            Target::Tag(tag) => {
                self.hub
                    .store
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
                    .store
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

    async fn push_reliable(
        &self,
        request: PushRequest,
        ttl: Option<Duration>,
    ) -> Result<PushReceipt, PushError> {
        if let Target::Device(_) = request.target {
            return Err(PushError::Invalid(
                "a push to a device is transient only; to reach one device reliably, log it in under an alias of its own".into(),
            ));
        }
        let aliases = self.recipients(&request).await?;
        if aliases.is_empty() {
            return Ok(PushReceipt::default());
        }
        let ttl = ttl.unwrap_or(self.hub.config.default_ttl);
        let expires_at_ms =
            unix_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let keys: Vec<StreamKey> = aliases
            .iter()
            .map(|alias| StreamKey::new(&request.app, &request.biz, alias))
            .collect();
        let appends = keys
            .iter()
            .map(|key| Append {
                stream: key.clone(),
                priority: request.priority,
                expires_at_ms,
                payload: request.payload.clone(),
            })
            .collect();
        let appended = self.hub.store.append(appends).await?;
        let mut receipt = PushReceipt {
            stored: appended.len(),
            ..PushReceipt::default()
        };
        for (key, done) in keys.iter().zip(appended) {
            receipt.message_id = done.message_id;
            let message = Arc::new(StoredMessage {
                seq: done.seq,
                message_id: done.message_id,
                priority: request.priority,
                expires_at_ms,
                payload: request.payload.clone(),
            });
            receipt.online += self.hub.registry.notify_stored(key, &message);
        }
        metrics::counter!("pike_push_total", "delivery" => "reliable").increment(1);
        metrics::counter!("pike_messages_stored_total").increment(receipt.stored as u64);
        Ok(receipt)
    }

    async fn push_transient(&self, request: PushRequest) -> Result<PushReceipt, PushError> {
        let message_id = self.hub.next_transient_id();
        let mut receipt = PushReceipt {
            message_id,
            ..PushReceipt::default()
        };
        let mut deliver = |senders: Vec<CommandSender>, alias: Option<String>| {
            for sender in senders {
                let command = ConnCommand::Transient {
                    biz: request.biz.clone(),
                    alias: alias.clone(),
                    message_id,
                    priority: request.priority,
                    payload: request.payload.clone(),
                };
                match sender.try_send(command) {
                    Ok(()) => receipt.online += 1,
                    Err(_) => receipt.dropped += 1,
                }
            }
        };
        if let Target::Device(device) = &request.target {
            deliver(
                self.hub
                    .registry
                    .senders_for_device(&request.app, &request.biz, device),
                None,
            );
        } else {
            for alias in self.recipients(&request).await? {
                let key = StreamKey::new(&request.app, &request.biz, &alias);
                deliver(self.hub.registry.senders_for_stream(&key), Some(alias));
            }
        }
        metrics::counter!("pike_push_total", "delivery" => "transient").increment(1);
        if receipt.dropped > 0 {
            metrics::counter!("pike_transient_dropped_total").increment(receipt.dropped as u64);
        }
        Ok(receipt)
    }

    /// The connections logged in as `alias` of `biz` in `app`.
    pub fn presence(&self, app: &str, biz: &str, alias: &str) -> Vec<ConnectionInfo> {
        self.hub.registry.presence(&StreamKey::new(app, biz, alias))
    }

    /// Up to `limit` connections of `app`, oldest first.
    pub fn connections(&self, app: &str, limit: usize) -> Vec<ConnectionInfo> {
        self.hub.registry.connections(app, limit)
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.hub.registry.len()
    }

    /// The signals of the connection with `token` (live or recently
    /// closed), if it belongs to `app`.
    pub fn trace(&self, app: &str, token: &str) -> Option<Vec<TraceEvent>> {
        let trace = self.hub.registry.trace(app, token)?;
        Some(trace::lock(&trace).events())
    }
}

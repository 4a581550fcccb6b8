//! Who is connected, cluster-wide: presence claims (takeover of a device's
//! login by its newer connection) and the views every node answers from its
//! own connections (presence, connection list and count, trace,
//! disconnect).
//!
//! Takeover on one node is the connection registry's: as the newer
//! connection's login is registered, the node's older connection of the same
//! device and login is closed with `REPLACED`
//! ([`GatewayConfig::takeover`](crate::server::GatewayConfig::takeover)). A
//! [`Presence`] adds the other nodes: the embedded engine has none, and the
//! cluster engine keeps a claim per login in the shared state and tells the
//! node of an older holder to close it
//! ([`NodeSink::replace`](super::NodeSink::replace)).

use crate::server::push::DisconnectTarget;
use crate::server::receipts::MessageStatus;
use crate::server::registry::ConnectionInfo;
use crate::server::store::{BoxFuture, StreamKey};
use crate::server::trace::TraceEvent;

use super::EngineError;

/// One device's login on an alias stream: what a presence claim is for.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct LoginId {
    /// The alias stream (app, biz, alias).
    pub stream: StreamKey,
    /// The device id of the connection's hello.
    pub device: String,
}

/// A connection's claim on a login.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Claim {
    /// The login.
    pub login: LoginId,
    /// The connection's token (unique per connection, across nodes).
    pub token: String,
    /// When the login was granted, unix milliseconds: of two claims on one
    /// login, the later one wins when a claim is retried or renewed.
    pub since_ms: u64,
}

/// A question every node answers from its own connections
/// ([`NodeSink::query`](super::NodeSink::query)).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ViewQuery {
    /// The connections logged in to an alias stream.
    Presence(StreamKey),
    /// A page of an app's connections: up to `limit` of those whose
    /// node-local number is above `after`.
    Connections {
        /// App id.
        app: String,
        /// The node-local connection number to start after (0: the first).
        after: u64,
        /// Most connections in the answer.
        limit: usize,
    },
    /// How many connections the node has.
    Count,
    /// The trace of one connection (live or recently closed) of an app.
    Trace {
        /// App id.
        app: String,
        /// Connection token.
        token: String,
    },
    /// Close connections of an app ([`PushHandle::disconnect`](crate::server::PushHandle::disconnect)).
    Disconnect {
        /// App id.
        app: String,
        /// Which connections.
        target: DisconnectTarget,
        /// The close message.
        reason: String,
    },
    /// The node's receipt record of a message of an app
    /// ([`ReceiptHook::status`](crate::server::ReceiptHook::status);
    /// `docs/receipts.md`, "The status query").
    MessageStatus {
        /// App id.
        app: String,
        /// The message id.
        message_id: u64,
    },
}

/// One node's answer to a [`ViewQuery`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ViewAnswer {
    /// The connections of an alias stream.
    Presence(Vec<ConnectionInfo>),
    /// A page of an app's connections.
    Connections {
        /// The app's connections on the node (all pages).
        total: usize,
        /// The page, in node-local connection order, with each one's number.
        connections: Vec<(u64, ConnectionInfo)>,
        /// The node has more connections of the app after this page.
        more: bool,
    },
    /// The node's connection count.
    Count(usize),
    /// The trace, if the node has (or recently had) the connection.
    Trace(Option<Vec<TraceEvent>>),
    /// How many connections were told to close.
    Disconnected(usize),
    /// The node's receipt record of the message, if it has one.
    MessageStatus(Option<MessageStatus>),
}

impl ViewAnswer {
    /// The answer of a node without connections to `query`.
    pub fn none(query: &ViewQuery) -> Self {
        match query {
            ViewQuery::Presence(_) => Self::Presence(Vec::new()),
            ViewQuery::Connections { .. } => Self::Connections {
                total: 0,
                connections: Vec::new(),
                more: false,
            },
            ViewQuery::Count => Self::Count(0),
            ViewQuery::Trace { .. } => Self::Trace(None),
            ViewQuery::Disconnect { .. } => Self::Disconnected(0),
            ViewQuery::MessageStatus { .. } => Self::MessageStatus(None),
        }
    }
}

/// A view gathered from the nodes of a cluster (one node: the embedded
/// engine).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ClusterView<T> {
    /// The merged answer.
    pub value: T,
    /// Nodes that answered in time.
    pub nodes_answered: usize,
    /// Nodes known to be alive when the question was asked (at least
    /// `nodes_answered`). Fewer answers than expected: the view is partial.
    pub nodes_expected: usize,
}

impl<T> ClusterView<T> {
    /// The answer of a single node.
    pub fn local(value: T) -> Self {
        Self {
            value,
            nodes_answered: 1,
            nodes_expected: 1,
        }
    }

    /// Every expected node answered.
    pub fn complete(&self) -> bool {
        self.nodes_answered >= self.nodes_expected
    }

    /// The same counts around another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> ClusterView<U> {
        ClusterView {
            value: f(self.value),
            nodes_answered: self.nodes_answered,
            nodes_expected: self.nodes_expected,
        }
    }
}

/// Whether the engine can serve: always for the embedded engine; in a
/// cluster, while connected to NATS and JetStream answers.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum EngineHealth {
    /// Serving.
    Ready,
    /// Shared state unreachable (pushes get 503), and why.
    Unavailable(String),
}

/// Presence claims and cluster-wide views.
pub trait Presence: Send + Sync + 'static {
    /// Connection `claim.token` holds `claim.login` from now on: an older
    /// holder on another node is told to close (`REPLACED`). Never blocks a
    /// login: the work runs in the background, every call bounded by a
    /// timeout; a claim that fails is retried by the engine (and the login
    /// stands meanwhile). Embedded: nothing to do (the registry replaces
    /// the node's own older connections).
    fn claim(&self, claim: Claim);

    /// Connection `token`'s login ended (logout, close): drops the claim if
    /// the connection still holds it (never a newer holder's). In the
    /// background.
    fn release(&self, login: LoginId, token: String);

    /// Asks every node (this one included) `query`; answers within the
    /// engine's bound (a cluster: a short window, the answers so far).
    fn gather(
        &self,
        query: ViewQuery,
    ) -> BoxFuture<'_, Result<ClusterView<Vec<ViewAnswer>>, EngineError>>;

    /// The engine's health now (cheap: no I/O).
    fn health(&self) -> EngineHealth;
}

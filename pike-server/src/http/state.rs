//! [`HttpState`]: what every handler of the HTTP API shares.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use pike_api::server::{PushHandle, PushRequest};
use tokio::sync::Semaphore;
use tunnelkit::HandedSender;

use crate::apps::AppDirectory;
use crate::receipts::Receipts;
use crate::stats::{StatsHistory, spawn_sampler};

/// Largest request body accepted by default, bytes (1 MiB, the gateway's
/// default frame limit). Larger bodies get `413 payload_too_large`.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// Longest a request may take by default, body included (30 s); longer
/// ones get `503 timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests handled at once by default (256); more get `503 overloaded`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Backend push connections (`GET /v1/push/ws`) open at once by default
/// (64); more get `503 overloaded`.
pub const DEFAULT_MAX_PUSH_CONNECTIONS: usize = 64;

/// The state of the HTTP API: the gateway's [`PushHandle`], the apps (API
/// keys and token secrets) and, optionally, the Prometheus handle that
/// `/metrics` renders. Cheap to clone.
///
/// The binary installs the Prometheus recorder globally
/// (`PrometheusBuilder::new().install_recorder()`), passes its handle here,
/// and runs [`PrometheusHandle::run_upkeep`] periodically; without a handle
/// `/metrics` answers `404 not_found`.
#[derive(Clone, Debug)]
pub struct HttpState {
    push: PushHandle,
    apps: Arc<AppDirectory>,
    metrics: Option<PrometheusHandle>,
    body_limit: usize,
    request_timeout: Duration,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    push_sockets: Arc<Semaphore>,
    max_push_connections: usize,
    ws_transport: Option<HandedSender>,
    stats: Arc<StatsHistory>,
    /// Receipts and message status (issue 18); none: `receipt` is ignored
    /// and `GET /v1/messages/{id}` answers 404.
    receipts: Option<Arc<Receipts>>,
}

impl HttpState {
    /// State for a gateway's `push` handle serving `apps` (an
    /// [`AppDirectory`] or an `Arc` of one), with `metrics` rendered at
    /// `/metrics` when given.
    pub fn new(
        push: PushHandle,
        apps: impl Into<Arc<AppDirectory>>,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        Self {
            push,
            apps: apps.into(),
            metrics,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            in_flight: Arc::new(Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            push_sockets: Arc::new(Semaphore::new(DEFAULT_MAX_PUSH_CONNECTIONS)),
            max_push_connections: DEFAULT_MAX_PUSH_CONNECTIONS,
            ws_transport: None,
            stats: Arc::new(StatsHistory::new(crate::stats::SAMPLE_EVERY)),
            receipts: None,
        }
    }

    /// Serves receipts and the status query from `receipts`
    /// (`docs/receipts.md`).
    #[must_use]
    pub fn with_receipts(mut self, receipts: Arc<Receipts>) -> Self {
        self.receipts = Some(receipts);
        self
    }

    /// The receipts, if served.
    pub fn receipts(&self) -> Option<&Arc<Receipts>> {
        self.receipts.as_ref()
    }

    /// Whether a push of `request` (which said `asked`) asks for receipts.
    pub(crate) fn receipt_wanted(&self, request: &PushRequest, asked: Option<bool>) -> bool {
        self.receipts
            .as_ref()
            .is_some_and(|r| r.wanted(&request.app, &request.biz, asked))
    }

    /// Samples the gateway every `every` (at least
    /// [`MIN_SAMPLE_EVERY`](crate::stats::MIN_SAMPLE_EVERY); the binary
    /// uses [`SAMPLE_EVERY`](crate::stats::SAMPLE_EVERY)) into the history
    /// `GET /v1/stats` answers with (its last
    /// [`MAX_SAMPLES`](crate::stats::MAX_SAMPLES) samples); without it the
    /// answer has the current values and no samples. Spawns the sampling
    /// task, which ends once this state and its clones are dropped: call
    /// it inside a tokio runtime, once.
    #[must_use]
    pub fn with_stats_sampling(mut self, every: Duration) -> Self {
        self.stats = Arc::new(StatsHistory::new(every));
        spawn_sampler(
            &self.stats,
            self.push.clone(),
            Arc::clone(&self.apps),
            self.metrics.clone(),
        );
        self
    }

    /// Sets the longest time a request may take, body included (default
    /// [`DEFAULT_REQUEST_TIMEOUT`]); longer ones get `503 timeout`.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the most requests handled at once (default
    /// [`DEFAULT_MAX_IN_FLIGHT`], at least 1); more get `503 overloaded`.
    #[must_use]
    pub fn with_max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.clamp(1, Semaphore::MAX_PERMITS);
        self.in_flight = Arc::new(Semaphore::new(self.max_in_flight));
        self
    }

    /// Sets the most backend push connections (`GET /v1/push/ws`) open at
    /// once (default [`DEFAULT_MAX_PUSH_CONNECTIONS`], at least 1); more
    /// get `503 overloaded`.
    #[must_use]
    pub fn with_max_push_connections(mut self, connections: usize) -> Self {
        self.max_push_connections = connections.clamp(1, Semaphore::MAX_PERMITS);
        self.push_sockets = Arc::new(Semaphore::new(self.max_push_connections));
        self
    }

    /// Serves the WebSocket transport for devices (`GET /v1/ws`): each
    /// upgraded connection is handed to the gateway through `sender` (the
    /// other end given to `GatewayBuilder::handed`). Without it `/v1/ws`
    /// answers `404 not_found`.
    #[must_use]
    pub fn with_ws_transport(mut self, sender: HandedSender) -> Self {
        self.ws_transport = Some(sender);
        self
    }

    /// Sets the largest request body accepted, bytes (default
    /// [`DEFAULT_BODY_LIMIT`]).
    #[must_use]
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The gateway's push handle.
    pub fn push_handle(&self) -> &PushHandle {
        &self.push
    }

    /// The apps served.
    pub fn apps(&self) -> &AppDirectory {
        &self.apps
    }

    /// The Prometheus handle, if any.
    pub fn metrics(&self) -> Option<&PrometheusHandle> {
        self.metrics.as_ref()
    }

    /// The largest request body accepted, bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// The longest time a request may take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The most requests handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Where `GET /v1/ws` hands device connections, if the WebSocket
    /// transport is on.
    pub fn ws_transport(&self) -> Option<&HandedSender> {
        self.ws_transport.as_ref()
    }

    /// The most backend push connections open at once.
    pub fn max_push_connections(&self) -> usize {
        self.max_push_connections
    }

    /// The samples behind `GET /v1/stats`.
    pub(crate) fn stats(&self) -> &StatsHistory {
        &self.stats
    }

    /// The slots of the push connections.
    pub(crate) fn push_sockets(&self) -> Arc<Semaphore> {
        Arc::clone(&self.push_sockets)
    }

    /// The slots of the requests in flight.
    pub(crate) fn in_flight(&self) -> &Semaphore {
        &self.in_flight
    }
}

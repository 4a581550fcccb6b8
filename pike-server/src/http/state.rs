//! [`HttpState`]: what every handler of the HTTP API shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use pike_api::server::PushHandle;

use crate::apps::AppDirectory;

/// Largest request body accepted by default, bytes (1 MiB, the gateway's
/// default frame limit). Larger bodies get `413 payload_too_large`.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

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
        }
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
}

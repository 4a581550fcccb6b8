//! Uplink delivery to the backend, once per idempotency key across
//! connections.
//!
//! A backend call runs in a task of its own, not in the connection's task:
//! when the connection ends while the backend works (the client's network
//! dropped), the call goes on, and the client's resend on its next
//! connection joins it instead of reaching the backend a second time. The
//! running calls are kept in a gateway-wide map keyed by (app, biz, alias,
//! idempotency key), the key of the store's dedup record; an entry leaves
//! the map once its call is finished, after a delivered message's dedup
//! record is stored, so a later resend finds the record instead. The map
//! holds at most [`GatewayConfig::max_uplink_in_flight`] calls.
//!
//! [`GatewayConfig::max_uplink_in_flight`]: super::GatewayConfig::max_uplink_in_flight

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use proto::tunnel::ErrorCode;
use tokio::sync::watch;

use super::clock::unix_ms;
use super::engine::EngineError;
use super::hub::Hub;
use super::store::{StreamKey, UplinkRecord};
use super::uplink::{UplinkError, UplinkRequest};

/// How many times an uplink message is offered to backends (re-routing
/// after each route failure) before the client is told it failed.
const UPLINK_ATTEMPTS: usize = 3;

/// A call's outcome: the route that accepted the message, or why not.
pub(crate) type Outcome = Result<String, UplinkError>;

/// (stream, idempotency key): the store's dedup key.
type CallKey = (StreamKey, String);

/// The backend calls in flight, gateway-wide.
#[derive(Debug)]
pub(crate) struct UplinkCalls {
    calls: Mutex<HashMap<CallKey, watch::Receiver<Option<Outcome>>>>,
    limit: usize,
}

impl UplinkCalls {
    /// At most `limit` calls at once.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            calls: Mutex::new(HashMap::new()),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<CallKey, watch::Receiver<Option<Outcome>>>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Delivers `request` (a message of stream `key`) to a backend once: joins
/// the call in flight for the same idempotency key if there is one, else
/// starts one in a task of its own. Resolves to the call's outcome; dropping
/// the future leaves the call running. `first_attempt` is the client's word
/// that no connection carried the message before and its key is one the
/// client generated: the call then skips the dedup lookup (its record is
/// still written before the outcome), see `deliver_once`.
pub(crate) fn deliver(
    hub: &Arc<Hub>,
    key: StreamKey,
    request: UplinkRequest,
    first_attempt: bool,
) -> impl Future<Output = Outcome> + Send + 'static {
    let call_key = (key.clone(), request.idempotency_key.clone());
    let joined = {
        let mut calls = hub.uplink_calls.lock();
        match calls.get(&call_key) {
            Some(running) => {
                metrics::counter!(crate::server::metric_families::UPLINK_JOINED_TOTAL).increment(1);
                Ok(running.clone())
            }
            None if calls.len() >= hub.uplink_calls.limit => Err(UplinkError {
                code: ErrorCode::RateLimited,
                message: format!(
                    "the gateway has {} uplink messages with backends; retry later",
                    calls.len()
                ),
                route_failed: false,
            }),
            None => {
                let (tx, rx) = watch::channel(None);
                calls.insert(call_key.clone(), rx.clone());
                metrics::gauge!(crate::server::metric_families::UPLINK_CALLS_IN_FLIGHT)
                    .increment(1.0);
                let hub = hub.clone();
                tokio::spawn(async move {
                    // Leaves the map however the call ends (a panicking
                    // handler included): its waiters then see the sender
                    // gone.
                    let _entry = Entry {
                        hub: &hub,
                        key: Some(call_key),
                    };
                    let outcome = deliver_once(&hub, key, request, first_attempt).await;
                    tx.send_replace(Some(outcome));
                });
                Ok(rx)
            }
        }
    };
    async move {
        let mut rx = joined?;
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| {
            Err(UplinkError {
                code: ErrorCode::Internal,
                message: "the backend call ended without an outcome; retry".into(),
                route_failed: false,
            })
        })
    }
}

/// A call's place in the map, removed when the call's task ends.
struct Entry<'a> {
    hub: &'a Hub,
    key: Option<CallKey>,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.hub.uplink_calls.lock().remove(&key);
            metrics::gauge!(crate::server::metric_families::UPLINK_CALLS_IN_FLIGHT).decrement(1.0);
        }
    }
}

/// Delivers one uplink message exactly once to a backend: answers from the
/// dedup record when it was delivered before, re-routes after a route
/// failure, records the delivery before the client is acked.
///
/// `first_attempt` (`Uplink.first_attempt`): the client says no connection
/// carried the message before and the key is one it generated, so no
/// outcome can be recorded for it and the lookup (a store read, a thread
/// hand-off on the embedded store) is skipped. The outcome is still
/// recorded before the client is acked, so a later resend finds it, and a
/// record that exists after all keeps its first outcome. A client that says
/// so wrongly can only get its own message delivered twice.
async fn deliver_once(
    hub: &Hub,
    key: StreamKey,
    mut request: UplinkRequest,
    first_attempt: bool,
) -> Outcome {
    let store_error = |e: EngineError| UplinkError {
        code: match e {
            EngineError::Unavailable(_) => ErrorCode::Overloaded,
            EngineError::Failed(_) => ErrorCode::Internal,
        },
        message: e.to_string(),
        route_failed: false,
    };
    let recorded = if first_attempt {
        metrics::counter!(crate::server::metric_families::UPLINK_FIRST_ATTEMPTS_TOTAL).increment(1);
        None
    } else {
        hub.engine
            .uplinks
            .delivered(key.clone(), request.idempotency_key.clone())
            .await
            .map_err(store_error)?
    };
    if let Some(record) = recorded {
        metrics::counter!(crate::server::metric_families::UPLINK_DUPLICATES_TOTAL).increment(1);
        return Ok(record.route_id);
    }
    let mut last_error = None;
    for _ in 0..UPLINK_ATTEMPTS {
        if request.route_id.is_empty() {
            match hub.uplink.route(&request.app, &request.biz, "", None) {
                Some(route) => request.route_id = route,
                None => break,
            }
        }
        match hub.uplink.deliver(request.clone()).await {
            Ok(()) => {
                let route_id = request.route_id.clone();
                hub.engine
                    .uplinks
                    .record(
                        key,
                        request.idempotency_key,
                        UplinkRecord {
                            route_id: route_id.clone(),
                        },
                        unix_ms(),
                    )
                    .await
                    .map_err(store_error)?;
                return Ok(route_id);
            }
            Err(e) if e.route_failed => {
                tracing::info!(route = %request.route_id, error = %e, "uplink route failed; re-routing");
                let failed = std::mem::take(&mut request.route_id);
                request.route_id = hub
                    .uplink
                    .route(&request.app, &request.biz, "", Some(&failed))
                    .unwrap_or_default();
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| UplinkError {
        code: ErrorCode::BackendUnavailable,
        message: format!("no uplink backend for biz {:?}", request.biz),
        route_failed: false,
    }))
}

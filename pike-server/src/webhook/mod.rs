//! Uplink to business backends over HTTP webhooks (one URL per backend
//! instance), with sticky routes and failover.
//!
//! A route id is `r<index>`: the position of the URL in the business's
//! `uplink_webhooks` list. A login keeps its route while that backend is
//! healthy; a backend that fails (connection error, timeout, 408, 429 or
//! 5xx) is avoided for [`COOLDOWN`] and its logins move to the healthy
//! backend with the fewest requests in flight. See `docs/webhooks.md` for
//! the request format.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use pike_api::server::{BoxFuture, UplinkError, UplinkHandler, UplinkRequest};
use proto::tunnel::ErrorCode;

use crate::apps::AppDirectory;

mod batch_contract;
mod batcher;
mod outcome;
mod single;

pub use batch_contract::{
    BATCH_CONTENT_TYPE, BATCH_HEADER, BatchAnswer, BatchMessage, BatchResult, MAX_ANSWER_BYTES,
    MAX_ERROR_TEXT,
};
use outcome::Failure;

/// How long a failed backend is avoided.
pub const COOLDOWN: Duration = Duration::from_secs(10);

/// Uplink over webhooks.
#[derive(Debug)]
pub struct WebhookUplink {
    bizs: HashMap<(String, String), Backends>,
}

/// The backend instances of one business.
#[derive(Debug)]
struct Backends {
    routes: Vec<Arc<Route>>,
    next: AtomicUsize,
}

/// One backend instance: where and how its requests go, and its health.
#[derive(Debug)]
struct Route {
    /// `r<index>`.
    id: String,
    /// The business, for metrics and logs.
    biz: String,
    url: String,
    timeout: Duration,
    client: reqwest::Client,
    health: Health,
    /// With the batch contract: the messages waiting for a request.
    batches: Option<batcher::Queue>,
}

#[derive(Debug, Default)]
struct Health {
    failed_until_ms: AtomicU64,
    /// Messages with this backend now.
    in_flight: AtomicUsize,
}

impl WebhookUplink {
    /// Webhooks for every business of every app in `apps` that has some.
    pub fn new(apps: &AppDirectory, client: reqwest::Client) -> Self {
        let mut bizs = HashMap::new();
        for app in apps.iter() {
            for biz in &app.biz {
                if biz.uplink_webhooks.is_empty() {
                    continue;
                }
                let routes = biz
                    .uplink_webhooks
                    .iter()
                    .enumerate()
                    .map(|(i, url)| {
                        Arc::new(Route {
                            id: format!("r{i}"),
                            biz: biz.id.clone(),
                            url: url.clone(),
                            timeout: Duration::from_millis(biz.webhook_timeout_ms),
                            client: client.clone(),
                            health: Health::default(),
                            batches: (biz.uplink_batch_max > 1).then(|| {
                                batcher::Queue::new(
                                    biz.uplink_batch_max,
                                    biz.uplink_batch_concurrency,
                                )
                            }),
                        })
                    })
                    .collect();
                bizs.insert(
                    (app.id.clone(), biz.id.clone()),
                    Backends {
                        routes,
                        next: AtomicUsize::new(0),
                    },
                );
            }
        }
        Self { bizs }
    }
}

impl Route {
    fn healthy(&self, now_ms: u64) -> bool {
        self.health.failed_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Takes this backend out of rotation for [`COOLDOWN`].
    fn mark_failed(&self) {
        self.health
            .failed_until_ms
            .store(unix_ms() + COOLDOWN.as_millis() as u64, Ordering::Relaxed);
        metrics::counter!(crate::metric_families::WEBHOOK_FAILURES_TOTAL, "biz" => self.biz.clone())
            .increment(1);
    }

    /// Counts a request that does not build (not the backend's fault).
    fn build_error(&self, error: &reqwest::Error) -> Failure {
        tracing::error!(biz = %self.biz, route = %self.id, %error, "uplink webhook request does not build");
        metrics::counter!(crate::metric_families::WEBHOOK_BUILD_ERRORS_TOTAL, "biz" => self.biz.clone())
            .increment(1);
        Failure::NotSent(format!(
            "the gateway could not build the webhook request: {error}"
        ))
    }
}

impl Backends {
    fn pick(&self, saved: &str, avoid: Option<&str>, now_ms: u64) -> Option<usize> {
        let avoid = avoid.and_then(route_index);
        if let Some(i) = route_index(saved)
            && i < self.routes.len()
            && Some(i) != avoid
            && self.routes[i].healthy(now_ms)
        {
            return Some(i);
        }
        let n = self.routes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| Some(*i) != avoid);
        let healthy = candidates
            .clone()
            .filter(|i| self.routes[*i].healthy(now_ms))
            .min_by_key(|i| self.routes[*i].health.in_flight.load(Ordering::Relaxed));
        // Nobody healthy: try the one whose cooldown ends first.
        healthy.or_else(|| {
            candidates.min_by_key(|i| {
                self.routes[*i]
                    .health
                    .failed_until_ms
                    .load(Ordering::Relaxed)
            })
        })
    }
}

/// The index a route id `r<index>` names.
fn route_index(route: &str) -> Option<usize> {
    route.strip_prefix('r').and_then(|n| n.parse().ok())
}

impl UplinkHandler for WebhookUplink {
    fn route(&self, app: &str, biz: &str, saved: &str, avoid: Option<&str>) -> Option<String> {
        let backends = self.bizs.get(&(app.to_owned(), biz.to_owned()))?;
        backends
            .pick(saved, avoid, unix_ms())
            .map(|i| backends.routes[i].id.clone())
    }

    fn deliver(&self, request: UplinkRequest) -> BoxFuture<'_, Result<(), UplinkError>> {
        Box::pin(async move {
            let unavailable = |message: String, route_failed| UplinkError {
                code: ErrorCode::BackendUnavailable,
                message,
                route_failed,
            };
            let Some(backends) = self.bizs.get(&(request.app.clone(), request.biz.clone())) else {
                return Err(unavailable(
                    format!("no uplink webhook for biz {:?}", request.biz),
                    false,
                ));
            };
            let Some(route) = route_index(&request.route_id).and_then(|i| backends.routes.get(i))
            else {
                return Err(unavailable(
                    format!("unknown route {:?}", request.route_id),
                    true,
                ));
            };
            route.health.in_flight.fetch_add(1, Ordering::Relaxed);
            let answer = match &route.batches {
                Some(queue) => queue.deliver(route, request).await,
                None => single::send(route, &request).await,
            };
            route.health.in_flight.fetch_sub(1, Ordering::Relaxed);
            answer.map_err(Failure::into_error)
        })
    }
}

/// `value` as a header value: bytes outside visible ASCII (controls,
/// space, DEL, non-ASCII UTF-8) and `%` are percent-encoded as `%XX`, so
/// every string makes a valid header and decodes back exactly (any
/// URL-decoder does). Plain ids (`u42`, `chat`) are unchanged.
pub fn header_value(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A shared handle, as the gateway builder takes it.
pub fn shared(apps: &AppDirectory, client: reqwest::Client) -> Arc<dyn UplinkHandler> {
    Arc::new(WebhookUplink::new(apps, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: usize) -> Backends {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Backends {
            routes: (0..n)
                .map(|i| {
                    Arc::new(Route {
                        id: format!("r{i}"),
                        biz: "chat".into(),
                        url: format!("http://127.0.0.1:1/{i}"),
                        timeout: Duration::from_secs(1),
                        client: reqwest::Client::new(),
                        health: Health::default(),
                        batches: None,
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    #[test]
    fn header_values_are_percent_encoded_only_where_needed() {
        assert_eq!(header_value("u42"), "u42");
        assert_eq!(header_value("chat:room-1_x.y"), "chat:room-1_x.y");
        assert_eq!(header_value("a\nb"), "a%0Ab");
        assert_eq!(header_value("100% sure"), "100%25%20sure");
        assert_eq!(header_value("\u{0}\u{7f}é"), "%00%7F%C3%A9");
        for s in ["a\r\nb", "\u{1}", "é名", "%%", " "] {
            let encoded = header_value(s);
            assert!(
                reqwest::header::HeaderValue::from_str(&encoded).is_ok(),
                "{encoded:?}"
            );
        }
    }

    #[test]
    fn saved_route_is_kept_while_healthy() {
        let b = backends(3);
        assert_eq!(b.pick("r2", None, 1_000), Some(2));
        b.routes[2]
            .health
            .failed_until_ms
            .store(5_000, Ordering::Relaxed);
        let moved = b.pick("r2", None, 1_000).unwrap();
        assert_ne!(moved, 2, "a failed backend is avoided during its cooldown");
        assert_eq!(
            b.pick("r2", None, 5_000),
            Some(2),
            "and used again after it"
        );
    }

    #[test]
    fn new_logins_spread_and_avoid_the_failed_route() {
        let b = backends(2);
        let first = b.pick("", None, 0).unwrap();
        let second = b.pick("", None, 0).unwrap();
        assert_ne!(first, second, "round robin among equally loaded backends");
        assert_eq!(b.pick("r0", Some("r0"), 0), Some(1));
        assert_eq!(b.pick("garbage", None, 0).map(|i| i < 2), Some(true));
        let one = backends(1);
        assert_eq!(one.pick("r0", Some("r0"), 0), None, "no other backend");
    }
}

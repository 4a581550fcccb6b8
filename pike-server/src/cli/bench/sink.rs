//! The uplink webhook sink: the business backend of `pike bench uplink`.
//!
//! An HTTP/1 server (axum) the gateway's biz webhook points at. Every POST,
//! whatever its path, is an uplink message (docs/webhooks.md): its arrival
//! time is taken as soon as the body is read, then it is answered `200 OK`
//! after the configured delay (the backend's work). The gateway sends one
//! request at a time per login and many logins at once, so every request
//! runs in its own task and waits on a timer, never on the others.
//!
//! Latency = arrival − the *scheduled* time stamped in the payload. Only
//! messages scheduled inside the current step's window are recorded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::latency::Stamp;
use crate::webhook::{BATCH_HEADER, BatchAnswer, BatchResult};

/// Highest latency the histogram tells apart (larger ones saturate).
const MAX_TRACKED_US: u64 = 600_000_000;

/// What the sink has seen of the current step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct WindowSummary {
    /// Messages of the window that arrived.
    pub(crate) delivered: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
}

/// The sink's shared state.
#[derive(Debug)]
pub(crate) struct SinkState {
    /// The generator's epoch: stamps are microseconds after it.
    epoch: Instant,
    /// How long each answer waits.
    delay: Duration,
    window: Mutex<Window>,
    /// Every POST received.
    requests: AtomicU64,
    /// POSTs without a stamp.
    unstamped: AtomicU64,
}

#[derive(Debug)]
struct Window {
    /// Scheduled times counted: `[start_us, end_us)` after the epoch.
    start_us: u64,
    end_us: u64,
    histogram: Histogram<u64>,
}

impl SinkState {
    /// A sink for stamps relative to `epoch`, answering after `delay`;
    /// records nothing until [`begin`](Self::begin).
    pub(crate) fn new(epoch: Instant, delay: Duration) -> Result<Arc<Self>, String> {
        let histogram =
            Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).map_err(|e| e.to_string())?;
        Ok(Arc::new(Self {
            epoch,
            delay,
            window: Mutex::new(Window {
                start_us: 0,
                end_us: 0,
                histogram,
            }),
            requests: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
        }))
    }

    fn micros_after_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// Starts a step: from now on only messages scheduled in
    /// `[start, end)` are recorded; the previous step's figures are
    /// dropped.
    pub(crate) fn begin(&self, start: Instant, end: Instant) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.start_us = self.micros_after_epoch(start);
        window.end_us = self.micros_after_epoch(end);
        window.histogram.reset();
    }

    /// Records a message that arrived at `at`; returns whether it counted
    /// (stamped and scheduled inside the window).
    pub(crate) fn record(&self, payload: &[u8], at: Instant) -> bool {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let Some(stamp) = Stamp::decode(payload) else {
            self.unstamped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let arrived_us = self.micros_after_epoch(at);
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if !(window.start_us..window.end_us).contains(&stamp.scheduled_us) {
            return false;
        }
        let latency = arrived_us.saturating_sub(stamp.scheduled_us).max(1);
        window.histogram.saturating_record(latency);
        true
    }

    /// The current window's figures.
    pub(crate) fn summary(&self) -> WindowSummary {
        let window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let h = &window.histogram;
        if h.is_empty() {
            return WindowSummary::default();
        }
        WindowSummary {
            delivered: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    /// Every message received so far (a batch counts its messages).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// POSTs without a stamp so far.
    pub(crate) fn unstamped(&self) -> u64 {
        self.unstamped.load(Ordering::Relaxed)
    }
}

/// The sink's routes: any path, POST only.
pub(crate) fn router(state: Arc<SinkState>) -> Router {
    Router::new().fallback(uplink).with_state(state)
}

/// One uplink message, or a batch of them (a `Pike-Batch` header): each
/// recorded on arrival, answered after the delay with the 2xx the gateway
/// takes as "accepted" (a batch: a result of 200 per message).
async fn uplink(
    State(state): State<Arc<SinkState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let arrived = Instant::now();
    let answer = if headers.contains_key(BATCH_HEADER) {
        let Ok(batch) = serde_json::from_slice::<SinkBatch>(&body) else {
            return (StatusCode::BAD_REQUEST, "not a batch").into_response();
        };
        let mut results = Vec::with_capacity(batch.messages.len());
        for message in &batch.messages {
            let payload = STANDARD.decode(&message.payload).unwrap_or_default();
            state.record(&payload, arrived);
            results.push(BatchResult {
                status: 200,
                error: None,
            });
        }
        Json(BatchAnswer { results }).into_response()
    } else {
        state.record(&body, arrived);
        StatusCode::OK.into_response()
    };
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    answer
}

/// A batch request as the sink reads it: only the payloads.
#[derive(serde::Deserialize)]
struct SinkBatch {
    messages: Vec<SinkMessage>,
}

#[derive(serde::Deserialize)]
struct SinkMessage {
    payload: String,
}

/// Serves the sink on `addr` until `stop`; returns the bound address.
pub(crate) async fn serve(
    addr: SocketAddr,
    state: Arc<SinkState>,
    stop: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("sink on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("sink on {addr}: {e}"))?;
    let app = router(state);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            eprintln!("pike bench: the sink stopped: {e}");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn stamped(scheduled_ms: u64) -> String {
        Stamp {
            seq: scheduled_ms,
            scheduled_us: scheduled_ms * 1000,
        }
        .encode(64)
    }

    #[test]
    fn only_the_window_is_recorded() {
        let epoch = Instant::now();
        let sink = SinkState::new(epoch, Duration::ZERO).unwrap();
        let ms = Duration::from_millis;
        // Nothing is recorded before the first step.
        assert!(!sink.record(stamped(5).as_bytes(), epoch + ms(6)));
        sink.begin(epoch + ms(10), epoch + ms(20));
        // Warm-up (before the window), in the window, after it.
        assert!(!sink.record(stamped(9).as_bytes(), epoch + ms(30)));
        assert!(sink.record(stamped(10).as_bytes(), epoch + ms(13)));
        assert!(sink.record(stamped(15).as_bytes(), epoch + ms(55)));
        assert!(!sink.record(stamped(20).as_bytes(), epoch + ms(21)));
        assert!(!sink.record(b"no stamp", epoch + ms(21)));
        let s = sink.summary();
        assert_eq!(s.delivered, 2);
        // 3 ms and 40 ms, counted from the scheduled times.
        assert!((2_990..=3_010).contains(&s.p50_us), "{s:?}");
        assert!((39_900..=40_100).contains(&s.max_us), "{s:?}");
        assert_eq!(sink.requests(), 6);
        assert_eq!(sink.unstamped(), 1);
        // The next step starts from zero.
        sink.begin(epoch + ms(100), epoch + ms(200));
        assert_eq!(sink.summary(), WindowSummary::default());
    }

    #[tokio::test]
    async fn answers_uplink_posts_with_200_and_records_them() {
        let epoch = Instant::now();
        let sink = SinkState::new(epoch, Duration::ZERO).unwrap();
        sink.begin(epoch, epoch + Duration::from_secs(3600));
        let app = router(sink.clone());
        let post = Request::builder()
            .method("POST")
            .uri("/pike/uplink")
            .header("content-type", "application/octet-stream")
            .header("pike-biz", "bench")
            .body(Body::from(stamped(0)))
            .unwrap();
        let answer = app.clone().oneshot(post).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(sink.summary().delivered, 1);
        // Any path is an uplink endpoint; other methods are refused.
        let get = Request::builder()
            .method("GET")
            .uri("/pike/uplink")
            .body(Body::empty())
            .unwrap();
        let answer = app.oneshot(get).await.unwrap();
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(sink.requests(), 1);
    }

    #[tokio::test]
    async fn answers_a_batch_with_a_result_per_message() {
        let epoch = Instant::now();
        let sink = SinkState::new(epoch, Duration::ZERO).unwrap();
        sink.begin(epoch, epoch + Duration::from_secs(3600));
        let payloads: Vec<String> = (0..3).map(|i| STANDARD.encode(stamped(i))).collect();
        let body = serde_json::json!({
            "messages": payloads.iter().map(|p| serde_json::json!({"seq": 1, "payload": p})).collect::<Vec<_>>()
        });
        let post = Request::builder()
            .method("POST")
            .uri("/pike/uplink")
            .header("content-type", "application/json")
            .header("pike-batch", "3")
            .body(Body::from(body.to_string()))
            .unwrap();
        let answer = router(sink.clone()).oneshot(post).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap();
        let results: BatchAnswer = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(results.results.len(), 3);
        assert!(results.results.iter().all(|r| r.status == 200));
        assert_eq!(sink.summary().delivered, 3);
        assert_eq!(sink.requests(), 3, "one per message");
    }
}

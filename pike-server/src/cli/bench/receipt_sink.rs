//! The receipt webhook sink of `pike bench unicast --receipt-sink`: the
//! backend the gateway's `receipt_webhook` points at when the benchmark
//! measures what receipts cost (`docs/receipts.md`). Every POST is a batch
//! of receipts (`{"receipts": [...]}`, its size in the `Pike-Receipts`
//! header): counted and answered `200 OK` at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The header carrying a batch's receipt count.
const RECEIPTS_HEADER: &str = "pike-receipts";

/// What the sink received.
#[derive(Debug, Default)]
pub(crate) struct ReceiptCounts {
    /// Webhook requests.
    requests: AtomicU64,
    /// Receipts in them.
    receipts: AtomicU64,
}

impl ReceiptCounts {
    /// Requests so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Receipts so far.
    pub(crate) fn receipts(&self) -> u64 {
        self.receipts.load(Ordering::Relaxed)
    }
}

/// The receipts of one request: the header's count, else the body's.
fn count(headers: &HeaderMap, body: &[u8]) -> u64 {
    if let Some(n) = headers
        .get(RECEIPTS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return n;
    }
    #[derive(serde::Deserialize)]
    struct Batch {
        receipts: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Batch>(body).map_or(0, |b| b.receipts.len() as u64)
}

async fn receive(
    State(counts): State<Arc<ReceiptCounts>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    counts.requests.fetch_add(1, Ordering::Relaxed);
    counts
        .receipts
        .fetch_add(count(&headers, &body), Ordering::Relaxed);
    StatusCode::OK
}

/// The sink's routes: any path, POST only.
fn router(counts: Arc<ReceiptCounts>) -> Router {
    Router::new().fallback(receive).with_state(counts)
}

/// Serves the sink on `addr` until `stop`: the bound address, the counts
/// and the server's task.
pub(crate) async fn serve(
    addr: SocketAddr,
    stop: CancellationToken,
) -> Result<(SocketAddr, Arc<ReceiptCounts>, JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("receipt sink on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("receipt sink on {addr}: {e}"))?;
    let counts = Arc::new(ReceiptCounts::default());
    let app = router(counts.clone());
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            eprintln!("pike bench: the receipt sink stopped: {e}");
        }
    });
    Ok((bound, counts, task))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn status(app: &Router, method: &str, header: Option<&str>, body: &str) -> u16 {
        let mut request = Request::builder().method(method).uri("/receipts");
        if let Some(n) = header {
            request = request.header("Pike-Receipts", n);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        app.clone()
            .oneshot(request)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn counts_receipts_of_each_batch_and_answers_200() {
        let counts = Arc::new(ReceiptCounts::default());
        let app = router(counts.clone());
        let batch = r#"{"receipts":[{},{},{}]}"#;
        assert_eq!(status(&app, "POST", Some("3"), batch).await, 200);
        assert_eq!(
            status(&app, "POST", None, r#"{"receipts":[{},{}]}"#).await,
            200
        );
        assert_eq!(status(&app, "GET", None, "").await, 405);
        assert_eq!(counts.requests(), 2);
        assert_eq!(counts.receipts(), 5);
    }

    #[tokio::test]
    async fn serves_on_the_address_until_stopped() {
        let stop = CancellationToken::new();
        let (addr, _counts, task) = serve("127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
        assert_ne!(addr.port(), 0);
        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}

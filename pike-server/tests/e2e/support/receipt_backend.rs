//! A receipt webhook backend in the test process: records each batch of
//! receipts it accepts; answers 503 to its first `fail_first` requests and
//! waits `delay` before each answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use pike_server::receipts::{ReceiptBatch, ReceiptEvent};
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct Shared {
    /// Accepted batches, in order.
    batches: Mutex<Vec<Vec<ReceiptEvent>>>,
    requests: AtomicUsize,
    fail_first: usize,
    delay: Duration,
}

/// The running backend; stops when dropped.
#[derive(Debug)]
pub struct ReceiptBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for ReceiptBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn take(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> StatusCode {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(shared.delay).await;
    if n < shared.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Ok(batch) = serde_json::from_slice::<ReceiptBatch>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    shared
        .batches
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(batch.receipts);
    StatusCode::OK
}

impl ReceiptBackend {
    /// Starts one on `127.0.0.1:0`.
    pub async fn start(fail_first: usize, delay: Duration) -> Self {
        let shared = Arc::new(Shared {
            fail_first,
            delay,
            ..Shared::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receipt backend");
        let addr = listener.local_addr().expect("its address");
        let app = Router::new()
            .route("/receipts", post(take))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}/receipts", self.addr)
    }

    /// Every receipt accepted, in order.
    pub fn receipts(&self) -> Vec<ReceiptEvent> {
        self.batches().into_iter().flatten().collect()
    }

    /// The accepted batches.
    pub fn batches(&self) -> Vec<Vec<ReceiptEvent>> {
        self.shared
            .batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests received (failed ones included).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

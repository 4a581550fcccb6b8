//! Webhook backends in the test process: minimal HTTP/1.1 servers (keep-alive,
//! `Content-Length` bodies) on `127.0.0.1:0` that answer every request with
//! 200 after a configurable delay and record what they took. They speak
//! both webhook contracts: a request with a `Pike-Batch` header is a batch
//! (docs/webhooks.md), answered with one result per message: 422 for a
//! payload that starts with `refuse`, 200 for the others.
//!
//! Hand-written on purpose: a backend must be killable like a crashed
//! process, listener and open connections at once, which a server whose
//! connection tasks outlive it (as `axum::serve`'s do) cannot show.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::{JoinHandle, JoinSet};

/// One request a backend accepted (answered 200).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Record {
    /// Which backend (index into [`Backends::urls`]).
    pub backend: usize,
    pub path: String,
    pub alias: String,
    pub seq: u64,
    pub key: String,
    pub route: String,
    pub connection: String,
    pub payload: String,
    /// The size of the batch it came in (0: a single-message request).
    pub batch: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Accepted requests of every backend, in the order they were answered.
    records: Vec<Record>,
    dead: Vec<bool>,
}

/// Requests being handled now across the backends, and the most ever.
#[derive(Debug, Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// Counts a request as in flight until dropped (also when its connection
/// task is aborted).
struct InFlight(Arc<Concurrency>);

impl InFlight {
    fn enter(concurrency: &Arc<Concurrency>) -> Self {
        let now = concurrency.now.fetch_add(1, Ordering::SeqCst) + 1;
        concurrency.max.fetch_max(now, Ordering::SeqCst);
        Self(concurrency.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A set of backend instances sharing one record.
#[derive(Debug)]
pub struct Backends {
    urls: Vec<String>,
    tasks: Vec<Option<JoinHandle<()>>>,
    state: Arc<Mutex<State>>,
    concurrency: Arc<Concurrency>,
    count: watch::Receiver<usize>,
}

impl Backends {
    /// `n` backends answering each request after `delay`.
    pub async fn start(n: usize, delay: Duration) -> Self {
        let state = Arc::new(Mutex::new(State {
            records: Vec::new(),
            dead: vec![false; n],
        }));
        let concurrency = Arc::new(Concurrency::default());
        let (count_tx, count) = watch::channel(0);
        let count_tx = Arc::new(count_tx);
        let mut urls = Vec::new();
        let mut tasks = Vec::new();
        for index in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind backend");
            let addr: SocketAddr = listener.local_addr().expect("backend address");
            urls.push(format!("http://{addr}/pike/uplink"));
            let state = state.clone();
            let concurrency = concurrency.clone();
            let count_tx = count_tx.clone();
            tasks.push(Some(tokio::spawn(async move {
                // Owned by this task: aborting it drops every connection.
                let mut conns = JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            conns.spawn(serve(
                                socket,
                                index,
                                delay,
                                state.clone(),
                                concurrency.clone(),
                                count_tx.clone(),
                            ));
                        }
                        Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    }
                }
            })));
        }
        Self {
            urls,
            tasks,
            state,
            concurrency,
            count,
        }
    }

    /// The webhook URLs, one per backend.
    pub fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    /// Kills backend `index` like a crash: its listener and connections are
    /// dropped; a request it holds is never answered (nor recorded).
    pub async fn kill(&mut self, index: usize) {
        let mut state = self.state.lock().await;
        state.dead[index] = true;
        if let Some(task) = self.tasks[index].take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Everything accepted so far, in answer order.
    pub async fn records(&self) -> Vec<Record> {
        self.state.lock().await.records.clone()
    }

    /// The most requests the backends handled at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.concurrency.max.load(Ordering::SeqCst)
    }

    /// Waits (at most `limit`) until at least `n` requests were accepted.
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let mut count = self.count.clone();
        tokio::time::timeout(limit, count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("the backends did not get {n} requests in {limit:?}"))
            .expect("backends alive");
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        for task in self.tasks.iter().flatten() {
            task.abort();
        }
    }
}

/// Serves one connection: requests one after the other.
async fn serve(
    mut socket: TcpStream,
    index: usize,
    delay: Duration,
    state: Arc<Mutex<State>>,
    concurrency: Arc<Concurrency>,
    count: Arc<watch::Sender<usize>>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_until_head(&mut socket, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        assert!(
            !headers.contains_key("transfer-encoding"),
            "the test backend reads Content-Length bodies only: {headers:?}"
        );
        let length: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().expect("content-length"));
        let body_start = head_end + 4;
        while buf.len() < body_start + length {
            if !read_more(&mut socket, &mut buf).await {
                return;
            }
        }
        let body = buf[body_start..body_start + length].to_vec();
        buf.drain(..body_start + length);
        let in_flight = InFlight::enter(&concurrency);

        tokio::time::sleep(delay).await;
        // Recording and answering happen under the lock that `kill` takes:
        // a killed backend never took a message it did not answer.
        let mut state = state.lock().await;
        if state.dead[index] {
            return;
        }
        let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let answer = if headers.contains_key("pike-batch") {
            let batch: serde_json::Value = serde_json::from_slice(&body).expect("a batch body");
            let messages = batch["messages"].as_array().expect("messages").clone();
            assert_eq!(
                header("pike-batch"),
                messages.len().to_string(),
                "Pike-Batch counts the messages"
            );
            let mut results = Vec::new();
            for m in &messages {
                let text = |field: &str| m[field].as_str().unwrap_or_default().to_owned();
                let payload = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    text("payload"),
                )
                .expect("base64 payload");
                let payload = String::from_utf8_lossy(&payload).into_owned();
                if payload.starts_with("refuse") {
                    results
                        .push(serde_json::json!({"status": 422, "error": "refused by the test"}));
                    continue;
                }
                state.records.push(Record {
                    backend: index,
                    path: path.clone(),
                    alias: text("alias"),
                    seq: m["seq"].as_u64().unwrap_or(0),
                    key: text("idempotency_key"),
                    route: text("route"),
                    connection: text("connection"),
                    payload,
                    batch: messages.len(),
                });
                results.push(serde_json::json!({"status": 200}));
            }
            let body = serde_json::json!({ "results": results }).to_string();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            state.records.push(Record {
                backend: index,
                path,
                alias: header("pike-alias"),
                seq: header("pike-seq").parse().unwrap_or(0),
                key: header("idempotency-key"),
                route: header("pike-route"),
                connection: header("pike-connection"),
                payload: String::from_utf8_lossy(&body).into_owned(),
                batch: 0,
            });
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned()
        };
        count.send_replace(state.records.len());
        let answered = socket.write_all(answer.as_bytes()).await.is_ok();
        drop(state);
        drop(in_flight);
        if !answered {
            return;
        }
    }
}

/// Reads until `buf` holds a whole request head; its length (without the
/// blank line).
async fn read_until_head(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end);
        }
        if !read_more(socket, buf).await {
            return None;
        }
    }
}

async fn read_more(socket: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match socket.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

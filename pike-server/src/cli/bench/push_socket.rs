//! The publisher's push connection: one WebSocket to the gateway's
//! `GET /v1/push/ws` (subprotocol `pike.push.v1`), protobuf batches out,
//! their results back in order, up to a window of batches in flight.
//!
//! A driver task owns the socket: it writes each batch handed to it and
//! answers the batches' callers in the order the results come back (the
//! gateway answers in the order it received them). A closed or failed
//! connection fails every batch in flight and every later one; the bench
//! does not reconnect (a step's send errors show it).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use proto::api;
use proto::prost::Message as _;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::http_pool::Answer;
use crate::http::PUSH_SUBPROTOCOL;

/// Longest wait for the upgrade.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a batch's answers go.
type Reply = oneshot::Sender<Result<Vec<Answer>, String>>;

/// One batch for the driver.
struct Job {
    bytes: Vec<u8>,
    items: usize,
    reply: Reply,
}

/// A push connection with at most `window` batches in flight.
#[derive(Debug)]
pub(crate) struct SocketPublisher {
    jobs: mpsc::UnboundedSender<Job>,
    window: Arc<Semaphore>,
    size: usize,
}

/// The right to have one batch in flight.
pub(crate) struct SocketLease {
    _permit: OwnedSemaphorePermit,
    jobs: mpsc::UnboundedSender<Job>,
}

impl SocketPublisher {
    /// Opens the push connection to the gateway's HTTP API at `addr`
    /// (`host` for the request) with `api_key`.
    pub(crate) async fn connect(
        addr: std::net::SocketAddr,
        host: &str,
        api_key: &str,
        window: usize,
    ) -> Result<Self, String> {
        let mut request = format!("ws://{host}/v1/push/ws")
            .into_client_request()
            .map_err(|e| format!("push connection request: {e}"))?;
        let header = |v: &str| HeaderValue::from_str(v).map_err(|e| e.to_string());
        request
            .headers_mut()
            .insert("authorization", header(&format!("Bearer {api_key}"))?);
        request
            .headers_mut()
            .insert("sec-websocket-protocol", header(PUSH_SUBPROTOCOL)?);
        let stream = tokio::time::timeout(UPGRADE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("push connection to {addr}: connect timed out"))?
            .map_err(|e| format!("push connection to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        // Results are small: eager writes, a small read buffer.
        let config = WebSocketConfig::default()
            .write_buffer_size(0)
            .read_buffer_size(16 * 1024);
        let (socket, _) = tokio::time::timeout(
            UPGRADE_TIMEOUT,
            tokio_tungstenite::client_async_with_config(request, stream, Some(config)),
        )
        .await
        .map_err(|_| "push connection: the upgrade timed out".to_owned())?
        .map_err(|e| match e {
            tungstenite::Error::Http(response) => format!(
                "push connection refused: {} {}",
                response.status(),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
            ),
            e => format!("push connection: {e}"),
        })?;
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(drive(socket, rx));
        let size = window.max(1);
        Ok(Self {
            jobs,
            window: Arc::new(Semaphore::new(size)),
            size,
        })
    }

    /// A slot for one batch, waiting until `deadline` (`None` then).
    pub(crate) async fn acquire(&self, deadline: Instant) -> Option<SocketLease> {
        let permit = tokio::time::timeout_at(deadline, Arc::clone(&self.window).acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(SocketLease {
            _permit: permit,
            jobs: self.jobs.clone(),
        })
    }

    /// Batches in flight.
    pub(crate) fn lent(&self) -> usize {
        self.size - self.window.available_permits()
    }
}

impl SocketLease {
    /// Sends the encoded `PushBatch` of `items` pushes and waits for its
    /// result, within `limit`: one [`Answer`] per push, or the error of the
    /// whole batch.
    pub(crate) async fn round_trip_batch(
        &mut self,
        bytes: Vec<u8>,
        items: usize,
        limit: Duration,
    ) -> Result<Vec<Answer>, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                bytes,
                items,
                reply,
            })
            .map_err(|_| "the push connection is closed".to_owned())?;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the push connection is closed".into()),
            Err(_) => Err("no result within the request timeout".into()),
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Writes the jobs' batches and answers them in order, until the socket
/// fails or every publisher is gone.
async fn drive(socket: Socket, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let (mut sink, mut stream) = socket.split();
    let mut waiting: VecDeque<(usize, Reply)> = VecDeque::new();
    let failure = loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { break "the publisher is done".to_owned() };
                if let Err(e) = sink.send(Message::Binary(job.bytes.into())).await {
                    let _ = job.reply.send(Err(format!("push connection: {e}")));
                    break format!("push connection: {e}");
                }
                waiting.push_back((job.items, job.reply));
            }
            message = stream.next() => {
                let bytes = match message {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(frame))) => {
                        break format!("push connection closed by the gateway: {frame:?}");
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break format!("push connection: {e}"),
                    None => break "push connection closed".to_owned(),
                };
                let Some((items, reply)) = waiting.pop_front() else {
                    break "a result for no batch".to_owned();
                };
                let _ = reply.send(answers(&bytes, items));
            }
        }
    };
    for (_, reply) in waiting {
        let _ = reply.send(Err(failure.clone()));
    }
    jobs.close();
    while let Some(job) = jobs.recv().await {
        let _ = job.reply.send(Err(failure.clone()));
    }
}

/// A `PushBatchResult` as one [`Answer`] per push.
fn answers(bytes: &[u8], items: usize) -> Result<Vec<Answer>, String> {
    let result =
        api::PushBatchResult::decode(bytes).map_err(|e| format!("not a PushBatchResult: {e}"))?;
    if let Some(error) = result.error {
        return Err(format!("batch refused: {}: {}", error.code, error.message));
    }
    if result.results.len() != items {
        return Err(format!(
            "{} results for a batch of {items}",
            result.results.len()
        ));
    }
    Ok(result
        .results
        .into_iter()
        .map(|item| match item.outcome {
            Some(api::push_result::Outcome::Pushed(p)) => Answer::Accepted {
                online: Some(p.online),
                dropped: p.dropped,
            },
            Some(api::push_result::Outcome::Failed(e)) => {
                Answer::Refused(format!("{}: {}", e.code, e.message))
            }
            None => Answer::Refused("a result without an outcome".into()),
        })
        .collect())
}

//! `GET /v1/push/ws`: a backend's push connection, a WebSocket (subprotocol
//! [`PUSH_SUBPROTOCOL`]) carrying batches of pushes as protobuf
//! ([`proto::api::PushBatch`], one per binary message) and their results
//! ([`proto::api::PushBatchResult`], one per batch, in the batches' order).
//!
//! The pushes mean what the items of `POST /v1/push/batch` mean and are
//! checked the same way; what the connection saves is the HTTP request, the
//! JSON and the base64 per batch. Batches that arrive while earlier ones are
//! being pushed wait, and leave together in one
//! [`PushHandle::push_batch`](pike_api::server::PushHandle::push_batch): the
//! reliable ones of all of them in one store commit, in arrival order.
//!
//! Bounds: [`HttpState::max_push_connections`] connections per gateway; a
//! message of at most the batch body limit; at most
//! [`MAX_QUEUED_BATCHES`] batches and one message limit of bytes read
//! ahead (the socket is not read while that is exceeded); a ping every
//! [`PING_EVERY`], and the connection closed after [`IDLE_TIMEOUT`]
//! without a message, ping or pong from the backend; results that the
//! backend does not read for the request timeout close the connection.
//! When the gateway shuts down, a connection closes with 1001 (going away)
//! once every batch it read is answered (those pushed after the shutdown
//! began fail with `unavailable`).

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use pike_api::server::{PushReceipt, PushRequest, Target};
use proto::api;
use proto::prost::Message as _;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, MissedTickBehavior};

use super::error::{ApiError, ErrorCode};
use super::extract::Caller;
use super::push::{
    batch_body_limit, check_batch_item, check_batch_len, delivery, item_error, payload_len,
    unique_aliases,
};
use super::state::HttpState;
use super::validate;

/// The WebSocket subprotocol of a push connection.
pub const PUSH_SUBPROTOCOL: &str = "pike.push.v1";

/// Most batches read ahead of the one being pushed.
pub const MAX_QUEUED_BATCHES: usize = 64;

/// How often the gateway pings a push connection.
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// A push connection that sends nothing (no message, ping or pong) for this
/// long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The read buffer of a push connection's socket (tungstenite's default is
/// 128 KiB; a backend's batches of small pushes fit many times over).
const READ_BUFFER: usize = 16 * 1024;

/// `GET /v1/push/ws`: authenticates the backend (its API key, as every
/// route), takes one of the gateway's push connection slots and upgrades.
pub(crate) async fn push_socket(
    State(state): State<HttpState>,
    caller: Caller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::invalid(format!(
                "`GET /v1/push/ws` is a WebSocket upgrade (subprotocol {PUSH_SUBPROTOCOL}): {}",
                rejection.body_text()
            ))
            .into_response();
        }
    };
    let offers_protocol = upgrade
        .requested_protocols()
        .any(|p| p.as_bytes() == PUSH_SUBPROTOCOL.as_bytes());
    if !offers_protocol {
        return ApiError::invalid(format!(
            "ask for the WebSocket subprotocol {PUSH_SUBPROTOCOL} (`Sec-WebSocket-Protocol: {PUSH_SUBPROTOCOL}`)"
        ))
        .into_response();
    }
    let Ok(slot) = state.push_sockets().try_acquire_owned() else {
        metrics::counter!(crate::metric_families::HTTP_REFUSED_TOTAL, "reason" => "push_connections")
            .increment(1);
        return ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "the gateway holds {} push connections, its limit; retry later or use POST /v1/push/batch",
                state.max_push_connections()
            ),
        )
        .into_response();
    };
    let limit = batch_body_limit(state.body_limit());
    let mut upgrade = upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(limit)
        .max_frame_size(limit);
    upgrade.set_selected_protocol(HeaderValue::from_static(PUSH_SUBPROTOCOL));
    upgrade
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "push connection: upgrade failed"))
        .on_upgrade(move |socket| serve(socket, state, caller.app, slot))
}

/// A batch read and not answered yet.
struct Queued {
    id: u64,
    /// Bytes of its message (counted against the read-ahead bound).
    bytes: usize,
    state: QueuedState,
}

enum QueuedState {
    /// Refused as a whole (answered in its turn).
    Refused(ApiError),
    /// Valid, waiting for the pushes before it.
    Ready(Vec<PushRequest>),
    /// Being pushed: `count` results to come.
    Pushing(usize),
    /// Pushed: the results.
    Done(Vec<api::PushResult>),
}

/// The pushes of every ready batch, in their order, pushed in one call.
type Pushing = BoxFuture<'static, Vec<Result<PushReceipt, pike_api::server::PushError>>>;

/// Why a push connection ended.
enum End {
    /// The backend closed it, or the socket failed.
    Gone,
    /// The gateway closes it with this code and reason.
    Close(u16, &'static str),
}

async fn serve(mut socket: WebSocket, state: HttpState, app: String, slot: OwnedSemaphorePermit) {
    let end = run(&mut socket, &state, &app).await;
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            state.request_timeout(),
            socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
    drop(slot);
}

async fn run(socket: &mut WebSocket, state: &HttpState, app: &str) -> End {
    let limit = batch_body_limit(state.body_limit());
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut queued_bytes = 0usize;
    let mut pushing: Option<Pushing> = None;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let push = state.push_handle().clone();
    let mut shutting_down = std::pin::pin!(push.shutting_down());
    loop {
        if pushing.is_none() {
            pushing = start(&mut queue, state);
        }
        let room = queue.len() < MAX_QUEUED_BATCHES && queued_bytes < limit;
        tokio::select! {
            message = socket.recv(), if room => {
                last_heard = Instant::now();
                let message = match message {
                    None | Some(Err(_)) => return End::Gone,
                    Some(Ok(message)) => message,
                };
                match message {
                    Message::Binary(bytes) => {
                        queued_bytes += bytes.len();
                        queue.push_back(read_batch(&bytes, app, state));
                    }
                    Message::Text(_) => {
                        return End::Close(
                            close_code::UNSUPPORTED,
                            "text messages are not part of pike.push.v1: send protobuf PushBatch as binary messages",
                        );
                    }
                    Message::Close(_) => return End::Gone,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            results = async {
                match pushing.as_mut() {
                    Some(pushing) => pushing.await,
                    None => std::future::pending().await,
                }
            }, if pushing.is_some() => {
                pushing = None;
                file(&mut queue, results);
            }
            () = &mut shutting_down, if pushing.is_none() && queue.is_empty() => {
                return End::Close(close_code::AWAY, "the gateway is shutting down; connect to another one");
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= IDLE_TIMEOUT {
                    return End::Close(close_code::POLICY, "idle: nothing from the backend, not even a pong");
                }
                if !send(socket, state, Message::Ping(Bytes::new())).await {
                    return End::Gone;
                }
            }
        }
        // Answer what is complete at the front, in order.
        while let Some((answer, bytes)) = answer(&mut queue) {
            queued_bytes = queued_bytes.saturating_sub(bytes);
            if !send(
                socket,
                state,
                Message::Binary(answer.encode_to_vec().into()),
            )
            .await
            {
                return End::Gone;
            }
        }
    }
}

/// The answer to the batch at the front of the queue, if it is complete,
/// and the bytes its message took.
fn answer(queue: &mut VecDeque<Queued>) -> Option<(api::PushBatchResult, usize)> {
    let front = queue.front_mut()?;
    let (results, error) = match &mut front.state {
        QueuedState::Refused(error) => (Vec::new(), Some(api_error(error))),
        QueuedState::Done(results) => (std::mem::take(results), None),
        QueuedState::Ready(_) | QueuedState::Pushing(_) => return None,
    };
    let queued = queue.pop_front()?;
    Some((
        api::PushBatchResult {
            id: queued.id,
            results,
            error,
        },
        queued.bytes,
    ))
}

/// Sends `message`, waiting at most the request timeout for the backend
/// to take it; `false` when the connection is done.
async fn send(socket: &mut WebSocket, state: &HttpState, message: Message) -> bool {
    matches!(
        tokio::time::timeout(state.request_timeout(), socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// Starts pushing every ready batch of the queue together, if there is
/// one.
fn start(queue: &mut VecDeque<Queued>, state: &HttpState) -> Option<Pushing> {
    let mut requests = Vec::new();
    for queued in queue.iter_mut() {
        if let QueuedState::Ready(batch) = &mut queued.state {
            let batch = std::mem::take(batch);
            queued.state = QueuedState::Pushing(batch.len());
            requests.extend(batch);
        }
    }
    if requests.is_empty() {
        return None;
    }
    let push = state.push_handle().clone();
    Some(async move { push.push_batch(requests).await }.boxed())
}

/// Hands the results of a `push_batch` to the batches that were pushing.
fn file(
    queue: &mut VecDeque<Queued>,
    results: Vec<Result<PushReceipt, pike_api::server::PushError>>,
) {
    let mut results = results.into_iter();
    for queued in queue.iter_mut() {
        if let QueuedState::Pushing(count) = queued.state {
            let mine = results
                .by_ref()
                .take(count)
                .map(|outcome| api::PushResult {
                    outcome: Some(match outcome {
                        Ok(receipt) => api::push_result::Outcome::Pushed(pushed(&receipt)),
                        Err(e) => api::push_result::Outcome::Failed(api_error(&ApiError::from(e))),
                    }),
                })
                .collect();
            queued.state = QueuedState::Done(mine);
        }
    }
}

fn pushed(receipt: &PushReceipt) -> api::Pushed {
    api::Pushed {
        message_id: receipt.message_id,
        stored: receipt.stored as u64,
        online: receipt.online as u64,
        dropped: receipt.dropped as u64,
    }
}

fn api_error(error: &ApiError) -> api::PushError {
    api::PushError {
        code: error.code().as_str().to_owned(),
        message: error.message().to_owned(),
        field: error.field().unwrap_or_default().to_owned(),
    }
}

/// Decodes and checks one batch: every push valid, or the batch refused.
fn read_batch(bytes: &[u8], app: &str, state: &HttpState) -> Queued {
    let batch = match api::PushBatch::decode(bytes) {
        Ok(batch) => batch,
        Err(e) => {
            return Queued {
                id: 0,
                bytes: bytes.len(),
                state: QueuedState::Refused(ApiError::invalid(format!(
                    "the message is not a protobuf pike.api.v1.PushBatch: {e}"
                ))),
            };
        }
    };
    let id = batch.id;
    // Each push's `receipt`, absent: the business's `receipts_default`
    // decides (`docs/receipts.md`).
    let asked: Vec<Option<bool>> = batch.pushes.iter().map(|push| push.receipt).collect();
    let state = match requests(batch, app, state.push_handle().max_payload_len()) {
        Ok(mut requests) => {
            for (request, asked) in requests.iter_mut().zip(asked) {
                request.receipt = state.receipt_wanted(request, asked);
            }
            QueuedState::Ready(requests)
        }
        Err(error) => QueuedState::Refused(error),
    };
    Queued {
        id,
        bytes: bytes.len(),
        state,
    }
}

fn requests(
    batch: api::PushBatch,
    app: &str,
    max_payload: usize,
) -> Result<Vec<PushRequest>, ApiError> {
    check_batch_len(batch.pushes.len())?;
    batch
        .pushes
        .into_iter()
        .enumerate()
        .map(|(index, push)| {
            to_request(app, push, max_payload)
                .and_then(check_batch_item)
                .map_err(|e| item_error(index, e))
        })
        .collect()
}

/// One protobuf push as the library's request, checked as an HTTP push
/// body is.
fn to_request(app: &str, push: api::Push, max_payload: usize) -> Result<PushRequest, ApiError> {
    use api::push::Target as T;
    validate::biz("biz", &push.biz)?;
    let target = match &push.target {
        Some(T::Alias(alias)) => Target::Alias(validate::owned_alias("alias", alias)?),
        Some(T::Aliases(list)) => Target::Aliases(unique_aliases("aliases", &list.aliases)?),
        Some(T::Tag(tag)) => Target::Tag(validate::owned_id("tag", tag)?),
        Some(T::Device(device)) => Target::Device(validate::owned_id("device", device)?),
        Some(T::All(true)) => Target::App,
        Some(T::All(false)) | None => {
            return Err(ApiError::invalid(
                "a target is required: one of `alias`, `aliases`, `tag`, `device` or `all: true`",
            ));
        }
    };
    payload_len("payload", push.payload.len(), max_payload)?;
    let ttl = (push.ttl_secs != 0).then_some(push.ttl_secs);
    let delivery = delivery(!push.transient, ttl)?;
    Ok(PushRequest {
        app: app.to_owned(),
        biz: push.biz,
        target,
        payload: push.payload,
        delivery,
        priority: push.priority,
        receipt: false,
    })
}

//! Batches for one backend instance: the messages that arrive while its
//! batch requests are in flight wait in a queue and leave together in the
//! next request.
//!
//! At most `concurrency` requests are in flight per backend instance; each
//! takes whatever is queued, up to `max_messages`. Nothing waits for a
//! batch to fill: an idle backend gets a message as soon as it comes (a
//! batch of one), and batches grow only while requests are in flight, so
//! batching adds no latency of its own. The queue is bounded by the
//! gateway's limit on uplink calls in flight
//! (`limits.max_uplink_in_flight`): every queued message is one such call.
//!
//! Order per login needs nothing here: a login has at most one message
//! with the backends at a time (`docs/webhooks.md`), so one batch never
//! holds two messages of one login.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pike_api::server::UplinkRequest;
use tokio::sync::oneshot;

use super::batch_contract::{self, BATCH_CONTENT_TYPE, BATCH_HEADER, MAX_ANSWER_BYTES};
use super::outcome::{self, Answer, Failure};
use super::{Route, header_value};

/// The batch queue of one backend instance.
#[derive(Debug)]
pub(super) struct Queue {
    state: Mutex<State>,
    max_messages: usize,
    concurrency: usize,
}

#[derive(Debug, Default)]
struct State {
    waiting: VecDeque<Waiting>,
    /// Tasks sending batches now (at most `concurrency`).
    sending: usize,
}

/// A queued message and where its answer goes.
#[derive(Debug)]
struct Waiting {
    request: UplinkRequest,
    answer: oneshot::Sender<Answer>,
}

impl Queue {
    /// Batches of at most `max_messages`, at most `concurrency` in flight.
    pub(super) fn new(max_messages: usize, concurrency: usize) -> Self {
        Self {
            state: Mutex::default(),
            max_messages: max_messages.max(1),
            concurrency: concurrency.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `request` for `route` (whose queue this is) and resolves to
    /// the backend's answer for it.
    pub(super) async fn deliver(&self, route: &Arc<Route>, request: UplinkRequest) -> Answer {
        let (answer, answered) = oneshot::channel();
        let start_sender = {
            let mut state = self.lock();
            state.waiting.push_back(Waiting { request, answer });
            let start = state.sending < self.concurrency;
            if start {
                state.sending += 1;
            }
            start
        };
        if start_sender {
            tokio::spawn(send_while_queued(route.clone()));
        }
        answered.await.unwrap_or_else(|_| {
            Err(Failure::RouteFailed(format!(
                "the batch request to backend {} ended without an answer",
                route.id
            )))
        })
    }

    /// The next batch, or `None` (and one sender fewer) when nothing waits:
    /// both under one lock, so that a message queued meanwhile always
    /// finds a sender.
    fn next_batch(&self) -> Option<Vec<Waiting>> {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            state.sending -= 1;
            return None;
        }
        let n = state.waiting.len().min(self.max_messages);
        Some(state.waiting.drain(..n).collect())
    }
}

/// A sender's place in `sending`, given back if the sender dies early.
struct Sender<'a> {
    queue: &'a Queue,
    done: bool,
}

impl Drop for Sender<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.queue.lock().sending -= 1;
        }
    }
}

/// Sends batches to `route` until its queue is empty.
async fn send_while_queued(route: Arc<Route>) {
    let Some(queue) = &route.batches else {
        return;
    };
    let mut sender = Sender { queue, done: false };
    loop {
        let Some(batch) = queue.next_batch() else {
            sender.done = true;
            return;
        };
        let answers = send(&route, &batch).await;
        for (waiting, answer) in batch.into_iter().zip(answers) {
            // The caller may be gone (the gateway stopping): nothing to do.
            let _ = waiting.answer.send(answer);
        }
    }
}

/// Sends one batch and reads one answer per message.
async fn send(route: &Route, batch: &[Waiting]) -> Vec<Answer> {
    let all = |answer: Answer| batch.iter().map(|_| answer.clone()).collect::<Vec<_>>();
    let requests: Vec<&UplinkRequest> = batch.iter().map(|w| &w.request).collect();
    let Some(first) = requests.first() else {
        return Vec::new();
    };
    let built = route
        .client
        .post(&route.url)
        .timeout(route.timeout)
        .header("content-type", BATCH_CONTENT_TYPE)
        .header(BATCH_HEADER, requests.len().to_string())
        .header("pike-app", header_value(&first.app))
        .header("pike-biz", header_value(&first.biz))
        .header("pike-route", header_value(&route.id))
        .body(batch_contract::encode(&requests))
        .build();
    let built = match built {
        Ok(built) => built,
        Err(e) => return all(Err(route.build_error(&e))),
    };
    let answers = match route.client.execute(built).await {
        Ok(response) if response.status().is_success() => match read_answer(response).await {
            Ok(body) => batch_contract::decode(&body, requests.len(), &route.id),
            Err(why) => all(Err(Failure::RouteFailed(format!(
                "backend {} answered a batch with {why}",
                route.id
            )))),
        },
        Ok(response) => all(outcome::from_status(response.status().as_u16(), &route.id)),
        Err(e) => all(Err(Failure::RouteFailed(format!(
            "backend {} unreachable: {e}",
            route.id
        )))),
    };
    if answers
        .iter()
        .any(|a| matches!(a, Err(Failure::RouteFailed(_))))
    {
        route.mark_failed();
    }
    answers
}

/// The answer's body, at most [`MAX_ANSWER_BYTES`].
async fn read_answer(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(format!("a body over {MAX_ANSWER_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("a body that broke off: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("a body over {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

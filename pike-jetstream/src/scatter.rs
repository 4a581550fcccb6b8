//! Scatter-gather over core NATS: a question published on [`QUERY_SUBJECT`]
//! with a reply inbox reaches every node (each answers once from its own
//! connections); the asker counts the live nodes' leases
//! ([`Cluster::live_nodes`]) and collects answers until each answered or
//! its window closes (plan §7).
//!
//! Answers come back on one wildcard subscription per node (`<inbox>.*`,
//! made once, before the first question): a fresh inbox per question would
//! lose the answers of the nodes on other NATS servers until its interest
//! had crossed the cluster's routes (measured: answers lost for seconds).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::{Subject, Subscriber};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use tokio::sync::{OnceCell, mpsc};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// The subject every node answers questions on.
pub const QUERY_SUBJECT: &str = "q.all";
/// Most answers one question collects (nodes of a cluster, with room).
pub const MAX_ANSWERS: usize = 256;
/// Largest question or answer, bytes (the servers' `max_payload` is 1 MiB).
pub const MAX_QUERY_BYTES: usize = 1024 * 1024 - 4096;

/// The answers a question collected.
#[derive(Clone, Debug, Default)]
pub struct Gathered {
    /// One per node that answered in time.
    pub answers: Vec<Bytes>,
    /// Live nodes when the question was asked (at least the answers).
    pub expected: usize,
}

/// Questions sent to this node ([`Cluster::questions`]).
#[derive(Debug)]
pub struct QuestionStream {
    subscriber: Subscriber,
}

/// One question: its payload, and where the answer goes.
#[derive(Debug)]
pub struct Question {
    /// What is asked.
    pub payload: Bytes,
    /// The asker's inbox (none: nobody waits for an answer).
    pub reply: Option<Subject>,
}

impl Stream for QuestionStream {
    type Item = Question;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Question>> {
        Pin::new(&mut self.subscriber).poll_next(cx).map(|m| {
            m.map(|m| Question {
                payload: m.payload,
                reply: m.reply,
            })
        })
    }
}

/// Questions of this node waiting for answers, by number: one entry per
/// [`Cluster::scatter`] in flight, removed when it returns.
type Waiting = Arc<Mutex<HashMap<u64, mpsc::Sender<Bytes>>>>;

/// The node's answer subscription, made on first use.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    ready: OnceCell<(String, Waiting)>,
    next: AtomicU64,
}

/// Takes a question's number out of [`Replies`] when the question ends.
struct Asked {
    waiting: Waiting,
    id: u64,
}

impl Drop for Asked {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Cluster {
    /// Makes the node's answer subscription (once); resolves when its NATS
    /// server has it. Called when a gateway starts, so that its interest has
    /// crossed the cluster before the first question.
    pub async fn prepare_scatter(&self) -> Result<()> {
        self.replies().await.map(|_| ())
    }

    async fn replies(&self) -> Result<&(String, Waiting)> {
        self.replies_cell()
            .ready
            .get_or_try_init(|| async {
                self.ensure_ready()?;
                let prefix = self.client().new_inbox();
                let mut subscriber = self
                    .client()
                    .subscribe(format!("{prefix}.*"))
                    .await
                    .map_err(|e| Error::Unavailable(format!("answers subscribe: {e}")))?;
                self.flushed("answers").await?;
                let waiting: Waiting = Arc::default();
                let routes = waiting.clone();
                // Ends with the NATS connection.
                tokio::spawn(async move {
                    while let Some(message) = subscriber.next().await {
                        let id = message
                            .subject
                            .rsplit('.')
                            .next()
                            .and_then(|t| t.parse::<u64>().ok());
                        let sender = id.and_then(|id| {
                            routes
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .get(&id)
                                .cloned()
                        });
                        if let Some(sender) = sender {
                            // Full: more answers than a question takes.
                            let _ = sender.try_send(message.payload);
                        }
                    }
                });
                Ok((prefix, waiting))
            })
            .await
    }

    /// Subscribes to [`QUERY_SUBJECT`]; resolves once the node's NATS
    /// server has the subscription.
    pub async fn questions(&self) -> Result<QuestionStream> {
        self.ensure_ready()?;
        let subscriber = self
            .client()
            .subscribe(QUERY_SUBJECT)
            .await
            .map_err(|e| Error::Unavailable(format!("questions subscribe: {e}")))?;
        self.flushed("questions").await?;
        Ok(QuestionStream { subscriber })
    }

    /// Answers a question (core NATS, at most once).
    pub async fn answer(&self, reply: Subject, payload: Bytes) -> Result<()> {
        if payload.len() > MAX_QUERY_BYTES {
            return Err(Error::Invalid(format!(
                "answer is {} bytes, the limit is {MAX_QUERY_BYTES}",
                payload.len()
            )));
        }
        self.ensure_ready()?;
        self.client()
            .publish(reply, payload)
            .await
            .map_err(|e| Error::Unavailable(format!("answer: {e}")))
    }

    /// Asks every node `payload` and collects the answers for at most
    /// `window` (fewer when every live node answered first). Fails at once
    /// while NATS is unreachable.
    pub async fn scatter(&self, payload: Bytes, window: Duration) -> Result<Gathered> {
        if payload.len() > MAX_QUERY_BYTES {
            return Err(Error::Invalid(format!(
                "question is {} bytes, the limit is {MAX_QUERY_BYTES}",
                payload.len()
            )));
        }
        self.ensure_ready()?;
        let deadline = Instant::now() + window;
        // Counted now: a count up to a lease refresh old misses the nodes
        // that started since (and the first answer would end the wait).
        let expected = tokio::time::timeout_at(deadline, self.count_nodes())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| self.live_nodes())
            .min(MAX_ANSWERS);
        let (prefix, waiting) = self.replies().await?;
        let id = self.replies_cell().next.fetch_add(1, Ordering::Relaxed);
        let (sender, mut answers_in) = mpsc::channel(MAX_ANSWERS);
        waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, sender);
        let _asked = Asked {
            waiting: waiting.clone(),
            id,
        };
        self.client()
            .publish_with_reply(QUERY_SUBJECT, format!("{prefix}.{id}"), payload)
            .await
            .map_err(|e| Error::Unavailable(format!("scatter: {e}")))?;
        self.flushed("scatter").await?;
        let mut answers = Vec::new();
        while answers.len() < MAX_ANSWERS && (expected == 0 || answers.len() < expected) {
            match tokio::time::timeout_at(deadline, answers_in.recv()).await {
                Ok(Some(answer)) => answers.push(answer),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Gathered {
            expected: expected.max(answers.len()),
            answers,
        })
    }

    /// Waits until the node's server has what this connection sent, within
    /// `request_timeout`.
    pub(crate) async fn flushed(&self, what: &str) -> Result<()> {
        tokio::time::timeout(self.config().request_timeout, self.client().flush())
            .await
            .map_err(|_| Error::Unavailable(format!("{what}: flush timed out")))?
            .map_err(|e| Error::Unavailable(format!("{what}: flush: {e}")))
    }
}

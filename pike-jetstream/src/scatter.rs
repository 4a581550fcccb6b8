//! Scatter-gather over core NATS: a question published on [`QUERY_SUBJECT`]
//! with a reply inbox reaches every node (each answers once from its own
//! connections); the asker collects answers until every live node
//! ([`Cluster::live_nodes`]) answered or its window closes (plan §7).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::{Subject, Subscriber};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
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

impl Cluster {
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
        let expected = self.live_nodes().min(MAX_ANSWERS);
        let inbox = self.client().new_inbox();
        let mut answers_sub = self
            .client()
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Error::Unavailable(format!("scatter subscribe: {e}")))?;
        self.client()
            .publish_with_reply(QUERY_SUBJECT, inbox, payload)
            .await
            .map_err(|e| Error::Unavailable(format!("scatter: {e}")))?;
        self.flushed("scatter").await?;
        let mut answers = Vec::new();
        while answers.len() < MAX_ANSWERS && (expected == 0 || answers.len() < expected) {
            match tokio::time::timeout_at(deadline, answers_sub.next()).await {
                Ok(Some(message)) => answers.push(message.payload),
                Ok(None) | Err(_) => break,
            }
        }
        let _ = answers_sub.unsubscribe().await;
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

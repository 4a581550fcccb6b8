//! Whether this node can serve cluster operations right now: connected to
//! NATS, and JetStream answering (a probe write every `probe_interval`,
//! plan §10).

use std::sync::Mutex;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// Lifetime of a probe message in the downlink stream.
const PROBE_TTL: Duration = Duration::from_secs(30);

/// The node's view of the cluster.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Health {
    /// Connected, and the last JetStream probe (or append) succeeded.
    Ready,
    /// Not connected (every operation then fails at once with
    /// [`Error::Unavailable`], nothing is buffered), or connected but
    /// JetStream did not store the last probe (no quorum, no leader):
    /// operations are still tried, bounded by their timeouts.
    Unavailable(String),
}

/// The outcome of the last JetStream probe: `None` when it succeeded.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    failure: Mutex<Option<String>>,
}

impl Probe {
    pub(crate) fn succeeded(&self) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self, why: String) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Cluster {
    /// [`Health::Ready`] while connected to NATS and JetStream stores the
    /// probe. async-nats flips its connection state within milliseconds of
    /// losing the server (7–18 ms measured); a lost JetStream quorum shows
    /// within `probe_interval` + `request_timeout`.
    pub fn health(&self) -> Health {
        match self.client().connection_state() {
            State::Connected => match self.probe().failure() {
                None => Health::Ready,
                Some(why) => Health::Unavailable(why),
            },
            State::Pending => Health::Unavailable("connecting to NATS".into()),
            State::Disconnected => Health::Unavailable("disconnected from NATS".into()),
        }
    }

    /// Fails fast with [`Error::Unavailable`] unless connected: async-nats
    /// would otherwise buffer core publishes while disconnected and deliver
    /// them later, stale (plan §14.7).
    pub(crate) fn ensure_ready(&self) -> Result<()> {
        match self.client().connection_state() {
            State::Connected => Ok(()),
            State::Pending => Err(Error::Unavailable("connecting to NATS".into())),
            State::Disconnected => Err(Error::Unavailable("disconnected from NATS".into())),
        }
    }

    /// Starts the probe task: every `probe_interval`, a message with a 30 s
    /// TTL on `dl.=.<node>` (no id encodes to a lone `=`). It ends when the
    /// last [`Cluster`] handle is dropped.
    pub(crate) fn spawn_probe(&self) {
        let weak = self.downgrade();
        let interval = self.config().probe_interval;
        let subject = format!("dl.=.{}", self.node());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(cluster) = Self::upgrade(&weak) else {
                    return;
                };
                if cluster.ensure_ready().is_err() {
                    continue;
                }
                let message = PublishMessage::build().payload(Bytes::new()).ttl(PROBE_TTL);
                let timeout = cluster.config().request_timeout;
                let outcome = tokio::time::timeout(timeout, async {
                    match cluster.js().send_publish(subject.clone(), message).await {
                        Ok(ack) => ack.await.map(|_| ()),
                        Err(e) => Err(e),
                    }
                })
                .await;
                match outcome {
                    Ok(Ok(())) => cluster.probe().succeeded(),
                    Ok(Err(e)) => cluster
                        .probe()
                        .failed(format!("JetStream probe failed: {e}")),
                    Err(_) => cluster
                        .probe()
                        .failed(format!("JetStream probe unanswered for {timeout:?}")),
                }
            }
        });
    }
}

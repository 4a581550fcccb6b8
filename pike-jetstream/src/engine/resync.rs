//! Catching up live routes after NATS comes back. Republished copies of
//! stored messages travel as core NATS messages: at most once, so those
//! published while this node was cut off from NATS never arrive, and
//! neither do those a stream leader stored but had not republished when it
//! died. After each such event the newest message of every alias stream
//! the node serves is read from the stream and handed to the node as if it
//! had just arrived: a connection behind it sees the gap and reads the rest
//! ("gap detection on the live path"), one already past it drops it by its
//! sequence number.
//!
//! The events, checked every `probe_interval` (the catch-up runs at the
//! first check that finds the node ready after one):
//! - the node's cluster health turned ready again;
//! - the node reconnected to NATS ([`Cluster::connects`] changed), even
//!   too briefly for the health to show it;
//! - JetStream elected a new leader of `PIKE_DOWNLINK` (the advisory
//!   `$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.PIKE_DOWNLINK`): the old
//!   leader may have acknowledged messages it never republished (the
//!   likeliest cause of one acknowledged push a chaos run with NATS node
//!   kills never delivered before this trigger; not shown directly).
//!
//! A catch-up whose reads failed for some streams runs again at the next
//! check, at most [`MAX_RETRIES`] times in a row.
//!
//! [`Cluster::connects`]: crate::Cluster::connects

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use pike_api::server::{self as api, StoredMessage};

use super::{JetStreamEngine, key, stored_message};
use crate::health::Health;

/// Alias streams read at once during a catch-up.
pub(crate) const RESYNC_CONCURRENCY: usize = 16;

/// The advisory JetStream sends when `PIKE_DOWNLINK` gets a new leader.
pub(crate) const LEADER_ELECTED: &str = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.PIKE_DOWNLINK";

/// Catch-ups run again in a row while some of their reads fail.
pub(crate) const MAX_RETRIES: u32 = 5;

/// When a catch-up is due: the events of the module docs, seen at each
/// check, and the retries of a catch-up that had failed reads.
#[derive(Debug)]
pub(crate) struct Triggers {
    was_ready: bool,
    connects: u64,
    due: Option<&'static str>,
    retries: u32,
}

impl Triggers {
    /// Starts with the node's current connect count.
    pub(crate) fn new(connects: u64) -> Self {
        Self {
            was_ready: true,
            connects,
            due: None,
            retries: 0,
        }
    }

    /// A leader-elected advisory arrived.
    pub(crate) fn leader_elected(&mut self) {
        self.due.get_or_insert("new downlink stream leader");
    }

    /// A check: whether a catch-up runs now, and why.
    pub(crate) fn check(&mut self, ready: bool, connects: u64) -> Option<&'static str> {
        if ready && !self.was_ready {
            self.due.get_or_insert("NATS is back");
        }
        self.was_ready = ready;
        if connects != self.connects {
            self.connects = connects;
            self.due.get_or_insert("reconnected to NATS");
        }
        if ready { self.due } else { None }
    }

    /// A catch-up ended with `failed` reads failed: it runs again at the
    /// next check, at most [`MAX_RETRIES`] times in a row.
    pub(crate) fn caught_up(&mut self, failed: usize) {
        if failed > 0 && self.retries < MAX_RETRIES {
            self.retries += 1;
        } else {
            self.due = None;
            self.retries = 0;
        }
    }
}

/// Watches the engine every `every`; after each event of the module docs,
/// catches up every served alias stream. Ends with the engine.
pub(super) async fn watch(engine: Weak<JetStreamEngine>, every: Duration) {
    let (mut advisories, mut triggers) = match engine.upgrade() {
        Some(engine) => (
            // Without the subscription the other triggers still work.
            engine.cluster.client().subscribe(LEADER_ELECTED).await.ok(),
            Triggers::new(engine.cluster.connects()),
        ),
        None => return,
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            advisory = next_advisory(&mut advisories) => {
                match advisory {
                    Some(()) => triggers.leader_elected(),
                    None => advisories = None,
                }
                continue;
            }
        }
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let ready = matches!(engine.cluster.health(), Health::Ready);
        if let Some(why) = triggers.check(ready, engine.cluster.connects()) {
            let (streams, caught_up, failed) = engine.resync().await;
            tracing::info!(why, streams, caught_up, failed, "live routes caught up");
            triggers.caught_up(failed);
        }
    }
}

/// The next advisory; pending forever without a subscription, `None` when
/// it ended.
async fn next_advisory(advisories: &mut Option<async_nats::Subscriber>) -> Option<()> {
    match advisories {
        Some(subscriber) => subscriber.next().await.map(drop),
        None => std::future::pending().await,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl JetStreamEngine {
    /// Hands the newest message of every served alias stream to the node.
    /// Returns (streams looked at, messages handed over, reads failed).
    pub(crate) async fn resync(self: &Arc<Self>) -> (usize, usize, usize) {
        let streams = self.routes.streams();
        let looked_at = streams.len();
        let (handed, failed) = futures_util::stream::iter(streams)
            .map(|stream| self.catch_up(stream))
            .buffer_unordered(RESYNC_CONCURRENCY)
            .fold((0, 0), |(handed, failed), outcome| async move {
                match outcome {
                    Some(true) => (handed + 1, failed),
                    Some(false) => (handed, failed),
                    None => (handed, failed + 1),
                }
            })
            .await;
        (looked_at, handed, failed)
    }

    /// Hands the newest unexpired message of `stream` to the node:
    /// `Some(true)` when there was one, `Some(false)` when there is none,
    /// `None` when the read failed (the catch-up runs again).
    async fn catch_up(&self, stream: api::StreamKey) -> Option<bool> {
        let Ok(cluster_key) = key(&stream) else {
            return Some(false);
        };
        match self.cluster.last(&cluster_key).await {
            Ok(Some(message)) if !message.expired(now_ms()) => {
                let message: Arc<StoredMessage> = Arc::new(stored_message(message));
                self.node.stored(&stream, message);
                Some(true)
            }
            Ok(_) => Some(false),
            Err(e) => {
                tracing::debug!(alias = %stream.alias, error = %e, "catch-up read failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_too_short_for_the_health_to_show_still_catches_up() {
        let mut t = Triggers::new(1);
        assert_eq!(t.check(true, 1), None, "nothing happened");
        // Ready at both checks, but the node reconnected in between.
        assert_eq!(t.check(true, 2), Some("reconnected to NATS"));
        t.caught_up(0);
        assert_eq!(t.check(true, 2), None, "once per event");
    }

    #[test]
    fn health_back_and_leader_elections_catch_up_once_the_node_is_ready() {
        let mut t = Triggers::new(0);
        assert_eq!(t.check(false, 0), None);
        t.leader_elected();
        assert_eq!(t.check(false, 0), None, "not while unavailable");
        assert_eq!(t.check(true, 0), Some("new downlink stream leader"));
        t.caught_up(0);
        assert_eq!(t.check(true, 0), None);
        assert_eq!(t.check(false, 0), None);
        assert_eq!(t.check(true, 0), Some("NATS is back"));
        t.caught_up(0);
        t.leader_elected();
        assert_eq!(t.check(true, 0), Some("new downlink stream leader"));
    }

    #[test]
    fn failed_reads_retry_a_bounded_number_of_times() {
        let mut t = Triggers::new(0);
        t.leader_elected();
        for _ in 0..MAX_RETRIES {
            assert!(t.check(true, 0).is_some());
            t.caught_up(3);
        }
        assert!(t.check(true, 0).is_some(), "the last retry");
        t.caught_up(3);
        assert_eq!(
            t.check(true, 0),
            None,
            "gave up after {MAX_RETRIES} retries"
        );
    }
}

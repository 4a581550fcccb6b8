//! The node's MQTT session table: per (app, client id), the subscriptions
//! (the downlink topic and the tag topics) and the highest seq ever sent
//! (for DUP), kept while the connection lives
//! and, for a persistent session, until it expires. Reliable messages are
//! not kept here: they are in the gateway's store with the device's
//! position, and tag bindings are in the gateway's store with the alias
//! (a session only remembers which tags it subscribed).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a session remembers.
#[derive(Clone, Debug, Default)]
pub(crate) struct SessionState {
    /// The granted QoS of the downlink subscription, if subscribed.
    pub(crate) sub_qos: Option<u8>,
    /// The tag subscriptions (tag → granted QoS), at most
    /// [`MAX_TAG_SUBSCRIPTIONS`](super::topics::MAX_TAG_SUBSCRIPTIONS):
    /// checked before an entry is added.
    pub(crate) tags: BTreeMap<String, u8>,
    /// The highest reliable seq ever sent to the device in this session.
    pub(crate) last_sent_seq: u64,
}

impl SessionState {
    /// The QoS the login's messages are published with: the highest
    /// granted over the downlink and tag subscriptions (MQTT's rule for
    /// overlapping subscriptions: the gateway cannot tell which of them a
    /// message came through, so each message is sent once, on the downlink
    /// topic); `None` without any subscription.
    pub(crate) fn delivery_qos(&self) -> Option<u8> {
        self.sub_qos
            .into_iter()
            .chain(self.tags.values().copied())
            .max()
    }
}

/// A session shared by the table and its live connection.
pub(crate) type SharedState = Arc<Mutex<SessionState>>;

struct Entry {
    state: SharedState,
    /// The live connection: its id and what ends it on a takeover.
    live: Option<(u64, CancellationToken)>,
    /// When a session without a connection is forgotten.
    expires_at: Option<Instant>,
}

/// The table is full.
#[derive(Debug)]
pub(crate) struct TableFull;

/// Sessions of one node, at most `max` entries.
pub(crate) struct SessionTable {
    entries: Mutex<HashMap<(String, String), Entry>>,
    max: usize,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl SessionTable {
    /// A table of at most `max` sessions.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Attaches connection `conn` (ended through `cancel` on a takeover) to
    /// the session `key`: a clean one starts afresh, otherwise a kept
    /// session resumes. Returns the state and whether a session was present.
    pub(crate) fn open(
        &self,
        key: (String, String),
        clean: bool,
        conn: u64,
        cancel: CancellationToken,
    ) -> Result<(SharedState, bool), TableFull> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !entries.contains_key(&key) && entries.len() >= self.max {
            entries.retain(|_, e| e.live.is_some() || e.expires_at.is_some_and(|t| t > now));
            if entries.len() >= self.max {
                return Err(TableFull);
            }
        }
        let entry = entries.entry(key).or_insert_with(|| Entry {
            state: SharedState::default(),
            live: None,
            expires_at: Some(now),
        });
        if let Some((_, old)) = entry.live.take() {
            old.cancel();
        }
        let expired = entry.expires_at.is_some_and(|t| t <= now);
        let present = !clean && !expired;
        if !present {
            entry.state = SharedState::default();
        }
        entry.live = Some((conn, cancel));
        entry.expires_at = None;
        Ok((entry.state.clone(), present))
    }

    /// Detaches connection `conn`: the session is kept for `keep` (a
    /// persistent session), or forgotten. A session taken over by a newer
    /// connection is left alone.
    pub(crate) fn close(&self, key: &(String, String), conn: u64, keep: Option<Duration>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = entries.get_mut(key) else {
            return;
        };
        if entry.live.as_ref().map(|(id, _)| *id) != Some(conn) {
            return;
        }
        match keep {
            Some(keep) if !keep.is_zero() => {
                entry.live = None;
                entry.expires_at = Some(Instant::now() + keep);
            }
            _ => {
                entries.remove(key);
            }
        }
    }

    /// Sessions in the table (live and kept).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> (String, String) {
        ("demo".into(), id.into())
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_resume_expire_and_are_taken_over() {
        let table = SessionTable::new(2);
        let first = CancellationToken::new();
        let (state, present) = table.open(key("a"), false, 1, first.clone()).unwrap();
        assert!(!present, "a new session is not present");
        state.lock().unwrap().tags.insert("vip".into(), 1);

        // A takeover cancels the older connection and resumes the state.
        let (state, present) = table
            .open(key("a"), false, 2, CancellationToken::new())
            .unwrap();
        assert!(first.is_cancelled());
        assert!(present);
        assert_eq!(state.lock().unwrap().tags.get("vip"), Some(&1));
        assert_eq!(state.lock().unwrap().delivery_qos(), Some(1));
        // The older connection's close does not touch the newer one's.
        table.close(&key("a"), 1, None);
        assert_eq!(table.len(), 1);

        table.close(&key("a"), 2, Some(Duration::from_secs(60)));
        let (_, present) = table
            .open(key("a"), false, 3, CancellationToken::new())
            .unwrap();
        assert!(present, "kept for 60 s");
        table.close(&key("a"), 3, Some(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(61)).await;
        let (state, present) = table
            .open(key("a"), false, 4, CancellationToken::new())
            .unwrap();
        assert!(!present, "expired");
        assert_eq!(state.lock().unwrap().sub_qos, None);
        assert_eq!(state.lock().unwrap().delivery_qos(), None);

        // Clean sessions start afresh; the table is bounded.
        let (_, present) = table
            .open(key("a"), true, 5, CancellationToken::new())
            .unwrap();
        assert!(!present);
        table
            .open(key("b"), true, 6, CancellationToken::new())
            .unwrap();
        assert!(
            table
                .open(key("c"), true, 7, CancellationToken::new())
                .is_err()
        );
        table.close(&key("b"), 6, None);
        assert!(
            table
                .open(key("c"), true, 7, CancellationToken::new())
                .is_ok()
        );
    }
}

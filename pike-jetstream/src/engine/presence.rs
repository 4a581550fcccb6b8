//! [`Presence`] on the cluster: a claim per login in `PIKE_PRESENCE`, the
//! replace orders on `ctl.<node>`, the node's claims kept alive before their
//! TTL runs out, and the cluster-wide views by scatter-gather.
//!
//! A claim never blocks a login: it runs in a task of its own, bounded by
//! `append_timeout`. When it fails (NATS unreachable) the login stands and
//! the claim is retried every [`RETRY_EVERY`]; a retry or a renewal never
//! takes the login from a newer connection (a larger `since_ms`), and a
//! renewal that finds a newer holder closes this node's connection
//! (`REPLACED`), so a lost replace order (core NATS, at most once) is made
//! good by the next renewal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use pike_api::server::BoxFuture;
use pike_api::server::engine::{
    Claim, ClusterView, EngineError, EngineHealth, LoginId, Presence, ViewAnswer, ViewQuery,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::views::{decode_answer, decode_query, decode_replace, encode_answer, encode_query};
use super::{JetStreamEngine, engine_error};
use crate::health::Health;
use crate::keys::LoginKey;
use crate::presence::{ClaimOutcome, Holder};

/// How long a cluster-wide view waits for the nodes' answers at most.
pub const VIEW_WINDOW: Duration = Duration::from_millis(500);
/// How often claims that failed are retried (and renewals looked for).
pub const RETRY_EVERY: Duration = Duration::from_secs(5);
/// Most claims retried or renewed in one round (the rest wait for the
/// next): bounds a round's time while NATS is slow.
pub const MAX_RENEWALS_PER_ROUND: usize = 2048;
/// Pause before subscribing again after the control or question
/// subscription could not be made.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(500);

/// This node's claims: one per granted login that is not send-only, so
/// bounded by the gateway's connections × logins per connection.
#[derive(Debug, Default)]
pub(super) struct Claims {
    map: Mutex<HashMap<(LoginId, String), ClaimState>>,
}

#[derive(Clone, Copy, Debug)]
struct ClaimState {
    since_ms: u64,
    /// When the claim was last written (`None`: not yet, or it failed).
    written: Option<Instant>,
    /// The connection's logins of this (biz, alias): a connection may log
    /// in twice as one alias, and the claim stays until the last logs out.
    logins: u32,
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(LoginId, String), ClaimState>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The claims due for a retry (never written) or a renewal (written
    /// more than `renew_after` ago), at most [`MAX_RENEWALS_PER_ROUND`].
    fn due(&self, renew_after: Duration) -> Vec<(LoginId, String, u64)> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, s)| s.written.is_none_or(|at| now - at >= renew_after))
            .take(MAX_RENEWALS_PER_ROUND)
            .map(|((login, token), s)| (login.clone(), token.clone(), s.since_ms))
            .collect()
    }

    /// Notes a write; `false` when the claim was released meanwhile.
    fn written(&self, login: &LoginId, token: &str) -> bool {
        match self.lock().get_mut(&(login.clone(), token.to_owned())) {
            Some(state) => {
                state.written = Some(Instant::now());
                true
            }
            None => false,
        }
    }
}

impl JetStreamEngine {
    fn holder(&self, token: &str, since_ms: u64) -> Holder {
        Holder {
            node: self.cluster.node().to_owned(),
            boot: self.boot,
            token: token.to_owned(),
            since_ms,
        }
    }

    /// Tells the node of `previous` to close it (this node: at once).
    async fn replace_holder(&self, login: &LoginId, previous: Holder) {
        if previous.node == self.cluster.node() && previous.boot == self.boot {
            // The registry replaced it as the login was granted; again in
            // case the claims raced.
            self.node.replace(login, &previous.token);
            return;
        }
        let order = super::views::encode_replace(login, &previous.token);
        if let Err(e) = self.cluster.send_control(&previous.node, order).await {
            tracing::warn!(node = %previous.node, error = %e, "takeover: replace order not sent; the holder's renewal will close it");
        }
    }

    /// Claims `login` for connection `token`: the newest claim wins.
    async fn claim_now(&self, login: LoginId, token: String, since_ms: u64) {
        let Ok(key) = login_key(&login) else { return };
        match self
            .cluster
            .claim(&key, &self.holder(&token, since_ms))
            .await
        {
            Ok(previous) => {
                if !self.claims.written(&login, &token) {
                    self.release_now(&login, &token).await;
                }
                if let Some(previous) = previous {
                    self.replace_holder(&login, previous).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "presence claim failed; retried in the background, the login stands")
            }
        }
    }

    /// A retry or renewal: keeps the claim unless a newer connection holds
    /// the login, in which case this node's connection is replaced.
    async fn renew(&self, login: LoginId, token: String, since_ms: u64) {
        let Ok(key) = login_key(&login) else { return };
        let holder = self.holder(&token, since_ms);
        match self.cluster.claim_unless_newer(&key, &holder).await {
            Ok(ClaimOutcome::Held(previous)) => {
                if !self.claims.written(&login, &token) {
                    self.release_now(&login, &token).await;
                }
                if let Some(previous) = previous {
                    self.replace_holder(&login, previous).await;
                }
            }
            Ok(ClaimOutcome::Lost(newer)) => {
                tracing::info!(node = %newer.node, "presence: a newer connection holds the login; closing ours");
                self.claims.lock().remove(&(login.clone(), token.clone()));
                self.node.replace(&login, &token);
            }
            Err(e) => tracing::debug!(error = %e, "presence renewal failed; retried next round"),
        }
    }

    async fn release_now(&self, login: &LoginId, token: &str) {
        let Ok(key) = login_key(login) else { return };
        if let Err(e) = self.cluster.release(&key, &self.holder(token, 0)).await {
            tracing::debug!(error = %e, "presence release failed; the claim expires by its TTL");
        }
    }

    /// How long a written claim lives before it is renewed: a third of the
    /// TTL, so that two renewals can fail before it expires.
    fn renew_after(&self) -> Duration {
        (self.cluster.config().presence_ttl / 3).max(Duration::from_secs(1))
    }

    /// Starts the node's presence tasks (they end with the engine): the
    /// control subscription, the question subscription, and the retry and
    /// renewal rounds.
    pub(super) fn spawn_presence(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(control_task(weak.clone(), self.alive.subscribe()));
        tokio::spawn(question_task(weak.clone(), self.alive.subscribe()));
        let every = RETRY_EVERY.min(self.renew_after());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(engine) = weak.upgrade() else { return };
                for (login, token, since_ms) in engine.claims.due(engine.renew_after()) {
                    engine.renew(login, token, since_ms).await;
                }
            }
        });
    }
}

fn login_key(login: &LoginId) -> Result<LoginKey, EngineError> {
    LoginKey::new(
        &login.stream.app,
        &login.stream.biz,
        &login.stream.alias,
        &login.device,
    )
    .map_err(engine_error)
}

/// Makes a subscription with `subscribe`, again every [`RESUBSCRIBE_PAUSE`]
/// after a failure; `None` once the engine is dropped (`alive` closes).
async fn subscribed<S, F, Fut>(
    alive: &mut watch::Receiver<()>,
    what: &str,
    mut subscribe: F,
) -> Option<S>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::error::Result<S>>,
{
    loop {
        match subscribe().await {
            Ok(subscription) => return Some(subscription),
            Err(e) => tracing::debug!(error = %e, "{what} subscription failed; retrying"),
        }
        tokio::select! {
            _ = alive.changed() => return None,
            () = tokio::time::sleep(RESUBSCRIBE_PAUSE) => {}
        }
    }
}

/// The next item of `stream`; `None` when it ends or the engine is dropped.
async fn next_alive<S: Stream + Unpin>(
    alive: &mut watch::Receiver<()>,
    stream: &mut S,
) -> Option<S::Item> {
    tokio::select! {
        _ = alive.changed() => None,
        item = stream.next() => item,
    }
}

/// Subscribes to `ctl.<node>` and applies the replace orders, until the
/// engine is dropped.
async fn control_task(weak: Weak<JetStreamEngine>, mut alive: watch::Receiver<()>) {
    let Some((cluster, node)) = weak.upgrade().map(|e| (e.cluster.clone(), e.node.clone())) else {
        return;
    };
    drop(weak);
    let Some(mut orders) = subscribed(&mut alive, "control", || cluster.control()).await else {
        return;
    };
    while let Some(order) = next_alive(&mut alive, &mut orders).await {
        if let Some((login, token)) = decode_replace(&order) {
            node.replace(&login, &token);
        }
    }
}

/// Subscribes to the cluster's questions (and makes the node's answer
/// subscription) and answers each from the node's registry, until the
/// engine is dropped.
async fn question_task(weak: Weak<JetStreamEngine>, mut alive: watch::Receiver<()>) {
    let Some((cluster, node)) = weak.upgrade().map(|e| (e.cluster.clone(), e.node.clone())) else {
        return;
    };
    drop(weak);
    let questions = subscribed(&mut alive, "question", || async {
        cluster.prepare_scatter().await?;
        cluster.questions().await
    });
    let Some(mut questions) = questions.await else {
        return;
    };
    while let Some(question) = next_alive(&mut alive, &mut questions).await {
        let (Some(query), Some(reply)) = (decode_query(&question.payload), question.reply) else {
            continue;
        };
        let answer = encode_answer(&node.query(&query));
        if let Err(e) = cluster.answer(reply, answer).await {
            tracing::debug!(error = %e, "answer not sent");
        }
    }
}

impl Presence for JetStreamEngine {
    fn claim(&self, claim: Claim) {
        let Claim {
            login,
            token,
            since_ms,
        } = claim;
        {
            let mut claims = self.claims.lock();
            let state = claims
                .entry((login.clone(), token.clone()))
                .or_insert(ClaimState {
                    since_ms,
                    written: None,
                    logins: 0,
                });
            state.logins += 1;
            if state.logins > 1 {
                // Held (or being claimed) for the connection already.
                return;
            }
        }
        let Some(engine) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move { engine.claim_now(login, token, since_ms).await });
    }

    fn release(&self, login: LoginId, token: String) {
        {
            let mut claims = self.claims.lock();
            let key = (login.clone(), token.clone());
            let Some(state) = claims.get_mut(&key) else {
                return;
            };
            state.logins = state.logins.saturating_sub(1);
            if state.logins > 0 {
                return;
            }
            claims.remove(&key);
        }
        let Some(engine) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move { engine.release_now(&login, &token).await });
    }

    fn gather(
        &self,
        query: ViewQuery,
    ) -> BoxFuture<'_, Result<ClusterView<Vec<ViewAnswer>>, EngineError>> {
        Box::pin(async move {
            let gathered = self
                .cluster
                .scatter(encode_query(&query), VIEW_WINDOW)
                .await
                .map_err(engine_error)?;
            let answered = gathered.answers.len();
            let answers = gathered
                .answers
                .iter()
                .filter_map(|a| decode_answer(a))
                .collect();
            Ok(ClusterView {
                value: answers,
                nodes_answered: answered,
                nodes_expected: gathered.expected,
            })
        })
    }

    fn health(&self) -> EngineHealth {
        match self.cluster.health() {
            Health::Ready => EngineHealth::Ready,
            Health::Unavailable(why) => EngineHealth::Unavailable(why),
        }
    }
}

//! Logins: authentication, the store's login snapshot, the route, and the
//! stream state a granted login starts with; logout and expiry.

use pike_channel::StreamId;
use proto::tunnel::ErrorCode;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::interests::{self, Interests};
use super::{Conn, LoginReady, StreamState, Work, now};
use crate::server::auth::{AuthError, LoginRequest};
use crate::server::clock::unix_ms;
use crate::server::engine::{Claim, EngineError, LoginId, replaced_command};
use crate::server::login_expiry;
use crate::server::registry::{CommandSender, LoginInfo};
use crate::server::store::StreamKey;
use crate::server::trace::{self, GrantedLogin, LoginNames};

impl Conn {
    pub(super) fn login(
        &mut self,
        stream: StreamId,
        biz: String,
        alias: String,
        credential: String,
        (saved_route, last_acked, send_only): (String, u64, bool),
    ) {
        // Traced once the authenticator has answered: an unauthenticated
        // biz and alias are the client's word only.
        metrics::counter!(crate::server::metric_families::LOGIN_REQUESTS_TOTAL).increment(1);
        let hub = self.hub.clone();
        let request = LoginRequest {
            app: self.app().to_owned(),
            device_id: self.device_id().to_owned(),
            connection_token: self.token.to_string(),
            biz: biz.clone(),
            alias: alias.clone(),
            credential,
        };
        self.start(Box::pin(async move {
            let result = async {
                let auth = hub.auth.clone();
                let grant = auth.oneshot(request.clone()).await?;
                let key = StreamKey::new(&request.app, &request.biz, &request.alias);
                // Live traffic first, then the read: a message stored in
                // between arrives both ways, and the sequence numbers drop
                // the copy; the other order could miss it.
                // A send-only login is no recipient: nothing to route to it.
                let interests = if send_only {
                    None
                } else {
                    let device = grant.device_verified.then_some(request.device_id.as_str());
                    Some(
                        Interests::subscribe(&hub, &key, device)
                            .await
                            .map_err(internal)?,
                    )
                };
                let start = hub
                    .engine
                    .inbox
                    .login(
                        key,
                        request.device_id.clone(),
                        last_acked,
                        hub.config.read_batch,
                        unix_ms(),
                    )
                    .await
                    .map_err(internal)?;
                let route_id = hub
                    .uplink
                    .route(&request.app, &request.biz, &saved_route, None)
                    .unwrap_or_default();
                Ok(Box::new(LoginReady {
                    route_id,
                    start_after: start.start_after,
                    saved: start.position.unwrap_or_default(),
                    batch: start.batch,
                    grant,
                    interests,
                    send_only,
                }))
            }
            .await;
            Work::Login {
                stream,
                biz,
                alias,
                result,
            }
        }));
    }

    /// Gives back the engine subscriptions and the presence claim of a
    /// login that ends.
    pub(super) fn release(&self, state: &StreamState) {
        if state.send_only {
            return;
        }
        let device = state.device_verified.then(|| self.device_id());
        interests::release(&self.hub, &state.key, device);
        if self.hub.config.takeover {
            self.hub
                .engine
                .presence
                .release(self.login_id(&state.key), self.token.to_string());
        }
    }

    /// A granted login replaces the node's older connections of the same
    /// device and login (`replaced`, from the registry) and claims the
    /// login in the engine, which replaces those of other nodes.
    fn take_over(&self, biz: &str, alias: &str, replaced: Vec<CommandSender>) {
        if !self.hub.config.takeover {
            return;
        }
        let closed = replaced
            .into_iter()
            .filter(|sender| sender.try_send(replaced_command(biz, alias)).is_ok())
            .count();
        if closed > 0 {
            metrics::counter!(crate::server::metric_families::REPLACED_TOTAL)
                .increment(closed as u64);
            self.record(
                "takeover",
                format!("biz={biz} alias={alias} replaced {closed} older connection(s) here"),
            );
        }
        let key = StreamKey::new(self.app(), biz, alias);
        self.hub.engine.presence.claim(Claim {
            login: self.login_id(&key),
            token: self.token.to_string(),
            since_ms: unix_ms(),
        });
    }

    fn login_id(&self, key: &StreamKey) -> LoginId {
        LoginId {
            stream: key.clone(),
            device: self.device_id().to_owned(),
        }
    }

    /// Gives back the subscriptions of every login (the connection ends).
    pub(super) fn release_all(&mut self) {
        for (_, state) in self.streams.iter() {
            self.release(state);
        }
        self.streams = Default::default();
    }

    /// Frees what a login held (logout or expiry).
    pub(super) fn end_login(&mut self, stream: StreamId) {
        if let Some(state) = self.streams.remove(&stream) {
            self.release(&state);
        }
        self.hub.registry.remove_login(self.id, stream);
        if let Some(rooms) = &mut self.rooms {
            rooms.logged_out(stream, Instant::now());
        }
        self.drop_rooms_if_empty();
    }

    pub(super) fn login_granted(
        &mut self,
        stream: StreamId,
        biz: String,
        alias: String,
        ready: LoginReady,
    ) {
        let expiry = login_expiry::expiry(&ready.grant);
        if self
            .channel
            .accept_login_until(
                stream,
                ready.route_id.clone(),
                ready.batch.last_seq,
                expiry,
                now(),
            )
            .is_err()
        {
            // `ready.interests` gives its subscriptions back.
            return;
        }
        metrics::counter!(crate::server::metric_families::LOGINS_TOTAL, "result" => "ok")
            .increment(1);
        self.settle_buffers = true;
        if !self.ready_reported {
            self.ready_reported = true;
            metrics::histogram!(crate::server::metric_families::CHANNEL_READY_SECONDS)
                .record(self.connected_at.elapsed().as_secs_f64());
        }
        trace::lock(&self.trace).login_granted(
            unix_ms(),
            GrantedLogin {
                stream: stream.value(),
                resume_after: ready.start_after.seq,
                last_seq: ready.batch.last_seq,
                expires_at_ms: ready.grant.expires_at_ms,
                device_verified: ready.grant.device_verified,
                send_only: ready.send_only,
                names: LoginNames::new(&biz, &alias, &ready.route_id),
            },
        );
        // A send-only login is no recipient: not registered for pushes,
        // and its backlog is not read (`docs/protocol.md`, `send_only`).
        if !ready.send_only {
            let takeover = self.hub.config.takeover;
            let replaced = self.hub.registry.add_login(
                self.id,
                LoginInfo {
                    stream,
                    biz: biz.as_str().into(),
                    alias: alias.as_str().into(),
                    route_id: ready.route_id.as_str().into(),
                    since_ms: unix_ms(),
                    device_verified: ready.grant.device_verified,
                },
                takeover,
            );
            self.take_over(&biz, &alias, replaced);
        }
        let key = StreamKey::new(self.app(), biz, alias);
        if !ready.send_only
            && let Some(hook) = self.hub.receipts_for(&key)
        {
            // The client's own position counts as its ack (it may be ahead
            // of the stored one: an ack lost with the last connection).
            hook.login(&key, self.device_id(), ready.start_after.seq);
        }
        self.streams.insert(
            stream,
            StreamState {
                key,
                next_seq: ready.start_after.seq + 1,
                read_cursor: ready.start_after.cursor,
                acked: ready.saved,
                last_known: ready.batch.last_seq,
                reading: true,
                unconfirmed_reads: 0,
                sent_at: None,
                route_id: ready.route_id.into_boxed_str(),
                uplink: None,
                device_verified: ready.grant.device_verified,
                send_only: ready.send_only,
            },
        );
        if let Some(interests) = ready.interests {
            interests.keep();
        }
        if ready.send_only {
            return;
        }
        self.read_done(stream, Ok(ready.batch));
        // The login's read happened before it was registered for
        // notifications: read once more so that a message stored in between
        // is not left waiting for the next push.
        self.catch_up(stream);
    }
}

/// A login the engine could not serve: `OVERLOADED` (retry later) when the
/// shared state is unreachable, `INTERNAL` otherwise.
pub(super) fn internal(e: EngineError) -> AuthError {
    let code = match e {
        EngineError::Unavailable(_) => ErrorCode::Overloaded,
        EngineError::Failed(_) => ErrorCode::Internal,
    };
    AuthError::new(code, e.to_string())
}

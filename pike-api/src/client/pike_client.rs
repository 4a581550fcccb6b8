//! [`PikeClient`]: one business's view of Pike, with the seed's lifecycle.
//!
//! Each client runs a small task (its "actor") that owns the business's
//! bindings to channels (a login on a [`ClientHandle`] and its event
//! subscription), turns channel events into [`ClientEvent`]s, resolves send
//! futures, and carries out channel switches: it is the only place where a
//! business's state lives, so switches and restarts need no locking.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, SelectAll};
use futures_util::{Stream, StreamExt};
use pike_channel::{ClientHandle, Event, LoginParams, SendError, SendId, StreamId};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::channels::{Channels, Mode, ModeListener};
use super::error::{Error, ErrorKind};
use super::event::{ClientEvent, ClientState, Message, StopReason};

mod credential;
mod events;
mod options;
mod room;

pub use self::credential::{CREDENTIAL_PROVIDER_TIMEOUT, CredentialProvider, CredentialRequest};
pub use self::options::{ClientOptions, SendReceipt, Sending, Session};
pub use self::room::RoomPosition;

pub(crate) enum Command {
    Start,
    Stop,
    Restart,
    /// The proxy changed the business's mode.
    Switch,
    Send {
        id: u64,
        key: String,
        /// The key was generated here from the random prefix (see
        /// `ClientChannel::send_new_key`).
        new_key: bool,
        payload: Bytes,
        reply: oneshot::Sender<Result<SendReceipt, Error>>,
    },
    SetCredential(String),
    UpdateTags {
        bind: Vec<String>,
        unbind: Vec<String>,
        reply: oneshot::Sender<Result<Vec<String>, Error>>,
    },
    JoinRoom {
        room: String,
        from: Option<u64>,
        reply: room::JoinReply,
    },
    LeaveRoom(String),
}

/// The proxy tells a client about its business's mode changes through a
/// weak sender: a dropped client is forgotten.
impl ModeListener for mpsc::WeakUnboundedSender<Command> {
    fn is_alive(&self) -> bool {
        self.strong_count() > 0
    }

    fn mode_changed(&self) {
        if let Some(tx) = self.upgrade() {
            let _ = tx.send(Command::Switch);
        }
    }
}

/// One business's client (seed 5.1), created by
/// [`ChannelProxy::client`](super::ChannelProxy::client).
///
/// Lifecycle: [`start`](Self::start) → `OnStart` → (auth ok) `Running` |
/// (auth failed) `OnStop`; `Running` → `OnReceive` → `Running`;
/// [`send`](Self::send) → `OnSendSuccess` | `OnSendFailure`;
/// [`stop`](Self::stop) → `OnStop`; [`restart`](Self::restart) → `OnStart`
/// again. Everything is reported in order by [`next_event`](Self::next_event)
/// / [`events`](Self::events), connectivity separately from the lifecycle.
///
/// The events must be consumed: they queue up to the proxy's
/// `event_capacity`, then the client stops taking events from its channel
/// (backpressure, nothing is lost), and send futures wait too.
///
/// Dropping the client logs the business out.
pub struct PikeClient {
    biz: String,
    alias: String,
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ClientState>,
    events: tokio::sync::Mutex<mpsc::Receiver<ClientEvent>>,
    session: Arc<Mutex<Session>>,
    key_prefix: u64,
    next_id: AtomicU64,
    proxy: Arc<Channels>,
}

impl PikeClient {
    pub(crate) fn spawn(
        proxy: Arc<Channels>,
        options: ClientOptions,
    ) -> (Self, Box<dyn ModeListener>) {
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (app, events) = mpsc::channel(proxy.event_capacity());
        let (state_tx, state) = watch::channel(ClientState::Idle);
        let session = Arc::new(Mutex::new(Session {
            route_id: options.route_id.clone(),
            last_delivered: options.last_delivered,
            epoch: options.epoch,
        }));
        let span = tracing::debug_span!("pike_client", biz = %options.biz, alias = %options.alias);
        let client = Self {
            biz: options.biz.clone(),
            alias: options.alias.clone(),
            commands: commands_tx.clone(),
            state,
            events: tokio::sync::Mutex::new(events),
            session: Arc::clone(&session),
            key_prefix: fastrand::u64(..),
            next_id: AtomicU64::new(1),
            proxy: Arc::clone(&proxy),
        };
        let actor = Actor {
            proxy,
            route_id: options.route_id.clone(),
            delivered: options.last_delivered,
            epoch: options.epoch,
            options,
            lifecycle: ClientState::Idle,
            state: state_tx,
            app,
            commands,
            bindings: BTreeMap::new(),
            receivers: SelectAll::new(),
            current: None,
            next_gen: 1,
            sends: BTreeMap::new(),
            session,
            restart_after_stop: false,
            tag_requests: BTreeMap::new(),
            rooms: BTreeMap::new(),
            fresh: None,
        };
        tokio::spawn(actor.run().instrument(span));
        (client, Box::new(commands_tx.downgrade()))
    }

    fn command(&self, command: Command) {
        // The actor ends only after this client is dropped.
        let _ = self.commands.send(command);
    }

    /// Starts the client: `OnStart`, then the business login (on the channel
    /// of the business's mode), then `Running` or `OnStop`. No-op while
    /// started.
    pub fn start(&self) {
        self.command(Command::Start);
    }

    /// Stops the client: the business logs out, pending sends fail, then
    /// `OnStop`. Downlink position and route id are kept for a restart.
    pub fn stop(&self) {
        self.command(Command::Stop);
    }

    /// Restarts the client: `OnStart` again, a fresh login (e.g. with a new
    /// credential), then `Running` or `OnStop`. While running, pending sends
    /// and the downlink position carry over without loss or duplicates;
    /// after a stop it is a start.
    pub fn restart(&self) {
        self.command(Command::Restart);
    }

    /// Replaces the credential: it is used by the next login (restart,
    /// reconnect), and refreshes at once a running login whose credential
    /// expires (see [`ClientEvent::CredentialExpiring`]).
    pub fn set_credential(&self, credential: impl Into<String>) {
        self.command(Command::SetCredential(credential.into()));
    }

    /// Sends an uplink message with a generated idempotency key.
    pub fn send(&self, payload: impl Into<Bytes>) -> Sending {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = format!("{:016x}-{id}", self.key_prefix);
        self.send_keyed(id, key, true, payload.into())
    }

    /// Sends an uplink message with the caller's idempotency key (the
    /// gateway delivers each key to the backend once).
    pub fn send_with_key(&self, payload: impl Into<Bytes>, key: impl Into<String>) -> Sending {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send_keyed(id, key.into(), false, payload.into())
    }

    fn send_keyed(&self, id: u64, key: String, new_key: bool, payload: Bytes) -> Sending {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Send {
            id,
            key: key.clone(),
            new_key,
            payload,
            reply,
        });
        Sending { id, key, rx }
    }

    /// Binds `bind` and unbinds `unbind` for this business's alias
    /// (pushes to a tag reach every alias bound to it); resolves to every tag
    /// bound after the change. Needs a running client; tags are kept by the
    /// gateway across reconnects and channel switches.
    pub async fn update_tags(
        &self,
        bind: Vec<String>,
        unbind: Vec<String>,
    ) -> Result<Vec<String>, Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::UpdateTags {
            bind,
            unbind,
            reply,
        });
        rx.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::ChannelClosed,
                "the client's task is gone",
            ))
        })
    }

    /// The lifecycle state (as of the last lifecycle event reported).
    pub fn state(&self) -> ClientState {
        *self.state.borrow()
    }

    /// The next event; `None` only if the client's task is gone.
    pub async fn next_event(&self) -> Option<ClientEvent> {
        self.events.lock().await.recv().await
    }

    /// The events as a stream (shares the queue with
    /// [`next_event`](Self::next_event)).
    pub fn events(&self) -> impl Stream<Item = ClientEvent> + Send + '_ {
        stream::unfold(self, |client| async move {
            client.next_event().await.map(|event| (event, client))
        })
    }

    /// The next downlink message, skipping (and discarding) other events.
    pub async fn next_message(&self) -> Option<Message> {
        loop {
            if let ClientEvent::OnReceive(message) = self.next_event().await? {
                return Some(message);
            }
        }
    }

    /// The downlink messages as a stream; other events are discarded (use
    /// [`events`](Self::events) to see everything).
    pub fn messages(&self) -> impl Stream<Item = Message> + Send + '_ {
        stream::unfold(self, |client| async move {
            client.next_message().await.map(|message| (message, client))
        })
    }

    /// What to save to resume this business in a later process.
    pub fn session(&self) -> Session {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The business id.
    pub fn biz(&self) -> &str {
        &self.biz
    }

    /// The alias.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The business's channel mode.
    pub fn mode(&self) -> Mode {
        self.proxy.mode(&self.biz)
    }
}

impl fmt::Debug for PikeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PikeClient")
            .field("biz", &self.biz)
            .field("alias", &self.alias)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// A login of the business on one channel.
struct Binding {
    channel: ClientHandle,
    stream: StreamId,
    /// The login was accepted at least once.
    active: bool,
    /// Logged out (superseded or stopping); its events are drained.
    retiring: bool,
}

/// An uplink message without an outcome yet.
struct PendingSend {
    key: String,
    payload: Bytes,
    reply: Option<oneshot::Sender<Result<SendReceipt, Error>>>,
    /// Where it was queued: (binding, send id), oldest first.
    placed: Vec<(u64, SendId)>,
}

type Tagged = BoxStream<'static, (u64, Option<Event>)>;

/// Where the result of a tag change goes.
type TagsReply = oneshot::Sender<Result<Vec<String>, Error>>;

struct Actor {
    proxy: Arc<Channels>,
    options: ClientOptions,
    route_id: String,
    /// Highest reliable sequence delivered to the business.
    delivered: u64,
    /// The log epoch `delivered` belongs to (0: none known).
    epoch: u64,
    lifecycle: ClientState,
    state: watch::Sender<ClientState>,
    app: mpsc::Sender<ClientEvent>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Bindings by generation; the highest one is current unless stopping.
    bindings: BTreeMap<u64, Binding>,
    /// Every binding's events, tagged with its generation; `None` marks the
    /// end of a binding's subscription.
    receivers: SelectAll<Tagged>,
    current: Option<u64>,
    next_gen: u64,
    sends: BTreeMap<u64, PendingSend>,
    session: Arc<Mutex<Session>>,
    restart_after_stop: bool,
    /// Tag requests waiting for their result, by (generation, request id).
    tag_requests: BTreeMap<(u64, u32), TagsReply>,
    /// Live rooms joined, by name.
    rooms: BTreeMap<String, room::ClientRoom>,
    /// The credential provider's call in flight.
    fresh: Option<credential::Pending>,
}

impl Actor {
    async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                Some((generation, event)) = self.receivers.next(), if !self.receivers.is_empty() => {
                    match event {
                        Some(event) => self.on_event(generation, event).await,
                        None => self.on_binding_end(generation).await,
                    }
                }
                (expires_at_ms, fresh) = credential::next_fresh(&mut self.fresh), if self.fresh.is_some() => {
                    self.on_fresh_credential(expires_at_ms, fresh).await;
                }
            }
        }
        // The client was dropped: leave every channel.
        for binding in std::mem::take(&mut self.bindings).into_values() {
            let _ = binding.channel.logout(binding.stream);
            self.proxy.release(&binding.channel);
        }
    }

    async fn emit(&mut self, event: ClientEvent) {
        tracing::trace!(?event, "event");
        // If the client is gone, nobody listens: fine.
        let _ = self.app.send(event).await;
    }

    fn set_state(&mut self, state: ClientState) {
        self.lifecycle = state;
        self.state.send_replace(state);
    }

    fn save_session(&self) {
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        session.route_id.clone_from(&self.route_id);
        session.last_delivered = self.delivered;
        session.epoch = self.epoch;
    }

    fn is_started(&self) -> bool {
        matches!(self.lifecycle, ClientState::Starting | ClientState::Running)
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Start => {
                if self.is_started() {
                    return;
                }
                if self.is_stopping() {
                    self.restart_after_stop = true;
                    return;
                }
                self.start().await;
            }
            Command::Restart => {
                if self.is_stopping() {
                    self.restart_after_stop = true;
                } else if self.is_started() {
                    self.set_state(ClientState::Starting);
                    self.emit(ClientEvent::OnStart).await;
                    self.bind().await;
                } else {
                    self.start().await;
                }
            }
            Command::Stop => {
                self.restart_after_stop = false;
                if !self.is_started() {
                    return;
                }
                tracing::debug!("stopping");
                self.current = None;
                self.retire_all_but(None);
            }
            Command::Switch => {
                if !self.is_started() {
                    return;
                }
                let current = self.current.and_then(|g| self.bindings.get(&g));
                if current.is_some_and(|b| self.proxy.is_current(&self.options.biz, &b.channel)) {
                    return;
                }
                tracing::debug!("switching channel");
                self.bind().await;
            }
            Command::Send {
                id,
                key,
                new_key,
                payload,
                reply,
            } => self.send(id, key, new_key, payload, reply).await,
            Command::UpdateTags {
                bind,
                unbind,
                reply,
            } => {
                let binding = self
                    .current
                    .filter(|_| self.lifecycle == ClientState::Running)
                    .and_then(|g| self.bindings.get(&g).map(|b| (g, b)));
                let Some((generation, binding)) = binding else {
                    let _ = reply.send(Err(Error::new(
                        ErrorKind::NotStarted,
                        "tags need a running client",
                    )));
                    return;
                };
                match binding.channel.update_tags(binding.stream, bind, unbind) {
                    Ok(request_id) => {
                        self.tag_requests.insert((generation, request_id), reply);
                    }
                    Err(e) => {
                        let _ =
                            reply.send(Err(Error::new(ErrorKind::ChannelClosed, e.to_string())));
                    }
                }
            }
            Command::JoinRoom { room, from, reply } => self.join_room(room, from, reply),
            Command::LeaveRoom(room) => self.leave_room(&room),
            Command::SetCredential(credential) => self.use_credential(credential),
        }
    }

    /// Started, but the current login was logged out and its end not seen
    /// yet.
    fn is_stopping(&self) -> bool {
        self.is_started() && self.current.is_none()
    }

    async fn start(&mut self) {
        self.set_state(ClientState::Starting);
        self.emit(ClientEvent::OnStart).await;
        self.bind().await;
    }

    /// Logs in on the channel of the business's mode, resuming from the
    /// delivered position, and queues every unanswered send on it (same
    /// order, same keys). The previous bindings are retired once this login
    /// is accepted.
    async fn bind(&mut self) {
        let params = LoginParams::new(
            self.options.biz.clone(),
            self.options.alias.clone(),
            self.options.credential.clone(),
        )
        .resume(self.route_id.clone(), self.delivered)
        .in_epoch(self.epoch);
        let params = if self.options.send_only {
            params.send_only()
        } else {
            params
        };
        let (channel, stream, events) = self.proxy.login(&self.options.biz, params);
        let generation = self.next_gen;
        self.next_gen += 1;
        tracing::debug!(generation, %stream, from = self.delivered, "login");
        let tagged = events
            .map(move |event| (generation, Some(event)))
            .chain(stream::once(async move { (generation, None) }))
            .boxed();
        self.receivers.push(tagged);
        let mut failed = Vec::new();
        for (&id, pending) in &mut self.sends {
            match channel.send(stream, pending.payload.clone(), Some(pending.key.clone())) {
                Ok(send) => pending.placed.push((generation, send)),
                Err(error) => failed.push((id, error)),
            }
        }
        self.bindings.insert(
            generation,
            Binding {
                channel,
                stream,
                active: false,
                retiring: false,
            },
        );
        self.rejoin_rooms(generation);
        self.current = Some(generation);
        for (id, error) in failed {
            self.finish_send(id, Err(send_error(error))).await;
        }
    }

    /// Logs out of every binding except `keep`.
    fn retire_all_but(&mut self, keep: Option<u64>) {
        for (&generation, binding) in &mut self.bindings {
            if Some(generation) == keep || binding.retiring {
                continue;
            }
            tracing::debug!(generation, "logging out");
            binding.retiring = true;
            let _ = binding.channel.logout(binding.stream);
        }
    }

    async fn send(
        &mut self,
        id: u64,
        key: String,
        new_key: bool,
        payload: Bytes,
        reply: oneshot::Sender<Result<SendReceipt, Error>>,
    ) {
        let placed = match self
            .current
            .and_then(|g| self.bindings.get(&g).map(|b| (g, b)))
        {
            Some((generation, binding)) if self.is_started() => {
                // Only the first placement of a generated key may say it is
                // new; one placed again on another channel (a switch) may
                // have been sent on this one's connection already.
                let (channel, stream) = (&binding.channel, binding.stream);
                let sent = if new_key {
                    channel.send_new_key(stream, payload.clone(), key.clone())
                } else {
                    channel.send(stream, payload.clone(), Some(key.clone()))
                };
                sent.map(|send| (generation, send)).map_err(send_error)
            }
            _ => Err(Error::new(ErrorKind::NotStarted, "start the client first")),
        };
        match placed {
            Ok(placed) => {
                self.sends.insert(
                    id,
                    PendingSend {
                        key,
                        payload,
                        reply: Some(reply),
                        placed: vec![placed],
                    },
                );
            }
            Err(error) => {
                let _ = reply.send(Err(error.clone()));
                self.emit(ClientEvent::OnSendFailure { id, key, error })
                    .await;
            }
        }
    }

    async fn finish_send(&mut self, id: u64, outcome: Result<(), Error>) {
        let Some(mut pending) = self.sends.remove(&id) else {
            return;
        };
        let key = pending.key.clone();
        let event = match &outcome {
            Ok(()) => ClientEvent::OnSendSuccess {
                id,
                key: key.clone(),
            },
            Err(error) => ClientEvent::OnSendFailure {
                id,
                key: key.clone(),
                error: error.clone(),
            },
        };
        if let Some(reply) = pending.reply.take() {
            let _ = reply.send(outcome.map(|()| SendReceipt { id, key }));
        }
        self.emit(event).await;
    }

    /// Adopts the route id the channel holds for `generation`'s login (set
    /// by the gateway in uplink acks after a backend failover).
    fn follow_route(&mut self, generation: u64) {
        let Some(binding) = self.bindings.get(&generation) else {
            return;
        };
        let route = binding
            .channel
            .inspect(|c| c.route_id(binding.stream).map(str::to_owned));
        if let Some(route) = route.filter(|r| !r.is_empty() && *r != self.route_id) {
            tracing::debug!(from = %self.route_id, to = %route, "route id changed");
            self.route_id = route;
            self.save_session();
        }
    }

    /// The send placed as (`generation`, `send`); with `latest`, only if
    /// that is its most recent placement.
    fn find_send(&self, generation: u64, send: SendId, latest: bool) -> Option<u64> {
        self.sends.iter().find_map(|(&id, pending)| {
            let hit = if latest {
                pending.placed.last() == Some(&(generation, send))
            } else {
                pending.placed.contains(&(generation, send))
            };
            hit.then_some(id)
        })
    }

    async fn on_delivery(&mut self, generation: u64, message: Message) {
        if message.is_transient() {
            // At most once: only from the primary binding (the current one
            // once accepted, else the newest accepted one).
            let primary = self
                .bindings
                .iter()
                .rev()
                .find(|(_, b)| b.active && !b.retiring)
                .map(|(g, _)| *g);
            if primary == Some(generation) && self.is_started() {
                self.emit(ClientEvent::OnReceive(message)).await;
            }
            return;
        }
        if message.seq <= self.delivered {
            tracing::trace!(
                seq = message.seq,
                generation,
                "duplicate across channels dropped"
            );
            return;
        }
        if message.seq > self.delivered + 1 {
            let expected = self.delivered + 1;
            self.emit(ClientEvent::Gap {
                expected,
                got: message.seq,
            })
            .await;
        }
        self.delivered = message.seq;
        self.save_session();
        self.emit(ClientEvent::OnReceive(message)).await;
    }

    async fn fail_all(&mut self, error: Error) {
        let ids: Vec<u64> = self.sends.keys().copied().collect();
        for id in ids {
            self.finish_send(id, Err(error.clone())).await;
        }
    }

    async fn stopped(&mut self, reason: StopReason) {
        self.set_state(ClientState::Stopped);
        self.emit(ClientEvent::OnStop { reason }).await;
        if std::mem::take(&mut self.restart_after_stop) {
            self.start().await;
        }
    }

    /// A binding's subscription ended (logged out, login refused, driver
    /// gone).
    async fn on_binding_end(&mut self, generation: u64) {
        let Some(binding) = self.bindings.remove(&generation) else {
            return;
        };
        self.proxy.release(&binding.channel);
        // Sends whose latest placement was there failed already, unless the
        // channel vanished without telling.
        let orphans: Vec<u64> = self
            .sends
            .iter()
            .filter(|(_, p)| p.placed.last().is_some_and(|(g, _)| *g == generation))
            .map(|(id, _)| *id)
            .collect();
        let vanished = self.current == Some(generation);
        for id in orphans {
            let error = if vanished {
                Error::new(ErrorKind::ChannelClosed, "the channel went away")
            } else {
                Error::new(ErrorKind::Stopped, "the client stopped")
            };
            self.finish_send(id, Err(error)).await;
        }
        if vanished {
            tracing::debug!("channel gone");
            self.current = None;
            self.retire_all_but(None);
            self.stopped(StopReason::ChannelClosed).await;
        } else if self.is_stopping() && self.bindings.is_empty() {
            self.stopped(StopReason::Stopped).await;
        }
    }
}

fn send_error(error: SendError) -> Error {
    match error {
        SendError::QueueFull { limit, .. } => Error::new(
            ErrorKind::QueueFull,
            format!("{limit} messages wait for an answer"),
        ),
        SendError::Stopped => Error::new(ErrorKind::ChannelClosed, "the channel is stopped"),
        other => Error::new(ErrorKind::Stopped, other.to_string()).with_source(other),
    }
}

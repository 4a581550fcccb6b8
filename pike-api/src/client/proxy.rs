//! The channel proxy (seed 5.2): which channel each business uses.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pike_channel::{
    BoxConnector, ClientConfig, ClientHandle, Connector, DriverConfig, EventReceiver, LoginParams,
    StreamId, spawn_client,
};
use tokio::sync::mpsc;

use super::error::{Error, ErrorKind};
use super::pike_client::{ClientOptions, Command, PikeClient};

/// How a business reaches the gateway.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum Mode {
    /// One connection shared by every business in this mode (the default).
    #[default]
    Shared,
    /// A connection of the business's own.
    Independent,
}

#[derive(Default)]
struct State {
    /// The shared channel, while some business uses it.
    shared: Option<ClientHandle>,
    /// Independent channels by business.
    independent: HashMap<String, ClientHandle>,
    modes: HashMap<String, Mode>,
    /// Clients, to tell them about mode changes (weak: a dropped client's
    /// task must end).
    clients: Vec<(String, mpsc::WeakUnboundedSender<Command>)>,
}

pub(crate) struct Inner {
    connector: BoxConnector,
    channel_config: Arc<ClientConfig>,
    driver_config: DriverConfig,
    event_capacity: usize,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn_channel(&self) -> ClientHandle {
        let handle = spawn_client(
            Arc::clone(&self.channel_config),
            self.connector.clone(),
            &self.driver_config,
        );
        handle.start();
        handle
    }

    /// Logs `params` in on the channel `biz` uses now (started on demand),
    /// under the proxy lock so that a concurrent release cannot stop it in
    /// between.
    pub(crate) fn login(
        &self,
        biz: &str,
        params: LoginParams,
    ) -> (ClientHandle, StreamId, EventReceiver) {
        let mut state = self.lock();
        let channel = match state.modes.get(biz).copied().unwrap_or_default() {
            Mode::Shared => state
                .shared
                .get_or_insert_with(|| self.spawn_channel())
                .clone(),
            Mode::Independent => state
                .independent
                .entry(biz.to_owned())
                .or_insert_with(|| self.spawn_channel())
                .clone(),
        };
        let (stream, events) = channel.login(params);
        (channel, stream, events)
    }

    /// Whether `channel` is the one `biz` should use now.
    pub(crate) fn is_current(&self, biz: &str, channel: &ClientHandle) -> bool {
        let state = self.lock();
        let current = match state.modes.get(biz).copied().unwrap_or_default() {
            Mode::Shared => state.shared.as_ref(),
            Mode::Independent => state.independent.get(biz),
        };
        current.is_some_and(|c| c.same_channel(channel))
    }

    /// Stops and forgets `channel` if no business is logged in on it any
    /// more (its driver finishes once the last handle is dropped).
    pub(crate) fn release(&self, channel: &ClientHandle) {
        // Checked under the proxy lock: logins happen under it too.
        let mut state = self.lock();
        if channel.inspect(|c| c.streams().next().is_some()) {
            return;
        }
        if state
            .shared
            .as_ref()
            .is_some_and(|c| c.same_channel(channel))
        {
            state.shared = None;
        }
        state.independent.retain(|_, c| !c.same_channel(channel));
        channel.stop();
    }

    pub(crate) fn mode(&self, biz: &str) -> Mode {
        self.lock().modes.get(biz).copied().unwrap_or_default()
    }

    pub(crate) fn event_capacity(&self) -> usize {
        self.event_capacity
    }
}

/// Owns the channels and decides which one each business uses (seed 5.2).
///
/// By default every [`PikeClient`] shares one channel (one connection);
/// [`set_mode`](Self::set_mode) moves a business to a channel of its own
/// ([`Mode::Independent`]) or back, also while its clients run, without
/// losing or duplicating a message (`docs/channel.md`, "Switching
/// channels"). Channels are started when a business first needs them and
/// stopped when the last business leaves them.
///
/// Cheap to clone; every clone is the same proxy.
#[derive(Clone)]
pub struct ChannelProxy {
    inner: Arc<Inner>,
}

impl ChannelProxy {
    /// A proxy dialing through `connector`, with default settings.
    pub fn new(connector: impl Connector) -> Self {
        Self::builder(connector).build()
    }

    /// A builder for the proxy's settings.
    pub fn builder(connector: impl Connector) -> ChannelProxyBuilder {
        ChannelProxyBuilder {
            connector: BoxConnector::new(connector),
            channel_config: Arc::new(ClientConfig::default()),
            driver_config: DriverConfig::default(),
            event_capacity: 1024,
            modes: HashMap::new(),
        }
    }

    /// A client for one business. Nothing happens until
    /// [`PikeClient::start`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRuntime`] outside a tokio runtime.
    pub fn client(&self, options: ClientOptions) -> Result<PikeClient, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::new(
                ErrorKind::NoRuntime,
                "PikeClient needs a tokio runtime",
            ));
        }
        let biz = options.biz.clone();
        let (client, commands) = PikeClient::spawn(Arc::clone(&self.inner), options);
        let mut state = self.inner.lock();
        state.clients.retain(|(_, tx)| tx.strong_count() > 0);
        state.clients.push((biz, commands.downgrade()));
        Ok(client)
    }

    /// Switches `biz` to `mode`. Running clients of the business move to
    /// the new channel at once (see `docs/channel.md`); later starts use it.
    pub fn set_mode(&self, biz: &str, mode: Mode) {
        let mut state = self.inner.lock();
        let previous = state.modes.insert(biz.to_owned(), mode);
        if previous.unwrap_or_default() == mode {
            return;
        }
        tracing::debug!(%biz, ?mode, "channel mode changed");
        state.clients.retain(|(_, tx)| tx.strong_count() > 0);
        for (client_biz, tx) in &state.clients {
            if client_biz == biz
                && let Some(tx) = tx.upgrade()
            {
                let _ = tx.send(Command::Switch);
            }
        }
    }

    /// The mode of `biz`.
    pub fn mode(&self, biz: &str) -> Mode {
        self.inner.mode(biz)
    }

    /// Channels running now (the shared one, if used, plus independent
    /// ones).
    pub fn channels(&self) -> usize {
        let state = self.inner.lock();
        usize::from(state.shared.is_some()) + state.independent.len()
    }

    /// Network-change hint for every channel: skip pending reconnect delays.
    pub fn reconnect_now(&self) {
        let state = self.inner.lock();
        for channel in state.shared.iter().chain(state.independent.values()) {
            channel.reconnect_now();
        }
    }
}

impl fmt::Debug for ChannelProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("ChannelProxy")
            .field("shared", &state.shared.is_some())
            .field("independent", &state.independent.keys().collect::<Vec<_>>())
            .field("modes", &state.modes)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`ChannelProxy`].
pub struct ChannelProxyBuilder {
    connector: BoxConnector,
    channel_config: Arc<ClientConfig>,
    driver_config: DriverConfig,
    event_capacity: usize,
    modes: HashMap<String, Mode>,
}

impl ChannelProxyBuilder {
    /// Channel settings (heartbeat, backoff, windows, timeouts) for every
    /// channel.
    #[must_use]
    pub fn channel_config(mut self, config: ClientConfig) -> Self {
        self.channel_config = Arc::new(config);
        self
    }

    /// Driver settings for every channel.
    #[must_use]
    pub fn driver_config(mut self, config: DriverConfig) -> Self {
        self.driver_config = config;
        self
    }

    /// Events queued per client before the client stops taking events from
    /// its channel (backpressure; nothing is dropped). Default 1024, at
    /// least 1.
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Starts `biz` in independent mode.
    #[must_use]
    pub fn independent(mut self, biz: impl Into<String>) -> Self {
        self.modes.insert(biz.into(), Mode::Independent);
        self
    }

    /// The proxy.
    pub fn build(self) -> ChannelProxy {
        ChannelProxy {
            inner: Arc::new(Inner {
                connector: self.connector,
                channel_config: self.channel_config,
                driver_config: self.driver_config,
                event_capacity: self.event_capacity,
                state: Mutex::new(State {
                    modes: self.modes,
                    ..State::default()
                }),
            }),
        }
    }
}

impl fmt::Debug for ChannelProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelProxyBuilder")
            .field("modes", &self.modes)
            .field("event_capacity", &self.event_capacity)
            .finish_non_exhaustive()
    }
}

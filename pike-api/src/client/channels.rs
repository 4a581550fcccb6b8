//! The channel table behind a [`ChannelProxy`](super::ChannelProxy):
//! which channel each business uses now, channels started on demand and
//! stopped when their last business leaves. [`PikeClient`](super::PikeClient)
//! and the proxy both use it; it knows neither.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pike_channel::{
    BoxConnector, ClientConfig, ClientHandle, DriverConfig, EventReceiver, LoginParams, StreamId,
    spawn_client,
};

/// A client that follows its business's mode: told when it changes.
pub(crate) trait ModeListener: Send {
    /// Whether the client still exists (a dropped client is forgotten).
    fn is_alive(&self) -> bool;
    /// The business's mode changed: move to the channel it uses now.
    fn mode_changed(&self);
}

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
    clients: Vec<(String, Box<dyn ModeListener>)>,
}

/// The channels of one proxy and the mode of each business.
pub(crate) struct Channels {
    connector: BoxConnector,
    channel_config: std::sync::Arc<ClientConfig>,
    driver_config: DriverConfig,
    event_capacity: usize,
    state: Mutex<State>,
}

impl Channels {
    /// Channels with these settings and initial modes.
    pub(crate) fn new(
        connector: BoxConnector,
        channel_config: std::sync::Arc<ClientConfig>,
        driver_config: DriverConfig,
        event_capacity: usize,
        modes: HashMap<String, Mode>,
    ) -> Self {
        Self {
            connector,
            channel_config,
            driver_config,
            event_capacity,
            state: Mutex::new(State {
                modes,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn_channel(&self) -> ClientHandle {
        let handle = spawn_client(
            std::sync::Arc::clone(&self.channel_config),
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

    /// Tells `listener` about later mode changes of `biz`.
    pub(crate) fn listen(&self, biz: String, listener: Box<dyn ModeListener>) {
        let mut state = self.lock();
        state.clients.retain(|(_, l)| l.is_alive());
        state.clients.push((biz, listener));
    }

    /// Sets the mode of `biz`; tells its clients when it changed.
    pub(crate) fn set_mode(&self, biz: &str, mode: Mode) {
        let mut state = self.lock();
        let previous = state.modes.insert(biz.to_owned(), mode);
        if previous.unwrap_or_default() == mode {
            return;
        }
        tracing::debug!(%biz, ?mode, "channel mode changed");
        state.clients.retain(|(_, l)| l.is_alive());
        for (client_biz, listener) in &state.clients {
            if client_biz == biz {
                listener.mode_changed();
            }
        }
    }

    /// Channels running now (the shared one, if used, plus independent
    /// ones).
    pub(crate) fn count(&self) -> usize {
        let state = self.lock();
        usize::from(state.shared.is_some()) + state.independent.len()
    }

    /// Skips pending reconnect delays on every channel.
    pub(crate) fn reconnect_now(&self) {
        let state = self.lock();
        for channel in state.shared.iter().chain(state.independent.values()) {
            channel.reconnect_now();
        }
    }

    /// Whether the shared channel runs, the businesses with channels of
    /// their own, and the modes (for `Debug`).
    pub(crate) fn describe(&self, f: &mut std::fmt::DebugStruct<'_, '_>) {
        let state = self.lock();
        f.field("shared", &state.shared.is_some())
            .field("independent", &state.independent.keys().collect::<Vec<_>>())
            .field("modes", &state.modes);
    }
}

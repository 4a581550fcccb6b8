//! The channel proxy (seed 5.2): which channel each business uses.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use pike_channel::{BoxConnector, ClientConfig, Connector, DriverConfig};

use super::channels::{Channels, Mode};
use super::error::{Error, ErrorKind};
use super::pike_client::{ClientOptions, PikeClient};

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
    inner: Arc<Channels>,
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
        let (client, listener) = PikeClient::spawn(Arc::clone(&self.inner), options);
        self.inner.listen(biz, listener);
        Ok(client)
    }

    /// Switches `biz` to `mode`. Running clients of the business move to
    /// the new channel at once (see `docs/channel.md`); later starts use it.
    pub fn set_mode(&self, biz: &str, mode: Mode) {
        self.inner.set_mode(biz, mode);
    }

    /// The mode of `biz`.
    pub fn mode(&self, biz: &str) -> Mode {
        self.inner.mode(biz)
    }

    /// Channels running now (the shared one, if used, plus independent
    /// ones).
    pub fn channels(&self) -> usize {
        self.inner.count()
    }

    /// Network-change hint for every channel: skip pending reconnect delays.
    pub fn reconnect_now(&self) {
        self.inner.reconnect_now();
    }
}

impl fmt::Debug for ChannelProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ChannelProxy");
        self.inner.describe(&mut f);
        f.finish_non_exhaustive()
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
            inner: Arc::new(Channels::new(
                self.connector,
                self.channel_config,
                self.driver_config,
                self.event_capacity,
                self.modes,
            )),
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

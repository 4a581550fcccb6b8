//! Whether this node can serve cluster operations right now.

use async_nats::connection::State;

use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// The node's view of the cluster.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Health {
    /// Connected to a NATS server: operations are attempted.
    Ready,
    /// Not connected (reconnecting, or never connected): every operation
    /// fails at once with [`Error::Unavailable`], nothing is buffered.
    Unavailable(String),
}

impl Cluster {
    /// [`Health::Ready`] while the NATS connection is up. async-nats flips
    /// its state within milliseconds of losing the server (7–18 ms measured).
    pub fn health(&self) -> Health {
        match self.client().connection_state() {
            State::Connected => Health::Ready,
            State::Pending => Health::Unavailable("connecting to NATS".into()),
            State::Disconnected => Health::Unavailable("disconnected from NATS".into()),
        }
    }

    /// Fails fast with [`Error::Unavailable`] unless connected: async-nats
    /// would otherwise buffer core publishes while disconnected and deliver
    /// them later, stale (plan §14.7).
    pub(crate) fn ensure_ready(&self) -> Result<()> {
        match self.health() {
            Health::Ready => Ok(()),
            Health::Unavailable(why) => Err(Error::Unavailable(why)),
        }
    }
}

//! Small identifiers shared by both sides.

use std::fmt;

/// A business login on a connection: the connection-local id the client
/// picks (1, 2, 3, ...) and every frame of that business names.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct StreamId(u32);

impl StreamId {
    /// A stream id from its wire value.
    pub const fn new(value: u32) -> Self {
        Self(value)
    }

    /// The wire value.
    pub const fn value(self) -> u32 {
        self.0
    }
}

impl From<u32> for StreamId {
    fn from(value: u32) -> Self {
        Self(value)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one [`ClientChannel::send`](crate::ClientChannel::send) call;
/// unique per client channel, echoed in the send outcome events.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct SendId(u64);

impl SendId {
    pub(crate) const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The numeric value.
    pub const fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one dial of a [`ClientChannel`](crate::ClientChannel): the
/// [`Connect`](crate::Event::Connect) action names it and the driver reports
/// back with it, so reports about an abandoned dial are recognised as stale.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ConnectionId(u64);

impl ConnectionId {
    pub(crate) const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The numeric value.
    pub const fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

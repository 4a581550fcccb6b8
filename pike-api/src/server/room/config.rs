//! Room settings: [`RoomConfig`], chosen per app and room name.

use std::time::Duration;

/// How a room's batches reach its members.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum RoomMode {
    /// Push while the room has at most
    /// [`push_max_members`](RoomConfig::push_max_members) members, pull
    /// above.
    #[default]
    Auto,
    /// Every released batch is pushed to every member connection (one
    /// frame per connection, whatever the number of its streams in the
    /// room).
    Push,
    /// Members pull by offset; the pulls held at a member's offset are
    /// answered when a batch is released.
    Pull,
}

impl RoomMode {
    /// `auto`, `push` or `pull`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Push => "push",
            Self::Pull => "pull",
        }
    }
}

/// A rate cap: a token bucket refilled at `per_second`, holding at most
/// `burst` tokens (full at start).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_second: u32,
    /// Messages accepted at once after a quiet period.
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` sustained, `burst` at once (both at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            burst: burst.max(1),
        }
    }
}

/// Settings of one live room (`docs/rooms.md` explains each). Defaults and
/// why:
///
/// - ring of 1,024 droppable messages kept up to 30 s: a client that
///   reconnects within seconds still gets recent barrage, older barrage is
///   not worth showing;
/// - 1,024 reliable messages, kept while the room exists (no age limit):
///   control signals and lottery results are rare, and a full store refuses
///   new reliable messages instead of dropping old ones;
/// - droppable capped at 1,000 messages/s per room (burst 1,000) and 10/s
///   per publisher (burst 20); priority 0 may not use the last quarter of
///   the room's bucket, so under load barrage is shed before prioritized
///   droppable messages;
/// - push while at most 10,000 members, pull above (`RoomMode::Auto`): at
///   10,000 members push has the lower latency for the same deliveries
///   (`docs/benchmarks.md`); pull merges a lagging member's batches and
///   bounds each member's cost by its pace;
/// - latency budget 50 ms: no message waits longer than that in the room
///   before its batch is released; a batch is released earlier when the
///   previous one has reached (nearly) every member or when it holds 100
///   messages or 64 KiB;
/// - messages up to 64 KiB; a held pull waits at most 60 s;
/// - a room without members and without publishes for 5 minutes is
///   removed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RoomConfig {
    pub(crate) ring_capacity: usize,
    pub(crate) ring_retention: Duration,
    pub(crate) reliable_capacity: usize,
    pub(crate) reliable_retention: Option<Duration>,
    pub(crate) room_rate: Option<RateLimit>,
    pub(crate) publisher_rate: Option<RateLimit>,
    pub(crate) mode: RoomMode,
    pub(crate) push_max_members: usize,
    pub(crate) latency_budget: Duration,
    pub(crate) max_batch_messages: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) max_pull_wait: Duration,
    pub(crate) idle_ttl: Duration,
}

impl RoomConfig {
    /// Droppable messages the ring holds (at least 1); when full, the oldest
    /// is overwritten and the head moves.
    pub fn ring_capacity(&mut self, len: usize) -> &mut Self {
        self.ring_capacity = len.max(1);
        self
    }

    /// Age after which a droppable message leaves the ring.
    pub fn ring_retention(&mut self, retention: Duration) -> &mut Self {
        self.ring_retention = retention;
        self
    }

    /// Reliable messages kept (at least 1). Droppable traffic never evicts
    /// them; a reliable publish finding the store full is refused.
    pub fn reliable_capacity(&mut self, len: usize) -> &mut Self {
        self.reliable_capacity = len.max(1);
        self
    }

    /// Age after which a reliable message leaves the store (`None`: kept
    /// while the room exists).
    pub fn reliable_retention(&mut self, retention: Option<Duration>) -> &mut Self {
        self.reliable_retention = retention;
        self
    }

    /// Cap on droppable messages accepted per second in the room (`None`:
    /// no cap).
    pub fn room_rate(&mut self, limit: Option<RateLimit>) -> &mut Self {
        self.room_rate = limit;
        self
    }

    /// Cap on droppable messages accepted per second from one publisher
    /// (named in the publish request) in the room (`None`: no cap).
    pub fn publisher_rate(&mut self, limit: Option<RateLimit>) -> &mut Self {
        self.publisher_rate = limit;
        self
    }

    /// Push, pull, or push up to `push_max_members` members.
    pub fn mode(&mut self, mode: RoomMode) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Largest room that pushes in [`RoomMode::Auto`].
    pub fn push_max_members(&mut self, members: usize) -> &mut Self {
        self.push_max_members = members;
        self
    }

    /// Longest time a message waits in the room before its batch is
    /// released (at least 1 ms).
    pub fn latency_budget(&mut self, budget: Duration) -> &mut Self {
        self.latency_budget = budget.max(Duration::from_millis(1));
        self
    }

    /// A batch is released as soon as it holds this many messages or
    /// bytes (at least 1 each); 1 message turns batching off.
    pub fn max_batch(&mut self, messages: usize, bytes: usize) -> &mut Self {
        self.max_batch_messages = messages.max(1);
        self.max_batch_bytes = bytes.max(1);
        self
    }

    /// Largest payload accepted (at least 1 byte).
    pub fn max_message_bytes(&mut self, bytes: usize) -> &mut Self {
        self.max_message_bytes = bytes.max(1);
        self
    }

    /// Longest time a pull is held, whatever the client asks.
    pub fn max_pull_wait(&mut self, wait: Duration) -> &mut Self {
        self.max_pull_wait = wait;
        self
    }

    /// Time without members and publishes after which the room is removed
    /// (its messages with it; the next join or publish starts it afresh,
    /// with higher offsets).
    pub fn idle_ttl(&mut self, ttl: Duration) -> &mut Self {
        self.idle_ttl = ttl;
        self
    }

    /// The droppable rate cap of a room.
    pub fn get_room_rate(&self) -> Option<RateLimit> {
        self.room_rate
    }

    /// The droppable rate cap of a publisher.
    pub fn get_publisher_rate(&self) -> Option<RateLimit> {
        self.publisher_rate
    }

    /// The configured mode.
    pub fn get_mode(&self) -> RoomMode {
        self.mode
    }

    /// Messages that release a batch early.
    pub fn get_max_batch_messages(&self) -> usize {
        self.max_batch_messages
    }

    /// Payload bytes that release a batch early.
    pub fn get_max_batch_bytes(&self) -> usize {
        self.max_batch_bytes
    }

    /// The latency budget.
    pub fn get_latency_budget(&self) -> Duration {
        self.latency_budget
    }

    /// The mode used with `members` members.
    pub(crate) fn effective_mode(&self, members: usize) -> RoomMode {
        match self.mode {
            RoomMode::Auto if members <= self.push_max_members => RoomMode::Push,
            RoomMode::Auto => RoomMode::Pull,
            mode => mode,
        }
    }
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            ring_capacity: 1024,
            ring_retention: Duration::from_secs(30),
            reliable_capacity: 1024,
            reliable_retention: None,
            room_rate: Some(RateLimit::new(1000, 1000)),
            publisher_rate: Some(RateLimit::new(10, 20)),
            mode: RoomMode::Auto,
            push_max_members: 10_000,
            latency_budget: Duration::from_millis(50),
            max_batch_messages: 100,
            max_batch_bytes: 64 * 1024,
            max_message_bytes: 64 * 1024,
            max_pull_wait: Duration::from_secs(60),
            idle_ttl: Duration::from_secs(300),
        }
    }
}

/// A room setting for some rooms of an app.
#[derive(Clone, Debug)]
pub(crate) struct RoomRule {
    pub(crate) app: String,
    /// `*` (every room of the app), `prefix*`, or an exact name.
    pub(crate) pattern: String,
    pub(crate) config: RoomConfig,
}

impl RoomRule {
    /// How well the rule matches (`None`: not at all; higher wins).
    pub(crate) fn rank(&self, app: &str, room: &str) -> Option<usize> {
        if self.app != app {
            return None;
        }
        match self.pattern.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix).then_some(1 + prefix.len()),
            None => (self.pattern == room).then_some(usize::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_longer_prefix_beats_app_wide() {
        let rule = |pattern: &str| RoomRule {
            app: "demo".into(),
            pattern: pattern.into(),
            config: RoomConfig::default(),
        };
        assert_eq!(rule("*").rank("other", "live:1"), None);
        let ranks: Vec<_> = ["*", "live:*", "live:1"]
            .iter()
            .map(|p| rule(p).rank("demo", "live:1"))
            .collect();
        assert!(ranks[0] < ranks[1] && ranks[1] < ranks[2], "{ranks:?}");
        assert_eq!(rule("live:1").rank("demo", "live:10"), None);
    }
}

//! How a node connects to the cluster and sizes what it creates there.

use std::time::Duration;

/// Connection and bootstrap settings of one node. [`ClusterConfig::new`]
/// gives the documented defaults; every field is public.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// NATS client URLs (`nats://127.0.0.1:4222`), at least one.
    pub urls: Vec<String>,
    /// This node's name, `[-_a-zA-Z0-9]{1,32}`: the NATS connection name and
    /// the control subject `ctl.<node>`.
    pub node: String,
    /// Replicas of the stream and the buckets: 1 (tests, one server) or 3.
    pub replicas: usize,
    /// Bound on the first connection and on the bootstrap (default 10 s).
    pub connect_timeout: Duration,
    /// Bound on one JetStream request (default 2 s).
    pub request_timeout: Duration,
    /// Bound on one append including its retries (the push timeout, default
    /// 10 s: longer than a stream-leader election, ~5 s measured).
    pub append_timeout: Duration,
    /// `Nats-Msg-Id` dedup window of the downlink stream (default 120 s).
    pub dedup_window: Duration,
    /// Age after which stored downlink messages are dropped (default 7 days).
    pub max_age: Duration,
    /// Messages kept per alias, the oldest dropped first (default 10,000).
    pub max_messages_per_subject: i64,
    /// Age after which an acked position is dropped (default 30 days).
    pub positions_max_age: Duration,
    /// Per-key TTL of a presence claim (default 1 h, whole seconds).
    pub presence_ttl: Duration,
    /// Messages buffered per subscription (a live stream, the control
    /// stream, one read) before NATS drops them for a slow consumer
    /// (default 4,096; at least [`MAX_BATCH`](crate::MAX_BATCH) + 1). A
    /// dropped live message shows as a sequence gap, filled by a read.
    pub subscription_capacity: usize,
    /// How often the node writes a probe message to the downlink stream
    /// (default 2 s): connected is not enough, JetStream may have no quorum.
    pub probe_interval: Duration,
    /// How long a delivered uplink message is remembered, so that a resend
    /// is answered from the record instead of reaching the backend again
    /// (default 24 h, as the embedded store).
    pub uplink_record_max_age: Duration,
    /// Age after which reliable room messages leave `PIKE_ROOMS` (default
    /// 1 h): they are read back only to fill what a node just missed.
    pub room_max_age: Duration,
    /// Reliable messages kept per room in `PIKE_ROOMS` (default 1,024, a
    /// room's default reliable store).
    pub room_max_messages_per_subject: i64,
}

impl ClusterConfig {
    /// The defaults, for `urls` and `node`.
    pub fn new(urls: Vec<String>, node: impl Into<String>) -> Self {
        Self {
            urls,
            node: node.into(),
            replicas: 3,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(2),
            append_timeout: Duration::from_secs(10),
            dedup_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_messages_per_subject: 10_000,
            positions_max_age: Duration::from_secs(30 * 24 * 3600),
            presence_ttl: Duration::from_secs(3600),
            subscription_capacity: 4096,
            probe_interval: Duration::from_secs(2),
            uplink_record_max_age: Duration::from_secs(24 * 3600),
            room_max_age: Duration::from_secs(3600),
            room_max_messages_per_subject: 1024,
        }
    }
}

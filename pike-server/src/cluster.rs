//! Running as a node of a cluster: the `[cluster]` section of the
//! configuration and the engine it selects (`docs/cluster.md`).
//!
//! With `cluster.nats` empty (the default) the gateway is a single node on
//! its embedded store. With NATS URLs it keeps its alias streams,
//! positions, tags and uplink records in NATS JetStream and routes live
//! traffic through NATS, so that every node of the cluster can push to
//! every device.

use std::time::Duration;

use pike_jetstream::{Cluster as JetStream, ClusterConfig};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Longest node name, bytes (a NATS subject token).
pub const MAX_NODE_LEN: usize = 32;

/// Most NATS URLs a node is given.
pub const MAX_NATS_URLS: usize = 16;

/// The `[cluster]` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// NATS client URLs of the JetStream cluster (`nats://127.0.0.1:4222`).
    /// Empty: a single node on the embedded store.
    pub nats: Vec<String>,
    /// This gateway's node name, unique in the cluster,
    /// `[-_a-zA-Z0-9]{1,32}`. Empty: `pike-` and the process id.
    pub node: String,
    /// Replicas of the stream and buckets JetStream keeps (1, 3 or 5;
    /// default 3; every node must say the same).
    pub replicas: Option<usize>,
}

impl ClusterSection {
    /// Whether the gateway runs as a cluster node.
    pub fn enabled(&self) -> bool {
        !self.nats.is_empty()
    }

    /// The node name in use.
    pub fn node_name(&self) -> String {
        if self.node.is_empty() {
            format!("pike-{}", std::process::id())
        } else {
            self.node.clone()
        }
    }

    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.nats.len() > MAX_NATS_URLS {
            return invalid(format!("cluster.nats lists more than {MAX_NATS_URLS} URLs"));
        }
        if let Some(url) = self
            .nats
            .iter()
            .find(|u| !(u.starts_with("nats://") || u.starts_with("tls://")) || u.len() > 256)
        {
            return invalid(format!(
                "cluster.nats: {url:?} is not a nats:// or tls:// URL of at most 256 bytes"
            ));
        }
        if !self.node.is_empty()
            && (self.node.len() > MAX_NODE_LEN
                || !self
                    .node
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return invalid(format!(
                "cluster.node must be 1..={MAX_NODE_LEN} of [-_a-zA-Z0-9]"
            ));
        }
        if let Some(replicas) = self.replicas
            && !matches!(replicas, 1 | 3 | 5)
        {
            return invalid("cluster.replicas must be 1, 3 or 5".into());
        }
        Ok(())
    }

    /// Connects to the cluster (bounded by the connect timeout, 10 s) and
    /// creates or adopts its stream and buckets; `store` sizes the messages
    /// kept per alias and how long uplink records live.
    pub async fn connect(&self, store: &crate::config::Store) -> Result<JetStream, String> {
        let mut config = ClusterConfig::new(self.nats.clone(), self.node_name());
        if let Some(replicas) = self.replicas {
            config.replicas = replicas;
        }
        config.max_messages_per_subject =
            i64::try_from(store.max_messages_per_stream).unwrap_or(i64::MAX);
        config.uplink_record_max_age = Duration::from_secs(store.uplink_retention_secs);
        config.connect_timeout = Duration::from_secs(10);
        JetStream::connect(config).await.map_err(|e| e.to_string())
    }
}

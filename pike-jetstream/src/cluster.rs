//! The connected node: one NATS connection, the downlink stream and the
//! buckets, bootstrapped on connect.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use async_nats::{Client, ConnectOptions, ServerAddr};

use crate::bootstrap;
use crate::config::ClusterConfig;
use crate::direct_get::MAX_BATCH;
use crate::error::{Error, Result};
use crate::health::Probe;
use crate::keys::check_node;
use crate::log::Lanes;

/// A node's handle on the cluster. Cheap to clone; every clone shares the
/// one NATS connection.
#[derive(Clone, Debug)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// The shared state behind every [`Cluster`] handle.
#[derive(Debug)]
pub(crate) struct Inner {
    client: Client,
    js: jetstream::Context,
    downlink: stream::Stream,
    positions: kv::Store,
    presence: kv::Store,
    directory: kv::Store,
    uplinks: kv::Store,
    nodes: kv::Store,
    /// Live nodes seen in `PIKE_NODES` at the last lease refresh.
    live_nodes: std::sync::atomic::AtomicUsize,
    replies: crate::scatter::Replies,
    epoch: u64,
    config: ClusterConfig,
    lanes: Lanes,
    probe: Probe,
    /// Connections to a NATS server made so far (the first one included):
    /// a change shows an outage, however short.
    connects: Arc<std::sync::atomic::AtomicU64>,
}

/// The reconnect backoff: 50 ms doubling to 500 ms, plus up to 100 ms of
/// jitter (the default grows to seconds; a gateway wants NATS back fast).
fn reconnect_delay(attempts: usize) -> Duration {
    let base = (50u64 << attempts.min(4)).min(500);
    Duration::from_millis(base + fastrand::u64(0..100))
}

impl Cluster {
    /// Connects to NATS and bootstraps, idempotently, the stream
    /// `PIKE_DOWNLINK` and the buckets (`PIKE_POSITIONS`, `PIKE_PRESENCE`,
    /// `PIKE_DIRECTORY`, `PIKE_UPLINKS`, `PIKE_NODES`), and starts the health
    /// probe. A gateway's engine ([`JetStreamEngine`](crate::JetStreamEngine))
    /// also keeps the node's lease in `PIKE_NODES`; a bare `Cluster` (a tool,
    /// an observer) has none and answers no cluster-wide view.
    /// When another node created the stream first (with another epoch, or
    /// another configuration: JetStream error 10058) its epoch is adopted.
    /// Bounded by `config.connect_timeout`; [`Error::Unavailable`] when NATS
    /// cannot be reached or has no JetStream quorum in that time.
    pub async fn connect(config: ClusterConfig) -> Result<Self> {
        check_node(&config.node)?;
        if config.urls.is_empty() {
            return Err(Error::Invalid("no NATS url".into()));
        }
        if !(1..=5).contains(&config.replicas) {
            return Err(Error::Invalid(format!(
                "replicas is {}, must be 1..=5",
                config.replicas
            )));
        }
        if config.subscription_capacity <= MAX_BATCH {
            return Err(Error::Invalid(format!(
                "subscription_capacity is {}, must exceed {MAX_BATCH}",
                config.subscription_capacity
            )));
        }
        let addrs = config
            .urls
            .iter()
            .map(|url| {
                url.parse::<ServerAddr>()
                    .map_err(|e| Error::Invalid(format!("NATS url {url:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let deadline = tokio::time::Instant::now() + config.connect_timeout;
        let node = config.node.clone();
        let connects = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&connects);
        let options = ConnectOptions::new()
            .name(&config.node)
            .connection_timeout(config.connect_timeout.min(Duration::from_secs(5)))
            .request_timeout(Some(config.request_timeout))
            .subscription_capacity(config.subscription_capacity)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let node = node.clone();
                async move { tracing::info!(node, %event, "nats event") }
            });
        let client = tokio::time::timeout_at(deadline, options.connect(addrs))
            .await
            .map_err(|_| Error::Unavailable("NATS connect timed out".into()))?
            .map_err(|e| Error::Unavailable(format!("NATS connect: {e}")))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let (downlink, epoch) = bootstrap::downlink(&js, &config, deadline).await?;
        let positions = bootstrap::bucket(&js, bootstrap::positions(&config), deadline).await?;
        let presence = bootstrap::bucket(&js, bootstrap::presence(&config), deadline).await?;
        let directory = bootstrap::bucket(&js, bootstrap::directory(&config), deadline).await?;
        let uplinks = bootstrap::bucket(&js, bootstrap::uplinks(&config), deadline).await?;
        crate::rooms::bootstrap(&js, &config, deadline).await?;
        let nodes = bootstrap::bucket(&js, bootstrap::nodes(&config), deadline).await?;
        tracing::info!(node = %config.node, epoch, "cluster ready");
        let cluster = Self {
            inner: Arc::new(Inner {
                client,
                js,
                downlink,
                positions,
                presence,
                directory,
                uplinks,
                nodes,
                live_nodes: std::sync::atomic::AtomicUsize::new(0),
                replies: crate::scatter::Replies::default(),
                epoch,
                config,
                lanes: Lanes::default(),
                probe: Probe::default(),
                connects,
            }),
        };
        cluster.spawn_probe();
        Ok(cluster)
    }

    /// A handle that does not keep the node alive (for background tasks).
    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The node again, unless every [`Cluster`] handle was dropped.
    pub(crate) fn upgrade(weak: &Weak<Inner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    pub(crate) fn probe(&self) -> &Probe {
        &self.inner.probe
    }

    /// Epoch of the downlink log: nonzero, fixed when the stream was created;
    /// a recreated stream has another one.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.config.node
    }

    /// The configuration the node connected with.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// Connections to a NATS server this node has made (the first one,
    /// and every reconnect after it): when it changes, core NATS messages
    /// sent meanwhile (republished copies on `live.>`) may be lost, even
    /// when the outage was too short for [`Cluster::health`] to show.
    pub fn connects(&self) -> u64 {
        self.inner
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The NATS client (for subscriptions the crate does not wrap yet).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    pub(crate) fn js(&self) -> &jetstream::Context {
        &self.inner.js
    }

    pub(crate) fn downlink(&self) -> &stream::Stream {
        &self.inner.downlink
    }

    pub(crate) fn positions_kv(&self) -> &kv::Store {
        &self.inner.positions
    }

    pub(crate) fn presence_kv(&self) -> &kv::Store {
        &self.inner.presence
    }

    pub(crate) fn directory_kv(&self) -> &kv::Store {
        &self.inner.directory
    }

    pub(crate) fn uplinks_kv(&self) -> &kv::Store {
        &self.inner.uplinks
    }

    pub(crate) fn nodes_kv(&self) -> &kv::Store {
        &self.inner.nodes
    }

    pub(crate) fn live_nodes_seen(&self) -> &std::sync::atomic::AtomicUsize {
        &self.inner.live_nodes
    }

    pub(crate) fn replies_cell(&self) -> &crate::scatter::Replies {
        &self.inner.replies
    }

    pub(crate) fn lanes(&self) -> &Lanes {
        &self.inner.lanes
    }
}

//! Node leases in `PIKE_NODES`: each node rewrites its key every
//! [`LEASE_REFRESH`]; a key not rewritten for [`NODE_LEASE`] is gone. The
//! number of keys is how many answers a cluster-wide view waits for.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use crate::cluster::Cluster;

/// How long a node's lease lasts after its last refresh.
pub const NODE_LEASE: Duration = Duration::from_secs(10);
/// How often a node refreshes its lease (and counts the live nodes).
pub const LEASE_REFRESH: Duration = Duration::from_secs(3);

impl Cluster {
    /// Gateway nodes with a live lease, as last counted (every
    /// [`LEASE_REFRESH`], and by each cluster-wide question; 0 until the
    /// first count).
    pub fn live_nodes(&self) -> usize {
        self.live_nodes_seen().load(Ordering::Relaxed)
    }

    /// Writes this node's lease now and counts the live nodes; each step
    /// bounded by `request_timeout`.
    pub(crate) async fn refresh_lease(&self) {
        if self.ensure_ready().is_err() {
            return;
        }
        let timeout = self.config().request_timeout;
        let kv = self.nodes_kv();
        let value = Bytes::from(serde_json::json!({ "epoch": self.epoch() }).to_string());
        match tokio::time::timeout(timeout, kv.put(self.node(), value)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "node lease: write failed"),
            Err(_) => tracing::debug!("node lease: write timed out"),
        }
        self.count_nodes().await;
    }

    /// Counts the live leases now (one stream info request, bounded by
    /// `request_timeout`) and remembers the count; `None` when the count
    /// failed (the last count stays).
    pub(crate) async fn count_nodes(&self) -> Option<usize> {
        let timeout = self.config().request_timeout;
        // A fresh stream info: `kv::Store::status` answers from a copy
        // cached when the bucket was opened.
        match tokio::time::timeout(timeout, self.nodes_kv().stream.get_info()).await {
            Ok(Ok(info)) => {
                let live = usize::try_from(info.state.messages).unwrap_or(usize::MAX);
                self.live_nodes_seen().store(live, Ordering::Relaxed);
                Some(live)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "node lease: count failed");
                None
            }
            Err(_) => {
                tracing::debug!("node lease: count timed out");
                None
            }
        }
    }

    /// Starts the lease task: a refresh every [`LEASE_REFRESH`]; it ends
    /// when the last [`Cluster`] handle is dropped.
    pub(crate) fn spawn_lease(&self) {
        let weak = self.downgrade();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(LEASE_REFRESH);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(cluster) = Self::upgrade(&weak) else {
                    return;
                };
                cluster.refresh_lease().await;
            }
        });
    }
}

//! The gateways a chaos run breaks: one pike-server on its embedded store,
//! or three pike-server nodes on three NATS JetStream nodes (bench's
//! cluster [`Rig`]), with their kills and restarts.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::bench::cluster_rig::{self, NATS_NODES, Proc, Rig};
use crate::bench::cluster_run;
use crate::bench::load::command_for;
use crate::bench::servers::{self, Binaries, Kind, Server, ServerSpec};

/// Gateways of a cluster run.
pub(crate) const CLUSTER_GATEWAYS: u16 = 3;

/// The system under test.
pub(crate) enum Gateways {
    /// One gateway on its embedded store (temporary data dir).
    Single { server: Box<Server>, bins: Binaries },
    /// [`CLUSTER_GATEWAYS`] gateways on [`NATS_NODES`] JetStream nodes,
    /// data and logs under `target/bench/chaos-cluster/`.
    Cluster(Rig),
}

impl Gateways {
    /// One gateway calling the uplink webhook `webhook`.
    pub(crate) async fn single(bins: &Binaries, webhook: String) -> Result<Self, String> {
        let spec = ServerSpec {
            webhook: Some(webhook),
            uplink_batch_max: 1,
            ..ServerSpec::plain(Kind::Pike)
        };
        let server = Server::start_spec(&spec, bins, 0).await?;
        Ok(Self::Single {
            server: Box::new(server),
            bins: bins.clone(),
        })
    }

    /// The cluster, every gateway calling the uplink webhook `webhook`.
    pub(crate) async fn cluster(
        bins: &Binaries,
        root: &Path,
        target: &Path,
        webhook: &str,
    ) -> Result<Self, String> {
        let nats = cluster_rig::nats_binary(root, target)?;
        let dir = target.join("bench").join("chaos-cluster");
        let rig =
            Rig::cluster_with_webhook(bins, &nats, CLUSTER_GATEWAYS, &dir, Some(webhook)).await?;
        println!(
            "chaos: cluster of {CLUSTER_GATEWAYS} gateways on {NATS_NODES} NATS JetStream nodes ({}), logs in {}",
            nats.display(),
            dir.display()
        );
        Ok(Self::Cluster(rig))
    }

    /// The gateways' device (plain TCP) addresses.
    pub(crate) fn client_addrs(&self) -> Vec<SocketAddr> {
        match self {
            Self::Single { server, .. } => vec![server.addr],
            Self::Cluster(rig) => rig.tcp.clone(),
        }
    }

    /// JetStream nodes (0 for a single gateway).
    pub(crate) fn nats_nodes(&self) -> usize {
        match self {
            Self::Single { .. } => 0,
            Self::Cluster(rig) => rig.nats.len(),
        }
    }

    /// `pike bench chaos` with the app, business, token secret, API key and
    /// every gateway's HTTP API (the first as `--api`, the others as
    /// `--more-api`).
    pub(crate) fn load_command(&self, bins: &Binaries) -> Command {
        match self {
            Self::Single { server, .. } => command_for(Kind::Pike, bins, server, "chaos"),
            Self::Cluster(rig) => {
                let mut command = cluster_run::pike(bins, "chaos");
                command.args(["--api-key", servers::PIKE_API_KEY]);
                if let Some((first, more)) = rig.api.split_first() {
                    command.arg("--api").arg(first);
                    if !more.is_empty() {
                        command.arg("--more-api").arg(more.join(","));
                    }
                }
                command
            }
        }
    }

    /// SIGKILLs gateway `g`, waits `down` and starts it again (on its data
    /// and ports); waits until it accepts (single) or is healthy (cluster).
    pub(crate) async fn kill_gateway(&mut self, g: usize, down: Duration) -> Result<(), String> {
        match self {
            Self::Single { server, bins } => {
                server.kill().await;
                tokio::time::sleep(down).await;
                server.restart(bins).await
            }
            Self::Cluster(rig) => bounce(&mut rig.gateways, g, down, "gateway").await,
        }
    }

    /// SIGKILLs NATS node `n`, waits `down`, starts it again on its data
    /// and waits until it is healthy. An error on a single gateway.
    pub(crate) async fn kill_nats(&mut self, n: usize, down: Duration) -> Result<(), String> {
        let Self::Cluster(rig) = self else {
            return Err("no NATS node to kill: a single gateway".into());
        };
        bounce(&mut rig.nats, n, down, "NATS node").await
    }

    /// Kills everything.
    pub(crate) async fn stop(self) {
        match self {
            Self::Single { server, .. } => (*server).stop().await,
            Self::Cluster(rig) => rig.stop().await,
        }
    }
}

/// SIGKILLs process `i` of `procs`, waits `down`, starts it again and waits
/// until it is healthy.
async fn bounce(procs: &mut [Proc], i: usize, down: Duration, what: &str) -> Result<(), String> {
    let count = procs.len();
    let proc = procs
        .get_mut(i)
        .ok_or_else(|| format!("no {what} {i} of {count}"))?;
    proc.kill().await;
    tokio::time::sleep(down).await;
    proc.restart().await
}

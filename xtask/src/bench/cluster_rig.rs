//! The servers of the `cluster` workload: three nats-server JetStream
//! nodes (the pinned 2.15.1 of `.ci/nats.sh`, file storage,
//! `sync_interval: always`) and N pike-server gateways in cluster mode
//! sharing the bench app, or one pike-server alone on its embedded store
//! (the baseline). Every process is pinned to CPU 0 like the other
//! workloads' servers, logs into the run's directory and is killed when
//! the [`Rig`] is dropped (also on Ctrl-C).
//!
//! Ports are fixed in 23100-23399 (the bench's hand-started range): NATS
//! node `n` (0-based) serves clients on `23100 + n`, routes on
//! `23110 + n` and monitoring on `23120 + n`; gateway `g` listens on TCP
//! `23200 + 10 g` and HTTP `23201 + 10 g`; the single node on
//! 23300/23301.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::servers::{self, Binaries, PikePorts};

/// JetStream nodes of the cluster.
pub(crate) const NATS_NODES: u16 = 3;
const NATS_CLIENT_PORT: u16 = 23100;
const NATS_ROUTE_PORT: u16 = 23110;
const NATS_HTTP_PORT: u16 = 23120;
const GATEWAY_PORT: u16 = 23200;
const SINGLE_PORT: u16 = 23300;
/// Most gateways of one rig (their ports must stay below the single
/// node's).
pub(crate) const MAX_GATEWAYS: u16 = 9;
// Every port stays in the bench's range, the gateways' below the single
// node's.
const _: () = assert!(GATEWAY_PORT + 10 * (MAX_GATEWAYS - 1) + 1 < SINGLE_PORT);
const _: () = assert!(SINGLE_PORT + 1 < 25_000 && NATS_CLIENT_PORT >= 23_000);

/// Bound on a process's start (JetStream ready, or the gateway's
/// `/healthz`, cluster join included).
const START_LIMIT: Duration = Duration::from_secs(90);

/// One server process.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) pid: u32,
    /// The HTTP port answering `/healthz`.
    pub(crate) http: u16,
    child: Child,
    /// How it was started, to start it again after a kill.
    recipe: Recipe,
}

/// A process's program, arguments, environment and log file.
#[derive(Clone, Debug)]
struct Recipe {
    args: Vec<std::ffi::OsString>,
    env: Vec<(&'static str, String)>,
    log: PathBuf,
}

impl Recipe {
    /// `taskset -c 0 <bin> <args>` with `env`, output appended to `log`.
    fn new(
        bin: &Path,
        args: &[&std::ffi::OsStr],
        env: &[(&'static str, &str)],
        log: &Path,
    ) -> Self {
        let mut all = vec!["-c".into(), "0".into(), bin.as_os_str().to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Self {
            args: all,
            env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            log: log.to_owned(),
        }
    }

    fn spawn(&self, name: &str) -> Result<Child, String> {
        let log = &self.log;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        Command::new("taskset")
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {name} (taskset): {e}"))
    }
}

/// The servers of one system under test.
#[derive(Debug)]
pub(crate) struct Rig {
    /// Empty for the single node.
    pub(crate) nats: Vec<Proc>,
    pub(crate) gateways: Vec<Proc>,
    /// The gateways' client (plain TCP) addresses.
    pub(crate) tcp: Vec<SocketAddr>,
    /// The gateways' HTTP API base URLs.
    pub(crate) api: Vec<String>,
}

impl Rig {
    /// Three JetStream nodes and `gateways` pike-server nodes on them,
    /// data and logs under `dir` (emptied first).
    pub(crate) async fn cluster(
        bins: &Binaries,
        nats_bin: &Path,
        gateways: u16,
        dir: &Path,
    ) -> Result<Self, String> {
        Self::cluster_with_webhook(bins, nats_bin, gateways, dir, None).await
    }

    /// [`Rig::cluster`] whose gateways call the uplink webhook `webhook`
    /// for the bench business.
    pub(crate) async fn cluster_with_webhook(
        bins: &Binaries,
        nats_bin: &Path,
        gateways: u16,
        dir: &Path,
        webhook: Option<&str>,
    ) -> Result<Self, String> {
        if !(1..=MAX_GATEWAYS).contains(&gateways) {
            return Err(format!("1 to {MAX_GATEWAYS} gateways, not {gateways}"));
        }
        fresh_dir(dir)?;
        let mut rig = Self {
            nats: Vec::new(),
            gateways: Vec::new(),
            tcp: Vec::new(),
            api: Vec::new(),
        };
        for n in 0..NATS_NODES {
            let conf = dir.join(format!("nats{n}.conf"));
            write(&conf, &nats_config(n, &dir.join(format!("nats{n}"))))?;
            let recipe = Recipe::new(
                nats_bin,
                &["-c".as_ref(), conf.as_os_str()],
                &[("GOMAXPROCS", "1")],
                &dir.join(format!("nats{n}.log")),
            );
            rig.nats
                .push(Proc::spawn(format!("nats{n}"), recipe, NATS_HTTP_PORT + n)?);
        }
        for node in &mut rig.nats {
            node.wait_healthy().await?;
        }
        let urls: Vec<String> = (0..NATS_NODES)
            .map(|n| format!("\"nats://127.0.0.1:{}\"", NATS_CLIENT_PORT + n))
            .collect();
        for g in 0..gateways {
            let port = GATEWAY_PORT + 10 * g;
            let section = format!(
                "\n[cluster]\nnats = [{}]\nnode = \"gw{g}\"\nreplicas = {NATS_NODES}\n",
                urls.join(", ")
            );
            rig.start_gateway(bins, &dir.join(format!("gw{g}")), port, &section, webhook)?;
        }
        for gateway in &mut rig.gateways {
            gateway.wait_healthy().await?;
        }
        Ok(rig)
    }

    /// One pike-server alone on its embedded store, under `dir`.
    pub(crate) async fn single(bins: &Binaries, dir: &Path) -> Result<Self, String> {
        fresh_dir(dir)?;
        let mut rig = Self {
            nats: Vec::new(),
            gateways: Vec::new(),
            tcp: Vec::new(),
            api: Vec::new(),
        };
        rig.start_gateway(bins, &dir.join("single"), SINGLE_PORT, "", None)?;
        for gateway in &mut rig.gateways {
            gateway.wait_healthy().await?;
        }
        Ok(rig)
    }

    fn start_gateway(
        &mut self,
        bins: &Binaries,
        dir: &Path,
        port: u16,
        cluster_section: &str,
        webhook: Option<&str>,
    ) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ports = PikePorts {
            tcp: SocketAddr::from(([127, 0, 0, 1], port)),
            tls: None,
            quic: None,
            http: SocketAddr::from(([127, 0, 0, 1], port + 1)),
            mqtt: None,
        };
        let config = dir.join("pike.toml");
        let text =
            servers::pike_config(&dir.join("data"), &ports, None, webhook, None) + cluster_section;
        write(&config, &text)?;
        let recipe = Recipe::new(
            &bins.pike_server,
            &["--config".as_ref(), config.as_os_str()],
            &[
                ("TOKIO_WORKER_THREADS", "1"),
                ("RUST_LOG", "warn"),
                ("NO_COLOR", "1"),
            ],
            &dir.join("pike-server.log"),
        );
        let name = dir.file_name().map_or_else(
            || "gateway".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.gateways.push(Proc::spawn(name, recipe, port + 1)?);
        self.tcp.push(ports.tcp);
        self.api.push(format!("http://{}", ports.http));
        Ok(())
    }

    pub(crate) fn gateway_pids(&self) -> Vec<u32> {
        self.gateways.iter().map(|p| p.pid).collect()
    }

    pub(crate) fn nats_pids(&self) -> Vec<u32> {
        self.nats.iter().map(|p| p.pid).collect()
    }

    /// Kills every process (gateways first) and waits for them.
    pub(crate) async fn stop(mut self) {
        for proc in self.gateways.iter_mut().chain(self.nats.iter_mut()) {
            let _ = proc.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), proc.child.wait()).await;
        }
    }
}

impl Proc {
    fn spawn(name: String, recipe: Recipe, http: u16) -> Result<Self, String> {
        let child = recipe.spawn(&name)?;
        let pid = child.id().ok_or_else(|| format!("{name} exited at once"))?;
        Ok(Self {
            name,
            pid,
            http,
            child,
            recipe,
        })
    }

    /// SIGKILLs the process and waits (10 s at most) for it to exit.
    pub(crate) async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Starts the process again as before (its log is appended to) and
    /// waits until it is healthy.
    pub(crate) async fn restart(&mut self) -> Result<(), String> {
        self.child = self.recipe.spawn(&self.name)?;
        self.pid = self
            .child
            .id()
            .ok_or_else(|| format!("{} exited at once", self.name))?;
        self.wait_healthy().await
    }

    /// Polls `/healthz` until it answers 200, within [`START_LIMIT`].
    pub(crate) async fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let port = self.http;
            if tokio::task::spawn_blocking(move || crate::cluster::healthz(port))
                .await
                .unwrap_or(false)
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited ({status}); see its log", self.name));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not healthy within {START_LIMIT:?}; see its log",
                    self.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// NATS node `n`: JetStream on file storage under `store`, fsync before
/// every ack, routes to the other nodes; as `.ci/nats.sh` writes it, on the
/// bench's ports.
pub(crate) fn nats_config(n: u16, store: &Path) -> String {
    let routes: Vec<String> = (0..NATS_NODES)
        .map(|i| format!("    nats-route://127.0.0.1:{}", NATS_ROUTE_PORT + i))
        .collect();
    format!(
        "# Written by `cargo xtask bench --workloads cluster`.\n\
         server_name: bench-n{n}\n\
         listen: 127.0.0.1:{client}\n\
         http: 127.0.0.1:{http}\n\
         max_payload: 1MB\n\
         jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n  max_memory_store: 256MB\n  max_file_store: 4GB\n}}\n\
         cluster {{\n  name: pike-bench\n  listen: 127.0.0.1:{route}\n  routes: [\n{routes}\n  ]\n}}\n",
        client = NATS_CLIENT_PORT + n,
        http = NATS_HTTP_PORT + n,
        route = NATS_ROUTE_PORT + n,
        store = store.display(),
        routes = routes.join("\n"),
    )
}

fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// The pinned nats-server, installed by `.ci/nats.sh install` (once; later
/// calls find it in the tools cache).
pub(crate) fn nats_binary(root: &Path, target: &Path) -> Result<PathBuf, String> {
    let printed = crate::cluster::nats(root, &run_dir(target), &["install"])?;
    let path = printed.lines().last().unwrap_or_default().trim();
    if path.is_empty() {
        return Err(".ci/nats.sh install printed no path".into());
    }
    Ok(PathBuf::from(path))
}

/// Where a run keeps its servers' data and logs: `target/bench/cluster-run`.
pub(crate) fn run_dir(target: &Path) -> PathBuf {
    target.join("bench").join("cluster-run")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_config_is_jetstream_with_fsync_on_the_bench_ports() {
        let text = nats_config(1, Path::new("/tmp/n1"));
        assert!(text.contains("listen: 127.0.0.1:23101\n"), "{text}");
        assert!(text.contains("http: 127.0.0.1:23121\n"), "{text}");
        assert!(text.contains("sync_interval: always"), "{text}");
        assert!(text.contains("store_dir: \"/tmp/n1\""), "{text}");
        for route in 23110..23113 {
            assert!(text.contains(&format!("nats-route://127.0.0.1:{route}")));
        }
    }
}

//! A real 3-node nats-server JetStream cluster on loopback for the tests:
//! free ports, a temp dir, `sync_interval: always`, bounded waits, every
//! process killed on drop. One cluster at a time per test binary.
//!
//! The binary is `$PIKE_NATS_SERVER`, else the pinned install of
//! `bash .ci/nats.sh install` (`$PIKE_TOOLS` or `~/.cache/pike-tools`), else
//! `nats-server` on `PATH`; it must be >= 2.10.23. Without one the test
//! fails and says how to install it: it never skips.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use pike_jetstream::ClusterConfig;

/// Nodes in the cluster.
pub const NODES: usize = 3;
/// Bound on a node (or the whole cluster) becoming healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const INSTALL_HINT: &str =
    "run `bash .ci/nats.sh install` and export PIKE_NATS_SERVER=<the path it prints>";

/// The nats-server binary to run (panics with the install hint).
pub fn nats_server() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("PIKE_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "PIKE_NATS_SERVER={} is not a file; {INSTALL_HINT}",
            path.display()
        );
        candidates.push(path);
    } else {
        let tools = std::env::var_os("PIKE_TOOLS")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/pike-tools")));
        if let Some(tools) = tools {
            candidates.push(tools.join("nats-server-2.15.1/bin/nats-server"));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
        }
    }
    for candidate in candidates {
        if !candidate.is_file() {
            continue;
        }
        let output = Command::new(&candidate).arg("--version").output();
        let version = match output {
            Ok(o) => String::from_utf8_lossy(&o.stdout).to_string(),
            Err(e) => panic!(
                "{}: cannot run it ({e}); {INSTALL_HINT}",
                candidate.display()
            ),
        };
        // "nats-server: v2.15.1"
        let numbers: Vec<u32> = version
            .trim()
            .rsplit('v')
            .next()
            .unwrap_or_default()
            .split('.')
            .map(|p| p.trim().parse().unwrap_or(0))
            .collect();
        let at_least = |want: [u32; 3]| numbers.as_slice() >= want.as_slice();
        assert!(
            at_least([2, 10, 23]),
            "{} is {:?}; the cluster needs nats-server >= 2.10.23 (Jepsen: older ones lose data); {INSTALL_HINT}",
            candidate.display(),
            version.trim()
        );
        return candidate;
    }
    panic!("no nats-server found; {INSTALL_HINT}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Node {
    config: PathBuf,
    log: PathBuf,
    client_port: u16,
    http_port: u16,
    child: Option<Child>,
}

/// A running 3-node cluster; dropped: every node is killed.
pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    _serial: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl NatsCluster {
    /// Writes the configs, starts the 3 nodes and waits (bounded) until
    /// every `/healthz` answers ok. A cluster that does not come up (a port
    /// taken between probing and binding, a starved box) is replaced once by
    /// one on fresh ports; the first failure is printed.
    pub async fn start() -> Self {
        let serial = ONE_AT_A_TIME.lock().await;
        let binary = nats_server();
        let mut failures = Vec::new();
        for _ in 0..2 {
            let mut cluster = Self::launch(binary.clone());
            match cluster.all_ready().await {
                Ok(()) => {
                    if !failures.is_empty() {
                        eprintln!(
                            "a first nats cluster did not come up:\n{}",
                            failures.join("\n")
                        );
                    }
                    cluster._serial = Some(serial);
                    return cluster;
                }
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "no nats cluster came up in 2 attempts:\n{}",
            failures.join("\n")
        );
    }

    async fn all_ready(&mut self) -> Result<(), String> {
        for i in 0..NODES {
            self.try_ready(i).await?;
        }
        Ok(())
    }

    fn launch(binary: PathBuf) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16, u16)> = (0..NODES)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: String = ports
            .iter()
            .map(|(_, route, _)| format!("    nats-route://127.0.0.1:{route}\n"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, route, http)) in ports.iter().enumerate() {
            let n = i + 1;
            let store = dir.path().join(format!("n{n}"));
            std::fs::create_dir_all(&store).expect("store dir");
            let config = dir.path().join(format!("n{n}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: pike-n{n}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{http}\n\
                     max_payload: 1MB\n\
                     jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n  \
                     max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
                     cluster {{\n  name: pike\n  listen: 127.0.0.1:{route}\n  routes: [\n{routes}  ]\n}}\n",
                    store.display()
                ),
            )
            .expect("write config");
            nodes.push(Node {
                config,
                log: dir.path().join(format!("n{n}.log")),
                client_port: *client,
                http_port: *http,
                child: None,
            });
        }
        let mut cluster = Self {
            binary,
            nodes,
            dir,
            _serial: None,
        };
        for i in 0..NODES {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.binary.display()));
        node.child = Some(child);
    }

    /// Waits until node `i` (0-based) reports healthy; panics with the logs
    /// after [`READY_TIMEOUT`] or if it exits.
    pub async fn wait_ready(&mut self, i: usize) {
        if let Err(failure) = self.try_ready(i).await {
            panic!("{failure}");
        }
    }

    async fn try_ready(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if healthz(self.nodes[i].http_port).await {
                return Ok(());
            }
            let exited = match self.nodes[i].child.as_mut() {
                Some(child) => child.try_wait().ok().flatten().map(|s| s.to_string()),
                None => Some("not running".into()),
            };
            if exited.is_some() || Instant::now() >= deadline {
                return Err(format!(
                    "nats node {} {}; the logs:\n{}",
                    i + 1,
                    match exited {
                        Some(status) => format!("exited ({status})"),
                        None => format!("not healthy after {READY_TIMEOUT:?}"),
                    },
                    (0..NODES)
                        .map(|n| format!("--- node {}:\n{}", n + 1, self.log_tail(n)))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Client URL of node `i` (0-based).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Client URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        (0..NODES).map(|i| self.url(i)).collect()
    }

    /// A gateway configuration for node name `node` on the given URLs, R3,
    /// with short test bounds.
    pub fn config(&self, node: &str, urls: Vec<String>) -> ClusterConfig {
        let mut config = ClusterConfig::new(urls, node);
        config.connect_timeout = Duration::from_secs(20);
        config
    }

    /// SIGKILLs node `i` (0-based) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again (same config and data) and waits for it.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// Starts the given (killed) nodes again together, then waits for each:
    /// after a full outage one node alone never becomes healthy (no meta
    /// quorum).
    pub async fn restart_together(&mut self, nodes: &[usize]) {
        for &i in nodes {
            self.kill(i);
            self.spawn(i);
        }
        for &i in nodes {
            self.wait_ready(i).await;
        }
    }

    /// Index (0-based) of the server named `pike-nN`.
    pub fn index_of(server_name: &str) -> Option<usize> {
        server_name
            .strip_prefix("pike-n")?
            .parse::<usize>()
            .ok()?
            .checked_sub(1)
    }

    /// The temp dir holding configs, data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..NODES {
            self.kill(i);
        }
    }
}

/// GET /healthz answers 200 (the whole exchange bounded to 2 s).
async fn healthz(port: u16) -> bool {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream
            .take(64 * 1024)
            .read_to_end(&mut response)
            .await
            .ok()?;
        Some(response.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), exchange).await,
        Ok(Some(true))
    )
}

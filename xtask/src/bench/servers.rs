//! The three servers under test, each started for one measurement with a
//! configuration written for the run, pinned to CPU 0, and killed when its
//! guard is dropped.
//!
//! | Server | Configuration written | Why |
//! |---|---|---|
//! | `pike-server` | plain TCP and HTTP on `127.0.0.1:0` (TLS and QUIC off), one app `bench` with business `bench`, no connection limit, data dir in a temporary directory; `TOKIO_WORKER_THREADS=1` | one worker on one core; the store (redb) cannot be turned off, but idle devices write nothing to it |
//! | mosquitto | `listener <port> 127.0.0.1`, `allow_anonymous true`, `persistence false`, `max_connections -1`, `connection_messages false`, errors and warnings logged | no persistence, no connection limit, no per-connect log line |
//! | nats-server | `listen: 127.0.0.1:<port>`, `max_connections: 1000000`, no JetStream, no monitoring port; `GOMAXPROCS=1` | core NATS only, limit raised, one P on one core |

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The app, business, API key and token secret of the pike runs.
pub(crate) const PIKE_APP: &str = "bench";
pub(crate) const PIKE_BIZ: &str = "bench";
pub(crate) const PIKE_API_KEY: &str = "bench-api-key-not-secret-0001";
pub(crate) const PIKE_TOKEN_SECRET: &str = "bench-token-secret-not-secret-0001";

/// How long a server may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which server.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd)]
pub(crate) enum Kind {
    Pike,
    Mosquitto,
    Nats,
}

impl Kind {
    pub(crate) const ALL: [Self; 3] = [Self::Pike, Self::Mosquitto, Self::Nats];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pike => "pike",
            Self::Mosquitto => "mosquitto",
            Self::Nats => "nats",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Where the binaries are.
#[derive(Clone, Debug)]
pub(crate) struct Binaries {
    pub(crate) pike_server: PathBuf,
    pub(crate) pike: PathBuf,
    pub(crate) xtask: PathBuf,
    pub(crate) mosquitto: Option<PathBuf>,
    pub(crate) nats: Option<PathBuf>,
}

/// A running server; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) pid: u32,
    /// The client port (pike: plain TCP; mosquitto: MQTT; nats: NATS).
    pub(crate) addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `kind` pinned to CPU `cpu` and waits until it accepts.
    pub(crate) async fn start(kind: Kind, bins: &Binaries, cpu: u32) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("pike-bench-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let mut command = Command::new("taskset");
        command
            .arg("-c")
            .arg(cpu.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let port_addr = match kind {
            Kind::Pike => {
                let config = dir.path().join("pike.toml");
                write(&config, &pike_config(&dir.path().join("data")))?;
                command
                    .arg(&bins.pike_server)
                    .arg("--config")
                    .arg(&config)
                    .env("TOKIO_WORKER_THREADS", "1")
                    .env("RUST_LOG", "warn")
                    .env("NO_COLOR", "1")
                    .stdout(Stdio::piped());
                None
            }
            Kind::Mosquitto => {
                let bin = bins
                    .mosquitto
                    .as_ref()
                    .ok_or("mosquitto is not installed")?;
                let addr = free_port()?;
                let config = dir.path().join("mosquitto.conf");
                write(&config, &mosquitto_config(addr))?;
                command
                    .arg(bin)
                    .arg("-c")
                    .arg(&config)
                    .stdout(Stdio::null());
                Some(addr)
            }
            Kind::Nats => {
                let bin = bins.nats.as_ref().ok_or("nats-server is not installed")?;
                let addr = free_port()?;
                let config = dir.path().join("nats.conf");
                write(&config, &nats_config(addr))?;
                command
                    .arg(bin)
                    .arg("-c")
                    .arg(&config)
                    .env("GOMAXPROCS", "1")
                    .stdout(Stdio::null());
                Some(addr)
            }
        };
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {} (taskset): {e}", kind.name()))?;
        let pid = child.id().ok_or("the server exited at once")?;
        let addr = match port_addr {
            Some(addr) => {
                wait_accepting(addr, &mut child).await?;
                addr
            }
            None => pike_banner(&mut child).await?,
        };
        Ok(Self {
            pid,
            addr,
            child,
            _dir: dir,
        })
    }

    /// Kills the server and waits for it to exit.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A port that was free a moment ago (the listener is closed again).
fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

pub(crate) fn pike_config(data_dir: &Path) -> String {
    format!(
        r#"# Written by `cargo xtask bench` for one run.
data_dir = "{data}"

[listen]
tcp = "127.0.0.1:0"
tls = ""
quic = ""
http = "127.0.0.1:0"

[limits]
max_connections = 0

[[apps]]
id = "{PIKE_APP}"
api_key = "{PIKE_API_KEY}"
token_secret = "{PIKE_TOKEN_SECRET}"

[[apps.biz]]
id = "{PIKE_BIZ}"
"#,
        data = data_dir.display()
    )
}

pub(crate) fn mosquitto_config(addr: SocketAddr) -> String {
    format!(
        "# Written by `cargo xtask bench` for one run.\n\
         listener {port} {ip}\n\
         allow_anonymous true\n\
         persistence false\n\
         max_connections -1\n\
         connection_messages false\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n",
        port = addr.port(),
        ip = addr.ip()
    )
}

pub(crate) fn nats_config(addr: SocketAddr) -> String {
    format!(
        "# Written by `cargo xtask bench` for one run.\n\
         listen: {addr}\n\
         max_connections: 1000000\n\
         debug: false\n\
         trace: false\n"
    )
}

/// Polls `addr` until it accepts a connection (then closes it).
async fn wait_accepting(addr: SocketAddr, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited: {status}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("nothing accepts on {addr} after {READY_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads pike-server's banner for its plain TCP address.
async fn pike_banner(child: &mut Child) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(READY_TIMEOUT, async {
        let mut ready = false;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("pike-server ") && line.ends_with(" ready") {
                ready = true;
            } else if ready && let Some(addr) = banner_tcp(&line) {
                return Some(addr);
            }
        }
        None
    })
    .await;
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    match found {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err("pike-server exited before its banner".into()),
        Err(_) => Err(format!("no banner within {READY_TIMEOUT:?}")),
    }
}

/// `  tcp   127.0.0.1:9300` → the address.
fn banner_tcp(line: &str) -> Option<SocketAddr> {
    let mut words = line.split_whitespace();
    (words.next()? == "tcp").then_some(())?;
    words.next()?.parse().ok()
}

/// The version a server reports (best effort, for the report).
pub(crate) async fn version(kind: Kind, bins: &Binaries) -> String {
    let (bin, arg) = match kind {
        Kind::Pike => (Some(&bins.pike_server), "--version"),
        Kind::Mosquitto => (bins.mosquitto.as_ref(), "-h"),
        Kind::Nats => (bins.nats.as_ref(), "--version"),
    };
    let Some(bin) = bin else {
        return "not installed".into();
    };
    let output = tokio::time::timeout(
        Duration::from_secs(5),
        Command::new(bin)
            .arg(arg)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let Ok(Ok(output)) = output else {
        return "unknown".into();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_lines() {
        assert_eq!(
            banner_tcp("  tcp   127.0.0.1:9300"),
            Some("127.0.0.1:9300".parse().unwrap())
        );
        assert_eq!(banner_tcp("  http  127.0.0.1:9380"), None);
        assert_eq!(banner_tcp("  tcp   nonsense"), None);
    }

    #[test]
    fn configs_name_the_port_and_turn_persistence_off() {
        let addr: SocketAddr = "127.0.0.1:18830".parse().unwrap();
        let m = mosquitto_config(addr);
        assert!(m.contains("listener 18830 127.0.0.1\n"));
        assert!(m.contains("persistence false\n"));
        assert!(m.contains("max_connections -1\n"));
        let n = nats_config(addr);
        assert!(n.contains("listen: 127.0.0.1:18830\n"));
        assert!(!n.contains("jetstream"));
        let p = pike_config(Path::new("/tmp/x/data"));
        let value: toml_like::Doc = toml_like::parse(&p);
        assert_eq!(value.get("data_dir"), Some("\"/tmp/x/data\""));
        assert_eq!(value.get("tcp"), Some("\"127.0.0.1:0\""));
        assert_eq!(value.get("tls"), Some("\"\""));
        assert_eq!(
            value.get("token_secret"),
            Some(&*format!("\"{PIKE_TOKEN_SECRET}\""))
        );
    }

    /// Just enough of TOML's `key = value` lines to check the config.
    mod toml_like {
        pub(super) struct Doc(Vec<(String, String)>);

        impl Doc {
            pub(super) fn get(&self, key: &str) -> Option<&str> {
                self.0
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            }
        }

        pub(super) fn parse(text: &str) -> Doc {
            Doc(text
                .lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect())
        }
    }

    #[test]
    fn kinds_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.name()), Some(kind));
        }
        assert_eq!(Kind::parse("emqx"), None);
    }
}

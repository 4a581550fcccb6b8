//! The three servers under test, each started for one measurement with a
//! configuration written for the run, pinned to CPU 0, and killed when its
//! guard is dropped.
//!
//! | Server | Configuration written | Why |
//! |---|---|---|
//! | `pike-server` | plain TCP and HTTP on fixed loopback ports chosen per run (TLS with the run's certificate, QUIC and the plain MQTT listener when the workload needs them), one app `bench` with business `bench` (its uplink webhook pointing at the generator's sink in S5), no connection limit, room rate caps off (`droppable_rate = 0`, `publisher_rate = 0`), data dir in a temporary directory; `TOKIO_WORKER_THREADS=1` | one worker on one core; the peers have no rate caps; the store (redb) cannot be turned off, but only reliable traffic writes to it (none in S2–S7) |
//! | mosquitto | `listener <port> 127.0.0.1` (and a TLS 1.3 listener with the run's certificate when needed), `allow_anonymous true`, `persistence false`, `max_connections -1`, `connection_messages false`, errors and warnings logged | no persistence, no connection limit, no per-connect log line |
//! | nats-server | `listen: 127.0.0.1:<port>` (with a `tls` block when needed: TLS on the one client port), `max_connections: 1000000`, no JetStream, no monitoring port; `GOMAXPROCS=1` | core NATS only, limit raised, one P on one core |
//!
//! Ports are fixed in the configuration so a server can be restarted on
//! the same ones (S8).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

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

    /// The `--proto` of `xtask bench-client` for a peer (`None` for pike,
    /// driven by `pike bench`).
    pub(crate) fn client_proto(self) -> Option<&'static str> {
        match self {
            Self::Pike => None,
            Self::Mosquitto => Some("mqtt"),
            Self::Nats => Some("nats"),
        }
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

/// What to start: the server and the extras a workload needs.
#[derive(Clone, Debug)]
pub(crate) struct ServerSpec {
    pub(crate) kind: Kind,
    /// A TLS listener too, with this certificate (S1 over TLS, S8).
    pub(crate) tls: Option<TlsFiles>,
    /// pike: a QUIC listener too (with the `tls` certificate).
    pub(crate) quic: bool,
    /// pike: the uplink webhook of business `bench` (S5).
    pub(crate) webhook: Option<String>,
    /// pike: `uplink_batch_max` of business `bench` (1: one message per
    /// webhook request).
    pub(crate) uplink_batch_max: usize,
    /// pike: the receipt webhook of business `bench` (S3 acked with
    /// receipts).
    pub(crate) receipt_webhook: Option<String>,
    /// pike: retention limits other than the shipped ones (the soak).
    pub(crate) retention: Option<PikeRetention>,
    /// pike: the plain MQTT listener too (`[mqtt] listen`), for MQTT
    /// devices.
    pub(crate) mqtt: bool,
}

/// Retention limits of a pike run, for a load that must reach a steady
/// state: what the store and the rooms keep turns over instead of growing
/// for days (the shipped defaults keep 10,000 messages per alias for 7
/// days and a room's 1,024 reliable messages while the room exists).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PikeRetention {
    /// `[store] max_messages_per_stream`.
    pub(crate) max_messages_per_stream: u64,
    /// `[rooms.defaults] reliable_retention_secs`.
    pub(crate) room_reliable_retention_secs: u64,
    /// `[store] uplink_retention_secs`.
    pub(crate) uplink_retention_secs: u64,
    /// `[store] cache_mib`.
    pub(crate) cache_mib: u64,
}

impl ServerSpec {
    /// `kind` with plain TCP only.
    pub(crate) fn plain(kind: Kind) -> Self {
        Self {
            kind,
            tls: None,
            quic: false,
            webhook: None,
            uplink_batch_max: 1,
            receipt_webhook: None,
            retention: None,
            mqtt: false,
        }
    }
}

/// A certificate and key (PEM files) every server of a run uses for TLS,
/// and the certificate's SHA-256 fingerprint for pinning.
#[derive(Clone, Debug)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) fingerprint: String,
}

impl TlsFiles {
    /// Generates a self-signed ECDSA P-256 certificate for `localhost` and
    /// `127.0.0.1` into `dir`.
    pub(crate) fn generate(dir: &Path) -> Result<Self, String> {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certified =
            rcgen::generate_simple_self_signed(names).map_err(|e| format!("certificate: {e}"))?;
        let cert = dir.join("bench-cert.pem");
        let key = dir.join("bench-key.pem");
        write(&cert, &certified.cert.pem())?;
        write(&key, &certified.signing_key.serialize_pem())?;
        let digest = ring::digest::digest(&ring::digest::SHA256, certified.cert.der());
        let fingerprint = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            cert,
            key,
            fingerprint,
        })
    }
}

/// A running server; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) pid: u32,
    /// The client port (pike: plain TCP; mosquitto: MQTT; nats: NATS).
    pub(crate) addr: SocketAddr,
    /// The TLS client port, when the spec asked for one.
    pub(crate) tls_addr: Option<SocketAddr>,
    /// pike's QUIC port (UDP), when the spec asked for one.
    pub(crate) quic_addr: Option<SocketAddr>,
    /// pike's HTTP API.
    pub(crate) http_addr: Option<SocketAddr>,
    /// pike's plain MQTT listener, when the spec asked for one.
    pub(crate) mqtt_addr: Option<SocketAddr>,
    spec: ServerSpec,
    cpu: u32,
    config: PathBuf,
    child: Child,
    /// The run's directory: configuration and (pike) `data/`.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server of `spec` pinned to CPU `cpu`, on ports chosen now
    /// and written into its configuration (so a restart reuses them), and
    /// waits until it accepts.
    pub(crate) async fn start_spec(
        spec: &ServerSpec,
        bins: &Binaries,
        cpu: u32,
    ) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("pike-bench-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let addr = free_port()?;
        // nats-server serves TLS on its one client port.
        let tls_addr = match (&spec.tls, spec.kind) {
            (None, _) => None,
            (Some(_), Kind::Nats) => Some(addr),
            (Some(_), _) => Some(free_port()?),
        };
        let http_addr = (spec.kind == Kind::Pike).then(free_port).transpose()?;
        let quic_addr = (spec.kind == Kind::Pike && spec.quic && spec.tls.is_some())
            .then(free_udp_port)
            .transpose()?;
        let mqtt_addr = (spec.kind == Kind::Pike && spec.mqtt)
            .then(free_port)
            .transpose()?;
        let (name, text) = match spec.kind {
            Kind::Pike => (
                "pike.toml",
                pike_config(
                    &dir.path().join("data"),
                    &PikePorts {
                        tcp: addr,
                        tls: tls_addr,
                        quic: quic_addr,
                        http: http_addr.unwrap_or(addr),
                        mqtt: mqtt_addr,
                    },
                    spec.tls.as_ref(),
                    spec.webhook.as_deref(),
                    spec.retention,
                ) + &batch_line(spec.uplink_batch_max)
                    + &receipt_lines(spec.receipt_webhook.as_deref()),
            ),
            Kind::Mosquitto => (
                "mosquitto.conf",
                mosquitto_config(addr, tls_addr.zip(spec.tls.as_ref())),
            ),
            Kind::Nats => (
                "nats.conf",
                nats_config(addr, tls_addr.zip(spec.tls.as_ref())),
            ),
        };
        let config = dir.path().join(name);
        write(&config, &text)?;
        let mut child = spawn(spec.kind, bins, cpu, &config)?;
        let pid = child.id().ok_or("the server exited at once")?;
        wait_accepting(addr, &mut child).await?;
        if let Some(tls) = tls_addr {
            wait_accepting(tls, &mut child).await?;
        }
        if let Some(http) = http_addr {
            wait_accepting(http, &mut child).await?;
        }
        if let Some(mqtt) = mqtt_addr {
            wait_accepting(mqtt, &mut child).await?;
        }
        Ok(Self {
            pid,
            addr,
            tls_addr,
            quic_addr,
            http_addr,
            mqtt_addr,
            spec: spec.clone(),
            cpu,
            config,
            child,
            dir,
        })
    }

    /// pike's data dir (the store).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// pike's HTTP API base URL.
    pub(crate) fn api_url(&self) -> Option<String> {
        self.http_addr.map(|a| format!("http://{a}"))
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub(crate) async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Starts the server again with the same configuration, data and
    /// ports (after [`Server::kill`]); waits until it accepts.
    pub(crate) async fn restart(&mut self, bins: &Binaries) -> Result<(), String> {
        self.child = spawn(self.spec.kind, bins, self.cpu, &self.config)?;
        self.pid = self.child.id().ok_or("the server exited at once")?;
        wait_accepting(self.addr, &mut self.child).await?;
        if let Some(tls) = self.tls_addr {
            wait_accepting(tls, &mut self.child).await?;
        }
        Ok(())
    }

    /// Kills the server and waits for it to exit.
    pub(crate) async fn stop(mut self) {
        self.kill().await;
    }
}

/// Starts `kind` with `config`, pinned to `cpu`, output discarded.
fn spawn(kind: Kind, bins: &Binaries, cpu: u32, config: &Path) -> Result<Child, String> {
    let mut command = Command::new("taskset");
    command
        .arg("-c")
        .arg(cpu.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match kind {
        Kind::Pike => {
            command
                .arg(&bins.pike_server)
                .arg("--config")
                .arg(config)
                .env("TOKIO_WORKER_THREADS", "1")
                .env("RUST_LOG", "warn")
                .env("NO_COLOR", "1");
        }
        Kind::Mosquitto => {
            let bin = bins
                .mosquitto
                .as_ref()
                .ok_or("mosquitto is not installed")?;
            command.arg(bin).arg("-c").arg(config);
        }
        Kind::Nats => {
            let bin = bins.nats.as_ref().ok_or("nats-server is not installed")?;
            command
                .arg(bin)
                .arg("-c")
                .arg(config)
                .env("GOMAXPROCS", "1");
        }
    }
    command
        .spawn()
        .map_err(|e| format!("cannot start {} (taskset): {e}", kind.name()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A port that was free a moment ago (the listener is closed again).
pub(crate) fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

/// pike's listeners for one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PikePorts {
    pub(crate) tcp: SocketAddr,
    pub(crate) tls: Option<SocketAddr>,
    pub(crate) quic: Option<SocketAddr>,
    pub(crate) http: SocketAddr,
    /// The plain MQTT listener (none: `[mqtt]` stays off).
    pub(crate) mqtt: Option<SocketAddr>,
}

pub(crate) fn pike_config(
    data_dir: &Path,
    ports: &PikePorts,
    tls: Option<&TlsFiles>,
    webhook: Option<&str>,
    retention: Option<PikeRetention>,
) -> String {
    let tls_listen = ports.tls.map_or_else(String::new, |a| a.to_string());
    let quic_listen = ports.quic.map_or_else(String::new, |a| a.to_string());
    let tls_section = tls.map_or_else(String::new, |t| {
        format!(
            "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            t.cert.display(),
            t.key.display()
        )
    });
    let (store_section, room_retention) = retention.map_or_else(
        || (String::new(), String::new()),
        |r| {
            (
                format!(
                    "\n[store]\nmax_messages_per_stream = {}\nuplink_retention_secs = {}\ncache_mib = {}\n",
                    r.max_messages_per_stream, r.uplink_retention_secs, r.cache_mib
                ),
                format!(
                    "reliable_retention_secs = {}\n",
                    r.room_reliable_retention_secs
                ),
            )
        },
    );
    let webhooks = webhook.map_or_else(String::new, |url| {
        format!("uplink_webhooks = [\"{url}\"]\n")
    });
    // MQTT devices: the plain listener, its limits as shipped (100,000
    // connections, more than one process holds here).
    let mqtt_section = ports.mqtt.map_or_else(String::new, |addr| {
        format!("\n[mqtt]\nlisten = \"{addr}\"\n")
    });
    format!(
        r#"# Written by `cargo xtask bench` for one run.
data_dir = "{data}"

[listen]
tcp = "{tcp}"
tls = "{tls_listen}"
quic = "{quic_listen}"
http = "{http}"

[limits]
max_connections = 0
{tls_section}{store_section}{mqtt_section}
# Rooms: no rate caps (the peers have none); batching as shipped.
[rooms.defaults]
droppable_rate = 0
publisher_rate = 0
{room_retention}
[[apps]]
id = "{PIKE_APP}"
api_key = "{PIKE_API_KEY}"
token_secret = "{PIKE_TOKEN_SECRET}"

[[apps.biz]]
id = "{PIKE_BIZ}"
{webhooks}"#,
        data = data_dir.display(),
        tcp = ports.tcp,
        http = ports.http,
    )
}

/// The business's `uplink_batch_max` line, appended to [`pike_config`]'s
/// text (whose last table is the business); none for 1, the default.
fn batch_line(uplink_batch_max: usize) -> String {
    if uplink_batch_max > 1 {
        format!("uplink_batch_max = {uplink_batch_max}\n")
    } else {
        String::new()
    }
}

/// The business's `receipt_webhook` line and a `[receipts]` table that
/// tracks every message of a run, appended after [`batch_line`]; none
/// without a webhook. The shipped `max_messages` (100,000) would stop
/// tracking after the first 100,000 pushes of a sweep (later ones are
/// pushed without receipts), so a run lifts it to the most allowed.
fn receipt_lines(webhook: Option<&str>) -> String {
    webhook.map_or_else(String::new, |url| {
        format!("receipt_webhook = \"{url}\"\n\n[receipts]\nmax_messages = 10000000\n")
    })
}

pub(crate) fn mosquitto_config(addr: SocketAddr, tls: Option<(SocketAddr, &TlsFiles)>) -> String {
    let mut text = format!(
        "# Written by `cargo xtask bench` for one run.\n\
         per_listener_settings false\n\
         allow_anonymous true\n\
         persistence false\n\
         max_connections -1\n\
         connection_messages false\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         listener {port} {ip}\n",
        port = addr.port(),
        ip = addr.ip()
    );
    if let Some((tls_addr, files)) = tls {
        text.push_str(&format!(
            "listener {port} {ip}\ncertfile {cert}\nkeyfile {key}\ntls_version tlsv1.3\n",
            port = tls_addr.port(),
            ip = tls_addr.ip(),
            cert = files.cert.display(),
            key = files.key.display()
        ));
    }
    text
}

pub(crate) fn nats_config(addr: SocketAddr, tls: Option<(SocketAddr, &TlsFiles)>) -> String {
    let mut text = format!(
        "# Written by `cargo xtask bench` for one run.\n\
         listen: {addr}\n\
         max_connections: 1000000\n\
         debug: false\n\
         trace: false\n"
    );
    if let Some((_, files)) = tls {
        // nats-server serves TLS on its one client port (TLS for every
        // client); a TLS run gets its own server.
        text.push_str(&format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
            files.cert.display(),
            files.key.display()
        ));
    }
    text
}

/// A UDP port that was free a moment ago.
fn free_udp_port() -> Result<SocketAddr, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| format!("no free UDP port: {e}"))
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
    fn configs_name_the_port_and_turn_persistence_off() {
        let addr: SocketAddr = "127.0.0.1:18830".parse().unwrap();
        let m = mosquitto_config(addr, None);
        assert!(m.contains("listener 18830 127.0.0.1\n"));
        assert!(m.contains("persistence false\n"));
        assert!(m.contains("max_connections -1\n"));
        let n = nats_config(addr, None);
        assert!(n.contains("listen: 127.0.0.1:18830\n"));
        assert!(!n.contains("jetstream"));
        let ports = PikePorts {
            tcp: addr,
            tls: None,
            quic: None,
            http: "127.0.0.1:18831".parse().unwrap(),
            mqtt: None,
        };
        let p = pike_config(Path::new("/tmp/x/data"), &ports, None, None, None);
        let value: toml_like::Doc = toml_like::parse(&p);
        assert_eq!(value.get("data_dir"), Some("\"/tmp/x/data\""));
        assert_eq!(value.get("tcp"), Some("\"127.0.0.1:18830\""));
        assert_eq!(value.get("http"), Some("\"127.0.0.1:18831\""));
        assert_eq!(value.get("publisher_rate"), Some("0"));
        assert_eq!(value.get("max_messages_per_stream"), None);
        let retention = PikeRetention {
            max_messages_per_stream: 20,
            room_reliable_retention_secs: 60,
            uplink_retention_secs: 120,
            cache_mib: 8,
        };
        let p = pike_config(
            Path::new("/tmp/x/data"),
            &ports,
            None,
            None,
            Some(retention),
        );
        let value: toml_like::Doc = toml_like::parse(&p);
        assert_eq!(value.get("max_messages_per_stream"), Some("20"));
        assert_eq!(value.get("reliable_retention_secs"), Some("60"));
        assert_eq!(value.get("uplink_retention_secs"), Some("120"));
        assert_eq!(value.get("cache_mib"), Some("8"));
        assert!(p.contains("\n[store]\nmax_messages_per_stream = 20\n"));
        assert_eq!(value.get("tls"), Some("\"\""));
        assert!(!p.contains("[mqtt]"), "MQTT off unless asked for");
        let with_mqtt = PikePorts {
            mqtt: Some("127.0.0.1:18832".parse().unwrap()),
            ..ports
        };
        let p = pike_config(Path::new("/tmp/x/data"), &with_mqtt, None, None, None);
        assert!(
            p.contains("\n[mqtt]\nlisten = \"127.0.0.1:18832\"\n"),
            "{p}"
        );
        // Before the app tables, so the keys stay in [mqtt].
        assert!(p.find("[mqtt]") < p.find("[[apps]]"));
        assert_eq!(
            value.get("token_secret"),
            Some(&*format!("\"{PIKE_TOKEN_SECRET}\""))
        );
    }

    #[test]
    fn receipts_add_the_webhook_to_the_business_and_lift_max_messages() {
        let ports = PikePorts {
            tcp: "127.0.0.1:18830".parse().unwrap(),
            tls: None,
            quic: None,
            http: "127.0.0.1:18831".parse().unwrap(),
            mqtt: None,
        };
        let base = pike_config(Path::new("/tmp/x/data"), &ports, None, None, None);
        assert_eq!(receipt_lines(None), "");
        let p = base.clone() + &batch_line(1) + &receipt_lines(Some("http://127.0.0.1:9/receipts"));
        // The webhook belongs to the business: after its table's header,
        // before the `[receipts]` table.
        let biz = p.find("[[apps.biz]]").unwrap();
        let hook = p
            .find("receipt_webhook = \"http://127.0.0.1:9/receipts\"\n")
            .unwrap();
        let table = p.find("\n[receipts]\nmax_messages = 10000000\n").unwrap();
        assert!(biz < hook && hook < table, "{p}");
        assert_eq!(p.matches("\n[").count(), base.matches("\n[").count() + 1);
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

//! Workload S1, idle connections: N logged-in (pike) or subscribed (MQTT,
//! NATS) connections that then do nothing.
//!
//! One measurement of one server:
//! 1. start the server fresh, pinned to CPU 0; wait until its RSS is stable
//!    (the baseline);
//! 2. start the generator process(es) pinned to CPU 1 and wait for every
//!    `connected` line (connect + login/subscribe rate);
//! 3. wait until the server's RSS is stable again; RSS delta / connections
//!    is the user-space memory per connection; `/proc/meminfo` Slab delta /
//!    connections the kernel memory per connection (both socket ends, and
//!    anything else the machine did meanwhile);
//! 4. server CPU time (utime + stime) over an idle window;
//! 5. close the generators' stdin (they close their connections and
//!    report), kill the server.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;

use super::procfs;
use super::servers::{self, Binaries, Kind, Server, ServerSpec, TlsFiles};

/// How S1's connections reach the server.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum S1Transport {
    Tcp,
    Tls,
    /// pike only.
    Quic,
    /// pike only: WebSocket (`GET /v1/ws` on the HTTP listener).
    Ws,
    /// MQTT 3.1.1 devices over plain TCP, for pike and mosquitto: the
    /// generator is `xtask bench-client --proto mqtt` for both, in pike
    /// mode on pike's MQTT listener (issue 17).
    Mqtt,
}

impl S1Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "plain TCP",
            Self::Tls => "TLS 1.3",
            Self::Quic => "QUIC",
            Self::Ws => "WebSocket",
            Self::Mqtt => "MQTT 3.1.1 (plain TCP)",
        }
    }

    /// The name of `kind`'s column in this transport's table: `pike MQTT`
    /// for pike's MQTT devices, else the server's name.
    pub(crate) fn column(self, kind: Kind) -> String {
        match (self, kind) {
            (Self::Mqtt, Kind::Pike) => "pike MQTT".to_owned(),
            _ => kind.name().to_owned(),
        }
    }
}

/// Settings of S1.
#[derive(Clone, Debug)]
pub(crate) struct S1Settings {
    pub(crate) connections: usize,
    /// Most connections one generator process opens.
    pub(crate) per_generator: usize,
    pub(crate) concurrency: usize,
    pub(crate) cpu_window: Duration,
    /// Longest wait for a stable RSS.
    pub(crate) settle_limit: Duration,
    pub(crate) connect_deadline: Duration,
    pub(crate) transport: S1Transport,
    /// The certificate for TLS and QUIC.
    pub(crate) tls: Option<TlsFiles>,
    /// Server processes sharing the connections (more than one when the
    /// connections exceed one process's open-file limit).
    pub(crate) servers: usize,
}

/// One measurement of one server.
#[derive(Clone, Debug, Default)]
pub(crate) struct S1Result {
    pub(crate) server: String,
    pub(crate) requested: usize,
    pub(crate) connected: u64,
    pub(crate) failed: u64,
    pub(crate) generators: usize,
    pub(crate) connect_seconds: f64,
    pub(crate) connect_rate: f64,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    pub(crate) rss_settled: bool,
    pub(crate) rss_per_conn_bytes: f64,
    pub(crate) slab_per_conn_bytes: f64,
    /// `/proc/slabinfo`: the socket caches ([`procfs::SOCKET_CACHES`]),
    /// both ends.
    pub(crate) socket_slab_per_conn_bytes: f64,
    pub(crate) idle_cpu_pct: f64,
    pub(crate) server_threads: u64,
    pub(crate) disconnects: u64,
    pub(crate) first_error: Option<String>,
}

impl S1Result {
    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "server": self.server,
            "requested": self.requested,
            "connected": self.connected,
            "failed": self.failed,
            "generators": self.generators,
            "connect_seconds": self.connect_seconds,
            "connect_rate": self.connect_rate,
            "rss_before_kib": self.rss_before_kib,
            "rss_after_kib": self.rss_after_kib,
            "rss_settled": self.rss_settled,
            "rss_per_conn_bytes": self.rss_per_conn_bytes,
            "slab_per_conn_bytes": self.slab_per_conn_bytes,
            "socket_slab_per_conn_bytes": self.socket_slab_per_conn_bytes,
            "idle_cpu_pct": self.idle_cpu_pct,
            "server_threads": self.server_threads,
            "disconnects": self.disconnects,
            "first_error": self.first_error,
        })
    }
}

/// Splits `n` connections over generators of at most `per` each:
/// `(first index, count)` per generator, as even as possible.
pub(crate) fn split(n: usize, per: usize) -> Vec<(usize, usize)> {
    if n == 0 {
        return Vec::new();
    }
    let generators = n.div_ceil(per.max(1));
    let base = n / generators;
    let extra = n % generators;
    let mut first = 0;
    (0..generators)
        .map(|i| {
            let count = base + usize::from(i < extra);
            let range = (first, count);
            first += count;
            range
        })
        .collect()
}

/// Measures S1 on one server kind (`settings.servers` processes of it).
pub(crate) async fn measure(
    kind: Kind,
    bins: &Binaries,
    settings: &S1Settings,
    clk_tck: u64,
) -> Result<S1Result, String> {
    let spec = ServerSpec {
        kind,
        tls: settings.tls.clone(),
        quic: settings.transport == S1Transport::Quic,
        webhook: None,
        uplink_batch_max: 1,
        receipt_webhook: None,
        retention: None,
        mqtt: settings.transport == S1Transport::Mqtt,
    };
    let mut servers = Vec::new();
    for _ in 0..settings.servers.max(1) {
        servers.push(Server::start_spec(&spec, bins, 0).await?);
    }
    let pids: Vec<u32> = servers.iter().map(|s| s.pid).collect();
    let mut rss_before = 0;
    for pid in &pids {
        rss_before += settle(*pid, Duration::from_secs(1), settings.settle_limit)
            .await?
            .0;
    }
    let slab_before = procfs::slab_kib().map_err(|e| e.to_string())?;
    let sockets_before = procfs::slab_caches_bytes(&procfs::SOCKET_CACHES).ok();

    let mut generators = Vec::new();
    let per_server = split(
        settings.connections,
        settings.connections.div_ceil(servers.len()),
    );
    let mut index = 0;
    for (server, (server_first, server_count)) in servers.iter().zip(per_server) {
        for (first, count) in split(server_count, settings.per_generator) {
            generators.push(Generator::spawn(
                kind,
                bins,
                server,
                settings,
                index,
                server_first + first,
                count,
            )?);
            index += 1;
        }
    }
    let mut result = S1Result {
        server: settings.transport.column(kind),
        requested: settings.connections,
        generators: generators.len(),
        rss_before_kib: rss_before,
        ..S1Result::default()
    };
    let wait = settings.connect_deadline + Duration::from_secs(30);
    let mut slowest: f64 = 0.0;
    for generator in &mut generators {
        let line = generator.next_json("connected", wait).await?;
        result.connected += line["connected"].as_u64().unwrap_or(0);
        result.failed += line["failed"].as_u64().unwrap_or(0);
        slowest = slowest.max(line["seconds"].as_f64().unwrap_or(0.0));
        if result.first_error.is_none() {
            result.first_error = line["first_error"].as_str().map(str::to_owned);
        }
    }
    result.connect_seconds = slowest;
    result.connect_rate = result.connected as f64 / slowest.max(1e-9);

    let mut rss_after = 0;
    let mut all_settled = true;
    for pid in &pids {
        let (rss, settled) = settle(*pid, Duration::from_secs(1), settings.settle_limit).await?;
        rss_after += rss;
        all_settled &= settled;
    }
    let slab_after = procfs::slab_kib().map_err(|e| e.to_string())?;
    let sockets_after = procfs::slab_caches_bytes(&procfs::SOCKET_CACHES).ok();
    result.rss_after_kib = rss_after;
    result.rss_settled = all_settled;
    let n = result.connected.max(1) as f64;
    result.rss_per_conn_bytes = (rss_after as f64 - rss_before as f64) * 1024.0 / n;
    result.slab_per_conn_bytes = (slab_after as f64 - slab_before as f64) * 1024.0 / n;
    result.socket_slab_per_conn_bytes = match (sockets_before, sockets_after) {
        (Some(a), Some(b)) => (b as f64 - a as f64) / n,
        _ => f64::NAN,
    };
    result.server_threads = pids
        .iter()
        .map(|pid| procfs::threads(*pid).unwrap_or(0))
        .sum();

    let ticks = |pids: &[u32]| -> Result<u64, String> {
        pids.iter()
            .map(|pid| procfs::cpu_ticks(*pid).map_err(|e| e.to_string()))
            .sum()
    };
    let ticks_before = ticks(&pids)?;
    let window_start = Instant::now();
    tokio::time::sleep(settings.cpu_window).await;
    let ticks_after = ticks(&pids)?;
    let window = window_start.elapsed().as_secs_f64();
    result.idle_cpu_pct =
        (ticks_after.saturating_sub(ticks_before)) as f64 / clk_tck.max(1) as f64 / window * 100.0;

    for generator in &mut generators {
        generator.close_stdin();
    }
    for generator in &mut generators {
        if let Ok(report) = generator.next_json("report", Duration::from_secs(20)).await {
            result.disconnects += report["hold"]["disconnects"].as_u64().unwrap_or(0);
        }
        generator.finish().await;
    }
    for server in servers {
        server.stop().await;
    }
    Ok(result)
}

/// Polls the RSS of `pid` every 250 ms until five samples in a row (1 s)
/// stay within max(64 KiB, 0.5 %), waiting at least `min` and at most
/// `limit`. Returns the last sample and whether it settled.
pub(crate) async fn settle(
    pid: u32,
    min: Duration,
    limit: Duration,
) -> Result<(u64, bool), String> {
    let start = Instant::now();
    let mut samples: Vec<u64> = Vec::new();
    loop {
        let rss = procfs::rss_kib(pid).map_err(|e| format!("server gone? {e}"))?;
        samples.push(rss);
        let elapsed = start.elapsed();
        if elapsed >= min && is_stable(&samples) {
            return Ok((rss, true));
        }
        if elapsed >= limit {
            return Ok((rss, false));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the last five samples agree within max(64 KiB, 0.5 %).
pub(crate) fn is_stable(samples: &[u64]) -> bool {
    let Some(last) = samples.len().checked_sub(5).map(|i| &samples[i..]) else {
        return false;
    };
    let (lo, hi) = last
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    hi - lo <= (hi / 200).max(64)
}

/// A generator process, pinned to CPU 1, killed when dropped.
struct Generator {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Generator {
    fn spawn(
        kind: Kind,
        bins: &Binaries,
        server: &Server,
        settings: &S1Settings,
        index: usize,
        first: usize,
        count: usize,
    ) -> Result<Self, String> {
        // Each generator dials from its own /24: 127.0.(10 + index).1..=32.
        let net = format!("127.0.{}", 10 + index);
        let (addr, pin) = match settings.transport {
            S1Transport::Tcp => (server.addr, None),
            S1Transport::Tls => (
                server.tls_addr.ok_or("the server has no TLS listener")?,
                settings.tls.as_ref(),
            ),
            S1Transport::Quic => (
                server.quic_addr.ok_or("the server has no QUIC listener")?,
                settings.tls.as_ref(),
            ),
            S1Transport::Ws => (
                server.http_addr.ok_or("the server has no HTTP listener")?,
                None,
            ),
            S1Transport::Mqtt if kind == Kind::Pike => (
                server.mqtt_addr.ok_or("the server has no MQTT listener")?,
                None,
            ),
            S1Transport::Mqtt => (server.addr, None),
        };
        // pike's MQTT devices: the MQTT generator in pike mode.
        let pike_mqtt = kind == Kind::Pike && settings.transport == S1Transport::Mqtt;
        let hold = (settings.connect_deadline + settings.settle_limit * 2 + settings.cpu_window)
            .as_secs()
            + 120;
        let mut command = Command::new("taskset");
        command.arg("-c").arg("1");
        match kind {
            Kind::Pike if !pike_mqtt => {
                command.arg(&bins.pike).args([
                    "--app",
                    servers::PIKE_APP,
                    "bench",
                    "idle",
                    "--biz",
                    servers::PIKE_BIZ,
                    "--token-secret",
                    servers::PIKE_TOKEN_SECRET,
                    "--json",
                    "--quiet",
                    "--stdin-stop",
                ]);
                let transport = match settings.transport {
                    S1Transport::Tcp => None,
                    S1Transport::Tls => Some("tls"),
                    S1Transport::Quic => Some("quic"),
                    S1Transport::Ws => Some("ws"),
                    S1Transport::Mqtt => None,
                };
                if let Some(transport) = transport {
                    command.args(["--transport", transport]);
                }
                if let Some(tls) = pin {
                    command.arg("--pin").arg(&tls.fingerprint);
                }
                command
                    .arg("--server")
                    .arg(addr.to_string())
                    .arg("--connections")
                    .arg(count.to_string())
                    .arg("--first-alias")
                    .arg(first.to_string())
                    .arg("--source-net")
                    .arg(&net)
                    .arg("--concurrency")
                    .arg(settings.concurrency.to_string())
                    .arg("--connect-deadline")
                    .arg(settings.connect_deadline.as_secs().to_string())
                    .arg("--hold")
                    .arg(hold.to_string());
            }
            Kind::Pike | Kind::Mosquitto | Kind::Nats => {
                let proto = kind.client_proto().unwrap_or("mqtt");
                command
                    .arg(&bins.xtask)
                    .args(["bench-client", "--proto", proto, "--stdin-stop"]);
                if pike_mqtt {
                    command
                        .args(["--pike-app", servers::PIKE_APP])
                        .args(["--pike-biz", servers::PIKE_BIZ])
                        .args(["--token-secret", servers::PIKE_TOKEN_SECRET]);
                }
                if let Some(tls) = pin {
                    command.arg("--tls").arg("--ca").arg(&tls.cert);
                }
                command
                    .arg("--server")
                    .arg(addr.to_string())
                    .arg("--connections")
                    .arg(count.to_string())
                    .arg("--first")
                    .arg(first.to_string())
                    .arg("--source-net")
                    .arg(&net)
                    .arg("--concurrency")
                    .arg(peer_concurrency(kind, settings.concurrency).to_string())
                    .arg("--connect-deadline")
                    .arg(settings.connect_deadline.as_secs().to_string())
                    .arg("--hold")
                    .arg(hold.to_string());
            }
        }
        let mut child = command
            .current_dir(std::env::temp_dir())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the generator: {e}"))?;
        let stdout = child.stdout.take().ok_or("generator without stdout")?;
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The next JSON line whose `kind` is `kind`.
    async fn next_json(&mut self, kind: &str, limit: Duration) -> Result<Value, String> {
        let found = tokio::time::timeout(limit, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && value["kind"] == kind
                {
                    return Some(value);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(format!("the generator ended without a `{kind}` line")),
            Err(_) => Err(format!(
                "no `{kind}` line from the generator within {limit:?}"
            )),
        }
    }

    /// Ends the hold: the generator closes its connections and reports.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit (10 s), else kills it.
    async fn finish(&mut self) {
        self.stdin = None;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
    }
}

/// Connects in flight for a peer: mosquitto listens with a backlog of
/// 100, so more than 64 concurrent connects overflow it and the overflow
/// retries a second later (its connect rate would then measure the
/// client's retry timer).
pub(crate) fn peer_concurrency(kind: Kind, wanted: usize) -> usize {
    if kind == Kind::Mosquitto {
        wanted.min(64)
    } else {
        wanted
    }
}

/// Whether `path` exists (for binaries).
pub(crate) fn exists(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_evenly_within_the_limit() {
        assert_eq!(split(5000, 19_800), vec![(0, 5000)]);
        assert_eq!(split(19_800, 19_800), vec![(0, 19_800)]);
        assert_eq!(split(19_801, 19_800), vec![(0, 9901), (9901, 9900)]);
        assert_eq!(split(10, 3), vec![(0, 3), (3, 3), (6, 2), (8, 2)]);
        assert!(split(0, 10).is_empty());
        let parts = split(100_000, 19_800);
        assert_eq!(parts.len(), 6);
        assert_eq!(parts.iter().map(|p| p.1).sum::<usize>(), 100_000);
        assert!(parts.iter().all(|p| p.1 <= 19_800));
    }

    #[test]
    fn stability_needs_five_close_samples() {
        assert!(!is_stable(&[100, 100, 100, 100]));
        assert!(is_stable(&[1, 100_000, 100_000, 100_000, 100_010, 100_020]));
        assert!(!is_stable(&[100_000, 100_000, 100_000, 100_000, 101_000]));
        // Small processes: 64 KiB of slack.
        assert!(is_stable(&[1000, 1010, 1060, 1000, 1000]));
    }
}

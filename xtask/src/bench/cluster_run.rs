//! Workload `cluster` (issue 13): N device connections held by a cluster
//! of pike-server gateways on three NATS JetStream nodes, and the same
//! workloads on one node alone, in the same run.
//!
//! Per system (the cluster, then the single node):
//! 1. start the servers ([`Rig`]), wait until every RSS is stable;
//! 2. the idle set: one `pike bench idle` generator per gateway (more when
//!    a share exceeds `per_generator`), each dialling from its own
//!    127.0.x.0/24, held until the end; connect time of the whole set;
//!    RSS per gateway and per NATS node once stable again, bytes per
//!    connection, kernel slab per connection; CPU over an idle window;
//! 3. unicast, transient then reliable: one `pike bench unicast` generator
//!    per gateway `g`, its devices on the *other* gateways, pushing through
//!    gateway `g`'s HTTP API (every push crosses nodes); all generators
//!    start their steps at the same wall-clock time (`--start-at`); the
//!    single node runs the same generators against itself;
//! 4. room fan-out: one `pike bench fanout` generator publishing through
//!    gateway 0, its members on gateway 0 (rooms are node-local) or, with
//!    `--room-spread`, on every gateway;
//! 5. per step: deliveries summed over the generators, CPU time
//!    (utime + stime from `/proc`) of the gateways and of the NATS nodes
//!    between the generators' `step_begin` and `step` lines, i.e. CPU-µs
//!    per delivery on each side.
//!
//! Every wait is bounded; every process is killed when its guard drops.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;
use tokio::time::Instant;

use super::cluster_plan::ClusterSettings;
use super::cluster_report;
use super::cluster_rig::{self, Rig};
use super::load::Load;
use super::procfs;
use super::s1::{settle, split};
use super::servers::{self, Binaries};

/// The system under test.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum System {
    Cluster,
    Single,
}

impl System {
    pub(crate) fn label(self, settings: &ClusterSettings) -> String {
        match self {
            Self::Cluster => format!("cluster ({} gateways, 3 NATS)", settings.gateways),
            Self::Single => "single node".to_owned(),
        }
    }
}

/// The idle set of one system.
#[derive(Clone, Debug, Default)]
pub(crate) struct Held {
    pub(crate) requested: usize,
    pub(crate) connected: u64,
    pub(crate) failed: u64,
    pub(crate) generators: usize,
    pub(crate) connect_seconds: f64,
    pub(crate) first_error: Option<String>,
    /// KiB per process before the idle set and once stable with it.
    pub(crate) gateway_rss_kib: Vec<(u64, u64)>,
    pub(crate) nats_rss_kib: Vec<(u64, u64)>,
    pub(crate) settled: bool,
    pub(crate) slab_delta_kib: i64,
    /// CPU over the idle window, % of one core.
    pub(crate) gateway_idle_cpu_pct: f64,
    pub(crate) nats_idle_cpu_pct: f64,
    /// CPU seconds from the generators' start to the last `connected`
    /// line (dial, handshake, login, subscriptions).
    pub(crate) gateway_connect_cpu_secs: f64,
    pub(crate) nats_connect_cpu_secs: f64,
    pub(crate) disconnects: u64,
}

impl Held {
    fn delta_bytes(rss: &[(u64, u64)]) -> f64 {
        rss.iter()
            .map(|(a, b)| (*b as f64 - *a as f64) * 1024.0)
            .sum()
    }

    pub(crate) fn gateway_bytes_per_conn(&self) -> f64 {
        Self::delta_bytes(&self.gateway_rss_kib) / self.connected.max(1) as f64
    }

    pub(crate) fn nats_bytes_per_conn(&self) -> f64 {
        Self::delta_bytes(&self.nats_rss_kib) / self.connected.max(1) as f64
    }

    pub(crate) fn slab_bytes_per_conn(&self) -> f64 {
        self.slab_delta_kib as f64 * 1024.0 / self.connected.max(1) as f64
    }

    /// Gateway CPU-µs per connection logged in.
    pub(crate) fn gateway_login_us(&self) -> f64 {
        self.gateway_connect_cpu_secs * 1e6 / self.connected.max(1) as f64
    }

    /// NATS CPU-µs per connection logged in.
    pub(crate) fn nats_login_us(&self) -> f64 {
        self.nats_connect_cpu_secs * 1e6 / self.connected.max(1) as f64
    }

    pub(crate) fn connect_rate(&self) -> f64 {
        self.connected as f64 / self.connect_seconds.max(1e-9)
    }

    fn to_json(&self) -> Value {
        json!({
            "requested": self.requested,
            "connected": self.connected,
            "failed": self.failed,
            "generators": self.generators,
            "connect_seconds": self.connect_seconds,
            "connect_rate": self.connect_rate(),
            "first_error": self.first_error,
            "gateway_rss_kib": self.gateway_rss_kib,
            "nats_rss_kib": self.nats_rss_kib,
            "rss_settled": self.settled,
            "gateway_bytes_per_conn": self.gateway_bytes_per_conn(),
            "nats_bytes_per_conn": self.nats_bytes_per_conn(),
            "slab_bytes_per_conn": self.slab_bytes_per_conn(),
            "gateway_idle_cpu_pct": self.gateway_idle_cpu_pct,
            "nats_idle_cpu_pct": self.nats_idle_cpu_pct,
            "gateway_connect_cpu_secs": self.gateway_connect_cpu_secs,
            "nats_connect_cpu_secs": self.nats_connect_cpu_secs,
            "gateway_login_us": self.gateway_login_us(),
            "nats_login_us": self.nats_login_us(),
            "disconnects": self.disconnects,
        })
    }
}

/// One step of a workload, summed over its generators.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepSum {
    /// Offered rate, all generators together.
    pub(crate) rate: u64,
    pub(crate) sent: u64,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) send_errors: u64,
    pub(crate) unsent: u64,
    pub(crate) delivered_per_sec: f64,
    /// Delivery-weighted mean of the generators' medians.
    pub(crate) p50_ms: f64,
    /// The largest of the generators' p99.
    pub(crate) p99_ms: f64,
    pub(crate) gateway_cpu_secs: f64,
    pub(crate) nats_cpu_secs: f64,
    pub(crate) gen_cpu_secs: f64,
    /// Seconds between the first `step_begin` and the last `step` line.
    pub(crate) seconds: f64,
    pub(crate) lines: Vec<Value>,
}

impl StepSum {
    fn add(&mut self, line: &Value) {
        let u = |k: &str| line[k].as_u64().unwrap_or(0);
        let f = |k: &str| line[k].as_f64().unwrap_or(0.0);
        let delivered = u("delivered");
        let total = self.delivered + delivered;
        if total > 0 {
            self.p50_ms = (self.p50_ms * self.delivered as f64 + f("p50_ms") * delivered as f64)
                / total as f64;
        }
        if delivered > 0 {
            self.p99_ms = self.p99_ms.max(f("p99_ms"));
        }
        self.rate += u("rate");
        self.sent += u("sent");
        self.expected += u("expected");
        self.delivered = total;
        self.send_errors += u("send_errors");
        self.unsent += u("unsent");
        self.delivered_per_sec += f("delivered_per_sec");
        self.gen_cpu_secs += f("gen_cpu_secs");
        self.lines.push(line.clone());
    }

    pub(crate) fn delivered_pct(&self) -> f64 {
        if self.expected == 0 {
            f64::NAN
        } else {
            self.delivered as f64 * 100.0 / self.expected as f64
        }
    }

    fn per_delivery_us(&self, secs: f64) -> f64 {
        if self.delivered == 0 {
            f64::NAN
        } else {
            secs * 1e6 / self.delivered as f64
        }
    }

    /// Gateway CPU-µs per delivery (all gateways together).
    pub(crate) fn gateway_us(&self) -> f64 {
        self.per_delivery_us(self.gateway_cpu_secs)
    }

    /// NATS CPU-µs per delivery (all nodes together).
    pub(crate) fn nats_us(&self) -> f64 {
        self.per_delivery_us(self.nats_cpu_secs)
    }

    pub(crate) fn total_us(&self) -> f64 {
        self.per_delivery_us(self.gateway_cpu_secs + self.nats_cpu_secs)
    }

    fn to_json(&self) -> Value {
        json!({
            "rate": self.rate,
            "sent": self.sent,
            "expected": self.expected,
            "delivered": self.delivered,
            "delivered_pct": self.delivered_pct(),
            "send_errors": self.send_errors,
            "unsent": self.unsent,
            "delivered_per_sec": self.delivered_per_sec,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "gateway_cpu_secs": self.gateway_cpu_secs,
            "nats_cpu_secs": self.nats_cpu_secs,
            "gateway_us_per_delivery": self.gateway_us(),
            "nats_us_per_delivery": self.nats_us(),
            "gen_cpu_secs": self.gen_cpu_secs,
            "seconds": self.seconds,
            "generators": self.lines,
        })
    }
}

/// One workload (unicast transient, unicast reliable, fan-out) on one
/// system.
#[derive(Clone, Debug)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    /// How the devices and publishers were placed.
    pub(crate) placement: String,
    pub(crate) connected: u64,
    pub(crate) steps: Vec<StepSum>,
    /// Generators whose first step began after `--start-at` had passed.
    pub(crate) late_generators: usize,
}

impl Phase {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "placement": self.placement,
            "connected": self.connected,
            "late_generators": self.late_generators,
            "steps": self.steps.iter().map(StepSum::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Everything measured on one system.
#[derive(Clone, Debug)]
pub(crate) struct SystemResult {
    pub(crate) label: String,
    pub(crate) held: Held,
    pub(crate) phases: Vec<Phase>,
}

impl SystemResult {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "system": self.label,
            "held": self.held.to_json(),
            "phases": self.phases.iter().map(Phase::to_json).collect::<Vec<_>>(),
        })
    }

    pub(crate) fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// The processes whose CPU is measured.
struct Pids {
    gateways: Vec<u32>,
    nats: Vec<u32>,
}

impl Pids {
    fn ticks(pids: &[u32]) -> Result<u64, String> {
        pids.iter()
            .map(|pid| procfs::cpu_ticks(*pid).map_err(|e| format!("server {pid} gone? {e}")))
            .sum()
    }

    /// (gateway ticks, NATS ticks).
    fn both(&self) -> Result<(u64, u64), String> {
        Ok((Self::ticks(&self.gateways)?, Self::ticks(&self.nats)?))
    }
}

/// Measures `system`: starts it under `dir`, runs every phase, stops it.
pub(crate) async fn measure(
    system: System,
    bins: &Binaries,
    nats_bin: &Path,
    settings: &ClusterSettings,
    clk_tck: u64,
    dir: &Path,
) -> Result<SystemResult, String> {
    let label = system.label(settings);
    eprintln!("xtask bench: cluster: {label}: starting the servers ...");
    let rig = match system {
        System::Cluster => Rig::cluster(bins, nats_bin, settings.gateways, dir).await?,
        System::Single => Rig::single(bins, dir).await?,
    };
    let result = measure_on(&rig, system, bins, settings, clk_tck, dir).await;
    rig.stop().await;
    let (held, phases) = result?;
    Ok(SystemResult {
        label,
        held,
        phases,
    })
}

async fn measure_on(
    rig: &Rig,
    system: System,
    bins: &Binaries,
    settings: &ClusterSettings,
    clk_tck: u64,
    dir: &Path,
) -> Result<(Held, Vec<Phase>), String> {
    let pids = Pids {
        gateways: rig.gateway_pids(),
        nats: rig.nats_pids(),
    };
    let mut held = Held::default();
    let (before_gw, _) = settle_all(&pids.gateways, settings).await?;
    let (before_nats, _) = settle_all(&pids.nats, settings).await?;
    let slab_before = procfs::slab_kib().map_err(|e| e.to_string())?;

    // The idle set: a cluster spreads it evenly, the single node holds
    // one gateway's share.
    let shares: Vec<(usize, usize)> = match system {
        System::Cluster => split(settings.idle(), settings.idle_per_gateway()),
        System::Single => vec![(0, settings.idle_per_gateway())],
    };
    held.requested = shares.iter().map(|s| s.1).sum();
    let tck = clk_tck.max(1) as f64;
    let connect_ticks = pids.both()?;
    let mut idle = Vec::new();
    let hold = settings.connect_deadline.as_secs() + 3_600;
    for (g, (first, count)) in shares.iter().enumerate() {
        let server = rig.tcp[g % rig.tcp.len()];
        for (sub_first, sub_count) in split(*count, settings.per_generator) {
            let net = 40 + idle.len();
            let mut command = pike(bins, "idle");
            command
                .arg("--stdin-stop")
                .arg("--server")
                .arg(server.to_string())
                .args(["--connections", &sub_count.to_string()])
                .args(["--first-alias", &(first + sub_first).to_string()])
                .args(["--alias-prefix", "idle"])
                .args(["--source-net", &format!("127.0.{net}")])
                .args(["--concurrency", "256"])
                .args(["--login-timeout", "60"])
                .args([
                    "--connect-deadline",
                    &settings.connect_deadline.as_secs().to_string(),
                ])
                .args(["--hold", &hold.to_string()]);
            let (load, stdin) = Load::spawn_holding(command, dir)?;
            idle.push((load, Some(stdin)));
        }
    }
    held.generators = idle.len();
    eprintln!(
        "xtask bench: cluster:   holding {} idle connections ({} generators) ...",
        held.requested,
        idle.len()
    );
    let wait = settings.connect_deadline + Duration::from_secs(60);
    for (generator, _) in &mut idle {
        let line = generator.expect("connected", wait).await?;
        held.connected += line["connected"].as_u64().unwrap_or(0);
        held.failed += line["failed"].as_u64().unwrap_or(0);
        held.connect_seconds = held
            .connect_seconds
            .max(line["seconds"].as_f64().unwrap_or(0.0));
        if held.first_error.is_none() {
            held.first_error = line["first_error"].as_str().map(str::to_owned);
        }
    }
    let (gw, nats) = pids.both()?;
    held.gateway_connect_cpu_secs = gw.saturating_sub(connect_ticks.0) as f64 / tck;
    held.nats_connect_cpu_secs = nats.saturating_sub(connect_ticks.1) as f64 / tck;
    let (after_gw, settled_gw) = settle_all(&pids.gateways, settings).await?;
    let (after_nats, settled_nats) = settle_all(&pids.nats, settings).await?;
    held.settled = settled_gw && settled_nats;
    held.gateway_rss_kib = before_gw.into_iter().zip(after_gw).collect();
    held.nats_rss_kib = before_nats.into_iter().zip(after_nats).collect();
    let slab_after = procfs::slab_kib().map_err(|e| e.to_string())?;
    held.slab_delta_kib =
        i64::try_from(slab_after).unwrap_or(0) - i64::try_from(slab_before).unwrap_or(0);
    let (gw0, nats0) = pids.both()?;
    let window = Instant::now();
    tokio::time::sleep(settings.cpu_window).await;
    let (gw1, nats1) = pids.both()?;
    let secs = window.elapsed().as_secs_f64() * tck / 100.0;
    held.gateway_idle_cpu_pct = gw1.saturating_sub(gw0) as f64 / secs;
    held.nats_idle_cpu_pct = nats1.saturating_sub(nats0) as f64 / secs;
    eprintln!(
        "xtask bench: cluster:   held {} ({} failed) in {:.1} s; gateway {:.0} B/conn, NATS {:.0} B/conn",
        held.connected,
        held.failed,
        held.connect_seconds,
        held.gateway_bytes_per_conn(),
        held.nats_bytes_per_conn()
    );

    let mut phases = Vec::new();
    for reliable in [false, true] {
        phases.push(unicast(rig, system, bins, settings, reliable, &pids, clk_tck, dir).await?);
    }
    phases.push(fanout(rig, system, bins, settings, &pids, clk_tck, dir).await?);

    // Closing stdin ends the hold: each generator closes and reports.
    for (_, stdin) in &mut idle {
        *stdin = None;
    }
    for (generator, _) in &mut idle {
        if let Ok(report) = generator.expect("report", Duration::from_secs(30)).await {
            held.disconnects += report["hold"]["disconnects"].as_u64().unwrap_or(0);
        }
        generator.finish().await;
    }
    Ok((held, phases))
}

/// Runs the workload on both systems (the cluster first); returns the
/// Markdown section and the JSON.
pub(crate) async fn run(
    root: &Path,
    target: &Path,
    bins: &Binaries,
    settings: &ClusterSettings,
    clk_tck: u64,
) -> Result<(String, Value), String> {
    let nats_bin = cluster_rig::nats_binary(root, target)?;
    let nats_bin = nats_bin.display().to_string();
    let mut results = Vec::new();
    for system in [System::Cluster, System::Single] {
        let dir = cluster_rig::run_dir(target).join(match system {
            System::Cluster => "cluster",
            System::Single => "single",
        });
        results.push(measure(system, bins, Path::new(&nats_bin), settings, clk_tck, &dir).await?);
    }
    let text = cluster_report::section(settings, &results);
    let value = json!({
        "connections": settings.connections,
        "gateways": settings.gateways,
        "devices": settings.devices,
        "members": settings.members,
        "room_spread": settings.room_spread,
        "transient_rates": settings.transient_rates,
        "reliable_rates": settings.reliable_rates,
        "fanout_rates": settings.fanout_rates,
        "warmup": settings.warmup,
        "step": settings.step,
        "drain": settings.drain,
        "nats_server": nats_bin,
        "systems": results.iter().map(SystemResult::to_json).collect::<Vec<_>>(),
    });
    Ok((text, value))
}

/// Settles the RSS of every process in `pids` (KiB each, and whether all
/// settled).
async fn settle_all(pids: &[u32], settings: &ClusterSettings) -> Result<(Vec<u64>, bool), String> {
    let mut rss = Vec::with_capacity(pids.len());
    let mut all = true;
    for pid in pids {
        let (kib, settled) = settle(*pid, Duration::from_secs(1), settings.settle_limit).await?;
        rss.push(kib);
        all &= settled;
    }
    Ok((rss, all))
}

/// `taskset -c 1 pike --app bench bench <workload> ...` with the bench
/// app's business and token secret, JSON lines on stdout.
pub(crate) fn pike(bins: &Binaries, workload: &str) -> Command {
    let mut command = Command::new("taskset");
    command
        .arg("-c")
        .arg("1")
        .arg(&bins.pike)
        .args(["--app", servers::PIKE_APP, "bench", workload])
        .args(["--json", "--quiet"])
        .args(["--biz", servers::PIKE_BIZ])
        .args(["--token-secret", servers::PIKE_TOKEN_SECRET]);
    command
}

/// The sweep flags of a phase.
fn sweep_flags(command: &mut Command, settings: &ClusterSettings, rates: &[u64]) {
    let rates: Vec<String> = rates.iter().map(u64::to_string).collect();
    command
        .args(["--rates", &rates.join(",")])
        .args(["--warmup", &settings.warmup.to_string()])
        .args(["--step", &settings.step.to_string()])
        .args(["--drain", &settings.drain.to_string()]);
}

fn addr_list(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Wall-clock milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Rate `total` split over `n` generators: the first `total mod n` get
/// one more; every generator at least 1.
pub(crate) fn split_rate(total: u64, n: usize, i: usize) -> u64 {
    let n = n.max(1) as u64;
    let i = i as u64;
    (total / n + u64::from(i < total % n)).max(1)
}

/// Unicast through every gateway's API to devices on the other gateways
/// (the single node: the same generators against itself).
#[allow(clippy::too_many_arguments)]
async fn unicast(
    rig: &Rig,
    system: System,
    bins: &Binaries,
    settings: &ClusterSettings,
    reliable: bool,
    pids: &Pids,
    clk_tck: u64,
    dir: &Path,
) -> Result<Phase, String> {
    let (name, rates, prefix) = if reliable {
        ("unicast reliable", &settings.reliable_rates, "rel")
    } else {
        ("unicast transient", &settings.transient_rates, "tra")
    };
    let g = usize::from(settings.gateways);
    let start_at = now_ms() + u64::try_from(settings.start_allowance.as_millis()).unwrap_or(0);
    let mut generators = Vec::new();
    for (i, (first, count)) in split(settings.devices, settings.devices.div_ceil(g))
        .into_iter()
        .enumerate()
    {
        let (servers, api) = match system {
            System::Cluster => {
                let others: Vec<_> = (0..rig.tcp.len())
                    .filter(|&k| k != i % rig.tcp.len())
                    .map(|k| rig.tcp[k])
                    .collect();
                (others, &rig.api[i % rig.api.len()])
            }
            System::Single => (vec![rig.tcp[0]], &rig.api[0]),
        };
        let mut command = pike(bins, "unicast");
        command
            .args(["--server", &addr_list(&servers)])
            .args(["--api", api])
            .args(["--api-key", servers::PIKE_API_KEY])
            .args(["--devices", &count.to_string()])
            .args(["--first-alias", &first.to_string()])
            .args(["--alias-prefix", prefix])
            .args(["--source-net", &format!("127.0.{}", 80 + i)])
            .args(["--start-at", &start_at.to_string()]);
        let mine: Vec<u64> = rates.iter().map(|r| split_rate(*r, g, i)).collect();
        sweep_flags(&mut command, settings, &mine);
        if reliable {
            command.arg("--reliable");
        }
        generators.push(Load::spawn(command, dir)?);
    }
    let placement = match system {
        System::Cluster => format!(
            "{} devices, {} per gateway; generator g pushes through gateway g's API to its devices on the other {} gateways",
            settings.devices,
            settings.devices / g,
            g - 1
        ),
        System::Single => format!(
            "{} devices on the one node, the same {g} generators",
            settings.devices
        ),
    };
    run_phase(
        name,
        placement,
        generators,
        rates.len(),
        start_at,
        settings,
        pids,
        clk_tck,
    )
    .await
}

/// Room fan-out: members on the publishing gateway (rooms node-local), or
/// with `room_spread` on every gateway; publishes through gateway 0.
async fn fanout(
    rig: &Rig,
    system: System,
    bins: &Binaries,
    settings: &ClusterSettings,
    pids: &Pids,
    clk_tck: u64,
    dir: &Path,
) -> Result<Phase, String> {
    let spread = system == System::Cluster && settings.room_spread;
    let servers = if spread {
        rig.tcp.clone()
    } else {
        vec![rig.tcp[0]]
    };
    let start_at = now_ms() + u64::try_from(settings.start_allowance.as_millis()).unwrap_or(0);
    let mut command = pike(bins, "fanout");
    command
        .args(["--server", &addr_list(&servers)])
        .args(["--api", &rig.api[0]])
        .args(["--api-key", servers::PIKE_API_KEY])
        .args(["--members", &settings.members.to_string()])
        .args(["--alias-prefix", "mem"])
        .args(["--room", "cluster-bench"])
        .args(["--source-net", "127.0.90"])
        .args(["--start-at", &start_at.to_string()]);
    sweep_flags(&mut command, settings, &settings.fanout_rates);
    let placement = match (system, spread) {
        (System::Cluster, true) => format!(
            "{} members spread over all {} gateways, published through gateway 0",
            settings.members, settings.gateways
        ),
        (System::Cluster, false) => format!(
            "{} members on gateway 0, published through gateway 0 (rooms are node-local in this build)",
            settings.members
        ),
        (System::Single, _) => format!("{} members on the one node", settings.members),
    };
    let generators = vec![Load::spawn(command, dir)?];
    run_phase(
        "room fan-out",
        placement,
        generators,
        settings.fanout_rates.len(),
        start_at,
        settings,
        pids,
        clk_tck,
    )
    .await
}

/// Waits for every generator's `connected` line, then collects `steps`
/// steps: CPU of the gateways and NATS between the generators'
/// `step_begin` and `step` lines.
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    name: &'static str,
    placement: String,
    mut generators: Vec<Load>,
    steps: usize,
    start_at: u64,
    settings: &ClusterSettings,
    pids: &Pids,
    clk_tck: u64,
) -> Result<Phase, String> {
    eprintln!("xtask bench: cluster:   {name}: {placement}");
    let mut phase = Phase {
        name,
        placement,
        connected: 0,
        steps: Vec::new(),
        late_generators: 0,
    };
    let connect_limit = settings.start_allowance + Duration::from_secs(120);
    for generator in &mut generators {
        let line = generator.expect("connected", connect_limit).await?;
        phase.connected += line["connected"].as_u64().unwrap_or(0);
    }
    if now_ms() > start_at {
        phase.late_generators = generators.len();
        eprintln!(
            "xtask bench: cluster:   {name}: connected after --start-at; windows may not line up"
        );
    }
    let per_step = settings.start_allowance + Duration::from_secs(settings.step_secs() + 60);
    let tck = clk_tck.max(1) as f64;
    for _ in 0..steps {
        for generator in &mut generators {
            generator.expect("step_begin", per_step).await?;
        }
        let began = Instant::now();
        let (gw0, nats0) = pids.both()?;
        let mut sum = StepSum::default();
        for generator in &mut generators {
            let line = generator.expect("step", per_step).await?;
            sum.add(&line);
        }
        let (gw1, nats1) = pids.both()?;
        sum.seconds = began.elapsed().as_secs_f64();
        sum.gateway_cpu_secs = gw1.saturating_sub(gw0) as f64 / tck;
        sum.nats_cpu_secs = nats1.saturating_sub(nats0) as f64 / tck;
        eprintln!(
            "xtask bench: cluster:     {}",
            cluster_report::step_line(&sum)
        );
        phase.steps.push(sum);
    }
    for generator in &mut generators {
        let _ = generator.expect("report", Duration::from_secs(30)).await;
        generator.finish().await;
    }
    Ok(phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_split_over_generators_sum_to_the_total() {
        let parts: Vec<u64> = (0..6).map(|i| split_rate(20_000, 6, i)).collect();
        assert_eq!(parts.iter().sum::<u64>(), 20_000);
        assert_eq!(parts[0], 3_334);
        assert_eq!(parts[5], 3_333);
        assert_eq!(split_rate(3, 6, 5), 1);
    }

    #[test]
    fn steps_sum_over_generators() {
        let mut sum = StepSum::default();
        sum.add(
            &json!({"rate": 100, "sent": 100, "expected": 100, "delivered": 100,
            "delivered_per_sec": 50.0, "p50_ms": 2.0, "p99_ms": 9.0, "gen_cpu_secs": 0.5}),
        );
        sum.add(
            &json!({"rate": 100, "sent": 100, "expected": 100, "delivered": 300,
            "delivered_per_sec": 150.0, "p50_ms": 4.0, "p99_ms": 5.0, "gen_cpu_secs": 0.5}),
        );
        assert_eq!(sum.rate, 200);
        assert_eq!(sum.delivered, 400);
        assert!((sum.p50_ms - 3.5).abs() < 1e-9);
        assert!((sum.p99_ms - 9.0).abs() < 1e-9);
        assert!((sum.delivered_per_sec - 200.0).abs() < 1e-9);
        sum.gateway_cpu_secs = 0.004;
        sum.nats_cpu_secs = 0.002;
        assert!((sum.gateway_us() - 10.0).abs() < 1e-9);
        assert!((sum.nats_us() - 5.0).abs() < 1e-9);
        assert!((sum.total_us() - 15.0).abs() < 1e-9);
        assert!(StepSum::default().gateway_us().is_nan());
    }
}

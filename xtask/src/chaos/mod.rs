//! `cargo xtask chaos`: reliable downlink and uplink through a single
//! pike-server while fault proxies cut, delay, slice and blackhole its
//! connections and the gateway is SIGKILLed and restarted, then a check
//! from the devices' and the backend's own records ([`check`]).
//!
//! Pieces, all on loopback: the release `pike-server` (bench's
//! [`Server`](crate::bench::servers::Server): temporary data dir, embedded store, business `bench`) whose
//! uplink webhook points through one [`Proxy`] at the backend; one
//! `pike bench chaos` process (bench's [`Load`]) holding the devices (real
//! clients dialling through a second [`Proxy`]), the publisher and the
//! webhook backend, printing a JSON line per event; the faults and kills
//! ([`faults`]) drawn from the seed.
//!
//! With `--cluster` the gateways are three pike-server nodes on three
//! NATS JetStream nodes (bench's [`Rig`](crate::bench::cluster_rig::Rig)), each behind its own device
//! proxy; every device lists all three (its own first), the publisher
//! spreads the pushes over the three HTTP APIs, and the plan kills
//! gateways and NATS nodes.

mod check;
mod faults;
mod gateways;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use faultproxy::{Proxy, ProxyConfig};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bench::load::Load;
use crate::bench::servers::{Binaries, free_port};
use crate::bench::{cargo_build, target_dir, workspace_root};

use self::check::Records;
use self::faults::{Event, Plan};
use self::gateways::Gateways;

const USAGE: &str = "\
Usage: cargo xtask chaos [options]

One pike-server (release, embedded store, temporary data dir), N devices
dialling through a fault proxy, an uplink webhook backend behind another;
D reliable pushes through the HTTP API and U uplinks (idempotency keys)
while the proxies reset, delay, slice and blackhole connections and the
gateway is SIGKILLed K times, all drawn from the seed. Then everything
heals, devices catch up (bounded) and the records are checked: exit 1 on
any accepted message lost, any duplicate, any order break.

Options:
  --seed S        Seed (default: from the clock; printed first)
  --devices N     Devices (default 1,000; quick 100)
  --downlink D    Reliable pushes (default 100,000; quick 5,000)
  --uplink U      Uplink messages (default 100,000; quick 5,000)
  --kills K       Gateway SIGKILL + restart (default 20; quick 3)
  --secs S        Seconds the load is spread over (default 120; quick 40)
  --cluster       3 gateways on 3 NATS JetStream nodes (pinned nats-server,
                  installed by .ci/nats.sh); kills hit a gateway drawn from
                  the seed, and NATS nodes are killed too
  --nats-kills K  NATS node SIGKILL + restart, with --cluster (default 6;
                  quick 2)
  --quick         The small run for CI (under 3 minutes)
  --no-build      Use the binaries already built
  --debug         Debug binaries (target/debug): to work on the harness
  -h, --help      Print this help
";

/// Longest wait for every device to log in.
const CONNECT_LIMIT: Duration = Duration::from_secs(300);
/// Longest wait for the load's outcomes after its scheduled end.
const LOAD_GRACE: Duration = Duration::from_secs(120);
/// Longest catch-up after healing.
const CATCH_UP: Duration = Duration::from_secs(90);

/// The command line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Options {
    seed: Option<u64>,
    devices: u64,
    downlink: u64,
    uplink: u64,
    kills: u32,
    secs: u64,
    cluster: bool,
    nats_kills: u32,
    build: bool,
    debug: bool,
    help: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Self {
            seed: None,
            devices: if quick { 100 } else { 1_000 },
            downlink: if quick { 5_000 } else { 100_000 },
            uplink: if quick { 5_000 } else { 100_000 },
            kills: if quick { 3 } else { 20 },
            secs: if quick { 40 } else { 120 },
            cluster: false,
            nats_kills: if quick { 2 } else { 6 },
            build: true,
            debug: false,
            help: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |max: u64| {
                let v = args
                    .next()
                    .ok_or_else(|| format!("`{arg}` needs a value"))?;
                match v.parse::<u64>() {
                    Ok(n) if n <= max => Ok(n),
                    _ => Err(format!("bad {arg} {v:?} (0 to {max})")),
                }
            };
            match arg.as_str() {
                "--quick" => {}
                "--no-build" => o.build = false,
                "--cluster" => o.cluster = true,
                "--nats-kills" => o.nats_kills = number(1_000)? as u32,
                "--debug" => o.debug = true,
                "-h" | "--help" => o.help = true,
                "--seed" => o.seed = Some(number(u64::MAX)?),
                "--devices" => o.devices = number(10_000)?.max(1),
                "--downlink" => o.downlink = number(10_000_000)?,
                "--uplink" => o.uplink = number(10_000_000)?,
                "--kills" => o.kills = number(1_000)? as u32,
                "--secs" => o.secs = number(3_600)?.max(1),
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(o)
    }
}

/// Runs `cargo xtask chaos`.
pub(crate) fn command(args: &[String]) -> ExitCode {
    let options = match Options::parse(args) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("error: {message}\n");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let outcome = crate::bench::run_interruptible(run(&options));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("chaos: FAILED (see the table)");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The run; `Ok(false)` when a guarantee broke.
async fn run(o: &Options) -> Result<bool, String> {
    let seed = o.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!("chaos: seed {seed}");
    println!(
        "chaos: {} devices, {} downlink, {} uplink, {} kills over {} s{}",
        o.devices,
        o.downlink,
        o.uplink,
        o.kills,
        o.secs,
        if o.cluster {
            format!(", cluster: 3 gateways, {} NATS node kills", o.nats_kills)
        } else {
            String::new()
        }
    );
    let root = workspace_root();
    let profile = if o.debug { "debug" } else { "release" };
    if o.build {
        let mut args = vec!["-p", "pike-server", "--bins"];
        if !o.debug {
            args.push("--release");
        }
        cargo_build(&root, &args).await?;
    }
    let target = target_dir(&root);
    let release = target.join(profile);
    let bins = Binaries {
        pike_server: release.join("pike-server"),
        pike: release.join("pike"),
        xtask: release.join("xtask"),
        mosquitto: None,
        nats: None,
    };
    let work = tempfile::Builder::new()
        .prefix("pike-chaos-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;

    // Backend ← webhook proxy ← gateways ← device proxies ← devices.
    let backend = free_port()?;
    // As many webhook connections as uplinks in flight: one per device,
    // from each gateway.
    let hooks = Proxy::tcp_with(
        loopback(),
        backend,
        ProxyConfig::default()
            .with_seed(seed ^ 1)
            .with_max_connections(o.devices * 3 + 64),
    )
    .await
    .map_err(|e| format!("webhook proxy: {e}"))?;
    let webhook = format!("http://{}/pike/uplink", hooks.local_addr());
    let mut gateways = if o.cluster {
        Gateways::cluster(&bins, &root, &target, &webhook).await?
    } else {
        Gateways::single(&bins, webhook).await?
    };
    // One device proxy per gateway, all faulted together.
    let mut devices = Vec::new();
    for (i, addr) in gateways.client_addrs().into_iter().enumerate() {
        let proxy = Proxy::tcp_with(
            loopback(),
            addr,
            ProxyConfig::default()
                .with_seed(seed ^ (2 + 16 * i as u64))
                .with_max_connections(o.devices * 2 + 64),
        )
        .await
        .map_err(|e| format!("device proxy: {e}"))?;
        devices.push(proxy);
    }
    let device_addrs: Vec<String> = devices.iter().map(|p| p.local_addr().to_string()).collect();

    let mut command = gateways.load_command(&bins);
    command
        .arg("--server")
        .arg(device_addrs.join(","))
        .args(["--connections", &o.devices.to_string()])
        .args(["--downlink", &o.downlink.to_string()])
        .args(["--uplink", &o.uplink.to_string()])
        .args(["--load-secs", &o.secs.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--http-connections", "16"])
        .arg("--backend")
        .arg(backend.to_string());
    let (load, mut stdin) = Load::spawn_holding(command, work.path())?;
    let (tx, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(forward(load, tx));

    let mut records = Records::default();
    let clock = Instant::now();
    let connect_by = Instant::now() + CONNECT_LIMIT;
    wait_for(&mut lines, &mut records, "ready", connect_by, clock).await?;
    println!(
        "chaos: {} devices logged in after {:.1} s; load and faults begin",
        o.devices,
        clock.elapsed().as_secs_f64()
    );

    // Load and faults.
    let load_start = Instant::now();
    let load_span = Duration::from_secs(o.secs);
    let plan = if o.cluster {
        Plan::draw_cluster(
            seed,
            o.kills,
            o.nats_kills,
            gateways::CLUSTER_GATEWAYS.into(),
            gateways.nats_nodes(),
            load_span,
        )
    } else {
        Plan::draw(seed, o.kills, load_span)
    };
    let mut events = plan.events.iter().peekable();
    let (mut kills, mut nats_kills, mut faults) = (0u32, 0u32, 0u32);
    let load_by = load_start + Duration::from_secs(o.secs) + LOAD_GRACE;
    let mut load_done = false;
    // Since when the webhook proxy has a fault.
    let mut hooks_faulty: Option<Duration> = None;
    while !load_done {
        let next_event = events.peek().map(|(at, _)| load_start + *at);
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) if line["kind"] == "load_done" => load_done = true,
                Some(line) => records.add(&line, clock.elapsed()),
                None => return Err("the devices' process ended during the load".into()),
            },
            () = sleep_until_opt(next_event) => {
                if let Some((_, event)) = events.next() {
                    match event {
                        Event::Kill { gateway, down } => {
                            let kill = gateways.kill_gateway(*gateway, *down);
                            disturb(clock, &mut records, &format!("gateway {gateway}"), *down, kill).await?;
                            kills += 1;
                        }
                        Event::NatsKill { node, down } => {
                            let kill = gateways.kill_nats(*node, *down);
                            disturb(clock, &mut records, &format!("NATS node {node}"), *down, kill).await?;
                            nats_kills += 1;
                        }
                        Event::Devices(action) => {
                            for proxy in &devices {
                                proxy.handle().apply(action.clone());
                            }
                            faults += 1;
                        }
                        Event::Hooks(action) => {
                            hooks.handle().apply(action.clone());
                            hooks_faulty.get_or_insert_with(|| clock.elapsed());
                            faults += 1;
                        }
                        Event::Heal => {
                            for proxy in &devices {
                                proxy.handle().heal();
                            }
                            hooks.handle().heal();
                            if let Some(from) = hooks_faulty.take() {
                                records.disturbed(from, clock.elapsed());
                            }
                        }
                    }
                }
            },
            () = tokio::time::sleep_until(load_by) => {
                println!("chaos: the load had no outcome for everything {} s after its end; checking what there is", LOAD_GRACE.as_secs());
                break;
            }
        }
    }
    for proxy in &devices {
        proxy.handle().heal();
    }
    hooks.handle().heal();
    if let Some(from) = hooks_faulty.take() {
        records.disturbed(from, clock.elapsed());
    }
    let load_secs = load_start.elapsed().as_secs_f64();
    println!(
        "chaos: load over after {load_secs:.1} s ({kills} gateway kills, {nats_kills} NATS node kills, {faults} proxy faults); healed, catching up"
    );

    // Catch-up: until every accepted push reached its device (bounded).
    let catch_up_by = Instant::now() + CATCH_UP;
    while records.pending() > 0 && Instant::now() < catch_up_by {
        match tokio::time::timeout_at(catch_up_by, lines.recv()).await {
            Ok(Some(line)) => records.add(&line, clock.elapsed()),
            Ok(None) | Err(_) => break,
        }
    }
    // The end: closing stdin ends the process; its last lines still count.
    let _ = stdin.shutdown().await;
    drop(stdin);
    let end_by = Instant::now() + Duration::from_secs(30);
    while let Ok(Some(line)) = tokio::time::timeout_at(end_by, lines.recv()).await {
        if line["kind"] == "end" {
            break;
        }
        records.add(&line, clock.elapsed());
    }
    gateways.stop().await;

    let verdict = records.verdict();
    println!();
    println!(
        "chaos: seed {seed}, {}{} devices, {} downlink, {} uplink, {kills} gateway kills, {nats_kills} NATS node kills, {faults} proxy faults, {:.0} s from the gateways' start",
        if o.cluster {
            "cluster (3 gateways, 3 NATS nodes), "
        } else {
            ""
        },
        o.devices,
        o.downlink,
        o.uplink,
        clock.elapsed().as_secs_f64()
    );
    print!("{}", verdict.table());
    let hook_stats = hooks.handle().stats();
    println!(
        "\nproxies: webhook link {} connections ({} refused over its limit, {} reset by faults, {} ended by errors); device links {} connections ({} refused)",
        hook_stats.connections,
        hook_stats.refused,
        hook_stats.resets,
        hook_stats.errors,
        devices
            .iter()
            .map(|p| p.handle().stats().connections)
            .sum::<u64>(),
        devices
            .iter()
            .map(|p| p.handle().stats().refused)
            .sum::<u64>(),
    );
    let lost = records.lost(20);
    if !lost.is_empty() {
        println!("\naccepted pushes never delivered (first 20):\n{lost}");
    }
    let failures = records.failures(8);
    if !failures.is_empty() {
        println!(
            "\nuplink failures at the devices (not accepted: no guarantee broken):\n{failures}"
        );
    }
    Ok(verdict.passed())
}

/// Runs `kill` (a SIGKILL of `what`, down `down`, and its restart),
/// printing it with its time, and notes the span as a disturbance.
async fn disturb(
    clock: Instant,
    records: &mut Records,
    what: &str,
    down: Duration,
    kill: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    let from = clock.elapsed();
    println!(
        "chaos: t = {:.1} s: SIGKILL {what}, down {} ms",
        from.as_secs_f64(),
        down.as_millis()
    );
    kill.await?;
    records.disturbed(from, clock.elapsed());
    Ok(())
}

/// Forwards the process's JSON lines until it ends.
async fn forward(mut load: Load, tx: mpsc::UnboundedSender<serde_json::Value>) {
    while let Ok(Some(line)) = load.next(Duration::from_secs(3_600)).await {
        if tx.send(line).is_err() {
            break;
        }
    }
    load.finish().await;
}

/// Reads lines into `records` until one of `kind` (bounded by `by`).
async fn wait_for(
    lines: &mut mpsc::UnboundedReceiver<serde_json::Value>,
    records: &mut Records,
    kind: &str,
    by: Instant,
    clock: Instant,
) -> Result<(), String> {
    loop {
        match tokio::time::timeout_at(by, lines.recv()).await {
            Ok(Some(line)) if line["kind"] == kind => return Ok(()),
            Ok(Some(line)) => records.add(&line, clock.elapsed()),
            Ok(None) => return Err(format!("the devices' process ended before `{kind}`")),
            Err(_) => return Err(format!("no `{kind}` from the devices' process in time")),
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn quick_and_explicit_options() {
        let o = Options::parse(&args("--quick --seed 7 --kills 1")).unwrap();
        assert_eq!(
            (o.devices, o.downlink, o.kills, o.seed),
            (100, 5_000, 1, Some(7))
        );
        let o = Options::parse(&[]).unwrap();
        assert_eq!(
            (o.devices, o.downlink, o.uplink, o.kills),
            (1_000, 100_000, 100_000, 20)
        );
        assert!(Options::parse(&args("--devices x")).is_err());
        let o = Options::parse(&args("--quick --cluster")).unwrap();
        assert!(o.cluster && !Options::parse(&[]).unwrap().cluster);
        assert_eq!(o.nats_kills, 2);
        assert_eq!(
            Options::parse(&args("--cluster --nats-kills 9"))
                .unwrap()
                .nats_kills,
            9
        );
        assert!(Options::parse(&args("--bogus")).is_err());
    }
}

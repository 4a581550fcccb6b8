//! `cargo xtask bench`: pike-server against mosquitto and nats-server, side
//! by side, on loopback, with the method of PERF-NOTES §3.
//!
//! The harness drives binaries as processes and depends on no product
//! crate: it builds the release binaries (`cargo build --release -p
//! pike-server -p xtask`), installs the peers from Debian packages when
//! missing ([`peers`]), writes a configuration per server and run and starts
//! each server pinned to CPU 0 ([`servers`]), runs the load generators
//! pinned to CPU 1 (`pike bench` for pike; this crate's own
//! [`client`] for MQTT and NATS), reads `/proc` ([`procfs`]), prints a
//! ratio table ([`report`]) and writes the results as JSON under
//! `target/bench/`. Every server and generator is killed when its guard is
//! dropped (also on Ctrl-C).
//!
//! Workloads: `cluster`, N connections on a cluster of gateways on NATS
//! JetStream against one node ([`cluster_run`]); S1 idle connections over plain TCP, TLS and QUIC and across
//! several server processes ([`s1`]); S2–S7 rate sweeps ([`sweep`], plans in
//! [`plan`], tables in [`sweep_report`]); S8 reconnect storm ([`s8`]); charts
//! ([`chart`]).

pub(crate) mod chart;
mod client;
mod cluster_plan;
mod cluster_report;
pub(crate) mod cluster_rig;
pub(crate) mod cluster_run;
mod r#gen;
pub(crate) mod load;
mod peers;
mod plan;
pub(crate) mod procfs;
pub(crate) mod report;
pub(crate) mod s1;
mod s8;
mod search;
pub(crate) mod servers;
mod sweep;
mod sweep_report;
mod wire;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use tokio::process::Command;

use self::s1::{S1Result, S1Settings, S1Transport};
use self::s8::S8Settings;
use self::servers::{Binaries, Kind, TlsFiles};

pub(crate) const USAGE: &str = "\
Usage: cargo xtask bench [options]

Runs the workloads of PERF-NOTES §3 against pike-server, mosquitto (MQTT
3.1.1, QoS 0) and nats-server (core) on loopback: each server fresh and
pinned to CPU 0 with one worker, the load generators pinned to CPU 1.
Prints a table per workload with the ratio pike/peer from the same run and
writes JSON, the tables (report.md) and SVG charts to target/bench/<mode>/.

  S1 idle connections (also MQTT devices: pike MQTT vs mosquitto)
  S2 room fan-out sweep      S5 uplink to a webhook backend (pike: batches
  S3 unicast sweep (pike,       and one per request) / a sink subscriber
     pike MQTT, peers)       S6 S2 under 1 %/s reconnect churn
  S3 acked: pike reliable vs MQTT QoS 1 (full mode: pike also with
            delivery receipts on, against off)
  S4 group push sweep        S7 S2 with 1 % of members not reading
                             S8 TLS reconnect storm vs the handshake ceiling

Options:
  --quick             Every workload small (< 3 minutes): 1,000-2,000
                      connections, one or two rates, 2 s windows, one round
  --workloads LIST    Workloads to run, comma-separated: s1, s2, s3,
                      s3-acked, s4, ..., s8, or all (default: all);
                      `cluster` (only when named): 6 pike-server
                      gateways on 3 NATS JetStream nodes holding
                      --connections (quick 2,000, full 100,000),
                      cross-node unicast (transient and reliable) and
                      room fan-out, against one node in the same run
  --room-spread       cluster: room members on every gateway (needs
                      cross-node rooms); default: on the publishing one
  --connections N     S1: idle connections per server (default: quick
                      2,000; full: the open-file limit minus 300);
                      S2-S4, S6, S7: members/devices (default: quick 1,000,
                      full 9,000)
  --rounds R          Rounds; tables show the median and min-max (default:
                      quick 1, full 3)
  --only LIST         Servers to run, comma-separated: pike,mosquitto,nats
  --no-build          Use the binaries already in target/release
  --no-install        Do not install missing peers (they are skipped)
  --per-generator N   S1: most connections per generator process (default:
                      the open-file limit minus 200; more processes, each
                      dialling from its own 127.0.x.0/24, when needed)
  --out FILE          Where to write the JSON results
  --out-dir DIR       Where to write JSON, report.md and charts
                      (default: target/bench/quick or target/bench/full)
  --report FILE       Measure nothing: render the sweep tables and charts
                      again from a run's JSON (into --out-dir, default the
                      file's directory)
  --baseline BIN      S2-S8: also measure this pike-server binary (the
                      build before a change) as `pike (baseline)`, in the
                      same run; the tables show pike / pike (baseline)
  -h, --help          Print this help

Needs Linux, taskset (util-linux), and root or the packages mosquitto and
nats-server installed. Loopback only: every connection stays in 127.0.0.0/8.
";

/// Open files a generator keeps free besides its connections.
const GENERATOR_FD_HEADROOM: u64 = 200;
/// Open files a server keeps free besides the measured connections.
const SERVER_FD_HEADROOM: u64 = 300;

/// The command line of `cargo xtask bench`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) connections: Option<usize>,
    pub(crate) rounds: Option<usize>,
    pub(crate) per_generator: Option<usize>,
    pub(crate) only: Vec<Kind>,
    pub(crate) build: bool,
    pub(crate) install: bool,
    pub(crate) out: Option<PathBuf>,
    pub(crate) out_dir: Option<PathBuf>,
    pub(crate) report: Option<PathBuf>,
    pub(crate) workloads: Vec<&'static str>,
    pub(crate) room_spread: bool,
    /// Another pike-server binary (the build before a change) measured as
    /// one more contender in the sweeps, `pike (baseline)`.
    pub(crate) baseline: Option<PathBuf>,
    pub(crate) help: bool,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            quick: false,
            connections: None,
            rounds: None,
            per_generator: None,
            only: Kind::ALL.to_vec(),
            build: true,
            install: true,
            out: None,
            out_dir: None,
            report: None,
            workloads: plan::WORKLOADS.to_vec(),
            room_spread: false,
            baseline: None,
            help: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("`{name}` needs a value"))
            };
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--no-build" => options.build = false,
                "--no-install" => options.install = false,
                "--room-spread" => options.room_spread = true,
                "-h" | "--help" => options.help = true,
                "--connections" => {
                    let v = value(arg)?;
                    let n: usize = v.parse().map_err(|_| format!("bad --connections {v:?}"))?;
                    if n == 0 {
                        return Err("--connections must be at least 1".into());
                    }
                    options.connections = Some(n);
                }
                "--rounds" => {
                    let v = value(arg)?;
                    let n: usize = v.parse().map_err(|_| format!("bad --rounds {v:?}"))?;
                    if !(1..=9).contains(&n) {
                        return Err("--rounds must be 1 to 9".into());
                    }
                    options.rounds = Some(n);
                }
                "--only" => {
                    let v = value(arg)?;
                    let mut kinds = Vec::new();
                    for name in v.split(',').filter(|s| !s.is_empty()) {
                        let kind = Kind::parse(name)
                            .ok_or_else(|| format!("unknown server {name:?} in --only"))?;
                        if !kinds.contains(&kind) {
                            kinds.push(kind);
                        }
                    }
                    if kinds.is_empty() {
                        return Err("--only needs at least one server".into());
                    }
                    kinds.sort();
                    options.only = kinds;
                }
                "--per-generator" => {
                    let v = value(arg)?;
                    let n: usize = v
                        .parse()
                        .map_err(|_| format!("bad --per-generator {v:?}"))?;
                    if n == 0 {
                        return Err("--per-generator must be at least 1".into());
                    }
                    options.per_generator = Some(n);
                }
                "--out" => options.out = Some(PathBuf::from(value(arg)?)),
                "--out-dir" => options.out_dir = Some(PathBuf::from(value(arg)?)),
                "--report" => options.report = Some(PathBuf::from(value(arg)?)),
                "--baseline" => options.baseline = Some(PathBuf::from(value(arg)?)),
                "--workloads" => options.workloads = plan::parse_workloads(&value(arg)?)?,
                other => return Err(format!("unknown option `{other}` for `bench`")),
            }
        }
        Ok(options)
    }

    fn rounds(&self) -> usize {
        self.rounds.unwrap_or(if self.quick { 1 } else { 3 })
    }

    /// The S1 settings for an open-file limit of `fd_limit`.
    fn s1(&self, fd_limit: u64) -> Result<S1Settings, String> {
        let ceiling =
            usize::try_from(fd_limit.saturating_sub(SERVER_FD_HEADROOM)).unwrap_or(usize::MAX);
        let connections = self
            .connections
            .unwrap_or(if self.quick { 2_000 } else { ceiling });
        if connections > ceiling {
            return Err(format!(
                "{connections} connections do not fit one server process: the open-file limit is {fd_limit} \
                 (at most {ceiling} with headroom; multi-process servers are not part of S1 yet)"
            ));
        }
        let generator_limit =
            usize::try_from(fd_limit.saturating_sub(GENERATOR_FD_HEADROOM)).unwrap_or(usize::MAX);
        Ok(S1Settings {
            connections,
            per_generator: self
                .per_generator
                .unwrap_or(generator_limit)
                .min(generator_limit)
                .max(1),
            concurrency: 256,
            cpu_window: Duration::from_secs(if self.quick { 2 } else { 10 }),
            settle_limit: Duration::from_secs(if self.quick { 10 } else { 30 }),
            connect_deadline: Duration::from_secs(if self.quick { 60 } else { 300 }),
            transport: S1Transport::Tcp,
            tls: None,
            servers: 1,
        })
    }
}

/// `cargo xtask bench [options]`.
pub(crate) fn command(args: &[String]) -> ExitCode {
    let options = match Options::parse(args) {
        Ok(options) => options,
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
    if let Some(path) = &options.baseline
        && !path.is_file()
    {
        eprintln!("error: --baseline {}: no such file", path.display());
        return ExitCode::from(2);
    }
    if let Some(path) = &options.report {
        return match rerender(path, options.out_dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        };
    }
    let outcome = run_interruptible(run(&options));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: bench failed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `xtask bench-client ...`: the MQTT/NATS generator process.
pub(crate) const CLIENT_USAGE: &str = "\
Usage: xtask bench-client [WORKLOAD] --proto mqtt|nats [options]

The peers' load generator of `cargo xtask bench` (pike's is `pike bench`):
the same workloads, flags and JSON lines on stdout.

Workloads:
  idle (default)  N subscribed connections held idle: --connections N
                  --first F --hold S --stdin-stop [--tls --ca PEM
                  [--server-name NAME]]
  fanout          --members N subscribe to `room`, one publisher;
                  [--churn P] [--slow P] [--qos 0|1 --inflight N]
  unicast         --devices N on d/<i> (d.<i>), --publishers 4;
                  [--qos 0|1 --inflight N]
  group           --devices N in groups of --group-size G (g/<k>)
  uplink          --devices N publish to up/<i>; one sink subscribes up/#

Common options:
  --server ADDR --source-net 127.X.Y --sources K --concurrency C
  --login-timeout S --connect-deadline S --size BYTES
  --rates R1,R2,... --warmup S --step S --drain S --id-prefix P

Pike mode (MQTT devices on pike-server's MQTT listener, docs/mqtt.md):
  --pike-app A --pike-biz B --token-secret S
                  user name A, password a credential for the device's
                  alias (its client id) minted with S, subscribed to
                  pike/B/down (idle and unicast, QoS 0)
  unicast also:   --api ADDR --api-key K [--batch N] [--http-connections C]
                  the publisher pushes to each device's alias through
                  POST /v1/push/batch (N pushes, C requests in flight)
";

pub(crate) fn client_command(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{CLIENT_USAGE}");
        return ExitCode::SUCCESS;
    }
    // `bench-client [idle|fanout|unicast|group|uplink] --proto P ...`: no
    // workload word is `idle` (S1's call).
    let (workload, rest) = match args.first().map(String::as_str) {
        Some("idle") => (None, &args[1..]),
        Some(word) if !word.starts_with('-') => match r#gen::Workload::parse(word) {
            Some(workload) => (Some(workload), &args[1..]),
            None => {
                eprintln!(
                    "error: unknown workload `{word}` (idle, fanout, unicast, group, uplink)"
                );
                return ExitCode::from(2);
            }
        },
        _ => (None, args),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match workload {
        None => match client::ClientOptions::parse(rest) {
            Ok(options) => runtime.block_on(client::run(options)),
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        },
        Some(workload) => match r#gen::GenOptions::parse(workload, rest) {
            Ok(options) => runtime.block_on(r#gen::run(options)),
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: &Options) -> Result<(), String> {
    let root = workspace_root();
    let started = tokio::time::Instant::now();
    if options.build {
        build(&root).await?;
    }
    let mut kinds = options.only.clone();
    if options.install
        && kinds.iter().any(|k| *k != Kind::Pike)
        && options.workloads.iter().any(|w| *w != "cluster")
    {
        for line in peers::ensure_installed().await? {
            eprintln!("xtask bench: {line}");
        }
    }
    let release = target_dir(&root).join("release");
    let bins = Binaries {
        pike_server: release.join("pike-server"),
        pike: release.join("pike"),
        xtask: release.join("xtask"),
        mosquitto: peers::find_binary("mosquitto"),
        nats: peers::find_binary("nats-server"),
    };
    for (path, what) in [
        (&bins.pike_server, "pike-server"),
        (&bins.pike, "pike"),
        (&bins.xtask, "xtask"),
    ] {
        if !s1::exists(path) {
            return Err(format!(
                "{what} not found at {} (run without --no-build)",
                path.display()
            ));
        }
    }
    kinds.retain(|kind| {
        let present = match kind {
            Kind::Pike => true,
            Kind::Mosquitto => bins.mosquitto.is_some(),
            Kind::Nats => bins.nats.is_some(),
        };
        if !present {
            eprintln!("xtask bench: {} is not installed: skipped", kind.name());
        }
        present
    });

    let fd_limit = procfs::open_file_limit().unwrap_or(1024);
    let clk_tck = clk_tck().await;
    let rounds = options.rounds();
    let mode = if options.quick { "quick" } else { "full" };
    let mut versions = serde_json::Map::new();
    for kind in &kinds {
        versions.insert(
            kind.name().into(),
            servers::version(*kind, &bins).await.into(),
        );
    }
    let out_dir = options
        .out_dir
        .clone()
        .unwrap_or_else(|| target_dir(&root).join("bench").join(mode));
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    eprintln!(
        "xtask bench: {mode} run, workloads {}, {rounds} round(s), servers {}; load average before: {}",
        options.workloads.join(","),
        kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        load_text()
    );
    let machine = machine(fd_limit);
    let mut report = String::new();
    let mut json = serde_json::Map::new();

    let cert_dir = tempfile::Builder::new()
        .prefix("pike-bench-tls-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let tls = TlsFiles::generate(cert_dir.path())?;
    if options.workloads.contains(&"s1") {
        let plain = options.s1(fd_limit)?;
        let small = if options.quick { 500 } else { 5_000 };
        let mut variants = vec![
            ("s1", plain.clone(), kinds.clone()),
            (
                "s1-tls",
                S1Settings {
                    connections: small,
                    transport: S1Transport::Tls,
                    tls: Some(tls.clone()),
                    ..plain.clone()
                },
                kinds.clone(),
            ),
            (
                "s1-quic",
                S1Settings {
                    connections: small,
                    transport: S1Transport::Quic,
                    tls: Some(tls.clone()),
                    ..plain.clone()
                },
                kinds.iter().copied().filter(|k| *k == Kind::Pike).collect(),
            ),
            (
                "s1-ws",
                S1Settings {
                    connections: small,
                    transport: S1Transport::Ws,
                    ..plain.clone()
                },
                kinds.iter().copied().filter(|k| *k == Kind::Pike).collect(),
            ),
            // MQTT devices on pike's MQTT listener against the same ones
            // on mosquitto, as many as plain S1 (issue 17).
            (
                "s1-mqtt",
                S1Settings {
                    transport: S1Transport::Mqtt,
                    ..plain.clone()
                },
                mqtt_kinds(&kinds),
            ),
        ];
        // 100,000 connections over several server processes (full runs).
        let per_server =
            usize::try_from(fd_limit.saturating_sub(SERVER_FD_HEADROOM)).unwrap_or(usize::MAX);
        if !options.quick && per_server > 0 {
            let total = 100_000;
            variants.push((
                "s1-100k",
                S1Settings {
                    connections: total,
                    servers: total.div_ceil(per_server),
                    ..plain.clone()
                },
                kinds.clone(),
            ));
        }
        for (name, settings, who) in variants {
            if who.is_empty() {
                continue;
            }
            // 100,000 connections take minutes per server: one round.
            let rounds = if settings.servers > 1 { 1 } else { rounds };
            let (text, value) =
                run_s1(name, &who, &bins, &settings, rounds, clk_tck, &out_dir).await?;
            report.push_str(&text);
            json.insert(name.into(), value);
        }
    }
    for id in plan::SWEEPS {
        if !options.workloads.contains(&id) {
            continue;
        }
        let Some(mut sweep) = plan::sweep(id, options.quick) else {
            continue;
        };
        if let Some(n) = options.connections
            && id != "s5"
        {
            sweep.connections = n;
            if sweep.workload == "fanout" {
                sweep.fanout = n as u64;
            }
        }
        let mut contenders = plan::contenders(id, &kinds, options.quick);
        if let Some(baseline) = &options.baseline {
            plan::add_baseline(&mut contenders, baseline);
        }
        let (connects, steps) = sweep::run(&sweep, &contenders, &bins, rounds, clk_tck).await?;
        let labels: Vec<String> = contenders
            .iter()
            .map(|c| c.label.clone())
            .filter(|l| steps.iter().any(|s| &s.label == l))
            .collect();
        let text = sweep_section(&sweep, &steps, &labels, rounds);
        eprint!("{text}");
        report.push_str(&text);
        let chart_path = out_dir.join(format!("{id}.svg"));
        if let Err(e) = chart::sweep_chart(&chart_path, &sweep, &steps, &labels) {
            eprintln!("xtask bench: {e}");
        }
        json.insert(
            id.into(),
            serde_json::json!({
                "title": sweep.title,
                "connections": sweep.connections,
                "rates": sweep.rates,
                "search_ceiling": sweep.search_ceiling,
                "warmup": sweep.warmup,
                "step": sweep.step,
                "drain": sweep.drain,
                "args": sweep.args,
                "connects": connects.iter().map(|c| serde_json::json!({"label": c.label, "round": c.round, "line": c.line})).collect::<Vec<_>>(),
                "steps": steps.iter().map(sweep::Step::to_json).collect::<Vec<_>>(),
            }),
        );
    }
    if options.workloads.contains(&"s8") && kinds.contains(&Kind::Pike) {
        let (text, value) = run_s8(&bins, &tls, options, rounds, &out_dir).await?;
        report.push_str(&text);
        json.insert("s8".into(), value);
    }

    if options.workloads.contains(&"cluster") {
        let settings = cluster_plan::ClusterSettings::new(
            options.quick,
            options.connections,
            options.room_spread,
            fd_limit,
        )?;
        let (text, value) =
            cluster_run::run(&root, &target_dir(&root), &bins, &settings, clk_tck).await?;
        eprint!("{text}");
        report.push_str(&text);
        json.insert("cluster".into(), value);
    }

    let load_after = load_text();
    println!("\n# cargo xtask bench ({mode}), load average after: {load_after}\n{report}");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let all = serde_json::json!({
        "mode": mode,
        "rounds": rounds,
        "machine": machine,
        "load_average_after": procfs::load_average(),
        "versions": versions,
        "workloads": json,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| out_dir.join(format!("bench-{mode}-{stamp}.json")));
    let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
    std::fs::write(&out, text + "\n").map_err(|e| format!("write {}: {e}", out.display()))?;
    let md = out_dir.join("report.md");
    std::fs::write(&md, &report).map_err(|e| format!("write {}: {e}", md.display()))?;
    println!(
        "\nresults: {}, tables: {}, charts: {}/*.svg ({:.0} s in all)",
        out.display(),
        md.display(),
        out_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The Markdown section of a sweep: heading, summary and per-rate tables.
fn sweep_section(
    sweep: &sweep::Sweep,
    steps: &[sweep::Step],
    labels: &[String],
    rounds: usize,
) -> String {
    format!(
        "\n## {} {}: {} connections, rates {:?} (per second), {} s windows{}\n\n{}\n{}",
        sweep.id,
        sweep.title,
        sweep.connections,
        sweep.rates,
        sweep.step,
        if rounds > 1 {
            format!(", median of {rounds} (min–max)")
        } else {
            String::new()
        },
        sweep_report::summary_table(sweep, steps, labels),
        sweep_report::rates_table(sweep, steps, labels),
    )
}

/// `--report FILE`: the sweep tables and charts again from a run's JSON
/// (after a change to the tables, without measuring again).
fn rerender(path: &Path, out_dir: Option<&Path>) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let all: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let quick = all["mode"] == "quick";
    let rounds = all["rounds"]
        .as_u64()
        .and_then(|r| usize::try_from(r).ok())
        .unwrap_or(1);
    let out_dir = out_dir
        .map(Path::to_path_buf)
        .or_else(|| path.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let mut report = String::new();
    for id in plan::SWEEPS {
        let saved = &all["workloads"][id];
        let Some(mut sweep) = plan::sweep(id, quick).filter(|_| !saved.is_null()) else {
            continue;
        };
        let number = |key: &str, default: u64| saved[key].as_u64().unwrap_or(default);
        sweep.connections = usize::try_from(number("connections", 0)).unwrap_or(0);
        sweep.warmup = number("warmup", sweep.warmup);
        sweep.step = number("step", sweep.step);
        sweep.drain = number("drain", sweep.drain);
        if let Some(rates) = saved["rates"].as_array() {
            sweep.rates = rates.iter().filter_map(serde_json::Value::as_u64).collect();
        }
        if sweep.workload == "fanout" {
            sweep.fanout = sweep.connections as u64;
        }
        let steps: Vec<sweep::Step> = saved["steps"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| sweep::Step::from_json(v, sweep.drain))
                    .collect()
            })
            .unwrap_or_default();
        let mut labels: Vec<String> = Vec::new();
        for step in &steps {
            if !labels.contains(&step.label) {
                labels.push(step.label.clone());
            }
        }
        report.push_str(&sweep_section(&sweep, &steps, &labels, rounds));
        chart::sweep_chart(&out_dir.join(format!("{id}.svg")), &sweep, &steps, &labels)?;
    }
    let md = out_dir.join("report-sweeps.md");
    std::fs::write(&md, &report).map_err(|e| format!("write {}: {e}", md.display()))?;
    print!("{report}");
    println!(
        "\ntables: {}, charts: {}/*.svg",
        md.display(),
        out_dir.display()
    );
    Ok(())
}

/// Who runs S1 with MQTT devices: pike (its column `pike MQTT`) and
/// mosquitto; NATS speaks no MQTT here.
fn mqtt_kinds(kinds: &[Kind]) -> Vec<Kind> {
    kinds
        .iter()
        .copied()
        .filter(|k| matches!(k, Kind::Pike | Kind::Mosquitto))
        .collect()
}

/// S1 (variant `name`) over every server, `rounds` times; the table, the
/// chart and the JSON.
async fn run_s1(
    name: &str,
    kinds: &[Kind],
    bins: &Binaries,
    settings: &S1Settings,
    rounds: usize,
    clk_tck: u64,
    out_dir: &Path,
) -> Result<(String, serde_json::Value), String> {
    let mut results: Vec<S1Result> = Vec::new();
    for round in 1..=rounds {
        for kind in kinds {
            eprintln!(
                "xtask bench: S1 {} round {round}/{rounds}: {} ...",
                settings.transport.name(),
                kind.name()
            );
            let result = match s1::measure(*kind, bins, settings, clk_tck).await {
                Ok(result) => result,
                Err(e) => {
                    eprintln!("xtask bench:   {} failed: {e}", kind.name());
                    continue;
                }
            };
            eprintln!(
                "xtask bench:   {} connected {}/{} in {:.2} s ({:.0}/s), RSS {} → {} KiB ({:.0} B/conn{}), slab {:.0} B/conn, idle CPU {:.2} %",
                kind.name(),
                result.connected,
                result.requested,
                result.connect_seconds,
                result.connect_rate,
                result.rss_before_kib,
                result.rss_after_kib,
                result.rss_per_conn_bytes,
                if result.rss_settled {
                    ""
                } else {
                    ", not settled"
                },
                result.slab_per_conn_bytes,
                result.idle_cpu_pct
            );
            if let Some(error) = &result.first_error {
                eprintln!("xtask bench:   first error: {error}");
            }
            results.push(result);
        }
    }
    let table = report::s1_table(&results, kinds, rounds, settings.transport);
    let text = format!(
        "\n## S1 idle connections over {}: {} per server kind{}{}\n\n{table}",
        settings.transport.name(),
        settings.connections,
        if settings.servers > 1 {
            format!(" across {} processes", settings.servers)
        } else {
            String::new()
        },
        if rounds > 1 {
            format!(", median of {rounds} (min–max)")
        } else {
            String::new()
        },
    );
    eprint!("{text}");
    let bars: Vec<(String, f64)> = kinds
        .iter()
        .filter_map(|k| {
            let column = settings.transport.column(*k);
            let values: Vec<f64> = results
                .iter()
                .filter(|r| r.server == column)
                .map(|r| r.rss_per_conn_bytes)
                .collect();
            Some((column, report::median(&values)?))
        })
        .collect();
    if let Err(e) = chart::bar_chart(
        &out_dir.join(format!("{name}.svg")),
        &format!(
            "S1: user-space memory per idle connection ({}, {} connections)",
            settings.transport.name(),
            settings.connections
        ),
        "bytes per connection",
        &bars,
    ) {
        eprintln!("xtask bench: {e}");
    }
    let value = serde_json::json!({
        "transport": settings.transport.name(),
        "servers": settings.servers,
        "connections": settings.connections,
        "cpu_window_seconds": settings.cpu_window.as_secs_f64(),
        "results": results.iter().map(S1Result::to_json).collect::<Vec<_>>(),
    });
    Ok((text, value))
}

/// S8 on pike, `rounds` times; the table, the chart and the JSON.
async fn run_s8(
    bins: &Binaries,
    tls: &TlsFiles,
    options: &Options,
    rounds: usize,
    out_dir: &Path,
) -> Result<(String, serde_json::Value), String> {
    let settings = S8Settings {
        clients: if options.quick { 1_000 } else { 5_000 },
        ceiling_secs: if options.quick { 2 } else { 5 },
        deadline: if options.quick { 60 } else { 180 },
    };
    // `--baseline`: the build before a change, with the shipped client.
    let baseline = options.baseline.as_ref().map(|path| Binaries {
        pike_server: path.clone(),
        ..bins.clone()
    });
    let mut runs: Vec<(s8::S8Variant, &Binaries)> =
        s8::VARIANTS.iter().map(|v| (*v, bins)).collect();
    if let Some(baseline) = &baseline {
        runs.push((s8::BASELINE, baseline));
    }
    let mut results = Vec::new();
    for round in 1..=rounds {
        for &(variant, bins) in &runs {
            eprintln!(
                "xtask bench: S8 reconnect storm round {round}/{rounds}: {} ...",
                variant.label
            );
            match s8::measure(bins, tls, &settings, variant, round).await {
                Ok(result) => {
                    eprintln!(
                        "xtask bench:   ceiling {:.0} handshakes/s, 99 % back in {:.2} s, 100 % in {} (ideal {:.2} s), gave up {}",
                        result.handshakes_per_sec,
                        result.seconds_to_99,
                        result
                            .seconds_to_100
                            .map_or_else(|| "–".to_owned(), |s| format!("{s:.2} s")),
                        result.ideal_secs,
                        result.gave_up
                    );
                    results.push(result);
                }
                Err(e) => eprintln!("xtask bench:   S8 ({}) failed: {e}", variant.label),
            }
        }
    }
    let text = format!(
        "\n## S8 reconnect storm: {} TLS clients, gateway killed and restarted{}\n\n{}",
        settings.clients,
        if rounds > 1 {
            format!(", median of {rounds} (min–max)")
        } else {
            String::new()
        },
        s8::table(&results)
    );
    eprint!("{text}");
    if let Some(first) = results.first()
        && let Err(e) = chart::curve_chart(
            &out_dir.join("s8.svg"),
            &format!("S8: {} TLS clients after a gateway restart", first.clients),
            &first.curve,
            first.clients as f64,
            first.ideal_secs.is_finite().then_some(first.ideal_secs),
        )
    {
        eprintln!("xtask bench: {e}");
    }
    let value = serde_json::json!({
        "clients": settings.clients,
        "results": results.iter().map(s8::S8Result::to_json).collect::<Vec<_>>(),
    });
    Ok((text, value))
}

/// The workspace root (this crate lives in `<root>/xtask`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The target directory (`CARGO_TARGET_DIR`, else `<root>/target`).
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// `cargo build --release -p pike-server -p xtask`.
pub(crate) async fn build(root: &Path) -> Result<(), String> {
    cargo_build(root, &["--release", "-p", "pike-server", "-p", "xtask"]).await
}

/// `cargo build ARGS` (e.g. `--release -p pike-server`), 30 minutes at most.
pub(crate) async fn cargo_build(root: &Path, args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("xtask: cargo build {}", args.join(" "));
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .arg("build")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // `cargo xtask` (a `cargo run`) gives this process xtask's own package
    // variables; build scripts that watch them (ring's `CARGO_PKG_NAME`,
    // through `rerun-if-env-changed`) would see them change and rebuild
    // ring and everything above it in every `cargo xtask` run after a plain
    // `cargo build --release`.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_package_variable) {
            command.env_remove(name);
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(1800), command.status())
        .await
        .map_err(|_| "the build took longer than 30 minutes".to_owned())?
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("the build failed ({status})"));
    }
    Ok(())
}

/// The variables `cargo run` sets for the package it runs (not cargo's
/// own configuration such as `CARGO_TARGET_DIR` or `CARGO_HOME`).
fn is_package_variable(name: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
        || name == "CARGO_PRIMARY_PACKAGE"
}

/// Clock ticks per second for `/proc/<pid>/stat` (`getconf CLK_TCK`, else
/// 100, Linux's value).
pub(crate) async fn clk_tck() -> u64 {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .stdin(Stdio::null())
        .output()
        .await;
    output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The load averages as text.
pub(crate) fn load_text() -> String {
    procfs::load_average().map_or_else(
        || "unknown".into(),
        |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"),
    )
}

/// What the machine is.
pub(crate) fn machine(fd_limit: u64) -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    serde_json::json!({
        "cpu": model,
        "cpus": cpus,
        "mem_gib": mem_kib as f64 / 1024.0 / 1024.0,
        "kernel": kernel.trim(),
        "open_file_limit": fd_limit,
        "load_average_before": procfs::load_average(),
    })
}

/// Runs `work` on a current-thread runtime until it ends or Ctrl-C; then
/// drops the runtime, which drops every guard left (servers and generators
/// are killed). Shared by `bench`, `soak` and `chaos`.
pub(crate) fn run_interruptible<T>(
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        tokio::select! {
            outcome = work => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted: servers and generators stopped".to_owned()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn quick_defaults() {
        let o = Options::parse(&args(&["--quick"])).unwrap();
        assert!(o.quick && o.build && o.install && !o.help);
        assert_eq!(o.rounds(), 1);
        assert_eq!(o.only, Kind::ALL.to_vec());
        let s = o.s1(20_000).unwrap();
        assert_eq!(s.connections, 2_000);
        assert_eq!(s.per_generator, 19_800);
        assert_eq!(s.cpu_window, Duration::from_secs(2));
        assert_eq!(o.workloads, plan::WORKLOADS.to_vec());
    }

    #[test]
    fn full_defaults_fill_the_fd_limit() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!(o.rounds(), 3);
        assert_eq!(o.s1(20_000).unwrap().connections, 19_700);
        assert!(
            Options::parse(&args(&["--connections", "19701"]))
                .unwrap()
                .s1(20_000)
                .is_err()
        );
    }

    #[test]
    fn options() {
        let o = Options::parse(&args(&[
            "--only",
            "nats,pike",
            "--rounds",
            "5",
            "--connections",
            "100",
            "--no-build",
            "--no-install",
            "--out",
            "x.json",
            "--workloads",
            "s2,s1",
            "--baseline",
            "old/pike-server",
        ]))
        .unwrap();
        assert_eq!(o.baseline, Some(PathBuf::from("old/pike-server")));
        assert_eq!(o.only, vec![Kind::Pike, Kind::Nats]);
        assert_eq!((o.rounds(), o.connections), (5, Some(100)));
        assert!(!o.build && !o.install);
        assert_eq!(o.out, Some(PathBuf::from("x.json")));
        assert_eq!(o.workloads, ["s1", "s2"]);
        let o = Options::parse(&args(&["--per-generator", "1000"])).unwrap();
        assert_eq!(o.s1(20_000).unwrap().per_generator, 1000);
        // Never above what a generator process may open.
        let o = Options::parse(&args(&["--per-generator", "50000"])).unwrap();
        assert_eq!(o.s1(20_000).unwrap().per_generator, 19_800);
        assert!(Options::parse(&args(&["-h"])).unwrap().help);
    }

    #[test]
    fn package_variables_are_not_passed_to_the_release_build() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            assert!(is_package_variable(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO_INCREMENTAL",
        ] {
            assert!(!is_package_variable(name), "{name}");
        }
    }

    #[test]
    fn bad_options() {
        for bad in [
            &["--rounds", "0"][..],
            &["--rounds"],
            &["--connections", "0"],
            &["--only", "emqx"],
            &["--only", ""],
            &["--per-generator", "0"],
            &["--frobnicate"],
            &["--workloads", "s0"],
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}

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
//! Workloads so far: S1, idle connections ([`s1`]).

mod client;
mod peers;
mod procfs;
mod report;
mod s1;
mod servers;
mod wire;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use tokio::process::Command;

use self::s1::{S1Result, S1Settings};
use self::servers::{Binaries, Kind};

pub(crate) const USAGE: &str = "\
Usage: cargo xtask bench [options]

Runs workload S1 (idle connections) against pike-server, mosquitto (MQTT
3.1.1) and nats-server (core) on loopback: each server fresh and pinned to
CPU 0 with one worker, the generators pinned to CPU 1. Prints a ratio table
(pike/peer) and writes JSON results to target/bench/.

Options:
  --quick             Small and fast (< 3 minutes): 5,000 connections, one
                      round, 3 s idle-CPU window
  --connections N     Idle connections per server (default: quick 5,000;
                      full: the open-file limit minus 300)
  --rounds R          Rounds; the table shows the median (default: quick 1,
                      full 3)
  --only LIST         Servers to run, comma-separated: pike,mosquitto,nats
  --no-build          Use the binaries already in target/release
  --no-install        Do not install missing peers (they are skipped)
  --per-generator N   Most connections per generator process (default:
                      the open-file limit minus 200; more processes, each
                      dialling from its own 127.0.x.0/24, when needed)
  --out FILE          Where to write the JSON results
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
            .unwrap_or(if self.quick { 5_000 } else { ceiling });
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
            cpu_window: Duration::from_secs(if self.quick { 3 } else { 10 }),
            settle_limit: Duration::from_secs(if self.quick { 10 } else { 30 }),
            connect_deadline: Duration::from_secs(if self.quick { 60 } else { 300 }),
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
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(&options) => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted: servers and generators stopped".to_owned()),
        }
    });
    // Dropping the runtime drops every guard left: servers and generators
    // are killed.
    drop(runtime);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: bench failed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `xtask bench-client ...`: the MQTT/NATS generator process.
pub(crate) fn client_command(args: &[String]) -> ExitCode {
    let options = match client::ClientOptions::parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
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
    match runtime.block_on(client::run(options)) {
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
    if options.install && kinds.iter().any(|k| *k != Kind::Pike) {
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
    let settings = options.s1(fd_limit)?;
    let clk_tck = clk_tck().await;
    let rounds = options.rounds();
    let machine = machine(fd_limit);
    let mut versions = serde_json::Map::new();
    for kind in &kinds {
        versions.insert(
            kind.name().into(),
            servers::version(*kind, &bins).await.into(),
        );
    }
    eprintln!(
        "xtask bench: S1 idle connections, {} per server, {rounds} round(s), servers {}; load average before: {}",
        settings.connections,
        kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        load_text()
    );

    let mut results: Vec<S1Result> = Vec::new();
    for round in 1..=rounds {
        for kind in &kinds {
            eprintln!("xtask bench: round {round}/{rounds}: {} ...", kind.name());
            let result = s1::measure(*kind, &bins, &settings, clk_tck).await?;
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

    let table = report::s1_table(&results, &kinds, rounds);
    let load_after = load_text();
    println!(
        "\nS1 idle connections: {} per server, {} ({rounds} round{}{}), load average after: {load_after}\n",
        settings.connections,
        if options.quick { "quick" } else { "full" },
        if rounds == 1 { "" } else { "s" },
        if rounds > 1 {
            "; median (min–max)"
        } else {
            ""
        },
    );
    print!("{table}");

    let json = serde_json::json!({
        "workload": "S1 idle connections",
        "mode": if options.quick { "quick" } else { "full" },
        "connections": settings.connections,
        "rounds": rounds,
        "cpu_window_seconds": settings.cpu_window.as_secs_f64(),
        "machine": machine,
        "load_average_after": procfs::load_average(),
        "versions": versions,
        "results": results.iter().map(S1Result::to_json).collect::<Vec<_>>(),
        "table": table,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let out = match &options.out {
        Some(path) => path.clone(),
        None => {
            let dir = target_dir(&root).join("bench");
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            dir.join(format!(
                "s1-{}-{stamp}.json",
                if options.quick { "quick" } else { "full" }
            ))
        }
    };
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&out, text + "\n").map_err(|e| format!("write {}: {e}", out.display()))?;
    println!(
        "\nresults: {} ({:.0} s in all)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The workspace root (this crate lives in `<root>/xtask`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// `cargo build --release -p pike-server -p xtask`.
async fn build(root: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("xtask bench: cargo build --release -p pike-server -p xtask");
    let status = tokio::time::timeout(
        Duration::from_secs(1800),
        Command::new(cargo)
            .current_dir(root)
            .args(["build", "--release", "-p", "pike-server", "-p", "xtask"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .map_err(|_| "the release build took longer than 30 minutes".to_owned())?
    .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("the release build failed ({status})"));
    }
    Ok(())
}

/// Clock ticks per second for `/proc/<pid>/stat` (`getconf CLK_TCK`, else
/// 100, Linux's value).
async fn clk_tck() -> u64 {
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

fn load_text() -> String {
    procfs::load_average().map_or_else(
        || "unknown".into(),
        |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"),
    )
}

/// What the machine is.
fn machine(fd_limit: u64) -> serde_json::Value {
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
        assert_eq!(s.connections, 5_000);
        assert_eq!(s.per_generator, 19_800);
        assert_eq!(s.cpu_window, Duration::from_secs(3));
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
        ]))
        .unwrap();
        assert_eq!(o.only, vec![Kind::Pike, Kind::Nats]);
        assert_eq!((o.rounds(), o.connections), (5, Some(100)));
        assert!(!o.build && !o.install);
        assert_eq!(o.out, Some(PathBuf::from("x.json")));
        let o = Options::parse(&args(&["--per-generator", "1000"])).unwrap();
        assert_eq!(o.s1(20_000).unwrap().per_generator, 1000);
        // Never above what a generator process may open.
        let o = Options::parse(&args(&["--per-generator", "50000"])).unwrap();
        assert_eq!(o.s1(20_000).unwrap().per_generator, 19_800);
        assert!(Options::parse(&args(&["-h"])).unwrap().help);
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
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}

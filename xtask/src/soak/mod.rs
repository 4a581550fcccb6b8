//! `cargo xtask soak --minutes N`: a mixed load at a sustainable rate
//! against one gateway for N minutes, sampled every minute, failing when
//! anything grows after the warm-up or a reliable message is lost.
//!
//! It reuses the bench's machinery ([`crate::bench`]): the release build,
//! the gateway with a temporary data dir and config pinned to CPU 0
//! ([`crate::bench::servers`]), the `pike bench` load generators pinned to CPU 1
//! ([`crate::bench::load`]) and `/proc` ([`procfs`]). The load ([`plan`]): an idle fleet
//! (`pike bench idle`, several processes and source networks), reliable
//! unicast pushes (`unicast --reliable`), a reliable live room
//! (`fanout --reliable`), uplink to the generator's webhook backend
//! (`uplink`) and a second room whose members churn (`fanout --churn`,
//! sized so that 1 % of the whole fleet reconnects per second). The sweep
//! generators run one 60-second step per minute (55 s published, 5 s
//! drain), so each step line is one minute's deliveries and latencies.
//!
//! Every minute the harness samples the gateway's RSS, open descriptors,
//! threads, CPU and tokio tasks (`pike_runtime_alive_tasks` on
//! `/metrics`, [`scrape`]); the verdict is [`rule`]'s; the table, JSON and
//! chart are [`report`]'s and [`chart`]'s.

mod chart;
mod plan;
mod report;
mod rule;
mod scrape;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bench::load::Load;
use crate::bench::servers::{Binaries, Kind, Server, ServerSpec};
use crate::bench::{self, procfs};

use self::plan::Plan;
use self::report::Minute;

pub(crate) const USAGE: &str = "\
Usage: cargo xtask soak [options]

Runs a mixed load at a sustainable rate against one pike-server (pinned
to CPU 0, one worker) for N minutes: an idle fleet, reliable unicast
pushes, a reliable live room, uplink to a webhook backend, and 1 % of the
fleet reconnecting per second. Every minute it samples the gateway's RSS,
open descriptors, tokio tasks, the p99 of unicast and room deliveries and
the delivered % of every reliable stream. Fails (exit 1) when, after the
warm-up (20 % of the run, at least 2 minutes), RSS, descriptors, tasks or
a p99 grow more than 5 % (median of the first eighth of the minutes after
the warm-up, at least 2, against the median of the last as many; p99
growth under 1 ms is noise), or
when any minute of a reliable stream delivers less than 100 %.
Prints the per-minute table (Markdown) and writes soak.json (every
sample) and soak.svg to target/soak/ (or --out-dir).

Options:
  --minutes N     Length of the run, 3 to 1440 (default: 10; --quick: 3)
  --quick         A small fleet (about 1,700 connections) and low rates
  --seed S        Names the run's aliases and rooms (default: the clock);
                  the load itself is deterministic. Printed and recorded
  --out-dir DIR   Where to write soak.json and soak.svg
  --no-build      Use the binaries already in target/release
  --report FILE   Run nothing: judge a run's soak.json again with today's
                  rule, print its table and verdict, and write its chart
                  (into --out-dir, default the file's directory)
  -h, --help      Print this help
";

/// The command line of `cargo xtask soak`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    pub(crate) minutes: u32,
    pub(crate) quick: bool,
    pub(crate) seed: u64,
    pub(crate) out_dir: Option<PathBuf>,
    pub(crate) build: bool,
    /// A recorded run to judge again instead of running one.
    pub(crate) report: Option<PathBuf>,
    pub(crate) help: bool,
}

/// Shortest and longest run, minutes.
const MINUTES: std::ops::RangeInclusive<u32> = 3..=1440;

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let mut minutes = None;
        let mut options = Self {
            minutes: 0,
            quick: false,
            seed: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() % 100_000),
            out_dir: None,
            build: true,
            report: None,
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
                "-h" | "--help" => options.help = true,
                "--minutes" => {
                    let v = value(arg)?;
                    let n: u32 = v.parse().map_err(|_| format!("bad --minutes {v:?}"))?;
                    if !MINUTES.contains(&n) {
                        return Err(format!(
                            "--minutes must be {} to {}",
                            MINUTES.start(),
                            MINUTES.end()
                        ));
                    }
                    minutes = Some(n);
                }
                "--seed" => {
                    let v = value(arg)?;
                    options.seed = v.parse().map_err(|_| format!("bad --seed {v:?}"))?;
                }
                "--out-dir" => options.out_dir = Some(PathBuf::from(value(arg)?)),
                "--report" => options.report = Some(PathBuf::from(value(arg)?)),
                other => return Err(format!("unknown option `{other}` for `soak`")),
            }
        }
        options.minutes = minutes.unwrap_or(if options.quick { 3 } else { 10 });
        Ok(options)
    }
}

/// `cargo xtask soak [options]`.
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
    let outcome = match &options.report {
        Some(path) => rejudge(path, options.out_dir.as_deref()),
        None => bench::run_interruptible(run(&options)),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("xtask soak: FAILED (see the verdict above)");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Seconds before a minute's end its gateway sample is taken (within the
/// generators' drain, so the last sample sees every connection).
const SAMPLE_BEFORE_END: u64 = 3;

/// A sweep generator's step lines, as they come: `(workload, line)`.
type StepSender = mpsc::UnboundedSender<(&'static str, Value)>;

/// Runs the soak; `Ok(pass)`.
async fn run(options: &Options) -> Result<bool, String> {
    let root = bench::workspace_root();
    if options.build {
        bench::build(&root).await?;
    }
    let release = bench::target_dir(&root).join("release");
    let bins = Binaries {
        pike_server: release.join("pike-server"),
        pike: release.join("pike"),
        xtask: release.join("xtask"),
        mosquitto: None,
        nats: None,
    };
    for path in [&bins.pike_server, &bins.pike] {
        if !path.is_file() {
            return Err(format!(
                "{} not found (run without --no-build)",
                path.display()
            ));
        }
    }
    let plan = Plan::new(options);
    let out_dir = options
        .out_dir
        .clone()
        .unwrap_or_else(|| bench::target_dir(&root).join("soak"));
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let clk_tck = bench::clk_tck().await;
    let fd_limit = procfs::open_file_limit().unwrap_or(1024);
    eprint!("{}", plan.describe());
    eprintln!(
        "xtask soak: seed {}, {} minutes, warm-up {} minutes; load average before: {}",
        plan.seed,
        plan.minutes,
        rule::warmup_minutes(plan.minutes),
        bench::load_text()
    );
    let machine = bench::machine(fd_limit);
    let started = Instant::now();

    // The gateway, its webhook pointing at the uplink generator's sink.
    let sink = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?;
    let mut spec = ServerSpec::plain(Kind::Pike);
    spec.webhook = Some(format!("http://{sink}/uplink"));
    spec.retention = Some(plan.retention());
    let server = Server::start_spec(&spec, &bins, 0).await?;
    let http = server.http_addr.ok_or("the gateway has no HTTP listener")?;
    let dir = tempfile::Builder::new()
        .prefix("pike-soak-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;

    // The idle fleet first: held until its stdin closes.
    let mut idle: Vec<(Load, ChildStdin)> = Vec::new();
    for command in plan.idle_commands(&bins, &server) {
        idle.push(Load::spawn_holding(command, dir.path())?);
    }
    let mut idle_connected = 0;
    for (generator, _) in &mut idle {
        let line = generator
            .expect("connected", Duration::from_secs(300))
            .await?;
        idle_connected += line["connected"].as_u64().unwrap_or(0);
    }
    eprintln!("xtask soak: idle fleet connected: {idle_connected}");

    // The sweep generators: unicast, room and churn start their first step
    // at `start_at`; the uplink generator (no --start-at) is started so
    // that it begins about then.
    let start_at = unix_ms() + plan.lead_in.as_millis() as u64;
    let start = Instant::now() + plan.lead_in;
    let (steps_tx, mut steps_rx) = mpsc::unbounded_channel();
    let mut connected = serde_json::Map::new();
    let mut readers = tokio::task::JoinSet::new();
    for (workload, command) in plan.sweep_commands(&bins, &server, start_at) {
        let mut generator = Load::spawn(command, dir.path())?;
        let line = generator
            .expect("connected", Duration::from_secs(120))
            .await?;
        connected.insert(workload.into(), line);
        readers.spawn(read_steps(workload, generator, steps_tx.clone()));
    }
    tokio::time::sleep_until(start.checked_sub(Duration::from_secs(2)).unwrap_or(start)).await;
    let mut uplink = Load::spawn(plan.uplink_command(&bins, &server, sink), dir.path())?;
    let line = uplink.expect("connected", Duration::from_secs(60)).await?;
    connected.insert("uplink".into(), line);
    readers.spawn(read_steps("uplink", uplink, steps_tx.clone()));
    drop(steps_tx);

    // Every minute: the gateway's figures near the minute's end, in the
    // generators' drain (before the last minute's generators finish and
    // close their connections).
    let pid = server.pid;
    let data_dir = server.data_dir();
    let mut minutes: Vec<Minute> = Vec::new();
    let mut ticks = procfs::cpu_ticks(pid).unwrap_or(0);
    let mut lines: Vec<(&'static str, Value)> = Vec::new();
    for minute in 1..=plan.minutes {
        let at = start + Duration::from_secs(60 * u64::from(minute) - SAMPLE_BEFORE_END);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(at) => break,
                line = steps_rx.recv() => match line {
                    Some(line) => lines.push(line),
                    None => tokio::time::sleep_until(at).await,
                },
            }
        }
        let rss = procfs::rss_kib(pid).map_err(|e| format!("the gateway is gone: {e}"))?;
        let now_ticks = procfs::cpu_ticks(pid).unwrap_or(ticks);
        let sample = Minute {
            minute,
            rss_kib: rss,
            fds: procfs::open_fds(pid).unwrap_or(0),
            threads: procfs::threads(pid).unwrap_or(0),
            tasks: scrape::tasks(http).await,
            store_bytes: dir_bytes(&data_dir),
            cpu_pct: now_ticks.saturating_sub(ticks) as f64 / clk_tck.max(1) as f64 / 60.0 * 100.0,
            steps: serde_json::Map::new(),
        };
        ticks = now_ticks;
        eprintln!("xtask soak: {}", sample.progress());
        minutes.push(sample);
    }
    // The last steps' lines (each generator drains for 5 s after its
    // last window), then the reports.
    let _ = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = steps_rx.recv().await {
            lines.push(line);
        }
    })
    .await;
    let hwm = procfs::hwm_kib(pid).unwrap_or(0);
    readers.abort_all();
    for (mut generator, stdin) in idle {
        drop(stdin);
        generator.finish().await;
    }
    server.stop().await;

    report::attach(&mut minutes, &lines);
    let samples: Vec<rule::Sample> = minutes.iter().map(Minute::sample).collect();
    let verdict = rule::judge(&samples, plan.minutes);
    let table = report::table(&minutes);
    let verdict_text = report::verdict(&verdict);
    println!(
        "\n## Soak: {} minutes{}, seed {}\n\n{}\n{}\n{table}\n{verdict_text}",
        plan.minutes,
        if plan.quick { " (--quick)" } else { "" },
        plan.seed,
        plan.describe(),
        report::rates_line(&minutes, plan.minutes),
    );
    let json = serde_json::json!({
        "minutes": plan.minutes,
        "quick": plan.quick,
        "seed": plan.seed,
        "warmup_minutes": verdict.warmup,
        "plan": plan.to_json(),
        "machine": machine,
        "load_average_after": procfs::load_average(),
        "connected": connected,
        "idle_connected": idle_connected,
        "gateway_hwm_kib": hwm,
        "samples": minutes.iter().map(Minute::to_json).collect::<Vec<_>>(),
        "verdict": report::verdict_json(&verdict),
        "pass": verdict.pass(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    let out = out_dir.join("soak.json");
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&out, text + "\n").map_err(|e| format!("write {}: {e}", out.display()))?;
    let svg = out_dir.join("soak.svg");
    chart::soak_chart(&svg, &samples, &verdict, plan.minutes)?;
    println!("results: {}, chart: {}", out.display(), svg.display());
    Ok(verdict.pass())
}

/// Judges a recorded run (`soak.json`) again: prints its table and
/// verdict, writes its chart; `Ok(pass)`.
fn rejudge(path: &std::path::Path, out_dir: Option<&std::path::Path>) -> Result<bool, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let minutes_asked = json["minutes"]
        .as_u64()
        .and_then(|m| u32::try_from(m).ok())
        .ok_or_else(|| format!("{}: no `minutes`", path.display()))?;
    let minutes: Vec<Minute> = json["samples"]
        .as_array()
        .ok_or_else(|| format!("{}: no `samples`", path.display()))?
        .iter()
        .map(Minute::from_json)
        .collect::<Result<_, _>>()?;
    let samples: Vec<rule::Sample> = minutes.iter().map(Minute::sample).collect();
    let verdict = rule::judge(&samples, minutes_asked);
    println!(
        "\n## Soak: {minutes_asked} minutes, seed {}, judged again from {}\n\n{}\n{}",
        json["seed"],
        path.display(),
        report::table(&minutes),
        report::verdict(&verdict)
    );
    let dir = out_dir
        .map(std::path::Path::to_path_buf)
        .or_else(|| path.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("soak");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let svg = dir.join(format!("{stem}.svg"));
    chart::soak_chart(&svg, &samples, &verdict, minutes_asked)?;
    println!("chart: {}", svg.display());
    Ok(verdict.pass())
}

/// Forwards a sweep generator's `step` lines until it ends.
async fn read_steps(workload: &'static str, mut generator: Load, tx: StepSender) {
    // A step is 60 s; a generator silent for 3 minutes is stuck.
    while let Ok(Some(line)) = generator.next(Duration::from_secs(180)).await {
        if line["kind"] == "step" && tx.send((workload, line)).is_err() {
            break;
        }
    }
    generator.finish().await;
}

/// Bytes of the files directly in `dir` (the gateway's store file).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    })
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!((o.minutes, o.quick, o.build), (10, false, true));
        let o = Options::parse(&args(&["--quick"])).unwrap();
        assert_eq!(o.minutes, 3);
        let o = Options::parse(&args(&["--minutes", "60", "--seed", "7", "--no-build"])).unwrap();
        assert_eq!((o.minutes, o.seed, o.build), (60, 7, false));
        let o = Options::parse(&args(&["--report", "old/soak.json"])).unwrap();
        assert_eq!(o.report, Some(PathBuf::from("old/soak.json")));
        for bad in [
            &["--minutes", "2"][..],
            &["--minutes", "1441"],
            &["--minutes"],
            &["--seed", "x"],
            &["--frobnicate"],
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}

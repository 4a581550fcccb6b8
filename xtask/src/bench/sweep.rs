//! Workloads S2–S7: open-loop rate sweeps run by one generator process
//! per server and round, with the server's CPU time and memory read from
//! `/proc` at the edges of every measured window.
//!
//! | Id | Generator workload | What grows with the rate |
//! |---|---|---|
//! | S2 | `fanout` (9,000 members of one room/topic, 1 publisher) | publishes/s × members deliveries/s |
//! | S3 | `unicast` (N devices, each its own address; 4 publishers) | messages/s |
//! | S4 | `group` (N devices in groups of 100) | group messages/s × 100 |
//! | S5 | `uplink` (N devices sending to one backend) | uplink messages/s |
//! | S6 | `fanout --churn 1` (1 % of members reconnect per second) | as S2 |
//! | S7 | `fanout --slow 1` (1 % of members stop reading) | as S2 |

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::load::{self, Load};
use super::procfs;
use super::search::RateSearch;
use super::servers::{Binaries, Kind, Server, ServerSpec};

/// One sweep workload.
#[derive(Clone, Debug)]
pub(crate) struct Sweep {
    /// `S2` … `S7`.
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    /// The generator's workload word.
    pub(crate) workload: &'static str,
    /// Flags after the common ones (same for every server).
    pub(crate) args: Vec<String>,
    /// Connections the generator opens (members or devices).
    pub(crate) connections: usize,
    /// The open-loop rates (the generator's unit: publishes/s, messages/s
    /// or group messages/s).
    pub(crate) rates: Vec<u64>,
    pub(crate) warmup: u64,
    pub(crate) step: u64,
    pub(crate) drain: u64,
    /// What one unit of rate delivers (members for fan-out, the group
    /// size for S4, 1 otherwise); for tables and charts.
    pub(crate) fanout: u64,
    /// After the fixed rates, search each contender's highest sustained
    /// rate up to this one ([`RateSearch`]); `None`: no search (quick).
    pub(crate) search_ceiling: Option<u64>,
}

/// One column of the report: a server, possibly with a variant of the
/// workload (S5: pike with a batch-taking backend and a single-message one).
#[derive(Clone, Debug)]
pub(crate) struct Contender {
    pub(crate) label: String,
    pub(crate) kind: Kind,
    /// Extra generator flags of this contender.
    pub(crate) args: Vec<String>,
    /// pike in S5: `uplink_batch_max` of the gateway's business (1: the
    /// single-message webhook contract).
    pub(crate) uplink_batch_max: usize,
    /// pike: another pike-server binary than the run's (`--baseline`).
    pub(crate) pike_server: Option<PathBuf>,
    /// pike with MQTT devices: the generator is `xtask bench-client
    /// <workload> --proto mqtt` in pike mode, its devices on the gateway's
    /// MQTT listener, its publisher the HTTP API.
    pub(crate) pike_mqtt: bool,
    /// pike: the business has a receipt webhook, served by the generator
    /// (`--receipt-sink`); the pushes ask for receipts (`--receipt` in
    /// `args`).
    pub(crate) receipt_sink: bool,
}

impl Contender {
    pub(crate) fn plain(kind: Kind) -> Self {
        Self {
            label: kind.name().to_owned(),
            kind,
            args: Vec::new(),
            uplink_batch_max: 1,
            pike_server: None,
            pike_mqtt: false,
            receipt_sink: false,
        }
    }
}

/// One measured step (one rate) of one contender in one round.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) label: String,
    pub(crate) round: usize,
    pub(crate) rate: u64,
    /// The generator's `step` line.
    pub(crate) line: Value,
    /// Server CPU seconds over the window and the drain.
    pub(crate) server_cpu_secs: f64,
    pub(crate) server_rss_kib: u64,
    pub(crate) server_hwm_kib: u64,
    /// Seconds of drain after the window.
    pub(crate) drain_secs: u64,
    /// A probe of the rate search, not one of the sweep's fixed rates.
    pub(crate) probe: bool,
}

impl Step {
    pub(crate) fn f(&self, key: &str) -> f64 {
        self.line[key].as_f64().unwrap_or(f64::NAN)
    }

    pub(crate) fn delivered_pct(&self) -> f64 {
        self.f("delivered_pct")
    }

    pub(crate) fn p99_ms(&self) -> f64 {
        self.latency("p99_ms")
    }

    /// A latency figure; not a number when nothing was delivered (the
    /// generator's histogram is empty then, not zero).
    pub(crate) fn latency(&self, key: &str) -> f64 {
        if self.f("delivered") > 0.0 {
            self.f(key)
        } else {
            f64::NAN
        }
    }

    /// A step as [`Step::to_json`] wrote it (`drain_secs` is the
    /// workload's).
    pub(crate) fn from_json(value: &Value, drain_secs: u64) -> Option<Self> {
        Some(Self {
            label: value["label"].as_str()?.to_owned(),
            round: usize::try_from(value["round"].as_u64()?).ok()?,
            rate: value["rate"].as_u64()?,
            line: value["generator"].clone(),
            server_cpu_secs: value["server_cpu_secs"].as_f64().unwrap_or(f64::NAN),
            server_rss_kib: value["server_rss_kib"].as_u64().unwrap_or(0),
            server_hwm_kib: value["server_hwm_kib"].as_u64().unwrap_or(0),
            drain_secs,
            probe: value["probe"].as_bool().unwrap_or(false),
        })
    }

    /// Whether the step counts as sustained: ≥ 99.9 % delivered and p99 ≤
    /// 250 ms (PERF-NOTES §3).
    pub(crate) fn sustained(&self) -> bool {
        self.delivered_pct() >= 99.9 && self.p99_ms() <= 250.0
    }

    /// Server CPU seconds per million deliveries.
    pub(crate) fn cpu_per_million(&self) -> f64 {
        let delivered = self.f("delivered");
        if delivered > 0.0 {
            self.server_cpu_secs / (delivered / 1e6)
        } else {
            f64::NAN
        }
    }

    /// Deliveries per second of generator CPU in this step: the
    /// generator's own ceiling, calibrated in the same run (a step whose
    /// generator CPU nears 100 % is bounded by the generator, not the
    /// server).
    pub(crate) fn generator_ceiling(&self) -> f64 {
        let cpu = self.f("gen_cpu_secs");
        let delivered = self.f("delivered");
        if cpu > 0.0 && delivered > 0.0 {
            delivered / cpu
        } else {
            f64::NAN
        }
    }

    /// The generator's CPU over the window and the drain, % of one core.
    pub(crate) fn generator_cpu_pct(&self) -> f64 {
        let seconds = self.f("seconds") + self.drain_secs as f64;
        self.f("gen_cpu_secs") / seconds * 100.0
    }

    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "label": self.label,
            "round": self.round,
            "rate": self.rate,
            "generator": self.line,
            "server_cpu_secs": self.server_cpu_secs,
            "server_cpu_per_million": self.cpu_per_million(),
            "server_rss_kib": self.server_rss_kib,
            "server_hwm_kib": self.server_hwm_kib,
            "probe": self.probe,
        })
    }
}

/// What the generator's connect phase reported.
#[derive(Clone, Debug)]
pub(crate) struct Connected {
    pub(crate) label: String,
    pub(crate) round: usize,
    pub(crate) line: Value,
}

/// Runs `sweep` against `contender` once (round `round`): a fresh server,
/// one generator for every fixed rate, then (full mode) one generator per
/// probe of the rate search on the same server.
pub(crate) async fn measure(
    sweep: &Sweep,
    contender: &Contender,
    bins: &Binaries,
    round: usize,
    clk_tck: u64,
) -> Result<(Connected, Vec<Step>), String> {
    let dir = tempfile::Builder::new()
        .prefix("pike-bench-load-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let mut spec = ServerSpec::plain(contender.kind);
    spec.mqtt = contender.pike_mqtt;
    // S5 on pike: the generator is the uplink backend; the gateway's
    // webhook points at it.
    let sink = if sweep.workload == "uplink" && contender.kind == Kind::Pike {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?;
        spec.webhook = Some(format!("http://{addr}/uplink"));
        spec.uplink_batch_max = contender.uplink_batch_max;
        Some(addr)
    } else {
        None
    };
    // Receipts on pike: the generator is the receipt webhook too.
    let receipt_sink = if contender.receipt_sink && contender.kind == Kind::Pike {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?;
        spec.receipt_webhook = Some(format!("http://{addr}/receipts"));
        Some(addr)
    } else {
        None
    };
    let baseline_bins;
    let bins = match &contender.pike_server {
        Some(binary) => {
            baseline_bins = Binaries {
                pike_server: binary.clone(),
                ..bins.clone()
            };
            &baseline_bins
        }
        None => bins,
    };
    let server = Server::start_spec(&spec, bins, 0).await?;
    let run = Run {
        sweep,
        contender,
        bins,
        server: &server,
        sink,
        receipt_sink,
        round,
        clk_tck,
        dir: dir.path(),
    };
    let outcome = run.generator(&sweep.rates, false).await;
    let outcome = match (outcome, sweep.search_ceiling) {
        (Ok((connected, mut steps)), Some(ceiling)) => {
            run.search(ceiling, &mut steps).await;
            Ok((connected, steps))
        }
        (outcome, _) => outcome,
    };
    server.stop().await;
    outcome
}

/// One contender's server in one round, and how to load it.
struct Run<'a> {
    sweep: &'a Sweep,
    contender: &'a Contender,
    bins: &'a Binaries,
    server: &'a Server,
    sink: Option<std::net::SocketAddr>,
    /// The receipt webhook sink the generator serves.
    receipt_sink: Option<std::net::SocketAddr>,
    round: usize,
    clk_tck: u64,
    dir: &'a std::path::Path,
}

impl Run<'_> {
    /// One generator process over `rates`: its connect line and a step
    /// per rate.
    async fn generator(
        &self,
        rates: &[u64],
        probe: bool,
    ) -> Result<(Connected, Vec<Step>), String> {
        let (sweep, contender) = (self.sweep, self.contender);
        let pid = self.server.pid;
        let (mut command, server) = if contender.pike_mqtt {
            (
                load::pike_mqtt_command(self.bins, self.server, sweep.workload)?,
                self.server.mqtt_addr.ok_or("pike has no MQTT listener")?,
            )
        } else {
            (
                load::command_for(contender.kind, self.bins, self.server, sweep.workload),
                self.server.addr,
            )
        };
        let rates_arg: Vec<String> = rates.iter().map(u64::to_string).collect();
        command
            .arg("--server")
            .arg(server.to_string())
            .args(["--source-net", "127.0.20", "--sources", "32"])
            .arg(if sweep.workload == "fanout" {
                "--members"
            } else {
                "--devices"
            })
            .arg(sweep.connections.to_string())
            .arg("--rates")
            .arg(rates_arg.join(","))
            .arg("--warmup")
            .arg(sweep.warmup.to_string())
            .arg("--step")
            .arg(sweep.step.to_string())
            .arg("--drain")
            .arg(sweep.drain.to_string())
            .args(&sweep.args)
            .args(&contender.args);
        if let Some(sink) = self.sink {
            command.arg("--sink").arg(sink.to_string());
        }
        if let Some(sink) = self.receipt_sink {
            command.arg("--receipt-sink").arg(sink.to_string());
        }
        let mut gen_ = Load::spawn(command, self.dir)?;
        let connected = gen_.expect("connected", Duration::from_secs(180)).await?;
        let connected = Connected {
            label: contender.label.clone(),
            round: self.round,
            line: connected,
        };
        let per_step = Duration::from_secs(sweep.warmup + sweep.step + sweep.drain + 60);
        let mut steps = Vec::new();
        let mut ticks_at_begin = None;
        while steps.len() < rates.len() {
            let Some(line) = gen_.next(per_step).await? else {
                return Err(gen_.ended("step").await);
            };
            match line["kind"].as_str() {
                Some("step_begin") => {
                    ticks_at_begin = procfs::cpu_ticks(pid).ok();
                }
                Some("step") => {
                    let ticks = procfs::cpu_ticks(pid).ok();
                    let cpu = match (ticks_at_begin.take(), ticks) {
                        (Some(a), Some(b)) => {
                            b.saturating_sub(a) as f64 / self.clk_tck.max(1) as f64
                        }
                        _ => f64::NAN,
                    };
                    let rate = line["rate"].as_u64().unwrap_or(0);
                    let step = Step {
                        label: contender.label.clone(),
                        round: self.round,
                        rate,
                        line,
                        server_cpu_secs: cpu,
                        server_rss_kib: procfs::rss_kib(pid).unwrap_or(0),
                        server_hwm_kib: procfs::hwm_kib(pid).unwrap_or(0),
                        drain_secs: sweep.drain,
                        probe,
                    };
                    eprintln!("xtask bench:   {}", summary(&step));
                    steps.push(step);
                }
                _ => {}
            }
        }
        if let Ok(report) = gen_.expect("report", Duration::from_secs(30)).await
            && let Some(receipts) = report["receipts_received"].as_u64()
        {
            eprintln!(
                "xtask bench:   {}: the receipt sink got {receipts} receipts in {} requests",
                contender.label,
                report["receipt_requests"].as_u64().unwrap_or(0)
            );
        }
        gen_.finish().await;
        Ok((connected, steps))
    }

    /// The rate search after the fixed rates in `steps`: each probe a
    /// generator of its own, its step appended to `steps`. A probe that
    /// fails to run ends the search (reported, not fatal).
    async fn search(&self, ceiling: u64, steps: &mut Vec<Step>) {
        let measured: Vec<(u64, bool)> = steps.iter().map(|s| (s.rate, s.sustained())).collect();
        let mut search = RateSearch::new(ceiling, &measured);
        while let Some(rate) = search.next() {
            match self.generator(&[rate], true).await {
                Ok((_, probed)) => {
                    for step in probed {
                        search.record(step.rate, step.sustained());
                        steps.push(step);
                    }
                }
                Err(e) => {
                    eprintln!(
                        "xtask bench:   {} search probe at {rate}/s failed: {e}",
                        self.contender.label
                    );
                    break;
                }
            }
        }
        eprintln!(
            "xtask bench:   {} search: {} probes, highest sustained {}",
            self.contender.label,
            search.probes(),
            search
                .sustained()
                .map_or_else(|| "none".to_owned(), |r| format!("{r}/s"))
        );
    }
}

/// One progress line for a step.
fn summary(step: &Step) -> String {
    format!(
        "{} rate {}: delivered {:.0}/s ({:.2} %), p50 {:.1} ms, p99 {:.1} ms, server CPU {:.2} s, RSS {} MiB",
        step.label,
        step.rate,
        step.f("delivered_per_sec"),
        step.delivered_pct(),
        step.f("p50_ms"),
        step.p99_ms(),
        step.server_cpu_secs,
        step.server_rss_kib / 1024,
    )
}

/// Runs every contender over `rounds` rounds (servers interleaved within
/// a round, so drift of the machine spreads over all of them).
pub(crate) async fn run(
    sweep: &Sweep,
    contenders: &[Contender],
    bins: &Binaries,
    rounds: usize,
    clk_tck: u64,
) -> Result<(Vec<Connected>, Vec<Step>), String> {
    let started = Instant::now();
    let mut connects = Vec::new();
    let mut steps = Vec::new();
    for round in 1..=rounds {
        for contender in contenders {
            eprintln!(
                "xtask bench: {} {} round {round}/{rounds}: {} ...",
                sweep.id, sweep.title, contender.label
            );
            match measure(sweep, contender, bins, round, clk_tck).await {
                Ok((connected, mut measured)) => {
                    connects.push(connected);
                    steps.append(&mut measured);
                }
                Err(e) => eprintln!("xtask bench:   {} failed: {e}", contender.label),
            }
        }
    }
    eprintln!(
        "xtask bench: {} done in {:.0} s",
        sweep.id,
        started.elapsed().as_secs_f64()
    );
    Ok((connects, steps))
}
